"""Ableton Link: riffengine's follower and a second peer in another process agree.

The other peer is a plain ``aalink`` script (no riffengine code) run with this venv's Python.
Link discovers peers by UDP multicast; on this machine that works over the loopback and the
container's interface. Tolerances: tempo equal to 0.01 BPM; the bar start computed by the
follower (through the frame clock) within 2 ms of the peer's own bar start, both converted to
``time.monotonic()`` (the same clock in both processes).
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("aalink")

from link_fixtures import Peer, bar_offset, wait_for  # noqa: E402

from riffengine.state import initial_state  # noqa: E402
from riffengine.store import StateStore  # noqa: E402
from riffengine.timing.link import LinkFollower  # noqa: E402
from riffengine.timing.sources import FrameClock, TempoSync  # noqa: E402

SR = 44100


def test_two_peers_agree_on_tempo_and_bars_and_tempo_changes_go_both_ways():
    peer = Peer()

    async def run() -> None:
        frame_clock = FrameClock.free_running(SR)
        store = StateStore(initial_state())
        sync = TempoSync(store, lambda name: LinkFollower(120.0, 4, frame_clock), "link")
        try:
            follower = sync._source
            assert await wait_for(lambda: follower.peers > 0, timeout=15.0), "the peers never found each other"
            assert sync.status() == {"tempo_source": "link", "tempo_locked": True}

            # the session settles on one tempo (123 or 120: Link picks one of the two timelines),
            # and it reaches the store
            def same_tempo() -> bool:
                reading = sync.poll()
                return (
                    reading is not None
                    and store.state.values["bpm"] == round(reading.bpm, 2)
                    and abs(peer.report()[1] - reading.bpm) < 0.01
                )

            assert await wait_for(same_tempo)

            def agree() -> bool:
                reading = sync.poll()
                ours = frame_clock.time_at(reading.bar_frame)
                peers, tempo, theirs = peer.report()
                offset = bar_offset(ours, theirs, 240.0 / tempo)
                agreement.append((peers, tempo, reading.bpm, offset))
                return peers == 1 and abs(tempo - reading.bpm) < 0.01 and abs(offset) < 0.002

            # each side sees the other a moment apart, and Link measures the clock offset between
            # them for a moment after they meet
            agreement: list = []
            assert await wait_for(agree, timeout=5.0), agreement[-3:]
            for _ in range(10):
                assert agree(), agreement[-1]
                await asyncio.sleep(0.1)

            # a tempo change made in riffengine (say from OSC) goes to the session ...
            store.apply({"bpm": 131.5}, source="osc")
            assert await wait_for(lambda: peer.report()[1] == pytest.approx(131.5, abs=0.01))
            # ... and one made by the other peer comes back
            assert peer.ask("tempo 97") == ["ok"]
            assert await wait_for(lambda: sync.poll() and store.state.values["bpm"] == 97.0)
            reading = sync.poll()
            _, _, theirs = peer.report()
            assert abs(bar_offset(frame_clock.time_at(reading.bar_frame), theirs, 240.0 / 97.0)) < 0.002
        finally:
            sync.close()

    try:
        asyncio.run(run())
    finally:
        peer.close()
