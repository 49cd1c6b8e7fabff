"""Evolve in real time: how often the next loop of the walk was late and the last one repeated.

Runs the live engine into a private JACK dummy server (started and stopped by PID) with
``evolve`` on, so every loop is a new render made ahead (``render.ahead``), and prints, every
minute and at the end: loops started, loops of the walk that were not ready at their seam (the
last loop repeated instead: ``walk_repeats``), late renders, speculative loops dropped,
underruns and xruns, and the render times. Figures, no asserts.

Examples::

    .venv/bin/python bench/evolve.py --tiny --steps 4 --duration 600
    .venv/bin/python bench/evolve.py --fake --duration 60
    .venv/bin/python bench/evolve.py --model riffusion/riffusion-model-v1 --device cuda --steps 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from riffengine.audio.jackserver import JackServer  # noqa: E402
from riffengine.config import Settings, merge_overrides  # noqa: E402
from riffengine.engine import Engine, build_renderer  # noqa: E402
from riffengine.render.fake import FakeRenderer  # noqa: E402

RATE = 44100
PERIOD = 256


class Tally:
    """Counts the engine's events (called on the loop thread)."""

    def __init__(self) -> None:
        self.loops = 0
        self.new_loops = 0
        self.render_ms: list[float] = []
        self.stage_ms: dict[str, list[float]] = {}
        self.dropped = 0

    def __call__(self, event) -> None:
        data = event.data
        if event.kind == "loop_started":
            self.loops += 1
            self.new_loops += int(data.get("repeat") == 0)
        elif event.kind == "render" and data.get("phase") == "done" and not data.get("warm_up"):
            self.render_ms.append(float(data["ms"]))
            for stage, ms in data.get("timings", {}).items():
                self.stage_ms.setdefault(stage, []).append(float(ms))
        elif event.kind == "render" and data.get("phase") == "dropped":
            self.dropped += 1


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by the nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def stages(tally: Tally) -> str:
    """Median milliseconds of each render stage (text, diffusion, vae, audio, resample)."""
    return ", ".join(f"{name} {statistics.median(ms):.0f}" for name, ms in tally.stage_ms.items())


def report(engine: Engine, tally: Tally, seconds: float) -> str:
    f = engine.figures()
    ms = tally.render_ms
    times = (
        f"render ms median {statistics.median(ms):.0f} p95 {percentile(ms, 0.95):.0f} "
        f"max {max(ms):.0f} ({stages(tally)})"
        if ms
        else "no renders"
    )
    return (
        f"{seconds:6.0f} s: loops {tally.loops} (new {tally.new_loops}), renders {len(ms)}, walk repeats "
        f"{f['walk_repeats']}, late renders {f['late_renders']}, dropped {tally.dropped}, "
        f"loops ahead {f['loops_ahead']}, underruns {f['underruns']}, xruns {f['xruns']}; {times}"
    )


async def watch(engine: Engine, tally: Tally, duration: float) -> None:
    start = time.monotonic()
    while True:
        await asyncio.sleep(60.0)
        print(report(engine, tally, time.monotonic() - start), flush=True)
        if time.monotonic() - start >= duration:
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--fake", action="store_true", help="the fake renderer (default)")
    kind.add_argument("--tiny", action="store_true", help="the tiny random model (real render path)")
    kind.add_argument("--model", help="a real model: hub id or folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument(
        "--threads", default="auto", help="torch CPU threads (model.cpu_threads; auto: every core but one)"
    )
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--evolve", type=float, default=0.25)
    parser.add_argument("--mode", default="seed", help="evolve_mode")
    parser.add_argument("--ahead", type=int, default=2, help="render.ahead")
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--bars", type=int, default=2)
    parser.add_argument(
        "--split",
        action="store_true",
        help="the two guidance rows side by side on two threads, as an offline render does "
        "(default: one batch, as a live engine renders)",
    )
    parser.add_argument("--events", help="also log the engine's events to this .jsonl file")
    parser.add_argument(
        "--preset",
        default="quality",
        help="render.preset (fast: DPM-Solver++, one UNet call a step; the default "
        "scheduler's PLMS makes 4 calls of 4 steps at denoise 0.75)",
    )
    args = parser.parse_args()

    import torch

    from riffengine.logs import setup_logging

    setup_logging("ERROR")
    with tempfile.TemporaryDirectory(prefix="riff-evolve-") as folder:
        tmp = Path(folder)
        values = {
            "audio.output": "jack",
            "audio.jack_client_name": f"riff-evolve-{os.getpid()}",
            "tempo.bpm": args.bpm,
            "loop.bars": args.bars,
            "render.steps": args.steps,
            "render.ahead": args.ahead,
            "initial.evolve": args.evolve,
            "initial.evolve_mode": args.mode,
            "osc.enabled": False,
            "cache.enabled": False,
            "audio.events": args.events,
            "render.preset": args.preset,
        }
        if args.tiny or args.model:
            if args.tiny:
                from riffengine.render.model import build_tiny_model

                values["model.id"] = str(build_tiny_model(tmp / "tiny-model"))
            else:
                values["model.id"] = args.model
            values["model.device"] = args.device
            values["model.cpu_threads"] = args.threads if args.threads == "auto" else int(args.threads)
        settings = merge_overrides(Settings(), values)
        server = JackServer(name=f"riff-evolve-{uuid.uuid4().hex[:8]}", sample_rate=RATE, period=PERIOD)
        server.start()
        os.environ["JACK_DEFAULT_SERVER"] = server.name
        os.environ["JACK_NO_START_SERVER"] = "1"
        try:
            renderer = (
                build_renderer(settings, live=not args.split)
                if (args.tiny or args.model)
                else FakeRenderer(seconds=0.3, sleep=True)
            )
            engine = Engine(settings, renderer, duration=args.duration, signals=True)
            tally = Tally()
            engine.bus.subscribe(tally)
            print(
                f"evolve {args.evolve} ({args.mode}), render.ahead {args.ahead}, preset {args.preset}, "
                f"{'tiny model' if args.tiny else args.model or 'fake'} on {args.device}, "
                f"{args.steps} steps, {torch.get_num_threads()} torch thread(s)"
                f"{', guidance rows side by side' if getattr(renderer, 'halves', None) else ''}, {args.bars} bars at "
                f"{args.bpm:g} BPM, {args.duration:.0f} s",
                flush=True,
            )

            async def run() -> int:
                watcher = asyncio.get_running_loop().create_task(watch(engine, tally, args.duration))
                started = time.monotonic()
                try:
                    return await engine.run()
                finally:
                    watcher.cancel()
                    print("end   " + report(engine, tally, time.monotonic() - started), flush=True)

            return asyncio.run(run())
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
