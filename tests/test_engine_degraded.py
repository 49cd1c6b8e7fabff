"""Never silent at start: without the model the engine plays the safe loop or seed loops, says
"degraded", keeps trying the model and renders with it once it loads."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import soundfile
import torch
from jack_fixtures import jack_server  # noqa: F401

from riffengine import cli
from riffengine.config import Settings, merge_overrides
from riffengine.engine import Engine
from riffengine.eventlog import read_events
from riffengine.render.fallback import DEFAULT_SEED, FallbackRenderer
from riffengine.render.request import PromptSlot, RenderRequest, Side
from riffengine.render.seeds import load_seed_pixels

RATE = 44100
SIDE = Side((PromptSlot("warm pads"),), seed=3)


def settings_for(tmp_path, **extra) -> Settings:
    values = {
        "model.id": str(tmp_path / "no-model-here"),
        "model.device": "cpu",
        "audio.output": str(tmp_path / "out.wav"),
        "audio.events": str(tmp_path / "events.jsonl"),
        "tempo.bpm": 120.0,
        "loop.bars": 1,
        "osc.enabled": False,
        "midi.enabled": False,
        "cache.enabled": False,
    }
    values.update(extra)
    return merge_overrides(Settings(), values)


def test_the_fallback_plays_the_seed_image_of_the_request_or_the_default_loop():
    fallback = FallbackRenderer()
    clip = fallback.render(RenderRequest(SIDE, seed_image="house_120"), num_frames=RATE)
    assert torch.equal(clip.pixels, load_seed_pixels("house_120", 512))
    assert clip.audio.shape[-1] == RATE and np.abs(clip.audio).max() > 0.1
    assert fallback.last_source == "seed image house_120"
    clip = fallback.render(RenderRequest(SIDE, seed_image=None), num_frames=RATE // 2)
    assert torch.equal(clip.pixels, load_seed_pixels(DEFAULT_SEED, 512))
    assert clip.audio.shape[-1] == RATE // 2


def test_the_fallback_prefers_the_banked_safe_loop():
    safe = load_seed_pixels("waltz_72", 512)
    fallback = FallbackRenderer(safe_pixels=safe)
    clip = fallback.render(RenderRequest(SIDE, seed_image="house_120"), num_frames=RATE)
    assert torch.equal(clip.pixels, safe) and fallback.last_source == "safe loop"


def test_without_the_model_the_engine_plays_seed_loops_and_reports_degraded(tmp_path):
    settings = settings_for(tmp_path, **{"model.retry_seconds": 3600.0})
    engine = Engine(settings, duration=4.0, signals=False)
    assert asyncio.run(engine.run()) == 0
    audio, rate = soundfile.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)
    assert rate == RATE and len(audio) == 4 * RATE
    assert np.abs(audio[: 3 * RATE]).max() > 0.1  # music from the first frame, not silence
    events = read_events(tmp_path / "events.jsonl")
    degraded = [e for e in events if e["kind"] == "degraded"]
    assert len(degraded) == 1 and "no-model-here" in degraded[0]["reason"]
    assert "no-model-here" in engine.figures()["degraded"]
    assert [e["bar"] for e in events if e["kind"] == "loop_started"] == [0, 1]  # 2 s bars


def test_require_model_refuses_to_start_with_one_clear_error(tmp_path, capsys):
    code = cli.main(
        [
            "run",
            "--model",
            str(tmp_path / "no-model-here"),
            "--output",
            str(tmp_path / "out.wav"),
            "--duration",
            "2",
            "--no-osc",
            "--require-model",
            "--set",
            "midi.enabled=false",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "no-model-here" in err and "Traceback" not in err
    assert not (tmp_path / "out.wav").exists()


def test_the_model_arriving_later_is_loaded_and_rendered_with(jack_server, tmp_path, tiny_model_dir):
    """Live on JACK: degraded at start, the model folder appears, the engine renders with it."""
    target = tmp_path / "no-model-here"
    settings = settings_for(
        tmp_path,
        **{
            "audio.output": "jack",
            "audio.jack_client_name": "riffengine-degraded-test",
            "model.retry_seconds": 0.5,
            "render.steps": 2,
        },
    )

    def arrive_later(engine: Engine) -> None:
        asyncio.get_running_loop().call_later(1.0, shutil.copytree, tiny_model_dir, target)

    engine = Engine(settings, duration=14.0, on_output_open=arrive_later, signals=False)
    assert asyncio.run(engine.run()) == 0
    events = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] != "beat"]
    kinds = [e["kind"] for e in events]
    assert kinds.index("degraded") < kinds.index("model_loaded")
    after = events[kinds.index("model_loaded") :]
    rendered = [e for e in after if e["kind"] == "render" and e.get("phase") == "done"]
    assert rendered, "nothing was rendered with the model once it loaded"
    assert [e for e in after if e["kind"] == "loop_started" and e["clip_id"] == rendered[0]["clip_id"]]
    assert engine.figures()["degraded"] == ""
    assert engine.ring.underruns == 0
