"""Make the decoder's evaluation corpus: varied 5.11 s clips at 44.1 kHz, each encoded as an image.

The clips come from sources the project can make itself: General MIDI instruments and drum
kits through FluidSynth (``fluid-soundfont-gm``), speech and sung vowels through espeak-ng,
and synthetic signals (noise bursts, chirps, sine sweeps, near-silence with clicks, loud clipped
material). Each clip is written as ``<name>.wav`` (16-bit) and ``<name>.png`` (the project's
encoder, bit-compatible with Riffusion's) in the output folder.

The corpus is split in two halves by a fixed rule, decided before any tuning: clip names in
sorted order, even positions are the ``tune`` half and odd positions the ``held-out`` half
(:func:`split_halves`). The decoder is tuned on the first and reported on both.

    .venv/bin/python scripts/make_corpus.py                     # all clips, /tmp/riffengine-corpus
    .venv/bin/python scripts/make_corpus.py -o DIR speech_en_male

Needs the Debian packages ``fluidsynth``, ``fluid-soundfont-gm`` and ``espeak-ng``
(``scripts/setup.sh``). The output is deterministic for given package versions.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from riffengine.spectrogram import encode, save_image  # noqa: E402
from riffengine.spectrogram.audio_io import to_rate  # noqa: E402


def _load_make_seeds():
    """scripts/make_seeds.py as a module: its MIDI loop description and FluidSynth render."""
    if "make_seeds" in sys.modules:
        return sys.modules["make_seeds"]
    spec = importlib.util.spec_from_file_location("make_seeds", ROOT / "scripts" / "make_seeds.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_seeds"] = module
    spec.loader.exec_module(module)
    return module


seeds = _load_make_seeds()
Loop, Drums, Instrument, Note, chords = seeds.Loop, seeds.Drums, seeds.Instrument, seeds.Note, seeds.chords

SAMPLE_RATE = 44100
CLIP_SAMPLES = 225351  # 5.110 s: a 512-column image
PEAK = 10 ** (-1.0 / 20)
DEFAULT_OUT = Path("/tmp/riffengine-corpus")

# General MIDI programs (0-based) and FluidR3 drum kits.
PIANO, RHODES, MARIMBA, ORGAN, NYLON, DIST_GUITAR = 0, 4, 12, 19, 24, 30
FINGER_BASS, SYNTH_BASS, STRINGS, HARP, CHOIR = 33, 38, 48, 46, 52
BRASS, ALTO_SAX, FLUTE, SAW_LEAD, WARM_PAD = 61, 65, 73, 81, 89
KIT_STANDARD, KIT_ELECTRONIC = 0, 24
NO_DRUMS = Drums(KIT_STANDARD, {})


# ---------------------------------------------------------------- FluidSynth


def render_loop(loop: Loop, workdir: Path, num_samples: int) -> np.ndarray:
    """The loop rendered by FluidSynth, mixed to mono: the first ``num_samples`` samples."""
    midi_path = workdir / f"{loop.name}.mid"
    seeds.loop_midi(loop).save(str(midi_path))
    audio = seeds.render_midi(midi_path, workdir / f"{loop.name}.render.wav").mean(axis=0)
    return fit_length(audio, num_samples)


def melodic(name: str, program: int, notes: tuple[Note, ...], bpm: float = 94.0, reverb: int = 40) -> Callable:
    """A clip of one GM instrument playing ``notes`` (2 bars of 4/4 at ``bpm``)."""

    def make(workdir: Path, num_samples: int) -> np.ndarray:
        part = Instrument(0, program, notes, volume=110, reverb=reverb)
        return render_loop(Loop(name, bpm, 2, 4, name, NO_DRUMS, (part,)), workdir, num_samples)

    return make


def drums(name: str, kit: Drums, bpm: float = 100.0) -> Callable:
    def make(workdir: Path, num_samples: int) -> np.ndarray:
        return render_loop(Loop(name, bpm, 2, 4, name, kit), workdir, num_samples)

    return make


def full_mix_loop(name: str) -> Loop:
    """Drums, bass, piano, strings, brass and a saw lead at once: the densest clip."""
    kit = Drums(
        KIT_STANDARD,
        {
            36: "X..x..x.X..x..x.",
            38: "....X.......X..g",
            42: "xxxxxxxxxxxxxxxx",
            49: "X...............",
        },
    )
    return Loop(
        name,
        110.0,
        2,
        4,
        name,
        kit,
        (
            Instrument(
                0,
                FINGER_BASS,
                tuple(
                    Note(i * 0.5, 0.45, p, 100)
                    for i, p in enumerate("A1 A2 C2 A1 F1 F2 G1 G2 A1 A2 C2 E2 F1 F2 G1 E1".split())
                ),
                volume=110,
                reverb=10,
            ),
            Instrument(
                1, PIANO, chords([(0, 2, "A3 C4 E4"), (2, 2, "F3 A3 C4"), (4, 2, "G3 B3 D4"), (6, 2, "E3 G#3 B3")], 90)
            ),
            Instrument(2, STRINGS, chords([(0, 4, "A4 C5 E5"), (4, 4, "G4 B4 D5")], 80), volume=90),
            Instrument(
                3,
                BRASS,
                chords(
                    [(1.5, 0.5, "E4 A4 C5"), (3.5, 0.5, "F4 A4 C5"), (5.5, 0.5, "G4 B4 D5"), (7.5, 0.5, "G#4 B4 E5")],
                    100,
                ),
                volume=100,
            ),
            Instrument(
                4,
                SAW_LEAD,
                tuple(
                    Note(i * 0.25, 0.2, p, 90)
                    for i, p in enumerate("E5 A5 C6 B5 A5 E5 C5 E5 D5 F5 A5 G5 F5 D5 B4 D5".split())
                ),
                volume=80,
            ),
        ),
    )


def full_mix(workdir: Path, num_samples: int) -> np.ndarray:
    return render_loop(full_mix_loop("full_mix"), workdir, num_samples)


def scale_notes(names: str, step: float, length: float, velocity: int = 95) -> tuple[Note, ...]:
    return tuple(Note(i * step, length, p, velocity) for i, p in enumerate(names.split()))


# ---------------------------------------------------------------- espeak-ng


def espeak(args: list[str], text: str, workdir: Path) -> np.ndarray:
    """Speech from espeak-ng at 44.1 kHz (espeak writes 22.05 kHz), float mono."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("make_corpus: espeak-ng is not installed; run scripts/setup.sh")
    path = workdir / "speech.wav"
    subprocess.run(["espeak-ng", *args, "-w", str(path), text], check=True, stdout=subprocess.DEVNULL)
    audio, rate = soundfile.read(str(path), dtype="float32")
    return to_rate(torch.from_numpy(audio), rate, SAMPLE_RATE).numpy().astype(np.float64)


def speech(voice: str, speed: int, pitch: int, text: str) -> Callable:
    def make(workdir: Path, num_samples: int) -> np.ndarray:
        return fit_length(espeak(["-v", voice, "-s", str(speed), "-p", str(pitch)], text, workdir), num_samples)

    return make


def sung_vowels(voice: str, pitches: tuple[int, ...]) -> Callable:
    """Long vowels, one per pitch setting, back to back: singing-like voiced sound."""
    vowels = ("a", "i", "u", "e", "o", "A")

    def make(workdir: Path, num_samples: int) -> np.ndarray:
        parts = [
            espeak(["-v", voice, "-s", "80", "-p", str(p)], f"[[{vowels[i % len(vowels)]}::::::]]", workdir)
            for i, p in enumerate(pitches)
        ]
        return fit_length(np.concatenate(parts), num_samples)

    return make


# ---------------------------------------------------------------- synthetic


def noise_bursts(workdir: Path, num_samples: int) -> np.ndarray:
    """White noise bursts of 5 to 400 ms with sharp edges, at varied levels, in silence."""
    rng = np.random.default_rng(11)
    out = np.zeros(num_samples)
    start = 0
    while start < num_samples:
        length = int(rng.uniform(0.005, 0.4) * SAMPLE_RATE)
        out[start : start + length] = rng.standard_normal(min(length, num_samples - start)) * rng.uniform(0.05, 0.3)
        start += length + int(rng.uniform(0.05, 0.3) * SAMPLE_RATE)
    return out


def filtered_noise(workdir: Path, num_samples: int) -> np.ndarray:
    """Noise through slowly moving band-passes (a wind or surf texture), made in the FFT domain."""
    rng = np.random.default_rng(12)
    block = 8192
    out = np.zeros(num_samples + block)
    window = np.hanning(block)
    freqs = np.fft.rfftfreq(block, 1 / SAMPLE_RATE)
    for i, start in enumerate(range(0, num_samples, block // 2)):
        centre = 400 * 2 ** (3 * (0.5 + 0.5 * np.sin(i / 6)))
        shape = np.exp(-0.5 * (np.log2(np.maximum(freqs, 1) / centre) / 0.4) ** 2)
        spectrum = np.fft.rfft(rng.standard_normal(block)) * shape
        out[start : start + block] += np.fft.irfft(spectrum, block) * window
    return out[:num_samples]


def chirps(workdir: Path, num_samples: int) -> np.ndarray:
    """Short rising and falling chirps (bird- or laser-like), 30 to 200 ms each."""
    rng = np.random.default_rng(13)
    out = np.zeros(num_samples)
    start = 0
    while start < num_samples:
        dur = rng.uniform(0.03, 0.2)
        t = np.arange(int(dur * SAMPLE_RATE)) / SAMPLE_RATE
        f0, f1 = rng.uniform(300, 8000, size=2)
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * dur))
        tone = np.sin(phase) * np.hanning(len(t))
        end = min(start + len(t), num_samples)
        out[start:end] += tone[: end - start]
        start += len(t) + int(rng.uniform(0.02, 0.25) * SAMPLE_RATE)
    return out


def log_sweep(workdir: Path, num_samples: int) -> np.ndarray:
    """An exponential sine sweep from 30 Hz to 12 kHz over the clip."""
    t = np.arange(num_samples) / SAMPLE_RATE
    dur, f0, f1 = num_samples / SAMPLE_RATE, 30.0, 12000.0
    rate = np.log(f1 / f0)
    return 0.5 * np.sin(2 * np.pi * f0 * dur / rate * (np.exp(t / dur * rate) - 1))


def linear_sweeps(workdir: Path, num_samples: int) -> np.ndarray:
    """Two linear sweeps crossing each other (100 Hz up to 9 kHz and 9 kHz down to 100 Hz)."""
    t = np.arange(num_samples) / SAMPLE_RATE
    dur = num_samples / SAMPLE_RATE
    up = np.sin(2 * np.pi * (100 * t + (8900) * t**2 / (2 * dur)))
    down = np.sin(2 * np.pi * (9000 * t - (8900) * t**2 / (2 * dur)))
    return 0.3 * (up + down)


def near_silence_clicks(workdir: Path, num_samples: int) -> np.ndarray:
    """A -70 dBFS hiss with a few clicks and one short knock: mostly white image."""
    rng = np.random.default_rng(14)
    out = rng.standard_normal(num_samples) * 10 ** (-70 / 20)
    for pos in rng.integers(0, num_samples - 2000, size=6):
        out[pos : pos + 3] += rng.uniform(-0.8, 0.8, size=3)
    t = np.arange(4000) / SAMPLE_RATE
    knock = 0.5 * np.sin(2 * np.pi * 180 * t) * np.exp(-t * 60)
    out[num_samples // 2 : num_samples // 2 + len(knock)] += knock
    return out


def clipped_mix(workdir: Path, num_samples: int) -> np.ndarray:
    """The full mix driven 12 dB into hard clipping (a loud master)."""
    audio = render_loop(full_mix_loop("clipped_mix"), workdir, num_samples)
    return np.clip(audio / np.abs(audio).max() * 4.0, -1.0, 1.0)


def clipped_bass(workdir: Path, num_samples: int) -> np.ndarray:
    """A sine bass line with a kick, hard clipped: square-ish, dense in harmonics."""
    t = np.arange(num_samples) / SAMPLE_RATE
    notes = [55.0, 55.0, 65.4, 49.0, 41.2, 41.2, 49.0, 55.0]
    freq = np.array(notes)[(t / (num_samples / SAMPLE_RATE / len(notes))).astype(int).clip(max=len(notes) - 1)]
    bass = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)
    beat = (t % 0.5) / 0.5
    kick = np.sin(2 * np.pi * 60 * (t % 0.5) * (1 + 2 * np.exp(-(t % 0.5) * 40))) * np.exp(-beat * 8)
    return np.clip(3 * bass + 4 * kick, -1.0, 1.0)


# ---------------------------------------------------------------- the corpus

CLIPS: dict[str, Callable[[Path, int], np.ndarray]] = {
    "fs_bass_finger": melodic(
        "fs_bass_finger",
        FINGER_BASS,
        scale_notes("E1 E2 G1 A1 B1 D2 E2 B1 E1 G1 A1 C2 B1 A1 G1 D1", 0.5, 0.45),
        reverb=10,
    ),
    "fs_bass_synth": melodic("fs_bass_synth", SYNTH_BASS, scale_notes("C2 C2 C3 C2 Eb2 F2 G2 Bb1", 1.0, 0.8), bpm=100),
    "fs_brass_section": melodic(
        "fs_brass_section",
        BRASS,
        chords([(0, 1.5, "C4 E4 G4"), (2, 1, "D4 F4 A4"), (3.5, 0.5, "E4 G4 B4"), (4, 3.5, "F4 A4 C5")], 110),
    ),
    "fs_choir_aahs": melodic("fs_choir_aahs", CHOIR, chords([(0, 4, "D4 F4 A4"), (4, 4, "C4 E4 G4")], 90), bpm=80),
    "fs_drums_electronic": drums(
        "fs_drums_electronic",
        Drums(
            KIT_ELECTRONIC,
            {36: "X..x..X...x.....", 39: "....X.......X...", 42: "x.xox.xox.xox.xo", 46: "..........X....."},
        ),
        bpm=124,
    ),
    "fs_drums_kick_snare": drums(
        "fs_drums_kick_snare", Drums(KIT_STANDARD, {36: "X.......X.x.....", 38: "....X.......X..."}), bpm=94
    ),
    "fs_flute_melody": melodic(
        "fs_flute_melody", FLUTE, scale_notes("G5 A5 B5 D6 B5 A5 G5 E5 D5 E5 G5 A5 G5 E5 D5 D5", 0.5, 0.5, 85)
    ),
    "fs_full_mix": full_mix,
    "fs_guitar_distorted": melodic(
        "fs_guitar_distorted",
        DIST_GUITAR,
        chords(
            [
                (0, 0.5, "E2 B2 E3"),
                (0.5, 0.5, "E2 B2 E3"),
                (1, 1, "G2 D3 G3"),
                (2, 0.75, "A2 E3 A3"),
                (3, 1, "C3 G3 C4"),
                (4, 2, "B2 F#3 B3"),
                (6, 2, "E2 B2 E3"),
            ],
            110,
        ),
        bpm=120,
        reverb=20,
    ),
    "fs_guitar_nylon": melodic(
        "fs_guitar_nylon", NYLON, scale_notes("E3 B3 E4 G4 B4 G4 E4 B3 A2 E3 A3 C4 E4 C4 A3 E3", 0.5, 1.5, 90)
    ),
    "fs_harp_pluck": melodic(
        "fs_harp_pluck",
        HARP,
        scale_notes(
            "C4 E4 G4 C5 E5 G5 C6 G5 E5 C5 G4 E4 C4 G3 E3 C3 D4 F4 A4 D5 F5 A5 D6 A5 F5 D5 A4 F4 D4 A3 F3 D3",
            0.25,
            1.0,
            90,
        ),
    ),
    "fs_marimba": melodic(
        "fs_marimba", MARIMBA, scale_notes("A4 C5 E5 A5 G5 E5 C5 D5 F4 A4 C5 F5 E5 C5 A4 B4", 0.5, 0.4, 100), bpm=120
    ),
    "fs_organ": melodic("fs_organ", ORGAN, chords([(0, 4, "C3 G3 C4 E4 G4"), (4, 4, "F2 C3 F3 A3 C4")], 95), bpm=70),
    "fs_pad_warm": melodic(
        "fs_pad_warm", WARM_PAD, chords([(0, 4, "A2 E3 A3 C4 E4"), (4, 4, "F2 C3 F3 A3 C4")], 90), bpm=80, reverb=80
    ),
    "fs_piano": melodic(
        "fs_piano",
        PIANO,
        chords(
            [
                (0, 1, "C3 C4 E4 G4"),
                (1, 1, "C5"),
                (2, 1, "A2 A3 C4 E4"),
                (3, 0.5, "E5"),
                (3.5, 0.5, "D5"),
                (4, 1, "F2 F3 A3 C4"),
                (5, 1, "A4"),
                (6, 2, "G2 G3 B3 D4 G4"),
            ],
            95,
        ),
        bpm=90,
    ),
    "fs_saw_lead": melodic(
        "fs_saw_lead",
        SAW_LEAD,
        scale_notes("A4 A4 C5 D5 E5 E5 G5 E5 D5 C5 A4 G4 A4 C5 A4 A4", 0.5, 0.4, 100),
        bpm=110,
        reverb=30,
    ),
    "fs_sax_melody": melodic(
        "fs_sax_melody", ALTO_SAX, scale_notes("F4 G4 Ab4 C5 Bb4 Ab4 G4 F4", 1.0, 0.9, 95), bpm=90
    ),
    "fs_strings": melodic(
        "fs_strings",
        STRINGS,
        chords([(0, 2, "E3 B3 G4"), (2, 2, "C3 C4 G4 E5"), (4, 2, "D3 A3 F#4 D5"), (6, 2, "B2 B3 F#4 D5")], 90),
        bpm=94,
    ),
    "noise_bursts": noise_bursts,
    "noise_filtered": filtered_noise,
    "sig_chirps": chirps,
    "sig_clipped_bass": clipped_bass,
    "sig_clipped_mix": clipped_mix,
    "sig_near_silence_clicks": near_silence_clicks,
    "sig_sweep_log": log_sweep,
    "sig_sweeps_linear": linear_sweeps,
    "speech_de_fast": speech(
        "de",
        200,
        40,
        "Guten Abend, meine Damen und Herren. Heute Nacht spielen wir neue Musik, die niemand vorher gehört hat.",
    ),
    "speech_en_female": speech(
        "en-us+f3",
        160,
        60,
        "Riffusion turns a picture of sound back into sound. Every loop goes through this decoder, so listen closely.",
    ),
    "speech_en_male": speech(
        "en-gb",
        140,
        35,
        "The quick brown fox jumps over the lazy dog while seven musicians tune their instruments on stage.",
    ),
    "vowels_sung_high": sung_vowels("en-us+f2", (60, 75, 90, 99)),
    "vowels_sung_low": sung_vowels("en-gb", (10, 25, 40, 55)),
}


def split_halves(names: list[str]) -> tuple[list[str], list[str]]:
    """``(tune, held_out)``: sorted names, even positions tune and odd positions held out."""
    ordered = sorted(names)
    return ordered[0::2], ordered[1::2]


def half_of(name: str, names: list[str]) -> str:
    tune, _ = split_halves(names)
    return "tune" if name in tune else "held-out"


def fit_length(audio: np.ndarray, num_samples: int) -> np.ndarray:
    """Cut or pad (with silence) to exactly ``num_samples``."""
    out = np.zeros(num_samples)
    n = min(len(audio), num_samples)
    out[:n] = audio[:n]
    return out


def make_clip(name: str, workdir: Path, num_samples: int = CLIP_SAMPLES) -> np.ndarray:
    """The clip ``name`` as float32 mono ``[samples]``: normalised to -1 dBFS unless meant to be
    clipped (peak 1.0) or nearly silent (left at its level)."""
    audio = CLIPS[name](workdir, num_samples)
    peak = np.abs(audio).max()
    if peak == 0:
        raise SystemExit(f"make_corpus: {name} came out silent")
    if "clipped" not in name and "near_silence" not in name:
        audio = audio * (PEAK / peak)
    return audio.astype(np.float32)


def write_clip(name: str, out_dir: Path, num_samples: int = CLIP_SAMPLES) -> Path:
    """Render ``name`` and write ``<name>.wav`` and its image ``<name>.png``; returns the PNG."""
    with tempfile.TemporaryDirectory(prefix="make_corpus_") as tmp:
        audio = make_clip(name, Path(tmp), num_samples)
    out_dir.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(out_dir / f"{name}.wav"), audio, SAMPLE_RATE, subtype="PCM_16")
    path = out_dir / f"{name}.png"
    save_image(encode(audio[None], SAMPLE_RATE), path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the decoder's evaluation corpus and encode it as images.")
    parser.add_argument("names", nargs="*", help="clips to make (default: all)")
    parser.add_argument(
        "-o", "--out-dir", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in CLIPS]
    if unknown:
        parser.error(f"unknown clip {', '.join(unknown)}; choose from {', '.join(CLIPS)}")
    names = list(CLIPS)
    for name in args.names or names:
        path = write_clip(name, args.out_dir)
        print(f"{path} ({half_of(name, names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
