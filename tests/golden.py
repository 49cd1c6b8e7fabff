"""Access to the Riffusion reference data in ../shared/golden (read in place, never copied)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

GOLDEN = Path(os.environ.get("RIFFENGINE_GOLDEN", Path(__file__).resolve().parents[2] / "shared" / "golden"))
CLIPS = ("a_drum_bass_100bpm", "b_piano_chords_melody")


@lru_cache(maxsize=1)
def manifest() -> dict:
    return json.loads((GOLDEN / "manifest.json").read_text())


def clip_entry(clip: str) -> dict:
    return next(c for c in manifest()["clips"] if c["id"] == clip)


def reference_metric(clip: str, recon_file_suffix: str, metric: str) -> float:
    """A metric of one reference reconstruction (``recon`` or ``recon_lstsq``) against the image."""
    name = f"{clip}.{recon_file_suffix}.wav"
    entry = next(r for r in clip_entry(clip)["reconstructions"] if r["file"] == name)
    return float(entry["metrics_vs_reference_image"][metric])
