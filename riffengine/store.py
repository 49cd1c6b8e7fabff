"""The state store: the one place the current State lives and changes.

Control surfaces (OSC, MIDI, Link, the CLI) call :meth:`StateStore.apply`; the planner and the
feedback publishers subscribe. Thread rule: use it from the asyncio loop's thread only (a
MIDI or Link thread hands its change over with ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from riffengine import state as st
from riffengine.state import Changes, State

log = logging.getLogger(__name__)

#: Called as ``listener(old, new, source)`` after every change that moved the version.
Listener = Callable[[State, State, str], None]


class StateStore:
    """Holds the current :class:`State` and tells listeners when it changes."""

    def __init__(self, initial: State) -> None:
        self._state = initial
        self._listeners: list[Listener] = []

    @property
    def state(self) -> State:
        return self._state

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def apply(self, changes: Changes, source: str = "internal") -> State:
        """Validate and apply changes all or nothing (UserError on a bad one); notify listeners."""
        return self._replace(st.apply_many(self._state, changes), source)

    def recall_scene(self, scene: Changes, number: int | None = None, source: str = "internal") -> State:
        return self._replace(st.recall_scene(self._state, scene, number), source)

    def _replace(self, new: State, source: str) -> State:
        old, self._state = self._state, new
        if new is not old:
            for listener in list(self._listeners):
                try:
                    listener(old, new, source)
                except Exception:  # a broken listener must not stop the others or the caller
                    log.exception("state listener %r failed", listener)
        return new


def changed_keys(old: State, new: State) -> list[tuple[str, object]]:
    """``(key, value)`` for every parameter (or slot, as ``name/slot``) that differs."""
    out: list[tuple[str, object]] = []
    for name, value in new.values.items():
        before = old.values.get(name)
        if before == value:
            continue
        if isinstance(value, tuple):
            # The same parameter's old value: a tuple as well, or None for a new parameter.
            old_slots = cast("tuple[object, ...] | None", before)
            out.extend((f"{name}/{i}", v) for i, v in enumerate(value) if old_slots is None or old_slots[i] != v)
        else:
            out.append((name, value))
    return out
