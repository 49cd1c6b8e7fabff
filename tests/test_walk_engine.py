"""Evolve, glide and loops rendered ahead, end to end through the .wav output (fake renderer:
simulated render time, so every session is deterministic to the frame)."""

from __future__ import annotations

import numpy as np
import pytest
from test_engine import RATE, assert_contiguous_on_bars, assert_never_silent, kinds, session, step


def walk_of(starts):
    return [(s["alpha"], s["seed_a"], s["seed_b"]) for s in starts]


def test_evolve_a_quarter_in_seed_mode_walks_alpha_then_the_next_seed(tmp_path):
    audio, events, _, engine = session(tmp_path, duration=8.0, **{"initial.evolve": 0.25})
    starts = kinds(events, "loop_started")
    assert len(starts) == 8 and [s["repeat"] for s in starts] == [0] * 8  # a new loop every bar
    assert walk_of(starts) == [(0.0, 42, -1), (0.25, 42, 43), (0.5, 42, 43), (0.75, 42, 43),
                               (0.0, 43, -1), (0.25, 43, 44), (0.5, 43, 44), (0.75, 43, 44)]
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


def test_the_same_start_gives_the_same_piece(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    first, events1, _, _ = session(tmp_path / "1", duration=5.0, **{"initial.evolve": 0.25})
    second, events2, _, _ = session(tmp_path / "2", duration=5.0, **{"initial.evolve": 0.25})
    np.testing.assert_array_equal(first, second)
    assert walk_of(kinds(events1, "loop_started")) == walk_of(kinds(events2, "loop_started"))
