"""``riffengine tiny-model DIR``: write a tiny random model in the real Riffusion layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from riffengine.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tiny-model",
        help="write a tiny random model for tests and rehearsals",
        description="Write a small randomly initialised model with exactly the layout of "
        "riffusion/riffusion-model-v1 (unet, vae, text_encoder, tokenizer, "
        "scheduler). It makes noise, not music: use it to wire things up without "
        "the real weights (--model DIR).",
    )
    parser.add_argument("folder", metavar="DIR", help="new or empty folder to write")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from riffengine.render.model import build_tiny_model

    folder = Path(args.folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder} already exists and is not an empty folder: choose a new one")
    build_tiny_model(folder, seed=args.seed)
    print(f"{folder}: tiny model written (use --model {folder})")
    return 0
