"""The OSC side under hostile input: confined paths, bounded sizes and patterns, the allow list,
nothing evaluated, a fuzzed parser and dispatch, and a flood of garbage over real UDP."""

from __future__ import annotations

import ast
import random
import socket
import struct
import threading
import time
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pythonosc.osc_message_builder import OscMessageBuilder
from surface_fixtures import TIMEOUT, OscClient, RunningSurfaces, wait_until
from test_osc import settings_in

from riffengine import validation
from riffengine.control import osc, params
from riffengine.state import initial_state

CONTROL = Path(__file__).resolve().parents[1] / "riffengine" / "control"


@pytest.fixture
def seeds(tmp_path):
    """A seeds folder with files, a subfolder, and a link leading out; a file outside it."""
    folder = tmp_path / "seeds"
    (folder / "set2").mkdir(parents=True)
    for path in (folder / "loop.png", folder / "set2" / "b.png", tmp_path / "outside.png"):
        path.write_bytes(b"\x89PNG not really")
    (folder / "escape.png").symlink_to(tmp_path / "outside.png")
    return folder


@pytest.fixture
def engine(tmp_path, seeds):
    with RunningSurfaces(settings_in(tmp_path, "osc: {port: 0}\npaths: {seeds: seeds}\n")) as running:
        yield running


@pytest.fixture
def client(engine):
    with OscClient(engine.osc_port) as c:
        yield c


def state_is_valid(state) -> None:
    """Every value validates through the parameter table to itself."""
    for p in params.PARAMS:
        assert validation.validate(p.name, state.values[p.name]) == state.values[p.name], p.name


@pytest.mark.parametrize(
    "value, expected",
    [
        ("loop.png", "seeds/loop.png"),
        ("loop", "seeds/loop.png"),
        ("set2/b.png", "seeds/set2/b.png"),
        ("ABS:seeds/set2/b.png", "seeds/set2/b.png"),
        ("house_120", "house_120"),
        ("", ""),
    ],
)
def test_seed_paths_inside_the_folder_or_builtin_are_accepted(engine, client, tmp_path, value, expected):
    value = str(tmp_path / value[4:]) if value.startswith("ABS:") else value
    client.send("/riff/seed_image", value)
    want = expected if "/" not in expected else str(tmp_path / expected)
    wait_until(lambda: engine.values["seed_image"] == want, what=f"seed_image {want}")
    assert engine.surfaces.osc.failed == 0


@pytest.mark.parametrize(
    "value, reason",
    [
        ("../outside.png", "contains '..'"),
        ("set2/../../outside.png", "contains '..'"),
        ("set2/..", "contains '..'"),
        ("/etc/passwd", "is outside the folder"),
        ("ABS:outside.png", "is outside the folder"),
        ("escape.png", "is outside the folder"),
        ("missing.png", "is not a file in the folder"),
        ("set2", "is not a file in the folder"),
    ],
)
def test_seed_paths_leaving_the_folder_get_fail_and_change_nothing(engine, client, tmp_path, value, reason):
    value = str(tmp_path / value[4:]) if value.startswith("ABS:") else value
    before = engine.store.state
    for address in ("/riff/seed_image", "/riff/seed_ima?e"):  # a pattern reaches the same check
        client.send(address, value)
        fail = client.wait_for("/riff/fail")
        assert fail.params[0] == address and reason in fail.params[1], fail.params[1]
        assert "paths.seeds" in fail.params[1]
    assert engine.store.state is before


def _message(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


@pytest.mark.parametrize(
    "packet, reason",
    [
        (b"\x00" * (osc.MAX_PACKET + 1), "too big"),
        (_message("/riff/" + "a" * 300, 1.0), "too long"),
        (_message("/riff/" + "*" * 14 + "!", 1.0), "too complex"),  # seconds of regex backtracking
        (_message("/riff/{a,b}{c,d}", 1.0), "too complex"),
        (_message("/riff/alpha", *([0.5] * 33)), "too many"),
        (_message("/riff/negative", "x" * 5000), "longer than osc.max_string_length"),
    ],
    ids=["packet", "address", "stars", "braces", "arguments", "string"],
)
def test_sizes_and_pattern_costs_are_bounded(engine, client, packet, reason):
    before = engine.store.state
    client.send_raw(packet)
    fail = client.wait_for("/riff/fail")
    assert reason in fail.params[1], fail.params[1]
    assert client.status()["alpha"] == 0.0  # the loop still answers at once
    assert engine.store.state is before


def test_reply_ports_are_bounded_per_sender(engine):
    server = engine.surfaces.osc

    def many_senders():
        for port in range(20000, 20000 + 3 * osc.MAX_ROUTES):
            server.receive(_message("/riff/status", 9), ("127.0.0.1", port))
        return len(server._routes)

    assert engine.call(many_senders) == osc.MAX_ROUTES
    assert ("127.0.0.1", 20000 + 3 * osc.MAX_ROUTES - 1) in server._routes  # newest kept


CODE = [
    "__import__('os').system('touch PWNED')",
    "!!python/object/apply:os.system ['touch PWNED']",
    "{0.__class__.__mro__}",
    "%s%s%n%x",
    "$(touch PWNED)",
    "`touch PWNED`; rm -rf /",
]


def test_nothing_received_is_evaluated(engine, client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i, text in enumerate(CODE):
        client.send(f"/riff/prompt_a/{i % 4}", text)
        wait_until(lambda i=i, text=text: engine.values["prompt_a"][i % 4] == text, what="prompt stored as text")
    client.send("/riff/negative", CODE[0])
    client.send("/riff/learn", CODE[0])
    client.wait_for("/riff/fail")
    wait_until(lambda: engine.values["negative"] == CODE[0], what="negative")
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*"))
    state_is_valid(engine.store.state)


def test_the_control_code_has_no_evaluating_calls():
    """A static check of riffengine/control: no eval/exec/compile/pickle/unsafe YAML/shell."""
    banned_names = {"eval", "exec", "compile", "__import__"}
    banned_attrs = {
        ("pickle", "loads"),
        ("pickle", "load"),
        ("marshal", "loads"),
        ("yaml", "load"),
        ("yaml", "unsafe_load"),
        ("yaml", "full_load"),
        ("os", "system"),
        ("os", "popen"),
        ("subprocess", "run"),
        ("subprocess", "Popen"),
        ("subprocess", "call"),
        ("subprocess", "check_output"),
    }
    found = []
    for path in sorted(CONTROL.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if isinstance(f, ast.Name) and f.id in banned_names:
                found.append(f"{path.name}:{node.lineno} {f.id}")
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in banned_attrs:
                if (path.name, f"{f.value.id}.{f.attr}") in HELPER_PROCESSES:
                    # our own module as an argv list: no shell, and never with a shell
                    assert not any(k.arg == "shell" for k in node.keywords), path.name
                    continue
                found.append(f"{path.name}:{node.lineno} {f.value.id}.{f.attr}")
    assert found == []


HELPER_PROCESSES = {("jackmidi.py", "subprocess.Popen")}
"""Process starts allowed in the control code: the JACK MIDI helper (``python -m
riffengine.control.jackmidi`` with an argv list; a port name is one argv entry, never shell text)."""


def test_allow_list_drops_other_loopback_addresses(tmp_path):
    config = "osc: {port: 0, allow: [127.0.0.1/32]}\n"
    with RunningSurfaces(settings_in(tmp_path, config)) as engine, OscClient(engine.osc_port) as ok:
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind(("127.0.0.2", 0))
        try:
            other.sendto(_message("/riff/alpha", 0.5), ("127.0.0.1", engine.osc_port))
            wait_until(lambda: engine.surfaces.osc.dropped == 1, what="dropped")
            assert engine.values["alpha"] == 0.0
            ok.send("/riff/alpha", 0.25)
            wait_until(lambda: engine.values["alpha"] == 0.25, what="allowed sender served")
        finally:
            other.close()


# --- fuzzing ------------------------------------------------------------------------------------

ADDRESSES = [p.address for p in params.PARAMS] + [
    "/riff/prompt_a/0",
    "/riff/weight_b/3",
    "/riff/alpha/norm",
    "/riff/steps/norm",
    "/riff/prompt_a/7",
    "/riff/status",
    "/riff/notify",
    "/riff/learn",
    "/riff/*",
    "/riff/?eed_a",
    "/riff/[a-c]*",
    "/riff/{alpha,bars}",
    "/riff",
    "/",
    "",
    "/riff/alpha/norm/x",
    "#bundle",
]
ARGS = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.integers(2**31, 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(min_size=4000, max_size=5000, alphabet="ab"),
    st.booleans(),
    st.binary(max_size=64),
    st.sampled_from(["../x.png", "/etc/passwd", "house_120"]),
)


@st.composite
def messages(draw) -> bytes:
    address = draw(st.one_of(st.sampled_from(ADDRESSES), st.text(max_size=60)))
    builder = OscMessageBuilder(address)
    for arg in draw(st.lists(ARGS, max_size=6)):
        builder.add_arg(arg)
    try:
        return builder.build().dgram
    except Exception:  # the builder refuses some values (e.g. a bad int width): send raw bytes
        return address.encode("utf-8", "replace")[:60]


def bundle(contents: list[bytes], timetag: int) -> bytes:
    out = b"#bundle\x00" + struct.pack(">Q", timetag)
    for item in contents:
        out += struct.pack(">i", len(item)) + item
    return out


@st.composite
def packets(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "message", "bundle", "deep", "huge", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=512))
    if kind == "message":
        return draw(messages())
    if kind == "bundle":
        timetag = draw(st.sampled_from([1, 0, 2**64 - 1, int((time.time() + 2208988800 + 0.5) * 2**32)]))
        return bundle(draw(st.lists(messages(), max_size=5)), timetag)
    if kind == "deep":
        data = draw(messages())
        for _ in range(draw(st.integers(1, 1500))):
            data = bundle([data], 1)
        return data
    if kind == "huge":
        return _message("/riff/prompt_a/0", "x" * draw(st.integers(1000, osc.MAX_PACKET)))
    data = bytearray(draw(messages()))
    for _ in range(draw(st.integers(1, 8))):  # flip bytes of a valid message
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def test_fuzzed_packets_never_raise_and_the_state_stays_valid(tmp_path, seeds):
    """Random packets straight into the server's receive() on its loop: nothing escapes."""
    with RunningSurfaces(settings_in(tmp_path, "osc: {port: 0}\npaths: {seeds: seeds}\n")) as engine:
        server = engine.surfaces.osc
        start = initial_state(engine.settings)

        @settings(
            max_examples=400, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(packets(), st.sampled_from([("127.0.0.1", 40000), ("10.1.2.3", 40001)]))
        def fuzz(packet: bytes, sender) -> None:
            engine.call(server.receive, packet, sender)  # raises here if anything escaped
            state_is_valid(engine.store.state)

        fuzz()
        state = engine.store.state
        assert state.values["seed_image"] in ("", start.values["seed_image"], "house_120") or state.values[
            "seed_image"
        ].startswith(str(seeds))
        assert len(server._timers) <= osc.MAX_SCHEDULED
        assert len(server.subscribers) <= osc.MAX_SUBSCRIBERS
        assert server.failed > 0 and server.dropped > 0


# --- flood ----------------------------------------------------------------------------------------


def garbage(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.6:
        return rng.randbytes(rng.randint(0, 200))
    if roll < 0.8:
        return _message("/riff/negative", "z" * rng.randint(5000, 30000))
    if roll < 0.85:
        data = _message("/riff/alpha", 0.5)
        for _ in range(rng.randint(100, 1200)):
            data = bundle([data], 1)
        return data
    if roll < 0.95:
        return _message("/riff/" + "*" * rng.randint(3, 20) + "x", rng.random())
    return _message(rng.choice([a for a in ADDRESSES if a]), rng.random() * 10)


def flood(port: int, bind: str, seconds: float, rate: int, stop: threading.Event, sent: list[int]) -> None:
    """Send garbage from ``bind`` at about ``rate`` packets per second (loopback only)."""
    rng = random.Random(hash(bind) & 0xFFFF)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, 0))
    sock.setblocking(False)
    pool = [garbage(rng) for _ in range(500)]
    start = time.monotonic()
    count = 0
    try:
        while not stop.is_set() and (elapsed := time.monotonic() - start) < seconds:
            if count >= elapsed * rate:
                time.sleep(0.001)
                continue
            try:
                sock.sendto(pool[count % len(pool)], ("127.0.0.1", port))
            except (BlockingIOError, OSError):
                pass
            count += 1
    finally:
        sock.close()
        sent.append(count)


def test_flood_of_garbage_while_status_is_still_served(tmp_path):
    config = "osc: {port: 0, allow: [127.0.0.1/32]}\n"
    with RunningSurfaces(settings_in(tmp_path, config)) as engine, OscClient(engine.osc_port) as client:
        errors: list[dict] = []
        engine.loop.call_soon_threadsafe(engine.loop.set_exception_handler, lambda loop, ctx: errors.append(ctx))
        server = engine.surfaces.osc
        process = psutil.Process()
        stop, sent = threading.Event(), []
        senders = [
            threading.Thread(target=flood, args=(engine.osc_port, host, 4.0, 2000, stop, sent))
            for host in ("127.0.0.1", "127.0.0.2")
        ]  # the second is outside osc.allow
        for t in senders:
            t.start()
        try:
            time.sleep(0.5)
            rss_before = process.memory_info().rss
            answered = 0
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:

                def status_reply():  # UDP: ask again until the answer comes (the flood may fill queues)
                    client.send("/riff/status")
                    try:
                        return client.wait_for("/riff/status.reply", timeout=0.3)
                    except AssertionError:
                        return None

                reply = wait_until(status_reply, TIMEOUT, "status during the flood")
                assert "alpha" in reply.params
                answered += 1
            rss_after = process.memory_info().rss
        finally:
            stop.set()
            for t in senders:
                t.join(TIMEOUT)
        assert answered >= 3
        assert sum(sent) > 4000  # thousands of packets were thrown at it
        assert server.failed > 500 and server.dropped > 500
        assert rss_after - rss_before < 64 * 1024**2  # flat, within a generous bound
        assert len(server._routes) <= osc.MAX_ROUTES and len(server._timers) <= osc.MAX_SCHEDULED
        assert errors == []
        client.send("/riff/alpha", 0.75)  # and it still works afterwards
        wait_until(lambda: engine.values["alpha"] == 0.75, what="alpha after the flood")
        state_is_valid(engine.store.state)


def test_reconfigure_swaps_the_allow_list_and_the_seed_folder(tmp_path, seeds):
    """What a SIGHUP reload does to the OSC server: a new allow list and folders, same socket."""
    with (
        RunningSurfaces(settings_in(tmp_path, "osc: {port: 0}\npaths: {seeds: seeds}\n")) as engine,
        OscClient(engine.osc_port) as client,
    ):
        other = tmp_path / "other"
        other.mkdir()
        (other / "x.png").write_bytes(b"png")
        reloaded = settings_in(tmp_path, "osc: {port: 0, allow: [10.0.0.0/8]}\npaths: {seeds: other}\n")
        engine.call(engine.surfaces.osc.reconfigure, reloaded.osc, reloaded.paths)
        client.send("/riff/alpha", 0.5)
        wait_until(lambda: engine.surfaces.osc.dropped == 1, what="dropped after reload")
        assert engine.values["alpha"] == 0.0
        back = settings_in(tmp_path, "osc: {port: 0}\npaths: {seeds: other}\n")
        engine.call(engine.surfaces.osc.reconfigure, back.osc, back.paths)
        client.send("/riff/seed_image", "x.png")
        wait_until(lambda: engine.values["seed_image"] == str(other / "x.png"), what="new folder")
        client.send("/riff/seed_image", "loop.png")  # only in the old folder
        assert "is not a file" in client.wait_for("/riff/fail").params[1]
