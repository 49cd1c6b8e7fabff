"""The event table (riffengine/events.py) against the code that publishes events, and its page.

The source is scanned with ``ast`` for ``<bus>.publish("kind", field=...)`` calls: every kind
published is declared, every declared kind is published, and every field named at a call is
one of the kind's declared fields.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from riffengine import events
from riffengine.evolve import describe, first_loop
from riffengine.state import initial_state

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "riffengine"


def published() -> dict[str, set[str]]:
    """Kind -> the field names given at its publish calls, across the package's source."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "publish"
                and node.args
            ):
                continue
            first = node.args[0]
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                f"{path.relative_to(ROOT)}:{node.lineno}: publish an event kind as a string "
                "literal, so that this test can check it against riffengine/events.py"
            )
            found[first.value].update(kw.arg for kw in node.keywords if kw.arg is not None)
    return found


def test_the_scan_finds_the_publish_calls():
    kinds = published()
    assert {"beat", "loop_started", "render", "tempo", "fail"} <= set(kinds)
    assert {"phase", "job", "clip_id"} <= kinds["render"]


def test_every_published_kind_is_declared():
    undeclared = sorted(set(published()) - set(events.kinds()))
    assert undeclared == [], f"declare these event kinds in riffengine/events.py: {undeclared}"


def test_every_declared_kind_is_published():
    unused = sorted(set(events.kinds()) - set(published()))
    assert unused == [], f"these declared event kinds are never published: {unused}"


def test_every_published_field_is_declared():
    wrong = {kind: sorted(names - set(events.event_kind(kind).fields)) for kind, names in published().items()}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_kinds_are_unique_and_explained():
    assert len(events.kinds()) == len(events.EVENTS)
    for row in events.EVENTS:
        assert row.meaning.strip() and len(set(row.fields)) == len(row.fields), row.kind


def test_walk_fields_are_what_a_walk_loop_describes():
    assert tuple(describe(first_loop(initial_state()))) == events.WALK_FIELDS


def test_stats_fields_are_the_engine_counters():
    tree = ast.parse((PACKAGE / "engine" / "core.py").read_text(encoding="utf-8"))
    counters = [
        tuple(key.value for key in node.value.keys)  # type: ignore[union-attr]
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Dict)
        and any(isinstance(t, ast.Attribute) and t.attr == "_stats" for t in node.targets)
    ]
    assert counters == [events.STATS_FIELDS]


def test_events_page_is_current():
    committed = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    assert committed == events.events_markdown(), (
        "docs/events.md is stale; run: riffengine events --output docs/events.md"
    )
    for kind in events.kinds():
        assert f"| `{kind}` |" in committed
