"""The systemd notify protocol, written to ``$NOTIFY_SOCKET`` directly.

Under a ``Type=notify`` unit systemd passes ``NOTIFY_SOCKET``: an AF_UNIX datagram socket (a
path, or an abstract name when it starts with ``@``). Each message is one datagram of
``KEY=VALUE`` lines. With ``WatchdogSec=`` set, systemd also passes ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``) and restarts the service when no ``WATCHDOG=1`` arrives in time.

Outside systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op that returns False. A
failed send is logged at debug level and never raised: the audio must not stop because the
service manager went away.

Thread rule: a :class:`Notifier` may be used from any thread (one ``sendto`` per message),
but send ``WATCHDOG=1`` from the asyncio loop (:func:`watchdog_pings`), so that a stalled loop
stops the pings and gets the service restarted. Never call it from the audio callback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def socket_address(value: str) -> str | bytes:
    """The ``sendto`` address of a ``NOTIFY_SOCKET`` value: ``@name`` is abstract (NUL first)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_seconds(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog timeout systemd asked for, in seconds, or None when there is none.

    ``WATCHDOG_PID``, when set, must be this process (``pid``, default ``os.getpid()``).
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000


class Notifier:
    """Sends notify messages to the socket named by ``NOTIFY_SOCKET`` in ``env``."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        value = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = socket_address(value) if value else None
        self.watchdog_timeout = watchdog_seconds(env)
        self.sent = 0
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """How often to send ``WATCHDOG=1``: half the timeout (systemd's advice), or None."""
        return None if self.watchdog_timeout is None else self.watchdog_timeout / 2

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram; True if it was sent."""
        if self.address is None:
            return False
        data = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self.address)
        except OSError as exc:
            log.debug("systemd notify %r failed: %s", fields[0] if fields else "", exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up (or a reload) is complete; the service is serving."""
        return self.send("READY=1", *(_status(status) if status else ()))

    def status(self, text: str) -> bool:
        """``STATUS=...``: one line shown by ``systemctl status``."""
        return self.send(*_status(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the keep-alive ping."""
        return self.send("WATCHDOG=1")

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC``: a reload began; send :meth:`ready` after."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *(_status(status) if status else ()))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: the service is shutting down."""
        return self.send("STOPPING=1", *(_status(status) if status else ()))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> tuple[str]:
    return ("STATUS=" + " ".join(str(text).split()),)  # one line, as systemd shows it


async def watchdog_pings(notifier: Notifier, interval: float | None = None) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` seconds (default: the notifier's) until cancelled.

    Run it as a task on the engine's loop: it only pings while the loop turns. Returns at once
    when there is no watchdog.
    """
    interval = notifier.watchdog_interval if interval is None else interval
    if not notifier.enabled or interval is None:
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)
