"""Tempo sources: one at a time (``internal``, ``link`` or ``midi``), switchable live.

The master clock stays the output stream's frame counter. A follower (Link, MIDI clock in)
only *reads* a reference and reports it as a :class:`SyncReading` in output frames: the
reference tempo and one output frame on which a reference bar starts. :class:`TempoSync`
turns readings into store changes (``bpm``, with source ``"link"`` or ``"midi"``), and the pure
functions below turn them into tempo maps and loop tempos whose bar lines land on the
reference's bar lines. Nothing here schedules audio.

Host time is ``time.monotonic()`` seconds everywhere in this package. :class:`FrameClock`
converts between it and output frames from the output's DAC time/frame pair (kept by
:class:`riffengine.audio.output.DeviceOutput` in its callback), never from when a coroutine
happens to wake up.

Thread rules: :class:`TempoSync` and the store live on the asyncio loop's thread.
:class:`FrameClock` may be read from any thread (the MIDI clock-out thread uses it).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from riffengine.control.params import TEMPO_SOURCES, param
from riffengine.errors import UserError
from riffengine.timing.tempo import TempoMap, bar_frames_for

log = logging.getLogger(__name__)

BPM_STEP = 0.01
"""A followed tempo that moved by less than this (BPM) is not written to the store again
(a source may set its own ``bpm_step``)."""
STATE_BPM_RANGE = param("bpm").bounds
"""The ``bpm`` parameter's range: followed tempos outside it are clamped, with a warning."""


# --- readings and the pure grid math ------------------------------------------------------


@dataclass(frozen=True)
class SyncReading:
    """A follower's view of its reference at one moment, in output frames.

    ``bar_frame`` is an output frame (fractional) on which a reference bar starts; the others
    follow every ``bar_length`` frames. ``phase_known`` is False when only the tempo is known
    (MIDI clock without Start or Song Position). ``playing`` is the reference's transport, or
    None when it has none.
    """

    bpm: float
    bar_frame: float
    beats_per_bar: int
    sample_rate: int
    locked: bool
    phase_known: bool = True
    playing: bool | None = None

    @property
    def bar_length(self) -> float:
        """Frames per reference bar (fractional)."""
        return self.sample_rate * 60.0 * self.beats_per_bar / self.bpm


def reference_bar_near(reading: SyncReading, frame: float) -> float:
    """The reference bar line (output frame, fractional) nearest to ``frame``."""
    k = round((frame - reading.bar_frame) / reading.bar_length)
    return reading.bar_frame + k * reading.bar_length


def reference_bar_after(reading: SyncReading, frame: float) -> float:
    """The first reference bar line strictly after ``frame``."""
    k = math.floor((frame - reading.bar_frame) / reading.bar_length) + 1
    return reading.bar_frame + k * reading.bar_length


def phase_offset_frames(tempo: TempoMap, reading: SyncReading, frame: int) -> float:
    """Signed distance (frames) from the reference's bar line to riffengine's, near ``frame``.

    Positive: riffengine's bars start late. Wrapped to within half a reference bar.
    """
    ours = tempo.bar_frame(round(tempo.bar_position(frame)))
    offset = ours - reference_bar_near(reading, ours)
    half = reading.bar_length / 2.0
    return (offset + half) % reading.bar_length - half


def aligned_map(reading: SyncReading, near_frame: int, bar: int = 0) -> TempoMap:
    """A tempo map at the reference tempo whose bar ``bar`` starts on the reference bar line
    nearest ``near_frame`` (rounded to a whole frame). For starting the timeline in phase."""
    start = round(reference_bar_near(reading, near_frame))
    return TempoMap(
        bpm=reading.bpm,
        beats_per_bar=reading.beats_per_bar,
        sample_rate=reading.sample_rate,
        anchor_frame=start,
        anchor_beat=float(bar * reading.beats_per_bar),
        anchor_bar=float(bar),
    )


def loop_bpm_to_align(reading: SyncReading, seam_frame: int, bars: int, max_change: float = 0.02) -> float:
    """Tempo for a loop of ``bars`` bars starting at ``seam_frame`` whose end lands on a
    reference bar line (within ``bars / 2`` frames, the whole-frame grid's rounding).

    The loop aims at the reference bar line nearest ``seam_frame + bars * bar_length``; the
    stretch is limited to ``max_change`` (2 %) of the reference tempo, so a big phase error is
    taken up over several loops instead of one audible lurch.
    """
    target = reference_bar_near(reading, seam_frame + bars * reading.bar_length)
    frames = (target - seam_frame) / bars
    nominal = reading.bar_length
    frames = min(max(frames, nominal * (1 - max_change)), nominal * (1 + max_change))
    bar = max(1, round(frames))
    bpm = reading.sample_rate * 60.0 * reading.beats_per_bar / bar
    # bar_frames_for(bpm) gives back ``bar`` exactly; guard against float edge cases.
    if bar_frames_for(bpm, reading.sample_rate, reading.beats_per_bar) != bar:
        bpm = reading.sample_rate * 60.0 * reading.beats_per_bar / (bar - 0.25)
    return bpm


def clamp_state_bpm(bpm: float) -> float:
    """``bpm`` limited to the ``bpm`` parameter's range."""
    return min(max(bpm, STATE_BPM_RANGE[0]), STATE_BPM_RANGE[1])


# --- output frames <-> host time -----------------------------------------------------------


class FrameClock:
    """Converts output frames to host time (``time.monotonic()``) and back.

    ``read_dac()`` returns ``(dac_time, dac_frame)``: the stream time at which ``dac_frame``
    reached (or will reach) the DAC. ``stream_now()`` reads the same stream clock now; the
    offset between it and ``time.monotonic()`` is measured by paired reads and smoothed, so
    PortAudio's stream clock need not be the monotonic clock. Safe from any thread (it only
    reads attributes the audio callback writes and keeps a float of its own).
    """

    def __init__(
        self,
        sample_rate: int,
        read_dac: Callable[[], tuple[float, int]],
        stream_now: Callable[[], float] | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self._read_dac = read_dac
        self._stream_now = stream_now
        self._offset: float | None = None  # monotonic - stream time

    @classmethod
    def free_running(cls, sample_rate: int, start: float | None = None) -> FrameClock:
        """A clock whose frame 0 is at monotonic time ``start`` (now) and runs at exactly
        ``sample_rate``: for tests, benchmarks and outputs with no DAC time."""
        t0 = time.monotonic() if start is None else start
        return cls(sample_rate, lambda: (t0, 0), None)

    @classmethod
    def for_output(cls, output) -> FrameClock:
        """The clock of a running :class:`~riffengine.audio.output.DeviceOutput`.

        A file output has no real-time clock: following Link or MIDI clock makes no sense
        there, hence the UserError.
        """
        if not getattr(output, "realtime", False) or not hasattr(output, "last_dac_time"):
            raise UserError(
                "tempo.source link/midi needs a real-time output (a sound card or jack), not a "
                "file: set tempo.source: internal to render to a file"
            )

        def read_dac() -> tuple[float, int]:
            for _ in range(3):  # the callback writes the frame, then the time: re-read a torn pair
                t1 = output.last_dac_time
                frame = output.last_dac_frame
                if output.last_dac_time == t1 and output.last_dac_frame == frame:
                    return t1, frame
            return output.last_dac_time, output.last_dac_frame

        def stream_now() -> float:
            stream = getattr(output, "_stream", None)
            return stream.time if stream is not None else time.monotonic()

        return cls(output.sample_rate, read_dac, stream_now)

    def _stream_offset(self) -> float:
        if self._stream_now is None:
            return 0.0
        stream_now = self._stream_now
        span, measured = math.inf, 0.0
        for _ in range(3):  # keep the tightest of three paired reads
            m0 = time.monotonic()
            s = stream_now()
            m1 = time.monotonic()
            if m1 - m0 < span:
                span, measured = m1 - m0, (m0 + m1) / 2.0 - s
        if self._offset is None or abs(measured - self._offset) > 0.005:
            self._offset = measured
        else:
            self._offset += 0.05 * (measured - self._offset)
        return self._offset

    def time_at(self, frame: float) -> float:
        """Host time (monotonic seconds) at which output frame ``frame`` reaches the DAC."""
        dac_time, dac_frame = self._read_dac()
        return dac_time + self._stream_offset() + (frame - dac_frame) / self.sample_rate

    def frame_at(self, t: float) -> float:
        """Output frame (fractional) that reaches the DAC at host time ``t``."""
        dac_time, dac_frame = self._read_dac()
        return dac_frame + (t - dac_time - self._stream_offset()) * self.sample_rate

    def now_frame(self) -> float:
        """The frame reaching the DAC now."""
        return self.frame_at(time.monotonic())


# --- sources ----------------------------------------------------------------------------


class TempoSource(Protocol):
    """What a follower offers :class:`TempoSync` (used on the loop's thread)."""

    name: str

    def start(self) -> None: ...

    def close(self) -> None: ...

    def reading(self) -> SyncReading | None: ...

    @property
    def locked(self) -> bool: ...

    def publish_tempo(self, bpm: float) -> None: ...


class InternalSource:
    """riffengine is the tempo master: no reference to follow, always locked."""

    name = "internal"
    locked = True

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def reading(self) -> SyncReading | None:
        return None

    def publish_tempo(self, bpm: float) -> None:
        pass


SourceFactory = Callable[[str], TempoSource]


class TempoSync:
    """Holds the one active tempo source and feeds what it follows into the store.

    Call :meth:`poll` from the loop regularly (every 50-200 ms): it writes a followed tempo that
    moved by at least :data:`BPM_STEP` (or the source's ``bpm_step``) to the store with the
    source's name as the change's source, and returns the reading for the planner to align loops with
    (:func:`loop_bpm_to_align`). A ``bpm`` change from anyone else (OSC, MIDI CC) is published to
    a Link session; with MIDI clock in, the clock wins again on the next poll.

    Loop thread only.
    """

    def __init__(
        self,
        store,
        factory: SourceFactory,
        source: str = "internal",
        bus=None,
    ) -> None:
        self.store = store
        self.bus = bus
        self._factory = factory
        self._source: TempoSource = InternalSource()
        self.last_reading: SyncReading | None = None
        self._unsubscribe = store.subscribe(self._on_state)
        self.switch(source)

    @property
    def source(self) -> str:
        return self._source.name

    @property
    def locked(self) -> bool:
        return bool(self._source.locked)

    def status(self) -> dict[str, object]:
        """The figures for the status reply: ``tempo_source`` and ``tempo_locked``."""
        return {"tempo_source": self.source, "tempo_locked": self.locked}

    def set_playing(self, playing: bool) -> bool:
        """Start or stop the source's shared transport (a Link session with start/stop sync);
        True if the source has one, False otherwise (internal, MIDI clock in)."""
        setter = getattr(self._source, "set_playing", None)
        if setter is None or getattr(self._source, "playing", None) is None:
            return False
        setter(playing)
        return True

    def switch(self, name: str) -> None:
        """Make ``name`` (internal | link | midi) the tempo source, live; UserError if unknown
        or if it cannot start (the previous source then stays)."""
        if name not in TEMPO_SOURCES:
            raise UserError(f"tempo.source must be one of {', '.join(TEMPO_SOURCES)}, got {name!r}")
        if name == self._source.name:
            return
        new = InternalSource() if name == "internal" else self._factory(name)
        new.start()
        old, self._source = self._source, new
        old.close()
        self.last_reading = None
        if self.bus is not None:
            self.bus.publish("tempo", source=name, locked=self.locked)
        log.info("tempo source: %s", name)

    def poll(self) -> SyncReading | None:
        """Read the source; write its tempo to the store when it moved. Returns the reading."""
        reading = self._source.reading()
        self.last_reading = reading
        if reading is None or not reading.locked:
            return reading
        bpm = clamp_state_bpm(round(reading.bpm, 2))
        if bpm != round(reading.bpm, 2):
            log.warning("followed tempo %.2f BPM is outside the bpm range; using %.2f", reading.bpm, bpm)
        current = self.store.state.values.get("bpm")
        step = getattr(self._source, "bpm_step", BPM_STEP)
        if current is None or abs(float(current) - bpm) >= step - 1e-9:
            self.store.apply({"bpm": bpm}, source=self.source)
        return reading

    def _on_state(self, old, new, source: str) -> None:
        if source == self.source or source in TEMPO_SOURCES[1:]:
            return
        bpm = new.values.get("bpm")
        if bpm is not None and bpm != old.values.get("bpm"):
            self._source.publish_tempo(float(bpm))

    def close(self) -> None:
        self._unsubscribe()
        self._source.close()
        self._source = InternalSource()
