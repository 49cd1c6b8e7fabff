"""The engine live, through a real JACK server (dummy backend), with real-time renders.

The engine plays into JACK for a few seconds while a test-made JACK client captures its ports;
the fake renderer sleeps for its render time. Checked: no underrun, seams on bar lines (from
the events log), the recording equals what JACK received, and SIGTERM of a ``riffengine run``
process fades out, exits 0 and leaves a valid recording.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import numpy as np
import soundfile
from jack_fixtures import JackCapture, assert_received, jack_server  # noqa: F401

from riffengine.config import Settings, merge_overrides
from riffengine.engine import Engine
from riffengine.eventlog import read_events
from riffengine.render.fake import FakeRenderer
from riffengine.script import Step
from riffengine.timing.tempo import loop_frames

RATE = 44100
BPM = 240.0
BAR = loop_frames(1, BPM, RATE)


def test_engine_plays_into_jack_on_the_bar_grid_and_records_what_jack_received(jack_server, tmp_path):
    settings = merge_overrides(
        Settings(),
        {
            "audio.output": "jack",
            "audio.jack_client_name": "riffengine-engine-test",
            "audio.record": str(tmp_path / "rec.wav"),
            "audio.events": str(tmp_path / "events.jsonl"),
            "audio.ring_buffer_seconds": 0.5,
            "tempo.bpm": BPM,
            "loop.bars": 1,
            "osc.enabled": False,
        },
    )
    script = [Step(0, 1.0, None, (("prompt_a/0", "jazz"),)), Step(1, 2.5, None, (("bpm", 200.0),))]
    captures: list[JackCapture] = []

    def connect(engine: Engine) -> None:
        capture = JackCapture(jack_server.name, seconds=12.0, name="engine-capture")
        capture.__enter__()
        capture.connect_from(engine.output.jack_port_names())
        captures.append(capture)

    engine = Engine(
        settings,
        FakeRenderer(seconds=0.2, sleep=True),
        duration=5.0,
        script=script,
        on_output_open=connect,
        signals=False,
    )
    try:
        assert asyncio.run(engine.run()) == 0
        time.sleep(0.05)
        captured = captures[0].recorded().copy()
    finally:
        for capture in captures:
            capture.__exit__(None, None, None)

    underruns = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "underrun"]
    assert engine.ring.underruns == 0 and engine.output.callback_errors == 0, underruns
    recorded, rate = soundfile.read(str(tmp_path / "rec.wav"), dtype="float32", always_2d=True)
    assert rate == RATE and engine.recorder.frames_dropped == 0
    assert len(recorded) == engine.ring.frames_read >= 5 * RATE

    # JACK received exactly what was recorded (the capture was connected before the start).
    nonzero = np.flatnonzero(np.abs(captured).max(axis=1) > 0)
    offset = int(nonzero[0])
    received = captured[offset:]
    k = min(len(received), len(recorded))
    assert k >= 4 * RATE
    # A cycle the server lost (an xrun: the machine, not the engine) shifts the capture from there
    # on: each stretch between xruns equals the recording bit for bit, at the shift it has.
    compared = assert_received(received[:k], recorded, [f - offset for f in captures[0].xrun_frames])
    assert compared >= 2 * RATE, f"xruns at {captures[0].xrun_frames} left {compared} frames (a loaded machine)"

    events = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] != "beat"]
    assert not [e for e in events if e["kind"] in ("underrun", "render_failed")]
    starts = [e for e in events if e["kind"] == "loop_started"]
    assert [s["bar"] for s in starts] == list(range(len(starts))) and len(starts) >= 5
    for a, b in zip(starts, starts[1:]):  # seams on bar multiples of each loop's tempo
        assert b["frame"] - a["frame"] == loop_frames(1, a["bpm"], RATE) == a["frames"]
    new = [s for s in starts if s["repeat"] == 0]
    assert len(new) == 3 and new[-1]["bpm"] == 200.0
    tempo = [e for e in events if e["kind"] == "tempo"]
    assert [t["bar"] for t in tempo] == [new[-1]["bar"]]
    # each new loop starts with the fake's burst, exactly on its seam
    for s in new:
        assert np.abs(recorded[s["frame"] : s["frame"] + 8]).min() > 0.89


def test_mute_is_heard_ahead_of_the_look_ahead_ring(jack_server, tmp_path):
    """The ring holds 2 s of audio ahead; mute is applied after it, in the process callback."""
    settings = merge_overrides(
        Settings(),
        {
            "audio.output": "jack",
            "audio.jack_client_name": "riffengine-mute-test",
            "audio.record": str(tmp_path / "rec.wav"),
            "audio.ring_buffer_seconds": 2.0,
            "tempo.bpm": BPM,
            "loop.bars": 1,
            "osc.enabled": False,
        },
    )
    mute_at = 1.5
    engine = Engine(
        settings,
        FakeRenderer(seconds=0.2, sleep=True),
        duration=4.5,
        script=[Step(0, mute_at, None, (("mute", True),))],
        signals=False,
    )
    assert asyncio.run(engine.run()) == 0
    recorded, _ = soundfile.read(str(tmp_path / "rec.wav"), dtype="float32", always_2d=True)
    level = np.abs(recorded).max(axis=1)
    step_frame = round(mute_at * RATE)
    assert level[step_frame - RATE // 2 : step_frame].max() > 0.1  # playing before the mute
    silent = np.flatnonzero(level[step_frame:] == 0.0)
    assert silent.size, "the mute was never heard"
    # Heard long before the 2 s of queued audio could have played out (the old path's delay).
    assert silent[0] < RATE // 2
    assert level[step_frame + silent[0] : step_frame + 2 * RATE].max() == 0.0
    assert engine.ring.underruns == 0 and engine.output.callback_errors == 0


def test_a_stalled_process_is_reported_as_xruns_in_events_and_figures(jack_server, tmp_path):
    """Hold the GIL for 0.3 s: JACK's process callback cannot run, cycles are missed."""
    settings = merge_overrides(
        Settings(),
        {
            "audio.output": "jack",
            "audio.jack_client_name": "riffengine-xrun-test",
            "audio.events": str(tmp_path / "events.jsonl"),
            "tempo.bpm": BPM,
            "loop.bars": 1,
            "osc.enabled": False,
        },
    )

    def stall() -> None:
        interval = sys.getswitchinterval()
        sys.setswitchinterval(5.0)  # no other thread gets the GIL while this spins
        try:
            end = time.perf_counter() + 0.3
            while time.perf_counter() < end:
                pass
        finally:
            sys.setswitchinterval(interval)

    def schedule(engine: Engine) -> None:
        asyncio.get_running_loop().call_later(1.5, stall)

    engine = Engine(
        settings, FakeRenderer(seconds=0.2, sleep=True), duration=3.0, on_output_open=schedule, signals=False
    )
    assert asyncio.run(engine.run()) == 0
    figures = engine.figures()
    assert figures["xruns"] >= 1
    events = read_events(tmp_path / "events.jsonl")
    reported = [e for e in events if e["kind"] == "xrun"]
    assert reported and reported[-1]["count"] == figures["xruns"]
    assert [e for e in events if e["kind"] == "stopped"][0]["xruns"] == figures["xruns"]


def test_sigterm_fades_out_exits_0_and_leaves_a_valid_recording(jack_server, tmp_path):
    rec = tmp_path / "rec.wav"
    events = tmp_path / "events.jsonl"
    env = dict(os.environ, JACK_DEFAULT_SERVER=jack_server.name, JACK_NO_START_SERVER="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "riffengine.cli",
            "run",
            "--fake-renderer",
            "--no-osc",
            "--output",
            "jack",
            "--record",
            str(rec),
            "--events",
            str(events),
            "--bpm",
            "240",
            "--bars",
            "1",
            "--set",
            "audio.jack_client_name=riffengine-sigterm",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        starts = 0
        while starts < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            if events.exists():
                starts = sum(1 for e in read_events(events) if e["kind"] == "loop_started")
        assert starts >= 3, proc.stdout.read().decode() if proc.poll() is not None else "no loops"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"SIGTERM to exit: {elapsed:.2f} s")
    assert code == 0, proc.stdout.read().decode()
    audio, rate = soundfile.read(str(rec), dtype="float32", always_2d=True)
    assert rate == RATE and len(audio) >= 2 * RATE
    assert np.abs(audio[-512:]).max() < 1e-3  # faded out, then silence
    log = read_events(events)
    assert log[-1]["kind"] == "stopped" and log[-1]["underruns"] == 0
