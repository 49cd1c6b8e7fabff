"""Faults the engine survives, each one a test, with real components where they matter.

1. The renderer raises, runs out of CUDA memory (``torch.cuda.OutOfMemoryError``, raised on the
   CPU), returns NaN or silence, or hangs past its bar: the last good loop keeps playing and the
   engine recovers when the renderer does (a retry after a back-off, no state change needed).
   The raising/NaN/silent/late cases with a state change are in ``test_engine.py``.
2. The MIDI controller (a JACK MIDI port) disappears and comes back, through the engine.
3. The JACK server stops and restarts: the engine reconnects, plays again, the recording resumes.
   A PortAudio device that stops is reported lost, and the engine stays up and stops cleanly.
4. A flood of garbage OSC packets against the running engine: no underrun, memory flat, valid
   messages still served.
5. The recording hits a file-size limit (a full disk, ``RLIMIT_FSIZE``): reported, the audio
   goes on, the file stays readable.
6. SIGKILL at a (seeded) random moment: the recording is readable up to at most one second
   before the kill.
"""

from __future__ import annotations

import random
import resource
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
import soundfile
from engine_fixtures import EngineProcess, LiveEngine
from jack_fixtures import jack_server  # noqa: F401  (module-scoped JACK dummy server)
from surface_fixtures import OscClient, wait_until
from test_engine import BPM, RATE, assert_contiguous_on_bars, assert_never_silent, kinds, session, step

from riffengine.audio.jackserver import JackServer
from riffengine.config import Settings, merge_overrides
from riffengine.engine import Engine
from riffengine.render.fake import FakeRenderer
from riffengine.timing.tempo import loop_frames

BAR = loop_frames(1, BPM, RATE)
CLI = ["--fake-renderer", "--no-osc", "--output", "jack", "--bpm", "240", "--bars", "1", "--set", "cache.enabled=false"]


def live_settings(tmp_path, **extra) -> Settings:
    values = {
        "audio.output": "jack",
        "audio.jack_client_name": f"riff-fault-{uuid.uuid4().hex[:6]}",
        "tempo.bpm": BPM,
        "loop.bars": 1,
        "osc.enabled": False,
        "cache.enabled": False,
    }
    values.update(extra)
    return merge_overrides(Settings(), values)


# --- 1. the renderer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "switch, reason",
    [("[raise=2]", "error"), ("[oom=2]", "out_of_memory"), ("[nan=2]", "nan"), ("[silent=2]", "silent")],
)
def test_a_failing_renderer_is_retried_and_the_engine_recovers_without_a_state_change(tmp_path, switch, reason):
    # 1.5 s: the change fails (a failure takes no simulated time), is retried 0.5 s later (fails
    # again at 2.0 s), then 1 s later; that third try (the renderer has recovered) is ready at
    # 3.3 s (0.3 s render), heard at bar 4.
    audio, events, _, engine = session(tmp_path, [step(0, 1.5, **{"prompt_a/0": f"flaky {switch}"})], duration=7.0)
    failed = kinds(events, "render_failed")
    assert [(f["reason"], f["failures"], f["retry_in_s"]) for f in failed] == [(reason, 1, 0.5)]
    retries = kinds(events, "render_retry")
    assert [(r["phase"], r["failures"]) for r in retries] == [("started", 1), ("failed", 2), ("started", 2)]
    assert retries[1]["retry_in_s"] == 1.0
    recovered = kinds(events, "render_recovered")
    assert len(recovered) == 1 and recovered[0]["failures"] == 2
    starts = kinds(events, "loop_started")
    assert_contiguous_on_bars(starts)
    assert_never_silent(audio, len(audio) - int(0.1 * RATE))
    new = [s for s in starts if s["repeat"] == 0]
    assert [s["bar"] for s in new] == [0, 4]
    # bars 1..3: the first loop, sample for sample (up to the crossfade into bar 4)
    fade = round(0.05 * RATE)
    for b in range(1, 4):
        np.testing.assert_array_equal(audio[b * BAR : (b + 1) * BAR - fade], audio[: BAR - fade])
    figures = engine.figures()
    assert figures["render_failures"] == 2 and figures["render_retries"] == 2
    assert figures["failing_renders"] == 0


def test_a_hung_renderer_keeps_the_last_loop_playing_and_its_late_result_is_used(jack_server, tmp_path):
    fake = FakeRenderer(seconds=0.1, sleep=True)
    engine = Engine(live_settings(tmp_path), fake, signals=False)
    with LiveEngine(engine) as live:
        live.loops_after(1)
        state = live.call(engine.store.apply, {"prompt_a/0": "stuck [hang]"}, "test")
        wait_until(fake.hanging.is_set, what="the render to hang")
        late = live.wait_event("render_late", lambda d: d["version"] == state.version)
        live.loops_after(2)  # the hang outlasts its bar: the old loop repeats
        heard = [e.data for e in live.kinds("loop_started")]
        assert all(d["version"] < state.version for d in heard)
        assert engine.planner.in_flight is not None and late.data["waited_s"] > 0
        fake.unhang()  # the driver answers again
        live.wait_event("loop_started", lambda d: d["version"] == state.version and d["repeat"] == 0)
        assert engine.ring.underruns == 0 and engine.output.callback_errors == 0
    assert not live.kinds("render_failed")


# --- 2. the MIDI controller --------------------------------------------------------------------


def test_the_midi_controller_disappears_and_comes_back_while_the_engine_plays(jack_server, tmp_path):
    from test_midi_jack import Controller, jack_midi

    backend = jack_midi()
    name = f"riff-desk-{uuid.uuid4().hex[:6]}"
    settings = live_settings(
        tmp_path,
        **{
            "midi.enabled": True,
            "midi.backend": "UNIX_JACK",
            "midi.input": name,
            "midi.mappings": [{"cc": 0, "param": "alpha", "pickup": False}],
        },
    )
    engine = Engine(settings, FakeRenderer(seconds=0.1, sleep=True), signals=False)
    desk = Controller(backend, name).plug()
    try:
        with LiveEngine(engine) as live:
            midi = engine.surfaces.midi
            wait_until(lambda: midi.port is not None, what="the controller port opened")
            desk.cc(0, 127)
            wait_until(lambda: engine.store.state.values["alpha"] == 1.0, what="alpha from MIDI")
            desk.unplug()
            live.wait_event("midi_port", lambda d: d["state"] == "closed")
            live.loops_after(2)  # the audio goes on without a controller
            desk.plug()
            live.wait_event("midi_port", lambda d: d["state"] == "open" and midi.opened == 2)
            desk.cc(0, 0)
            wait_until(lambda: engine.store.state.values["alpha"] == 0.0, what="alpha after replug")
            live.loops_after(1)
            assert engine.ring.underruns == 0
    finally:
        if desk.port is not None:
            desk.unplug()


# --- 3. the JACK server ------------------------------------------------------------------------


def test_the_jack_server_stops_and_restarts_and_the_engine_plays_and_records_again(tmp_path):
    server = JackServer(name=f"riff-restart-{uuid.uuid4().hex[:8]}").start()
    rec = tmp_path / "rec.wav"
    env = {"JACK_DEFAULT_SERVER": server.name, "JACK_NO_START_SERVER": "1"}
    engine = EngineProcess(
        tmp_path, *CLI, "--record", str(rec), "--set", "audio.jack_client_name=riff-restart", env=env
    )
    try:
        engine.loops_after(2)
        server.stop()
        engine.wait_event("output_lost")
        time.sleep(1.0)  # a real outage: the engine polls meanwhile
        assert not engine.events("output_restored")
        server.start()
        restored = engine.wait_event("output_restored")
        engine.loops_after(3)
        last = engine.events("loop_started")[-1]
        assert last["frame"] > restored["frame"]
        code = engine.terminate()
    finally:
        engine.close()
        server.stop()
    assert code == 0, engine.output()  # no PortAudio abort at exit either
    recorded, rate = soundfile.read(str(rec), dtype="float32", always_2d=True)
    assert rate == RATE and np.isfinite(recorded).all()
    # what played after the restart is in the recording: it resumed
    assert len(recorded) > last["frame"] + 1024
    assert np.abs(recorded[last["frame"] : last["frame"] + 8]).min() > 0.89  # the loop's burst
    stopped = engine.events("stopped")[-1]
    assert stopped["outputs_lost"] == 1


def test_a_portaudio_device_that_stops_is_reported_lost_and_the_engine_stays_up(tmp_path):
    """A sound-card stream that stops by itself (unplugged; here PortAudio's JACK host API with
    its server gone, the only PortAudio device without a sound card) is reported, never a
    silent hang, and the engine still stops cleanly. PortAudio's JACK streams cannot come back:
    the message says to use ``audio.output: jack``, which does (the test above)."""
    server = JackServer(name=f"riff-pa-{uuid.uuid4().hex[:8]}").start()
    env = {"JACK_DEFAULT_SERVER": server.name, "JACK_NO_START_SERVER": "1"}
    cli = [arg if arg != "jack" else "system" for arg in CLI]  # PortAudio's JACK device
    engine = EngineProcess(tmp_path, *cli, env=env)
    try:
        engine.loops_after(2)
        server.stop()
        lost = engine.wait_event("output_lost")
        assert "the device stopped playing" in lost["reason"]
        time.sleep(1.0)  # the engine polls meanwhile and stays up
        assert engine.proc.poll() is None
        assert not engine.events("output_restored")
        code = engine.terminate()
    finally:
        engine.close()
        server.stop()
    assert code == 0, engine.output()  # no hang closing the dead stream, no abort at exit
    assert "use audio.output: jack" in engine.output()
    assert engine.events("stopped")[-1]["outputs_lost"] == 1


# --- 4. an OSC flood ---------------------------------------------------------------------------

FLOOD = r"""
import os, random, socket, struct, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
rng = random.Random(4)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def pad(b): return b + b"\0" * (4 - len(b) % 4)
def message(address, *strings):
    return pad(address.encode()) + pad(("," + "s" * len(strings)).encode()) + b"".join(pad(s.encode()) for s in strings)
def bundle(depth):
    inner = message("/riff/alpha", "x")
    for _ in range(depth):
        inner = b"#bundle\0" + struct.pack(">Q", 1) + struct.pack(">i", len(inner)) + inner
    return inner
kinds = [
    lambda: os.urandom(rng.randint(1, 1500)),
    lambda: message("/riff/prompt_a/0", "x" * rng.randint(5000, 30000)),
    lambda: bundle(rng.randint(20, 200)),
    lambda: message("/riff/" + "*" * rng.randint(3, 50)),
    lambda: message("/riff/alpha", *["y"] * rng.randint(33, 200)),
]
sent, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    try:
        sock.sendto(rng.choice(kinds)(), ("127.0.0.1", port))
        sent += 1
    except OSError:
        pass
    if sent % 50 == 0:
        time.sleep(0.005)  # about 5000 a second: thousands, not a CPU lock-up
print(sent)
"""


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def test_an_osc_garbage_flood_causes_no_underrun_keeps_memory_flat_and_valid_messages_work(jack_server, tmp_path):
    settings = live_settings(tmp_path, **{"osc.enabled": True, "osc.port": 0})
    engine = Engine(settings, FakeRenderer(seconds=0.1, sleep=True), signals=False)
    with LiveEngine(engine) as live:
        osc = engine.surfaces.osc
        flood = subprocess.Popen(
            [sys.executable, "-c", FLOOD, str(osc.address[1]), "6"], stdout=subprocess.PIPE, text=True
        )
        try:
            with OscClient(osc.address[1]) as client:
                wait_until(lambda: osc.failed > 500, what="the flood to arrive")
                before = rss()
                answered = 0
                while flood.poll() is None:
                    client.send("/riff/status")
                    try:
                        client.wait_for("/riff/status.reply", timeout=0.5)
                        answered += 1
                    except AssertionError:
                        pass  # UDP under a flood: ask again
                after = rss()
                client.send("/riff/alpha", 0.5)
                wait_until(lambda: engine.store.state.values["alpha"] == 0.5, what="alpha after the flood")
        finally:
            if flood.poll() is None:
                flood.kill()
            sent = int(flood.communicate(timeout=30)[0] or 0)
        live.loops_after(1)
        assert sent > 10000  # thousands a second for several seconds
        assert answered >= 1  # valid requests get through during the flood (how many depends on the machine)
        assert engine.ring.underruns == 0 and engine.output.callback_errors == 0
        assert after - before < 32 * 1024**2
        assert osc.failed > 1000 and len(osc._timers) <= 256


# --- 5. the recording disk fills -----------------------------------------------------------------


def test_a_full_recording_disk_is_reported_and_the_audio_goes_on(jack_server, tmp_path):
    limit = 1_500_000  # bytes: about 4 s of float32 stereo

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ

    rec = tmp_path / "rec.wav"
    engine = EngineProcess(
        tmp_path, *CLI, "--record", str(rec), "--set", "audio.jack_client_name=riff-fullrec", preexec_fn=small_disk
    )
    try:
        fail = engine.wait_event("fail", lambda e: e["address"] == "/riff/record")
        assert "recording to" in fail["reason"] and "the audio goes on" in fail["reason"]
        engine.loops_after(3)  # playing on after the failure
        code = engine.terminate()
    finally:
        engine.close()
    assert code == 0, engine.output()
    assert "recording" in engine.output()
    stopped = engine.events("stopped")[-1]
    assert stopped["underruns"] == 0 and stopped["frame"] > limit // 8 + 2 * BAR
    recorded, rate = soundfile.read(str(rec), dtype="float32", always_2d=True)
    assert rate == RATE and 2 * RATE < len(recorded) <= limit // 8 and np.isfinite(recorded).all()


# --- 6. SIGKILL --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [7])
def test_sigkill_at_a_random_moment_leaves_a_recording_readable_to_within_a_second(jack_server, tmp_path, seed):
    delay = random.Random(seed).uniform(1.0, 4.0)
    rec = tmp_path / "rec.wav"
    engine = EngineProcess(tmp_path, *CLI, "--record", str(rec), "--set", "audio.jack_client_name=riff-sigkill")
    try:
        engine.loops_after(2)
        time.sleep(delay)
        engine.proc.kill()
        killed_at = time.time()
        engine.proc.wait(30)
    finally:
        engine.close()
    beats = [e for e in engine.events("beat") if e["time"] <= killed_at]
    played = beats[-1]["frame"] + (killed_at - beats[-1]["time"]) * RATE  # frames heard at the kill
    recorded, rate = soundfile.read(str(rec), dtype="float32", always_2d=True)
    assert rate == RATE and np.isfinite(recorded).all()
    assert played - RATE <= len(recorded) <= played + 0.1 * RATE, (len(recorded), played)
    assert_never_silent(recorded, len(recorded) - len(recorded) % 441)
