"""The planner: what to render next, and when the change it carries will be heard.

Pure decision logic, no threads, no I/O, no clock of its own: the engine tells it the newest
State and the frames it knows (render cursor, next seam, loop length), and executes what it
decides. Frames are those of the timeline (the render cursor's clock, which is the master
clock shifted by the ring buffer's fill).

Rules:

- Newest state wins. The planner remembers only the newest wanted State, never a queue. At most
  one job is in flight; when it ends, the planner looks at the newest State again, so a burst
  of knob moves costs one render of the latest values, and stale ones are dropped, not queued.
- A job is a ``render`` (the image changes: diffusion) or a ``stretch`` (only tempo or bars
  changed: the last good image is decoded again at the new length, no diffusion). Each kind
  has its own measured duration.
- A clip key that was tried and failed is not retried by itself: the next State change tries
  again, or the engine calls :meth:`Planner.retry` after its back-off (the renderer may have
  recovered). The last good loop keeps playing meanwhile (the timeline repeats it).
- When a change will be heard: the first seam ``S`` (the next seam, then every loop length
  after it) whose crossfade starts after the clip is expected to be ready:
  ``S - fade >= cursor + (expected render time + safety margin) * rate``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import SupportsFloat, SupportsInt, cast

from riffengine.render.request import RenderRequest, to_render_request
from riffengine.state import State

ClipKey = tuple[RenderRequest, float, int]
"""What a clip depends on: the render request, the tempo and the bars."""

RENDER = "render"
STRETCH = "stretch"


def clip_key(state: State) -> ClipKey:
    """The key of the clip ``state`` asks for (meter and live parameters are not part of it)."""
    bpm, bars = cast(SupportsFloat, state.values["bpm"]), cast(SupportsInt, state.values["bars"])
    return to_render_request(state), float(bpm), int(bars)


def first_seam_after(ready_frame: int, next_seam: int, loop_frames: int, fade_frames: int) -> int:
    """The first seam ``next_seam + k * loop_frames`` whose fade starts at or after ``ready_frame``."""
    if loop_frames <= 0:
        raise ValueError(f"loop_frames must be positive, got {loop_frames}")
    start = next_seam - fade_frames
    if ready_frame <= start:
        return next_seam
    k = math.ceil((ready_frame - start) / loop_frames)
    return next_seam + k * loop_frames


def ready_frame(cursor: int, expected_seconds: float, margin_seconds: float, sample_rate: int) -> int:
    """The cursor frame by which a job started now is expected to be ready, margin included."""
    return cursor + math.ceil((expected_seconds + margin_seconds) * sample_rate)


def estimate_seconds(durations: Sequence[float], default: float) -> float:
    """A cautious render-time estimate: the slowest of the last five, else ``default``."""
    recent = list(durations)[-5:]
    return max(recent) if recent else default


@dataclass(frozen=True)
class Job:
    """One render the planner asked for.

    ``version`` is the State's version, ``issued_frame`` the cursor when it was issued,
    ``target_seam`` the seam it is expected to make (its "heard at" frame), ``expected``
    the seconds it is expected to take.
    """

    number: int
    key: ClipKey
    kind: str
    version: int
    issued_frame: int
    expected: float
    target_seam: int

    @property
    def request(self) -> RenderRequest:
        return self.key[0]

    @property
    def bpm(self) -> float:
        return self.key[1]

    @property
    def bars(self) -> int:
        return self.key[2]


@dataclass
class Planner:
    """Holds the newest wanted State, the job in flight and the measured render times.

    ``default_seconds`` stands for a render time until one is measured (the warm-up render
    gives the first); ``margin_seconds`` is the safety margin before a seam's crossfade.
    """

    sample_rate: int
    default_seconds: float = 5.0
    margin_seconds: float = 0.25
    wanted: State | None = None
    wanted_key: ClipKey | None = None
    in_flight: Job | None = None
    last_good_key: ClipKey | None = None
    last_tried_key: ClipKey | None = None
    jobs_issued: int = 0
    superseded: int = 0
    durations: dict[str, deque] = field(default_factory=lambda: {RENDER: deque(maxlen=16), STRETCH: deque(maxlen=16)})

    # --- inputs -------------------------------------------------------------------------------

    def want(self, state: State, key: ClipKey | None = None) -> None:
        """Remember the newest State (an older wanted State is forgotten: newest wins).

        ``key`` is the clip it asks for when that is not simply :func:`clip_key` of the State
        (the next loop of an evolve or glide walk, :mod:`riffengine.evolve`).
        """
        if self.wanted is not None and self.in_flight is not None and state is not self.wanted:
            if self.wanted_key != self.in_flight.key:
                self.superseded += 1
        self.wanted = state
        self.wanted_key = key if key is not None else clip_key(state)

    def finished(self, job: Job, ok: bool, seconds: float) -> None:
        """Record the end of ``job``: its key becomes the last good one when ``ok``."""
        if self.in_flight is not None and self.in_flight.number == job.number:
            self.in_flight = None
        self.last_tried_key = job.key
        if ok:
            self.last_good_key = job.key
            self.durations[job.kind].append(seconds)

    def mark_good(self, key: ClipKey, kind: str, seconds: float) -> None:
        """Record a clip made outside the planner (the warm-up render)."""
        self.last_good_key = self.last_tried_key = key
        self.durations[kind].append(seconds)

    def adopt(self, key: ClipKey) -> None:
        """Record a clip that needed no render (the bank's safe loop): no duration measured."""
        self.last_good_key = self.last_tried_key = key

    def forget_made(self) -> None:
        """Forget every clip made so far and its times (they came from a stand-in renderer):
        the newest State is rendered again."""
        self.last_good_key = self.last_tried_key = None
        for durations in self.durations.values():
            durations.clear()

    def drop(self, job: Job) -> None:
        """Forget ``job`` without using its result (it was overtaken, e.g. by a panic)."""
        if self.in_flight is not None and self.in_flight.number == job.number:
            self.in_flight = None

    def failed_key(self) -> ClipKey | None:
        """The key last tried without success, or None."""
        if self.last_tried_key is None or self.last_tried_key == self.last_good_key:
            return None
        return self.last_tried_key

    def retry(self) -> bool:
        """Allow the failed key to be tried again; True if there was one."""
        if self.failed_key() is None:
            return False
        self.last_tried_key = self.last_good_key
        return True

    # --- decisions ----------------------------------------------------------------------------

    def kind_for(self, key: ClipKey) -> str:
        """``stretch`` when only tempo or bars differ from the last good clip, else ``render``."""
        if self.last_good_key is not None and key[0] == self.last_good_key[0]:
            return STRETCH
        return RENDER

    def expected_seconds(self, kind: str) -> float:
        default = self.default_seconds
        if kind == STRETCH:
            default = estimate_seconds(self.durations[RENDER], self.default_seconds) * 0.1
        return estimate_seconds(self.durations[kind], default)

    def needs_job(self) -> bool:
        """True when the newest State asks for a clip that is neither made, tried nor in flight."""
        if self.wanted is None or self.in_flight is not None:
            return False
        key = self.wanted_key
        return key != self.last_good_key and key != self.last_tried_key

    def next_job(
        self, cursor: int, next_seam: int, loop_frames: int, fade_frames: int, not_before: int = 0
    ) -> Job | None:
        """The job to start now, or None (one in flight, or nothing new wanted).

        ``not_before``: the earliest seam it may target (a loop rendered ahead follows the
        loops already planned).
        """
        if not self.needs_job():
            return None
        assert self.wanted is not None and self.wanted_key is not None  # needs_job() checked
        key = self.wanted_key
        kind = self.kind_for(key)
        expected = self.expected_seconds(kind)
        ready = ready_frame(cursor, expected, self.margin_seconds, self.sample_rate)
        self.jobs_issued += 1
        job = Job(
            number=self.jobs_issued,
            key=key,
            kind=kind,
            version=self.wanted.version,
            issued_frame=cursor,
            expected=expected,
            target_seam=max(first_seam_after(ready, next_seam, loop_frames, fade_frames), not_before),
        )
        self.in_flight = job
        return job

    def realign_job(self, cursor: int, next_seam: int, loop_frames: int, fade_frames: int) -> Job | None:
        """A stretch of the last good clip, to move the loop's length (tempo sync), or None.

        Only when nothing is in flight and nothing new is wanted: a real change always wins.
        """
        if self.in_flight is not None or self.last_good_key is None or self.needs_job():
            return None
        expected = self.expected_seconds(STRETCH)
        ready = ready_frame(cursor, expected, self.margin_seconds, self.sample_rate)
        self.jobs_issued += 1
        self.in_flight = Job(
            number=self.jobs_issued,
            key=self.last_good_key,
            kind=STRETCH,
            version=self.wanted.version if self.wanted is not None else 0,
            issued_frame=cursor,
            expected=expected,
            target_seam=first_seam_after(ready, next_seam, loop_frames, fade_frames),
        )
        return self.in_flight

    def heard_at(self, cursor: int, next_seam: int, loop_frames: int, fade_frames: int) -> int | None:
        """The seam at which the newest State is expected to be heard, or None if it already is.

        A job in flight delays a new one by what is left of it.
        """
        if self.wanted is None:
            return None
        assert self.wanted_key is not None  # set with wanted
        key = self.wanted_key
        if self.in_flight is not None and self.in_flight.key == key:
            return self.in_flight.target_seam
        if key == self.last_good_key:
            return None
        seconds = self.expected_seconds(self.kind_for(key))
        if self.in_flight is not None:
            done = self.in_flight.issued_frame + self.in_flight.expected * self.sample_rate
            seconds += max(0.0, (done - cursor) / self.sample_rate)
        ready = ready_frame(cursor, seconds, self.margin_seconds, self.sample_rate)
        return first_seam_after(ready, next_seam, loop_frames, fade_frames)
