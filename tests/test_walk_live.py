"""A live walk through a real JACK server: a control change stops the loop being rendered ahead
half way (the fake renderer sleeps its render time in steps, as the model does)."""

from __future__ import annotations

import asyncio

from jack_fixtures import jack_server  # noqa: F401

from riffengine.config import Settings, merge_overrides
from riffengine.engine import Engine
from riffengine.eventlog import read_events
from riffengine.render.fake import FakeRenderer
from riffengine.script import Step


def test_a_change_cancels_the_speculative_render_in_flight(jack_server, tmp_path):
    settings = merge_overrides(
        Settings(),
        {
            "audio.output": "jack",
            "audio.jack_client_name": "riffengine-walk-test",
            "audio.events": str(tmp_path / "events.jsonl"),
            "tempo.bpm": 240.0,
            "loop.bars": 1,
            "osc.enabled": False,
            "initial.evolve": 0.25,
        },
    )
    # renders (1.5 s) are slower than the loops (1 s): a loop of the walk is always in flight
    script = [Step(0, 2.2, None, (("prompt_a/0", "jazz"),))]
    engine = Engine(settings, FakeRenderer(seconds=1.5, sleep=True), duration=5.0, script=script, signals=False)
    assert asyncio.run(engine.run()) == 0
    events = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] in ("render", "state")]
    change = next(i for i, e in enumerate(events) if e["kind"] == "state" and e["source"] == "script")
    before, after = events[:change], events[change + 1 :]
    started = [e for e in before if e["kind"] == "render" and e["phase"] == "started"]
    ended = {e.get("job") for e in before if e["kind"] == "render" and e["phase"] in ("done", "dropped")}
    in_flight = [e["job"] for e in started if e["job"] not in ended]
    assert started and all(e["speculative"] for e in started)
    renders = [e for e in after if e["kind"] == "render" and "job" in e]
    if in_flight:  # (almost always: the walk is always behind)
        cancelled = renders[0]
        assert (cancelled["job"], cancelled["phase"], cancelled["reason"]) == (in_flight[0], "dropped", "cancelled")
        assert cancelled["ms"] < 1500.0  # stopped half way
    change_job = next(e for e in renders if e["phase"] == "started")
    assert change_job["speculative"] is False
    assert engine.figures()["walk_dropped"] >= 1


def test_the_render_in_flight_at_the_end_is_stopped_and_its_thread_ended(jack_server, tmp_path):
    # a render thread left inside torch at interpreter exit aborts the process (status 134)
    settings = merge_overrides(
        Settings(),
        {
            "audio.output": "jack",
            "audio.jack_client_name": "riffengine-walk-end-test",
            "audio.events": str(tmp_path / "events.jsonl"),
            "tempo.bpm": 240.0,
            "loop.bars": 1,
            "osc.enabled": False,
            "initial.evolve": 0.25,
        },
    )
    # renders (3 s) are slower than the whole run after the warm-up: one is in flight at the end
    engine = Engine(settings, FakeRenderer(seconds=3.0, sleep=True), duration=1.5, signals=False)
    assert asyncio.run(engine.run()) == 0
    assert not engine.worker.alive
    renders = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "render"]
    started = [e["job"] for e in renders if e["phase"] == "started"]
    assert started  # the walk's next loop was under way when the run ended
