"""LoRA adapters from local files: few-step adapters (LCM-LoRA, TCD, Hyper-SD) and style ones.

An adapter is a ``.safetensors`` file, or a folder holding one (diffusers saves
``pytorch_lora_weights.safetensors``), made for Stable Diffusion 1.5 (the base of Riffusion).
Its weights go through diffusers' LoRA loading (``StableDiffusionLoraLoaderMixin``: the
diffusers, kohya and peft key layouts are all read) into the UNet and, where the file has them,
the text encoder, as named peft adapters with a weight each. ``fuse`` merges them into the
base weights and drops the LoRA layers: no cost per render, and the fused-QKV and compile
levers then see plain layers.

Whether an adapter is a few-step one cannot be read reliably from its weights, so the
config says so (``few_step: true``); the ``instant`` preset needs one. Nothing is ever
downloaded here: a missing file is an error that says how to fetch it once, before the show.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

from riffengine.config import AdapterSpec
from riffengine.errors import UserError

LORA_FILE = "pytorch_lora_weights.safetensors"
LORA_MARKERS = ("lora_A", "lora_B", "lora_down", "lora_up", "lora.down", "lora.up")
PARTS = ("unet", "text_encoder")
FETCH_HINT = "download it once before the show (README: 'Few-step and style adapters') and give its local path"


def adapter_name(index: int, path: str) -> str:
    """A peft adapter name unique within one model: ``a0_lcm_lora_sdv1_5``."""
    stem = re.sub(r"[^A-Za-z0-9]+", "_", Path(path).stem).strip("_").lower()
    return f"a{index}_{stem or 'lora'}"


def lora_file(path: str) -> Path:
    """The ``.safetensors`` file an adapter path names; UserError naming the path and the fix."""
    where = Path(path).expanduser()
    if not where.exists():
        raise UserError(f"adapter {path!r} does not exist: {FETCH_HINT}")
    if where.is_file():
        if where.suffix != ".safetensors":
            raise UserError(
                f"adapter {path!r} is not a .safetensors file: riffengine loads "
                f"LoRA weights from safetensors only (never pickled .bin/.ckpt/.pt)"
            )
        return where
    if (where / LORA_FILE).is_file():
        return where / LORA_FILE
    found = sorted(where.glob("*.safetensors"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise UserError(
            f"adapter folder {path!r} holds no .safetensors file: give the LoRA "
            f"file itself, or a folder with {LORA_FILE}"
        )
    names = ", ".join(p.name for p in found)
    raise UserError(
        f"adapter folder {path!r} holds several .safetensors files ({names}): give the path of the one to load"
    )


def read_lora(path: str) -> tuple[dict, dict | None]:
    """The LoRA state dict (diffusers layout, ``unet.``/``text_encoder.`` keys) and alphas."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from safetensors.torch import load_file

    file = lora_file(path)
    try:
        tensors = load_file(str(file))
    except Exception as exc:  # safetensors raises its own error type for a bad header
        raise UserError(
            f"adapter {str(file)!r} is not a readable safetensors file ({exc}): download it again"
        ) from None
    if not any(marker in key for key in tensors for marker in LORA_MARKERS):
        raise UserError(
            f"adapter {str(file)!r} is not a LoRA: none of its {len(tensors)} "
            f"tensors is a LoRA weight (lora_A/lora_B or lora_down/lora_up); a full "
            f"model checkpoint goes in model.id, not model.adapters"
        )
    try:
        state, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(dict(tensors))
    except Exception as exc:
        raise UserError(
            f"adapter {str(file)!r}: its keys are in no LoRA layout diffusers "
            f"reads ({first_line(exc)}): use an SD 1.5 LoRA in diffusers, kohya "
            f"or peft layout"
        ) from None
    if not any(key.startswith(f"{part}.") for key in state for part in PARTS):
        raise UserError(
            f"adapter {str(file)!r} has no UNet or text encoder weights (keys "
            f"start with neither unet. nor text_encoder.): use an SD 1.5 LoRA"
        )
    return state, alphas


def first_line(exc: BaseException) -> str:
    """The telling line of an exception's message, shortened (for one-line errors).

    The first shape mismatch when torch lists them, else the first line.
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    mismatches = [line for line in lines if line.startswith("size mismatch")]
    text = (mismatches or lines or [type(exc).__name__])[0]
    return text if len(text) <= 240 else text[:237] + "..."


@contextlib.contextmanager
def quiet_diffusers():
    """Hold back diffusers' own log lines (a failed load logs its whole error before raising)."""
    logger = logging.getLogger("diffusers")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def has_adapter(module, name: str) -> bool:
    """True when peft layers of adapter ``name`` were injected into ``module``."""
    return name in getattr(module, "peft_config", {})


def inject(model, state: dict, alphas: dict | None, name: str) -> None:
    """diffusers' LoRA loading into the UNet and the text encoder (its log lines held back)."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin as Lora

    with quiet_diffusers():
        Lora.load_lora_into_unet(state, alphas, unet=model.unet, adapter_name=name)
        Lora.load_lora_into_text_encoder(state, alphas, text_encoder=model.text_encoder, adapter_name=name)


def load_one(model, spec: AdapterSpec, name: str) -> None:
    """Load one adapter's weights into the model; UserError naming the file if it won't fit."""
    state, alphas = read_lora(spec.path)
    try:
        inject(model, state, alphas, name)
    except Exception as exc:  # peft/diffusers raise ValueError, RuntimeError, KeyError...
        raise UserError(
            f"adapter {spec.path!r} does not fit this model ({first_line(exc)}): "
            f"it was made for another base model or architecture; use a LoRA made "
            f"for Stable Diffusion 1.5 (the base of Riffusion), not SDXL or SD 2"
        ) from None
    if not (has_adapter(model.unet, name) or has_adapter(model.text_encoder, name)):
        raise UserError(
            f"adapter {spec.path!r}: none of its weights match a layer of this "
            f"model: use a LoRA made for Stable Diffusion 1.5"
        )


def activate(model, names: list[str], weights: list[float]) -> None:
    """Make ``names`` the active adapters of each part, each at its weight."""
    from diffusers.loaders.lora_base import set_adapters_for_text_encoder

    unet = [(n, w) for n, w in zip(names, weights) if has_adapter(model.unet, n)]
    if unet:
        model.unet.set_adapters([n for n, _ in unet], [w for _, w in unet])
    text = [(n, w) for n, w in zip(names, weights) if has_adapter(model.text_encoder, n)]
    if text:
        set_adapters_for_text_encoder([n for n, _ in text], model.text_encoder, [w for _, w in text])


def fuse(model, names: list[str]) -> None:
    """Merge the active adapters into the base weights, then drop the LoRA layers."""
    from diffusers.loaders.lora_base import fuse_text_encoder_lora

    if getattr(model.unet, "peft_config", None):
        model.unet.fuse_lora(adapter_names=[n for n in names if has_adapter(model.unet, n)])
    if getattr(model.text_encoder, "peft_config", None):
        fuse_text_encoder_lora(
            model.text_encoder, adapter_names=[n for n in names if has_adapter(model.text_encoder, n)]
        )
    remove_lora_layers(model)


def remove_lora_layers(model) -> None:
    """Replace every LoRA layer by its base layer (merged weights stay merged)."""
    from diffusers.utils import recurse_remove_peft_layers

    for part in (model.unet, model.text_encoder):
        if getattr(part, "peft_config", None) is None:
            continue
        recurse_remove_peft_layers(part)
        del part.peft_config
        part._hf_peft_config_loaded = None


def load_adapters(model, specs, fuse_weights: bool = False):
    """Load the configured adapters into ``model`` (a RiffusionModel) and record them on it.

    ``fuse_weights`` merges them into the base weights (faster; fixed until the model is
    loaded again). Returns the model. Load adapters before the speed levers and before a
    Renderer is made (its prompt embedding cache would keep the old text encoder's output).
    """
    specs = tuple(specs)
    if not specs:
        return model
    if model.compiled:
        raise UserError("adapters must be loaded before the model is compiled")
    names = [adapter_name(i, spec.path) for i, spec in enumerate(specs)]
    for spec, name in zip(specs, names):
        load_one(model, spec, name)
    activate(model, names, [float(spec.weight) for spec in specs])
    if fuse_weights:
        fuse(model, names)
    model.adapters = specs
    model.adapters_fused = bool(fuse_weights)
    return model


def unload_adapters(model):
    """Remove unfused adapters: the model renders as its base again. Returns the model.

    Fused adapters are part of the weights: load the model again to drop them.
    """
    if getattr(model, "adapters_fused", False):
        raise UserError("fused adapters cannot be unloaded: load the model again without them")
    remove_lora_layers(model)
    model.adapters = ()
    return model


def describe_adapters(specs, fused: bool = False) -> str:
    """One line for the log, e.g. ``lcm-lora.safetensors x1.0 (few-step), fused``."""
    if not specs:
        return "none"
    parts = [f"{Path(s.path).name} x{s.weight:g}{' (few-step)' if s.few_step else ''}" for s in specs]
    return ", ".join(parts) + (", fused" if fused else "")


# --- random adapters for tests and benchmarks -------------------------------------------------

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def lora_pair(layer, rank: int, scale: float, generator) -> tuple:
    """Random ``lora_A [rank, in]`` and ``lora_B [out, rank]`` for one Linear layer (float32)."""
    import torch

    down = torch.randn(rank, layer.in_features, generator=generator) / layer.in_features**0.5
    up = torch.randn(layer.out_features, rank, generator=generator) * (scale / rank**0.5)
    return down.contiguous(), up.contiguous()


def random_lora(model, rank: int = 4, seed: int = 0, scale: float = 0.5, text_encoder: bool = True) -> dict:
    """A random LoRA for ``model``'s attention projections, as diffusers saves one.

    Keys are ``unet.<layer>.lora_A.weight`` / ``lora_B.weight`` (and ``text_encoder.`` ones):
    the layout ``StableDiffusionLoraLoaderMixin.save_lora_weights`` writes for peft adapters.
    ``scale`` sets how far the adapter moves each layer's output.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    parts = [("unet", model.unet, UNET_TARGETS)]
    if text_encoder:
        parts.append(("text_encoder", model.text_encoder, TEXT_TARGETS))
    state = {}
    for prefix, module, targets in parts:
        for name, layer in module.named_modules():
            if isinstance(layer, torch.nn.Linear) and name.endswith(targets):
                down, up = lora_pair(layer, rank, scale, generator)
                state[f"{prefix}.{name}.lora_A.weight"] = down
                state[f"{prefix}.{name}.lora_B.weight"] = up
    return state


def save_lora(state: dict, path: str | Path) -> Path:
    """Write a LoRA state dict as a safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path
