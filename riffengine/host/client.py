"""The engine's side of the audio host: an output that plays through the host process.

:class:`HostOutput` looks to the engine like any real-time output (``ring``, ``live``,
``panic``, ``sample_rate``, ``xruns``, the DAC clock), but the stream, the gain, the panic
crossfade and the recorder are the host's (:mod:`riffengine.host.process`). The engine writes
frames into the shared-memory ring through :class:`RingWriter` and tells the host, over the
control channel (:mod:`riffengine.host.channel`), the gain, a panic, and every loop it starts
(so the host can play on by itself).

Frame numbering: the engine's timeline frames are the host's stream frames. The host's stream
never waits for the engine: if the engine falls behind (a stall) or joins a stream already
playing (a restart), :meth:`RingWriter.behind` says so and the engine skips its timeline ahead
(:meth:`RingWriter.restart_at`); meanwhile the host plays the held loop in the same phase.

Thread rules: loop thread only.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

import numpy as np

from riffengine.audio.panic import PanicRequest
from riffengine.host.channel import ENGINE, Receiver, Sender
from riffengine.host.shmring import ShmRing

log = logging.getLogger(__name__)

SKIP_AHEAD_SECONDS = 0.05
"""How far ahead of the host's position the engine rejoins its stream (a few periods)."""


PR_SET_PDEATHSIG = 1


def die_with_host(host_pid: int) -> None:
    """Have the kernel kill this process when the host (its parent) dies, so that no engine is
    left behind an audio host killed with SIGKILL. UserError when the host is already gone."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the engine notices with its heartbeat instead
        pass
    if os.getppid() != host_pid:
        from riffengine.errors import UserError

        raise UserError(f"the audio host (pid {host_pid}) that started this engine is gone")


class RingWriter:
    """The producer's view of the host's ring, with the engine's RingBuffer calls."""

    def __init__(self, ring: ShmRing) -> None:
        self.ring = ring
        self.channels = ring.channels
        self.capacity = ring.capacity

    @property
    def frames_read(self) -> int:
        """The stream frame the host is playing (it advances whatever the ring holds)."""
        return self.ring.frames_read

    @property
    def frames_written(self) -> int:
        return self.ring.frames_written

    @property
    def frames_output(self) -> int:
        return self.ring.frames_read

    @property
    def underruns(self) -> int:
        return self.ring.field("underruns")

    @property
    def underrun_frames(self) -> int:
        return self.ring.field("underrun_frames")

    def available(self) -> int:
        return max(0, self.ring.frames_written - self.ring.frames_read)

    def free(self) -> int:
        return self.ring.writable()

    def write(self, frames: np.ndarray) -> int:
        return self.ring.write(np.ascontiguousarray(frames, dtype=np.float32))

    @property
    def host_started(self) -> bool:
        """False while the host's stream waits for its first frames (a fresh start)."""
        return bool(self.ring.field("host_started"))

    def behind(self, margin: int) -> bool:
        """True when the host plays at or past what the engine has written (plus ``margin``)."""
        return self.ring.frames_read + margin > self.ring.frames_written

    def restart_at(self, frame: int) -> None:
        self.ring.restart_at(frame)

    def fade_unread(self, skip: int, length: int) -> int | None:
        """The host fades out itself when the engine ends: nothing to do here."""
        return None


class _RemoteGain:
    """``output.live`` for the engine: the gain and mute go to the host, heard in its next period."""

    def __init__(self, send: Callable[..., None]) -> None:
        self._send = send

    def set(self, gain: float, muted: bool = False) -> None:
        self._send("gain", gain=float(gain), muted=bool(muted))


class _RemotePanic:
    """``output.panic`` for the engine: assigning ``request`` makes the host crossfade at once."""

    def __init__(self, owner: HostOutput) -> None:
        self._owner = owner

    @property
    def request(self) -> None:
        return None

    @request.setter
    def request(self, request: PanicRequest) -> None:
        path = self._owner.sender.put_frames(request.frames)
        self._owner.send("panic", path=path, origin=int(request.origin), until=int(request.until))


class HostOutput:
    """A real-time output whose stream is the host process's (see the module docstring)."""

    realtime = True
    host_api = "riffengine host"

    def __init__(self, ring_name: str) -> None:
        try:
            ring = ShmRing.attach(ring_name)
        except (FileNotFoundError, ValueError) as exc:
            from riffengine.errors import UserError

            raise UserError(f"cannot attach to the audio host: {exc}") from None
        die_with_host(ring.field("host_pid"))
        self.shm = ring
        self.ring = RingWriter(ring)
        self.sample_rate = ring.sample_rate
        self.channels = ring.channels
        self.sender = Sender(ring_name)
        self.inbox = Receiver(ring_name, ENGINE)
        """What the host tells the engine (``record_failed``): read it when :meth:`fileno` is ready."""
        self.live = _RemoteGain(self.send)
        self.panic = _RemotePanic(self)
        self.recorder = None
        self.lost = False
        self.lost_reason = ""
        self.callbacks = 0
        self.failed_sends = 0

    # --- what the engine reads ----------------------------------------------------------------

    @property
    def xruns(self) -> int:
        return self.shm.field("xruns")

    @property
    def frames_output(self) -> int:
        return self.shm.frames_read

    @property
    def underruns(self) -> int:
        return self.shm.field("underruns")

    @property
    def last_dac_frame(self) -> int:
        return self.shm.dac()[0]

    @property
    def last_dac_time(self) -> float:
        """The host's DAC stamp, as this process's ``time.monotonic()`` (one clock per machine)."""
        return self.shm.dac()[1] / 1e9

    def callback_durations_ns(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def jack_port_names(self) -> list[str]:
        return []

    # --- what the engine tells the host ---------------------------------------------------------

    def send(self, kind: str, **fields: object) -> None:
        """Send to the host; a host that is gone is logged once per streak (the host restarts us)."""
        try:
            self.sender.send(kind, **fields)
        except OSError as exc:
            self.failed_sends += 1
            if self.failed_sends == 1:
                log.error("the audio host does not answer (%s)", exc)

    def hold(self, start: int, frames: np.ndarray | None, clip_id: str = "") -> None:
        """A loop starts at stream frame ``start`` (None: silence from there): the host keeps it."""
        path = None if frames is None else self.sender.put_frames(frames)
        self.send("hold", start=int(start), path=path, clip_id=clip_id)

    def beat(self) -> bool:
        """The engine's heartbeat (the host restarts an engine whose heart stops); False when the
        host that started us is gone (then the engine should end)."""
        self.shm.engine_beat()
        return os.getppid() == self.shm.field("host_pid")

    def fileno(self) -> int:
        return self.inbox.fileno()

    def messages(self) -> list[dict[str, Any]]:
        """The host's messages waiting now (never blocks); malformed ones are logged and left out."""
        out: list[dict[str, Any]] = []
        while True:
            try:
                message = self.inbox.receive(0)
            except ValueError as exc:
                log.warning("from the audio host: %s", exc)
                continue
            if message is None:
                return out
            out.append(message)

    def hand_safe_loop(self, frames: np.ndarray | None, name: str = "") -> None:
        """The bank's safe loop at the output rate (None: there is none), for a panic the host
        plays by itself while no engine listens."""
        path = None if frames is None else self.sender.put_frames(frames)
        self.send("safe", path=path, name=name)

    def bye(self, code: int = 0) -> None:
        self.send("bye", code=int(code))

    # --- the output calls ------------------------------------------------------------------------

    def open(self) -> None:
        pass

    def start(self) -> None:
        self.beat()

    def stop(self) -> None:
        pass

    def reopen(self) -> bool:
        return True

    def close(self) -> None:
        self.sender.close()
        self.inbox.close()
        try:
            self.shm.close()
        except (BufferError, ValueError):
            pass
