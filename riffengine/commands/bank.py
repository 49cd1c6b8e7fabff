"""``riffengine bank``: pre-render a config's states into the render cache, and mark the safe loop.

The engine finds every banked state in the cache (same request, same loop length, same
model), so it plays at once; if the GPU fails during the show, ``/riff/panic`` still has the
safe loop to crossfade to.
"""

from __future__ import annotations

import argparse
import math

from riffengine.config import DEFAULT_CONFIG, Settings, load_config, merge_overrides, parse_override
from riffengine.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bank",
        help="pre-render a config's scenes (and an alpha sweep) into the render cache",
        description="Render the starting state and every scene of a config (and, with --sweep "
        "K, K states from side A to side B) into the render cache, at the tempo "
        "and length the engine will ask for, so they play at once and survive a "
        "GPU failure. One of them is marked as the safe loop for /riff/panic.",
    )
    parser.add_argument(
        "config",
        nargs="?",
        default=str(DEFAULT_CONFIG),
        metavar="CONFIG",
        help="YAML config (default configs/default.yaml)",
    )
    parser.add_argument("--no-scenes", action="store_true", help="bank the starting state only")
    parser.add_argument("--sweep", type=int, default=0, metavar="K", help="also bank K states from alpha 0 to 1")
    parser.add_argument(
        "--sweep-scene", metavar="NAME", help="sweep between the sides of this scene (default: the starting state)"
    )
    parser.add_argument(
        "--safe", metavar="NAME", help="the safe loop: 'initial' or a scene name (default: the first scene)"
    )
    parser.add_argument(
        "--cache",
        metavar="DIR",
        help="render cache folder (default: the config's cache.folder, the one "
        "the engine uses; ~/.cache/riffengine/renders when that is null)",
    )
    parser.add_argument(
        "--max-size-gb",
        type=float,
        default=None,
        metavar="GB",
        help="bound of the cache; least recently used entries go first (default: the config's cache.max_size_gb)",
    )
    parser.add_argument("--model", metavar="ID|PATH", help="override model.id")
    parser.add_argument("--device", help="override model.device (cpu, cuda, cuda:N)")
    parser.add_argument("--dtype", choices=["auto", "fp16", "bf16", "fp32"], help="override model.dtype")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override any setting, e.g. --set tempo.bpm=94"
    )
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = load_config(args.config)
    overrides = dict(parse_override(text) for text in args.set)
    for flag, key in (("model", "model.id"), ("device", "model.device"), ("dtype", "model.dtype")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    return merge_overrides(settings, overrides) if overrides else settings


def cache_bytes(gigabytes: float) -> int:
    if not math.isfinite(gigabytes) or gigabytes <= 0:
        raise UserError(f"--max-size-gb {gigabytes}: give a size above 0")
    return max(1, int(gigabytes * 1024**3))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from riffengine.render.bank import bank_items, choose_safe, fill_bank
    from riffengine.render.cache import CachedRenderer, RenderCache
    from riffengine.render.renderer import validate_request

    settings = settings_from_args(args)
    if args.sweep_scene is not None and not args.sweep:
        raise UserError("--sweep-scene needs --sweep K")
    items = bank_items(settings, scenes=not args.no_scenes, sweep=args.sweep, sweep_from=args.sweep_scene)
    safe = choose_safe(items, settings, args.safe)
    for item in items:  # fail before loading the model
        try:
            validate_request(item.request)
        except UserError as exc:
            raise UserError(f"{item.name}: {exc}") from None
    folder = args.cache if args.cache is not None else settings.cache.folder
    size = cache_bytes(args.max_size_gb) if args.max_size_gb is not None else settings.cache.max_bytes
    cache = RenderCache(folder, size)
    from riffengine.engine import build_renderer  # the engine's own model loading

    renderer = CachedRenderer(build_renderer(settings), cache)
    with tqdm(total=len(items), desc="bank", unit="state", disable=None) as bar:

        def advance(item) -> None:
            bar.set_postfix_str(item.name[:40])
            bar.update(1)

        try:
            report = fill_bank(renderer, items, safe, on_item=advance)
        finally:
            renderer.close()
    for name, reason in report.failed:
        print(f"failed: {name}: {reason}")
    print(
        f"{cache.folder}: {len(report.rendered)} rendered, {len(report.cached)} already banked, "
        f"{len(report.failed)} failed; safe loop: {report.safe}"
    )
    return 1 if report.failed else 0
