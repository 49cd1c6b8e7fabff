"""A fast stand-in for :class:`~riffengine.render.renderer.Renderer`, for tests and rehearsals.

It makes a deterministic test signal per request instead of running a model: a sine whose
frequency is derived from the request (prompts, seeds, alpha), with a short burst at sample 0
so every loop start is easy to find. Its spectrogram "image" is a flat pattern that encodes the
same frequency, so :meth:`FakeRenderer.pixels_to_audio` (the stretch path) gives the same
signal at another length.

Switches, per request, written into side A's first prompt (so a scripted session can trigger
them through ordinary state changes):

- ``[raise]``: the render raises :class:`RuntimeError`;
- ``[oom]``: the render raises ``torch.cuda.OutOfMemoryError`` (a simulated CUDA
  out-of-memory; the class exists, and can be raised, without a GPU);
- ``[nan]``: the audio is all NaN;
- ``[silent]``: the audio is all zeros;
- ``[late=S]``: the render takes ``S`` seconds;
- ``[hang]``: the render blocks the worker thread until :meth:`FakeRenderer.unhang` is called
  (a driver that stopped answering), then finishes normally; ``[hang=S]`` gives up after
  ``S`` seconds of real time.

``[raise=N]``, ``[oom=N]``, ``[nan=N]`` and ``[silent=N]`` fail only the first ``N`` renders of
that request and then succeed: a renderer that recovers on its own (for the engine's retry).

Time: each render "takes" ``seconds`` (``[late=S]``: ``S``) and a stretch ``stretch_seconds``.
With ``sleep=True`` it really sleeps that long (live runs); otherwise it returns at once and
reports the time in :attr:`last_seconds` and ``RenderedClip.seconds``, which the engine's file output
uses as the simulated render time (scripted sessions, faster than real time, deterministic).

Thread rule: like the Renderer, one thread (the render worker) uses it.
"""

from __future__ import annotations

import math
import re
import threading
import time
import zlib

import numpy as np
import torch

from riffengine.render.renderer import SAMPLE_RATE, RenderedClip, pixels_to_image
from riffengine.render.request import RenderRequest

DEFAULT_SECONDS = 0.3
DEFAULT_STRETCH_SECONDS = 0.02
BURST_FRAMES = 256
STEP_SECONDS = 0.05
"""A sleeping render reports a "step" about this often (``on_step``)."""
_LATE = re.compile(r"\[late=([0-9]*\.?[0-9]+)\]")
_HANG = re.compile(r"\[hang(?:=([0-9]*\.?[0-9]+))?\]")
_FAULT = re.compile(r"\[(raise|oom|nan|silent)(?:=([0-9]+))?\]")
HANG_LIMIT_SECONDS = 3600.0
"""A ``[hang]`` without a time gives up after this long (a test that forgot to unhang)."""


def request_frequency(request: RenderRequest) -> float:
    """A frequency from 200 to 1220 Hz (4 Hz steps) that depends only on the request."""
    text = repr((request.a, request.b, request.alpha, request.negative, request.seed_image))
    return 200.0 + 4.0 * (zlib.crc32(text.encode()) % 256)


def fake_signal(frequency: float, num_frames: int) -> np.ndarray:
    """Mono float32 ``[1, frames]``: a 0.5 sine plus a 0.9 burst over the first frames."""
    t = np.arange(num_frames, dtype=np.float64) / SAMPLE_RATE
    audio = 0.5 * np.sin(2 * np.pi * frequency * t)
    burst = min(BURST_FRAMES, num_frames)
    audio[:burst] = 0.9 * np.sign(np.sin(2 * np.pi * 2000.0 * t[:burst]) + 1e-9)
    return audio.astype(np.float32)[None, :]


def frequency_pixels(frequency: float, width: int = 512) -> torch.Tensor:
    """uint8 ``[3, 512, width]``: one bright row at the frequency's place, its code in pixel 0."""
    pixels = torch.zeros((3, 512, width), dtype=torch.uint8)
    code = int(round((frequency - 200.0) / 4.0))
    row = 511 - min(511, int(frequency / 10000.0 * 512))
    pixels[:, row, :] = 200
    pixels[:, 0, 0] = code
    return pixels


def pixels_frequency(pixels: torch.Tensor) -> float:
    return 200.0 + 4.0 * int(pixels[0, 0, 0])


def switches(request: RenderRequest) -> str:
    """The switch text of a request: side A's first prompt."""
    return request.a.prompts[0].text if request.a.prompts else ""


class FakeRenderer:
    """Renders test signals; see the module docstring for the switches and time."""

    def __init__(
        self, seconds: float = DEFAULT_SECONDS, stretch_seconds: float = DEFAULT_STRETCH_SECONDS, sleep: bool = False
    ) -> None:
        self.seconds = seconds
        self.stretch_seconds = stretch_seconds
        self.sleep = sleep
        self.last_seconds = 0.0
        self.renders = 0
        self.stretches = 0
        self.hanging = threading.Event()
        """Set while a ``[hang]`` render blocks the worker thread."""
        self._unhang = threading.Event()
        self._faults: dict[RenderRequest, int] = {}

    def unhang(self) -> None:
        """Let a ``[hang]`` render (now or later) finish; any thread."""
        self._unhang.set()

    def fault(self, request: RenderRequest) -> str | None:
        """The fault this render of ``request`` has: raise, oom, nan, silent or None.

        A counted fault (``[oom=2]``) applies to the first renders of the request only.
        """
        found = _FAULT.search(switches(request))
        if found is None:
            return None
        if found.group(2) is not None:
            done = self._faults.get(request, 0)
            self._faults[request] = done + 1
            if done >= int(found.group(2)):
                return None
        return found.group(1)

    def _hang(self, limit: float) -> None:
        self.hanging.set()
        try:
            self._unhang.wait(limit)
        finally:
            self.hanging.clear()

    def _take(self, seconds: float, on_step=None) -> None:
        """Take ``seconds`` (sleeping only with ``sleep``), calling ``on_step(i, n)`` every
        :data:`STEP_SECONDS` or so of it, as the model does after each diffusion step."""
        self.last_seconds = seconds
        if self.sleep and seconds > 0:
            steps = max(1, math.ceil(seconds / STEP_SECONDS))
            for i in range(steps):
                time.sleep(seconds / steps)
                if on_step is not None:
                    on_step(i + 1, steps)

    def render(self, request: RenderRequest, num_frames: int | None = None, on_step=None) -> RenderedClip:
        """A clip of ``num_frames`` frames (5.12 s without) of the request's test signal."""
        self.renders += 1
        text = switches(request)
        late = _LATE.search(text)
        self._take(float(late.group(1)) if late else self.seconds, on_step)
        hang = _HANG.search(text)
        if hang is not None:
            self._hang(float(hang.group(1)) if hang.group(1) else HANG_LIMIT_SECONDS)
        fault = self.fault(request)
        if fault == "raise":
            raise RuntimeError("fake renderer: [raise] switch")
        if fault == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake renderer: [oom] switch)")
        frames = num_frames or int(5.12 * SAMPLE_RATE)
        frequency = request_frequency(request)
        pixels = frequency_pixels(frequency, request.width)
        audio = fake_signal(frequency, frames)
        if fault == "nan":
            audio[:] = np.nan
        elif fault == "silent":
            audio[:] = 0.0
        return RenderedClip(
            request=request,
            pixels=pixels,
            image=pixels_to_image(pixels),
            audio=audio,
            sample_rate=SAMPLE_RATE,
            seconds=self.last_seconds,
            timings={"diffusion": self.last_seconds},
        )

    def pixels_to_audio(self, pixels: torch.Tensor, num_frames: int | None) -> np.ndarray:
        """The stretch path: the signal the pixels encode, at ``num_frames`` frames."""
        self.stretches += 1
        self._take(self.stretch_seconds)
        return fake_signal(pixels_frequency(pixels), num_frames or int(5.12 * SAMPLE_RATE))
