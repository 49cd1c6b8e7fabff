"""Control surfaces: the OSC server, the MIDI input and the OSCQuery/web server
(:mod:`riffengine.net.server`), started and stopped together.

The engine calls :func:`start_surfaces` once its store and bus exist and closes the returned
:class:`Surfaces` on the way out. The surfaces change the engine only through the
:class:`~riffengine.store.StateStore` and read it only through the store, the
:class:`~riffengine.events.EventBus` and ``figures()``:

- ``store.apply`` / ``store.recall_scene`` with a source (``osc HOST:PORT``, ``midi``);
- bus events forwarded to OSC subscribers: ``beat`` (bar, beat), ``loop_started`` (index,
  bar, image: a PIL image or a path), ``render_failed`` / ``fail`` (reason or error,
  optional address); parameter changes come from ``store.subscribe``;
- ``figures()`` returns a dict of engine figures (bar, bpm, render_ms, underruns,
  loops_ahead...) appended to ``/riff/status.reply``; it is called on the loop's thread.

Thread rule: call :func:`start_surfaces` and :meth:`Surfaces.close` on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from riffengine.config import Settings
from riffengine.control import mapping
from riffengine.control.actions import Controls
from riffengine.control.midi import MidiSurface, start_learning
from riffengine.control.osc import OscServer
from riffengine.events import EventBus
from riffengine.store import StateStore

if TYPE_CHECKING:
    from riffengine.net.server import WebServer

log = logging.getLogger(__name__)

Figures = Callable[[], Mapping[str, object]]


@dataclass
class Surfaces:
    """The running surfaces; either may be None when disabled in the config."""

    controls: Controls
    osc: OscServer | None
    midi: MidiSurface | None
    web: WebServer | None = None

    def learn(self, key: str) -> None:
        """Arm MIDI learn for ``key``; UserError if MIDI is off or ``key`` is not a knob target."""
        start_learning(self.midi)(key)

    def reload(self, settings: Settings) -> None:
        """Take a reloaded config (SIGHUP): mappings, scenes, the OSC allow list, limits,
        notify list and folders. Everything is checked before anything changes (UserError)."""
        if self.midi is not None:
            mapping.mappings_from_settings(settings.midi.mappings, list(settings.scenes))
        if self.osc is not None:
            self.osc.reconfigure(settings.osc, settings.paths)
        if self.midi is not None:
            self.midi.reload(settings)
        if self.web is not None and settings.http != self.web.settings:
            log.warning("http settings take effect at the next start")
        self.controls.settings = settings

    def figures(self) -> dict[str, object]:
        """The surfaces' own counters, for logs and status."""
        out: dict[str, object] = {}
        if self.osc is not None:
            out.update(osc_dropped=self.osc.dropped, osc_failed=self.osc.failed)
        if self.midi is not None:
            out.update(midi_port=self.midi.port_name or "", midi_messages=self.midi.messages)
        if self.web is not None:
            out.update(self.web.figures_for_status())
        return out

    async def close(self) -> None:
        if self.web is not None:
            await self.web.close()
        if self.osc is not None:
            await self.osc.close()
        if self.midi is not None:
            await self.midi.close()


async def start_surfaces(
    settings: Settings,
    store: StateStore,
    bus: EventBus,
    figures: Figures,
    loop: asyncio.AbstractEventLoop | None = None,
    learn: str | None = None,
    panic: Callable[[], None] | None = None,
    osc_socket: socket.socket | None = None,
    osc_kept: Sequence[tuple[bytes, tuple[str, int]]] = (),
) -> Surfaces:
    """Start the MIDI input, the OSC server and the OSCQuery/web server the settings enable.

    ``learn`` arms MIDI learn for that parameter at once (``riffengine run --learn PARAM``);
    ``panic`` is what ``/riff/panic`` calls (the engine's fall-back to the safe loop).
    ``osc_socket``: the OSC server listens there (the audio host's, bound already), and first
    applies ``osc_kept``, the packets the host kept while no engine listened.
    Raises UserError (and starts nothing) for a bad mappings file, a taken OSC or HTTP port or
    an unusable MIDI API.
    """
    loop = loop or asyncio.get_running_loop()
    controls = Controls(settings, store)
    midi = None
    if settings.midi.enabled:
        midi = await MidiSurface(settings, store, bus, controls, loop).start()
    surfaces = Surfaces(controls, None, midi)

    def all_figures() -> Mapping[str, object]:
        return {**figures(), **surfaces.figures()}

    try:
        if learn is not None:
            surfaces.learn(learn)
        if settings.osc.enabled:
            surfaces.osc = await OscServer(
                settings.osc, settings.paths, controls, store, bus, all_figures, surfaces.learn, loop, panic
            ).start(osc_socket, osc_kept)
        if settings.http.enabled:
            from riffengine.net.server import WebServer

            # the WebSocket's control messages go through the OSC server's checks, listening or not
            router = surfaces.osc or OscServer(
                settings.osc, settings.paths, controls, store, bus, all_figures, surfaces.learn, loop, panic
            )
            surfaces.web = await WebServer(settings.http, router, store, bus, all_figures, loop).start()
    except BaseException:
        await surfaces.close()
        raise
    return surfaces
