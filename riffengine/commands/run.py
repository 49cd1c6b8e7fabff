"""``riffengine run``: the live engine.

Settings come from the YAML config (``--config``, default ``configs/default.yaml``); the flags
here override it, and ``--set KEY=VALUE`` overrides anything. Everything is validated before
anything starts: a mistake is one clear message and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os

from riffengine.config import DEFAULT_CONFIG, Settings, load_config, merge_overrides, parse_override
from riffengine.errors import UserError

# flag -> the setting it overrides
FLAG_SETTINGS = {
    "model": "model.id",
    "device": "model.device",
    "dtype": "model.dtype",
    "output": "audio.output",
    "record": "audio.record",
    "events": "audio.events",
    "sample_rate": "audio.sample_rate",
    "bpm": "tempo.bpm",
    "bars": "loop.bars",
    "crossfade_ms": "loop.crossfade_ms",
    "steps": "render.steps",
    "seed_image": "render.seed_image",
    "prompt": "initial.prompt_a/0",
    "evolve": "initial.evolve",
    "glide": "initial.glide",
    "osc_port": "osc.port",
    "http_port": "http.port",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="play a continuous, tempo-locked stream of rendered loops",
        description="Play rendered loops on the bar grid until stopped (SIGINT/SIGTERM fade "
        "out, close the recording and exit 0). With --output FILE.wav, render a "
        "(scripted) session to a file faster than real time.",
    )
    add = parser.add_argument
    add(
        "-c",
        "--config",
        metavar="FILE",
        default=None,
        help="YAML config file (default: the default.yaml shipped with riffengine, configs/default.yaml in a checkout)",
    )
    add(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a setting, e.g. loop.bars=4 (repeatable; wins over the other flags)",
    )
    add("--model", metavar="ID|DIR", help="hub id or model folder (e.g. one from `riffengine tiny-model DIR`)")
    add("--device", metavar="DEV", help="auto, cpu, cuda or cuda:N")
    add("--dtype", metavar="TYPE", help="auto, fp16, bf16 or fp32")
    add(
        "--fake-renderer",
        action="store_true",
        help="no model: a fast test signal per request (rehearsals, tests, benchmarks)",
    )
    add(
        "-o",
        "--output",
        metavar="TARGET",
        help="'default', a device number or name (see `riffengine devices`), 'jack', or FILE.wav",
    )
    add("--record", metavar="FILE.wav", help="also record what plays to this WAV file")
    add("--events", metavar="FILE.jsonl", help="log engine events, one JSON object per line")
    add("--sample-rate", type=int, metavar="HZ", help="preferred output rate (default 44100)")
    add("--bpm", type=float, help="starting tempo")
    add("--bars", type=int, help="loop length in bars")
    add("--crossfade-ms", type=float, metavar="MS", help="crossfade at the seams")
    add("--steps", type=int, help="diffusion steps per render")
    add("--seed-image", metavar="NAME|PATH", help="seed image (built-in name or path); '' for none")
    add("--prompt", metavar="TEXT", help="the first prompt of side A")
    add("--evolve", type=float, metavar="STEP", help="evolve step per loop, 0..1 (0.25 as Riffusion's app)")
    add("--glide", type=int, metavar="LOOPS", help="loops a prompt/weight/seed change glides over")
    add("--osc-port", type=int, metavar="PORT", help="OSC port (0 picks a free one)")
    add("--no-osc", action="store_true", help="do not start the OSC server")
    add(
        "--require-model",
        action="store_true",
        help="refuse to start without the model (default: play the safe loop or the seed "
        "image's loop, report 'degraded' and keep trying the model)",
    )
    add(
        "--http-port",
        type=int,
        metavar="PORT",
        help="start the OSCQuery and web server on this port (0 picks a free one)",
    )
    add(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop after this many seconds of audio (needed with a .wav output)",
    )
    add("--script", metavar="FILE", help="timed parameter changes (YAML list; see riffengine/script.py)")
    add("--learn", metavar="PARAM", help="arm MIDI learn for this parameter at start")
    add(
        "--no-host",
        action="store_true",
        help="play from this process, without the separate audio host (audio.host: false)",
    )
    # Set by the audio host for the engine it starts (not for users):
    add("--attach-host", metavar="RING", help=argparse.SUPPRESS)
    add("--state-file", metavar="FILE", help=argparse.SUPPRESS)
    add("--osc-fd", type=int, metavar="FD", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Config file, then flags, then ``--set`` overrides; UserError lists every mistake."""
    config = args.config or os.environ.get("RIFFENGINE_CONFIG") or str(DEFAULT_CONFIG)
    settings = load_config(config)
    overrides: dict[str, object] = {}
    for flag, key in FLAG_SETTINGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "no_osc", False):
        overrides["osc.enabled"] = False
    if getattr(args, "require_model", False):
        overrides["model.required"] = True
    if getattr(args, "no_host", False):
        overrides["audio.host"] = False
    if getattr(args, "http_port", None) is not None:
        overrides["http.enabled"] = True
    for text in args.overrides:
        key, value = parse_override(text)
        overrides[key] = value
    return merge_overrides(settings, overrides) if overrides else settings


def check_duration(duration: float | None) -> None:
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise UserError(f"--duration {duration!r} is not valid; give a number of seconds above 0")


def run(args: argparse.Namespace) -> int:
    from riffengine.logs import setup_logging
    from riffengine.script import load_script

    settings = settings_from_args(args)
    setup_logging("DEBUG" if args.verbose else settings.logging.level)
    check_duration(args.duration)
    script = load_script(args.script) if args.script else []
    for step in script:
        if step.scene is not None:
            settings.scene(step.scene)  # UserError for an unknown scene
    if args.attach_host is None and uses_host(settings):
        return run_host(args, settings)
    return run_engine(args, settings, script)


def uses_host(settings: Settings) -> bool:
    """A live output under ``audio.host`` plays from the audio host process."""
    return bool(settings.audio.host) and not str(settings.audio.output).lower().endswith(".wav")


def run_host(args: argparse.Namespace, settings: Settings) -> int:
    """The audio host (no torch here): it opens the output and runs the engine as its child."""
    import shutil
    import tempfile

    from riffengine.host.process import HOST_PREFIX, engine_command, serve

    folder = tempfile.mkdtemp(prefix=f"{HOST_PREFIX}{os.getpid()}-")  # swept if the host is killed
    try:
        argv = list(getattr(args, "argv", None) or ["run"])
        return serve(settings, engine_command(argv), os.path.join(folder, "state.json"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_engine(args: argparse.Namespace, settings: Settings, script: list) -> int:
    from riffengine.engine import Engine, WarmUpFailed
    from riffengine.render.fake import FakeRenderer

    factory = (lambda realtime: FakeRenderer(sleep=realtime)) if args.fake_renderer else None
    engine = Engine(
        settings,
        renderer_factory=factory,
        duration=args.duration,
        script=script,
        learn=args.learn,
        reload_settings=lambda: settings_from_args(args),
        host=args.attach_host,
        state_file=args.state_file,
        osc_fd=args.osc_fd if args.attach_host is not None else None,
    )
    try:
        return asyncio.run(engine.run())
    except WarmUpFailed as exc:
        logging.getLogger("riffengine").error("%s", exc)
        return 1
