"""The host's own fall-back: the bank's safe loop read without the model, at the output's rate."""

from __future__ import annotations

import numpy as np
from engine_fixtures import bank_safe_loop

from riffengine.config import load_config, merge_overrides
from riffengine.host import fallback
from riffengine.render.bank import safe_loop
from riffengine.render.cache import RenderCache


def banked(tmp_path):
    show = tmp_path / "show.yaml"
    show.write_text(f"cache: {{folder: {tmp_path / 'cache'}}}\ntempo: {{bpm: 100}}\nloop: {{bars: 2}}\n")
    settings = load_config(show)
    bank_safe_loop(tmp_path / "cache", merge_overrides(settings, {"initial.prompt_a/0": "safe groove"}))
    return settings


def test_the_host_reads_the_same_safe_loop_as_the_engine_at_the_same_rate(tmp_path):
    settings = banked(tmp_path)
    found = fallback.safe_loop(settings, 44100, 2)
    assert found is not None
    frames, name = found
    engine = safe_loop(RenderCache(tmp_path / "cache"))
    assert name == engine.name
    np.testing.assert_array_equal(frames, engine.frames(44100, 2))


def test_another_rate_gives_the_loop_length_at_that_rate(tmp_path):
    frames, _ = fallback.safe_loop(banked(tmp_path), 48000, 2)
    assert frames.shape == (round(2 * 4 * 60 / 100 * 48000), 2) and frames.dtype == np.float32
    assert np.abs(frames).max() > 0


def test_linear_rate_conversion_keeps_a_slow_wave():
    t = np.arange(44100) / 44100
    wave = np.sin(2 * np.pi * 3 * t).astype(np.float32)[:, None]
    out = fallback.to_rate(wave, 44100, 48000)
    want = np.sin(2 * np.pi * 3 * np.arange(48000) / 48000)
    assert out.shape == (48000, 1)
    np.testing.assert_allclose(out[:, 0], want, atol=1e-3)


def test_no_bank_or_a_damaged_one_is_none_and_logged(tmp_path, caplog):
    show = tmp_path / "show.yaml"
    show.write_text(f"cache: {{folder: {tmp_path / 'empty'}}}\n")
    assert fallback.safe_loop(load_config(show), 44100, 2) is None
    assert "no safe loop is banked" in caplog.text
    settings = banked(tmp_path)
    marker = next((tmp_path / "cache").glob("*/audio.npy"))
    marker.write_bytes(b"damaged")
    assert fallback.safe_loop(settings, 44100, 2) is None
    assert "cannot be read" in caplog.text
