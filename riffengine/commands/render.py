"""``riffengine render``: render one clip (or a transition of clips) to a WAV and a PNG; or,
with ``--evolve``/``--glide``/``--loops``, an evolving piece on the bar grid, the same loops
``riffengine run`` would play from the same values (:mod:`riffengine.offline`)."""

from __future__ import annotations

import argparse

import torch

from riffengine.control import params
from riffengine.control.params import EVOLVE_MODES
from riffengine.errors import UserError
from riffengine.render.blend import stitch_loops
from riffengine.render.model import DEFAULT_MODEL
from riffengine.render.renderer import SAMPLE_RATE, SCHEDULERS, RenderedClip, pixels_to_image
from riffengine.render.request import PromptSlot, RenderRequest, Side

#: Length of the equal-power crossfade at each seam of a transition, in seconds.
SEAM_SECONDS = 0.1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render",
        help="render a clip from a prompt",
        description="Render a spectrogram clip with the Riffusion model and write its audio "
        "(and image). With --to, interpolate towards a second prompt; with "
        "--transition K, render K clips from A to B stitched into one file. "
        "With --evolve, --glide or --loops, render N loops of the walk `run` would "
        "play, placed on the bar grid with its crossfades.",
    )
    parser.add_argument("prompt", help="text prompt; (word:1.3) weights a part")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.wav", help="audio file to write")
    parser.add_argument("--image", metavar="OUT.png", help="also write the spectrogram image")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of side A (default 0)")
    parser.add_argument("--negative", default="", metavar="TEXT", help="negative prompt")
    parser.add_argument("--to", metavar="PROMPT_B", help="side B's prompt (default: side A's)")
    parser.add_argument("--to-seed", type=int, metavar="M", help="side B's seed (default: A's)")
    parser.add_argument("--alpha", type=float, default=0.0, help="0 = side A, 1 = side B")
    parser.add_argument("--transition", type=int, metavar="K", help="render K clips from alpha 0 to 1 and stitch them")
    parser.add_argument(
        "--seed-image",
        default="groove_94",
        metavar="NAME|PATH",
        help="built-in seed image name, a PNG path, or 'none' (default groove_94)",
    )
    parser.add_argument("--mask", metavar="PATH", help="mask image: white regenerated, black kept")
    parser.add_argument("--denoise", type=float, default=0.75, help="img2img strength (0.75)")
    parser.add_argument("--guidance", type=float, default=7.0, help="guidance scale (7)")
    parser.add_argument("--steps", type=int, default=50, help="diffusion steps (50)")
    parser.add_argument("--scheduler", default="default", choices=list(SCHEDULERS))
    parser.add_argument("--width", type=int, default=512, help="image columns (512 = 5.12 s)")
    parser.add_argument("--frames", type=int, metavar="N", help="stretch each clip's audio to exactly N samples")
    walk = parser.add_argument_group(
        "evolving piece",
        "render --loops N loops as `run` plays them (bar grid, crossfades); "
        "with --glide, --to/--to-seed are the change sent while the first loop plays, else "
        "they set side B (pingpong, toward_b, --alpha)",
    )
    walk.add_argument("--loops", type=int, metavar="N", help="loops to render (default 8 with --evolve or --glide)")
    walk.add_argument("--evolve", type=float, metavar="STEP", help="evolve step per loop, 0..1 (Riffusion's app: 0.25)")
    walk.add_argument(
        "--evolve-mode",
        default="seed",
        choices=list(EVOLVE_MODES),
        help="seed (next seed at each rollover), pingpong (A to B and back), toward_b (to B, then hold)",
    )
    walk.add_argument("--glide", type=int, metavar="LOOPS", help="glide to --to/--to-seed over this many loops")
    walk.add_argument("--bpm", type=float, default=params.param("bpm").default, help="tempo (120)")
    walk.add_argument("--bars", type=int, default=params.param("bars").default, help="loop length in bars (2)")
    walk.add_argument("--beats-per-bar", type=int, default=params.param("beats_per_bar").default, help="meter (4)")
    walk.add_argument(
        "--crossfade-ms",
        type=float,
        default=params.param("crossfade_ms").default,
        help="crossfade before each seam (50)",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="ID|PATH",
        help=f"hub id (from the local cache) or folder (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--dtype",
        choices=["float16", "bfloat16", "float32"],
        help="model precision (default float16 on CUDA, float32 on the CPU)",
    )
    parser.set_defaults(func=run)


def build_request(args: argparse.Namespace, alpha: float) -> RenderRequest:
    """The request the flags describe, at ``alpha``."""
    a = Side((PromptSlot(args.prompt),), seed=args.seed, denoise=args.denoise, guidance=args.guidance)
    b = None
    if args.to is not None or args.to_seed is not None:
        b = Side(
            (PromptSlot(args.to if args.to is not None else args.prompt),),
            seed=args.to_seed if args.to_seed is not None else args.seed,
            denoise=args.denoise,
            guidance=args.guidance,
        )
    seed_image = None if args.seed_image.lower() == "none" else args.seed_image
    return RenderRequest(
        a=a,
        b=b,
        alpha=alpha,
        negative=args.negative,
        steps=args.steps,
        scheduler=args.scheduler,
        seed_image=seed_image,
        mask=args.mask,
        width=args.width,
    )


def transition_alphas(k: int) -> list[float]:
    """K evenly spaced alphas from 0 to 1."""
    if k < 2:
        raise UserError(f"--transition {k}: use 2 or more clips")
    return [i / (k - 1) for i in range(k)]


def render_clips(renderer, requests: list[RenderRequest], num_frames: int | None) -> list[RenderedClip]:
    """Render each request, with a progress bar over clips (or steps, for one clip)."""
    from tqdm import tqdm

    if len(requests) == 1:
        with tqdm(total=None, desc="render", unit="step", disable=None, leave=False) as bar:

            def on_step(done: int, total: int) -> None:
                bar.total = total
                bar.update(1)

            return [renderer.render(requests[0], num_frames, on_step=on_step)]
    return [
        renderer.render(req, num_frames)
        for req in tqdm(requests, desc="render", unit="clip", disable=None, leave=False)
    ]


def walking(args: argparse.Namespace) -> bool:
    """True when the flags ask for an evolving piece rather than clips."""
    return args.loops is not None or args.evolve is not None or args.glide is not None


def walk_state(args: argparse.Namespace):
    """The State the flags describe and the change sent during the first loop (or None)."""
    from riffengine.state import apply_many, initial_state

    if args.loops is not None and args.loops < 1:
        raise UserError(f"--loops {args.loops}: render at least 1 loop")
    for flag in ("transition", "image", "mask", "frames"):
        if getattr(args, flag) is not None:
            raise UserError(f"--{flag} renders clips, not loops: leave it out with --loops, --evolve or --glide")
    values = {
        "prompt_a/0": args.prompt,
        "seed_a": args.seed,
        "negative": args.negative,
        "steps": args.steps,
        "scheduler": args.scheduler,
        "alpha": args.alpha,
        "seed_image": "" if args.seed_image.lower() == "none" else args.seed_image,
        "denoise_a": args.denoise,
        "denoise_b": args.denoise,
        "guidance_a": args.guidance,
        "guidance_b": args.guidance,
        "evolve": args.evolve or 0.0,
        "evolve_mode": args.evolve_mode,
        "glide": args.glide or 0,
        "bpm": args.bpm,
        "bars": args.bars,
        "beats_per_bar": args.beats_per_bar,
        "crossfade_ms": args.crossfade_ms,
    }
    side = {}
    if args.to is not None:
        side["prompt_@/0"] = args.to
    if args.to_seed is not None:
        side["seed_@"] = args.to_seed
    change = None
    if args.glide:
        if not side:
            raise UserError("--glide needs a change to glide to: give --to PROMPT and/or --to-seed M")
        change = {k.replace("@", "a"): v for k, v in side.items()}
    else:
        values.update({k.replace("@", "b"): v for k, v in side.items()})
    try:
        state = apply_many(initial_state(), values)
    except UserError as exc:
        raise UserError(f"{exc} (the flag of the same name sets it)") from None
    return state, change


def run_walk(args: argparse.Namespace, renderer) -> int:
    """Render the evolving piece the flags describe and write it (float WAV, like `run`)."""
    from tqdm import tqdm

    from riffengine import offline
    from riffengine.evolve import describe
    from riffengine.spectrogram.audio_io import save_audio

    state, change = walk_state(args)
    loops = offline.walk(state, args.loops if args.loops is not None else 8, change)
    with tqdm(total=len(loops), desc="render", unit="loop", disable=None, leave=False) as bar:

        def on_loop(index, loop) -> None:
            bar.update(1 if index else 0)

        audio = offline.render_loops(renderer, loops, args.beats_per_bar, args.crossfade_ms, SAMPLE_RATE, on_loop)
    save_audio(
        args.output, audio.T, SAMPLE_RATE, subtype="FLOAT" if str(args.output).lower().endswith(".wav") else "PCM_16"
    )
    for index, loop in enumerate(loops):
        d = describe(loop)
        print(
            f"loop {index}: alpha {d['alpha']:g} seeds {d['seed_a']}/{d['seed_b']} "
            f"prompts {d['prompts']}{' glide ' + d['glide'] if d['glide'] else ''}"
        )
    print(f"{args.output}: {len(loops)} loop(s), {len(audio) / SAMPLE_RATE:.2f} s of audio")
    return 0


def run(args: argparse.Namespace) -> int:
    from riffengine.render.model import load_model, optimize_model
    from riffengine.render.renderer import Renderer, validate_request
    from riffengine.render.speed import resolve_levers
    from riffengine.spectrogram import save_image
    from riffengine.spectrogram.audio_io import save_audio

    if walking(args):
        walk_state(args)  # fail before loading the model
        model = load_model(args.model, device=args.device, dtype=args.dtype)
        levers = resolve_levers(model.device.type)
        optimize_model(model, levers.channels_last, levers.fuse_qkv)
        return run_walk(args, Renderer(model))
    if args.transition is not None:
        if args.to is None and args.to_seed is None:
            raise UserError("--transition needs a side B: give --to PROMPT_B and/or --to-seed M")
        requests = [build_request(args, alpha) for alpha in transition_alphas(args.transition)]
    else:
        requests = [build_request(args, args.alpha)]
    for req in requests:
        validate_request(req)  # fail before loading the model
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    levers = resolve_levers(model.device.type)  # eager levers only: compiling one file costs more
    optimize_model(model, levers.channels_last, levers.fuse_qkv)
    renderer = Renderer(model)
    clips = render_clips(renderer, requests, args.frames)
    audios = []
    for clip in clips:
        assert clip.audio is not None  # Renderer.render always decodes the audio
        audios.append(clip.audio)
    audio = stitch_loops(audios, round(SEAM_SECONDS * SAMPLE_RATE))
    save_audio(args.output, audio, SAMPLE_RATE)
    if args.image:
        save_image(pixels_to_image(torch.cat([c.pixels for c in clips], dim=-1)), args.image)
    seconds = sum(c.seconds for c in clips)
    print(
        f"{args.output}: {len(clips)} clip(s), {audio.shape[-1] / SAMPLE_RATE:.2f} s of audio, "
        f"rendered in {seconds:.2f} s"
    )
    return 0
