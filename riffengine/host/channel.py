"""The control channel from the engine to the host: small JSON datagrams, off the audio path.

The audio itself goes through the shared-memory ring (:mod:`riffengine.host.shmring`). This
channel carries what the host must act on at once or keep: the output gain, a panic, the loops
to hold, and the engine's goodbye. A datagram socket in Linux's abstract namespace (no file to
clean up; it goes with the host), named after the ring. Loop audio too large for a datagram is
written to a file in ``/dev/shm`` whose name the message carries; the host reads it and
removes it.

Messages (``kind`` and fields):

- ``gain``: ``gain`` (linear), ``muted`` — heard in the host's next period;
- ``panic``: ``path``, ``origin``, ``until`` — crossfade to that loop at once
  (:class:`~riffengine.audio.panic.PanicRequest`, stream frame numbering);
- ``hold``: ``start``, ``path`` (None: silence from ``start``), ``clip_id`` — a loop starts at
  stream frame ``start``; the host plays it by itself whenever the ring has nothing;
- ``bye``: ``code`` — the engine ends on purpose (the host ends too, instead of restarting it);
- ``safe``: ``path`` (None: there is none), ``name`` — the bank's safe loop at the output rate,
  for a ``/riff/panic`` that reaches the host while no engine listens;
- ``osc_take``: the engine starts listening on the OSC socket the host handed it: the host stops
  reading it and answers ``osc_kept`` (:mod:`riffengine.host.standin`).

And from the host to the engine (best effort: an engine that is away misses it):

- ``record_failed``: ``path``, ``reason`` — the recording failed (the audio goes on); the engine
  reports it (events log, ``/riff/fail /riff/record``);
- ``osc_kept``: ``packets`` — the OSC packets that came while no engine listened, oldest first,
  each ``[base64 data, sender host, sender port]``; the engine applies them before any newer one.
"""

from __future__ import annotations

import json
import os
import socket
from itertools import count
from typing import Any

import numpy as np

from riffengine.host.shmring import SHM_DIR

MAX_DATAGRAM = 65536
"""The largest message (the OSC packets handed over in ``osc_kept`` are bounded below it)."""
KINDS = ("gain", "panic", "hold", "bye", "safe", "osc_take", "record_failed", "osc_kept")
HOST, ENGINE = "control", "engine"


def address(ring_name: str, end: str = HOST) -> str:
    """The abstract socket address of the host that owns ring ``ring_name`` (``end`` HOST),
    or of its engine (ENGINE)."""
    return f"\0{ring_name}.{end}"


def encode(kind: str, **fields: object) -> bytes:
    if kind not in KINDS:
        raise ValueError(f"unknown host message kind {kind!r}; one of {', '.join(KINDS)}")
    data = json.dumps({"kind": kind, **fields}).encode()
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"host message {kind!r} is {len(data)} bytes, over {MAX_DATAGRAM}")
    return data


def decode(data: bytes) -> dict[str, Any]:
    """A message as a dict; ValueError for anything that is not one."""
    try:
        message = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"host message is not JSON: {exc}") from None
    if not isinstance(message, dict) or message.get("kind") not in KINDS:
        raise ValueError(f"host message has no known kind: {str(message)[:80]}")
    return message


class Sender:
    """The engine's end: sends messages, and loop audio through files in ``/dev/shm``."""

    def __init__(self, ring_name: str, to: str = HOST) -> None:
        self.ring_name = ring_name
        self._to = address(ring_name, to)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._files = count()

    def send(self, kind: str, **fields: object) -> None:
        """Send one message; OSError if nobody listens there (the host, or an engine, is gone)."""
        self._sock.sendto(encode(kind, **fields), self._to)

    def put_frames(self, frames: np.ndarray) -> str:
        """Write ``frames`` (float32 [n, channels]) to a new file the host will read; its path."""
        path = os.path.join(SHM_DIR, f"{self.ring_name}-{os.getpid()}-{next(self._files)}.f32")
        np.ascontiguousarray(frames, dtype=np.float32).tofile(path)
        return path

    def close(self) -> None:
        self._sock.close()


class Receiver:
    """A bound socket (the host's, or with ``end`` ENGINE the engine's); :meth:`receive` blocks up
    to ``timeout`` seconds (0: not at all)."""

    def __init__(self, ring_name: str, end: str = HOST) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(address(ring_name, end))

    def fileno(self) -> int:
        return self._sock.fileno()

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None after ``timeout``; ValueError for a malformed one."""
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(MAX_DATAGRAM)
        except (TimeoutError, BlockingIOError):
            return None
        return decode(data)

    def close(self) -> None:
        self._sock.close()


def take_frames(path: str, channels: int) -> np.ndarray:
    """Host: read and remove a frames file written by :meth:`Sender.put_frames`."""
    try:
        frames = np.fromfile(path, dtype=np.float32)
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    if frames.size % channels:
        raise ValueError(f"{path}: {frames.size} samples is not a whole number of {channels}-channel frames")
    return frames.reshape(-1, channels)
