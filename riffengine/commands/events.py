"""``riffengine events``: print or write the table of engine events (Markdown)."""

from __future__ import annotations

import argparse
import sys

from riffengine.errors import UserError
from riffengine.events import events_markdown


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "events",
        help="list the events the engine publishes",
        description="Print the table of engine events (kinds, fields, meaning) as Markdown, "
                    "the page docs/events.md holds.",
    )
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the page to FILE instead of printing it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    text = events_markdown()
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        raise UserError(f"{args.output}: cannot write the events page ({exc.strerror})") from None
    return 0
