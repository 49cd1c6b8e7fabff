"""Text prompts: the ``(word:1.3)`` weighting syntax, CLIP encoding and a per-prompt cache.

Weighting syntax: ``(text:W)`` multiplies the embeddings of the tokens of ``text`` by ``W``
(``W`` a plain decimal number, e.g. ``(heavy bass:1.4)`` or ``(vocals:0.5)``); everything else
has weight 1. Parentheses that are not of that form are kept as literal text. A prompt with no
weighted part is encoded exactly like diffusers' Stable Diffusion pipelines encode it.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import torch

from riffengine.errors import UserError

_WEIGHTED = re.compile(r"\(([^()]*?):\s*([0-9]*\.?[0-9]+)\s*\)")


def parse_weighted(prompt: str) -> list[tuple[str, float]]:
    """Split a prompt into ``(text, weight)`` segments; adjacent equal weights are merged.

    >>> parse_weighted("lofi (piano:1.3) beat")
    [('lofi ', 1.0), ('piano', 1.3), (' beat', 1.0)]
    """
    segments: list[tuple[str, float]] = []
    pos = 0
    for match in _WEIGHTED.finditer(prompt):
        if match.start() > pos:
            segments.append((prompt[pos : match.start()], 1.0))
        segments.append((match.group(1), float(match.group(2))))
        pos = match.end()
    if pos < len(prompt):
        segments.append((prompt[pos:], 1.0))
    merged: list[tuple[str, float]] = []
    for text, weight in segments:
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + text, weight)
        elif text:
            merged.append((text, weight))
    return merged


def check_prompt(text: str, field: str = "prompt") -> str:
    """Return ``text`` stripped; raise UserError when it is empty."""
    stripped = text.strip()
    if not stripped:
        raise UserError(f"{field} is empty: give a text prompt such as 'lofi hip hop beat'")
    return stripped


def weighted_token_ids(tokenizer, prompt: str) -> tuple[list[int], list[float]]:
    """Token ids (with start, end and padding) and one weight per token, truncated to fit."""
    max_len = tokenizer.model_max_length
    ids: list[int] = []
    weights: list[float] = []
    for text, weight in parse_weighted(prompt):
        seg = tokenizer(text, add_special_tokens=False).input_ids
        ids.extend(seg)
        weights.extend([weight] * len(seg))
    ids, weights = ids[: max_len - 2], weights[: max_len - 2]
    ids = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
    weights = [1.0, *weights, 1.0]
    pad = max_len - len(ids)
    return ids + [tokenizer.pad_token_id] * pad, weights + [1.0] * pad


class PromptEncoder:
    """Turns prompt text into CLIP hidden states ``[1, 77, D]``, caching each prompt.

    Not thread-safe: the render worker thread is the only user.
    """

    def __init__(self, tokenizer, text_encoder, device: torch.device, dtype: torch.dtype, max_entries: int = 256):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.device = device
        self.dtype = dtype
        self.max_entries = max_entries
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def encode(self, prompt: str) -> torch.Tensor:
        """Embeddings of one prompt (empty string allowed: it is the unconditional prompt)."""
        cached = self.cache.get(prompt)
        if cached is not None:
            self.hits += 1
            self.cache.move_to_end(prompt)
            return cached
        self.misses += 1
        embedding = self._encode_uncached(prompt)
        self.cache[prompt] = embedding
        if len(self.cache) > self.max_entries:
            self.cache.popitem(last=False)
        return embedding

    @torch.no_grad()
    def _encode_uncached(self, prompt: str) -> torch.Tensor:
        segments = parse_weighted(prompt)
        if all(weight == 1.0 for _, weight in segments):
            ids = self.tokenizer(
                "".join(text for text, _ in segments),
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            return self._run(ids)
        ids, weights = weighted_token_ids(self.tokenizer, prompt)
        hidden = self._run(torch.tensor([ids]))
        return apply_token_weights(hidden, torch.tensor(weights))

    def _run(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = self.text_encoder(ids.to(self.device))[0]
        return hidden.to(self.dtype)


def apply_token_weights(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scale each token's embedding by its weight, then restore the original mean."""
    w = weights.to(hidden.device, torch.float32)[None, :, None]
    h = hidden.float()
    scaled = h * w
    scaled = scaled * (h.mean() / scaled.mean())
    return scaled.to(hidden.dtype)
