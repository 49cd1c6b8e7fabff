"""Engine events: one small bus that the events log, OSC notifications and status read.

Events are published from the asyncio loop (never from the audio callback). Every kind the
code publishes is a row of :data:`EVENTS`: its name, its fields and what it means. The table
drives ``docs/events.md`` (``riffengine events --output docs/events.md``), and a test checks
that the code publishes exactly the kinds and fields the table declares.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One thing that happened: a kind, its data, and the wall-clock time."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


class EventBus:
    """Synchronous publish/subscribe on the loop's thread; a failing subscriber is logged."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def publish(self, kind: str, **data: Any) -> Event:
        event = Event(kind, data)
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", fn, kind)
        return event


# --- the table of event kinds ----------------------------------------------------------------


@dataclass(frozen=True)
class EventKind:
    """One row of the event table: a kind, the fields its data may hold, what it means.

    ``fields`` lists every field the kind may carry; a publisher may leave some out (the
    meaning says when).
    """

    kind: str
    fields: tuple[str, ...]
    meaning: str


WALK_FIELDS = ("alpha", "seed_a", "seed_b", "prompts", "prompt", "step", "position", "glide")
"""What a loop of an evolve or glide walk is (:func:`riffengine.evolve.describe`)."""

STATS_FIELDS = (
    "renders",
    "stretches",
    "failures",
    "late",
    "dropped",
    "retries",
    "outputs_lost",
    "panics",
    "reloads",
    "walk_repeats",
)
"""The engine's counters, sent with ``stopped``."""

RENDER_FAILURE_FIELDS = (
    "job",
    "version",
    "mode",
    "reason",
    "error",
    "ms",
    "playing",
    "failures",
    "retry_in_s",
    "worker",
)
"""A failed render: job, state version, mode, reason (``nan``, ``silent``, ``out_of_memory``,
``error``), the error, its time, the clip still playing, failures in the streak, back-off,
the worker it failed on."""

_LOOP = ("clip_id", "version", "frame", "bar", "bpm", "frames", "image")

EVENTS: tuple[EventKind, ...] = (
    EventKind(
        "started",
        ("sample_rate", "realtime", "output"),
        "The output stream started: its rate, whether it is real time, where it plays.",
    ),
    EventKind(
        "stopped",
        ("frame", "underruns", "xruns", *STATS_FIELDS),
        "The engine stopped: the last frame heard, underruns, xruns and its counters.",
    ),
    EventKind(
        "state",
        ("version", "source", "changes"),
        "The State changed: its new version, who changed it (e.g. `osc HOST:PORT`, "
        "`midi`) and the changed keys with their values.",
    ),
    EventKind(
        "transport",
        ("state", "frame", "bar", "source"),
        "Play or stop was asked: the new state and the bar line it takes effect on.",
    ),
    EventKind(
        "tempo",
        ("bpm", "frame", "bar", "source", "locked"),
        "The tempo source switched (`source`, `locked`), or a loop at a new tempo started "
        "to be heard (`bpm`, `frame`, `bar`, `source`).",
    ),
    EventKind(
        "beat",
        ("beat", "bar", "beat_in_bar", "frame", "bpm"),
        "A beat is heard: its number, its bar, its place in the bar, its frame and tempo.",
    ),
    EventKind(
        "render",
        (
            "phase",
            "job",
            "clip_id",
            "version",
            "mode",
            "ms",
            "expected_ms",
            "late",
            "timings",
            "speculative",
            "warm_up",
            "heard_at_frame",
            "heard_at_bar",
            "heard_in_s",
            "loops",
            "reason",
            "worker",
            "speculated",
        ),
        "A render or stretch `started` (expected time, when it will be heard), is `done` "
        "(its time, per-stage timings, whether it was late, the `worker` that made it: "
        "`local` or a Ray worker such as `ray-0`; `speculated`: taken from a spare "
        "worker's guess, no new render) or was `dropped` (reason: `superseded`, "
        "`cancelled`, `panic`).",
    ),
    EventKind(
        "render_late",
        ("job", "version", "waited_s", "expected_ms", "playing"),
        "A render is still running when its bar comes; the playing loop goes on.",
    ),
    EventKind(
        "render_failed",
        RENDER_FAILURE_FIELDS,
        "A render failed; the last good loop keeps playing and a retry follows the back-off.",
    ),
    EventKind(
        "render_retry",
        ("phase", *RENDER_FAILURE_FIELDS),
        "A retry of the failed state `started`, or `failed` again (then with the failure fields of `render_failed`).",
    ),
    EventKind(
        "render_recovered",
        ("failures", "seconds"),
        "Renders work again after a streak of failures: how many, over how long.",
    ),
    EventKind(
        "render_speculated",
        ("worker", "ms", "alpha", "seed"),
        "A spare Ray worker rendered a likely next state (a walk step, an alpha near the "
        "current one, a scene): a change to it is heard at the next bar, no new render.",
    ),
    EventKind(
        "worker_ready",
        ("worker", "host", "node", "pid", "gpus"),
        "A Ray render worker loaded its model and takes jobs: where it runs.",
    ),
    EventKind(
        "worker_lost",
        ("worker", "reason", "job", "moved"),
        "A Ray render worker died, hung or lost its node; its job moved to another worker "
        "or the local one (`moved`); Ray restarts it. The music goes on.",
    ),
    EventKind(
        "worker_restarted",
        ("worker", "host", "node", "pid", "restarts"),
        "A lost Ray render worker is back (restarted by Ray, model loaded) and takes jobs.",
    ),
    EventKind(
        "render_fallback",
        ("reason",),
        "Renders go to the local worker: Ray could not start, no worker is alive, or the "
        "Ray head is gone (then for the rest of the run).",
    ),
    EventKind(
        "loop_scheduled",
        (*_LOOP, "bars", "late", *WALK_FIELDS),
        "A clip is placed on the bar grid: where it lands, its tempo and length, whether "
        "it missed its bar; a loop of a walk also says what it is.",
    ),
    EventKind(
        "loop_started",
        ("index", *_LOOP, "repeat", "crossfade_frames", *WALK_FIELDS),
        "A loop starts to be heard (or repeats): its count, clip, frame, bar and tempo; a "
        "loop of a walk also says what it is.",
    ),
    EventKind(
        "loop_dropped",
        ("clip_id", "replaced_by", "frame"),
        "A scheduled clip was replaced by a newer one before it was heard.",
    ),
    EventKind("loop_stopped", ("frame", "bar"), "The music stopped on the bar grid (transport stop)."),
    EventKind(
        "change_heard_at",
        ("version", "frame", "bar", "seconds"),
        "When a change of the State will be heard: its frame, bar and seconds from now.",
    ),
    EventKind(
        "underrun",
        ("count", "frames", "frame"),
        "The ring buffer ran dry: silence was played (count and frames so far).",
    ),
    EventKind("xrun", ("count", "new", "frame"), "The audio server reported late audio callbacks (clicks)."),
    EventKind(
        "panic",
        ("safe", "clip_id", "frame", "bar", "heard_from"),
        "`/riff/panic`: a crossfade to the bank's safe loop at the next bar line.",
    ),
    EventKind(
        "panic_heard",
        ("after_ms", "monotonic", "frame"),
        "Audio host: its callback began the crossfade to the safe loop, `after_ms` after "
        "the panic reached the host, at `frame`; `monotonic` is the callback's time (the "
        "system's monotonic clock, for benchmarks).",
    ),
    EventKind(
        "osc_handed_over",
        ("applied", "kept", "dropped", "frame"),
        "Audio host: an engine listens on the OSC port again. While none did, the host played "
        "`applied` gain, mute and panic messages itself and dropped `dropped` packets (outside "
        "osc.allow, malformed, over its bounds); it hands the engine the `kept` latest packets, "
        "which the engine applies first.",
    ),
    EventKind(
        "reloaded", ("source", "changes"), "The config file was read again; the keys whose starting values changed."
    ),
    EventKind(
        "degraded", ("reason",), "The model could not load: the fallback keeps the music going; the engine retries."
    ),
    EventKind(
        "model_loaded",
        ("after", "tries"),
        "The model loaded after a degraded start: the reason it had failed, the tries.",
    ),
    EventKind(
        "output_lost",
        ("reason", "frame"),
        "The audio output went away (JACK server gone, device unplugged); reconnecting.",
    ),
    EventKind(
        "output_restored", ("seconds", "tries", "frame"), "The audio output is back: after how long and how many tries."
    ),
    EventKind(
        "engine_ended",
        ("pid", "status", "seconds", "on_purpose", "frame"),
        "Audio host: the engine process ended (exit status, or minus the signal); unless on "
        "purpose, the host plays the held loops and starts a new one.",
    ),
    EventKind(
        "engine_hung",
        ("pid", "seconds", "frame"),
        "Audio host: the engine's heartbeat stopped for this long; it is killed and restarted.",
    ),
    EventKind(
        "engine_restarted",
        ("pid", "restarts", "frame"),
        "Audio host: a new engine process started; it takes over from the saved state.",
    ),
    EventKind(
        "scene_saved",
        ("name", "number", "source"),
        "`/riff/scene_save` (or the web page): what plays was saved as a scene in paths.scenes.",
    ),
    EventKind("midi_port", ("state", "name"), "The MIDI input port opened or closed."),
    EventKind("learning", ("key",), "MIDI learn is waiting for a control for this parameter key."),
    EventKind(
        "learned",
        ("key", "cc", "channel", "file"),
        "MIDI learn mapped a control change to the key (and saved it to the file).",
    ),
    EventKind("fail", ("address", "reason"), "A request was refused (an OSC address, `midi`, a tempo source): why."),
    EventKind("error", ("message",), "Something went wrong that does not stop the show (a script step, the recorder)."),
    EventKind(
        "warning", ("message",), "Something that may not do what was meant (a meter change waits for a restart)."
    ),
)
"""Every event kind riffengine publishes, in the order ``docs/events.md`` lists them."""

_BY_KIND: dict[str, EventKind] = {e.kind: e for e in EVENTS}


def kinds() -> tuple[str, ...]:
    """Every declared event kind, in table order."""
    return tuple(_BY_KIND)


def event_kind(kind: str) -> EventKind:
    """The row of ``kind``; KeyError for a kind the table does not declare."""
    return _BY_KIND[kind]


def events_markdown() -> str:
    """The whole ``docs/events.md`` page: an introduction and one row per event kind."""
    rows = ["| Kind | Fields | Meaning |", "|---|---|---|"]
    for e in EVENTS:
        fields = ", ".join(f"`{name}`" for name in e.fields)
        rows.append(f"| `{e.kind}` | {fields} | {e.meaning} |")
    return (
        "# Events\n\n"
        "<!-- Generated from riffengine/events.py by `riffengine events --output "
        "docs/events.md`; do not edit by hand. -->\n\n"
        "Every event the engine publishes. The events log (`--events FILE.jsonl`) writes each "
        'as one JSON line, `{"time": ..., "kind": ..., ...fields}`; values with no JSON '
        "form (images) are left out. A publisher may leave out fields that do not apply.\n\n" + "\n".join(rows) + "\n"
    )
