"""The attributes the engine's roles share, declared once with their types.

:class:`EngineBase` holds annotations only: every role (and so
:class:`~riffengine.engine.core.Engine`) inherits it, and ``Engine.__init__`` and ``run()`` set
the values. The parts ``run()`` builds (ring, output, timeline, planner, worker, the loop) are
None until then. The methods one role calls on another are declared for the type checker only
(under ``TYPE_CHECKING``): at run time the class is empty and the roles' order in ``Engine``
decides, as before.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from riffengine.ahead import Ahead
    from riffengine.audio.jackoutput import JackOutput
    from riffengine.audio.output import DeviceOutput, WavFileOutput
    from riffengine.audio.recorder import Recorder
    from riffengine.audio.ringbuffer import RingBuffer
    from riffengine.audio.timeline import LoopStarted, Stopped, Timeline
    from riffengine.clipmaker import ClipMaker, ClipSpec, MadeClip
    from riffengine.config import Settings
    from riffengine.control.surfaces import Surfaces
    from riffengine.engine.parts import Arrival
    from riffengine.eventlog import EventLog
    from riffengine.events import EventBus
    from riffengine.host import resume
    from riffengine.host.client import HostOutput, RingWriter
    from riffengine.planner import ClipKey, Job, Planner
    from riffengine.render.bank import SafeLoop
    from riffengine.render.fallback import FallbackRenderer
    from riffengine.render.worker import RenderResult, RenderWorker
    from riffengine.render.workers.pool import RayPool
    from riffengine.script import Step
    from riffengine.sdnotify import Notifier
    from riffengine.state import State
    from riffengine.store import StateStore
    from riffengine.timing.follow import Follower


class EngineBase:
    """The engine's shared attributes (see the module); no behaviour."""

    # --- set by Engine.__init__ ------------------------------------------------------------------
    settings: Settings
    store: StateStore
    bus: EventBus
    notifier: Notifier
    ahead: Ahead
    duration: float | None
    sample_rate: int
    realtime: bool
    degraded: str
    safe: SafeLoop | None
    _host: str | None
    _state_file: str | None
    _resume: resume.Resume | None
    """What the previous engine under the same host left (None: a fresh start)."""
    _osc_fd: int | None
    """The audio host's OSC socket, inherited (``--osc-fd``), or None: the engine binds its own."""
    _osc_kept: asyncio.Future[object] | None
    _renderer: object | None
    _script: deque[Step]
    _reload_settings: Callable[[], Settings] | None
    _safe_frames: np.ndarray | None
    _real_model: bool
    _compiles: bool
    # faults and retries
    _discard_before: int
    _fail_streak: int
    _failed_key: ClipKey | None
    _streak_started: float
    _retry_frame: int | None
    _late_reported: int
    _model_retries: int
    _stats: dict[str, int]
    # tasks on the loop
    _watchdog: asyncio.Task[None] | None
    _reconnect: asyncio.Task[None] | None
    _model_retry: asyncio.Task[None] | None
    _beat_task: asyncio.Task[None] | None
    # loop-side bookkeeping
    _stop_requested: bool
    _wake: asyncio.Event
    _stopped: asyncio.Event
    _arrivals: list[Arrival]
    _jobs: dict[int, Job]
    _job_bpm: dict[int, float]
    _cancel: set[object]
    """Tags of the renders to stop at their next step: job numbers (and the warm-up's, at the end)."""
    _warm_future: asyncio.Future[RenderResult] | None
    _heard: deque[LoopStarted | Stopped]
    _clips: dict[str, dict[str, Any]]
    _clip_count: int
    _loops_heard: int
    _last_beat: int
    _heard_bpm: float | None
    _heard_clip: str | None
    _underruns_seen: int
    _xruns_seen: int
    _gain: float
    _gain_target: float
    _end_frame: int | None
    _stream_started: bool
    _last_render_ms: float
    _state_dirty: bool
    _grid: resume.Grid | None
    _guessed: tuple[object, ...] | None
    _renderer_factory: Callable[[bool], object] | None

    # --- built by run(): None until then ---------------------------------------------------------
    _loop: asyncio.AbstractEventLoop | None
    ring: RingBuffer | RingWriter | None
    output: DeviceOutput | WavFileOutput | JackOutput | HostOutput | None
    recorder: Recorder | None
    timeline: Timeline | None
    planner: Planner | None
    worker: RenderWorker | RayPool | None
    events_log: EventLog | None
    surfaces: Surfaces | None
    follower: Follower | None
    _maker: ClipMaker | None

    if TYPE_CHECKING:
        # Methods one role calls on another (defined in core and the role modules).

        def stop(self) -> None: ...

        def reload(self) -> None: ...

        def heard_frame(self) -> int: ...

        @property
        def tempo_source(self) -> str: ...

        def _plan(self) -> None: ...

        def _publish_heard(self) -> None: ...

        def _walk_fields(self, clip_id: str | None, prefix: str = "") -> dict[str, object]: ...

        def _register_clip(self, made: MadeClip, version: int) -> str: ...

        def _loop_geometry(self) -> tuple[int, int, int]: ...

        def _end_streak(self, recovered: bool = True) -> None: ...

        async def _load_safe_loop(self) -> None: ...

        @staticmethod
        def _gain_and_mute(state: State) -> tuple[float, bool]: ...

        def _publish_first_loop(
            self, clip_id: str, version: int, bpm: float, bars: int, frames: int, image: object
        ) -> None: ...

        def _resumes_on_safe_loop(self, state: State) -> bool: ...

        def _start_on_safe_loop(self, state: State) -> None: ...

        def _degrade(self, reason: str) -> FallbackRenderer: ...

        def _report_recording_error(self, exc: Exception, path: str | os.PathLike[str] | None = None) -> None: ...

        def _save_state(self) -> None: ...

        def _speculate(self) -> None: ...

        def _spec(self, key: ClipKey) -> ClipSpec: ...

        def _result_from_worker(self, result: RenderResult) -> None: ...
