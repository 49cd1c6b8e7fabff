"""The OSC server over real UDP on 127.0.0.1: python-osc, liblo's oscsend/oscdump, raw bytes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from surface_fixtures import OscClient, RunningSurfaces, wait_until

from riffengine.config import Settings, load_config
from riffengine.control import params
from riffengine.state import as_pairs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """
osc:
  port: 0
paths:
  spectrograms: spectrograms
  scenes: scenes
scenes:
  verse:
    prompt_a/0: "dusty boom bap"
    alpha: 0.0
  chorus:
    prompt_b/0: "funky jazz trumpet"
    alpha: 1.0
"""


def settings_in(tmp_path, text: str = CONFIG) -> Settings:
    path = tmp_path / "riffengine.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.fixture
def engine(tmp_path):
    with RunningSurfaces(settings_in(tmp_path)) as running:
        yield running


@pytest.fixture
def client(engine):
    with OscClient(engine.osc_port) as c:
        yield c


def test_listens_on_localhost_by_default(engine):
    assert Settings().osc.host == "127.0.0.1"
    assert engine.surfaces.osc.address[0] == "127.0.0.1"


def test_sets_values_of_every_form_and_status_shows_them(engine, client):
    client.send("/riff/alpha", 0.25)  # float
    client.send("/riff/bars", 4.0)  # an int parameter sent as a float
    client.send("/riff/seed_a", 4_000_000_000)  # int64 for a seed above 2**31
    client.send("/riff/prompt_a/1", "funky", "jazz", 808.0)  # text args are joined
    client.send("/riff/weight_b", 0.1, 0.2)  # the first slots, one per argument
    client.send("/riff/steps/norm", 1.0)  # knob position on the table's curve
    client.send("/riff/guidance_a/norm", 0.5)
    client.send("/riff/scheduler", "euler")
    client.send("/riff/weight_a/*", 0.5)  # an OSC pattern: every slot
    status = client.status()

    assert status["alpha"] == pytest.approx(0.25)
    assert status["bars"] == 4 and engine.values["bars"] == 4
    assert status["seed_a"] == 4_000_000_000
    assert status["prompt_a/1"] == "funky jazz 808"
    assert engine.values["weight_b"] == (0.1, 0.2, 1.0, 1.0)
    assert engine.values["steps"] == 150
    assert engine.values["guidance_a"] == pytest.approx(10.0)
    assert status["scheduler"] == "euler"
    assert engine.values["weight_a"] == (0.5, 0.5, 0.5, 0.5)
    # every parameter key, in table order, then the engine figures
    keys = list(status)
    table_keys = [k for k, _ in as_pairs(engine.store.state)]
    assert keys[: len(table_keys)] == table_keys
    assert status["bar"] == 7 and status["render_ms"] == pytest.approx(850.0)
    assert status["osc_failed"] == 0 and status["osc_dropped"] == 0
    assert {source for *_, source in engine.changes} == {f"osc 127.0.0.1:{client.port}"}


def test_figure_named_like_a_parameter_is_sent_under_engine_prefix(tmp_path):
    with (
        RunningSurfaces(settings_in(tmp_path), figures=lambda: {"bpm": 118.5, "bar": 3}) as engine,
        OscClient(engine.osc_port) as client,
    ):
        status = client.status()
    assert status["bpm"] == 120.0 and status["engine.bpm"] == pytest.approx(118.5)
    assert status["bar"] == 3


def test_scene_recall_and_missing_scene(engine, client):
    client.send("/riff/scene", 1.0)
    wait_until(lambda: engine.values["scene"] == 1, what="scene 1")
    assert engine.values["prompt_b"][0] == "funky jazz trumpet"
    assert engine.values["alpha"] == 1.0
    version = engine.store.state.version
    fail = client.request("/riff/scene", 5, reply="/riff/fail")
    assert fail.params[0] == "/riff/scene" and "scene 5 does not exist" in fail.params[1]
    assert "0=verse, 1=chorus" in fail.params[1]
    assert engine.store.state.version == version


def test_a_scene_saved_over_osc_is_a_file_and_recalls_after_the_configured_ones(engine, client, tmp_path):
    client.send("/riff/prompt_a/0", "saved groove")
    client.send("/riff/alpha", 0.375)
    client.send("/riff/gain", -12.0)  # live controls are not part of a scene
    wait_until(lambda: engine.values["alpha"] == 0.375, what="alpha")
    reply = client.request("/riff/scene_save", "after hours", reply="/riff/scene_save.reply")
    assert reply.params == ["after hours", 2]  # after verse and chorus
    saved = tmp_path / "scenes" / "after hours.yaml"
    assert "saved groove" in saved.read_text() and "gain" not in saved.read_text()
    unnamed = client.request("/riff/scene_save", reply="/riff/scene_save.reply")
    assert unnamed.params == ["scene 3", 3]
    client.send("/riff/scene", 0)
    wait_until(lambda: engine.values["prompt_a"][0] == "dusty boom bap", what="scene 0")
    client.send("/riff/scene", 2)
    wait_until(lambda: engine.values["scene"] == 2, what="scene 2")
    assert engine.values["prompt_a"][0] == "saved groove" and engine.values["alpha"] == 0.375
    version = engine.store.state.version
    fail = client.request("/riff/scene_save", "../escape", reply="/riff/fail")
    assert fail.params[0] == "/riff/scene_save" and "is not valid" in fail.params[1]
    assert not (tmp_path / "escape.yaml").exists() and engine.store.state.version == version


def _bundle_nested(depth: int) -> bytes:
    """Bundles inside bundles, written byte by byte (python-osc itself recurses on them)."""
    inner = OscMessageBuilder("/riff/alpha")
    inner.add_arg(0.5)
    data = inner.build().dgram
    for _ in range(depth):
        data = b"#bundle\x00" + (1).to_bytes(8, "big") + len(data).to_bytes(4, "big") + data
    return data


def _many_messages(n: int) -> bytes:
    b = OscBundleBuilder(IMMEDIATELY)
    for _ in range(n):
        m = OscMessageBuilder("/riff/alpha")
        m.add_arg(0.5)
        b.add_content(m.build())
    return b.build().dgram


def _future(seconds: float, value: float) -> bytes:
    b = OscBundleBuilder(time.time() + seconds)
    m = OscMessageBuilder("/riff/alpha")
    m.add_arg(value)
    b.add_content(m.build())
    return b.build().dgram


BAD = [
    # (address, args, words the reason must contain)
    ("/riff/nothing", (1.0,), "unknown parameter 'nothing'"),
    ("/riff/alpah", (0.5,), "did you mean 'alpha'"),
    ("/elsewhere/alpha", (0.5,), "is not a parameter"),
    ("/riff/alpha", ("loud",), "is not a number"),
    ("/riff/alpha", (True,), "is not a number"),
    ("/riff/alpha", (b"\x00\x01",), "is not a number"),
    ("/riff/alpha", (), "no value"),
    ("/riff/alpha", (0.1, 0.2), "2 arguments"),
    ("/riff/alpha", (1.5,), "out of range"),
    ("/riff/bpm", (float("nan"),), "not a finite number"),
    ("/riff/bpm", (float("inf"),), "not a finite number"),
    ("/riff/bars", (2.5,), "not a whole number"),
    ("/riff/steps", (0,), "out of range"),
    ("/riff/seed_a", (-1,), "out of range"),
    ("/riff/scheduler", ("eulerr",), "did you mean 'euler'"),
    ("/riff/prompt_a/0", ("x" * 5000,), "longer than osc.max_string_length"),
    ("/riff/prompt_a/0", (b"blob",), "is not text"),
    ("/riff/prompt_a/9", ("x",), "slot 9 does not exist"),
    ("/riff/prompt_a", ("a", "b", "c", "d", "e"), "5 arguments"),
    ("/riff/weight_a", ("heavy",), "is not a number"),
    ("/riff/prompt_a/0/norm", (0.5,), "only numbers and choices"),
    ("/riff/weight_a/norm", (0.5,), "a knob sets one slot"),
    ("/riff/alpha/norm", (1.5,), "alpha/norm: 1.5 is out of range; use a number from 0 to 1"),
    ("/riff/alpha/norm", ("half",), "is not a number"),
    ("/riff/scene", (2.0,), "does not exist"),
    ("/riff/status", (1, 2), "send no argument"),
    ("/riff/status", (70000,), "reply port"),
    ("/riff/notify", (2,), "is not 1 or 0"),
    ("/riff/notify", (), "send 1 (subscribe) or 0"),
    ("/riff/learn", ("alpha",), "MIDI input is off"),
    ("/riff/learn", ("prompt_a/0",), "is text"),
    ("/riff/learn", (), "send the parameter to learn"),
    ("/riff/alpha", tuple(0.1 for _ in range(40)), "too many"),
]


@pytest.mark.parametrize("address, args, reason", BAD, ids=[f"{a} {r}" for a, _, r in BAD])
def test_bad_messages_get_fail_and_change_nothing(engine, client, address, args, reason):
    before = engine.store.state
    client.send(address, *args)
    fail = client.wait_for("/riff/fail")
    assert fail.params[0] == address
    assert reason in fail.params[1], fail.params[1]
    assert engine.store.state is before  # not even a new version
    assert engine.surfaces.osc.failed >= 1


@pytest.mark.parametrize(
    "packet, reason",
    [
        (b"not osc at all", "malformed OSC packet"),
        (b"#bundle\x00\x00\x00\x00", "malformed OSC packet"),
        (_bundle_nested(1200), "malformed OSC packet"),
        (_many_messages(100), "too many"),
        (_future(3600, 0.5), "s ahead"),
    ],
    ids=["garbage", "truncated bundle", "deep nesting", "too many messages", "far timetag"],
)
def test_bad_packets_get_fail_and_change_nothing(engine, client, packet, reason):
    before = engine.store.state
    client.send_raw(packet)
    fail = client.wait_for("/riff/fail")
    assert reason in fail.params[1], fail.params[1]
    assert engine.store.state is before


def test_future_timetag_applies_later_without_blocking_the_loop(engine, client):
    client.send_raw(_future(2.0, 0.9))
    client.send("/riff/alpha", 0.3)
    # the loop answers at once: the timed message waits on a timer, not in a sleep
    status = client.status()
    assert status["alpha"] == pytest.approx(0.3)
    wait_until(lambda: engine.values["alpha"] == pytest.approx(0.9), what="timed alpha")
    assert [v for k, v, _ in engine.changes if k == "alpha"] == [pytest.approx(0.3), pytest.approx(0.9)]


def test_status_and_fail_go_to_the_reply_port_the_sender_names(engine, client):
    with OscClient(engine.osc_port) as listener:
        client.send("/riff/status", listener.port)
        reply = listener.wait_for("/riff/status.reply")
        assert "alpha" in reply.params
        client.send("/riff/alpha", 9.0)
        fail = listener.wait_for("/riff/fail")
        assert fail.params[0] == "/riff/alpha"


def test_notify_pushes_state_beat_loop_and_fail(engine, client, tmp_path):
    with OscClient(engine.osc_port) as listener, OscClient(engine.osc_port) as other:
        client.send("/riff/notify", 1.0, float(listener.port))  # Pure Data style floats
        assert listener.wait_for("/riff/notify.reply").params == [1]

        other.send("/riff/prompt_b/2", "glass", "harp")
        state = listener.wait_for("/riff/state")
        assert state.params == ["prompt_b/2", "glass harp", f"osc 127.0.0.1:{other.port}"]

        engine.call(engine.bus.publish, "beat", bar=12, beat=3)
        assert listener.wait_for("/riff/beat").params == [12, 3]
        # the engine's form: the absolute beat plus the beat within the bar (from 0)
        engine.call(engine.bus.publish, "beat", beat=49, bar=12, beat_in_bar=1, frame=0)
        assert listener.wait_for("/riff/beat").params == [12, 2]

        image = Image.new("RGB", (64, 32), (10, 200, 30))
        engine.call(engine.bus.publish, "loop_started", index=5, bar=16, frame=0, image=image, clip_id="c1")
        loop = listener.wait_for("/riff/loop")
        index, bar, path = loop.params
        assert (index, bar) == (5, 16)
        assert path.startswith(str(tmp_path / "spectrograms")) and path.endswith(".png")
        with Image.open(path) as written:
            assert written.size == (64, 32) and written.getpixel((3, 3)) == (10, 200, 30)
        # the same clip repeating: the same file, not a new one
        engine.call(engine.bus.publish, "loop_started", index=6, bar=18, frame=0, image=image, clip_id="c1")
        assert listener.wait_for("/riff/loop").params == [6, 18, path]
        assert len(os.listdir(tmp_path / "spectrograms")) == 1

        engine.call(engine.bus.publish, "loop_started", index=7, bar=20, frame=0, image="/x/y.png")
        assert listener.wait_for("/riff/loop").params == [7, 20, "/x/y.png"]
        # a loop of the walk: what it is follows the loop message
        engine.call(
            engine.bus.publish,
            "loop_started",
            index=8,
            bar=22,
            frame=0,
            image="/x/z.png",
            alpha=0.25,
            seed_a=42,
            seed_b=43,
            prompts="0123abcd",
            step=5,
            glide="1/4",
        )
        assert listener.wait_for("/riff/loop").params == [8, 22, "/x/z.png"]
        walk = listener.wait_for("/riff/walk").params
        assert walk == [8, pytest.approx(0.25), 42, 43, "0123abcd", 5, "1/4"]

        engine.call(engine.bus.publish, "render_failed", reason="error", error="OutOfMemoryError: CUDA out of memory")
        fail = listener.wait_for("/riff/fail")
        assert fail.params == ["/riff/render", "OutOfMemoryError: CUDA out of memory"]

        # unsubscribe: the next change is not pushed; after subscribing again, the first
        # push the listener sees is the later change
        client.send("/riff/notify", 0)
        assert listener.wait_for("/riff/notify.reply").params == [0]
        other.send("/riff/alpha", 0.125)
        wait_until(lambda: engine.values["alpha"] == 0.125, what="alpha 0.125")
        client.send("/riff/notify", 1, listener.port)
        listener.wait_for("/riff/notify.reply")
        other.send("/riff/alpha", 0.5)
        first = listener.wait_for("/riff/state")
        assert first.params[:2] == ["alpha", 0.5]


def test_packets_from_outside_osc_allow_are_dropped_and_counted(tmp_path):
    settings = settings_in(tmp_path, CONFIG.replace("port: 0", "port: 0\n  allow: [10.0.0.0/8]"))
    with RunningSurfaces(settings) as engine, OscClient(engine.osc_port) as client:
        before = engine.store.state
        client.send("/riff/alpha", 0.75)
        client.send("/riff/status")
        wait_until(lambda: engine.surfaces.osc.dropped == 2, what="2 dropped packets")
        assert engine.store.state is before
        client._drain()
        assert client.received == []  # no answer at all, not even /riff/fail


@pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools is not installed")
def test_oscsend_sets_values_and_oscdump_receives_pushes(engine, client):
    port = str(engine.osc_port)
    with OscClient(engine.osc_port) as probe:
        dump_port = probe.port
    dump = subprocess.Popen(["oscdump", "-L", str(dump_port)], stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(dump.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # liblo's oscdump listens on the port; subscribe it from our client
        def subscribed():  # oscdump may not listen yet: ask again until it hears the answer
            client.send("/riff/notify", 1, dump_port)
            return wait_for_line(lines, "/riff/notify.reply", 0.5)

        wait_until(subscribed, what="oscdump subscribed")
        for args in (
            ["/riff/alpha", "f", "0.75"],
            ["/riff/seed_b", "i", "31337"],
            ["/riff/prompt_b/0", "s", "warm rhodes chords"],
            ["/riff/bars", "f", "8"],
        ):
            subprocess.run(["oscsend", "127.0.0.1", port, *args], check=True, timeout=10)
        wait_until(lambda: engine.values["bars"] == 8, what="oscsend values")
        assert engine.values["alpha"] == 0.75
        assert engine.values["seed_b"] == 31337
        assert engine.values["prompt_b"][0] == "warm rhodes chords"
        subprocess.run(["oscsend", "127.0.0.1", port, "/riff/alpha", "s", "loud"], check=True, timeout=10)
        wait_until(lambda: any("/riff/state" in ln and "bars" in ln for ln in lines), what="oscdump output")
        assert any("/riff/state" in ln and "alpha" in ln and "0.75" in ln for ln in lines)
        assert engine.values["alpha"] == 0.75  # the bad one changed nothing
    finally:
        dump.terminate()
        dump.wait(10)
        reader.join(10)


def wait_for_line(lines: list[str], text: str, timeout: float) -> bool:
    try:
        wait_until(lambda: any(text in ln for ln in lines), timeout, text)
    except AssertionError:
        return False
    return True


def test_python_client_example(engine):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "python_client.py"),
            "--port",
            str(engine.osc_port),
            "--prompt",
            "deep house bassline",
            "--alpha",
            "0.4",
            "--seed",
            "777",
            "--evolve",
            "0.25",
            "--glide",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert engine.values["prompt_a"][0] == "deep house bassline"
    assert engine.values["alpha"] == pytest.approx(0.4)
    assert engine.values["seed_a"] == 777
    assert "prompt_a/0 = deep house bassline" in result.stdout
    assert "alpha = 0.4" in result.stdout
    assert (engine.values["evolve"], engine.values["glide"]) == (0.25, 2)


def _probe_value(p: params.Param) -> object:
    """A value of ``p`` that is not its default."""
    default = p.slot_default(p.slots - 1) if p.slots else p.default
    if p.type == "enum":
        return p.choices[-1]
    if p.name == "seed_image":
        return "house_120"  # a built-in seed: paths over OSC must name real files
    if p.type == "str":
        return "text"
    if p.type == "bool":
        return not default
    return p.maximum if default != p.maximum else p.minimum


def test_every_parameter_has_an_address(engine, client):
    """The table drives dispatch: each parameter's address reaches it (status shows it)."""
    settable = [p for p in params.PARAMS if p.effect != "action"]
    for p in settable:
        client.send(p.slot_address(p.slots - 1) if p.slots else p.address, _probe_value(p))
    status = client.status()
    for p in settable:
        key = f"{p.name}/{p.slots - 1}" if p.slots else p.name
        if p.type in ("float", "int"):
            assert status[key] == pytest.approx(_probe_value(p)), key
        else:
            assert status[key] == _probe_value(p), key
        assert engine.values[p.name] != p.default, key


def _max_atoms(text: str) -> list[object]:
    """Atoms as Max's udpsend sends them: ints, floats, the rest symbols (strings)."""
    out: list[object] = []
    for word in text.split():
        for kind in (int, float):
            try:
                out.append(kind(word))
                break
            except ValueError:
                continue
        else:
            out.append(word)
    return out


def test_max_patch_is_well_formed_and_its_messages_are_accepted(engine, client):
    import json

    with open(os.path.join(ROOT, "examples", "max", "riffengine.maxpat")) as file:
        patcher = json.load(file)["patcher"]
    boxes = {b["box"]["id"]: b["box"] for b in patcher["boxes"]}
    for line in patcher["lines"]:
        (src, outlet), (dst, inlet) = line["patchline"]["source"], line["patchline"]["destination"]
        assert outlet < boxes[src]["numoutlets"] and inlet < boxes[dst]["numinlets"]
    messages = [b["text"] for b in boxes.values() if b["maxclass"] == "message"]
    prepends = [
        b["text"].split()[1] for b in boxes.values() if b["maxclass"] == "newobj" and b["text"].startswith("prepend ")
    ]
    assert len(messages) >= 5 and len(prepends) >= 3
    with OscClient(engine.osc_port) as listener:
        reply_port = listener.port
        for text in messages:  # the patch's 9001 becomes this test's listening port
            address, *args = _max_atoms(text.replace("9001", str(reply_port)))
            client.send(address, *args)
        for address in prepends:
            if "glide" in address:
                client.send(address, 4)
            else:
                client.send(address, 0.5 if any(w in address for w in ("norm", "alpha", "evolve")) else 99)
        listener.wait_for("/riff/status.reply")
        listener.wait_for("/riff/notify.reply")
        client.send("/riff/status")  # answered after everything before it: to the named port
        listener.wait_for("/riff/status.reply")
        assert engine.surfaces.osc.failed == 0
    assert engine.values["prompt_a"][0] == "lo-fi piano with rain"
    assert engine.values["alpha"] == 0.5 and engine.values["seed_a"] == 99
    assert engine.values["scene"] == 1
    assert engine.values["evolve"] == 0.5 and engine.values["glide"] == 4
    assert engine.values["transport"] == "stop"  # play, then stop, in the order of the boxes


def test_touchdesigner_script_sends_addresses_the_engine_serves(engine, client):
    """Run the TouchDesigner module with a stand-in for op('oscout1') that sends over UDP."""
    namespace: dict = {}
    with open(os.path.join(ROOT, "examples", "touchdesigner", "riffengine_osc.py")) as file:
        exec(compile(file.read(), "riffengine_osc.py", "exec"), namespace)

    class OscOut:
        def sendOSC(self, address, values):
            client.send(address, *values)

    namespace["op"] = lambda name: OscOut()
    namespace["REPLY_PORT"] = client.port
    namespace["set_prompt"]("lo-fi piano with rain")
    namespace["set_alpha"](0.5)
    namespace["set_seed"](1234)
    namespace["set_norm"]("guidance_a", 0.25)
    namespace["set_evolve"](0.25)
    namespace["set_evolve_mode"]("pingpong")
    namespace["set_glide"](4)
    namespace["stop"]()
    namespace["subscribe"]()
    client.wait_for("/riff/notify.reply")
    namespace["status"]()
    client.wait_for("/riff/status.reply")
    assert engine.surfaces.osc.failed == 0
    assert engine.values["prompt_a"][0] == "lo-fi piano with rain"
    assert (engine.values["alpha"], engine.values["seed_a"]) == (0.5, 1234)
    assert engine.values["guidance_a"] == pytest.approx(5.0)
    assert (engine.values["evolve"], engine.values["evolve_mode"], engine.values["glide"]) == (0.25, "pingpong", 4)
    assert engine.values["transport"] == "stop"
