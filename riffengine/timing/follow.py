"""Tempo sync inside the engine: the active tempo source, MIDI clock out, and loop tempos
whose ends land on the reference's bar lines.

The engine asks two things of this module: which tempo a loop starting at a seam must have
(:func:`loop_bpm`), and whether the playing loop has drifted off the reference's bar grid far
enough to be re-stretched (:func:`needs_realign`). Both are pure. :class:`Follower` holds the
live objects (a :class:`~riffengine.timing.sources.TempoSync` and an optional
:class:`~riffengine.timing.midiclock.MidiClockOut`) and switches the source when the
``tempo_source`` parameter changes. Loop thread only, except the clock-out thread it starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from riffengine.control.params import TEMPO_SOURCES
from riffengine.errors import UserError
from riffengine.timing.sources import (
    FrameClock,
    SourceFactory,
    SyncReading,
    TempoSource,
    TempoSync,
    loop_bpm_to_align,
    reference_bar_near,
)
from riffengine.timing.tempo import TempoMap

if TYPE_CHECKING:
    from riffengine.config import Settings
    from riffengine.events import EventBus
    from riffengine.store import StateStore

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
"""How often the source is read."""
ALIGN_TOLERANCE_SECONDS = 0.002
"""A seam further than this from the reference's nearest bar line is pulled back in."""
DRIFT_CHANGE = 0.02
"""Largest tempo change (fraction) used to absorb a small phase error: inaudible."""
CATCH_UP_FRACTION = 0.05
"""A phase error above this fraction of a bar (joining a session, a transport jump) is taken
up faster, by up to :data:`CATCH_UP_CHANGE`, so the loop locks within a loop or two."""
CATCH_UP_CHANGE = 0.25


def phase_error(reading: SyncReading, frame: float) -> float:
    """Signed frames from the reference's nearest bar line to ``frame``."""
    return frame - reference_bar_near(reading, frame)


def loop_bpm(reading: SyncReading | None, seam: int, bars: int, bpm: float, beats_per_bar: int) -> float:
    """The tempo of a loop of ``bars`` bars that starts at ``seam``.

    Without a usable reading (internal tempo, not locked, phase unknown, another meter) it is
    ``bpm``; otherwise the reference's tempo, nudged so that the loop ends on a reference bar.
    """
    if reading is None or reading.beats_per_bar != beats_per_bar:
        return bpm
    error = abs(phase_error(reading, seam)) / reading.bar_length
    change = CATCH_UP_CHANGE if error > CATCH_UP_FRACTION else DRIFT_CHANGE
    return loop_bpm_to_align(reading, seam, bars, max_change=change)


def needs_realign(
    reading: SyncReading | None, seam: int, loop_frames: int, sample_rate: int, beats_per_bar: int
) -> bool:
    """True when the next seam, or the one after it if the loop repeats, is off the reference's
    bar grid by more than the tolerance (a repeated catch-up loop would drift off again)."""
    if reading is None or reading.beats_per_bar != beats_per_bar:
        return False
    tolerance = ALIGN_TOLERANCE_SECONDS * sample_rate
    return any(abs(phase_error(reading, frame)) > tolerance for frame in (seam, seam + loop_frames))


def default_factory(settings: Settings, frame_clock: FrameClock) -> SourceFactory:
    """Builds the Link and MIDI clock followers from the config (``tempo`` and ``midi``)."""

    def make(name: str) -> TempoSource:
        tempo = settings.tempo
        if name == "link":
            from riffengine.timing.link import LinkFollower

            return LinkFollower(tempo.bpm, tempo.beats_per_bar, frame_clock, start_stop_sync=tempo.transport_sync)
        if name == "midi":
            from riffengine.timing.midiclock import MidiClockIn

            if not tempo.midi_clock_in:
                raise UserError(
                    "tempo.source is midi but tempo.midi_clock_in is not set: name the port that "
                    "sends MIDI clock (see `riffengine devices`), or virtual:NAME to create one"
                )
            return MidiClockIn(
                tempo.midi_clock_in, tempo.beats_per_bar, frame_clock, backend=settings.midi.mido_backend
            )
        raise UserError(f"tempo.source must be one of {', '.join(TEMPO_SOURCES)}, got {name!r}")

    return make


class Follower:
    """The engine's tempo source and clock out.

    ``clock`` maps output frames to host time (the output's DAC clock when live).
    ``tempo_at(frame)`` is the timeline's tempo map lookup, for MIDI clock out.
    """

    def __init__(
        self,
        store: StateStore,
        bus: EventBus,
        settings: Settings,
        clock: FrameClock,
        tempo_at: Callable[[int], TempoMap],
        source: str,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.sync = TempoSync(store, default_factory(settings, clock), source, bus)
        self.clock_out = None
        self._next_poll = 0.0
        port = settings.tempo.midi_clock_out
        if port:
            from riffengine.timing.midiclock import MidiClockOut

            self.clock_out = MidiClockOut(port, tempo_at, clock, backend=settings.midi.mido_backend).start()
            if store.state.values["transport"] == "play":
                self.clock_out.play()
        self.transport = None
        if settings.tempo.transport_sync:
            from riffengine.transport import TransportSync

            self.transport = TransportSync(store, self.sync, self.clock_out)

    def poll(self, now: float) -> None:
        """Read the source at most every :data:`POLL_SECONDS` (``now``: the loop's clock)."""
        if now >= self._next_poll:
            self._next_poll = now + POLL_SECONDS
            self.sync.poll()
            if self.transport is not None:
                self.transport.poll(self.sync.last_reading)

    def reading(self) -> SyncReading | None:
        """The newest reading if it can place bar lines (locked, phase known), else None."""
        reading = self.sync.last_reading
        if reading is None or not reading.locked or not reading.phase_known:
            return None
        return reading

    def switch(self, name: str) -> bool:
        """Make ``name`` the source; on failure report it and return False (the old one stays)."""
        try:
            self.sync.switch(name)
            return True
        except UserError as exc:
            log.warning("tempo source %s refused: %s", name, exc)
            self.bus.publish("fail", address="/riff/tempo_source", reason=str(exc))
            return False

    def status(self) -> dict[str, object]:
        return self.sync.status()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.clock_out is not None:
            self.clock_out.stop_transport()
            self.clock_out.close()
        self.sync.close()
