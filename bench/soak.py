"""Soak test: the live engine for a long time under load and injected faults; figures, no asserts.

Runs the engine in real time into a private JACK dummy server (started and stopped by PID) with:

- continuous renders: a new seed every ``--change-every`` seconds (the fake renderer, the tiny
  random model on the CPU, or a real model, e.g. on a GPU);
- MIDI load: a virtual JACK MIDI controller turning the alpha knob (side A to side B);
- OSC load: status requests and valid values, plus garbage packets, several hundred a second;
- injected faults: renders that raise, run out of CUDA memory or return NaN (every
  ``--fault-every`` seconds), the MIDI controller unplugged and plugged back, and the JACK
  server stopped and restarted (every ``--jack-restart-every`` seconds);

and prints, every minute and at the end: underruns, audio callback time (p99, max, against the
period), resident memory (start, end, growth after the first minute), renders completed,
failures, retries and reconnections.

Examples::

    .venv/bin/python bench/soak.py --fake --duration 60
    .venv/bin/python bench/soak.py --tiny --steps 2 --threads 1 --duration 1800
    .venv/bin/python bench/soak.py --model riffusion/riffusion-model-v1 --device cuda --duration 1800
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from riffengine.audio.jackserver import JackServer  # noqa: E402
from riffengine.config import Settings, merge_overrides  # noqa: E402
from riffengine.engine import Engine, build_renderer  # noqa: E402
from riffengine.render.fake import FakeRenderer  # noqa: E402

PERIOD = 256
RATE = 44100


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def osc_message(address: str, *args: object) -> bytes:
    from pythonosc.osc_message_builder import OscMessageBuilder

    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


class Load(threading.Thread):
    """OSC traffic from its own thread: status requests, valid values and garbage."""

    def __init__(self, port: int, rate: float) -> None:
        super().__init__(daemon=True, name="soak-osc")
        self.port, self.rate = port, rate
        self.stop = threading.Event()
        self.sent = 0
        self.replies = 0

    def run(self) -> None:
        rng = random.Random(1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        status = osc_message("/riff/status")
        while not self.stop.wait(1.0 / self.rate):
            kind = rng.random()
            if kind < 0.05:
                data = status
            elif kind < 0.10:
                data = osc_message("/riff/guidance_a", rng.uniform(5.0, 9.0))
            elif kind < 0.60:
                data = os.urandom(rng.randint(1, 800))
            else:
                data = osc_message("/riff/" + "x" * rng.randint(1, 300), "y" * rng.randint(0, 5000))
            try:
                sock.sendto(data, ("127.0.0.1", self.port))
                self.sent += 1
            except OSError:
                pass
            try:
                while True:
                    sock.recv(65535)
                    self.replies += 1
            except (BlockingIOError, OSError):
                pass
        sock.close()


class Desk(threading.Thread):
    """A virtual JACK MIDI controller turning CC 0 (alpha); unplugged now and then."""

    def __init__(self, name: str, server: str) -> None:
        super().__init__(daemon=True, name="soak-midi")
        self.name, self.server = name, server
        self.stop = threading.Event()
        self.unplug = threading.Event()
        self.sent = 0
        self.replugs = 0

    def run(self) -> None:
        import mido

        backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK", load=True)
        port = None
        value = 0
        while not self.stop.wait(0.05):
            try:
                if self.unplug.is_set() and port is not None:
                    port.close()
                    port = None
                    self.stop.wait(2.0)
                    self.unplug.clear()
                    self.replugs += 1
                if port is None:
                    port = backend.open_output(self.name, virtual=True)
                value = (value + 3) % 128
                port.send(mido.Message("control_change", control=0, value=value))
                self.sent += 1
            except Exception:  # the JACK server restarting: try again later
                port = None
                self.stop.wait(1.0)
        if port is not None:
            port.close()


def settings_for(args, tmp: Path, client: str, midi_name: str) -> Settings:
    values = {
        "audio.output": "jack",
        "audio.jack_client_name": client,
        "audio.record": str(tmp / "soak.wav") if args.record else None,
        "tempo.bpm": args.bpm,
        "loop.bars": args.bars,
        "render.steps": args.steps,
        "render.safety_margin_ms": 250.0,
        "osc.enabled": True,
        "osc.port": 0,
        "midi.enabled": not args.jack_restart_every,
        "midi.backend": "UNIX_JACK",
        "midi.input": midi_name,
        "midi.mappings": [{"cc": 0, "param": "alpha", "pickup": False}],
        "initial.prompt_b/0": "funky jazz trumpet",
        "cache.enabled": False,
    }
    if args.tiny or args.model:
        values["model.id"] = args.model or str(args.tiny_dir)
        values["model.device"] = args.device
        values["model.cpu_threads"] = args.threads
    return merge_overrides(Settings(), {k: v for k, v in values.items() if v is not None})


class Figures:
    """Callback time, memory and counters, sampled from the loop thread every few seconds."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.durations: list[int] = []
        self.seen_callbacks = 0
        self.output = None
        self.memory: list[tuple[float, float]] = []
        self.start = time.monotonic()

    def sample(self) -> None:
        engine = self.engine
        if engine.output is not self.output:  # a reconnection replaced nothing, but be safe
            self.output, self.seen_callbacks = engine.output, 0
        out = engine.output
        new = out.callbacks - self.seen_callbacks
        if new > 0:
            recent = out.callback_durations_ns()
            self.durations.extend(recent[-min(new, len(recent)) :].tolist())
            self.seen_callbacks = out.callbacks
        self.memory.append((time.monotonic() - self.start, rss_mib()))

    def report(self, label: str, extra: dict) -> str:
        engine = self.engine
        stats = engine._stats
        period_ms = PERIOD / RATE * 1000.0
        d = sorted(self.durations)
        p99 = d[int(0.99 * (len(d) - 1))] / 1e6 if d else 0.0
        mx = d[-1] / 1e6 if d else 0.0
        med = statistics.median(d) / 1e6 if d else 0.0
        mem = self.memory
        after_warm = [m for t, m in mem if t >= 60.0] or [m for _, m in mem]
        growth = (after_warm[-1] - after_warm[0]) if after_warm else 0.0
        return (
            f"[{label}] {time.monotonic() - self.start:7.0f} s | underruns {engine.ring.underruns} | "
            f"callback median {med:.3f} ms, p99 {p99:.3f} ms, max {mx:.3f} ms (period {period_ms:.2f} ms) | "
            f"RSS {mem[0][1] if mem else 0:.0f} -> {mem[-1][1] if mem else 0:.0f} MiB "
            f"(growth after the first minute {growth:+.1f} MiB) | renders {stats['renders']} "
            f"stretches {stats['stretches']} failures {stats['failures']} retries {stats['retries']} "
            f"late {stats['late']} outputs lost {stats['outputs_lost']} | "
            + " ".join(f"{k} {v}" for k, v in extra.items())
        )


async def drive(engine: Engine, args, server: JackServer, desk: Desk, figures: Figures) -> None:
    """The soak's own task on the engine's loop: changes, faults, sampling, reports."""
    loop = asyncio.get_running_loop()
    while engine.surfaces is None or engine.timeline is None:
        await asyncio.sleep(0.1)
    load = Load(engine.surfaces.osc.address[1], args.osc_rate)
    load.start()
    rng = random.Random(args.seed)
    start = loop.time()
    next_change = next_fault = next_restart = next_report = start
    next_fault += args.fault_every
    next_restart += args.jack_restart_every
    next_report += 60.0
    seed = 1000
    faults = ["[raise]", "[nan]", "[oom]"]
    try:
        while loop.time() - start < args.duration:
            await asyncio.sleep(1.0)
            now = loop.time()
            figures.sample()
            if now >= next_change:
                next_change = now + args.change_every
                seed += 1
                engine.store.apply({"seed_a": seed}, "soak")
            if now >= next_fault:
                next_fault = now + args.fault_every
                fault = rng.choice(faults)
                engine.store.apply({"prompt_a/0": f"lo-fi hip hop beat {fault}"}, "soak")
                loop.call_later(args.change_every / 2, engine.store.apply, {"prompt_a/0": "lo-fi hip hop beat"}, "soak")
                desk.unplug.set()
            if args.jack_restart_every and now >= next_restart:
                next_restart = now + args.jack_restart_every
                await loop.run_in_executor(None, server.stop)
                await asyncio.sleep(1.0)
                await loop.run_in_executor(None, server.start)
            if now >= next_report:
                next_report = now + 60.0
                print(figures.report("soak", {"osc_sent": load.sent, "midi_sent": desk.sent}), flush=True)
    finally:
        load.stop.set()
        desk.stop.set()
        figures.sample()
        print(
            figures.report(
                "final",
                {
                    "osc_sent": load.sent,
                    "osc_replies": load.replies,
                    "midi_sent": desk.sent,
                    "midi_replugs": desk.replugs,
                    "osc_refused": engine.surfaces.osc.failed,
                },
            ),
            flush=True,
        )
        engine.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--fake", action="store_true", help="the fake renderer (default)")
    kind.add_argument("--tiny", action="store_true", help="the tiny random model (real render path)")
    kind.add_argument("--model", help="a real model: hub id or folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (with --tiny/--model)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (keep the load modest)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--bars", type=int, default=2)
    parser.add_argument("--change-every", type=float, default=4.0, help="seconds between new seeds")
    parser.add_argument("--fault-every", type=float, default=45.0, help="seconds between render faults")
    parser.add_argument(
        "--jack-restart-every",
        type=float,
        default=0.0,
        help="seconds between JACK server restarts (default 0: never; python-rtmidi's "
        "JACK MIDI client does not survive a restart, so this also turns MIDI off)",
    )
    parser.add_argument("--osc-rate", type=float, default=300.0, help="OSC packets a second")
    parser.add_argument("--record", action="store_true", help="record the output (to a temp folder)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    import torch

    from riffengine.logs import setup_logging

    setup_logging("ERROR")  # the figures, not every refused packet
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="riff-soak-") as folder:
        tmp = Path(folder)
        if args.tiny:
            from riffengine.render.model import build_tiny_model

            args.tiny_dir = build_tiny_model(tmp / "tiny-model")
        server = JackServer(name=f"riff-soak-{uuid.uuid4().hex[:8]}", sample_rate=RATE, period=PERIOD)
        server.start()
        os.environ["JACK_DEFAULT_SERVER"] = server.name
        os.environ["JACK_NO_START_SERVER"] = "1"
        midi_name = f"soak-desk-{uuid.uuid4().hex[:6]}"
        try:
            settings = settings_for(args, tmp, f"riff-soak-{os.getpid()}", midi_name)
            renderer = (
                FakeRenderer(seconds=0.3, sleep=True) if not (args.tiny or args.model) else build_renderer(settings)
            )
            engine = Engine(settings, renderer, signals=True)
            desk = Desk(midi_name, server.name)
            figures = Figures(engine)
            print(
                f"soak: {args.duration:.0f} s, renderer "
                f"{'tiny model' if args.tiny else args.model or 'fake'} on {args.device}, "
                f"JACK server {server.name} (pid {server.process.pid})",
                flush=True,
            )

            if settings.midi.enabled:
                desk.start()  # the controller is plugged in before the engine looks for it
                time.sleep(1.0)

            async def run() -> int:
                driver = asyncio.get_running_loop().create_task(drive(engine, args, server, desk, figures))
                try:
                    return await engine.run()
                finally:
                    driver.cancel()

            return asyncio.run(run())
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
