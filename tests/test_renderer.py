"""The renderer on the tiny model: interpolation endpoints, determinism, negative prompt, mask,
bad input, and step-for-step equivalence with diffusers' img2img pipeline."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from golden import GOLDEN
from PIL import Image

from riffengine.errors import UserError
from riffengine.render.model import load_model
from riffengine.render.renderer import Renderer, make_scheduler, resolve_mix, validate_request
from riffengine.render.request import PromptSlot, RenderRequest, Side

SEEDS = GOLDEN / "seed_images"
OG_BEAT = str(SEEDS / "og_beat.png")
WIDTH = 64

needs_seeds = pytest.mark.skipif(not SEEDS.is_dir(), reason="shared seed images not present")


@pytest.fixture(scope="module")
def renderer(tiny_model_dir):
    return Renderer(load_model(str(tiny_model_dir), device="cpu"))


def side(text: str, seed: int = 0, **kw) -> Side:
    return Side(prompts=(PromptSlot(text),), seed=seed, **kw)


def request(a: Side, **kw) -> RenderRequest:
    kw.setdefault("steps", 3)
    kw.setdefault("width", WIDTH)
    kw.setdefault("seed_image", OG_BEAT)
    return RenderRequest(a=a, **kw)


A = side("lofi beat", seed=1, denoise=0.5, guidance=7.0)
B = side("jazz piano", seed=2, denoise=0.75, guidance=3.0)


def pixels(renderer, req) -> torch.Tensor:
    out = renderer.render_pixels(req)
    assert out.shape == (3, 512, req.width) and out.dtype == torch.uint8
    return out


@needs_seeds
def test_alpha_endpoints_equal_each_side_alone(renderer):
    alone_a = pixels(renderer, request(A))
    alone_b = pixels(renderer, request(B))
    assert torch.equal(pixels(renderer, request(A, b=B, alpha=0.0)), alone_a)
    assert torch.equal(pixels(renderer, request(A, b=B, alpha=1.0)), alone_b)
    middle = pixels(renderer, request(A, b=B, alpha=0.5))
    assert not torch.equal(middle, alone_a) and not torch.equal(middle, alone_b)


def test_mix_interpolates_guidance_and_denoise():
    mix = resolve_mix(request(A, b=B, alpha=0.5))
    assert mix.guidance == pytest.approx(5.0) and mix.denoise == pytest.approx(0.625)
    alone = resolve_mix(request(A, alpha=0.7))  # no B side: alpha has nothing to move to
    assert (alone.guidance, alone.denoise, alone.alpha) == (7.0, 0.5, 0.0)


@needs_seeds
def test_same_request_same_image_and_seed_matters(renderer):
    req = request(A)
    first = pixels(renderer, req)
    assert torch.equal(pixels(Renderer(renderer.model), req), first)
    assert not torch.equal(pixels(renderer, request(replace(A, seed=5))), first)


def test_text_to_image_without_seed_image(renderer):
    out = pixels(renderer, request(A, seed_image=None, steps=2))
    assert out.float().std() > 0


@needs_seeds
def test_negative_prompt_is_applied(renderer):
    plain = pixels(renderer, request(A))
    negative = pixels(renderer, request(A, negative="distorted noise"))
    assert (plain.float() - negative.float()).abs().mean() > 0.1


@needs_seeds
def test_prompt_blend_weights(renderer):
    blend = Side(prompts=(PromptSlot("lofi beat", 1.0), PromptSlot("jazz piano", 0.0)), seed=1, denoise=0.5)
    assert torch.equal(pixels(renderer, request(blend)), pixels(renderer, request(A)))
    mixed = replace(blend, prompts=(PromptSlot("lofi beat", 1.0), PromptSlot("jazz piano", 1.0)))
    assert not torch.equal(pixels(renderer, request(mixed)), pixels(renderer, request(A)))


@needs_seeds
def test_mask_keeps_black_regions_at_the_seed_latents(renderer, tmp_path):
    mask = np.zeros((512, 512), np.uint8)
    mask[:256] = 255  # top half regenerated, bottom half kept
    path = tmp_path / "mask.png"
    Image.fromarray(mask, mode="L").save(path)
    req = request(replace(A, denoise=0.75), mask=str(path))
    latents = renderer.render_latents(req)
    seed = renderer.seed_latents(OG_BEAT, WIDTH)
    assert torch.allclose(latents[..., 32:, :], seed[..., 32:, :], atol=1e-5)
    assert (latents[..., :32, :] - seed[..., :32, :]).abs().mean() > 0.05


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(scheduler="fancy"), "scheduler 'fancy' is unknown: use one of default, pndm"),
        (dict(seed_image="no_such_seed"), "seed_image 'no_such_seed' is not a built-in"),
        (dict(seed_image="/nowhere/seed.png"), "does not exist"),
        (dict(a=side("   ")), "a.prompts\\[0\\].text is empty"),
        (dict(a=Side(prompts=(PromptSlot("x", 0.0),))), "weights are zero"),
        (dict(alpha=1.5, b=B), "alpha is 1.5"),
        (dict(steps=0), "steps"),
        (dict(width=100), "width"),
        (dict(a=replace(A, denoise=2.0)), "a.denoise"),
        (dict(mask="/nowhere/mask.png"), "mask file"),
        (dict(seed_image=None, mask=OG_BEAT), "mask needs a seed image"),
    ],
)
def test_bad_input_is_a_user_error(renderer, change, match):
    with pytest.raises(UserError, match=match):
        renderer.render_pixels(replace(request(A), **change))


@needs_seeds
def test_mask_of_the_wrong_size(renderer, tmp_path):
    path = tmp_path / "small.png"
    Image.new("L", (256, 512), 255).save(path)
    with pytest.raises(UserError, match="mask .* is 256x512 but the seed image is 512x512"):
        renderer.render_pixels(request(A, mask=str(path)))


@needs_seeds
@pytest.mark.parametrize("name", ["agile", "marim"])  # palette and greyscale PNGs
def test_riffusion_seed_images_by_path(renderer, name):
    out = renderer.seed_latents(str(SEEDS / f"{name}.png"), WIDTH)
    assert out.shape == (1, 4, 64, WIDTH // 8)


@needs_seeds
@pytest.mark.parametrize("scheduler", ["default", "euler_a"])
def test_equivalent_to_diffusers_img2img_pipeline(renderer, scheduler):
    """Given the same seed latents and seed, our loop and the stock pipeline agree."""
    from diffusers import StableDiffusionImg2ImgPipeline

    m = renderer.model
    pipe = StableDiffusionImg2ImgPipeline(
        vae=m.vae,
        text_encoder=m.text_encoder,
        tokenizer=m.tokenizer,
        unet=m.unet,
        scheduler=make_scheduler(m, scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    req = request(A, negative="noise", scheduler=scheduler, steps=5)
    ours = renderer.render_pixels(req)
    theirs = pipe(
        prompt="lofi beat",
        negative_prompt="noise",
        image=renderer.seed_latents(OG_BEAT, WIDTH),
        strength=A.denoise,
        num_inference_steps=5,
        guidance_scale=A.guidance,
        generator=torch.Generator().manual_seed(A.seed),
        output_type="pt",
    ).images[0]
    theirs = (theirs * 255).round().to(torch.uint8)
    assert (ours.int() - theirs.int()).abs().max() <= 1


def test_validate_accepts_the_defaults():
    validate_request(RenderRequest(a=side("lofi beat")))


# --- the worker thread ----------------------------------------------------------------------

import threading  # noqa: E402

from riffengine.render.worker import RenderJob, RenderWorker  # noqa: E402


class GatedRenderer:
    """Stands in for a Renderer: each render waits until the test opens the gate."""

    def __init__(self):
        self.gate = threading.Semaphore(0)
        self.started = threading.Event()
        self.seen: list[str] = []

    def render(self, request):
        self.seen.append(request.a.prompts[0].text)
        self.started.set()
        self.gate.acquire(timeout=10)
        if request.a.prompts[0].text == "boom":
            raise RuntimeError("boom")
        return f"clip:{request.a.prompts[0].text}"


def job(text: str) -> RenderJob:
    return RenderJob(RenderRequest(a=side(text)), tag=text)


def test_worker_renders_newest_pending_job_and_reports():
    fake = GatedRenderer()
    results = []
    worker = RenderWorker(fake, results.append)
    worker.start()
    try:
        assert worker.submit(job("one")) is None
        assert fake.started.wait(5)
        assert worker.running.tag == "one"
        assert worker.submit(job("two")) is None
        dropped = worker.submit(job("three"))  # "two" never started: newest wins
        assert dropped.tag == "two"
        fake.gate.release()
        fake.gate.release()
        assert worker.wait_idle(5)
    finally:
        worker.stop(5)
    assert fake.seen == ["one", "three"]
    assert [r.clip for r in results] == ["clip:one", "clip:three"]
    assert [r.job.tag for r in results] == ["one", "three"]


def test_worker_survives_a_failing_render():
    fake = GatedRenderer()
    results = []
    worker = RenderWorker(fake, results.append)
    worker.start()
    try:
        worker.submit(job("boom"))
        fake.gate.release()
        assert worker.wait_idle(5)
        worker.submit(job("fine"))
        fake.gate.release()
        assert worker.wait_idle(5)
    finally:
        worker.stop(5)
    assert not results[0].ok and isinstance(results[0].error, RuntimeError)
    assert results[1].ok and results[1].clip == "clip:fine"


def test_guidance_rows_side_by_side_give_the_batched_result(renderer):
    """Offline on the CPU the two guidance rows may run on two threads: the latents of one batch."""
    from riffengine.render.renderer import GuidanceHalves
    from riffengine.render.speed import split_guidance

    assert split_guidance(1, 2, live=False)  # an offline render
    assert not split_guidance(1, 2, live=True)  # the audio keeps a core
    assert not split_guidance(3, 4, live=False)  # no cores for a second row
    req = request(side("rows", seed=3, guidance=7.0))
    batched = renderer.render_latents(req)
    halves = GuidanceHalves(1)
    try:
        renderer.halves = halves
        split = renderer.render_latents(req)
    finally:
        renderer.halves = None
        halves.close()
    torch.testing.assert_close(split, batched, rtol=1e-4, atol=1e-4)
