"""The engine's constants and small types, shared by its role modules."""

from __future__ import annotations

from dataclasses import dataclass

from riffengine.planner import Job
from riffengine.render.worker import (
    RenderResult,
)

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
HEARTBEAT_SECONDS = 0.2
"""Under the audio host: how often the engine says it is alive (and saves its state)."""


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
class Arrival:
    """A render result and the cursor frame from which it may be used."""

    job: Job
    result: RenderResult
    apply_at: int
