"""The host's OSC stand-in: live controls played, the rest kept for the next engine, in order.

Over a real UDP socket (the one the host would hand its engines), with the stand-in's own thread.
"""

from __future__ import annotations

import socket

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from surface_fixtures import wait_until

from riffengine.config import OscSettings
from riffengine.control import params
from riffengine.errors import UserError
from riffengine.host import standin


def packet(address: str, *values: object) -> bytes:
    builder = OscMessageBuilder(address)
    for value in values:
        builder.add_arg(value)
    return builder.build().dgram


class Recorded:
    """The host's side: what the stand-in played."""

    def __init__(self) -> None:
        self.live: list[tuple[str, object]] = []
        self.panics = 0

    def set_live(self, name: str, value: object) -> None:
        self.live.append((name, value))

    def panic(self) -> None:
        self.panics += 1


@pytest.fixture
def running():
    settings = OscSettings(host="127.0.0.1", port=0)
    host = Recorded()
    stand_in = standin.StandIn(standin.open_socket(settings), settings, host.set_live, host.panic).start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    port = stand_in.sock.getsockname()[1]
    try:
        yield stand_in, host, lambda data: sender.sendto(data, ("127.0.0.1", port)), sender.getsockname()
    finally:
        sender.close()
        stand_in.close()


# --- pure parts ----------------------------------------------------------------------------------


def test_the_live_addresses_are_gain_and_mute_and_their_knob_forms():
    assert standin.live_target("/riff/gain") == ("gain", False)
    assert standin.live_target("/riff/mute/norm") == ("mute", True)
    for other in ("/riff/alpha", "/riff/gain/0", "/riff/gainx", "/other/gain", "/riff/*"):
        assert standin.live_target(other) is None


def test_live_values_follow_the_table_rules():
    assert standin.live_value("gain", False, [-6]) == -6.0
    assert standin.live_value("mute", False, [1]) is True
    assert standin.live_value("gain", True, [0.5]) == params.from_normalized("gain", 0.5)
    for bad in ([99.0], ["loud"], [], [1.0, 2.0]):
        with pytest.raises(UserError):
            standin.live_value("gain", False, bad)


def test_a_panic_is_wanted_unless_it_is_a_release():
    assert standin.wants_panic([]) and standin.wants_panic([1]) and standin.wants_panic([1.0])
    assert not standin.wants_panic([0]) and not standin.wants_panic(["x"]) and not standin.wants_panic([1, 1])


def test_kept_packets_travel_as_text_and_come_back_the_same():
    kept = [(packet("/riff/alpha", 0.5), ("127.0.0.1", 9000)), (b"\x00\xff#", ("::1", 1))]
    assert standin.decode_packets(standin.encode_packets(kept)) == kept
    for bad in ("x", [["AAAA", "h"]], [[1, "h", 2]], [["not base64!", "h", 1]]):
        with pytest.raises(ValueError):
            standin.decode_packets(bad)


def test_the_kept_packets_are_bounded_oldest_dropped_first_but_a_panic_last():
    host = Recorded()
    stand_in = standin.StandIn(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), OscSettings(), print, host.panic)
    try:
        stand_in.take(packet("/riff/panic"), ("127.0.0.1", 999))
        for port in range(standin.KEEP + 10):  # one fader each from many senders
            stand_in.take(packet("/riff/alpha", 0.5), ("127.0.0.1", 1000 + port))
        kept, figures = stand_in.hand_over()
    finally:
        stand_in.close()
    assert len(kept) == standin.KEEP and figures.dropped == 11 and host.panics == 1
    assert OscMessage(kept[0][0]).address == "/riff/panic"  # the host plays it until an engine takes it
    assert kept[1][1] == ("127.0.0.1", 1011) and kept[-1][1] == ("127.0.0.1", 1000 + standin.KEEP + 9)


# --- over a socket --------------------------------------------------------------------------------


def test_gain_mute_and_panic_are_played_and_everything_is_kept_latest_per_address(running):
    stand_in, host, send, me = running
    send(packet("/riff/gain", -12.0))
    send(packet("/riff/alpha", 0.2))
    send(packet("/riff/prompt_a/0", "while away"))
    send(packet("/riff/alpha", 0.3))  # the fader moved on: only its last position is kept
    send(packet("/riff/mute/norm", 0.9))
    send(packet("/riff/gain", 99.0))  # out of range: not played, kept (the engine answers it)
    send(b"garbage, not OSC")
    send(packet("/riff/panic"))
    wait_until(lambda: host.panics == 1, what="the panic played")
    kept, figures = stand_in.hand_over()
    assert host.live == [("gain", -12.0), ("mute", True)]
    assert [OscMessage(data).address for data, _ in kept] == [
        "/riff/prompt_a/0",
        "/riff/alpha",
        "/riff/mute/norm",
        "/riff/gain",
        "/riff/panic",
    ]
    assert OscMessage(kept[1][0]).params == [pytest.approx(0.3)] and OscMessage(kept[3][0]).params == [99.0]
    assert all(sender == me for _, sender in kept)
    assert figures.applied == 3 and figures.dropped == 1 and figures.kept == 7


def test_after_a_hand_over_the_socket_is_the_engines_until_resumed(running):
    stand_in, host, send, _ = running
    stand_in.hand_over()
    assert not stand_in.listening
    send(packet("/riff/gain", -3.0))
    stand_in.sock.settimeout(5)
    data, _ = stand_in.sock.recvfrom(4096)  # left in the socket, for the engine to read
    assert OscMessage(data).params == [-3.0] and host.live == []
    stand_in.resume()
    send(packet("/riff/mute", 1))
    wait_until(lambda: host.live == [("mute", True)], what="the mute played after the resume")
    kept, _ = stand_in.hand_over()
    assert [OscMessage(data).address for data, _ in kept] == ["/riff/mute"]


def test_a_bundle_is_played_and_kept_whole(running):
    stand_in, host, send, _ = running
    bundle = OscBundleBuilder(IMMEDIATELY)
    bundle.add_content(OscMessageBuilder("/riff/gain").build())  # no value: refused, kept
    for address, value in (("/riff/gain", -6.0), ("/riff/alpha", 0.1)):
        builder = OscMessageBuilder(address)
        builder.add_arg(value)
        bundle.add_content(builder.build())
    data = bundle.build().dgram
    send(data)
    send(data)
    wait_until(lambda: len(host.live) == 2, what="both bundles played")
    kept, _ = stand_in.hand_over()
    assert host.live == [("gain", -6.0), ("gain", -6.0)]
    assert [k[0] for k in kept] == [data, data]  # bundles are not merged


def test_senders_outside_the_allow_list_are_dropped():
    settings = OscSettings(host="127.0.0.1", port=0, allow=("10.0.0.0/8",))
    host = Recorded()
    stand_in = standin.StandIn(standin.open_socket(settings), settings, host.set_live, host.panic).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(packet("/riff/gain", -6.0), stand_in.sock.getsockname())
        wait_until(lambda: stand_in.figures.dropped == 1, what="the packet dropped")
        kept, _ = stand_in.hand_over()
    finally:
        stand_in.close()
    assert kept == [] and host.live == []


def test_a_taken_port_is_a_clear_error():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"OSC: cannot listen on 127.0.0.1:{port}.*change osc.host or osc.port"):
            standin.open_socket(OscSettings(host="127.0.0.1", port=port))


def test_the_most_that_can_be_kept_fits_in_one_control_message():
    from riffengine.host import channel

    big = packet("/riff/prompt_a/0", "x" * (standin.KEEP_BYTES // standin.KEEP - 40))
    kept = [(big, ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535))] * standin.KEEP
    assert sum(len(data) for data, _ in kept) <= standin.KEEP_BYTES
    assert len(channel.encode("osc_kept", packets=standin.encode_packets(kept))) <= channel.MAX_DATAGRAM
