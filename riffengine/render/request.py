"""The render request: one immutable value that says everything a clip depends on.

Two requests that compare equal render the same image on the same device, so a request (plus
the model's identity) is also the key of any render cache. :func:`to_render_request` makes
the request a :class:`~riffengine.state.State` asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from riffengine.state import State


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


def _side(state: State, side: str) -> Side:
    texts = state.values[f"prompt_{side}"]
    weights = state.values[f"weight_{side}"]
    prompts = tuple(
        PromptSlot(text, weight)
        for text, weight in zip(texts, weights)  # type: ignore[call-overload]
        if text.strip() and weight > 0
    )
    return Side(
        prompts=prompts,
        seed=state.values[f"seed_{side}"],  # type: ignore[arg-type]
        denoise=state.values[f"denoise_{side}"],  # type: ignore[arg-type]
        guidance=state.values[f"guidance_{side}"],  # type: ignore[arg-type]
    )


def to_render_request(state: State) -> RenderRequest:
    """The render request for this State.

    Empty and zero-weight prompt slots are left out. Side ``b`` is ``None`` when it has no
    prompt left or when ``alpha`` is 0 (side A alone is heard either way), so changes to an
    unheard side B do not cause a render. An empty ``seed_image`` means text-to-image.
    """
    a = _side(state, "a")
    side_b = _side(state, "b")
    b: Side | None = side_b
    alpha = state.values["alpha"]
    if not side_b.prompts or alpha == 0.0:
        b, alpha = None, 0.0
    return RenderRequest(
        a=a,
        b=b,
        alpha=alpha,  # type: ignore[arg-type]
        negative=state.values["negative"],  # type: ignore[arg-type]
        steps=state.values["steps"],  # type: ignore[arg-type]
        scheduler=state.values["scheduler"],  # type: ignore[arg-type]
        seed_image=state.values["seed_image"] or None,  # type: ignore[arg-type]
    )
