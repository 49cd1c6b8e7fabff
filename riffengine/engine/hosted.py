"""The engine under the audio host (:mod:`riffengine.host`): its output, heartbeat, saved state and
messages.

A role of :class:`~riffengine.engine.core.Engine` (its methods run on the engine's
loop thread, on the engine's attributes).
"""

from __future__ import annotations

import asyncio
import logging
from typing import SupportsFloat, SupportsInt, cast

from riffengine.audio.timeline import Timeline
from riffengine.config import Settings
from riffengine.engine.base import EngineBase
from riffengine.engine.parts import (
    CHANNELS,
    HEARTBEAT_SECONDS,
)
from riffengine.errors import UserError
from riffengine.host import resume, standin
from riffengine.host.client import HostOutput
from riffengine.planner import Planner
from riffengine.state import State, apply_many, as_pairs, initial_state
from riffengine.timing.tempo import TempoMap

log = logging.getLogger("riffengine.engine")

OSC_TAKE_SECONDS = 2.0
"""How long an engine waits for the OSC packets the host kept before it listens anyway."""

# The asserts narrow the parts run() builds (None until then): the methods they are in run only
# once it has built them, and only under the audio host.


class HostedRole(EngineBase):
    """The engine under the audio host (see the module)."""

    @staticmethod
    def _starting_state(settings: Settings, resumed: resume.Resume | None) -> State:
        """The config's state, then what a previous engine under the same host left (if any)."""
        state = initial_state(settings)
        if resumed is None:
            return state
        try:
            return apply_many(state, resumed.pairs)
        except UserError as exc:
            log.warning("the previous engine's state does not apply (%s); starting from the config", exc)
            return state

    def _open_host_output(self) -> None:
        """Under the audio host: its ring and stream; it records, applies gain and panic."""
        assert self._host is not None and self._loop is not None
        self.output = HostOutput(self._host)
        self.ring = self.output.ring
        self._beat_task = asyncio.ensure_future(self._beat())
        self._loop.add_reader(self.output.fileno(), self._from_host)
        self.realtime = True
        self.sample_rate = self.output.sample_rate
        state = self.store.state
        if self._resume is None:
            # the host's first engine sets the gain; one taking over from a saved state leaves
            # what the host plays (the state has the same; what the host played meanwhile, OSC)
            self.output.live.set(*self._gain_and_mute(state))
        tempo = TempoMap(
            float(cast(SupportsFloat, state.values["bpm"])),
            int(cast(SupportsInt, state.values["beats_per_bar"])),
            self.sample_rate,
        )
        grid = self._grid
        if grid is not None and grid.beats_per_bar == tempo.beats_per_bar:
            # the grid of the loops the host holds: our first loop lands on one of its bar lines
            tempo = TempoMap(
                grid.bpm,
                grid.beats_per_bar,
                self.sample_rate,
                anchor_frame=grid.frame,
                anchor_beat=float(grid.bar * grid.beats_per_bar),
            )
        start = max(self.ring.frames_written, self.ring.frames_read)
        crossfade_ms = float(cast(SupportsFloat, state.values["crossfade_ms"]))
        self.timeline = Timeline(tempo, CHANNELS, crossfade_ms, start_frame=start)
        margin = self.settings.render.safety_margin_ms / 1000.0
        self.planner = Planner(self.sample_rate, margin_seconds=margin)
        if self.duration is not None:
            self._end_frame = start + max(1, round(self.duration * self.sample_rate))

    def _from_host(self) -> None:
        """Loop thread: what the audio host tells us (a recording that failed, the OSC it kept)."""
        assert isinstance(self.output, HostOutput)
        for message in self.output.messages():
            if message["kind"] == "record_failed":
                self._report_recording_error(Exception(str(message.get("reason", ""))), str(message.get("path", "")))
            elif message["kind"] == "osc_kept" and self._osc_kept is not None and not self._osc_kept.done():
                self._osc_kept.set_result(message.get("packets"))

    async def _take_osc(self) -> list[standin.Kept]:
        """The host stops reading the OSC socket it handed us; the packets it kept meanwhile."""
        assert self._loop is not None
        if not isinstance(self.output, HostOutput):
            return []
        self._osc_kept = self._loop.create_future()
        self.output.send("osc_take")
        try:
            return standin.decode_packets(await asyncio.wait_for(self._osc_kept, OSC_TAKE_SECONDS))
        except TimeoutError:
            log.warning("the audio host did not hand over the OSC it kept in %g s; going on without", OSC_TAKE_SECONDS)
        except ValueError as exc:
            log.warning("the OSC the audio host kept cannot be read (%s); going on without", exc)
        finally:
            self._osc_kept = None
        return []

    async def _beat(self) -> None:
        """Under the host: the heartbeat it watches (a hung engine is restarted), and the state
        the next engine starts from."""
        assert isinstance(self.output, HostOutput)
        while True:
            if not self.output.beat():
                log.error("the audio host is gone; this engine ends")
                self.stop()
            self._save_state()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    def _save_state(self) -> None:
        if not self._state_dirty or self._state_file is None:
            return
        self._state_dirty = False
        try:
            resume.save(self._state_file, as_pairs(self.store.state), self._grid)
        except OSError as exc:
            log.warning("cannot save the state for a restart in %s: %s", self._state_file, exc)

    def _host_figures(self) -> dict[str, object]:
        """Under the audio host: engines it restarted, and the seconds it played on its own."""
        if not isinstance(self.output, HostOutput):
            return {"audio_host": False}
        return {
            "audio_host": True,
            "outputs_lost": self.output.shm.field("outputs_lost"),
            "engine_restarts": self.output.shm.field("engine_restarts"),
            "held_seconds": round(self.output.shm.field("held_frames") / self.sample_rate, 3),
        }
