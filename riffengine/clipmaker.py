"""From a render request to audio the timeline can play: render or stretch, check, resample.

:class:`ClipMaker` wraps a renderer (the real :class:`~riffengine.render.renderer.Renderer` or
the :class:`~riffengine.render.fake.FakeRenderer`) and is what the render worker calls. For
each :class:`ClipSpec` it

0. before its first clip, lets the renderer warm up (a compiled model compiles then, on the
   render thread, even when that clip comes from the cache);
1. renders the request, or, when the request equals the last good one (only tempo or bars
   changed), decodes the last good image again at the new length (``pixels_to_audio``: a
   stretch, no diffusion);
2. checks the audio: NaN/infinite samples or silence raise :class:`BadAudio` (the engine then
   keeps the last good loop);
3. returns float32 ``[frames, channels]`` audio of exactly the loop length at the output rate
   (resampled from the model's 44.1 kHz when the output runs at another rate).

Thread rule: it runs on the render worker's thread only; it owns the renderer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from riffengine.render.frames import resample_clip, to_frames
from riffengine.render.renderer import SAMPLE_RATE as MODEL_RATE
from riffengine.render.request import RenderRequest

SILENCE_PEAK = 1e-4
"""Audio whose largest sample is below this (-80 dBFS) counts as silence."""


class BadAudio(Exception):
    """A render produced garbage; ``reason`` is ``nan`` or ``silent``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ClipSpec:
    """One clip to make: the request, its length at the model's rate and at the output's."""

    request: RenderRequest
    model_frames: int
    out_frames: int


@dataclass(frozen=True, eq=False)
class MadeClip:
    """A clip ready for :meth:`Timeline.make_clip`: ``audio`` is float32 ``[frames, channels]``.

    ``seconds`` is the render time (simulated, for a renderer that reports one without
    sleeping), ``stretched`` says whether only the length was redone.
    """

    spec: ClipSpec
    audio: np.ndarray
    pixels: object
    image: object
    seconds: float
    stretched: bool
    timings: dict[str, float] = field(default_factory=dict)


def check_audio(audio: np.ndarray) -> None:
    """Raise :class:`BadAudio` for NaN/infinite samples or silence."""
    if audio.size == 0:
        raise BadAudio("silent", "the render returned no audio")
    if not np.isfinite(audio).all():
        raise BadAudio("nan", "the render returned NaN or infinite samples")
    peak = float(np.abs(audio).max())
    if peak < SILENCE_PEAK:
        raise BadAudio("silent", f"the render returned silence (peak {peak:.2e})")


class ClipMaker:
    """Makes :class:`MadeClip` objects with one renderer; see the module docstring."""

    def __init__(self, renderer, output_rate: int, channels: int = 2) -> None:
        self.renderer = renderer
        self.output_rate = output_rate
        self.channels = channels
        self.on_step: Callable[[int, int], None] | None = None
        """``on_step(step, steps)`` passed to the renderer while set (the warm-up's progress)."""
        self._last_request: RenderRequest | None = None
        self._last_pixels = None
        self._last_image = None
        self._warmed = False
        self._replacement = None

    def replace_renderer(self, renderer) -> None:
        """Use ``renderer`` from the next clip on (any thread: the swap happens on the worker's
        thread, between clips). The next clip is rendered afresh, never stretched."""
        self._replacement = renderer

    def render(self, spec: ClipSpec) -> MadeClip:
        """Make the clip for ``spec`` (it holds the lengths at the model's and the output's rate)."""
        start = time.perf_counter()
        if self._replacement is not None:
            self.renderer, self._replacement = self._replacement, None
            self._last_request = self._last_pixels = self._last_image = None
            self._warmed = False
        renderer = self.renderer
        if not self._warmed:
            self._warmed = True
            warm_up = getattr(renderer, "warm_up", None)
            if warm_up is not None:  # a compiled model compiles here, past any cache
                warm_up(spec.request)
        stretched = spec.request == self._last_request and hasattr(renderer, "pixels_to_audio")
        if stretched:
            pixels, image, timings = self._last_pixels, self._last_image, {}
            audio = renderer.pixels_to_audio(pixels, spec.model_frames)
        else:
            extra: dict[str, object] = {"on_step": self.on_step} if self.on_step is not None else {}
            clip = renderer.render(spec.request, num_frames=spec.model_frames, **extra)
            pixels, image, audio, timings = clip.pixels, clip.image, clip.audio, dict(clip.timings)
        check_audio(np.asarray(audio))
        frames = to_frames(audio, self.channels)
        if self.output_rate != MODEL_RATE or len(frames) != spec.out_frames:
            t0 = time.perf_counter()
            frames = resample_clip(frames, MODEL_RATE, self.output_rate, spec.out_frames)
            timings["resample"] = time.perf_counter() - t0
        seconds = time.perf_counter() - start
        simulated = getattr(renderer, "last_seconds", None)
        if simulated is not None and not getattr(renderer, "sleep", True):
            seconds = float(simulated)
        self._last_request, self._last_pixels, self._last_image = spec.request, pixels, image
        return MadeClip(spec, frames, pixels, image, seconds, stretched, timings)
