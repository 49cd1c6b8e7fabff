"""The daemon's side: warm-up progress, readiness and reload (SIGHUP).

A role of :class:`~riffengine.engine.core.Engine` (its methods run on the engine's
loop thread, on the engine's attributes).
"""

from __future__ import annotations

import logging

from riffengine.config import initial_values
from riffengine.control.params import PREFIX
from riffengine.engine.base import EngineBase
from riffengine.errors import UserError
from riffengine.sdnotify import watchdog_pings

log = logging.getLogger("riffengine.engine")

# The asserts narrow the parts run() builds (None until then): the methods they are in run only
# once it has built them.


class DaemonRole(EngineBase):
    """The daemon's side (see the module)."""

    def _announce_ready(self) -> None:
        """READY=1 and the watchdog task, once the first loop plays (systemd notify)."""
        assert self._loop is not None
        playing = f"playing at {self.sample_rate} Hz to {self.settings.audio.output}"
        self.notifier.ready(f"{playing}, degraded: {self.degraded}" if self.degraded else playing)
        self._watchdog = self._loop.create_task(watchdog_pings(self.notifier))

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
        assert self._loop is not None  # SIGHUP is handled once run() started
        self._loop.create_task(self._load_safe_loop())
        self.notifier.ready(f"config reloaded; playing at {self.sample_rate} Hz")
