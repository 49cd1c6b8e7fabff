"""The OSCQuery namespace (Vidvox's proposal), built from the parameter table.

Everything here is pure: a State in, JSON-ready dicts out. The tree mirrors the OSC address
space of :mod:`riffengine.control.osc`:

- ``/riff/<name>`` for every row of :data:`riffengine.control.params.PARAMS`, with ``TYPE``
  (``f`` float, ``i`` int, ``h`` an int beyond 32 bits such as a seed, ``s`` text and choices,
  ``T`` bool), ``VALUE``, ``RANGE`` (``MIN``/``MAX`` or ``VALS``), ``ACCESS`` 3, ``CLIPMODE``
  ``both`` for numbers (out-of-range values are refused, never stretched), ``UNIT`` where the
  table gives one, ``DESCRIPTION`` (the table's help) and ``TAGS``: the table's effect
  (``render``, ``stretch``, ``live``, ``action``), and ``file`` for a file parameter (the seed
  image, chosen from ``/seeds/``);
- a per-slot parameter is a method taking every slot at once (``TYPE`` ``ssss``) and a container
  of one method per slot: ``/riff/prompt_a/0`` ...;
- ``/riff/panic`` (write-only, ``i``) and ``/riff/scene_save`` (write-only, ``s``, a scene name):
  the commands that are not parameters but are controls.

Attribute queries (``/riff/alpha?VALUE``) answer ``{"VALUE": [...]}``; ``?HOST_INFO`` answers the
server's description wherever it is asked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, SupportsFloat, SupportsInt, cast

from pythonosc.osc_message_builder import OscMessageBuilder

from riffengine.control import params
from riffengine.control.osc import PANIC, PATH_PARAMS, SCENE_SAVE
from riffengine.state import State

NAME = "riffengine"

ATTRIBUTES = (
    "FULL_PATH",
    "CONTENTS",
    "TYPE",
    "VALUE",
    "RANGE",
    "ACCESS",
    "DESCRIPTION",
    "UNIT",
    "CLIPMODE",
    "TAGS",
    "EXTENDED_TYPE",
    "CRITICAL",
    "OVERLOADS",
    "HOST_INFO",
    "HTML",
)
"""Every attribute the proposal names; asking for another one is a 400."""

EXTENSIONS = {
    "ACCESS": True,
    "VALUE": True,
    "RANGE": True,
    "DESCRIPTION": True,
    "UNIT": True,
    "CLIPMODE": True,
    "LISTEN": True,
    "TAGS": True,
    "EXTENDED_TYPE": False,
    "CRITICAL": False,
    "OVERLOADS": False,
    "HTML": True,
    "PATH_CHANGED": False,
    "PATH_RENAMED": False,
    "PATH_ADDED": False,
    "PATH_REMOVED": False,
}
"""What this server supports, as ``HOST_INFO`` tells it."""

INT32_MAX = 2**31 - 1


def type_tag(p: params.Param) -> str:
    """The OSC type tag of one value of ``p``."""
    if p.type == "float":
        return "f"
    if p.type == "int":
        return "h" if (p.maximum or 0) > INT32_MAX else "i"
    if p.type == "bool":
        return "T"
    return "s"


def _range(p: params.Param) -> dict[str, object] | None:
    if p.type == "enum":
        return {"VALS": list(p.choices)}
    if p.type in ("float", "int"):
        lo, hi = p.minimum, p.maximum
        if p.type == "int":
            lo, hi = int(lo), int(hi)  # type: ignore[arg-type]
        return {"MIN": lo, "MAX": hi}
    if p.type == "bool":
        return {"VALS": [False, True]}
    return None


def _method(p: params.Param, path: str, values: list[object], count: int, description: str) -> dict:
    """A method node taking ``count`` values of ``p``'s type."""
    node: dict[str, Any] = {
        "FULL_PATH": path,
        "TYPE": type_tag(p) * count,
        "ACCESS": 3,
        "VALUE": list(values),
        "DESCRIPTION": description,
    }
    rng = _range(p)
    if rng is not None:
        node["RANGE"] = [rng] * count
    if p.type in ("float", "int"):
        node["CLIPMODE"] = ["both"] * count
    if p.unit:
        node["UNIT"] = [p.unit] * count
    node["TAGS"] = [p.effect] + (["file"] if p.name in PATH_PARAMS else [])
    return node


def _slots(value: object) -> tuple[object, ...]:
    """A per-slot parameter's value: a tuple, one value per slot."""
    return cast("tuple[object, ...]", value)


def param_node(p: params.Param, state: State) -> dict:
    """The node of one parameter (with its slots for a per-slot parameter)."""
    value = state.values[p.name]
    if not p.slots:
        return _method(p, p.address, [value], 1, p.help)
    node = _method(
        p,
        p.address,
        list(_slots(value)),
        p.slots,
        f"{p.help} All {p.slots} slots at once; one slot at {p.address}/<slot>.",
    )
    node["CONTENTS"] = {
        str(i): _method(p, p.slot_address(i), [value[i]], 1, f"Slot {i}: {p.help}")  # type: ignore[index]
        for i in range(p.slots)
    }
    return node


def panic_node() -> dict:
    return {
        "FULL_PATH": PANIC,
        "TYPE": "i",
        "ACCESS": 2,
        "RANGE": [{"VALS": [0, 1]}],
        "DESCRIPTION": "Panic: crossfade at once to the bank's safe loop (send 1; 0 does nothing).",
    }


def scene_save_node() -> dict:
    return {
        "FULL_PATH": SCENE_SAVE,
        "TYPE": "s",
        "ACCESS": 2,
        "DESCRIPTION": "Save what plays as a scene under this name (empty: the next number); "
        "recall it with /riff/scene.",
    }


def namespace(state: State) -> dict:
    """The whole tree from ``/``, every value taken from ``state``."""
    riff: dict[str, Any] = {p.name: param_node(p, state) for p in params.PARAMS}
    riff[PANIC.rsplit("/", 1)[1]] = panic_node()
    riff[SCENE_SAVE.rsplit("/", 1)[1]] = scene_save_node()
    return {
        "FULL_PATH": "/",
        "ACCESS": 0,
        "DESCRIPTION": f"{NAME}: live Riffusion engine",
        "CONTENTS": {
            params.PREFIX.strip("/"): {
                "FULL_PATH": params.PREFIX,
                "ACCESS": 0,
                "DESCRIPTION": "Parameters of the engine (docs/parameters.md)",
                "CONTENTS": riff,
            }
        },
    }


def find(tree: Mapping, path: str) -> dict | None:
    """The node at OSC address ``path`` (``/`` is the root), or None."""
    node: Mapping | None = tree
    for part in [p for p in path.split("/") if p]:
        contents = node.get("CONTENTS") if node is not None else None
        node = contents.get(part) if isinstance(contents, Mapping) else None
        if node is None:
            return None
    return dict(node) if node is not None else None


def methods(tree: Mapping) -> Iterator[str]:
    """Every method path (a node with a ``TYPE``), depth first."""
    if "TYPE" in tree:
        yield str(tree["FULL_PATH"])
    for child in tree.get("CONTENTS", {}).values():
        yield from methods(child)


def listenable(tree: Mapping) -> frozenset[str]:
    """The paths a client may LISTEN to: every readable method."""
    readable = set()
    for path in methods(tree):
        node = find(tree, path)
        if node is not None and node.get("ACCESS", 0) & 1:
            readable.add(path)
    return frozenset(readable)


def host_info(osc_ip: str, osc_port: int, ws_ip: str, ws_port: int) -> dict:
    """The ``HOST_INFO`` object."""
    return {
        "NAME": NAME,
        "EXTENSIONS": dict(EXTENSIONS),
        "OSC_IP": osc_ip,
        "OSC_PORT": osc_port,
        "OSC_TRANSPORT": "UDP",
        "WS_IP": ws_ip,
        "WS_PORT": ws_port,
    }


class QueryError(Exception):
    """A query the proposal answers with an HTTP status: 204, 400 or 404."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def query(tree: Mapping, path: str, attribute: str | None) -> dict:
    """The answer to ``GET path[?ATTRIBUTE]``: the node, or ``{ATTRIBUTE: value}``.

    Raises QueryError: 404 for a path outside the tree, 400 for an attribute the proposal does
    not name, 204 for one this node does not have (e.g. ``VALUE`` of a container).
    """
    node = find(tree, path)
    if node is None:
        raise QueryError(404, f"no OSC node at {path}; the namespace is at / (parameters under {params.PREFIX}/)")
    if attribute is None:
        return node
    if attribute not in ATTRIBUTES:
        raise QueryError(400, f"{attribute!r} is not an OSCQuery attribute; use one of {', '.join(ATTRIBUTES)}")
    if attribute == "VALUE" and not node.get("ACCESS", 0) & 1:
        raise QueryError(204, f"{path} has no readable value")
    if attribute not in node:
        raise QueryError(204, f"{path} has no {attribute}")
    return {attribute: node[attribute]}


# --- value pushes (LISTEN) -------------------------------------------------------------------


def value_message(path: str, p: params.Param, values: list[object]) -> bytes:
    """A binary OSC message carrying ``values`` of ``p`` with the node's declared type tag."""
    builder = OscMessageBuilder(path)
    tag = type_tag(p)
    for value in values:
        if tag == "T":
            builder.add_arg(bool(value), OscMessageBuilder.ARG_TYPE_TRUE if value else OscMessageBuilder.ARG_TYPE_FALSE)
        elif tag == "f":
            builder.add_arg(float(cast(SupportsFloat, value)), OscMessageBuilder.ARG_TYPE_FLOAT)
        elif tag == "i":
            builder.add_arg(int(cast(SupportsInt, value)), OscMessageBuilder.ARG_TYPE_INT)
        elif tag == "h":
            builder.add_arg(int(cast(SupportsInt, value)), OscMessageBuilder.ARG_TYPE_INT64)
        else:
            builder.add_arg(str(value), OscMessageBuilder.ARG_TYPE_STRING)
    return builder.build().dgram


def pushes(state: State, keys: list[str]) -> dict[str, bytes]:
    """path -> OSC message for the changed ``keys`` (``alpha``, ``prompt_a/2``): the key's own
    path, and for a slot also the whole parameter's path with all its slots."""
    out: dict[str, bytes] = {}
    for key in keys:
        p, slot = params.parse_key(key)
        value = state.values[p.name]
        if slot is None and not p.slots:
            out[p.address] = value_message(p.address, p, [value])
            continue
        values = _slots(value)
        out[p.address] = value_message(p.address, p, list(values))
        slots = range(p.slots) if slot is None else (slot,)
        for i in slots:
            out[p.slot_address(i)] = value_message(p.slot_address(i), p, [values[i]])
    return out
