"""The walk: which loop comes next when loops evolve or glide on their own.

Pure functions of the State and the loop before; no clock, no I/O. The engine keeps the
:class:`Loop` of every clip it plans; the next loop is :func:`next_loop` of the last one, and
after a control change :func:`restart` of the loop heard now. The same start gives the same
sequence of loops, whoever asks (the live engine, a file session, ``riffengine render``).

Evolve (``evolve`` > 0) moves a *position* forward by ``evolve`` per loop:

- ``seed``: side A against itself with the next seed. The seed offset is ``floor(position)``
  and alpha its fraction, so a step of 0.25 gives alphas 0.25, 0.5, 0.75, then the next seed
  at alpha 0 (Riffusion's "same prompt" mode). Side B and ``alpha`` are not used.
- ``pingpong``: alpha goes from the State's ``alpha`` to 1 (side B), back to 0 and on.
- ``toward_b``: alpha goes to 1 and holds there.

With ``evolve`` 0 the loop is the State's own request (as without a walk). The position starts
again (0, or the State's alpha) when evolve is switched on, the mode changes, or alpha is
moved in ``pingpong``/``toward_b``; other changes keep it. Either way the loop heard when the
change came counts as the walk's last step, and the next loop is one step on.

Glide (``glide`` = N > 0): when prompts, weights, seeds, denoise or guidance of a side change,
the next N loops go from the side heard when the change came to the new target:
``k/N`` of the way for k = 1..N, the last being the target itself (so N = 4 gives three loops
between). A change during a glide starts a new glide from the loop heard then. A heard loop
that is itself a mix of two sides is reduced to one side by :func:`heard_side` (exact for
prompts, denoise and guidance; the seed noise is the nearer side's).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import SupportsFloat, SupportsInt, TypedDict, cast

from riffengine.render.request import PromptSlot, RenderRequest, Side, to_render_request
from riffengine.state import State

SEED_LIMIT = 2**32
"""Seeds wrap around at this (the parameter's range)."""

GLIDE_KEYS = (
    "prompt_a",
    "weight_a",
    "seed_a",
    "denoise_a",
    "guidance_a",
    "prompt_b",
    "weight_b",
    "seed_b",
    "denoise_b",
    "guidance_b",
)
"""The parameters whose change glides when ``glide`` > 0."""

DIGITS = 9
"""Positions are rounded to this many decimals, so steps like 0.1 add up exactly."""


@dataclass(frozen=True)
class Glide:
    """A glide under way: from side ``start``, ``done`` of ``loops`` loops planned so far."""

    start: Side
    loops: int
    done: int

    @property
    def fraction(self) -> float:
        return self.done / self.loops


@dataclass(frozen=True)
class Loop:
    """One loop of the walk: its place (``step``, evolve ``position``, ``glide``), its request
    and the tempo and length it is made at."""

    step: int
    position: float
    glide: Glide | None
    request: RenderRequest
    bpm: float
    bars: int

    @property
    def key(self) -> tuple[RenderRequest, float, int]:
        """The planner's clip key (see :func:`riffengine.planner.clip_key`)."""
        return self.request, self.bpm, self.bars


# --- evolve -------------------------------------------------------------------------------------


def start_position(state: State) -> float:
    """Where a walk starts: 0 in ``seed`` mode, else the State's alpha."""
    if state.values["evolve_mode"] == "seed":
        return 0.0
    return float(state.values["alpha"])  # type: ignore[arg-type]


def advance(position: float, state: State) -> float:
    """The position one loop on; ``toward_b`` stops at 1."""
    step = float(state.values["evolve"])  # type: ignore[arg-type]
    moved = round(position + step, DIGITS)
    if state.values["evolve_mode"] == "toward_b":
        return min(moved, 1.0)
    return moved


def pingpong(position: float) -> float:
    """Alpha for a pingpong position: 0 -> 1 -> 0 -> 1 ... (a triangle of period 2)."""
    phase = round(position % 2.0, DIGITS)
    return phase if phase <= 1.0 else round(2.0 - phase, DIGITS)


def _two_sided(request: RenderRequest, b: Side, alpha: float) -> RenderRequest:
    """``request`` with side ``b`` at ``alpha`` (side A alone at alpha 0, as in to_render_request)."""
    if alpha == 0.0:
        return replace(request, b=None, alpha=0.0)
    return replace(request, b=b, alpha=alpha)


def evolve_request(state: State, position: float) -> RenderRequest:
    """The request of the loop at ``position`` of the State's evolve walk."""
    base = to_render_request(state)
    if float(state.values["evolve"]) == 0.0:  # type: ignore[arg-type]
        return base
    mode = state.values["evolve_mode"]
    if mode == "seed":
        turns = math.floor(position)
        alpha = round(position - turns, DIGITS)
        a = replace(base.a, seed=(base.a.seed + turns) % SEED_LIMIT)
        b = replace(base.a, seed=(base.a.seed + turns + 1) % SEED_LIMIT)
        return _two_sided(replace(base, a=a), b, alpha)
    alpha = pingpong(position) if mode == "pingpong" else min(position, 1.0)
    if base.b is not None:
        return _two_sided(base, base.b, alpha)
    # No prompt on side B: walk towards side A's prompts at seed_b.
    seed_b = int(cast(SupportsInt, state.values["seed_b"]))
    return _two_sided(base, replace(base.a, seed=seed_b), alpha)


# --- glide ----------------------------------------------------------------------------------------


def heard_side(request: RenderRequest) -> Side:
    """One side that sounds like ``request``: side A, side B, or for a mix their blend.

    The blend weights each side's normalised prompt weights by ``1 - alpha`` and ``alpha``
    (the renderer's embedding is then the same) and lerps denoise and guidance; the seed is
    the nearer side's.
    """
    b, alpha = request.b, request.alpha
    if b is None or alpha == 0.0:
        return request.a
    if alpha == 1.0:
        return b

    def scaled(side: Side, share: float) -> tuple[PromptSlot, ...]:
        total = sum(p.weight for p in side.prompts)
        return tuple(PromptSlot(p.text, p.weight / total * share) for p in side.prompts)

    a = request.a
    return Side(
        prompts=scaled(a, 1.0 - alpha) + scaled(b, alpha),
        seed=a.seed if alpha < 0.5 else b.seed,
        denoise=(1.0 - alpha) * a.denoise + alpha * b.denoise,
        guidance=(1.0 - alpha) * a.guidance + alpha * b.guidance,
    )


def glide_request(start: Side, target: RenderRequest, fraction: float) -> RenderRequest:
    """``fraction`` of the way from side ``start`` to ``target``; exactly ``target`` at 1."""
    if fraction >= 1.0:
        return target
    return replace(target, a=start, b=heard_side(target), alpha=round(fraction, DIGITS))


def glide_triggered(old: State, new: State) -> bool:
    """True if ``new`` glides from ``old``: ``glide`` > 0 and a side's values changed."""
    if int(new.values["glide"]) == 0:  # type: ignore[call-overload]
        return False
    return any(old.values[k] != new.values[k] for k in GLIDE_KEYS)


# --- loops ----------------------------------------------------------------------------------------


def _loop(state: State, step: int, position: float, glide: Glide | None) -> Loop:
    target = evolve_request(state, position)
    request = target if glide is None else glide_request(glide.start, target, glide.fraction)
    bpm = float(cast("SupportsFloat", state.values["bpm"]))
    bars = int(cast("SupportsInt", state.values["bars"]))
    return Loop(step, position, glide, request, bpm, bars)


def first_loop(state: State) -> Loop:
    """The loop a walk starts with (the warm-up render)."""
    return _loop(state, 0, start_position(state), None)


def _next_glide(glide: Glide | None) -> Glide | None:
    if glide is None or glide.done >= glide.loops:
        return None
    return replace(glide, done=glide.done + 1)


def next_loop(prev: Loop, state: State) -> Loop:
    """The loop after ``prev`` when nothing changed: evolve one step on, a glide one loop on.

    With evolve off and no glide under way it has ``prev``'s request: nothing new to render.
    """
    return _loop(state, prev.step + 1, advance(prev.position, state), _next_glide(prev.glide))


def _restarts_position(old: State, new: State) -> bool:
    if float(new.values["evolve"]) == 0.0:  # type: ignore[arg-type]
        return True
    if float(old.values["evolve"]) == 0.0 or old.values["evolve_mode"] != new.values["evolve_mode"]:  # type: ignore[arg-type]
        return True
    return new.values["evolve_mode"] != "seed" and old.values["alpha"] != new.values["alpha"]


def restart(heard: Loop, old: State, new: State) -> Loop:
    """The loop to follow ``heard`` after the State changed from ``old`` to ``new``.

    A glide starts from ``heard`` if :func:`glide_triggered`; else a glide under way goes on.
    """
    base = start_position(new) if _restarts_position(old, new) else heard.position
    position = advance(base, new)  # the heard loop is where the walk (re)starts from
    if glide_triggered(old, new):
        glide: Glide | None = Glide(heard_side(heard.request), int(new.values["glide"]), 1)  # type: ignore[call-overload]
    else:
        glide = _next_glide(heard.glide)
    return _loop(new, heard.step + 1, position, glide)


def walking(loop: Loop, state: State) -> bool:
    """True while the loops move on their own (the next loop differs from ``loop``)."""
    return next_loop(loop, state).key != loop.key


# --- what a loop is, for events and logs ------------------------------------------------------


def prompts_hash(request: RenderRequest) -> str:
    """A short hash (8 hex digits) of the prompts and weights of both sides."""
    sides = [request.a] + ([request.b] if request.b is not None else [])
    text = "|".join(";".join(f"{p.text}:{p.weight:.6g}" for p in s.prompts) for s in sides)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


class LoopDescription(TypedDict):
    """What :func:`describe` says of a loop."""

    alpha: float
    seed_a: int
    seed_b: int
    prompts: str
    prompt: str
    step: int
    position: float
    glide: str


def describe(loop: Loop) -> LoopDescription:
    """Plain values saying what a loop is: alpha, seeds, prompt hash, step, glide progress."""
    request = loop.request
    return {
        "alpha": request.alpha,
        "seed_a": request.a.seed,
        "seed_b": request.b.seed if request.b is not None else -1,
        "prompts": prompts_hash(request),
        "prompt": request.a.prompts[0].text if request.a.prompts else "",
        "step": loop.step,
        "position": loop.position,
        "glide": f"{loop.glide.done}/{loop.glide.loops}" if loop.glide is not None else "",
    }
