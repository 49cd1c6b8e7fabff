"""Speculation: the clips a performer is most likely to ask for next, for spare render workers.

Pure functions of the State, no clock, no I/O. With more than one render worker
(``render.backend: ray``), the primary job (the newest State, :mod:`riffengine.planner`) keeps
one worker; the others render these guesses into the speculation store, so a change to a
guessed value is heard at the next bar without a new render.

The guesses, most likely first:

1. the next loops of an evolve or glide walk (:func:`riffengine.evolve.next_loop`), past the
   ones the walk already renders ahead;
2. the neighbours of the current ``alpha`` on a grid of ``alpha_step`` (a crossfader or a knob
   moves by small amounts), when side B has a prompt;
3. the configured scenes, as recalled from the current State.

A guess equal to the clip the State already asks for is left out (that is the primary job).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from riffengine import evolve
from riffengine.planner import ClipKey, clip_key
from riffengine.state import State, apply, recall_scene

WALK_STEPS = 2
"""Walk loops guessed past the heard one (the engine asks for ``render.ahead`` more)."""
ALPHA_NEIGHBOURS = 2
"""Alpha grid points guessed on each side of the current alpha."""


def alpha_neighbours(alpha: float, step: float, count: int = ALPHA_NEIGHBOURS) -> list[float]:
    """The ``2 * count`` grid points ``k * step`` in [0, 1] nearest ``alpha``, nearest first
    (``alpha`` itself left out).

    >>> alpha_neighbours(0.5, 0.1)
    [0.4, 0.6, 0.3, 0.7]
    """
    if step <= 0:
        return []
    grid = [round(k * step, 6) for k in range(int(1.0 / step + 1e-9) + 1)]
    others = [value for value in grid if abs(value - alpha) > 1e-9]
    others.sort(key=lambda value: (round(abs(value - alpha), 6), value))
    return others[: 2 * count]


def walk_keys(loop: evolve.Loop | None, state: State, steps: int = WALK_STEPS) -> list[ClipKey]:
    """The keys of the next ``steps`` loops of the walk after ``loop`` (none without a walk)."""
    if loop is None or not evolve.walking(loop, state):
        return []
    keys = []
    for _ in range(steps):
        loop = evolve.next_loop(loop, state)
        keys.append(loop.key)
    return keys


def alpha_keys(state: State, step: float) -> list[ClipKey]:
    """The keys of the State with ``alpha`` moved to its grid neighbours (side B must be heard)."""
    if not any(text.strip() for text in state.values["prompt_b"]):  # type: ignore[attr-defined]
        return []
    alpha = float(state.values["alpha"])  # type: ignore[arg-type]
    return [clip_key(apply(state, "alpha", value)) for value in alpha_neighbours(alpha, step)]


def scene_keys(state: State, scenes: Iterable[Mapping[str, object]]) -> list[ClipKey]:
    """The keys of each scene recalled from ``state``; a scene that does not apply is left out."""
    keys = []
    for scene in scenes:
        try:
            keys.append(clip_key(recall_scene(state, scene)))
        except (KeyError, ValueError, TypeError):
            continue
    return keys


def candidates(
    state: State,
    walk_loop: evolve.Loop | None,
    alpha_step: float,
    scenes: Iterable[Mapping[str, object]] = (),
    limit: int = 8,
    skip: Iterable[ClipKey] = (),
    walk_steps: int = WALK_STEPS,
) -> list[ClipKey]:
    """The guessed clip keys, most likely first, without duplicates, ``skip`` or the State's own."""
    own = clip_key(state)
    seen = {own, *skip}
    out: list[ClipKey] = []
    for key in [*walk_keys(walk_loop, state, walk_steps), *alpha_keys(state, alpha_step), *scene_keys(state, scenes)]:
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out[:limit]
