"""Logging for the daemon: stderr, levels, one line per event, journald priorities.

:func:`setup_logging` installs one handler on the root logger that writes each record as one
line to stderr:

- in a terminal or a file: ``2024-05-01 21:03:04,512 WARNING riffengine.control.osc: ...``;
- under systemd's journal (:func:`under_journald`): ``<4>riffengine.control.osc: ...``; the
  ``<N>`` prefix is the syslog priority, which journald reads as the entry's level, and
  journald adds the time itself.

Expected faults (:class:`~riffengine.errors.UserError`, and the classes named in
:data:`EXPECTED_FAULTS` or added with :func:`expect`) are logged with their message only,
even from ``log.exception``: a bad OSC message or a failed render is news, not a bug. Any other
exception keeps its traceback, folded into the same line (`` | `` between its lines), so one
event is one journal entry.

Thread rule: logging is thread-safe, but never log from the audio callback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Mapping
from typing import IO, TextIO

from riffengine.errors import UserError

PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
"""Python level -> syslog priority (7 debug, 6 info, 4 warning, 3 error, 2 critical)."""

EXPECTED_FAULTS: set[str] = {
    "UserError",  # anything a user got wrong
    "BadAudio",  # a render returned NaN or silence
    "WarmUpFailed",  # the first render failed
    "OutOfMemoryError",  # torch.cuda.OutOfMemoryError
    "PortAudioError",  # the audio device or JACK server went away
    "JackError",
    "ClipDropped",
}
"""Names of exception classes (or of any base class) that are faults the engine survives."""

_expected_classes: set[type[BaseException]] = {UserError}


def expect(*classes: type[BaseException]) -> None:
    """Mark more exception classes as expected faults (message only, no traceback)."""
    _expected_classes.update(classes)


def is_expected(exc: BaseException) -> bool:
    """True for an expected fault: a class marked with :func:`expect` or named in the set."""
    if isinstance(exc, tuple(_expected_classes)):
        return True
    return any(cls.__name__ in EXPECTED_FAULTS for cls in type(exc).__mro__)


def under_journald(env: Mapping[str, str] | None = None, stream: IO[str] | None = None) -> bool:
    """True when ``stream`` (default stderr) goes to systemd's journal.

    ``JOURNAL_STREAM`` (``DEVICE:INODE``) names the journal's stream; when the stream's file can
    be examined it must match (output redirected elsewhere gets plain lines). Without
    ``JOURNAL_STREAM``, ``INVOCATION_ID`` (set for every systemd unit) is taken as a yes.
    """
    env = os.environ if env is None else env
    stream = sys.stderr if stream is None else stream
    journal = env.get("JOURNAL_STREAM", "")
    if journal:
        try:
            st = os.fstat(stream.fileno())
        except (AttributeError, OSError, ValueError):
            return True  # nothing to compare: trust systemd
        return journal == f"{st.st_dev}:{st.st_ino}"
    return bool(env.get("INVOCATION_ID"))


def one_line(text: str) -> str:
    """``text`` with its line breaks folded into `` | `` (trailing blanks dropped)."""
    lines = [line.rstrip() for line in str(text).splitlines()]
    return " | ".join(line for line in lines if line)


class LineFormatter(logging.Formatter):
    """One line per record; ``<N>`` priority prefix when ``journald``; see the module doc."""

    def __init__(self, journald: bool = False) -> None:
        fmt = "%(name)s: %(message)s" if journald else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        super().__init__(fmt)
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        saved = record.exc_info, record.exc_text, record.stack_info
        try:
            record.exc_info, record.exc_text, record.stack_info = None, None, None
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        if exc is not None:
            if is_expected(exc):
                line += f": {exc}" if str(exc) and str(exc) not in line else ""
            else:
                line += " | " + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        line = one_line(line)
        if self.journald:
            line = f"<{PRIORITIES.get(record.levelno, _nearest(record.levelno))}>{line}"
        return line


def _nearest(level: int) -> int:
    """The syslog priority of a custom level: that of the nearest standard level below it."""
    below = [lvl for lvl in PRIORITIES if lvl <= level]
    return PRIORITIES[max(below)] if below else 7


class StderrHandler(logging.StreamHandler[TextIO]):
    """A handler that writes to whatever ``sys.stderr`` is when a record comes, not to the
    stream it was when the handler was made (a replaced or closed stderr is not an error)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def setup_logging(
    level: str | int = "INFO",
    stream: IO[str] | None = None,
    env: Mapping[str, str] | None = None,
    journald: bool | None = None,
) -> logging.Handler:
    """Send every log record to ``stream`` (default: the current stderr), one line each, from
    ``level`` up.

    ``journald`` None detects it (:func:`under_journald`). Calling it again replaces the
    handler it installed before (so a reload may change the level); other handlers stay.
    A plain stderr handler left by ``logging.basicConfig`` is removed too (no line twice).
    Returns the handler.
    """
    if journald is None:
        journald = under_journald(env, sys.stderr if stream is None else stream)
    if isinstance(level, str):
        name = level.upper()
        if name not in logging.getLevelNamesMapping():
            raise UserError(f"log level {level!r} is unknown; use DEBUG, INFO, WARNING or ERROR")
        level = logging.getLevelNamesMapping()[name]
    root = logging.getLogger()
    for old in [
        h
        for h in root.handlers
        if getattr(h, "_riffengine", False) or (type(h) is logging.StreamHandler and h.stream in (sys.stderr, stream))
    ]:
        root.removeHandler(old)
    handler: logging.Handler = StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(LineFormatter(journald))
    handler._riffengine = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return handler
