"""The render cache on disk: keys, hits and misses, model identity, atomic entries, LRU bound;
the bank and its safe loop; ``riffengine bank`` with the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
import torch

from riffengine.cli import main
from riffengine.config import load_config
from riffengine.errors import UserError
from riffengine.render.bank import bank_items, choose_safe, fill_bank, safe_loop
from riffengine.render.cache import (
    AUDIO,
    IMAGE,
    META,
    TEMP_PREFIX,
    CachedRenderer,
    RenderCache,
    cache_key,
    model_identity,
)
from riffengine.render.model import load_model
from riffengine.render.renderer import Renderer, pixels_to_image
from riffengine.render.request import PromptSlot, RenderRequest, Side, to_render_request
from riffengine.spectrogram.params import SpectrogramParams
from riffengine.state import apply, initial_state

REQUEST = RenderRequest(a=Side((PromptSlot("lofi beat"),), seed=7), steps=2)
MODEL = "m" * 64


def fake_entry(seed: int, columns: int = 64):
    """A spectrogram image with Riffusion's EXIF and some stereo audio."""
    rng = np.random.default_rng(seed)
    pixels = torch.from_numpy(rng.integers(0, 256, (3, 512, columns), dtype=np.uint8))
    audio = rng.standard_normal((2, 4410)).astype(np.float32)
    return pixels, pixels_to_image(pixels), audio


def test_key_is_stable_and_covers_every_field():
    key = cache_key(REQUEST, 88200, MODEL)
    assert key == cache_key(
        RenderRequest(a=Side((PromptSlot("lofi beat", 1),), seed=7), steps=2), 88200, MODEL
    )  # weight 1 and 1.0 are one key
    assert key == cache_key(RenderRequest(a=REQUEST.a, steps=2, tags=(("job", "3"),)), 88200, MODEL)
    others = [
        cache_key(REQUEST, 88201, MODEL),
        cache_key(REQUEST, 88200, "n" * 64),
        cache_key(RenderRequest(a=Side((PromptSlot("lofi beat"),), seed=8), steps=2), 88200, MODEL),
        cache_key(RenderRequest(a=REQUEST.a, steps=3), 88200, MODEL),
        cache_key(RenderRequest(a=REQUEST.a, steps=2, seed_image=None), 88200, MODEL),
        cache_key(RenderRequest(a=REQUEST.a, b=REQUEST.a, alpha=0.5, steps=2), 88200, MODEL),
    ]
    assert len({key, *others}) == len(others) + 1


def test_seed_image_file_changes_change_the_key(tmp_path):
    seed = tmp_path / "loop.png"
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "riffengine", "seeds", "groove_94.png"), seed)
    request = RenderRequest(a=REQUEST.a, steps=2, seed_image=str(seed))
    before = cache_key(request, 100, MODEL)
    assert before == cache_key(request, 100, MODEL)
    os.utime(seed, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    assert cache_key(request, 100, MODEL) != before


def test_put_get_round_trip_keeps_pixels_exif_and_audio(tmp_path):
    cache = RenderCache(tmp_path / "cache")
    pixels, image, audio = fake_entry(1)
    assert cache.get("k1") is None
    cache.put("k1", image, audio, 44100, {"note": "x"})
    got = cache.get("k1")
    assert got is not None and "k1" in cache
    assert torch.equal(got.pixels, pixels)
    assert np.array_equal(got.audio, audio) and got.audio.dtype == np.float32
    assert got.sample_rate == 44100 and got.info == {"note": "x"}
    written = dict(image.getexif())
    assert written and dict(got.image.getexif()) == written  # Riffusion's EXIF kept
    assert SpectrogramParams.from_exif(got.image.getexif()) == SpectrogramParams()
    # a second cache object on the same folder (a restart) finds it
    assert RenderCache(tmp_path / "cache").get("k1") is not None


@pytest.mark.parametrize("damage", ["truncate audio", "flip image byte", "bad meta", "no audio"])
def test_corrupt_entries_are_misses_and_removed(tmp_path, damage):
    cache = RenderCache(tmp_path)
    _, image, audio = fake_entry(2)
    entry = cache.put("k", image, audio, 44100)
    if damage == "truncate audio":
        data = (entry / AUDIO).read_bytes()
        (entry / AUDIO).write_bytes(data[: len(data) // 2])
    elif damage == "flip image byte":
        data = bytearray((entry / IMAGE).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (entry / IMAGE).write_bytes(bytes(data))
    elif damage == "bad meta":
        (entry / META).write_text("{not json")
    else:
        (entry / AUDIO).unlink()
    assert cache.get("k") is None
    assert not entry.exists() and "k" not in cache
    assert [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)] == []


def test_partial_writes_never_read_as_hits(tmp_path, monkeypatch):
    """A write that dies half way (here: the audio write fails) leaves no entry."""
    cache = RenderCache(tmp_path)
    _, image, audio = fake_entry(3)

    def dies(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", dies)
    with pytest.raises(OSError):
        cache.put("k", image, audio, 44100)
    monkeypatch.undo()
    assert cache.get("k") is None and "k" not in cache
    assert list(tmp_path.iterdir()) == []
    # a temp folder left by a killed writer (image written, no meta) is not an entry either
    temp = tmp_path / f"{TEMP_PREFIX}k-dead"
    temp.mkdir()
    image.save(temp / IMAGE)
    (tmp_path / "k").mkdir()  # and a folder without meta.json under the key's name
    image.save(tmp_path / "k" / IMAGE)
    assert cache.get("k") is None
    assert cache.entries() == []
    old = time.time() - 7200
    os.utime(temp, (old, old))
    RenderCache(tmp_path)  # a restart clears stale temp folders
    assert not temp.exists()


def test_lru_eviction_keeps_the_bound_and_recently_used_entries(tmp_path):
    _, image, audio = fake_entry(4)
    probe = RenderCache(tmp_path / "probe")
    one = probe.size_bytes() + sum(p.stat().st_size for p in probe.put("x", image, audio, 44100).iterdir())
    cache = RenderCache(tmp_path / "c", max_bytes=int(one * 3.5))
    now = time.time()
    for i, key in enumerate(["a", "b", "c"]):
        cache.put(key, image, audio, 44100)
        os.utime(cache.path(key) / META, (now - 100 + i, now - 100 + i))
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.put("d", image, audio, 44100)  # over the bound: the least recently used ("b") goes
    assert {k for k, _, _ in cache.entries()} == {"a", "c", "d"}
    assert cache.size_bytes() <= cache.max_bytes
    with pytest.raises(UserError, match="cache size"):
        RenderCache(tmp_path / "z", max_bytes=0)


# --- with the tiny model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def renderer(tiny_model_dir):
    return Renderer(load_model(str(tiny_model_dir), device="cpu"))


class Counting:
    """The real renderer, counting the renders that reach it."""

    def __init__(self, renderer):
        self.inner, self.calls = renderer, 0
        self.model, self.stereo = renderer.model, renderer.stereo

    def render(self, request, num_frames=None, on_step=None):
        self.calls += 1
        return self.inner.render(request, num_frames=num_frames, on_step=on_step)


def test_cached_renderer_hit_is_the_same_clip_across_restarts(renderer, tmp_path):
    counting = Counting(renderer)
    cached = CachedRenderer(counting, RenderCache(tmp_path))
    first = cached.render(REQUEST, num_frames=30000)
    cached.close()
    assert (cached.hits, cached.misses, counting.calls) == (0, 1, 1)
    again = CachedRenderer(counting, RenderCache(tmp_path))  # a restart
    second = again.render(REQUEST, num_frames=30000)
    assert counting.calls == 1 and again.hits == 1
    assert torch.equal(second.pixels, first.pixels)
    assert np.array_equal(second.audio, first.audio) and second.audio.shape[-1] == 30000
    assert second.timings.keys() == {"cache"}
    again.render(REQUEST, num_frames=30001)  # another length is a miss
    assert counting.calls == 2
    again.close()


def test_model_identity_changes_miss(renderer, tiny_model_dir, tmp_path):
    base = model_identity(renderer.model)
    assert base == model_identity(renderer.model)
    assert model_identity(renderer.model, {"stereo": True}) != base
    half = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    assert model_identity(half) != base
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    moved = load_model(str(copy), device="cpu")
    assert model_identity(moved) != base  # another folder
    weights = next(copy.glob("unet/*.safetensors"))
    before = model_identity(moved)
    os.utime(weights, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    assert model_identity(moved) != before  # retrained weights
    cache = RenderCache(tmp_path / "cache")
    counting = Counting(renderer)
    CachedRenderer(counting, cache).render(REQUEST, 20000)
    other = CachedRenderer(counting, cache, model_id=model_identity(moved))
    assert other.lookup(REQUEST, 20000) is None


BANK_CONFIG = """
tempo: {bpm: 120}
loop: {bars: 1}
render: {steps: 2}
initial:
  prompt_a/0: lofi beat
  prompt_b/0: jazz piano
scenes:
  verse: {prompt_a/0: drum bass, seed_a: 5}
  chorus: {prompt_a/0: synth pad, alpha: 0.5}
"""


def test_bank_items_scenes_and_sweep(tmp_path):
    path = tmp_path / "show.yaml"
    path.write_text(BANK_CONFIG)
    settings = load_config(path)
    items = bank_items(settings, sweep=3)
    # initial and sweep alpha 0 are the same clip: banked once
    assert [i.name for i in items] == [
        "initial",
        "scene verse",
        "scene chorus",
        "sweep 2/3 alpha 0.5",
        "sweep 3/3 alpha 1",
    ]
    assert items[1].request.a.seed == 5 and items[2].request.alpha == 0.5
    assert items[4].request == to_render_request(apply(initial_state(settings), "alpha", 1.0))
    assert items[0].model_frames == 88200  # one bar of 4 beats at 120 BPM
    assert choose_safe(items, settings, None).name == "scene verse"
    assert choose_safe(items, settings, "initial").name == "initial"
    with pytest.raises(UserError, match="scene 'bridge' does not exist"):
        choose_safe(items, settings, "bridge")
    with pytest.raises(UserError, match="use 2 or more"):
        bank_items(settings, sweep=1)
    path.write_text("initial: {prompt_a/0: lofi}\n")
    with pytest.raises(UserError, match="--sweep needs a side B"):
        bank_items(load_config(path), sweep=4)


def test_bank_command_fills_the_cache_and_the_engine_key_hits(renderer, tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "show.yaml"
    path.write_text(BANK_CONFIG + f"model: {{id: {tiny_model_dir}, device: cpu}}\n")
    cache_dir = tmp_path / "bank"
    args = ["bank", str(path), "--cache", str(cache_dir), "--sweep", "2", "--safe", "chorus"]
    assert main(args) == 0
    assert "4 rendered, 0 already banked, 0 failed; safe loop: scene chorus" in capsys.readouterr().out
    assert main(args) == 0  # nothing left to render
    assert "0 rendered, 4 already banked" in capsys.readouterr().out
    # what the engine would ask for (the same request and length) is a hit without rendering
    settings = load_config(path)
    counting = Counting(renderer)
    engine_side = CachedRenderer(counting, RenderCache(cache_dir))
    for item in bank_items(settings, sweep=2):
        clip = engine_side.render(item.request, num_frames=item.model_frames)
        assert clip.audio.shape[-1] == item.model_frames
    assert counting.calls == 0 and engine_side.hits == 4
    # the safe loop, read back without a model
    safe = safe_loop(RenderCache(cache_dir))
    assert safe is not None and safe.name == "scene chorus"
    assert (safe.bpm, safe.bars, safe.beats_per_bar) == (120.0, 1, 4)
    assert safe.values["alpha"] == 0.5 and safe.values["prompt_a/0"] == "synth pad"
    assert "gain" not in safe.values and "scene" not in safe.values
    frames = safe.frames(48000, 2)
    assert frames.shape == (96000, 2) and frames.dtype == np.float32 and np.isfinite(frames).all()
    assert safe.frames(44100, 2, out_frames=1000).shape == (1000, 2)
    # the safe loop is pinned: a tiny bound evicts everything else
    small = RenderCache(cache_dir, max_bytes=1)
    small.evict()
    assert [k for k, _, _ in small.entries()] == [json.loads((cache_dir / "safe.json").read_text())["key"]]
    assert safe_loop(small) is not None


def test_bank_reports_a_failed_state_and_a_missing_safe_loop(renderer, tmp_path):
    settings = load_config(_write(tmp_path, BANK_CONFIG.replace("synth pad", "synth pad, seed_image: nowhere.png")))
    items = bank_items(settings)
    cache = CachedRenderer(renderer, RenderCache(tmp_path / "c"))
    report = fill_bank(cache, items[:2])
    assert report.rendered == ["initial", "scene verse"] and report.failed == []
    with pytest.raises(UserError, match=r"safe loop \(scene chorus\) could not be banked: .*nowhere.png"):
        fill_bank(cache, items, choose_safe(items, settings, "chorus"))
    assert safe_loop(cache.cache) is None
    cache.close()


def _write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path
