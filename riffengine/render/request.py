"""The render request: one immutable value that says everything a clip depends on.

Two requests that compare equal render the same image on the same device, so a request (plus
the model's identity) is also the key of any render cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The fast preset (``render.fast``): DPM-Solver++ at 20 steps, about 2.5x fewer UNet calls
#: than Riffusion's 50-step default at a small cost in detail.
FAST_STEPS = 20
FAST_SCHEDULER = "dpm"

#: The instant preset: a few-step adapter (LCM-LoRA and the like) with the LCM scheduler at 4
#: steps and guidance 1 (such adapters are distilled for low guidance; at 1 or below the
#: renderer also skips the unconditional half of the UNet batch, unless compiled).
INSTANT_STEPS = 4
INSTANT_SCHEDULER = "lcm"
INSTANT_GUIDANCE = 1.0

#: ``render.preset`` names.
PRESETS = ("quality", "fast", "instant")


def preset_values(preset: str, steps: int, scheduler: str,
                  guidance: float) -> tuple[int, str, float]:
    """Steps, scheduler and guidance a preset makes of the configured ones.

    ``quality`` keeps them; ``fast`` caps steps at :data:`FAST_STEPS` with DPM-Solver++;
    ``instant`` caps them at :data:`INSTANT_STEPS` with LCM at :data:`INSTANT_GUIDANCE`.
    """
    if preset == "fast":
        return min(steps, FAST_STEPS), FAST_SCHEDULER, guidance
    if preset == "instant":
        return min(steps, INSTANT_STEPS), INSTANT_SCHEDULER, INSTANT_GUIDANCE
    if preset != "quality":
        raise ValueError(f"preset {preset!r} is unknown: use one of {', '.join(PRESETS)}")
    return steps, scheduler, guidance


@dataclass(frozen=True)
class PromptSlot:
    """One prompt in a blend: its text and its weight in embedding space."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class Side:
    """One end of the A/B interpolation: a prompt blend, a seed, a denoise strength, a guidance."""

    prompts: tuple[PromptSlot, ...]
    seed: int = 0
    denoise: float = 0.75
    guidance: float = 7.0


@dataclass(frozen=True)
class RenderRequest:
    """Everything one clip depends on.

    ``alpha`` moves from side ``a`` (0) to side ``b`` (1); ``b`` of ``None`` means ``a`` alone.
    ``seed_image`` is a built-in seed name, a path, or ``None`` for text-to-image. ``mask`` is a
    path to a greyscale image of the seed's size (white regenerated, black kept) or ``None``.
    """

    a: Side
    b: Side | None = None
    alpha: float = 0.0
    negative: str = ""
    steps: int = 50
    scheduler: str = "default"
    seed_image: str | None = "groove_94"
    mask: str | None = None
    width: int = 512
    tags: tuple[tuple[str, str], ...] = field(default=(), compare=False)
