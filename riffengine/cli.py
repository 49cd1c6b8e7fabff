"""The ``riffengine`` command line: dispatches to ``riffengine.commands.<name>``."""

from __future__ import annotations

import argparse
import importlib
import sys

from riffengine.errors import UserError
from riffengine.logs import setup_logging

# Subcommand modules, in the order ``--help`` lists them.
COMMANDS = (
    "encode",
    "decode",
    "check",
    "params",
    "events",
    "render",
    "tiny_model",
    "run",
    "devices",
    "bank",
)


def requested_command(argv: list[str]) -> str | None:
    """The subcommand module ``argv`` names (its first non-option word), or None if it names none."""
    for arg in argv:
        if not arg.startswith("-"):
            name = arg.replace("-", "_")
            return name if name in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with just ``only``: a command imports only what it
    needs (``decode`` starts without the renderer, the config or the control modules)."""
    parser = argparse.ArgumentParser(
        prog="riffengine",
        description="Live-performance audio engine for the Riffusion text-to-music model.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        importlib.import_module(f"riffengine.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(requested_command(argv))
    args = parser.parse_args(argv)
    args.argv = list(argv)  # the command line as given (the audio host passes it on)
    setup_logging("DEBUG" if args.verbose else "INFO")
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
