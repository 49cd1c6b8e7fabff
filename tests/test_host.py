"""The audio host: the sound goes on when the engine dies, and a new engine takes over.

Pure parts first (held loops, the host's source over a real shared-memory ring), and a new
engine's start from the saved state (after a panic, on the safe loop with no render), then
``riffengine run`` to a JACK dummy server with a capture client of the test's own: the engine
process is killed mid-loop while the capture and the recording show continuous audio; a new
engine is started by the host and comes back with the state the old one had; gain set over
OSC is applied by the host; a stalled host is reported as xruns.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid

import numpy as np
import psutil
import pytest
import soundfile
from engine_fixtures import EngineProcess, bank_safe_loop
from jack_fixtures import JackCapture, jack_server  # noqa: F401
from surface_fixtures import wait_until

from riffengine.audio.panic import FADE_SECONDS as PANIC_FADE_SECONDS
from riffengine.config import Settings, load_config, merge_overrides
from riffengine.engine import Engine
from riffengine.eventlog import read_events
from riffengine.host import resume
from riffengine.host.hold import Held, HeldLoops, HoldSource, fill_from, held_at
from riffengine.host.shmring import ShmRing
from riffengine.render.bank import safe_loop
from riffengine.render.cache import RenderCache
from riffengine.render.fake import FakeRenderer
from riffengine.state import apply_many, as_pairs, initial_state

RATE = 44100
CLIENT = "riffengine-host-test"


def ramp_loop(length: int, offset: float = 0.0) -> np.ndarray:
    ramp = np.arange(length, dtype=np.float32) + offset
    return np.stack([ramp, -ramp], axis=1)


# --- held loops (pure) ---------------------------------------------------------------------------


def test_the_loop_in_force_is_the_last_one_started():
    a, b = Held(0, ramp_loop(10)), Held(40, ramp_loop(7))
    assert held_at((a, b), 39) is a and held_at((a, b), 40) is b and held_at((b,), 3) is None


def test_a_held_loop_plays_in_the_phase_of_the_bar_grid():
    out = np.zeros((6, 2), np.float32)
    fill_from(Held(100, ramp_loop(4)), 105, out)  # frame 105 is sample 1 of the loop started at 100
    assert out[:, 0].tolist() == [1, 2, 3, 0, 1, 2]
    fill_from(Held(0, None), 5, out)
    assert not out.any()


def test_a_block_switches_loop_where_the_next_one_starts():
    held = HeldLoops()
    held.add(Held(0, ramp_loop(100)))
    held.add(Held(50, ramp_loop(10, offset=1000)))
    out = np.zeros((8, 2), np.float32)
    held.fill(46, out)
    assert out[:, 0].tolist() == [46, 47, 48, 49, 1000, 1001, 1002, 1003]
    held.add(Held(48, None))  # a stop announced later replaces what starts after it
    held.fill(46, out)
    assert out[:, 0].tolist() == [46, 47, 0, 0, 0, 0, 0, 0]


@pytest.fixture
def shm_ring():
    ring = ShmRing.create(f"riffengine-test-{os.getpid()}-{uuid.uuid4().hex[:8]}", 64, 2, RATE, fences=False)
    yield ring
    ring.unlink()
    ring.close()


def test_the_host_plays_the_ring_then_the_held_loop_in_phase_then_fades_back(shm_ring):
    source = HoldSource(shm_ring, 64)
    writer = ShmRing.attach(shm_ring.name, fences=False)
    loop = ramp_loop(20)
    source.held.add(Held(0, loop))
    writer.write(np.tile(loop, (2, 1))[:30])  # the engine wrote 30 frames of the loop, then died
    out = np.zeros((16, 2), np.float32)
    played = []
    for _ in range(3):
        source.read_into(out)
        played += out[:, 0].tolist()
    expected = [k % 20 for k in range(48)]
    assert played == expected  # the ring's frames, then the held loop: no seam at frame 30
    assert source.held_frames == 48 - 30 and shm_ring.frames_read == 48
    # a new engine rejoins ahead of the host with other music: the return is crossfaded
    writer.restart_at(56)
    writer.write(np.full((40, 2), 500.0, np.float32))
    source.read_into(out)  # frames 48..63: held until 56, then fading to the ring's frames
    assert out[:8, 0].tolist() == [k % 20 for k in range(48, 56)]
    assert 0 < out[8, 0] < 500 and out[8, 0] != (56 % 20)
    writer.close()


def test_an_engine_back_with_the_held_loop_in_phase_is_heard_unchanged(shm_ring):
    source = HoldSource(shm_ring, 64)
    writer = ShmRing.attach(shm_ring.name, fences=False)
    loop = np.stack([np.sin(np.arange(100) / 5.0)] * 2, axis=1).astype(np.float32)
    source.held.add(Held(0, loop))
    writer.write(loop[:30])
    out = np.zeros((32, 2), np.float32)
    played = []
    for _ in range(4):  # the ring's 30 frames, then held
        source.read_into(out)
        played.append(out.copy())
    writer.restart_at(128)  # the engine comes back with the same loop, in phase: a return fade
    writer.write(np.tile(loop, (4, 1))[128:400])
    for _ in range(8):
        source.read_into(out)
        played.append(out.copy())
    heard = np.concatenate(played)
    # the fade's gains sum to 1: no bump where ring and hold carry the same samples
    np.testing.assert_allclose(heard, np.tile(loop, (4, 1))[:384], atol=1e-6)
    writer.close()


# --- a new engine's start from the saved state (file output: deterministic) -------------------


def takeover_session(tmp_path, resumed: str):
    """An engine started as the host starts a new one, from a saved state (``resumed``: ``safe``,
    the safe loop's state as a panic leaves it, or ``config``), to a file; a safe loop banked
    for another state than the config's. (audio, events, fake renderer, safe frames)."""
    settings = merge_overrides(
        Settings(),
        {
            "audio.output": str(tmp_path / "out.wav"),
            "audio.events": str(tmp_path / "events.jsonl"),
            "cache.folder": str(tmp_path / "cache"),
            "tempo.bpm": 240.0,
            "loop.bars": 1,
            "osc.enabled": False,
            "initial.steps": 4,  # the run's steps: the safe loop's values bring the bank's own
        },
    )
    bank_safe_loop(
        tmp_path / "cache", merge_overrides(settings, {"initial.prompt_a/0": "safe groove", "initial.steps": 50})
    )
    safe = safe_loop(RenderCache(tmp_path / "cache"))
    start = initial_state(settings)
    if resumed == "safe":
        start = apply_many(start, tuple(safe.values.items()))
    state_file = tmp_path / "state.json"
    resume.save(state_file, as_pairs(start), None)
    fake = FakeRenderer()
    engine = Engine(settings, fake, duration=3.0, signals=False, state_file=str(state_file))
    assert asyncio.run(engine.run()) == 0
    audio, _ = soundfile.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)
    return audio, read_events(tmp_path / "events.jsonl"), fake, safe.frames(RATE, 2)


def test_an_engine_taking_over_after_a_panic_starts_on_the_safe_loop_without_a_render(tmp_path):
    audio, events, fake, safe_frames = takeover_session(tmp_path, "safe")
    assert fake.renders == 0  # the state is the safe loop's: nothing to render, no cache to miss
    assert not [e for e in events if e["kind"] == "render"]
    first = next(e for e in events if e["kind"] == "loop_started")
    assert first["frame"] == 0 and first["clip_id"] == "clip1-v1"
    assert [e["clip_id"] for e in events if e["kind"] == "loop_started"] == ["clip1-v1"] * 3
    np.testing.assert_allclose(audio[: len(safe_frames)], safe_frames, atol=1e-6)


def test_an_engine_taking_over_from_another_state_renders_it_in_its_warm_up(tmp_path):
    _, events, fake, _ = takeover_session(tmp_path, "config")
    assert fake.renders == 1
    warm_up = next(e for e in events if e["kind"] == "render")
    assert warm_up["phase"] == "done" and warm_up["warm_up"] is True


def test_leftovers_of_killed_hosts_are_swept_and_those_of_running_ones_kept(tmp_path):
    import subprocess
    import sys

    from riffengine.host.process import HOST_PREFIX, sweep_stale

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a host that was killed: its PID runs no more
    shm, temp = tmp_path / "shm", tmp_path / "tmp"
    shm.mkdir()
    temp.mkdir()
    dead = [
        shm / f"{HOST_PREFIX}{gone.pid}",
        shm / f"{HOST_PREFIX}{gone.pid}-77-0.f32",
        temp / f"{HOST_PREFIX}{gone.pid}-x1",
    ]
    alive = [shm / f"{HOST_PREFIX}{os.getpid()}", temp / f"{HOST_PREFIX}{os.getpid()}-x2"]
    others = [shm / "jack-shm-registry", temp / f"{HOST_PREFIX}abc", temp / "riffengine-hostless"]
    for path in dead + alive + others:
        if path.name.endswith(("-x1", "-x2")):
            path.mkdir()
            (path / "state.json").write_text("{}")
        else:
            path.write_bytes(b"ring")
    removed = sweep_stale((str(shm), str(temp)))
    assert sorted(removed) == sorted(str(p) for p in dead)
    assert not any(p.exists() for p in dead) and all(p.exists() for p in alive + others)


# --- the host and its engine, on a JACK server -----------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def silent_windows(audio: np.ndarray, window: int = 1024) -> list[int]:
    """Start frames of the windows between the first and last sound that are silent."""
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > 1e-4)
    if len(loud) == 0:
        return [0]
    body = audio[loud[0] : loud[-1] - 8192]  # the last frames are the stop's fade
    n = len(body) // window
    rms = np.sqrt((body[: n * window].reshape(n, window, -1) ** 2).mean(axis=(1, 2)))
    return [int(loud[0] + i * window) for i in np.flatnonzero(rms < 1e-3)]


def engine_child(proc: EngineProcess) -> int:
    children = psutil.Process(proc.proc.pid).children()
    assert len(children) == 1, children
    return children[0].pid


def hosted(tmp_path, server, client: str, *args: str, env: dict[str, str] | None = None) -> EngineProcess:
    """``riffengine run`` under the audio host, the fake renderer, to the test's JACK server."""
    return EngineProcess(
        tmp_path,
        "--fake-renderer",
        "--output",
        "jack",
        "--set",
        f"audio.jack_client_name={client}",
        *args,
        env={"JACK_DEFAULT_SERVER": server.name, "JACK_NO_START_SERVER": "1", **(env or {})},
    )


def banked_show(tmp_path) -> tuple[str, np.ndarray]:
    """A config at 240 bpm, one bar a loop, with a safe loop banked; the safe loop's frames."""
    show = tmp_path / "show.yaml"
    show.write_text(f"cache: {{folder: {tmp_path / 'cache'}}}\ntempo: {{bpm: 240}}\nloop: {{bars: 1}}\n")
    bank_safe_loop(tmp_path / "cache", merge_overrides(load_config(show), {"initial.prompt_a/0": "safe groove"}))
    return str(show), safe_loop(RenderCache(tmp_path / "cache")).frames(RATE, 2)


def test_a_killed_engine_is_not_heard_and_the_next_one_comes_back_with_its_state(jack_server, tmp_path):
    from pythonosc.udp_client import SimpleUDPClient

    port = free_udp_port()
    rec = tmp_path / "rec.wav"
    proc = hosted(
        tmp_path,
        jack_server,
        CLIENT,
        "--record",
        str(rec),
        "--osc-port",
        str(port),
        "--bpm",
        "240",
        "--bars",
        "1",
        "--set",
        "audio.ring_buffer_seconds=0.5",
    )
    osc = SimpleUDPClient("127.0.0.1", port)
    try:
        with JackCapture(jack_server.name, seconds=60, name="host-capture") as capture:
            proc.wait_event("started")
            capture.connect_from([f"{CLIENT}:out_0", f"{CLIENT}:out_1"])
            proc.loops_after(2)
            level_before = float(np.sqrt((capture.recorded()[-RATE // 2 :] ** 2).mean()))
            osc.send_message("/riff/prompt_a/0", "after the crash")
            osc.send_message("/riff/gain", -6.0)
            proc.wait_event("loop_scheduled", lambda e: e.get("prompt") == "after the crash")
            proc.loops_after(2)
            first = engine_child(proc)
            os.kill(first, signal.SIGKILL)  # mid-loop, with no warning
            ended = proc.wait_event("engine_ended", timeout=30)
            proc.wait_event("engine_restarted", timeout=30)
            second = engine_child(proc)
            resumed = proc.wait_event("loop_scheduled", lambda e: e["time"] > ended["time"], timeout=60)
            proc.loops_after(3)
            level_after = float(np.sqrt((capture.recorded()[-RATE // 2 :] ** 2).mean()))
            code = proc.terminate()
            captured = capture.recorded().copy()
    finally:
        proc.close()
    assert code == 0, proc.output()
    assert ended["status"] == -signal.SIGKILL and ended["on_purpose"] is False and second != first
    assert resumed["prompt"] == "after the crash"  # the new engine started from the saved state
    assert level_after == pytest.approx(level_before * 10 ** (-6 / 20), rel=0.15)  # the gain too
    assert silent_windows(captured) == []  # heard: no gap from the first sound to the stop
    recorded, rate = soundfile.read(str(rec), dtype="float32", always_2d=True)
    assert rate == RATE and silent_windows(recorded) == []  # the recording is whole
    assert len(recorded) > 4 * RATE


def test_a_stalled_host_is_reported_as_xruns(jack_server, tmp_path):
    proc = hosted(tmp_path, jack_server, f"{CLIENT}-xrun", "--no-osc")
    try:
        proc.loops_after(1)
        host = psutil.Process(proc.proc.pid)
        # The host counts JACK's xrun notifications from a Python callback: safe only in a process
        # where no python-rtmidi call can hold the GIL while it waits on the server.
        libraries = {os.path.basename(m.path) for m in host.memory_maps()}
        for _ in range(3):
            host.suspend()  # the host's audio thread misses its cycles
            time.sleep(0.1)
            host.resume()
            time.sleep(0.3)
        xrun = proc.wait_event("xrun", timeout=30)
        wait_until(lambda: proc.events("loop_started"), 10, "a loop")
        code = proc.terminate()
    finally:
        proc.close()
    assert code == 0, proc.output()
    assert not [name for name in libraries if "rtmidi" in name or "libtorch" in name], libraries
    assert xrun["count"] >= 1
    assert proc.events("stopped")[-1]["xruns"] >= xrun["count"]


def test_a_hung_engine_is_killed_and_replaced_while_the_music_goes_on(jack_server, tmp_path):
    proc = hosted(
        tmp_path,
        jack_server,
        f"{CLIENT}-hang",
        "--no-osc",
        "--bpm",
        "240",
        "--bars",
        "1",
        "--set",
        "audio.engine_hang_seconds=2",
    )
    try:
        with JackCapture(jack_server.name, seconds=60, name="hang-capture") as capture:
            proc.wait_event("started")
            capture.connect_from([f"{CLIENT}-hang:out_0", f"{CLIENT}-hang:out_1"])
            proc.loops_after(2)
            hung = engine_child(proc)
            os.kill(hung, signal.SIGSTOP)  # alive, but answering nothing
            event = proc.wait_event("engine_hung", timeout=30)
            proc.wait_event("engine_restarted", timeout=30)
            assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == psutil.STATUS_ZOMBIE
            proc.wait_event("started", lambda e: e["time"] > event["time"], timeout=60)
            proc.loops_after(2)
            code = proc.terminate()
            captured = capture.recorded().copy()
    finally:
        proc.close()
    assert code == 0, proc.output()
    assert event["pid"] == hung and event["seconds"] >= 2
    assert silent_windows(captured) == []


def test_an_engine_does_not_outlive_its_host(jack_server, tmp_path):
    proc = hosted(tmp_path, jack_server, f"{CLIENT}-orphan", "--no-osc")
    try:
        proc.loops_after(1)
        engine = psutil.Process(engine_child(proc))
        proc.proc.kill()  # the host dies without a word (SIGKILL)
        proc.proc.wait()
        gone, _ = psutil.wait_procs([engine], timeout=30)
    finally:
        proc.close()
    assert gone == [engine]  # the kernel ended the engine with its host (no orphan left running)


def test_a_panic_is_crossfaded_by_the_host_and_reported_when_it_began(jack_server, tmp_path):
    from pythonosc.udp_client import SimpleUDPClient

    show, safe_frames = banked_show(tmp_path)

    port = free_udp_port()
    rec = tmp_path / "rec.wav"
    proc = hosted(
        tmp_path, jack_server, f"{CLIENT}-panic", "--config", show, "--record", str(rec), "--osc-port", str(port)
    )
    try:
        proc.loops_after(2)
        SimpleUDPClient("127.0.0.1", port).send_message("/riff/panic", 1)
        heard = proc.wait_event("panic_heard", timeout=30)
        panic = proc.wait_event("panic")
        proc.wait_event("loop_started", lambda e: e["clip_id"] == panic["clip_id"])
        proc.loops_after(2)
        code = proc.terminate()
    finally:
        proc.close()
    assert code == 0, proc.output()
    assert heard["after_ms"] >= 0 and heard["monotonic"] > 0
    recorded, _ = soundfile.read(str(rec), dtype="float32", always_2d=True)
    seam = panic["frame"]
    assert panic["heard_from"] < seam  # the host's crossfade began before the ring's seam
    start, end = panic["heard_from"] + RATE // 10, seam + 2 * len(safe_frames)  # past the fade
    assert end <= len(recorded)
    phase = (np.arange(start, end) - seam) % len(safe_frames)
    np.testing.assert_allclose(recorded[start:end], safe_frames[phase], atol=1e-6)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt((audio**2).mean()))


def test_osc_while_no_engine_runs_is_played_by_the_host_and_kept_for_the_next_engine(jack_server, tmp_path):
    from pythonosc.udp_client import SimpleUDPClient

    port = free_udp_port()
    rec = tmp_path / "rec.wav"
    proc = hosted(tmp_path, jack_server, f"{CLIENT}-away", "--record", str(rec), "--osc-port", str(port), "--bars", "1")
    osc = SimpleUDPClient("127.0.0.1", port)
    try:
        proc.loops_after(2)
        os.kill(engine_child(proc), signal.SIGKILL)
        # sent while no engine runs: the host holds the port, plays the gain, keeps the rest
        osc.send_message("/riff/gain", -20.0)
        osc.send_message("/riff/prompt_a/0", "while away")
        ended = proc.wait_event("engine_ended", timeout=30)
        handed = proc.wait_event("osc_handed_over", lambda e: e["time"] > ended["time"], timeout=60)
        resumed = proc.wait_event("loop_scheduled", lambda e: e["prompt"] == "while away", timeout=60)
        proc.loops_after(2)
        code = proc.terminate()
    finally:
        proc.close()
    assert code == 0, proc.output()
    assert handed["applied"] == 1 and handed["kept"] == 2 and handed["dropped"] == 0
    assert resumed["time"] > handed["time"]  # the new engine applied what was kept for it
    changes = [e["changes"] for e in proc.events("state") if e["time"] > ended["time"]]
    assert {"gain": -20.0} in changes  # its state says what the host plays
    recorded, _ = soundfile.read(str(rec), dtype="float32", always_2d=True)
    start, end = ended["frame"], handed["frame"]
    assert end - start > RATE // 4, "the new engine came back before the test could listen"
    before = rms(recorded[start - RATE // 2 : start])
    away = rms(recorded[end - RATE // 8 : end])  # the held loop, at the host's new gain
    assert away == pytest.approx(before * 10 ** (-20 / 20), rel=0.2)
    assert silent_windows(recorded) == []


def test_a_panic_while_no_engine_runs_is_played_by_the_host_then_the_next_engines(jack_server, tmp_path):
    from pythonosc.udp_client import SimpleUDPClient

    show, safe_frames = banked_show(tmp_path)

    port = free_udp_port()
    rec = tmp_path / "rec.wav"
    proc = hosted(
        tmp_path,
        jack_server,
        f"{CLIENT}-away-panic",
        "--config",
        str(show),
        "--record",
        str(rec),
        "--osc-port",
        str(port),
    )
    try:
        proc.loops_after(2)
        os.kill(engine_child(proc), signal.SIGKILL)
        SimpleUDPClient("127.0.0.1", port).send_message("/riff/panic", 1)
        ended = proc.wait_event("engine_ended", timeout=30)
        heard = proc.wait_event("panic_heard", timeout=30)
        handed = proc.wait_event("osc_handed_over", lambda e: e["time"] > ended["time"], timeout=60)
        panic = proc.wait_event("panic", lambda e: e["time"] > handed["time"], timeout=30)  # the engine's own
        taken = proc.wait_event("panic_heard", lambda e: e["time"] > handed["time"], timeout=30)  # in the host
        proc.wait_event("loop_started", lambda e: e["clip_id"] == panic["clip_id"])
        proc.loops_after(2)
        code = proc.terminate()
    finally:
        proc.close()
    assert code == 0, proc.output()
    assert heard["time"] < handed["time"] and handed["applied"] == 1 and handed["kept"] == 1
    recorded, _ = soundfile.read(str(rec), dtype="float32", always_2d=True)
    # the host played the safe loop on the bar grid of the loop it held (a loop the dead engine started)
    start, end = ended["frame"] + RATE // 10, handed["frame"]
    assert end - start > RATE // 10, "the new engine came back before the test could listen"
    frames = np.arange(start, end)
    origins = [e["frame"] for e in proc.events("loop_started") if e["time"] < ended["time"]]
    assert any(
        np.allclose(recorded[start:end], safe_frames[(frames - origin) % len(safe_frames)], atol=1e-6)
        for origin in origins
    )
    # then the next engine's own panic took over, in its phase (its loop starts on the seam, which
    # may lie before the frame the host heard it at), and the ring played it on
    seam = panic["frame"]
    begin = max(seam, taken["frame"]) + round(PANIC_FADE_SECONDS * RATE)
    late = np.arange(begin, min(begin + len(safe_frames), len(recorded)))
    assert len(late) > RATE // 2
    np.testing.assert_allclose(recorded[late], safe_frames[(late - seam) % len(safe_frames)], atol=1e-6)
    assert silent_windows(recorded) == []


def test_an_engine_that_dies_before_its_first_loop_leaves_the_host_playing_the_safe_loop(jack_server, tmp_path):
    show, safe_frames = banked_show(tmp_path)
    crash = tmp_path / "crash"
    crash.mkdir()  # every engine the host starts dies at once, as with a GPU fault at start
    (crash / "sitecustomize.py").write_text(
        "import os, signal, sys\nif '--attach-host' in sys.argv:\n    os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    rec = tmp_path / "rec.wav"
    proc = hosted(
        tmp_path,
        jack_server,
        f"{CLIENT}-fallback",
        "--config",
        show,
        "--record",
        str(rec),
        "--no-osc",
        env={"PYTHONPATH": str(crash)},
    )
    try:
        degraded = proc.wait_event("degraded", timeout=30)
        proc.wait_event("engine_ended", lambda e: len(proc.events("engine_ended")) >= 4, timeout=30)
        code = proc.terminate()
    finally:
        proc.close()
    assert code == 0, proc.output()
    assert "before its first loop" in degraded["reason"] and "safe loop" in degraded["reason"]
    ended = proc.events("engine_ended")
    assert all(e["status"] == -signal.SIGSEGV for e in ended) and len(proc.events("engine_restarted")) >= 3
    recorded, _ = soundfile.read(str(rec), dtype="float32", always_2d=True)
    end = ended[-1]["frame"]  # the host held the safe loop from the stream's first frame on
    assert end > RATE
    np.testing.assert_allclose(recorded[:end], safe_frames[np.arange(end) % len(safe_frames)], atol=1e-6)
