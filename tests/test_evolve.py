"""The walk's pure functions: evolve positions, seeds and alphas, glides, restarts."""

from __future__ import annotations

import pytest

from riffengine import evolve as ev
from riffengine import state as st
from riffengine.render.request import PromptSlot, RenderRequest, Side, to_render_request


def walk(state, loops):
    """``loops`` loops of the walk from the first one, nothing changed."""
    out = [ev.first_loop(state)]
    while len(out) < loops:
        out.append(ev.next_loop(out[-1], state))
    return out


def alphas_and_seeds(loops):
    return [(l.request.alpha, l.request.a.seed, l.request.b.seed if l.request.b else None) for l in loops]


def test_seed_mode_walks_alpha_by_a_quarter_then_steps_the_seed_on():
    state = st.apply_many(st.initial_state(), {"evolve": 0.25, "seed_a": 7})
    assert alphas_and_seeds(walk(state, 9)) == [
        (0.0, 7, None),
        (0.25, 7, 8),
        (0.5, 7, 8),
        (0.75, 7, 8),
        (0.0, 8, None),
        (0.25, 8, 9),
        (0.5, 8, 9),
        (0.75, 8, 9),
        (0.0, 9, None),
    ]
    loops = walk(state, 9)
    # side B is side A at the next seed; the same start gives the same loops
    assert all(l.request.b is None or l.request.b.prompts == l.request.a.prompts for l in loops)
    assert [l.key for l in walk(state, 9)] == [l.key for l in loops]


def test_a_step_of_a_tenth_adds_up_exactly_and_seeds_wrap():
    state = st.apply_many(st.initial_state(), {"evolve": 0.1, "seed_a": 2**32 - 1})
    loops = walk(state, 12)
    assert loops[10].request.alpha == 0.0 and loops[10].request.a.seed == 0  # wrapped
    assert loops[11].request.alpha == pytest.approx(0.1) and loops[11].position == 1.1


def test_pingpong_goes_to_b_and_back_and_toward_b_holds():
    base = st.apply_many(st.initial_state(), {"prompt_b/0": "jazz", "evolve": 0.5})
    ping = st.apply(base, "evolve_mode", "pingpong")
    assert [l.request.alpha for l in walk(ping, 6)] == [0.0, 0.5, 1.0, 0.5, 0.0, 0.5]
    toward = st.apply_many(base, {"evolve_mode": "toward_b", "alpha": 0.2, "evolve": 0.3})
    loops = walk(toward, 6)
    assert [l.request.alpha for l in loops] == [0.2, 0.5, 0.8, 1.0, 1.0, 1.0]
    assert not ev.walking(loops[-1], toward) and ev.walking(loops[0], toward)
    assert loops[-1].request.b.prompts == (PromptSlot("jazz"),)


def test_evolve_off_is_the_states_own_request_and_does_not_walk():
    state = st.apply_many(st.initial_state(), {"prompt_b/0": "jazz", "alpha": 0.3})
    loop = ev.first_loop(state)
    assert loop.request == to_render_request(state)
    assert not ev.walking(loop, state)


def test_glide_of_four_loops_gives_three_loops_between():
    old = st.initial_state()
    new = st.apply_many(old, {"glide": 4, "prompt_a/0": "jazz"})
    heard = ev.first_loop(old)
    loops = [ev.restart(heard, old, new)]
    while ev.walking(loops[-1], new):
        loops.append(ev.next_loop(loops[-1], new))
    assert [l.request.alpha for l in loops] == [0.25, 0.5, 0.75, 0.0]
    for l in loops[:3]:
        assert l.request.a == heard.request.a and l.request.b.prompts == (PromptSlot("jazz"),)
    assert loops[-1].request == to_render_request(new)  # the target itself
    assert [l.glide.done for l in loops] == [1, 2, 3, 4]


def test_a_change_mid_glide_restarts_it_from_the_heard_loop():
    s0 = st.initial_state()
    s1 = st.apply_many(s0, {"glide": 4, "prompt_a/0": "jazz"})
    g1 = ev.restart(ev.first_loop(s0), s0, s1)
    g2 = ev.next_loop(g1, s1)  # heard: half way from lo-fi to jazz
    s2 = st.apply(s1, "prompt_a/0", "tango")
    r = ev.restart(g2, s1, s2)
    assert r.glide.done == 1 and r.glide.loops == 4
    start = r.request.a  # the heard mix: lo-fi and jazz at half weight each
    assert [(p.text, p.weight) for p in start.prompts] == [("lo-fi hip hop beat", 0.5), ("jazz", 0.5)]
    assert r.request.b.prompts == (PromptSlot("tango"),) and r.request.alpha == 0.25


def test_glide_follows_an_evolving_target_and_bpm_changes_do_not_glide():
    s0 = st.apply(st.initial_state(), "evolve", 0.25)
    s1 = st.apply_many(s0, {"glide": 2, "prompt_a/0": "jazz"})
    heard = ev.next_loop(ev.first_loop(s0), s0)  # alpha 0.25 between seeds 42 and 43
    r = ev.restart(heard, s0, s1)
    assert r.position == 0.5 and r.request.alpha == 0.5 and r.glide.done == 1
    assert ev.next_loop(r, s1).request == ev.evolve_request(s1, 0.75)  # glide done: on the walk
    s2 = st.apply(s1, "bpm", 100.0)
    assert ev.restart(r, s1, s2).glide.done == 2  # the glide goes on


def test_heard_side_blends_prompts_exactly_and_takes_the_nearer_seed():
    a = Side((PromptSlot("x", 2.0), PromptSlot("y", 2.0)), seed=1, denoise=0.5, guidance=5.0)
    b = Side((PromptSlot("z"),), seed=2, denoise=1.0, guidance=9.0)
    side = ev.heard_side(RenderRequest(a=a, b=b, alpha=0.75))
    assert [(p.text, p.weight) for p in side.prompts] == [("x", 0.125), ("y", 0.125), ("z", 0.75)]
    assert side.seed == 2 and side.denoise == pytest.approx(0.875) and side.guidance == pytest.approx(8.0)
    assert ev.heard_side(RenderRequest(a=a, b=b, alpha=0.0)) == a


def test_describe_names_alpha_seeds_and_a_short_prompt_hash():
    state = st.apply(st.initial_state(), "evolve", 0.25)
    loops = walk(state, 2)
    d = ev.describe(loops[1])
    assert (d["alpha"], d["seed_a"], d["seed_b"], d["step"]) == (0.25, 42, 43, 1)
    assert len(d["prompts"]) == 8 and all(c in "0123456789abcdef" for c in d["prompts"])
    other = st.apply(state, "prompt_a/0", "jazz")
    assert ev.describe(ev.first_loop(other))["prompts"] != ev.describe(ev.first_loop(state))["prompts"]


def test_switching_evolve_on_starts_the_walk_one_step_after_the_heard_loop():
    old = st.initial_state()
    new = st.apply(old, "evolve", 0.25)
    r = ev.restart(ev.first_loop(old), old, new)
    assert (r.position, r.request.alpha, r.request.a.seed, r.request.b.seed) == (0.25, 0.25, 42, 43)
    off = st.apply(new, "evolve", 0.0)
    assert ev.restart(r, new, off).request == to_render_request(off)  # off: back to the state
