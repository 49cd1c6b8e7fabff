"""The parameter table: invariants, validation, knob mapping, OSC addresses, docs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from riffengine import validation
from riffengine.control import params
from riffengine.control.params import PARAMS
from riffengine.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
NUMERIC = [p for p in PARAMS if p.type in ("float", "int")]
KNOBBED = [p for p in PARAMS if p.type != "str"]


def test_names_are_unique_identifiers():
    names = [p.name for p in PARAMS]
    assert len(names) == len(set(names))
    assert all(name.isidentifier() and name == name.lower() for name in names)


@pytest.mark.parametrize("p", PARAMS, ids=lambda p: p.name)
def test_row_is_well_formed(p):
    assert p.type in params.TYPES
    assert p.effect in params.EFFECTS
    assert p.curve in params.CURVES
    assert p.help.strip()
    if p.type in ("float", "int"):
        assert p.minimum is not None and p.maximum is not None
        assert math.isfinite(p.minimum) and math.isfinite(p.maximum)
        assert p.minimum < p.maximum
        if p.curve != "linear":
            assert p.minimum > 0
    if p.type == "enum":
        assert p.choices and len(set(p.choices)) == len(p.choices)
    if p.type == "str":
        assert p.max_length > 0
    if p.slots:
        assert isinstance(p.default, tuple) and len(p.default) == p.slots


@pytest.mark.parametrize("p", PARAMS, ids=lambda p: p.name)
def test_every_default_validates_to_itself(p):
    assert validation.validate(p.name, p.default) == p.default
    if p.slots:
        for slot in range(p.slots):
            assert validation.validate(p.name, p.slot_default(slot), slot) == p.slot_default(slot)


@pytest.mark.parametrize("p", PARAMS, ids=lambda p: p.name)
def test_every_address_resolves_back(p):
    assert params.lookup_address(p.address) == (p, None)
    for slot in range(p.slots):
        assert params.lookup_address(p.slot_address(slot)) == (p, slot)


def test_required_parameters_are_present():
    required = {
        "prompt_a",
        "weight_a",
        "prompt_b",
        "weight_b",
        "seed_a",
        "seed_b",
        "denoise_a",
        "denoise_b",
        "guidance_a",
        "guidance_b",
        "alpha",
        "negative",
        "steps",
        "scheduler",
        "seed_image",
        "bpm",
        "beats_per_bar",
        "bars",
        "crossfade_ms",
        "gain",
        "scene",
    }
    assert required <= set(params.names())
    assert params.param("prompt_a").slots == params.PROMPT_SLOTS == 4
    assert params.param("alpha").minimum == 0.0 and params.param("alpha").maximum == 1.0


def test_live_parameters_do_not_rerender():
    assert not params.param("gain").rerenders
    assert not params.param("crossfade_ms").rerenders
    assert params.param("prompt_a").rerenders and params.param("bars").rerenders


def test_float_is_accepted_for_int_when_integral():
    assert validation.validate("bars", 8.0) == 8
    assert type(validation.validate("bars", 8.0)) is int
    assert type(validation.validate("bpm", 120)) is float
    with pytest.raises(UserError, match=r"bars: 2\.5 is not a whole number; use a whole number from 1 to 16"):
        validation.validate("bars", 2.5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused(bad):
    with pytest.raises(UserError, match=r"^alpha: .* is not a finite number; use a number from 0 to 1"):
        validation.validate("alpha", bad)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("bars", 17, r"^bars: 17 is out of range; use a whole number from 1 to 16$"),
        ("bpm", 39.9, r"^bpm: 39\.9 is out of range; use a number from 40 to 240$"),
        ("bpm", "fast", r"^bpm: 'fast' is not a number"),
        ("bars", True, r"^bars: True is not a number"),
        ("bars", None, r"^bars: null is not a number"),
        ("negative", 3, r"^negative: 3 is not a string"),
        ("scheduler", "dim", r"^scheduler: 'dim' is not a choice; did you mean 'ddim'\?"),
        ("negative", "x" * 1001, r"^negative: a string of 1001 characters is too long; use at most 1000"),
        ("barz", 4, r"^unknown parameter 'barz'; did you mean 'bars'\?$"),
    ],
)
def test_bad_values_are_refused_with_name_value_and_fix(name, value, message):
    with pytest.raises(UserError, match=message):
        validation.validate(name, value)


def test_slots():
    assert validation.validate("prompt_a", "techno", 2) == "techno"
    assert validation.validate("weight_b", 1, 3.0) == 1.0
    assert validation.validate("prompt_a", ["jazz"]) == ("jazz", "", "", "")
    with pytest.raises(UserError, match=r"^prompt_a: slot 4 does not exist; use a slot from 0 to 3"):
        validation.validate("prompt_a", "x", 4)
    with pytest.raises(UserError, match=r"^weight_a/1: 2\.0 is out of range"):
        validation.validate("weight_a", [1.0, 2.0])
    with pytest.raises(UserError, match="not a list of up to 4 values"):
        validation.validate("prompt_a", "techno")
    with pytest.raises(UserError, match="bars has no slots"):
        validation.validate("bars", 4, 0)


def test_parse_key():
    assert params.parse_key("bars") == (params.param("bars"), None)
    assert params.parse_key("prompt_b/3") == (params.param("prompt_b"), 3)
    with pytest.raises(UserError, match="slot 'x' is not a number"):
        params.parse_key("prompt_b/x")


@pytest.mark.parametrize(
    "address, message",
    [
        ("/riff/bar", r"unknown parameter 'bar'; did you mean 'bars'\?"),
        ("/riff/prompt_a/9", "slot 9 does not exist"),
        ("/riff/bars/0", "bars has no slots"),
        ("/other/bars", "is not a parameter"),
        ("/riff/prompt_a/x", "is malformed"),
    ],
)
def test_bad_addresses(address, message):
    with pytest.raises(UserError, match=message):
        params.lookup_address(address)


@pytest.mark.parametrize("p", KNOBBED, ids=lambda p: p.name)
def test_knob_ends_map_to_range_ends(p):
    low, high = params.from_normalized(p.name, 0.0), params.from_normalized(p.name, 1.0)
    if p.type in ("float", "int"):
        assert (low, high) == (p.minimum, p.maximum)
    if p.type == "enum":
        assert (low, high) == (p.choices[0], p.choices[-1])
    assert params.to_normalized(p.name, low) == 0.0
    assert params.to_normalized(p.name, high) == 1.0


@pytest.mark.parametrize("p", NUMERIC, ids=lambda p: p.name)
def test_knob_round_trip(p):
    for x in (0.0, 0.25, 0.5, 0.9, 1.0):
        raw = params.from_normalized(p.name, x)
        assert validation.validate(p.name, raw, 0 if p.slots else None) == raw
        if p.type == "float":
            assert params.to_normalized(p.name, raw) == pytest.approx(x)


def test_knob_mapping_details():
    assert params.from_normalized("alpha", 1.5) == 1.0  # clamped
    assert params.from_normalized("gain", 0.5) == -24.0
    assert params.from_normalized("steps", 0.5) == round(150**0.5)  # log curve
    with pytest.raises(UserError, match="knob position"):
        params.from_normalized("alpha", float("nan"))
    with pytest.raises(UserError, match="is text"):
        params.from_normalized("negative", 0.5)


def test_markdown_table_lists_every_parameter():
    table = params.markdown_table()
    for p in PARAMS:
        assert f"| `{p.name}` |" in table
    assert "`/riff/prompt_a/<0..3>`" in table


def test_committed_docs_match_the_table():
    committed = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    assert committed == params.parameters_markdown(), (
        "docs/parameters.md is stale; run: riffengine params --output docs/parameters.md"
    )
