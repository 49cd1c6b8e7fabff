"""Riffusion's spectrogram format: audio <-> mel <-> 8-bit image, and fast reconstruction.

Public API: :class:`Codec` (tensors, batched, CPU or CUDA), :func:`encode` / :func:`decode`
(PIL images and arrays), :func:`pixels_from_image`, :class:`SpectrogramParams`, :class:`LoopInfo`.
"""

from riffengine.spectrogram.codec import Codec, decode, encode, peak_normalize
from riffengine.spectrogram.image import image_loop, image_params, load_image, pixels_from_image, save_image
from riffengine.spectrogram.params import LoopInfo, SpectrogramParams

__all__ = [
    "Codec",
    "LoopInfo",
    "SpectrogramParams",
    "decode",
    "encode",
    "image_loop",
    "image_params",
    "load_image",
    "peak_normalize",
    "pixels_from_image",
    "save_image",
]
