"""Evolve, glide and loops rendered ahead, end to end through the .wav output (fake renderer:
simulated render time, so every session is deterministic to the frame)."""

from __future__ import annotations

import numpy as np
import pytest
from test_engine import BAR, RATE, assert_contiguous_on_bars, assert_never_silent, kinds, session, step


def walk_of(starts):
    return [(s["alpha"], s["seed_a"], s["seed_b"]) for s in starts]


def test_evolve_a_quarter_in_seed_mode_walks_alpha_then_the_next_seed(tmp_path):
    audio, events, _, engine = session(tmp_path, duration=8.0, **{"initial.evolve": 0.25})
    starts = kinds(events, "loop_started")
    assert len(starts) == 8 and [s["repeat"] for s in starts] == [0] * 8  # a new loop every bar
    assert walk_of(starts) == [
        (0.0, 42, -1),
        (0.25, 42, 43),
        (0.5, 42, 43),
        (0.75, 42, 43),
        (0.0, 43, -1),
        (0.25, 43, 44),
        (0.5, 43, 44),
        (0.75, 43, 44),
    ]
    assert [s["step"] for s in starts] == list(range(8))
    assert len({s["prompts"] for s in starts[1:4]}) == 1  # the same prompts, seeds walking
    assert_contiguous_on_bars(starts)
    assert_never_silent(audio, len(audio) - int(0.1 * RATE))
    # each loop was rendered ahead: scheduled before the loop before it started
    scheduled = {e["clip_id"]: e for e in kinds(events, "loop_scheduled")}
    assert all(scheduled[s["clip_id"]]["late"] is False for s in starts)
    figures = engine.figures()
    assert figures["walk_repeats"] == 0 and figures["late_renders"] == 0
    assert figures["loop_alpha"] == 0.75 and figures["loop_seed_a"] == 43
    assert 1 <= figures["loops_ahead"] <= 2  # render.ahead: 2


def test_renders_almost_a_loop_long_keep_up_from_the_first_seam(tmp_path):
    from riffengine.render.fake import FakeRenderer

    # 0.97 s renders, 1 s loops: the loop after the first one is made before the stream starts
    _, events, _, engine = session(
        tmp_path, duration=8.0, renderer=FakeRenderer(seconds=0.97), **{"initial.evolve": 0.25}
    )
    starts = kinds(events, "loop_started")
    assert len(starts) == 8 and [s["repeat"] for s in starts] == [0] * 8
    assert [s["position"] for s in starts] == [0.25 * i for i in range(8)]
    order = [(e["kind"], e.get("phase"), e.get("warm_up")) for e in events]
    stream = order.index(("started", None, None))
    assert order[:stream].count(("render", "done", None)) == 1  # the second loop, before frame 0
    assert engine.figures()["walk_repeats"] == 0 and engine.figures()["late_renders"] == 0


def test_the_same_start_gives_the_same_piece(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    first, events1, _, _ = session(tmp_path / "1", duration=5.0, **{"initial.evolve": 0.25})
    second, events2, _, _ = session(tmp_path / "2", duration=5.0, **{"initial.evolve": 0.25})
    np.testing.assert_array_equal(first, second)
    assert walk_of(kinds(events1, "loop_started")) == walk_of(kinds(events2, "loop_started"))


def test_a_glide_of_four_loops_gives_three_loops_between(tmp_path):
    script = [step(0, 1.5, **{"prompt_a/0": "jazz"})]
    _, events, _, _ = session(tmp_path, script, duration=8.0, **{"initial.glide": 4})
    new = [s for s in kinds(events, "loop_started") if s["repeat"] == 0]
    # bar 0 the start; the change at 1.5 s is heard from bar 2 on: 1/4, 2/4, 3/4, then jazz
    assert [(s["bar"], s["glide"], s["alpha"]) for s in new] == [
        (0, "", 0.0),
        (2, "1/4", 0.25),
        (3, "2/4", 0.5),
        (4, "3/4", 0.75),
        (5, "4/4", 0.0),
    ]
    assert new[1]["prompt"] == "lo-fi hip hop beat" and new[4]["prompt"] == "jazz"
    assert len({s["prompts"] for s in new[1:4]}) == 1 != len({new[0]["prompts"], new[1]["prompts"], new[4]["prompts"]})
    starts = kinds(events, "loop_started")
    assert [s["clip_id"] for s in starts if s["bar"] >= 5] == [new[4]["clip_id"]] * 3  # then it holds
    assert_contiguous_on_bars(starts)


def test_a_change_mid_glide_restarts_it_from_the_heard_loop(tmp_path):
    script = [step(0, 1.5, **{"prompt_a/0": "jazz"}), step(1, 3.5, **{"prompt_a/0": "tango"})]
    _, events, _, _ = session(tmp_path, script, duration=9.0, **{"initial.glide": 4})
    new = [s for s in kinds(events, "loop_started") if s["repeat"] == 0]
    # bar 3 plays the glide half way to jazz; the new glide to tango starts from it at bar 4
    assert [(s["bar"], s["glide"]) for s in new] == [
        (0, ""),
        (2, "1/4"),
        (3, "2/4"),
        (4, "1/4"),
        (5, "2/4"),
        (6, "3/4"),
        (7, "4/4"),
    ]
    assert new[-1]["prompt"] == "tango"
    renders = kinds(events, "render")
    # the loop of the old glide rendered ahead for bar 4 was dropped, never played
    dropped = [r for r in renders if r["phase"] == "dropped"]
    assert dropped and all(r["reason"] == "superseded" for r in dropped)
    played = {s["clip_id"] for s in kinds(events, "loop_started")}
    queued_old = [e for e in kinds(events, "loop_scheduled") if e["glide"] == "3/4" and e["version"] == 1]
    assert len(queued_old) == 1 and queued_old[0]["clip_id"] not in played
    assert [d["clip_id"] for d in kinds(events, "loop_dropped")] == [queued_old[0]["clip_id"]]


def test_a_control_change_mid_evolve_drops_the_loops_rendered_ahead(tmp_path):
    script = [step(0, 3.5, bpm=200.0)]
    _, events, _, _ = session(tmp_path, script, duration=7.0, **{"initial.evolve": 0.25})
    starts = kinds(events, "loop_started")
    assert [s["repeat"] for s in starts] == [0] * len(starts)
    # the walk goes on through the tempo change, one step a loop, no step lost or repeated
    assert [s["position"] for s in starts] == [0.25 * i for i in range(len(starts))]
    assert [s["bpm"] for s in starts][:4] == [240.0] * 4 and starts[-1]["bpm"] == 200.0
    assert any(r["phase"] == "dropped" for r in kinds(events, "render"))
    # no loop at the old tempo plays after the first one at the new tempo
    first_new = next(i for i, s in enumerate(starts) if s["bpm"] == 200.0)
    assert all(s["bpm"] == 200.0 for s in starts[first_new:])


def test_stop_lands_on_a_bar_line_and_play_resumes_on_one(tmp_path):
    script = [step(0, 2.3, transport="stop"), step(1, 4.6, transport="play")]
    audio, events, _, _ = session(tmp_path, script, duration=7.0, **{"initial.evolve": 0.25})
    transport = kinds(events, "transport")
    assert [(t["state"], t["bar"], t["frame"]) for t in transport] == [("stop", 3, 3 * BAR), ("play", 5, 5 * BAR)]
    assert [(e["bar"], e["frame"]) for e in kinds(events, "loop_stopped")] == [(3, 3 * BAR)]
    fade = round(0.05 * RATE)  # the crossfade length
    assert np.abs(audio[3 * BAR - fade - 400 : 3 * BAR - fade]).max() > 0.1  # playing until the fade
    assert np.abs(audio[3 * BAR - 20 : 3 * BAR]).max() < 0.05  # faded out to the bar line
    assert not audio[3 * BAR : 5 * BAR].any()  # silent for two bars
    assert np.abs(audio[5 * BAR : 5 * BAR + 8]).min() == pytest.approx(0.9, abs=1e-6)  # a downbeat
    starts = kinds(events, "loop_started")
    resumed = [s for s in starts if s["frame"] == 5 * BAR][0]
    assert resumed["repeat"] == 0
    # nothing was rendered from the stop request to play; the walk then goes on where it was
    kinds_in_order = [(e["kind"], e.get("phase"), e.get("state")) for e in events]
    stop_at = kinds_in_order.index(("transport", None, "stop"))
    play_at = kinds_in_order.index(("transport", None, "play"))
    assert ("render", "started", None) not in kinds_in_order[stop_at:play_at]
    assert ("render", "started", None) in kinds_in_order[play_at:]
    new = [s for s in starts if s["repeat"] == 0]
    assert [s["position"] for s in new] == [0.25 * i for i in range(len(new))]


@pytest.mark.parametrize(
    "values, change",
    [
        ({"evolve": 0.25}, None),
        ({"glide": 3}, {"prompt_a/0": "jazz"}),
    ],
)
def test_offline_render_is_what_run_plays(tmp_path, values, change):
    from test_engine import settings_for

    from riffengine import offline
    from riffengine.evolve import prompts_hash
    from riffengine.render.fake import FakeRenderer
    from riffengine.state import apply_many, initial_state

    script = [step(0, 0.5, **change)] if change else []
    audio, events, _, _ = session(tmp_path, script, duration=6.0, **{f"initial.{k}": v for k, v in values.items()})
    state = apply_many(initial_state(settings_for(tmp_path)), values)
    loops = offline.walk(state, 6, change)
    piece = offline.render_loops(FakeRenderer(), loops, 4, 50.0, RATE)
    assert piece.shape == (6 * BAR, 2)
    heard = [(s["alpha"], s["seed_a"], s["prompts"]) for s in kinds(events, "loop_started")]
    assert heard == [(l.request.alpha, l.request.a.seed, prompts_hash(l.request)) for l in loops]
    end = 6 * BAR - round(0.1 * RATE)  # run fades out over its last 0.1 s
    np.testing.assert_array_equal(piece[:end], audio[:end])


def test_a_failed_loop_of_the_walk_is_tried_again_and_no_step_is_lost(tmp_path):
    # [raise=1]: the first render of each request fails, the retry after the back-off works
    script = [step(0, 0.5, **{"prompt_a/0": "beat [raise=1]"})]
    _, events, _, engine = session(tmp_path, script, duration=9.0, **{"initial.evolve": 0.25})
    starts = kinds(events, "loop_started")
    new = [s for s in starts if s["repeat"] == 0]
    assert len(new) >= 4
    assert [s["position"] for s in new] == [0.25 * i for i in range(len(new))]
    assert len(kinds(events, "render_failed")) >= 1 and kinds(events, "render_recovered")
    assert engine.figures()["walk_repeats"] == len(starts) - len(new) > 0  # late loops counted


def test_run_takes_evolve_from_the_command_line(tmp_path, capsys):
    from riffengine import cli
    from riffengine.eventlog import read_events

    out, log = tmp_path / "take.wav", tmp_path / "e.jsonl"
    code = cli.main(
        [
            "run",
            "--fake-renderer",
            "--no-osc",
            "--output",
            str(out),
            "--bpm",
            "240",
            "--bars",
            "1",
            "--duration",
            "3",
            "--evolve",
            "0.5",
            "--events",
            str(log),
        ]
    )
    assert code == 0
    starts = kinds(read_events(log), "loop_started")
    assert [(s["alpha"], s["seed_a"]) for s in starts] == [(0.0, 42), (0.5, 42), (0.0, 43)]


def test_evolve_switched_on_while_playing_walks_from_the_next_loop(tmp_path):
    script = [step(0, 1.5, evolve=0.5), step(1, 4.5, evolve=0.0)]
    _, events, _, _ = session(tmp_path, script, duration=7.0)
    new = [s for s in kinds(events, "loop_started") if s["repeat"] == 0]
    assert [(s["bar"], s["alpha"], s["seed_a"]) for s in new] == [
        (0, 0.0, 42),
        (2, 0.5, 42),
        (3, 0.0, 43),
        (4, 0.5, 43),
        (5, 0.0, 42),
    ]  # off: the state again
