"""``riffengine encode``: audio file -> Riffusion spectrogram image."""

from __future__ import annotations

import argparse
from pathlib import Path

from riffengine.errors import UserError
from riffengine.spectrogram import LoopInfo, encode, save_image
from riffengine.spectrogram.audio_io import load_audio


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "encode",
        help="turn an audio file into a spectrogram image",
        description="Turn a wav/flac/ogg file into a Riffusion spectrogram PNG (with EXIF). "
        "With --bpm and --bars the audio is one loop: it is stretched to the model's 512 columns "
        "and its tempo is recorded, making a seed image.",
    )
    p.add_argument("audio", type=Path, help="input audio (wav, flac, ogg; any rate and channel count)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output PNG")
    p.add_argument("--stereo", action="store_true", help="keep two channels (G = left, B = right)")
    p.add_argument("--bpm", type=float, help="the loop's tempo; needs --bars")
    p.add_argument("--bars", type=int, help="how many bars the loop holds; needs --bpm")
    p.add_argument("--beats-per-bar", type=int, default=4, help="the loop's meter (default 4)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.set_defaults(func=run)


def loop_info(bpm: float | None, bars: int | None, beats_per_bar: int) -> LoopInfo | None:
    """The loop's tempo from the flags, or None; UserError for half or bad values."""
    if bpm is None and bars is None:
        return None
    if bpm is None or bars is None:
        raise UserError("--bpm and --bars go together: give both to make a seed loop, or neither")
    if not 20 <= bpm <= 400:
        raise UserError(f"--bpm {bpm:g} is out of range; give a tempo from 20 to 400")
    if not 1 <= bars <= 64:
        raise UserError(f"--bars {bars} is out of range; give 1 to 64 bars")
    if not 1 <= beats_per_bar <= 16:
        raise UserError(f"--beats-per-bar {beats_per_bar} is out of range; give 1 to 16")
    return LoopInfo(bpm, bars, beats_per_bar)


def run(args: argparse.Namespace) -> int:
    loop = loop_info(args.bpm, args.bars, args.beats_per_bar)
    audio, rate = load_audio(args.audio)
    if loop is not None:
        expected = loop.bars * loop.beats_per_bar * 60.0 / loop.bpm
        actual = audio.shape[-1] / rate
        if abs(actual - expected) > 0.05 * expected:
            raise UserError(
                f"{args.audio}: lasts {actual:.3f} s but {loop.bars} bars at {loop.bpm:g} BPM last "
                f"{expected:.3f} s; trim the loop or fix --bpm/--bars"
            )
    try:
        image = encode(audio, rate, stereo=args.stereo, loop=loop, device=args.device)
    except UserError as exc:
        raise UserError(f"{args.audio}: {exc}") from None
    save_image(image, args.output)
    print(
        f"{args.output}: {image.width} columns, {'stereo' if args.stereo else 'mono'}"
        + (f", loop of {loop.bars} bars at {loop.bpm:g} BPM" if loop else "")
    )
    return 0
