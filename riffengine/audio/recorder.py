"""Recording the stream to WAV: a writer thread fed through a ring, a file that survives a kill.

Real-time rules:

- :meth:`Recorder.tap` is the only method for the audio callback (or the producer): it copies the
  frames into a preallocated ring and returns; it never blocks, allocates sample memory, logs or
  raises. If the writer thread falls so far behind that the ring is full, the frames that do not
  fit are dropped and counted (``frames_dropped``), never waited for.
- Everything that touches the disk happens in the writer thread.

Crash safety: about every ``sync_interval`` seconds (0.5 s by default) the writer rewrites the
RIFF and data sizes in the header and flushes and fsyncs the file, so after a SIGKILL or a power
cut the file is a valid WAV holding all but the last second or so.

Errors (disk full, file deleted, I/O error) are logged and passed to ``on_error`` (called from
the writer thread; hand it to your event loop with ``call_soon_threadsafe``). After an error the
recorder stops writing but keeps draining its ring, so the audio never notices. An unwritable
path is found when the file is opened, by :meth:`Recorder.start`, which raises :class:`UserError`.

Files longer than the WAV format's 4 GiB (about 3 h 20 min of float32 stereo at 44.1 kHz)
continue in ``NAME.part2.wav``, ``NAME.part3.wav``, ...
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from riffengine.audio.ringbuffer import RingBuffer
from riffengine.errors import UserError

log = logging.getLogger(__name__)

SAMPLE_FORMATS = ("float32", "int16")
_MAX_DATA_BYTES = 0xFFFFFFFF - 64  # RIFF sizes are 32-bit


def _header(sample_rate: int, channels: int, sample_format: str, frames: int) -> bytes:
    """A complete WAV header for ``frames`` frames (data chunk header last)."""
    if sample_format == "float32":
        width, fmt_tag = 4, 3  # WAVE_FORMAT_IEEE_FLOAT
        fmt = struct.pack(
            "<HHIIHHH", fmt_tag, channels, sample_rate, sample_rate * channels * width, channels * width, 32, 0
        )
        extra = b"fact" + struct.pack("<II", 4, frames)
    else:
        width, fmt_tag = 2, 1  # WAVE_FORMAT_PCM
        fmt = struct.pack(
            "<HHIIHH", fmt_tag, channels, sample_rate, sample_rate * channels * width, channels * width, 16
        )
        extra = b""
    data_bytes = frames * channels * width
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra + b"data" + struct.pack("<I", data_bytes)
    return b"RIFF" + struct.pack("<I", len(body) + data_bytes) + body


class WavWriter:
    """A plain, synchronous WAV writer whose header is kept valid by :meth:`sync`.

    Not thread-safe: one thread writes. ``write`` takes float32 [n, channels] frames in -1..1.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int, sample_format: str = "float32"):
        if sample_format not in SAMPLE_FORMATS:
            raise UserError(
                f"recording format {sample_format!r} is not supported: use one of {', '.join(SAMPLE_FORMATS)}"
            )
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.sample_format = sample_format
        self.frame_bytes = channels * (4 if sample_format == "float32" else 2)
        self.frames = 0
        self._synced_frames = -1
        try:
            self._file = open(self.path, "wb")
            self._header_len = len(_header(sample_rate, channels, sample_format, 0))
            self._file.write(_header(sample_rate, channels, sample_format, 0))
            self._file.flush()
        except OSError as exc:
            raise UserError(
                f"cannot write the recording {str(self.path)!r}: {exc.strerror or exc}; "
                "choose a path in a writable folder that exists"
            ) from None

    @property
    def room(self) -> int:
        """Frames that still fit in this file under the 4 GiB limit."""
        return (_MAX_DATA_BYTES - self._header_len) // self.frame_bytes - self.frames

    def write(self, frames: np.ndarray) -> None:
        if self.sample_format == "int16":
            data = np.round(np.clip(frames, -1.0, 1.0) * 32767.0).astype("<i2")
        else:
            data = np.asarray(frames, dtype="<f4")
        self._file.write(np.ascontiguousarray(data).tobytes())
        self.frames += len(frames)

    def sync(self) -> None:
        """Rewrite the header for the frames written so far, then flush and fsync."""
        if self._synced_frames != self.frames:
            self._file.seek(0)
            self._file.write(_header(self.sample_rate, self.channels, self.sample_format, self.frames))
            self._file.seek(0, os.SEEK_END)
            self._synced_frames = self.frames
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Finalise the header and close; safe to call twice."""
        if self._file.closed:
            return
        try:
            self.sync()
        finally:
            self._file.close()


def part_path(path: Path, part: int) -> Path:
    """``take.wav`` for part 1, ``take.part2.wav`` for part 2, and so on."""
    return path if part == 1 else path.with_name(f"{path.stem}.part{part}{path.suffix}")


class Recorder:
    """Records what the audio callback plays to a WAV file, from its own writer thread."""

    def __init__(
        self,
        path: str | os.PathLike,
        sample_rate: int = 44100,
        channels: int = 2,
        sample_format: str = "float32",
        buffer_seconds: float = 10.0,
        sync_interval: float = 0.5,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        if sample_format not in SAMPLE_FORMATS:
            raise UserError(
                f"recording format {sample_format!r} is not supported: use one of {', '.join(SAMPLE_FORMATS)}"
            )
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.sample_format = sample_format
        self.sync_interval = sync_interval
        self.on_error = on_error
        self._ring = RingBuffer(max(1, int(buffer_seconds * sample_rate)), channels)
        self.frames_dropped = 0
        self.frames_recorded = 0
        self.error: Exception | None = None
        self.paths: list[Path] = []
        self._writer: WavWriter | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reported_drops = 0

    # --- audio side ----------------------------------------------------------------------------

    def tap(self, frames: np.ndarray) -> int:
        """Hand frames ([n, channels] float32) to the writer; real-time safe; returns frames kept."""
        try:
            n = self._ring.write(frames)
            if n < len(frames):
                self.frames_dropped += len(frames) - n
            return n
        except Exception:
            self.frames_dropped += len(frames) if hasattr(frames, "__len__") else 0
            return 0

    # --- control side --------------------------------------------------------------------------

    def start(self) -> None:
        """Open the file (UserError if it cannot be written) and start the writer thread."""
        if self._thread is not None:
            return
        self._writer = WavWriter(self.path, self.sample_rate, self.channels, self.sample_format)
        self.paths.append(self.path)
        self._thread = threading.Thread(target=self._run, name="riffengine-recorder", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is still queued, finalise the file and stop the thread; safe to call twice."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._writer is not None  # opened by start(), before this thread
        next_sync = time.monotonic() + self.sync_interval
        poll = min(0.05, self.sync_interval / 4)
        while True:
            stopping = self._stop.wait(poll)
            self._drain()
            if self.frames_dropped != self._reported_drops:
                dropped, self._reported_drops = self.frames_dropped, self.frames_dropped
                self._report(RuntimeError(f"recorder fell behind: {dropped} frames in all were not recorded"))
            if stopping:
                break
            if time.monotonic() >= next_sync:
                next_sync = time.monotonic() + self.sync_interval
                self._guard(self._writer.sync)
        try:
            self._writer.close()
        except OSError as exc:
            if self.error is None:
                self.error = exc
                self._report(exc)

    def _drain(self) -> None:
        while True:
            frames = self._ring.read(self._ring.capacity)
            if len(frames) == 0:
                return
            if self.error is None:
                self._guard(functools.partial(self._write, frames))

    def _write(self, frames: np.ndarray) -> None:
        while len(frames):
            assert self._writer is not None
            room = self._writer.room
            if room <= 0:
                self._writer.close()
                path = part_path(self.path, len(self.paths) + 1)
                self._writer = WavWriter(path, self.sample_rate, self.channels, self.sample_format)
                self.paths.append(path)
                continue
            chunk = frames[:room]
            self._writer.write(chunk)
            self.frames_recorded += len(chunk)
            frames = frames[room:]

    def _guard(self, action: Callable[[], None]) -> None:
        if self.error is not None:
            return
        try:
            action()
        except (OSError, UserError) as exc:
            self.error = exc
            self._report(exc)

    def _report(self, exc: Exception) -> None:
        log.error("recording to %s: %s", self.path, exc)
        if self.on_error is not None:
            try:
                self.on_error(exc)
            except Exception:
                log.exception("recorder on_error callback failed")
