"""The decoder against Riffusion's reference on sounds it was not developed on.

A small fixed subset of the evaluation corpus (``scripts/make_corpus.py``): FluidSynth
instruments, espeak-ng speech and synthetic signals, 2 s long so that the reference's
Griffin-Lim stays quick, and the corpus's hardest clip at its full length. Each clip is
encoded, then decoded by riffengine and by the reference method; riffengine's spectral
convergence against the image must not exceed the reference's on any clip (``bench/codec.py``
prints the full table on the whole corpus).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch

from riffengine.spectrogram import Codec, SpectrogramParams, encode, pixels_from_image
from riffengine.spectrogram.reference import audio_sc, image_mel, reference_decode

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_corpus.py"
PARAMS = SpectrogramParams()
CLIP_SAMPLES = 88200  # 2 s: 201 columns
CORPUS_SAMPLES = 225351  # 5.11 s, as in scripts/make_corpus.py: 512 columns
#: One of each family, including the two hardest kinds seen: a DC offset under a pad, sung vowels.
SUBSET = ("fs_drums_kick_snare", "fs_pad_warm", "sig_chirps", "speech_en_female", "vowels_sung_low")
#: The corpus clip closest to the reference (many voices: no partial's phase to follow), checked
#: at its full corpus length: its first 2 s alone are not a fair cut of it.
WORST = "fs_choir_aahs"
CASES = [(name, CLIP_SAMPLES) for name in SUBSET] + [(WORST, CORPUS_SAMPLES)]


def load_script():
    """scripts/make_corpus.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("make_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_corpus"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_corpus():
    for tool in ("fluidsynth", "espeak-ng"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh)")
    return load_script()


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec("cpu", PARAMS)


def test_the_split_is_fixed_and_even(make_corpus) -> None:
    names = list(make_corpus.CLIPS)
    tune, held_out = make_corpus.split_halves(names)
    assert len(names) >= 24
    assert not set(tune) & set(held_out) and sorted(tune + held_out) == sorted(names)
    assert abs(len(tune) - len(held_out)) <= 1
    assert make_corpus.split_halves(list(reversed(names))) == (tune, held_out)


@pytest.mark.parametrize(("name", "samples"), CASES)
def test_decoder_is_at_least_as_close_as_the_reference(
    name: str, samples: int, make_corpus, codec: Codec, tmp_path: Path
) -> None:
    audio = make_corpus.make_clip(name, tmp_path, samples)
    rgb = pixels_from_image(encode(audio[None], PARAMS.sample_rate))
    mel = image_mel(rgb, PARAMS)
    ours = audio_sc(mel, codec.decode_pixels(rgb.unsqueeze(0)), PARAMS)
    reference = audio_sc(mel, reference_decode(mel, PARAMS), PARAMS)
    assert torch.isfinite(torch.tensor(ours))
    assert ours <= reference, f"{name}: riffengine SC {ours:.4f} > reference {reference:.4f}"
