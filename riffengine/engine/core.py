"""The engine itself: its parts built and wired, the tick, state changes, the end.

The roles live in their own modules (see :mod:`riffengine.engine`); :class:`Engine` composes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import SupportsFloat, SupportsInt, cast

from riffengine.ahead import Ahead
from riffengine.audio import gil
from riffengine.audio.jackoutput import JackOutput
from riffengine.audio.output import WavFileOutput, open_output
from riffengine.audio.recorder import Recorder
from riffengine.audio.ringbuffer import RingBuffer
from riffengine.audio.timeline import Timeline
from riffengine.clipmaker import ClipMaker
from riffengine.config import Settings
from riffengine.engine.daemon import DaemonRole
from riffengine.engine.faults import FaultsRole
from riffengine.engine.feed import FeedRole
from riffengine.engine.heard import HeardRole
from riffengine.engine.hosted import HostedRole
from riffengine.engine.model import build_cached_renderer
from riffengine.engine.parts import (
    CHANNELS,
    FILE_BLOCK,
    REALTIME_BLOCK,
    STOP_RENDER_SECONDS,
    TICK_SECONDS,
    Position,
)
from riffengine.engine.renders import RenderRole
from riffengine.engine.safe import SafeRole
from riffengine.engine.scaleout import ScaleOutRole
from riffengine.errors import UserError
from riffengine.eventlog import EventLog
from riffengine.events import EventBus
from riffengine.host import resume
from riffengine.host.client import HostOutput
from riffengine.planner import RENDER, Planner
from riffengine.render.worker import (
    RenderWorker,
)
from riffengine.script import Step
from riffengine.sdnotify import Notifier
from riffengine.state import State
from riffengine.store import StateStore, changed_keys
from riffengine.timing.follow import Follower
from riffengine.timing.sources import FrameClock
from riffengine.timing.tempo import TempoMap

log = logging.getLogger("riffengine.engine")

# The asserts narrow the parts run() builds (None until then): the methods they are in run only
# once it has built them.


class Engine(FeedRole, RenderRole, HeardRole, FaultsRole, HostedRole, SafeRole, DaemonRole, ScaleOutRole):
    """The live engine; build it, then ``await engine.run()`` (returns 0).

    ``renderer``: an object with ``render(request, num_frames)`` (and ``pixels_to_audio`` for
    cheap tempo changes); None loads the model the settings name. ``renderer_factory`` is
    called with ``realtime`` once the output is known (e.g. the fake renderer sleeps only live).
    ``duration``: stop after that many seconds of audio (required for a ``.wav`` output).
    ``script``: timed parameter changes. ``on_output_open(engine)`` runs after the output is
    opened and before it starts (tests connect JACK ports there). ``signals``: stop on
    SIGINT/SIGTERM (main thread only).

    API for control surfaces and tempo sync (all on the loop's thread): :attr:`store`,
    :attr:`bus`, :meth:`figures`, :meth:`position`, :meth:`stop`.
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
        host: str | None = None,
        state_file: str | None = None,
        osc_fd: int | None = None,
    ) -> None:
        self.settings = settings
        self._host = host
        self._state_file = state_file
        self._osc_fd = osc_fd
        self._osc_kept = None
        self._resume = resume.load(state_file) if state_file else None
        self.store = StateStore(self._starting_state(settings, self._resume))
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
        self._watchdog = None
        self._reconnect = None
        self.safe = None
        """The bank's safe loop (:class:`~riffengine.render.bank.SafeLoop`), or None."""
        self._safe_frames = None
        self._discard_before = 0
        self._fail_streak = 0
        self._failed_key = None
        self._streak_started = 0.0
        self._retry_frame = None
        self._late_reported = 0
        # Built by run():
        self.ring = None
        self.output = None
        self.recorder = None
        self.timeline = None
        self.worker = None
        self.planner = None
        self.ahead = Ahead(settings.render.ahead)
        self.events_log = None
        self.surfaces = None
        self.follower = None
        self.sample_rate = settings.audio.sample_rate
        self.realtime = True
        # Loop-side bookkeeping:
        self._loop = None
        self._stop_requested = False
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._arrivals = []
        self._jobs = {}
        self._warm_future = None
        self._compiles = False  # the model is compiled by its warm-up render
        self._heard = deque()
        self._clips = {}
        self._clip_count = 0
        self._loops_heard = 0
        self._last_beat = -1
        self._heard_bpm = None
        self._heard_clip = None
        self._underruns_seen = 0
        self._xruns_seen = 0
        self._gil_interval: float | None = None  # the switch interval before the stream started
        self.degraded = ""
        """Why the engine plays without its model ('' when it has it): status, events."""
        self._real_model = renderer is None and renderer_factory is None
        self._maker = None
        self._model_retry = None
        self._model_retries = 0
        self._gain = self._wanted_gain(self.store.state)
        self._gain_target = self._gain
        self._end_frame = None
        self._stream_started = False
        self._stats = {
            "renders": 0,
            "stretches": 0,
            "failures": 0,
            "late": 0,
            "dropped": 0,
            "retries": 0,
            "outputs_lost": 0,
            "panics": 0,
            "reloads": 0,
            "walk_repeats": 0,
        }
        self._last_render_ms = 0.0
        self._job_bpm = {}
        self._cancel = set()  # jobs to stop at their next step (read on the worker thread)
        self._unsubscribe: list[Callable[[], None]] = []
        self._state_dirty = state_file is not None
        self._state_saved_at = 0.0
        self._grid = self._resume.grid if self._resume else None
        self._beat_task = None
        self._guessed = None  # what the spare Ray workers were last given to guess

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
            bpm = float(cast(SupportsFloat, self.store.state.values["bpm"]))
            return Position(0, 0, 0.0, bpm, int(cast(SupportsInt, self.store.state.values["beats_per_bar"])))
        tempo = self.timeline.tempo_at(frame)
        return Position(frame, tempo.bar_at(frame), tempo.beat_at(frame), tempo.effective_bpm, tempo.beats_per_bar)

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
            "render_backend": self.settings.render.backend,
            "workers": self._workers_figure(),
            "state_version": self.store.state.version,
            **self._host_figures(),
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
            if isinstance(self.output, HostOutput):
                self.output.bye(0)  # an end on purpose: the host ends too, rather than restart us
        finally:
            await self._close()
        return 0

    # --- setup ---------------------------------------------------------------------------------

    def _open_events_log(self) -> None:
        self.bus.subscribe(self._log_event)
        path = self.settings.audio.events
        if path:
            self.events_log = EventLog(path, append=self._host is not None)
            self._unsubscribe.append(self.bus.subscribe(self.events_log))

    def _open_output(self) -> None:
        audio = self.settings.audio
        rate = audio.sample_rate
        capacity = max(8 * REALTIME_BLOCK, int(audio.ring_buffer_seconds * rate))
        if self._host is not None:
            self._open_host_output()
            return
        self.ring = RingBuffer(capacity, CHANNELS)
        if audio.record:
            if str(audio.record) == str(audio.output):
                raise UserError("--record names the same file as --output; give another path")
            self.recorder = Recorder(audio.record, sample_rate=rate, channels=CHANNELS, on_error=self._recorder_error)
        target = audio.output
        if isinstance(target, str) and target.lower() == "jack":
            # libjack directly, not PortAudio: it survives the JACK server going away
            self.output = JackOutput(self.ring, audio.jack_client_name, recorder=self.recorder)
        else:
            self.output = open_output(
                target,
                self.ring,
                sample_rate=rate,
                blocksize=0 if not str(target).lower().endswith(".wav") else FILE_BLOCK,
                client_name=audio.jack_client_name,
                recorder=self.recorder,
            )
        self.realtime = not isinstance(self.output, WavFileOutput)
        if not self.realtime and self.duration is None:
            raise UserError("a .wav output needs an end: give --duration SECONDS")
        if not self.realtime and self.tempo_source != "internal":
            raise UserError(
                f"tempo source {self.tempo_source} needs a live output (a device or jack), "
                "not a file: set tempo.source: internal to render to a file"
            )
        self.sample_rate = self.output.sample_rate
        assert self.output.live is not None  # made once the output's rate is known, as it is now
        self.output.live.reset(self._gain_target)  # the callback starts at the configured gain
        if self.recorder is not None:
            self.recorder.sample_rate = self.sample_rate
        state = self.store.state
        tempo = TempoMap(
            float(cast(SupportsFloat, state.values["bpm"])),
            int(cast(SupportsInt, state.values["beats_per_bar"])),
            self.sample_rate,
        )
        self.timeline = Timeline(tempo, CHANNELS, float(cast(SupportsFloat, state.values["crossfade_ms"])))
        margin = self.settings.render.safety_margin_ms / 1000.0
        self.planner = Planner(self.sample_rate, margin_seconds=margin)
        if self.duration is not None:
            self._end_frame = max(1, round(self.duration * self.sample_rate))

    async def _start_renderer(self) -> None:
        assert self._loop is not None
        await self._load_safe_loop()
        if self.settings.render.backend == "ray":
            await self._start_pool()
            self._unsubscribe.append(self.store.subscribe(self._on_state))
            return
        renderer = self._renderer
        if renderer is None and self._renderer_factory is not None:
            renderer = self._renderer_factory(self.realtime)
        if renderer is None:
            try:
                renderer = await self._loop.run_in_executor(None, build_cached_renderer, self.settings, self.realtime)
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

    async def _start_surfaces(self) -> None:
        if not (self.settings.osc.enabled or self.settings.midi.enabled or self.settings.http.enabled):
            return
        try:
            from riffengine.control.surfaces import start_surfaces
        except ImportError as exc:  # surfaces not installed in this build
            log.warning("control surfaces unavailable (%s); running without OSC/MIDI", exc)
            return
        osc_socket, kept = None, []
        if self._osc_fd is not None and self.settings.osc.enabled:
            kept = await self._take_osc()  # the host stops reading the socket it handed us
            osc_socket = socket.socket(fileno=self._osc_fd)
        self.surfaces = await start_surfaces(
            self.settings,
            self.store,
            self.bus,
            self.figures,
            loop=self._loop,
            learn=self._learn,
            panic=self.panic,
            osc_socket=osc_socket,
            osc_kept=kept,
        )

    def _install_signal_handlers(self) -> None:
        if not self._signals or threading.current_thread() is not threading.main_thread():
            return
        assert self._loop is not None
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
        assert self.output is not None
        if self.realtime:
            # Short GIL waits: for the audio callback in this process, or under the host for the
            # loop thread, which passes gain, mute and panic on to the host's callback.
            self._gil_interval = gil.prepare_for_audio()
            self._feed()
        self._last_beat = -1
        if self.recorder is not None:
            self.recorder.start()
        if self._on_output_open is not None and hasattr(self.output, "open"):
            self.output.open()
            self._on_output_open(self)
        self.output.start()
        self._stream_started = True
        self.bus.publish(
            "started", sample_rate=self.sample_rate, realtime=self.realtime, output=str(self.settings.audio.output)
        )
        log.info("playing at %d Hz to %s", self.sample_rate, self.settings.audio.output)

    def _start_follower(self) -> None:
        """The tempo source (Link, MIDI clock in) and MIDI clock out, once the stream runs."""
        assert self.timeline is not None
        clock = FrameClock.for_output(self.output) if self.realtime else FrameClock.free_running(self.sample_rate)
        self.follower = Follower(self.store, self.bus, self.settings, clock, self.timeline.tempo_at, self.tempo_source)

    # --- the tick ------------------------------------------------------------------------------

    async def _play(self) -> None:
        """Until stopped or at the end: apply script steps and results, plan, feed, publish."""
        assert self._loop is not None and self.timeline is not None
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

    # --- state, planning, results ---------------------------------------------------------------

    async def _stop_worker(self) -> None:
        """End the render worker's thread (off the loop: the render in flight may take a while)."""
        assert self._loop is not None and self.worker is not None
        await self._loop.run_in_executor(None, self.worker.stop, STOP_RENDER_SECONDS)
        if self.worker.alive:
            log.warning("the render thread is still running after %g s; exiting anyway", STOP_RENDER_SECONDS)

    def _on_state(self, old: State, new: State, source: str) -> None:
        self._state_dirty = self._state_file is not None
        changes = changed_keys(old, new)
        self.bus.publish("state", version=new.version, source=source, changes={k: v for k, v in changes})
        for key, value in changes:
            if key in ("gain", "mute"):
                self._gain_target = self._wanted_gain(new)
                if self.output is not None:
                    assert self.output.live is not None  # made when the output was opened
                    self.output.live.set(*self._gain_and_mute(new))  # heard in the next period
            elif key == "crossfade_ms" and self.timeline is not None:
                frames = round(float(cast(SupportsFloat, value)) * self.sample_rate / 1000.0)
                self.timeline.crossfade_frames = frames
                self.timeline.min_crossfade_frames = min(64, frames)
            elif key == "tempo_source" and self.follower is not None and source != "tempo":
                if not self.follower.switch(str(value)):  # refused: put the old value back
                    assert self._loop is not None
                    self._loop.call_soon(self.store.apply, {"tempo_source": self.follower.sync.source}, "tempo")
            elif key == "transport" and self.timeline is not None:
                self._set_transport(str(value), source)
            elif key == "beats_per_bar":
                self.bus.publish(
                    "warning", message="a meter change takes effect at the next start; the loop keeps its meter"
                )
        in_flight = self.planner.in_flight.number if self.planner is not None and self.planner.in_flight else None
        dropped = self.ahead.changed(old, new, in_flight)
        if self.realtime and in_flight in self.ahead.stale:
            self._cancel.add(in_flight)  # stopped at its next diffusion step: the change starts sooner
        if dropped:
            self.bus.publish("render", phase="dropped", version=new.version, loops=dropped, reason="superseded")
        self._plan()
        heard = self._heard_at_seam()
        if heard is not None and self.timeline is not None:
            self.bus.publish(
                "change_heard_at",
                version=new.version,
                frame=heard,
                bar=self.timeline.tempo.bar_at(heard),
                seconds=round(max(0, heard - self.heard_frame()) / self.sample_rate, 3),
            )
        self._wake.set()

    def _set_transport(self, value: str, source: str) -> None:
        """``transport``: stop at the next bar line (fading out before it) or play from the next
        one; a ``transport`` event says where."""
        assert self.timeline is not None
        timeline = self.timeline
        frame: int | None
        if value == "stop":
            timeline.stop(timeline.cursor)
            frame = timeline.stopping_at if timeline.stopping_at is not None else timeline.cursor
        else:
            frame = timeline.play(timeline.cursor)
            if frame is None:  # the stop was called off before its fade began
                frame = timeline.cursor
        self.bus.publish("transport", state=value, frame=frame, bar=timeline.tempo.bar_at(frame), source=source)

    # --- script ----------------------------------------------------------------------------------

    def _run_script(self) -> None:
        assert self.timeline is not None
        if not self._script:
            return
        frame = self.heard_frame()
        bar = self.timeline.tempo_at(frame).bar_at(frame)
        due = [s for s in self._script if s.due(frame, bar, self.sample_rate)]
        for step in due:
            self._script.remove(step)
            try:
                if step.scene is not None:
                    self.store.recall_scene(
                        self.settings.scene(step.scene),
                        step.scene if isinstance(step.scene, int) else None,
                        source="script",
                    )
                if step.changes:
                    self.store.apply(step.changes, source="script")
            except UserError as exc:
                self.bus.publish("error", message=f"script step {step.index + 1}: {exc}")

    async def _close(self) -> None:
        """Close in reverse order; each step runs even if an earlier one failed."""
        self._remove_signal_handlers()
        self.notifier.stopping("stopping")
        running = self.worker.running if self.worker is not None else None
        if running is not None:
            self._cancel.add(running.tag)  # the render in flight stops at its next step
        for task in (self._watchdog, self._reconnect, self._model_retry, self._beat_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._watchdog = self._reconnect = self._model_retry = self._beat_task = None
        self._save_state()
        if isinstance(self.output, HostOutput):
            with contextlib.suppress(Exception):
                assert self._loop is not None
                self._loop.remove_reader(self.output.fileno())
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
