"""Blend math: lerp, slerp, weighted prompt blends and loop stitching."""

import numpy as np
import pytest
import torch

from riffengine.errors import UserError
from riffengine.render.blend import (
    equal_power_fade,
    lerp,
    normalized_weights,
    slerp,
    stitch_loops,
    weighted_sum,
)


def noise(seed: int, shape=(1, 4, 8, 8)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_lerp_endpoints_are_exact():
    a, b = noise(1), noise(2)
    assert torch.equal(lerp(a, b, 0.0), a)
    assert torch.equal(lerp(a, b, 1.0), b)
    assert torch.allclose(lerp(a, b, 0.25), 0.75 * a + 0.25 * b)
    assert lerp(2.0, 4.0, 0.5) == 3.0


def test_slerp_endpoints_are_exact():
    a, b = noise(1), noise(2)
    assert torch.equal(slerp(a, b, 0.0), a)
    assert torch.equal(slerp(a, b, 1.0), b)


def test_slerp_keeps_the_norm_of_gaussian_noise():
    a, b = noise(1, (1, 4, 64, 64)), noise(2, (1, 4, 64, 64))
    mid = slerp(a, b, 0.5)
    assert abs(mid.norm() / a.norm() - 1) < 0.02
    # lerp of independent noise shrinks it by about 1/sqrt(2): slerp must not
    assert lerp(a, b, 0.5).norm() / a.norm() < 0.75


def test_slerp_moves_along_the_arc():
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([0.0, 1.0])
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid, torch.tensor([2**-0.5, 2**-0.5]), atol=1e-6)
    third = slerp(a, b, 1 / 3)
    assert torch.allclose(third, torch.tensor([np.cos(np.pi / 6), np.sin(np.pi / 6)]).float(), atol=1e-6)


def test_slerp_of_parallel_vectors_falls_back_to_lerp():
    a = torch.tensor([1.0, 2.0])
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)


def test_slerp_keeps_dtype_and_rejects_shape_mismatch():
    assert slerp(noise(1).half(), noise(2).half(), 0.3).dtype == torch.float16
    with pytest.raises(ValueError):
        slerp(noise(1), noise(2, (1, 4, 8, 4)), 0.5)


def test_weighted_sum():
    a, b = noise(1), noise(2)
    assert torch.allclose(weighted_sum([a, b], [1.0, 3.0]), 0.25 * a + 0.75 * b)
    assert torch.equal(weighted_sum([a, b], [2.0, 0.0]), a)


def test_weights_all_zero_or_negative_are_user_errors():
    with pytest.raises(UserError, match="zero"):
        normalized_weights([0.0, 0.0])
    with pytest.raises(UserError, match="invalid"):
        normalized_weights([1.0, -1.0])


def test_equal_power_fade_sums_to_unit_power():
    out, inn = equal_power_fade(100)
    assert np.allclose(out**2 + inn**2, 1.0, atol=1e-6)
    assert out[0] > 0.99 and inn[-1] > 0.99


def test_stitch_keeps_length_and_leaves_clip_interiors_alone():
    a = np.ones((2, 1000), np.float32)
    b = -np.ones((2, 1000), np.float32)
    out = stitch_loops([a, b, a], fade=100)
    assert out.shape == (2, 3000)
    assert np.array_equal(out[:, :950], a[:, :950])
    assert np.array_equal(out[:, 1050:1950], b[:, 50:950])
    # the seam crosses over: full a before, full b after, equal power in between
    assert out[0, 949] == 1.0 and out[0, 1050] == -1.0
    assert abs(out[0, 999]) < 0.05
