"""Clicks under load: xruns and silence heard by an independent JACK client; figures, no asserts.

For each load, a private JACK dummy server (44.1 kHz, 256-frame periods, started and stopped by
PID) runs ``riffengine run --output jack`` as a user would, in its own process, rendering all the
time (a new seed every second). A separate process sends the load; this process only listens:

- an independent JACK client counts the server's own xrun notifications (every late client of
  the graph, the engine included, is a click for everybody), and the cycles they came in (one
  click each), and records, for every cycle, the peak level of what the engine plays and when
  the cycle ran;
- silence: the time the engine's ports played exact zeros after the music had started;
- the engine's own counts (xruns, underruns) from its events log;
- the late clients: for each xrun the server logs the client that had not finished its cycle
  (the engine's host, this listener, ...) and its state: ``Triggered`` (woken, not yet run by
  the system) or ``Running`` (in its own code);
- the CPU time the hypervisor stole (on a virtual machine), and the xruns of the calm seconds
  (under 5 % stolen): on a shared VM most clicks come in the seconds the host machine takes
  the CPUs away, whatever runs inside;
- gain latency: ``/riff/gain -60`` is sent every 10 s (and 0 dB half a second later); the time
  from sending to the first cycle that plays it, against the period.

Loads (``--loads``, default all):

- ``a``: 500 valid render-changing OSC messages a second (alpha and a prompt slot, as a
  TouchDesigner patch sending faders at 60 fps, only more);
- ``b``: 3000 garbage UDP packets a second at the OSC port;
- ``c``: pure Python spinning in the engine process, competing for the GIL (a renderer or
  surface that never releases it);
- ``d``: a forced full garbage collection every second in the engine process;
- ``e``: SIGKILL of the engine process every ``--kill-every`` seconds (60): under the audio host,
  the host plays on and starts a new engine; with ``--inline`` the one process dies and a new
  one is started at once, as a service manager would;
- ``quiet``: the renders alone;
- ``floor``: no riffengine at all, JACK's own C example clients on the same server (what the
  machine itself clicks: on a shared virtual machine that is not 0).

Examples::

    .venv/bin/python bench/xruns.py --seconds 45 --fake
    .venv/bin/python bench/xruns.py --seconds 600 --tiny --steps 4
    .venv/bin/python bench/xruns.py --seconds 45 --fake --inline   # one process, for comparison
    .venv/bin/python bench/xruns.py --seconds 60 --fake --loads quiet --browsers 2
    .venv/bin/python bench/xruns.py --seconds 600 --fake --realtime  # jackd -R, as at a show

``--realtime`` runs the server real-time (``SCHED_FIFO``, as a show machine should; it needs
the right to), which makes the clients' process threads real-time too. The listener is a small
C client (``bench/listener.c``, built with gcc at the start; ``scripts/setup.sh --test``
installs gcc and JACK's headers) in its own process at the audio priority
(``riffengine.audio.priority``), so that its own code is never the late client: a Python
listener needs the GIL in its process callback, and its xrun callback takes the GIL on the
notification thread, so it could make clicks of its own. What is started to be measured runs at
the usual priority.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from browsers import open_browsers  # noqa: E402  (bench/ is on sys.path when run as a script)

from riffengine.audio import priority  # noqa: E402
from riffengine.audio.jackserver import JackServer  # noqa: E402

RATE = 44100
PERIOD = 256
CLIENT = "riffengine-bench"
GAIN_EVERY = 10.0
PANIC_EVERY = 10.0  # under the audio host: a /riff/panic this often, between the gain changes

# The load that lives in the engine's process: a sitecustomize module that every Python process
# of the run imports, and that starts the load only in the engine (under the audio host, the
# child started with --attach-host; with --inline, the one process).
ENGINE_LOAD = textwrap.dedent(
    """
    import gc, os, sys, threading, time
    load = os.environ.get("RIFFENGINE_BENCH_LOAD", "")
    if "run" in sys.argv and ("--attach-host" in sys.argv or "--no-host" in sys.argv):
        if load == "c":
            def spin():
                while True:
                    total = 0
                    for i in range(200_000):  # pure Python: holds the GIL for its whole slice
                        total += i
                    time.sleep(0.05)
            threading.Thread(target=spin, daemon=True).start()
        elif load == "d":
            def collect():
                while True:
                    time.sleep(1.0)
                    gc.collect()
            threading.Thread(target=collect, daemon=True).start()
    """
)

# Runs in its own process: the control traffic, so that it costs this process nothing.
SENDER = textwrap.dedent(
    """
    import random, socket, struct, sys, time
    from pythonosc.osc_message_builder import OscMessageBuilder
    port, load = int(sys.argv[1]), sys.argv[2]
    rng = random.Random(7)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    def send(address, *args):
        b = OscMessageBuilder(address)
        for a in args:
            b.add_arg(a)
        sock.sendto(b.build().dgram, ("127.0.0.1", port))
    rate = {"a": 500, "b": 3000}.get(load, 0)
    start = time.monotonic()
    sent = 0
    next_seed = start
    while True:
        now = time.monotonic()
        if now >= next_seed:  # keep the renderer busy in every load
            send("/riff/seed_a", rng.randrange(1, 1 << 30))
            next_seed += 1.0
        due = int((now - start) * rate)
        while sent < due:
            if load == "a":
                if sent % 2:
                    send("/riff/alpha", rng.random())
                else:
                    send("/riff/prompt_a/0", "warm analog synth " + str(rng.randrange(100)))
            else:
                sock.sendto(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
                            ("127.0.0.1", port))
            sent += 1
        time.sleep(0.002)
    """
)


LISTENER_C = Path(__file__).with_name("listener.c")


def build_listener(folder: Path) -> Path:
    """Compile the C listener (``bench/listener.c``) into ``folder``; needs gcc and JACK's
    headers (``scripts/setup.sh --test`` installs them)."""
    binary = folder / "xrun-listener"
    cmd = ["gcc", "-O2", "-Wall", "-o", str(binary), str(LISTENER_C), "-ljack", "-lm"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("bench/xruns.py needs gcc: run scripts/setup.sh --test") from None
    except subprocess.CalledProcessError as e:
        hint = "scripts/setup.sh --test installs JACK's headers"
        raise SystemExit(f"cannot build bench/listener.c ({hint}):\n{e.stderr}") from None
    return binary


class Listener:
    """The independent JACK client (``bench/listener.c``, its own process): the server's xruns
    (cycles and notifications), and the peak and time of each cycle it hears from ``sources``,
    read here from the file it maps. It connects to ``sources`` itself whenever they exist."""

    HEADER = 8

    def __init__(
        self,
        binary: Path,
        server: str,
        seconds: float,
        folder: Path,
        sources: tuple[str, str] = (f"{CLIENT}:out_0", f"{CLIENT}:out_1"),
    ) -> None:
        self.capacity = int(seconds * RATE / PERIOD) + 4096
        self.path = folder / f"listener-{server}.bin"
        self.command = [str(binary), server, str(self.path), str(self.capacity), *sources]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen(self.command, stderr=subprocess.PIPE, text=True)
        size = 8 * self.HEADER + self.capacity * 12
        deadline = time.monotonic() + timeout
        while not (self.path.exists() and self.path.stat().st_size == size and self.cycles > 0):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the listener ended: {self.proc.stderr.read() if self.proc.stderr else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError("the listener did not start within 15 s")
            time.sleep(0.05)

    def _map(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not hasattr(self, "_arrays"):
            header = np.memmap(self.path, dtype=np.int64, mode="r", shape=(self.HEADER,))
            offset = 8 * self.HEADER
            times = np.memmap(self.path, dtype=np.float64, mode="r", offset=offset, shape=(self.capacity,))
            offset += 8 * self.capacity
            peaks = np.memmap(self.path, dtype=np.float32, mode="r", offset=offset, shape=(self.capacity,))
            self._arrays = (header, times, peaks)
        return self._arrays

    @property
    def cycles(self) -> int:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0
        return int(self._map()[0][0])

    @property
    def xruns(self) -> int:
        """Cycles with an xrun: the clicks."""
        return int(self._map()[0][1])

    @property
    def notifications(self) -> int:
        """The server's xrun notifications: one per late client of a cycle, and its own timer's."""
        return int(self._map()[0][2])

    @property
    def times(self) -> np.ndarray:
        return self._map()[1]

    @property
    def peaks(self) -> np.ndarray:
        return self._map()[2]

    def connect(self) -> bool:
        """Whether both sources are connected (the listener reconnects them itself)."""
        return bool(self._map()[0][3])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def bank_safe_loop(tmp: Path, steps: int) -> Path:
    """A show file whose render cache holds a safe loop (banked from the fake renderer: the
    safe loop is audio in the cache, whatever model plays), for ``/riff/panic``; at the run's
    ``steps``, as a show banks with its own config (the safe values set the steps)."""
    from riffengine.config import load_config
    from riffengine.render.bank import item_for, write_safe
    from riffengine.render.cache import RenderCache
    from riffengine.render.fake import FakeRenderer
    from riffengine.state import initial_state

    show = tmp / "show.yaml"
    show.write_text(
        f"cache: {{folder: {tmp / 'cache'}}}\ntempo: {{bpm: 120}}\nloop: {{bars: 2}}\n"
        f"initial: {{prompt_a: [safe groove], steps: {steps}}}\n"
    )
    item = item_for("safe", initial_state(load_config(show)))
    clip = FakeRenderer().render(item.request, item.model_frames)
    cache = RenderCache(tmp / "cache")
    cache.put("safe", clip.image, clip.audio, clip.sample_rate)
    write_safe(cache, item, "safe")
    return show


def engine_command(
    args, load: str, model: str | None, port: int, events: Path, http_port: int | None = None
) -> list[str]:
    cli = [
        "run",
        "--config",
        str(args.show),
        "--output",
        "jack",
        "--osc-port",
        str(port),
        "--events",
        str(events),
        "--bpm",
        "120",
        "--bars",
        "2",
        "--set",
        f"audio.jack_client_name={CLIENT}",
        "--set",
        "midi.enabled=false",
    ]
    cli += ["--fake-renderer"] if model is None else ["--model", model, "--device", "cpu", "--steps", str(args.steps)]
    if args.inline:
        cli.append("--no-host")
    if http_port is not None:
        cli += ["--http-port", str(http_port)]
    return [sys.executable, "-m", "riffengine.cli", *cli]


def engine_pid(proc: subprocess.Popen, inline: bool) -> int:
    """The engine's process: the audio host's child, or the one process with --inline."""
    if inline:
        return proc.pid
    import psutil

    children = psutil.Process(proc.pid).children()
    return children[0].pid if children else proc.pid


STEAL_CALM = 0.05
"""A second in which the hypervisor took less than this share of the CPUs counts as calm."""


def cpu_ticks() -> tuple[int, int]:
    """The machine's CPU ticks so far, (stolen by the hypervisor, all), from ``/proc/stat``."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def steal_figures(samples: list[tuple[int, int, int]]) -> tuple[float, int, int]:
    """From per-second samples (steal ticks, all ticks, xruns so far): the share of CPU time
    stolen, and the xruns and seconds of the calm seconds (steal under :data:`STEAL_CALM`).
    On a virtual machine a click often comes from the hypervisor, not from what is measured."""
    if len(samples) < 2:
        return 0.0, 0, 0
    calm_xruns = calm_seconds = 0
    for (s0, t0, x0), (s1, t1, x1) in zip(samples, samples[1:], strict=False):
        if t1 > t0 and (s1 - s0) / (t1 - t0) < STEAL_CALM:
            calm_xruns += x1 - x0
            calm_seconds += 1
    stolen = (samples[-1][0] - samples[0][0]) / max(1, samples[-1][1] - samples[0][1])
    return stolen, calm_xruns, calm_seconds


def silence_seconds(peaks: np.ndarray) -> float:
    """Time of exact silence after the first sound (a missing engine plays nothing at all)."""
    sounding = np.flatnonzero(peaks > 0)
    if not sounding.size:
        return len(peaks) * PERIOD / RATE
    after = peaks[sounding[0] :]
    return float(np.count_nonzero(after == 0) * PERIOD / RATE)


def gain_latencies(listener: Listener, sent: list[float]) -> list[float]:
    """Seconds from each ``gain -60`` message to the first cycle that plays it quieter."""
    n = listener.cycles
    peaks, times = listener.peaks[:n], listener.times[:n]
    out = []
    for t in sent:
        before = peaks[(times > t - 0.5) & (times < t)]
        level = float(np.median(before)) if before.size else 0.0
        if level <= 0:
            continue
        quiet = np.flatnonzero((times >= t) & (peaks < level * 0.5))
        if quiet.size:
            out.append(float(times[quiet[0]] - t))
    return out


def logged(events: Path) -> list[dict]:
    """The events of a log, skipping a line cut short by a kill."""
    out = []
    if events.exists():
        for line in events.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def panic_latencies(events: list[Path], sent: list[float]) -> list[float]:
    """Seconds from each ``/riff/panic`` to the host's callback that began its crossfade (the
    host's ``panic_heard`` events, on the system's monotonic clock as ``sent``)."""
    began = sorted(e["monotonic"] for path in events for e in logged(path) if e["kind"] == "panic_heard")
    out = []
    for t in sent:
        after = [b for b in began if b >= t]
        if after:
            out.append(after[0] - t)
    return out


def engine_counts(events: Path) -> tuple[int, int]:
    """(xruns, underruns) as the engine reported them in its events log."""
    xruns = underruns = 0
    for e in logged(events):
        if e.get("kind") == "xrun":
            xruns = max(xruns, int(e.get("count", 0)))
        elif e.get("kind") == "underrun":
            underruns = max(underruns, int(e.get("count", 0)))
    return xruns, underruns


def takeover_seconds(events: Path) -> list[float]:
    """Under the audio host: for each engine that died, seconds until its successor's stream
    started (the held loops played meanwhile)."""
    out: list[float] = []
    died = None
    for e in logged(events):
        if e.get("kind") == "engine_ended" and not e.get("on_purpose"):
            died = float(e["time"])
        elif e.get("kind") == "started" and died is not None:
            out.append(float(e["time"]) - died)
            died = None
    return out


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A free port on 127.0.0.1 (UDP; ``socket.SOCK_STREAM`` for TCP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LATE_CLIENT = re.compile(r"client = (\S+) was not finished, state = (\w+)")


def late_clients(server_log: str) -> Counter[str]:
    """Who made each xrun, by the server's own words: jackd logs each client that was not done
    when the next cycle began (``JackEngine::XRun: client = NAME was not finished, state =
    STATE``). The state tells whose fault it was: ``Triggered`` means the client was woken but
    the system had not yet run its thread (scheduling: the kernel, or a hypervisor that took
    the CPU); ``Running`` means its thread ran and had not finished (its own code: a callback
    too slow, or waiting for a lock such as Python's GIL)."""
    return Counter(f"{name} ({state})" for name, state in LATE_CLIENT.findall(server_log))


def server_figures(
    listener: Listener, xruns0: tuple[int, int], samples: list[tuple[int, int, int]], server_log: str
) -> dict:
    """The figures every row has: the server's xruns heard by the listener since ``xruns0``
    (cycles, notifications), the CPU stolen, the xruns of the calm seconds, and the late
    clients of ``server_log``."""
    stolen, calm_xruns, calm_seconds = steal_figures(samples)
    late = late_clients(server_log)
    return {
        "xruns (server)": listener.xruns - xruns0[0],
        "xrun notifications": listener.notifications - xruns0[1],
        "cpu stolen %": round(100 * stolen, 1),
        "xruns (server) in calm seconds": f"{calm_xruns} in {calm_seconds} s",
        "late clients (server log)": ", ".join(f"{name} {n}" for name, n in late.most_common()) or "none",
    }


FLOOR_CLIENT = "floor-sine"


def run_floor(args, tmp: Path) -> dict:
    """The machine's floor: the same server and listener with JACK's own C example clients
    (``jack_simple_client`` playing a sine into the listener, and ``jack_metro``) and no
    riffengine at all. Whatever clicks here, the machine makes: read every other row against
    this one."""
    server = JackServer(sample_rate=RATE, period=PERIOD, realtime=args.realtime)
    server.start()
    env = dict(os.environ, **server.env, JACK_NO_START_SERVER="1")
    sources = (f"{FLOOR_CLIENT}:output1", f"{FLOOR_CLIENT}:output2")
    listener = Listener(args.listener, server.name, args.seconds + 120, tmp, sources)
    listener.start()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "preexec_fn": args.as_usual}
    clients = [
        subprocess.Popen(["jack_simple_client", FLOOR_CLIENT], **quiet),
        subprocess.Popen(["jack_metro", "-b", "120", "-n", "floor-metro"], **quiet),
    ]
    try:
        deadline = time.monotonic() + 30.0
        while not listener.connect():
            if time.monotonic() > deadline or clients[0].poll() is not None:
                raise RuntimeError("jack_simple_client did not start (the Debian package jackd2 brings it)")
            time.sleep(0.2)
        time.sleep(2.0)
        first, xruns0, log0 = listener.cycles, (listener.xruns, listener.notifications), len(server.output())
        start = time.monotonic()
        samples = [(*cpu_ticks(), listener.xruns)]
        while time.monotonic() < start + args.seconds:
            time.sleep(1.0)
            samples.append((*cpu_ticks(), listener.xruns))
        row = {"load": "floor", "seconds": args.seconds}
        row.update(server_figures(listener, xruns0, samples, server.output()[log0:]))
        row["silence s"] = round(silence_seconds(listener.peaks[first : listener.cycles]), 3)
        return row
    finally:
        for client in clients:
            client.terminate()
            client.wait()
        listener.close()
        server.stop()


def run_load(args, load: str, model: str | None, tmp: Path) -> dict:
    server = JackServer(sample_rate=RATE, period=PERIOD, realtime=args.realtime)
    server.start()
    (tmp / "sitecustomize.py").write_text(ENGINE_LOAD)
    root = str(Path(__file__).resolve().parents[1])
    env = dict(
        os.environ,
        **server.env,
        JACK_NO_START_SERVER="1",
        PYTHONUNBUFFERED="1",
        RIFFENGINE_BENCH_LOAD=load,
        PYTHONPATH=os.pathsep.join([str(tmp), root, os.environ.get("PYTHONPATH", "")]),
    )
    port = free_port()
    http_port = free_port(socket.SOCK_STREAM) if args.browsers else None
    listener = Listener(args.listener, server.name, args.seconds + 120, tmp)
    listener.start()
    engines: list[subprocess.Popen] = []
    engine_xruns = engine_underruns = 0
    kills = 0
    sender = None
    browsers: list[subprocess.Popen] = []
    gains: list[float] = []
    panics: list[float] = []
    logs = tmp / f"engine-{load}.log"
    try:

        def start_engine(i: int) -> subprocess.Popen:
            events = tmp / f"events-{load}-{i}.jsonl"
            with open(logs, "a") as log:
                return subprocess.Popen(
                    engine_command(args, load, model, port, events, http_port),
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=args.as_usual,
                )

        engines.append(start_engine(0))
        deadline = time.monotonic() + args.warm_up
        while not listener.connect() or listener.peaks[: listener.cycles].max(initial=0) == 0:
            if time.monotonic() > deadline or engines[0].poll() is not None:
                raise RuntimeError(f"the engine did not start playing; see {logs}")
            time.sleep(0.2)
        if args.browsers:  # pages on the web surface for the whole measured run
            browsers = open_browsers(
                args.browsers, f"http://127.0.0.1:{http_port}/ui/", str(tmp), nice=False, back_to=args.usual_nice
            )
            time.sleep(5.0)  # the pages load and connect
        first = listener.cycles
        xruns0 = (listener.xruns, listener.notifications)
        server_log0 = len(server.output())
        sender = subprocess.Popen([sys.executable, "-c", SENDER, str(port), load], env=env, preexec_fn=args.as_usual)
        gain_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        from pythonosc.osc_message_builder import OscMessageBuilder

        def gain(db: float) -> None:
            b = OscMessageBuilder("/riff/gain")
            b.add_arg(float(db))
            gain_sock.sendto(b.build().dgram, ("127.0.0.1", port))

        start = time.monotonic()
        next_gain, next_kill = start + GAIN_EVERY / 2, start + args.kill_every
        next_panic = start + GAIN_EVERY / 2 + 2.0
        panic_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        panic_message = OscMessageBuilder("/riff/panic").build().dgram
        samples = [(*cpu_ticks(), listener.xruns)]
        next_sample = start + 1.0
        while (now := time.monotonic()) < start + args.seconds:
            if now >= next_sample:
                samples.append((*cpu_ticks(), listener.xruns))
                next_sample += 1.0
            if now >= next_gain:
                gains.append(time.monotonic())
                gain(-60.0)
                time.sleep(0.5)
                gain(0.0)
                next_gain += GAIN_EVERY
            if not args.inline and now >= next_panic:
                panics.append(time.monotonic())
                panic_sock.sendto(panic_message, ("127.0.0.1", port))
                next_panic += PANIC_EVERY
            if load == "e" and now >= next_kill:
                if args.inline:  # one process: a service manager starts a new one
                    engines[-1].send_signal(signal.SIGKILL)
                    engines[-1].wait()
                    engines.append(start_engine(len(engines)))
                else:  # the engine under the host: the host starts a new one
                    os.kill(engine_pid(engines[-1], False), signal.SIGKILL)
                    kills += 1
                next_kill += args.kill_every
            time.sleep(0.05)
        samples.append((*cpu_ticks(), listener.xruns))
        peaks = listener.peaks[first : listener.cycles]
        figures = server_figures(listener, xruns0, samples, server.output()[server_log0:])
        takeovers: list[float] = []
        for i in range(len(engines)):
            x, u = engine_counts(tmp / f"events-{load}-{i}.jsonl")
            engine_xruns += x
            engine_underruns += u
            takeovers += takeover_seconds(tmp / f"events-{load}-{i}.jsonl")
        latencies = gain_latencies(listener, gains)
        panic_heard = panic_latencies([tmp / f"events-{load}-{i}.jsonl" for i in range(len(engines))], panics)
    finally:
        if sender is not None:
            sender.kill()
            sender.wait()
        for browser in browsers:
            browser.terminate()
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
        for proc in engines:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        listener.close()
        server.stop()
    return {
        "load": load,
        "seconds": args.seconds,
        **figures,
        "xruns (engine)": engine_xruns,
        "underruns (engine)": engine_underruns,
        "silence s": round(silence_seconds(peaks), 3),
        "gain heard ms (median, max)": (
            f"{1000 * float(np.median(latencies)):.1f}, {1000 * max(latencies):.1f}" if latencies else "n/a"
        ),
        "panic heard ms (median, max, heard/sent)": (
            f"{1000 * float(np.median(panic_heard)):.1f}, {1000 * max(panic_heard):.1f}, "
            f"{len(panic_heard)}/{len(panics)}"
            if panic_heard
            else "n/a"
        ),
        "engines started": len(engines) + kills,
        "takeover s (max)": round(max(takeovers), 1) if takeovers else "n/a",
        "browsers": args.browsers,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--fake", action="store_true", help="the fake renderer (default)")
    kind.add_argument("--tiny", action="store_true", help="the tiny random model on the CPU")
    parser.add_argument("--steps", type=int, default=4, help="diffusion steps with --tiny")
    parser.add_argument("--seconds", type=float, default=600.0, help="per load (default 600)")
    parser.add_argument("--loads", default="a,b,c,d,e", help="comma list of floor,quiet,a,b,c,d,e")
    parser.add_argument("--warm-up", type=float, default=180.0, help="seconds allowed to start")
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between kills (load e)")
    parser.add_argument("--keep", metavar="DIR", help="keep the engines' events logs and output here")
    parser.add_argument(
        "--browsers", type=int, default=0, help="headless Chromium pages on the web surface during each load"
    )
    parser.add_argument(
        "--realtime", action="store_true", help="run jackd with real-time scheduling (needs the right to SCHED_FIFO)"
    )
    parser.add_argument(
        "--inline", action="store_true", help="the engine in one process (--no-host), as before the audio host"
    )
    args = parser.parse_args()
    random.seed(1)
    # The listener is an instrument, written in C so that it is not itself the late client.
    # It (and the JACK server) runs at the audio priority; what is started to be measured
    # (engines, the load sender, browsers) at the usual one.
    args.usual_nice = priority.raise_priority()
    args.as_usual = priority.child_priority(args.usual_nice)
    with tempfile.TemporaryDirectory(prefix="riffengine-xruns-") as folder:
        tmp = Path(args.keep) if args.keep else Path(folder)
        tmp.mkdir(parents=True, exist_ok=True)
        model = None
        if args.tiny:
            model = str(tmp / "tiny")
            subprocess.run(
                [sys.executable, "-m", "riffengine.cli", "tiny-model", model], check=True, stdout=subprocess.DEVNULL
            )
        args.show = bank_safe_loop(tmp, args.steps)
        args.listener = build_listener(tmp)
        print(
            f"period {PERIOD} frames = {PERIOD / RATE * 1000:.2f} ms; renderer "
            f"{'tiny model, ' + str(args.steps) + ' steps' if model else 'fake'}; {args.seconds:g} s a load"
        )
        rows = []
        for load in [x.strip() for x in args.loads.split(",") if x.strip()]:
            row = run_floor(args, tmp) if load == "floor" else run_load(args, load, model, tmp)
            rows.append(row)
            print(" | ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
