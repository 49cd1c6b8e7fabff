"""Pure blending math: linear and spherical interpolation, weighted prompt blends, stitching.

Every function here is exact at its endpoints (``t == 0`` returns ``a``, ``t == 1`` returns
``b``, bit for bit), so a request with alpha 0 renders exactly what side A renders alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from riffengine.errors import UserError


def lerp(a, b, t: float):
    """Linear interpolation ``(1 - t) * a + t * b``; works on floats and tensors alike."""
    if t == 0:
        return a
    if t == 1:
        return b
    return (1.0 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dot_threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation between two noise tensors of the same shape.

    Treats each tensor as one vector. Slerp keeps the norm of Gaussian noise near the norm of
    its endpoints, where lerp would shrink it (and make the image wash out). Nearly parallel
    inputs fall back to lerp. Computed in float64 and cast back to ``a``'s dtype.
    """
    if a.shape != b.shape:
        raise ValueError(f"slerp needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if t == 0:
        return a
    if t == 1:
        return b
    a64, b64 = a.double(), b.double()
    cos = float((a64 * b64).sum() / (a64.norm() * b64.norm()))
    if abs(cos) > dot_threshold:
        return lerp(a64, b64, t).to(a.dtype)
    theta = math.acos(cos)
    sin_theta = math.sin(theta)
    wa = math.sin((1.0 - t) * theta) / sin_theta
    wb = math.sin(t * theta) / sin_theta
    return (wa * a64 + wb * b64).to(a.dtype)


def normalized_weights(weights: Sequence[float]) -> list[float]:
    """Weights divided by their sum; raises UserError when none is positive or one is negative."""
    for w in weights:
        if not math.isfinite(w) or w < 0:
            raise UserError(f"prompt weight {w!r} is invalid: use a number >= 0")
    total = float(sum(weights))
    if total <= 0:
        raise UserError("all prompt weights are zero: give at least one prompt a weight above 0")
    return [w / total for w in weights]


def weighted_sum(tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """The blend ``sum(w_i * x_i) / sum(w_i)``; a single positive weight returns its tensor as is."""
    if len(tensors) != len(weights) or not tensors:
        raise ValueError("weighted_sum needs one weight per tensor and at least one tensor")
    norm = normalized_weights(weights)
    used = [(x, w) for x, w in zip(tensors, norm) if w > 0]
    if len(used) == 1:
        return used[0][0]
    out = used[0][0] * used[0][1]
    for x, w in used[1:]:
        out = out + x * w
    return out


def equal_power_fade(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Fade-out and fade-in gain curves (cos, sin) whose squares sum to one."""
    phase = (np.arange(length, dtype=np.float64) + 0.5) / length * (math.pi / 2)
    return np.cos(phase).astype(np.float32), np.sin(phase).astype(np.float32)


def stitch_loops(clips: Sequence[np.ndarray], fade: int) -> np.ndarray:
    """Join clips end to end with an equal-power crossfade centred on each seam.

    Each clip is ``[channels, frames]`` and is treated as a loop, so the crossfade borrows the
    start of the outgoing clip (played past its end) and the end of the incoming clip (played
    before its start). The result has exactly ``sum(frames)`` frames and each seam lies on a
    clip boundary, the way clips sit on a bar grid.
    """
    if not clips:
        raise ValueError("stitch_loops needs at least one clip")
    out = np.concatenate(clips, axis=-1).astype(np.float32, copy=True)
    fade = max(0, min(fade, *(c.shape[-1] for c in clips)))
    half = fade // 2
    if half == 0:
        return out
    fade_out, fade_in = equal_power_fade(2 * half)
    pos = 0
    for prev, nxt in zip(clips[:-1], clips[1:]):
        pos += prev.shape[-1]
        # Outgoing loop around the seam: its last `half` frames, then its first `half` frames.
        outgoing = np.concatenate([prev[..., -half:], prev[..., :half]], axis=-1)
        # Incoming loop around the seam: its last `half` frames, then its first `half` frames.
        incoming = np.concatenate([nxt[..., -half:], nxt[..., :half]], axis=-1)
        out[..., pos - half : pos + half] = outgoing * fade_out + incoming * fade_in
    return out
