"""One validation layer: the rules every value a user gives goes through.

Config files, MIDI mapping files, scenes, OSC and web arguments and the State itself check
their values here, with the same rules and the same words. A *rule* is a pydantic type: an
``Annotated`` base type with pydantic's own constraints (strict types, ``ge``/``le``,
``Literal`` choices, ``max_length``, ``pattern``) and one wrap validator that turns
pydantic's error into the house message: the bad value, what is wrong, and what to use.

The parameter table (:mod:`riffengine.control.params`) is not restated: :func:`rule_for`
generates a parameter's rule from its row (type, range, choices, length), and
:func:`param_setting` a config setting from it.

The one coercion rule, for every source of values:

- a whole number accepts any integral number (``8.0`` is ``8``: Pure Data sends only floats);
- a number accepts whole and decimal numbers; never booleans, strings, NaN or infinities;
- a boolean accepts true or false, and 1 or 0;
- text is a string, and a choice one of its strings.

Models built from rules (:class:`Strict`: config sections, mapping entries, parameter values)
are frozen, forbid unknown keys and report every error at once; :func:`messages` turns each
error of a ``ValidationError`` into a ``(key path, message)`` pair, with "did you mean" for
unknown keys. A validator refuses a value by raising :class:`Invalid` with the house message.
This module imports nothing of riffengine but the parameter table and the errors, so the
State can use it.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic import Strict as _Strict
from pydantic.fields import FieldInfo
from pydantic.functional_validators import ModelWrapValidatorHandler

from riffengine.control import params
from riffengine.errors import UserError

Rule = Any
"""A pydantic type (an ``Annotated`` base type with constraints and a wrap validator)."""


class Invalid(ValueError):
    """A value a rule refuses; the message says why and what to use, not whose value it is.

    Raised in a validator, pydantic reports it as a ``value_error`` that carries it.
    """


def show(value: object) -> str:
    """A bad value as an error message quotes it: short, and mappings and lists by kind."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _worded_already(error: Any) -> str | None:
    """The house message an error carries, if a rule worded it."""
    found = (error.get("ctx") or {}).get("error")
    return str(found) if error["type"] == "value_error" and isinstance(found, Invalid) else None


def _num(x: float | int | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


Say = Callable[[str, object], str]
"""(pydantic error type, bad value) -> the house message."""


def _wrap(say: Say, before: Callable[[object], object] | None = None) -> WrapValidator:
    """The validator that runs a rule's constraints and words its refusal with ``say``."""

    def validate(value: object, handler: Callable[[object], object]) -> object:
        if before is not None:
            value = before(value)
        try:
            return handler(value)
        except ValidationError as exc:
            raise Invalid(say(exc.errors()[0]["type"], value)) from None

    return WrapValidator(validate)


# --- the rules ---------------------------------------------------------------------------------


def _integral(value: object) -> object:
    """The one coercion rule for whole numbers: an integral float is its int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
        return int(value)
    return value


def _real(value: object) -> object:
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
        return float(value)
    return value


def _say_number(allowed: str) -> Say:
    def say(kind: str, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            problem = "is not a number"
        elif not math.isfinite(value):
            problem = "is not a finite number"
        elif kind == "int_type":
            problem = "is not a whole number"
        else:
            problem = "is out of range"
        return f"{show(value)} {problem}; use {allowed}"

    return say


def whole_words(lo: int | float | None, hi: int | float | None) -> str:
    """What a whole-number rule accepts, in words."""
    return f"a whole number from {_num(lo)} to {_num(hi)}"


def number_words(lo: float | int | None, hi: float | int | None, above: bool = False) -> str:
    """What a number rule accepts, in words."""
    return f"a number {'above' if above else 'from'} {_num(lo)} to {_num(hi)}"


def whole(lo: int, hi: int) -> Rule:
    """A whole number from ``lo`` to ``hi`` (integral floats accepted)."""
    return Annotated[int, _Strict(), Field(ge=lo, le=hi), _wrap(_say_number(whole_words(lo, hi)), _integral)]


def number(lo: float, hi: float, above: bool = False) -> Rule:
    """A finite number from ``lo`` (or just ``above`` it) to ``hi``, as a float."""
    low = Field(gt=lo) if above else Field(ge=lo)
    return Annotated[
        float, _Strict(), AllowInfNan(False), low, Field(le=hi), _wrap(_say_number(number_words(lo, hi, above)), _real)
    ]


FLAG_WORDS = "true or false (or 1 or 0)"


def _bool(value: object) -> object:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return value


FLAG: Rule = Annotated[bool, _Strict(), _wrap(lambda kind, v: f"{show(v)} is not a boolean; use {FLAG_WORDS}", _bool)]
"""True or false (1 or 0 too)."""


def choice(*choices: str, fold_case: bool = False) -> Rule:
    """One of ``choices``; ``fold_case`` takes any case and gives the upper case."""

    def say(kind: str, value: object) -> str:
        return f"{show(value)} is not a choice{params.suggest(str(value), choices)} (use one of {', '.join(choices)})"

    def upper(value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    return Annotated[Literal[choices], _wrap(say, upper if fold_case else None)]


def string(max_length: int) -> Rule:
    """Any string of at most ``max_length`` characters (empty included)."""

    def say(kind: str, value: object) -> str:
        if isinstance(value, str):
            return f"a string of {len(value)} characters is too long; use at most {max_length} characters"
        return f"{show(value)} is not a string; use a string of at most {max_length} characters"

    return Annotated[str, _Strict(), Field(max_length=max_length), _wrap(say)]


def text(what: str = "a string", pattern: str | None = None, max_length: int = 4096, noun: str = "valid") -> Rule:
    """A string that is not blank (or matches ``pattern`` whole), at most ``max_length`` long.

    A refusal says ``X is not <noun>; use <what>``.
    """
    regex = rf"^(?:{pattern})$" if pattern is not None else r"\S"
    return Annotated[
        str,
        _Strict(),
        StringConstraints(max_length=max_length, pattern=regex),
        _wrap(lambda kind, v: f"{show(v)} is not {noun}; use {what}"),
    ]


def optional(rule: Rule) -> Rule:
    """``rule``, or null (None)."""
    return rule | None


def either(*rules: Rule, what: str) -> Rule:
    """The first of ``rules`` that accepts the value."""
    union = functools.reduce(lambda a, b: a | b, rules)
    return Annotated[
        union, Field(union_mode="left_to_right"), _wrap(lambda kind, v: f"{show(v)} is not valid; use {what}")
    ]


def list_of(rule: Rule) -> Rule:
    """A list (as a tuple) of values that ``rule`` accepts; each bad item is reported."""

    def items(value: object, handler: Callable[[object], object]) -> object:
        if not isinstance(value, (list, tuple)):
            raise Invalid(f"{show(value)} is not valid; use a list, e.g. [] for none")
        return handler(value)

    return Annotated[tuple[rule, ...], WrapValidator(items)]


def checked(check: Callable[[object], object]) -> Rule:
    """A rule made of a plain function that returns the value or raises :class:`Invalid`."""

    return Annotated[Any, PlainValidator(check)]


# --- the parameter table's rules ------------------------------------------------------------------


def allowed(p: params.Param) -> str:
    """What a parameter accepts, in words, for error messages and docs."""
    if p.type == "float":
        return number_words(p.minimum, p.maximum)
    if p.type == "int":
        return whole_words(p.minimum, p.maximum)
    if p.type == "enum":
        return "one of " + ", ".join(p.choices)
    if p.type == "bool":
        return FLAG_WORDS
    return f"a string of at most {p.max_length} characters"


@functools.cache
def rule_for(p: params.Param) -> Rule:
    """The rule of one value (one slot's value) of parameter ``p``, generated from its row."""
    if p.type == "float":
        return number(p.minimum, p.maximum)  # type: ignore[arg-type]
    if p.type == "int":
        return whole(int(p.minimum), int(p.maximum))  # type: ignore[arg-type]
    if p.type == "bool":
        return FLAG
    if p.type == "enum":
        return choice(*p.choices)
    return string(p.max_length)


_ADAPTERS: dict[int, tuple[Rule, TypeAdapter[Any]]] = {}


def adapter(rule: Rule) -> TypeAdapter[Any]:
    """The pydantic validator of a rule, built once per rule."""
    found = _ADAPTERS.get(id(rule))
    if found is None or found[0] is not rule:
        found = _ADAPTERS[id(rule)] = (rule, TypeAdapter(rule))
    return found[1]


def check(rule: Rule, value: object) -> Any:
    """``value`` as ``rule`` makes it; :class:`Invalid` with the house message if refused."""
    try:
        return adapter(rule).validate_python(value)
    except ValidationError as exc:
        raise Invalid(messages(exc)[0][1]) from None


def coerce(p: params.Param, value: object) -> object:
    """Check one value (one slot's value) of ``p`` and return it typed; :class:`Invalid` if bad."""
    return check(rule_for(p), value)


def validate(name: str, value: object, slot: int | None = None) -> object:
    """Check ``value`` for parameter ``name`` (and ``slot``) and return it typed.

    For a per-slot parameter without a slot, ``value`` is a list or tuple of up to ``slots``
    values; missing trailing slots take their defaults, and a tuple of all slots is returned.
    Raises UserError naming the parameter (``prompt_a/2``), the value and what is allowed.
    """
    p = params.param(name)
    if slot is not None:
        slot = params.check_slot(p, slot)
        return _labelled(p, value, slot)
    if not p.slots:
        return _labelled(p, value, None)
    if not isinstance(value, (list, tuple)) or len(value) > p.slots:
        raise UserError(
            f"{p.name}: {show(value)} is not a list of up to {p.slots} values; "
            f"give a list, or set one slot at {p.name}/<slot>"
        )
    return tuple(_labelled(p, value[i], i) if i < len(value) else p.slot_default(i) for i in range(p.slots))


def _labelled(p: params.Param, value: object, slot: int | None) -> object:
    try:
        return coerce(p, value)
    except Invalid as exc:
        raise UserError(f"{params.label(p, slot)}: {exc}") from None


# --- models: sections, entries, parameter values -------------------------------------------------


class Strict(BaseModel):
    """A frozen model that refuses unknown keys and words every error of its own.

    ``expected`` says what its input must be; null is taken as an empty mapping (all defaults).
    Errors of nested models and rules arrive worded already and keep their key paths.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    expected: ClassVar[str] = "a mapping"

    @model_validator(mode="wrap")
    @classmethod
    def _house_words(cls, value: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, (Mapping, cls)):
            raise Invalid(f"{show(value)} is not valid; use {cls.expected}")
        try:
            return handler(value)
        except ValidationError as exc:
            errors = [_worded(cls, error) for error in exc.errors()]
            raise ValidationError.from_exception_data(exc.title, errors) from None

    @classmethod
    def unknown_key(cls, key: str) -> str:
        """Why ``key`` is refused here: the closest valid key, and the valid keys."""
        known = list(cls.model_fields)
        return f"unknown key{params.suggest(key, known)} (valid keys here: {', '.join(known)})"


def _worded(model: type[Strict], error: Any) -> Any:
    """One error of ``model`` as pydantic's error details, with the house message."""
    loc = tuple(error["loc"])
    message = _worded_already(error)
    if message is None and error["type"] == "extra_forbidden" and len(loc) == 1:
        message = model.unknown_key(str(loc[0]))
    return {
        "type": "value_error",
        "loc": loc,
        "input": error.get("input"),
        "ctx": {"error": Invalid(message if message is not None else _generic(error))},
    }


def _generic(error: Any) -> str:
    """The house words for an error no rule has worded (pydantic's own, e.g. a dict's length)."""
    if error["type"] == "too_long":
        ctx = error["ctx"]
        return f"{ctx['actual_length']} entries are too many; use at most {ctx['max_length']}"
    if error["type"] == "invalid_key":
        return f"{show(error.get('input'))} is not a valid key; use a name"
    return f"{show(error.get('input'))} is not valid ({error['msg']})"


def setting(
    rule: Rule,
    default: object,
    after: Callable[[Any, ValidationInfo], object] | None = None,
    key: str | None = None,
) -> Any:
    """A model field checked by ``rule`` alone, with a default; ``key`` names it in the input.

    ``after(value, info)`` runs on the checked value, the default included (e.g. to make a
    path absolute against the file's folder, given in the validation context).
    """
    adapt = adapter(rule)

    def validate(value: object, info: ValidationInfo) -> object:
        value = adapt.validate_python(value)
        return value if after is None else after(value, info)

    options: dict[str, Any] = {"validate_default": after is not None, "validation_alias": key}
    # the default is shared, never copied (a read-only mapping cannot be)
    field = Field(default_factory=lambda: default, **options)
    return FieldInfo.from_annotated_attribute(Annotated[Any, PlainValidator(validate)], field)  # type: ignore[arg-type]


def param_setting(name: str) -> Any:
    """A setting that is a parameter's value: its rule and its default come from the table."""
    p = params.param(name)
    return setting(rule_for(p), p.default)


def _param_value(p: params.Param, slot: int | None) -> Rule:
    """The rule of one key of a mapping of parameter values."""
    if p.effect == "action":
        return checked(lambda value: _action(p))
    if slot is not None or not p.slots:
        return rule_for(p)
    return checked(lambda value: _slots(p, value))


def _action(p: params.Param) -> object:
    raise Invalid(f"{p.name} is an action, not a value to set here")


def _slots(p: params.Param, value: object) -> object:
    """A per-slot parameter's list, as :func:`validate` takes it; a bad slot is named."""
    try:
        return validate(p.name, value)
    except UserError as exc:
        raise Invalid(str(exc).removeprefix(f"{p.name}: ")) from None


def _field_name(key: str) -> str:
    return key.replace("/", "__")


def _value_fields() -> dict[str, Any]:
    """A field per parameter key (``bars``, ``prompt_a``, ``prompt_a/0`` ...), from the table."""
    fields: dict[str, Any] = {}
    for p in params.PARAMS:
        for key, slot in [(p.name, None)] + [(f"{p.name}/{i}", i) for i in range(p.slots)]:
            fields[_field_name(key)] = (Any, setting(_param_value(p, slot), None, key=key))
    return fields


class _ParamValuesBase(Strict):
    expected: ClassVar[str] = "a mapping of parameter names to values"

    @classmethod
    def unknown_key(cls, key: str) -> str:
        try:
            params.parse_key(key)
        except UserError as exc:
            return strip_label(str(exc), key)
        return f"{key} cannot be set here"


ParamValuesModel = create_model("ParamValues", __base__=_ParamValuesBase, **_value_fields())
"""Parameter keys (``bars``, ``prompt_a`` with a list, ``prompt_a/1``) -> checked values."""


def _ordered(value: object, handler: Callable[[object], object]) -> object:
    model = handler(value)
    keys = value if isinstance(value, Mapping) else {}
    return MappingProxyType({str(k): getattr(model, _field_name(str(k))) for k in keys})


PARAM_VALUES: Rule = Annotated[ParamValuesModel, WrapValidator(_ordered)]
"""A mapping of parameter values (the config's ``initial``, a scene, a mapping's ``set``),
checked by the table and returned read-only, in the order given."""


def param_values(raw: object) -> Mapping[str, object]:
    """Check a mapping of parameter keys to values (a saved scene, say) and return it typed and
    read-only; UserError listing every bad key."""
    try:
        values: Mapping[str, object] = adapter(PARAM_VALUES).validate_python(raw)
    except ValidationError as exc:
        raise UserError(
            "; ".join(f"{path}: {message}" if path else message for path, message in messages(exc))
        ) from None
    return values


def strip_label(message: str, key: str) -> str:
    """Drop a leading ``name:`` or ``name/slot:`` from a table message; the key path says it."""
    head, sep, rest = message.partition(": ")
    return rest if sep and key.startswith(head.split("/")[0]) else message


# --- errors -------------------------------------------------------------------------------------


Errors = list[tuple[str, str]]
"""(key path, message) pairs: ``("loop.bars", "17 is out of range; use ...")``."""


def messages(exc: ValidationError) -> Errors:
    """Every error of ``exc`` as (dotted key path, house message), in order.

    List positions are left out of the path (the message quotes the bad item).
    """
    out: Errors = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
        out.append((path, _worded_already(error) or _generic(error)))
    return out
