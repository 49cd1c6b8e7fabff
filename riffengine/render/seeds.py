"""Seed images and masks: finding them by built-in name or path, loading them as tensors.

Built-in seed images are the PNG files in ``riffengine/seeds/``; a file's stem is its name
(``og_beat.png`` -> ``og_beat``). Any other image (Riffusion's own seed images included) is
given by path. Images of any PIL mode (P, L, RGB, ...) load as RGB. A seed image is 512 pixels
high (it is resized to that if not) and is cropped or tiled along time to the requested width.

Masks follow Riffusion: white is regenerated, black keeps the seed image, grey levels blend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from riffengine.errors import UserError

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "seeds"
HEIGHT = 512


def builtin_names(folder: Path = BUILTIN_DIR) -> list[str]:
    """Names of the built-in seed images (the PNG stems in ``folder``), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.png"))


def resolve_seed_image(ref: str, folder: Path = BUILTIN_DIR, field: str = "seed_image") -> Path:
    """The file a seed image reference names: an existing path or a built-in name."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    names = builtin_names(folder)
    if ref in names:
        return folder / f"{ref}.png"
    available = ", ".join(names) if names else "none installed"
    if path.suffix or "/" in ref:
        raise UserError(f"{field} file {ref!r} does not exist (built-in names: {available})")
    raise UserError(
        f"{field} {ref!r} is not a built-in seed image (available: {available}); "
        f"give a built-in name or a path to a PNG"
    )


def open_image(path: Path, field: str = "seed_image"):
    """Open an image file with PIL; UserError when it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{field} {str(path)!r} is not a readable image: {exc}") from exc
    return image


def fit_width(pixels: torch.Tensor, width: int) -> torch.Tensor:
    """Crop ``[..., W]`` to its first ``width`` columns, or tile it to reach ``width``."""
    have = pixels.shape[-1]
    if have < width:
        reps = -(-width // have)
        pixels = pixels.repeat(*([1] * (pixels.dim() - 1)), reps)
    return pixels[..., :width].contiguous()


def to_height(image, height: int = HEIGHT):
    """Resize a PIL image to ``height`` rows, keeping its aspect ratio (no-op when it fits)."""
    from PIL import Image

    w, h = image.size
    if h == height:
        return image
    new_w = max(1, round(w * height / h))
    return image.resize((new_w, height), resample=Image.Resampling.BICUBIC)


def load_seed_pixels(ref: str, width: int, folder: Path = BUILTIN_DIR) -> torch.Tensor:
    """The seed image as a uint8 tensor ``[3, 512, width]`` (RGB, row 0 = highest frequency)."""
    image = to_height(open_image(resolve_seed_image(ref, folder)).convert("RGB"))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
    return fit_width(pixels, width)


def seed_image_size(ref: str, folder: Path = BUILTIN_DIR) -> tuple[int, int]:
    """``(width, height)`` of the seed image file as stored."""
    return open_image(resolve_seed_image(ref, folder)).size


def load_mask(path: str, seed_size: tuple[int, int], width: int) -> torch.Tensor:
    """Regenerate weights ``[512, width]`` in [0, 1] (white = 1, regenerated; black = 0, kept).

    The mask must have the seed image's size; a different size is a UserError.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"mask file {path!r} does not exist")
    image = open_image(file, field="mask")
    if image.size != tuple(seed_size):
        raise UserError(
            f"mask {path!r} is {image.size[0]}x{image.size[1]} but the seed image is "
            f"{seed_size[0]}x{seed_size[1]}: make the mask the seed image's size"
        )
    grey = to_height(image.convert("L"))
    weights = torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255.0)
    return fit_width(weights, width)


def mask_to_latent(regen: torch.Tensor, factor: int) -> torch.Tensor:
    """Keep weights ``[1, 1, H/f, W/f]`` for the latents: ``1 - regen`` averaged per cell."""
    keep = 1.0 - regen[None, None].float()
    return F.avg_pool2d(keep, kernel_size=factor, stride=factor)
