"""The walk's bookkeeping: speculative loops limited to render.ahead, dropped on a change."""

from __future__ import annotations

from riffengine import evolve
from riffengine import state as st
from riffengine.ahead import Ahead, touches_clip


def started(state, ahead=2):
    a = Ahead(ahead)
    a.start(evolve.first_loop(state), state, "clip0")
    return a


def test_speculative_loops_stop_at_render_ahead_and_follow_each_other():
    s = st.apply(st.initial_state(), "evolve", 0.25)
    a = started(s)
    first = a.candidate(s, "clip0", queued_on_timeline=0)
    assert first.speculative and first.loop.position == 0.25
    a.issued(1, first)
    assert a.result(1, ok=True) == (first, True)
    a.add_ready("c1", first, None)
    second = a.candidate(s, "clip0", queued_on_timeline=0)
    assert second.loop.position == 0.5  # after the last one made
    assert a.candidate(s, "clip0", queued_on_timeline=1) is None  # two ready: enough
    assert a.take().clip == "c1" and a.take() is None


def test_a_change_drops_ready_loops_marks_the_speculative_job_stale_and_restarts_from_the_heard_loop():
    s0 = st.apply(st.initial_state(), "evolve", 0.25)
    a = started(s0)
    one = a.candidate(s0, "clip0", 0)
    a.issued(1, one)
    a.result(1, True)
    a.remember("clip1", one)
    a.add_ready("c1", one, None)
    two = a.candidate(s0, "clip0", 0)
    a.issued(2, two)
    s1 = st.apply(s0, "prompt_a/0", "jazz")
    assert touches_clip(s0, s1) and not touches_clip(s1, st.apply(s1, "gain", -6.0))
    assert a.changed(s0, s1, in_flight=2) == 2 and not a.ready and a.dropped == 2
    assert a.result(2, True) == (two, False)  # stale: not played
    restart = a.candidate(s1, "clip0", 0)  # heard: the first loop
    assert not restart.speculative and restart.loop.position == 0.25
    assert restart.loop.request.a.prompts[0].text == "jazz"
    a.issued(3, restart)
    assert a.result(3, False) == (restart, False)  # failed: the walk stays, the same loop again
    assert a.candidate(s1, "clip0", 0).loop == restart.loop
    a.issued(4, restart)
    assert a.result(4, True) == (restart, True) and not a.restarting
    assert a.candidate(s1, "clip0", 0).loop.position == 0.5


def test_nothing_moves_without_evolve_or_glide():
    s = st.initial_state()
    a = started(s)
    same = a.candidate(s, "clip0", 0)
    assert not same.speculative and same.loop.key == evolve.first_loop(s).key
