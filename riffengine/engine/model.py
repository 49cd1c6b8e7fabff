"""Loading the model the settings name, as the engine's renderer (with the render cache)."""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from riffengine.config import Settings

log = logging.getLogger("riffengine.engine")


def build_renderer(settings: Settings, live: bool = False):
    """The real renderer with the configured model (loads it: slow, call off the loop).

    ``live``: an engine plays in real time on this machine, so a render on the CPU leaves the
    audio a core (:func:`~riffengine.render.speed.split_guidance`).
    """
    import torch

    from riffengine.render.adapters import describe_adapters, load_adapters
    from riffengine.render.model import load_model, optimize_model
    from riffengine.render.renderer import GuidanceHalves, Renderer
    from riffengine.render.speed import cpu_threads, describe_levers, resolve_levers, split_guidance

    device = settings.model.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"auto": None, "fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}[settings.model.dtype]
    model = load_model(settings.model.id, device=device, dtype=dtype)
    load_adapters(model, settings.model.adapters, settings.model.fuse_adapters)
    levers = resolve_levers(
        model.device.type, settings.model.channels_last, settings.model.fuse_qkv, settings.model.compile
    )
    if levers.fuse_qkv and model.adapters and not model.adapters_fused:
        # a fused projection would bypass the LoRA layers on query, key and value
        levers = replace(levers, fuse_qkv=False)
        log.info("fused QKV is off: adapters are loaded unfused (model.fuse_adapters: true allows both)")
    log.info(
        "model %s on %s (%s); adapters: %s; speed levers: %s",
        model.source,
        model.device,
        str(model.dtype).removeprefix("torch."),
        describe_adapters(model.adapters, model.adapters_fused),
        describe_levers(levers),
    )
    optimize_model(model, levers.channels_last, levers.fuse_qkv, levers.compile_mode)
    halves = None
    if model.device.type == "cpu":
        threads = cpu_threads(settings.model.cpu_threads, os.cpu_count())
        torch.set_num_threads(threads)  # process-wide; the render thread starts after this
        if split_guidance(threads, os.cpu_count(), live) and not model.compiled:
            halves = GuidanceHalves(threads)
        log.info(
            "rendering on %d CPU thread(s)%s",
            threads,
            ", the two guidance rows side by side" if halves is not None else "",
        )
    return Renderer(model, halves=halves)


def build_cached_renderer(settings: Settings, live: bool = False):
    """The real renderer behind the render cache when ``cache.enabled`` (slow: off the loop)."""
    renderer = build_renderer(settings, live)
    if not settings.cache.enabled:
        return renderer
    from riffengine.render.cache import CachedRenderer, RenderCache

    return CachedRenderer(renderer, RenderCache(settings.cache.folder, settings.cache.max_bytes))


def build_clip_maker(settings: Settings, output_rate: int, channels: int):
    """A :class:`~riffengine.clipmaker.ClipMaker` over :func:`build_cached_renderer`: what a
    render actor (``render.backend: ray``) loads once, on its own machine (slow)."""
    from riffengine.clipmaker import ClipMaker

    # One UNet batch, as live: on the CPU a worker has one core of its own (num_cpus=1), and on
    # the audio machine (render.ray.address: local) it renders beside the music.
    return ClipMaker(build_cached_renderer(settings, live=True), output_rate, channels)


class LazyRenderer:
    """A renderer loaded on first use, on the thread that first uses it.

    With ``render.backend: ray`` the engine's machine loads no model until a fault sends a
    render to the local worker. A model that cannot be loaded there gives ``fallback()`` (the
    safe loop or seed loops): the music goes on, never silence.
    """

    _renderer = None

    def __init__(self, build, fallback) -> None:
        self._build = build
        self._fallback = fallback

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._loaded(), name)

    def _loaded(self):
        if self._renderer is None:
            try:
                self._renderer = self._build()
            except Exception as exc:  # noqa: BLE001 - no model here: play seed loops
                log.error("the local renderer cannot load the model (%s); rendering seed loops", exc)
                self._renderer = self._fallback()
        return self._renderer
