"""Engine events: one small bus that the events log, OSC notifications and status read.

Events are published from the asyncio loop (never from the audio callback). Kinds in use:
``beat``, ``loop_scheduled``, ``loop_started``, ``render``, ``render_failed``, ``underrun``,
``xrun`` (late audio callbacks: clicks), ``state``, ``tempo``, ``fail``, ``error``,
``warning``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One thing that happened: a kind, its data, and the wall-clock time."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


class EventBus:
    """Synchronous publish/subscribe on the loop's thread; a failing subscriber is logged."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def publish(self, kind: str, **data: Any) -> Event:
        event = Event(kind, data)
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", fn, kind)
        return event
