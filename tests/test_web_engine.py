"""The OSCQuery/web server inside the live engine (fake renderer, JACK dummy server): the page's
feed carries the heard frame and the loops with their images, and ``/riff/loop`` names a URL
that serves the loop's spectrogram."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import pytest
from engine_fixtures import LiveEngine
from jack_fixtures import jack_server  # noqa: F401  (module-scoped JACK dummy server)
from PIL import Image
from surface_fixtures import OscClient
from websockets.sync.client import connect

from riffengine.config import Settings, merge_overrides
from riffengine.engine import Engine
from riffengine.render.fake import FakeRenderer

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def feed(ws, command: str, count: int = 1) -> list[dict]:
    """The DATA of the next ``count`` JSON messages of ``command``."""
    out = []
    while len(out) < count:
        data = ws.recv(timeout=20)
        if isinstance(data, str) and json.loads(data)["COMMAND"] == command:
            out.append(json.loads(data)["DATA"])
    return out


def png(url: str) -> Image.Image:
    data = subprocess.run(
        ["curl", "-s", "--fail", "--max-time", "10", url], capture_output=True, check=True, timeout=20
    ).stdout
    return Image.open(io.BytesIO(data))


def test_engine_feeds_the_page_and_serves_loop_images(jack_server, tmp_path):
    settings = merge_overrides(
        Settings(),
        {
            "audio.output": "jack",
            "audio.jack_client_name": "riff-web",
            "tempo.bpm": 240.0,
            "loop.bars": 1,
            "osc.port": 0,
            "http.enabled": True,
            "http.port": 0,
            "paths.spectrograms": str(tmp_path / "spectrograms"),
            "cache.enabled": False,
        },
    )
    engine = Engine(settings, FakeRenderer(seconds=0.1, sleep=True), signals=False)
    with LiveEngine(engine) as live, OscClient(engine.surfaces.osc.address[1]) as client:
        web = engine.surfaces.web
        client.request("/riff/notify", 1, reply="/riff/notify.reply")
        with connect(f"ws://127.0.0.1:{web.port}/") as ws:
            ws.send(json.dumps({"COMMAND": "RIFF_ENGINE", "DATA": True}))
            first, second = feed(ws, "RIFF_STATUS", 2)
            assert second["frame"] > first["frame"] >= 0  # the heard frame moves on
            assert first["sample_rate"] == 44100 and "http_token" not in first
            assert isinstance(first["xruns"], int) and "underruns" in first
            loop = feed(ws, "RIFF_LOOP")[0]
            assert loop["url"] == f"/loops/{loop['clip_id']}.png" and loop["frames"] == 44100
            image = png(f"http://127.0.0.1:{web.port}{loop['url']}")
            assert image.size == (512, 512)
            client.send("/riff/prompt_a/0", "a new prompt")  # a render: the next loop is announced
            ahead = feed(ws, "RIFF_NEXT")[0]
            assert ahead["frame"] > loop["frame"] and png(f"http://127.0.0.1:{web.port}{ahead['url']}")
        message = client.wait_for("/riff/loop")
        url = message.params[3]
        assert url.startswith(f"http://127.0.0.1:{web.port}/loops/clip") and png(url).size == (512, 512)
        live.loops_after(1)
