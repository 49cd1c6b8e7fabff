"""What an engine leaves for the next one: its parameter values and its bar grid, in a file.

Under the audio host the engine may be killed at any moment and a new one started. The engine
writes this file (atomically: a temporary file, then a rename) when its state changes and
whenever a loop starts; the next engine reads it, starts from those values, and puts its bar
grid on the old one, so its first loop lands on a bar line of what the host kept playing.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grid:
    """A bar line of the stream: frame ``frame`` starts bar ``bar`` at ``bpm``."""

    frame: int
    bar: int
    bpm: float
    beats_per_bar: int


@dataclass(frozen=True)
class Resume:
    pairs: tuple[tuple[str, object], ...]
    grid: Grid | None


def save(path: str | os.PathLike[str], pairs: tuple[tuple[str, object], ...], grid: Grid | None) -> None:
    """Write the file (atomically). OSError is the caller's to report."""
    path = Path(path)
    data = {"pairs": [list(p) for p in pairs], "grid": None if grid is None else vars(grid)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def load(path: str | os.PathLike[str]) -> Resume | None:
    """The file's contents, or None when there is none or it cannot be read (logged)."""
    try:
        data = json.loads(Path(path).read_text())
        pairs = tuple((str(k), v) for k, v in data["pairs"])
        grid = data.get("grid")
        return Resume(
            pairs,
            None
            if grid is None
            else Grid(int(grid["frame"]), int(grid["bar"]), float(grid["bpm"]), int(grid["beats_per_bar"])),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the previous engine's state in %s cannot be read (%s); starting from the config", path, exc)
        return None
