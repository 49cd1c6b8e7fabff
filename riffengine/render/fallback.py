"""Music without a model: what the engine plays while the model cannot be loaded.

When the weights are missing or the GPU fails at start, ``riffengine run`` still plays (unless
``--require-model``): :class:`FallbackRenderer` stands in for the
:class:`~riffengine.render.renderer.Renderer` until the model loads. For every request it
decodes, at the requested loop length,

1. the bank's safe loop, when one is banked (``riffengine bank``): the loop the show chose to
   fall back on;
2. otherwise the request's seed image (a built-in seed loop, such as ``groove_94``, or the
   performer's own), which holds a whole number of bars of real music; a request without a seed
   image gets :data:`DEFAULT_SEED`.

So the music keeps the tempo and the bar grid, and a performer can still change loops by
changing ``seed_image``; prompts, seeds and alpha wait for the model. No diffusion runs: only
the codec (torch and torchaudio, no weights).

Thread rule: like the Renderer, one thread (the render worker) uses it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from riffengine.render.renderer import SAMPLE_RATE, RenderedClip, decode_one, pixels_to_image
from riffengine.render.request import RenderRequest
from riffengine.render.seeds import BUILTIN_DIR, load_seed_pixels

if TYPE_CHECKING:
    from riffengine.spectrogram import Codec

DEFAULT_SEED = "groove_94"
"""The built-in seed loop played for a request that names no seed image."""

WIDTH = 512
"""Columns of a model image (5.12 s): seed images are read at this width, as the model reads them."""


class FallbackRenderer:
    """Renders a request as the safe loop or its seed image, decoded to the loop's length.

    ``safe_pixels``: uint8 ``[3, 512, W]`` of the bank's safe loop, or None.
    """

    stereo = False

    def __init__(
        self, safe_pixels: torch.Tensor | None = None, seeds_dir: Path = BUILTIN_DIR, device: str = "cpu"
    ) -> None:
        self.safe_pixels = safe_pixels
        self.seeds_dir = seeds_dir
        self.device = device
        self.codec: Codec | None = None
        self.last_source = ""
        """What the last clip was made from: ``safe loop`` or ``seed image NAME``."""

    def source_pixels(self, request: RenderRequest) -> tuple[str, torch.Tensor]:
        """(what, pixels) that stand for ``request``."""
        if self.safe_pixels is not None:
            return "safe loop", self.safe_pixels
        name = request.seed_image or DEFAULT_SEED
        return f"seed image {name}", load_seed_pixels(name, WIDTH, self.seeds_dir)

    def pixels_to_audio(self, pixels: torch.Tensor, num_frames: int | None) -> np.ndarray:
        """Audio float32 ``[channels, frames]`` from uint8 pixels, through the codec."""
        if self.codec is None:
            from riffengine.spectrogram import Codec

            self.codec = Codec(device=self.device)
        return decode_one(self.codec, pixels, num_frames, self.stereo)

    def render(self, request: RenderRequest, num_frames: int | None = None, on_step=None) -> RenderedClip:
        start = time.perf_counter()
        self.last_source, pixels = self.source_pixels(request)
        audio = self.pixels_to_audio(pixels, num_frames)
        seconds = time.perf_counter() - start
        return RenderedClip(
            request=request,
            pixels=pixels,
            image=pixels_to_image(pixels),
            audio=audio,
            sample_rate=SAMPLE_RATE,
            seconds=seconds,
            timings={"audio": seconds},
        )
