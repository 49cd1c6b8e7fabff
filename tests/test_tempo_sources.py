"""Tempo sources: the grid math, the frame clock, and switching sources live (no devices)."""

from __future__ import annotations

import sys
import time

import pytest

from riffengine.errors import UserError
from riffengine.state import initial_state
from riffengine.store import StateStore
from riffengine.timing.sources import (
    FrameClock,
    SyncReading,
    TempoSync,
    aligned_map,
    loop_bpm_to_align,
    phase_offset_frames,
    reference_bar_after,
    reference_bar_near,
)
from riffengine.timing.tempo import TempoMap

SR = 44100


def reading(bpm: float = 120.0, bar_frame: float = 1000.0, locked: bool = True) -> SyncReading:
    return SyncReading(bpm=bpm, bar_frame=bar_frame, beats_per_bar=4, sample_rate=SR, locked=locked)


# --- grid math -------------------------------------------------------------------------------


def test_reference_bars():
    r = reading(120.0, 1000.0)  # 2 s bars = 88200 frames
    assert r.bar_length == 88200.0
    assert reference_bar_near(r, 1000 + 88200 * 3 + 40000) == 1000 + 88200 * 3
    assert reference_bar_near(r, 1000 + 88200 * 3 + 50000) == 1000 + 88200 * 4
    assert reference_bar_near(r, -80000) == 1000 - 88200
    assert reference_bar_after(r, 1000) == 1000 + 88200
    assert reference_bar_after(r, 999.5) == 1000


def test_phase_offset_is_signed_and_wrapped():
    tempo = TempoMap(120.0, sample_rate=SR)  # bars at 0, 88200, ...
    assert phase_offset_frames(tempo, reading(bar_frame=100.0), 88200 * 5) == pytest.approx(-100.0)
    assert phase_offset_frames(tempo, reading(bar_frame=-250.0), 88200 * 5 + 10) == pytest.approx(250.0)
    # a reference half a bar away is at most half a bar off either way
    assert abs(phase_offset_frames(tempo, reading(bar_frame=44100.0), 88200 * 2)) <= 44100.0


def test_aligned_map_puts_bar_lines_on_the_reference():
    r = reading(128.0, 12345.6)
    tempo = aligned_map(r, near_frame=500_000, bar=7)
    assert tempo.bar_at(tempo.anchor_frame) == 7
    assert abs(tempo.anchor_frame - reference_bar_near(r, 500_000)) <= 0.5
    assert abs(phase_offset_frames(tempo, r, 600_000)) <= 1.0


def test_loop_bpm_closes_the_phase_gap_over_loops():
    """Each loop's tempo is chosen at its seam; the error shrinks to the grid's rounding (<= bars/2
    frames) and a large initial error is taken up over several loops at most 2 % off tempo."""
    r = reading(120.0, bar_frame=0.0)
    seam, bars = 30_000, 2  # riffengine's seam is 30000 frames late: about a third of a bar
    errors = []
    for _ in range(12):
        bpm = loop_bpm_to_align(r, seam, bars)
        assert abs(bpm / 120.0 - 1) <= 0.021  # bar length within 2 %
        seam += TempoMap(bpm, sample_rate=SR).loop_frames(bars)
        errors.append(seam - reference_bar_near(r, seam))
    assert abs(errors[-1]) <= bars / 2 + 0.5
    assert abs(errors[0]) < 30_000


def test_loop_bpm_when_in_phase_is_the_reference_tempo():
    r = reading(97.0, bar_frame=5.0)
    seam = round(reference_bar_after(r, 1_000_000))
    bpm = loop_bpm_to_align(r, seam, 4)
    assert bpm == pytest.approx(97.0, abs=0.01)


# --- frame clock -----------------------------------------------------------------------------


class FakeOutput:
    realtime = True
    sample_rate = SR

    def __init__(self) -> None:
        self.last_dac_time = 50.0  # a stream clock 50 s behind... whatever PortAudio uses
        self.last_dac_frame = 44100

        class Stream:
            time = 50.0

        self._stream = Stream()


def test_frame_clock_maps_through_the_dac_pair_and_the_stream_clock_offset():
    out = FakeOutput()
    now = time.monotonic()
    out._stream.time = out.last_dac_time  # the stream clock reads 50.0 now
    clock = FrameClock.for_output(out)
    # frame 44100 reaches the DAC at stream time 50.0, which is host time ~now
    assert clock.time_at(44100) == pytest.approx(now, abs=0.01)
    assert clock.time_at(44100 + SR) - clock.time_at(44100) == pytest.approx(1.0, abs=1e-3)
    assert clock.frame_at(clock.time_at(123456)) == pytest.approx(123456, abs=1.0)


def test_frame_clock_free_running():
    clock = FrameClock.free_running(SR, start=100.0)
    assert clock.frame_at(101.5) == pytest.approx(1.5 * SR)
    assert clock.time_at(SR * 2) == pytest.approx(102.0)


def test_frame_clock_refuses_a_file_output():
    class FileOut:
        realtime = False
        sample_rate = SR

    with pytest.raises(UserError, match="tempo.source"):
        FrameClock.for_output(FileOut())


# --- switching sources -----------------------------------------------------------------------


class FakeSource:
    def __init__(self, name: str) -> None:
        self.name = name
        self.locked = True
        self.started = self.closed = False
        self.published: list[float] = []
        self.next: SyncReading | None = None

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def reading(self) -> SyncReading | None:
        return self.next

    def publish_tempo(self, bpm: float) -> None:
        self.published.append(bpm)


def make_sync(source: str = "internal"):
    store = StateStore(initial_state())
    made: dict[str, FakeSource] = {}

    def factory(name: str) -> FakeSource:
        made[name] = FakeSource(name)
        return made[name]

    return store, made, TempoSync(store, factory, source)


def test_internal_source_status():
    store, _, sync = make_sync()
    assert sync.status() == {"tempo_source": "internal", "tempo_locked": True}
    assert sync.poll() is None


def test_switch_live_and_follow_into_the_store():
    store, made, sync = make_sync()
    seen = []
    store.subscribe(lambda old, new, source: seen.append((new.values["bpm"], source)))
    sync.switch("midi")
    assert made["midi"].started
    made["midi"].next = reading(127.996)
    sync.poll()
    assert store.state.values["bpm"] == 128.0 and seen[-1] == (128.0, "midi")
    made["midi"].next = reading(128.003)  # less than BPM_STEP: no new change
    sync.poll()
    assert len(seen) == 1
    made["midi"].locked = False
    made["midi"].next = reading(90.0, locked=False)  # an unlocked reading is not followed
    sync.poll()
    assert store.state.values["bpm"] == 128.0
    assert sync.status() == {"tempo_source": "midi", "tempo_locked": False}
    sync.switch("link")
    assert made["midi"].closed and sync.status()["tempo_source"] == "link"
    sync.switch("internal")
    assert made["link"].closed and sync.status() == {"tempo_source": "internal", "tempo_locked": True}


def test_local_tempo_change_is_published_to_the_source():
    store, made, sync = make_sync("link")
    store.apply({"bpm": 133.0}, source="osc")
    assert made["link"].published == [133.0]
    made["link"].next = reading(140.0)
    sync.poll()  # the follower's own change is not echoed back
    assert made["link"].published == [133.0]


def test_unknown_source_is_a_user_error():
    _, _, sync = make_sync()
    with pytest.raises(UserError, match="internal, link, midi"):
        sync.switch("ntp")


def test_midi_source_without_a_port_names_the_setting():
    from riffengine.config import Settings
    from riffengine.timing.follow import default_factory

    factory = default_factory(Settings(), FrameClock.free_running(SR))
    with pytest.raises(UserError, match="tempo.midi_clock_in"):
        factory("midi")


def test_missing_aalink_says_how_to_install(monkeypatch):
    from riffengine.timing import link

    monkeypatch.setitem(sys.modules, "aalink", None)
    with pytest.raises(UserError, match=r"pip install 'riffengine\[link\]'"):
        link.LinkFollower(120.0, 4, FrameClock.free_running(SR))
