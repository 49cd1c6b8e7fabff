"""The engine end to end through the .wav output: scripted sessions, faster than real time.

With the fake renderer a session is deterministic to the frame (render time is simulated), so
these tests check the timing logic exactly: seams on bar lines, tempo changes at the next
seam, and late, raising, NaN and silent renders (the last good loop keeps playing, the next
render recovers). One session runs the tiny model (the real render path). The command line is
checked for its user errors (exit 2, one line).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile

from riffengine import cli
from riffengine.config import Settings, merge_overrides
from riffengine.engine import Engine
from riffengine.eventlog import read_events
from riffengine.render.fake import BURST_FRAMES, FakeRenderer
from riffengine.script import Step
from riffengine.timing.tempo import loop_frames

RATE = 44100
BPM = 240.0  # one bar = 1 s
BAR = loop_frames(1, BPM, RATE)


def settings_for(tmp_path, **extra) -> Settings:
    values = {
        "audio.output": str(tmp_path / "out.wav"),
        "audio.record": str(tmp_path / "rec.wav"),
        "audio.events": str(tmp_path / "events.jsonl"),
        "tempo.bpm": BPM,
        "loop.bars": 1,
        "osc.enabled": False,
        "render.safety_margin_ms": 100.0,
    }
    values.update(extra)
    return merge_overrides(Settings(), values)


def step(i, seconds, **changes) -> Step:
    return Step(i, seconds, None, tuple(changes.items()))


def session(tmp_path, script=(), duration=8.0, renderer=None, **extra):
    """Run a file session; returns (audio, events without beats, beats)."""
    settings = settings_for(tmp_path, **extra)
    engine = Engine(settings, renderer or FakeRenderer(), duration=duration, script=script, signals=False)
    assert asyncio.run(engine.run()) == 0
    audio, rate = soundfile.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)
    assert rate == RATE
    events = read_events(tmp_path / "events.jsonl")
    return audio, [e for e in events if e["kind"] != "beat"], [e for e in events if e["kind"] == "beat"], engine


def kinds(events, kind):
    return [e for e in events if e["kind"] == kind]


def assert_never_silent(audio, end, block=441, floor=0.1):
    """Every block (10 ms by default) before the fade-out holds sound."""
    blocks = audio[: end - end % block].reshape(-1, block, 2)
    rms = np.sqrt((blocks**2).mean(axis=(1, 2)))
    assert rms.min() > floor, f"quiet block at {int(np.argmin(rms)) * block}"


def assert_contiguous_on_bars(starts):
    """Loops follow each other without gap, each on a bar line of its own tempo."""
    for a, b in zip(starts, starts[1:]):
        length = loop_frames(1, a["bpm"], RATE)
        assert b["frame"] - a["frame"] == length == a["frames"]
        assert b["bar"] == a["bar"] + 1


def assert_downbeats(audio, starts):
    """Each loop's first sample (the fake's burst at full gain) lies exactly on its seam."""
    for s in starts:
        f = s["frame"]
        if f + BURST_FRAMES < len(audio):
            assert np.abs(audio[f : f + 8]).min() == pytest.approx(0.9, abs=1e-6), f
            if f > 0:
                assert np.abs(audio[f - 1]).max() < 0.9  # before the seam: the old loop


def test_scripted_session_tempo_change_at_the_next_seam(tmp_path):
    script = [step(0, 2.0, **{"prompt_a/0": "jazz"}), step(1, 4.5, bpm=180.0)]
    audio, events, beats, engine = session(tmp_path, script, duration=8.0)
    assert len(audio) == 8 * RATE
    recorded, _ = soundfile.read(str(tmp_path / "rec.wav"), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(recorded, audio)

    starts = kinds(events, "loop_started")
    assert_contiguous_on_bars(starts)
    assert_downbeats(audio, starts)
    assert_never_silent(audio, len(audio) - int(0.1 * RATE))
    assert np.abs(audio[-1]).max() < 0.01  # faded out at the end

    # The prompt change at 2.0 s: the planner says bar 3 and it is heard there.
    started = [e for e in kinds(events, "render") if e["phase"] == "started"]
    assert started[0]["heard_at_bar"] == 3 and started[0]["mode"] == "render"
    new = [s for s in starts if s["repeat"] == 0]
    assert [(s["bar"], s["frame"], s["bpm"]) for s in new] == [(0, 0, BPM), (3, 3 * BAR, BPM), (5, 5 * BAR, 180.0)]
    assert new[1]["crossfade_frames"] == round(0.05 * RATE)  # the default 50 ms
    # The tempo change is a stretch (no new diffusion) heard at the next seam, bar 5.
    assert started[1]["mode"] == "stretch" and started[1]["heard_at_bar"] == 5
    tempo = kinds(events, "tempo")
    assert [(t["bpm"], t["bar"], t["frame"]) for t in tempo] == [(180.0, 5, 5 * BAR)]
    assert new[2]["frames"] == loop_frames(1, 180.0, RATE)
    # Beats: four per bar at 240, then at 180; every beat once, in order.
    assert [b["beat"] for b in beats] == list(range(len(beats)))
    assert beats[4]["frame"] == BAR and beats[4]["beat_in_bar"] == 0
    assert beats[20]["frame"] == 5 * BAR and beats[21]["frame"] == 5 * BAR + loop_frames(1, 180.0, RATE) // 4
    figures = engine.figures()
    assert figures["bpm"] == pytest.approx(180.0) and figures["underruns"] == 0


@pytest.mark.parametrize(
    "switch, reason", [("[raise]", "error"), ("[nan]", "nan"), ("[silent]", "silent"), ("[oom]", "out_of_memory")]
)
def test_bad_render_keeps_the_last_good_loop_and_the_next_render_recovers(tmp_path, switch, reason):
    script = [
        step(0, 1.5, **{"prompt_a/0": "good"}),
        step(1, 3.5, **{"prompt_a/0": f"bad {switch}"}),
        step(2, 5.5, **{"prompt_a/0": "recovered"}),
    ]
    audio, events, _, _ = session(tmp_path, script, duration=9.0)
    failed = kinds(events, "render_failed")
    assert len(failed) == 1 and failed[0]["reason"] == reason  # reported once per streak
    # the same state was retried after the back-off (0.5 s, then 1 s) and failed again
    assert [r["failures"] for r in kinds(events, "render_retry") if r["phase"] == "failed"] == [2, 3]
    assert len(kinds(events, "render_recovered")) == 1
    starts = kinds(events, "loop_started")
    assert_contiguous_on_bars(starts)
    assert_downbeats(audio, starts)
    assert_never_silent(audio, len(audio) - int(0.1 * RATE))
    by_bar = {s["bar"]: s for s in starts}
    good = by_bar[2]["clip_id"]
    # bars 3..5: the good loop repeats (the failure made no clip); bar 6 the recovered one
    assert [by_bar[b]["clip_id"] for b in range(2, 6)] == [good] * 4
    assert by_bar[6]["repeat"] == 0 and by_bar[6]["clip_id"] != good
    # what plays in bars 3 and 4 is the good loop, sample for sample
    loop = audio[2 * BAR : 3 * BAR]
    for b in range(3, 5):
        np.testing.assert_array_equal(audio[b * BAR : (b + 1) * BAR], loop)


def test_late_render_repeats_the_last_loop_and_lands_at_a_later_seam(tmp_path):
    script = [step(0, 1.5, **{"prompt_a/0": "slow [late=2.5]"})]
    audio, events, _, engine = session(tmp_path, script, duration=7.0)
    started = [e for e in kinds(events, "render") if e["phase"] == "started"][0]
    done = [e for e in kinds(events, "render") if e["phase"] == "done" and not e.get("warm_up")][0]
    scheduled = kinds(events, "loop_scheduled")[-1]
    # expected 0.3 s -> planned for bar 2; took 2.5 s -> ready at 4.0 s, on the seam: bar 5
    assert started["heard_at_bar"] == 2
    assert done["late"] is True and done["ms"] == 2500.0
    assert scheduled["bar"] == 5 and scheduled["late"] is True
    starts = kinds(events, "loop_started")
    assert_contiguous_on_bars(starts)
    assert [s["repeat"] for s in starts[:6]] == [0, 1, 2, 3, 4, 0]
    assert_never_silent(audio, len(audio) - int(0.1 * RATE))
    assert engine.figures()["late_renders"] == 1
    # the measured time now sets the estimate: a new change is planned with 2.5 s
    assert engine.planner.expected_seconds("render") == pytest.approx(2.5)


def test_newest_state_wins_over_a_burst_of_changes(tmp_path):
    script = [step(i, 1.2 + i * 0.01, seed_a=100 + i) for i in range(10)]
    _, events, _, _ = session(tmp_path, script, duration=5.0)
    started = [e for e in kinds(events, "render") if e["phase"] == "started"]
    # the first change starts a render at once; the nine others collapse into one
    assert len(started) == 2
    assert started[-1]["version"] == 10
    new = [s for s in kinds(events, "loop_started") if s["repeat"] == 0]
    assert new[-1]["version"] == 10


def test_gain_is_live_and_ramped(tmp_path):
    script = [step(0, 2.0, gain=-20.0)]
    audio, events, _, _ = session(tmp_path, script, duration=4.0)
    assert not [e for e in kinds(events, "render") if e["phase"] == "started"]  # no render
    loud = np.abs(audio[int(1.1 * RATE) : int(1.9 * RATE)]).max()
    quiet = np.abs(audio[int(2.1 * RATE) : int(2.9 * RATE)]).max()
    assert quiet == pytest.approx(loud * 10 ** (-20 / 20), rel=1e-3)


def test_mute_silences_and_unmute_brings_the_music_back_without_a_render(tmp_path):
    script = [step(0, 1.5, mute=True), step(1, 2.5, mute=False)]
    audio, events, _, _ = session(tmp_path, script, duration=3.5)
    assert not [e for e in kinds(events, "render") if e["phase"] == "started"]  # no render
    assert np.abs(audio[int(1.1 * RATE) : int(1.4 * RATE)]).max() > 0.1
    assert np.abs(audio[int(1.6 * RATE) : int(2.4 * RATE)]).max() == 0.0
    assert np.abs(audio[int(2.6 * RATE) : int(3.0 * RATE)]).max() > 0.1


class SimulatedTime:
    """The real renderer, reporting a fixed render time (the file output's simulated clock),
    so the session does not depend on how fast this machine renders."""

    sleep = False
    last_seconds = 0.5

    def __init__(self, renderer):
        self.renderer = renderer

    def render(self, request, num_frames=None):
        return self.renderer.render(request, num_frames=num_frames)

    def pixels_to_audio(self, pixels, num_frames):
        return self.renderer.pixels_to_audio(pixels, num_frames)


def test_tiny_model_session_renders_stretches_and_plays_on_the_grid(tmp_path, tiny_model_dir):
    from riffengine.engine import build_renderer

    settings = settings_for(tmp_path, **{"model.id": str(tiny_model_dir), "model.device": "cpu", "render.steps": 1})
    renderer = SimulatedTime(build_renderer(settings))
    script = [step(0, 1.0, **{"prompt_a/0": "jazz piano"}), step(1, 2.5, bpm=200.0)]
    engine = Engine(settings, renderer, duration=5.0, script=script, signals=False)
    assert asyncio.run(engine.run()) == 0
    audio, _ = soundfile.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)
    events = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] != "beat"]
    assert len(audio) == 5 * RATE and np.isfinite(audio).all()
    assert not kinds(events, "render_failed")
    modes = [e["mode"] for e in kinds(events, "render") if e["phase"] == "done"]
    assert modes == ["render", "render", "stretch"]
    starts = kinds(events, "loop_started")
    assert_contiguous_on_bars(starts)
    assert starts[-1]["bpm"] == 200.0 and starts[-1]["frames"] == loop_frames(1, 200.0, RATE)
    assert_never_silent(audio, len(audio) - int(0.1 * RATE), block=4410, floor=0.005)


# --- the command line ---------------------------------------------------------------------------


def run_cli(capsys, *args):
    code = cli.main(["run", *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_cli_renders_a_scripted_session_to_a_file(tmp_path, capsys):
    script = tmp_path / "script.yaml"
    script.write_text("- at: 1.5\n  set: {bpm: 200}\n")
    out = tmp_path / "take.wav"
    code, _ = run_cli(
        capsys,
        "--fake-renderer",
        "--no-osc",
        "--output",
        str(out),
        "--bpm",
        "240",
        "--bars",
        "1",
        "--duration",
        "3",
        "--script",
        str(script),
        "--events",
        str(tmp_path / "e.jsonl"),
    )
    assert code == 0
    assert soundfile.info(str(out)).frames == 3 * RATE
    tempo = kinds(read_events(tmp_path / "e.jsonl"), "tempo")
    assert [(t["bpm"], t["bar"]) for t in tempo] == [(200.0, 2)]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--bars", "99"], ["loop.bars", "99"]),
        (["--set", "loop.barz=2"], ["loop.barz", "bars"]),
        (["--duration", "-1"], ["--duration"]),
        (["--script", "/nonexistent/script.yaml"], ["script", "not found"]),
        (["--model", "/nonexistent/model", "--require-model"], ["/nonexistent/model", "does not exist"]),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(tmp_path, capsys, args, words):
    base = ["--no-osc", "--output", str(tmp_path / "x.wav"), "--duration", "1"]
    code, err = run_cli(capsys, *base, *args)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("riffengine: error:"), err
    for word in words:
        assert word in err[0]


def test_cli_file_output_needs_a_duration_and_bad_script_steps_are_named(tmp_path, capsys):
    code, err = run_cli(capsys, "--fake-renderer", "--no-osc", "--output", str(tmp_path / "x.wav"))
    assert code == 2 and len(err) == 1 and "--duration" in err[-1]
    script = tmp_path / "bad.yaml"
    script.write_text("- at: 1\n  set: {bpm: 999}\n")
    code, err = run_cli(
        capsys,
        "--fake-renderer",
        "--no-osc",
        "--output",
        str(tmp_path / "x.wav"),
        "--duration",
        "1",
        "--script",
        str(script),
    )
    assert code == 2 and len(err) == 1 and "step 1" in err[0] and "bpm" in err[0]


def test_a_48k_output_gets_resampled_clips_of_exact_loop_length(tmp_path):
    script = [step(0, 1.5, bpm=200.0)]
    settings = settings_for(tmp_path, **{"audio.sample_rate": 48000})
    engine = Engine(settings, FakeRenderer(), duration=4.0, script=script, signals=False)
    assert asyncio.run(engine.run()) == 0
    audio, rate = soundfile.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)
    assert rate == 48000 and len(audio) == 4 * 48000
    starts = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "loop_started"]
    for a, b in zip(starts, starts[1:]):
        assert b["frame"] - a["frame"] == loop_frames(1, a["bpm"], 48000) == a["frames"]
    assert starts[-1]["bpm"] == 200.0
    # the fake's 0.5 sine keeps its pitch through the resampling: peak level unchanged
    assert np.abs(audio[int(0.5 * 48000) : int(0.9 * 48000)]).max() == pytest.approx(0.5, abs=0.02)


def test_no_audio_device_is_one_user_error_that_lists_devices_and_suggests_jack_or_a_file(capsys, monkeypatch):
    import sounddevice

    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    if any(d["max_output_channels"] > 0 for d in sounddevice.query_devices()):
        pytest.skip("this machine has an audio output device")
    code = cli.main(["run", "--fake-renderer", "--no-osc", "--output", "default"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("riffengine: error: no audio output device")
    assert "Devices found" in err and "--output jack" in err and ".wav" in err
    assert "Traceback" not in err
