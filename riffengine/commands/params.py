"""``riffengine params``: print or write the table of controllable parameters (Markdown)."""

from __future__ import annotations

import argparse

from riffengine.commands import print_or_write
from riffengine.control.params import parameters_markdown


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "params",
        help="list the controllable parameters",
        description="Print the table of controllable parameters (names, OSC addresses, "
        "ranges, defaults) as Markdown, the page docs/parameters.md holds.",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the page to FILE instead of printing it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return print_or_write(parameters_markdown(), args.output, "the parameter page")
