"""A single-producer/single-consumer ring of float32 frames in shared memory, with a header of
counters: how the engine process hands audio to the host process.

The host creates the segment (:meth:`ShmRing.create`, a file in ``/dev/shm``) and gives its name
to the engine, which attaches (:meth:`ShmRing.attach`). The engine is the only producer
(:meth:`~ShmRing.write`), the host's audio callback the only consumer
(:meth:`~ShmRing.read_into`). All state lives in the segment, none in the handles: an engine
that dies (SIGKILL included) leaves the segment and its counters as they were, and a new engine
attaches and continues from ``frames_written`` (frames the dead one stored but had not yet
counted are not there). One producer at a time: the host ends a hung engine before it starts the
next. ``/dev/shm`` files rather than :mod:`multiprocessing.shared_memory`: on Python 3.11 every
attaching process registers the segment with its resource tracker, which unlinks it when that
process ends, so a killed engine would take the host's ring with it.

Layout (version 1, native byte order): a 4096-byte header of int64 slots, then ``capacity``
frames of ``channels`` interleaved float32 samples. The producer's counters and the consumer's
are 64 bytes (a cache line) apart. See :data:`FIELDS`.

Counters only grow: ``frames_written - frames_read`` is the fill (0..capacity), frame ``k`` is at
``k % capacity``. Each counter has one writer: the engine writes ``frames_written``,
``valid_from`` and its heartbeat; the host writes everything else.

Two ways to consume. :meth:`read_into` takes what there is and pauses the stream on a
shortage. :meth:`read_at` is the audio host's: its stream never waits, so ``frames_read`` is
the stream position and may pass ``frames_written`` (the engine stalled or died); the host plays
something else there, and the engine rejoins ahead of it with :meth:`restart_at`, which moves
``valid_from`` (the first frame the ring offers) and ``frames_written`` together. The engine
stores ``valid_from`` before the count (with the fence below on arm64) and the host loads the
count first, so the host never takes stale slots for new frames.

Memory ordering. Each counter is an aligned int64 in a numpy view of the header; numpy stores
an aligned native int64 element with one C assignment, which compiles to one 8-byte store, and
loads it with one 8-byte load: single-copy atomic on x86-64 and arm64, so never torn. What must
be ordered:

1. producer: the sample stores before the ``frames_written`` store that publishes them;
2. consumer: the ``frames_written`` load before the sample loads it allows;
3. consumer: the sample loads before the ``frames_read`` store that frees their slots;
4. producer: the ``frames_read`` load before the sample stores into the freed slots.

No compiler reorders these: each is a separate call from the interpreter into numpy. The GIL
orders nothing here (it is per process). The hardware: x86-64 is TSO, which never makes stores
visible out of order (1), never reorders a load with a later load (2) or a later store (3, 4):
no fence is needed. arm64 may reorder all four. The real-time side (the host's callback) must
not pay for that, so all fencing is on the engine side, with
``membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`` (Linux 4.16 or later): when it returns, every
running thread of every registered process (the host registers when it creates the ring) has
run a full memory barrier, and so has the caller; a thread that was not running has passed the
scheduler's full barrier. The producer calls it after loading ``frames_read`` and before
storing into the freed slots (3 and 4: the consumer's barrier falls either after its sample
loads, which then completed before the producer's stores, or before them, and so also before
its ``frames_read`` store, which the producer could not have seen yet), and again between its
sample stores and ``frames_written`` (1 and 2: a consumer barrier before both loads lets them
see the samples; one between the loads orders them; one after both means the consumer cannot
yet see the new count). The engine reads the host's two-word DAC stamp under a sequence count
with the same barrier between its loads, so the host writes it with plain stores. ``fences``
chooses: ``None`` (default) fences off x86-64 only, ``True`` always (the tests use it on
x86-64 too), ``False`` never. Where the system call is missing, :meth:`create` and
:meth:`attach` fail rather than run unordered.

Real-time rules: :meth:`read_into`, :meth:`set_dac`, :meth:`host_beat` and
:meth:`count_xrun` are for the host's audio callback: no lock, no system call, no logging, no
allocation of sample memory (only small numpy views), and they never raise (they hold the GIL
like any Python code). Everything else may block briefly or raise.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = int.from_bytes(b"RIFFRING", "little")
VERSION = 1
HEADER_BYTES = 4096
SHM_DIR = "/dev/shm"
MAX_CHANNELS = 64

FIELDS = {
    # identity, written once by the host at create
    "magic": 0,
    "version": 1,
    "capacity": 2,
    "channels": 3,
    "sample_rate": 4,
    "host_pid": 5,
    "host_fenced": 6,
    # the engine's line
    "frames_written": 8,
    "engine_heartbeat_ns": 9,
    "engine_attaches": 10,
    "engine_pid": 11,
    "valid_from": 12,
    # the host's line
    "frames_read": 16,
    "frames_output": 17,
    "underruns": 18,
    "underrun_frames": 19,
    "xruns": 20,
    "host_heartbeat_ns": 21,
    "dac_seq": 22,
    "dac_frame": 23,
    "dac_time_ns": 24,
    "engine_restarts": 25,
    "held_frames": 26,
    "outputs_lost": 27,
    "host_started": 28,
}
"""Header slot (int64 index) of each field. Heartbeats and DAC time are ``time.monotonic_ns()``."""

_F = FIELDS
_MEMBARRIER_NR = {"x86_64": 324, "amd64": 324, "aarch64": 283, "arm64": 283}
_MEMBARRIER_CMD_QUERY = 0
_MEMBARRIER_CMD_GLOBAL_EXPEDITED = 1 << 1
_MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2


@dataclass(frozen=True)
class Header:
    """A snapshot of the header's fields (not atomic as a whole; each field is)."""

    magic: int
    version: int
    capacity: int
    channels: int
    sample_rate: int
    host_pid: int
    host_fenced: int
    frames_written: int
    engine_heartbeat_ns: int
    engine_attaches: int
    engine_pid: int
    valid_from: int
    frames_read: int
    frames_output: int
    underruns: int
    underrun_frames: int
    xruns: int
    host_heartbeat_ns: int
    dac_seq: int
    dac_frame: int
    dac_time_ns: int
    engine_restarts: int
    held_frames: int
    outputs_lost: int
    host_started: int


class _Membarrier:
    """``membarrier(2)`` through libc's ``syscall``; ``available`` says whether it works here."""

    def __init__(self) -> None:
        self.nr = _MEMBARRIER_NR.get(platform.machine().lower())
        self._syscall: Any = None
        self.available = False
        if self.nr is None:
            return
        try:
            self._syscall = ctypes.CDLL(None, use_errno=True).syscall
        except (OSError, AttributeError):
            return
        mask = self._syscall(self.nr, _MEMBARRIER_CMD_QUERY, 0)
        needed = _MEMBARRIER_CMD_GLOBAL_EXPEDITED | _MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED
        self.available = mask >= 0 and mask & needed == needed

    def register(self) -> None:
        """Make this process a target of other processes' GLOBAL_EXPEDITED barriers."""
        if self._syscall(self.nr, _MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0) != 0:
            raise OSError(ctypes.get_errno(), "membarrier(REGISTER_GLOBAL_EXPEDITED) failed")

    def fence(self) -> None:
        """A full barrier here and on every running thread of the registered processes."""
        if self._syscall(self.nr, _MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0) != 0:
            raise OSError(ctypes.get_errno(), "membarrier(GLOBAL_EXPEDITED) failed")


_membarrier: _Membarrier | None = None


def _barrier_for(fences: bool | None) -> _Membarrier | None:
    """The membarrier to use, or None when this machine's ordering needs none."""
    global _membarrier
    if fences is None:
        fences = platform.machine().lower() not in ("x86_64", "amd64")
    if not fences:
        return None
    if _membarrier is None:
        _membarrier = _Membarrier()
    if not _membarrier.available:
        raise OSError(
            f"shared-memory ring: this {platform.machine()} machine needs membarrier(2) "
            "with GLOBAL_EXPEDITED (Linux 4.16 or later) to order the ring's memory"
        )
    return _membarrier


def segment_bytes(capacity: int, channels: int) -> int:
    """The segment's size for ``capacity`` frames of ``channels`` channels."""
    return HEADER_BYTES + capacity * channels * 4


def _check_shape(capacity: object, channels: object, sample_rate: object) -> None:
    limits = (
        ("capacity", capacity, 1, 1 << 31),
        ("channels", channels, 1, MAX_CHANNELS),
        ("sample_rate", sample_rate, 1, 1 << 24),
    )
    for label, value, low, high in limits:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"shared-memory ring: {label} must be an integer from {low} to {high}, not {value!r}")


def _path(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"shared-memory ring: {name!r} is not a segment name (no slashes)")
    return os.path.join(SHM_DIR, name)


class ShmRing:
    """A handle on a ring segment: :meth:`create` (host) or :meth:`attach` (engine); then
    :meth:`close` (and :meth:`unlink`, host, when no engine should find it any more)."""

    def __init__(self, name: str, mm: mmap.mmap, fences: bool | None) -> None:
        self.name = name
        self._mmap = mm
        self._header = np.ndarray((HEADER_BYTES // 8,), dtype=np.int64, buffer=mm)
        h = self._header
        self.capacity = int(h[_F["capacity"]])
        self.channels = int(h[_F["channels"]])
        self.sample_rate = int(h[_F["sample_rate"]])
        self._samples = np.ndarray((self.capacity, self.channels), dtype=np.float32, buffer=mm, offset=HEADER_BYTES)
        self._barrier = _barrier_for(fences)

    # --- making and finding segments ----------------------------------------------------------------

    @classmethod
    def create(
        cls, name: str, capacity: int, channels: int = 2, sample_rate: int = 44100, fences: bool | None = None
    ) -> ShmRing:
        """Host: make the segment ``/dev/shm/<name>`` (FileExistsError if it exists) with
        ``capacity`` frames of silence and zeroed counters."""
        _check_shape(capacity, channels, sample_rate)
        barrier = _barrier_for(fences)
        if barrier is not None:
            barrier.register()
        path = _path(name)
        size = segment_bytes(capacity, channels)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        header = np.ndarray((HEADER_BYTES // 8,), dtype=np.int64, buffer=mm)
        for key, value in (
            ("version", VERSION),
            ("capacity", capacity),
            ("channels", channels),
            ("sample_rate", sample_rate),
            ("host_pid", os.getpid()),
            ("host_fenced", int(barrier is not None)),
        ):
            header[_F[key]] = value
        header[_F["magic"]] = MAGIC  # last: a reader that sees it sees a whole header
        del header
        return cls(name, mm, fences)

    @classmethod
    def attach(cls, name: str, fences: bool | None = None, producer: bool = True) -> ShmRing:
        """Engine: map the host's segment ``name``, checking its layout (FileNotFoundError if
        there is none, ValueError if it is not a ring of this version). ``producer`` counts the
        attach in ``engine_attaches`` and records this process as the engine."""
        path = _path(name)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise FileNotFoundError(f"shared-memory ring {name!r}: no segment {path} (the host creates it)") from None
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_BYTES:
                raise ValueError(
                    f"shared-memory ring {name!r}: {path} is {size} bytes, smaller than the {HEADER_BYTES}-byte header"
                )
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        header = np.ndarray((HEADER_BYTES // 8,), dtype=np.int64, buffer=mm)
        magic, version = int(header[_F["magic"]]), int(header[_F["version"]])
        capacity, channels = int(header[_F["capacity"]]), int(header[_F["channels"]])
        sample_rate, fenced = int(header[_F["sample_rate"]]), int(header[_F["host_fenced"]])
        del header
        problem = ""
        if magic != MAGIC:
            problem = "is not a riffengine ring (bad magic)"
        elif version != VERSION:
            problem = f"has layout version {version}; this engine reads version {VERSION}"
        else:
            try:
                _check_shape(capacity, channels, sample_rate)
            except ValueError as exc:
                problem = f"has a bad header ({exc})"
            else:
                if size != segment_bytes(capacity, channels):
                    problem = (
                        f"is {size} bytes; {capacity} frames of {channels} channels need "
                        f"{segment_bytes(capacity, channels)}"
                    )
        if not problem and _barrier_for(fences) is not None and not fenced:
            problem = (
                "was created by a host that does not take part in membarrier; start both with the same fences setting"
            )
        if problem:
            mm.close()
            raise ValueError(f"shared-memory ring {name!r}: {path} {problem}")
        ring = cls(name, mm, fences)
        if producer:
            ring._header[_F["engine_pid"]] = os.getpid()
            ring._header[_F["engine_attaches"]] += 1
            ring.engine_beat()
        return ring

    def close(self) -> None:
        """Unmap (the segment stays). Views handed out before must be dropped first."""
        self._header = self._samples = None  # type: ignore[assignment]
        self._mmap.close()

    def unlink(self) -> None:
        """Host: remove the segment's name; mappings stay valid until closed."""
        try:
            os.unlink(_path(self.name))
        except FileNotFoundError:
            pass

    # --- producer (engine) ----------------------------------------------------------------------------

    def writable(self) -> int:
        """Frames :meth:`write` can take now (0 when the host has played past
        ``frames_written``: :meth:`restart_at` a frame ahead of it first)."""
        h = self._header
        written = int(h[_F["frames_written"]])
        oldest = max(int(h[_F["frames_read"]]), int(h[_F["valid_from"]]))
        return max(0, min(self.capacity, self.capacity - (written - oldest)))

    def restart_at(self, frame: int) -> None:
        """Engine: the stream goes on at ``frame`` (after an attach, or after falling behind a
        host that plays on by itself): frames before it are no longer offered. ``frame`` must not
        be below ``frames_written`` (slots the host may still read are not overwritten)."""
        h = self._header
        written = int(h[_F["frames_written"]])
        if frame < written:
            raise ValueError(
                f"shared-memory ring {self.name!r}: restart_at({frame}) is before frames_written {written}"
            )
        if self._barrier is not None:
            self._barrier.fence()
        h[_F["valid_from"]] = frame
        if self._barrier is not None:
            self._barrier.fence()  # valid_from before the count (the host loads them in reverse)
        h[_F["frames_written"]] = frame

    def write(self, frames: np.ndarray) -> int:
        """Engine: append as many of ``frames`` (float32, shape ``(n, channels)``) as fit and
        publish them; returns how many. ValueError for a wrong shape or dtype."""
        if not (
            isinstance(frames, np.ndarray)
            and frames.dtype == np.float32
            and frames.ndim == 2
            and frames.shape[1] == self.channels
        ):
            raise ValueError(
                f"shared-memory ring {self.name!r}: write takes float32 frames of shape "
                f"(n, {self.channels}), not {getattr(frames, 'dtype', type(frames))} "
                f"{getattr(frames, 'shape', '')}"
            )
        h = self._header
        read = max(int(h[_F["frames_read"]]), int(h[_F["valid_from"]]))
        if self._barrier is not None:
            self._barrier.fence()  # (3, 4): the consumer is done with every slot before `read`
        written = int(h[_F["frames_written"]])
        n = min(len(frames), self.capacity - (written - read))
        if n <= 0:
            return 0
        start = written % self.capacity
        first = min(n, self.capacity - start)
        self._samples[start : start + first] = frames[:first]
        if n > first:
            self._samples[: n - first] = frames[first:n]
        if self._barrier is not None:
            self._barrier.fence()  # (1, 2): the samples before the count that publishes them
        h[_F["frames_written"]] = written + n
        return n

    def engine_beat(self, now_ns: int | None = None) -> None:
        """Engine: store its heartbeat (``time.monotonic_ns()`` unless given)."""
        self._header[_F["engine_heartbeat_ns"]] = time.monotonic_ns() if now_ns is None else now_ns

    def dac(self) -> tuple[int, int]:
        """Engine: ``(frame, monotonic ns)``: when the host said frame ``frame`` reaches the DAC.
        A consistent pair, read under the host's sequence count (retries while it writes)."""
        h = self._header
        while True:
            before = int(h[_F["dac_seq"]])
            if self._barrier is not None:
                self._barrier.fence()
            frame, when = int(h[_F["dac_frame"]]), int(h[_F["dac_time_ns"]])
            if self._barrier is not None:
                self._barrier.fence()
            if before % 2 == 0 and int(h[_F["dac_seq"]]) == before:
                return frame, when
            time.sleep(0)

    # --- consumer (host's audio callback: real-time, never raises) -----------------------------

    def check_block(self, out: np.ndarray) -> None:
        """Host, before starting the stream: ValueError unless ``out`` suits :meth:`read_into`."""
        if not (
            isinstance(out, np.ndarray)
            and out.dtype == np.float32
            and out.ndim == 2
            and out.shape[1] == self.channels
            and out.flags.writeable
        ):
            what = f"{getattr(out, 'dtype', type(out))} {getattr(out, 'shape', '')}"
            raise ValueError(
                f"shared-memory ring {self.name!r}: read_into needs a writable float32 "
                f"array of shape (n, {self.channels}), not {what}"
            )

    def read_into(self, out: np.ndarray) -> int:
        """Host callback: fill ``out`` (see :meth:`check_block`) with the next frames; what the
        ring lacks is silence and counted as an underrun. Returns the frames taken from the ring."""
        try:
            h = self._header
            wanted = len(out)
            read = int(h[_F["frames_read"]])
            n = min(wanted, int(h[_F["frames_written"]]) - read)
            if n > 0:
                start = read % self.capacity
                first = min(n, self.capacity - start)
                out[:first] = self._samples[start : start + first]
                if n > first:
                    out[first:n] = self._samples[: n - first]
                h[_F["frames_read"]] = read + n
            else:
                n = 0
            if n < wanted:
                out[n:] = 0.0
                h[_F["underruns"]] += 1
                h[_F["underrun_frames"]] += wanted - n
            h[_F["frames_output"]] += wanted
            return n
        except BaseException:  # noqa: BLE001 - never raise in the audio callback
            try:
                out.fill(0.0)
            except BaseException:  # noqa: BLE001
                pass
            return 0

    def read_at(self, position: int, out: np.ndarray) -> tuple[int, int]:
        """Host callback, for a host that plays on by itself: ``out`` is stream frames
        ``[position, position + len(out))``; copy into it those the ring holds (from
        ``valid_from`` to ``frames_written``), leave the rest of ``out`` as it is, and free
        everything before the block's end. Returns ``(offset, count)`` of the copied span in
        ``out`` (count 0: none). Counts ``frames_output``; underruns are the caller's to count."""
        try:
            h = self._header
            wanted = len(out)
            written = int(h[_F["frames_written"]])  # the count first, then where it starts
            begin = max(position, int(h[_F["valid_from"]]))
            end = min(position + wanted, written)
            n = end - begin
            offset = begin - position
            if n > 0:
                start = begin % self.capacity
                first = min(n, self.capacity - start)
                out[offset : offset + first] = self._samples[start : start + first]
                if n > first:
                    out[offset + first : offset + n] = self._samples[: n - first]
            else:
                n, offset = 0, 0
            h[_F["frames_read"]] = position + wanted
            h[_F["frames_output"]] += wanted
            return offset, n
        except BaseException:  # noqa: BLE001 - never raise in the audio callback
            return 0, 0

    def count_underrun(self, frames: int) -> None:
        """Host callback: ``frames`` of a block were silence (nothing to play)."""
        try:
            self._header[_F["underruns"]] += 1
            self._header[_F["underrun_frames"]] += frames
        except BaseException:  # noqa: BLE001
            pass

    def set_dac(self, frame: int, time_ns: int) -> None:
        """Host callback: frame ``frame`` (a ``frames_output`` count) reaches the DAC at
        ``time_ns`` (monotonic). Plain stores under the sequence count :meth:`dac` checks."""
        try:
            h = self._header
            seq = int(h[_F["dac_seq"]])
            h[_F["dac_seq"]] = seq + 1
            h[_F["dac_frame"]] = frame
            h[_F["dac_time_ns"]] = time_ns
            h[_F["dac_seq"]] = seq + 2
        except BaseException:  # noqa: BLE001
            pass

    def host_beat(self, now_ns: int) -> None:
        """Host callback: store its heartbeat (pass ``time.monotonic_ns()``)."""
        try:
            self._header[_F["host_heartbeat_ns"]] = now_ns
        except BaseException:  # noqa: BLE001
            pass

    def count_xrun(self, n: int = 1) -> None:
        """Host: add ``n`` xruns reported by the driver."""
        try:
            self._header[_F["xruns"]] += n
        except BaseException:  # noqa: BLE001
            pass

    # --- either side -----------------------------------------------------------------------------

    def header(self) -> Header:
        """A snapshot of all fields."""
        h = self._header
        return Header(**{key: int(h[slot]) for key, slot in FIELDS.items()})

    @property
    def frames_written(self) -> int:
        return int(self._header[_F["frames_written"]])

    @property
    def frames_read(self) -> int:
        return int(self._header[_F["frames_read"]])

    @property
    def valid_from(self) -> int:
        return int(self._header[_F["valid_from"]])

    def field(self, key: str) -> int:
        """One header field (see :data:`FIELDS`)."""
        return int(self._header[_F[key]])

    def set_field(self, key: str, value: int) -> None:
        """Store one header field: only its owner does (see the module's rules)."""
        self._header[_F[key]] = value

    def __enter__(self) -> ShmRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
