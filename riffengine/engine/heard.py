"""Publishing what is heard: loop starts, beats, tempo changes, underruns and xruns, as events when
the output plays them (not when they are rendered).

A role of :class:`~riffengine.engine.core.Engine` (its methods run on the engine's
loop thread, on the engine's attributes).
"""

from __future__ import annotations

import logging
import math

from riffengine import evolve
from riffengine.audio.timeline import LoopStarted, Stopped
from riffengine.engine.base import EngineBase
from riffengine.host import resume

log = logging.getLogger("riffengine.engine")

# The asserts narrow the parts run() builds (None until then): the methods they are in run only
# once it has built them.


class HeardRole(EngineBase):
    """Publishing what is heard (see the module)."""

    # --- publishing what is heard -----------------------------------------------------------------

    def _publish_heard(self) -> None:
        assert self.ring is not None
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
        assert self.timeline is not None
        info = self._clips.get(event.clip_id, {})
        self._loops_heard += 1
        self._heard_clip = event.clip_id
        if self._heard_bpm is not None and event.bpm != self._heard_bpm:
            self.bus.publish("tempo", bpm=event.bpm, frame=event.frame, bar=event.bar, source=self.tempo_source)
        self._heard_bpm = event.bpm
        if self._state_file is not None:
            bpb = self.timeline.tempo_at(event.frame).beats_per_bar
            self._grid = resume.Grid(event.frame, event.bar, event.bpm, bpb)
            self._state_dirty = True
        planned = self.ahead.loop_of(event.clip_id)
        if event.repeat and planned is not None and evolve.walking(planned.loop, self.store.state):
            self._stats["walk_repeats"] += 1  # the next loop of the walk was not ready in time
        self.bus.publish(
            "loop_started",
            index=self._loops_heard,
            clip_id=event.clip_id,
            version=info.get("version"),
            frame=event.frame,
            bar=event.bar,
            repeat=event.repeat,
            bpm=event.bpm,
            frames=info.get("frames"),
            crossfade_frames=event.crossfade_frames,
            image=info.get("image"),
            **self._walk_fields(event.clip_id),
        )

    def _walk_fields(self, clip_id: str | None, prefix: str = "") -> dict[str, object]:
        """What the loop of ``clip_id`` is (alpha, seeds, prompt hash, step, glide), for events."""
        planned = self.ahead.loop_of(clip_id)
        if planned is None:
            return {}
        return {prefix + k: v for k, v in evolve.describe(planned.loop).items()}

    def _publish_beats(self, heard: int) -> None:
        assert self.timeline is not None
        tempo = self.timeline.tempo_at(heard)
        beat = math.floor(tempo.beat_at(heard) + 1e-9)
        while self._last_beat < beat:
            self._last_beat += 1
            b = self._last_beat
            frame = tempo.anchor_frame + round((b - tempo.anchor_beat) * tempo.frames_per_beat())
            self.bus.publish(
                "beat",
                beat=b,
                bar=tempo.bar_at(frame),
                beat_in_bar=b % tempo.beats_per_bar,
                frame=frame,
                bpm=round(tempo.effective_bpm, 4),
            )

    @staticmethod
    def _log_event(event) -> None:
        if event.kind in ("render_failed", "underrun", "xrun", "error", "warning", "loop_dropped", "render_late"):
            data = {k: v for k, v in event.data.items() if k != "image"}
            log.warning("%s %s", event.kind, data)
        elif event.kind in ("loop_scheduled", "tempo", "started", "stopped"):
            log.info("%s %s", event.kind, {k: v for k, v in event.data.items() if k != "image"})
