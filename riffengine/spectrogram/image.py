"""Spectrogram images: pixels <-> PIL images with Riffusion's EXIF tags, and file I/O.

Image orientation: row 0 is the highest mel bin. Mono is RGB with R = G = B; stereo is R = 0,
G = left, B = right. Images without EXIF (Riffusion's seed images, the model's output) get
Riffusion's default parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from riffengine.errors import UserError
from riffengine.spectrogram.params import LoopInfo, SpectrogramParams

IMAGE_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "I", "I;16")


def pixels_from_image(image: Image.Image) -> torch.Tensor:
    """uint8 tensor ``[3, height, width]`` (RGB, image orientation) from any PIL image."""
    if image.mode not in ("RGB",):
        if image.mode in ("I", "I;16"):
            array = np.asarray(image, dtype=np.float64)
            array = np.clip(array / max(array.max(), 1) * 255, 0, 255).astype(np.uint8)
            image = Image.fromarray(array, mode="L")
        image = image.convert("RGB")
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def channel_pixels(rgb: torch.Tensor, stereo: bool) -> torch.Tensor:
    """Per-channel pixels ``[..., channels, bins, columns]``, lowest bin first, from RGB pixels."""
    chosen = rgb[..., 1:3, :, :] if stereo else rgb[..., 0:1, :, :]
    return torch.flip(chosen, dims=(-2,))


def rgb_from_channel_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """RGB pixels in image orientation from ``[channels, bins, columns]`` (1 or 2 channels)."""
    flipped = torch.flip(pixels, dims=(-2,))
    if flipped.shape[0] == 1:
        return flipped.expand(3, -1, -1).contiguous()
    return torch.stack([torch.zeros_like(flipped[0]), flipped[0], flipped[1]])


def image_from_rgb(rgb: torch.Tensor, exif: dict[int, int | float] | None = None) -> Image.Image:
    """A PIL RGB image from uint8 ``[3, H, W]`` pixels, carrying ``exif`` tags if given."""
    image = Image.fromarray(rgb.permute(1, 2, 0).cpu().numpy().astype(np.uint8), mode="RGB")
    if exif:
        tags = image.getexif()
        for tag, value in exif.items():
            tags[tag] = value
        image.info["exif"] = tags.tobytes()
    return image


def save_image(image: Image.Image, path: str | Path) -> None:
    """Write a PNG keeping its EXIF (PNG eXIf chunk)."""
    exif = image.info.get("exif")
    try:
        if exif:
            image.save(path, format="PNG", exif=exif)
        else:
            image.save(path, format="PNG")
    except OSError as exc:
        raise UserError(
            f"{path}: cannot write the image ({exc.strerror or exc}); check the folder exists and is writable"
        ) from None


def image_exif(image: Image.Image) -> dict[int, Any]:
    """The image's EXIF tags; their values have no fixed type (numbers, text, rationals)."""
    return dict(image.getexif())


def image_params(image: Image.Image) -> SpectrogramParams:
    """The spectrogram parameters an image was made with (Riffusion's defaults if no EXIF)."""
    return SpectrogramParams.from_exif(image_exif(image))


def image_loop(image: Image.Image) -> LoopInfo | None:
    """The tempo and bar count a seed image records, if any."""
    return LoopInfo.from_exif(image_exif(image))


def load_image(path: str | Path) -> Image.Image:
    """Open a spectrogram image, or raise UserError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an image; give the path of a PNG or JPEG file")
    try:
        image = Image.open(path)
        image.load()
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file; give a PNG or JPEG spectrogram") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the image ({exc}); check the file is complete") from None
    if image.mode not in IMAGE_MODES:
        raise UserError(f"{path}: image mode {image.mode} is not supported; save it as greyscale or RGB")
    return image


def check_image_shape(image: Image.Image, params: SpectrogramParams, name: str) -> None:
    """Raise UserError unless the image's parameters are sane and it has one row per mel bin."""
    if not 8000 <= params.sample_rate <= 192000:
        raise UserError(
            f"{name}: EXIF sample rate {params.sample_rate} Hz is not usable; "
            "re-encode the audio (Riffusion uses 44100 Hz)"
        )
    if not 0 <= params.min_frequency < params.max_frequency <= params.sample_rate / 2:
        raise UserError(
            f"{name}: EXIF frequency range {params.min_frequency}-{params.max_frequency} Hz does not fit "
            f"under half the {params.sample_rate} Hz sample rate; re-encode the audio"
        )
    if params.hop_length < 1 or params.win_length < params.hop_length or params.n_fft < params.win_length:
        raise UserError(f"{name}: EXIF step/window/padding durations are inconsistent; re-encode the audio")
    width, height = image.size
    if height != params.num_frequencies:
        raise UserError(
            f"{name}: image is {height} pixels high but a spectrogram needs {params.num_frequencies}"
            f" (one row per mel bin); resize it to {params.num_frequencies} rows"
        )
    if width < 2:
        raise UserError(f"{name}: image is {width} pixel wide; a spectrogram needs at least 2 columns")
