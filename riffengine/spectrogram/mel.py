"""Audio <-> mel magnitudes <-> 8-bit pixels: the pure tensor math of Riffusion's format.

Tensors are ``[..., channels, samples]`` for audio and ``[..., channels, bins, columns]`` for
mel magnitudes and pixels, with bin 0 the lowest frequency (pixels here are *not* flipped;
images are, see :mod:`riffengine.spectrogram.image`).
"""

from __future__ import annotations

import functools

import torch
import torchaudio

from riffengine.spectrogram.params import SpectrogramParams


@functools.lru_cache(maxsize=8)
def mel_filterbank(params: SpectrogramParams) -> torch.Tensor:
    """HTK mel filters ``[n_fft // 2 + 1, bins]`` with no normalisation (float32, CPU)."""
    return torchaudio.functional.melscale_fbanks(
        n_freqs=params.n_fft // 2 + 1,
        f_min=float(params.min_frequency),
        f_max=float(params.max_frequency),
        n_mels=params.num_frequencies,
        sample_rate=params.sample_rate,
        norm=None,
        mel_scale="htk",
    )


def audio_to_mel(audio: torch.Tensor, params: SpectrogramParams) -> torch.Tensor:
    """Mel magnitudes of ``audio`` (samples in int16 units, as Riffusion feeds them).

    Computed in the same order as the reference (centred, reflect-padded STFT, magnitude,
    then the filterbank), so that the 8-bit image matches it to the level.
    """
    shape = audio.shape
    flat = audio.reshape(-1, shape[-1]).to(torch.float32)
    columns = params.columns_for(shape[-1])
    if shape[-1] <= params.n_fft // 2:
        # Too short to reflect-pad: pad with silence instead (the reference cannot do this at all).
        flat = torch.nn.functional.pad(flat, (0, params.n_fft // 2 + 1 - shape[-1]))
    window = torch.hann_window(params.win_length, device=flat.device)
    spec = torch.stft(
        flat,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        win_length=params.win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    ).abs()
    fb = mel_filterbank(params).to(flat.device)
    mel = torch.matmul(spec[..., :columns].transpose(-1, -2), fb).transpose(-1, -2)
    return mel.reshape(*shape[:-1], mel.shape[-2], mel.shape[-1])


def mel_to_pixels(mel: torch.Tensor, power: float, max_value: float | None = None) -> tuple[torch.Tensor, float]:
    """8-bit pixels (loud = dark) from mel magnitudes, truncated like the reference.

    Returns ``(uint8 pixels, max_value)``; ``max_value`` defaults to the largest magnitude.
    """
    if max_value is None:
        max_value = float(mel.max())
    if max_value <= 0:
        return torch.full(mel.shape, 255, dtype=torch.uint8, device=mel.device), 0.0
    data = torch.pow(mel / max_value, power)
    data = 255 - data * 255
    return data.clamp(0, 255).to(torch.uint8), max_value


def pixels_to_mel(pixels: torch.Tensor, power: float, max_value: float) -> torch.Tensor:
    """Mel magnitudes from 8-bit pixel values (any real dtype; 255 = silence)."""
    data = (255.0 - pixels.to(torch.float32)) / 255.0
    return torch.pow(data.clamp(min=0.0), 1.0 / power) * max_value


def resample_loop(values: torch.Tensor, src_period: float, dst_period: float, num_columns: int) -> torch.Tensor:
    """Stretch a looping spectrogram along time (last axis) with linear interpolation.

    ``values`` holds a loop of ``src_period`` columns (fractional periods allowed); the result
    has ``num_columns`` columns of a loop that lasts ``dst_period`` columns. Positions past the
    end wrap to the start, so the stretched loop joins itself. Pitch is unchanged: only the
    time axis moves. Stretch pixels (the 0.25-power domain) rather than magnitudes.
    """
    width = values.shape[-1]
    pos = torch.arange(num_columns, dtype=torch.float64) * (src_period / dst_period)
    pos = torch.remainder(pos, src_period)
    left = pos.floor().long().clamp(max=width - 1)
    right = left + 1
    right[right >= min(width, int(torch.tensor(src_period).ceil()))] = 0
    frac = (pos - left.to(torch.float64)).to(torch.float32).to(values.device)
    left, right = left.to(values.device), right.to(values.device)
    data = values.to(torch.float32)
    return data[..., left] * (1 - frac) + data[..., right] * frac
