"""``riffengine params``: print or write the table of controllable parameters (Markdown)."""

from __future__ import annotations

import argparse
import sys

from riffengine.control.params import parameters_markdown
from riffengine.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "params",
        help="list the controllable parameters",
        description="Print the table of controllable parameters (names, OSC addresses, "
                    "ranges, defaults) as Markdown, the page docs/parameters.md holds.",
    )
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the page to FILE instead of printing it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    text = parameters_markdown()
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        raise UserError(f"{args.output}: cannot write the parameter page ({exc.strerror})") from None
    return 0
