"""Ableton Link: follow a Link session's tempo and bars, and publish local tempo changes.

Uses ``aalink`` (GPL-3.0; the optional extra ``pip install 'riffengine[link]'``). The quantum
is the meter (beats per bar), so Link's phase 0 is riffengine's bar line. Start/stop sync is
optional (``start_stop_sync=True``).

Sample alignment: Link's timeline is a function of Link's own host clock (on Linux
``CLOCK_MONOTONIC_RAW``, not Python's ``time.monotonic``). :meth:`LinkFollower.reading` reads
Link's clock and ``time.monotonic`` back to back (:func:`clock_offset`), takes the beat at that
Link time, and converts the bar start to an output frame with the output's DAC time/frame
mapping (:class:`~riffengine.timing.sources.FrameClock`). So the result does not depend on when
the calling coroutine woke up: a late poll reads the same bar frame.

Thread rules: create and use on the asyncio loop's thread (aalink binds to the running loop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from riffengine.errors import UserError
from riffengine.timing.sources import FrameClock, SyncReading
from riffengine.timing.tempo import validate_beats_per_bar, validate_bpm

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'riffengine[link]'"


def load_aalink() -> Any:
    """The ``aalink`` module, or a UserError that says how to install it."""
    try:
        import aalink
    except ImportError:
        raise UserError(
            f"tempo.source link needs the aalink package (GPL-3.0, an optional extra): {INSTALL_HINT}, "
            "or set tempo.source to internal or midi"
        ) from None
    return aalink


def clock_offset(
    read_link: Callable[[], float], read_host: Callable[[], float] = time.monotonic, tries: int = 5
) -> tuple[float, float]:
    """``(host - link, uncertainty)`` from back-to-back reads; the tightest of ``tries`` pairs."""
    best: tuple[float, float] | None = None
    for _ in range(tries):
        h0 = read_host()
        link = read_link()
        h1 = read_host()
        if best is None or h1 - h0 < best[1]:
            best = ((h0 + h1) / 2.0 - link, h1 - h0)
    if best is None:
        raise ValueError(f"tries must be at least 1, got {tries}")
    return best


def bar_start_link_time(link_time: float, beat: float, bpm: float, quantum: float) -> float:
    """Link time of the start of the bar (quantum) containing ``beat`` at ``link_time``."""
    return link_time - (beat % quantum) * 60.0 / bpm


class LinkFollower:
    """A Link session peer as a tempo source (see the module docstring)."""

    name = "link"

    def __init__(
        self,
        bpm: float,
        beats_per_bar: int,
        frame_clock: FrameClock,
        start_stop_sync: bool = False,
    ) -> None:
        self.bpm = validate_bpm(bpm, "tempo.bpm")
        self.beats_per_bar = validate_beats_per_bar(beats_per_bar)
        self.frame_clock = frame_clock
        self.start_stop_sync = start_stop_sync
        self._aalink = load_aalink()
        self._link = None

    def start(self) -> None:
        """Join the Link session (quantum = beats per bar). Needs a running asyncio loop."""
        link = self._aalink.Link(self.bpm)
        link.quantum = float(self.beats_per_bar)  # before enabling, so phase agrees at once
        link.start_stop_sync_enabled = self.start_stop_sync
        link.enabled = True
        self._link = link

    def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.enabled = False

    @property
    def peers(self) -> int:
        return int(self._link.num_peers) if self._link is not None else 0

    @property
    def locked(self) -> bool:
        """True while in a session with at least one other peer."""
        return self.peers > 0

    @property
    def playing(self) -> bool | None:
        if self._link is None or not self.start_stop_sync:
            return None
        return bool(self._link.playing)

    def snapshot(self) -> tuple[float, float, float]:
        """``(tempo, beat, host_time)``: the session's tempo, and its beat at host time
        ``host_time`` (monotonic), read back to back."""
        link = self._link
        if link is None:
            raise RuntimeError("LinkFollower.start() first")
        offset, _ = clock_offset(lambda: link.time.total_seconds())
        t0 = link.time.total_seconds()
        beat = link.beat
        t1 = link.time.total_seconds()
        return float(link.tempo), float(beat), (t0 + t1) / 2.0 + offset

    def reading(self) -> SyncReading | None:
        if self._link is None:
            return None
        bpm, beat, host = self.snapshot()
        bar_time = bar_start_link_time(host, beat, bpm, float(self.beats_per_bar))
        return SyncReading(
            bpm=bpm,
            bar_frame=self.frame_clock.frame_at(bar_time),
            beats_per_bar=self.beats_per_bar,
            sample_rate=self.frame_clock.sample_rate,
            locked=self.locked,
            phase_known=True,
            playing=self.playing,
        )

    def publish_tempo(self, bpm: float) -> None:
        """Set the session tempo (every peer follows). Loop thread."""
        if self._link is not None:
            self._link.tempo = float(validate_bpm(bpm))

    def set_playing(self, playing: bool) -> None:
        """Start or stop the session's transport (when start/stop sync is on)."""
        if self._link is not None:
            self._link.playing = bool(playing)
