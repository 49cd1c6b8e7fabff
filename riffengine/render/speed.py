"""The renderer's speed levers by name, and what ``auto`` means on each device (torch-free).

Every lever keeps the images the same within rounding; :func:`riffengine.render.model.
optimize_model` applies them. ``auto`` turns a lever on where it is known to pay: on CUDA.
:func:`cpu_threads` is how many cores a render on the CPU spreads over.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Levers:
    """Which speed levers to apply to a loaded model."""

    channels_last: bool = False
    fuse_qkv: bool = False
    compile_mode: str | None = None


def resolve_levers(
    device_type: str, channels_last: str | bool = "auto", fuse_qkv: str | bool = "auto", compile_mode: str | None = None
) -> Levers:
    """Levers for a device type (``"cuda"``, ``"cpu"``, ``"mps"``); ``"auto"`` = on for CUDA."""
    cuda = device_type == "cuda"
    return Levers(
        channels_last=cuda if channels_last == "auto" else bool(channels_last),
        fuse_qkv=cuda if fuse_qkv == "auto" else bool(fuse_qkv),
        compile_mode=compile_mode,
    )


def cpu_threads(setting: str | int, cores: int | None) -> int:
    """Torch threads for rendering on the CPU: ``auto`` is every core but one, at least 1.

    Real-time rule: the audio callback and the engine's loop need a core of their own. A render
    spread over every core stalls at each of its thousands of parallel sections whenever one of
    its threads is preempted (by the audio thread, or anything else on the machine): on two
    shared cores some renders took six times as long and the callback came late more often.
    """
    if setting != "auto":
        return int(setting)
    return max(1, (cores or 1) - 1)


def split_guidance(threads: int, cores: int | None, live: bool) -> bool:
    """Whether a guided render on the CPU runs its two UNet rows at once, one per thread.

    Classifier-free guidance runs the UNet on two rows (unconditional, conditional). On the CPU
    a batch of two costs what two single rows cost, so the rows can run side by side, each on
    ``threads`` cores of its own: one wait per UNet call, not one per parallel section, so a
    preempted row delays only itself. Only where the cores are there (``2 * threads <= cores``)
    and nothing plays live on this machine (``live``: an engine playing to a device or JACK,
    with or without the audio host): with every core rendering, the audio host's real-time
    callback came late about twice as often (``bench/xruns.py``), and a late callback is a
    click. Offline renders (``riffengine render``, ``bank``, a ``.wav`` output) split.
    """
    return not live and 2 * threads <= (cores or 1)


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


def compile_cache_dir(environ: MutableMapping[str, str] = os.environ) -> Path:
    """Where compiled kernels persist between starts.

    ``RIFFENGINE_COMPILE_CACHE`` if set, else ``$XDG_CACHE_HOME/riffengine/compile``
    (``~/.cache/riffengine/compile``): beside the render cache, and unlike torch's default
    (``/tmp/torchinductor_USER``) not wiped by a reboot.
    """
    if environ.get("RIFFENGINE_COMPILE_CACHE"):
        return Path(environ["RIFFENGINE_COMPILE_CACHE"]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).expanduser() / "riffengine" / "compile"


def persist_compile_cache(environ: MutableMapping[str, str] = os.environ, torch_default: str | None = None) -> str:
    """Point torch inductor's on-disk caches at :func:`compile_cache_dir`; returns the folder.

    Inductor keeps its FX graph cache, generated Triton kernels and autotuning results under
    ``TORCHINDUCTOR_CACHE_DIR`` (Triton's own cache under ``triton/`` there unless
    ``TRITON_CACHE_DIR`` is set); a restart with them warm recompiles in seconds, not minutes.
    A folder the environment already names wins, unless it is ``torch_default`` (torch's own
    ``/tmp`` default, which torch writes into the environment once anything asks for it).
    Call before the first compile.
    """
    named = environ.get("TORCHINDUCTOR_CACHE_DIR")
    folder = named if named and named != torch_default else str(compile_cache_dir(environ))
    environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    return folder
