"""The safe loop and panic: the bank's safe loop read at start and reload, and the crossfade to it.

A role of :class:`~riffengine.engine.core.Engine` (its methods run on the engine's
loop thread, on the engine's attributes).
"""

from __future__ import annotations

import logging
import os
from typing import cast

from riffengine import evolve
from riffengine.audio.panic import PanicRequest
from riffengine.clipmaker import ClipSpec, MadeClip
from riffengine.engine.base import EngineBase
from riffengine.engine.parts import (
    CHANNELS,
)
from riffengine.errors import UserError
from riffengine.host.client import HostOutput
from riffengine.planner import clip_key
from riffengine.state import apply_many

log = logging.getLogger("riffengine.engine")

# The asserts narrow the parts run() builds (None until then): the methods they are in run only
# once it has built them.


class SafeRole(EngineBase):
    """The safe loop and panic (see the module)."""

    async def _load_safe_loop(self) -> None:
        """Read the bank's safe loop from the cache folder (off the loop), if one is banked."""
        assert self._loop is not None
        self.safe, self._safe_frames = None, None
        if self.settings.cache.enabled:
            self.safe, self._safe_frames = await self._loop.run_in_executor(None, self._read_safe_loop)
        if self.safe is not None:
            log.info("safe loop %r ready for /riff/panic", self.safe.name)
        if isinstance(self.output, HostOutput):  # for a panic while no engine listens
            self.output.hand_safe_loop(self._safe_frames, self.safe.name if self.safe is not None else "")

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
            raise UserError(
                f"panic: no safe loop is banked in {folder}; run `riffengine bank CONFIG` "
                "before the show (it marks one), then reload (SIGHUP) or restart"
            )
        values = tuple(safe.values.items())
        new = apply_many(self.store.state, values) if values else self.store.state
        assert self.planner is not None  # built with the timeline
        self.planner.adopt(clip_key(new))
        self._discard_before = self.store.state.version + 1  # renders under way are for older states
        self._end_streak(recovered=False)
        self._stats["panics"] += 1
        made = MadeClip(cast(ClipSpec, None), frames, None, None, 0.0, False)  # banked, not made from a spec
        clip_id = self._register_clip(made, new.version)
        self.ahead.start(evolve.first_loop(new), new, clip_id)
        self.timeline.submit(self.timeline.make_clip(clip_id, frames, safe.bpm, safe.bars), 0)
        seam, _, _ = self._loop_geometry()
        if self.realtime:  # heard at once: the callback crossfades to the loop until the seam
            assert self.output is not None and self.output.panic is not None
            self.output.panic.request = PanicRequest(frames, origin=seam, until=seam)
        self.bus.publish(
            "panic",
            safe=safe.name,
            clip_id=clip_id,
            frame=seam,
            bar=self.timeline.tempo.bar_at(seam),
            heard_from=self.heard_frame(),
        )
        log.warning("panic: crossfading to the safe loop %r at bar %d", safe.name, self.timeline.tempo.bar_at(seam))
        if values:
            self.store.apply(values, source="panic")
