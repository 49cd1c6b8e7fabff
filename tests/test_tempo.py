"""Tempo map math: whole-frame bar grid, exact loop lengths, continuity across tempo changes."""

import pytest

from riffengine.errors import UserError
from riffengine.timing.tempo import TempoMap, bar_frames_for, loop_frames


def test_whole_bar_lengths_at_exact_and_fractional_tempi():
    assert TempoMap(120.0).bar_frames == 88200
    assert TempoMap(120.0).frames_per_beat() == 22050.0
    # 127 bpm: nominal bar is 83338.58 frames -> 83339; the effective tempo absorbs the rounding.
    tm = TempoMap(127.0)
    assert tm.bar_frames == 83339
    assert tm.frames_per_bar() == 83339.0
    assert tm.frames_per_beat() == pytest.approx(83339 / 4)
    assert abs(tm.effective_bpm - 127.0) < 127.0 * 1e-5
    # Meter enters the bar length.
    assert TempoMap(120.0, beats_per_bar=3).bar_frames == 66150


@pytest.mark.parametrize("bpm", [60.0, 97.3, 120.0, 127.0, 133.333, 174.0])
@pytest.mark.parametrize("bars", [1, 2, 4, 8])
def test_loop_of_n_bars_is_n_whole_bars_and_seams_stay_on_bar_lines(bpm, bars):
    tm = TempoMap(bpm)
    n = loop_frames(bars, bpm, 44100)
    assert isinstance(n, int)
    assert n == bars * tm.bar_frames == tm.loop_frames(bars)
    # A thousand back-to-back loops never drift off the grid.
    for k in (1, 2, 17, 1000):
        seam = k * n
        assert tm.is_bar_line(seam)
        assert tm.bar_at(seam) == k * bars
        assert tm.bar_frame(k * bars) == seam
        assert tm.beat_at(seam) == k * bars * 4


def test_bar_and_beat_positions():
    tm = TempoMap(120.0)
    assert tm.beat_at(0) == 0.0
    assert tm.beat_at(22050) == 1.0
    assert tm.beat_at(11025) == 0.5
    assert tm.bar_at(0) == 0
    assert tm.bar_at(88199) == 0
    assert tm.bar_at(88200) == 1
    assert tm.bar_at(-1) == -1
    assert tm.bar_position(44100) == 0.5


def test_next_bar_frame_is_strictly_after():
    tm = TempoMap(127.0)
    b = tm.bar_frames
    assert tm.next_bar_frame(0) == b
    assert tm.next_bar_frame(b - 1) == b
    assert tm.next_bar_frame(b) == 2 * b
    assert tm.bar_line_at_or_after(b) == b
    assert tm.bar_line_at_or_after(b + 1) == 2 * b


def test_anchor_with_fractional_beat_keeps_bar_lines_whole_and_evenly_spaced():
    # Frame 1000 is beat 2.5 (e.g. phase taken from a Link session).
    tm = TempoMap(120.0, anchor_frame=1000, anchor_beat=2.5)
    assert tm.beat_at(1000) == 2.5
    first = tm.next_bar_frame(1000)
    assert first == 1000 + int(1.5 * 22050)
    assert tm.next_bar_frame(first) - first == tm.bar_frames
    assert tm.beat_at(first) == 4.0


def test_tempo_change_at_a_bar_line_keeps_bar_and_beat_continuity():
    old = TempoMap(120.0)
    seam = old.bar_frame(8)
    new = old.with_tempo(127.0, seam)
    assert new.is_bar_line(seam)
    assert new.bar_at(seam) == 8
    assert new.beat_at(seam) == old.beat_at(seam) == 32.0
    # Bars after the change have the new length, starting from the seam.
    assert new.next_bar_frame(seam) == seam + bar_frames_for(127.0, 44100)
    assert new.bar_frame(12) == seam + 4 * new.bar_frames
    # A second change later on still lands on the grid.
    seam2 = new.bar_frame(12)
    newer = new.with_tempo(90.0, seam2)
    assert newer.bar_at(seam2) == 12 and newer.beat_at(seam2) == 48.0
    assert newer.bar_frame(13) - seam2 == bar_frames_for(90.0, 44100)


def test_tempo_change_mid_bar_keeps_beat_continuity():
    old = TempoMap(120.0)
    at = 22050 * 5 + 7
    new = old.with_tempo(140.0, at)
    assert new.beat_at(at) == pytest.approx(old.beat_at(at), abs=1e-12)
    assert new.bar_position(at) == pytest.approx(old.bar_position(at), abs=1e-4)
    assert new.beat_at(at + new.bar_frames) == pytest.approx(old.beat_at(at) + 4, abs=1e-9)


def test_meter_change_only_on_bar_lines():
    old = TempoMap(120.0)
    new = old.with_tempo(120.0, old.bar_frame(2), beats_per_bar=3)
    assert new.bar_at(old.bar_frame(2)) == 2
    assert new.beat_at(old.bar_frame(2)) == 8.0
    assert new.bar_frame(3) - new.bar_frame(2) == 66150
    with pytest.raises(UserError, match="bar line"):
        old.with_tempo(120.0, 5, beats_per_bar=3)


@pytest.mark.parametrize("bad", [0, -10, 5.0, 1000, float("nan"), "fast"])
def test_bad_bpm_is_a_user_error_naming_bpm(bad):
    with pytest.raises(UserError, match="bpm"):
        TempoMap(bad)


def test_bad_bars_and_meter_are_user_errors():
    with pytest.raises(UserError, match="bars"):
        loop_frames(0, 120.0, 44100)
    with pytest.raises(UserError, match="beats_per_bar"):
        TempoMap(120.0, beats_per_bar=0)
