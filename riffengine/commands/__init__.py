"""Subcommands of the ``riffengine`` CLI, one module each.

Each module defines ``register(subparsers)`` (adds its parser and sets ``func``) and the
function it points at, which takes the parsed arguments and returns an exit status.
"""

from __future__ import annotations

import sys

from riffengine.errors import UserError


def print_or_write(text: str, output: str | None, what: str) -> int:
    """A generated page (``what``, e.g. "the events page") to stdout, or to ``output``; 0.
    UserError naming the file when it cannot be written."""
    if not output:
        sys.stdout.write(text)
        return 0
    try:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        raise UserError(f"{output}: cannot write {what} ({exc.strerror})") from None
    return 0
