"""Transport sync: play/stop follows a reference's start/stop (a second Link peer) and drives it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from riffengine.state import initial_state
from riffengine.store import StateStore
from riffengine.transport import TransportSync, followed


def test_followed_only_reacts_to_a_change_of_the_references_transport():
    assert followed(None, False) is None  # the first reading is the baseline
    assert followed(False, True) == "play" and followed(True, False) == "stop"
    assert followed(True, True) is None and followed(True, None) is None


@dataclass
class Reading:
    playing: bool | None


class FakeSync:
    source = "link"

    def __init__(self) -> None:
        self.sent: list[bool] = []

    def set_playing(self, playing: bool) -> bool:
        self.sent.append(playing)
        return True


class FakeClockOut:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def play(self) -> None:
        self.commands.append("start")

    def stop_transport(self) -> None:
        self.commands.append("stop")


def test_transport_follows_the_reference_and_sends_our_changes_without_echo():
    store = StateStore(initial_state())
    sync, clock_out = FakeSync(), FakeClockOut()
    transport = TransportSync(store, sync, clock_out)
    transport.poll(Reading(False))  # joining a stopped session: still playing
    assert store.state.values["transport"] == "play"
    transport.poll(Reading(True))
    transport.poll(Reading(False))  # the session stopped: so do we
    assert store.state.values["transport"] == "stop"
    assert sync.sent == [] and clock_out.commands == ["stop"]  # nothing sent back to Link
    store.apply({"transport": "play"}, source="osc")  # ours: to the session and MIDI clock out
    assert sync.sent == [True] and clock_out.commands == ["stop", "start"]
    transport.poll(Reading(True))  # our own start coming back is no change
    assert store.state.values["transport"] == "play" and sync.sent == [True]
    transport.close()
    store.apply({"transport": "stop"}, source="osc")
    assert sync.sent == [True]


def test_start_stop_follows_a_second_link_peer_and_goes_back_to_it():
    pytest.importorskip("aalink")
    from link_fixtures import Peer, wait_for

    from riffengine.timing.link import LinkFollower
    from riffengine.timing.sources import FrameClock, TempoSync

    peer = Peer(120.0, start_stop_sync=True)
    ask = peer.ask

    async def run() -> None:
        clock = FrameClock.free_running(44100)
        store = StateStore(initial_state())
        sync = TempoSync(store, lambda name: LinkFollower(120.0, 4, clock, start_stop_sync=True), "link")
        transport = TransportSync(store, sync)
        try:
            assert await wait_for(lambda: sync._source.peers > 0, 15.0), "the peers never found each other"

            def poll() -> bool:
                transport.poll(sync.poll())
                return True

            store.apply({"transport": "stop"}, source="osc")  # stopped by the performer
            poll()
            assert ask("play") == ["ok"]
            assert await wait_for(lambda: poll() and store.state.values["transport"] == "play")
            assert ask("stop") == ["ok"]
            assert await wait_for(lambda: poll() and store.state.values["transport"] == "stop")
            store.apply({"transport": "play"}, source="osc")  # ours goes to the session
            assert await wait_for(lambda: poll() and ask("playing") == ["1", "1"])
            assert store.state.values["transport"] == "play"
        finally:
            transport.close()
            sync.close()

    try:
        asyncio.run(run())
    finally:
        peer.close()
