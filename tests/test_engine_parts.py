"""The engine's small parts: clip maker checks, events log, scripts, the ring's fade-out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from riffengine.audio.ringbuffer import RingBuffer
from riffengine.clipmaker import BadAudio, ClipMaker, ClipSpec, check_audio
from riffengine.errors import UserError
from riffengine.eventlog import EventLog, read_events
from riffengine.events import EventBus
from riffengine.render.fake import FakeRenderer, request_frequency
from riffengine.render.request import PromptSlot, RenderRequest, Side
from riffengine.script import load_script


def request(text: str, seed: int = 1) -> RenderRequest:
    return RenderRequest(a=Side((PromptSlot(text),), seed=seed), seed_image=None)


def test_check_audio_refuses_nan_infinity_and_silence():
    check_audio(np.full((1, 100), 0.1, np.float32))
    for bad, reason in [
        (np.full((1, 10), np.nan), "nan"),
        (np.full((1, 10), np.inf), "nan"),
        (np.zeros((1, 10)), "silent"),
        (np.zeros((1, 0)), "silent"),
    ]:
        with pytest.raises(BadAudio) as info:
            check_audio(bad)
        assert info.value.reason == reason


def test_clip_maker_renders_then_stretches_the_same_image_and_resamples():
    fake = FakeRenderer()
    maker = ClipMaker(fake, output_rate=48000)
    first = maker.render(ClipSpec(request("a"), 44100, 48000))
    assert first.audio.shape == (48000, 2) and first.audio.dtype == np.float32
    assert not first.stretched and first.seconds == fake.seconds  # simulated time
    again = maker.render(ClipSpec(request("a"), 30000, 32653))
    assert again.stretched and again.audio.shape == (32653, 2) and fake.renders == 1
    assert again.seconds == fake.stretch_seconds
    other = maker.render(ClipSpec(request("b"), 44100, 48000))
    assert not other.stretched and fake.renders == 2
    with pytest.raises(BadAudio):
        maker.render(ClipSpec(request("c [nan]"), 44100, 48000))
    # a bad render does not replace the image a stretch starts from
    assert maker.render(ClipSpec(request("b"), 22050, 24000)).stretched


def test_fake_renderer_is_deterministic_per_request():
    fake = FakeRenderer()
    a = fake.render(request("x", 1), 1000).audio
    assert np.array_equal(a, FakeRenderer().render(request("x", 1), 1000).audio)
    assert request_frequency(request("x", 1)) != request_frequency(request("x", 2))
    assert fake.render(request("slow [late=1.5]"), 10).seconds == 1.5
    with pytest.raises(RuntimeError):
        fake.render(request("[raise]"), 10)


def test_events_log_writes_one_flushed_json_line_per_event_without_images(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    bus = EventBus()
    bus.subscribe(log)
    bus.publish("loop_started", bar=3, frame=np.int64(12), image=object(), bpm=120.0, ids=(1, 2))
    # flushed: readable before close
    events = read_events(path)
    assert events[0]["kind"] == "loop_started" and events[0]["bar"] == 3 and events[0]["frame"] == 12
    assert "image" not in events[0] and events[0]["ids"] == [1, 2]
    bus.publish("render", ms=float("nan"))
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["ms"] is None
    with pytest.raises(UserError, match="events log"):
        EventLog(tmp_path / "missing" / "e.jsonl")


def test_script_loading_checks_every_step(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("- at: 1.5\n  set: {bpm: 130}\n- bar: 4\n  scene: chorus\n")
    steps = load_script(good)
    assert steps[0].seconds == 1.5 and steps[0].changes == (("bpm", 130),)
    assert steps[1].bar == 4 and steps[1].scene == "chorus"
    assert steps[0].due(66150, 0, 44100) and not steps[0].due(66149, 0, 44100)
    for text, words in [
        ("- at: 1\n  bar: 2\n  set: {bpm: 100}\n", "exactly one"),
        ("- at: 1\n  set: {nope: 1}\n", "nope"),
        ("- at: -1\n  set: {bpm: 100}\n", "at -1"),
        ("- at: 1\n", "nothing to do"),
        ("{a: 1}\n", "YAML list"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(UserError, match=words):
            load_script(bad)


def test_ring_fade_unread_fades_ahead_of_the_reader_and_silences_the_rest():
    ring = RingBuffer(1000, 2)
    ring.write(np.ones((900, 2), np.float32))
    ring.read_into(np.zeros((700, 2), np.float32))
    ring.write(np.ones((700, 2), np.float32))  # wraps around
    end = ring.fade_unread(skip=100, length=300)
    assert end == 700 + 100 + 300
    out = np.zeros((900, 2), np.float32)
    ring.read_into(out)
    assert np.all(out[:100] == 1.0)  # the frames the reader may be on are untouched
    fade = out[100:400, 0]
    assert np.all(np.diff(fade) < 0) and fade[0] > 0.99 and fade[-1] < 0.01
    assert not out[400:].any()
    assert ring.fade_unread(skip=100, length=300) is None  # nothing queued: write a tail instead


def test_devices_command_lists_audio_and_midi(capsys):
    from riffengine import cli

    assert cli.main(["devices"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Audio devices:") and "host APIs:" in out and "MIDI ports" in out
