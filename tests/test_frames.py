"""Rendered audio to output frames: channel layout and rate (riffengine/render/frames.py)."""

from __future__ import annotations

import numpy as np

from riffengine.render.frames import resample_clip, to_frames
from riffengine.timing.tempo import loop_frames


def test_to_frames_transposes_and_spreads_mono():
    stereo = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert to_frames(stereo, 2).tolist() == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
    assert to_frames(np.array([1.0, 2.0]), 2).tolist() == [[1.0, 1.0], [2.0, 2.0]]
    assert to_frames(stereo, 1).tolist() == [[1.0], [2.0], [3.0]]
    assert to_frames(stereo, 2).dtype == np.float32


def test_resample_clip_at_the_same_rate_loops_to_the_exact_length():
    audio = np.arange(8, dtype=np.float32).reshape(4, 2)
    assert resample_clip(audio, 44100, 44100, 6)[:, 0].tolist() == [0.0, 2.0, 4.0, 6.0, 0.0, 2.0]
    assert resample_clip(audio, 44100, 44100, 3)[:, 0].tolist() == [0.0, 2.0, 4.0]


def test_resample_clip_hits_the_exact_loop_length_and_keeps_the_pitch():
    frames_in = loop_frames(2, 127.0, 44100)
    t = np.arange(frames_in) / 44100
    tone = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
    frames_out = loop_frames(2, 127.0, 48000)
    out = resample_clip(tone, 44100, 48000, frames_out)
    assert out.shape == (frames_out, 2) and out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out[:, 0]))
    peak_hz = np.argmax(spectrum) * 48000 / frames_out
    assert abs(peak_hz - 440) < 1.0
