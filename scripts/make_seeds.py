"""Make riffengine's built-in seed images from loops composed here.

Each loop in :data:`LOOPS` is written as MIDI (mido), rendered with FluidSynth and the General
MIDI soundfont FluidR3, cut to exactly its bars (the reverb and release tails wrap around into
the start, so the loop repeats without a seam) and encoded as a 512x512 seed image with its
tempo in EXIF, in ``riffengine/seeds/<name>.png``.

    .venv/bin/python scripts/make_seeds.py                # every loop
    .venv/bin/python scripts/make_seeds.py groove_94      # just these
    .venv/bin/python scripts/make_seeds.py --wav-dir out  # also keep the rendered loops

Needs the Debian packages ``fluidsynth`` and ``fluid-soundfont-gm`` (``scripts/setup.sh``).
The output is deterministic: the same FluidSynth and soundfont give identical PNGs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from riffengine.spectrogram import LoopInfo, encode, save_image  # noqa: E402

SEED_DIR = ROOT / "riffengine" / "seeds"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SAMPLE_RATE = 44100
TICKS_PER_BEAT = 480
STEPS_PER_BEAT = 4  # drum patterns are written in 16th notes
TAIL_SECONDS = 3.0  # rendered past the loop's end, then wrapped into its start
PEAK = 10 ** (-1.0 / 20)  # the loop is normalised to -1 dBFS before encoding
DRUM_CHANNEL = 9

# General MIDI drum notes.
KICK, RIM, SNARE, CLAP, SNARE2 = 36, 37, 38, 39, 40
HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE = 42, 44, 46, 49, 51
SHAKER, TAMBOURINE, LOW_TOM, HIGH_TOM = 70, 54, 45, 50

# FluidR3 drum kits (bank 128 programs) and GM melodic programs (0-based).
KIT_STANDARD, KIT_ROOM, KIT_ELECTRONIC, KIT_808, KIT_BRUSH = 0, 8, 24, 25, 40
ACOUSTIC_PIANO, RHODES, PERC_ORGAN = 0, 4, 17
ACOUSTIC_BASS, FINGER_BASS, SYNTH_BASS_1, SYNTH_BASS_2 = 32, 33, 38, 39
STRINGS, WARM_PAD, HALO_PAD = 48, 89, 94

#: Step-pattern velocities: accent, normal, soft, ghost.
VELOCITY = {"X": 120, "x": 100, "o": 70, "g": 45}

NOTE_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def note_number(name: str) -> int:
    """MIDI note of a name like ``E2``, ``F#3`` or ``Bb1`` (C4 = 60)."""
    pitch = NOTE_NAMES[name[0]]
    rest = name[1:]
    while rest and rest[0] in "#b":
        pitch += 1 if rest[0] == "#" else -1
        rest = rest[1:]
    return 12 * (int(rest) + 1) + pitch


@dataclass(frozen=True)
class Note:
    """A pitched event: ``start`` and ``length`` in beats from the loop's start."""

    start: float
    length: float
    pitches: str  # space-separated note names: one for a bass note, several for a chord
    velocity: int = 90


@dataclass(frozen=True)
class Drums:
    """Drum patterns: one string of 16th-note steps per drum, covering every bar of the loop.

    Each character is a step: ``X`` ``x`` ``o`` ``g`` hit (accent to ghost), ``.`` rest; spaces
    and ``|`` are ignored. A pattern shorter than the loop repeats.
    """

    kit: int
    patterns: dict[int, str]
    volume: int = 110


@dataclass(frozen=True)
class Instrument:
    """A melodic part on its own channel."""

    channel: int
    program: int
    notes: tuple[Note, ...]
    volume: int = 100
    reverb: int = 40


@dataclass(frozen=True)
class Loop:
    """One seed loop: exactly ``bars`` bars of ``beats_per_bar`` beats at ``bpm``."""

    name: str
    bpm: float
    bars: int
    beats_per_bar: int
    description: str
    drums: Drums
    parts: tuple[Instrument, ...] = ()
    swing: float = 0.0  # delay of the off-beat 16ths, as a fraction of a 16th

    @property
    def beats(self) -> int:
        return self.bars * self.beats_per_bar

    @property
    def seconds(self) -> float:
        return self.beats * 60.0 / self.bpm

    @property
    def num_samples(self) -> int:
        return round(self.seconds * SAMPLE_RATE)

    @property
    def loop_info(self) -> LoopInfo:
        return LoopInfo(self.bpm, self.bars, self.beats_per_bar)


def chords(changes: list[tuple[float, float, str]], velocity: int = 70) -> tuple[Note, ...]:
    """Notes from ``(start, length, pitches)`` triples, all at one velocity."""
    return tuple(Note(start, length, pitches, velocity) for start, length, pitches in changes)


LOOPS: tuple[Loop, ...] = (
    Loop(
        name="groove_94",
        bpm=94.0,
        bars=2,
        beats_per_bar=4,
        description="Straight drums and finger bass in E minor; the default seed",
        drums=Drums(
            KIT_STANDARD,
            {
                KICK: "X.....x.x....... | X.....x...x..o..",
                SNARE: "....X.......X... | ....X.......X..g",
                HAT: "x.o.x.o.x.o.x.o. | x.o.x.o.x.o.x.o.",
            },
        ),
        parts=(
            Instrument(
                0,
                FINGER_BASS,
                (
                    Note(0.0, 1.2, "E2", 105),
                    Note(1.5, 0.4, "E2", 85),
                    Note(2.0, 0.9, "G2", 95),
                    Note(3.0, 0.8, "A2", 90),
                    Note(4.0, 1.2, "E2", 105),
                    Note(5.5, 0.4, "D3", 85),
                    Note(6.0, 0.9, "B2", 95),
                    Note(7.0, 0.4, "A2", 85),
                    Note(7.5, 0.4, "G2", 80),
                ),
                volume=110,
                reverb=10,
            ),
        ),
    ),
    Loop(
        name="house_120",
        bpm=120.0,
        bars=2,
        beats_per_bar=4,
        description="Four-on-the-floor house: 808 kick, clap, off-beat open hats, organ stabs, A minor",
        drums=Drums(
            KIT_808,
            {
                KICK: "X...X...X...X...",
                CLAP: "....x.......x...",
                OPEN_HAT: "..x...x...x...x.",
                HAT: "g.g.g.g.g.g.g.gg",
            },
        ),
        parts=(
            Instrument(
                0,
                SYNTH_BASS_1,
                (
                    Note(0.5, 0.35, "A1", 100),
                    Note(1.5, 0.35, "A1", 100),
                    Note(2.5, 0.35, "C2", 100),
                    Note(3.5, 0.35, "A1", 100),
                    Note(4.5, 0.35, "F1", 100),
                    Note(5.5, 0.35, "F1", 100),
                    Note(6.5, 0.35, "G1", 100),
                    Note(7.5, 0.35, "E1", 100),
                ),
                volume=100,
                reverb=5,
            ),
            Instrument(
                1,
                PERC_ORGAN,
                chords(
                    [
                        (0.75, 0.25, "A3 C4 E4 G4"),
                        (2.25, 0.25, "A3 C4 E4 G4"),
                        (4.75, 0.25, "F3 A3 C4 E4"),
                        (6.25, 0.25, "G3 B3 D4 F4"),
                    ],
                    velocity=75,
                ),
                volume=85,
                reverb=60,
            ),
        ),
    ),
    Loop(
        name="hiphop_90",
        bpm=90.0,
        bars=2,
        beats_per_bar=4,
        description="Swung boom-bap: kick, snare on 2 and 4, 16th hats, Rhodes chords and bass in D minor",
        drums=Drums(
            KIT_STANDARD,
            {
                KICK: "X......x..x..... | X.......x.x.....",
                SNARE: "....X.......X..g | ....X..g....X...",
                HAT: "x.gox.gox.gox.go | x.gox.gox.goX.go",
            },
        ),
        parts=(
            Instrument(
                0,
                ACOUSTIC_BASS,
                (
                    Note(0.0, 1.6, "D2", 105),
                    Note(1.75, 0.5, "D2", 80),
                    Note(2.5, 1.2, "F2", 95),
                    Note(4.0, 1.6, "G2", 105),
                    Note(5.75, 0.5, "G2", 80),
                    Note(6.5, 1.2, "A2", 95),
                ),
                volume=110,
                reverb=10,
            ),
            Instrument(
                1,
                RHODES,
                chords(
                    [
                        (0.0, 3.8, "F3 A3 C4 E4"),
                        (4.0, 3.8, "E3 G3 Bb3 D4"),
                    ],
                    velocity=65,
                ),
                volume=90,
                reverb=50,
            ),
        ),
        swing=0.5,
    ),
    Loop(
        name="halftime_80",
        bpm=80.0,
        bars=2,
        beats_per_bar=4,
        description="Half-time ambient: warm pad and sub bass in C, kick on 1, snare on 3, shaker 8ths",
        drums=Drums(
            KIT_ROOM,
            {
                KICK: "X.........x..... | X.......o.x.....",
                SNARE2: "........X....... | ........X.......",
                SHAKER: "x.o.x.o.x.o.x.o. | x.o.x.o.x.o.x.o.",
                RIM: "....o.......o... | ....o.......o...",
            },
            volume=100,
        ),
        parts=(
            Instrument(
                0,
                SYNTH_BASS_2,
                (
                    Note(0.0, 3.9, "C2", 95),
                    Note(4.0, 3.9, "A1", 95),
                ),
                volume=95,
                reverb=10,
            ),
            Instrument(
                1,
                WARM_PAD,
                chords(
                    [
                        (0.0, 4.0, "E3 G3 B3 D4"),
                        (4.0, 4.0, "C3 E3 G3 B3"),
                    ],
                    velocity=60,
                ),
                volume=85,
                reverb=90,
            ),
        ),
    ),
    Loop(
        name="breaks_170",
        bpm=170.0,
        bars=4,
        beats_per_bar=4,
        description="Drum-and-bass breakbeat (85 BPM half-time feel): two-step kick and snare, "
        "ride 8ths, Reese-style bass in F minor",
        drums=Drums(
            KIT_STANDARD,
            {
                KICK: "X.........x..... | X.........x..... | X.........x..... | X.......x.x.....",
                SNARE: "....X..g....X... | ....X..g....X..g | ....X..g....X... | ....X..g..X.X.gx",
                RIDE: "x.o.x.o.x.o.x.o. | x.o.x.o.x.o.x.o. | x.o.x.o.x.o.x.o. | x.o.x.o.x.o.x.o.",
                CRASH: "X............... | ................ | ................ | ................",
            },
        ),
        parts=(
            Instrument(
                0,
                SYNTH_BASS_2,
                (
                    Note(0.0, 3.5, "F1", 100),
                    Note(4.0, 1.5, "F1", 95),
                    Note(6.0, 1.8, "Ab1", 95),
                    Note(8.0, 3.5, "Db2", 100),
                    Note(12.0, 1.5, "C2", 95),
                    Note(14.0, 1.8, "Eb2", 95),
                ),
                volume=105,
                reverb=10,
            ),
            Instrument(
                1,
                HALO_PAD,
                chords(
                    [
                        (0.0, 8.0, "F3 Ab3 C4"),
                        (8.0, 8.0, "Db3 F3 Ab3 C4"),
                    ],
                    velocity=50,
                ),
                volume=70,
                reverb=80,
            ),
        ),
    ),
    Loop(
        name="waltz_72",
        bpm=72.0,
        bars=2,
        beats_per_bar=3,
        description="3/4 waltz with brushes: upright bass on 1, piano chords on 2 and 3, strings, G major",
        drums=Drums(
            KIT_BRUSH,
            {
                KICK: "x........... | o...........",
                SNARE: "....o...o... | ....o...o..g",
                RIDE: "x...x.o.x... | x...x.o.x...",
            },
            volume=100,
        ),
        parts=(
            Instrument(
                0,
                ACOUSTIC_BASS,
                (
                    Note(0.0, 0.9, "G2", 105),
                    Note(3.0, 0.9, "D2", 100),
                ),
                volume=110,
                reverb=20,
            ),
            Instrument(
                1,
                ACOUSTIC_PIANO,
                chords(
                    [
                        (1.0, 0.6, "B3 D4 G4"),
                        (2.0, 0.6, "B3 D4 G4"),
                        (4.0, 0.6, "C4 D4 F#4 A4"),
                        (5.0, 0.6, "C4 D4 F#4 A4"),
                    ],
                    velocity=72,
                ),
                volume=95,
                reverb=50,
            ),
            Instrument(
                2,
                STRINGS,
                chords(
                    [
                        (0.0, 3.0, "G3 D4"),
                        (3.0, 3.0, "F#3 C4"),
                    ],
                    velocity=50,
                ),
                volume=70,
                reverb=70,
            ),
        ),
    ),
)

#: The loop the engine uses when no seed image is chosen.
DEFAULT_SEED = "groove_94"


def pattern_steps(pattern: str) -> str:
    """The step characters of a drum pattern (spaces and bar lines removed)."""
    return "".join(c for c in pattern if c not in " |")


def step_tick(loop: Loop, step: int) -> int:
    """Tick of a 16th-note step, with the loop's swing applied to the off-beat 16ths."""
    step_ticks = TICKS_PER_BEAT / STEPS_PER_BEAT
    delay = loop.swing * step_ticks if step % 2 == 1 else 0.0
    return round(step * step_ticks + delay)


def loop_events(loop: Loop) -> list[tuple[int, int, mido.Message]]:
    """``(tick, order, message)`` for every note and setup message; order puts offs before ons."""
    events: list[tuple[int, int, mido.Message]] = []
    total_steps = loop.beats * STEPS_PER_BEAT
    drums = loop.drums
    events.append((0, 0, mido.Message("program_change", channel=DRUM_CHANNEL, program=drums.kit)))
    events.append((0, 0, mido.Message("control_change", channel=DRUM_CHANNEL, control=7, value=drums.volume)))
    events.append((0, 0, mido.Message("control_change", channel=DRUM_CHANNEL, control=91, value=20)))
    for drum, pattern in drums.patterns.items():
        steps = pattern_steps(pattern)
        for step in range(total_steps):
            char = steps[step % len(steps)]
            if char == ".":
                continue
            tick = step_tick(loop, step)
            events.append((tick, 2, mido.Message("note_on", channel=DRUM_CHANNEL, note=drum, velocity=VELOCITY[char])))
            events.append((tick + TICKS_PER_BEAT // 8, 1, mido.Message("note_off", channel=DRUM_CHANNEL, note=drum)))
    for part in loop.parts:
        events.append((0, 0, mido.Message("program_change", channel=part.channel, program=part.program)))
        events.append((0, 0, mido.Message("control_change", channel=part.channel, control=7, value=part.volume)))
        events.append((0, 0, mido.Message("control_change", channel=part.channel, control=91, value=part.reverb)))
        events.append((0, 0, mido.Message("control_change", channel=part.channel, control=93, value=0)))
        for note in part.notes:
            start = round(note.start * TICKS_PER_BEAT)
            end = round((note.start + note.length) * TICKS_PER_BEAT)
            for name in note.pitches.split():
                pitch = note_number(name)
                on = mido.Message("note_on", channel=part.channel, note=pitch, velocity=note.velocity)
                events.append((start, 2, on))
                events.append((end, 1, mido.Message("note_off", channel=part.channel, note=pitch)))
    return events


def loop_midi(loop: Loop) -> mido.MidiFile:
    """The loop as a type-0 MIDI file, with a marker event ``TAIL_SECONDS`` past its end."""
    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(loop.bpm), time=0))
    events = loop_events(loop)
    # A no-op controller keeps the player (and so the file render) going through the tail.
    tail_tick = loop.beats * TICKS_PER_BEAT + round(TAIL_SECONDS * loop.bpm / 60.0 * TICKS_PER_BEAT)
    events.append((tail_tick, 3, mido.Message("control_change", channel=15, control=110, value=0)))
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    return midi


def render_midi(midi_path: Path, wav_path: Path) -> np.ndarray:
    """Render a MIDI file with FluidSynth to float samples ``[channels, samples]`` at 44.1 kHz.

    Chorus is off; reverb is on (FluidSynth's reverb has no random state, so renders repeat
    exactly). Samples are written as 32-bit float, so no dither noise is added.
    """
    if shutil.which("fluidsynth") is None:
        raise SystemExit("make_seeds: fluidsynth is not installed; run scripts/setup.sh")
    if not SOUNDFONT.is_file():
        raise SystemExit(f"make_seeds: {SOUNDFONT} is missing; install fluid-soundfont-gm (scripts/setup.sh)")
    command = [
        "fluidsynth",
        "-n",
        "-i",
        "-q",
        "-r",
        str(SAMPLE_RATE),
        "-g",
        "0.5",
        "-C",
        "0",
        "-R",
        "1",
        "-O",
        "float",
        "-T",
        "wav",
        "-F",
        str(wav_path),
        str(SOUNDFONT),
        str(midi_path),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    audio, rate = soundfile.read(str(wav_path), dtype="float64", always_2d=True)
    if rate != SAMPLE_RATE:
        raise SystemExit(f"make_seeds: fluidsynth wrote {rate} Hz, expected {SAMPLE_RATE}")
    return audio.T


def wrap_loop(audio: np.ndarray, num_samples: int) -> np.ndarray:
    """Exactly ``num_samples`` samples: whatever rings past the end is added back from the start."""
    out = np.zeros((audio.shape[0], num_samples))
    for start in range(0, audio.shape[1], num_samples):
        chunk = audio[:, start : start + num_samples]
        out[:, : chunk.shape[1]] += chunk
    return out


def render_loop(loop: Loop, workdir: Path) -> np.ndarray:
    """The loop's audio: ``float32 [2, loop.num_samples]``, seamless, peaking at -1 dBFS."""
    midi_path = workdir / f"{loop.name}.mid"
    loop_midi(loop).save(str(midi_path))
    audio = wrap_loop(render_midi(midi_path, workdir / f"{loop.name}.render.wav"), loop.num_samples)
    peak = np.abs(audio).max()
    if peak == 0:
        raise SystemExit(f"make_seeds: {loop.name} rendered silent")
    return (audio * (PEAK / peak)).astype(np.float32)


def make_seed(loop: Loop, out_dir: Path, wav_dir: Path | None = None) -> Path:
    """Render ``loop`` and write its seed image ``out_dir/<name>.png``; returns the path."""
    with tempfile.TemporaryDirectory(prefix="make_seeds_") as tmp:
        audio = render_loop(loop, Path(tmp))
    if wav_dir is not None:
        wav_dir.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(wav_dir / f"{loop.name}.wav"), audio.T, SAMPLE_RATE, subtype="PCM_16")
    image = encode(audio, SAMPLE_RATE, loop=loop.loop_info)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{loop.name}.png"
    save_image(image, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render riffengine's seed loops and encode them as seed images.")
    parser.add_argument("names", nargs="*", help="loops to make (default: all)")
    parser.add_argument("-o", "--out-dir", type=Path, default=SEED_DIR, help=f"where the PNGs go (default {SEED_DIR})")
    parser.add_argument("--wav-dir", type=Path, help="also write each rendered loop as a WAV here")
    args = parser.parse_args(argv)
    by_name = {loop.name: loop for loop in LOOPS}
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown loop {', '.join(unknown)}; choose from {', '.join(by_name)}")
    for name in args.names or list(by_name):
        loop = by_name[name]
        path = make_seed(loop, args.out_dir, args.wav_dir)
        print(f"{path}: {loop.bars} bars of {loop.beats_per_bar}/4 at {loop.bpm:g} BPM ({loop.seconds:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
