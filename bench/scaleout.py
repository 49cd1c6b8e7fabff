"""Scale-out: renders per minute and the share of changes heard at the next bar, with 1 and 2
(or more) Ray render workers, and what a clip costs to send through Ray.

A performer is simulated on the render pool itself (no audio device): every bar it moves the
crossfader one step of ``render.speculate_alpha_step`` up or down (a seeded random walk on the
grid, as a knob or a fader moves), submits the new state as the primary job and hands the spare
workers the guesses of :mod:`riffengine.speculation`, as the engine does. A change counts as
heard at the next bar when its clip is back within one bar minus the safety margin. Renders per
minute counts every clip a worker made (primary and guesses).

    python bench/scaleout.py                          # tiny model, CPU, 1 and 2 workers
    python bench/scaleout.py --model riffusion/riffusion-model-v1 --device cuda --workers 1 2 4

Prints figures only; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from riffengine import speculation  # noqa: E402
from riffengine.clipmaker import ClipMaker, ClipSpec  # noqa: E402
from riffengine.config import Settings, merge_overrides  # noqa: E402
from riffengine.engine.model import build_clip_maker  # noqa: E402
from riffengine.planner import clip_key  # noqa: E402
from riffengine.render.fake import FakeRenderer  # noqa: E402
from riffengine.render.worker import RenderJob  # noqa: E402
from riffengine.render.workers.actor import RenderActor  # noqa: E402
from riffengine.render.workers.cluster import actor_options, connect  # noqa: E402
from riffengine.render.workers.pool import RayPool  # noqa: E402
from riffengine.state import apply, apply_many, initial_state  # noqa: E402
from riffengine.timing.tempo import loop_frames  # noqa: E402

RATE = 44100


class Quiet:
    """Worker events, counted instead of published."""

    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}

    def publish(self, kind: str, **data) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


def spec_for(key, meter: int = 4) -> ClipSpec:
    request, bpm, bars = key
    return ClipSpec(request, loop_frames(bars, bpm, RATE, meter), loop_frames(bars, bpm, RATE, meter))


def performer(seconds: float, bar: float, step: float, seed: int = 7) -> list[float]:
    """The alphas a performer moves to, one per bar: a seeded walk on the grid."""
    rng = random.Random(seed)
    alpha, out = 0.5, []
    for _ in range(int(seconds / bar)):
        alpha = min(1.0, max(0.0, round(alpha + rng.choice((-step, step)), 6)))
        out.append(alpha)
    return out


def run_pool(ray, settings: Settings, workers: int, seconds: float, bar: float) -> dict[str, float]:
    """Start ``workers`` actors, play the performer for ``seconds``, return the figures."""
    results: dict[int, float] = {}
    events = Quiet()
    make_maker = functools.partial(build_clip_maker, settings, RATE, 2)
    options = actor_options(settings.model.device, ray.cluster_resources().get("GPU", 0.0))
    pool = RayPool(
        ray,
        ray.remote(RenderActor),
        make_maker,
        workers,
        lambda r: results.__setitem__(r.job.tag, time.monotonic()),
        events,
        ClipMaker(FakeRenderer(), RATE, 2),
        options,
    )
    pool.start()
    state = apply_many(initial_state(settings), [("prompt_b", ["jazz piano", "", "", ""]), ("alpha", 0.5)])
    step = settings.render.speculate_alpha_step
    first = RenderJob(spec_for(clip_key(state)), tag=-1)
    pool.submit(first)  # the warm-up: every worker loads its model first
    while -1 not in results or any(w["state"] == "starting" for w in pool.status()):
        time.sleep(0.05)
    heard, changes = 0, 0
    start = time.monotonic()
    for number, alpha in enumerate(performer(seconds, bar, step)):
        state = apply(state, "alpha", alpha)
        changed = time.monotonic()
        pool.submit(RenderJob(spec_for(clip_key(state)), tag=number))
        pool.speculate([spec_for(k) for k in speculation.candidates(state, None, step, limit=8)])
        changes += 1
        deadline = changed + bar - settings.render.safety_margin_ms / 1000.0
        time.sleep(max(0.0, changed + bar - time.monotonic()))
        if number in results and results[number] <= deadline:
            heard += 1
    minutes = (time.monotonic() - start) / 60.0
    made = sum(w["renders"] + w["guesses"] for w in pool.status())
    pool.stop(30.0)
    return {
        "workers": workers,
        "changes": changes,
        "heard_next_bar": heard / max(1, changes),
        "renders_per_min": made / minutes,
        "hits": pool.store.hits,
        "guess_hits": pool.store.guess_hits,
        "lost": events.kinds.get("worker_lost", 0),
    }


def transfer_ms(ray, bars: int = 4, bpm: float = 94.0, repeats: int = 10) -> dict[str, float]:
    """Milliseconds to bring a clip back from an actor: the image alone, or image and audio."""
    import numpy as np

    @ray.remote
    class Echo:
        def image(self):
            return np.zeros((3, 512, 512), np.uint8)

        def clip(self):
            frames = loop_frames(bars, bpm, RATE)
            return np.zeros((3, 512, 512), np.uint8), np.zeros((frames, 2), np.float32)

    echo = Echo.remote()
    out = {}
    for name in ("image", "clip"):
        method = getattr(echo, name)
        ray.get(method.remote())
        start = time.perf_counter()
        for _ in range(repeats):
            ray.get(method.remote())
        out[name] = (time.perf_counter() - start) / repeats * 1000.0
    ray.kill(echo)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model id or folder (default: a tiny random model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=40.0, help="performance per worker count")
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--address", default="local", help="render.ray.address (default: start one)")
    args = parser.parse_args(argv)
    model = args.model
    if model is None:
        from riffengine.render.model import build_tiny_model

        model = str(build_tiny_model(Path(tempfile.mkdtemp()) / "model"))
    settings = merge_overrides(
        Settings(),
        {
            "model.id": model,
            "model.device": args.device,
            "model.cpu_threads": 1,
            "render.steps": args.steps,
            "cache.enabled": False,
            "loop.bars": 1,
            "tempo.bpm": args.bpm,
        },
    )
    bar = 4 * 60.0 / args.bpm
    ray, _ = connect(args.address)
    try:
        print(f"model {model} on {args.device}; {args.steps} steps; a change every bar ({bar:.2f} s)")
        sent = transfer_ms(ray)
        print(
            f"transfer through Ray (4 bars at 94 BPM): image alone {sent['image']:.1f} ms, "
            f"image and audio {sent['clip']:.1f} ms"
        )
        for workers in args.workers:
            f = run_pool(ray, settings, workers, args.seconds, bar)
            print(
                f"workers {f['workers']}: {f['renders_per_min']:.1f} renders/min, "
                f"{f['heard_next_bar']:.0%} of {f['changes']} changes heard at the next bar "
                f"({f['guess_hits']} from a guess, {f['hits'] - f['guess_hits']} from a state "
                f"played before), workers lost {f['lost']}"
            )
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
