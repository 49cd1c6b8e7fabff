"""Phase reconstruction: mel magnitudes back to a waveform, fast.

Riffusion's reference solves a least-squares inverse mel and runs 32 Griffin-Lim iterations on
a 17640-point STFT at 44.1 kHz (about 20 s per clip on two CPU cores). This module gets the
same or better spectral convergence in well under that:

* The inverse mel is one matrix product with a pseudo-inverse computed once per parameter set.
* Griffin-Lim runs at a reduced working rate (29.4 kHz for Riffusion's parameters, still
  above twice the 10 kHz top band) on a window-length FFT (2940 points): the 400 ms padded FFT
  only interpolates the 100 ms frame's spectrum, so every 4th padded bin carries all of it.
* The initial phase is integrated along time from the instantaneous frequency that the
  magnitude's slope across bins implies (the time half of phase-gradient heuristic
  integration), instead of random: fewer iterations reach the same quality.
* The result is resampled back to the output rate.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torchaudio

from riffengine.spectrogram.mel import mel_filterbank
from riffengine.spectrogram.params import SpectrogramParams

#: Time-frequency spread of a Hann window of length L, as a Gaussian: gamma = this * L**2.
HANN_GAMMA = 0.25645


@dataclass(frozen=True)
class WorkingGrid:
    """The reduced STFT that Griffin-Lim runs on: rate = sample_rate * up / down."""

    up: int
    down: int
    n_fft: int
    hop: int
    bin_step: int  # padded-FFT bins per working bin

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1


@functools.lru_cache(maxsize=8)
def working_grid(params: SpectrogramParams) -> WorkingGrid:
    """The cheapest exact grid for ``params``, or the reference grid when none fits."""
    if params.n_fft % params.win_length == 0:
        bin_step = params.n_fft // params.win_length
        for up, down in ((2, 3), (3, 4), (1, 1)):
            rate = params.sample_rate * up / down
            fits = (
                params.hop_length * up % down == 0
                and params.win_length * up % down == 0
                and params.max_frequency < 0.45 * rate
            )
            if fits:
                return WorkingGrid(
                    up, down, params.win_length * up // down, params.hop_length * up // down, bin_step
                )
    return WorkingGrid(1, 1, params.n_fft, params.hop_length, 1)


@functools.lru_cache(maxsize=8)
def inverse_mel_matrix(params: SpectrogramParams) -> torch.Tensor:
    """Minimum-norm inverse of the mel filterbank on the working grid: ``[bins_used, n_mels]``.

    Only bins under the top mel band are kept; the rest are zero in any solution.
    """
    fb = mel_filterbank(params).to(torch.float64)  # [n_stft, n_mels]
    used = int(torch.nonzero(fb.sum(dim=1) > 0).max()) + 1
    a = fb[:used].T  # [n_mels, used]: mel = a @ linear
    gram = a @ a.T
    if torch.linalg.cond(gram) < 1e8:
        pinv = a.T @ torch.linalg.inv(gram)
    else:
        pinv = torch.linalg.pinv(a)
    grid = working_grid(params)
    return pinv[:: grid.bin_step].to(torch.float32).contiguous()


def linear_magnitude(mel: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Working-grid magnitudes ``[..., bins_used, columns]`` from mel magnitudes."""
    return torch.relu(torch.matmul(inverse.to(mel.device), mel))


def integrated_phase(mag: torch.Tensor, hop: int, n_fft: int, win_length: int) -> torch.Tensor:
    """Initial phase from integrating the instantaneous frequency along time.

    The instantaneous frequency of bin m is m plus an offset proportional to the slope of the
    log magnitude across bins (exact for a Gaussian window, close for Hann). Integrating it
    with the trapezoid rule gives phases that are coherent from frame to frame.
    """
    gamma = HANN_GAMMA * win_length**2
    log_mag = torch.log(mag + 1e-6 * mag.amax(dim=(-2, -1), keepdim=True) + 1e-30)
    slope = torch.zeros_like(log_mag)
    slope[..., 1:-1, :] = (log_mag[..., 2:, :] - log_mag[..., :-2, :]) / 2
    m = torch.arange(mag.shape[-2], device=mag.device, dtype=mag.dtype).unsqueeze(-1)
    dphase = 2 * math.pi * hop * m / n_fft + hop * n_fft / gamma * slope
    steps = (dphase[..., 1:] + dphase[..., :-1]) / 2
    phase = torch.cat([torch.zeros_like(dphase[..., :1]), torch.cumsum(steps, dim=-1)], dim=-1)
    return torch.polar(torch.ones_like(mag), phase)


class FrameCodec:
    """STFT / inverse STFT on one grid, for Griffin-Lim: only the lowest ``bins`` are kept.

    Layout is ``[batch, frames, bins]`` (time-major, so each frame's FFT is contiguous). The
    inverse pads the missing bins with zeros inside ``irfft`` and divides by a window envelope
    computed once per length, which is all ``torch.istft`` would redo on every call.
    """

    def __init__(self, n_fft: int, hop: int, win_length: int, bins: int, device: torch.device) -> None:
        self.n_fft, self.hop, self.bins = n_fft, hop, bins
        window = torch.hann_window(win_length, device=device)
        left = (n_fft - win_length) // 2
        self.window = torch.nn.functional.pad(window, (left, n_fft - win_length - left))
        self._envelopes: dict[int, torch.Tensor] = {}

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        count = frames.shape[-2]
        size = self.n_fft + self.hop * (count - 1)
        out = torch.nn.functional.fold(
            frames.transpose(-1, -2), (1, size), (1, self.n_fft), stride=(1, self.hop)
        )
        return out.reshape(frames.shape[0], size)

    def _envelope(self, count: int) -> torch.Tensor:
        if count not in self._envelopes:
            squares = (self.window * self.window).expand(1, count, self.n_fft)
            self._envelopes[count] = self._overlap_add(squares)[0].clamp(min=1e-11)
        return self._envelopes[count]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` -> complex ``[batch, frames, bins]`` (centred, reflect-padded)."""
        half = self.n_fft // 2
        padded = torch.nn.functional.pad(audio.unsqueeze(1), (half, half), mode="reflect").squeeze(1)
        frames = padded.unfold(-1, self.n_fft, self.hop) * self.window
        return torch.fft.rfft(frames, dim=-1)[..., : self.bins]

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """complex ``[batch, frames, bins]`` -> ``[batch, length]`` samples."""
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=-1) * self.window
        audio = self._overlap_add(frames) / self._envelope(spec.shape[-2])
        half = self.n_fft // 2
        return audio[:, half : half + length]


def unit_phase(spec: torch.Tensor) -> torch.Tensor:
    """``spec / |spec|`` (0 stays 0), with one reciprocal square root instead of abs and divide."""
    parts = torch.view_as_real(spec)
    return spec * torch.rsqrt(parts.pow(2).sum(-1) + 1e-30)


def griffin_lim(
    mag: torch.Tensor,
    phase: torch.Tensor,
    frames: FrameCodec,
    n_iter: int,
    length: int,
    momentum: float = 0.99,
) -> torch.Tensor:
    """Fast Griffin-Lim (with momentum) from a starting phase; returns ``[..., length]`` samples.

    ``mag`` and ``phase`` are ``[..., bins, columns]`` over the lowest bins; higher bins are silent.
    """
    lead = mag.shape[:-2]
    target = mag.reshape(-1, *mag.shape[-2:]).transpose(-1, -2).contiguous()
    angles = phase.reshape(-1, *phase.shape[-2:]).transpose(-1, -2).contiguous()
    previous = torch.zeros_like(angles)
    keep = momentum / (1 + momentum)
    for _ in range(n_iter):
        rebuilt = frames.forward(frames.inverse(target * angles, length))
        angles = unit_phase(rebuilt - keep * previous)
        previous = rebuilt
    return frames.inverse(target * angles, length).reshape(*lead, length)


def reconstruct(
    mel: torch.Tensor, params: SpectrogramParams, num_samples: int, n_iter: int = 32
) -> torch.Tensor:
    """Waveform ``[..., num_samples]`` (unnormalised) from mel magnitudes ``[..., n_mels, columns]``.

    ``num_samples`` must not exceed ``hop_length * (columns - 1)``.
    """
    grid = working_grid(params)
    mag = linear_magnitude(mel, inverse_mel_matrix(params))
    win_length = grid.n_fft if grid.bin_step > 1 else params.win_length
    phase = integrated_phase(mag, grid.hop, grid.n_fft, win_length)
    work_length = grid.hop * (mel.shape[-1] - 1)
    frames = FrameCodec(grid.n_fft, grid.hop, win_length, mag.shape[-2], mel.device)
    audio = griffin_lim(mag, phase, frames, n_iter, work_length)
    if grid.up != grid.down:
        audio = torchaudio.functional.resample(audio, grid.up, grid.down)
    return audio[..., :num_samples]
