"""The tempo map: a pure function from the master clock (output frame count) to beats and bars.

The master clock is the output stream's frame counter. Beats and bars are derived from it and
never stored elsewhere.

Grid rule (why bars are whole frames): a bar lasts ``bar_frames`` frames, the nominal bar length
``sample_rate * 60 * beats_per_bar / bpm`` rounded half up to an integer. Every bar line is
therefore a whole frame, a loop of N bars lasts exactly ``N * bar_frames`` frames, and a clip of
that length placed on a bar line ends exactly on a bar line, forever, without drift against the
output clock. The price is a tempo off by at most half a frame per bar (about 6 ppm for a bar of
2 s at 44.1 kHz), which ``effective_bpm`` reports and a Link/MIDI clock follower corrects by
re-anchoring. Beat positions use the effective tempo, so beats and bar lines always agree.

Tempo changes take effect at a frame (the engine applies them at loop seams, which are bar lines)
and keep beat continuity: the beat count at the change frame is the same before and after.

All functions here are pure and cheap; none of them is meant to be called from the audio
callback, but they would be safe there (no allocation beyond Python floats, no locks, no I/O).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from riffengine.errors import UserError

MIN_BPM = 20.0
MAX_BPM = 400.0


def _round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's round() rounds halves to even)."""
    return math.floor(x + 0.5)


def validate_bpm(bpm: float, name: str = "bpm") -> float:
    """Return ``bpm`` as a float, or raise UserError naming ``name`` and the allowed range."""
    try:
        value = float(bpm)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number between {MIN_BPM:g} and {MAX_BPM:g}, got {bpm!r}") from None
    if not (MIN_BPM <= value <= MAX_BPM) or math.isnan(value):
        raise UserError(f"{name} must be between {MIN_BPM:g} and {MAX_BPM:g} beats per minute, got {bpm!r}")
    return value


def validate_beats_per_bar(beats_per_bar: int) -> int:
    """Return ``beats_per_bar`` as an int, or raise UserError (meter must be 1..32 beats)."""
    if isinstance(beats_per_bar, bool) or not isinstance(beats_per_bar, int) or not 1 <= beats_per_bar <= 32:
        raise UserError(f"beats_per_bar (meter) must be a whole number from 1 to 32, got {beats_per_bar!r}")
    return beats_per_bar


def bar_frames_for(bpm: float, sample_rate: int, beats_per_bar: int = 4) -> int:
    """Whole frames in one bar: the nominal bar length rounded half up (see the module docstring)."""
    return _round_half_up(sample_rate * 60.0 * beats_per_bar / bpm)


def loop_frames(bars: int, bpm: float, sample_rate: int, beats_per_bar: int = 4) -> int:
    """Exact frame count of a loop of ``bars`` bars: ``bars * bar_frames_for(...)``.

    This is the length a clip must have so that its seams land on bar lines to the sample.
    """
    if isinstance(bars, bool) or not isinstance(bars, int) or bars < 1:
        raise UserError(f"bars must be a whole number of at least 1, got {bars!r}")
    validate_bpm(bpm)
    validate_beats_per_bar(beats_per_bar)
    return bars * bar_frames_for(bpm, sample_rate, beats_per_bar)


@dataclass(frozen=True)
class TempoMap:
    """Tempo and meter from an anchor onwards: frame ``anchor_frame`` is beat ``anchor_beat``
    and bar position ``anchor_bar``.

    Immutable; :meth:`with_tempo` returns the map that applies from a change frame on. Beats and
    bars are counted from 0; ``anchor_bar`` defaults to ``anchor_beat / beats_per_bar`` (it only
    differs after a meter change, where the beat count and the bar count part ways). Frames before
    the anchor extrapolate the same tempo backwards, which keeps every function total.
    """

    bpm: float
    beats_per_bar: int = 4
    sample_rate: int = 44100
    anchor_frame: int = 0
    anchor_beat: float = 0.0
    anchor_bar: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bpm", validate_bpm(self.bpm))
        validate_beats_per_bar(self.beats_per_bar)
        if self.anchor_bar is None:
            object.__setattr__(self, "anchor_bar", self.anchor_beat / self.beats_per_bar)
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise UserError(f"sample_rate must be a positive whole number of Hz, got {self.sample_rate!r}")

    # --- lengths -------------------------------------------------------------------------------

    @property
    def bar_frames(self) -> int:
        """Whole frames per bar (the grid unit)."""
        return bar_frames_for(self.bpm, self.sample_rate, self.beats_per_bar)

    def frames_per_bar(self) -> float:
        """Frames per bar as a float (equal to :attr:`bar_frames`)."""
        return float(self.bar_frames)

    def frames_per_beat(self) -> float:
        """Frames per beat at the effective tempo (may be fractional)."""
        return self.bar_frames / self.beats_per_bar

    @property
    def effective_bpm(self) -> float:
        """The tempo actually played: ``bpm`` adjusted so that a bar is a whole number of frames."""
        return self.sample_rate * 60.0 * self.beats_per_bar / self.bar_frames

    def loop_frames(self, bars: int) -> int:
        """Exact frame count of a loop of ``bars`` bars at this tempo."""
        return loop_frames(bars, self.bpm, self.sample_rate, self.beats_per_bar)

    # --- positions -----------------------------------------------------------------------------

    @property
    def origin_frame(self) -> int:
        """The (whole) frame of bar line 0, extrapolated from the anchor; may be negative."""
        anchor_bar = self.anchor_bar if self.anchor_bar is not None else self.anchor_beat / self.beats_per_bar
        return self.anchor_frame - _round_half_up(anchor_bar * self.bar_frames)

    def beat_at(self, frame: float) -> float:
        """Beat position (fractional) of ``frame``."""
        # Integer product first: exact whenever the result is a whole number of beats.
        return self.anchor_beat + (frame - self.anchor_frame) * self.beats_per_bar / self.bar_frames

    def bar_at(self, frame: int) -> int:
        """Index of the bar containing ``frame`` (bar lines belong to the bar they start)."""
        return (frame - self.origin_frame) // self.bar_frames

    def bar_position(self, frame: int) -> float:
        """Fractional bar position of ``frame`` on the bar grid (``bar_at`` plus the phase)."""
        return (frame - self.origin_frame) / self.bar_frames

    def bar_frame(self, bar: int) -> int:
        """The whole frame on which bar ``bar`` starts."""
        return self.origin_frame + bar * self.bar_frames

    def next_bar_frame(self, frame: int) -> int:
        """The first bar line strictly after ``frame``."""
        return self.bar_frame(self.bar_at(frame) + 1)

    def bar_line_at_or_after(self, frame: int) -> int:
        """The first bar line at ``frame`` or later."""
        return frame if self.is_bar_line(frame) else self.next_bar_frame(frame)

    def is_bar_line(self, frame: int) -> bool:
        """True when a bar starts exactly on ``frame``."""
        return (frame - self.origin_frame) % self.bar_frames == 0

    # --- changes -------------------------------------------------------------------------------

    def with_tempo(self, bpm: float, at_frame: int, beats_per_bar: int | None = None) -> TempoMap:
        """The map with tempo ``bpm`` (and optionally a new meter) from ``at_frame`` on.

        The beat count and the bar position at ``at_frame`` are unchanged. When ``at_frame`` is a
        bar line it stays one in the new map, with the same bar number; that is how the engine
        applies tempo changes (at loop seams). A meter change anywhere but on a bar line is
        refused, because the bar count there would be ambiguous.
        """
        meter = self.beats_per_bar if beats_per_bar is None else validate_beats_per_bar(beats_per_bar)
        if self.is_bar_line(at_frame):
            anchor_bar = float(self.bar_at(at_frame))
        elif meter != self.beats_per_bar:
            raise UserError(
                f"a meter change must happen on a bar line; frame {at_frame} is bar "
                f"{self.bar_position(at_frame):.3f}: apply it at the next bar ({self.next_bar_frame(at_frame)})"
            )
        else:
            anchor_bar = self.bar_position(at_frame)
        return TempoMap(
            bpm=bpm,
            beats_per_bar=meter,
            sample_rate=self.sample_rate,
            anchor_frame=at_frame,
            anchor_beat=self.beat_at(at_frame),
            anchor_bar=anchor_bar,
        )
