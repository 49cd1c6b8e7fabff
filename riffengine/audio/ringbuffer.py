"""A preallocated single-producer / single-consumer ring buffer of interleaved float32 frames.

Real-time rules:

- Exactly one thread writes (:meth:`RingBuffer.write`, the producer: the timeline feeder) and
  exactly one thread reads (:meth:`RingBuffer.read_into`, the consumer: the audio callback).
- :meth:`read_into` is safe in an audio callback: it never blocks, never takes a lock, never
  allocates sample memory (only small numpy view objects), never logs and never raises. On a
  shortage it plays what there is, fills the rest with zeros and counts an underrun.
- :meth:`write` never blocks either: it stores as many frames as fit and returns that number;
  the producer decides whether to wait and retry (see :meth:`free`).
- Each counter has one writer: ``frames_written`` is only advanced by the producer, after the
  samples are in place; ``frames_read``/``frames_output``/``underruns`` only by the consumer.
  Assigning a Python int is atomic under the GIL, so each side sees a consistent count of the
  other side's progress (possibly a little old, which only means "less available").

Clocks: ``frames_output`` counts every frame handed to the device (the master clock, zeros of an
underrun included); ``frames_read`` counts frames taken out of the ring, so frame ``F`` of what
was written is audible once ``frames_read > F``. With no underruns the two are equal.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class RingBuffer:
    """Ring of ``capacity`` frames of ``channels`` interleaved float32 samples."""

    def __init__(self, capacity: int, channels: int = 2) -> None:
        if capacity < 1 or channels < 1:
            raise ValueError(f"capacity and channels must be positive, got {capacity}, {channels}")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._buffer = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self.frames_written = 0
        self.frames_read = 0
        self.frames_output = 0
        self.underruns = 0
        self.underrun_frames = 0
        self.errors = 0

    # --- either side ---------------------------------------------------------------------------

    def available(self) -> int:
        """Frames written and not yet read."""
        return self.frames_written - self.frames_read

    def free(self) -> int:
        """Frames the producer can write now without overwriting unread ones."""
        return self.capacity - (self.frames_written - self.frames_read)

    # --- producer ------------------------------------------------------------------------------

    def write(self, frames: np.ndarray) -> int:
        """Copy up to ``free()`` leading frames of ``frames`` ([n, channels]) in; return the count.

        Producer side only. Never blocks; the caller retries the rest later.
        """
        if frames.ndim != 2 or frames.shape[1] != self.channels:
            raise ValueError(f"expected frames of shape [n, {self.channels}], got {frames.shape}")
        n = min(len(frames), self.free())
        if n <= 0:
            return 0
        start = self.frames_written % self.capacity
        first = min(n, self.capacity - start)
        self._buffer[start : start + first] = frames[:first]
        if first < n:
            self._buffer[: n - first] = frames[first:n]
        self.frames_written += n  # publish only after the samples are in place
        return n

    # --- consumer ------------------------------------------------------------------------------

    def read_into(self, out: np.ndarray) -> int:
        """Fill ``out`` ([n, channels] float32) with the next frames; return how many were real.

        Consumer side only; safe in the audio callback (see the module docstring). On shortage
        the rest of ``out`` is zero-filled and one underrun is counted. Never raises: a bad
        ``out`` is zero-filled as far as possible and counted in ``errors``.
        """
        try:
            wanted = len(out)
            n = min(wanted, self.frames_written - self.frames_read)
            if n > 0:
                start = self.frames_read % self.capacity
                first = min(n, self.capacity - start)
                out[:first] = self._buffer[start : start + first]
                if first < n:
                    out[first:n] = self._buffer[: n - first]
                self.frames_read += n
            else:
                n = 0
            if n < wanted:
                out[n:] = 0.0
                self.underruns += 1
                self.underrun_frames += wanted - n
            self.frames_output += wanted
            return n
        except Exception:  # a real-time reader must not raise
            self.errors += 1
            try:
                out.fill(0.0)
            except Exception:
                pass
            return 0

    def read(self, max_frames: int) -> np.ndarray:
        """Take up to ``max_frames`` available frames as a new array (no zero fill, no underrun).

        For non-real-time consumers (the recorder's writer thread, the file output); allocates.
        """
        n = min(max_frames, self.available())
        out = np.empty((max(n, 0), self.channels), dtype=np.float32)
        if n > 0:
            start = self.frames_read % self.capacity
            first = min(n, self.capacity - start)
            out[:first] = self._buffer[start : start + first]
            if first < n:
                out[first:] = self._buffer[: n - first]
            self.frames_read += n
            self.frames_output += n
        return out

    # --- producer, when stopping ---------------------------------------------------------------

    def fade_unread(self, skip: int, length: int) -> int | None:
        """Fade out the queued frames from ``skip`` frames after the read position; zero the rest.

        Producer side, for a prompt stop: the fade runs over ``length`` frames (a quarter
        cosine, or fewer if fewer are queued) and everything queued after it becomes silence, so
        the stream can stop once ``frames_read`` reaches the returned frame (in ``frames_written``
        terms) instead of playing the whole ring out. The consumer keeps reading meanwhile:
        ``skip`` must exceed what it can read while this runs (a few callback periods).
        Returns None, changing nothing, when fewer than ``skip + 64`` frames are queued (write
        a faded tail instead).
        """
        start = self.frames_read + skip
        n = min(length, self.frames_written - start)
        if n < 64:
            return None
        gains = np.cos((np.arange(n, dtype=np.float64) + 0.5) * (np.pi / 2.0 / n)).astype(np.float32)
        for first, last, offset in self._spans(start, start + n):
            self._buffer[first:last] *= gains[offset : offset + last - first, None]
        for first, last, _ in self._spans(start + n, self.frames_written):
            self._buffer[first:last] = 0.0
        return start + n

    def _spans(self, begin: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(first, last, offset) index spans of the storage holding frames ``begin..end``."""
        pos = begin
        while pos < end:
            first = pos % self.capacity
            last = min(self.capacity, first + (end - pos))
            yield first, last, pos - begin
            pos += last - first
