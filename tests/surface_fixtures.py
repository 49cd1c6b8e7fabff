"""Helpers for control-surface tests: the surfaces on a real asyncio loop, and an OSC client.

:class:`RunningSurfaces` runs :func:`riffengine.control.surfaces.start_surfaces` with a real
StateStore and EventBus on a loop in a background thread, so tests talk to it over real UDP
from the test's thread. :class:`OscClient` is a plain UDP socket on 127.0.0.1. Waiting is
always "poll until true or time out", never a sleep that asserts speed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from riffengine.config import Settings
from riffengine.control.surfaces import Surfaces, start_surfaces
from riffengine.events import EventBus
from riffengine.state import initial_state
from riffengine.store import StateStore

TIMEOUT = 10.0


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT, what: str = "condition"):
    """Poll ``predicate`` until it returns something true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class RunningSurfaces:
    """The control surfaces on their own loop thread, with a real store and bus."""

    def __init__(self, settings: Settings, figures: Callable[[], dict] | None = None, learn: str | None = None) -> None:
        self.settings = settings
        self.store = StateStore(initial_state(settings))
        self.bus = EventBus()
        self.changes: list[tuple[str, object, str]] = []
        self.events: list = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.figures = figures or (lambda: {"bar": 7, "render_ms": 850.0, "underruns": 0})
        self.learn = learn
        self.surfaces: Surfaces | None = None

    def __enter__(self) -> RunningSurfaces:
        self.thread.start()
        self.store.subscribe(self._record)
        self.bus.subscribe(self.events.append)
        self.surfaces = self.call_async(
            start_surfaces(self.settings, self.store, self.bus, self.figures, self.loop, self.learn)
        )
        return self

    def __exit__(self, *exc) -> None:
        if self.surfaces is not None:
            self.call_async(self.surfaces.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()

    def _record(self, old, new, source) -> None:
        from riffengine.store import changed_keys

        self.changes.extend((k, v, source) for k, v in changed_keys(old, new))

    def call_async(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def call(self, fn: Callable, *args, **kwargs):
        """Run ``fn`` on the loop thread and return its result."""

        async def run():
            return fn(*args, **kwargs)

        return self.call_async(run())

    @property
    def values(self):
        return self.store.state.values

    @property
    def osc_port(self) -> int:
        assert self.surfaces is not None and self.surfaces.osc is not None
        return self.surfaces.osc.address[1]


class OscClient:
    """A UDP socket on 127.0.0.1 that sends OSC to the engine and collects what comes back."""

    def __init__(self, port: int) -> None:
        self.server = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.received: list[OscMessage] = []

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, address: str, *args) -> None:
        """Send with python-osc's own typing: str s, int i (h beyond 32 bits), float f,
        bool T/F, bytes b."""
        builder = OscMessageBuilder(address)
        for arg in args:
            builder.add_arg(arg)
        self.sock.sendto(builder.build().dgram, self.server)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def _drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except (TimeoutError, BlockingIOError):
                return
            self.received.append(OscMessage(data))

    def wait_for(
        self, address: str, predicate: Callable[[OscMessage], bool] = lambda m: True, timeout: float = TIMEOUT
    ) -> OscMessage:
        """The first message received at ``address`` matching ``predicate``; consumed."""

        def find():
            self._drain()
            for i, msg in enumerate(self.received):
                if msg.address == address and predicate(msg):
                    return self.received.pop(i)
            return None

        return wait_until(find, timeout, f"{address} reply")

    def request(self, address: str, *args, reply: str) -> OscMessage:
        self.send(address, *args)
        return self.wait_for(reply)

    def status(self) -> dict[str, object]:
        """``/riff/status`` as a dict of name -> value."""
        msg = self.request("/riff/status", reply="/riff/status.reply")
        args = msg.params
        return dict(zip(args[::2], args[1::2]))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> OscClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
