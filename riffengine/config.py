"""YAML config file -> validated, typed, immutable settings.

Every setting has a default, so an empty file is a valid config; ``configs/default.yaml``
lists them all. :func:`load_config` checks the whole file and reports every mistake at once,
one per line, each naming the file, the line, the full key path (``loop.bars``), the bad value
and the fix, as one :class:`~riffengine.errors.UserError`.

Settings that are also controllable parameters (``tempo.bpm``, ``loop.bars``,
``render.steps``...) and the ``initial`` and ``scenes`` sections are checked against the
parameter table in :mod:`riffengine.control.params`, so the file and the live controls
accept exactly the same values.

Relative paths in a loaded file's settings (``paths.*``, ``audio.record``, ``audio.events``,
a ``.wav`` ``audio.output``, a ``midi.mappings`` file), written or default, are made absolute
against the file's folder. A
``render.seed_image`` is looked up by the renderer (built-in names, ``paths.seeds``), so it
is kept as written. Overrides from the command line (:func:`merge_overrides`) are kept as
given, that is relative to the working folder.
"""

from __future__ import annotations

import ipaddress
import logging
import numbers
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from types import MappingProxyType

import yaml

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
class AdapterSpec:
    """One configured adapter: a file or folder, its weight, and whether it is few-step."""

    path: str
    weight: float = 1.0
    few_step: bool = False


def has_few_step(specs) -> bool:
    """True when one of the adapter specs is marked ``few_step``."""
    return any(spec.few_step for spec in specs)


class _Invalid(Exception):
    """A bad setting value; the message says what is wrong and what to use instead."""


Check = Callable[[object], object]


def _show(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(lo: int, hi: int) -> Check:
    def check(value: object) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not float(value).is_integer()
            or not lo <= value <= hi
        ):
            raise _Invalid(f"{_show(value)} is not valid; use a whole number from {lo} to {hi}")
        return int(value)

    return check


def _number(lo: float, hi: float) -> Check:
    def check(value: object) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not lo <= value <= hi  # NaN fails this too
        ):
            raise _Invalid(f"{_show(value)} is not valid; use a number from {lo:g} to {hi:g}")
        return float(value)

    return check


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"{_show(value)} is not valid; use true or false")
    return value


def _text(what: str = "a string", pattern: str | None = None, max_length: int = 4096) -> Check:
    def check(value: object) -> str:
        if (
            not isinstance(value, str)
            or not value.strip()
            or len(value) > max_length
            or (pattern is not None and not re.fullmatch(pattern, value))
        ):
            raise _Invalid(f"{_show(value)} is not valid; use {what}")
        return value

    return check


def _choice(*choices: str, fold_case: bool = False) -> Check:
    def check(value: object) -> str:
        text = value.upper() if fold_case and isinstance(value, str) else value
        if text not in choices:
            hint = params.suggest(str(value), choices)
            raise _Invalid(f"{_show(value)} is not a choice{hint}; use one of {', '.join(choices)}")
        return text  # type: ignore[return-value]

    return check


def _optional(check: Check) -> Check:
    def optional(value: object) -> object:
        return None if value is None else check(value)

    return optional


def _either(*checks: Check, what: str) -> Check:
    def either(value: object) -> object:
        for check in checks:
            try:
                return check(value)
            except _Invalid:
                pass
        raise _Invalid(f"{_show(value)} is not valid; use {what}")

    return either


def _list_of(check: Check) -> Check:
    def list_of(value: object) -> tuple[object, ...]:
        if not isinstance(value, (list, tuple)):
            raise _Invalid(f"{_show(value)} is not valid; use a list, e.g. [] for none")
        return tuple(check(item) for item in value)

    return list_of


def _param(name: str) -> Check:
    """Check a setting against the parameter table's row ``name``."""
    row = params.param(name)

    def check(value: object) -> object:
        try:
            return params.coerce(row, value)
        except params.InvalidValue as exc:
            raise _Invalid(str(exc)) from None

    return check


def _network(value: object) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise _Invalid(f"{_show(value)} is not a network; use CIDR like 127.0.0.0/8 or "
                       "192.168.1.0/24, or 0.0.0.0/0 for any IPv4 sender") from None


def _destination(value: object) -> str:
    if isinstance(value, str):
        host, _, port = value.rpartition(":")
        if host.strip("[]") and port.isdigit() and 1 <= int(port) <= 65535:
            return value
    raise _Invalid(f"{_show(value)} is not a destination; use HOST:PORT, e.g. 127.0.0.1:9001")


def _seed_image(value: object) -> str:
    return "" if value is None else _param("seed_image")(value)  # type: ignore[return-value]


def _mappings(value: object) -> object:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(m, Mapping) for m in value):
        return tuple(MappingProxyType(dict(m)) for m in value)
    raise _Invalid(f"{_show(value)} is not valid; use a mappings file path, a list of "
                   "mappings, or null")


_HOST = r"[A-Za-z0-9.:_\-\[\]]+"


def _adapter(value: object) -> AdapterSpec:
    """One ``model.adapters`` entry: a path, or a mapping with path, weight and few_step."""
    if isinstance(value, str) and value.strip():
        return AdapterSpec(value)
    if not isinstance(value, Mapping) or not isinstance(value.get("path"), str) \
            or not value["path"].strip():
        raise _Invalid(f"{_show(value)} is not an adapter; use a path, or a mapping like "
                       "{path: adapters/lcm-lora-sdv1-5.safetensors, weight: 1.0, few_step: true}")
    extra = set(value) - {"path", "weight", "few_step"}
    if extra:
        raise _Invalid(f"adapter key {sorted(extra)[0]!r} is unknown; use path, weight, few_step")
    return AdapterSpec(value["path"], _number(-10.0, 10.0)(value.get("weight", 1.0)),
                       _boolean(value.get("few_step", False)))


def _setting(default: object, check: Check, path: bool = False) -> object:
    """A dataclass field with its check; ``path`` marks file paths resolved against the file."""
    return field(default=default, metadata={"check": check, "path": path})


@dataclass(frozen=True)
class ModelSettings:
    """Which model to load and where it runs."""

    id: str = _setting("riffusion/riffusion-model-v1", _text("a hub id or a model folder"))
    device: str = _setting(
        "auto", _text("auto, cpu, mps, cuda or cuda:N", r"auto|cpu|mps|cuda(:[0-9]+)?")
    )
    dtype: str = _setting("auto", _choice("auto", "fp16", "bf16", "fp32"))
    channels_last: str | bool = _setting(
        "auto", _either(_choice("auto"), _boolean, what="auto (on for CUDA), true or false")
    )
    fuse_qkv: str | bool = _setting(
        "auto", _either(_choice("auto"), _boolean, what="auto (on for CUDA), true or false")
    )
    compile: str | None = _setting(None, _optional(_choice(*COMPILE_MODES)))
    cpu_threads: str | int = _setting(
        "auto", _either(_choice("auto"), _integer(1, 1024), what="auto (every core but one) or a number")
    )
    adapters: tuple[AdapterSpec, ...] = _setting((), _list_of(_adapter), path=True)
    fuse_adapters: bool = _setting(False, _boolean)
    required: bool = _setting(False, _boolean)
    retry_seconds: float = _setting(30.0, _number(0.1, 3600.0))


@dataclass(frozen=True)
class AudioSettings:
    """Where the sound goes, and the buffers on the way."""

    output: str | int = _setting(
        "default",
        _either(_integer(0, 1023), _text(), what='"default", "jack", a device name or '
                'number, or a .wav path'),
        path=True,
    )
    sample_rate: int = _setting(44100, _integer(8000, 192000))
    jack_client_name: str = _setting("riffengine", _text("a JACK client name", max_length=63))
    ring_buffer_seconds: float = _setting(2.0, _number(0.05, 60.0))
    host: bool = _setting(True, _boolean)
    """A live output plays from a separate audio process that outlives the engine (see
    docs/daemon.md); false runs everything in one process."""
    engine_hang_seconds: float = _setting(10.0, _number(1.0, 600.0))
    """Under the audio host: an engine silent this long (no heartbeat) is killed and restarted."""
    record: str | None = _setting(None, _optional(_text("a .wav path or null")), path=True)
    events: str | None = _setting(None, _optional(_text("a file path or null")), path=True)


@dataclass(frozen=True)
class TempoSettings:
    """Where the tempo comes from, and its starting value."""

    bpm: float = _setting(params.param("bpm").default, _param("bpm"))
    beats_per_bar: int = _setting(params.param("beats_per_bar").default, _param("beats_per_bar"))
    source: str = _setting("internal", _choice(*params.TEMPO_SOURCES))
    midi_clock_in: str | None = _setting(None, _optional(_text("a MIDI port name or null")))
    midi_clock_out: str | None = _setting(None, _optional(_text("a MIDI port name or null")))
    transport_sync: bool = _setting(True, _boolean)
    """Follow and send play/stop: Link start/stop sync, MIDI Start/Stop/Continue."""


@dataclass(frozen=True)
class LoopSettings:
    """Loop length and the seam between clips."""

    bars: int = _setting(params.param("bars").default, _param("bars"))
    crossfade_ms: float = _setting(params.param("crossfade_ms").default, _param("crossfade_ms"))


BACKENDS = ("local", "ray")
"""``render.backend``: where renders run."""


@dataclass(frozen=True)
class RenderSettings:
    """Starting render parameters and the renderer's timing margin.

    ``denoise`` and ``guidance`` set both sides. ``preset`` trades quality for latency:
    ``quality`` (the values as written), ``fast`` (DPM-Solver++, steps capped at 20) or
    ``instant`` (a few-step adapter: LCM at 4 steps, guidance 1; needs an adapter in
    ``model.adapters`` marked ``few_step: true``). ``fast: true`` is the older spelling of
    ``preset: fast``.
    """

    steps: int = _setting(params.param("steps").default, _param("steps"))
    scheduler: str = _setting(params.param("scheduler").default, _param("scheduler"))
    denoise: float = _setting(params.param("denoise_a").default, _param("denoise_a"))
    guidance: float = _setting(params.param("guidance_a").default, _param("guidance_a"))
    seed_image: str = _setting(params.param("seed_image").default, _seed_image)
    preset: str = _setting("quality", _choice(*PRESETS))
    fast: bool = _setting(False, _boolean)
    safety_margin_ms: float = _setting(250.0, _number(0.0, 10000.0))
    ahead: int = _setting(2, _integer(1, 8))
    """Loops of an evolve or glide walk kept rendered ahead of the one playing."""
    # Scale-out (docs/scale-out.md): where renders run. Flat keys, checked in _check_backend.
    backend: str = _setting("local", _choice(*BACKENDS))
    """``local`` (one render thread in this process) or ``ray`` (Ray actors, one per GPU)."""
    workers: int = _setting(1, _integer(1, 64))
    """Render workers (Ray actors) with ``backend: ray``; 1 with ``backend: local``."""
    ray_address: str = _setting("auto", _text("auto, local, or a Ray address such as 10.0.0.2:6379"))
    """``auto`` (a running Ray instance), ``local`` (start one here) or a cluster address."""
    speculate_alpha_step: float = _setting(0.1, _number(0.0, 0.5))
    """Spare workers render alpha on this grid around the current alpha (0: no alpha guesses)."""


@dataclass(frozen=True)
class OscSettings:
    """The OSC server: where it listens, whom it accepts, whom it tells."""

    enabled: bool = _setting(True, _boolean)
    host: str = _setting("127.0.0.1", _text("an address to listen on, e.g. 127.0.0.1", _HOST))
    port: int = _setting(9000, _integer(0, 65535))
    allow: tuple[str, ...] = _setting(("127.0.0.0/8", "::1/128"), _list_of(_network))
    max_string_length: int = _setting(4096, _integer(1, 65536))
    notify: tuple[str, ...] = _setting((), _list_of(_destination))


def _token(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_\-]{16,128}", value):
        raise _Invalid(f"{_show(value)} is not a token; use 16 to 128 letters, digits, '-' or "
                       "'_' (e.g. from `python3 -c 'import secrets; print(secrets.token_urlsafe())'`), "
                       "or null for a new one at every start")
    return value


@dataclass(frozen=True)
class HttpSettings:
    """The OSCQuery and web server: where it listens, whom it serves, what a change needs.

    Off by default. Beyond loopback (``host`` not 127.x or ::1) every state change needs the
    ``token`` (null: a new one at every start, printed in the log and the OSC status).
    """

    enabled: bool = _setting(False, _boolean)
    host: str = _setting("127.0.0.1", _text("an address to listen on, e.g. 127.0.0.1", _HOST))
    port: int = _setting(9080, _integer(0, 65535))
    allow: tuple[str, ...] = _setting(("127.0.0.0/8", "::1/128"), _list_of(_network))
    token: str | None = _setting(None, _optional(_token))
    max_clients: int = _setting(16, _integer(1, 256))
    zeroconf: bool = _setting(True, _boolean)


@dataclass(frozen=True)
class MidiSettings:
    """The MIDI input and its mappings.

    ``input`` is a port name (a unique part of it is enough) or ``virtual:NAME`` to create a
    port. ``mappings`` is a mappings file, an inline list of mappings, or null; the MIDI
    module checks their contents.
    """

    enabled: bool = _setting(False, _boolean)
    input: str = _setting("virtual:riffengine", _text("a port name or virtual:NAME"))
    backend: str = _setting("rtmidi", _choice("rtmidi", "UNIX_JACK", "LINUX_ALSA"))
    mappings: str | tuple[Mapping[str, object], ...] | None = _setting(
        None, _optional(_mappings), path=True
    )

    @property
    def mido_backend(self) -> str:
        """The backend string for ``mido.Backend``: ``mido.backends.rtmidi[/API]``."""
        base = "mido.backends.rtmidi"
        return base if self.backend == "rtmidi" else f"{base}/{self.backend}"


@dataclass(frozen=True)
class LoggingSettings:
    """How much the engine logs."""

    level: str = _setting("INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR", fold_case=True))


@dataclass(frozen=True)
class CacheSettings:
    """The render cache on disk (and the bank's safe loop for ``/riff/panic`` in it).

    ``folder`` null is ``$XDG_CACHE_HOME/riffengine/renders`` (``~/.cache/riffengine/renders``),
    the same folder ``riffengine bank`` fills by default.
    """

    enabled: bool = _setting(True, _boolean)
    folder: str | None = _setting(None, _optional(_text("a folder path or null")), path=True)
    max_size_gb: float = _setting(2.0, _number(0.001, 100000.0))

    @property
    def max_bytes(self) -> int:
        return max(1, int(self.max_size_gb * 1024**3))


@dataclass(frozen=True)
class PathsSettings:
    """Folders the engine reads and writes."""

    spectrograms: str = _setting("spectrograms", _text("a folder path"), path=True)
    scenes: str = _setting("scenes", _text("a folder path"), path=True)
    seeds: str = _setting("seeds", _text("a folder path"), path=True)


RETIRED: dict[str, str] = {
    "audio.block_size": "the audio period is the JACK server's (jackd -p) or the sound "
                        "card's, never set here",
}
"""Settings that are no longer used, and why. A file that still sets one loads, with a
warning naming the file, the line and the key."""

SECTIONS: dict[str, type] = {
    "model": ModelSettings,
    "audio": AudioSettings,
    "tempo": TempoSettings,
    "loop": LoopSettings,
    "render": RenderSettings,
    "osc": OscSettings,
    "http": HttpSettings,
    "midi": MidiSettings,
    "logging": LoggingSettings,
    "paths": PathsSettings,
    "cache": CacheSettings,
}
"""The sections made of plain settings; ``initial`` and ``scenes`` hold parameter values."""

ParamValues = Mapping[str, object]


def _empty() -> ParamValues:
    return MappingProxyType({})


@dataclass(frozen=True)
class Settings:
    """All settings of one config file (or the defaults); ``source`` names the file.

    ``initial`` maps parameter keys (``bars``, ``prompt_a`` with a list, ``prompt_a/1``) to
    starting values; ``scenes`` maps scene names, in file order, to such mappings.
    """

    model: ModelSettings = ModelSettings()
    audio: AudioSettings = AudioSettings()
    tempo: TempoSettings = TempoSettings()
    loop: LoopSettings = LoopSettings()
    render: RenderSettings = RenderSettings()
    initial: ParamValues = field(default_factory=_empty)
    scenes: Mapping[str, ParamValues] = field(default_factory=_empty)
    osc: OscSettings = OscSettings()
    http: HttpSettings = HttpSettings()
    midi: MidiSettings = MidiSettings()
    logging: LoggingSettings = LoggingSettings()
    paths: PathsSettings = PathsSettings()
    cache: CacheSettings = CacheSettings()
    source: str | None = None

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


# --- building Settings from plain data ---------------------------------------------------

Errors = list[tuple[str, str]]
"""(key path, message) pairs collected while checking; warnings are collected the same way."""


def _resolve(value: object, base_dir: str | None, kind: object) -> object:
    if isinstance(value, tuple) and all(isinstance(v, AdapterSpec) for v in value):
        return tuple(replace(v, path=_resolve(v.path, base_dir, kind)) for v in value)
    if not kind or base_dir is None or not isinstance(value, str):
        return value
    if isinstance(kind, str) and not value.lower().endswith(kind):
        return value
    expanded = os.path.expanduser(value)
    return expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base_dir, expanded))


def _unknown(key: object, known) -> str:
    return (f"unknown key{params.suggest(str(key), known)} "
            f"(valid keys here: {', '.join(known)})")


def _section(cls: type, raw: object, name: str, base_dir: str | None, errors: Errors,
             warnings: Errors) -> object:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        errors.append((name, f"{_show(raw)} is not valid; use a mapping of settings "
                             f"(or leave the section out)"))
        raw = {}
    rows = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        path = f"{name}.{key}"
        if path in RETIRED:
            warnings.append((path, f"is no longer used ({RETIRED[path]}); remove it"))
            continue
        if key not in rows:
            errors.append((path, _unknown(key, rows)))
            continue
        row = rows[key]
        try:
            checked = row.metadata["check"](value)
        except _Invalid as exc:
            errors.append((path, str(exc)))
            continue
        values[key] = checked
    for row in rows.values():
        kind = ".wav" if name == "audio" and row.name == "output" else row.metadata["path"]
        values[row.name] = _resolve(values.get(row.name, row.default), base_dir, kind)
    return cls(**values)


def _param_values(raw: object, path: str, errors: Errors, what: str) -> ParamValues:
    """Check a mapping of parameter keys to values (the ``initial`` section or one scene)."""
    if raw is None:
        return _empty()
    if not isinstance(raw, Mapping):
        errors.append((path, f"{_show(raw)} is not valid; use a mapping of parameter names "
                             f"to {what}"))
        return _empty()
    values = {}
    for key, value in raw.items():
        key_path = f"{path}.{key}"
        try:
            row, slot = params.parse_key(str(key))
            if row.effect == "action":
                raise UserError(f"{row.name} is an action, not a value to set here")
            values[str(key)] = params.validate(row.name, value, slot)
        except UserError as exc:
            errors.append((key_path, _strip_label(str(exc), str(key))))
    return MappingProxyType(values)


def _strip_label(message: str, key: str) -> str:
    """Drop a leading ``name:`` or ``name/slot:`` from a table message; the key path says it."""
    head, sep, rest = message.partition(": ")
    return rest if sep and key.startswith(head.split("/")[0]) else message


def _scenes(raw: object, errors: Errors) -> Mapping[str, ParamValues]:
    if raw is None:
        return _empty()
    if not isinstance(raw, Mapping):
        errors.append(("scenes", f"{_show(raw)} is not valid; use a mapping of scene names "
                                 "to parameter values"))
        return _empty()
    limit = int(params.param("scene").maximum) + 1  # type: ignore[arg-type]
    if len(raw) > limit:
        errors.append(("scenes", f"{len(raw)} scenes are too many; use at most {limit}"))
    return MappingProxyType(
        {str(name): _param_values(scene, f"scenes.{name}", errors, "scene values")
         for name, scene in raw.items()}
    )


def render_preset(render: RenderSettings) -> str:
    """The preset in force: ``render.preset``, or ``fast`` for the older ``render.fast: true``."""
    return "fast" if render.fast and render.preset == "quality" else render.preset


def _check_backend(render: RenderSettings, errors: Errors) -> None:
    """More than one render worker needs the Ray backend."""
    if render.backend == "local" and render.workers > 1:
        errors.append(("render.workers", f"is {render.workers} but render.backend is local (one "
                                         "render thread); set render.backend: ray, or workers: 1"))


def _cross_checks(settings: Settings, errors: Errors) -> None:
    render = settings.render
    if render.fast and render.preset not in ("quality", "fast"):
        errors.append(("render.fast", f"is true but render.preset is {render.preset}; drop "
                                      "render.fast (render.preset: fast says the same)"))
    if render_preset(render) == "instant" and not has_few_step(settings.model.adapters):
        errors.append(("render.preset", "instant needs a few-step adapter (LCM-LoRA, TCD or "
                                        "Hyper-SD for SD 1.5); add one to model.adapters with "
                                        "few_step: true (README: 'Few-step and style "
                                        "adapters'), or use preset fast"))
    _check_backend(render, errors)
    if settings.tempo.source == "midi" and not settings.tempo.midi_clock_in:
        errors.append(("tempo.midi_clock_in", "is not set; name the MIDI port the clock "
                                              "comes in on, since tempo.source is midi"))


def _build(raw: object, base_dir: str | None, source: str | None, errors: Errors,
           warnings: Errors) -> Settings:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        errors.append(("", f"{_show(raw)} is not a config; the file must be a mapping of "
                           f"sections ({', '.join(_ALL_SECTIONS)})"))
        return Settings(source=source)
    values: dict[str, object] = {name: _section(cls, None, name, base_dir, errors, warnings)
                                 for name, cls in SECTIONS.items()}
    for name, section in raw.items():
        if name in SECTIONS:
            values[name] = _section(SECTIONS[name], section, name, base_dir, errors, warnings)
        elif name == "initial":
            values[name] = _param_values(section, "initial", errors, "starting values")
        elif name == "scenes":
            values[name] = _scenes(section, errors)
        else:
            errors.append((str(name), f"unknown section{params.suggest(str(name), _ALL_SECTIONS)} "
                                      f"(sections: {', '.join(_ALL_SECTIONS)})"))
    settings = Settings(**values, source=source)  # type: ignore[arg-type]
    _cross_checks(settings, errors)
    return settings


_ALL_SECTIONS = ("model", "audio", "tempo", "loop", "render", "initial", "scenes", "osc",
                 "http", "midi", "logging", "paths", "cache")


def _lines(source: str, errors: Errors, lines: Mapping[str, int]) -> str:
    """One line per error: ``FILE:LINE: key.path: message``."""
    out = []
    for path, message in errors:
        where = f"{source}:{lines[path]}" if path in lines else source
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
    """Record the line of every mapping key by its dotted path; report duplicate keys."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        path = f"{prefix}{key_node.value}"
        if path in seen:
            errors.append((path, f"appears twice (again on line {key_node.start_mark.line + 1}); "
                                 "keep one"))
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
    if is_dataclass(value):
        return {f.name: _to_raw(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {k: _to_raw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_to_raw(v) for v in value]
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
    source = raw.pop("source")  # type: ignore[union-attr]
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
    steps, scheduler, guidance = preset_values(render_preset(render), render.steps,
                                               render.scheduler, render.guidance)
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
