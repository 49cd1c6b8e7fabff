"""The systemd notify protocol against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from riffengine.sdnotify import Notifier, socket_address, watchdog_pings, watchdog_seconds


@pytest.fixture
def systemd(tmp_path):
    """A bound datagram socket, as systemd's notify socket; yields (socket, NOTIFY_SOCKET)."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5.0)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def test_exact_datagrams(systemd):
    sock, path = systemd
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("playing at 44100 Hz")
    assert received(sock) == b"READY=1\nSTATUS=playing at 44100 Hz"
    assert notifier.status("render 850 ms\nbar 12")  # kept on one line
    assert received(sock) == b"STATUS=render 850 ms bar 12"
    assert notifier.watchdog()
    assert received(sock) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert received(sock) == b"STOPPING=1"
    assert notifier.reloading("reloading config")
    fields = received(sock).split(b"\n")
    assert fields[0] == b"RELOADING=1"
    assert fields[1].startswith(b"MONOTONIC_USEC=") and fields[1][15:].isdigit()
    assert fields[2] == b"STATUS=reloading config"
    assert notifier.sent == 5
    notifier.close()


def test_abstract_namespace_socket():
    name = f"riffengine-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5.0)
    try:
        assert socket_address("@" + name) == b"\0" + name.encode()
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert received(sock) == b"READY=1"
        notifier.close()
    finally:
        sock.close()


def test_no_systemd_is_a_no_op():
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.watchdog() and not notifier.stopping()
    assert notifier.sent == 0 and notifier.watchdog_interval is None


def test_a_gone_socket_is_not_an_error(tmp_path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert notifier.enabled
    assert notifier.ready() is False  # logged, not raised
    notifier.close()


def test_watchdog_interval_from_the_environment():
    pid = os.getpid()
    assert watchdog_seconds({"WATCHDOG_USEC": "20000000"}) == 20.0
    assert watchdog_seconds({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(pid)}) == 20.0
    assert watchdog_seconds({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(pid + 1)}) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_seconds({}) is None
    notifier = Notifier({"NOTIFY_SOCKET": "/nowhere", "WATCHDOG_USEC": "3000000"})
    assert notifier.watchdog_interval == 1.5


def test_watchdog_pings_come_from_the_loop_while_it_turns(systemd):
    sock, path = systemd
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"})  # ping every 20 ms

    async def main():
        task = asyncio.ensure_future(watchdog_pings(notifier))
        while notifier.sent < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    pings = [received(sock) for _ in range(3)]
    assert pings == [b"WATCHDOG=1"] * 3
    notifier.close()


def test_watchdog_pings_return_at_once_without_a_watchdog():
    asyncio.run(asyncio.wait_for(watchdog_pings(Notifier({"NOTIFY_SOCKET": "/x"})), 5))
    asyncio.run(asyncio.wait_for(watchdog_pings(Notifier({})), 5))
