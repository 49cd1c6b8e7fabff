"""The render pool: Ray actors behind the local worker's interface, guesses on spare workers.

:class:`RayPool` has :class:`~riffengine.render.worker.RenderWorker`'s interface (``submit``,
``stop``, ``running``, ``idle``, ``wait_idle``, ``renderer``), so the engine schedules renders
the same way on either backend.

Rules:

- Newest state wins, as on the local worker: :meth:`RayPool.submit` replaces the primary job
  that has not started yet. The primary job runs on the first worker alive (the *primary*
  worker), which never takes guesses; the other workers render the guesses of
  :meth:`RayPool.speculate` (the newest list replaces the older one) into the speculation
  store. A primary job whose clip is in the store is answered from it at once (no new render);
  one whose clip a worker is rendering as a guess waits for that render.
- One dispatcher thread makes every Ray call. Other threads only call the public methods.
  ``on_result`` and ``events.publish`` are called on that thread (or the local worker's) and
  must not block (the engine hands them to its loop).
- Faults never silence the engine. A worker whose process dies or whose node is lost (Ray
  reports the actor's death), or whose render runs past :func:`hang_limit` (the pool kills it),
  is marked lost; its primary job moves to another idle worker, or to the local worker when
  none is alive. Ray restarts the actor (``max_restarts``), which loads the model again; when
  it answers, it takes jobs again. When Ray itself fails (the head is gone), every job goes to
  the local worker from then on. Each of these is an event (``worker_lost``,
  ``worker_restarted``, ``render_fallback``).
- The local worker (a :class:`RenderWorker` over ``local_maker``) is made on first need: with
  ``render.backend: ray`` the engine's machine may load no model until a fault asks for one.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from riffengine.render.worker import RenderJob, RenderResult, RenderWorker

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02
"""How long the dispatcher waits for Ray between looks at new jobs."""
PING_SECONDS = 1.0
"""How often a lost worker is asked whether it is back."""
HANG_MIN_SECONDS = 30.0
HANG_FACTOR = 5.0
"""A render is hung past ``max(HANG_MIN_SECONDS, HANG_FACTOR x the worker's slowest recent render)``."""
STORE_SIZE = 32
"""Speculated clips kept (least recently used dropped first)."""

STARTING, IDLE, BUSY, LOST = "starting", "idle", "busy", "lost"


class Publisher(Protocol):
    """Where the pool reports worker events (thread-safe; the engine hands them to its loop)."""

    def publish(self, kind: str, **data: Any) -> Any: ...


def hang_limit(recent: Sequence[float]) -> float:
    """Seconds after which a render counts as hung, from the worker's recent render times."""
    return max(HANG_MIN_SECONDS, HANG_FACTOR * max(recent, default=0.0))


@dataclass
class Slot:
    """One Ray actor and what it is doing (dispatcher thread only)."""

    name: str
    actor: Any
    state: str = STARTING
    where: dict[str, object] = field(default_factory=dict)
    ref: Any = None
    spec: Any = None
    job: RenderJob | None = None
    started: float = 0.0
    pinged: float = 0.0
    seconds: deque = field(default_factory=lambda: deque(maxlen=8))
    renders: int = 0
    guesses: int = 0
    restarts: int = 0

    def status(self) -> dict[str, object]:
        """Plain figures for status replies."""
        recent = list(self.seconds)
        return {
            "name": self.name,
            "state": self.state,
            "host": self.where.get("host", ""),
            "node": self.where.get("node", ""),
            "pid": self.where.get("pid", 0),
            "renders": self.renders,
            "guesses": self.guesses,
            "restarts": self.restarts,
            "last_ms": round(recent[-1] * 1000.0, 1) if recent else 0.0,
            "mean_ms": round(sum(recent) / len(recent) * 1000.0, 1) if recent else 0.0,
        }


class SpeculationStore:
    """Clips by spec (guesses and primary renders), least recently used dropped first
    (thread-safe). ``hits`` counts every answer, ``guess_hits`` those a guess made."""

    def __init__(self, size: int = STORE_SIZE) -> None:
        self.size = size
        self._clips: OrderedDict[Any, tuple[Any, str, bool]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.guess_hits = 0

    def put(self, spec: Any, clip: Any, worker: str, guessed: bool = False) -> None:
        with self._lock:
            self._clips[spec] = (clip, worker, guessed)
            self._clips.move_to_end(spec)
            while len(self._clips) > self.size:
                self._clips.popitem(last=False)

    def take(self, spec: Any) -> tuple[Any, str] | None:
        """The clip stored for ``spec`` and its worker, or None; a hit counts."""
        with self._lock:
            found = self._clips.get(spec)
            if found is None:
                return None
            self._clips.move_to_end(spec)
            self.hits += 1
            self.guess_hits += found[2]
            return found[0], found[1]

    def __contains__(self, spec: Any) -> bool:
        with self._lock:
            return spec in self._clips


def _cause(exc: BaseException) -> BaseException:
    """The error a Ray task raised, unwrapped from Ray's wrapper."""
    return getattr(exc, "cause", None) or exc


class RayPool:
    """Render workers on Ray; see the module docstring for the rules.

    ``actor_class``: the ``ray.remote`` class of :class:`~riffengine.render.workers.actor.RenderActor`;
    ``make_maker``: what each actor calls to load its model (picklable); ``local_maker``: the
    maker of the local fallback worker.
    """

    def __init__(
        self,
        ray: Any,
        actor_class: Any,
        make_maker: Callable[[], Any],
        workers: int,
        on_result: Callable[[RenderResult], None],
        events: Publisher,
        local_maker: Any,
        options: dict[str, object],
        owns_ray: bool = False,
    ) -> None:
        self.ray = ray
        self.owns_ray = owns_ray
        """Shut Ray down at :meth:`stop` (the engine started the instance: ``render.ray.address: local``)."""
        self.on_result = on_result
        self.events = events
        self.renderer = local_maker
        """The local worker's maker (the engine sets ``on_step`` on it, as on the local backend)."""
        self.store = SpeculationStore()
        self.slots = [Slot(f"ray-{i}", actor_class.options(**options).remote(make_maker)) for i in range(workers)]
        self.fallback_reason = ""
        """Why every job goes to the local worker ('' while Ray works)."""
        self._local: RenderWorker | None = None
        self._cond = threading.Condition()
        self._pending: RenderJob | None = None
        self._guesses: list[Any] = []
        self._stopping = False
        self._on_local = False  # jobs go to the local worker until a worker is back
        self._thread = threading.Thread(target=self._run, name="riffengine-ray-pool", daemon=True)
        for slot in self.slots:
            slot.ref = slot.actor.where.remote()

    # -- called from any thread

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: RenderJob) -> RenderJob | None:
        """Queue ``job`` as the next primary render; returns the not-yet-started job it replaced."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("the render pool is stopped")
            if self.fallback_reason:
                return self._local_worker().submit(job)
            dropped, self._pending = self._pending, job
            self._cond.notify()
        return dropped

    def speculate(self, specs: Sequence[Any]) -> None:
        """Render these specs on spare workers, in this order (replaces the older guesses)."""
        with self._cond:
            self._guesses = [s for s in specs if s not in self.store]

    def stop(self, timeout: float | None = None) -> None:
        """Stop dispatching, end the thread and the local worker; the actors are killed."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._local is not None:
            self._local.stop(timeout)
        if not self.ray.is_initialized():
            return
        for slot in self.slots if not self.fallback_reason else ():
            try:
                self.ray.kill(slot.actor, no_restart=True)
            except Exception as exc:  # noqa: BLE001 - Ray may be gone already
                log.debug("cannot kill %s: %s", slot.name, exc)
        if self.owns_ray:
            self.ray.shutdown()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() or (self._local is not None and self._local.alive)

    @property
    def pending(self) -> RenderJob | None:
        with self._cond:
            return self._pending

    @property
    def running(self) -> RenderJob | None:
        """The primary job being rendered now, if any."""
        with self._cond:
            for slot in self.slots:
                if slot.job is not None:
                    return slot.job
        return self._local.running if self._local is not None else None

    @property
    def idle(self) -> bool:
        return self.pending is None and self.running is None and (self._local is None or self._local.idle)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no primary job runs or waits (tests and tools; never in the loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.idle:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def status(self) -> list[dict[str, object]]:
        """Each worker: name, state, where it runs, render counts and times."""
        with self._cond:
            return [slot.status() for slot in self.slots]

    def pid_of(self, name: str) -> int:
        """The process id of worker ``name`` as it last reported it (0 before it started)."""
        with self._cond:
            pid = next(s for s in self.slots if s.name == name).where.get("pid", 0)
        return pid if isinstance(pid, int) else 0

    # -- the dispatcher thread

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - Ray itself failed: render locally from now on
                self._ray_gone(exc)
                return

    def _step(self) -> None:
        if not self.ray.is_initialized():  # shut down under us: Ray's calls would start a new one
            raise ConnectionError("Ray was shut down")
        self._dispatch_primary()
        self._dispatch_guesses()
        self._watch()
        refs = {slot.ref: slot for slot in self.slots if slot.ref is not None}
        if not refs:
            with self._cond:
                self._cond.wait(POLL_SECONDS)
            return
        ready, _ = self.ray.wait(list(refs), num_returns=1, timeout=POLL_SECONDS)
        for ref in ready:
            self._collect(refs[ref], ref)

    def _watch(self) -> None:
        """Kill a hung render; ask a lost worker again whether Ray has restarted it."""
        now = time.monotonic()
        for slot in self.slots:
            if slot.state == BUSY and now - slot.started > hang_limit(slot.seconds):
                self._kill_hung(slot)
            elif slot.state == LOST and slot.ref is None and now - slot.pinged > PING_SECONDS:
                slot.pinged = now
                slot.ref = slot.actor.where.remote()

    def _alive(self) -> list[Slot]:
        return [s for s in self.slots if s.state in (IDLE, BUSY)]

    def _primary_slot(self) -> Slot | None:
        alive = self._alive()
        return alive[0] if alive else None

    def _dispatch_primary(self) -> None:
        with self._cond:
            job = self._pending
            if job is None:
                return
            found = self.store.take(job.spec)
            if found is not None:
                self._pending = None
                self._answer_from_store(job, *found)
                return
            guessing = next((s for s in self.slots if s.state == BUSY and s.job is None and s.spec == job.spec), None)
            if guessing is not None:  # a guess became the newest state: its render is the job
                self._pending, guessing.job = None, job
                return
            primary = self._primary_slot()
            if primary is not None and primary.state == IDLE:
                self._pending = None
                self._send(primary, job.spec, job)
                return
            if primary is None and not any(s.state == STARTING for s in self.slots):
                self._pending = None
                if not self._on_local:
                    self._on_local = True
                    self.events.publish("render_fallback", reason="no render worker is alive")
                self._local_worker().submit(job)

    def _dispatch_guesses(self) -> None:
        primary = self._primary_slot()
        with self._cond:
            for slot in self._alive():
                if slot is primary or slot.state != IDLE:
                    continue
                spec = self._next_guess()
                if spec is None:
                    return
                self._send(slot, spec, None)

    def _next_guess(self) -> Any:
        busy = {s.spec for s in self.slots if s.state == BUSY}
        while self._guesses:
            spec = self._guesses.pop(0)
            if spec not in busy and spec not in self.store:
                return spec
        return None

    def _send(self, slot: Slot, spec: Any, job: RenderJob | None) -> None:
        slot.state, slot.spec, slot.job, slot.started = BUSY, spec, job, time.monotonic()
        slot.ref = slot.actor.render.remote(spec)

    def _collect(self, slot: Slot, ref: Any) -> None:
        actor_errors = (self.ray.exceptions.RayActorError, self.ray.exceptions.ActorUnavailableError)
        try:
            value = self.ray.get(ref)
        except actor_errors as exc:
            slot.ref = None
            if slot.state == LOST:  # not back yet: ask again after PING_SECONDS
                slot.pinged = time.monotonic()
                return
            self._lost(slot, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return
        except Exception as exc:  # noqa: BLE001 - the render raised: the show goes on
            slot.ref = None
            self._render_error(slot, _cause(exc))
            return
        slot.ref = None
        if slot.state in (STARTING, LOST):
            self._came_up(slot, value)
        else:
            self._render_done(slot, value)

    def _came_up(self, slot: Slot, where: dict[str, object]) -> None:
        again = slot.state == LOST
        with self._cond:
            slot.state, slot.where = IDLE, dict(where)
            self._on_local = False
        if again:
            slot.restarts += 1
            log.info("render worker %s is back (pid %s on %s)", slot.name, where.get("pid"), where.get("host"))
            self.events.publish(
                "worker_restarted",
                worker=slot.name,
                host=where.get("host"),
                node=where.get("node"),
                pid=where.get("pid"),
                restarts=slot.restarts,
            )
        else:
            log.info(
                "render worker %s ready (pid %s on %s, GPUs %s)",
                slot.name,
                where.get("pid"),
                where.get("host"),
                where.get("gpus"),
            )
            self.events.publish(
                "worker_ready",
                worker=slot.name,
                host=where.get("host"),
                node=where.get("node"),
                pid=where.get("pid"),
                gpus=where.get("gpus"),
            )

    def _render_done(self, slot: Slot, clip: Any) -> None:
        wall = time.monotonic() - slot.started
        with self._cond:
            job, spec = slot.job, slot.spec
            slot.state, slot.job, slot.spec = IDLE, None, None
        slot.seconds.append(wall)
        timings = dict(getattr(clip, "timings", {}) or {})
        timings["transfer"] = max(0.0, wall - clip.seconds)
        clip = dataclasses.replace(clip, seconds=wall, timings=timings)
        if job is None:
            slot.guesses += 1
            self.store.put(spec, clip, slot.name, guessed=True)
            request = spec.request
            self.events.publish(
                "render_speculated",
                worker=slot.name,
                ms=round(wall * 1000.0, 1),
                alpha=request.alpha,
                seed=request.a.seed,
            )
            return
        slot.renders += 1
        self.store.put(spec, clip, slot.name)
        self.on_result(RenderResult(job, clip, None, wall, worker=slot.name))

    def _render_error(self, slot: Slot, error: BaseException) -> None:
        with self._cond:
            job = slot.job
            slot.state, slot.job, slot.spec = IDLE, None, None
        if job is not None:
            self.on_result(RenderResult(job, None, error, time.monotonic() - slot.started, worker=slot.name))

    def _answer_from_store(self, job: RenderJob, clip: Any, worker: str) -> None:
        clip = dataclasses.replace(clip, seconds=0.0, timings={"speculated": 0.0})
        self.on_result(RenderResult(job, clip, None, 0.0, worker=worker))

    def _lost(self, slot: Slot, reason: str) -> None:
        """``slot``'s actor died (or was killed): move its primary job, wait for Ray's restart."""
        with self._cond:
            job = slot.job
            slot.state, slot.job, slot.spec = LOST, None, None
            slot.pinged = time.monotonic()
            if job is not None and self._pending is None:
                self._pending = job  # to the next worker alive, or the local one
            moved = job is not None and self._pending is job
        log.warning("render worker %s lost (%s)%s", slot.name, reason, "; its job moves on" if moved else "")
        self.events.publish(
            "worker_lost", worker=slot.name, reason=reason, job=job.tag if job is not None else None, moved=moved
        )
        slot.ref = slot.actor.where.remote()  # answers once Ray has restarted it

    def _kill_hung(self, slot: Slot) -> None:
        log.warning(
            "render worker %s hung (%.0f s on one render); killing it for a restart",
            slot.name,
            time.monotonic() - slot.started,
        )
        slot.started = time.monotonic()  # one kill per hang
        self.ray.kill(slot.actor, no_restart=False)  # its render ref then fails: _lost

    def _ray_gone(self, exc: BaseException) -> None:
        """Ray itself failed: every job, the one in flight included, goes to the local worker."""
        with self._cond:
            self.fallback_reason = f"Ray failed: {type(exc).__name__}: {exc}"
            jobs = [s.job for s in self.slots if s.job is not None]
            if self._pending is not None:
                jobs = [self._pending]  # newest wins
            self._pending = None
            for slot in self.slots:
                slot.state, slot.job, slot.spec, slot.ref = LOST, None, None, None
        log.error("render pool: %s; rendering locally from now on", self.fallback_reason)
        self.events.publish("render_fallback", reason=self.fallback_reason)
        if jobs:
            self._local_worker().submit(jobs[-1])

    def _local_worker(self) -> RenderWorker:
        if self._local is None:
            self._local = RenderWorker(self.renderer, self._local_result, name="riffengine-render-local")
            self._local.start()
        return self._local

    def _local_result(self, result: RenderResult) -> None:
        self.on_result(dataclasses.replace(result, worker="local"))
