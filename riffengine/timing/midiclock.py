"""MIDI clock in and out (24 pulses per quarter note, Start/Continue/Stop, Song Position).

Clock in (:class:`MidiClockIn`): clock from cheap gear jitters by milliseconds, and a JACK or
ALSA port delivers it in per-period bursts. Each tick's arrival time goes through a
second-order delay-locked loop (:func:`dll_update`), whose smoothed period gives the tempo and
whose predicted tick times give the bar phase. Start sets the song position to 0 (the next
clock is the downbeat of bar 0), Song Position Pointer sets it to ``6 * spp`` ticks, Continue
resumes from there, Stop halts the position count (the tempo is still followed).

Clock out (:class:`MidiClockOut`): a thread sends one clock per 1/24 beat of riffengine's own
tempo map, at the host time at which that beat's frame reaches the DAC
(:func:`tick_frame` + :class:`~riffengine.timing.sources.FrameClock`), plus Start (on a bar line)
and Stop. It never runs in, or waits for, the audio callback.

Thread rules: the input's callback runs on the MIDI backend's thread (for JACK, the JACK
process thread): it stamps the time, updates the DLL under a short lock and returns. Readers
(:meth:`MidiClockIn.reading`) take the same lock. The output has its own thread; its public
methods may be called from any thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mido

from riffengine.errors import UserError
from riffengine.timing.sources import FrameClock, SyncReading
from riffengine.timing.tempo import TempoMap

log = logging.getLogger(__name__)

PPQN = 24
"""MIDI clock pulses per quarter note (one beat)."""
SPP_TICKS = 6
"""Clock ticks per Song Position Pointer unit (a 16th note)."""
DEFAULT_BANDWIDTH_HZ = 0.5
"""DLL bandwidth: lower rejects more jitter, higher follows tempo changes faster."""
TEMPO_WINDOW = 4 * PPQN
"""Pulses over which the loop's predicted times are averaged into the reported tempo."""
VIRTUAL = "virtual:"
DEFAULT_BACKEND = "mido.backends.rtmidi"


# --- the delay-locked loop (pure) ---------------------------------------------------------


@dataclass(frozen=True)
class Dll:
    """State of a second-order DLL tracking a pulse train.

    ``next_time``: the predicted time of the next pulse; ``period``: the smoothed period;
    ``b``, ``c``: loop gains; ``pulses``: pulses since the loop was (re)started;
    ``error``: a smoothed absolute timing error (seconds), for lock detection.
    """

    next_time: float
    period: float
    b: float
    c: float
    pulses: int = 0
    error: float = 0.0


def dll_gains(bandwidth_hz: float, period: float) -> tuple[float, float]:
    """Loop gains ``(b, c)`` for a critically damped loop of ``bandwidth_hz`` at ``period``."""
    omega = 2.0 * math.pi * bandwidth_hz * period
    return math.sqrt(2.0) * omega, omega * omega


def dll_start(t: float, period: float, bandwidth_hz: float = DEFAULT_BANDWIDTH_HZ) -> Dll:
    """A loop that has just seen a pulse at ``t`` and expects the next one ``period`` later."""
    b, c = dll_gains(bandwidth_hz, period)
    return Dll(next_time=t + period, period=period, b=b, c=c, pulses=1, error=0.0)


def dll_update(dll: Dll, t: float) -> Dll:
    """The loop after a pulse measured at ``t``: phase corrected by ``b * e``, period by ``c * e``."""
    e = t - dll.next_time
    period = dll.period + dll.c * e
    return Dll(
        next_time=dll.next_time + dll.b * e + dll.period,
        period=period,
        b=dll.b,
        c=dll.c,
        pulses=dll.pulses + 1,
        error=dll.error + 0.05 * (abs(e) - dll.error),
    )


def window_period(times: Sequence[float]) -> float:
    """Mean interval of a run of pulse times (the slope of the loop's predictions): the
    reported tempo, steadier than the loop's instantaneous ``period``."""
    return (times[-1] - times[0]) / (len(times) - 1)


def dll_locked(dll: Dll, min_pulses: int = 2 * PPQN, max_error: float = 0.25) -> bool:
    """True once the loop has seen ``min_pulses`` and its smoothed error is below
    ``max_error`` periods."""
    return dll.pulses >= min_pulses and dll.error < max_error * dll.period


def bpm_from_period(period: float) -> float:
    """Tempo (BPM) of a 24 ppqn clock with pulse ``period`` seconds."""
    return 60.0 / (PPQN * period)


def period_from_bpm(bpm: float) -> float:
    """Pulse period (seconds) of a 24 ppqn clock at ``bpm``."""
    return 60.0 / (PPQN * bpm)


def bar_start_time(next_time: float, next_tick: int, period: float, beats_per_bar: int) -> float:
    """Host time of the start of the bar containing tick ``next_tick``, expected at ``next_time``."""
    ticks_per_bar = PPQN * beats_per_bar
    return next_time - (next_tick % ticks_per_bar) * period


# --- the tick schedule for clock out (pure) ------------------------------------------------


def tick_frame(tempo: TempoMap, tick: int) -> float:
    """Output frame (fractional) of clock tick ``tick``: the frame where beat ``tick / 24`` falls."""
    return tempo.anchor_frame + (tick / PPQN - tempo.anchor_beat) * tempo.frames_per_beat()


def first_tick_at_or_after(tempo: TempoMap, frame: float) -> int:
    """The first tick whose frame is ``frame`` or later."""
    tick = math.ceil(tempo.beat_at(frame) * PPQN - 1e-9)
    while tick_frame(tempo, tick) < frame - 1e-6:
        tick += 1
    return tick


def tick_schedule(tempo: TempoMap, start_frame: float, end_frame: float) -> list[float]:
    """Frames of every tick in ``[start_frame, end_frame)``."""
    tick = first_tick_at_or_after(tempo, start_frame)
    frames = []
    while (f := tick_frame(tempo, tick)) < end_frame:
        frames.append(f)
        tick += 1
    return frames


def bar_tick(tempo: TempoMap, frame: float) -> int:
    """The tick on the first bar line at or after ``frame`` (where a Start should land)."""
    bar_frame = tempo.bar_line_at_or_after(math.ceil(frame))
    return round(tempo.beat_at(bar_frame) * PPQN)


# --- ports ---------------------------------------------------------------------------------


def _backend(name: str) -> Any:
    try:
        return mido.Backend(name, load=True)
    except Exception as exc:
        raise UserError(f"MIDI backend {name!r} is not usable ({exc}): pick rtmidi, UNIX_JACK or LINUX_ALSA") from None


def _open(backend: Any, port: str, output: bool, callback: Callable[[Any], None] | None = None) -> Any:
    """Open ``port`` (a name, a unique part of one, or ``virtual:NAME``) for input or output."""
    kind = "output" if output else "input"
    opener = backend.open_output if output else backend.open_input
    kwargs = {} if output else {"callback": callback}
    if port.startswith(VIRTUAL):
        name = port[len(VIRTUAL) :]
        if not name:
            raise UserError(f"MIDI clock {kind} {port!r}: virtual: needs a name, e.g. virtual:riffengine-clock")
        return opener(name, virtual=True, **kwargs)
    names = backend.get_output_names() if output else backend.get_input_names()
    found = [n for n in names if n == port] or [n for n in names if port.lower() in n.lower()]
    if not found:
        listed = ", ".join(names) or "none"
        raise UserError(
            f"MIDI clock {kind} {port!r} not found (ports: {listed}): give one of them, or "
            f"virtual:NAME to create a port"
        )
    return opener(found[0], **kwargs)


# --- clock in ------------------------------------------------------------------------------


class MidiClockIn:
    """Follows 24 ppqn MIDI clock from ``port`` (a tempo source for :class:`TempoSync`)."""

    name = "midi"
    bpm_step = 0.1
    """The reported tempo still wanders by a few hundredths of a BPM with jitter: the store
    only follows moves of at least this much (the bar phase is followed exactly regardless)."""

    def __init__(
        self,
        port: str,
        beats_per_bar: int,
        frame_clock: FrameClock,
        backend: str = DEFAULT_BACKEND,
        bandwidth_hz: float = DEFAULT_BANDWIDTH_HZ,
        timeout: float = 0.5,
    ) -> None:
        self.port_spec = port
        self.beats_per_bar = beats_per_bar
        self.frame_clock = frame_clock
        self.backend = backend
        self.bandwidth_hz = bandwidth_hz
        self.timeout = timeout
        self.ticks = 0
        self.resets = 0
        self._lock = threading.Lock()
        self._dll: Dll | None = None
        self._warmup: list[float] = []
        self._times: deque[float] = deque(maxlen=TEMPO_WINDOW + 1)
        self._last_seen = 0.0
        self._next_tick = 0  # song position (ticks) of the next clock to arrive
        self._running = False
        self._phase_known = False
        self._big_errors = 0
        self._port: Any = None  # a mido input port (mido has no type information)

    def start(self) -> None:
        """Open the port; UserError if it does not exist."""
        self._port = _open(_backend(self.backend), self.port_spec, output=False, callback=self._receive)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.close()

    # MIDI thread ------------------------------------------------------------------------

    def _receive(self, msg: mido.Message) -> None:
        """Backend thread: stamp and count. Never blocks for long; never raises."""
        t = time.monotonic()
        try:
            with self._lock:
                self.handle(msg.type, t, getattr(msg, "pos", 0))
        except Exception:  # a bug here must not kill the MIDI thread
            log.exception("MIDI clock input failed on %s", msg)

    def handle(self, kind: str, t: float, pos: int = 0) -> None:
        """Apply one message of type ``kind`` received at host time ``t`` (caller holds the
        lock, or owns the object, as in tests)."""
        if kind == "clock":
            self._clock(t)
        elif kind == "start":
            self._next_tick = 0
            self._running = True
            self._phase_known = True
        elif kind == "continue":
            self._running = True
            self._phase_known = True
        elif kind == "stop":
            self._running = False
        elif kind == "songpos":
            self._next_tick = pos * SPP_TICKS

    def _clock(self, t: float) -> None:
        self.ticks += 1
        if self._running:
            self._next_tick += 1
        dll = self._dll
        if dll is not None and t - self._last_seen > 4 * dll.period:
            self._restart()  # the clock paused
            dll = None
        self._last_seen = t
        if dll is None:
            # warm up on one beat of raw ticks: a port delivering in bursts makes single
            # intervals useless as a first guess
            self._warmup.append(t)
            if len(self._warmup) > PPQN:
                period = window_period(self._warmup)
                if period > 0:
                    self._dll = dll_start(t, period, self.bandwidth_hz)
                    self._times.clear()
                    self._times.append(self._dll.next_time)
                self._warmup.clear()
            return
        e = t - dll.next_time
        self._big_errors = self._big_errors + 1 if abs(e) > 0.75 * dll.period else 0
        if self._big_errors >= 3:  # a tempo jump the loop cannot follow: start again
            self._restart()
            self._warmup.append(t)
            self.resets += 1
            return
        self._dll = dll_update(dll, t)
        self._times.append(self._dll.next_time)

    def _restart(self) -> None:
        self._dll = None
        self._big_errors = 0
        self._warmup = []

    # readers ----------------------------------------------------------------------------

    @property
    def locked(self) -> bool:
        with self._lock:
            dll = self._dll
            return dll is not None and dll_locked(dll) and time.monotonic() - self._last_seen < self.timeout

    @property
    def playing(self) -> bool:
        return self._running

    def estimate(self) -> tuple[float, float, bool] | None:
        """``(bpm, bar_start_host_time, phase_known)`` or None before the loop started."""
        with self._lock:
            dll = self._dll
            if dll is None:
                return None
            start = bar_start_time(dll.next_time, self._next_tick, dll.period, self.beats_per_bar)
            period = window_period(self._times) if len(self._times) > 1 else dll.period
            return bpm_from_period(period), start, self._phase_known

    def reading(self) -> SyncReading | None:
        est = self.estimate()
        if est is None:
            return None
        bpm, bar_time, phase_known = est
        return SyncReading(
            bpm=bpm,
            bar_frame=self.frame_clock.frame_at(bar_time),
            beats_per_bar=self.beats_per_bar,
            sample_rate=self.frame_clock.sample_rate,
            locked=self.locked,
            phase_known=phase_known,
            playing=self._running,
        )

    def publish_tempo(self, bpm: float) -> None:
        """MIDI clock in is the master: a local tempo change cannot move it (logged)."""
        log.info("tempo %.2f set locally while following MIDI clock: the clock wins", bpm)


# --- clock out -----------------------------------------------------------------------------


class MidiClockOut:
    """Sends 24 ppqn clock, Start and Stop to ``port`` from its own thread.

    ``tempo_at(frame)`` returns the tempo map in force at an output frame (the timeline's
    ``tempo_at``); it is called from the clock thread and must only read immutable data.
    Each tick goes out at ``frame_clock.time_at(tick_frame(...)) - lead`` (``lead`` seconds
    early, to make up for a port's own latency). ``time.sleep`` sets the precision (about
    0.1 ms on Linux); a tick found more than ``max_late`` late (the machine stalled, or the
    tempo map jumped) is skipped, not sent in a burst.
    """

    def __init__(
        self,
        port: str,
        tempo_at: Callable[[int], TempoMap],
        frame_clock: FrameClock,
        backend: str = DEFAULT_BACKEND,
        lead: float = 0.0,
        max_late: float = 0.05,
    ) -> None:
        self.port_spec = port
        self.tempo_at = tempo_at
        self.frame_clock = frame_clock
        self.backend = backend
        self.lead = lead
        self.max_late = max_late
        self.sent = 0
        self.skipped = 0
        self._port: Any = None  # a mido output port (mido has no type information)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._commands: list[str] = []
        self._commands_lock = threading.Lock()
        self.playing = False

    def start(self) -> MidiClockOut:
        """Open the port and start sending clock (transport stopped until :meth:`play`)."""
        self._port = _open(_backend(self.backend), self.port_spec, output=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="riffengine-midi-clock-out", daemon=True)
        self._thread.start()
        return self

    def play(self) -> None:
        """Send Start just before the tick on the next bar line."""
        with self._commands_lock:
            self._commands.append("start")

    def stop_transport(self) -> None:
        """Send Stop before the next tick."""
        with self._commands_lock:
            self._commands.append("stop")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        port, self._port = self._port, None
        if port is not None:
            port.close()

    def _run(self) -> None:
        clock = mido.Message("clock")
        start_tick: int | None = None
        frame = self.frame_clock.now_frame()
        tick = first_tick_at_or_after(self.tempo_at(int(frame)), frame)
        while not self._stop.is_set():
            tempo = self.tempo_at(int(tick_frame(self.tempo_at(int(frame)), tick)))
            frame = tick_frame(tempo, tick)
            with self._commands_lock:
                commands, self._commands = self._commands, []
            for command in commands:
                if command == "start":
                    start_tick = bar_tick(tempo, frame)
                elif command == "stop" and (self.playing or start_tick is not None):
                    self._port.send(mido.Message("stop"))
                    self.playing = False
                    start_tick = None
            wait = self.frame_clock.time_at(frame) - self.lead - time.monotonic()
            if wait > 0.1:  # far ahead: look at commands and the tempo map again soon
                self._stop.wait(0.1)
                continue
            if wait > 0:
                time.sleep(wait)
            elif -wait > self.max_late:
                now = self.frame_clock.now_frame()
                tick = first_tick_at_or_after(self.tempo_at(int(now)), now)
                self.skipped += 1
                continue
            if start_tick is not None and tick > start_tick:  # missed that bar line: take the next
                start_tick = bar_tick(tempo, frame)
            if start_tick is not None and tick == start_tick:
                self._port.send(mido.Message("start"))
                self.playing = True
                start_tick = None
            self._send(clock)
            tick += 1

    def _send(self, msg: mido.Message) -> None:
        self._port.send(msg)
        self.sent += 1
