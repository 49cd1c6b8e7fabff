"""End-to-end latency, audio callback timing and memory of the live engine.

Runs the engine live (real time) into a private JACK dummy server it starts and stops by PID
(or a device given with --output), changes the state every few seconds (a new seed, so every
change needs a real render), and prints:

- per change: the time from the state change to the first audible frame of the loop that
  carries it, against the time from the change to the next bar line (the quantisation floor),
  and the measured render time;
- the audio callback's duration (median, p99, max) against its period;
- the process's resident memory over the run (start, end, peak, growth).

``--browsers N`` also serves the web surface and opens it in N headless Chromium pages (Debian's
``chromium``, started and stopped by PID) for the whole run, so the callback figures, underruns
and xruns can be compared with and without web clients.

Examples::

    .venv/bin/python bench/latency.py --fake --duration 30
    .venv/bin/python bench/latency.py --fake --duration 30 --browsers 2
    .venv/bin/python bench/latency.py --tiny --steps 1 --duration 60
    .venv/bin/python bench/latency.py --model riffusion/riffusion-model-v1 --device cuda --duration 600

Figures only, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from browsers import open_browsers  # noqa: E402  (bench/ is on sys.path when run as a script)

from riffengine.config import Settings, merge_overrides, parse_override  # noqa: E402
from riffengine.engine import Engine, build_renderer  # noqa: E402
from riffengine.render.fake import FakeRenderer  # noqa: E402
from riffengine.script import Step  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class MemorySampler(threading.Thread):
    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.done.wait(self.interval):
            self.samples.append((time.monotonic() - start, rss_mib()))


class Collector:
    """Bus subscriber: pairs each state change with the first loop that carries it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.changes: dict[int, dict] = {}
        self.renders: dict[int, float] = {}
        self.all_renders: list[float] = []

    def __call__(self, event) -> None:
        data = event.data
        if event.kind == "state":
            frame = self.engine.heard_frame()
            tempo = self.engine.timeline.tempo_at(frame)
            self.changes[data["version"]] = {"frame": frame, "next_bar": tempo.next_bar_frame(frame)}
        elif event.kind == "render" and data.get("phase") == "done" and "version" in data:
            self.renders[data["version"]] = data["ms"]
            if data.get("mode") == "render" and not data.get("warm_up"):  # not the compile, not stretches
                self.all_renders.append(float(data["ms"]))
        elif event.kind == "loop_started" and data["repeat"] == 0:
            for version, change in self.changes.items():
                if version <= (data["version"] or -1) and "heard" not in change:
                    change["heard"] = data["frame"]
                    change["carried_by"] = data["version"]


def gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--fake", action="store_true", help="the fake renderer (sleeps --fake-seconds)")
    which.add_argument("--tiny", action="store_true", help="a tiny random model built in a temp folder")
    which.add_argument("--model", help="hub id or model folder")
    parser.add_argument("--fake-seconds", type=float, default=0.8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of live play")
    parser.add_argument("--change-every", type=float, default=4.7, help="seconds between state changes")
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--bars", type=int, default=2)
    parser.add_argument("--output", default="jack", help="jack (a private dummy server) or a device")
    parser.add_argument("--ring-seconds", type=float, default=None, help="audio.ring_buffer_seconds")
    parser.add_argument(
        "--browsers",
        type=int,
        default=0,
        help="serve the web surface and keep it open in this many headless Chromium pages",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override, e.g. model.compile=max-autotune (repeatable)",
    )
    parser.add_argument(
        "--nice-browsers",
        action="store_true",
        help="run the browsers at the lowest CPU priority (as if on other devices)",
    )
    args = parser.parse_args()

    overrides: dict[str, object] = {
        "audio.output": args.output,
        "tempo.bpm": args.bpm,
        "loop.bars": args.bars,
        "osc.enabled": False,
        "midi.enabled": False,
        "model.device": args.device,
    }
    if args.steps:
        overrides["render.steps"] = args.steps
    if args.ring_seconds:
        overrides["audio.ring_buffer_seconds"] = args.ring_seconds
    overrides.update(parse_override(text) for text in args.overrides)
    temp = tempfile.TemporaryDirectory()
    if args.tiny:
        from riffengine.render.model import build_tiny_model

        overrides["model.id"] = str(build_tiny_model(Path(temp.name) / "tiny"))
    elif args.model:
        overrides["model.id"] = args.model
    http_port = free_port() if args.browsers else 0
    if args.browsers:
        overrides.update({"http.enabled": True, "http.port": http_port})
    settings = merge_overrides(Settings(), overrides)

    server = None
    if args.output == "jack":
        from riffengine.audio.jackserver import JackServer

        server = JackServer(sample_rate=44100, period=256).start()
        os.environ.update(server.env)
        os.environ.setdefault("JACK_NO_START_SERVER", "1")
    started = time.perf_counter()
    renderer = FakeRenderer(seconds=args.fake_seconds, sleep=True) if args.fake else build_renderer(settings)
    print(f"renderer built in {time.perf_counter() - started:.1f} s", flush=True)
    count = max(1, int(args.duration / args.change_every) - 1)
    script = [Step(i, (i + 1) * args.change_every, None, (("seed_a", 1000 + i),)) for i in range(count)]
    engine = Engine(settings, renderer, duration=args.duration, script=script, signals=False)
    collector = Collector(engine)
    engine.bus.subscribe(collector)
    memory = MemorySampler()
    memory.start()
    start_rss = rss_mib()
    browsers = open_browsers(args.browsers, f"http://127.0.0.1:{http_port}/ui/", temp.name, args.nice_browsers)
    most_clients = [0]

    def count_clients(event) -> None:
        web = engine.surfaces.web if engine.surfaces is not None else None
        if event.kind == "beat" and web is not None:
            most_clients[0] = max(most_clients[0], len(web.clients))

    engine.bus.subscribe(count_clients)
    try:
        asyncio.run(engine.run())
    finally:
        for proc in browsers:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        memory.done.set()
        if server is not None:
            from riffengine.audio.output import rescan_devices

            os.environ.pop("JACK_DEFAULT_SERVER", None)  # let PortAudio's JACK client go first
            rescan_devices()
            server.stop()
    rate = engine.sample_rate

    print(
        f"renderer: {'fake' if args.fake else settings.model.id} on {settings.model.device}; "
        f"{args.bpm:g} BPM, {args.bars} bar(s) per loop; ring {settings.audio.ring_buffer_seconds} s; "
        f"output {args.output} at {rate} Hz; {args.duration:g} s"
    )
    if args.browsers:
        print(
            f"web surface open in {args.browsers} headless Chromium page(s)"
            f"{' (niced)' if args.nice_browsers else ''}; "
            f"at most {most_clients[0]} WebSocket client(s) connected during the run"
        )
    print("\nstate change -> first audible frame of the loop that carries it")
    print(f"{'version':>7} {'to next bar s':>13} {'heard after s':>13} {'render ms':>9}")
    latencies, floors = [], []
    for version, change in sorted(collector.changes.items()):
        if "heard" not in change:
            continue
        heard = (change["heard"] - change["frame"]) / rate
        floor = (change["next_bar"] - change["frame"]) / rate
        latencies.append(heard)
        floors.append(floor)
        print(f"{version:>7} {floor:>13.3f} {heard:>13.3f} {collector.renders.get(version, float('nan')):>9.1f}")
    if latencies:
        print(
            f"median: heard after {statistics.median(latencies):.3f} s, next bar after "
            f"{statistics.median(floors):.3f} s (loop {args.bars} bar(s) = "
            f"{args.bars * 60 * 4 / args.bpm:.2f} s)"
        )

    all_renders = collector.all_renders
    if all_renders:
        print(
            f"render times: {len(all_renders)} renders, median {statistics.median(all_renders):.1f} ms, "
            f"p99 {percentile(all_renders, 99):.1f} ms, max {max(all_renders):.1f} ms"
        )
    if (
        not args.fake
        and settings.model.device.startswith("cuda")
        or (settings.model.device == "auto" and gpu_available())
    ):
        import torch

        print(
            f"GPU memory: peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB, "
            f"peak reserved {torch.cuda.max_memory_reserved() / 2**30:.2f} GiB"
        )

    durations = getattr(engine.output, "callback_durations_ns", lambda: np.array([]))()
    if len(durations):
        period_ms = 256 / rate * 1000 if args.output == "jack" else float("nan")
        us = durations / 1000.0
        print(
            f"\naudio callback: {len(us)} calls; median {np.median(us):.1f} us, p99 "
            f"{percentile(us, 99):.1f} us, max {us.max():.1f} us; period {period_ms:.2f} ms; "
            f"underruns {engine.ring.underruns}, xruns {getattr(engine.output, 'xruns', 0)}"
        )
    rss = [m for _, m in memory.samples]
    if rss:
        half = rss[len(rss) // 2]
        print(
            f"\nmemory (RSS): before {start_rss:.0f} MiB, first sample {rss[0]:.0f} MiB, "
            f"middle {half:.0f} MiB, end {rss[-1]:.0f} MiB, peak {max(rss):.0f} MiB; "
            f"growth over the second half {rss[-1] - half:+.1f} MiB"
        )
    figures = engine.figures()
    print(
        f"\nengine: renders {figures['renders']}, stretches {figures['stretches']}, failures "
        f"{figures['render_failures']}, late {figures['late_renders']}, underruns {figures['underruns']}"
    )
    temp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
