"""The validation layer: one coercion rule, rules generated from the parameter table, models
that report every error at once in the house words."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
from pydantic import ValidationError

from riffengine import validation as v
from riffengine.control import params
from riffengine.control.mapping import check_entry
from riffengine.errors import UserError
from riffengine.state import State, apply


@pytest.mark.parametrize("value, expected", [(8, 8), (8.0, 8), (0, 0), (16.0, 16)])
def test_a_whole_number_takes_integral_floats(value, expected):
    checked = v.check(v.whole(0, 16), value)
    assert checked == expected and type(checked) is int


@pytest.mark.parametrize(
    "value, words",
    [
        (8.5, "8.5 is not a whole number; use a whole number from 0 to 16"),
        (True, "True is not a number; use a whole number from 0 to 16"),
        ("8", "'8' is not a number; use a whole number from 0 to 16"),
        (None, "null is not a number; use a whole number from 0 to 16"),
        (17, "17 is out of range; use a whole number from 0 to 16"),
        (math.inf, "inf is not a finite number; use a whole number from 0 to 16"),
    ],
)
def test_a_whole_number_refuses_with_the_value_and_the_fix(value, words):
    with pytest.raises(v.Invalid) as refused:
        v.check(v.whole(0, 16), value)
    assert str(refused.value) == words


def test_numbers_flags_and_choices():
    assert type(v.check(v.number(0.0, 1.0), 1)) is float
    with pytest.raises(v.Invalid, match=r"^nan is not a finite number; use a number from 0 to 1$"):
        v.check(v.number(0.0, 1.0), math.nan)
    with pytest.raises(v.Invalid, match=r"^0 is out of range; use a number above 0 to 1$"):
        v.check(v.number(0.0, 1.0, above=True), 0)
    assert [v.check(v.FLAG, x) for x in (True, 0, 1.0)] == [True, False, True]
    with pytest.raises(v.Invalid, match=r"^2 is not a boolean; use true or false \(or 1 or 0\)$"):
        v.check(v.FLAG, 2)
    assert v.check(v.choice("DEBUG", "INFO", fold_case=True), "debug") == "DEBUG"
    with pytest.raises(v.Invalid, match=r"^'INFOO' is not a choice; did you mean 'INFO'\? \(use one of"):
        v.check(v.choice("DEBUG", "INFO"), "INFOO")


@pytest.mark.parametrize("p", params.PARAMS, ids=lambda p: p.name)
def test_each_parameter_rule_is_generated_from_its_row(p):
    rule = v.rule_for(p)
    default = p.slot_default(0) if p.slots else p.default
    assert v.check(rule, default) == default
    if p.type in ("float", "int"):
        assert v.check(rule, p.maximum) == p.maximum
        with pytest.raises(v.Invalid, match=f"is out of range; use {v.allowed(p)}$"):
            v.check(rule, p.maximum + 1)  # type: ignore[operator]
    elif p.type == "enum":
        assert all(v.check(rule, c) == c for c in p.choices)
    elif p.type == "str":
        with pytest.raises(v.Invalid, match=f"too long; use at most {p.max_length} characters"):
            v.check(rule, "x" * (p.max_length + 1))


def test_one_rule_everywhere_a_value_enters():
    """The config, a mapping, a scene and the State take 8.0 for bars and refuse 8.5 alike."""
    from riffengine.config import Settings, merge_overrides

    assert merge_overrides(Settings(), {"loop.bars": 8.0}).loop.bars == 8
    assert check_entry({"note": 1.0, "set": {"bars": 8.0}}).values == {"bars": 8}
    assert apply(State(), "bars", 8.0).values["bars"] == 8
    refusals = []
    for attempt in (
        lambda: merge_overrides(Settings(), {"loop.bars": 8.5}),
        lambda: check_entry({"note": 1, "set": {"bars": 8.5}}),
        lambda: apply(State(), "bars", 8.5),
    ):
        with pytest.raises(UserError) as refused:
            attempt()
        refusals.append(str(refused.value).split("8.5 ")[1])
    assert set(refusals) == {"is not a whole number; use a whole number from 1 to 16"}


class Knobs(v.Strict):
    expected: ClassVar[str] = "a mapping of knobs"
    cutoff: float = v.setting(v.number(0.0, 1.0), 0.5)
    steps: int = v.setting(v.whole(1, 8), 2)


def test_a_model_reports_every_error_at_once_with_its_key_and_did_you_mean():
    with pytest.raises(ValidationError) as refused:
        Knobs.model_validate({"cutoff": 2, "steps": 0.5, "stepz": 1})
    assert v.messages(refused.value) == [
        ("cutoff", "2 is out of range; use a number from 0 to 1"),
        ("steps", "0.5 is not a whole number; use a whole number from 1 to 8"),
        ("stepz", "unknown key; did you mean 'steps'? (valid keys here: cutoff, steps)"),
    ]
    with pytest.raises(ValidationError) as refused:
        Knobs.model_validate([1])
    assert v.messages(refused.value) == [("", "a list is not valid; use a mapping of knobs")]


def test_a_model_is_frozen_and_null_is_all_defaults():
    knobs = Knobs.model_validate(None)
    assert (knobs.cutoff, knobs.steps) == (0.5, 2)
    with pytest.raises(ValidationError, match="frozen"):
        knobs.steps = 3  # type: ignore[misc]


def test_parameter_values_keep_their_order_and_name_bad_keys():
    values = v.param_values({"prompt_a/1": "rain", "bars": 4.0, "prompt_a": ["jazz"]})
    assert list(values.items()) == [("prompt_a/1", "rain"), ("bars", 4), ("prompt_a", ("jazz", "", "", ""))]
    with pytest.raises(UserError) as refused:
        v.param_values({"barz": 4, "prompt_a/9": "x", "scene": 1, "weight_a": [0.5, 2]})
    assert str(refused.value).split("; ") == [
        "weight_a: weight_a/1: 2 is out of range",
        "use a number from 0 to 1",
        "scene: scene is an action, not a value to set here",
        "barz: unknown parameter 'barz'",
        "did you mean 'bars'?",
        "prompt_a/9: slot 9 does not exist",
        "use a slot from 0 to 3",
    ]
