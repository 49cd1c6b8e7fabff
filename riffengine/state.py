"""The State: an immutable, versioned snapshot of every parameter, and pure functions on it.

A :class:`State` holds the current value of every row of
:data:`riffengine.control.params.PARAMS` (per-slot parameters as tuples) and a ``version``.
Nothing changes a State; :func:`apply` and friends return a new one, validated through the
parameter table's rules (:mod:`riffengine.validation`), whose version is one higher if, and
only if, a value changed. Readers downstream (planner, renderer, status replies) can
therefore hold a snapshot as long as they like and compare versions to see whether anything
moved. This module, the parameter table and its rules are the core: they import nothing else
of riffengine but its errors.

Keys name a parameter (``"bars"``) or one slot of a per-slot parameter (``"prompt_a/2"``),
as in the config file and in OSC addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, cast

from riffengine import validation
from riffengine.control import params
from riffengine.errors import UserError

Changes = Mapping[str, object] | Iterable[tuple[str, object]]
"""Parameter changes: a mapping or pairs of key (``name`` or ``name/slot``) and value."""


class StartValues(Protocol):
    """What gives the starting values: :class:`riffengine.config.Settings`."""

    def initial_values(self) -> Iterable[tuple[str, object]]: ...


@dataclass(frozen=True)
class State:
    """One snapshot of every parameter value; ``version`` counts the changes that made it.

    ``values`` is a read-only mapping from parameter name to value (a tuple for per-slot
    parameters). Build States with :func:`initial_state`, never by hand.
    """

    values: Mapping[str, object] = field(
        default_factory=lambda: MappingProxyType({p.name: p.default for p in params.PARAMS})
    )
    version: int = 0

    __hash__ = None  # type: ignore[assignment]  # the mapping is not hashable


def _with(state: State, updates: dict[str, object]) -> State:
    """``state`` with ``updates`` applied; the same object if nothing differs."""
    changed = {k: v for k, v in updates.items() if state.values[k] != v}
    if not changed:
        return state
    return State(MappingProxyType({**state.values, **changed}), state.version + 1)


def _resolve(current: Mapping[str, object], key: str, value: object, slot: int | None) -> tuple[str, object]:
    """Validate one change and return (name, new whole value) given the values so far."""
    p, key_slot = params.parse_key(key)
    if slot is not None and key_slot is not None:
        raise UserError(f"{key}: the key already names a slot; do not pass slot={slot}")
    slot = key_slot if key_slot is not None else slot
    checked = validation.validate(p.name, value, slot)
    if slot is None or not p.slots:
        return p.name, checked
    slot = params.check_slot(p, slot)
    whole = list(current[p.name])  # type: ignore[call-overload]
    whole[slot] = checked
    return p.name, tuple(whole)


def apply(state: State, name: str, value: object, slot: int | None = None) -> State:
    """A new State with one parameter (or one slot) set; raises UserError for a bad value.

    ``name`` may also be a ``name/slot`` key. Setting a per-slot parameter without a slot
    takes a list of up to ``slots`` values (missing trailing slots take their defaults).
    """
    key, whole = _resolve(state.values, name, value, slot)
    return _with(state, {key: whole})


def _pairs(changes: Changes) -> Iterable[tuple[str, object]]:
    return changes.items() if isinstance(changes, Mapping) else changes


def apply_many(state: State, changes: Changes) -> State:
    """A new State with all ``changes`` applied at once, or UserError and no change at all.

    The version goes up by one at most, however many values changed. Later changes to the
    same key win.
    """
    updates: dict[str, object] = {}
    for key, value in _pairs(changes):
        name, whole = _resolve({**state.values, **updates}, key, value, None)
        updates[name] = whole
    return _with(state, updates)


def recall_scene(state: State, scene: Changes, number: int | None = None) -> State:
    """A new State with a scene's values applied; ``number`` also sets the ``scene`` parameter."""
    changes = list(_pairs(scene))
    if number is not None:
        changes.append(("scene", number))
    return apply_many(state, changes)


def initial_state(settings: StartValues | None = None) -> State:
    """The State at start-up: the table's defaults, then the values the settings give."""
    state = State()
    if settings is not None:
        state = apply_many(state, settings.initial_values())
    return State(state.values, 0)


def get(state: State, name: str, slot: int | None = None) -> object:
    """The value of a parameter, of one of its slots (``slot`` or a ``name/slot`` key)."""
    p, key_slot = params.parse_key(name)
    slot = key_slot if key_slot is not None else slot
    value = state.values[p.name]
    if slot is None:
        return value
    return value[params.check_slot(p, slot)]  # type: ignore[index]


def as_pairs(state: State) -> tuple[tuple[str, object], ...]:
    """Every value as (key, value) pairs in table order, one pair per slot (``prompt_a/0``).

    The key appended to :data:`riffengine.control.params.PREFIX` with a ``/`` is its OSC
    address, so a status reply can send each pair as it is.
    """
    pairs: list[tuple[str, object]] = []
    for p in params.PARAMS:
        value = state.values[p.name]
        if p.slots:
            # A slotted parameter's value is a tuple, one value per slot.
            slots = cast("tuple[object, ...]", value)
            pairs.extend((f"{p.name}/{i}", v) for i, v in enumerate(slots))
        else:
            pairs.append((p.name, value))
    return tuple(pairs)
