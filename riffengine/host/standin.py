"""OSC while no engine listens: the host holds the OSC port and plays the live controls itself.

The host binds the OSC socket (``osc.host``, ``osc.port``) once and hands it to every engine it
starts (an inherited file descriptor, ``--osc-fd``), so the port stays open while an engine
dies, restarts or warms up: what is sent meanwhile waits in the socket, or is read here.

While no engine listens, :class:`StandIn`'s thread reads the socket:

- the controls the host plays (:data:`LIVE`: ``/riff/gain``, ``/riff/mute`` and their
  ``/norm`` forms) are checked by the parameter table's rules and applied at once; so is
  ``/riff/panic`` (the host crossfades to the bank's safe loop);
- every packet from an allowed sender, those too, is kept for the next engine: the latest per
  address and sender (a fader sends many; the last is what the performer set), bundles whole,
  at most :data:`KEEP` packets and :data:`KEEP_BYTES` bytes, the oldest dropped first (a
  ``/riff/panic`` last of all).

An engine that starts listening asks for them (``osc_take``, :mod:`riffengine.host.channel`):
from then on the host reads nothing, and hands the kept packets over in the order they came
(``osc_kept``); the engine applies them through its own OSC server (every check, every
``/riff/fail`` answer, timetags) before it reads any newer packet. When that engine goes, the
host reads again.

Packets from outside ``osc.allow``, too big or malformed are dropped and counted: nobody
answers them while no engine runs. Address patterns (``/riff/*``) are kept for the engine, not
matched here.

Threads: one reading thread of its own. :meth:`StandIn.hand_over` and :meth:`StandIn.resume`
are called from the host's other threads; a lock orders them with the reading, so that no
packet is read between a hand-over and the next resume.
"""

from __future__ import annotations

import base64
import logging
import select
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pythonosc.osc_message import OscMessage
from pythonosc.osc_packet import OscPacket

from riffengine import validation
from riffengine.config import OscSettings
from riffengine.control import params
from riffengine.control.osc import MAX_MESSAGES, MAX_PACKET, PANIC, allowed_by, networks
from riffengine.errors import UserError

log = logging.getLogger(__name__)

LIVE = ("gain", "mute")
"""The parameters the host itself plays (after the ring): set at once, engine or not."""
KEEP = 256
"""Packets kept for the next engine, at most."""
KEEP_BYTES = 32_000
"""Bytes kept for the next engine, at most: they travel in one control message, as base64 with
their senders, well under :data:`~riffengine.host.channel.MAX_DATAGRAM`."""
POLL_SECONDS = 0.2

Address = tuple[str, int]
Kept = tuple[bytes, Address]


def open_socket(settings: OscSettings) -> socket.socket:
    """The OSC socket, bound to ``osc.host``:``osc.port``; UserError when it cannot be."""
    try:
        info = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(info[0], socket.SOCK_DGRAM)
    except OSError as exc:
        raise UserError(f"OSC: cannot listen on {settings.host}:{settings.port} ({exc}); change osc.host") from None
    try:
        sock.bind(info[4])
    except OSError as exc:
        sock.close()
        raise UserError(
            f"OSC: cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc}); "
            "change osc.host or osc.port"
        ) from None
    return sock


def live_target(address: str) -> tuple[str, bool] | None:
    """``(name, knob form)`` when ``address`` sets a :data:`LIVE` parameter, else None."""
    head = params.PREFIX + "/"
    if not address.startswith(head):
        return None
    name, _, rest = address[len(head) :].partition("/")
    if name not in LIVE or rest not in ("", "norm"):
        return None
    return name, rest == "norm"


def live_value(name: str, norm: bool, args: Sequence[object]) -> object:
    """The value a live message sets, by the table's rules; UserError for a bad one."""
    if len(args) != 1:
        raise UserError(f"{name}: send one value")
    if norm:
        position = validation.check(validation.number(0.0, 1.0), args[0])
        return params.from_normalized(name, float(position))
    return validation.validate(name, args[0])


def wants_panic(args: Sequence[object]) -> bool:
    """``/riff/panic``, ``/riff/panic 1``: yes; ``/riff/panic 0`` (a release) or a bad one: no."""
    if not args:
        return True
    if len(args) > 1:
        return False
    try:
        return bool(validation.check(validation.FLAG, args[0]))
    except validation.Invalid:
        return False


def encode_packets(kept: Sequence[Kept]) -> list[list[object]]:
    """Kept packets as the ``osc_kept`` message carries them."""
    return [[base64.b64encode(data).decode("ascii"), host, port] for data, (host, port) in kept]


def decode_packets(items: object) -> list[Kept]:
    """The packets of an ``osc_kept`` message; ValueError for a malformed one."""
    if not isinstance(items, list):
        raise ValueError("osc_kept: packets is not a list")
    out: list[Kept] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)):
            raise ValueError(f"osc_kept: {str(item)[:60]} is not [data, host, port]")
        out.append((base64.b64decode(item[0], validate=True), (str(item[1]), int(item[2]))))
    return out


@dataclass
class StandInFigures:
    """What the stand-in did since the last hand-over."""

    applied: int = 0
    """Live controls (gain, mute, panic) it played."""
    kept: int = 0
    """Packets it kept for the engine (before coalescing: the latest per address counts once)."""
    dropped: int = 0
    """Packets refused: outside ``osc.allow``, too big, malformed, or over the bounds."""


class StandIn:
    """Reads the OSC socket while no engine does (see the module).

    ``live(name, value)`` plays a checked :data:`LIVE` value; ``panic()`` crossfades to the
    safe loop. Both run on the stand-in's thread and must not block.
    """

    def __init__(
        self,
        sock: socket.socket,
        settings: OscSettings,
        live: Callable[[str, object], None],
        panic: Callable[[], None],
    ) -> None:
        self.sock = sock
        self._networks = networks(settings.allow)
        self._live = live
        self._panic = panic
        self._lock = threading.Lock()
        self._free = threading.Event()  # set while no engine listens
        self._free.set()
        self._stop = threading.Event()
        self._kept: OrderedDict[tuple[object, ...], Kept] = OrderedDict()
        self._kept_bytes = 0
        self._bundles = 0
        self.figures = StandInFigures()
        self._thread = threading.Thread(target=self._run, name="riffengine-host-osc", daemon=True)

    def start(self) -> StandIn:
        self._thread.start()
        return self

    @property
    def listening(self) -> bool:
        """True while the stand-in reads the socket (no engine does)."""
        return self._free.is_set()

    # --- the reading thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._free.wait(POLL_SECONDS):
                continue
            try:
                ready, _, _ = select.select([self.sock], [], [], POLL_SECONDS)
            except (OSError, ValueError):  # closed
                return
            if not ready:
                continue
            with self._lock:
                if not self._free.is_set():
                    continue  # an engine took over while we waited: the packet is its
                try:
                    data, sender = self.sock.recvfrom(MAX_PACKET + 1, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                try:
                    self.take(data, (sender[0], sender[1]))
                except Exception:  # noqa: BLE001 - a bug must not end the stand-in
                    log.exception("audio host: an OSC packet from %s:%d could not be handled", *sender[:2])

    def take(self, data: bytes, sender: Address) -> None:
        """One packet while no engine listens: play its live controls, keep it for the engine."""
        if not allowed_by(self._networks, sender[0]) or len(data) > MAX_PACKET:
            self.figures.dropped += 1
            return
        try:
            messages = [timed.message for timed in OscPacket(data).messages]
        except Exception:  # noqa: BLE001 - ParseError, and worse for hostile packets
            self.figures.dropped += 1
            return
        if len(messages) > MAX_MESSAGES:
            self.figures.dropped += 1
            return
        for message in messages:
            self._play(message)
        self._keep(data, sender, messages)

    def _play(self, message: OscMessage) -> None:
        address = message.address
        if address == PANIC:
            if wants_panic(message.params):
                self.figures.applied += 1
                self._panic()
            return
        target = live_target(address)
        if target is None:
            return
        try:
            value = live_value(*target, message.params)
        except (UserError, validation.Invalid):
            return  # the engine answers /riff/fail when it replays the packet
        self.figures.applied += 1
        self._live(target[0], value)

    def _keep(self, data: bytes, sender: Address, messages: list[OscMessage]) -> None:
        if data.startswith(b"#bundle"):
            self._bundles += 1
            key: tuple[object, ...] = ("#bundle", sender, self._bundles)  # a bundle is kept whole, in order
        else:
            key = (messages[0].address, sender)
        old = self._kept.pop(key, None)
        if old is not None:
            self._kept_bytes -= len(old[0])
        self._kept[key] = (data, sender)
        self._kept_bytes += len(data)
        self.figures.kept += 1
        while len(self._kept) > KEEP or self._kept_bytes > KEEP_BYTES:
            # the oldest goes, but a panic stays while it can: the host plays it until the
            # next engine's own panic (this packet) takes over
            oldest = next((k for k in self._kept if k[0] != PANIC), next(iter(self._kept)))
            dropped, _ = self._kept.pop(oldest)
            self._kept_bytes -= len(dropped)
            self.figures.dropped += 1

    # --- the host's other threads ------------------------------------------------------------------

    def hand_over(self) -> tuple[list[Kept], StandInFigures]:
        """An engine listens now: stop reading; the kept packets, oldest first, and the figures."""
        with self._lock:
            self._free.clear()
            kept = list(self._kept.values())
            figures, self.figures = self.figures, StandInFigures()
            self._kept.clear()
            self._kept_bytes = 0
        return kept, figures

    def resume(self) -> None:
        """The engine that listened is gone: read again."""
        self._free.set()

    def close(self) -> None:
        """End the thread and close the host's copy of the socket."""
        self._stop.set()
        self._free.set()
        if self._thread.is_alive():
            self._thread.join(2 * POLL_SECONDS + 1.0)
        self.sock.close()
