"""The decoder's working grid and band measurement (riffengine/spectrogram/phase.py)."""

from __future__ import annotations

import numpy as np
import torch

from riffengine.spectrogram import SpectrogramParams
from riffengine.spectrogram.mel import mel_filterbank
from riffengine.spectrogram.phase import FrameCodec, band_energies, fold_interpolation, mel_bands, working_grid

PARAMS = SpectrogramParams()


def test_working_grid_keeps_the_reference_bins_and_hop() -> None:
    grid = working_grid(PARAMS)
    rate = PARAMS.sample_rate * grid.up / grid.down
    assert (grid.n_fft, grid.hop, grid.bin_step) == (2240, 224, 4)
    assert rate / grid.n_fft == grid.bin_step * PARAMS.sample_rate / PARAMS.n_fft  # 10 Hz bins
    assert grid.hop * grid.down == PARAMS.hop_length * grid.up  # 10 ms hop, exactly
    assert PARAMS.max_frequency < 0.45 * rate


def test_folded_weights_equal_weights_on_interpolated_values() -> None:
    generator = torch.Generator().manual_seed(0)
    weights = torch.rand(17, 3, generator=generator, dtype=torch.float64)
    measured = torch.rand(5, generator=generator, dtype=torch.float64)
    fine = torch.arange(17, dtype=torch.float64) / 4
    interpolated = torch.from_numpy(np.interp(fine.numpy(), np.arange(5), measured.numpy()))
    folded = fold_interpolation(weights, 4, 5)
    assert torch.allclose(measured @ folded, interpolated @ weights)
    assert (folded >= 0).all()


def test_bands_measured_on_the_coarser_grid_match_the_reference_grid() -> None:
    """The mel of a chord, a bass line and noise, measured from the 2x transform and from the 4x one."""
    grid = working_grid(PARAMS)
    rate = PARAMS.sample_rate * grid.up / grid.down
    t = torch.arange(grid.hop * 200) / rate
    generator = torch.Generator().manual_seed(1)
    vibrato = 1 + 0.01 * torch.sin(5 * t)
    audio = sum(torch.sin(2 * torch.pi * f * t * vibrato) for f in (55.0, 261.6, 329.6, 392.0, 3520.0))
    audio = (audio + 0.1 * torch.randn(t.shape, generator=generator)).unsqueeze(0)
    bands = mel_bands(PARAMS)
    frames = FrameCodec(grid.n_fft, grid.hop, grid.n_fft, bands.low.shape[0], torch.device("cpu"))
    measured = band_energies(frames.forward(audio, bands.oversample).abs(), bands)
    reference_fb = mel_filterbank(PARAMS)[: grid.bin_step * (bands.low.shape[0] - 1) + 1]
    reference = frames.forward(audio, grid.bin_step).abs() @ reference_fb
    assert bands.oversample == 2
    assert float((measured - reference).norm() / reference.norm()) < 0.02
