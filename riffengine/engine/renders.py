"""Scheduling renders and taking their results: the warm-up render, the planner's next job, results
placed on their seam, failures, retries and late renders.

A role of :class:`~riffengine.engine.core.Engine` (its methods run on the engine's
loop thread, on the engine's attributes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
from typing import Any, SupportsInt, cast

from riffengine import evolve
from riffengine.audio.timeline import Clip
from riffengine.clipmaker import BadAudio, ClipSpec, MadeClip
from riffengine.engine.base import EngineBase
from riffengine.engine.parts import (
    RETRY_FIRST_SECONDS,
    RETRY_MAX_SECONDS,
    WARM_UP,
    Arrival,
    WarmUpFailed,
)
from riffengine.errors import UserError
from riffengine.planner import RENDER, Job
from riffengine.render.renderer import SAMPLE_RATE as MODEL_RATE
from riffengine.render.worker import (
    RenderCancelled,
    RenderJob,
    RenderResult,
    is_out_of_memory,
)
from riffengine.timing.follow import loop_bpm, needs_realign
from riffengine.timing.tempo import loop_frames

log = logging.getLogger("riffengine.engine")

# The asserts narrow the parts run() builds (None until then): the methods they are in run only
# once it has built them.


class RenderRole(EngineBase):
    """Scheduling renders and taking their results (see the module)."""

    def _publish_first_loop(
        self, clip_id: str, version: int, bpm: float, bars: int, frames: int, image: object
    ) -> None:
        """``loop_scheduled`` for the loop the stream starts with (bar 0, frame 0)."""
        self.bus.publish(
            "loop_scheduled",
            clip_id=clip_id,
            version=version,
            bar=0,
            frame=0,
            bpm=bpm,
            bars=bars,
            late=False,
            frames=frames,
            image=image,
            **self._walk_fields(clip_id),
        )

    def _report_dropped(self, job: Job, reason: str, **fields: object) -> None:
        """The ``render`` event of a job whose loop will not be played, and why."""
        self.bus.publish("render", phase="dropped", job=job.number, version=job.version, reason=reason, **fields)

    async def _warm_up(self) -> bool:
        """Render the starting State before the stream starts; False if stopped meanwhile.

        An engine taking over after a panic starts on the safe loop instead, with no render
        (:meth:`~riffengine.engine.safe.SafeRole._resumes_on_safe_loop`).
        """
        assert self._loop is not None and self.worker is not None and self._maker is not None
        assert self.planner is not None and self.timeline is not None
        state = self.store.state
        if self._resumes_on_safe_loop(state):
            self._warm_future = self._loop.create_future()
            self._warm_future.cancel()  # no warm-up render to wait for: the planner may plan
            if self.realtime:
                self.worker.renderer.on_step = self._check_cancel
            self._start_on_safe_loop(state)
            return True
        first = evolve.first_loop(state)
        key = first.key
        self._warm_future = self._loop.create_future()
        progress = self._warm_up_progress()
        self.worker.submit(RenderJob(self._spec(key), tag=WARM_UP))
        what = "rendering the first loop"
        if self._compiles:
            what = "compiling the model and rendering the first loop (minutes on a first start)"
        log.info("warm-up: %s", what)
        self.notifier.status(f"warm-up: {what}")
        stopper: asyncio.Future[Any] = asyncio.ensure_future(self._stopped.wait())
        try:
            done, _ = await asyncio.wait({self._warm_future, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            self.worker.renderer.on_step = None
            if progress is not None:
                progress.close()
        if self._warm_future not in done:
            return False
        result: RenderResult = self._warm_future.result()
        if (
            not result.ok
            and not isinstance(result.error, UserError)
            and not self.degraded
            and self._real_model
            and not self.settings.model.required
        ):
            # a GPU fault in the first render: play without the model rather than not at all
            self._maker.replace_renderer(self._degrade(f"the first render failed: {result.error}"))
            return await self._warm_up()
        if not result.ok:
            if isinstance(result.error, UserError):
                raise result.error
            raise WarmUpFailed(
                f"the first render failed ({result.error}); nothing to play. "
                "Check the model (--model) and the device (--device)"
            )
        made: MadeClip = result.clip
        if self.realtime:
            self.worker.renderer.on_step = self._check_cancel  # from now on, after the warm-up
        self.planner.mark_good(key, RENDER, made.seconds)
        self._last_render_ms = made.seconds * 1000.0
        clip_id = self._register_clip(made, state.version)
        self.ahead.start(first, state, clip_id)
        self.timeline.submit(self.timeline.make_clip(clip_id, made.audio, key[1], key[2]), 0)
        if state.values["transport"] == "stop":
            self.timeline.stop(0)  # silent until play
        self.bus.publish(
            "render",
            phase="done",
            clip_id=clip_id,
            version=state.version,
            mode=RENDER,
            ms=round(made.seconds * 1000.0, 1),
            warm_up=True,
            late=False,
            worker=result.worker,
        )
        self._publish_first_loop(clip_id, state.version, key[1], key[2], len(made.audio), made.image)
        return True

    # --- daemon: warm-up display, readiness, reload, panic -----------------------------------------

    async def _next_loop_before_start(self) -> bool:
        """A walk that moves on its own (evolve): render its second loop before the stream starts;
        False if stopped meanwhile.

        Once the stream starts, the ring is filled ``audio.ring_buffer_seconds`` ahead at once,
        so a render started then has that much less than a loop to make the first seam: on a
        slow renderer the first loop always played twice. Each later render starts a loop or
        more before its seam.
        """
        assert self.planner is not None
        self._plan()
        job = self.planner.in_flight
        if job is None or job.number not in self.ahead.jobs:
            return True  # nothing moves on its own
        while job.number in self._jobs and not self._stop_requested:
            self._wake.clear()
            await self._wake.wait()
        arrivals, self._arrivals = self._arrivals, []
        for arrival in arrivals:  # made before frame 0, whatever its (simulated) render time
            self._apply_result(arrival.job, arrival.result)
        return not self._stop_requested

    def _warm_up_progress(self):
        """A progress bar on stderr for the warm-up render when run in a terminal, else None.

        The renderer reports its diffusion steps from the worker thread (tqdm is thread-safe).
        """
        assert self.worker is not None
        if not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        bar = tqdm(desc="warm-up", unit="step", leave=False)

        def on_step(step: int, steps: int) -> None:
            if bar.total != steps:
                bar.total = steps
            bar.update(step - bar.n)

        self.worker.renderer.on_step = on_step
        return bar

    def _plan(self) -> None:
        """Start the next job if the newest State needs one and none is in flight."""
        planner = self.planner
        if planner is None or self.worker is None or self._warm_future is None or not self._warm_future.done():
            return
        if self.store.state.values["transport"] == "stop":
            return  # stopped: nothing is rendered until play
        assert self.timeline is not None
        state = self.store.state
        queued = 1 if self.timeline.pending_clip_id is not None else 0
        planned = self.ahead.candidate(state, self.timeline.current_clip_id, queued)
        planner.want(state, planned.loop.key if planned is not None else planner.last_good_key)
        seam, length, fade = self._loop_geometry()
        not_before = 0
        if planned is not None and planned.speculative:
            not_before = seam + length * (queued + len(self.ahead.ready))
        job = planner.next_job(self.timeline.cursor, seam, length, fade, not_before)
        if job is not None and planned is not None and job.key == planned.loop.key:
            self.ahead.issued(job.number, planned)
        reading = self.follower.reading() if self.follower is not None else None
        meter = self.timeline.tempo.beats_per_bar
        if (
            job is None
            and self.timeline.pending_clip_id is None
            and not self.ahead.ready
            and needs_realign(reading, seam, length, self.sample_rate, meter)
        ):
            job = planner.realign_job(self.timeline.cursor, seam, length, fade)  # tempo sync drift
        if job is None:
            self._speculate()
            return
        self._jobs[job.number] = job
        bpm = loop_bpm(reading, job.target_seam, job.bars, job.bpm, meter)
        self._job_bpm[job.number] = bpm
        self.worker.submit(RenderJob(self._spec((job.request, bpm, job.bars)), tag=job.number))
        walk = self.ahead.jobs.get(job.number)
        self.bus.publish(
            "render",
            phase="started",
            job=job.number,
            version=job.version,
            mode=job.kind,
            speculative=bool(walk is not None and walk.speculative),
            expected_ms=round(job.expected * 1000.0, 1),
            heard_at_frame=job.target_seam,
            heard_at_bar=self.timeline.tempo.bar_at(job.target_seam),
            heard_in_s=round(max(0, job.target_seam - self.heard_frame()) / self.sample_rate, 3),
        )
        self._speculate()

    def _check_cancel(self, step: int, steps: int) -> None:
        """Worker thread, after each diffusion step: stop a render the loop no longer wants."""
        job = self.worker.running if self.worker is not None else None
        if job is not None and job.tag in self._cancel:
            raise RenderCancelled(f"job {job.tag} overtaken by a control change (step {step}/{steps})")

    def _spec(self, key) -> ClipSpec:
        assert self.timeline is not None
        request, bpm, bars = key
        meter = self.timeline.tempo.beats_per_bar
        return ClipSpec(
            request, loop_frames(bars, bpm, MODEL_RATE, meter), loop_frames(bars, bpm, self.sample_rate, meter)
        )

    def _result_from_worker(self, result: RenderResult) -> None:
        """Worker thread: hand the result to the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._on_result, result)

    def _on_result(self, result: RenderResult) -> None:
        assert self.timeline is not None
        tag = result.job.tag
        if tag == WARM_UP:
            if self._warm_future is not None and not self._warm_future.done():
                self._warm_future.set_result(result)
            return
        job = self._jobs.pop(cast(int, tag), None)
        if job is None:
            return
        if self.realtime:
            apply_at = self.timeline.cursor
        else:
            seconds = result.clip.seconds if result.ok else result.seconds
            apply_at = job.issued_frame + math.ceil(seconds * self.sample_rate)
        self._arrivals.append(Arrival(job, result, apply_at))
        self._wake.set()

    def _apply_arrivals(self) -> None:
        assert self.timeline is not None
        cursor = self.timeline.cursor
        ready = [a for a in self._arrivals if a.apply_at <= cursor]
        if not ready:
            return
        self._arrivals = [a for a in self._arrivals if a.apply_at > cursor]
        for arrival in ready:
            self._apply_result(arrival.job, arrival.result)

    def _apply_result(self, job: Job, result: RenderResult) -> None:
        assert self.planner is not None and self.timeline is not None
        bpm = self._job_bpm.pop(job.number, job.bpm)
        planned, play = self.ahead.result(job.number, result.ok)
        self._cancel.discard(job.number)
        if isinstance(result.error, RenderCancelled):  # a speculative loop stopped half way
            self.planner.drop(job)
            self._report_dropped(job, "cancelled", ms=round(result.seconds * 1000.0, 1), worker=result.worker)
            return
        if job.version < self._discard_before:  # overtaken by a panic: not wanted any more
            self.planner.drop(job)
            self._report_dropped(job, "panic")
            return
        if not result.ok:
            self.planner.finished(job, False, result.seconds)
            self._render_failed(job, result)
            return
        made: MadeClip = result.clip
        self.planner.finished(job, True, made.seconds)
        self._end_streak()
        self._last_render_ms = made.seconds * 1000.0
        if planned is not None and not play:  # a speculative loop a control change overtook
            self._report_dropped(job, "superseded", worker=result.worker)
            return
        self._stats["stretches" if made.stretched else "renders"] += 1
        clip_id = self._register_clip(made, job.version)
        clip = self.timeline.make_clip(clip_id, made.audio, bpm, job.bars)
        speculative = planned is not None and planned.speculative
        if planned is not None:
            self.ahead.remember(clip_id, planned)
        lands = None if speculative else self._landing(clip)
        late = lands is not None and lands > job.target_seam
        self.bus.publish(
            "render",
            phase="done",
            job=job.number,
            clip_id=clip_id,
            version=job.version,
            mode="stretch" if made.stretched else "render",
            ms=round(made.seconds * 1000.0, 1),
            expected_ms=round(job.expected * 1000.0, 1),
            late=late,
            timings={k: round(v * 1000.0, 1) for k, v in made.timings.items()},
            speculative=speculative,
            worker=result.worker,
            speculated="speculated" in made.timings,
        )
        if speculative:
            assert planned is not None
            self.ahead.add_ready(clip, planned, job)  # waits its turn behind the loops queued
            self._submit_ahead()
            return
        self.ahead.ready.clear()
        assert lands is not None
        self._schedule(clip, job, made.image, lands)

    def _submit_ahead(self) -> None:
        """Hand the timeline the next loop rendered ahead when it has none queued."""
        if self.timeline is None or self.timeline.pending_clip_id is not None or not self.ahead.ready:
            return
        ready = self.ahead.take()
        assert ready is not None  # self.ahead.ready is not empty
        clip = cast(Clip, ready.clip)  # the timeline's clip and the job _apply_result gave add_ready
        image = self._clips.get(clip.clip_id, {}).get("image")
        self._schedule(clip, cast(Job, ready.job), image, self._landing(clip))

    def _landing(self, clip) -> int:
        """The seam ``clip`` lands on if submitted to the timeline now (the timeline's rule)."""
        assert self.timeline is not None
        return self.timeline.landing_seam(len(clip.audio))

    def _schedule(self, clip, job: Job, image, lands: int) -> None:
        """Submit ``clip`` (made by ``job``) to the timeline; it lands at seam ``lands``."""
        assert self.timeline is not None
        self.timeline.submit(clip, 0)
        late = lands > job.target_seam
        if late:
            self._stats["late"] += 1
        self.bus.publish(
            "loop_scheduled",
            clip_id=clip.clip_id,
            version=job.version,
            frame=lands,
            bar=self.timeline.tempo.bar_at(lands),
            bpm=clip.bpm,
            bars=job.bars,
            late=late,
            frames=len(clip.audio),
            image=image,
            **self._walk_fields(clip.clip_id),
        )

    def _register_clip(self, made: MadeClip, version: int) -> str:
        self._clip_count += 1
        clip_id = f"clip{self._clip_count}-v{version}"
        self._clips[clip_id] = {
            "image": made.image,
            "version": version,
            "frames": len(made.audio),
            "stretched": made.stretched,
        }
        while len(self._clips) > 16:
            self._clips.pop(next(iter(self._clips)))
        return clip_id

    # --- faults: retries, late renders, a lost output ------------------------------------------

    def _render_failed(self, job: Job, result: RenderResult) -> None:
        """A failed render: report it once per streak and schedule a retry after the back-off."""
        assert self._loop is not None and self.timeline is not None
        error = result.error
        assert error is not None  # a failed render has one
        if isinstance(error, BadAudio):
            reason = error.reason
        elif is_out_of_memory(error):
            reason = "out_of_memory"
        else:
            reason = "error"
        self._stats["failures"] += 1
        retry = self._fail_streak > 0 and job.key == self._failed_key
        if self._fail_streak == 0:
            self._streak_started = self._loop.time()
        self._fail_streak += 1
        self._failed_key = job.key
        backoff = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** min(self._fail_streak - 1, 16))
        self._retry_frame = self.timeline.cursor + math.ceil(backoff * self.sample_rate)
        data = dict(
            job=job.number,
            version=job.version,
            mode=job.kind,
            reason=reason,
            error=f"{type(error).__name__}: {error}",
            ms=round(result.seconds * 1000.0, 1),
            playing=self.timeline.current_clip_id,
            failures=self._fail_streak,
            retry_in_s=round(backoff, 3),
            worker=result.worker,
        )
        if retry:
            self.bus.publish("render_retry", phase="failed", **data)
        else:
            self.bus.publish("render_failed", **data)
            self.notifier.status(f"render failing ({reason}); the last good loop keeps playing")

    def _end_streak(self, recovered: bool = True) -> None:
        if self._fail_streak and recovered:
            assert self._loop is not None
            seconds = round(self._loop.time() - self._streak_started, 3)
            self.bus.publish("render_recovered", failures=self._fail_streak, seconds=seconds)
            log.info("renders recovered after %d failure(s) in %.1f s", self._fail_streak, seconds)
            self.notifier.status(f"playing at {self.sample_rate} Hz")
        self._fail_streak = 0
        self._failed_key = None
        self._retry_frame = None

    def _retry_due(self) -> None:
        """After the back-off, let the planner try the failed state again."""
        assert self.timeline is not None and self.planner is not None
        if self._retry_frame is None or self.timeline.cursor < self._retry_frame:
            return
        self._retry_frame = None
        if self.planner.in_flight is None and self.planner.retry():
            self._stats["retries"] += 1
            self.bus.publish("render_retry", phase="started", failures=self._fail_streak)

    def _report_late(self) -> None:
        """A render still running when its bar comes (slow, or hung): say so once per job."""
        assert self.planner is not None and self.timeline is not None
        job = self.planner.in_flight
        if job is None or job.number == self._late_reported or self.timeline.cursor <= job.target_seam:
            return
        self._late_reported = job.number
        waited = round((self.timeline.cursor - job.issued_frame) / self.sample_rate, 3)
        self.bus.publish(
            "render_late",
            job=job.number,
            version=job.version,
            waited_s=waited,
            expected_ms=round(job.expected * 1000.0, 1),
            playing=self.timeline.current_clip_id,
        )

    def _loop_geometry(self) -> tuple[int, int, int]:
        """(next seam, current loop length, crossfade) in cursor frames."""
        assert self.timeline is not None
        timeline = self.timeline
        seam = timeline.next_seam_frame()
        current = self._clips.get(timeline.current_clip_id or "", {})
        length = current.get("frames") or timeline.tempo.loop_frames(
            int(cast(SupportsInt, self.store.state.values["bars"]))
        )
        return seam, length, timeline.crossfade_frames

    def _heard_at_seam(self) -> int | None:
        if self.planner is None or self.timeline is None:
            return None
        seam, length, fade = self._loop_geometry()
        return self.planner.heard_at(self.timeline.cursor, seam, length, fade)
