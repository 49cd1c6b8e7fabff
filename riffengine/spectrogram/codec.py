"""The codec: audio <-> Riffusion spectrogram images, batched, on the CPU or CUDA.

``encode`` and ``decode`` work on PIL images and arrays; :class:`Codec` works on tensors
without files and is what the engine keeps alive (its inverse-mel matrix and FFT plans are
made once, at :meth:`Codec.warm_up`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from riffengine.errors import UserError
from riffengine.spectrogram import image as img
from riffengine.spectrogram.audio_io import to_rate
from riffengine.spectrogram.mel import audio_to_mel, mel_to_pixels, pixels_to_mel, resample_loop
from riffengine.spectrogram.params import DEFAULT_MAX_VALUE, LoopInfo, SpectrogramParams
from riffengine.spectrogram.phase import DEFAULT_ITERATIONS, inverse_mel_matrix, mel_bands, reconstruct

#: Decoded audio peaks at -1 dBFS: headroom for the crossfades and gain after it.
DEFAULT_PEAK = 10 ** (-1.0 / 20)
#: Samples in int16 units, as Riffusion's pipeline feeds them to the STFT.
INT16_SCALE = 32768.0


def peak_normalize(audio: torch.Tensor, peak: float = DEFAULT_PEAK) -> torch.Tensor:
    """Scale each clip (``[batch, channels, samples]``) so its largest sample is ``peak``."""
    largest = audio.abs().amax(dim=(-2, -1), keepdim=True)
    gain = torch.where(largest > 0, peak / largest.clamp(min=1e-30), torch.zeros_like(largest))
    return audio * gain


class Codec:
    """Spectrogram image <-> audio on one device.

    Thread rule: one Codec per thread that uses it (the render worker owns one). Never call it
    from an audio callback.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        params: SpectrogramParams | None = None,
        n_iter: int = DEFAULT_ITERATIONS,
    ):
        self.device = torch.device(device)
        self.params = params or SpectrogramParams()
        self.n_iter = n_iter

    def warm_up(self) -> None:
        """Build the inverse-mel and band matrices and run the FFTs once, so the first real clip is fast."""
        inverse_mel_matrix(self.params)
        mel_bands(self.params, self.device)
        pixels = torch.full((1, 3, self.params.num_frequencies, 16), 128, dtype=torch.uint8)
        self.decode_pixels(pixels)

    def decode_pixels(
        self,
        pixels: torch.Tensor,
        num_samples: int | None = None,
        stereo: bool | None = None,
        max_value: float = DEFAULT_MAX_VALUE,
    ) -> torch.Tensor:
        """Audio ``float32 [batch, channels, samples]`` from RGB pixels ``[batch, 3, bins, columns]``.

        Pixels are in image orientation (row 0 = highest bin), uint8 or float 0..255.
        Without ``num_samples`` a W-column image gives ``hop * (W - 1)`` samples (225351 for
        512 columns). With it, the image is taken as one loop and stretched along time to
        exactly ``num_samples`` samples (pitch unchanged). Output peaks at -1 dBFS.
        """
        params = self.params
        stereo = params.stereo if stereo is None else stereo
        if pixels.dim() == 3:
            pixels = pixels.unsqueeze(0)
        channel_px = img.channel_pixels(pixels.to(self.device), stereo).to(torch.float32)
        columns = channel_px.shape[-1]
        if num_samples is None:
            num_samples = params.samples_for(columns)
        else:
            wanted = math.ceil(num_samples / params.hop_length) + 1
            channel_px = resample_loop(channel_px, columns, num_samples / params.hop_length, wanted)
        mel = pixels_to_mel(channel_px, params.power_for_image, max_value)
        audio = reconstruct(mel, params, num_samples, self.n_iter)
        return peak_normalize(audio)

    def encode_audio(self, audio: torch.Tensor, loop: LoopInfo | None = None) -> tuple[torch.Tensor, float]:
        """Channel pixels ``uint8 [channels, bins, columns]`` (lowest bin first) and the max mel value.

        ``audio`` is ``[channels, samples]`` at the codec's rate, in int16 units. With ``loop``,
        the audio is one loop of ``loop.bars`` bars and is stretched to the model's 512 columns.
        """
        params = self.params
        mel = audio_to_mel(audio.to(self.device), params)
        if loop is not None:
            mel = mel_from_loop(mel, audio.shape[-1] / params.hop_length)
        pixels, max_value = mel_to_pixels(mel, params.power_for_image)
        return pixels, max_value


MODEL_COLUMNS = 512


def mel_from_loop(mel: torch.Tensor, period: float) -> torch.Tensor:
    """Stretch one loop's mel (``period`` columns long) to the model's 512 columns."""
    return resample_loop(mel, period, MODEL_COLUMNS, MODEL_COLUMNS)


def prepare_audio(audio: np.ndarray, sample_rate: int, params: SpectrogramParams) -> torch.Tensor:
    """Float ``[channels, samples]`` in [-1, 1] -> the codec's rate and channel count, int16 units."""
    data = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    if data.dim() == 1:
        data = data.unsqueeze(0)
    if params.stereo:
        data = data.expand(2, -1) if data.shape[0] == 1 else data[:2]
    else:
        data = data.mean(dim=0, keepdim=True)
    data = to_rate(data, sample_rate, params.sample_rate)
    return data * INT16_SCALE


def encode(
    audio: np.ndarray,
    sample_rate: int,
    stereo: bool = False,
    loop: LoopInfo | None = None,
    device: str = "cpu",
) -> Image.Image:
    """A Riffusion spectrogram image (with EXIF) of ``audio`` ``[channels, samples]`` in [-1, 1].

    Any sample rate (resampled to 44.1 kHz) and channel count (mixed to mono unless
    ``stereo``). With ``loop`` the audio must be exactly ``loop.bars`` bars at ``loop.bpm``; it
    is stretched to 512 columns and the tempo is recorded in the image.
    """
    params = SpectrogramParams(stereo=stereo)
    data = prepare_audio(audio, sample_rate, params)
    if data.shape[-1] < params.hop_length:
        raise UserError(f"audio is {data.shape[-1]} samples long; a spectrogram needs at least {params.hop_length}")
    pixels, max_value = Codec(device, params).encode_audio(data, loop)
    exif = params.to_exif(max_value)
    if loop is not None:
        exif.update(loop.to_exif())
    return img.image_from_rgb(img.rgb_from_channel_pixels(pixels), exif)


def decode(
    image: Image.Image, num_samples: int | None = None, device: str = "cpu", n_iter: int = DEFAULT_ITERATIONS
) -> tuple[np.ndarray, int]:
    """``(float32 [channels, samples], sample_rate)`` from a spectrogram image.

    Works for Riffusion's images with or without EXIF, in L, P or RGB mode.
    """
    params = img.image_params(image)
    img.check_image_shape(image, params, "image")
    pixels = img.pixels_from_image(image).unsqueeze(0)
    audio = Codec(device, params, n_iter).decode_pixels(pixels, num_samples)
    return audio[0].cpu().numpy(), params.sample_rate
