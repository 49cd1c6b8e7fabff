"""Loops rendered ahead: which loop of the walk to render next, and the ones waiting their seam.

Bookkeeping only (no threads, no I/O, no clock): the engine asks :meth:`Ahead.candidate` for
the loop the planner should want, tells it about jobs issued and results, and hands the
timeline the next ready loop whenever the timeline has none queued (:meth:`Ahead.take`).

Rules:

- While the loops walk (evolve on, a glide under way) the next loop is known:
  :func:`~riffengine.evolve.next_loop` of the last one made. Such a job is *speculative*; it
  is only started while fewer than ``ahead`` loops are ready (queued on the timeline or here).
- A control change that touches the clip (a ``render``, ``stretch`` or ``walk`` parameter)
  restarts the walk from the loop heard now (:func:`~riffengine.evolve.restart`), drops the
  loops waiting here and marks a speculative job in flight stale: its result is not played.
  The restart's job is not speculative: it starts at once (newest state wins) and its clip
  replaces whatever the timeline has queued.
- A failed job leaves the walk where it was: the same loop is asked for again (the planner
  waits for the engine's back-off before it retries).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from riffengine import evolve
from riffengine.control import params
from riffengine.evolve import Loop
from riffengine.state import State

LOOPS_KEPT = 32
"""Loops remembered by clip id (the heard one is always among them)."""

_TOUCHES_CLIP = frozenset(p.name for p in params.PARAMS if p.effect in ("render", "stretch", "walk"))


def touches_clip(old: State, new: State) -> bool:
    """True if a change from ``old`` to ``new`` changes a clip or the walk."""
    return any(old.values[name] != new.values[name] for name in _TOUCHES_CLIP)


@dataclass(frozen=True)
class Planned:
    """A loop of the walk with the State it was planned from and whether it was speculative."""

    loop: Loop
    state: State
    speculative: bool


@dataclass
class Ready:
    """A rendered loop waiting for the timeline: ``clip`` (a timeline Clip) and what it is."""

    clip: object
    planned: Planned
    job: object


class Ahead:
    """The walk's bookkeeping for the engine; ``ahead`` loops are kept rendered at most."""

    def __init__(self, ahead: int) -> None:
        self.ahead = ahead
        self.tail: Planned | None = None
        """The last loop made (the warm-up's, then each good result's)."""
        self.restarting = False
        self.ready: deque[Ready] = deque()
        self.jobs: dict[int, Planned] = {}
        self.stale: set[int] = set()
        self.dropped = 0
        """Speculative loops thrown away by control changes (rendered or in flight)."""
        self._clips: dict[str, Planned] = {}

    # --- what plays ---------------------------------------------------------------------------

    def start(self, loop: Loop, state: State, clip_id: str) -> None:
        """The first loop (the warm-up's) or a loop placed from outside (a panic)."""
        self.tail = Planned(loop, state, False)
        self.restarting = False
        self.ready.clear()
        self.remember(clip_id, self.tail)

    def remember(self, clip_id: str, planned: Planned) -> None:
        self._clips[clip_id] = planned
        while len(self._clips) > LOOPS_KEPT:
            self._clips.pop(next(iter(self._clips)))

    def loop_of(self, clip_id: str | None) -> Planned | None:
        """The loop a clip plays, if it is one of the walk's."""
        return self._clips.get(clip_id or "")

    # --- changes --------------------------------------------------------------------------------

    def changed(self, old: State, new: State, in_flight: int | None) -> int:
        """A State change: restart from the heard loop if it touches the clip. Returns the
        number of speculative loops dropped (rendered and waiting, or in flight)."""
        if self.tail is None or not touches_clip(old, new):
            return 0
        self.restarting = True
        dropped = len(self.ready)
        self.ready.clear()
        planned = self.jobs.get(in_flight) if in_flight is not None else None
        if in_flight is not None and planned is not None and planned.speculative and in_flight not in self.stale:
            self.stale.add(in_flight)
            dropped += 1
        self.dropped += dropped
        return dropped

    # --- planning ---------------------------------------------------------------------------------

    def candidate(self, state: State, heard_clip: str | None, queued_on_timeline: int) -> Planned | None:
        """The loop the planner should want next, or None to want nothing new.

        ``heard_clip``: the clip playing at the render cursor; ``queued_on_timeline``: clips
        submitted to the timeline that have not started.
        """
        tail = self.tail
        if tail is None:
            return None
        if self.restarting:
            heard = self.loop_of(heard_clip) or tail
            planned = Planned(evolve.restart(heard.loop, heard.state, state), state, False)
            if planned.loop.key == tail.loop.key:  # the change asks for nothing new
                self.restarting = False
                self.tail = planned
            return planned
        loop = evolve.next_loop(tail.loop, state)
        if loop.key == tail.loop.key:
            return Planned(tail.loop, state, False)  # nothing moves: the planner has it already
        if len(self.ready) + queued_on_timeline >= self.ahead:
            return None
        return Planned(loop, state, True)

    def issued(self, job_number: int, planned: Planned) -> None:
        self.jobs[job_number] = planned

    def result(self, job_number: int, ok: bool) -> tuple[Planned | None, bool]:
        """A job ended: (its loop, whether to play it). A stale or failed one is not played."""
        planned = self.jobs.pop(job_number, None)
        stale = job_number in self.stale
        self.stale.discard(job_number)
        if planned is None or stale or not ok:
            return planned, False
        self.tail = planned
        if not planned.speculative:
            self.restarting = False
        return planned, True

    def add_ready(self, clip: object, planned: Planned, job: object) -> None:
        self.ready.append(Ready(clip, planned, job))

    def take(self) -> Ready | None:
        """The next ready loop for the timeline, or None."""
        return self.ready.popleft() if self.ready else None
