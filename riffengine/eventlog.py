"""The events log (``--events FILE.jsonl``): one JSON object per engine event, one per line.

Each line is ``{"time": <unix seconds>, "kind": <kind>, ...data}``, written and flushed as the
event is published, so the file is complete up to the last event even if the process is
killed. Values that are not JSON (a PIL image, an array) are left out; tuples become lists.

Thread rule: it is an :class:`~riffengine.events.EventBus` subscriber, so it runs on the loop's
thread. It is never called from the audio callback. A write error is logged once and the log
stops; the show goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import IO, Any

from riffengine.errors import UserError
from riffengine.events import Event

log = logging.getLogger(__name__)

_SKIP = object()


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data, or ``_SKIP`` when it has no JSON form."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        out = {str(k): to_json(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _SKIP}
    if isinstance(value, (list, tuple)):
        return [v for v in (to_json(v) for v in value) if v is not _SKIP]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    try:  # numpy scalars
        import numpy as np

        if isinstance(value, np.generic):
            return to_json(value.item())
    except ImportError:  # pragma: no cover
        pass
    return _SKIP


def event_line(event: Event) -> str:
    """One JSON line (no newline) for ``event``."""
    data = to_json(dict(event.data))
    return json.dumps({"time": round(event.time, 6), "kind": event.kind, **data})


class EventLog:
    """Writes every event it is given to a JSONL file, flushed per line."""

    def __init__(self, path: str | os.PathLike[str], append: bool = False) -> None:
        """``append``: add to the file (an engine under the audio host, which started it)."""
        self.path = Path(path)
        self.lines = 0
        self.failed = False
        try:
            self._file: IO[str] = open(self.path, "a" if append else "w", encoding="utf-8")
        except OSError as exc:
            raise UserError(
                f"cannot write the events log {str(self.path)!r}: {exc.strerror or exc}; "
                "choose a path in a writable folder that exists (--events FILE.jsonl)"
            ) from None

    def __call__(self, event: Event) -> None:
        if self.failed or self._file.closed:
            return
        try:
            self._file.write(event_line(event) + "\n")
            self._file.flush()
            self.lines += 1
        except (OSError, ValueError) as exc:
            self.failed = True
            log.error("events log %s: %s; no more events are logged", self.path, exc)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All events of a JSONL events log (for tests and diagnosis); a last line still being
    written (no newline yet) is left for the next read."""
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.endswith("\n") and line.strip()]
