"""The yardstick for the decoder: Riffusion's reference decode and the spectral convergence metric.

Used by ``bench/codec.py`` and the tests, never by the engine. The reference is what Riffusion's
``image_to_audio`` does on torchaudio 2.11: a least-squares inverse mel (then ReLU) and 32
fast Griffin-Lim iterations (momentum 0.99, random initial phase) at the full 44.1 kHz grid.
"""

from __future__ import annotations

import torch

from riffengine.spectrogram.image import channel_pixels
from riffengine.spectrogram.mel import audio_to_mel, pixels_to_mel
from riffengine.spectrogram.params import DEFAULT_MAX_VALUE, SpectrogramParams


def spectral_convergence(reference: torch.Tensor, rebuilt: torch.Tensor) -> float:
    """``||S_ref - g S_rec|| / ||S_ref||`` with the least-squares gain ``g`` (the golden README's SC)."""
    reference, rebuilt = reference.to(torch.float64), rebuilt.to(torch.float64)
    energy = (rebuilt * rebuilt).sum()
    gain = (reference * rebuilt).sum() / energy if energy > 0 else 0.0
    return float((reference - gain * rebuilt).norm() / reference.norm())


def image_mel(rgb: torch.Tensor, params: SpectrogramParams, max_value: float = DEFAULT_MAX_VALUE) -> torch.Tensor:
    """Mel magnitudes ``[n_mels, columns]`` of a mono image's RGB pixels ``[3, bins, columns]``."""
    return pixels_to_mel(channel_pixels(rgb, False), params.power_for_image, max_value)[0]


def audio_sc(mel: torch.Tensor, audio: torch.Tensor, params: SpectrogramParams) -> float:
    """Spectral convergence of mono ``audio`` (any shape ending in samples) against ``mel``."""
    rebuilt = audio_to_mel(audio.detach().float().cpu().reshape(1, -1), params)[0]
    return spectral_convergence(mel, rebuilt)


def reference_decode(mel: torch.Tensor, params: SpectrogramParams, seed: int = 0) -> torch.Tensor:
    """Riffusion's reconstruction of ``mel`` ``[n_mels, columns]``: lstsq inverse mel + 32 GL iterations."""
    import torchaudio

    inverse = torchaudio.transforms.InverseMelScale(
        n_stft=params.n_fft // 2 + 1,
        n_mels=params.num_frequencies,
        sample_rate=params.sample_rate,
        f_min=params.min_frequency,
        f_max=params.max_frequency,
        norm=None,
        mel_scale="htk",
    ).to(mel.device)
    griffin = torchaudio.transforms.GriffinLim(
        n_fft=params.n_fft,
        n_iter=32,
        win_length=params.win_length,
        hop_length=params.hop_length,
        window_fn=torch.hann_window,
        power=1.0,
        momentum=0.99,
        rand_init=True,
    ).to(mel.device)
    torch.manual_seed(seed)
    return griffin(inverse(mel))
