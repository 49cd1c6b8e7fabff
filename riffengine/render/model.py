"""Loading the Riffusion model (diffusers layout) and building a tiny stand-in for tests.

The model is five parts, each in its own subfolder: ``unet``, ``vae``, ``text_encoder``,
``tokenizer`` and ``scheduler``. Other parts of the real repository (``safety_checker``,
``feature_extractor``) are ignored. :func:`load_model` takes a local folder or a hub id; a hub id
is looked up in the Hugging Face cache only (``HF_HOME`` / ``HF_HUB_CACHE`` honoured): the engine
never downloads at run time, and says how to download when the model is missing.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from riffengine.config import COMPILE_MODES
from riffengine.errors import UserError
from riffengine.render.speed import persist_compile_cache

log = logging.getLogger(__name__)

DEFAULT_MODEL = "riffusion/riffusion-model-v1"
PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class RiffusionModel:
    """The loaded parts, on one device in one dtype (the tokenizer and scheduler config aside)."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: dict
    device: torch.device
    dtype: torch.dtype
    source: str
    compiled: bool = False
    adapters: tuple = ()
    adapters_fused: bool = False

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along each axis (8 for Stable Diffusion)."""
        # diffusers' config is a dict read through untyped attribute access
        return 2 ** (len(self.vae.config.block_out_channels) - 1)  # type: ignore[union-attr, arg-type]

    @property
    def latent_channels(self) -> int:
        # diffusers' config is a dict read through untyped attribute access
        return int(self.unet.config.in_channels)  # type: ignore[union-attr, arg-type]


def parse_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` (also ``mps``); UserError when it is unknown or absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"device {device!r} is not valid: use 'cpu' or 'cuda:N'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r}: CUDA is not available here; use --device cpu")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise UserError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device("cuda", index)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {device!r}: MPS is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device {device!r} is not supported: use 'cpu' or 'cuda:N'")
    return dev


def default_dtype(device: torch.device) -> torch.dtype:
    """float16 on CUDA (and MPS), float32 on the CPU."""
    return torch.float32 if device.type == "cpu" else torch.float16


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder as the environment says now (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def looks_like_path(source: str) -> bool:
    """True unless ``source`` has the hub id shape ``owner/name`` and is no existing path."""
    if source.startswith(("/", ".", "~")) or Path(source).expanduser().exists():
        return True
    return source.count("/") != 1


def resolve_model_dir(source: str) -> Path:
    """The local folder holding the model: ``source`` itself, or its snapshot in the hub cache."""
    if looks_like_path(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise UserError(f"model folder {str(folder)!r} does not exist")
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache_dir()
    try:
        return Path(snapshot_download(source, cache_dir=str(cache), local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError) as exc:
        raise UserError(
            f"model {source!r} is not in the Hugging Face cache (looked in {cache}); "
            f"riffengine never downloads while running. Download it once with "
            f"`huggingface-cli download {source}` (it lands in that cache; set HF_HOME to "
            f"move it), or pass a local folder with --model PATH"
        ) from exc


def check_layout(folder: Path) -> None:
    """UserError naming the missing parts when ``folder`` is not a diffusers model folder."""
    missing = [p for p in PARTS if not (folder / p).is_dir()]
    if missing:
        raise UserError(
            f"model folder {str(folder)!r} lacks {', '.join(missing)}: it must be in the "
            f"diffusers layout ({', '.join(PARTS)} subfolders)"
        )


def load_model(
    source: str = DEFAULT_MODEL, device: str = "cpu", dtype: torch.dtype | str | None = None
) -> RiffusionModel:
    """Load the model from a hub id (cache only) or a local folder onto ``device``.

    ``dtype`` defaults to float16 on CUDA and float32 on the CPU.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    dev = parse_device(device)
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise UserError(f"dtype {dtype!r} is unknown: use one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    dtype = dtype or default_dtype(dev)
    folder = resolve_model_dir(source)
    check_layout(folder)
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype)
    text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").to(dtype)
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    for part in (unet, vae, text_encoder):
        part.to(dev).eval().requires_grad_(False)
    return RiffusionModel(unet, vae, text_encoder, tokenizer, scheduler_config, dev, dtype, str(source))


def allow_cuda_graphs_on_this_thread() -> None:
    """Let the calling thread run ``torch.compile``'s CUDA graphs (``max-autotune`` mode).

    torch 2.11 keeps its CUDA-graph tree state in a thread-local that is set up only on the
    thread that imported it, and asserts on any other Python thread (pytorch issue 123177,
    fixed in later releases). The render worker is such a thread: give it its own state.
    Cheap; the renderer calls it before every render of a compiled model.
    """
    from torch._inductor import cudagraph_trees

    local = cudagraph_trees.local
    if not hasattr(local, "tree_manager_containers") and not torch._C._is_key_in_tls("tree_manager_containers"):
        local.tree_manager_containers = {}
        local.tree_manager_locks = collections.defaultdict(threading.Lock)


def tune_inductor() -> None:
    """Inductor settings documented for diffusion UNets on NVIDIA GPUs.

    1x1 convolutions as matrix multiplies, coordinate-descent tuning of the generated kernels,
    and no epilogue fusion (it defeats the tuned matmul templates). Process-wide; called only
    when compiling for CUDA.
    """
    import torch._inductor.config as inductor

    inductor.conv_1x1_as_mm = True
    inductor.coordinate_descent_tuning = True
    inductor.coordinate_descent_check_all_directions = True
    inductor.epilogue_fusion = False


def optimize_model(
    model: RiffusionModel,
    channels_last: bool = False,
    fuse_qkv: bool = False,
    compile_mode: str | None = None,
    backend: str = "inductor",
) -> RiffusionModel:
    """Speed levers, each of which keeps the images the same within rounding.

    - ``channels_last``: NHWC memory layout for the UNet and VAE (cuDNN's fast convolutions).
    - ``fuse_qkv``: one projection for query, key and value in every attention block.
    - ``compile_mode``: ``torch.compile`` the UNet and the VAE decoder, whole graph, static
      shapes (one of :data:`COMPILE_MODES`; ``"max-autotune"`` adds CUDA graphs). The model
      is then marked ``compiled`` and the renderer keeps the UNet's batch at 2 whatever the
      guidance, so that shapes never change during a show.

    Compiling is lazy: the first render compiles (minutes for the real model on a GPU; the
    on-disk inductor cache, kept in :func:`~riffengine.render.speed.compile_cache_dir`,
    shortens later starts), so render once before the first deadline,
    on the thread that will render (the engine's warm-up does both). Attention already uses
    PyTorch's scaled-dot-product attention (diffusers' default). ``backend`` is for tests
    (``"aot_eager"`` checks that the graph captures whole without generating kernels).
    """
    # Third-party typing gaps: diffusers' models do not declare fuse_qkv_projections (it
    # resolves through torch's untyped Module.__getattr__), and torch's Module.to stubs lack
    # memory_format.
    if fuse_qkv:
        model.unet.fuse_qkv_projections()  # type: ignore[operator]
        model.vae.fuse_qkv_projections()  # type: ignore[operator]
    if channels_last:
        model.unet.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        model.vae.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if compile_mode:
        if compile_mode not in COMPILE_MODES:
            raise UserError(f"compile mode {compile_mode!r} is unknown: use one of {', '.join(COMPILE_MODES)}")
        if backend == "inductor":
            from torch._inductor.runtime.cache_dir_utils import default_cache_dir

            log.info("compile cache: %s", persist_compile_cache(torch_default=default_cache_dir()))
        if model.device.type == "cuda" and backend == "inductor":
            tune_inductor()
        options: dict[str, Any] = dict(fullgraph=True, dynamic=False, backend=backend)
        if backend == "inductor":
            options["mode"] = compile_mode
        # torch.compile is typed as returning a plain callable; it returns a module (an
        # OptimizedModule) for a module, and the decoder is a module read through torch's untyped
        # Module.__getattr__.
        model.unet = torch.compile(model.unet, **options)  # type: ignore[assignment]
        model.vae.decoder = torch.compile(model.vae.decoder, **options)  # type: ignore[assignment, arg-type]
        model.compiled = True
    return model


# --- the tiny model -------------------------------------------------------------------------

TINY_WORDS = (
    "lofi hip hop beat jazz piano drum bass guitar synth ambient techno house funk rock soul "
    "chill vocals strings pad kick snare hat groove melody chords minor major fast slow"
).split()


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte-level alphabet: every byte maps to one printable unicode character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tiny_merges(words: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """BPE merges that build each word in ``words`` left to right (end-of-word marked)."""
    merges: list[tuple[str, str]] = []
    seen = set()
    for word in words:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        current = symbols[0]
        for nxt in symbols[1:]:
            if (current, nxt) not in seen:
                seen.add((current, nxt))
                merges.append((current, nxt))
            current = current + nxt
    return merges


def write_tiny_tokenizer(folder: Path) -> None:
    """A small CLIP tokenizer (byte alphabet + a few music words), made locally."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges = tiny_merges(TINY_WORDS)
    vocab_list += ["".join(pair) for pair in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab: dict[str, int] = {}
    for token in vocab_list:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>", model_max_length=77
    )
    tok.save_pretrained(str(folder))


def tiny_configs(vocab_size: int) -> dict[str, dict]:
    """Configs with the real model's block types and structure and tiny channel counts."""
    unet = dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=16,
    )
    vae = dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=16,
        sample_size=512,
    )
    text = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=32,
    )
    scheduler = dict(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {"unet": unet, "vae": vae, "text_encoder": text, "scheduler": scheduler}


def build_tiny_model(folder: str | Path, seed: int = 0) -> Path:
    """Write a small randomly initialised model in the real layout to ``folder``."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    write_tiny_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    configs = tiny_configs(len(tokenizer))
    torch.manual_seed(seed)
    # save_pretrained is not visible to mypy through diffusers' classes (a third-party typing gap).
    UNet2DConditionModel(**configs["unet"]).save_pretrained(folder / "unet")  # type: ignore[attr-defined]
    AutoencoderKL(**configs["vae"]).save_pretrained(folder / "vae")  # type: ignore[attr-defined]
    text_config = CLIPTextConfig(
        **configs["text_encoder"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    CLIPTextModel(text_config).save_pretrained(folder / "text_encoder")
    PNDMScheduler(**configs["scheduler"]).save_pretrained(folder / "scheduler")  # type: ignore[attr-defined]
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "scheduler": ["diffusers", "PNDMScheduler"],
                "safety_checker": [None, None],
                "feature_extractor": [None, None],
            },
            indent=2,
        )
    )
    return folder
