"""YAML config file -> validated, typed, immutable settings.

Every setting has a default, so an empty file is a valid config; ``configs/default.yaml``
lists them all. :func:`load_config` checks the whole file and reports every mistake at once,
one per line, each naming the file, the line, the full key path (``loop.bars``), the bad value
and the fix, as one :class:`~riffengine.errors.UserError`.

Each section is a frozen pydantic model that refuses unknown keys, one line per setting: its
rule and its default (:func:`riffengine.validation.setting`). Settings that are also
controllable parameters (``tempo.bpm``, ``loop.bars``, ``render.steps``...) take both from
the parameter table (:func:`riffengine.validation.param_setting`), and the ``initial`` and
``scenes`` sections are checked by the model the table generates, so the file and the live
controls accept exactly the same values with the same words (:mod:`riffengine.validation`).

Relative paths in a loaded file's settings (``paths.*``, ``audio.record``, ``audio.events``,
a ``.wav`` ``audio.output``, a ``midi.mappings`` file), written or default, are made absolute
against the file's folder. A
``render.seed_image`` is looked up by the renderer (built-in names, ``paths.seeds``), so it
is kept as written. Overrides from the command line (:func:`merge_overrides`) are kept as
given, that is relative to the working folder.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, ClassVar

import yaml
from pydantic import BaseModel, PlainValidator, PrivateAttr, ValidationError, ValidationInfo, WrapValidator

from riffengine import validation as v
from riffengine.control import params
from riffengine.errors import UserError
from riffengine.yamlfile import read_yaml

log = logging.getLogger(__name__)

#: The default settings, shipped inside the package (``configs/`` in a checkout links here), so a
#: plain ``pip install`` finds it as well as an editable one.
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``model.compile``: torch.compile modes for the UNet and the VAE decoder ("max-autotune" adds
CUDA graphs)."""

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


def preset_values(preset: str, steps: int, scheduler: str, guidance: float) -> tuple[int, str, float]:
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
class AdapterSpec:
    """One configured adapter: a file or folder, its weight, and whether it is few-step."""

    path: str
    weight: float = 1.0
    few_step: bool = False


def has_few_step(specs: Iterable[AdapterSpec]) -> bool:
    """True when one of the adapter specs is marked ``few_step``."""
    return any(spec.few_step for spec in specs)


# --- rules of the settings that are not parameters -------------------------------------------

_ADAPTER_WHAT = "a path, or a mapping like {path: adapters/lcm-lora-sdv1-5.safetensors, weight: 1.0, few_step: true}"


class _AdapterEntry(v.Strict):
    """The mapping form of a ``model.adapters`` entry."""

    expected: ClassVar[str] = _ADAPTER_WHAT
    path: str = v.setting(v.text(_ADAPTER_WHAT), "")
    weight: float = v.setting(v.number(-10.0, 10.0), 1.0)
    few_step: bool = v.setting(v.FLAG, False)


def _adapter(value: object) -> AdapterSpec:
    """One ``model.adapters`` entry: a path, or a mapping with path, weight and few_step."""
    if isinstance(value, str) and value.strip():
        return AdapterSpec(value)
    if not isinstance(value, Mapping) or "path" not in value:
        raise v.Invalid(f"{v.show(value)} is not an adapter; use {_ADAPTER_WHAT}")
    entry = _AdapterEntry.model_validate(value)
    return AdapterSpec(entry.path, entry.weight, entry.few_step)


def _network(value: object) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise v.Invalid(
            f"{v.show(value)} is not a network; use CIDR like 127.0.0.0/8 or "
            "192.168.1.0/24, or 0.0.0.0/0 for any IPv4 sender"
        ) from None


def _destination(value: object) -> str:
    if isinstance(value, str):
        host, _, port = value.rpartition(":")
        if host.strip("[]") and port.isdigit() and 1 <= int(port) <= 65535:
            return value
    raise v.Invalid(f"{v.show(value)} is not a destination; use HOST:PORT, e.g. 127.0.0.1:9001")


def _seed_image(value: object) -> object:
    return "" if value is None else v.coerce(params.param("seed_image"), value)


def _mappings(value: object) -> object:
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(m, Mapping) for m in value):
        return tuple(MappingProxyType(dict(m)) for m in value)
    raise v.Invalid(f"{v.show(value)} is not valid; use a mappings file path, a list of mappings, or null")


_HOST = r"[A-Za-z0-9.:_\-\[\]]+"
_TOKEN_WHAT = (
    "16 to 128 letters, digits, '-' or '_' (e.g. from `python3 -c 'import secrets; "
    "print(secrets.token_urlsafe())'`), or null for a new one at every start"
)
_AUTO_OR_FLAG = v.either(v.choice("auto"), v.FLAG, what="auto (on for CUDA), true or false")
_NETWORKS = v.list_of(v.checked(_network))


# --- paths, made absolute against the file's folder ------------------------------------------


def _absolute(value: str, info: ValidationInfo) -> str:
    base_dir = (info.context or {}).get("base_dir")
    if base_dir is None:
        return value
    expanded = os.path.expanduser(value)
    return expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base_dir, expanded))


def _path(value: object, info: ValidationInfo) -> object:
    """A path setting: a string is made absolute against the file's folder."""
    return _absolute(value, info) if isinstance(value, str) else value


def _wav_path(value: object, info: ValidationInfo) -> object:
    """``audio.output``: only a ``.wav`` file is a path; device names and numbers stay."""
    return _path(value, info) if isinstance(value, str) and value.lower().endswith(".wav") else value


def _adapter_paths(value: tuple[AdapterSpec, ...], info: ValidationInfo) -> tuple[AdapterSpec, ...]:
    return tuple(replace(spec, path=_absolute(spec.path, info)) for spec in value)


# --- the sections ------------------------------------------------------------------------------


class Section(v.Strict):
    """A section of plain settings: a frozen model with one line per setting, rule and default."""

    expected: ClassVar[str] = "a mapping of settings (or leave the section out)"


class ModelSettings(Section):
    """Which model to load and where it runs."""

    id: str = v.setting(v.text("a hub id or a model folder"), "riffusion/riffusion-model-v1")
    device: str = v.setting(v.text("auto, cpu, mps, cuda or cuda:N", r"auto|cpu|mps|cuda(:[0-9]+)?"), "auto")
    dtype: str = v.setting(v.choice("auto", "fp16", "bf16", "fp32"), "auto")
    channels_last: str | bool = v.setting(_AUTO_OR_FLAG, "auto")
    fuse_qkv: str | bool = v.setting(_AUTO_OR_FLAG, "auto")
    compile: str | None = v.setting(v.optional(v.choice(*COMPILE_MODES)), None)
    cpu_threads: str | int = v.setting(
        v.either(v.choice("auto"), v.whole(1, 1024), what="auto (every core but one) or a number"), "auto"
    )
    adapters: tuple[AdapterSpec, ...] = v.setting(v.list_of(v.checked(_adapter)), (), _adapter_paths)
    fuse_adapters: bool = v.setting(v.FLAG, False)
    required: bool = v.setting(v.FLAG, False)
    retry_seconds: float = v.setting(v.number(0.1, 3600.0), 30.0)


class AudioSettings(Section):
    """Where the sound goes, and the buffers on the way.

    ``host``: a live output plays from a separate audio process that outlives the engine (see
    docs/daemon.md); false runs everything in one process. ``engine_hang_seconds``: under the
    audio host, an engine silent this long (no heartbeat) is killed and restarted.
    """

    output: str | int = v.setting(
        v.either(v.whole(0, 1023), v.text(), what='"default", "jack", a device name or number, or a .wav path'),
        "default",
        _wav_path,
    )
    sample_rate: int = v.setting(v.whole(8000, 192000), 44100)
    jack_client_name: str = v.setting(v.text("a JACK client name", max_length=63), "riffengine")
    ring_buffer_seconds: float = v.setting(v.number(0.05, 60.0), 2.0)
    host: bool = v.setting(v.FLAG, True)
    engine_hang_seconds: float = v.setting(v.number(1.0, 600.0), 10.0)
    record: str | None = v.setting(v.optional(v.text("a .wav path or null")), None, _path)
    events: str | None = v.setting(v.optional(v.text("a file path or null")), None, _path)


class TempoSettings(Section):
    """Where the tempo comes from, and its starting value.

    ``transport_sync``: follow and send play/stop (Link start/stop sync, MIDI
    Start/Stop/Continue).
    """

    bpm: float = v.param_setting("bpm")
    beats_per_bar: int = v.param_setting("beats_per_bar")
    source: str = v.param_setting("tempo_source")
    midi_clock_in: str | None = v.setting(v.optional(v.text("a MIDI port name or null")), None)
    midi_clock_out: str | None = v.setting(v.optional(v.text("a MIDI port name or null")), None)
    transport_sync: bool = v.setting(v.FLAG, True)


class LoopSettings(Section):
    """Loop length and the seam between clips."""

    bars: int = v.param_setting("bars")
    crossfade_ms: float = v.param_setting("crossfade_ms")


BACKENDS = ("local", "ray")
"""``render.backend``: where renders run."""


class RaySettings(Section):
    """The Ray instance the render workers run on (``render.backend: ray``)."""

    address: str = v.setting(v.text("auto, local, or a Ray address such as 10.0.0.2:6379"), "auto")
    """``auto`` (a running Ray instance), ``local`` (start one here) or a cluster address."""


class RenderSettings(Section):
    """Starting render parameters and the renderer's timing margin.

    ``denoise`` and ``guidance`` set both sides. ``preset`` trades quality for latency:
    ``quality`` (the values as written), ``fast`` (DPM-Solver++, steps capped at 20) or
    ``instant`` (a few-step adapter: LCM at 4 steps, guidance 1; needs an adapter in
    ``model.adapters`` marked ``few_step: true``). ``fast: true`` is the older spelling of
    ``preset: fast``. ``ahead``: loops of an evolve or glide walk kept rendered ahead of the
    one playing.
    """

    steps: int = v.param_setting("steps")
    scheduler: str = v.param_setting("scheduler")
    denoise: float = v.param_setting("denoise_a")
    guidance: float = v.param_setting("guidance_a")
    seed_image: str = v.setting(v.checked(_seed_image), params.param("seed_image").default)
    preset: str = v.setting(v.choice(*PRESETS), "quality")
    fast: bool = v.setting(v.FLAG, False)
    safety_margin_ms: float = v.setting(v.number(0.0, 10000.0), 250.0)
    ahead: int = v.setting(v.whole(1, 8), 2)
    """Loops of an evolve or glide walk kept rendered ahead of the one playing."""
    # Scale-out (docs/scale-out.md): where renders run; more than one worker needs ray.
    backend: str = v.setting(v.choice(*BACKENDS), "local")
    """``local`` (one render thread in this process) or ``ray`` (Ray actors, one per GPU)."""
    workers: int = v.setting(v.whole(1, 64), 1)
    """Render workers (Ray actors) with ``backend: ray``; 1 with ``backend: local``."""
    ray: RaySettings = RaySettings()
    """Where the Ray workers are (``render.ray.address``)."""
    speculate_alpha_step: float = v.setting(v.number(0.0, 0.5), 0.1)
    """Spare workers render alpha on this grid around the current alpha (0: no alpha guesses)."""


class OscSettings(Section):
    """The OSC server: where it listens, whom it accepts, whom it tells."""

    enabled: bool = v.setting(v.FLAG, True)
    host: str = v.setting(v.text("an address to listen on, e.g. 127.0.0.1", _HOST), "127.0.0.1")
    port: int = v.setting(v.whole(0, 65535), 9000)
    allow: tuple[str, ...] = v.setting(_NETWORKS, ("127.0.0.0/8", "::1/128"))
    max_string_length: int = v.setting(v.whole(1, 65536), 4096)
    notify: tuple[str, ...] = v.setting(v.list_of(v.checked(_destination)), ())


class HttpSettings(Section):
    """The OSCQuery and web server: where it listens, whom it serves, what a change needs.

    Off by default. Beyond loopback (``host`` not 127.x or ::1) every state change needs the
    ``token`` (null: a new one at every start, printed in the log and the OSC status).
    """

    enabled: bool = v.setting(v.FLAG, False)
    host: str = v.setting(v.text("an address to listen on, e.g. 127.0.0.1", _HOST), "127.0.0.1")
    port: int = v.setting(v.whole(0, 65535), 9080)
    allow: tuple[str, ...] = v.setting(_NETWORKS, ("127.0.0.0/8", "::1/128"))
    token: str | None = v.setting(v.optional(v.text(_TOKEN_WHAT, r"[A-Za-z0-9_\-]{16,128}", noun="a token")), None)
    max_clients: int = v.setting(v.whole(1, 256), 16)
    zeroconf: bool = v.setting(v.FLAG, True)


class MidiSettings(Section):
    """The MIDI input and its mappings.

    ``input`` is a port name (a unique part of it is enough) or ``virtual:NAME`` to create a
    port. ``mappings`` is a mappings file, an inline list of mappings, or null; the MIDI
    module checks their contents.
    """

    enabled: bool = v.setting(v.FLAG, False)
    input: str = v.setting(v.text("a port name or virtual:NAME"), "virtual:riffengine")
    backend: str = v.setting(v.choice("rtmidi", "UNIX_JACK", "LINUX_ALSA"), "rtmidi")
    mappings: str | tuple[Mapping[str, object], ...] | None = v.setting(v.checked(_mappings), None, _path)

    @property
    def mido_backend(self) -> str:
        """The backend string for ``mido.Backend``: ``mido.backends.rtmidi[/API]``."""
        base = "mido.backends.rtmidi"
        return base if self.backend == "rtmidi" else f"{base}/{self.backend}"


class LoggingSettings(Section):
    """How much the engine logs."""

    level: str = v.setting(v.choice("DEBUG", "INFO", "WARNING", "ERROR", fold_case=True), "INFO")


class CacheSettings(Section):
    """The render cache on disk (and the bank's safe loop for ``/riff/panic`` in it).

    ``folder`` null is ``$XDG_CACHE_HOME/riffengine/renders`` (``~/.cache/riffengine/renders``),
    the same folder ``riffengine bank`` fills by default.
    """

    enabled: bool = v.setting(v.FLAG, True)
    folder: str | None = v.setting(v.optional(v.text("a folder path or null")), None, _path)
    max_size_gb: float = v.setting(v.number(0.001, 100000.0), 2.0)

    @property
    def max_bytes(self) -> int:
        return max(1, int(self.max_size_gb * 1024**3))


class PathsSettings(Section):
    """Folders the engine reads and writes."""

    spectrograms: str = v.setting(v.text("a folder path"), "spectrograms", _path)
    scenes: str = v.setting(v.text("a folder path"), "scenes", _path)
    seeds: str = v.setting(v.text("a folder path"), "seeds", _path)


RETIRED: dict[str, str] = {
    "audio.block_size": "the audio period is the JACK server's (jackd -p) or the sound card's, never set here",
}
"""Settings that are no longer used, and why. A file that still sets one loads, with a
warning naming the file, the line and the key."""

ParamValues = Mapping[str, object]

SCENE_LIMIT = int(params.param("scene").maximum or 0) + 1
"""Scenes ``/riff/scene N`` can recall."""


def _scenes(value: object, handler: Callable[[object], object]) -> object:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise v.Invalid(f"{v.show(value)} is not valid; use a mapping of scene names to parameter values")
    if len(value) > SCENE_LIMIT:
        raise v.Invalid(f"{len(value)} scenes are too many; use at most {SCENE_LIMIT}")
    return MappingProxyType(handler(value))  # type: ignore[arg-type]


_SCENE_NAME = Annotated[str, PlainValidator(str)]
SCENES: v.Rule = Annotated[dict[_SCENE_NAME, v.PARAM_VALUES], WrapValidator(_scenes)]  # type: ignore[valid-type]
"""The ``scenes`` section: scene names, in file order, to parameter values."""

_NO_VALUES: ParamValues = MappingProxyType({})


class Settings(v.Strict):
    """All settings of one config file (or the defaults); ``source`` names the file.

    ``initial`` maps parameter keys (``bars``, ``prompt_a`` with a list, ``prompt_a/1``) to
    starting values; ``scenes`` maps scene names, in file order, to such mappings.
    """

    model: ModelSettings = ModelSettings()
    audio: AudioSettings = AudioSettings()
    tempo: TempoSettings = TempoSettings()
    loop: LoopSettings = LoopSettings()
    render: RenderSettings = RenderSettings()
    initial: ParamValues = v.setting(v.PARAM_VALUES, _NO_VALUES)
    scenes: Mapping[str, ParamValues] = v.setting(SCENES, _NO_VALUES)
    osc: OscSettings = OscSettings()
    http: HttpSettings = HttpSettings()
    midi: MidiSettings = MidiSettings()
    logging: LoggingSettings = LoggingSettings()
    paths: PathsSettings = PathsSettings()
    cache: CacheSettings = CacheSettings()
    _source: str | None = PrivateAttr(default=None)

    @classmethod
    def unknown_key(cls, key: str) -> str:
        return f"unknown section{params.suggest(key, SECTION_NAMES)} (sections: {', '.join(SECTION_NAMES)})"

    @property
    def source(self) -> str | None:
        """The file the settings come from (None: the defaults)."""
        return self._source

    def initial_values(self) -> tuple[tuple[str, object], ...]:
        """The starting parameter values: :func:`initial_values`."""
        return initial_values(self)

    def scene(self, which: int | str) -> ParamValues:
        """A scene by number (its position, from 0) or by name; UserError if there is none."""
        names = list(self.scenes)
        if isinstance(which, str) and which in self.scenes:
            return self.scenes[which]
        if isinstance(which, int) and not isinstance(which, bool) and 0 <= which < len(names):
            return self.scenes[names[which]]
        known = ", ".join(f"{i}={n}" for i, n in enumerate(names)) or "none are configured"
        raise UserError(f"scene {which!r} does not exist; scenes: {known}")


SECTION_NAMES: tuple[str, ...] = tuple(Settings.model_fields)
"""Every section of a config file, in the order of ``configs/default.yaml``."""

SECTIONS: dict[str, type[Section]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()  # type: ignore[misc]
    if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
}
"""The sections made of plain settings; ``initial`` and ``scenes`` hold parameter values."""


# --- building Settings from plain data ---------------------------------------------------

Errors = v.Errors
"""(key path, message) pairs collected while checking; warnings are collected the same way."""


def _retire(raw: Mapping[str, object], warnings: Errors) -> dict[str, object]:
    """``raw`` without the retired settings, each one warned about."""
    out: dict[str, object] = {}
    for name, section in raw.items():
        if isinstance(section, Mapping):
            for key in section:
                path = f"{name}.{key}"
                if path in RETIRED:
                    warnings.append((path, f"is no longer used ({RETIRED[path]}); remove it"))
            section = {k: x for k, x in section.items() if f"{name}.{k}" not in RETIRED}
        out[str(name)] = section
    return out


def _without(raw: Mapping[str, object], paths: Iterable[tuple[object, ...]]) -> dict[str, object]:
    """``raw`` with the values at ``paths`` (pydantic locations) taken out: their defaults stand.

    A bad item takes its whole list out.
    """
    out = copy.deepcopy(dict(raw))
    for loc in paths:
        keys = list(itertools.takewhile(lambda part: not isinstance(part, int), loc))
        parent: object = out
        for part in keys[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if keys and isinstance(parent, dict):
            parent.pop(keys[-1], None)
    return out


def _build(raw: object, base_dir: str | None, source: str | None, errors: Errors, warnings: Errors) -> Settings:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        errors.append(
            ("", f"{v.show(raw)} is not a config; the file must be a mapping of sections ({', '.join(SECTION_NAMES)})")
        )
        return Settings()
    raw = {**dict.fromkeys(SECTIONS), **_retire(raw, warnings)}  # every section checked, paths resolved
    context = {"base_dir": base_dir}
    try:
        settings = Settings.model_validate(raw, context=context)
    except ValidationError as exc:
        errors += v.messages(exc)
        try:  # the rest, with defaults for what was bad, for the checks across sections
            settings = Settings.model_validate(_without(raw, [e["loc"] for e in exc.errors()]), context=context)
        except ValidationError:
            return Settings()
    settings._source = source
    _cross_checks(settings, errors)
    return settings


def render_preset(render: RenderSettings) -> str:
    """The preset in force: ``render.preset``, or ``fast`` for the older ``render.fast: true``."""
    return "fast" if render.fast and render.preset == "quality" else render.preset


def _check_backend(render: RenderSettings, errors: Errors) -> None:
    """More than one render worker needs the Ray backend."""
    if render.backend == "local" and render.workers > 1:
        errors.append(
            (
                "render.workers",
                f"is {render.workers} but render.backend is local (one "
                "render thread); set render.backend: ray, or workers: 1",
            )
        )


def _cross_checks(settings: Settings, errors: Errors) -> None:
    render = settings.render
    if render.fast and render.preset not in ("quality", "fast"):
        errors.append(
            (
                "render.fast",
                f"is true but render.preset is {render.preset}; drop render.fast (render.preset: fast says the same)",
            )
        )
    if render_preset(render) == "instant" and not has_few_step(settings.model.adapters):
        errors.append(
            (
                "render.preset",
                "instant needs a few-step adapter (LCM-LoRA, TCD or "
                "Hyper-SD for SD 1.5); add one to model.adapters with "
                "few_step: true (README: 'Few-step and style "
                "adapters'), or use preset fast",
            )
        )
    _check_backend(render, errors)
    if settings.tempo.source == "midi" and not settings.tempo.midi_clock_in:
        errors.append(
            ("tempo.midi_clock_in", "is not set; name the MIDI port the clock comes in on, since tempo.source is midi")
        )


def _line(path: str, lines: Mapping[str, int]) -> float:
    """The line of ``path``, or of its nearest parent in the file; infinity if none."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        found = lines.get(".".join(parts[:end]))
        if found is not None:
            return found
    return float("inf")


def _lines(source: str, errors: Errors, lines: Mapping[str, int]) -> str:
    """One line per error, in file order: ``FILE:LINE: key.path: message``."""
    out = []
    for path, message in sorted(errors, key=lambda error: _line(error[0], lines)):
        line = _line(path, lines)
        where = f"{source}:{line}" if line != float("inf") else source
        out.append(f"{where}: {path}: {message}" if path else f"{where}: {message}")
    return "\n".join(out)


def _report(source: str, errors: Errors, lines: Mapping[str, int]) -> UserError:
    """One UserError listing every error, one per line."""
    return UserError(_lines(source, errors, lines))


def _warn(source: str, warnings: Errors, lines: Mapping[str, int]) -> None:
    if warnings:
        log.warning("%s", _lines(source, warnings, lines))


# --- reading YAML ----------------------------------------------------------------------------


def _key_lines(node: yaml.Node | None, prefix: str, lines: dict[str, int], errors: Errors) -> None:
    """Record the line of every mapping key by its dotted path; report duplicate keys.

    Keys inside list items are recorded under the list's path (``model.adapters.weight``).
    """
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _key_lines(item, prefix, lines, [])
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        path = f"{prefix}{key_node.value}"
        if path in seen:
            errors.append((path, f"appears twice (again on line {key_node.start_mark.line + 1}); keep one"))
        seen.add(path)
        lines.setdefault(path, key_node.start_mark.line + 1)
        _key_lines(value_node, path + ".", lines, errors)


def _read_yaml(path: str) -> tuple[object, dict[str, int], Errors]:
    node, data = read_yaml(path, "config file", "check the path, or start from configs/default.yaml")
    lines: dict[str, int] = {}
    errors: Errors = []
    _key_lines(node, "", lines, errors)
    return data, lines, errors


def load_config(path: str | os.PathLike[str]) -> Settings:
    """Read, check and return the settings of a YAML config file.

    Raises one UserError listing every mistake, each with file, line and key path.
    """
    path = os.fspath(path)
    data, lines, errors = _read_yaml(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    warnings: Errors = []
    settings = _build(data, base_dir, path, errors, warnings)
    if errors:
        raise _report(path, errors, lines)
    _warn(path, warnings, lines)
    return settings


# --- overrides -------------------------------------------------------------------------------


def _to_raw(value: object) -> object:
    """Settings back to plain dicts, lists and scalars, as a YAML file would give them."""
    if isinstance(value, BaseModel):
        return {name: _to_raw(getattr(value, name)) for name in type(value).model_fields}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_raw(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {k: _to_raw(x) for k, x in value.items()}
    if isinstance(value, tuple):
        return [_to_raw(x) for x in value]
    return value


def parse_override(text: str) -> tuple[str, object]:
    """Split a ``KEY=VALUE`` flag into a dotted key and a YAML-parsed value (``8`` is an int)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"{text!r} is not an override; use KEY=VALUE, e.g. loop.bars=8")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value


def merge_overrides(settings: Settings, overrides: Mapping[str, object]) -> Settings:
    """``settings`` with dotted keys (``loop.bars``, ``initial.prompt_a/0``) set and rechecked.

    Raises one UserError listing every bad override by its key.
    """
    raw = _to_raw(settings)
    source = settings.source
    errors: Errors = []
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict) or not parents:
            errors.append((dotted, "is not a setting; use SECTION.KEY, e.g. loop.bars"))
            continue
        node[leaf] = value
    warnings: Errors = []
    merged = _build(raw, None, source, errors, warnings)
    if errors:
        raise _report("override", errors, {})
    _warn("override", warnings, {})
    return merged


def initial_values(settings: Settings) -> tuple[tuple[str, object], ...]:
    """The starting parameter values the settings give, as (key, value) pairs in order.

    First the plain sections (tempo, loop, render; a ``render.preset`` other than quality caps
    the steps and picks its scheduler, and ``instant`` its guidance), then the ``initial``
    section, which wins.
    """
    tempo, loop, render = settings.tempo, settings.loop, settings.render
    steps, scheduler, guidance = preset_values(render_preset(render), render.steps, render.scheduler, render.guidance)
    return (
        ("bpm", tempo.bpm),
        ("beats_per_bar", tempo.beats_per_bar),
        ("tempo_source", tempo.source),
        ("bars", loop.bars),
        ("crossfade_ms", loop.crossfade_ms),
        ("steps", steps),
        ("scheduler", scheduler),
        ("denoise_a", render.denoise),
        ("denoise_b", render.denoise),
        ("guidance_a", guidance),
        ("guidance_b", guidance),
        ("seed_image", render.seed_image),
        *settings.initial.items(),
    )
