"""The planner's pure decisions: newest state wins, render vs stretch, when a change is heard."""

import pytest

from riffengine import state as st
from riffengine.planner import (
    RENDER,
    STRETCH,
    Planner,
    clip_key,
    estimate_seconds,
    first_seam_after,
    ready_frame,
)


@pytest.fixture
def s0() -> st.State:
    return st.initial_state()


def test_clip_key_ignores_live_parameters_and_unheard_slots(s0):
    key = clip_key(s0)
    hash(key)
    for name, value in [
        ("gain", -6.0),
        ("crossfade_ms", 200.0),
        ("scene", 3),
        ("mute", True),
        ("weight_a/1", 0.3),
        ("prompt_b/0", "jazz"),
    ]:
        changed = st.apply(s0, name, value)
        assert changed.version == 1
        assert clip_key(changed) == key, name


def test_clip_key_follows_render_and_length_parameters(s0):
    key = clip_key(s0)
    for name, value in [
        ("seed_a", 1),
        ("prompt_a/0", "jazz"),
        ("steps", 10),
        ("bpm", 90),
        ("bars", 4),
        ("seed_image", ""),
    ]:
        assert clip_key(st.apply(s0, name, value)) != key, name


RATE = 44100
BAR = 88200  # one bar at 120 BPM


def test_first_seam_after_picks_the_first_seam_whose_fade_starts_after_ready():
    # ready before the fade start of the next seam: the next seam
    assert first_seam_after(ready_frame=1000, next_seam=10000, loop_frames=5000, fade_frames=500) == 10000
    assert first_seam_after(9500, 10000, 5000, 500) == 10000  # exactly at the fade start
    assert first_seam_after(9501, 10000, 5000, 500) == 15000
    assert first_seam_after(14600, 10000, 5000, 500) == 20000
    assert first_seam_after(24500, 10000, 5000, 500) == 25000
    with pytest.raises(ValueError):
        first_seam_after(0, 10, 0, 0)


def test_ready_frame_and_estimate():
    assert ready_frame(1000, 1.0, 0.25, RATE) == 1000 + int(1.25 * RATE)
    assert estimate_seconds([], 5.0) == 5.0
    assert estimate_seconds([1, 9, 2, 2, 2, 2, 2], 5.0) == 2  # only the last five count
    assert estimate_seconds([1.0, 3.0, 2.0], 5.0) == 3.0


def changed(state, **values):
    return st.apply_many(state, values)


def test_newest_state_wins_and_a_burst_costs_one_render():
    planner = Planner(RATE, default_seconds=1.0, margin_seconds=0.0)
    s0 = st.initial_state()
    planner.mark_good(clip_key(s0), RENDER, 1.0)
    planner.want(s0)
    assert planner.next_job(0, BAR, BAR, 0) is None  # nothing new

    s1 = changed(s0, seed_a=1)
    planner.want(s1)
    job = planner.next_job(0, BAR, BAR, 0)
    assert job.version == s1.version and job.kind == RENDER
    # a burst of knob moves while the job runs: no second job until it ends
    s = s1
    for seed in range(2, 12):
        s = changed(s, seed_a=seed)
        planner.want(s)
        assert planner.next_job(100, BAR, BAR, 0) is None
    planner.finished(job, True, 1.0)
    newest = planner.next_job(200, BAR, BAR, 0)
    assert newest.key == clip_key(s) and newest.version == s.version  # the latest, not seed 2
    planner.finished(newest, True, 1.0)
    assert planner.next_job(300, BAR, BAR, 0) is None
    assert planner.jobs_issued == 2


def test_tempo_or_bars_only_is_a_stretch_with_its_own_estimate():
    planner = Planner(RATE, default_seconds=4.0, margin_seconds=0.0)
    s0 = st.initial_state()
    planner.mark_good(clip_key(s0), RENDER, 4.0)
    planner.want(changed(s0, bpm=90.0))
    job = planner.next_job(0, BAR, BAR, 0)
    assert job.kind == STRETCH
    assert job.expected == pytest.approx(0.4)  # a tenth of a render until measured
    planner.finished(job, True, 0.05)
    planner.want(changed(planner.wanted, bars=4))
    job = planner.next_job(0, BAR, BAR, 0)
    assert job.kind == STRETCH and job.expected == pytest.approx(0.05)
    planner.finished(job, True, 0.05)
    planner.want(changed(planner.wanted, prompt_a=["jazz"]))
    assert planner.next_job(0, BAR, BAR, 0).kind == RENDER


def test_a_failed_key_is_not_retried_until_the_state_changes():
    planner = Planner(RATE, default_seconds=1.0)
    s0 = st.initial_state()
    planner.mark_good(clip_key(s0), RENDER, 1.0)
    s1 = changed(s0, seed_a=5)
    planner.want(s1)
    job = planner.next_job(0, BAR, BAR, 0)
    planner.finished(job, False, 0.1)
    assert planner.last_good_key == clip_key(s0)  # the last good loop is still the old one
    assert planner.next_job(0, BAR, BAR, 0) is None
    planner.want(changed(s1, seed_a=6))
    assert planner.next_job(0, BAR, BAR, 0) is not None


def test_heard_at_uses_the_measured_time_and_waits_for_a_job_in_flight():
    planner = Planner(RATE, default_seconds=1.0, margin_seconds=0.25)
    s0 = st.initial_state()
    planner.mark_good(clip_key(s0), RENDER, 3.0)  # renders take 3 s
    planner.want(s0)
    assert planner.heard_at(0, BAR, BAR, 0) is None  # already heard
    s1 = changed(s0, seed_a=1)
    planner.want(s1)
    # 3.25 s from frame 0: seams every 2 s from 2 s on -> heard at 4 s
    assert planner.heard_at(0, BAR, BAR, 0) == 2 * BAR
    job = planner.next_job(0, BAR, BAR, 0)
    assert job.target_seam == 2 * BAR
    assert planner.heard_at(0, BAR, BAR, 0) == 2 * BAR  # the job in flight carries it
    s2 = changed(s1, seed_a=2)
    planner.want(s2)
    # waits for the 3 s in flight, then 3.25 s: 6.25 s -> the seam at 8 s
    assert planner.heard_at(0, BAR, BAR, 0) == 4 * BAR
    # the crossfade moves the deadline earlier
    assert planner.heard_at(0, BAR, BAR, int(0.3 * RATE)) == 4 * BAR


def test_meter_and_live_parameters_do_not_change_the_clip_key():
    s0 = st.initial_state()
    assert clip_key(changed(s0, gain=-6.0, crossfade_ms=10.0)) == clip_key(s0)
    assert clip_key(changed(s0, bpm=100.0)) != clip_key(s0)
