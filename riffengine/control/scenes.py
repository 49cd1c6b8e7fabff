"""Scenes: those of the config, and those saved during a show into the scenes folder.

A scene is a set of parameter values recalled at once (``/riff/scene N``, a MIDI button, the
web page). The config's ``scenes`` come first, numbered from 0 in file order; scenes saved live
(``/riff/scene_save [NAME]``, the web page's *save* button) are files ``NAME.yaml`` in the
folder ``paths.scenes``, numbered after them, in name order. Saving under the name of an
existing scene replaces it and keeps its number; saving without a name makes ``scene N`` with
the next number. A saved scene holds what makes the music (:data:`SAVED_EFFECTS`: prompts,
weights, alpha, seeds, render settings, tempo and loop length, evolve and glide), not the live
controls (gain, mute, transport, tempo source). Files are written atomically and read back with
the parameter table's rules (:mod:`riffengine.validation`, as the config's ``scenes``): a
damaged file is logged, naming every bad key, and left out, never a crash.

Thread rule: loop thread only.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from riffengine import validation
from riffengine.control import params
from riffengine.errors import UserError
from riffengine.state import State

log = logging.getLogger(__name__)

SAVED_EFFECTS = ("render", "stretch", "walk")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}")
"""A scene name that is also a safe file name."""
SUFFIX = ".yaml"


def scene_values(state: State) -> dict[str, object]:
    """What a saved scene keeps of ``state`` (lists for per-slot parameters)."""
    out: dict[str, object] = {}
    for p in params.PARAMS:
        if p.effect in SAVED_EFFECTS:
            value = state.values[p.name]
            out[p.name] = list(value) if isinstance(value, tuple) else value
    return out


def check_name(name: str) -> str:
    """``name`` stripped, or UserError saying what a name may be."""
    name = str(name).strip()
    if not NAME.fullmatch(name) or name.endswith(SUFFIX):
        raise UserError(
            f"scene name {name[:60]!r} is not valid: use 1 to 40 letters, digits, "
            "spaces, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def read_saved(folder: Path) -> dict[str, Mapping[str, object]]:
    """The scenes saved in ``folder``, by name; damaged files are logged and left out."""
    found: dict[str, Mapping[str, object]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            name = check_name(path.stem)
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(values, dict):
                raise UserError("it is not a mapping of parameter values")
            checked = validation.param_values(values)  # the table's rules, every bad key named
        except (OSError, UnicodeDecodeError, yaml.YAMLError, UserError) as exc:
            log.warning("scene file %s is left out: %s", path, exc)
            continue
        found[name] = checked
    return found


class SceneBook:
    """The scenes in recall order: the config's, then the saved ones (see the module)."""

    def __init__(self, configured: Mapping[str, Mapping[str, object]], folder: str | os.PathLike | None) -> None:
        self.folder = None if folder is None else Path(folder).expanduser()
        self._scenes: dict[str, Mapping[str, object]] = dict(configured)
        if self.folder is not None:
            self._scenes.update(read_saved(self.folder))

    @property
    def names(self) -> list[str]:
        return list(self._scenes)

    def number(self, name: str) -> int:
        return self.names.index(name)

    def get(self, which: int | str) -> Mapping[str, object]:
        """A scene's values by number or name; UserError naming the scenes there are."""
        names = self.names
        if isinstance(which, str) and which in self._scenes:
            return self._scenes[which]
        if isinstance(which, int) and not isinstance(which, bool) and 0 <= which < len(names):
            return self._scenes[names[which]]
        known = ", ".join(f"{i}={n}" for i, n in enumerate(names)) or "none are configured or saved"
        raise UserError(f"scene {which!r} does not exist; scenes: {known}")

    def save(self, state: State, name: str | None = None) -> tuple[str, int]:
        """Save ``state`` as scene ``name`` (default: ``scene N``, the next number); its name
        and number. UserError for a bad name, a scene limit reached, or a folder not writable."""
        name = f"scene {len(self._scenes)}" if name is None or not str(name).strip() else check_name(name)
        limit = int(params.param("scene").maximum or 0)
        if name not in self._scenes and len(self._scenes) > limit:
            raise UserError(
                f"scene_save: {len(self._scenes)} scenes is the most /riff/scene can "
                f"recall (0..{limit}); save over an existing scene's name instead"
            )
        if self.folder is None:
            raise UserError("scene_save: no scenes folder is set; set paths.scenes in the config")
        values = scene_values(state)
        path = self.folder / f"{name}{SUFFIX}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise UserError(
                f"scene_save: cannot write {path} ({exc.strerror or exc}); make paths.scenes a writable folder"
            ) from None
        self._scenes[name] = values
        return name, self.number(name)
