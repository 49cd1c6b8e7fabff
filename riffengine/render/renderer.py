"""The renderer: one :class:`RenderRequest` in, one :class:`RenderedClip` (image + audio) out.

The denoising follows Riffusion's ``riffuse``: prompt embeddings interpolate linearly by alpha,
the initial noise is the slerp of the two sides' seed noises, guidance and denoise strength
interpolate, and the latents start from the seed image (img2img at strength = denoise). Unlike
the reference, the negative prompt is applied (it is the unconditional embedding), seed noise
is drawn on the CPU (the same on every device), and the seed image is encoded to its latent
mean once and cached. The loop itself is step for step the one of diffusers'
``StableDiffusionImg2ImgPipeline`` given the same latents and noise (tests check this).

A Renderer is not thread-safe: one thread (the render worker) uses it.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from riffengine.errors import UserError
from riffengine.render.blend import lerp, slerp, weighted_sum
from riffengine.render.model import RiffusionModel, allow_cuda_graphs_on_this_thread
from riffengine.render.prompts import PromptEncoder, check_prompt
from riffengine.render.request import RenderRequest, Side
from riffengine.render.seeds import (
    BUILTIN_DIR,
    HEIGHT,
    load_mask,
    load_seed_pixels,
    mask_to_latent,
    seed_image_size,
)

SAMPLE_RATE = 44100

# Scheduler names a request may use -> diffusers class name ("default": the model's own).
SCHEDULERS: dict[str, str | None] = {
    "default": None,
    "pndm": "PNDMScheduler",
    "ddim": "DDIMScheduler",
    "lms": "LMSDiscreteScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "lcm": "LCMScheduler",  # for few-step adapters (LCM-LoRA), guidance about 1
    "tcd": "TCDScheduler",  # for TCD and Hyper-SD adapters
}

StepCallback = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class RenderedClip:
    """A rendered clip: the spectrogram image, its audio and how long each phase took.

    ``pixels`` is uint8 ``[3, 512, W]`` on the CPU (row 0 = highest frequency, as in the PNG);
    ``image`` is the same as a PIL RGB image; ``audio`` is float32 ``[channels, frames]``.
    ``timings`` has seconds per phase: ``text``, ``diffusion``, ``vae``, ``audio``.
    """

    request: RenderRequest
    pixels: torch.Tensor
    image: object
    audio: np.ndarray | None
    sample_rate: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return 0 if self.audio is None else int(self.audio.shape[-1])


@dataclass(frozen=True)
class Mix:
    """The numbers a request resolves to once alpha is applied (pure, no model needed)."""

    guidance: float
    denoise: float
    seed_a: int
    seed_b: int
    alpha: float


# --- validation -----------------------------------------------------------------------------


def check_range(name: str, value: float, low: float, high: float) -> None:
    """UserError when ``value`` is not a finite number in ``[low, high]``."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise UserError(f"{name} is {value!r}: use a number from {low:g} to {high:g}")


def check_side(side: Side, name: str) -> None:
    """Validate one side's prompts, denoise and guidance."""
    if not side.prompts:
        raise UserError(f"{name}.prompts is empty: give at least one prompt")
    weights = [slot.weight for slot in side.prompts]
    for i, slot in enumerate(side.prompts):
        check_range(f"{name}.prompts[{i}].weight", slot.weight, 0.0, 1e6)
        if slot.weight > 0:
            check_prompt(slot.text, f"{name}.prompts[{i}].text")
    if sum(weights) <= 0:
        raise UserError(f"{name}: all prompt weights are zero; give one prompt a weight above 0")
    check_range(f"{name}.denoise", side.denoise, 0.0, 1.0)
    check_range(f"{name}.guidance", side.guidance, 0.0, 100.0)
    if not isinstance(side.seed, int) or side.seed < 0:
        raise UserError(f"{name}.seed is {side.seed!r}: use a whole number >= 0")


def validate_request(request: RenderRequest) -> None:
    """Raise UserError naming the field and the fix for anything a render cannot use."""
    check_side(request.a, "a")
    if request.b is not None:
        check_side(request.b, "b")
    check_range("alpha", request.alpha, 0.0, 1.0)
    if not isinstance(request.steps, int) or not 1 <= request.steps <= 1000:
        raise UserError(f"steps is {request.steps!r}: use a whole number from 1 to 1000")
    if request.scheduler not in SCHEDULERS:
        raise UserError(f"scheduler {request.scheduler!r} is unknown: use one of {', '.join(SCHEDULERS)}")
    if not isinstance(request.width, int) or request.width % 8 or not 8 <= request.width <= 8192:
        raise UserError(f"width is {request.width!r}: use a multiple of 8 from 8 to 8192")
    if request.mask is not None and request.seed_image is None:
        raise UserError("mask needs a seed image: set seed_image or drop the mask")


def resolve_mix(request: RenderRequest) -> Mix:
    """Guidance, denoise and seeds after interpolating by alpha (side A alone when b is None)."""
    a = request.a
    b = request.b if request.b is not None else request.a
    alpha = request.alpha if request.b is not None else 0.0
    return Mix(
        guidance=lerp(a.guidance, b.guidance, alpha),
        denoise=lerp(a.denoise, b.denoise, alpha),
        seed_a=a.seed,
        seed_b=b.seed,
        alpha=alpha,
    )


# --- the pieces of one render ---------------------------------------------------------------


def seed_noise(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Generator]:
    """Gaussian noise for a seed, drawn on the CPU in float32 (the same on every device).

    Also returns the generator after the draw: ancestral schedulers continue from it, as in
    diffusers' pipelines.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32), generator


def make_scheduler(model: RiffusionModel, name: str):
    """A fresh scheduler (schedulers keep per-run state) of the named kind."""
    import diffusers

    class_name = SCHEDULERS[name] or model.scheduler_config.get("_class_name", "PNDMScheduler")
    cls = getattr(diffusers, class_name)
    return cls.from_config(model.scheduler_config)


def img2img_timesteps(scheduler, steps: int, strength: float, device) -> torch.Tensor:
    """Set ``steps`` timesteps and keep the last ``strength`` fraction (at least one step)."""
    scheduler.set_timesteps(steps, device=device)
    init = min(max(int(steps * strength), 1), steps)
    start = (steps - init) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler.timesteps[start:]


def step_kwargs(scheduler, generator: torch.Generator) -> dict:
    """Extra arguments ``scheduler.step`` accepts: eta 0 (DDIM) and a generator (ancestral).

    TCD's ``eta`` (its gamma, how much fresh noise each step adds) keeps the scheduler's default.
    """
    params = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, object] = {}
    if "eta" in params and type(scheduler).__name__ != "TCDScheduler":
        kwargs["eta"] = 0.0
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


def predict_noise(
    unet,
    latents: torch.Tensor,
    t: torch.Tensor,
    embeddings: torch.Tensor,
    guidance: float,
    scheduler,
    halves: GuidanceHalves | None = None,
) -> torch.Tensor:
    """The guided noise prediction; ``embeddings`` is ``[uncond, cond]`` or ``[cond]``.

    With two rows and guidance <= 1 the cond half is the answer (a compiled UNet is always fed
    two rows so that its shapes never change); it is copied, because a CUDA-graph replay
    overwrites the UNet's output while multistep schedulers still hold earlier ones. With
    ``halves`` (the CPU, guidance above 1) the two rows run side by side on two threads.
    """
    paired = embeddings.shape[0] == 2
    if paired and guidance > 1.0 and halves is not None:
        uncond, cond = halves.run(unet, scheduler.scale_model_input(latents, t), t, embeddings)
        return uncond + guidance * (cond - uncond)
    model_input = torch.cat([latents, latents]) if paired else latents
    model_input = scheduler.scale_model_input(model_input, t)
    noise = unet(model_input, t, encoder_hidden_states=embeddings, return_dict=False)[0]
    if not paired:
        return noise
    uncond, cond = noise.chunk(2)
    if guidance <= 1.0:
        return cond.clone()
    return uncond + guidance * (cond - uncond)


def _unet_row(unet, latents: torch.Tensor, t: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():  # grad mode is per thread
        return unet(latents, t, encoder_hidden_states=row, return_dict=False)[0]


class GuidanceHalves:
    """Runs the unconditional UNet row on a second thread while the render thread runs the
    conditional one (:func:`~riffengine.render.speed.split_guidance` says when).

    Thread rules: the second thread only ever runs a UNet forward the render thread asked for,
    and the render thread waits for it before it goes on (even when its own half raised), so
    no torch call outlives the step that made it. The UNet keeps no state between forwards
    (not compiled: the engine splits only an eager model). The thread takes ``threads`` torch
    threads of its own (the count is per thread).
    """

    def __init__(self, threads: int) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="riffengine-guidance", initializer=torch.set_num_threads, initargs=(threads,)
        )

    def run(
        self, unet, latents: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(unconditional, conditional) noise for ``latents`` and the two-row ``embeddings``."""
        other = self._pool.submit(_unet_row, unet, latents, t, embeddings[:1])
        try:
            cond = _unet_row(unet, latents, t, embeddings[1:])
        finally:
            concurrent.futures.wait([other])
        return other.result(), cond

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def blend_masked(
    latents: torch.Tensor,
    init: torch.Tensor,
    noise: torch.Tensor,
    keep: torch.Tensor,
    scheduler,
    next_t: torch.Tensor | None,
) -> torch.Tensor:
    """Put the seed back where the mask keeps it, noised to the level of the next step."""
    reference = init if next_t is None else scheduler.add_noise(init, noise, next_t.reshape(1))
    return keep * reference + (1.0 - keep) * latents


def pixels_to_model(pixels: torch.Tensor, device, dtype) -> torch.Tensor:
    """uint8 ``[3, H, W]`` -> float ``[1, 3, H, W]`` in [-1, 1]."""
    return (pixels[None].to(device=device, dtype=torch.float32) / 127.5 - 1.0).to(dtype)


def latents_to_pixels(vae, latents: torch.Tensor) -> torch.Tensor:
    """VAE-decode latents to uint8 ``[B, 3, H, W]`` on their device (rounded like diffusers)."""
    image = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    image = (image.float() / 2 + 0.5).clamp(0, 1)
    return (image * 255).round().to(torch.uint8)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so phase timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Renderer:
    """Renders requests with one loaded model; caches prompt embeddings and seed latents."""

    def __init__(
        self,
        model: RiffusionModel,
        codec=None,
        seeds_dir=BUILTIN_DIR,
        stereo: bool = False,
        halves: GuidanceHalves | None = None,
    ):
        self.model = model
        self.halves = halves
        """Set: guided renders run their two UNet rows side by side (the CPU)."""
        self.prompts = PromptEncoder(model.tokenizer, model.text_encoder, model.device, model.dtype)
        self.codec = codec
        self.seeds_dir = seeds_dir
        self.stereo = stereo
        self.seed_cache: dict[tuple[str, int], torch.Tensor] = {}

    # -- text

    def side_embedding(self, side: Side) -> torch.Tensor:
        """The weighted blend of a side's prompt embeddings (zero-weight slots skipped)."""
        used = [slot for slot in side.prompts if slot.weight > 0]
        embeddings = [self.prompts.encode(check_prompt(slot.text)) for slot in used]
        return weighted_sum(embeddings, [slot.weight for slot in used])

    def text_embeddings(self, request: RenderRequest, mix: Mix) -> torch.Tensor:
        """``[uncond, cond]`` or ``[cond]``: cond lerps A to B by alpha.

        ``[cond]`` alone when guidance <= 1, unless the model is compiled (fixed batch of 2).
        """
        cond = self.side_embedding(request.a)
        if request.b is not None and mix.alpha > 0:
            cond = lerp(cond, self.side_embedding(request.b), mix.alpha)
        if mix.guidance <= 1.0 and not self.model.compiled:
            return cond
        return torch.cat([self.prompts.encode(request.negative), cond])

    # -- latents

    def latent_shape(self, width: int) -> tuple[int, int, int, int]:
        f = self.model.vae_scale_factor
        return (1, self.model.latent_channels, HEIGHT // f, width // f)

    def initial_noise(self, request: RenderRequest, mix: Mix) -> tuple[torch.Tensor, torch.Generator]:
        """The slerp of both seeds' noises by alpha, on the model's device and dtype.

        The generator returned (for ancestral schedulers) is the nearer side's.
        """
        shape = self.latent_shape(request.width)
        noise, generator = seed_noise(mix.seed_a, shape)
        if mix.alpha > 0:
            noise_b, generator_b = seed_noise(mix.seed_b, shape)
            noise = slerp(noise, noise_b, mix.alpha)
            if mix.alpha >= 0.5:
                generator = generator_b
        return noise.to(self.model.device, self.model.dtype), generator

    @torch.no_grad()
    def seed_latents(self, seed_image: str, width: int) -> torch.Tensor:
        """The seed image's latent mean (scaled), cached per image and width."""
        key = (seed_image, width)
        if key not in self.seed_cache:
            pixels = load_seed_pixels(seed_image, width, self.seeds_dir)
            vae = self.model.vae
            x = pixels_to_model(pixels, self.model.device, self.model.dtype)
            # diffusers' encode is untyped and its config a dict with attribute access
            latents = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor  # type: ignore[operator, union-attr]
            self.seed_cache[key] = latents
        return self.seed_cache[key]

    def mask_keep(self, request: RenderRequest) -> torch.Tensor | None:
        """Latent keep weights from the request's mask, or None."""
        if request.mask is None:
            return None
        assert request.seed_image is not None  # validate_request refuses a mask without one
        size = seed_image_size(request.seed_image, self.seeds_dir)
        regen = load_mask(request.mask, size, request.width)
        keep = mask_to_latent(regen, self.model.vae_scale_factor)
        return keep.to(self.model.device, self.model.dtype)

    @torch.no_grad()
    def denoise(
        self, request: RenderRequest, mix: Mix, embeddings: torch.Tensor, on_step: StepCallback | None = None
    ) -> torch.Tensor:
        """Run the denoising loop and return the final latents."""
        model = self.model
        scheduler = make_scheduler(model, request.scheduler)
        noise, generator = self.initial_noise(request, mix)
        keep = self.mask_keep(request)
        if request.seed_image is None:
            timesteps = img2img_timesteps(scheduler, request.steps, 1.0, model.device)
            init = None
            latents = noise * scheduler.init_noise_sigma
        else:
            timesteps = img2img_timesteps(scheduler, request.steps, mix.denoise, model.device)
            init = self.seed_latents(request.seed_image, request.width)
            latents = scheduler.add_noise(init, noise, timesteps[:1])
        extra = step_kwargs(scheduler, generator)
        for i, t in enumerate(timesteps):
            noise_pred = predict_noise(
                model.unet, latents, t, embeddings, mix.guidance, scheduler, None if model.compiled else self.halves
            )
            latents = scheduler.step(noise_pred, t, latents, **extra, return_dict=False)[0]
            if keep is not None:
                assert init is not None  # a mask comes with a seed image
                next_t = timesteps[i + 1] if i + 1 < len(timesteps) else None
                latents = blend_masked(latents, init, noise, keep, scheduler, next_t)
            if on_step is not None:
                on_step(i + 1, len(timesteps))
        return latents

    # -- whole renders

    def render_latents(
        self, request: RenderRequest, on_step: StepCallback | None = None, timings: dict[str, float] | None = None
    ) -> torch.Tensor:
        """Validate the request and return its final latents ``[1, 4, 64, W/8]``."""
        validate_request(request)
        if self.model.compiled and self.model.device.type == "cuda":
            allow_cuda_graphs_on_this_thread()
        timings = {} if timings is None else timings
        mix = resolve_mix(request)
        t0 = time.perf_counter()
        embeddings = self.text_embeddings(request, mix)
        sync(self.model.device)
        t1 = time.perf_counter()
        latents = self.denoise(request, mix, embeddings, on_step)
        sync(self.model.device)
        timings["text"] = t1 - t0
        timings["diffusion"] = time.perf_counter() - t1
        return latents

    @torch.no_grad()
    def render_pixels(
        self, request: RenderRequest, on_step: StepCallback | None = None, timings: dict[str, float] | None = None
    ) -> torch.Tensor:
        """The spectrogram image of a request as uint8 ``[3, 512, W]`` on the CPU."""
        return self.render_device_pixels(request, on_step, timings).cpu()

    @torch.no_grad()
    def render_device_pixels(
        self, request: RenderRequest, on_step: StepCallback | None = None, timings: dict[str, float] | None = None
    ) -> torch.Tensor:
        """Like :meth:`render_pixels`, left on the model's device (for a codec there)."""
        timings = {} if timings is None else timings
        latents = self.render_latents(request, on_step, timings)
        t0 = time.perf_counter()
        pixels = latents_to_pixels(self.model.vae, latents)[0]
        sync(self.model.device)
        timings["vae"] = time.perf_counter() - t0
        return pixels

    def warm_up(self, request: RenderRequest) -> None:
        """Compile a compiled model now, on the calling (render) thread; a no-op otherwise.

        Renders ``request`` once and throws the image away, so that the graphs exist before
        the first deadline even when that first clip comes from a cache.
        """
        if self.model.compiled:
            self.render_device_pixels(request)

    def pixels_to_audio(self, pixels: torch.Tensor, num_frames: int | None) -> np.ndarray:
        """Audio float32 ``[channels, frames]`` from uint8 pixels, through the codec."""
        if self.codec is None:
            from riffengine.spectrogram import Codec

            self.codec = Codec(device=str(self.model.device))
        return decode_one(self.codec, pixels, num_frames, self.stereo)

    def render(
        self, request: RenderRequest, num_frames: int | None = None, on_step: StepCallback | None = None
    ) -> RenderedClip:
        """Render one clip; ``num_frames`` asks the codec for audio of exactly that length."""
        if num_frames is not None and (not isinstance(num_frames, int) or num_frames < 1):
            raise UserError(f"num_frames is {num_frames!r}: use a whole number above 0")
        start = time.perf_counter()
        timings: dict[str, float] = {}
        pixels = self.render_device_pixels(request, on_step, timings)
        t0 = time.perf_counter()
        audio = self.pixels_to_audio(pixels, num_frames)
        timings["audio"] = time.perf_counter() - t0
        pixels = pixels.cpu()
        return RenderedClip(
            request=request,
            pixels=pixels,
            image=pixels_to_image(pixels),
            audio=audio,
            sample_rate=SAMPLE_RATE,
            seconds=time.perf_counter() - start,
            timings=timings,
        )


def decode_one(codec, pixels: torch.Tensor, num_frames: int | None, stereo: bool) -> np.ndarray:
    """One image's audio, float32 ``[channels, frames]`` on the CPU, ``num_frames`` long."""
    audio = codec.decode_pixels(pixels[None], num_samples=num_frames, stereo=stereo)
    return audio[0].detach().float().cpu().numpy()


def pixels_to_image(pixels: torch.Tensor):
    """uint8 ``[3, H, W]`` -> PIL RGB image carrying Riffusion's spectrogram EXIF tags."""
    from riffengine.spectrogram import SpectrogramParams
    from riffengine.spectrogram.image import image_from_rgb
    from riffengine.spectrogram.params import DEFAULT_MAX_VALUE

    return image_from_rgb(pixels, exif=SpectrogramParams().to_exif(DEFAULT_MAX_VALUE))
