"""The timeline: places clips on the bar grid and renders the stream the audience hears.

Pure and deterministic: no threads, no I/O, no clock of its own. The frame numbers are those of
the stream it renders (frame 0 is its first frame), which is the master clock once the frames
pass through the ring buffer (the ring's ``frames_read`` says how far playback has got).

Rules:

- A clip is a loop of exactly ``bars`` bars at its ``bpm`` (``loop_frames(bars, bpm, rate)``
  frames) and always starts on a bar line with its own sample 0: its downbeat lands on the bar
  frame to the sample. It repeats until another clip replaces it at one of its seams (the end of
  one of its repetitions, which is always a bar line).
- When no new clip is ready at a seam, the last good clip loops again: once something has played,
  the timeline never goes silent.
- The newest submitted clip wins; a clip still waiting when a newer one arrives is dropped
  (reported as :class:`ClipDropped`).
- Crossfade (equal power, ``cos``/``sin`` gains, the ``crossfade_ms`` parameter long) lies
  entirely *before* the seam, in the tail of the outgoing loop: over ``[seam - X, seam)`` the
  outgoing clip's last X frames fade out while the incoming clip's last X frames fade in (its
  "pre-roll", as if it had already been looping); at the seam the incoming clip plays from its
  sample 0 at full gain. So the crossfade never moves the seam nor softens the new downbeat.
- Hence the deadline: a clip must be submitted before the render cursor reaches ``seam - X``
  (:meth:`Timeline.fade_start_frame`). One submitted later but at least ``min_crossfade_frames``
  before the seam gets a shorter fade ending on the same seam; one even later waits for the
  following seam. The render cursor runs ahead of playback by the ring buffer's fill.
- Transport: :meth:`Timeline.stop` ends the sound at a given bar line, fading out over
  the frames before it (the crossfade length, at least :data:`STOP_FADE_MIN_MS`), and the
  timeline stays silent, whatever is submitted, until :meth:`Timeline.play`; then the queued
  clip, else the last one played, starts from its sample 0 on the next bar line.
- A clip at another tempo changes the tempo map at its seam (:meth:`TempoMap.with_tempo`), so the
  seam, a bar line of the old grid, is a bar line of the new grid with the same bar number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypeGuard

import numpy as np

from riffengine.control import params
from riffengine.timing.tempo import TempoMap, loop_frames

DEFAULT_CROSSFADE_MS = float(params.param("crossfade_ms").default)  # type: ignore[arg-type]
"""The seam's crossfade when none is given: the ``crossfade_ms`` parameter's default."""
STOP_FADE_MIN_MS = 10.0
"""The shortest fade-out before a stop (a stop is never a hard cut)."""


@dataclass(frozen=True, eq=False)
class Clip:
    """A rendered loop: ``audio`` is float32 [frames, channels] of exactly ``bars`` bars at ``bpm``."""

    clip_id: str
    audio: np.ndarray
    bpm: float
    bars: int


@dataclass(frozen=True)
class LoopStarted:
    """A loop (re)started at ``frame``, the first frame of bar ``bar``.

    ``repeat`` is 0 when ``clip_id`` starts and counts its repetitions after that;
    ``crossfade_frames`` is the length of the fade that ended at ``frame`` (0 for a repeat or a
    start from silence).
    """

    frame: int
    bar: int
    clip_id: str
    repeat: int
    bpm: float
    crossfade_frames: int
    clip: Clip | None = field(default=None, compare=False, repr=False)
    """The clip itself when it starts (``repeat`` 0), for whoever keeps a copy of what plays."""


@dataclass(frozen=True)
class ClipDropped:
    """Clip ``clip_id`` never played: ``replaced_by`` arrived first (submitted at cursor ``frame``)."""

    frame: int
    clip_id: str
    replaced_by: str


@dataclass(frozen=True)
class Stopped:
    """The sound stopped at ``frame``, the first frame of bar ``bar`` (transport stop)."""

    frame: int
    bar: int


Event = LoopStarted | ClipDropped | Stopped


@dataclass(frozen=True)
class RenderedBlock:
    """Frames ``[start_frame, start_frame + len(frames))`` and the events that happened in them
    (plus events from :meth:`Timeline.submit` calls since the previous block)."""

    start_frame: int
    frames: np.ndarray
    events: list[Event] = field(default_factory=list)


def equal_power_gains(length: int, start: int = 0, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fade-out and fade-in gains for positions ``start .. start+count`` of a ``length`` fade.

    Sample-centred quarter-wave: ``out = cos(t)``, ``in = sin(t)`` with
    ``t = (i + 0.5) / length * pi / 2``; ``out**2 + in**2 == 1`` at every sample, so the sum of two
    uncorrelated signals of equal power keeps that power through the fade.
    """
    if count is None:
        count = length - start
    t = (np.arange(start, start + count, dtype=np.float64) + 0.5) * (math.pi / 2.0 / length)
    return np.cos(t).astype(np.float32), np.sin(t).astype(np.float32)


def fade_fits(pos: int, seam: int, fade_frames: int, min_fade_frames: int) -> bool:
    """The seam rule: a fade into a clip can still end on ``seam`` from cursor ``pos`` (at or
    before the full fade's start, or with at least ``min_fade_frames`` left before the seam)."""
    return pos < seam and (pos <= seam - fade_frames or seam - pos >= min_fade_frames)


class _Playing:
    """The clip being looped and where its current repetition started."""

    __slots__ = ("clip", "iteration_start", "repeat")

    def __init__(self, clip: Clip, start: int) -> None:
        self.clip = clip
        self.iteration_start = start
        self.repeat = 0

    @property
    def seam(self) -> int:
        return self.iteration_start + len(self.clip.audio)


class _Pending:
    __slots__ = ("clip", "not_before", "fade_start")

    def __init__(self, clip: Clip, not_before: int) -> None:
        self.clip = clip
        self.not_before = not_before
        self.fade_start: int | None = None  # set once the fade has begun (the clip is committed)


class Timeline:
    """Loops clips on the bar grid of ``tempo`` and renders blocks of ``channels`` float32 frames."""

    def __init__(
        self,
        tempo: TempoMap,
        channels: int = 2,
        crossfade_ms: float = DEFAULT_CROSSFADE_MS,
        min_crossfade_frames: int = 64,
        start_frame: int = 0,
    ) -> None:
        if crossfade_ms < 0:
            raise ValueError(f"crossfade_ms must be >= 0, got {crossfade_ms}")
        self._tempo = tempo
        self._tempo_history: list[TempoMap] = [tempo]  # maps in force, by anchor frame
        self.channels = channels
        self.crossfade_frames = int(round(crossfade_ms * tempo.sample_rate / 1000.0))
        self.min_crossfade_frames = min(min_crossfade_frames, self.crossfade_frames)
        self._cursor = start_frame  # a stream joined later (an engine attaching to a host)
        self._playing: _Playing | None = None
        self._pending: _Pending | None = None
        self._queued_after_fade: _Pending | None = None  # next clip, while a fade is under way
        self._events: list[Event] = []
        self._last: Clip | None = None  # the clip started last (what play starts again)
        self._stop_at: int | None = None
        self._stopped = False
        self._play_at: int | None = None

    # --- read-only state -----------------------------------------------------------------------

    @property
    def tempo(self) -> TempoMap:
        """The tempo map as rendered so far (it changes at the seams of clips at a new tempo)."""
        return self._tempo

    def tempo_at(self, frame: int) -> TempoMap:
        """The tempo map in force at ``frame`` (the render cursor runs ahead of playback, so
        use this, not :attr:`tempo`, for beats and bars of the frame being heard)."""
        for tempo in reversed(self._tempo_history):
            if frame >= tempo.anchor_frame:
                return tempo
        return self._tempo_history[0]

    @property
    def cursor(self) -> int:
        """The next frame :meth:`render_block` will produce."""
        return self._cursor

    @property
    def current_clip_id(self) -> str | None:
        return self._playing.clip.clip_id if self._playing else None

    @property
    def pending_clip_id(self) -> str | None:
        return self._pending.clip.clip_id if self._pending else None

    @property
    def stopped(self) -> bool:
        """True while the transport is stopped (silent, waiting for :meth:`play`)."""
        return self._stopped

    @property
    def stopping_at(self) -> int | None:
        """The bar line frame a requested stop ends the sound at, until it is reached."""
        return self._stop_at

    @property
    def stop_fade_frames(self) -> int:
        """Frames of the fade-out that ends at a stop's bar line."""
        least = round(STOP_FADE_MIN_MS * self._tempo.sample_rate / 1000.0)
        return max(self.crossfade_frames, least)

    def next_seam_frame(self) -> int:
        """The next frame (at or after the cursor) where a new clip could start.

        The end of the current repetition, or while nothing plays the next bar line.
        """
        if self._playing is None:
            return self._tempo.bar_line_at_or_after(self._cursor)
        return self._playing.seam

    def fade_start_frame(self, clip_frames: int | None = None) -> int:
        """The cursor frame by which a clip must be submitted to get a full crossfade into the
        next seam (the planner's deadline, before subtracting ring latency and safety margin)."""
        seam = self.next_seam_frame()
        if self._playing is None:
            return seam
        return seam - self._fade_length(len(self._playing.clip.audio), clip_frames)

    def landing_seam(self, clip_frames: int) -> int:
        """The seam a clip of ``clip_frames`` submitted now starts at (what :meth:`render_block`
        will do with it, by the one rule :func:`fade_fits`): the next seam if its fade still
        fits, else the seam after; while a fade into another clip is under way, the seam after.
        With nothing playing, the next bar line."""
        seam = self.next_seam_frame()
        playing = self._playing
        if playing is None:
            return seam
        length = len(playing.clip.audio)
        pending = self._pending
        if pending is not None and pending.fade_start is not None:
            return seam + length  # a fade into the queued clip is under way
        fade = self._fade_length(length, clip_frames)
        if fade == 0 or fade_fits(self._cursor, seam, fade, self.min_crossfade_frames):
            return seam
        return seam + length

    # --- input ---------------------------------------------------------------------------------

    def make_clip(self, clip_id: str, audio: np.ndarray, bpm: float, bars: int) -> Clip:
        """Validate and normalise audio into a :class:`Clip` for this timeline.

        Mono audio ([n] or [n, 1]) is copied to every channel. The length must be exactly
        ``loop_frames(bars, bpm, sample_rate, beats_per_bar)``; a wrong length is a renderer bug
        (ValueError), because its seams would miss the bar lines.
        """
        data = np.asarray(audio, dtype=np.float32)
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2 or data.shape[1] not in (1, self.channels):
            raise ValueError(f"clip {clip_id!r}: expected [frames, {self.channels}] audio, got {data.shape}")
        if data.shape[1] != self.channels:
            data = np.repeat(data, self.channels, axis=1)
        expected = loop_frames(bars, bpm, self._tempo.sample_rate, self._tempo.beats_per_bar)
        if len(data) != expected:
            raise ValueError(
                f"clip {clip_id!r}: {len(data)} frames, but {bars} bars at {bpm} bpm are {expected} frames"
            )
        return Clip(clip_id=clip_id, audio=np.ascontiguousarray(data), bpm=float(bpm), bars=bars)

    def submit(self, clip: Clip, not_before_frame: int = 0) -> None:
        """Queue ``clip`` for the earliest seam at or after ``not_before_frame``.

        Replaces (and reports as dropped) a queued clip whose fade has not begun. If a fade into
        the queued clip has already begun, ``clip`` waits for the seam after that.
        """
        if clip.audio.ndim != 2 or clip.audio.shape[1] != self.channels or clip.audio.dtype != np.float32:
            raise ValueError(f"clip {clip.clip_id!r}: build clips with Timeline.make_clip()")
        pending = self._pending
        if pending is not None and pending.fade_start is None:
            self._events.append(ClipDropped(self._cursor, pending.clip.clip_id, clip.clip_id))
            self._pending = None
        if self._pending is None:
            self._pending = _Pending(clip, not_before_frame)
            return
        queued = self._queued_after_fade
        if queued is not None:
            self._events.append(ClipDropped(self._cursor, queued.clip.clip_id, clip.clip_id))
        self._queued_after_fade = _Pending(clip, not_before_frame)

    def stop(self, frame: int) -> None:
        """End the sound at ``frame`` (a bar line at or after ``cursor + stop_fade_frames``; an
        earlier frame is moved to the first bar line that leaves room for the fade).

        With nothing playing, it is stopped at once. Does nothing while stopped or stopping.
        """
        if self._stopped or self._stop_at is not None:
            return
        self._play_at = None
        if self._playing is None:
            self._stopped = True
            return
        earliest = self._cursor + self.stop_fade_frames
        self._stop_at = self._tempo.bar_line_at_or_after(max(frame, earliest))

    def play(self, not_before: int = 0) -> int | None:
        """Start again on the first bar line at or after ``not_before`` (and the cursor).

        A stop whose fade has not begun is called off (returns None: nothing stops). Else the
        queued clip, or the last one played, starts on that bar line; returns its frame.
        """
        if self._stop_at is not None and self._cursor <= self._stop_at - self.stop_fade_frames:
            self._stop_at = None
            return None
        if not self._stopped and self._stop_at is None:
            return None
        after = max(not_before, self._cursor, self._stop_at or 0)
        self._play_at = after
        return self._tempo.bar_line_at_or_after(after)

    # --- output --------------------------------------------------------------------------------

    def render_block(self, n: int) -> RenderedBlock:
        """Render the next ``n`` frames; returns them with the events they contain."""
        out = np.zeros((n, self.channels), dtype=np.float32)
        start = self._cursor
        end = start + n
        pos = start
        stop_at = self._stop_at
        while pos < end:
            if self._stop_at is not None and pos == self._stop_at:
                self._halt(pos)
                continue
            if self._playing is None:
                pos = self._render_idle(out, start, pos, end)
                continue
            playing = self._playing
            seam = playing.seam
            pending = self._pending
            if pos == seam:
                if (
                    self._eligible(pending, seam)
                    and self._fade_length(len(playing.clip.audio), len(pending.clip.audio)) == 0
                ):
                    pending.fade_start = seam  # crossfade off: a plain cut on the seam
                self._cross_seam(playing, seam)
                continue
            limit = min(end, seam)
            if self._stop_at is not None:
                limit = min(limit, self._stop_at)
            if self._eligible(pending, seam):
                fade = self._fade_length(len(playing.clip.audio), len(pending.clip.audio))
                if pos < seam - fade:
                    limit = min(limit, seam - fade)
                elif fade_fits(pos, seam, fade, self.min_crossfade_frames):
                    pending.fade_start = pos
            if pending is not None and pending.fade_start is not None:
                self._render_fade(out, start, pos, limit, playing, pending.clip, pending.fade_start, seam)
            else:
                offset = pos - playing.iteration_start
                out[pos - start : limit - start] = playing.clip.audio[offset : offset + limit - pos]
            pos = limit
        if stop_at is not None:
            self._fade_before_stop(out, start, stop_at)
        self._cursor = end
        events, self._events = self._events, []
        return RenderedBlock(start, out, events)

    # --- internals -----------------------------------------------------------------------------

    @staticmethod
    def _eligible(pending: _Pending | None, seam: int) -> TypeGuard[_Pending]:
        """A queued clip whose fade has not begun and which may start at ``seam``."""
        return pending is not None and pending.fade_start is None and seam >= pending.not_before

    def _fade_length(self, outgoing_frames: int, incoming_frames: int | None) -> int:
        length = min(self.crossfade_frames, outgoing_frames)
        if incoming_frames is not None:
            length = min(length, incoming_frames)
        return length

    def _fade_before_stop(self, out: np.ndarray, start: int, stop_at: int) -> None:
        """Fade out the frames of ``out`` (which starts at ``start``) that lie before a stop."""
        length = self.stop_fade_frames
        first, last = max(start, stop_at - length), min(start + len(out), stop_at)
        if first >= last:
            return
        fade_out, _ = equal_power_gains(length, first - (stop_at - length), last - first)
        out[first - start : last - start] *= fade_out[:, None]

    def _halt(self, frame: int) -> None:
        self._playing = None
        self._stopped = True
        self._stop_at = None
        self._events.append(Stopped(frame, self._tempo.bar_at(frame)))

    def _render_idle(self, out: np.ndarray, start: int, pos: int, end: int) -> int:
        """Silence until the first clip's bar line; returns the new position.

        While stopped: silence until :meth:`play`, then the queued or last clip on its bar line.
        """
        if self._stopped:
            return self._resume(pos, end)
        pending = self._pending
        if pending is None:
            return end
        first = self._tempo.bar_line_at_or_after(max(pos, pending.not_before))
        if first >= end:
            return end
        self._start_clip(pending.clip, first, crossfade=0)
        return first

    def _resume(self, pos: int, end: int) -> int:
        if self._play_at is None:
            return end
        first = self._tempo.bar_line_at_or_after(max(pos, self._play_at))
        if first >= end:
            return end
        self._stopped = False
        self._play_at = None
        if self._pending is not None:
            self._start_clip(self._pending.clip, first, crossfade=0)
        elif self._last is not None:
            self._start_clip(self._last, first, crossfade=0)
        return first

    def _render_fade(
        self,
        out: np.ndarray,
        start: int,
        pos: int,
        limit: int,
        playing: _Playing,
        incoming_clip: Clip,
        fade_start: int,
        seam: int,
    ) -> None:
        fade_len = seam - fade_start
        fade_out, fade_in = equal_power_gains(fade_len, pos - fade_start, limit - pos)
        old_offset = pos - playing.iteration_start
        old = playing.clip.audio[old_offset : old_offset + limit - pos]
        incoming = incoming_clip.audio
        new_offset = len(incoming) - (seam - pos)
        new = incoming[new_offset : new_offset + limit - pos]
        out[pos - start : limit - start] = old * fade_out[:, None] + new * fade_in[:, None]

    def _cross_seam(self, playing: _Playing, seam: int) -> None:
        pending = self._pending
        if pending is not None and pending.fade_start is not None:
            self._start_clip(pending.clip, seam, crossfade=seam - pending.fade_start)
            return
        playing.iteration_start = seam
        playing.repeat += 1
        self._events.append(
            LoopStarted(seam, self._tempo.bar_at(seam), playing.clip.clip_id, playing.repeat, self._tempo.bpm, 0)
        )

    def _start_clip(self, clip: Clip, frame: int, crossfade: int) -> None:
        if clip.bpm != self._tempo.bpm:
            self._tempo = self._tempo.with_tempo(clip.bpm, frame)
            self._tempo_history = self._tempo_history[-15:] + [self._tempo]
        self._playing = _Playing(clip, frame)
        self._last = clip
        self._pending = self._queued_after_fade
        self._queued_after_fade = None
        self._events.append(LoopStarted(frame, self._tempo.bar_at(frame), clip.clip_id, 0, clip.bpm, crossfade, clip))
