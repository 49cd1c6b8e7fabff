"""What the host plays by itself: the engine's loops, held on the bar grid.

The engine tells the host each loop it starts (:class:`Held`: the stream frame of its first
sample and its frames; ``frames`` None for a stop, i.e. silence from there). Where the ring
has nothing for a frame (the engine died, hangs, restarts, or fell behind), the host plays the
held loop that covers it, in the phase the engine's timeline gives it: frame ``k`` of the
stream is the loop's sample ``(k - start) % len(frames)``. That is what the engine itself would
have written had it gone on repeating the loop, so the switch from ring to hold is seamless.
The switch back (the engine's frames return) is crossfaded (:data:`RETURN_FADE_SECONDS`), since
the engine may then play something else. The crossfade keeps the sum of its gains at 1 (raised
cosine), not their power: most often the engine comes back with the very loop the host held,
in phase, and then nothing changes (an equal-power fade of two equal signals is 3 dB louder in
its middle); a different loop dips by at most 3 dB for those 20 ms.

Real-time rules: :meth:`HeldLoops.fill` and :meth:`HoldSource.read_into` run in the audio
callback: no allocation of sample memory, no lock, no logging, never raise. The control thread
changes :attr:`HeldLoops.loops` by assigning a new tuple (one reference store, atomic under
the GIL); the callback reads it once per block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from riffengine.host.shmring import ShmRing

KEEP = 4
"""Held loops kept: the engine announces a loop when it renders its start, ahead of playback."""
RETURN_FADE_SECONDS = 0.02


@dataclass(frozen=True, eq=False)
class Held:
    """A loop on the stream's bar grid: its sample 0 is stream frame ``start``; ``frames``
    float32 ``[n, channels]``, or None for silence (the transport stopped) from ``start``."""

    start: int
    frames: np.ndarray | None
    clip_id: str = ""


def held_at(loops: tuple[Held, ...], frame: int) -> Held | None:
    """The loop in force at ``frame``: the last one starting at or before it."""
    found = None
    for held in loops:
        if held.start <= frame and (found is None or held.start >= found.start):
            found = held
    return found


def fill_from(held: Held | None, frame: int, out: np.ndarray) -> None:
    """Write stream frames ``[frame, frame + len(out))`` of ``held`` into ``out`` (silence for
    None or a stop)."""
    if held is None or held.frames is None or len(held.frames) == 0:
        out.fill(0.0)
        return
    loop = held.frames
    n, length = len(out), len(loop)
    pos = (frame - held.start) % length
    done = 0
    while done < n:
        take = min(n - done, length - pos)
        out[done : done + take] = loop[pos : pos + take]
        done += take
        pos = 0


class HeldLoops:
    """The loops the host holds (control thread adds, the callback reads)."""

    def __init__(self) -> None:
        self.loops: tuple[Held, ...] = ()

    def add(self, held: Held) -> None:
        """Control thread: hold ``held`` (a later start replaces loops that start at or after it)."""
        kept = [h for h in self.loops if h.start < held.start]
        self.loops = tuple((kept + [held])[-KEEP:])

    def latest(self) -> Held | None:
        return held_at(self.loops, 1 << 62)

    def fill(self, frame: int, out: np.ndarray) -> None:
        """Callback: stream frames ``[frame, frame + len(out))`` from the held loops, switching
        loop where a later one starts inside the block."""
        loops = self.loops  # read once
        n = len(out)
        done = 0
        while done < n:
            at = frame + done
            held = held_at(loops, at)
            nxt = min((h.start for h in loops if h.start > at), default=at + n)
            take = min(n - done, nxt - at)
            fill_from(held, at, out[done : done + take])
            done += take


class HoldSource:
    """The host's source of frames: the ring where it has them, else the held loops.

    Offers what an output needs of a :class:`~riffengine.audio.ringbuffer.RingBuffer` on the
    consumer side (``read_into``, ``frames_read``, ``frames_output``, ``underruns``,
    ``channels``). Once the first frames came, the stream position advances with every block,
    whatever is played, so the bar grid goes on while the engine is away; it is the ring's
    ``frames_read``. Before that it waits at 0 (the engine's frame 0 is the first sound, as
    with one process, and the recording's frame ``k`` is stream frame ``k``).
    """

    def __init__(self, ring: ShmRing, max_block: int) -> None:
        self.ring = ring
        self.channels = ring.channels
        self.held = HeldLoops()
        self.position = ring.frames_read
        self.held_frames = 0
        """Frames played from the held loops (the engine was away)."""
        self.started = False
        """True from the first frame the engine gave (the stream's frame 0 is its first sound)."""
        self.silent_frames = 0
        """Frames of silence: before that, and where there was nothing to play on with."""
        self.underruns = 0
        """Blocks with such silence after the start (also counted in the ring's header)."""
        self._hold = np.zeros((max_block, ring.channels), dtype=np.float32)
        fade = max(1, round(RETURN_FADE_SECONDS * ring.sample_rate))
        quarter = (np.arange(fade, dtype=np.float64) + 0.5) * (np.pi / 2 / fade)
        rise = np.sin(quarter) ** 2  # raised cosine: the two gains sum to 1
        self._fade_in = rise.astype(np.float32)[:, None]
        self._fade_out = (1.0 - rise).astype(np.float32)[:, None]
        self._fading = -1  # frames of the return fade done, -1 when none is under way
        self._holding = False

    @property
    def frames_read(self) -> int:
        return self.position

    @property
    def frames_output(self) -> int:
        return self.position

    def read_into(self, out: np.ndarray) -> int:
        """Callback: fill ``out`` with the next stream frames; returns the frames from the ring."""
        try:
            n = len(out)
            position = self.position
            if not self.started:
                if self.ring.frames_written - position < n and not self.held.loops:
                    out.fill(0.0)  # not a whole block yet: the stream waits at its frame 0
                    self.silent_frames += n
                    return 0
                self.started = True
                self.ring.set_field("host_started", 1)
            offset, count = self.ring.read_at(position, out)
            self.position = position + n
            if count == n and not self._holding and self._fading < 0:
                return count
            hold = self._hold[:n]
            self.held.fill(position, hold)
            if count == 0:
                out[:] = hold
            else:
                out[:offset] = hold[:offset]
                out[offset + count :] = hold[offset + count :]
                if (self._holding or offset > 0) and self._fading < 0:
                    self._fading = 0  # the engine's frames are back: fade over to them
                self._fade_return(out, hold, offset, count)
            self._count(n - count)
            self._holding = offset + count < n
            return count
        except BaseException:  # noqa: BLE001 - never raise in the audio callback
            out.fill(0.0)
            return 0

    def _fade_return(self, out: np.ndarray, hold: np.ndarray, offset: int, count: int) -> None:
        if self._fading < 0:
            return
        fade = len(self._fade_in)
        take = min(count, fade - self._fading)
        span = slice(offset, offset + take)
        ramp = slice(self._fading, self._fading + take)
        out[span] = out[span] * self._fade_in[ramp] + hold[span] * self._fade_out[ramp]
        self._fading += take
        if self._fading >= fade:
            self._fading = -1

    def _count(self, missing: int) -> None:
        """``missing`` frames of the block did not come from the ring: held, or silence."""
        if missing <= 0:
            return
        if not self.held.loops:  # nothing to play on with: silence, an underrun
            self.silent_frames += missing
            self.underruns += 1
            self.ring.count_underrun(missing)
        elif (latest := self.held.latest()) is not None and latest.frames is None:
            pass  # the transport is stopped: silence is what should play
        else:
            self.held_frames += missing
