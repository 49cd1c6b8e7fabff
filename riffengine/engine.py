"""The live engine: state -> planner -> render worker -> timeline -> ring -> output, on one loop.

One asyncio program (:meth:`Engine.run`) wires the parts of ``DESIGN.md``'s one-way flow:

- the :class:`~riffengine.store.StateStore` holds the newest State; control surfaces, a script
  and :meth:`Engine.set_tempo` change it;
- the :class:`~riffengine.planner.Planner` decides which clip to make next (newest state wins,
  one job at a time) and when it will be heard;
- a :class:`~riffengine.render.worker.RenderWorker` thread owns the renderer (through a
  :class:`~riffengine.clipmaker.ClipMaker`); results come back with ``call_soon_threadsafe``;
  the loop never waits on a render;
- the :class:`~riffengine.audio.timeline.Timeline` places clips on the bar grid and repeats the
  last good loop when a render is late or bad;
- the loop's tick renders timeline blocks into the :class:`~riffengine.audio.ringbuffer.RingBuffer`;
  the output's callback (or the ``.wav`` writer thread) only copies frames out.

Clocks. The master clock is the output's frame counter; the frame being heard is the ring's
``frames_read`` (with a ``.wav`` output, which has no clock, the render cursor itself). The
render cursor runs ahead by the ring's fill. Events the timeline reports at cursor frames
(loop started, tempo) are published when the heard frame reaches them; beats likewise.

File output (``--output take.wav``) runs faster than real time and simulates the live timing:
when a job is in flight the cursor waits for its result, which is then applied at
``issue frame + render seconds`` (measured, or the fake renderer's simulated time), exactly
where a live run would have got it. With the fake renderer a scripted session is therefore
deterministic to the frame.

Faults. A render that fails (raises, CUDA out of memory, NaN, silence) leaves the last good
loop playing; the same state is tried again after a back-off (:data:`RETRY_FIRST_SECONDS`,
doubling up to :data:`RETRY_MAX_SECONDS`), so the engine recovers when the renderer does. The
failure is reported once per streak (``render_failed``; later attempts are ``render_retry``
events) and the end of a streak as ``render_recovered``. A render still running when its bar
comes is reported once (``render_late``). When the JACK server goes away, or a sound card
stops (unplugged), the output is reported lost and reopened every :data:`RECONNECT_SECONDS`;
when it is back, it plays on from the ring (the recorder with it). A recording that fails
(disk full, unwritable) is reported and the audio goes on.

Daemon. Under systemd (``$NOTIFY_SOCKET``) ``READY=1`` is sent once the first loop is rendered
and the stream runs, ``WATCHDOG=1`` from the loop, ``STATUS=`` on faults, ``RELOADING=1`` on
SIGHUP, ``STOPPING=1`` at the end. SIGHUP reloads the config (:meth:`Engine.reload`).
``/riff/panic`` crossfades to the bank's safe loop (:meth:`Engine.panic`).

Thread rules: everything here runs on the loop's thread, except :class:`ClipMaker` (worker
thread), the recorder's ``on_error`` (writer thread, handed over with
``call_soon_threadsafe``) and the output's reopening (an executor thread, while the output is
lost and nothing else touches it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from riffengine import evolve
from riffengine.ahead import Ahead
from riffengine.audio import gil
from riffengine.audio.jackoutput import JackOutput, forget_portaudio_at_exit
from riffengine.audio.livegain import db_to_gain
from riffengine.audio.output import WavFileOutput, open_output
from riffengine.audio.panic import PanicRequest
from riffengine.audio.recorder import Recorder
from riffengine.audio.ringbuffer import RingBuffer
from riffengine.audio.timeline import ClipDropped, LoopStarted, Stopped, Timeline
from riffengine.clipmaker import BadAudio, ClipMaker, ClipSpec, MadeClip
from riffengine.render.fallback import FallbackRenderer
from riffengine.config import Settings, initial_values
from riffengine.control.params import PREFIX
from riffengine.errors import UserError
from riffengine.eventlog import EventLog
from riffengine.events import EventBus
from riffengine.planner import RENDER, Job, Planner, clip_key, landing_seam
from riffengine.render.renderer import SAMPLE_RATE as MODEL_RATE
from riffengine.render.worker import (
    RenderCancelled,
    RenderJob,
    RenderResult,
    RenderWorker,
    is_out_of_memory,
)
from riffengine.script import Step
from riffengine.sdnotify import Notifier, watchdog_pings
from riffengine.state import State, apply_many, initial_state
from riffengine.store import StateStore, changed_keys
from riffengine.timing.follow import Follower, loop_bpm, needs_realign
from riffengine.timing.sources import FrameClock
from riffengine.timing.tempo import TempoMap, loop_frames

log = logging.getLogger(__name__)

CHANNELS = 2
TICK_SECONDS = 0.005
"""How often the live loop tops up the ring and publishes what was heard."""
REALTIME_BLOCK = 512
FILE_BLOCK = 4096
FADE_OUT_SECONDS = 0.1
FADE_SKIP_FRAMES = 4096
"""Frames left untouched ahead of playback when fading out (more than the callback can read
while the fade is written)."""
STOP_PAD_FRAMES = 2048
"""Silence queued after the fade-out, so the callback never runs dry before the stream stops."""
STOP_WAIT_SECONDS = 1.0
"""At most this long is spent waiting for the fade-out to play."""
WARM_UP = "warm-up"
RETRY_FIRST_SECONDS = 0.5
"""Back-off before a failed render is tried again; it doubles with each failure in a row..."""
RETRY_MAX_SECONDS = 5.0
"""...up to this."""
RECONNECT_SECONDS = 0.5
"""How often a lost output (the JACK server went away) is tried again."""
STOP_RENDER_SECONDS = 30.0
"""At the end, at most this long is waited for the render in flight (stopped at its next step):
a render thread still inside torch when the interpreter exits aborts the process."""


class WarmUpFailed(Exception):
    """The first render failed: there is no good loop to play."""


@dataclass(frozen=True)
class Position:
    """Where the heard stream is: frame, bar, beat (fractional, from 0), tempo and meter."""

    frame: int
    bar: int
    beat: float
    bpm: float
    beats_per_bar: int


@dataclass
class _Arrival:
    """A render result and the cursor frame from which it may be used."""

    job: Job
    result: RenderResult
    apply_at: int


def build_renderer(settings: Settings):
    """The real renderer with the configured model (loads it: slow, call off the loop)."""
    import torch

    from riffengine.render.adapters import describe_adapters, load_adapters
    from riffengine.render.model import load_model, optimize_model
    from riffengine.render.renderer import Renderer
    from riffengine.render.speed import cpu_threads, describe_levers, resolve_levers

    device = settings.model.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"auto": None, "fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}[settings.model.dtype]
    model = load_model(settings.model.id, device=device, dtype=dtype)
    load_adapters(model, settings.model.adapters, settings.model.fuse_adapters)
    levers = resolve_levers(model.device.type, settings.model.channels_last,
                            settings.model.fuse_qkv, settings.model.compile)
    if levers.fuse_qkv and model.adapters and not model.adapters_fused:
        # a fused projection would bypass the LoRA layers on query, key and value
        levers = replace(levers, fuse_qkv=False)
        log.info("fused QKV is off: adapters are loaded unfused (model.fuse_adapters: true "
                 "allows both)")
    log.info("model %s on %s (%s); adapters: %s; speed levers: %s", model.source, model.device,
             str(model.dtype).removeprefix("torch."),
             describe_adapters(model.adapters, model.adapters_fused), describe_levers(levers))
    optimize_model(model, levers.channels_last, levers.fuse_qkv, levers.compile_mode)
    if model.device.type == "cpu":
        threads = cpu_threads(settings.model.cpu_threads, os.cpu_count())
        torch.set_num_threads(threads)  # process-wide; the render thread starts after this
        log.info("rendering on %d CPU thread(s)", threads)
    return Renderer(model)


def build_cached_renderer(settings: Settings):
    """The real renderer behind the render cache when ``cache.enabled`` (slow: off the loop)."""
    renderer = build_renderer(settings)
    if not settings.cache.enabled:
        return renderer
    from riffengine.render.cache import CachedRenderer, RenderCache

    return CachedRenderer(renderer, RenderCache(settings.cache.folder, settings.cache.max_bytes))


class Engine:
    """The live engine; build it, then ``await engine.run()`` (returns 0).

    ``renderer``: an object with ``render(request, num_frames)`` (and ``pixels_to_audio`` for
    cheap tempo changes); None loads the model the settings name. ``renderer_factory`` is
    called with ``realtime`` once the output is known (e.g. the fake renderer sleeps only live).
    ``duration``: stop after that many seconds of audio (required for a ``.wav`` output).
    ``script``: timed parameter changes. ``on_output_open(engine)`` runs after the output is
    opened and before it starts (tests connect JACK ports there). ``signals``: stop on
    SIGINT/SIGTERM (main thread only).

    API for control surfaces and tempo sync (all on the loop's thread): :attr:`store`,
    :attr:`bus`, :meth:`figures`, :meth:`position`, :meth:`set_tempo`, :meth:`stop`.
    """

    def __init__(
        self,
        settings: Settings,
        renderer: object | None = None,
        *,
        renderer_factory: Callable[[bool], object] | None = None,
        duration: float | None = None,
        script: Sequence[Step] = (),
        on_output_open: Callable[[Engine], None] | None = None,
        signals: bool = True,
        learn: str | None = None,
        reload_settings: Callable[[], Settings] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.store = StateStore(initial_state(settings))
        self.bus = EventBus()
        self._renderer = renderer
        self._renderer_factory = renderer_factory
        self.duration = duration
        self._script = deque(sorted(script, key=lambda s: (s.seconds is None, s.seconds or 0, s.index)))
        self._on_output_open = on_output_open
        self._signals = signals
        self._learn = learn
        self._reload_settings = reload_settings
        self.notifier = notifier if notifier is not None else Notifier()
        self._watchdog: asyncio.Task | None = None
        self._reconnect: asyncio.Task | None = None
        self.safe = None
        """The bank's safe loop (:class:`~riffengine.render.bank.SafeLoop`), or None."""
        self._safe_frames: np.ndarray | None = None
        self._discard_before = 0
        self._fail_streak = 0
        self._failed_key = None
        self._streak_started = 0.0
        self._retry_frame: int | None = None
        self._late_reported = 0
        # Built by run():
        self.ring: RingBuffer | None = None
        self.output = None
        self.recorder: Recorder | None = None
        self.timeline: Timeline | None = None
        self.worker: RenderWorker | None = None
        self.planner: Planner | None = None
        self.ahead = Ahead(settings.render.ahead)
        self.events_log: EventLog | None = None
        self.surfaces = None
        self.follower: Follower | None = None
        self.sample_rate = settings.audio.sample_rate
        self.realtime = True
        # Loop-side bookkeeping:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._arrivals: list[_Arrival] = []
        self._jobs: dict[int, Job] = {}
        self._warm_future: asyncio.Future | None = None
        self._compiles = False  # the model is compiled by its warm-up render
        self._heard: deque[LoopStarted] = deque()
        self._clips: dict[str, dict] = {}
        self._clip_count = 0
        self._loops_heard = 0
        self._last_beat = -1
        self._heard_bpm: float | None = None
        self._heard_clip: str | None = None
        self._underruns_seen = 0
        self._xruns_seen = 0
        self._gil_interval: float | None = None  # the switch interval before the stream started
        self.degraded = ""
        """Why the engine plays without its model ('' when it has it): status, events."""
        self._real_model = renderer is None and renderer_factory is None
        self._maker: ClipMaker | None = None
        self._model_retry: asyncio.Task | None = None
        self._model_retries = 0
        self._gain = self._wanted_gain(self.store.state)
        self._gain_target = self._gain
        self._end_frame: int | None = None
        self._stream_started = False
        self._stats = {"renders": 0, "stretches": 0, "failures": 0, "late": 0, "dropped": 0,
                       "retries": 0, "outputs_lost": 0, "panics": 0, "reloads": 0, "walk_repeats": 0}
        self._last_render_ms = 0.0
        self._job_bpm: dict[int, float] = {}
        self._cancel: set[int] = set()  # jobs to stop at their next step (read on the worker thread)
        self._unsubscribe: list[Callable[[], None]] = []

    # --- public API (loop thread) ---------------------------------------------------------------

    def stop(self) -> None:
        """Ask the engine to fade out and stop (SIGINT/SIGTERM call this)."""
        self._stop_requested = True
        self._stopped.set()
        self._wake.set()

    def heard_frame(self) -> int:
        """The frame being heard now (ring ``frames_read``; the cursor for a file output)."""
        if self.ring is None or self.timeline is None:
            return 0
        return self.ring.frames_read if self.realtime else self.timeline.cursor

    def position(self) -> Position:
        """Frame, bar, beat, tempo and meter of the heard stream (for Link/MIDI clock out)."""
        frame = self.heard_frame()
        if self.timeline is None:
            bpm = float(self.store.state.values["bpm"])
            return Position(0, 0, 0.0, bpm, int(self.store.state.values["beats_per_bar"]))
        tempo = self.timeline.tempo_at(frame)
        return Position(frame, tempo.bar_at(frame), tempo.beat_at(frame), tempo.effective_bpm,
                        tempo.beats_per_bar)

    def set_tempo(self, bpm: float, source: str = "internal") -> State:
        """Change the session tempo (Link, MIDI clock, a surface); heard at the next seam."""
        return self.store.apply({"bpm": float(bpm)}, source=source)

    @property
    def tempo_source(self) -> str:
        """The tempo source in force: internal, link or midi."""
        if self.follower is not None:
            return self.follower.sync.source
        return str(self.store.state.values["tempo_source"])

    def tempo_status(self) -> dict[str, object]:
        """``tempo_source`` and ``tempo_locked`` for the status reply."""
        if self.follower is not None:
            return self.follower.status()
        return {"tempo_source": self.tempo_source, "tempo_locked": self.tempo_source == "internal"}

    def figures(self) -> dict[str, object]:
        """Engine figures for status replies and logs (plain ints, floats and strings)."""
        pos = self.position()
        timeline, planner = self.timeline, self.planner
        next_bar, next_in = -1, -1.0
        loops_ahead = 0
        expected_ms = 0.0
        if timeline is not None and planner is not None:
            seam = self._heard_at_seam()
            if seam is not None:
                next_bar = timeline.tempo.bar_at(seam)
                next_in = round(max(0, seam - pos.frame) / self.sample_rate, 3)
            loops_ahead = (1 if timeline.pending_clip_id is not None else 0) + len(self.ahead.ready)
            expected_ms = planner.expected_seconds(RENDER) * 1000.0
        ring = self.ring
        return {
            "frame": pos.frame,
            "bar": pos.bar,
            "beat": int(math.floor(pos.beat)) % pos.beats_per_bar + 1,
            "bpm": round(pos.bpm, 4),
            "beats_per_bar": pos.beats_per_bar,
            **self.tempo_status(),
            "render_ms": round(self._last_render_ms, 1),
            "render_expected_ms": round(expected_ms, 1),
            "rendering": int(planner is not None and planner.in_flight is not None),
            "loops_ahead": loops_ahead,
            "next_change_bar": next_bar,
            "next_change_in_s": next_in,
            "clip": self._heard_clip or "",
            "playing": int(timeline is None or not timeline.stopped),
            **self._walk_fields(self._heard_clip, "loop_"),
            "walk_repeats": self._stats["walk_repeats"],
            "walk_dropped": self.ahead.dropped,
            "underruns": ring.underruns if ring else 0,
            "xruns": int(getattr(self.output, "xruns", 0) or 0),
            "ring_ms": round(ring.available() * 1000.0 / self.sample_rate, 1) if ring else 0.0,
            "sample_rate": self.sample_rate,
            "renders": self._stats["renders"],
            "stretches": self._stats["stretches"],
            "render_failures": self._stats["failures"],
            "late_renders": self._stats["late"],
            "render_retries": self._stats["retries"],
            "failing_renders": self._fail_streak,
            "output_lost": int(bool(getattr(self.output, "lost", False))),
            "outputs_lost": self._stats["outputs_lost"],
            "safe_loop": self.safe.name if self.safe is not None else "",
            "degraded": self.degraded,
            "state_version": self.store.state.version,
        }

    # --- the program ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Open everything, warm up, play until stopped or the duration is reached; return 0.

        Raises UserError for user mistakes found on the way (device, paths, model, request),
        :class:`WarmUpFailed` when the first render fails.
        """
        self._loop = asyncio.get_running_loop()
        try:
            self._open_events_log()
            self._open_output()
            await self._start_renderer()
            if not await self._warm_up() or not await self._next_loop_before_start():
                return 0
            # --- control surfaces ---------------------------------------------------------
            # OSC and MIDI (riffengine.control.surfaces) start here: after the warm-up render,
            # before the stream. They reach the engine only through self.store, self.bus and
            # self.figures; they are closed in _close() before the output.
            await self._start_surfaces()
            # -------------------------------------------------------------------------------
            self._install_signal_handlers()
            self._start_stream()
            self._start_follower()
            self._announce_ready()
            await self._play()
            await self._fade_out()
        finally:
            await self._close()
        return 0

    # --- setup ---------------------------------------------------------------------------------

    def _open_events_log(self) -> None:
        self.bus.subscribe(self._log_event)
        path = self.settings.audio.events
        if path:
            self.events_log = EventLog(path)
            self._unsubscribe.append(self.bus.subscribe(self.events_log))

    def _open_output(self) -> None:
        audio = self.settings.audio
        rate = audio.sample_rate
        capacity = max(8 * REALTIME_BLOCK, int(audio.ring_buffer_seconds * rate))
        self.ring = RingBuffer(capacity, CHANNELS)
        if audio.record:
            if str(audio.record) == str(audio.output):
                raise UserError("--record names the same file as --output; give another path")
            self.recorder = Recorder(audio.record, sample_rate=rate, channels=CHANNELS,
                                     on_error=self._recorder_error)
        target = audio.output
        if isinstance(target, str) and target.lower() == "jack":
            # libjack directly, not PortAudio: it survives the JACK server going away
            self.output = JackOutput(self.ring, audio.jack_client_name, recorder=self.recorder)
        else:
            self.output = open_output(target, self.ring, sample_rate=rate,
                                      blocksize=0 if not str(target).lower().endswith(".wav") else FILE_BLOCK,
                                      client_name=audio.jack_client_name, recorder=self.recorder)
        self.realtime = not isinstance(self.output, WavFileOutput)
        if not self.realtime and self.duration is None:
            raise UserError("a .wav output needs an end: give --duration SECONDS")
        if not self.realtime and self.tempo_source != "internal":
            raise UserError(f"tempo source {self.tempo_source} needs a live output (a device or jack), "
                            "not a file: set tempo.source: internal to render to a file")
        self.sample_rate = self.output.sample_rate
        self.output.live.reset(self._gain_target)  # the callback starts at the configured gain
        if self.recorder is not None:
            self.recorder.sample_rate = self.sample_rate
        state = self.store.state
        tempo = TempoMap(float(state.values["bpm"]), int(state.values["beats_per_bar"]), self.sample_rate)
        self.timeline = Timeline(tempo, CHANNELS, float(state.values["crossfade_ms"]))
        margin = self.settings.render.safety_margin_ms / 1000.0
        self.planner = Planner(self.sample_rate, margin_seconds=margin)
        if self.duration is not None:
            self._end_frame = max(1, round(self.duration * self.sample_rate))

    async def _start_renderer(self) -> None:
        await self._load_safe_loop()
        renderer = self._renderer
        if renderer is None and self._renderer_factory is not None:
            renderer = self._renderer_factory(self.realtime)
        if renderer is None:
            try:
                renderer = await self._loop.run_in_executor(None, build_cached_renderer, self.settings)
                self._compiles = self.settings.model.compile is not None
            except Exception as exc:  # noqa: BLE001 - missing weights, a GPU fault: play on
                if self.settings.model.required:
                    raise
                renderer = self._degrade(f"the model cannot be loaded: {exc}")
        self._renderer = renderer
        self._maker = ClipMaker(renderer, self.sample_rate, CHANNELS)
        self.worker = RenderWorker(self._maker, self._result_from_worker)
        self.worker.start()
        self._unsubscribe.append(self.store.subscribe(self._on_state))

    def _degrade(self, reason: str) -> FallbackRenderer:
        """Play without the model (the safe loop, else seed loops) and keep trying to load it."""
        self.degraded = reason
        log.error("degraded: %s; playing %s and trying the model again every %g s", reason,
                  "the safe loop" if self.safe is not None else "the seed image's loop",
                  self.settings.model.retry_seconds)
        self.bus.publish("degraded", reason=reason)
        self.notifier.status(f"degraded: {reason}")
        if self._model_retry is None:
            self._model_retry = asyncio.ensure_future(self._retry_model())
        safe_pixels = self.safe.clip.pixels if self.safe is not None else None
        return FallbackRenderer(safe_pixels)

    async def _retry_model(self) -> None:
        """Load the model again every ``model.retry_seconds`` until it loads; then render with it."""
        while not self._stop_requested:
            await asyncio.sleep(self.settings.model.retry_seconds)
            try:
                renderer = await self._loop.run_in_executor(None, build_cached_renderer, self.settings)
            except Exception as exc:  # noqa: BLE001 - still missing: keep playing, try again
                self._model_retries += 1
                log.info("the model still cannot be loaded (try %d): %s", self._model_retries, exc)
                continue
            self._maker.replace_renderer(renderer)
            self._renderer = renderer
            self._compiles = self.settings.model.compile is not None
            self.planner.forget_made()
            reason, self.degraded = self.degraded, ""
            log.info("the model is loaded; rendering with it from now on")
            self.bus.publish("model_loaded", after=reason, tries=self._model_retries + 1)
            self.notifier.status("model loaded; rendering")
            self._plan()
            self._wake.set()
            return

    async def _warm_up(self) -> bool:
        """Render the starting State before the stream starts; False if stopped meanwhile."""
        state = self.store.state
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
        stopper = asyncio.ensure_future(self._stopped.wait())
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
        if not result.ok and not isinstance(result.error, UserError) and not self.degraded \
                and self._real_model and not self.settings.model.required:
            # a GPU fault in the first render: play without the model rather than not at all
            self._maker.replace_renderer(self._degrade(f"the first render failed: {result.error}"))
            return await self._warm_up()
        if not result.ok:
            if isinstance(result.error, UserError):
                raise result.error
            raise WarmUpFailed(f"the first render failed ({result.error}); nothing to play. "
                               "Check the model (--model) and the device (--device)")
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
        self.bus.publish("render", phase="done", clip_id=clip_id, version=state.version,
                         mode=RENDER, ms=round(made.seconds * 1000.0, 1), warm_up=True, late=False)
        self.bus.publish("loop_scheduled", clip_id=clip_id, version=state.version, bar=0, frame=0,
                         bpm=key[1], bars=key[2], late=False, frames=len(made.audio), image=made.image,
                         **self._walk_fields(clip_id))
        return True

    async def _next_loop_before_start(self) -> bool:
        """A walk that moves on its own (evolve): render its second loop before the stream starts;
        False if stopped meanwhile.

        Once the stream starts, the ring is filled ``audio.ring_buffer_seconds`` ahead at once,
        so a render started then has that much less than a loop to make the first seam: on a
        slow renderer the first loop always played twice. Each later render starts a loop or
        more before its seam.
        """
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

    async def _start_surfaces(self) -> None:
        if not (self.settings.osc.enabled or self.settings.midi.enabled or self.settings.http.enabled):
            return
        try:
            from riffengine.control.surfaces import start_surfaces
        except ImportError as exc:  # surfaces not installed in this build
            log.warning("control surfaces unavailable (%s); running without OSC/MIDI", exc)
            return
        self.surfaces = await start_surfaces(self.settings, self.store, self.bus, self.figures,
                                             loop=self._loop, learn=self._learn, panic=self.panic)

    def _install_signal_handlers(self) -> None:
        if not self._signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self.stop)
        self._loop.add_signal_handler(signal.SIGHUP, self.reload)

    def _remove_signal_handlers(self) -> None:
        if not self._signals or self._loop is None or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(Exception):
                self._loop.remove_signal_handler(sig)

    def _start_stream(self) -> None:
        """Prefill the ring (live), start the recorder and the output."""
        if self.realtime:
            self._gil_interval = gil.prepare_for_audio()  # short GIL waits for the callback
            self._feed()
        self._last_beat = -1
        if self.recorder is not None:
            self.recorder.start()
        if self._on_output_open is not None and hasattr(self.output, "open"):
            self.output.open()
            self._on_output_open(self)
        self.output.start()
        self._stream_started = True
        self.bus.publish("started", sample_rate=self.sample_rate, realtime=self.realtime,
                         output=str(self.settings.audio.output))
        log.info("playing at %d Hz to %s", self.sample_rate, self.settings.audio.output)

    def _start_follower(self) -> None:
        """The tempo source (Link, MIDI clock in) and MIDI clock out, once the stream runs."""
        clock = FrameClock.for_output(self.output) if self.realtime else FrameClock.free_running(self.sample_rate)
        self.follower = Follower(self.store, self.bus, self.settings, clock, self.timeline.tempo_at,
                                 self.tempo_source)

    # --- the tick ------------------------------------------------------------------------------

    async def _play(self) -> None:
        """Until stopped or at the end: apply script steps and results, plan, feed, publish."""
        while not self._stop_requested:
            if self.follower is not None:
                self.follower.poll(self._loop.time())
            self._run_script()
            self._apply_arrivals()
            self._retry_due()
            self._submit_ahead()
            self._plan()
            self._report_late()
            if self.realtime:
                self._watch_output()
            if self.realtime:
                self._feed()
            else:
                await self._feed_file()
            self._publish_heard()
            if self._end_frame is not None and self.timeline.cursor >= self._end_frame - self._fade_frames():
                break  # all but the fade-out tail is written
            if self.realtime:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)

    def _fade_frames(self) -> int:
        return round(FADE_OUT_SECONDS * self.sample_rate)

    def _feed_limit(self) -> int:
        """The cursor frame the ring may be fed up to now."""
        limit = self.timeline.cursor + self.ring.free()
        if self._end_frame is not None:
            limit = min(limit, self._end_frame - self._fade_frames())
        return limit

    def _feed(self) -> None:
        """Live: top up the ring with timeline blocks (never waits)."""
        limit = self._feed_limit()
        last = None if self._end_frame is None else self._end_frame - self._fade_frames()
        while (n := min(REALTIME_BLOCK, limit - self.timeline.cursor)) > 0:
            if n < REALTIME_BLOCK and self.timeline.cursor + n != last:
                break  # whole blocks only, except the last one before the end
            self._render_into_ring(n)

    async def _feed_file(self) -> None:
        """File output: one block, bounded by the next thing that must happen at a frame."""
        if self.planner.in_flight is not None and not self._arrivals:
            self._wake.clear()
            await self._wake.wait()  # the cursor waits for the render: simulated render time
            return
        cursor = self.timeline.cursor
        end = cursor + FILE_BLOCK
        end = min(end, self.timeline.tempo.next_bar_frame(cursor))
        for arrival in self._arrivals:
            if arrival.apply_at > cursor:
                end = min(end, arrival.apply_at)
        if self._retry_frame is not None and self._retry_frame > cursor:
            end = min(end, self._retry_frame)
        if self._script and self._script[0].seconds is not None:
            frame = self._script[0].frame(self.sample_rate)
            if frame > cursor:
                end = min(end, frame)
        end = min(end, self._end_frame - self._fade_frames())
        if end <= cursor:
            return
        while self.ring.free() < end - cursor:
            await asyncio.sleep(0.0005)
        self._render_into_ring(end - cursor)
        await asyncio.sleep(0)

    def _render_into_ring(self, n: int) -> None:
        block = self.timeline.render_block(n)
        frames = self._apply_gain(block.frames)
        written = self.ring.write(frames)
        assert written == len(frames), "the feeder wrote more than the ring had room for"
        for event in block.events:
            if isinstance(event, (LoopStarted, Stopped)):
                self._heard.append(event)
            elif isinstance(event, ClipDropped):
                self._stats["dropped"] += 1
                self.bus.publish("loop_dropped", clip_id=event.clip_id, replaced_by=event.replaced_by,
                                 frame=event.frame)

    @staticmethod
    def _wanted_gain(state: State) -> float:
        """The linear output gain ``state`` asks for (0 while muted)."""
        return 0.0 if state.values["mute"] else db_to_gain(float(state.values["gain"]))

    def _apply_gain(self, frames: np.ndarray) -> np.ndarray:
        """Output gain for a file output, ramped linearly over the block when it changes.

        A real-time output applies the gain itself, in its callback after the ring
        (:class:`~riffengine.audio.livegain.LiveGain`), so it is heard within a period.
        """
        if self.realtime:
            return frames
        start, target = self._gain, self._gain_target
        if start == target:
            if start != 1.0:
                frames *= start
            return frames
        ramp = np.linspace(start, target, len(frames), endpoint=False, dtype=np.float32)
        frames *= ramp[:, None]
        self._gain = target
        return frames

    # --- state, planning, results ---------------------------------------------------------------

    def _on_state(self, old: State, new: State, source: str) -> None:
        changes = changed_keys(old, new)
        self.bus.publish("state", version=new.version, source=source,
                         changes={k: v for k, v in changes})
        for key, value in changes:
            if key in ("gain", "mute"):
                self._gain_target = self._wanted_gain(new)
                if self.output is not None:
                    self.output.live.set(self._gain_target)  # heard in the next period
            elif key == "crossfade_ms" and self.timeline is not None:
                frames = round(float(value) * self.sample_rate / 1000.0)
                self.timeline.crossfade_frames = frames
                self.timeline.min_crossfade_frames = min(64, frames)
            elif key == "tempo_source" and self.follower is not None and source != "tempo":
                if not self.follower.switch(str(value)):  # refused: put the old value back
                    self._loop.call_soon(self.store.apply, {"tempo_source": self.follower.sync.source}, "tempo")
            elif key == "transport" and self.timeline is not None:
                self._set_transport(str(value), source)
            elif key == "beats_per_bar":
                self.bus.publish("warning", message="a meter change takes effect at the next start; "
                                                    "the loop keeps its meter")
        in_flight = self.planner.in_flight.number if self.planner is not None and self.planner.in_flight else None
        dropped = self.ahead.changed(old, new, in_flight)
        if self.realtime and in_flight in self.ahead.stale:
            self._cancel.add(in_flight)  # stopped at its next diffusion step: the change starts sooner
        if dropped:
            self.bus.publish("render", phase="dropped", version=new.version, loops=dropped,
                             reason="superseded")
        self._plan()
        heard = self._heard_at_seam()
        if heard is not None and self.timeline is not None:
            self.bus.publish("change_heard_at", version=new.version, frame=heard,
                             bar=self.timeline.tempo.bar_at(heard),
                             seconds=round(max(0, heard - self.heard_frame()) / self.sample_rate, 3))
        self._wake.set()

    def _set_transport(self, value: str, source: str) -> None:
        """``transport``: stop at the next bar line (fading out before it) or play from the next
        one; a ``transport`` event says where."""
        timeline = self.timeline
        if value == "stop":
            timeline.stop(timeline.cursor)
            frame = timeline.stopping_at if timeline.stopping_at is not None else timeline.cursor
        else:
            frame = timeline.play(timeline.cursor)
            if frame is None:  # the stop was called off before its fade began
                frame = timeline.cursor
        self.bus.publish("transport", state=value, frame=frame, bar=timeline.tempo.bar_at(frame),
                         source=source)

    def _loop_geometry(self) -> tuple[int, int, int]:
        """(next seam, current loop length, crossfade) in cursor frames."""
        timeline = self.timeline
        seam = timeline.next_seam_frame()
        current = self._clips.get(timeline.current_clip_id or "", {})
        length = current.get("frames") or timeline.tempo.loop_frames(int(self.store.state.values["bars"]))
        return seam, length, timeline.crossfade_frames

    def _heard_at_seam(self) -> int | None:
        if self.planner is None or self.timeline is None:
            return None
        seam, length, fade = self._loop_geometry()
        return self.planner.heard_at(self.timeline.cursor, seam, length, fade)

    def _plan(self) -> None:
        """Start the next job if the newest State needs one and none is in flight."""
        planner = self.planner
        if planner is None or self.worker is None or self._warm_future is None or not self._warm_future.done():
            return
        if self.store.state.values["transport"] == "stop":
            return  # stopped: nothing is rendered until play
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
        if job is None and self.timeline.pending_clip_id is None and not self.ahead.ready \
                and needs_realign(reading, seam, length, self.sample_rate, meter):
            job = planner.realign_job(self.timeline.cursor, seam, length, fade)  # tempo sync drift
        if job is None:
            return
        self._jobs[job.number] = job
        bpm = loop_bpm(reading, job.target_seam, job.bars, job.bpm, meter)
        self._job_bpm[job.number] = bpm
        self.worker.submit(RenderJob(self._spec((job.request, bpm, job.bars)), tag=job.number))
        walk = self.ahead.jobs.get(job.number)
        self.bus.publish("render", phase="started", job=job.number, version=job.version, mode=job.kind,
                         speculative=bool(walk is not None and walk.speculative),
                         expected_ms=round(job.expected * 1000.0, 1), heard_at_frame=job.target_seam,
                         heard_at_bar=self.timeline.tempo.bar_at(job.target_seam),
                         heard_in_s=round(max(0, job.target_seam - self.heard_frame()) / self.sample_rate, 3))

    def _check_cancel(self, step: int, steps: int) -> None:
        """Worker thread, after each diffusion step: stop a render the loop no longer wants."""
        job = self.worker.running if self.worker is not None else None
        if job is not None and job.tag in self._cancel:
            raise RenderCancelled(f"job {job.tag} overtaken by a control change (step {step}/{steps})")

    def _spec(self, key) -> ClipSpec:
        request, bpm, bars = key
        meter = self.timeline.tempo.beats_per_bar
        return ClipSpec(request, loop_frames(bars, bpm, MODEL_RATE, meter),
                        loop_frames(bars, bpm, self.sample_rate, meter))

    def _result_from_worker(self, result: RenderResult) -> None:
        """Worker thread: hand the result to the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._on_result, result)

    def _on_result(self, result: RenderResult) -> None:
        tag = result.job.tag
        if tag == WARM_UP:
            if self._warm_future is not None and not self._warm_future.done():
                self._warm_future.set_result(result)
            return
        job = self._jobs.pop(tag, None)
        if job is None:
            return
        if self.realtime:
            apply_at = self.timeline.cursor
        else:
            seconds = result.clip.seconds if result.ok else result.seconds
            apply_at = job.issued_frame + math.ceil(seconds * self.sample_rate)
        self._arrivals.append(_Arrival(job, result, apply_at))
        self._wake.set()

    def _apply_arrivals(self) -> None:
        cursor = self.timeline.cursor
        ready = [a for a in self._arrivals if a.apply_at <= cursor]
        if not ready:
            return
        self._arrivals = [a for a in self._arrivals if a.apply_at > cursor]
        for arrival in ready:
            self._apply_result(arrival.job, arrival.result)

    def _apply_result(self, job: Job, result: RenderResult) -> None:
        bpm = self._job_bpm.pop(job.number, job.bpm)
        planned, play = self.ahead.result(job.number, result.ok)
        self._cancel.discard(job.number)
        if isinstance(result.error, RenderCancelled):  # a speculative loop stopped half way
            self.planner.drop(job)
            self.bus.publish("render", phase="dropped", job=job.number, version=job.version,
                             reason="cancelled", ms=round(result.seconds * 1000.0, 1))
            return
        if job.version < self._discard_before:  # overtaken by a panic: not wanted any more
            self.planner.drop(job)
            self.bus.publish("render", phase="dropped", job=job.number, version=job.version,
                             reason="panic")
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
            self.bus.publish("render", phase="dropped", job=job.number, version=job.version,
                             reason="superseded")
            return
        self._stats["stretches" if made.stretched else "renders"] += 1
        clip_id = self._register_clip(made, job.version)
        clip = self.timeline.make_clip(clip_id, made.audio, bpm, job.bars)
        speculative = planned is not None and planned.speculative
        if planned is not None:
            self.ahead.remember(clip_id, planned)
        lands = None if speculative else self._landing(clip)
        late = lands is not None and lands > job.target_seam
        self.bus.publish("render", phase="done", job=job.number, clip_id=clip_id, version=job.version,
                         mode="stretch" if made.stretched else "render", ms=round(made.seconds * 1000.0, 1),
                         expected_ms=round(job.expected * 1000.0, 1), late=late,
                         timings={k: round(v * 1000.0, 1) for k, v in made.timings.items()},
                         speculative=speculative)
        if speculative:
            self.ahead.add_ready(clip, planned, job)  # waits its turn behind the loops queued
            self._submit_ahead()
            return
        self.ahead.ready.clear()
        self._schedule(clip, job, made.image, lands)

    def _submit_ahead(self) -> None:
        """Hand the timeline the next loop rendered ahead when it has none queued."""
        if self.timeline is None or self.timeline.pending_clip_id is not None or not self.ahead.ready:
            return
        ready = self.ahead.take()
        image = self._clips.get(ready.clip.clip_id, {}).get("image")
        self._schedule(ready.clip, ready.job, image, self._landing(ready.clip))

    def _landing(self, clip) -> int:
        """The seam ``clip`` lands on if submitted to the timeline now."""
        seam, length, fade = self._loop_geometry()
        fade = min(fade, len(clip.audio), length)
        under_way = self.timeline.pending_clip_id is not None and self._fade_started()
        return landing_seam(self.timeline.cursor, seam, length, fade,
                            self.timeline.min_crossfade_frames, under_way)

    def _schedule(self, clip, job: Job, image, lands: int) -> None:
        """Submit ``clip`` (made by ``job``) to the timeline; it lands at seam ``lands``."""
        self.timeline.submit(clip, 0)
        late = lands > job.target_seam
        if late:
            self._stats["late"] += 1
        self.bus.publish("loop_scheduled", clip_id=clip.clip_id, version=job.version, frame=lands,
                         bar=self.timeline.tempo.bar_at(lands), bpm=clip.bpm, bars=job.bars, late=late,
                         frames=len(clip.audio), image=image, **self._walk_fields(clip.clip_id))

    def _fade_started(self) -> bool:
        seam, _, fade = self._loop_geometry()
        return self.timeline.cursor > seam - fade

    def _register_clip(self, made: MadeClip, version: int) -> str:
        self._clip_count += 1
        clip_id = f"clip{self._clip_count}-v{version}"
        self._clips[clip_id] = {"image": made.image, "version": version, "frames": len(made.audio),
                                "stretched": made.stretched}
        while len(self._clips) > 16:
            self._clips.pop(next(iter(self._clips)))
        return clip_id

    # --- script ----------------------------------------------------------------------------------

    def _run_script(self) -> None:
        if not self._script:
            return
        frame = self.heard_frame()
        bar = self.timeline.tempo_at(frame).bar_at(frame)
        due = [s for s in self._script if s.due(frame, bar, self.sample_rate)]
        for step in due:
            self._script.remove(step)
            try:
                if step.scene is not None:
                    self.store.recall_scene(self.settings.scene(step.scene),
                                            step.scene if isinstance(step.scene, int) else None,
                                            source="script")
                if step.changes:
                    self.store.apply(step.changes, source="script")
            except UserError as exc:
                self.bus.publish("error", message=f"script step {step.index + 1}: {exc}")

    # --- publishing what is heard -----------------------------------------------------------------

    def _publish_heard(self) -> None:
        heard = self.heard_frame()
        while self._heard and self._heard[0].frame <= heard:
            event = self._heard.popleft()
            if isinstance(event, Stopped):
                self.bus.publish("loop_stopped", frame=event.frame, bar=event.bar)
            else:
                self._publish_loop(event)
        self._publish_beats(heard)
        ring = self.ring
        if ring.underruns != self._underruns_seen:
            self._underruns_seen = ring.underruns
            self.bus.publish("underrun", count=ring.underruns, frames=ring.underrun_frames, frame=heard)
        xruns = int(getattr(self.output, "xruns", 0))
        if xruns != self._xruns_seen:  # late callbacks: each one is a click the audience heard
            self.bus.publish("xrun", count=xruns, new=xruns - self._xruns_seen, frame=heard)
            self._xruns_seen = xruns

    def _publish_loop(self, event: LoopStarted) -> None:
        info = self._clips.get(event.clip_id, {})
        self._loops_heard += 1
        self._heard_clip = event.clip_id
        if self._heard_bpm is not None and event.bpm != self._heard_bpm:
            self.bus.publish("tempo", bpm=event.bpm, frame=event.frame, bar=event.bar,
                             source=self.tempo_source)
        self._heard_bpm = event.bpm
        planned = self.ahead.loop_of(event.clip_id)
        if event.repeat and planned is not None and evolve.walking(planned.loop, self.store.state):
            self._stats["walk_repeats"] += 1  # the next loop of the walk was not ready in time
        self.bus.publish("loop_started", index=self._loops_heard, clip_id=event.clip_id,
                         version=info.get("version"), frame=event.frame, bar=event.bar,
                         repeat=event.repeat, bpm=event.bpm, frames=info.get("frames"),
                         crossfade_frames=event.crossfade_frames, image=info.get("image"),
                         **self._walk_fields(event.clip_id))

    def _walk_fields(self, clip_id: str | None, prefix: str = "") -> dict[str, object]:
        """What the loop of ``clip_id`` is (alpha, seeds, prompt hash, step, glide), for events."""
        planned = self.ahead.loop_of(clip_id)
        if planned is None:
            return {}
        return {prefix + k: v for k, v in evolve.describe(planned.loop).items()}

    def _publish_beats(self, heard: int) -> None:
        tempo = self.timeline.tempo_at(heard)
        beat = math.floor(tempo.beat_at(heard) + 1e-9)
        while self._last_beat < beat:
            self._last_beat += 1
            b = self._last_beat
            frame = tempo.anchor_frame + round((b - tempo.anchor_beat) * tempo.frames_per_beat())
            self.bus.publish("beat", beat=b, bar=tempo.bar_at(frame), beat_in_bar=b % tempo.beats_per_bar,
                             frame=frame, bpm=round(tempo.effective_bpm, 4))

    # --- stopping --------------------------------------------------------------------------------

    async def _fade_out(self) -> None:
        """Fade out and wait until the fade has been played.

        On a stop request the queued frames are faded from just ahead of playback (so the
        stream stops within a fraction of a second); at the natural end a faded tail is added
        after what is queued.
        """
        if not self._stream_started:
            return
        fade = self._fade_frames()
        end = None
        if self.realtime and self._stop_requested:
            end = self.ring.fade_unread(FADE_SKIP_FRAMES, fade)
        if end is None:
            frames = self._apply_gain(self.timeline.render_block(fade).frames)
            frames *= np.cos((np.arange(fade) + 0.5) * (np.pi / 2 / fade)).astype(np.float32)[:, None]
            if self.realtime:  # silence after the fade, so the callback never runs dry before the stop
                frames = np.concatenate([frames, np.zeros((STOP_PAD_FRAMES, CHANNELS), np.float32)])
            deadline = self._loop.time() + STOP_WAIT_SECONDS + self.ring.available() / self.sample_rate
            while frames.size and self._loop.time() < deadline:
                frames = frames[self.ring.write(frames):]
                if frames.size:
                    await asyncio.sleep(0.002)
            end = self.ring.frames_written - (STOP_PAD_FRAMES if self.realtime else 0)
        if self.realtime:
            if self.ring.frames_written - end >= STOP_PAD_FRAMES:
                end += STOP_PAD_FRAMES // 2  # a little silence in the recording, still no underrun
            deadline = self._loop.time() + STOP_WAIT_SECONDS
            if not self._stop_requested:
                deadline += max(0, end - self.ring.frames_read) / self.sample_rate
            while self.ring.frames_read < end and self._loop.time() < deadline:
                await asyncio.sleep(0.005)
            self.output.stop()
        self._publish_heard()
        self.bus.publish("stopped", frame=self.heard_frame(), underruns=self.ring.underruns,
                         xruns=int(getattr(self.output, "xruns", 0)),
                         **{k: v for k, v in self._stats.items()})

    async def _close(self) -> None:
        """Close in reverse order; each step runs even if an earlier one failed."""
        self._remove_signal_handlers()
        self.notifier.stopping("stopping")
        running = self.worker.running if self.worker is not None else None
        if running is not None:
            self._cancel.add(running.tag)  # the render in flight stops at its next step
        for task in (self._watchdog, self._reconnect, self._model_retry):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._watchdog = self._reconnect = self._model_retry = None
        steps: list[Callable[[], object]] = []
        if self.surfaces is not None:
            steps.append(self.surfaces.close)
        if self.follower is not None:
            steps.append(self.follower.close)
        if self.output is not None:
            steps.append(self.output.stop)
            steps.append(self.output.close)
        if self.recorder is not None:
            steps.append(self.recorder.close)
        if self.worker is not None:
            steps.append(self._stop_worker)
        for step in steps:
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("while stopping: %r failed", step)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self.events_log is not None:
            self.events_log.close()
        if self._gil_interval is not None:
            gil.restore(self._gil_interval)
            self._gil_interval = None

    async def _stop_worker(self) -> None:
        """End the render worker's thread (off the loop: the render in flight may take a while)."""
        await self._loop.run_in_executor(None, self.worker.stop, STOP_RENDER_SECONDS)
        if self.worker.alive:
            log.warning("the render thread is still running after %g s; exiting anyway",
                        STOP_RENDER_SECONDS)

    # --- daemon: warm-up display, readiness, reload, panic -----------------------------------------

    def _warm_up_progress(self):
        """A progress bar on stderr for the warm-up render when run in a terminal, else None.

        The renderer reports its diffusion steps from the worker thread (tqdm is thread-safe).
        """
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

    def _announce_ready(self) -> None:
        """READY=1 and the watchdog task, once the first loop plays (systemd notify)."""
        playing = f"playing at {self.sample_rate} Hz to {self.settings.audio.output}"
        self.notifier.ready(f"{playing}, degraded: {self.degraded}" if self.degraded else playing)
        self._watchdog = self._loop.create_task(watchdog_pings(self.notifier))

    async def _load_safe_loop(self) -> None:
        """Read the bank's safe loop from the cache folder (off the loop), if one is banked."""
        cache = self.settings.cache
        if not cache.enabled:
            self.safe, self._safe_frames = None, None
            return
        self.safe, self._safe_frames = await self._loop.run_in_executor(None, self._read_safe_loop)
        if self.safe is not None:
            log.info("safe loop %r ready for /riff/panic", self.safe.name)

    def _read_safe_loop(self):
        """Executor thread: the safe loop and its frames at the output rate, or (None, None)."""
        from riffengine.render.bank import safe_loop
        from riffengine.render.cache import RenderCache, default_cache_dir

        cache = self.settings.cache
        folder = cache.folder or default_cache_dir()
        if not os.path.isdir(folder):
            return None, None
        try:
            safe = safe_loop(RenderCache(folder, cache.max_bytes))
            if safe is None:
                return None, None
            return safe, safe.frames(self.sample_rate, CHANNELS)
        except Exception as exc:  # noqa: BLE001 - a damaged bank must not stop the show
            log.warning("the safe loop in %s cannot be read: %s", folder, exc)
            return None, None

    def panic(self) -> None:
        """Crossfade to the bank's safe loop (``/riff/panic``); loop thread.

        Live, the output's callback crossfades to it at once (heard within a period), in the
        phase the timeline gives it from the next seam on; a file output switches at the seam.
        The safe loop's values become the state, and any render under way is dropped when it
        arrives. UserError (answered ``/riff/fail``) when no safe loop is banked.
        """
        safe, frames = self.safe, self._safe_frames
        if safe is None or frames is None or self.timeline is None:
            folder = self.settings.cache.folder or "~/.cache/riffengine/renders"
            raise UserError(f"panic: no safe loop is banked in {folder}; run `riffengine bank CONFIG` "
                            "before the show (it marks one), then reload (SIGHUP) or restart")
        values = tuple(safe.values.items())
        new = apply_many(self.store.state, values) if values else self.store.state
        self.planner.adopt(clip_key(new))
        self._discard_before = self.store.state.version + 1  # renders under way are for older states
        self._end_streak(recovered=False)
        self._stats["panics"] += 1
        clip_id = self._register_clip(MadeClip(None, frames, None, None, 0.0, False), new.version)
        self.ahead.start(evolve.first_loop(new), new, clip_id)
        self.timeline.submit(self.timeline.make_clip(clip_id, frames, safe.bpm, safe.bars), 0)
        seam, _, _ = self._loop_geometry()
        if self.realtime:  # heard at once: the callback crossfades to the loop until the seam
            self.output.panic.request = PanicRequest(frames, origin=seam, until=seam)
        self.bus.publish("panic", safe=safe.name, clip_id=clip_id, frame=seam,
                         bar=self.timeline.tempo.bar_at(seam), heard_from=self.heard_frame())
        log.warning("panic: crossfading to the safe loop %r at bar %d", safe.name,
                    self.timeline.tempo.bar_at(seam))
        if values:
            self.store.apply(values, source="panic")

    def reload(self) -> None:
        """SIGHUP: read the config again; apply mappings, prompts, scenes, the OSC allow list.

        A file with a mistake is refused (logged, ``fail`` event: OSC subscribers get
        ``/riff/fail``) and the settings in force stay. Values the new file changes in its
        ``initial``, ``tempo``, ``loop`` and ``render`` sections are applied to the playing
        state (heard at the next bar); values it leaves alone keep what the performer set.
        Audio, model, OSC host/port and MIDI input changes need a restart (logged).
        """
        if self._reload_settings is None:
            log.warning("reload: this engine was not started from a config file; nothing to reload")
            return
        self.notifier.reloading("reloading the config")
        try:
            new = self._reload_settings()
            if self.surfaces is not None:
                self.surfaces.reload(new)
        except UserError as exc:
            log.error("reload refused: %s", exc)
            self.bus.publish("fail", address=f"{PREFIX}/reload", reason=f"reload refused: {exc}")
            self.notifier.ready("reload refused; the previous config stays in force")
            return
        old, self.settings = self.settings, new
        for section in ("model", "audio", "cache"):
            if getattr(old, section) != getattr(new, section):
                log.warning("reload: %s settings take effect at the next start", section)
        if old.logging.level != new.logging.level:
            logging.getLogger().setLevel(new.logging.level)
        before = dict(initial_values(old))
        changes = [(k, v) for k, v in initial_values(new) if before.get(k) != v]
        if changes:
            try:
                self.store.apply(changes, source="reload")
            except UserError as exc:  # checked by the config already; kept safe anyway
                log.error("reload: values not applied: %s", exc)
        self._stats["reloads"] += 1
        self.bus.publish("reloaded", source=str(new.source or ""), changes=[k for k, _ in changes])
        log.info("config reloaded from %s (%d values changed)", new.source, len(changes))
        self._loop.create_task(self._load_safe_loop())
        self.notifier.ready(f"config reloaded; playing at {self.sample_rate} Hz")

    # --- faults: retries, late renders, a lost output ------------------------------------------

    def _render_failed(self, job: Job, result: RenderResult) -> None:
        """A failed render: report it once per streak and schedule a retry after the back-off."""
        error = result.error
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
        data = dict(job=job.number, version=job.version, mode=job.kind, reason=reason,
                    error=f"{type(error).__name__}: {error}", ms=round(result.seconds * 1000.0, 1),
                    playing=self.timeline.current_clip_id, failures=self._fail_streak,
                    retry_in_s=round(backoff, 3))
        if retry:
            self.bus.publish("render_retry", phase="failed", **data)
        else:
            self.bus.publish("render_failed", **data)
            self.notifier.status(f"render failing ({reason}); the last good loop keeps playing")

    def _end_streak(self, recovered: bool = True) -> None:
        if self._fail_streak and recovered:
            seconds = round(self._loop.time() - self._streak_started, 3)
            self.bus.publish("render_recovered", failures=self._fail_streak, seconds=seconds)
            log.info("renders recovered after %d failure(s) in %.1f s", self._fail_streak, seconds)
            self.notifier.status(f"playing at {self.sample_rate} Hz")
        self._fail_streak = 0
        self._failed_key = None
        self._retry_frame = None

    def _retry_due(self) -> None:
        """After the back-off, let the planner try the failed state again."""
        if self._retry_frame is None or self.timeline.cursor < self._retry_frame:
            return
        self._retry_frame = None
        if self.planner.in_flight is None and self.planner.retry():
            self._stats["retries"] += 1
            self.bus.publish("render_retry", phase="started", failures=self._fail_streak)

    def _report_late(self) -> None:
        """A render still running when its bar comes (slow, or hung): say so once per job."""
        job = self.planner.in_flight
        if job is None or job.number == self._late_reported or self.timeline.cursor <= job.target_seam:
            return
        self._late_reported = job.number
        waited = round((self.timeline.cursor - job.issued_frame) / self.sample_rate, 3)
        self.bus.publish("render_late", job=job.number, version=job.version, waited_s=waited,
                         expected_ms=round(job.expected * 1000.0, 1),
                         playing=self.timeline.current_clip_id)

    def _watch_output(self) -> None:
        """Live: notice a lost output (JACK server gone, device unplugged) and start reconnecting."""
        if self._reconnect is not None or not getattr(self.output, "lost", False):
            return
        self._stats["outputs_lost"] += 1
        forget_portaudio_at_exit()
        reason = getattr(self.output, "lost_reason", "") or "the server went away"
        self.bus.publish("output_lost", reason=reason, frame=self.heard_frame())
        if "JACK" in getattr(self.output, "host_api", ""):
            log.error("audio output lost (%s). PortAudio's JACK streams cannot come back: restart "
                      "riffengine, and use audio.output: jack, which reconnects by itself", reason)
        else:
            log.error("audio output lost (%s); reopening it when it is back", reason)
        self.notifier.status("audio output lost; waiting for it to come back")
        self._reconnect = self._loop.create_task(self._reconnect_output())

    async def _reconnect_output(self) -> None:
        """Poll until the output plays again; the ring (and so the recording) resumes as it was."""
        lost_at = self._loop.time()
        tries = 0
        while not self._stop_requested:
            await asyncio.sleep(RECONNECT_SECONDS)
            tries += 1
            try:
                ok = await self._loop.run_in_executor(None, self.output.reopen)
            except Exception as exc:  # noqa: BLE001 - keep trying; report once
                if tries == 1:
                    log.warning("reconnecting the audio output: %s", exc)
                ok = False
            if ok:
                seconds = round(self._loop.time() - lost_at, 3)
                self.bus.publish("output_restored", seconds=seconds, tries=tries, frame=self.heard_frame())
                log.warning("audio output back after %.1f s", seconds)
                self.notifier.status(f"playing at {self.sample_rate} Hz to {self.settings.audio.output}")
                break
        self._reconnect = None

    # --- odds and ends ---------------------------------------------------------------------------

    def _recorder_error(self, exc: Exception) -> None:
        """Recorder writer thread: report on the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._report_recording_error, exc)

    def _report_recording_error(self, exc: Exception) -> None:
        """Loop thread: a recording that failed is reported (log, events, OSC ``/riff/fail``)."""
        path = self.recorder.path if self.recorder is not None else ""
        self.bus.publish("error", message=f"recording: {exc}")
        self.bus.publish("fail", address=f"{PREFIX}/record", reason=f"recording to {path} failed: {exc}; "
                                                                     "the audio goes on")
        self.notifier.status(f"recording failed ({exc}); the audio goes on")

    @staticmethod
    def _log_event(event) -> None:
        if event.kind in ("render_failed", "underrun", "xrun", "error", "warning", "loop_dropped",
                          "render_late"):
            data = {k: v for k, v in event.data.items() if k != "image"}
            log.warning("%s %s", event.kind, data)
        elif event.kind in ("loop_scheduled", "tempo", "started", "stopped"):
            log.info("%s %s", event.kind, {k: v for k, v in event.data.items() if k != "image"})
