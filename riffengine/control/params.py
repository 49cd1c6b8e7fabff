"""The table of every controllable parameter, and the functions it drives.

One declarative table, :data:`PARAMS`, says for each parameter its type, range or choices,
default, OSC address, slot count, unit, knob curve, what a change does, and a line of help.
Validation (:mod:`riffengine.validation`), normalised knob mapping, OSC address lookup, status
replies, the YAML ``initial`` and ``scenes`` sections and ``docs/parameters.md`` all read this
one table, so adding a parameter here makes it controllable everywhere.

Naming. Names are flat identifiers with the side as a suffix: ``prompt_a``, ``weight_a``,
``seed_a``, ``denoise_b``... One name is then one thing everywhere, with no translation: a
key in YAML, a key in :class:`riffengine.state.State`, a MIDI mapping target and an OSC
address (``/riff/<name>``). Per-slot parameters (the prompt blend: ``prompt_a``,
``weight_a``, ``prompt_b``, ``weight_b``, :data:`PROMPT_SLOTS` slots each) take the slot as
one more address part, ``/riff/prompt_a/2``, and as a key suffix, ``prompt_a/2``. Slots count
from 0, as lists do in Python, Pure Data and Max.

Values are checked by :mod:`riffengine.validation`, which generates each parameter's rule
from its row here: Pure Data sends every number as a float, so integer parameters accept any
integral number (``8.0`` becomes ``8``); NaN, infinities, booleans given for numbers,
out-of-range values, unknown choices and over-long strings are refused with a
:class:`~riffengine.errors.UserError` that names the parameter, the value and what is allowed.

Effects (``Param.effect``) tell the planner what a change costs:

- ``render``: the image changes, so a new diffusion render is needed;
- ``stretch``: the clip length changes, so the current image is stretched to the new length
  (no diffusion);
- ``walk``: changes how the next loops move on their own (evolve, glide): no render by
  itself, the next loops of the walk are rendered as they come;
- ``live``: heard at once, no render (output gain, crossfade length);
- ``action``: a command, not a setting (scene recall); the State keeps the last one sent.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass

from riffengine.errors import UserError

PREFIX = "/riff"
"""Every OSC address of a parameter starts with this."""

PROMPT_SLOTS = 4
"""Prompt slots per side of the A/B interpolation."""

TYPES = ("float", "int", "str", "bool", "enum")
EFFECTS = ("render", "stretch", "walk", "live", "action")
EVOLVE_MODES = ("seed", "pingpong", "toward_b")
TRANSPORT = ("play", "stop")
CURVES = ("linear", "exponential", "log")
"""How a 0..1 knob travels over a range, for a parameter's own knob and a MIDI mapping alike:
``exponential`` gives equal ratios for equal steps (fine control at the low end), ``log`` is
its mirror image (fine control at the high end)."""
EXP_RATIO = 100.0
"""Ratio of the exponential and log curves on a range that touches or crosses zero."""
TEMPO_SOURCES = ("internal", "link", "midi")
"""Where the tempo comes from: riffengine itself, an Ableton Link session, MIDI clock in."""


@dataclass(frozen=True)
class Param:
    """One row of the parameter table.

    ``slots`` is 0 for a single value and N for a per-slot parameter, whose ``default`` is then
    a tuple of N values. ``minimum``/``maximum`` bound numbers, ``choices`` lists the values of
    an ``enum``, ``max_length`` bounds a ``str``. ``curve`` (one of :data:`CURVES`) maps a
    0..1 knob to the range; it is also the curve a MIDI mapping of the parameter uses by default.
    """

    name: str
    type: str
    default: object
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    max_length: int = 0
    slots: int = 0
    unit: str = ""
    curve: str = "linear"
    effect: str = "render"

    @property
    def address(self) -> str:
        """The OSC address of the whole parameter: ``/riff/<name>``."""
        return f"{PREFIX}/{self.name}"

    def slot_address(self, slot: int) -> str:
        """The OSC address of one slot: ``/riff/<name>/<slot>``."""
        return f"{PREFIX}/{self.name}/{slot}"

    @property
    def rerenders(self) -> bool:
        """True if a change needs a new clip (a render or a stretch), not just a live change."""
        return self.effect in ("render", "stretch")

    @property
    def bounds(self) -> tuple[float, float]:
        """``(minimum, maximum)`` of a number parameter as floats."""
        if self.minimum is None or self.maximum is None:
            raise ValueError(f"{self.name} is a {self.type} parameter; it has no range")
        return float(self.minimum), float(self.maximum)

    def slot_default(self, slot: int) -> object:
        """The default of one slot of a per-slot parameter."""
        return self.default[slot]  # type: ignore[index]


def _prompt(side: str, first: str) -> Param:
    return Param(
        f"prompt_{side}",
        "str",
        (first,) + ("",) * (PROMPT_SLOTS - 1),
        f"Prompt text of one slot of side {side.upper()}; an empty slot is left out of the blend.",
        max_length=1000,
        slots=PROMPT_SLOTS,
    )


def _weight(side: str) -> Param:
    return Param(
        f"weight_{side}",
        "float",
        (1.0,) * PROMPT_SLOTS,
        f"Weight of one prompt slot of side {side.upper()} in the blend; 0 leaves it out.",
        minimum=0.0,
        maximum=1.0,
        slots=PROMPT_SLOTS,
    )


def _seed(side: str, default: int) -> Param:
    return Param(
        f"seed_{side}",
        "int",
        default,
        f"Noise seed of side {side.upper()}; the same seed and prompts give the same clip.",
        minimum=0,
        maximum=2**32 - 1,
    )


def _denoise(side: str) -> Param:
    return Param(
        f"denoise_{side}",
        "float",
        0.75,
        f"How far side {side.upper()} moves away from the seed image (img2img strength).",
        minimum=0.0,
        maximum=1.0,
    )


def _guidance(side: str) -> Param:
    return Param(
        f"guidance_{side}",
        "float",
        7.0,
        f"Classifier-free guidance scale of side {side.upper()}: how closely it follows its prompts.",
        minimum=0.0,
        maximum=20.0,
    )


SCHEDULERS = ("default", "ddim", "pndm", "lms", "euler", "euler_a", "dpm", "unipc", "lcm", "tcd")
"""Scheduler names; ``default`` is the one saved with the model; ``lcm`` and ``tcd`` are for
few-step adapters."""

PARAMS: tuple[Param, ...] = (
    _prompt("a", "lo-fi hip hop beat"),
    _weight("a"),
    _prompt("b", ""),
    _weight("b"),
    _seed("a", 42),
    _seed("b", 43),
    _denoise("a"),
    _denoise("b"),
    _guidance("a"),
    _guidance("b"),
    Param(
        "alpha",
        "float",
        0.0,
        "Interpolation from side A (0) to side B (1): prompts and seed noise both move.",
        minimum=0.0,
        maximum=1.0,
    ),
    Param("negative", "str", "", "Negative prompt: what the clip should not sound like.", max_length=1000),
    Param(
        "steps",
        "int",
        50,
        "Diffusion steps per render: fewer is faster and rougher.",
        minimum=1,
        maximum=150,
        curve="exponential",
    ),
    Param("scheduler", "enum", "default", "Diffusion scheduler.", choices=SCHEDULERS),
    Param(
        "seed_image",
        "str",
        "groove_94",
        "Seed image for img2img: a built-in seed name, a file in the seed folder or a path; empty for text-to-image.",
        max_length=4096,
    ),
    Param(
        "bpm",
        "float",
        120.0,
        "Session tempo; each clip is stretched to exactly `bars` bars.",
        minimum=40.0,
        maximum=240.0,
        unit="BPM",
        effect="stretch",
    ),
    Param(
        "beats_per_bar",
        "int",
        4,
        "Beats in one bar (the meter).",
        minimum=1,
        maximum=16,
        unit="beats",
        effect="stretch",
    ),
    Param("bars", "int", 2, "Loop length in bars.", minimum=1, maximum=16, unit="bars", effect="stretch"),
    Param(
        "evolve",
        "float",
        0.0,
        "Evolve: how far the walk moves each loop (0 = off; Riffusion's app uses 0.25); "
        "the loop keeps changing on its own, the same way from the same start.",
        minimum=0.0,
        maximum=1.0,
        effect="walk",
    ),
    Param(
        "evolve_mode",
        "enum",
        "seed",
        "How evolve walks: `seed` plays side A against itself with the next seed and steps "
        "the seed on at each rollover; `pingpong` goes from A to B and back; `toward_b` goes "
        "to B and holds.",
        choices=EVOLVE_MODES,
        effect="walk",
    ),
    Param(
        "glide",
        "int",
        0,
        "Loops over which a change of prompts, weights or seeds glides from what is playing "
        "to the new state (0 = jump at the next seam).",
        minimum=0,
        maximum=64,
        unit="loops",
        effect="walk",
    ),
    Param(
        "transport",
        "enum",
        "play",
        "Play or stop on the bar grid: `stop` fades out at the next bar line and stops "
        "rendering; `play` starts on the next bar line with the last loop.",
        choices=TRANSPORT,
        effect="live",
    ),
    Param(
        "tempo_source",
        "enum",
        "internal",
        "Where the tempo comes from: riffengine itself, an Ableton Link session, or MIDI clock in.",
        choices=TEMPO_SOURCES,
        effect="live",
    ),
    Param(
        "crossfade_ms",
        "float",
        50.0,
        "Equal-power crossfade at the seam between clips.",
        minimum=0.0,
        maximum=2000.0,
        unit="ms",
        effect="live",
    ),
    Param(
        "gain",
        "float",
        0.0,
        "Output gain, heard within one audio period.",
        minimum=-60.0,
        maximum=12.0,
        unit="dB",
        effect="live",
    ),
    Param(
        "mute",
        "bool",
        False,
        "Silence the output at once; the loops keep playing underneath, so unmuting brings the music back where it is.",
        effect="live",
    ),
    Param(
        "scene",
        "int",
        0,
        "Recall a scene by its number: the config's `scenes` from 0 in file order, then the "
        "scenes saved into `paths.scenes` (`/riff/scene_save`); the State keeps the number last "
        "recalled.",
        minimum=0,
        maximum=127,
        effect="action",
    ),
)

_BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}


def names() -> tuple[str, ...]:
    """All parameter names, in table order."""
    return tuple(_BY_NAME)


def param(name: str) -> Param:
    """The row named ``name``; an unknown name raises UserError with the closest names."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown parameter {name!r}{suggest(str(name), _BY_NAME)}") from None


def suggest(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""`` if none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def label(p: Param, slot: int | None = None) -> str:
    """How errors name a parameter or one of its slots: ``bars`` or ``prompt_a/2``."""
    return p.name if slot is None else f"{p.name}/{slot}"


def _num(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_slot(p: Param, slot: object) -> int:
    """Check a slot index for ``p`` and return it as an int; raises UserError."""
    if not p.slots:
        raise UserError(f"{p.name} has no slots; address it as {p.address}")
    number = float(slot) if isinstance(slot, numbers.Real) and not isinstance(slot, bool) else math.nan
    if not (math.isfinite(number) and number.is_integer() and 0 <= number < p.slots):
        raise UserError(f"{p.name}: slot {_show(slot)} does not exist; use a slot from 0 to {p.slots - 1}")
    return int(number)


def parse_key(key: str) -> tuple[Param, int | None]:
    """Split a key ``name`` or ``name/slot`` (as in YAML and status replies) into row and slot."""
    name, sep, slot_text = str(key).partition("/")
    p = param(name)
    if not sep:
        return p, None
    if not slot_text.isdigit():
        raise UserError(f"{key}: slot {slot_text!r} is not a number; use {p.name}/0 to {p.name}/{max(p.slots - 1, 0)}")
    return p, check_slot(p, int(slot_text))


def lookup_address(address: str) -> tuple[Param, int | None]:
    """The row and slot an OSC address names: ``/riff/bars`` or ``/riff/prompt_a/2``.

    A per-slot parameter's own address (``/riff/prompt_a``) gives slot ``None``: the whole
    list. Raises UserError for an address outside the table.
    """
    head = PREFIX + "/"
    if not isinstance(address, str) or not address.startswith(head):
        raise UserError(f"OSC address {_show(address)} is not a parameter; parameters are at {head}<name>")
    rest = address[len(head) :]
    if not re.fullmatch(r"[a-z][a-z0-9_]*(/[0-9]+)?", rest):
        name = rest.split("/")[0]
        param(name)  # an unknown name gets a suggestion
        raise UserError(f"OSC address {_show(address)} is malformed; use {head}{name} or {head}{name}/<slot>")
    return parse_key(rest)


def to_normalized(name: str, value: object) -> float:
    """Map a valid value (as the State holds it) of a number, enum or bool parameter onto 0..1
    (the knob position)."""
    p = param(name)
    if p.type == "bool":
        return 1.0 if value else 0.0
    if p.type == "enum":
        return p.choices.index(str(value)) / max(len(p.choices) - 1, 1)
    if p.type == "str":
        raise UserError(f"{p.name} is text; it has no knob position")
    lo, hi = p.bounds
    if hi == lo:
        return 0.0
    return curve_position(p.curve, float(value), lo, hi)  # type: ignore[arg-type]


def from_normalized(name: str, x: float) -> object:
    """Map a knob position 0..1 (clamped) onto a typed value of a number, enum or bool parameter."""
    p = param(name)
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
        raise UserError(f"{p.name}: knob position {_show(x)} is not a number from 0 to 1")
    x = min(max(float(x), 0.0), 1.0)
    if p.type == "bool":
        return x >= 0.5
    if p.type == "enum":
        return p.choices[min(int(x * len(p.choices)), len(p.choices) - 1)]
    if p.type == "str":
        raise UserError(f"{p.name} is text; a knob cannot set it")
    lo, hi = p.bounds
    raw = curve_value(p.curve, x, lo, hi)
    if p.type == "int":
        return min(max(round(raw), int(lo)), int(hi))
    return min(max(raw, lo), hi)


def _ratio(lo: float, hi: float) -> float:
    if lo * hi > 0 and lo != hi:
        return hi / lo
    return EXP_RATIO


def curve_value(curve: str, x: float, lo: float, hi: float) -> float:
    """The value at knob travel ``x`` (0..1) on ``curve`` from ``lo`` to ``hi``."""
    if curve == "linear" or lo == hi:
        return lo + x * (hi - lo)
    r = _ratio(lo, hi)
    if curve == "exponential":
        y: float = (r**x - 1) / (r - 1)
    else:  # log: the exponential curve mirrored
        y = 1 - (r ** (1 - x) - 1) / (r - 1)
    return lo + y * (hi - lo)


def curve_position(curve: str, value: float, lo: float, hi: float) -> float:
    """The knob travel at which ``curve`` from ``lo`` to ``hi`` gives ``value`` (inverse)."""
    if lo == hi:
        return 0.0
    y = (value - lo) / (hi - lo)
    if curve == "linear":
        return y
    r = _ratio(lo, hi)
    if curve == "exponential":
        inner = 1 + y * (r - 1)
        return math.log(inner) / math.log(r) if inner > 0 else (0.0 if y < 0.5 else 1.0)
    inner = 1 + (1 - y) * (r - 1)
    return 1 - math.log(inner) / math.log(r) if inner > 0 else (1.0 if y > 0.5 else 0.0)


def _range_text(p: Param) -> str:
    if p.type == "enum":
        return ", ".join(f"`{c}`" for c in p.choices)
    if p.type in ("float", "int"):
        return f"{_num(p.minimum)} … {_num(p.maximum)}"
    if p.type == "bool":
        return "0 / 1"
    return f"≤ {p.max_length} chars"


def _default_text(p: Param) -> str:
    values = p.default if p.slots else (p.default,)
    shown = ", ".join(f'"{v}"' if isinstance(v, str) else _num(v) for v in values)  # type: ignore[attr-defined]
    return f"[{shown}]" if p.slots else shown


def markdown_table() -> str:
    """The parameter table as a Markdown table, one row per parameter."""
    rows = [
        "| Name | OSC address | Type | Range | Default | Unit | Curve | Effect | Description |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in PARAMS:
        address = f"`{p.address}/<0..{p.slots - 1}>`" if p.slots else f"`{p.address}`"
        rows.append(
            f"| `{p.name}` | {address} | {p.type} | {_range_text(p)} | {_default_text(p)} "
            f"| {p.unit} | {p.curve if p.type in ('float', 'int') else ''} | {p.effect} "
            f"| {p.help} |"
        )
    return "\n".join(rows) + "\n"


def parameters_markdown() -> str:
    """The whole ``docs/parameters.md`` page: an introduction and :func:`markdown_table`."""
    return (
        "# Parameters\n\n"
        "<!-- Generated from riffengine/control/params.py by `riffengine params "
        "--output docs/parameters.md`; do not edit by hand. -->\n\n"
        "Every controllable parameter of riffengine. The same name is the key in the config's "
        "`initial` and `scenes` sections, the target of a MIDI mapping and the OSC address. "
        f"Per-slot parameters have {PROMPT_SLOTS} slots, numbered from 0: set one slot at "
        f"`{PREFIX}/<name>/<slot>` (key `<name>/<slot>`), or all slots at once at "
        f"`{PREFIX}/<name>` with a list.\n\n"
        "Integer parameters accept integral floats (Pure Data sends only floats). Curve is how "
        "a 0..1 knob maps onto the range. Effect says what a change costs: `render` makes a "
        "new image, `stretch` re-stretches the current image to a new length, `live` is heard "
        "at once, `walk` sets how the next loops evolve or glide, `action` is a command (scene "
        "recall).\n\n" + markdown_table()
    )
