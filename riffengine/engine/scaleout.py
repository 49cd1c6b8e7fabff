"""Rendering on Ray workers (``render.backend: ray``): the pool started, its events published,
spare workers given the likely next states, the workers in the status.

A role of :class:`~riffengine.engine.core.Engine` (its methods run on the engine's loop
thread, on the engine's attributes). See ``docs/scale-out.md``.
"""

from __future__ import annotations

import contextlib
import functools
import logging

from riffengine import speculation
from riffengine.clipmaker import ClipMaker
from riffengine.engine.base import EngineBase
from riffengine.engine.model import LazyRenderer, build_cached_renderer, build_clip_maker
from riffengine.engine.parts import CHANNELS
from riffengine.render.fallback import FallbackRenderer
from riffengine.render.worker import RenderWorker
from riffengine.render.workers.pool import RayPool

log = logging.getLogger("riffengine.engine")

GUESSES = 8
"""Guesses handed to the spare workers at a time (the likeliest first)."""


class LoopPublisher:
    """``publish`` from any thread: the event is published on the engine's loop."""

    def __init__(self, loop, bus) -> None:
        self._loop = loop
        self._bus = bus

    def publish(self, kind: str, **data) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the engine has ended
            self._loop.call_soon_threadsafe(functools.partial(self._bus.publish, kind, **data))


class ScaleOutRole(EngineBase):
    """Rendering on Ray workers (see the module)."""

    def _local_renderer(self):
        """The renderer of the local worker: the one given, else the model loaded on first use."""
        if self._renderer is not None:
            return self._renderer
        if self._renderer_factory is not None:
            return self._renderer_factory(self.realtime)
        safe_pixels = self.safe.clip.pixels if self.safe is not None else None
        return LazyRenderer(
            functools.partial(build_cached_renderer, self.settings), functools.partial(FallbackRenderer, safe_pixels)
        )

    async def _start_pool(self) -> None:
        """Join Ray and start one actor per worker; on a Ray failure, render locally."""
        from riffengine.render.workers.actor import RenderActor
        from riffengine.render.workers.cluster import actor_options, connect, import_ray

        assert self._loop is not None  # run() made it before the renderer starts
        loop = self._loop
        render = self.settings.render
        import_ray()  # a UserError naming the extra when Ray is not installed
        self._maker = ClipMaker(self._local_renderer(), self.sample_rate, CHANNELS)
        self._guessed = None
        make_maker = functools.partial(build_clip_maker, self.settings, self.sample_rate, CHANNELS)

        def start() -> RayPool:
            ray, owned = connect(render.ray.address)
            options = actor_options(self.settings.model.device, ray.cluster_resources().get("GPU", 0.0))
            return RayPool(
                ray,
                ray.remote(RenderActor),
                make_maker,
                render.workers,
                self._result_from_worker,
                LoopPublisher(loop, self.bus),
                self._maker,
                options,
                owns_ray=owned,
            )

        try:
            pool = await loop.run_in_executor(None, start)
        except Exception as exc:  # noqa: BLE001 - no Ray: the local worker renders, never silence
            reason = f"cannot start Ray workers at {render.ray.address!r}: {type(exc).__name__}: {exc}"
            log.error("%s; rendering locally", reason)
            self.bus.publish("render_fallback", reason=reason)
            self.worker = RenderWorker(self._maker, self._result_from_worker)
            self.worker.start()
            return
        log.info("rendering on %d Ray worker(s) at %s", render.workers, render.ray.address)
        pool.start()
        self.worker = pool

    def _speculate(self) -> None:
        """Hand the spare workers the likely next states (when the State or the loop changed)."""
        if not isinstance(self.worker, RayPool) or len(self.worker.slots) < 2:
            return
        assert self.timeline is not None and self.planner is not None  # the pool starts after both
        speculate = self.worker.speculate
        state = self.store.state
        heard = self.ahead.loop_of(self.timeline.current_clip_id)
        marker = (state.version, self.timeline.current_clip_id, self.planner.last_good_key)
        if marker == self._guessed:
            return
        self._guessed = marker
        keys = speculation.candidates(
            state,
            heard.loop if heard is not None else None,
            self.settings.render.speculate_alpha_step,
            self.settings.scenes.values(),
            GUESSES,
            walk_steps=self.settings.render.ahead + speculation.WALK_STEPS,
        )
        speculate([self._spec(key) for key in keys])

    def _workers_figure(self) -> str:
        """Each Ray worker in one line: name, state, host, pid, renders, last render time."""
        status = getattr(self.worker, "status", None)
        if status is None:
            return ""
        return "; ".join(
            f"{w['name']} {w['state']} {w['host']} pid {w['pid']} renders {w['renders']} "
            f"guesses {w['guesses']} restarts {w['restarts']} last {w['last_ms']} ms"
            for w in status()
        )
