"""The renderer's speed levers by name, and what ``auto`` means on each device (torch-free).

Every lever keeps the images the same within rounding; :func:`riffengine.render.model.
optimize_model` applies them. ``auto`` turns a lever on where it is known to pay: on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

# torch.compile modes accepted for the UNet and the VAE decoder ("max-autotune" adds CUDA graphs).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class Levers:
    """Which speed levers to apply to a loaded model."""

    channels_last: bool = False
    fuse_qkv: bool = False
    compile_mode: str | None = None


def resolve_levers(device_type: str, channels_last: str | bool = "auto",
                   fuse_qkv: str | bool = "auto", compile_mode: str | None = None) -> Levers:
    """Levers for a device type (``"cuda"``, ``"cpu"``, ``"mps"``); ``"auto"`` = on for CUDA."""
    cuda = device_type == "cuda"
    return Levers(
        channels_last=cuda if channels_last == "auto" else bool(channels_last),
        fuse_qkv=cuda if fuse_qkv == "auto" else bool(fuse_qkv),
        compile_mode=compile_mode,
    )


def describe_levers(levers: Levers) -> str:
    """One line for the log, e.g. ``channels-last, fused QKV, compiled (max-autotune)``."""
    parts = []
    if levers.channels_last:
        parts.append("channels-last")
    if levers.fuse_qkv:
        parts.append("fused QKV")
    if levers.compile_mode:
        parts.append(f"compiled ({levers.compile_mode})")
    return ", ".join(parts) or "none"
