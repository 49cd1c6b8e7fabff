"""A render cache on disk: a state played before is instant the next time, across restarts.

Key. :func:`cache_key` is a SHA-256 over a canonical JSON of everything a clip depends on:
the :class:`~riffengine.render.request.RenderRequest` fields (numbers canonicalised, the seed
image's and mask's file identity included), the audio length in frames, and the model's
identity (:func:`model_identity`: the resolved model folder, its config files' hashes, its
weight files' sizes and times, the dtype and the device kind, and the audio layout).

Entry. One folder per key holding ``image.png`` (the spectrogram, with its EXIF),
``audio.npy`` (float32 ``[channels, frames]``) and ``meta.json`` (sizes and SHA-256 of both
files). It is written in a temporary folder and renamed into place, so a reader sees a whole
entry or none; an entry whose files do not match its ``meta.json`` is corrupt, and is removed
and missed. ``meta.json``'s modification time is the entry's last use (LRU): a hit touches it,
and :meth:`RenderCache.evict` removes the least recently used entries past ``max_bytes``.
Pinned keys (the bank's safe loop) are never evicted.

Thread rules: a :class:`RenderCache` holds no in-memory index, so several threads and
processes (``riffengine bank`` beside a running engine) may share one folder. The engine
uses it on the render worker's thread through :class:`CachedRenderer`, which writes new
entries on its own writer thread so a render's result is not held up by PNG encoding.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from riffengine.errors import UserError
from riffengine.render.request import RenderRequest

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FORMAT = 1
"""Version of the entry layout and key recipe; a change makes every old entry a miss."""
IMAGE, AUDIO, META = "image.png", "audio.npy", "meta.json"
SAFE_FILE = "safe.json"
"""The safe-loop marker in the cache folder (written by :mod:`riffengine.render.bank`): its
``key`` names the entry that is never evicted."""
TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 3600.0
DEFAULT_MAX_BYTES = 2 * 1024**3
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt", ".pth", ".onnx")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/riffengine/renders`` (``~/.cache/riffengine/renders``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "riffengine" / "renders"


# --- keys ---------------------------------------------------------------------------------------


def _file_identity(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _canonical(obj: object) -> object:
    """Dataclasses as dicts with float fields as floats (1 and 1.0 are one key), no tags."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            if not f.compare:
                continue
            value = getattr(obj, f.name)
            if f.type == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
            out[f.name] = _canonical(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def request_fingerprint(request: RenderRequest, seeds_dir: Path | None = None) -> dict[str, object]:
    """The request as canonical JSON-able data, with its seed image's and mask's file identity.

    A seed image or mask that cannot be found is keyed by its name alone (the render fails
    anyway, and failures are not cached).
    """
    from riffengine.render.seeds import BUILTIN_DIR, resolve_seed_image

    data: dict[str, object] = {"request": _canonical(request)}
    if request.seed_image:
        try:
            data["seed_file"] = _file_identity(resolve_seed_image(request.seed_image, seeds_dir or BUILTIN_DIR))
        except (UserError, OSError):
            data["seed_file"] = None
    if request.mask:
        try:
            data["mask_file"] = _file_identity(Path(request.mask).expanduser())
        except OSError:
            data["mask_file"] = None
    return data


def model_identity(model, extra: dict[str, object] | None = None) -> str:
    """A hex digest naming a loaded model: folder, configs, weights, dtype, device kind.

    ``model`` is a :class:`~riffengine.render.model.RiffusionModel` (its ``source`` is resolved
    to the folder again: a hub id to its cache snapshot). Config and tokenizer files are hashed
    by content; weight files by size and modification time (hashing gigabytes would take
    longer than a render). ``extra`` adds anything else the audio depends on.
    """
    from riffengine.render.model import resolve_model_dir

    folder = resolve_model_dir(model.source).resolve()
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = str(path.relative_to(folder))
        if path.suffix in WEIGHT_SUFFIXES:
            st = path.stat()
            files.append([rel, "stat", st.st_size, st.st_mtime_ns])
        elif path.stat().st_size <= 16 * 1024**2:
            files.append([rel, "sha256", hashlib.sha256(path.read_bytes()).hexdigest()])
    data = {
        "folder": str(folder),
        "files": files,
        "dtype": str(model.dtype),
        "device": model.device.type,
        "extra": extra or {},
    }
    adapters = getattr(model, "adapters", ())
    if adapters:  # only when present, so keys made without adapters stay valid
        data["adapters"] = [adapter_identity(spec) for spec in adapters]
        data["adapters_fused"] = bool(getattr(model, "adapters_fused", False))
    return _digest(data)


def adapter_identity(spec) -> list[object]:
    """An adapter's weight, few-step flag and its file's identity (size and modification time)."""
    from riffengine.render.adapters import lora_file

    try:
        file = lora_file(spec.path)
        st = file.stat()
        return [str(file.resolve()), st.st_size, st.st_mtime_ns, spec.weight, spec.few_step]
    except (OSError, UserError):
        return [spec.path, None, None, spec.weight, spec.few_step]


def _digest(data: object) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(request: RenderRequest, num_frames: int | None, model_id: str, seeds_dir: Path | None = None) -> str:
    """The cache key of one clip: request + audio length + model identity (hex SHA-256)."""
    return _digest(
        {
            "format": FORMAT,
            "model": model_id,
            "frames": num_frames,
            **request_fingerprint(request, seeds_dir),
        }
    )


# --- entries ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CachedClip:
    """One entry read back: uint8 pixels ``[3, H, W]``, the PIL image, float32 audio
    ``[channels, frames]`` and the sample rate; ``info`` is the entry's free-form metadata."""

    key: str
    pixels: torch.Tensor
    image: object
    audio: np.ndarray
    sample_rate: int
    info: dict


class CorruptEntry(Exception):
    """An entry whose files do not match its meta.json."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_synced(path: Path, writer) -> None:
    with open(path, "wb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())


def _read_meta(entry: Path, key: str) -> dict:
    meta = json.loads((entry / META).read_text())
    if meta.get("format") != FORMAT or meta.get("key") != key:
        raise CorruptEntry("meta.json belongs to another key or format")
    return meta


def _check_file(entry: Path, meta: dict, name: str) -> None:
    path = entry / name
    if path.stat().st_size != meta["files"][name]["size"] or _sha256(path) != meta["files"][name]["sha256"]:
        raise CorruptEntry(f"{name} does not match its checksum")


def _read_entry_audio(entry: Path, meta: dict) -> np.ndarray:
    _check_file(entry, meta, AUDIO)
    audio = np.load(entry / AUDIO, allow_pickle=False)
    if audio.dtype != np.float32 or audio.ndim != 2:
        raise CorruptEntry(f"audio is {audio.dtype} {audio.shape}, not float32 [channels, frames]")
    return audio


def read_audio(entry: Path, key: str) -> tuple[np.ndarray, int]:
    """The audio (float32 ``[channels, frames]``) and sample rate of the entry folder ``entry``,
    checked against its checksum, without its image and without touching the cache: for a
    reader that must not load more (the audio host). CorruptEntry, or OSError, when damaged."""
    meta = _read_meta(entry, key)
    return _read_entry_audio(entry, meta), int(meta["sample_rate"])


class RenderCache:
    """A folder of clip entries bounded to ``max_bytes``; see the module docstring."""

    def __init__(self, folder: str | os.PathLike[str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if not isinstance(max_bytes, int) or max_bytes < 1:
            raise UserError(f"render cache size {max_bytes!r} is not valid; give a size above 0")
        self.folder = Path(default_cache_dir() if folder is None else folder).expanduser()
        self.max_bytes = max_bytes
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"render cache folder {str(self.folder)!r} cannot be created "
                f"({exc.strerror or exc}); choose a writable folder"
            ) from None
        self._remove_stale_temps()

    def path(self, key: str) -> Path:
        return self.folder / key

    def __contains__(self, key: str) -> bool:
        return (self.path(key) / META).is_file()

    # -- reading

    def get(self, key: str) -> CachedClip | None:
        """The entry for ``key``, or None (a miss). A corrupt entry is removed and missed."""
        entry = self.path(key)
        if not (entry / META).is_file():
            return None
        try:
            clip = self._read(key, entry)
        except Exception as exc:  # noqa: BLE001 - any damage at all is a miss, never a crash
            if isinstance(exc, FileNotFoundError) and not (entry / META).is_file():
                return None  # evicted meanwhile by another process
            log.warning("render cache entry %s is corrupt (%s); removed", key[:12], exc)
            self._remove(entry)
            return None
        self._touch(entry)
        return clip

    def _read(self, key: str, entry: Path) -> CachedClip:
        from PIL import Image

        from riffengine.spectrogram.image import pixels_from_image

        meta = _read_meta(entry, key)
        _check_file(entry, meta, IMAGE)
        audio = _read_entry_audio(entry, meta)
        with Image.open(entry / IMAGE) as opened:
            opened.load()
            image = opened.copy()
        if "exif" in opened.info:
            image.info["exif"] = opened.info["exif"]
        return CachedClip(
            key, pixels_from_image(image), image, audio, int(meta["sample_rate"]), dict(meta.get("info", {}))
        )

    # -- writing

    def put(self, key: str, image, audio: np.ndarray, sample_rate: int, info: dict | None = None) -> Path:
        """Store an entry atomically (temp folder, then rename) and evict past the bound.

        ``image`` is a PIL image (saved as PNG with its EXIF), ``audio`` float32
        ``[channels, frames]``. An entry already there is kept. Returns the entry's folder.
        """
        from riffengine.spectrogram.image import save_image

        entry = self.path(key)
        if key in self:
            return entry
        data = np.ascontiguousarray(np.asarray(audio, dtype=np.float32))
        if data.ndim == 1:
            data = data[None, :]
        temp = self.folder / f"{TEMP_PREFIX}{key[:16]}-{uuid.uuid4().hex}"
        temp.mkdir()
        try:
            save_image(image, temp / IMAGE)
            _write_synced(temp / AUDIO, lambda f: np.save(f, data, allow_pickle=False))
            meta = {
                "format": FORMAT,
                "key": key,
                "sample_rate": int(sample_rate),
                "channels": int(data.shape[0]),
                "frames": int(data.shape[1]),
                "created": time.time(),
                "info": info or {},
                "files": {
                    name: {"size": (temp / name).stat().st_size, "sha256": _sha256(temp / name)}
                    for name in (IMAGE, AUDIO)
                },
            }
            _write_synced(temp / META, lambda f: f.write(json.dumps(meta, indent=1).encode()))
            try:
                os.rename(temp, entry)
            except OSError:
                if key not in self:  # not a concurrent writer of the same key: a real failure
                    raise
        finally:
            if temp.exists():
                shutil.rmtree(temp, ignore_errors=True)
        self.evict()
        return entry

    # -- size and eviction

    def entries(self) -> list[tuple[str, float, int]]:
        """``(key, last used, bytes)`` of every whole entry, least recently used first."""
        out = []
        for entry in self.folder.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                used = (entry / META).stat().st_mtime
                size = sum(p.stat().st_size for p in entry.iterdir())
            except OSError:
                continue  # a partial or vanishing folder is not an entry
            out.append((entry.name, used, size))
        out.sort(key=lambda e: e[1])
        return out

    def size_bytes(self) -> int:
        return sum(size for _, _, size in self.entries())

    def read_safe(self) -> dict | None:
        """The safe-loop marker (:data:`SAFE_FILE`), or None when absent or unreadable."""
        try:
            data = json.loads((self.folder / SAFE_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("safe loop file in %s is unreadable (%s)", self.folder, exc)
            return None
        return data if isinstance(data, dict) and isinstance(data.get("key"), str) else None

    def pinned(self) -> set[str]:
        """Keys that are never evicted: the bank's safe loop."""
        data = self.read_safe()
        return {data["key"]} if data else set()

    def evict(self) -> list[str]:
        """Remove least recently used entries until the total is within ``max_bytes``."""
        entries = self.entries()
        total = sum(size for _, _, size in entries)
        keep = self.pinned()
        removed = []
        for key, _, size in entries:
            if total <= self.max_bytes:
                break
            if key in keep:
                continue
            self._remove(self.path(key))
            total -= size
            removed.append(key)
        return removed

    def _touch(self, entry: Path) -> None:
        try:
            os.utime(entry / META)
        except OSError:
            pass

    def _remove(self, entry: Path) -> None:
        """Remove an entry: rename it aside first, so no reader sees half of it."""
        aside = self.folder / f"{TEMP_PREFIX}gone-{uuid.uuid4().hex}"
        try:
            os.rename(entry, aside)
        except OSError:
            return
        shutil.rmtree(aside, ignore_errors=True)

    def _remove_stale_temps(self) -> None:
        now = time.time()
        for temp in self.folder.glob(f"{TEMP_PREFIX}*"):
            try:
                if now - temp.stat().st_mtime > STALE_TEMP_SECONDS:
                    shutil.rmtree(temp, ignore_errors=True)
            except OSError:
                pass


# --- the renderer wrapper -----------------------------------------------------------------------


class CachedRenderer:
    """A renderer that answers from the cache first and stores what it renders.

    Same interface as :class:`~riffengine.render.renderer.Renderer` for the engine:
    ``render(request, num_frames, on_step)`` returns a ``RenderedClip`` (``timings`` is
    ``{"cache": seconds}`` on a hit) and ``pixels_to_audio`` is passed through. Thread rule: use
    it on one thread (the render worker); new entries are written on its own writer thread
    (:meth:`flush` waits for them). A cache that cannot be written is logged, never raised.
    """

    def __init__(self, renderer, cache: RenderCache, model_id: str | None = None) -> None:
        self.renderer = renderer
        self.cache = cache
        if model_id is None:
            model_id = model_identity(renderer.model, {"stereo": bool(getattr(renderer, "stereo", False))})
        self.model_id = model_id
        self.hits = 0
        self.misses = 0
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="riff-cache")
        self._writes: list[concurrent.futures.Future] = []

    def __getattr__(self, name: str):
        if name == "renderer":
            raise AttributeError(name)
        return getattr(self.renderer, name)  # model, stereo, pixels_to_audio, ...

    def key(self, request: RenderRequest, num_frames: int | None) -> str:
        return cache_key(request, num_frames, self.model_id, getattr(self.renderer, "seeds_dir", None))

    def lookup(self, request: RenderRequest, num_frames: int | None = None):
        """The cached ``RenderedClip`` for a request, or None; counts a hit but not a miss."""
        from riffengine.render.renderer import RenderedClip

        start = time.perf_counter()
        cached = self.cache.get(self.key(request, num_frames))
        if cached is None:
            return None
        self.hits += 1
        seconds = time.perf_counter() - start
        return RenderedClip(
            request=request,
            pixels=cached.pixels,
            image=cached.image,
            audio=cached.audio,
            sample_rate=cached.sample_rate,
            seconds=seconds,
            timings={"cache": seconds},
        )

    def render(self, request: RenderRequest, num_frames: int | None = None, on_step=None):
        clip = self.lookup(request, num_frames)
        if clip is not None:
            return clip
        self.misses += 1
        clip = self.renderer.render(request, num_frames=num_frames, on_step=on_step)
        key = self.key(request, num_frames)
        self._writes = [f for f in self._writes if not f.done()]
        self._writes.append(self._writer.submit(self._store, key, clip))
        return clip

    def _store(self, key: str, clip) -> None:
        try:
            self.cache.put(key, clip.image, clip.audio, clip.sample_rate, {"request": _canonical(clip.request)})
        except Exception as exc:  # noqa: BLE001 - a full disk must not stop the renders
            log.warning("render cache: cannot store %s (%s)", key[:12], exc)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued entry is written."""
        concurrent.futures.wait(list(self._writes), timeout)

    def close(self) -> None:
        self.flush()
        self._writer.shutdown(wait=True)
