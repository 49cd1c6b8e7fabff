"""The engine's tempo-follow math (riffengine/timing/follow.py): phase error, loop tempo, realign.

A 120 BPM, 4/4 reference at 48 kHz has bars of exactly 96000 frames; the reference's bars
start on frame 1000. Every expectation below is exact.
"""

from __future__ import annotations

import pytest

from riffengine.timing.follow import (
    ALIGN_TOLERANCE_SECONDS,
    CATCH_UP_CHANGE,
    CATCH_UP_FRACTION,
    DRIFT_CHANGE,
    loop_bpm,
    needs_realign,
    phase_error,
)
from riffengine.timing.sources import SyncReading
from riffengine.timing.tempo import bar_frames_for

SR = 48000
BAR = 96000
START = 1000
TOLERANCE = round(ALIGN_TOLERANCE_SECONDS * SR)  # 96 frames


def reading(beats_per_bar: int = 4) -> SyncReading:
    return SyncReading(bpm=120.0, bar_frame=float(START), beats_per_bar=beats_per_bar, sample_rate=SR, locked=True)


def bpm_for_bar(frames: int) -> float:
    """The tempo whose 4/4 bar is ``frames`` frames at 48 kHz."""
    return SR * 60.0 * 4 / frames


def test_the_reference_bar_is_whole_frames():
    assert reading().bar_length == BAR
    assert TOLERANCE == 96


# --- phase_error ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame, expected",
    [
        (START, 0.0),
        (START + 3 * BAR, 0.0),
        (START + 500, 500.0),
        (START + 2 * BAR - 300, -300.0),
        (START - 250, -250.0),
        (START + BAR // 2 - 1, BAR // 2 - 1),  # just before half a bar: still after the earlier bar
        (START + BAR // 2 + 1, -(BAR // 2 - 1)),  # just after: before the later bar
    ],
)
def test_phase_error_is_signed_distance_from_the_nearest_bar(frame, expected):
    assert phase_error(reading(), frame) == expected


# --- loop_bpm ------------------------------------------------------------------------------


def test_loop_bpm_without_a_reading_is_the_session_tempo():
    assert loop_bpm(None, seam=START + 123, bars=4, bpm=97.5, beats_per_bar=4) == 97.5


def test_loop_bpm_with_another_meter_is_the_session_tempo():
    assert loop_bpm(reading(beats_per_bar=3), seam=START + 123, bars=4, bpm=97.5, beats_per_bar=4) == 97.5


def test_loop_bpm_on_the_grid_is_the_reference_tempo():
    assert loop_bpm(reading(), seam=START + BAR, bars=4, bpm=97.5, beats_per_bar=4) == 120.0


def test_loop_bpm_absorbs_a_small_late_seam_over_the_loop():
    """480 frames late over 4 bars: each bar 120 frames short, so the loop ends on the grid."""
    bpm = loop_bpm(reading(), seam=START + 480, bars=4, bpm=97.5, beats_per_bar=4)
    assert bpm == bpm_for_bar(BAR - 120)
    assert bar_frames_for(bpm, SR, 4) == BAR - 120


def test_loop_bpm_absorbs_an_early_seam_by_slowing_down():
    bpm = loop_bpm(reading(), seam=START - 400, bars=2, bpm=97.5, beats_per_bar=4)
    assert bar_frames_for(bpm, SR, 4) == BAR + 200
    assert bpm < 120.0


def test_loop_bpm_limits_a_moderate_error_to_the_drift_change():
    """4 % of a bar late (below the catch-up threshold): the bar shrinks by 2 % at most."""
    late = round(0.04 * BAR)
    assert late / BAR < CATCH_UP_FRACTION
    bpm = loop_bpm(reading(), seam=START + late, bars=1, bpm=97.5, beats_per_bar=4)
    assert bar_frames_for(bpm, SR, 4) == round(BAR * (1 - DRIFT_CHANGE))  # 94080


def test_loop_bpm_catches_up_a_large_error_within_the_loop():
    """10 % of a bar late (joining a session): taken up at once, within the catch-up change."""
    late = round(0.10 * BAR)
    assert late / BAR > CATCH_UP_FRACTION and late / BAR < CATCH_UP_CHANGE
    bpm = loop_bpm(reading(), seam=START + late, bars=1, bpm=97.5, beats_per_bar=4)
    assert bar_frames_for(bpm, SR, 4) == BAR - late  # 86400
    assert bpm == bpm_for_bar(BAR - late)


def test_loop_bpm_limits_a_huge_error_to_the_catch_up_change():
    """40 % of a bar late: the nearest target bar is the next one; the loop stretches 25 %."""
    late = round(0.40 * BAR)
    bpm = loop_bpm(reading(), seam=START + late, bars=1, bpm=97.5, beats_per_bar=4)
    assert bar_frames_for(bpm, SR, 4) == round(BAR * (1 - CATCH_UP_CHANGE))  # 72000


# --- needs_realign -------------------------------------------------------------------------


def test_needs_realign_without_a_usable_reading_is_false():
    assert needs_realign(None, seam=START + 5000, loop_frames=4 * BAR, sample_rate=SR, beats_per_bar=4) is False
    assert (
        needs_realign(reading(beats_per_bar=3), seam=START + 5000, loop_frames=4 * BAR, sample_rate=SR, beats_per_bar=4)
        is False
    )


def test_needs_realign_on_the_grid_is_false():
    assert needs_realign(reading(), seam=START + BAR, loop_frames=4 * BAR, sample_rate=SR, beats_per_bar=4) is False


@pytest.mark.parametrize("offset", [TOLERANCE, -TOLERANCE])
def test_needs_realign_at_the_tolerance_is_false(offset):
    assert (
        needs_realign(reading(), seam=START + BAR + offset, loop_frames=4 * BAR, sample_rate=SR, beats_per_bar=4)
        is False
    )


@pytest.mark.parametrize("offset", [TOLERANCE + 1, -TOLERANCE - 1])
def test_needs_realign_past_the_tolerance_at_the_seam_is_true(offset):
    assert (
        needs_realign(reading(), seam=START + BAR + offset, loop_frames=4 * BAR, sample_rate=SR, beats_per_bar=4)
        is True
    )


def test_needs_realign_when_the_repeated_loop_would_drift_off():
    """The seam is on the grid but the loop is 97 frames long: its repeat would land off it."""
    assert (
        needs_realign(reading(), seam=START + BAR, loop_frames=4 * BAR + TOLERANCE + 1, sample_rate=SR, beats_per_bar=4)
        is True
    )
    assert (
        needs_realign(reading(), seam=START + BAR, loop_frames=4 * BAR + TOLERANCE, sample_rate=SR, beats_per_bar=4)
        is False
    )


def test_needs_realign_tolerance_scales_with_the_sample_rate():
    """The tolerance is in seconds: 97 frames at 96 kHz is within 2 ms."""
    fast = SyncReading(bpm=120.0, bar_frame=float(START), beats_per_bar=4, sample_rate=2 * SR, locked=True)
    assert (
        needs_realign(
            fast, seam=START + 2 * BAR + TOLERANCE + 1, loop_frames=8 * BAR, sample_rate=2 * SR, beats_per_bar=4
        )
        is False
    )
