"""The ``riffengine`` command line: dispatches to ``riffengine.commands.<name>``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from riffengine.errors import UserError

# Subcommand modules, in the order ``--help`` lists them.
COMMANDS = (
    "encode",
    "decode",
    "check",
    "params",
    "render",
    "tiny_model",
    "run",
    "devices",
    "bank",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riffengine",
        description="Live-performance audio engine for the Riffusion text-to-music model.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"riffengine.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"riffengine: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
