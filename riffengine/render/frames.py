"""Rendered audio to output frames: channel layout and sample rate (engine side, producer only).

:func:`to_frames` turns a renderer's ``[channels, frames]`` audio into the ``[frames, channels]``
float32 layout the timeline plays; :func:`resample_clip` brings it to the output's rate and to
exactly the loop's frame count. Both allocate: never call them from an audio callback.
"""

from __future__ import annotations

import numpy as np


def to_frames(audio: np.ndarray, channels: int) -> np.ndarray:
    """``[channels, frames]`` (or mono ``[frames]``) -> float32 ``[frames, channels]``."""
    data = np.asarray(audio, dtype=np.float32)
    if data.ndim == 1:
        data = data[None, :]
    data = data.T
    if data.shape[1] == 1 and channels > 1:
        data = np.repeat(data, channels, axis=1)
    return np.ascontiguousarray(data[:, :channels])


def resample_clip(audio: np.ndarray, src_rate: int, dst_rate: int, frames: int) -> np.ndarray:
    """Resample float32 [n, channels] audio to ``dst_rate`` and exactly ``frames`` frames.

    Band-limited (torchaudio's windowed sinc). The result is trimmed, or padded from its own
    start (clips are loops), by the few frames that separate the resampled length from the
    loop length at the new rate.
    """
    data = np.asarray(audio, dtype=np.float32)
    if src_rate != dst_rate:
        import torch
        import torchaudio.functional as F

        tensor = torch.from_numpy(np.ascontiguousarray(data.T))
        data = F.resample(tensor, src_rate, dst_rate).numpy().T
    return fit_loop(data, frames)


def fit_loop(data: np.ndarray, frames: int) -> np.ndarray:
    """``[n, channels]`` audio exactly ``frames`` long: cut, or filled from its own start (a loop)."""
    if len(data) >= frames:
        return np.ascontiguousarray(data[:frames], dtype=np.float32)
    reps = -(-frames // max(len(data), 1))
    return np.ascontiguousarray(np.tile(data, (reps, 1))[:frames], dtype=np.float32)
