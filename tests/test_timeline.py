"""Timeline: clips on the bar grid, equal-power crossfade before the seam, last good loop repeats."""

import numpy as np
import pytest

from riffengine.audio.timeline import ClipDropped, LoopStarted, Timeline, equal_power_gains
from riffengine.timing.tempo import TempoMap, loop_frames

RATE = 1000  # small rate keeps the arrays small; at 120 bpm a bar is 2000 frames
BAR = 2000


def noise(seed, frames, channels=2):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (frames, channels)).astype(np.float32)


def make(tl, clip_id, seed, bars=1, bpm=120.0):
    return tl.make_clip(clip_id, noise(seed, loop_frames(bars, bpm, RATE)), bpm, bars)


def render(tl, n, block=None):
    frames, events = [], []
    while n > 0:
        b = tl.render_block(min(block or n, n))
        frames.append(b.frames)
        events.extend(b.events)
        n -= len(b.frames)
    return np.concatenate(frames), events


def starts(events):
    return [(e.frame, e.bar, e.clip_id, e.repeat) for e in events if isinstance(e, LoopStarted)]


def test_equal_power_gains_sum_to_unit_power_and_run_from_out_to_in():
    out, inn = equal_power_gains(1323)
    np.testing.assert_allclose(out.astype(np.float64) ** 2 + inn.astype(np.float64) ** 2, 1.0, atol=1e-6)
    assert out[0] > 0.999 and inn[0] < 0.002
    assert out[-1] < 0.002 and inn[-1] > 0.999
    assert np.all(np.diff(out) < 0) and np.all(np.diff(inn) > 0)
    # A slice of the fade is the same curve.
    part_out, part_in = equal_power_gains(1323, 100, 50)
    np.testing.assert_array_equal(part_out, out[100:150])
    np.testing.assert_array_equal(part_in, inn[100:150])


def test_silence_until_the_first_bar_line_then_the_clip_from_its_first_sample():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE))
    first, _ = render(tl, 500)
    assert not first.any()
    a = make(tl, "a", 1)
    tl.submit(a)
    out, events = render(tl, 2 * BAR)
    # The cursor was at 500, so "a" starts at the next bar line, 2000.
    assert not out[: BAR - 500].any()
    np.testing.assert_array_equal(out[BAR - 500 : 2 * BAR - 500], a.audio)
    np.testing.assert_array_equal(out[2 * BAR - 500 :], a.audio[:500])
    assert starts(events) == [(BAR, 1, "a", 0), (2 * BAR, 2, "a", 1)]


def test_last_good_clip_loops_again_on_every_seam_forever():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE))
    a = make(tl, "a", 1, bars=2)
    tl.submit(a)
    out, events = render(tl, 5 * 2 * BAR, block=777)
    np.testing.assert_array_equal(out, np.tile(a.audio, (5, 1)))
    assert starts(events) == [(k * 2 * BAR, 2 * k, "a", k) for k in range(5)]
    assert all(e.crossfade_frames == 0 for e in events)


def test_crossfade_ends_exactly_on_the_seam_and_the_new_clip_starts_at_full_gain():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE), crossfade_ms=100.0)  # 100 frames
    a, b = make(tl, "a", 1), make(tl, "b", 2)
    tl.submit(a)
    render(tl, 1000)
    tl.submit(b)
    out, events = render(tl, 2 * BAR - 1000)
    x = 100
    tail = out[BAR - 1000 - x : BAR - 1000]
    g_out, g_in = equal_power_gains(x)
    np.testing.assert_allclose(tail, a.audio[-x:] * g_out[:, None] + b.audio[-x:] * g_in[:, None], atol=1e-7)
    np.testing.assert_array_equal(out[: BAR - 1000 - x], a.audio[1000 : BAR - x])
    np.testing.assert_array_equal(out[BAR - 1000 :], b.audio[: BAR - 1000 + 1000])
    assert starts(events) == [(BAR, 1, "b", 0)]
    assert events[0].crossfade_frames == x


def test_crossfade_keeps_total_power_constant_for_uncorrelated_signals():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE), crossfade_ms=1000.0)  # 1000-frame fade
    # Orthogonal signals of equal power: "a" only on the left, "b" only on the right.
    left = np.zeros((BAR, 2), np.float32)
    left[:, 0] = 0.5
    right = np.zeros((BAR, 2), np.float32)
    right[:, 1] = 0.5
    tl.submit(tl.make_clip("a", left, 120.0, 1))
    render(tl, 1)  # "a" starts at frame 0
    tl.submit(tl.make_clip("b", right, 120.0, 1))
    out, _ = render(tl, 2 * BAR - 1)
    fade = out[BAR - 1 - 1000 : BAR - 1].astype(np.float64)
    np.testing.assert_allclose((fade**2).sum(axis=1), 0.25, rtol=1e-5)
    # Independent noise: mean power over quarters of the fade stays at the clips' power.
    tl = Timeline(TempoMap(120.0, sample_rate=RATE), crossfade_ms=1000.0)
    a, b = make(tl, "a", 3, bars=4), make(tl, "b", 4, bars=4)
    tl.submit(a)
    render(tl, 10)
    tl.submit(b)
    out, _ = render(tl, 4 * BAR)
    fade = out[4 * BAR - 10 - 1000 : 4 * BAR - 10].astype(np.float64)
    power = (a.audio.astype(np.float64) ** 2).mean()
    for quarter in np.split(fade, 4):
        assert (quarter**2).mean() == pytest.approx(power, rel=0.15)


def test_rendering_is_the_same_whatever_the_block_sizes():
    def run(block_sizes):
        tl = Timeline(TempoMap(120.0, sample_rate=RATE))
        a, b, c = make(tl, "a", 1), make(tl, "b", 2, bars=2), make(tl, "c", 3)
        script = {0: a, 2500: b, 2510: c, 7000: a}
        frames, events, sizes = [], [], iter(block_sizes)
        while tl.cursor < 12000:
            if tl.cursor in script:
                tl.submit(script[tl.cursor])
            next_change = min((f for f in script if f > tl.cursor), default=12000)
            block = tl.render_block(min(next(sizes), next_change - tl.cursor))
            frames.append(block.frames)
            events += block.events
        return np.concatenate(frames)[:12000], events

    one, ev_one = run([10] * 1200)
    rng = np.random.default_rng(0)
    sizes = [10 if i % 2 else int(rng.integers(1, 40)) * 10 for i in range(2000)]
    other, ev_other = run(sizes)
    np.testing.assert_array_equal(one, other)
    assert ev_one == ev_other
    assert [e.clip_id for e in ev_one if isinstance(e, ClipDropped)] == ["b"]


def test_newest_clip_wins_and_the_replaced_one_is_reported():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE))
    a, b, c = make(tl, "a", 1), make(tl, "b", 2), make(tl, "c", 3)
    tl.submit(a)
    render(tl, 100)
    tl.submit(b)
    tl.submit(c)
    out, events = render(tl, 2 * BAR)
    assert ClipDropped(100, "b", "c") in events
    assert starts(events) == [(BAR, 1, "c", 0), (2 * BAR, 2, "c", 1)]
    np.testing.assert_array_equal(out[BAR - 100 : 2 * BAR - 100], c.audio)


def test_late_clip_gets_a_shorter_fade_or_waits_for_the_next_seam():
    x = 60  # 60 ms at 1 kHz
    tl = Timeline(TempoMap(120.0, sample_rate=RATE), crossfade_ms=60.0, min_crossfade_frames=20)
    a, b = make(tl, "a", 1), make(tl, "b", 2)
    tl.submit(a)
    render(tl, BAR - 30)  # inside the fade window, 30 frames before the seam
    tl.submit(b)
    out, events = render(tl, 30 + 10)
    assert starts(events) == [(BAR, 1, "b", 0)]
    assert events[0].crossfade_frames == 30
    g_out, g_in = equal_power_gains(30)
    np.testing.assert_allclose(out[:30], a.audio[-30:] * g_out[:, None] + b.audio[-30:] * g_in[:, None], atol=1e-7)

    tl = Timeline(TempoMap(120.0, sample_rate=RATE), crossfade_ms=60.0, min_crossfade_frames=20)
    tl.submit(a)
    render(tl, BAR - 10)  # too late for this seam: "a" repeats, "b" comes in at the next one
    tl.submit(b)
    out, events = render(tl, 10 + BAR + 1)
    assert starts(events) == [(BAR, 1, "a", 1), (2 * BAR, 2, "b", 0)]
    np.testing.assert_array_equal(out[10 : 10 + BAR - x], a.audio[: BAR - x])
    assert events[1].crossfade_frames == x


@pytest.mark.parametrize(
    "cursor, crossfade_ms",
    [
        (0, 60.0),
        (BAR - 60, 60.0),
        (BAR - 30, 60.0),
        (BAR - 20, 60.0),
        (BAR - 19, 60.0),
        (BAR - 1, 60.0),
        (BAR + 500, 60.0),
        (BAR - 1, 0.0),
        (None, 60.0),
        (BAR - 50, "under way"),
    ],
)
def test_landing_seam_says_where_render_block_will_start_a_clip(cursor, crossfade_ms):
    """One seam rule: the planner's prediction is what the timeline then does."""
    fade = 60.0 if crossfade_ms == "under way" else crossfade_ms
    tl = Timeline(TempoMap(120.0, sample_rate=RATE), crossfade_ms=fade, min_crossfade_frames=20)
    if cursor is None:  # nothing plays yet: the next bar line
        render(tl, 300)
    else:
        tl.submit(make(tl, "a", 1))
        if cursor:
            render(tl, cursor)
    if crossfade_ms == "under way":  # a fade into another clip has begun: the seam after
        tl.submit(make(tl, "other", 3))
        render(tl, 20)
    clip = make(tl, "b", 2)
    predicted = tl.landing_seam(len(clip.audio))
    tl.submit(clip)
    _, events = render(tl, 3 * BAR)
    assert [e.frame for e in events if isinstance(e, LoopStarted) and e.clip_id == "b"][0] == predicted


def test_not_before_frame_holds_a_clip_back_to_a_later_seam():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE))
    a, b = make(tl, "a", 1), make(tl, "b", 2)
    tl.submit(a)
    render(tl, 1)
    tl.submit(b, not_before_frame=3 * BAR)
    _, events = render(tl, 4 * BAR - 1)
    assert starts(events) == [(BAR, 1, "a", 1), (2 * BAR, 2, "a", 2), (3 * BAR, 3, "b", 0)]


def test_tempo_change_clip_of_another_length_starts_on_the_grid_and_moves_the_tempo_map():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE))
    a = make(tl, "a", 1, bars=2)
    slow = make(tl, "slow", 2, bars=2, bpm=90.0)  # 2 bars at 90 bpm = 5334 frames (2 x 2667)
    assert len(slow.audio) == 2 * 2667
    tl.submit(a)
    render(tl, 100)
    tl.submit(slow)
    out, events = render(tl, 2 * BAR - 100 + 3 * len(slow.audio))
    seam = 2 * BAR
    assert starts(events) == [
        (seam, 2, "slow", 0),
        (seam + 5334, 4, "slow", 1),
        (seam + 2 * 5334, 6, "slow", 2),
    ]
    assert tl.tempo.bpm == 90.0
    assert tl.tempo.bar_at(seam) == 2 and tl.tempo.bar_frame(3) == seam + 2667
    assert tl.tempo.beat_at(seam + 5334) == 16.0
    np.testing.assert_array_equal(out[seam - 100 : seam - 100 + 5334], slow.audio)
    # Frames before the seam keep the old map (playback lags the render cursor).
    assert tl.tempo_at(seam - 1).bpm == 120.0 and tl.tempo_at(seam - 1).bar_at(seam - 1) == 1
    assert tl.tempo_at(seam).bpm == 90.0


def test_first_clip_at_another_tempo_starts_on_the_old_grid_then_sets_the_tempo():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE))
    render(tl, 10)
    fast = make(tl, "fast", 1, bars=1, bpm=150.0)  # 1600 frames
    tl.submit(fast)
    out, events = render(tl, BAR - 10 + 2 * 1600 + 1)
    assert starts(events) == [(BAR, 1, "fast", 0), (BAR + 1600, 2, "fast", 1), (BAR + 3200, 3, "fast", 2)]
    assert not out[: BAR - 10].any()
    assert tl.tempo.bar_frames == 1600 and tl.tempo.bar_frame(2) == BAR + 1600


def test_crossfade_off_is_a_plain_cut_on_the_seam():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE), crossfade_ms=0.0)
    a, b = make(tl, "a", 1), make(tl, "b", 2)
    tl.submit(a)
    out0, events0 = render(tl, 1)
    tl.submit(b)
    out, events = render(tl, 2 * BAR - 1)
    out, events = np.concatenate([out0, out]), events0 + events
    np.testing.assert_array_equal(out[:BAR], a.audio)
    np.testing.assert_array_equal(out[BAR:], b.audio)
    assert starts(events) == [(0, 0, "a", 0), (BAR, 1, "b", 0)]


def test_make_clip_checks_the_length_and_spreads_mono():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE))
    clip = tl.make_clip("m", np.ones(BAR, np.float32), 120.0, 1)
    assert clip.audio.shape == (BAR, 2) and clip.audio.dtype == np.float32
    with pytest.raises(ValueError, match="2000 frames"):
        tl.make_clip("short", np.ones(BAR - 1, np.float32), 120.0, 1)
    with pytest.raises(ValueError):
        tl.submit(type(clip)("raw", np.ones((BAR, 3), np.float32), 120.0, 1))


def test_fade_start_frame_is_the_submission_deadline():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE), crossfade_ms=50.0)
    assert tl.next_seam_frame() == 0
    tl.submit(make(tl, "a", 1))
    render(tl, 10)
    assert tl.next_seam_frame() == BAR
    assert tl.fade_start_frame() == BAR - 50


def test_stop_fades_out_before_a_bar_line_and_stays_silent_until_play():
    from riffengine.audio.timeline import Stopped

    tl = Timeline(TempoMap(120.0, sample_rate=RATE), crossfade_ms=50.0)  # 50-frame fades
    a = make(tl, "a", 1, bars=2)
    tl.submit(a)
    render(tl, 2500)
    tl.stop(2500)  # mid-loop: the sound ends at the next bar line, 4000 (the loop is 2 bars)
    assert tl.stopping_at == 2 * BAR
    out, events = render(tl, 3000, block=333)
    np.testing.assert_array_equal(out[: 1500 - 50], a.audio[2500 : 4000 - 50])  # untouched before the fade
    gains, _ = equal_power_gains(50)
    np.testing.assert_allclose(out[1450:1500], a.audio[3950:4000] * gains[:, None], rtol=1e-6)
    assert not out[1500:].any() and tl.stopped
    assert [e for e in events if isinstance(e, Stopped)] == [Stopped(2 * BAR, 2)]
    b = make(tl, "b", 2)
    tl.submit(b)  # a clip that arrives while stopped waits for play
    out, _ = render(tl, 1000)
    assert not out.any()
    assert tl.play() == 4 * BAR  # the cursor is at 6500
    out, events = render(tl, 2500)
    assert not out[:1500].any()
    np.testing.assert_array_equal(out[1500:2500], b.audio[:1000])  # the queued clip, from sample 0
    assert starts(events) == [(4 * BAR, 4, "b", 0)]


def test_play_before_the_fade_calls_a_stop_off_and_play_after_a_stop_restarts_the_last_loop():
    tl = Timeline(TempoMap(120.0, sample_rate=RATE), crossfade_ms=50.0)
    a = make(tl, "a", 1)
    tl.submit(a)
    render(tl, 2100)
    tl.stop(0)
    assert tl.stopping_at == 2 * BAR and tl.play() is None and tl.stopping_at is None
    out, _ = render(tl, 2000)
    np.testing.assert_array_equal(out, np.concatenate([a.audio[100:], a.audio[:100]]))
    tl.stop(0)
    render(tl, 2000)
    assert tl.stopped and tl.play(not_before=7000) == 4 * BAR
    out, events = render(tl, 4000)
    assert not out[: 4 * BAR - 6100].any()
    np.testing.assert_array_equal(out[1900:3900], a.audio)  # the last loop, from sample 0
    assert starts(events)[0] == (4 * BAR, 4, "a", 0)
