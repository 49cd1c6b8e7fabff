"""``riffengine events``: print or write the table of engine events (Markdown)."""

from __future__ import annotations

import argparse

from riffengine.commands import print_or_write
from riffengine.events import events_markdown


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "events",
        help="list the events the engine publishes",
        description="Print the table of engine events (kinds, fields, meaning) as Markdown, "
        "the page docs/events.md holds.",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the page to FILE instead of printing it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return print_or_write(events_markdown(), args.output, "the events page")
