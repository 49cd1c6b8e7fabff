"""MIDI clock: the DLL and tick-schedule math, then clock in and out through JACK MIDI ports.

Tolerances (correctness checks on a jittered clock, not speed checks):

- DLL alone, ticks jittered by +-2 ms (seeded RNG): tempo within 0.15 BPM and predicted ticks
  within 1 ms of the true grid, 4 s after a 120 -> 128 BPM step.
- Through JACK (dummy server, 256-frame periods: MIDI arrives quantised to 5.8 ms periods and
  up to two periods late), sender jitter +-2 ms: tempo within 0.5 BPM, and the follower's bar
  start within 25 ms of the sender's (mostly the JACK periods' latency).
- Clock out over 3 s at 120 BPM: 144 ticks, +-3 (the window edges), Start and Stop received.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from jack_fixtures import jack_server  # noqa: F401  (a module-scoped JACK dummy server)

from riffengine.timing.midiclock import (
    PPQN,
    TEMPO_WINDOW,
    MidiClockIn,
    MidiClockOut,
    bar_tick,
    bpm_from_period,
    dll_locked,
    dll_start,
    dll_update,
    first_tick_at_or_after,
    period_from_bpm,
    tick_frame,
    tick_schedule,
    window_period,
)
from riffengine.timing.sources import FrameClock
from riffengine.timing.tempo import TempoMap

SR = 44100
JACK_BACKEND = "mido.backends.rtmidi/UNIX_JACK"


def jittered_ticks(rng: random.Random, t0: float, segments: list[tuple[float, float]], jitter: float):
    """(true_time, jittered_time) of ticks: ``segments`` of (bpm, seconds), contiguous."""
    out, t = [], t0
    for bpm, seconds in segments:
        period = period_from_bpm(bpm)
        for _ in range(round(seconds / period)):
            out.append((t, t + rng.uniform(-jitter, jitter)))
            t += period
    return out


# --- pure math -------------------------------------------------------------------------------


def test_dll_follows_a_jittered_clock_through_a_tempo_step():
    rng = random.Random(6)
    ticks = jittered_ticks(rng, 10.0, [(120.0, 6.0), (128.0, 6.0)], jitter=0.002)
    dll = dll_start(ticks[0][1], period_from_bpm(125.0))  # a wrong first guess
    history, predicted = [], [dll.next_time]
    for true, measured in ticks[1:]:
        dll = dll_update(dll, measured)
        predicted.append(dll.next_time)
        history.append((true, dll, bpm_from_period(window_period(predicted[-TEMPO_WINDOW - 1 :]))))
    at_120 = [bpm for t, d, bpm in history if 14.0 < t < 16.0]
    at_128 = [bpm for t, d, bpm in history if t > 20.0]
    assert all(abs(bpm - 120.0) < 0.15 for bpm in at_120)
    assert all(abs(bpm - 128.0) < 0.15 for bpm in at_128)
    assert dll_locked(history[-1][1])
    # the prediction of the next tick against the un-jittered grid
    period = period_from_bpm(128.0)
    assert all(abs(d.next_time - (t + period)) < 0.001 for t, d, _ in history if t > 20.0)


def test_tick_schedule_counts_and_places_ticks():
    tempo = TempoMap(120.0, sample_rate=SR)  # 22050 frames per beat
    assert tick_frame(tempo, 24) == 22050.0
    assert len(tick_schedule(tempo, 0, 10 * SR)) == 10 * 2 * PPQN
    assert first_tick_at_or_after(tempo, 1.0) == 1
    assert first_tick_at_or_after(tempo, tick_frame(tempo, 7)) == 7
    # across a tempo change at a bar line, ticks stay on whole beats of each map
    later = tempo.with_tempo(128.0, at_frame=tempo.bar_frame(2))
    frames = tick_schedule(later, later.anchor_frame, later.anchor_frame + later.bar_frames)
    assert len(frames) == 4 * PPQN and frames[0] == later.anchor_frame
    assert bar_tick(later, later.anchor_frame + 1) == 3 * 4 * PPQN


def test_start_songpos_continue_set_the_bar_phase():
    follower = MidiClockIn("unused", 4, FrameClock.free_running(SR, start=0.0))
    period = period_from_bpm(120.0)
    t = 0.0
    for _ in range(60):  # clock while stopped: tempo only
        follower.handle("clock", t)
        t += period
    assert follower.estimate()[2] is False
    follower.handle("start", t - period / 2)
    bar0 = t
    for _ in range(100):
        follower.handle("clock", t)
        t += period
    bpm, bar_start, known = follower.estimate()
    assert known and bpm == pytest.approx(120.0, abs=0.01)
    phase = (bar_start - bar0) % 2.0
    assert phase == pytest.approx(0.0, abs=1e-6) or phase == pytest.approx(2.0, abs=1e-6)
    follower.handle("stop", t)
    follower.handle("songpos", t, pos=4)  # a quarter of a 4/4 bar: 16ths -> beat 1
    follower.handle("continue", t)
    follower.handle("clock", t)  # this tick is song position 24: one beat into the bar
    bpm, bar_start, _ = follower.estimate()
    assert bar_start == pytest.approx(t - 0.5, abs=1e-3)


# --- through JACK MIDI -----------------------------------------------------------------------


def send_clock(port, segments, rng, jitter, stop: threading.Event, marks: list):
    """Send Start then clock ticks at ``segments`` (bpm, seconds), each jittered; records the
    intended (un-jittered) time of every bar start in ``marks``."""
    import mido

    clock = mido.Message("clock")
    t = time.monotonic() + 0.2
    port.send(mido.Message("start"))
    tick = 0
    for bpm, seconds in segments:
        period = period_from_bpm(bpm)
        for _ in range(round(seconds / period)):
            if stop.is_set():
                return
            if tick % (4 * PPQN) == 0:
                marks.append((t, bpm))
            delay = t + rng.uniform(-jitter, jitter) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            port.send(clock)
            tick += 1
            t += period


@pytest.mark.usefixtures("jack_server")
def test_clock_in_follows_120_then_128_through_jack():
    import mido

    backend = mido.Backend(JACK_BACKEND, load=True)
    sender = backend.open_output("clock-sender", virtual=True)
    frame_clock = FrameClock.free_running(SR)
    follower = MidiClockIn("clock-sender", 4, frame_clock, backend=JACK_BACKEND)
    follower.start()
    marks: list = []
    stop = threading.Event()
    thread = threading.Thread(
        target=send_clock, args=(sender, [(120.0, 4.0), (128.0, 5.0)], random.Random(128), 0.002, stop, marks)
    )
    try:
        thread.start()
        checks = []
        while thread.is_alive():
            time.sleep(0.25)
            reading = follower.reading()
            if reading is not None and marks:
                checks.append((time.monotonic(), reading, list(marks)))
        thread.join()
    finally:
        stop.set()
        follower.close()
        sender.close()

    assert follower.ticks > 400

    def check(after: float, before: float, bpm: float):
        window = [(t, r, m) for t, r, m in checks if after < t - marks[0][0] < before]
        assert window, "no readings in the window"
        for _t, r, m in window:
            assert r.locked and r.phase_known
            assert r.bpm == pytest.approx(bpm, abs=0.5)
            ref = m[-1][0]  # the sender's last bar start before this reading
            ours = frame_clock.time_at(r.bar_frame)
            bar = 60.0 * 4 / bpm
            offset = (ours - ref + bar / 2) % bar - bar / 2
            assert abs(offset) < 0.025, f"bar start off by {offset * 1000:.1f} ms at {bpm} BPM"

    check(2.5, 4.0, 120.0)
    check(7.0, 9.0, 128.0)


@pytest.mark.usefixtures("jack_server")
def test_clock_out_is_received_and_counted():
    import mido

    backend = mido.Backend(JACK_BACKEND, load=True)
    received: list[tuple[str, float]] = []
    lock = threading.Lock()

    def receive(msg):
        with lock:
            received.append((msg.type, time.monotonic()))

    listener = backend.open_input("clock-listener", virtual=True, callback=receive)
    tempo = TempoMap(120.0, sample_rate=SR)
    out = MidiClockOut("clock-listener", lambda frame: tempo, FrameClock.free_running(SR), backend=JACK_BACKEND)
    try:
        out.start()
        time.sleep(0.3)
        out.play()
        time.sleep(3.0)
        out.stop_transport()
        time.sleep(0.3)
    finally:
        out.close()
        listener.close()
    kinds = [k for k, _ in received]
    assert "start" in kinds and "stop" in kinds
    i_start, i_stop = kinds.index("start"), kinds.index("stop")
    assert i_start < i_stop
    t_start, t_stop = received[i_start][1], received[i_stop][1]
    ticks = sum(1 for k, t in received if k == "clock" and t_start <= t <= t_stop)
    expected = (t_stop - t_start) * 2 * PPQN
    assert abs(ticks - expected) <= 3, (ticks, expected)
    assert out.skipped == 0 or out.sent > 0
