"""Tempo sync benchmark: how far riffengine's bar starts land from the reference clock's bars.

For each source it runs riffengine's side as the engine would: a :class:`TempoSync` polled every
50 ms, a tempo map that starts on a reference bar (``aligned_map``) and, half a second before
each loop seam, takes the loop tempo that lands the next seam on a reference bar
(``loop_bpm_to_align``). Every riffengine bar start (a whole output frame, converted to host time
by the frame clock) is compared with the reference's bar start nearest to it:

- ``link``: a second Link peer, a plain aalink script in another process, at 124 BPM, moved to
  127 BPM halfway; its bar starts come from its own Link clock and beat.
- ``midi``: 24 ppqn clock through a JACK MIDI port (private JACK dummy server) at 120 BPM,
  each tick jittered by up to +-2 ms (seeded); its bar starts are the un-jittered send times.
- ``clock-out``: riffengine as the master; a JACK MIDI port receives its clock and Start, and
  the bar ticks' arrival times are compared with riffengine's bar starts.

The output is free running here (frame 0 at start, exactly ``--rate`` frames per second of
``time.monotonic``): a sound card's drift against the host clock is what the frame clock's DAC
mapping and the per-loop alignment take up in a real run.

    .venv/bin/python bench/sync.py --seconds 180          # default: 3 minutes per source
    .venv/bin/python bench/sync.py --seconds 20 --sources midi
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from riffengine.state import initial_state  # noqa: E402
from riffengine.store import StateStore  # noqa: E402
from riffengine.timing.midiclock import PPQN, MidiClockIn, MidiClockOut, period_from_bpm  # noqa: E402
from riffengine.timing.sources import FrameClock, TempoSync, aligned_map, loop_bpm_to_align  # noqa: E402
from riffengine.timing.tempo import TempoMap  # noqa: E402

JACK_BACKEND = "mido.backends.rtmidi/UNIX_JACK"
BARS = 2


def offset_ms(ours: float, theirs: float, bar: float) -> float:
    return ((ours - theirs + bar / 2) % bar - bar / 2) * 1000.0


def summary(name: str, offsets: list[float]) -> str:
    if not offsets:
        return f"{name:10s} no bars measured"
    a = [abs(x) for x in offsets]
    return (
        f"{name:10s} bars {len(offsets):4d}  offset median {statistics.median(a):7.3f} ms  "
        f"max {max(a):7.3f} ms  (signed mean {statistics.fmean(offsets):+.3f} ms)"
    )


async def follow(sync: TempoSync, frame_clock: FrameClock, seconds: float, reference_bar, on_tick=None) -> list[float]:
    """Run the engine side for ``seconds``; ``reference_bar(t)`` gives the reference bar start
    (host time) nearest ``t`` and its bar length."""
    reading = None
    while reading is None or not reading.locked or not reading.phase_known:
        await asyncio.sleep(0.05)
        reading = sync.poll()
    tempo = aligned_map(reading, int(frame_clock.now_frame()) + reading.sample_rate)
    seam = tempo.anchor_frame
    offsets: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if on_tick is not None:
            on_tick()
        reading = sync.poll() or reading
        now = frame_clock.now_frame()
        if now > seam - 0.5 * frame_clock.sample_rate:  # plan the next loop half a second ahead
            bpm = loop_bpm_to_align(reading, seam, BARS)
            tempo = tempo.with_tempo(bpm, seam)
            seam += tempo.loop_frames(BARS)
        # every riffengine bar line that has just been "heard"
        for bar_frame in bar_lines_between(tempo, now - 0.05 * frame_clock.sample_rate, now):
            ours = frame_clock.time_at(bar_frame)
            theirs, bar = reference_bar(ours)
            offsets.append(offset_ms(ours, theirs, bar))
        await asyncio.sleep(0.05)
    return offsets


def bar_lines_between(tempo: TempoMap, start: float, end: float) -> list[int]:
    out, frame = [], tempo.bar_line_at_or_after(int(start) + 1)
    while frame <= end:
        out.append(frame)
        frame = tempo.next_bar_frame(frame)
    return out


# --- link ------------------------------------------------------------------------------------


def bench_link(seconds: float, rate: int) -> list[float]:
    from link_fixtures import Peer

    from riffengine.timing.link import LinkFollower

    peer = Peer()
    peer.ask("tempo 124")

    def reference_bar(t: float) -> tuple[float, float]:
        _, tempo, bar_start = peer.report()
        bar = 240.0 / tempo
        return bar_start + round((t - bar_start) / bar) * bar, bar

    async def run() -> list[float]:
        frame_clock = FrameClock.free_running(rate)
        sync = TempoSync(StateStore(initial_state()), lambda n: LinkFollower(120.0, 4, frame_clock), "link")
        while not sync.locked:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # Link measures the peers' clock offset after they meet
        changed = []

        def halfway() -> None:
            if not changed and time.monotonic() > start + seconds / 2:
                peer.ask("tempo 127")
                changed.append(True)

        start = time.monotonic()
        try:
            return await follow(sync, frame_clock, seconds, reference_bar, halfway)
        finally:
            sync.close()

    try:
        return asyncio.run(run())
    finally:
        peer.close()


# --- midi clock in ---------------------------------------------------------------------------


def send_clock(port, bpm: float, stop: threading.Event, starts: list[float]) -> None:
    import mido

    rng = random.Random(6)
    clock, period = mido.Message("clock"), period_from_bpm(bpm)
    t = time.monotonic() + 0.2
    port.send(mido.Message("start"))
    tick = 0
    while not stop.is_set():
        if tick % (4 * PPQN) == 0:
            starts.append(t)
        delay = t + rng.uniform(-0.002, 0.002) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        port.send(clock)
        tick += 1
        t += period


def bench_midi(seconds: float, rate: int) -> list[float]:
    import mido

    backend = mido.Backend(JACK_BACKEND, load=True)
    sender = backend.open_output("bench-clock", virtual=True)
    starts: list[float] = []
    stop = threading.Event()
    thread = threading.Thread(target=send_clock, args=(sender, 120.0, stop, starts), daemon=True)

    def reference_bar(t: float) -> tuple[float, float]:
        bar = 2.0
        first = starts[0]
        return first + round((t - first) / bar) * bar, bar

    async def run() -> list[float]:
        frame_clock = FrameClock.free_running(rate)
        sync = TempoSync(
            StateStore(initial_state()),
            lambda n: MidiClockIn("bench-clock", 4, frame_clock, backend=JACK_BACKEND),
            "midi",
        )
        thread.start()
        try:
            return await follow(sync, frame_clock, seconds, reference_bar)
        finally:
            sync.close()

    try:
        return asyncio.run(run())
    finally:
        stop.set()
        thread.join()
        sender.close()


# --- midi clock out --------------------------------------------------------------------------


def bench_clock_out(seconds: float, rate: int) -> list[float]:
    import mido

    backend = mido.Backend(JACK_BACKEND, load=True)
    arrivals: list[tuple[str, float]] = []
    listener = backend.open_input(
        "bench-listener", virtual=True, callback=lambda m: arrivals.append((m.type, time.monotonic()))
    )
    frame_clock = FrameClock.free_running(rate)
    tempo = TempoMap(120.0, sample_rate=rate)
    out = MidiClockOut("bench-listener", lambda f: tempo, frame_clock, backend=JACK_BACKEND)
    out.start()
    time.sleep(0.3)
    out.play()
    time.sleep(seconds)
    out.close()
    listener.close()
    kinds = [k for k, _ in arrivals]
    first = kinds.index("start")
    ticks = [t for k, t in arrivals[first:] if k == "clock"]
    offsets = []
    bar = tempo.bar_frames / rate
    for i in range(0, len(ticks), 4 * PPQN):  # the tick after Start is a downbeat, then every bar
        ours = frame_clock.time_at(tempo.bar_frame(tempo.bar_at(int(frame_clock.frame_at(ticks[i])) + rate // 4)))
        offsets.append(offset_ms(ticks[i], ours, bar))
    return offsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="time per source (default 180)")
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--sources", default="link,midi,clock-out")
    args = parser.parse_args()
    wanted = args.sources.split(",")
    results = []
    if "link" in wanted:
        results.append(summary("link", bench_link(args.seconds, args.rate)))
    jack_wanted = [s for s in wanted if s in ("midi", "clock-out")]
    if jack_wanted:
        from riffengine.audio.jackserver import JackServer

        with JackServer(sample_rate=args.rate, period=256) as server:
            os.environ.update(server.env)
            if "midi" in wanted:
                results.append(summary("midi", bench_midi(args.seconds, args.rate)))
            if "clock-out" in wanted:
                results.append(summary("clock-out", bench_clock_out(args.seconds, args.rate)))
    print(f"{args.seconds:g} s per source, {BARS}-bar loops, {args.rate} Hz")
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
