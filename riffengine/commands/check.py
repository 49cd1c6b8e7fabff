"""``riffengine check``: validate a config file and summarise what it sets up."""

from __future__ import annotations

import argparse

from riffengine.config import DEFAULT_CONFIG, Settings, load_config, merge_overrides, parse_override
from riffengine.control.mapping import mappings_from_settings

CLIP_SECONDS = 5.12
"""Length of the audio the model renders (512 spectrogram columns at a 10 ms hop)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate a config file",
        description="Validate a YAML config file: print 'FILE: OK' and a summary, or every "
        "mistake with its line and key, and exit with status 2.",
    )
    parser.add_argument(
        "-c",
        "--config",
        default=str(DEFAULT_CONFIG),
        metavar="FILE",
        help="the YAML config file to check (default: the default.yaml shipped with riffengine)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a setting, e.g. loop.bars=8 (repeatable)",
    )
    parser.set_defaults(func=run)


def summary(settings: Settings) -> list[str]:
    """A few lines saying what the settings will do."""
    tempo, loop, osc, midi = settings.tempo, settings.loop, settings.osc, settings.midi
    seconds = loop.bars * tempo.beats_per_bar * 60.0 / tempo.bpm
    lines = [
        f"model: {settings.model.id} on {settings.model.device} ({settings.model.dtype})",
        f"audio: {settings.audio.output} at {settings.audio.sample_rate} Hz",
        f"loop: {loop.bars} bar(s) of {tempo.beats_per_bar} beats at {tempo.bpm:g} BPM "
        f"= {seconds:.2f} s (model renders {CLIP_SECONDS} s, stretch x{seconds / CLIP_SECONDS:.2f}); "
        f"tempo from {tempo.source}",
        f"osc: {f'{osc.host}:{osc.port}' if osc.enabled else 'off'}",
        f"midi: {f'{midi.input} via {midi.backend}' if midi.enabled else 'off'}",
        f"scenes: {', '.join(settings.scenes) or 'none'}",
    ]
    return lines


def run(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    if args.overrides:
        settings = merge_overrides(settings, dict(parse_override(o) for o in args.overrides))
    lines = summary(settings)
    if settings.midi.enabled:
        bindings = mappings_from_settings(settings.midi.mappings, list(settings.scenes))
        lines.append(f"midi mappings: {len(bindings)} binding(s)")
    print(f"{args.config}: OK")
    for line in lines:
        print(f"  {line}")
    return 0
