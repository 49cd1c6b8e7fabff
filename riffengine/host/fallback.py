"""The host's own fall-back: the bank's safe loop, when no engine has given it a loop to hold.

An engine that dies before its first loop (a GPU fault as it starts, a broken install) leaves
the host nothing to play on with. Then the host reads the bank's safe loop (``riffengine bank``)
from the render cache itself: the marker, the entry's audio and its checksum, with numpy only
(no model, no torch, no image), and holds it on a loop until an engine takes over. A cache at
another sample rate than the output's is converted by linear interpolation: an emergency, not
the engine's band-limited resampler.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from riffengine.config import Settings
from riffengine.render.cache import SAFE_FILE, default_cache_dir, read_audio
from riffengine.render.frames import fit_loop, to_frames
from riffengine.timing.tempo import loop_frames

log = logging.getLogger(__name__)


def to_rate(data: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """float32 ``[frames, channels]`` from ``src_rate`` to ``dst_rate``, linearly interpolated."""
    if src_rate == dst_rate or len(data) == 0:
        return data
    n = max(1, round(len(data) * dst_rate / src_rate))
    where = np.arange(n) * (src_rate / dst_rate)
    known = np.arange(len(data))
    return np.stack([np.interp(where, known, data[:, c]) for c in range(data.shape[1])], axis=1).astype(np.float32)


def safe_loop(settings: Settings, rate: int, channels: int) -> tuple[np.ndarray, str] | None:
    """The bank's safe loop as float32 ``[frames, channels]`` at ``rate``, and its name; None
    (logged) when none is banked or it cannot be read."""
    if not settings.cache.enabled:
        return None
    folder = Path(settings.cache.folder or default_cache_dir()).expanduser()
    try:
        marker = json.loads((folder / SAFE_FILE).read_text())
        key = str(marker["key"])
        audio, src_rate = read_audio(folder / key, key)
        frames = loop_frames(int(marker["bars"]), float(marker["bpm"]), rate, int(marker["beats_per_bar"]))
        return fit_loop(to_rate(to_frames(audio, channels), src_rate, rate), frames), str(marker.get("name", ""))
    except FileNotFoundError:
        log.error("no safe loop is banked in %s: run `riffengine bank CONFIG` before the show", folder)
    except Exception as exc:  # noqa: BLE001 - a damaged bank must not end the host
        log.error("the safe loop in %s cannot be read (%s); run `riffengine bank CONFIG` again", folder, exc)
    return None
