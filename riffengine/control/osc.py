"""OSC over UDP: set parameters, ask for status, subscribe to engine events.

Address space (the parameter table, :mod:`riffengine.control.params`, makes the first four):

==============================  ==========================================================
``/riff/<param> VALUE``         set a parameter; numbers as int or float (Pure Data sends
                                floats; ``8.0`` sets an int to 8); text parameters join all
                                their arguments with spaces (``/riff/negative harsh noise``)
``/riff/<param>/<slot> VALUE``  set one slot of a per-slot parameter (slots from 0)
``/riff/<param> V0 V1 ...``     set the first slots of a per-slot parameter, one per argument
``/riff/<param>/norm X``        set a number or choice by knob position X in 0..1 on the
``/riff/<param>/<slot>/norm X`` parameter's own curve (as Max's ``live.dial`` sends it)
``/riff/scene N``               recall scene N of the config (a parameter of type action)
``/riff/status [PORT]``         reply ``/riff/status.reply name value name value ...``: every
                                parameter (``prompt_a/0`` ... ) then the engine figures
``/riff/notify 1|0 [PORT]``     subscribe (1) or unsubscribe (0) to ``/riff/beat bar beat``
                                (beat within the bar, from 1),
                                ``/riff/loop index bar png_path [url]`` (the url of the
                                image on the web server, when it runs), then for a loop of the
                                engine ``/riff/walk index alpha seed_a seed_b prompts step glide``
                                (what the loop is: its A/B alpha, seeds, seed_b -1 for side A
                                alone, a short hash of its prompts, its step of the evolve walk
                                and a glide's progress "k/N" or ""), ``/riff/state key value
                                source``, ``/riff/fail address reason``, ``/riff/learned key
                                cc channel``; answered with ``/riff/notify.reply 1|0``
``/riff/learn PARAM``           MIDI learn: the next CC moved drives PARAM (saved to the
                                mappings file); ``/riff/learned`` tells when
``/riff/panic [1]``             crossfade at once to the bank's safe loop (``riffengine
                                bank``); ``/riff/panic 0`` (a button's release) does nothing
``/riff/scene_save [NAME]``     save what plays as a scene (``paths.scenes``; no name: the
                                next number); answered ``/riff/scene_save.reply NAME N``
==============================  ==========================================================

Replies go back to the sender's address and port, unless the sender named a ``PORT`` in
``/riff/status`` or ``/riff/notify``: then everything for that sender goes to that port on
its host (TouchDesigner's OSC Out and Max's ``udpsend`` send from a port nobody listens on).

A bad message of any kind (unknown address, wrong type or count of arguments, out of range,
NaN, string longer than ``osc.max_string_length``, malformed packet, timetag too far ahead)
is answered ``/riff/fail <address> <reason>``, logged, and changes nothing. Packets from
outside ``osc.allow`` are dropped without an answer and counted (``osc_dropped`` in status).

Hostile input. Everything received is data: values go through the parameter table, nothing is
evaluated. Sizes are bounded (packet, messages per packet, arguments, string length, address
length, wildcards in an address pattern: python-osc turns a pattern into a regular expression,
and many ``*`` or ``{}`` make it backtrack for seconds, so :data:`MAX_STARS` and
:data:`MAX_BRACES` bound them). Per-sender reply ports, subscribers and timed messages are
bounded too, so a flood cannot grow memory. File paths (``/riff/seed_image``) are confined to
their configured folder (:data:`PATH_PARAMS`, :mod:`riffengine.control.confine`). Refusals
are logged and answered at a bounded rate (:data:`LOG_RATE`, :data:`FAIL_RATE`) so a flood
cannot fill the journal or turn the server into an amplifier; ``osc_failed`` counts them all.

Timetags: bundles with a future timetag are applied at that time with ``loop.call_at``; the
python-osc dispatcher is built with ``strict_timing=False`` and only used to route addresses,
so nothing ever sleeps in the loop.

Thread rule: everything here runs on the asyncio loop's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import math
import numbers
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from riffengine import validation
from riffengine.config import OscSettings, PathsSettings
from riffengine.control import params
from riffengine.control.actions import Controls
from riffengine.control.confine import builtin_seed_names, confine
from riffengine.errors import UserError
from riffengine.events import Event, EventBus
from riffengine.state import State, as_pairs
from riffengine.store import StateStore, changed_keys

log = logging.getLogger(__name__)

Address = tuple[str, int]

MAX_PACKET = 32768
"""Bytes in one UDP packet; larger ones are refused."""
MAX_MESSAGES = 64
"""Messages in one packet (bundles included)."""
MAX_ARGS = 32
"""Arguments in one message."""
MAX_AHEAD = 60.0
"""Seconds a timetag may lie in the future."""
MAX_SCHEDULED = 256
"""Timed messages waiting at once."""
MAX_SUBSCRIBERS = 32
"""Destinations of ``/riff/notify``."""
MAX_ADDRESS = 256
"""Characters in an OSC address (pattern)."""
MAX_STARS = 2
"""``*`` wildcards in one address pattern."""
MAX_BRACES = 1
"""``{a,b}`` groups in one address pattern."""
MAX_ROUTES = 256
"""Senders whose reply port is remembered (the oldest is forgotten first)."""
LOG_RATE = (10.0, 20)
"""Refusals logged: per second, and in a burst; the rest are counted in the next log line."""
FAIL_RATE = (200.0, 400)
"""``/riff/fail`` answers sent: per second, and in a burst."""
PATH_PARAMS: dict[str, str] = {"seed_image": "seeds"}
"""Parameters whose value is a file path -> the ``paths`` setting of their folder."""
WRITTEN_CLIPS = 64
"""Clips whose spectrogram path is remembered, so a repeating clip is written once."""

STATUS = f"{params.PREFIX}/status"
NOTIFY = f"{params.PREFIX}/notify"
LEARN = f"{params.PREFIX}/learn"
PANIC = f"{params.PREFIX}/panic"
SCENE_SAVE = f"{params.PREFIX}/scene_save"
FAIL = f"{params.PREFIX}/fail"
NORM = "norm"
_CONTROL_HANDLERS = ("_on_value", "_on_whole", "_on_norm", "_on_panic", "_on_scene_save", "_on_unknown")
"""The handlers :meth:`OscServer.apply_message` may run."""


def build(address: str, *values: object) -> bytes:
    """One OSC message as bytes. ints are int32 (int64 beyond), floats float32, bools 0/1."""
    builder = OscMessageBuilder(address)
    for value in values:
        if isinstance(value, bool):
            builder.add_arg(int(value), OscMessageBuilder.ARG_TYPE_INT)
        elif isinstance(value, int):
            kind = OscMessageBuilder.ARG_TYPE_INT if -(2**31) <= value < 2**31 else OscMessageBuilder.ARG_TYPE_INT64
            builder.add_arg(value, kind)
        elif isinstance(value, float):
            builder.add_arg(value, OscMessageBuilder.ARG_TYPE_FLOAT)
        else:
            builder.add_arg("" if value is None else str(value), OscMessageBuilder.ARG_TYPE_STRING)
    return builder.build().dgram


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _RateLimit:
    """A token bucket: :meth:`allow` is True at most ``rate`` times a second (``burst`` at once)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.refused = 0

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.refused += 1
        return False


def check_address(address: str) -> None:
    """UserError for an address that is too long or a pattern too costly to match."""
    if len(address) > MAX_ADDRESS:
        raise UserError(f"an address of {len(address)} characters is too long; send at most {MAX_ADDRESS}")
    if address.count("*") > MAX_STARS or address.count("{") > MAX_BRACES:
        raise UserError(
            f"address pattern {_show(address)} is too complex; use at most "
            f"{MAX_STARS} '*' and {MAX_BRACES} '{{}}' group"
        )


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(allow: Sequence[str]) -> list[Network]:
    """The networks of an ``osc.allow`` list (checked by the config)."""
    return [ipaddress.ip_network(n) for n in allow]


def allowed_by(allow: Sequence[Network], host: str) -> bool:
    """True when the sender ``host`` (an IP address) is in one of the ``allow`` networks."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in allow if net.version == ip.version)


def _number(value: object) -> object:
    """An argument for a number: a float32 as its shortest decimal; anything else as sent, for
    the parameter's rule to check (:mod:`riffengine.validation`)."""
    return _short_float(value) if isinstance(value, float) else value


def _short_float(value: float) -> float:
    """The shortest decimal that is the same float32: an OSC ``f`` of 0.1 arrives as
    0.10000000149011612, and is kept as 0.1."""
    if not math.isfinite(value):
        return value
    single = struct.pack(">f", value) if abs(value) < 3.4e38 else None
    if single is None or struct.unpack(">f", single)[0] != value:
        return value  # a double ('d'): keep it as sent
    for digits in range(6, 10):
        short = float(f"{value:.{digits}g}")
        if struct.pack(">f", short) == single:
            return short
    return value


def _text_part(value: object, what: str) -> str:
    """One argument of a text parameter: a string, or a number written as Pure Data does."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{what}: {_show(value)} is not text; send strings")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return f"{value:g}"


KNOB: validation.Rule = validation.number(0.0, 1.0)
"""A knob position (``/norm``)."""
REPLY_PORT: validation.Rule = validation.whole(1, 65535)
"""A port to answer on (``/riff/status``, ``/riff/notify``)."""


def _checked(rule: validation.Rule, value: object, what: str) -> Any:
    """``value`` as ``rule`` makes it, or UserError naming ``what``, the value and the fix."""
    try:
        return validation.check(rule, value)
    except validation.Invalid as exc:
        raise UserError(f"{what}: {exc}") from None


def _flag(value: object, what: str) -> bool:
    try:
        return bool(validation.check(validation.FLAG, value))
    except validation.Invalid:
        raise UserError(f"{what}: {_show(value)} is not 1 or 0; send 1 to subscribe, 0 to stop") from None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: OscServer, kept: Sequence[tuple[bytes, Address]] = ()) -> None:
        self.server = server
        self.kept = kept

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # before the socket is read: the packets kept for us are older than anything in it
        self.server._transport = transport  # type: ignore[assignment]
        for data, sender in self.kept:
            self.server.receive(data, sender)
        self.kept = ()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server.receive(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("OSC socket error: %s", exc)


class OscServer:
    """The UDP OSC server on the loop; start with :meth:`start`, stop with :meth:`close`.

    ``figures()`` gives the engine figures of the status reply; ``learn(key)`` arms MIDI
    learn (raising UserError when there is no MIDI input); ``panic()`` crossfades to the safe
    loop (raising UserError when there is none; None: the engine offers no panic).
    """

    def __init__(
        self,
        settings: OscSettings,
        paths: PathsSettings,
        controls: Controls,
        store: StateStore,
        bus: EventBus,
        figures: Callable[[], Mapping[str, object]],
        learn: Callable[[str], None],
        loop: asyncio.AbstractEventLoop,
        panic: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.paths = paths
        self.controls = controls
        self.store = store
        self.bus = bus
        self.figures = figures
        self.learn = learn
        self.panic = panic
        self.loop = loop
        self.dropped = 0
        self.failed = 0
        self.subscribers: set[Address] = set()
        self._routes: dict[Address, Address] = {}  # insertion order: oldest first
        self._log_limit = _RateLimit(*LOG_RATE)
        self._fail_limit = _RateLimit(*FAIL_RATE)
        self._builtin_seeds: tuple[str, ...] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._networks = networks(settings.allow)
        self._transport: asyncio.DatagramTransport | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._learner: Address | None = None
        self._written: dict[object, str] = {}  # clip id -> its spectrogram PNG
        self.loop_url: Callable[[str], str] | None = None
        """clip id -> the URL of its image (set by the web server); sent with ``/riff/loop``."""
        # one writer thread: PNGs are written, and /riff/loop sent, in the order loops start
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="riff-png")
        self.dispatcher = self._build_dispatcher()

    # -- lifecycle --

    async def start(self, sock: socket.socket | None = None, kept: Sequence[tuple[bytes, Address]] = ()) -> OscServer:
        """Bind the UDP socket, or listen on ``sock`` (bound already: the audio host's); UserError
        if the address is taken or invalid. ``kept``: packets that came while nobody listened
        (the audio host kept them), applied first, as if they had just come."""
        try:
            if sock is not None:
                self._transport, _ = await self.loop.create_datagram_endpoint(lambda: _Protocol(self, kept), sock=sock)
            else:
                self._transport, _ = await self.loop.create_datagram_endpoint(
                    lambda: _Protocol(self, kept), local_addr=(self.settings.host, self.settings.port)
                )
        except OSError as exc:
            raise UserError(
                f"OSC: cannot listen on {self.settings.host}:{self.settings.port} "
                f"({exc.strerror or exc}); change osc.host or osc.port"
            ) from None
        for dest in self.settings.notify:
            host, _, port = dest.rpartition(":")
            self.subscribers.add((host.strip("[]"), int(port)))
        self._unsubscribe = [self.store.subscribe(self._on_state), self.bus.subscribe(self._on_event)]
        log.info("OSC listening on %s:%d", *self.address)
        return self

    def reconfigure(self, settings: OscSettings, paths: PathsSettings) -> None:
        """Take a reloaded config's allow list, string limit, notify list and folders (SIGHUP).

        ``osc.host``/``osc.port``/``osc.enabled`` need a restart: a change is logged, not applied.
        Validates everything first, so a bad value changes nothing.
        """
        allow = networks(settings.allow)
        notify = set()
        for dest in settings.notify:
            host, _, port = dest.rpartition(":")
            notify.add((host.strip("[]"), int(port)))
        if (settings.host, settings.port, settings.enabled) != (
            self.settings.host,
            self.settings.port,
            self.settings.enabled,
        ):
            log.warning("osc.host, osc.port and osc.enabled take effect at the next start")
        old_notify = {(d.rpartition(":")[0].strip("[]"), int(d.rpartition(":")[2])) for d in self.settings.notify}
        self.subscribers = (self.subscribers - old_notify) | notify
        self._networks = allow
        self.settings, self.paths = settings, paths

    @property
    def address(self) -> Address:
        """The bound host and port (the real port when ``osc.port`` is 0)."""
        assert self._transport is not None, "start() first"
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._writer.shutdown(wait=False, cancel_futures=True)

    # -- receiving --

    def receive(self, data: bytes, sender: Address) -> None:
        """One UDP packet from ``sender``: check, parse, apply now or schedule at its timetag."""
        if not allowed_by(self._networks, sender[0]):
            self.dropped += 1
            log.debug("OSC packet from %s:%d dropped: not in osc.allow", *sender)
            return
        if len(data) > MAX_PACKET:
            self.fail(sender, "", f"packet of {len(data)} bytes is too big; send at most {MAX_PACKET}")
            return
        try:
            messages = OscPacket(data).messages
        except Exception as exc:  # ParseError, and worse for hostile packets (deep nesting)
            self.fail(sender, "", f"malformed OSC packet ({type(exc).__name__}); send OSC 1.0 messages or bundles")
            return
        if len(messages) > MAX_MESSAGES:
            self.fail(sender, "", f"{len(messages)} messages in one packet are too many; send at most {MAX_MESSAGES}")
            return
        now = time.time()
        for timed in messages:
            ahead = timed.time - now
            if ahead <= 0:
                self._dispatch(timed.message, sender)
            elif ahead > MAX_AHEAD:
                self.fail(
                    sender,
                    timed.message.address,
                    f"timetag is {ahead:.0f} s ahead; schedule at most {MAX_AHEAD:.0f} s ahead",
                )
            elif len(self._timers) >= MAX_SCHEDULED:
                self.fail(
                    sender, timed.message.address, f"{MAX_SCHEDULED} timed messages are already waiting; send fewer"
                )
            else:
                self._schedule(ahead, timed.message, sender)

    def _schedule(self, ahead: float, message: OscMessage, sender: Address) -> None:
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            self._timers.discard(handle)  # type: ignore[arg-type]
            self._dispatch(message, sender)

        handle = self.loop.call_at(self.loop.time() + ahead, fire)
        self._timers.add(handle)

    def _check_message(self, message: OscMessage) -> None:
        """UserError for a message over the address, argument or string limits."""
        check_address(message.address)
        args = message.params
        if len(args) > MAX_ARGS:
            raise UserError(f"{len(args)} arguments are too many; send at most {MAX_ARGS}")
        limit = self.settings.max_string_length
        for arg in args:
            if isinstance(arg, (str, bytes)) and len(arg) > limit:
                raise UserError(
                    f"a string of {len(arg)} characters is longer than "
                    f"osc.max_string_length ({limit}); send a shorter one"
                )

    def _dispatch(self, message: OscMessage, sender: Address) -> None:
        address = message.address
        try:
            self._check_message(message)
            for handler in list(self.dispatcher.handlers_for_address(address)):
                handler.invoke(sender, message)
        except UserError as exc:
            self.fail(sender, address, str(exc))
        except Exception as exc:  # a bug must not take the server down
            log.exception("OSC handler failed on %s", address)
            self.fail(sender, address, f"internal error ({type(exc).__name__})")

    def apply_message(self, message: OscMessage, source: str) -> None:
        """Apply one message that came another way (an OSCQuery WebSocket) with the same checks
        and meaning as over UDP. Only controls are served this way (parameters, their slots and
        knob forms, scenes, panic): status, notify and learn answer over UDP. ``source`` names the
        sender in state changes. Raises UserError and changes nothing on a bad message."""
        self._check_message(message)
        handlers = list(self.dispatcher.handlers_for_address(message.address))
        for handler in handlers:
            if handler.callback.__name__ not in _CONTROL_HANDLERS:
                raise UserError(
                    f"{message.address} is answered over UDP only; send it to the "
                    f"OSC port (osc.port {self.settings.port})"
                )
        for handler in handlers:
            handler.invoke(source, message)  # type: ignore[arg-type]

    def _build_dispatcher(self) -> Dispatcher:
        """Route every address the parameter table defines, plus status, notify and learn."""
        d = Dispatcher(strict_timing=False)  # timetags are honoured in receive(), never by sleeping
        for p in params.PARAMS:
            knob = p.type != "str" and p.effect != "action"
            if p.slots:
                d.map(p.address, self._on_whole, p, needs_reply_address=True)
            targets = [(i, p.slot_address(i)) for i in range(p.slots)] if p.slots else [(None, p.address)]
            for slot, address in targets:
                d.map(address, self._on_value, (p, slot), needs_reply_address=True)
                if knob:
                    d.map(f"{address}/{NORM}", self._on_norm, (p, slot), needs_reply_address=True)
        d.map(STATUS, self._on_status, needs_reply_address=True)
        d.map(NOTIFY, self._on_notify, needs_reply_address=True)
        d.map(LEARN, self._on_learn, needs_reply_address=True)
        d.map(PANIC, self._on_panic, needs_reply_address=True)
        d.map(SCENE_SAVE, self._on_scene_save, needs_reply_address=True)
        d.set_default_handler(self._on_unknown, needs_reply_address=True)
        return d

    # -- handlers: (sender, address, [fixed], *args); they raise UserError --

    def _source(self, sender: Address | str) -> str:
        """The source named in state changes; a string is already one (see :meth:`apply_message`)."""
        return sender if isinstance(sender, str) else f"osc {sender[0]}:{sender[1]}"

    def _on_value(self, sender: Address, address: str, fixed: list, *args: object) -> None:
        p, slot = fixed[0]
        what = params.label(p, slot)
        if not args:
            raise UserError(f"{what}: no value; send {validation.allowed(p)}")
        if p.type in ("str", "enum"):
            value: object = " ".join(_text_part(a, what) for a in args)
        elif len(args) != 1:
            raise UserError(f"{what}: {len(args)} arguments; send one value, {validation.allowed(p)}")
        elif p.type == "bool":
            value = args[0]
        else:
            value = _number(args[0])
        if p.name in PATH_PARAMS:
            value = self.confine_path(p.name, str(value))
        key = p.name if slot is None else f"{p.name}/{slot}"
        self.controls.set([(key, value)], self._source(sender))

    def confine_path(self, name: str, value: str) -> str:
        """A path parameter's value confined to its folder (see :mod:`~riffengine.control.confine`)."""
        folder = getattr(self.paths, PATH_PARAMS[name])
        if self._builtin_seeds is None:
            self._builtin_seeds = builtin_seed_names()
        builtins = self._builtin_seeds if name == "seed_image" else ()
        return confine(value, folder, builtins, what=f"{name} (paths.{PATH_PARAMS[name]})")

    def _on_whole(self, sender: Address, address: str, fixed: list, *args: object) -> None:
        p = fixed[0]
        if not args or len(args) > p.slots:
            raise UserError(
                f"{p.name}: {len(args)} arguments; send 1 to {p.slots} values, one "
                f"per slot, or set one slot at {p.address}/<slot>"
            )
        values: list[object]
        if p.type == "str":
            values = [_text_part(a, p.name) for a in args]
        else:
            values = [_number(a) for a in args]
        current = self.store.state.values[p.name]
        whole = list(values) + list(current[len(values) :])  # type: ignore[index]
        self.controls.set([(p.name, whole)], self._source(sender))

    def _on_norm(self, sender: Address, address: str, fixed: list, *args: object) -> None:
        p, slot = fixed[0]
        what = f"{params.label(p, slot)}/{NORM}"
        if len(args) != 1:
            raise UserError(f"{what}: send one knob position from 0 to 1")
        x = _checked(KNOB, _number(args[0]), what)
        key = p.name if slot is None else f"{p.name}/{slot}"
        self.controls.set([(key, params.from_normalized(p.name, x))], self._source(sender))

    def _on_status(self, sender: Address, address: str, *args: object) -> None:
        if len(args) > 1:
            raise UserError("status: send no argument, or the port to answer on")
        if args:
            self._remember_route(sender, _checked(REPLY_PORT, args[0], "status: reply port"))
        self.send(self.route(sender), f"{STATUS}.reply", *self.status_args())

    def _on_notify(self, sender: Address, address: str, *args: object) -> None:
        if not 1 <= len(args) <= 2:
            raise UserError("notify: send 1 (subscribe) or 0 (stop), and optionally the port to send events to")
        on = _flag(args[0], "notify")
        if len(args) == 2:
            self._remember_route(sender, _checked(REPLY_PORT, args[1], "notify: reply port"))
        dest = self.route(sender)
        if on and dest not in self.subscribers and len(self.subscribers) >= MAX_SUBSCRIBERS:
            raise UserError(f"notify: {MAX_SUBSCRIBERS} subscribers already; unsubscribe one first")
        if on:
            self.subscribers.add(dest)
        else:
            self.subscribers.discard(dest)
        self.send(dest, f"{NOTIFY}.reply", int(on))

    def _on_learn(self, sender: Address, address: str, *args: object) -> None:
        if len(args) != 1 or not isinstance(args[0], str):
            raise UserError("learn: send the parameter to learn, e.g. /riff/learn alpha")
        self.learn(args[0])
        self._learner = self.route(sender)

    def _on_panic(self, sender: Address, address: str, *args: object) -> None:
        if len(args) > 1:
            raise UserError("panic: send no argument, or 1 (0 is a button's release and does nothing)")
        if args and not _flag(args[0], "panic"):
            return
        if self.panic is None:
            raise UserError("panic: this engine has no safe loop to fall back to")
        self.panic()

    def _on_scene_save(self, sender: Address | str, address: str, *args: object) -> None:
        if len(args) > 1 or (args and not isinstance(args[0], str)):
            raise UserError(
                'scene_save: send no argument (the next number) or one name, e.g. /riff/scene_save "chorus"'
            )
        name, number = self.controls.save_scene(str(args[0]) if args else None)
        self.bus.publish("scene_saved", name=name, number=number, source=self._source(sender))
        if not isinstance(sender, str):
            self.send(self.route(sender), f"{SCENE_SAVE}.reply", name, number)

    def _on_unknown(self, sender: Address, address: str, *args: object) -> None:
        raise UserError(unknown_reason(address))

    # -- sending --

    def _remember_route(self, sender: Address, port: int) -> None:
        """Answer ``sender`` on ``port`` from now on; at most :data:`MAX_ROUTES` are kept."""
        self._routes.pop(sender, None)
        self._routes[sender] = (sender[0], port)
        while len(self._routes) > MAX_ROUTES:
            self._routes.pop(next(iter(self._routes)))

    def route(self, sender: Address) -> Address:
        """Where answers for ``sender`` go: the port it named, else where it sent from."""
        return self._routes.get(sender, sender)

    def send(self, dest: Address, address: str, *values: object) -> None:
        if self._transport is None:
            return
        try:
            self._transport.sendto(build(address, *values), dest)
        except (OSError, ValueError) as exc:
            log.debug("OSC send to %s:%d failed: %s", dest[0], dest[1], exc)

    def notify(self, address: str, *values: object) -> None:
        """Send one message to every subscriber."""
        if not self.subscribers:
            return
        data = build(address, *values)
        for dest in list(self.subscribers):
            if self._transport is not None:
                self._transport.sendto(data, dest)

    def fail(self, sender: Address, address: str, reason: str) -> None:
        """Answer a bad message with ``/riff/fail address reason``, log and count it."""
        self.failed += 1
        if self._log_limit.allow():
            unlogged, self._log_limit.refused = self._log_limit.refused, 0
            more = f" ({unlogged} more refused, not logged)" if unlogged else ""
            log.warning(
                "OSC %s from %s:%d refused: %s%s",
                _show(address) if address else "packet",
                sender[0],
                sender[1],
                reason,
                more,
            )
        if self._fail_limit.allow():
            self.send(self.route(sender), FAIL, address[:MAX_ADDRESS], reason)

    def status_args(self) -> list[object]:
        """``name, value, ...`` for every parameter, then every engine figure."""
        out: list[object] = []
        keys = set()
        for key, value in as_pairs(self.store.state):
            out += [key, value]
            keys.add(key)
        try:
            figures = dict(self.figures())
        except Exception:
            log.exception("engine figures failed")
            figures = {}
        for name, value in figures.items():
            if value is None:
                continue
            name = f"engine.{name}" if name in keys else str(name)
            if not isinstance(value, (bool, int, float, str)):
                value = str(value)
            out += [name, value]
        return out

    # -- pushing events --

    def _on_state(self, old: State, new: State, source: str) -> None:
        for key, value in changed_keys(old, new):
            self.notify(f"{params.PREFIX}/state", key, value, source)

    def _on_event(self, event: Event) -> None:
        data = event.data
        if event.kind == "beat":
            # the beat within the bar, counted from 1; an engine may also give only ``beat``
            beat = data["beat_in_bar"] + 1 if "beat_in_bar" in data else data.get("beat", 0)
            self.notify(f"{params.PREFIX}/beat", int(data.get("bar", 0)), int(beat))
        elif event.kind == "loop_started":
            self._loop_started(data)
        elif event.kind in ("render_failed", "fail"):
            address = str(data.get("address", f"{params.PREFIX}/render"))
            reason = data.get("error") or data.get("reason") or data.get("message") or event.kind
            self.notify(FAIL, address, str(reason))
        elif event.kind == "learned":
            args = (data["key"], data["cc"], data["channel"])
            self.notify(f"{params.PREFIX}/learned", *args)
            if self._learner is not None and self._learner not in self.subscribers:
                self.send(self._learner, f"{params.PREFIX}/learned", *args)
            self._learner = None

    def _loop_started(self, data: Mapping[str, Any]) -> None:
        """``/riff/loop index bar path``. A PIL image is written to ``paths.spectrograms`` first,
        once per clip (a clip that repeats keeps its first file). Every loop goes through the
        one writer thread, so the messages leave in the order the loops started."""
        if not self.subscribers:
            return
        index, bar, image = int(data.get("index", 0)), int(data.get("bar", 0)), data.get("image")
        clip = data.get("clip_id")
        write = None
        if image is None or isinstance(image, (str, os.PathLike)):
            path = os.fspath(image) if image else ""
        elif clip is not None and clip in self._written:
            path = self._written[clip]
        else:
            path = os.path.join(self.paths.spectrograms, f"loop-{index:06d}.png")
            write = image
            if clip is not None:
                self._written[clip] = path
                while len(self._written) > WRITTEN_CLIPS:
                    self._written.pop(next(iter(self._written)))
        future = self.loop.run_in_executor(self._writer, _write_png, write, path)

        def done(f: asyncio.Future) -> None:
            if f.cancelled():
                return
            if f.exception() is not None:
                log.error("cannot write spectrogram %s: %s", path, f.exception())
                self._written.pop(clip, None)
                self.notify(FAIL, f"{params.PREFIX}/loop", f"cannot write {path}: {f.exception()}")
            elif self.loop_url is not None and clip is not None:
                self.notify(f"{params.PREFIX}/loop", index, bar, path, self.loop_url(str(clip)))
            else:
                self.notify(f"{params.PREFIX}/loop", index, bar, path)
            if "alpha" in data:  # what the loop is, for a log of the walk
                self.notify(
                    f"{params.PREFIX}/walk",
                    index,
                    float(data["alpha"]),
                    int(data["seed_a"]),
                    int(data["seed_b"]),
                    str(data["prompts"]),
                    int(data.get("step", 0)),
                    str(data.get("glide", "")),
                )

        future.add_done_callback(done)


def _write_png(image: Any, path: str) -> None:
    """Write a spectrogram image (with its EXIF) as PNG, or nothing for ``None``; runs on the
    writer thread."""
    if image is None:
        return
    from riffengine.spectrogram.image import save_image

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    save_image(image, path)


def unknown_reason(address: str) -> str:
    """Why an address is not served, naming the fix."""
    if address.endswith(f"/{NORM}"):
        try:
            p, slot = params.lookup_address(address[: -len(NORM) - 1])
        except UserError:
            pass
        else:
            if p.slots and slot is None:
                return f"{p.name}: a knob sets one slot; use {p.address}/<slot>/{NORM}"
            kind = "an action" if p.effect == "action" else p.type
            return f"{p.name} is {kind}; only numbers and choices have a /{NORM} form"
    try:
        params.lookup_address(address)
    except UserError as exc:
        return str(exc)
    return f"unknown address {address}; see docs/control.md"
