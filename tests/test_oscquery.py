"""OSCQuery over real HTTP and WebSocket on 127.0.0.1: curl and the ``websockets`` client (neither
written here) against the proposal's examples, plus the engine's own rules (allow list, token,
bounds, loop images)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import pytest
from PIL import Image
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from surface_fixtures import OscClient, RunningSurfaces, wait_until
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from riffengine.config import load_config
from riffengine.control import params

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

CONFIG = """
osc:
  port: 0
http:
  enabled: true
  port: 0
paths:
  spectrograms: spectrograms
scenes:
  verse: {alpha: 0.0}
"""


def settings_in(tmp_path, extra: str = ""):
    path = tmp_path / "riffengine.yaml"
    path.write_text(CONFIG + extra)
    return load_config(path)


@pytest.fixture
def engine(tmp_path):
    with RunningSurfaces(settings_in(tmp_path)) as running:
        yield running


def base(engine) -> str:
    return f"http://127.0.0.1:{engine.surfaces.web.port}"


def curl(url: str, *flags: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET by curl."""
    out = subprocess.run(
        ["curl", "-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_code} %{content_type}", *flags, url],
        capture_output=True,
        timeout=20,
        check=True,
    ).stdout
    out = out.decode("utf-8", errors="replace")
    body, _, tail = out.rpartition("\n")
    status, _, kind = tail.partition(" ")
    return int(status), kind, body


def get_json(url: str):
    status, kind, body = curl(url)
    assert status == 200 and kind.startswith("application/json"), (status, body)
    return json.loads(body)


def osc(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


def test_namespace_is_the_parameter_table(engine):
    tree = get_json(base(engine) + "/")
    riff = tree["CONTENTS"]["riff"]
    assert tree["FULL_PATH"] == "/" and riff["FULL_PATH"] == "/riff"
    for p in params.PARAMS:
        node = riff["CONTENTS"][p.name]
        assert node["FULL_PATH"] == p.address and node["ACCESS"] == 3
        assert node["DESCRIPTION"].startswith(p.help)
        count = p.slots or 1
        assert len(node["TYPE"]) == count and len(node["VALUE"]) == count
        if p.type in ("float", "int"):
            assert node["RANGE"][0] == {"MIN": p.minimum, "MAX": p.maximum}
            assert node["CLIPMODE"] == ["both"] * count
        if p.type == "enum":
            assert node["RANGE"][0] == {"VALS": list(p.choices)}
        if p.unit:
            assert node["UNIT"][0] == p.unit
        for slot in range(p.slots):
            assert node["CONTENTS"][str(slot)]["FULL_PATH"] == p.slot_address(slot)
    assert riff["CONTENTS"]["seed_a"]["TYPE"] == "h"  # seeds go beyond 32 bits
    assert riff["CONTENTS"]["alpha"]["TYPE"] == "f"
    assert riff["CONTENTS"]["panic"]["ACCESS"] == 2
    assert get_json(base(engine) + "/riff/bars") == riff["CONTENTS"]["bars"]


def test_attribute_queries_follow_the_state_and_host_info_names_both_ports(engine):
    with OscClient(engine.osc_port) as client:
        client.send("/riff/alpha", 0.25)
        client.send("/riff/prompt_b/2", "glass harmonica")
        client.status()  # the changes above are applied once the reply comes
    assert get_json(base(engine) + "/riff/alpha?VALUE") == {"VALUE": [0.25]}
    assert get_json(base(engine) + "/riff/prompt_b/2?VALUE") == {"VALUE": ["glass harmonica"]}
    assert get_json(base(engine) + "/riff/prompt_b?VALUE")["VALUE"][2] == "glass harmonica"
    assert get_json(base(engine) + "/riff/steps?RANGE") == {"RANGE": [{"MIN": 1, "MAX": 150}]}
    info = get_json(base(engine) + "/?HOST_INFO")
    assert info["NAME"] == "riffengine" and info["OSC_TRANSPORT"] == "UDP"
    assert (info["OSC_IP"], info["OSC_PORT"]) == ("127.0.0.1", engine.osc_port)
    assert (info["WS_IP"], info["WS_PORT"]) == ("127.0.0.1", engine.surfaces.web.port)
    assert info["EXTENSIONS"]["LISTEN"] is True and info["EXTENSIONS"]["VALUE"] is True
    assert get_json(base(engine) + "/riff/alpha?HOST_INFO") == info  # the path does not matter


def test_bad_requests_get_a_clear_status_and_change_nothing(engine):
    version = engine.store.state.version
    status, _, body = curl(base(engine) + "/riff/alpah")
    assert status == 404 and "no OSC node at /riff/alpah" in body
    status, _, body = curl(base(engine) + "/riff/alpha?VALUES")
    assert status == 400 and "'VALUES' is not an OSCQuery attribute" in body
    assert curl(base(engine) + "/riff?VALUE")[0] == 204  # a container has no value
    assert curl(base(engine) + "/riff/alpha?UNIT")[0] == 204  # alpha has no unit
    for path in (
        "/ui/../../../etc/passwd",
        "/ui/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/ui/..%2f..%2fconfig.py",
        "/loops/..%2f..%2fetc%2fpasswd",
    ):
        status, _, body = curl(base(engine) + path, "--path-as-is")
        assert status in (400, 404) and "root:" not in body, (path, status)
    status, _, body = curl(base(engine) + "/loops/nothing-here.png")
    assert status == 404 and "no recent loop 'nothing-here'" in body
    status, _, _ = curl(base(engine) + "/riff/alpha", "-X", "POST", "-d", "x=1")
    assert status == 405
    assert engine.store.state.version == version


def test_a_browser_asking_for_the_root_is_sent_to_the_page(engine):
    status, _, _ = curl(base(engine) + "/", "-H", "Accept: text/html,application/xhtml+xml")
    assert status == 303
    status, kind, body = curl(base(engine) + "/ui/")
    assert status == 200 and kind.startswith("text/html") and "<title>riffengine" in body


def ws_url(engine, token: str = "") -> str:
    return f"ws://127.0.0.1:{engine.surfaces.web.port}/" + (f"?token={token}" if token else "")


def next_osc(ws) -> OscMessage:
    """The next binary message as OSC (text messages are skipped)."""
    while True:
        data = ws.recv(timeout=10)
        if isinstance(data, bytes):
            return OscMessage(data)


def test_listen_pushes_binary_osc_with_the_declared_types_and_ignore_stops_it(engine):
    with connect(ws_url(engine)) as ws, OscClient(engine.osc_port) as client:
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/riff/alpha"}))
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/riff/seed_a"}))
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/riff/weight_a/1"}))
        wait_until(lambda: any(len(c.listening) == 3 for c in engine.surfaces.web.clients))
        client.send("/riff/alpha", 0.5)
        msg = next_osc(ws)
        assert (msg.address, msg.params) == ("/riff/alpha", [0.5])
        client.send("/riff/seed_a", 7)
        msg = next_osc(ws)
        assert (msg.address, msg.params) == ("/riff/seed_a", [7]) and ",h" in msg.dgram.decode("latin-1")
        client.send("/riff/weight_a", 0.1, 0.2)  # two slots change; only slot 1 is listened to
        msg = next_osc(ws)
        assert msg.address == "/riff/weight_a/1" and msg.params[0] == pytest.approx(0.2)
        ws.send(json.dumps({"COMMAND": "IGNORE", "DATA": "/riff/alpha"}))
        wait_until(lambda: any(len(c.listening) == 2 for c in engine.surfaces.web.clients))
        client.send("/riff/alpha", 0.75)
        client.send("/riff/seed_a", 8)
        msg = next_osc(ws)  # pushes keep their order: alpha was not sent
        assert (msg.address, msg.params) == ("/riff/seed_a", [8])


def test_binary_osc_from_a_client_sets_values_like_udp_and_refusals_come_back(engine):
    with connect(ws_url(engine)) as ws:
        ws.send(osc("/riff/alpha", 0.75))
        ws.send(osc("/riff/prompt_a/1", "tape hiss"))
        wait_until(lambda: engine.values["prompt_a"][1] == "tape hiss")
        assert engine.values["alpha"] == 0.75
        assert engine.changes[0][2].startswith("web 127.0.0.1:")
        version = engine.store.state.version
        ws.send(osc("/riff/alpha", 1.5))
        fail = next_osc(ws)
        assert fail.address == "/riff/fail" and fail.params[0] == "/riff/alpha"
        assert "out of range" in fail.params[1]
        ws.send(osc("/riff/status"))
        assert "UDP only" in next_osc(ws).params[1]
        ws.send(b"\x00garbage")
        assert "not an OSC message" in next_osc(ws).params[1]
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/etc/passwd"}))
        assert "no readable OSC method" in next_osc(ws).params[1]
        ws.send("{not json")
        assert "not JSON" in next_osc(ws).params[1]
        assert engine.store.state.version == version


def test_beyond_loopback_changes_need_the_token(engine):
    web = engine.surfaces.web
    web.needs_token = True  # what a LAN address turns on; tests listen on loopback only
    with connect(ws_url(engine)) as ws:  # no token: read-only
        ws.send(osc("/riff/alpha", 0.5))
        fail = next_osc(ws)
        assert "needs the token" in fail.params[1] and engine.values["alpha"] == 0.0
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/riff/alpha"}))  # reading still works
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(engine, "x" * 24))
    assert refused.value.response.status_code == 403
    assert b"wrong token" in refused.value.response.body
    with connect(ws_url(engine, web.token)) as ws:
        ws.send(osc("/riff/alpha", 0.5))
        wait_until(lambda: engine.values["alpha"] == 0.5)
    with OscClient(engine.osc_port) as client:
        assert client.status()["http_token"] == web.token  # the OSC status tells it


def test_peers_outside_the_allow_list_are_refused(tmp_path):
    settings = load_config_text(tmp_path, CONFIG.replace("  port: 0\npaths", "  port: 0\n  allow: [10.0.0.0/8]\npaths"))
    with RunningSurfaces(settings) as engine:
        status, _, body = curl(base(engine) + "/riff/alpha?VALUE")
        assert status == 403 and "127.0.0.1 is not in http.allow" in body
        with pytest.raises(InvalidStatus):
            connect(ws_url(engine))


def load_config_text(tmp_path, text: str):
    path = tmp_path / "other.yaml"
    path.write_text(text)
    return load_config(path)


def test_clients_and_message_sizes_are_bounded(tmp_path):
    settings = load_config_text(tmp_path, CONFIG.replace("  port: 0\npaths", "  port: 0\n  max_clients: 1\npaths"))
    with RunningSurfaces(settings) as engine:
        with connect(ws_url(engine)) as ws:
            with pytest.raises(InvalidStatus) as busy:
                connect(ws_url(engine))
            assert busy.value.response.status_code == 503
            assert b"http.max_clients" in busy.value.response.body
            ws.send(osc("/riff/negative", "x" * 70000))  # over the 64 KiB message bound
            with pytest.raises(ConnectionClosed):
                while True:
                    ws.recv(timeout=10)
        assert engine.values["negative"] == ""


def test_loop_images_are_served_and_their_url_goes_in_the_osc_loop_message(engine):
    image = Image.new("L", (64, 32), 200)
    with OscClient(engine.osc_port) as client:
        client.request("/riff/notify", 1, reply="/riff/notify.reply")
        engine.call(engine.bus.publish, "loop_started", index=3, clip_id="clip3-v5", bar=8, frame=0, image=image)
        loop = client.wait_for("/riff/loop")
    index, bar, path, url = loop.params
    assert (index, bar) == (3, 8) and path.endswith("loop-000003.png")
    assert url == f"{base(engine)}/loops/clip3-v5.png"
    out = subprocess.run(["curl", "-s", "--max-time", "10", url], capture_output=True, check=True).stdout
    served = Image.open(io.BytesIO(out))
    assert served.format == "PNG" and served.size == (64, 32) and served.getpixel((5, 5)) == 200


def test_zeroconf_records_and_no_announcement_on_loopback(engine):
    from riffengine.net.discovery import OSC, OSCJSON, local_addresses, service_infos

    assert engine.surfaces.web.advertiser is None  # loopback: nobody else could connect
    infos = service_infos("riffengine-box-9080", "box", ["192.0.2.7"], 9080, 9000)
    assert [(i.type, i.name, i.port) for i in infos] == [
        (OSCJSON, f"riffengine-box-9080.{OSCJSON}", 9080),
        (OSC, f"riffengine-box-9080.{OSC}", 9000),
    ]
    assert infos[0].parsed_addresses() == ["192.0.2.7"] and infos[0].server == "box.local."
    assert len(service_infos("x", "box", ["192.0.2.7"], 9080, None)) == 1  # OSC on loopback only
    assert local_addresses("192.0.2.7") == ["192.0.2.7"]
    assert all(not a.startswith("127.") for a in local_addresses("0.0.0.0"))


def test_seed_images_for_the_picker_stay_in_their_folders(tmp_path, engine):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    Image.new("L", (16, 16), 9).save(seeds / "my loop.png")
    (tmp_path / "secret.png").write_bytes(b"not for the network")
    (seeds / "link.png").symlink_to(tmp_path / "secret.png")
    listing = get_json(base(engine) + "/seeds/")
    assert {"value": "groove_94", "url": "/seeds/builtin/groove_94.png"} in listing["builtin"]
    assert {"value": "my loop.png", "url": "/seeds/folder/my loop.png"} in listing["folder"]
    status, kind, _ = curl(base(engine) + "/seeds/builtin/groove_94.png")
    assert status == 200 and kind == "image/png"
    status, kind, _ = curl(base(engine) + "/seeds/folder/my%20loop.png")
    assert status == 200 and kind == "image/png"
    status, _, body = curl(base(engine) + "/seeds/folder/link.png")
    assert status == 404 and "outside" in body
    for path in (
        "/seeds/folder/..%2fsecret.png",
        "/seeds/folder/../secret.png",
        "/seeds/builtin/..%2f..%2fconfig.py",
        "/seeds/other/x.png",
    ):
        status, _, body = curl(base(engine) + path, "--path-as-is")
        assert status in (400, 404) and "not for the network" not in body, path


def test_http_settings_flag_and_a_taken_port_are_clear(tmp_path, engine):
    from riffengine.commands.run import settings_from_args
    from riffengine.errors import UserError

    config = tmp_path / "flag.yaml"
    config.write_text("osc: {port: 0}\n")
    args = type("Args", (), {"config": str(config), "overrides": [], "http_port": 0})()
    flagged = settings_from_args(args)
    assert flagged.http.enabled and flagged.http.port == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("http:\n  token: short\n  port: 70000\n  allow: [nowhere]\n")
    with pytest.raises(UserError) as refused:
        load_config(bad)
    text = str(refused.value)
    assert "bad.yaml:2: http.token: 'short' is not a token" in text
    assert "http.port: 70000 is out of range" in text and "http.allow" in text
    taken = load_config_text(
        tmp_path,
        CONFIG.replace(
            "http:\n  enabled: true\n  port: 0", f"http:\n  enabled: true\n  port: {engine.surfaces.web.port}"
        ),
    )
    running = RunningSurfaces(taken)
    try:
        with pytest.raises(UserError) as busy:
            running.__enter__()
    finally:
        running.__exit__(None, None, None)  # stops its loop thread
    assert f"HTTP: cannot listen on 127.0.0.1:{engine.surfaces.web.port}" in str(busy.value)
    assert "change http.host or http.port" in str(busy.value)
