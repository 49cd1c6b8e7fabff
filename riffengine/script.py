"""Scripted sessions (``riffengine run --script FILE``): timed parameter changes.

A script is a YAML list of steps; each has a time and the changes to apply then::

    - at: 4.0                    # seconds after the stream starts
      set: {prompt_a/0: "funky jazz", seed_a: 7}
    - bar: 8                     # or: when bar 8 starts
      set: {bpm: 140}
    - at: 12
      scene: chorus              # recall a scene by name or number (optionally with set)

Times are on the master clock: seconds of audio heard (with a ``.wav`` output, seconds of audio
written, so a scripted session renders the same, faster than real time). Values are checked
against the parameter table when the script is loaded; a mistake names the step and the fix.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from riffengine import state as st
from riffengine.errors import UserError


@dataclass(frozen=True)
class Step:
    """One scripted change: at ``seconds`` or at the start of ``bar``; values and/or a scene."""

    index: int
    seconds: float | None
    bar: int | None
    changes: tuple[tuple[str, object], ...]
    scene: int | str | None = None

    def due(self, frame: int, bar: int, sample_rate: int) -> bool:
        """True once the master clock has reached this step."""
        if self.seconds is not None:
            return frame >= round(self.seconds * sample_rate)
        return bar >= self.bar  # type: ignore[operator]

    def frame(self, sample_rate: int) -> int | None:
        """The frame of a timed step (None for a bar step)."""
        return None if self.seconds is None else round(self.seconds * sample_rate)


def _number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def parse_step(index: int, raw: object, where: str) -> Step:
    """Check one step of a script; UserError naming ``where`` and the step number."""
    name = f"{where}: step {index + 1}"
    if not isinstance(raw, Mapping):
        raise UserError(f"{name} is not a mapping; write e.g. '- at: 4.0' and 'set: {{bpm: 130}}'")
    unknown = set(raw) - {"at", "bar", "set", "scene"}
    if unknown:
        raise UserError(
            f"{name}: unknown key(s) {', '.join(map(str, sorted(unknown)))}; use at or bar, and set and/or scene"
        )
    if ("at" in raw) == ("bar" in raw):
        raise UserError(f"{name}: give exactly one of 'at: SECONDS' or 'bar: N'")
    seconds = raw.get("at")
    bar = raw.get("bar")
    if seconds is not None and (not _number(seconds) or not 0 <= seconds < 1e7):
        raise UserError(f"{name}: at {seconds!r} is not valid; use seconds >= 0, e.g. at: 4.5")
    if bar is not None and (not isinstance(bar, int) or isinstance(bar, bool) or bar < 0):
        raise UserError(f"{name}: bar {bar!r} is not valid; use a whole bar number >= 0")
    changes = raw.get("set") or {}
    if not isinstance(changes, Mapping):
        raise UserError(f"{name}: set must be a mapping of parameter keys to values")
    if not changes and "scene" not in raw:
        raise UserError(f"{name}: nothing to do; add 'set: {{...}}' or 'scene: NAME'")
    try:
        st.apply_many(st.initial_state(), changes)
    except UserError as exc:
        raise UserError(f"{name}: {exc}") from None
    return Step(index, float(seconds) if seconds is not None else None, bar, tuple(changes.items()), raw.get("scene"))


def load_script(path: str | os.PathLike[str]) -> list[Step]:
    """Read and check a script file; its steps in file order."""
    where = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as file:
            raw = yaml.safe_load(file)
    except FileNotFoundError:
        raise UserError(f"{where}: script file not found; check the --script path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: cannot read the script ({exc})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: YAML error in the script: {exc}".replace("\n", " ")) from None
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise UserError(f"{where}: a script is a YAML list of steps ('- at: 4.0' ...)")
    return [parse_step(i, step, where) for i, step in enumerate(raw)]
