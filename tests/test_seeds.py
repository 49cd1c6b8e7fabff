"""The shipped seed images: format, tempo metadata, lookup by name, and a beat that matches it.

The loops are described in scripts/make_seeds.py; each image must be that loop: 512x512 grey
RGB, its tempo in EXIF, and, decoded to audio, onsets that repeat at the beat period its BPM
implies.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from riffengine.commands import render as render_command
from riffengine.control.params import param
from riffengine.render.request import RenderRequest
from riffengine.render.seeds import BUILTIN_DIR, builtin_names, load_seed_pixels, resolve_seed_image
from riffengine.spectrogram import Codec, image_loop, pixels_from_image

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_seeds.py"


def load_script():
    """scripts/make_seeds.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("make_seeds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_seeds"] = module
    spec.loader.exec_module(module)
    return module


make_seeds = load_script()
LOOPS = {loop.name: loop for loop in make_seeds.LOOPS}
NAMES = sorted(LOOPS)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(n_iter=4)


def open_seed(name: str) -> Image.Image:
    image = Image.open(BUILTIN_DIR / f"{name}.png")
    image.load()
    return image


def onset_envelope(audio: np.ndarray, hop: int = 256, n_fft: int = 1024) -> np.ndarray:
    """Spectral flux of a loop, one value per ``hop`` samples, computed as if the loop repeats."""
    frames = len(audio) // hop
    wrapped = np.concatenate([audio, audio[:n_fft]])
    index = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    spectrum = np.abs(np.fft.rfft(wrapped[index] * np.hanning(n_fft), axis=1))
    compressed = np.log1p(1000.0 * spectrum / spectrum.max())
    rise = compressed - np.roll(compressed, 1, axis=0)
    return np.maximum(rise, 0.0).sum(axis=1)


def circular_autocorrelation(x: np.ndarray) -> np.ndarray:
    """Autocorrelation of a periodic signal, normalised to 1 at lag 0."""
    x = x - x.mean()
    spectrum = np.fft.rfft(x)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), n=len(x))
    return acf / acf[0]


def beat_period(acf: np.ndarray, expected: float) -> tuple[float, float]:
    """The autocorrelation peak within 20% of ``expected`` frames: (lag, refined by a parabola; value)."""
    lo, hi = int(np.floor(0.8 * expected)), int(np.ceil(1.2 * expected))
    peak = lo + int(np.argmax(acf[lo : hi + 1]))
    assert lo < peak < hi, f"no autocorrelation peak near {expected:.1f} frames, only at the edge ({peak})"
    before, at, after = acf[peak - 1], acf[peak], acf[peak + 1]
    shift = 0.5 * (before - after) / (before - 2 * at + after)
    return peak + shift, float(at)


def test_every_loop_is_shipped_and_nothing_else():
    assert builtin_names() == NAMES


def test_default_seed_is_shipped():
    assert make_seeds.DEFAULT_SEED in NAMES
    assert param("seed_image").default == make_seeds.DEFAULT_SEED
    assert RenderRequest.__dataclass_fields__["seed_image"].default == make_seeds.DEFAULT_SEED
    parser = argparse.ArgumentParser()
    render_command.register(parser.add_subparsers())
    assert parser.parse_args(["render", "x", "-o", "x.wav"]).seed_image == make_seeds.DEFAULT_SEED


def test_loops_fit_the_model_and_their_bars():
    for loop in LOOPS.values():
        assert 3.5 <= loop.seconds <= 6.5, loop.name
        bar_steps = loop.beats_per_bar * make_seeds.STEPS_PER_BEAT
        for drum, pattern in loop.drums.patterns.items():
            steps = make_seeds.pattern_steps(pattern)
            assert set(steps) <= set(make_seeds.VELOCITY) | {"."}, (loop.name, drum)
            assert len(steps) % bar_steps == 0 and loop.bars % (len(steps) // bar_steps) == 0, (loop.name, drum)
        for part in loop.parts:
            for note in part.notes:
                assert 0 <= note.start and note.start + note.length <= loop.beats, (loop.name, note)
        note_ons = [tick for tick, _, m in make_seeds.loop_events(loop) if m.type == "note_on"]
        assert max(note_ons) < loop.beats * make_seeds.TICKS_PER_BEAT, loop.name


@pytest.mark.parametrize("name", NAMES)
def test_seed_is_512_square_grey_rgb(name):
    image = open_seed(name)
    assert (image.mode, image.size) == ("RGB", (512, 512))
    pixels = np.asarray(image)
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2])
    assert pixels.min() < 64 and pixels.max() > 192, "the image should span dark (loud) to light (quiet)"


@pytest.mark.parametrize("name", NAMES)
def test_seed_records_its_tempo(name):
    loop = LOOPS[name]
    info = image_loop(open_seed(name))
    assert info is not None, f"{name}.png has no tempo EXIF tags"
    assert info.bars == loop.bars and info.beats_per_bar == loop.beats_per_bar
    assert info.bpm == pytest.approx(loop.bpm, abs=1e-3)
    seconds = info.bars * info.beats_per_bar * 60.0 / info.bpm
    assert seconds == pytest.approx(loop.seconds, abs=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_seed_resolves_by_name(name):
    assert resolve_seed_image(name) == BUILTIN_DIR / f"{name}.png"
    pixels = load_seed_pixels(name, 512)
    assert tuple(pixels.shape) == (3, 512, 512)
    assert np.array_equal(pixels.permute(1, 2, 0).numpy(), np.asarray(open_seed(name)))


@pytest.mark.parametrize("name", NAMES)
def test_seed_decodes_to_its_beat(name, codec):
    """The decoded loop's onsets repeat at the beat period of its BPM, within 3%."""
    image = open_seed(name)
    info = image_loop(image)
    seconds = info.bars * info.beats_per_bar * 60.0 / info.bpm
    num_samples = round(seconds * 44100)
    audio = codec.decode_pixels(pixels_from_image(image).unsqueeze(0), num_samples)[0, 0].numpy()
    assert audio.shape == (num_samples,)
    hop = 256
    acf = circular_autocorrelation(onset_envelope(audio, hop))
    expected = 60.0 / info.bpm * 44100 / hop
    lag, strength = beat_period(acf, expected)
    assert lag == pytest.approx(expected, rel=0.03), f"{name}: beat every {lag * hop / 44100:.3f} s"
    typical = float(np.median(acf[1 : len(acf) // 2]))
    assert strength > 0.2 and strength - typical > 0.25, f"{name}: weak beat ({strength:.2f} vs {typical:.2f})"


@pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not make_seeds.SOUNDFONT.is_file(),
    reason="fluidsynth or the FluidR3 soundfont is not installed",
)
def test_script_reproduces_the_default_seed(tmp_path):
    """Regenerating the default seed gives the shipped image (exactly, with the same FluidSynth)."""
    name = make_seeds.DEFAULT_SEED
    path = make_seeds.make_seed(LOOPS[name], tmp_path)
    fresh, shipped = np.asarray(Image.open(path), dtype=np.int16), np.asarray(open_seed(name), dtype=np.int16)
    assert np.abs(fresh - shipped).mean() < 0.5, "the shipped seed is stale: run scripts/make_seeds.py"
    assert image_loop(Image.open(path)) == image_loop(open_seed(name))
