"""Tempo sync through the whole engine: a Link session leads, the engine's loops land on its bars.

The engine plays into a JACK dummy server with the fake renderer while a second Link peer (a
plain aalink process) sets the session tempo. Checked: the engine follows the session's tempo,
says so in its figures, and its loop starts settle on the session's bar lines (within 10 ms,
measured on the host clock through the output's DAC time). Also: a tempo source that cannot
start is refused with a fail event and the old one stays; a file output refuses Link.
"""

from __future__ import annotations

import asyncio

import pytest
from jack_fixtures import jack_server  # noqa: F401
from link_fixtures import Peer, bar_offset

from riffengine.config import Settings, merge_overrides
from riffengine.engine import Engine
from riffengine.errors import UserError
from riffengine.render.fake import FakeRenderer
from riffengine.script import Step

pytest.importorskip("aalink")

SESSION_BPM = 126.0
TOLERANCE_S = 0.010  # typically 0.02 ms; up to a JACK period or two on a loaded machine
SETTLED = 2  # the last loops that must sit on the bars
LOCK_WAIT_S = 20.0  # the longest wait for them, after the first 8 s at the session's tempo


def live_settings(**extra: object) -> Settings:
    return merge_overrides(
        Settings(),
        {
            "audio.output": "jack",
            "audio.jack_client_name": "riffengine-sync-test",
            "audio.ring_buffer_seconds": 0.3,
            "tempo.bpm": 120.0,
            "loop.bars": 1,
            "osc.enabled": False,
            **extra,
        },
    )


def test_engine_follows_a_link_session_onto_its_bar_lines(jack_server):
    peer = Peer()
    try:
        engine = Engine(
            live_settings(**{"tempo.source": "link"}), FakeRenderer(seconds=0.05, sleep=True), signals=False
        )
        starts: list[int] = []
        engine.bus.subscribe(lambda e: starts.append(e.data["frame"]) if e.kind == "loop_started" else None)
        seen: dict[str, object] = {}

        def offsets_now() -> list[float]:
            _, _, bar_time = peer.report()
            bar = 60.0 * 4 / SESSION_BPM
            return [bar_offset(engine.follower.clock.time_at(f), bar_time, bar) for f in starts[-SETTLED:]]

        async def watch() -> None:
            # Which peer's tempo a new session keeps is Link's choice: set it once both are in.
            for _ in range(200):
                if peer.report()[0] >= 1:
                    break
                await asyncio.sleep(0.05)
            assert peer.ask(f"tempo {SESSION_BPM}") == ["ok"]
            # A phase error is taken up by a few percent of tempo per loop (timing/follow.py), so
            # the time to lock depends on where the session's bar fell: wait for the last
            # SETTLED loops to sit on the bars, up to LOCK_WAIT_S.
            await asyncio.sleep(8.0)
            for _ in range(int(LOCK_WAIT_S / 0.5)):
                if len(starts) >= SETTLED and max(map(abs, offsets_now())) < TOLERANCE_S:
                    break
                await asyncio.sleep(0.5)
            seen.update(engine.figures())
            seen["peer_tempo"] = peer.report()[1]
            seen["offsets"] = offsets_now()
            engine.stop()

        async def main() -> int:
            watcher = asyncio.ensure_future(watch())
            code = await engine.run()
            await watcher
            return code

        assert asyncio.run(main()) == 0
    finally:
        peer.close()

    assert seen["tempo_source"] == "link" and seen["tempo_locked"] is True
    assert seen["peer_tempo"] == pytest.approx(SESSION_BPM, abs=0.01)
    assert engine.store.state.values["bpm"] == pytest.approx(SESSION_BPM, abs=0.01)
    assert engine.ring.underruns == 0
    offsets = seen["offsets"]
    assert len(offsets) == SETTLED
    print("loop start offsets from the session bars (ms):", [round(o * 1000, 2) for o in offsets])
    assert max(abs(o) for o in offsets) < TOLERANCE_S, offsets


def test_a_tempo_source_that_cannot_start_is_refused_and_the_old_one_stays(jack_server):
    # MIDI clock in without a port configured cannot start: the engine says why and stays internal.
    engine = Engine(
        live_settings(),
        FakeRenderer(seconds=0.05, sleep=True),
        duration=2.0,
        signals=False,
        script=[Step(0, 0.5, None, (("tempo_source", "midi"),))],
    )
    fails: list[dict] = []
    engine.bus.subscribe(lambda e: fails.append(e.data) if e.kind == "fail" else None)
    assert asyncio.run(engine.run()) == 0
    assert [f["address"] for f in fails] == ["/riff/tempo_source"]
    assert "midi_clock_in" in fails[0]["reason"]
    assert engine.store.state.values["tempo_source"] == "internal"
    assert engine.tempo_status() == {"tempo_source": "internal", "tempo_locked": True}


def test_a_file_output_refuses_link(tmp_path):
    settings = merge_overrides(
        Settings(), {"audio.output": str(tmp_path / "out.wav"), "tempo.source": "link", "osc.enabled": False}
    )
    engine = Engine(settings, FakeRenderer(seconds=0.05), duration=1.0, signals=False)
    with pytest.raises(UserError, match="needs a live output"):
        asyncio.run(engine.run())
