"""Panic heard at once: the output crossfades to the safe loop in the callback, after the ring.

``/riff/panic`` puts the bank's safe loop on the timeline at the next seam, but the ring already
holds the look-ahead (seconds) of what was playing. :class:`PanicStage` covers that gap in the
audio callback: from the next period on it crossfades (equal power, :data:`FADE_SECONDS`) to
the safe loop, played in the phase it will have on the timeline (its frame 0 on the seam the
timeline gives it), and once the ring itself plays the safe loop it hands back to the ring,
which then carries the same samples: nothing changes audibly, and the music goes on from there.
It hands back only on a block the ring filled whole: a ring that ran dry (an engine that just
started, or fell behind) would otherwise be heard as what fills the gap.
A new request while one plays crossfades from the old one's loop and phase to the new one's
(the audio host's own panic, made while no engine ran, handing over to the next engine's).

Real-time rules:

- :meth:`PanicStage.apply` runs in the audio callback: preallocated buffers only (the safe
  loop's frames are prepared by the loop thread), no lock, no logging; callers catch anything.
  It notes when a request began (:attr:`PanicStage.began`, one tuple assignment) for the
  report that follows off the callback.
- :attr:`PanicStage.request` is written by the loop thread only, as one reference assignment
  (atomic under the GIL), after the request's arrays are complete; the callback reads it once
  per block. Every other attribute is the callback's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

FADE_SECONDS = 0.05
"""The crossfade from what is playing to the safe loop."""


@dataclass(frozen=True, eq=False)
class PanicRequest:
    """The safe loop to play at once, and where it lies on the ring's frame numbering.

    ``frames``: float32 ``[loop frames, channels]`` at the output rate. ``origin``: the ring
    frame (``frames_read`` numbering) where the timeline starts the loop. ``until``: the ring
    frame from which the ring plays it itself (past the timeline's crossfade).
    """

    frames: np.ndarray
    origin: int
    until: int


def loop_into(request: PanicRequest, position: int, out: np.ndarray) -> None:
    """Write ring frames ``[position, position + len(out))`` of ``request``'s loop, in its phase,
    into ``out``. Audio callback safe (slices and copies only)."""
    loop = request.frames
    n = len(out)
    start = (position - request.origin) % len(loop)
    first = min(n, len(loop) - start)
    out[:first] = loop[start : start + first]
    done = first
    while done < n:  # a loop shorter than the block wraps more than once
        take = min(n - done, len(loop))
        out[done : done + take] = loop[:take]
        done += take


class PanicStage:
    """Crossfades the callback's output to a :class:`PanicRequest`'s loop until the ring has it."""

    def __init__(self, sample_rate: int, max_block: int, channels: int = 2) -> None:
        self.request: PanicRequest | None = None
        self.fade_frames = max(1, round(FADE_SECONDS * sample_rate))
        quarter = (np.arange(self.fade_frames, dtype=np.float64) + 0.5) * (np.pi / 2 / self.fade_frames)
        self._fade_in = np.sin(quarter).astype(np.float32)
        self._fade_out = np.cos(quarter).astype(np.float32)
        self._safe = np.zeros((max_block, channels), dtype=np.float32)
        self._active: PanicRequest | None = None
        self._previous: PanicRequest | None = None
        self._progress = 0
        self.finished: PanicRequest | None = None
        """The last request handed back to the ring (callback writes)."""
        self.began: tuple[PanicRequest, float, int] | None = None
        """The last request the callback began to fade in, when (``time.monotonic()``) and at
        which ring frame; written by the callback as one reference, read by whoever reports it."""

    def apply(self, block: np.ndarray, position: int, from_ring: int | None = None) -> None:
        """Mix the safe loop into ``block`` ([n, channels]), whose first frame is ring frame
        ``position``; ``from_ring``: how many of its frames the ring gave (all when None).
        Audio callback only."""
        request = self.request
        if request is None or request is self.finished:
            return
        if request is not self._active:  # a new panic: fade in from the ring, or from the last one
            faded = (
                self._active is not None and self._active is not self.finished and self._progress >= self.fade_frames
            )
            self._previous = self._active if faded else None
            self._active, self._progress = request, 0
            self.began = (request, time.monotonic(), position)
        n = len(block)
        if n > len(self._safe):
            return
        safe = self._safe[:n]
        loop_into(request, position, safe)
        if self._previous is not None and self._progress < self.fade_frames:
            loop_into(self._previous, position, block)  # the ring was not heard: fade from the last loop
        if self._progress >= self.fade_frames:
            block[:] = safe
        else:
            k = min(n, self.fade_frames - self._progress)
            ramp_in = self._fade_in[self._progress : self._progress + k]
            ramp_out = self._fade_out[self._progress : self._progress + k]
            block[:k] *= ramp_out[:, None]
            safe[:k] *= ramp_in[:, None]  # in place: the scratch is not needed after this
            block[:k] += safe[:k]
            block[k:] = safe[k:]
        self._progress += n
        whole = from_ring is None or from_ring >= n
        if whole and position + n >= request.until and self._progress >= self.fade_frames:
            self.finished = request  # the ring plays these very samples from here on
