"""Output gain and mute applied in the audio callback, so a change is heard in the next period.

Everything before the ring is look-ahead (the ring holds about two seconds); a gain applied
there is heard two seconds late. :class:`LiveGain` sits after the ring, in the callback: a
change set now is heard from the next callback on, ramped over :data:`RAMP_SECONDS` so that
even a jump from full scale to silence does not click.

Real-time rules:

- :meth:`LiveGain.apply` runs in the audio callback. It works in preallocated buffers, takes no
  lock, never logs and never allocates sample memory (only small numpy views); the callers
  catch any exception, as for the rest of the callback.
- :meth:`LiveGain.set` runs on the engine's loop thread. It assigns one Python float, which is
  atomic under the GIL; the callback reads it once per block, so it sees either the old or the
  new target, never a mixture.
- :attr:`LiveGain.current` is written by the callback only.
"""

from __future__ import annotations

import numpy as np

RAMP_SECONDS = 0.005
"""A gain change of any size is spread over this long (5 ms: no click, and heard at once)."""


def db_to_gain(db: float) -> float:
    """Decibels to a linear amplitude factor."""
    return float(10.0 ** (db / 20.0))


class LiveGain:
    """The callback's gain stage: ``block *= gain``, ramping linearly to each new target."""

    def __init__(self, sample_rate: int, max_block: int, gain: float = 1.0) -> None:
        self.ramp_frames = max(1, round(RAMP_SECONDS * sample_rate))
        self.target = float(gain)
        """The gain asked for (loop thread writes; 0.0 when muted)."""
        self.current = float(gain)
        """The gain of the last frame played (callback writes)."""
        self._from = float(gain)
        self._to = float(gain)
        self._unit = np.arange(1, max_block + 1, dtype=np.float32)
        self._gains = np.empty(max_block, dtype=np.float32)

    def set(self, gain: float, muted: bool = False) -> None:
        """Ask for ``gain`` (linear), or silence while ``muted``. Loop thread; never blocks."""
        self.target = 0.0 if muted else float(gain)

    def reset(self, gain: float) -> None:
        """Start at ``gain`` with no ramp. Only before the stream starts (it writes
        :attr:`current`, which the callback owns once it runs)."""
        self.target = self.current = self._from = self._to = float(gain)

    def apply(self, block: np.ndarray) -> None:
        """Scale ``block`` ([frames, channels] float32) in place. Audio callback only."""
        target = self.target  # read once: the loop thread may change it meanwhile
        now = self.current
        if target != self._to:  # a new target: ramp to it from where the sound is now
            self._from, self._to = now, target
        if now == target:
            if now != 1.0:
                block *= now
            return
        n = len(block)
        if n > len(self._unit):  # larger than any period served: no ramp to spare
            block *= target
            self.current = target
            return
        step = (self._to - self._from) / self.ramp_frames
        gains = self._gains[:n]
        np.multiply(self._unit[:n], step, out=gains)
        gains += now
        if step > 0:
            np.minimum(gains, target, out=gains)
        else:
            np.maximum(gains, target, out=gains)
        block *= gains[:, None]
        self.current = float(gains[n - 1])
