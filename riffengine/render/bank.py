"""The bank: states rendered ahead into the render cache, and the safe loop for a panic.

:func:`bank_items` lists the states a config asks for (the starting state, every scene
recalled on it, an alpha sweep from side A to side B); :func:`fill_bank` renders each one
through a :class:`~riffengine.render.cache.CachedRenderer` (states already in the cache cost
nothing), at the exact length the engine will ask for, so during the show they are cache
hits. One item is the *safe loop*: its key is written to ``safe.json`` in the cache folder,
it is never evicted, and :func:`safe_loop` reads it back, without any model or GPU, for the
engine to crossfade to on ``/riff/panic``.

Thread rule: :func:`fill_bank` runs on the thread that owns the renderer (the ``bank``
command's main thread). :func:`safe_loop` reads files: call it off the audio callback, e.g. at
start-up or on the loop's executor.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import SupportsFloat, SupportsInt, cast

import numpy as np

from riffengine.config import Settings
from riffengine.control import params
from riffengine.errors import UserError
from riffengine.render.cache import SAFE_FILE, CachedClip, CachedRenderer, RenderCache
from riffengine.render.frames import resample_clip, to_frames
from riffengine.render.renderer import SAMPLE_RATE as MODEL_RATE
from riffengine.render.request import RenderRequest, to_render_request
from riffengine.state import State, apply, as_pairs, initial_state, recall_scene
from riffengine.timing.tempo import loop_frames

log = logging.getLogger(__name__)

INITIAL = "initial"


@dataclass(frozen=True)
class BankItem:
    """One state to bank: a name for people, the State, and the clip the engine would ask for."""

    name: str
    state: State
    request: RenderRequest
    bpm: float
    bars: int
    beats_per_bar: int
    model_frames: int


def item_for(name: str, state: State) -> BankItem:
    """The bank item of ``state``: its request and its loop length at the model's rate."""
    bpm = float(cast(SupportsFloat, state.values["bpm"]))
    bars = int(cast(SupportsInt, state.values["bars"]))
    meter = int(cast(SupportsInt, state.values["beats_per_bar"]))
    return BankItem(name, state, to_render_request(state), bpm, bars, meter, loop_frames(bars, bpm, MODEL_RATE, meter))


def sweep_alphas(k: int) -> list[float]:
    """``k`` evenly spaced alphas from 0 to 1 (both ends included)."""
    if not isinstance(k, int) or k < 2:
        raise UserError(f"--sweep {k}: use 2 or more steps (0 and 1 are both included)")
    return [i / (k - 1) for i in range(k)]


def bank_items(
    settings: Settings, scenes: bool = True, sweep: int = 0, sweep_from: str | None = None
) -> list[BankItem]:
    """The states a config banks: the starting state, each scene (recalled on the starting
    state, as a live recall would be), and ``sweep`` alphas from side A to side B of the
    starting state or of scene ``sweep_from``. Items with the same clip appear once."""
    start = initial_state(settings)
    items = [item_for(INITIAL, start)]
    if scenes:
        for number, name in enumerate(settings.scenes):
            items.append(item_for(f"scene {name}", recall_scene(start, settings.scene(name), number)))
    if sweep:
        base = start
        if sweep_from is not None and sweep_from != INITIAL:
            base = recall_scene(start, settings.scene(sweep_from), list(settings.scenes).index(sweep_from))
        if to_render_request(apply(base, "alpha", 1.0)).b is None:
            raise UserError(
                f"--sweep needs a side B: give prompt_b/0 a prompt in the config's "
                f"initial section{' or scene ' + sweep_from if sweep_from else ''}"
            )
        alphas = sweep_alphas(sweep)
        for i, alpha in enumerate(alphas):
            items.append(item_for(f"sweep {i + 1}/{len(alphas)} alpha {alpha:.3g}", apply(base, "alpha", alpha)))
    unique: dict[tuple[RenderRequest, int], BankItem] = {}
    for item in items:
        unique.setdefault((item.request, item.model_frames), item)
    return list(unique.values())


def choose_safe(items: Sequence[BankItem], settings: Settings, name: str | None) -> BankItem:
    """The safe item: ``name`` (``initial`` or a scene name), else the first scene, else the
    starting state."""
    if name is None:
        name = next(iter(settings.scenes), INITIAL)
    wanted = INITIAL if name == INITIAL else f"scene {name}"
    if name != INITIAL:
        settings.scene(name)  # UserError naming the scenes when there is no such scene
    for item in items:
        if item.name == wanted:
            return item
    # deduplicated away: the same clip as an earlier item
    state = initial_state(settings) if name == INITIAL else recall_scene(initial_state(settings), settings.scene(name))
    target = item_for(wanted, state)
    for item in items:
        if (item.request, item.model_frames) == (target.request, target.model_frames):
            return item
    raise UserError(f"--safe {name}: that state is not banked; bank its scene too")


# --- the safe loop --------------------------------------------------------------------------


def render_values(state: State) -> dict[str, object]:
    """The values of ``state`` that decide its clip (render and stretch parameters), by key."""
    effects = {p.name: p.effect for p in params.PARAMS}
    return {
        key: value for key, value in as_pairs(state) if effects[params.parse_key(key)[0].name] in ("render", "stretch")
    }


def write_safe(cache: RenderCache, item: BankItem, key: str) -> Path:
    """Mark ``key`` (``item``'s entry) as the safe loop: ``safe.json``, written atomically."""
    data = {
        "key": key,
        "name": item.name,
        "bpm": item.bpm,
        "bars": item.bars,
        "beats_per_bar": item.beats_per_bar,
        "values": render_values(item.state),
    }
    path = cache.folder / SAFE_FILE
    temp = path.with_name(f".{SAFE_FILE}.{os.getpid()}")
    temp.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    os.replace(temp, path)
    return path


@dataclass(frozen=True, eq=False)
class SafeLoop:
    """The safe loop: its clip, the tempo and length it was rendered for, and its values.

    ``values`` (``key -> value``, render and stretch parameters) set the State to the safe
    state, so that the planner's next request is the safe clip (a cache hit).
    """

    name: str
    clip: CachedClip
    bpm: float
    bars: int
    beats_per_bar: int
    values: dict[str, object] = field(default_factory=dict)

    def frames(self, output_rate: int, channels: int, out_frames: int | None = None) -> np.ndarray:
        """The audio as float32 ``[frames, channels]`` at ``output_rate``, ``out_frames`` long
        (default: the loop at its own tempo). Producer side only: it allocates."""
        if out_frames is None:
            out_frames = loop_frames(self.bars, self.bpm, output_rate, self.beats_per_bar)
        return resample_clip(to_frames(self.clip.audio, channels), self.clip.sample_rate, output_rate, out_frames)


def safe_loop(cache: RenderCache) -> SafeLoop | None:
    """The bank's safe loop from ``cache``, or None when none was banked (or it is damaged).

    Needs no model: the entry is read by the key ``safe.json`` names, whatever model is loaded.
    """
    data = cache.read_safe()
    if data is None:
        return None
    clip = cache.get(data["key"])
    if clip is None:
        log.warning("the safe loop %r is missing from %s; run riffengine bank again", data.get("name"), cache.folder)
        return None
    return SafeLoop(
        str(data.get("name", "")),
        clip,
        float(data["bpm"]),
        int(data["bars"]),
        int(data["beats_per_bar"]),
        dict(data.get("values", {})),
    )


# --- filling the bank -----------------------------------------------------------------------


@dataclass
class BankReport:
    """What a bank run did: items rendered, found in the cache, failed (name, reason)."""

    rendered: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    safe: str | None = None


def fill_bank(
    renderer: CachedRenderer,
    items: Sequence[BankItem],
    safe: BankItem | None = None,
    on_item: Callable[[BankItem], None] | None = None,
) -> BankReport:
    """Render every item not yet in the cache; mark ``safe`` as the safe loop.

    A render that fails is reported and the others go on; the safe item must succeed
    (UserError otherwise, since a show without one has no net).
    """
    report = BankReport()
    for item in items:
        try:
            if renderer.lookup(item.request, item.model_frames) is not None:
                report.cached.append(item.name)
            else:
                renderer.render(item.request, num_frames=item.model_frames)
                report.rendered.append(item.name)
        except Exception as exc:  # noqa: BLE001 - one bad state must not lose the whole bank
            log.warning("bank: %s failed: %s", item.name, exc)
            report.failed.append((item.name, str(exc)))
        if on_item is not None:
            on_item(item)
    renderer.flush()
    if safe is not None:
        key = renderer.key(safe.request, safe.model_frames)
        if key not in renderer.cache:
            reason = dict(report.failed).get(safe.name, "its entry could not be stored")
            raise UserError(
                f"the safe loop ({safe.name}) could not be banked: {reason}; fix it or choose another with --safe"
            )
        write_safe(renderer.cache, safe, key)
        report.safe = safe.name
    return report
