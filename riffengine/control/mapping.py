"""MIDI mappings: which control drives which parameter, and how. Pure: no I/O, no threads.

A mapping file is a YAML list; each entry binds one MIDI control to one target::

    - cc: 0                 # a knob or fader (control change 0..127)
      channel: 1            # 1..16; leave out for any channel
      param: alpha          # a parameter, or one slot of one: weight_a/1
      range: [0.0, 1.0]     # part of the parameter's range the control sweeps (default: all)
      curve: linear         # linear, exponential or log (default: the parameter's own)
      smoothing: 0.1        # seconds to glide to a new position (default 0: jump)
      pickup: true          # soft takeover (default true)
    - cc: 16
      mode: twos_complement # a relative encoder: twos_complement, offset_64, sign_magnitude
      step: 0.01            # knob travel (0..1) per encoder tick (default 1/127)
      param: seed_a
    - cc: 1
      bits: 14              # 14-bit pair: MSB on cc 1 (0..31), LSB on cc 33, either order
      param: denoise_a
    - note: 36              # a pad: note on recalls scene 0
      scene: 0              # a scene by number or by name
    - note: 37
      param: weight_b/0     # velocity sets it; note off sets the low end (unless latch: true)
    - cc: 41                # a button (pressed = value 64 and up)
      set: {prompt_a/1: "dusty vinyl crackle", weight_a/1: 1.0}
    - program: any          # program change N recalls scene N (or give program: 3, scene: 1)

Rules: every key of an entry is checked by the validation layer (:mod:`riffengine.validation`,
the config's rules: ``1.0`` is a whole number there too) and every error of an entry is
reported at once; targets and ``set`` values are checked against the parameter table
(:mod:`riffengine.control.params`), so a mapping accepts exactly what OSC and the config accept.
Several entries may share one control (one knob, several parameters); among knob entries
(``cc`` with ``param``) a later entry for the same parameter replaces an earlier one, which is
how MIDI learn appends.

Curves map the knob travel x (0..1) onto the range [lo, hi]: ``linear`` in equal steps;
``exponential`` slowly at the start and fast at the end (for a range of one sign: equal
knob steps give equal ratios, ``lo * (hi / lo) ** x``, the table's ``log`` scale);
``log`` the mirror image, fast at the start and slow at the end.

Soft takeover: after the parameter was set elsewhere (OSC, a scene, start-up), a knob does
nothing until it reaches or passes the parameter's current value, so the sound never jumps.
Relative encoders and notes need no pickup.

:class:`Mapper` turns messages into :class:`SetValues` and :class:`RecallScene` actions. It is
called from one thread (the asyncio loop) with the current values and a monotonic time; it
keeps the knob positions, pickup, 14-bit halves and glides between calls.
"""

from __future__ import annotations

import datetime
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml
from pydantic import ValidationError

from riffengine import validation
from riffengine.control import params
from riffengine.control.params import CURVES, curve_position, curve_value
from riffengine.errors import UserError
from riffengine.yamlfile import read_yaml

MODES = ("absolute", "twos_complement", "offset_64", "sign_magnitude")
KINDS = ("cc", "note", "program")

PICKUP_WINDOW = 2 / 127
"""A knob this close (in travel) to the current value picks it up at once."""

PAIR_WINDOW = 0.02
"""Seconds within which the two halves of a 14-bit pair belong together."""

GLIDE_END = 0.5 / 16383
"""A glide this close to its target (in travel) snaps to it."""


# --- bindings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Binding:
    """One checked mapping entry.

    ``kind`` is ``cc``, ``note`` or ``program``; ``number`` the control, note or program
    (``None``: any program); ``channel`` 0..15 or ``None`` for any. Exactly one target:
    ``key`` (a parameter key), ``scene`` (number, name, or ``None`` with ``program: any``
    meaning the program number) or ``values`` (a ``set`` of parameter values).
    """

    kind: str
    number: int | None
    channel: int | None = None
    key: str | None = None
    scene: int | str | None = None
    values: Mapping[str, object] | None = None
    low: float = 0.0
    high: float = 1.0
    curve: str = "linear"
    smoothing: float = 0.0
    pickup: bool = True
    mode: str = "absolute"
    step: float = 1 / 127
    bits: int = 7
    latch: bool = False
    label: str = ""

    @property
    def continuous(self) -> bool:
        """True if the control sets a parameter (a knob, fader, encoder or velocity)."""
        return self.key is not None

    @property
    def relative(self) -> bool:
        return self.mode != "absolute"

    @property
    def lsb(self) -> int | None:
        """The LSB control of a 14-bit pair, else None."""
        return self.number + 32 if self.bits == 14 and self.number is not None else None

    def value_at(self, x: float) -> object:
        """The parameter value at knob travel ``x`` (0..1), typed and inside the table's range."""
        assert self.key is not None
        row, _ = params.parse_key(self.key)
        x = min(max(x, 0.0), 1.0)
        if row.type in ("bool", "enum"):
            return params.from_normalized(row.name, x)
        raw = curve_value(self.curve, x, self.low, self.high)
        lo, hi = float(row.minimum), float(row.maximum)  # type: ignore[arg-type]
        if row.type == "int":
            return min(max(round(raw), int(lo)), int(hi))
        return min(max(raw, lo), hi)

    def position(self, value: object) -> float:
        """The knob travel (0..1) at which this binding gives ``value``; clamped to the ends."""
        assert self.key is not None
        row, slot = params.parse_key(self.key)
        if row.type in ("bool", "enum"):
            return params.to_normalized(row.name, value)
        return min(max(curve_position(self.curve, float(value), self.low, self.high), 0.0), 1.0)  # type: ignore[arg-type]


def relative_delta(mode: str, value: int) -> int:
    """Encoder ticks in one relative CC value (positive = clockwise)."""
    if mode == "twos_complement":  # 1..63 up, 127..64 down
        return value - 128 if value >= 64 else value
    if mode == "offset_64":  # 64 is no move, 65 = +1, 63 = -1
        return value - 64
    if mode == "sign_magnitude":  # bit 6 is the sign: 1..63 up, 65..127 down
        return -(value & 0x3F) if value & 0x40 else value
    raise ValueError(f"not a relative mode: {mode}")


# --- actions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SetValues:
    """Set these parameter keys to these values (all or nothing)."""

    changes: tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class RecallScene:
    """Recall a scene by number or name."""

    scene: int | str


Action = SetValues | RecallScene


# --- checking entries --------------------------------------------------------------------


class _Bad(Exception):
    """An entry whose keys do not go together; the message names the key and the fix."""


def _scene_rule(value: object) -> object:
    """``scene:``: a scene number (as the ``scene`` parameter takes it) or a name."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return validation.coerce(params.param("scene"), value)
    raise validation.Invalid(f"{validation.show(value)} is not valid; use a scene number or name")


def _set_rule(value: object) -> object:
    """``set:``: parameter values, checked by the table; an action is refused with its fix."""
    if not isinstance(value, Mapping) or not value:
        raise validation.Invalid('use a mapping of parameter keys to values, e.g. {prompt_a/1: "rain"}')
    for key in value:
        row, _ = params.parse_key(str(key))
        if row.effect == "action":
            raise validation.Invalid(f"{row.name} is an action; use scene: N instead")
    return validation.adapter(validation.PARAM_VALUES).validate_python(value)  # errors keep their keys


def _pair(value: object) -> object:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise validation.Invalid(f"{validation.show(value)} is not valid; use [low, high], e.g. [0.0, 1.0]")
    return tuple(value)


class Entry(validation.Strict):
    """One entry of a mappings file with each key checked alone; :func:`check_entry` then checks
    how they go together. A key left out is None."""

    expected: ClassVar[str] = "a mapping entry, e.g. {cc: 0, param: alpha}"
    cc: int | None = validation.setting(validation.whole(0, 127), None)
    note: int | None = validation.setting(validation.whole(0, 127), None)
    program: int | str | None = validation.setting(
        validation.either(
            validation.choice("any"), validation.whole(0, 127), what="a program number from 0 to 127, or any"
        ),
        None,
    )
    channel: int | None = validation.setting(validation.whole(1, 16), None)
    param: str | None = validation.setting(validation.text("a parameter key, e.g. alpha or weight_a/1"), None)
    scene: int | str | None = validation.setting(validation.checked(_scene_rule), None)
    set: Mapping[str, object] | None = validation.setting(validation.checked(_set_rule), None)
    range: tuple[object, object] | None = validation.setting(validation.checked(_pair), None)
    curve: str | None = validation.setting(validation.choice(*CURVES), None)
    smoothing: float | None = validation.setting(validation.number(0.0, 10.0), None)
    pickup: bool | None = validation.setting(validation.FLAG, None)
    mode: str | None = validation.setting(validation.choice(*MODES), None)
    step: float | None = validation.setting(validation.number(0.0, 1.0, above=True), None)
    bits: int | None = validation.setting(validation.whole(7, 14), None)
    latch: bool | None = validation.setting(validation.FLAG, None)


ENTRY_KEYS = tuple(Entry.model_fields)


def check_target(key: object) -> tuple[params.Param, int | None]:
    """Check that ``key`` names a parameter a knob can set; UserError naming the fix."""
    row, slot = params.parse_key(str(key))
    if row.effect == "action":
        raise UserError(f"{row.name} is an action; map it with `scene: N` on a note, button or program change")
    if row.type == "str":
        raise UserError(f"{row.name} is text; a knob cannot set it (use `set:` on a note or button to set a text)")
    if row.slots and slot is None:
        raise UserError(f"{row.name} has {row.slots} slots; name one, e.g. {row.name}/0")
    return row, slot


def _describe(entry: Mapping) -> str:
    kind = next((k for k in KINDS if k in entry), None)
    what = f"{kind} {entry[kind]}" if kind else "?"
    target = entry.get("param") or (f"scene {entry['scene']}" if "scene" in entry else None)
    if target is None and "set" in entry:
        target = "set"
    return f"{what} -> {target}" if target else what


def entry_errors(entry: object, scenes: Sequence[str] | None = None) -> tuple[Binding | None, validation.Errors]:
    """Check one mapping entry (a dict from YAML): its Binding, or None and every error found
    as (key, message) pairs; ``scenes`` are the configured scene names, in order (when given,
    scene names must exist)."""
    try:
        checked = Entry.model_validate(entry)
    except ValidationError as exc:
        return None, validation.messages(exc)
    try:
        return _binding(checked, _describe(entry), scenes), []  # type: ignore[arg-type]
    except (_Bad, UserError) as exc:
        return None, [("", str(exc))]


def check_entry(entry: object, scenes: Sequence[str] | None = None) -> Binding:
    """Check one mapping entry (a dict from YAML) and return its Binding; UserError if bad.

    ``scenes`` are the configured scene names, in order; when given, scene names must exist.
    """
    binding, errors = entry_errors(entry, scenes)
    if binding is None:
        raise UserError("; ".join(_say(path, message) for path, message in errors))
    return binding


def _say(path: str, message: str) -> str:
    return f"{path}: {message}" if path else message


def _binding(e: Entry, label: str, scenes: Sequence[str] | None) -> Binding:
    given = e.model_fields_set
    kinds = [k for k in KINDS if k in given]
    if len(kinds) != 1:
        raise _Bad("give exactly one of cc, note or program")
    kind = kinds[0]
    targets = [k for k in ("param", "scene", "set") if k in given]
    if len(targets) > 1 or (not targets and kind != "program"):
        raise _Bad("give exactly one target: param, scene or set")
    target = targets[0] if targets else "scene"

    bits = e.bits if e.bits is not None else 7
    if bits not in (7, 14):
        raise _Bad("bits: use 7 or 14")
    if bits == 14 and kind != "cc":
        raise _Bad("bits: 14-bit pairs are control changes; use cc")
    number: int | None = None if e.program == "any" else getattr(e, kind)
    if bits == 14 and e.cc is not None and e.cc > 31:
        raise _Bad(f"cc: {e.cc} is out of range; use {validation.whole_words(0, 31)}")
    channel = e.channel - 1 if e.channel is not None else None
    _only(e, kind, target)
    common: dict[str, Any] = dict(kind=kind, number=number, channel=channel, label=label)

    if target == "scene":
        return Binding(**common, scene=_scene(e.scene, number, scenes))
    if target == "set":
        return Binding(**common, values=e.set)
    return _knob(e, common, bits)


def _only(e: Entry, kind: str, target: str) -> None:
    """Refuse options that do nothing for this kind of entry."""
    knob_cc = kind == "cc" and target == "param"
    relative = e.mode not in (None, "absolute")
    allowed = {
        "range": target == "param",
        "curve": target == "param",
        "smoothing": target == "param",
        "pickup": knob_cc and not relative,
        "mode": knob_cc,
        "step": knob_cc and relative,
        "bits": kind == "cc" and target == "param",
        "latch": kind == "note" and target == "param",
    }
    for key, ok in allowed.items():
        if key in e.model_fields_set and not ok:
            raise _Bad(f"{key}: does not apply to this entry; remove it")
    if kind == "program" and target != "scene":
        raise _Bad("a program change recalls a scene; use scene: N")


def _scene(value: int | str | None, program: int | None, scenes: Sequence[str] | None) -> int | str | None:
    if value is None:
        if program is not None:
            raise _Bad(
                "scene: give a scene number or name (only `program: any` may leave it out, meaning the program number)"
            )
        return None
    if scenes is not None and isinstance(value, str) and value not in scenes:
        # names must exist; numbers may point at scenes the config adds later (a ready
        # controller mapping recalls 0..7), and a missing one is reported when recalled
        listed = ", ".join(f"{i}={n}" for i, n in enumerate(scenes)) or "none are configured"
        raise _Bad(f"scene: {value!r} does not exist; scenes: {listed}")
    return value


def _knob(e: Entry, common: dict[str, Any], bits: int) -> Binding:
    key = str(e.param)
    row, slot = check_target(key)
    numeric = row.type in ("float", "int")
    if not numeric and (e.range is not None or e.curve is not None):
        raise _Bad(f"range, curve: {row.name} is {row.type}; a knob picks its value by position")
    low, high = float(row.minimum or 0), float(row.maximum or 1)
    if e.range is not None:
        low, high = _range(e.range, row)
    mode = e.mode or "absolute"
    if mode != "absolute" and bits == 14:
        raise _Bad("mode: relative encoders send 7-bit steps; remove bits: 14")
    return Binding(
        **common,
        key=key,
        low=low,
        high=high,
        curve=e.curve or row.curve,
        smoothing=e.smoothing if e.smoothing is not None else 0.0,
        pickup=e.pickup if e.pickup is not None else True,
        mode=mode,
        step=e.step if e.step is not None else 1 / 127,
        bits=bits,
        latch=bool(e.latch),
    )


def _range(ends: tuple[object, object], row: params.Param) -> tuple[float, float]:
    """A knob's ``range: [low, high]``: two different values of the parameter."""
    try:
        low, high = (float(validation.coerce(row, end)) for end in ends)  # type: ignore[arg-type]
    except validation.Invalid as exc:
        raise _Bad(f"range: {exc}") from None
    if low == high:
        raise _Bad("range: low and high are equal; give two different values")
    return low, high


# --- loading and saving files --------------------------------------------------------------


def parse_mappings(
    data: object, source: str = "mappings", lines: Sequence[int] | None = None, scenes: Sequence[str] | None = None
) -> tuple[Binding, ...]:
    """Check a list of entries; one UserError lists every bad entry by number (and line)."""
    if data is None:
        return ()
    if not isinstance(data, (list, tuple)):
        raise UserError(
            f"{source}: a mappings file is a YAML list of entries "
            "(- cc: 0\\n  param: alpha); see configs/nanokontrol2.yaml"
        )
    bindings, errors = [], []
    for i, entry in enumerate(data):
        binding, problems = entry_errors(entry, scenes)
        if binding is not None:
            bindings.append(binding)
            continue
        where = f"{source}:{lines[i]}" if lines and i < len(lines) else source
        label = _describe(entry) if isinstance(entry, Mapping) else "?"
        errors += [f"{where}: entry {i + 1} ({label}): {_say(path, message)}" for path, message in problems]
    if errors:
        raise UserError("\n".join(errors))
    return tuple(bindings)


def load_mappings(path: str | os.PathLike[str], scenes: Sequence[str] | None = None) -> tuple[Binding, ...]:
    """Read and check a mappings file; UserError naming the file, line and entry."""
    path = os.fspath(path)
    node, data = read_yaml(path, "mappings file", "check midi.mappings, or start from configs/nanokontrol2.yaml")
    lines = [item.start_mark.line + 1 for item in node.value] if isinstance(node, yaml.SequenceNode) else None
    return parse_mappings(data, path, lines, scenes)


def mappings_from_settings(mappings: object, scenes: Sequence[str] | None = None) -> tuple[Binding, ...]:
    """The bindings of a ``midi.mappings`` setting: a file path, an inline list, or None."""
    if mappings is None:
        return ()
    if isinstance(mappings, str):
        return load_mappings(mappings, scenes)
    entries: Sequence[Mapping[str, object]] = mappings  # type: ignore[assignment]
    return parse_mappings([dict(m) for m in entries], "midi.mappings", None, scenes)


def learned_entry(key: str, cc: int, channel: int) -> dict[str, object]:
    """The mapping entry MIDI learn writes: an absolute CC on one channel (0..15) -> ``key``."""
    return {"cc": cc, "channel": channel + 1, "param": key}


def append_entry(
    path: str | os.PathLike[str], entry: Mapping[str, object], now: datetime.datetime | None = None
) -> None:
    """Add ``entry`` at the end of a mappings file, keeping the file's text and comments.

    The file is created if missing. If appending would not give a valid list (the file
    holds something else), UserError names the file and leaves it as it was.
    """
    path = os.fspath(path)
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as file:
            text = file.read()
    stamp = (now or datetime.datetime.now()).strftime("%Y-%m-%d %H:%M")
    block = yaml.safe_dump([dict(entry)], sort_keys=False, default_flow_style=False)
    if text and not text.endswith("\n"):
        text += "\n"
    if not text.strip():
        text = "# riffengine MIDI mappings (see configs/nanokontrol2.yaml for the format)\n"
    new_text = f"{text}# learned {stamp}\n{block}"
    try:
        data = yaml.safe_load(new_text)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, list) or dict(data[-1]) != dict(entry):
        raise UserError(
            f"{path}: cannot add a learned mapping: the file is not a YAML list "
            "of entries in block style; fix it or point midi.mappings at a new file"
        )
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as file:
        file.write(new_text)
    os.replace(tmp, path)


# --- the mapper ----------------------------------------------------------------------------


@dataclass
class _Glide:
    start: float
    target: float
    t0: float


@dataclass
class _Half:
    which: str  # "msb" or "lsb"
    value: int
    time: float


@dataclass
class _Runtime:
    """What the mapper remembers about one binding between messages."""

    last_x: float | None = None  # last knob travel received
    picked: bool = False  # soft takeover: the knob holds the value
    sent: object = None  # last value this binding set
    x: float | None = None  # travel of the value last set (relative encoders, glides)
    glide: _Glide | None = None
    msb: int = 0
    lsb: int = 0
    pending: _Half | None = None
    pressed: bool = False


def _current(key: str, values: Mapping[str, object]) -> object:
    row, slot = params.parse_key(key)
    value = values[row.name]
    return value if slot is None else value[slot]  # type: ignore[index]


@dataclass
class Mapper:
    """Turns MIDI messages into actions through a list of bindings. One thread only (the loop).

    ``handle`` and ``tick`` take the current parameter values (``State.values``) and a
    monotonic time in seconds; ``busy`` says whether ``tick`` has work (glides, lone 14-bit
    halves) and should be called again soon.
    """

    bindings: list[Binding] = field(default_factory=list)

    def __post_init__(self) -> None:
        bindings, self.bindings = list(self.bindings), []
        self._runtime: dict[int, _Runtime] = {}
        for binding in bindings:
            self.add(binding)

    def add(self, binding: Binding) -> None:
        """Add a binding; a knob binding replaces an earlier knob binding of the same key."""
        if binding.kind == "cc" and binding.continuous:
            self.bindings = [b for b in self.bindings if not (b.kind == "cc" and b.continuous and b.key == binding.key)]
        self.bindings.append(binding)
        self._runtime = {id(b): self._runtime.get(id(b), _Runtime()) for b in self.bindings}

    @property
    def busy(self) -> bool:
        return any(rt.glide is not None or rt.pending is not None for rt in self._runtime.values())

    def handle(self, msg: object, values: Mapping[str, object], now: float) -> list[Action]:
        """Actions for one mido-like message (``type``, ``channel``, ``control``/``note``...)."""
        kind = getattr(msg, "type", None)
        channel = getattr(msg, "channel", None)
        out: list[Action] = []
        for binding in self.bindings:
            if binding.channel is not None and binding.channel != channel:
                continue
            rt = self._runtime[id(binding)]
            if kind == "control_change" and binding.kind == "cc":
                out += self._cc(binding, rt, msg.control, msg.value, values, now)  # type: ignore[attr-defined]
            elif kind in ("note_on", "note_off") and binding.kind == "note" and binding.number == msg.note:  # type: ignore[attr-defined]
                velocity = msg.velocity if kind == "note_on" else 0  # type: ignore[attr-defined]
                out += self._note(binding, rt, velocity, values, now)
            elif kind == "program_change" and binding.kind == "program" and binding.number in (None, msg.program):  # type: ignore[attr-defined]
                scene = binding.scene if binding.scene is not None else msg.program  # type: ignore[attr-defined]
                out.append(RecallScene(scene))
        return out

    def tick(self, values: Mapping[str, object], now: float) -> list[Action]:
        """Actions due by ``now``: glide steps and 14-bit halves whose partner never came."""
        out: list[Action] = []
        for binding in self.bindings:
            rt = self._runtime[id(binding)]
            if rt.pending is not None and now - rt.pending.time > PAIR_WINDOW:
                out += self._commit(binding, rt, values, now)
            if rt.glide is not None:
                out += self._glide_step(binding, rt, values, now)
        return out

    # -- per kind --

    def _cc(
        self, b: Binding, rt: _Runtime, control: int, value: int, values: Mapping[str, object], now: float
    ) -> list[Action]:
        if b.bits == 14 and control in (b.number, b.lsb):
            return self._half(b, rt, "msb" if control == b.number else "lsb", value, values, now)
        if control != b.number:
            return []
        if not b.continuous:  # a button: fire on press
            pressed = value >= 64
            was, rt.pressed = rt.pressed, pressed
            return self._trigger(b) if pressed and not was else []
        if b.relative:
            return self._relative(b, rt, relative_delta(b.mode, value), values, now)
        return self._move(b, rt, value / 127, values, now)

    def _note(self, b: Binding, rt: _Runtime, velocity: int, values: Mapping[str, object], now: float) -> list[Action]:
        if not b.continuous:
            return self._trigger(b) if velocity > 0 else []
        if velocity == 0 and b.latch:
            return []
        rt.picked = True  # a pad has no position to pick up
        return self._move(b, rt, velocity / 127, values, now)

    def _trigger(self, b: Binding) -> list[Action]:
        if b.values is not None:
            return [SetValues(tuple(b.values.items()))]
        return [RecallScene(b.scene)] if b.scene is not None else []

    # -- 14-bit pairs --

    def _half(
        self, b: Binding, rt: _Runtime, which: str, value: int, values: Mapping[str, object], now: float
    ) -> list[Action]:
        out: list[Action] = []
        p = rt.pending
        if p is not None and (p.which == which or now - p.time > PAIR_WINDOW):
            out += self._commit(b, rt, values, now)
            p = None
        if p is not None:  # the partner of a pending half: move once with both
            rt.pending = None
            setattr(rt, p.which, p.value)
            setattr(rt, which, value)
            return out + self._move(b, rt, (rt.msb * 128 + rt.lsb) / 16383, values, now)
        rt.pending = _Half(which, value, now)
        return out

    def _commit(self, b: Binding, rt: _Runtime, values: Mapping[str, object], now: float) -> list[Action]:
        p, rt.pending = rt.pending, None
        if p is None:
            return []
        setattr(rt, p.which, p.value)
        return self._move(b, rt, (rt.msb * 128 + rt.lsb) / 16383, values, now)

    # -- moving a parameter --

    def _resync(self, b: Binding, rt: _Runtime, values: Mapping[str, object]) -> object:
        """The current value; forget pickup and glides if someone else changed it."""
        current = _current(b.key, values)  # type: ignore[arg-type]
        if rt.sent is not None and current != rt.sent:
            rt.picked, rt.glide, rt.x, rt.sent = False, None, None, None
        return current

    def _move(self, b: Binding, rt: _Runtime, x: float, values: Mapping[str, object], now: float) -> list[Action]:
        current = self._resync(b, rt, values)
        if b.pickup and not rt.picked:
            here = b.position(current)
            last = rt.last_x
            crossed = last is not None and min(last, x) <= here <= max(last, x)
            if not crossed and abs(x - here) > PICKUP_WINDOW:
                rt.last_x = x
                return []
            rt.picked = True
        rt.last_x = x
        return self._go(b, rt, x, current, now)

    def _relative(self, b: Binding, rt: _Runtime, ticks: int, values: Mapping[str, object], now: float) -> list[Action]:
        current = self._resync(b, rt, values)
        start = rt.glide.target if rt.glide else (rt.x if rt.x is not None else b.position(current))
        return self._go(b, rt, min(max(start + ticks * b.step, 0.0), 1.0), current, now)

    def _go(self, b: Binding, rt: _Runtime, x: float, current: object, now: float) -> list[Action]:
        if b.smoothing <= 0:
            return self._emit(b, rt, x)
        start = self._glide_at(b, rt.glide, now) if rt.glide else (rt.x if rt.x is not None else b.position(current))
        rt.glide = _Glide(start, x, now)
        return self._glide_step(b, rt, {}, now, resync=False)

    @staticmethod
    def _glide_at(b: Binding, glide: _Glide, now: float) -> float:
        tau = b.smoothing / 3  # about 95 % of the way after `smoothing` seconds
        k = math.exp(-max(now - glide.t0, 0.0) / tau)
        return glide.target + (glide.start - glide.target) * k

    def _glide_step(
        self, b: Binding, rt: _Runtime, values: Mapping[str, object], now: float, resync: bool = True
    ) -> list[Action]:
        if resync:
            self._resync(b, rt, values)
        glide = rt.glide
        if glide is None:
            return []
        x = self._glide_at(b, glide, now)
        if abs(x - glide.target) <= GLIDE_END:
            x, rt.glide = glide.target, None
        return self._emit(b, rt, x)

    def _emit(self, b: Binding, rt: _Runtime, x: float) -> list[Action]:
        value = b.value_at(x)
        rt.x = x
        if value == rt.sent:
            return []
        rt.sent = value
        return [SetValues(((b.key, value),))]  # type: ignore[arg-type]
