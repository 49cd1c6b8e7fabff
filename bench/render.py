"""Benchmark: one Riffusion clip, stock diffusers + reference decode vs riffengine.

Builds a full-size Stable Diffusion 1.5-architecture model with random weights (the same
compute as riffusion/riffusion-model-v1; nothing is downloaded) and times one clip at
riffusion-app's defaults: img2img from a seed image, 50 steps x 0.75 denoise, guidance 7,
512x512, through to audio.

- (a) stock ``StableDiffusionImg2ImgPipeline``, eager, plus the reference decode (torchaudio
  ``InverseMelScale`` + ``GriffinLim``, 32 iterations, at Riffusion's parameters);
- (b) riffengine's renderer at the same settings (with the chosen speed levers);
- (c) riffengine's fast preset (DPM-Solver++ at fewer steps);
- (d) riffengine's instant preset: a random rank-64 LoRA (the size of LCM-LoRA for SD 1.5)
  loaded through the adapter loader and fused, LCM at 4 steps, guidance 1, on a second copy
  of the same model (adapters go in before the speed levers, as in the engine).

``--no-lever-baseline`` skips (b) without levers (eager fp16), timed first to say what the
eager levers buy. With ``--compile``, the first render's time (the compile, or the load from
the warm compile cache) is printed apart. ``--json FILE`` writes every figure.

It also checks that (b)'s image matches the stock pipeline's for the same seed latents and
seed, within fp16 tolerance. Timings are printed, never asserted.

    python bench/render.py                          # CUDA: fp16, 50 steps, the engine's levers
    python bench/render.py --compile max-autotune   # + torch.compile with CUDA graphs
    python bench/render.py --no-channels-last --no-fuse-qkv   # eager, no levers
    python bench/render.py --device cpu --quick     # fp32, a few steps, 256 columns
    python bench/render.py --skip-stock --variants b --compile max-autotune   # a restart
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from riffengine.config import (
    COMPILE_MODES,
    FAST_SCHEDULER,
    FAST_STEPS,
    INSTANT_GUIDANCE,
    INSTANT_SCHEDULER,
    INSTANT_STEPS,
    AdapterSpec,
)
from riffengine.render.adapters import load_adapters, random_lora, save_lora
from riffengine.render.model import (
    RiffusionModel,
    optimize_model,
    tiny_configs,
    write_tiny_tokenizer,
)
from riffengine.render.renderer import Renderer, make_scheduler
from riffengine.render.request import PromptSlot, RenderRequest, Side
from riffengine.render.speed import describe_levers, resolve_levers

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_SEED = ROOT.parent / "shared" / "golden" / "seed_images" / "og_beat.png"
# The golden seed image when the shared reference data sits beside the checkout (it does not
# travel to a GPU machine); riffengine's built-in seed image otherwise.
SEED_IMAGE = GOLDEN_SEED if GOLDEN_SEED.is_file() else ROOT / "riffengine" / "seeds" / "groove_94.png"
PROMPT = "lofi hip hop beat"
SAMPLE_RATE = 44100


# --- the full-size random model ---------------------------------------------------------------


def sd15_configs() -> dict[str, dict]:
    """Stable Diffusion 1.5's UNet, VAE and CLIP ViT-L/14 text encoder configurations."""
    unet = dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32,
        sample_size=512,
    )
    text = dict(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=768,
    )
    return {"unet": unet, "vae": vae, "text_encoder": text}


def build_random_sd15(device: torch.device, dtype: torch.dtype, tiny: bool = False) -> RiffusionModel:
    """A randomly initialised SD 1.5-size model (small local tokenizer: text cost is minor).

    ``tiny`` builds the tiny test model's sizes instead (a CPU dry run of the same steps).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(tempfile.mkdtemp(prefix="riffengine-bench-tok-"))
    write_tiny_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    configs = tiny_configs(len(tokenizer)) if tiny else sd15_configs()
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**configs["unet"])
        vae = AutoencoderKL(**configs["vae"])
        text = CLIPTextModel(
            CLIPTextConfig(
                **configs["text_encoder"], bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
            )
        )
    for part in (unet, vae, text):
        part.to(dtype).eval().requires_grad_(False)
    scheduler_config = dict(tiny_configs(len(tokenizer))["scheduler"], _class_name="PNDMScheduler")
    return RiffusionModel(
        unet, vae, text, tokenizer, scheduler_config, device, dtype, "random tiny" if tiny else "random SD 1.5"
    )


def save_model(model: RiffusionModel, folder: Path) -> Path:
    """Write ``model`` in the diffusers layout (for the live engine, which loads a folder)."""
    from riffengine.render.model import PARTS

    folder.mkdir(parents=True, exist_ok=True)
    model.unet.save_pretrained(folder / "unet")
    model.vae.save_pretrained(folder / "vae")
    model.text_encoder.save_pretrained(folder / "text_encoder")
    model.tokenizer.save_pretrained(str(folder / "tokenizer"))
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(model.scheduler_config, indent=2))
    assert all((folder / part).is_dir() for part in PARTS)
    return folder


# --- (a): stock pipeline + reference decode ------------------------------------------------------


def stock_pipeline(model: RiffusionModel):
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline(
        vae=model.vae,
        text_encoder=model.text_encoder,
        tokenizer=model.tokenizer,
        unet=model.unet,
        scheduler=make_scheduler(model, "default"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class ReferenceDecoder:
    """Riffusion's image -> audio: inverse mel (torchaudio) then 32 Griffin-Lim iterations."""

    def __init__(self, device: torch.device):
        import torchaudio

        n_fft = int(400 / 1000 * SAMPLE_RATE)
        self.device = device
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=n_fft // 2 + 1,
            n_mels=512,
            sample_rate=SAMPLE_RATE,
            f_min=0,
            f_max=10000,
            norm=None,
            mel_scale="htk",
        ).to(device)
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=n_fft,
            n_iter=32,
            win_length=int(100 / 1000 * SAMPLE_RATE),
            hop_length=int(10 / 1000 * SAMPLE_RATE),
            power=1.0,
        ).to(device)

    def __call__(self, image) -> np.ndarray:
        data = np.asarray(image.convert("RGB"), dtype=np.float32)[::-1, :, 0]
        mel = ((255.0 - data) / 255.0) ** (1 / 0.25) * 30e6
        mel_t = torch.from_numpy(mel.copy()).to(self.device)
        audio = self.griffin_lim(self.inverse_mel(mel_t)).cpu().numpy()
        return audio / max(float(np.abs(audio).max()), 1e-12)


# --- timing ---------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeat: int, warmup: int) -> tuple[float, object]:
    """Median wall seconds of ``fn()`` over ``repeat`` runs after ``warmup`` untimed runs."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def request_for(args, steps: int, scheduler: str, guidance: float | None = None) -> RenderRequest:
    side = Side(
        (PromptSlot(PROMPT),),
        seed=args.seed,
        denoise=args.denoise,
        guidance=args.guidance if guidance is None else guidance,
    )
    return RenderRequest(a=side, steps=steps, scheduler=scheduler, seed_image=str(args.seed_image), width=args.width)


def image_difference(ours: torch.Tensor, theirs: torch.Tensor) -> dict[str, float]:
    diff = (ours.float() - theirs.float()).abs()
    return {
        "mean": float(diff.mean()),
        "p99": float(diff.flatten().kthvalue(max(1, int(0.99 * diff.numel()))).values),
        "max": float(diff.max()),
    }


def stock_image(model, args) -> torch.Tensor:
    """The stock pipeline's image (uint8 ``[3, 512, W]``) from riffengine's seed latents.

    Taken before any speed lever touches the model, so that (b) is compared with stock
    diffusers modules, not with its own.
    """
    pipe = stock_pipeline(model)
    latents = Renderer(model).seed_latents(str(args.seed_image), args.width)
    image = pipe(
        prompt=PROMPT,
        image=latents,
        strength=args.denoise,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        generator=torch.Generator().manual_seed(args.seed),
        output_type="pt",
    ).images[0]
    return (image.float().cpu() * 255).round().to(torch.uint8)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype",
        choices=["float16", "bfloat16", "float32"],
        help="riffengine's dtype (default float16 on CUDA, float32 on CPU)",
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--fast-steps", type=int, default=FAST_STEPS, help="steps of the fast preset (DPM-Solver++), default 20"
    )
    parser.add_argument("--denoise", type=float, default=0.75)
    parser.add_argument("--guidance", type=float, default=7.0)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seed-image", type=Path, default=SEED_IMAGE)
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="riffengine: NHWC layout (default: as the engine, on for CUDA)",
    )
    parser.add_argument(
        "--fuse-qkv",
        action=argparse.BooleanOptionalAction,
        help="riffengine: fused attention projections (default: on for CUDA)",
    )
    parser.add_argument(
        "--compile",
        metavar="MODE",
        choices=COMPILE_MODES,
        help="riffengine: torch.compile mode for the UNet and VAE decoder (max-autotune adds CUDA graphs)",
    )
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend (aot_eager: capture only, for a CPU dry run)",
    )
    parser.add_argument("--repeat", type=int, help="timed runs per variant (median)")
    parser.add_argument("--warmup", type=int, help="untimed runs per variant first")
    parser.add_argument(
        "--quick", action="store_true", help="CPU smoke run: 4 steps (fast preset 2), 256 columns, no warm-up"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny model's sizes instead of SD 1.5 (a dry run of the steps)"
    )
    parser.add_argument("--variants", default="b,c,d", help="riffengine variants to time, from b,c,d (default all)")
    parser.add_argument(
        "--skip-stock", action="store_true", help="skip (a) and the image check (e.g. to time a restart)"
    )
    parser.add_argument(
        "--no-lever-baseline",
        dest="lever_baseline",
        action="store_false",
        help="skip timing (b) without the speed levers first",
    )
    parser.add_argument("--lora-rank", type=int, default=64, help="rank of (d)'s random LoRA")
    parser.add_argument(
        "--save-model", type=Path, metavar="DIR", help="also write the random model to DIR (diffusers layout)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures to FILE")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.quick:
        args.steps, args.fast_steps, args.width = 4, 2, 256
    args.repeat = args.repeat or (3 if cuda else 1)
    args.warmup = args.warmup if args.warmup is not None else (1 if cuda else 0)
    return args


def line(name: str, seconds: float, clip_seconds: float, clip=None) -> str:
    """One result row: ms per clip, times real time, phases."""
    text = f"{name:46s} {seconds * 1000:8.0f} ms ({clip_seconds / seconds:6.1f}x real time)"
    if clip is not None:
        phases = ", ".join(f"{k} {v * 1000:.0f}" for k, v in clip.timings.items())
        text += f", {clip.num_frames} samples; phases ms: {phases}"
    return text


def first_render(renderer: Renderer, request: RenderRequest, figures: dict, key: str) -> None:
    """Render once (a compiled model compiles, or loads its kernels from the cache) and time it."""
    start = time.perf_counter()
    renderer.warm_up(request)
    sync(renderer.model.device)
    figures[key] = time.perf_counter() - start
    print(f"first render of a compiled model ({key}): {figures[key]:.1f} s", flush=True)


def run_stock(model, args, device, seed_image, figures: dict) -> torch.Tensor | None:
    """(a): the stock pipeline + reference decode; returns the stock image for the check."""
    if args.skip_stock:
        return None
    pipe = stock_pipeline(model)
    decoder = ReferenceDecoder(device)

    def run_a():
        image = pipe(
            prompt=PROMPT,
            image=seed_image,
            strength=args.denoise,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=torch.Generator().manual_seed(args.seed),
        ).images[0]
        return decoder(image)

    figures["a"], audio_a = timed(run_a, device, args.repeat, args.warmup)
    print(
        line("(a) stock img2img pipeline + reference decode", figures["a"], figures["clip_seconds"]),
        f"{audio_a.shape[-1]} samples",
        flush=True,
    )
    return stock_image(model, args)


def apply_levers(model, args, device, figures: dict):
    levers = resolve_levers(
        device.type,
        "auto" if args.channels_last is None else args.channels_last,
        "auto" if args.fuse_qkv is None else args.fuse_qkv,
        args.compile,
    )
    figures["levers"] = describe_levers(levers)
    print(f"riffengine: {str(model.dtype).removeprefix('torch.')}, levers: {figures['levers']}")
    return optimize_model(
        model, levers.channels_last, levers.fuse_qkv, levers.compile_mode, backend=args.compile_backend
    )


def check_image(renderer, req_b, theirs, args, cuda: bool, base_dtype, figures: dict) -> bool:
    """(b)'s image against the stock pipeline's, same seed image and seed."""
    diff = image_difference(renderer.render_pixels(req_b), theirs)
    tolerance = {"mean": 1.0, "p99": 4.0} if cuda else {"mean": 0.01, "p99": 1.0}
    ok = diff["mean"] <= tolerance["mean"] and diff["p99"] <= tolerance["p99"]
    verdict = "MATCH" if ok else "MISMATCH"
    if renderer.model.dtype != base_dtype:
        verdict = f"{verdict} (informative: (b) runs in {renderer.model.dtype}, (a) in {base_dtype})"
        ok = True
    figures["image_check"] = {**diff, "verdict": verdict}
    print(
        f"(b) vs stock pipeline image, same seed image and seed: mean |diff| "
        f"{diff['mean']:.3f}, p99 {diff['p99']:.0f}, max {diff['max']:.0f} (8-bit levels) -> "
        f"{verdict} (tolerance mean <= {tolerance['mean']}, p99 <= {tolerance['p99']})"
    )
    return ok


def run_instant(args, device, dtype, figures: dict) -> None:
    """(d): a second copy of the model with a random few-step-sized LoRA fused, then levers."""
    from riffengine.spectrogram import Codec

    model = build_random_sd15(device, dtype, args.tiny)
    folder = Path(tempfile.mkdtemp(prefix="riffengine-bench-lora-"))
    lora = save_lora(random_lora(model, rank=args.lora_rank, seed=1), folder / "lora.safetensors")
    start = time.perf_counter()
    load_adapters(model, [AdapterSpec(str(lora), few_step=True)], fuse_weights=True)
    figures["d_adapter_load"] = time.perf_counter() - start
    apply_levers(model, args, device, {})
    renderer = Renderer(model, codec=Codec(device=device))
    req_d = request_for(args, INSTANT_STEPS, INSTANT_SCHEDULER, INSTANT_GUIDANCE)
    if model.compiled:
        first_render(renderer, req_d, figures, "d_first_render")
    figures["d"], clip_d = timed(lambda: renderer.render(req_d), device, args.repeat, args.warmup)
    print(
        line(
            f"(d) instant: rank-{args.lora_rank} LoRA fused, lcm x{INSTANT_STEPS}",
            figures["d"],
            figures["clip_seconds"],
            clip_d,
        ),
        f"(adapter load + fuse {figures['d_adapter_load']:.2f} s)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from riffengine.spectrogram import Codec

    args = parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    base_dtype = torch.float16 if cuda else torch.float32
    our_dtype = getattr(torch, args.dtype) if args.dtype else base_dtype
    clip_seconds = args.width * 0.01
    figures: dict = {
        "device": str(device),
        "clip_seconds": clip_seconds,
        "steps": args.steps,
        "width": args.width,
        "compile": args.compile,
        "tiny": args.tiny,
        "seed_image": str(args.seed_image),
    }
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if cuda else 'CPU'}), "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(
        f"settings: {args.steps} steps x {args.denoise} denoise, guidance {args.guidance}, "
        f"512x{args.width}, clip {clip_seconds:.2f} s; fast preset: dpm, {args.fast_steps} steps; "
        f"instant: {INSTANT_SCHEDULER}, {INSTANT_STEPS} steps, guidance {INSTANT_GUIDANCE}; "
        f"seed image {args.seed_image.name}"
    )

    start = time.perf_counter()
    model = build_random_sd15(device, base_dtype, args.tiny)
    figures["model_build"] = time.perf_counter() - start
    print(f"built {model.source} model in {figures['model_build']:.1f} s", flush=True)
    if args.save_model:
        save_model(model, args.save_model)
        print(f"saved the model to {args.save_model}")
    seed_image = Image.open(args.seed_image).convert("RGB").crop((0, 0, args.width, 512))
    theirs = run_stock(model, args, device, seed_image, figures)

    # (b) and (c): riffengine (same weights; other dtype or levers if asked)
    if our_dtype != base_dtype:
        for part in (model.unet, model.vae, model.text_encoder):
            part.to(our_dtype)
        model.dtype = our_dtype
    req_b = request_for(args, args.steps, "default")
    req_c = request_for(args, args.fast_steps, FAST_SCHEDULER)
    codec = Codec(device=device)
    if args.lever_baseline and "b" in args.variants:
        plain = Renderer(model, codec=codec)
        figures["b_no_levers"], clip = timed(lambda: plain.render(req_b), device, args.repeat, args.warmup)
        print(line("(b0) riffengine, no speed levers", figures["b_no_levers"], clip_seconds, clip), flush=True)
    apply_levers(model, args, device, figures)
    renderer = Renderer(model, codec=codec)
    if model.compiled:
        first_render(renderer, req_b, figures, "first_render")
    rows = [("b", "(b) riffengine, same settings", req_b), ("c", "(c) riffengine fast preset", req_c)]
    for key, name, request in rows:
        if key in args.variants:
            figures[key], clip = timed(
                lambda request=request: renderer.render(request), device, args.repeat, args.warmup
            )
            print(line(name, figures[key], clip_seconds, clip), flush=True)
    for key in ("b", "c"):
        if key in figures and "a" in figures:
            print(f"speed-up {key}: {figures['a'] / figures[key]:.2f}x over (a)")
    ok = True
    if theirs is not None and "b" in args.variants:
        ok = check_image(renderer, req_b, theirs, args, cuda, base_dtype, figures)
    if cuda:
        figures["gpu_memory_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if "d" in args.variants:
        del renderer, model
        if cuda:
            torch.cuda.empty_cache()
        run_instant(args, device, our_dtype, figures)
        if "a" in figures:
            print(f"speed-up d: {figures['a'] / figures['d']:.2f}x over (a)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
