"""Supervising outputs and faults: a lost output reopened, a failed recording reported, a model
that cannot load (degraded start) retried.

A role of :class:`~riffengine.engine.core.Engine` (its methods run on the engine's
loop thread, on the engine's attributes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from riffengine.audio.jackoutput import forget_portaudio_at_exit
from riffengine.audio.output import WavFileOutput
from riffengine.control.params import PREFIX
from riffengine.engine.base import EngineBase
from riffengine.engine.model import build_cached_renderer
from riffengine.engine.parts import (
    RECONNECT_SECONDS,
)
from riffengine.render.fallback import FallbackRenderer

log = logging.getLogger("riffengine.engine")

# The asserts narrow the parts run() builds (None until then): the methods they are in run only
# once it has built them.


class FaultsRole(EngineBase):
    """Supervising outputs and faults (see the module)."""

    def _watch_output(self) -> None:
        """Live: notice a lost output (JACK server gone, device unplugged) and start reconnecting."""
        assert self._loop is not None
        if self._reconnect is not None or not getattr(self.output, "lost", False):
            return
        self._stats["outputs_lost"] += 1
        forget_portaudio_at_exit()
        reason = getattr(self.output, "lost_reason", "") or "the server went away"
        self.bus.publish("output_lost", reason=reason, frame=self.heard_frame())
        if "JACK" in getattr(self.output, "host_api", ""):
            log.error(
                "audio output lost (%s). PortAudio's JACK streams cannot come back: restart "
                "riffengine, and use audio.output: jack, which reconnects by itself",
                reason,
            )
        else:
            log.error("audio output lost (%s); reopening it when it is back", reason)
        self.notifier.status("audio output lost; waiting for it to come back")
        self._reconnect = self._loop.create_task(self._reconnect_output())

    async def _reconnect_output(self) -> None:
        """Poll until the output plays again; the ring (and so the recording) resumes as it was."""
        assert self._loop is not None and self.output is not None
        assert not isinstance(self.output, WavFileOutput)  # a file output is never lost
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

    def _report_recording_error(self, exc: Exception, path: str | os.PathLike[str] | None = None) -> None:
        """Loop thread: a recording that failed is reported (log, events, OSC ``/riff/fail``)."""
        if path is None:
            path = self.recorder.path if self.recorder is not None else ""
        self.bus.publish("error", message=f"recording: {exc}")
        self.bus.publish(
            "fail", address=f"{PREFIX}/record", reason=f"recording to {path} failed: {exc}; the audio goes on"
        )
        self.notifier.status(f"recording failed ({exc}); the audio goes on")

    def _degrade(self, reason: str) -> FallbackRenderer:
        """Play without the model (the safe loop, else seed loops) and keep trying to load it."""
        self.degraded = reason
        log.error(
            "degraded: %s; playing %s and trying the model again every %g s",
            reason,
            "the safe loop" if self.safe is not None else "the seed image's loop",
            self.settings.model.retry_seconds,
        )
        self.bus.publish("degraded", reason=reason)
        self.notifier.status(f"degraded: {reason}")
        if self._model_retry is None:
            self._model_retry = asyncio.ensure_future(self._retry_model())
        safe_pixels = self.safe.clip.pixels if self.safe is not None else None
        return FallbackRenderer(safe_pixels)

    async def _retry_model(self) -> None:
        """Load the model again every ``model.retry_seconds`` until it loads; then render with it."""
        assert self._loop is not None and self._maker is not None and self.planner is not None
        while not self._stop_requested:
            await asyncio.sleep(self.settings.model.retry_seconds)
            try:
                renderer = await self._loop.run_in_executor(None, build_cached_renderer, self.settings, self.realtime)
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
