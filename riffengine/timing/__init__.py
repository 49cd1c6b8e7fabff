"""Timing: the tempo map and bar grid that turn the output frame counter into beats and bars."""

from riffengine.timing.tempo import TempoMap, loop_frames

__all__ = ["TempoMap", "loop_frames"]
