"""The engine as a daemon, live through a JACK dummy server: systemd notify (READY, WATCHDOG,
STOPPING on a real datagram socket), SIGHUP reload (applied, and refused with /riff/fail),
and /riff/panic to the bank's safe loop (and its refusal without a bank)."""

from __future__ import annotations

import socket

import numpy as np
import soundfile
from engine_fixtures import LiveEngine, bank_safe_loop
from jack_fixtures import jack_server  # noqa: F401  (module-scoped JACK dummy server)
from surface_fixtures import OscClient, wait_until

from riffengine.config import load_config, merge_overrides
from riffengine.engine import Engine
from riffengine.render.fake import FakeRenderer
from riffengine.sdnotify import Notifier

LIVE = {"audio.output": "jack", "tempo.bpm": 240.0, "loop.bars": 1, "osc.port": 0}


def config(tmp_path, text: str):
    path = tmp_path / "show.yaml"
    path.write_text(text)

    def load():
        return merge_overrides(load_config(path), {**LIVE, "audio.jack_client_name": "riff-daemon"})

    return path, load


def bank_show_safe_loop(folder, load) -> None:
    """Bank a safe loop that is another state than the start (a scene of the show)."""
    bank_safe_loop(folder, merge_overrides(load(), {"initial.prompt_a/0": "safe groove", "initial.seed_a": 7}))


def test_notify_reload_and_refused_reload(jack_server, tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.settimeout(0.05)
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"})
    path, load = config(tmp_path, f"cache: {{folder: {tmp_path / 'cache'}}}\ninitial: {{prompt_a: [first prompt]}}\n")
    engine = Engine(
        load(), FakeRenderer(seconds=0.1, sleep=True), signals=False, reload_settings=load, notifier=notifier
    )
    received: list[str] = []

    def drain():
        try:
            while True:
                received.append(listener.recv(4096).decode())
        except TimeoutError:
            pass
        return received

    try:
        with LiveEngine(engine) as live, OscClient(engine.surfaces.osc.address[1]) as client:
            wait_until(lambda: any(m.startswith("READY=1") for m in drain()), what="READY=1")
            wait_until(lambda: sum(m == "WATCHDOG=1" for m in drain()) >= 3, what="watchdog pings")
            client.request("/riff/notify", 1, reply="/riff/notify.reply")
            # a good new file: its changed prompt is applied, the allow list too
            path.write_text(
                f"cache: {{folder: {tmp_path / 'cache'}}}\n"
                "initial: {prompt_a: [second prompt]}\nosc: {allow: [10.0.0.0/8]}\n"
            )
            live.call(engine.reload)
            live.wait_event("reloaded")
            assert engine.store.state.values["prompt_a"][0] == "second prompt"
            assert any(m.startswith("RELOADING=1") for m in drain())
            assert engine.surfaces.osc.settings.allow == ("10.0.0.0/8",)
            # a bad file: refused, the settings in force stay, subscribers told
            path.write_text("loop: {bars: 99}\n")
            live.call(engine.reload)
            fail = live.wait_event("fail", lambda d: d["address"] == "/riff/reload")
            assert "reload refused" in fail.data["reason"] and "loop.bars" in fail.data["reason"]
            assert engine.settings.loop.bars == 1
            msg = client.wait_for("/riff/fail", lambda m: m.params[0] == "/riff/reload")
            assert "99" in msg.params[1]
        assert any(m.startswith("STOPPING=1") for m in drain())
    finally:
        listener.close()


def test_panic_crossfades_to_the_banked_safe_loop_and_without_a_bank_is_refused(jack_server, tmp_path):
    path, load = config(tmp_path, f"cache: {{folder: {tmp_path / 'cache'}}}\n")
    fake = FakeRenderer(seconds=0.1, sleep=True)
    engine = Engine(load(), fake, signals=False, reload_settings=load)
    with LiveEngine(engine) as live, OscClient(engine.surfaces.osc.address[1]) as client:
        client.send("/riff/panic")
        msg = client.wait_for("/riff/fail", lambda m: m.params[0] == "/riff/panic")
        assert "no safe loop is banked" in msg.params[1] and "riffengine bank" in msg.params[1]
        # bank a safe loop (another state: a scene of the show) and reload to read it
        bank_show_safe_loop(tmp_path / "cache", load)
        live.call(engine.reload)
        wait_until(lambda: engine.safe is not None, what="the safe loop read")
        fake_renders = fake.renders
        client.send("/riff/panic", 1)
        panic = live.wait_event("panic")
        started = live.wait_event("loop_started", lambda d: d["clip_id"] == panic.data["clip_id"])
        assert started.data["bar"] == panic.data["bar"]
        assert engine.store.state.values["prompt_a"][0] == "safe groove"
        assert fake.renders == fake_renders  # the safe loop needed no render
        live.loops_after(1)
        assert engine.ring.underruns == 0


def test_panic_is_heard_at_once_in_the_safe_loops_phase_and_continues_from_the_ring(jack_server, tmp_path):
    """The ring holds 2 s ahead; the callback plays the safe loop from the next period on, in the
    phase the timeline gives it at its seam, and the ring takes over with the very same samples."""
    path, load = config(
        tmp_path,
        f"cache: {{folder: {tmp_path / 'cache'}}}\n"
        f"audio: {{record: {tmp_path / 'rec.wav'}, ring_buffer_seconds: 2.0}}\n",
    )
    bank_show_safe_loop(tmp_path / "cache", load)
    engine = Engine(load(), FakeRenderer(seconds=0.1, sleep=True), signals=False, reload_settings=load)
    with LiveEngine(engine) as live:
        wait_until(lambda: engine.safe is not None, what="the safe loop read")
        live.loops_after(1)
        live.call(engine.panic)
        panic = live.wait_event("panic")
        frames = engine._safe_frames
        past = panic.data["frame"] + 2 * len(frames) + 8192
        wait_until(lambda: engine.heard_frame() > past, what="two safe loops heard after the seam")
    recorded, rate = soundfile.read(str(tmp_path / "rec.wav"), dtype="float32", always_2d=True)
    heard, seam = panic.data["heard_from"], panic.data["frame"]
    assert seam - heard > rate  # the old path would have been heard a second or more later
    start = heard + engine.output.panic.fade_frames + rate // 10  # a period or two, and the fade
    end = seam + 2 * len(frames)  # well past the hand-back to the ring
    assert end <= len(recorded)
    phase = (np.arange(start, end) - seam) % len(frames)
    np.testing.assert_array_equal(recorded[start:end], frames[phase])
    assert engine.ring.underruns == 0 and engine.output.callback_errors == 0
