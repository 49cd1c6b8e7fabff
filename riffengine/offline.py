"""An evolving or gliding piece rendered offline, exactly as ``riffengine run`` would play it.

The loops come from the same walk (:mod:`riffengine.evolve`), are made by the same
:class:`~riffengine.clipmaker.ClipMaker` at the same loop length, and are placed on the bar
grid by the same :class:`~riffengine.audio.timeline.Timeline` with the same crossfade before
each seam. So, from the same State, the file holds the frames a live run plays when no loop is
late (a ``.wav`` session of ``run`` with the same values gives the same samples, up to its
fade-out at the end).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from riffengine import evolve
from riffengine.audio.timeline import Clip, Timeline
from riffengine.clipmaker import ClipMaker, ClipSpec
from riffengine.errors import UserError
from riffengine.evolve import Loop
from riffengine.render.renderer import SAMPLE_RATE as MODEL_RATE
from riffengine.state import Changes, State, apply_many
from riffengine.timing.tempo import TempoMap, loop_frames

CHANNELS = 2


def walk(state: State, loops: int, change: Changes | None = None) -> list[Loop]:
    """The first ``loops`` loops of the walk from ``state``.

    ``change`` is applied while the first loop plays (as a performer would send it): with
    ``glide`` > 0 the loops after it glide there.
    """
    if loops < 1:
        raise UserError(f"--loops {loops}: render at least 1 loop")
    out = [evolve.first_loop(state)]
    if change is not None and loops > 1:
        new = apply_many(state, change)
        out.append(evolve.restart(out[0], state, new))
        state = new
    while len(out) < loops:
        out.append(evolve.next_loop(out[-1], state))
    return out


def render_loops(
    renderer,
    loops: list[Loop],
    beats_per_bar: int,
    crossfade_ms: float,
    sample_rate: int = MODEL_RATE,
    on_loop: Callable[[int, Loop], None] | None = None,
) -> np.ndarray:
    """Render ``loops`` and play them one after the other on the bar grid: float32
    ``[frames, 2]`` of exactly the loops' lengths, the first from frame 0."""
    maker = ClipMaker(renderer, sample_rate, CHANNELS)
    timeline = Timeline(TempoMap(loops[0].bpm, beats_per_bar, sample_rate), CHANNELS, crossfade_ms)
    blocks: list[np.ndarray] = []

    def play_until(frame: int) -> None:
        if frame > timeline.cursor:
            blocks.append(timeline.render_block(frame - timeline.cursor).frames)

    start = previous = 0
    clip: Clip | None = None
    for index, loop in enumerate(loops):
        if on_loop is not None:
            on_loop(index, loop)
        if index and loop.key == loops[index - 1].key:  # nothing new: the loop repeats
            assert clip is not None  # the loop before's
            previous, start = start, start + len(clip.audio)
            continue
        spec = ClipSpec(
            loop.request,
            loop_frames(loop.bars, loop.bpm, MODEL_RATE, beats_per_bar),
            loop_frames(loop.bars, loop.bpm, sample_rate, beats_per_bar),
        )
        made = maker.render(spec)
        clip = timeline.make_clip(f"loop{index}", made.audio, loop.bpm, loop.bars)
        if index:
            play_until(previous + 1)  # the loop before has started: queue this one behind it
        timeline.submit(clip)
        previous, start = start, start + len(clip.audio)
    play_until(start)
    return np.concatenate(blocks) if blocks else np.zeros((0, CHANNELS), np.float32)
