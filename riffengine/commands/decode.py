"""``riffengine decode``: spectrogram image -> audio file."""

from __future__ import annotations

import argparse
from pathlib import Path

from riffengine.errors import UserError
from riffengine.spectrogram import decode, load_image
from riffengine.spectrogram.audio_io import save_audio
from riffengine.spectrogram.image import check_image_shape, image_params
from riffengine.spectrogram.phase import DEFAULT_ITERATIONS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decode",
        help="turn a spectrogram image into audio",
        description="Turn a Riffusion spectrogram image (L, P or RGB; with or without EXIF) into "
        "audio, peak-normalised to -1 dBFS. A 512-column image gives 225351 samples at 44.1 kHz.",
    )
    p.add_argument("image", type=Path, help="input spectrogram image")
    p.add_argument("-o", "--output", type=Path, required=True, help="output audio (.wav, .flac, .ogg)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument(
        "--iters", type=int, default=DEFAULT_ITERATIONS, help=f"Griffin-Lim iterations (default {DEFAULT_ITERATIONS})"
    )
    p.set_defaults(func=run)


def check_device(device: str) -> str:
    """The device name, or UserError if it is not usable here."""
    import torch

    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        return device
    raise UserError(f"--device {device}: unknown device; use cpu or cuda[:N]")


def run(args: argparse.Namespace) -> int:
    device = check_device(args.device)
    if not 1 <= args.iters <= 1000:
        raise UserError(f"--iters {args.iters}: give 1 to 1000 iterations")
    image = load_image(args.image)
    params = image_params(image)
    check_image_shape(image, params, str(args.image))
    audio, rate = decode(image, device=device, n_iter=args.iters)
    save_audio(args.output, audio, rate)
    print(f"{args.output}: {audio.shape[-1]} samples, {audio.shape[0]} channel(s), {rate} Hz")
    return 0
