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
from riffengine.state import State, apply_many

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
        self._discard_before = self.store.state.version + 1  # renders under way are for older states
        self._end_streak(recovered=False)
        self._stats["panics"] += 1
        clip_id = self._submit_safe_loop(new)
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

    def _submit_safe_loop(self, state: State) -> str:
        """Queue the safe loop on the timeline as the clip of ``state`` (the safe state): the
        planner adopts it, with no render. Its clip id."""
        safe, frames = self.safe, self._safe_frames
        assert safe is not None and frames is not None
        assert self.timeline is not None and self.planner is not None  # built with the output
        self.planner.adopt(clip_key(state))
        made = MadeClip(cast(ClipSpec, None), frames, None, None, 0.0, False)  # banked, not made from a spec
        clip_id = self._register_clip(made, state.version)
        self.ahead.start(evolve.first_loop(state), state, clip_id)
        self.timeline.submit(self.timeline.make_clip(clip_id, frames, safe.bpm, safe.bars), 0)
        return clip_id

    # --- taking over after a panic -------------------------------------------------------------

    def _resumes_on_safe_loop(self, state: State) -> bool:
        """True when this engine takes over (under the audio host) from one whose state asks for
        the safe loop's clip: the previous engine panicked, and played the safe loop from the bank.

        That clip was never rendered with this model (the bank may even have been made with
        another one, and the safe values bring the bank's steps), so the render cache misses it
        and a warm-up render of it takes as long as a render at those steps: with the tiny model
        on a CPU, 20 s and more. The safe loop itself needs none.
        """
        safe, timeline = self.safe, self.timeline
        if self._resume is None or safe is None or self._safe_frames is None or timeline is None:
            return False
        if safe.beats_per_bar != timeline.tempo.beats_per_bar:
            return False
        try:
            as_safe = apply_many(state, tuple(safe.values.items()))
        except UserError:
            return False
        key = clip_key(state)
        return clip_key(as_safe) == key and key[1:] == (safe.bpm, safe.bars)

    def _start_on_safe_loop(self, state: State) -> None:
        """The warm-up of an engine that :meth:`_resumes_on_safe_loop`: the safe loop is its first
        loop, where the warm-up's render would be, as the previous engine played it."""
        assert self.safe is not None and self._safe_frames is not None and self.timeline is not None
        safe = self.safe
        clip_id = self._submit_safe_loop(state)
        if state.values["transport"] == "stop":
            self.timeline.stop(0)  # silent until play
        log.info("warm-up: the previous engine played the safe loop %r; starting on it, no render", safe.name)
        self._publish_first_loop(clip_id, state.version, safe.bpm, safe.bars, len(self._safe_frames), None)
