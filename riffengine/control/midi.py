"""MIDI input: a controller's knobs, pads and program changes drive the engine.

The input is ``midi.input``: a port name (a part of it is enough, any case) or
``virtual:NAME`` for a port the engine creates, on the ``midi.backend`` API of python-rtmidi
(``UNIX_JACK`` gives JACK MIDI, ``LINUX_ALSA`` the ALSA sequencer, ``rtmidi`` the system's
default). The mappings (:mod:`riffengine.control.mapping`) come from ``midi.mappings``.

Hot-plug: rtmidi reports nothing when a device comes or goes, so the port list is polled
(on an executor thread, every :data:`POLL_SECONDS`); a port that vanished is closed and
reopened by name when it comes back, without a restart. A named port missing at start is
waited for the same way.

JACK MIDI (``midi.backend: UNIX_JACK``): each input port is opened by a helper process
(:class:`~riffengine.control.jackmidi.JackMidiInput`), because closing a JACK MIDI port in a
live process can crash it (a libjack race; see that module). The port list is still read here.

MIDI learn (:meth:`MidiSurface.learn`, ``riffengine run --learn PARAM``, OSC ``/riff/learn``):
the next control change binds its CC and channel to the parameter, live and appended to the
mappings file; a ``learned`` event goes on the bus.

Thread rules: rtmidi calls :meth:`MidiSurface._receive` on its own thread; it only stamps the
time and hands the message to the loop with ``call_soon_threadsafe``. Everything else runs
on the asyncio loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

import mido
import rtmidi

from riffengine.config import MidiSettings, Settings
from riffengine.control import mapping
from riffengine.control.actions import Controls
from riffengine.control.jackmidi import JackMidiInput
from riffengine.errors import UserError
from riffengine.events import EventBus
from riffengine.store import StateStore

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
"""How often the port list is checked for a controller that came or went."""
TICK_SECONDS = 0.01
"""How often glides and lone 14-bit halves are stepped while any is active."""
TYPES = ("control_change", "note_on", "note_off", "program_change")
"""Message types the mappings use; others (clock, sysex...) are ignored."""
VIRTUAL = "virtual:"
CLIENT_NAME = "riffengine"
LEARN_FILE = "midi-mappings.yaml"
"""Where learned mappings go when ``midi.mappings`` is not set (beside the config file)."""

_RTMIDI_APIS = {
    "rtmidi": rtmidi.API_UNSPECIFIED,
    "UNIX_JACK": rtmidi.API_UNIX_JACK,
    "LINUX_ALSA": rtmidi.API_LINUX_ALSA,
}


def match_port(wanted: str, names: list[str]) -> str | None:
    """The port ``wanted`` names: an exact name, else the first that contains it (any case)."""
    if wanted in names:
        return wanted
    found = [n for n in names if wanted.lower() in n.lower()]
    if len(found) > 1:
        log.warning("MIDI input %r matches %s; using %r", wanted, found, found[0])
    return found[0] if found else None


def learn_file(settings: Settings) -> str | None:
    """The file learned mappings are saved to; None when mappings are inline in the config."""
    mappings = settings.midi.mappings
    if isinstance(mappings, str):
        return mappings
    if mappings is None:
        folder = os.path.dirname(os.path.abspath(settings.source)) if settings.source else os.getcwd()
        return os.path.join(folder, LEARN_FILE)
    return None


class MidiSurface:
    """One MIDI input, its mapper, hot-plug polling and learn. Start, then close."""

    def __init__(
        self, settings: Settings, store: StateStore, bus: EventBus, controls: Controls, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.settings: MidiSettings = settings.midi
        self.store = store
        self.bus = bus
        self.controls = controls
        self.loop = loop
        scenes = list(settings.scenes)
        self.mapper = mapping.Mapper(list(mapping.mappings_from_settings(self.settings.mappings, scenes)))
        self.learn_path = learn_file(settings)
        self.port: mido.ports.BaseInput | JackMidiInput | None = None
        self.port_name: str | None = None
        self.messages = 0
        self.opened = 0
        self._learning: str | None = None
        self._backend = mido.Backend(self.settings.mido_backend, load=True)
        self._probe: rtmidi.MidiIn | None = None
        self._poller: asyncio.Task | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def virtual(self) -> bool:
        return self.settings.input.startswith(VIRTUAL)

    async def start(self) -> MidiSurface:
        """Open the input (or wait for it) and start polling; UserError if MIDI is unusable."""
        if self.virtual:
            name = self.settings.input[len(VIRTUAL) :]
            if not name:
                raise UserError("midi.input: virtual: needs a name, e.g. virtual:riffengine")
            await self._open(name, virtual=True)
            if self.settings.backend == "UNIX_JACK":
                self._poller = self.loop.create_task(self._watch_helper(name))
            return self
        try:
            self._probe = rtmidi.MidiIn(rtapi=_RTMIDI_APIS[self.settings.backend], name=f"{CLIENT_NAME}-ports")
        except Exception as exc:  # rtmidi raises its own SystemError subclasses
            raise UserError(
                f"MIDI: cannot use the {self.settings.backend} API ({exc}); check "
                "midi.backend, or that the JACK server or ALSA sequencer runs"
            ) from None
        await self._poll_once()
        if self.port is None:
            log.warning("MIDI input %r not found; waiting for it", self.settings.input)
        self._poller = self.loop.create_task(self._poll_forever())
        return self

    async def close(self) -> None:
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
        if self._tick is not None:
            self._tick.cancel()
        self._close_port()
        if self._probe is not None:
            self._probe.delete()
            self._probe = None

    def reload(self, settings: Settings) -> None:
        """Take a reloaded config's mappings and scenes (SIGHUP); loop thread.

        The new mappings are checked first (UserError, nothing changed). ``midi.input`` and
        ``midi.backend`` need a restart: a change is logged, not applied. A learn in progress
        is kept; glides and half-received 14-bit values of the old mappings are dropped.
        """
        midi = settings.midi
        scenes = list(settings.scenes)
        mapper = mapping.Mapper(list(mapping.mappings_from_settings(midi.mappings, scenes)))
        if (midi.input, midi.backend) != (self.settings.input, self.settings.backend):
            log.warning("midi.input and midi.backend take effect at the next start")
            midi = midi.model_copy(update={"input": self.settings.input, "backend": self.settings.backend})
        self.settings = midi
        self.mapper = mapper
        self.learn_path = learn_file(settings)
        log.info("MIDI mappings reloaded: %d bindings", len(mapper.bindings))

    # -- ports --

    async def _open(self, name: str, virtual: bool = False) -> None:
        """Open and adopt the input ``name``; UserError if it cannot be opened."""
        if self.settings.backend == "UNIX_JACK":  # starting the helper takes a moment
            port = await self.loop.run_in_executor(None, self._make_port, name, virtual)
        else:
            port = self._make_port(name, virtual)
        if self._closed:
            port.close()
            return
        self.port, self.port_name = port, name
        self.opened += 1
        log.info("MIDI input %r open", name)
        self.bus.publish("midi_port", state="open", name=name)

    def _make_port(self, name: str, virtual: bool) -> mido.ports.BaseInput | JackMidiInput:
        """A new input port calling :meth:`_receive`; any thread. UserError if it fails."""
        try:
            if self.settings.backend == "UNIX_JACK":
                return JackMidiInput(name, self._receive, virtual=virtual, client_name=CLIENT_NAME)
            if virtual:
                return self._backend.open_input(name, virtual=True, client_name=CLIENT_NAME, callback=self._receive)
            return self._backend.open_input(name, callback=self._receive)
        except (OSError, SystemError, RuntimeError) as exc:
            raise UserError(f"MIDI: cannot open input {name!r} ({exc}); check midi.input") from None

    def _close_port(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            port.close()
            log.warning("MIDI input %r closed", self.port_name)
            self.bus.publish("midi_port", state="closed", name=self.port_name)

    def _list_ports(self) -> list[str]:
        """Source port names; runs on an executor thread (one poll at a time)."""
        assert self._probe is not None
        return list(self._probe.get_ports())

    async def _poll_once(self) -> None:
        try:
            names = await self.loop.run_in_executor(None, self._list_ports)
        except Exception as exc:
            log.warning("MIDI port list failed: %s", exc)
            return
        if self._closed:
            return
        if self.port is not None and self.port_name not in names:
            log.warning("MIDI input %r went away; will reopen it when it is back", self.port_name)
            self._close_port()
        self._drop_dead_helper()
        if self.port is None:
            name = match_port(self.settings.input, names)
            if name is not None:
                try:
                    await self._open(name)
                except UserError as exc:
                    log.warning("%s", exc)

    def _drop_dead_helper(self) -> None:
        """Close the port if its JACK MIDI helper process ended (it is reopened after)."""
        if isinstance(self.port, JackMidiInput) and self.port.exit_status is not None:
            log.warning(
                "the JACK MIDI helper of %r ended (status %s); reopening the port",
                self.port_name,
                self.port.exit_status,
            )
            self._close_port()

    async def _watch_helper(self, name: str) -> None:
        """A virtual JACK MIDI port: reopen it if its helper process ends."""
        while not self._closed:
            await asyncio.sleep(POLL_SECONDS)
            self._drop_dead_helper()
            if self.port is None and not self._closed:
                try:
                    await self._open(name, virtual=True)
                except UserError as exc:
                    log.warning("%s", exc)

    async def _poll_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(POLL_SECONDS)
            await self._poll_once()

    # -- messages --

    def _receive(self, msg: mido.Message) -> None:
        """rtmidi's thread: stamp and hand over to the loop; never blocks."""
        if msg.type not in TYPES:
            return
        try:
            self.loop.call_soon_threadsafe(self._handle, msg, time.monotonic())
        except RuntimeError:  # the loop is closed: the engine is stopping
            pass

    def _handle(self, msg: mido.Message, now: float) -> None:
        if self._closed:
            return
        self.messages += 1
        if self._learning is not None and msg.type == "control_change":
            self._bind(self._learning, msg)
            return
        try:
            actions = self.mapper.handle(msg, self.store.state.values, now)
            self.controls.perform(actions, "midi")
        except UserError as exc:
            self._fail(msg, str(exc))
        self._schedule_tick()

    def _schedule_tick(self) -> None:
        if self._tick is None and self.mapper.busy and not self._closed:
            self._tick = self.loop.call_later(TICK_SECONDS, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        try:
            self.controls.perform(self.mapper.tick(self.store.state.values, time.monotonic()), "midi")
        except UserError as exc:
            self._fail(None, str(exc))
        self._schedule_tick()

    def _fail(self, msg: mido.Message | None, reason: str) -> None:
        log.warning("MIDI %s: %s", msg or "", reason)
        self.bus.publish("fail", address="midi", reason=f"{msg}: {reason}" if msg else reason)

    # -- learn --

    def learn(self, key: str) -> None:
        """Arm learn: the next CC moved drives ``key``. UserError if ``key`` cannot be a knob."""
        mapping.check_target(key)
        self._learning = key
        log.info("MIDI learn: move a control to bind it to %s", key)
        self.bus.publish("learning", key=key)

    def _bind(self, key: str, msg: mido.Message) -> None:
        self._learning = None
        entry = mapping.learned_entry(key, msg.control, msg.channel)
        binding = mapping.check_entry(entry)
        self.mapper.add(binding)
        saved = ""
        if self.learn_path is None:
            log.warning(
                "MIDI learn: midi.mappings is an inline list; %s is bound until the "
                "engine stops (point midi.mappings at a file to keep it)",
                key,
            )
        else:
            try:
                mapping.append_entry(self.learn_path, entry)
                saved = self.learn_path
            except (UserError, OSError) as exc:
                self._fail(msg, f"learned {key} but could not save it: {exc}")
        log.info(
            "MIDI learn: cc %d channel %d -> %s%s",
            msg.control,
            msg.channel + 1,
            key,
            f" (saved to {saved})" if saved else "",
        )
        self.bus.publish("learned", key=key, cc=msg.control, channel=msg.channel + 1, file=saved)


def start_learning(surface: MidiSurface | None) -> Callable[[str], None]:
    """The learn function OSC uses: arms ``surface``, or explains that MIDI is off."""

    def learn(key: str) -> None:
        if surface is None:
            mapping.check_target(key)
            raise UserError("learn: MIDI input is off; set midi.enabled: true in the config")
        surface.learn(key)

    return learn
