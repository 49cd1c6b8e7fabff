"""The audio host: the process that owns the sound, and starts (and restarts) the engine.

``riffengine run`` to a live output (JACK or a sound card) runs this: it imports no torch. It
opens the output stream, the recorder and the shared-memory ring, then starts the engine as a
child process (``riffengine run ... --attach-host RING``), which renders and writes into the
ring. The host's callback plays the ring, and where the ring has nothing (the engine died, hangs,
restarts, or fell behind) the loops the engine held on the bar grid (:mod:`riffengine.host.hold`):
the music goes on, in time, with no gap. Gain, mute and panic come over the control channel
(:mod:`riffengine.host.channel`) and are applied in the host's callback: heard within a period,
however long the ring's look-ahead. The host holds the OSC port and hands it to each engine;
while none listens (dead, restarting, warming up) it plays gain, mute and panic sent over OSC
itself, and keeps the rest for the next engine (:mod:`riffengine.host.standin`).

The engine is restarted when it exits without saying goodbye (a crash, a signal, the OOM
killer), or when its heartbeat stops for ``audio.engine_hang_seconds`` (it is killed first).
It starts from the state the previous one saved (:mod:`riffengine.host.resume`). An engine that fails at
once with a user error (exit status 2: a bad config) is not restarted: the host ends with it.
One that dies before its first loop (a GPU fault as it starts) is restarted, and meanwhile the
host plays the bank's safe loop by itself (:mod:`riffengine.host.fallback`), reported as
``degraded``.

Signals: SIGINT/SIGTERM end the engine, fade the output out and end the host (exit 0); SIGHUP
is passed on to the engine (reload). Under systemd the host is the service's main process: it
sends ``READY=1`` once the first loop plays, ``WATCHDOG=1`` from its supervising loop, and the
engine's ``NOTIFY_SOCKET`` is withheld (one voice to systemd).

Threads: the main thread supervises (child, heartbeat, header figures, signals); one thread
receives control messages; one reads OSC while no engine does; the output's callback thread
plays. The callback's rules are those of :mod:`riffengine.audio.output`. Every thread of the
host runs at the audio priority (:mod:`riffengine.audio.priority`: ``SCHED_RR`` 1 where
allowed, else nice -11), so the thread holding the GIL is never kept off the CPU while the
callback waits for it; the engine is started at the usual priority.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from riffengine.audio import gil, priority
from riffengine.audio.jackoutput import JackOutput, forget_portaudio_at_exit
from riffengine.audio.livegain import db_to_gain
from riffengine.audio.output import MAX_BLOCK, open_output
from riffengine.audio.panic import PanicRequest
from riffengine.audio.recorder import Recorder
from riffengine.eventlog import EventLog
from riffengine.events import Event
from riffengine.host import channel, fallback, standin
from riffengine.host.hold import Held, HoldSource, held_at
from riffengine.host.shmring import SHM_DIR, ShmRing
from riffengine.sdnotify import Notifier

log = logging.getLogger(__name__)

CHANNELS = 2
FIRST_BEAT_SECONDS = 600.0
"""The longest an engine may take to send its first heartbeat (loading a model)."""
RESTART_DELAYS = (0.0, 0.5, 1.0, 2.0, 5.0)
"""Waits before restarting an engine that died, by deaths in a row (the last one repeats)."""
STABLE_SECONDS = 30.0
"""An engine that lived this long resets the count of deaths in a row."""
RECONNECT_SECONDS = 0.5
"""How often a lost output (the JACK server went away) is tried again."""
STOP_WAIT_SECONDS = 5.0
FADE_OUT_SECONDS = 0.1
TICK_SECONDS = 0.05
"""How often the supervisor looks at the engine, the output and the figures."""
UNTIL_AN_ENGINE = 2**62
"""A panic the host plays by itself lasts until an engine's own panic takes over from it."""


@dataclass
class HostStatus:
    """What the supervisor knows (main thread writes, anyone reads)."""

    engine_pid: int | None = None
    restarts: int = 0
    deaths_in_a_row: int = 0
    last_exit: str = ""
    code: int = 0
    holds: int = 0
    messages: int = 0
    bad_messages: int = 0
    saw_bye: bool = False


class _NoSource:
    """Stands in for the source until the output's rate is known (never played)."""

    channels = CHANNELS
    frames_read = frames_output = underruns = 0

    def read_into(self, out) -> int:
        out.fill(0.0)
        return 0


class _FromFirstSound:
    """The recorder as the output's callback sees it: taps from the stream's first frame on,
    so the recording's frame ``k`` is the stream frame ``k`` the events name."""

    def __init__(self, recorder: Recorder, source: HoldSource) -> None:
        self.recorder = recorder
        self.source = source

    def tap(self, frames) -> int:
        if not self.source.started:
            return 0
        return self.recorder.tap(frames)


HOST_PREFIX = "riffengine-host-"
"""Names of what a host leaves in ``/dev/shm`` and the temp folder: then its PID."""


def ring_name() -> str:
    return f"{HOST_PREFIX}{os.getpid()}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def sweep_stale(folders: tuple[str, ...] = (SHM_DIR, tempfile.gettempdir())) -> list[str]:
    """Remove what hosts killed with no chance to clean up (SIGKILL, the OOM killer) left in
    ``folders``: their rings and loop files, their state folders; only where the PID in the
    name runs no more. The paths removed."""
    removed: list[str] = []
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = re.fullmatch(rf"{HOST_PREFIX}(\d+)(-.*)?", name)
            if match is None or _running(int(match.group(1))):
                continue
            path = os.path.join(folder, name)
            try:
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except OSError:
                continue
            removed.append(path)
    return removed


@dataclass
class HostAudio:
    """What the host plays with, all open: :func:`open_audio` makes it, :meth:`close` ends it."""

    output: Any
    """A :class:`~riffengine.audio.jackoutput.JackOutput` or a PortAudio ``DeviceOutput``."""
    ring: ShmRing
    source: HoldSource
    recorder: Recorder | None
    events_log: EventLog | None

    def close(self) -> list[Callable[[], object]]:
        """The steps that close it, in order (the caller runs each whatever the others do)."""
        steps: list[Callable[[], object]] = [self.output.stop, self.output.close]
        if self.recorder is not None:
            steps.append(self.recorder.close)
        if self.events_log is not None:
            steps.append(self.events_log.close)
        return [*steps, self.ring.unlink, self.ring.close]


def open_audio(settings, name: str, on_record_error: Callable[[Exception], None]) -> HostAudio:
    """Open the events log, the recorder, the output (silent until started) and the ring ``name``;
    UserError for a bad target, nothing left open."""
    audio = settings.audio
    events_log: EventLog | None = None
    recorder: Recorder | None = None
    output: Any = None
    try:
        if audio.events:
            EventLog(audio.events).close()  # a new log (UserError if it cannot be written) ...
            events_log = EventLog(audio.events, append=True)  # ... the host and its engines append
        if audio.record:
            recorder = Recorder(
                audio.record, sample_rate=audio.sample_rate, channels=CHANNELS, on_error=on_record_error
            )
        placeholder: Any = _NoSource()
        target = audio.output
        if isinstance(target, str) and target.lower() == "jack":
            # The host runs no python-rtmidi, so the server's xrun notifications are safe here.
            output = JackOutput(placeholder, audio.jack_client_name, xrun_notifications=True)
        else:
            output = open_output(target, placeholder, sample_rate=audio.sample_rate, client_name=audio.jack_client_name)
        rate = output.sample_rate
        ring = ShmRing.create(name, max(8 * 512, int(audio.ring_buffer_seconds * rate)), CHANNELS, rate)
    except BaseException:
        for thing in (output, recorder, events_log):
            if thing is not None:
                thing.close()
        raise
    source = HoldSource(ring, MAX_BLOCK)
    output.ring = source
    if recorder is not None:
        recorder.sample_rate = rate
        recorder.start()
        output.recorder = _FromFirstSound(recorder, source)
    return HostAudio(output, ring, source, recorder, events_log)


class Host:
    """Supervises the engine command ``engine_argv`` (its child) for the open ``audio``."""

    def __init__(
        self,
        settings,
        audio: HostAudio,
        engine_argv: list[str],
        state_file: str,
        notifier: Notifier | None = None,
        engine_nice: int | None = None,
        osc_socket: socket.socket | None = None,
    ) -> None:
        self.settings = settings
        self.audio = audio
        self.output = audio.output
        self.ring = audio.ring
        self.source = audio.source
        self.name = audio.ring.name
        self.engine_argv = engine_argv
        self.state_file = state_file
        self.engine_nice = engine_nice
        self.notifier = notifier if notifier is not None else Notifier()
        self.status = HostStatus()
        self.hang_seconds = float(settings.audio.engine_hang_seconds)
        self.child: subprocess.Popen | None = None
        self._receiver = channel.Receiver(self.name)
        self._to_engine = channel.Sender(self.name, to=channel.ENGINE)
        self._stop = threading.Event()
        self._child_started = 0.0
        self._ready_sent = False
        self._next_watchdog = 0.0
        self.outputs_lost = 0
        self._lost_at: float | None = None
        self._reconnect_tries = 0
        self._next_reconnect = 0.0
        self._panic_received: tuple[PanicRequest, float] | None = None
        self._panic_reported: PanicRequest | None = None
        self._publishing = threading.Lock()
        self._gain, self._muted = 1.0, False
        """What the host plays: the last engine's gain and mute, or the stand-in's."""
        self._safe: tuple[np.ndarray, str] | None = None
        """The bank's safe loop at the output rate and its name, as the last engine handed it
        (or as the host read it)."""
        self.stand_in = (
            None
            if osc_socket is None
            else standin.StandIn(osc_socket, settings.osc, self._live_from_osc, self._panic_from_osc)
        )
        threading.Thread(target=self._receive, name="riffengine-host-control", daemon=True).start()

    def publish(self, kind: str, **data: object) -> None:
        """An event of the host's own, into the events log the engine writes too (appending);
        any of the host's threads (never the callback)."""
        if self.audio.events_log is not None:
            with self._publishing:
                self.audio.events_log(Event(kind, data))

    def start(self) -> None:
        self.output.start()
        if self.stand_in is not None:
            self.stand_in.start()
        log.info(
            "audio host playing at %d Hz to %s (ring %s)",
            self.output.sample_rate,
            self.settings.audio.output,
            self.name,
        )

    def recording_failed(self, exc: Exception) -> None:
        """The recorder's writer thread: the audio goes on; the engine reports it."""
        log.error("recording to %s failed: %s; the audio goes on", self.settings.audio.record, exc)
        try:
            self._to_engine.send("record_failed", path=str(self.settings.audio.record), reason=str(exc)[:500])
        except OSError:
            pass  # no engine right now: the log has it

    # --- the control channel (its own thread) ------------------------------------------------------

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._receiver.receive(0.2)
            except ValueError as exc:
                self.status.bad_messages += 1
                log.warning("audio host: %s", exc)
                continue
            except OSError:
                return
            if message is None:
                continue
            self.status.messages += 1
            try:
                self.apply(message)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.status.bad_messages += 1
                log.warning("audio host: message %r not applied: %s", message.get("kind"), exc)

    def apply(self, message: dict) -> None:
        """Act on one control message (control thread)."""
        kind = message["kind"]
        if kind == "gain":
            self._set_gain(float(message["gain"]), bool(message.get("muted", False)))
        elif kind == "panic":
            safe = channel.take_frames(message["path"], CHANNELS)
            request = PanicRequest(safe, origin=int(message["origin"]), until=int(message["until"]))
            self._panic_received = (request, time.monotonic())
            self.output.panic.request = request
        elif kind == "hold":
            path = message.get("path")
            frames: np.ndarray | None = None if path is None else channel.take_frames(path, CHANNELS)
            self.source.held.add(Held(int(message["start"]), frames, str(message.get("clip_id", ""))))
            self.status.holds += 1
        elif kind == "bye":
            self.status.saw_bye = True
            self.status.code = int(message.get("code", 0))
        elif kind == "safe":
            path = message.get("path")
            self._safe = None if path is None else (channel.take_frames(path, CHANNELS), str(message.get("name", "")))
        elif kind == "osc_take":
            self._hand_over_osc()

    def _set_gain(self, gain: float, muted: bool) -> None:
        self._gain, self._muted = gain, muted
        if self.output.live is not None:
            self.output.live.set(gain, muted)

    # --- OSC while no engine listens (the stand-in's thread, and the control thread) -------------

    def _live_from_osc(self, name: str, value: object) -> None:
        """The stand-in read a gain or mute: played in the next period."""
        if name == "gain":
            self._set_gain(db_to_gain(float(value)), self._muted)  # type: ignore[arg-type]
        elif name == "mute":
            self._set_gain(self._gain, bool(value))

    def _panic_from_osc(self) -> None:
        """The stand-in read ``/riff/panic``: crossfade to the safe loop now, in the phase of the
        held loop in force (its first sample on that loop's bar line); it lasts until the next
        engine's own panic (it gets the packet) takes over, in the same way."""
        found = self._safe_loop()
        if found is None:
            log.warning("panic while no engine runs: no safe loop is banked; it waits for the engine")
            return
        safe, _ = found
        position = self.source.position
        held = held_at(self.source.held.loops, position)
        origin = held.start if held is not None and held.frames is not None else position
        request = PanicRequest(safe, origin=origin, until=UNTIL_AN_ENGINE)
        self._panic_received = (request, time.monotonic())
        self.output.panic.request = request
        log.warning("panic while no engine runs: the host crossfades to the safe loop")

    def _hand_over_osc(self) -> None:
        """The engine listens on the OSC socket now: the stand-in stops and hands it what it kept."""
        if self.stand_in is None:
            self._to_engine.send("osc_kept", packets=[])
            return
        kept, figures = self.stand_in.hand_over()
        try:
            self._to_engine.send("osc_kept", packets=standin.encode_packets(kept))
        except (OSError, ValueError) as exc:
            log.warning("audio host: the engine did not take the OSC kept for it (%s)", exc)
        self.publish(
            "osc_handed_over",
            applied=figures.applied,
            kept=len(kept),
            dropped=figures.dropped,
            frame=self.source.position,
        )

    # --- the engine child ----------------------------------------------------------------------------

    def spawn(self) -> subprocess.Popen:
        """Start an engine (without systemd's notify socket: the host alone speaks to it)."""
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        argv = [*self.engine_argv, "--attach-host", self.name, "--state-file", self.state_file]
        fds: tuple[int, ...] = ()
        if self.stand_in is not None:
            fds = (self.stand_in.sock.fileno(),)
            argv += ["--osc-fd", str(fds[0])]
        self.status.saw_bye = False
        child = self.child = subprocess.Popen(
            argv, env=env, pass_fds=fds, preexec_fn=priority.child_priority(self.engine_nice)
        )
        self._child_started = time.monotonic()
        self.status.engine_pid = child.pid
        log.info("audio host: engine started (pid %d)", child.pid)
        return child

    def _engine_beat_age(self, child: subprocess.Popen) -> float:
        beat = self.ring.field("engine_heartbeat_ns")
        pid = self.ring.field("engine_pid")
        if pid != child.pid or beat == 0:
            return time.monotonic() - self._child_started - (FIRST_BEAT_SECONDS - self.hang_seconds)
        return time.monotonic() - beat / 1e9

    def _end_child(self, sig: int = signal.SIGTERM, wait: float = STOP_WAIT_SECONDS) -> int | None:
        child = self.child
        if child is None or child.poll() is not None:
            return None if child is None else child.returncode
        child.send_signal(sig)
        try:
            return child.wait(wait)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()

    def supervise(self) -> int:
        """Run until asked to stop or the engine ends on purpose; the exit status."""
        child = self.spawn()
        while not self._stop.is_set():
            self._publish_figures()
            self._report_panic()
            self._notify()
            self._watch_output()
            code = child.poll()
            if code is None and (age := self._engine_beat_age(child)) > self.hang_seconds:
                log.error("audio host: the engine (pid %d) stopped answering; restarting it", child.pid)
                self.publish("engine_hung", pid=child.pid, seconds=round(age, 1), frame=self.source.position)
                child.kill()
                code = child.wait()
            if code is not None:
                after = self._after_exit(child, code)
                if after is None:
                    break
                child = after
            self._stop.wait(TICK_SECONDS)
        return self.status.code

    def _after_exit(self, child: subprocess.Popen, code: int) -> subprocess.Popen | None:
        """``child`` ended with ``code``: the engine started in its place, or None when the host
        ends too."""
        if self.stand_in is not None:
            self.stand_in.resume()  # OSC sent from now on: gain, mute and panic are played here
        lived = time.monotonic() - self._child_started
        self.status.last_exit = f"exit status {code}" if code >= 0 else f"signal {-code}"
        self.publish(
            "engine_ended",
            pid=child.pid,
            status=code,
            seconds=round(lived, 3),
            on_purpose=self.status.saw_bye and code == 0,
            frame=self.source.position,
        )
        if self.status.saw_bye and code == 0:
            self.status.code = 0
            return None
        if code == 2 and self.status.holds == 0:
            log.error("audio host: the engine refused to start (exit status 2); see its message above")
            self.status.code = 2
            return None
        self.status.deaths_in_a_row = 1 if lived > STABLE_SECONDS else self.status.deaths_in_a_row + 1
        if not self.source.held.loops:
            self._fall_back(f"the engine ended ({self.status.last_exit}) before its first loop")
        delay = RESTART_DELAYS[min(self.status.deaths_in_a_row, len(RESTART_DELAYS)) - 1]
        log.error(
            "audio host: the engine ended (%s); playing the held loops, restarting it in %.1f s",
            self.status.last_exit,
            delay,
        )
        self.notifier.status(f"engine {self.status.last_exit}; restarting it")
        if self._stop.wait(delay):
            return None
        self.status.restarts += 1
        self.ring.set_field("engine_restarts", self.status.restarts)
        new = self.spawn()
        self.publish("engine_restarted", pid=new.pid, restarts=self.status.restarts, frame=self.source.position)
        return new

    def _safe_loop(self) -> tuple[np.ndarray, str] | None:
        """The bank's safe loop at the output rate and its name: as the last engine handed it,
        else read from the bank by the host itself (:mod:`riffengine.host.fallback`); None
        (logged) when none is banked. Not the callback's thread (it may read files)."""
        if self._safe is None:
            self._safe = fallback.safe_loop(self.settings, self.output.sample_rate, CHANNELS)
        return self._safe

    def _fall_back(self, why: str) -> None:
        """Nothing to play on with: hold the bank's safe loop from now on, until an engine's
        loops take over; ``degraded`` either way."""
        found = self._safe_loop()
        if found is None:
            self.publish("degraded", reason=f"{why}; no safe loop is banked: silence until an engine starts")
            return
        frames, name = found
        self.source.held.add(Held(self.source.position, frames, "safe"))
        self.publish("degraded", reason=f"{why}; the host plays the bank's safe loop {name!r}")
        log.error("audio host: %s; playing the bank's safe loop until an engine starts", why)
        self.notifier.status("degraded: playing the safe loop until an engine starts")

    def _publish_figures(self) -> None:
        """Header fields the engine reports: xruns, the DAC clock, how much was held."""
        out, ring = self.output, self.ring
        ring.set_field("xruns", int(getattr(out, "xruns", 0)))
        ring.set_field("held_frames", self.source.held_frames)
        for _ in range(3):  # the callback writes the frame, then the time: re-read a torn pair
            when, frame = getattr(out, "last_dac_time", 0.0), getattr(out, "last_dac_frame", 0)
            if when and getattr(out, "last_dac_time", 0.0) == when:
                ring.set_dac(int(frame), int(when * 1e9))
                break

    def _report_panic(self) -> None:
        """``panic_heard`` once the callback began a panic's crossfade: how long after it came."""
        stage, received = self.output.panic, self._panic_received
        began = stage.began if stage is not None else None
        if began is None or received is None or began[0] is not received[0] or began[0] is self._panic_reported:
            return
        self._panic_reported = began[0]
        self.publish(
            "panic_heard",
            after_ms=round(1000 * (began[1] - received[1]), 2),
            monotonic=round(began[1], 6),
            frame=began[2],
        )

    def _watch_output(self) -> None:
        """Notice a lost output (the JACK server gone, a device unplugged) and reopen it every
        :data:`RECONNECT_SECONDS`; the ring, the held loops and the recorder resume with it."""
        out = self.output
        now = time.monotonic()
        if self._lost_at is None:
            if not getattr(out, "lost", False):
                return
            self._lost_at, self._reconnect_tries = now, 0
            self._next_reconnect = now + RECONNECT_SECONDS
            self.outputs_lost += 1
            self.ring.set_field("outputs_lost", self.outputs_lost)
            forget_portaudio_at_exit()
            reason = getattr(out, "lost_reason", "") or "the server went away"
            self.publish("output_lost", reason=reason, frame=self.source.position)
            if "JACK" in getattr(out, "host_api", ""):
                log.error(
                    "audio output lost (%s). PortAudio's JACK streams cannot come back: restart "
                    "riffengine, and use audio.output: jack, which reconnects by itself",
                    reason,
                )
            else:
                log.error("audio output lost (%s); reopening it when it is back", reason)
            self.notifier.status("audio output lost; waiting for it to come back")
            return
        if now < self._next_reconnect:
            return
        self._next_reconnect = now + RECONNECT_SECONDS
        self._reconnect_tries += 1
        try:
            ok = out.reopen()
        except Exception as exc:  # noqa: BLE001 - keep trying; report once
            if self._reconnect_tries == 1:
                log.warning("reconnecting the audio output: %s", exc)
            ok = False
        if ok:
            seconds = round(now - self._lost_at, 3)
            self._lost_at = None
            self.publish("output_restored", seconds=seconds, tries=self._reconnect_tries, frame=self.source.position)
            log.warning("audio output back after %.1f s", seconds)
            self.notifier.status(f"playing at {out.sample_rate} Hz to {self.settings.audio.output}")

    def _notify(self) -> None:
        if not self._ready_sent and self.source.held.loops:
            self._ready_sent = True
            self.notifier.ready(f"playing at {self.output.sample_rate} Hz to {self.settings.audio.output}")
        interval = self.notifier.watchdog_interval
        now = time.monotonic()
        if interval is not None and now >= self._next_watchdog:
            self._next_watchdog = now + interval
            self.notifier.watchdog()

    # --- stopping ----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Signal handlers call this: end the engine, fade out, end."""
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: the engine reloads its config."""
        self.notifier.reloading()
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGHUP)
        self.notifier.ready()

    def close(self) -> None:
        """End the engine, fade the output out, close everything; each step runs regardless."""
        self._stop.set()
        self.notifier.stopping("stopping")
        steps: list[Callable[[], object]] = [
            self._end_child,
            self._fade_out,
            *self.audio.close(),
            self._receiver.close,
            self._to_engine.close,
        ]
        if self.stand_in is not None:
            steps.append(self.stand_in.close)
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - close the rest
                log.exception("audio host: while stopping, %r failed", step)

    def _fade_out(self) -> None:
        if self.output.live is None:
            return
        self.output.live.set(0.0)
        time.sleep(FADE_OUT_SECONDS + 0.05)


def serve(settings, engine_argv: list[str], state_file: str) -> int:
    """``riffengine run`` under the host: open, play, supervise, close; the exit status."""
    failed: list[Host] = []  # the recorder reports to the host, made just after the audio
    if stale := sweep_stale():
        log.debug("audio host: removed %d leftovers of hosts that were killed: %s", len(stale), ", ".join(stale))
    osc_socket = standin.open_socket(settings.osc) if settings.osc.enabled else None
    usual_nice = priority.raise_priority()  # before the output's and the recorder's threads start
    try:
        audio = open_audio(settings, ring_name(), lambda exc: failed[0].recording_failed(exc) if failed else None)
    except BaseException:
        priority.restore(usual_nice)
        if osc_socket is not None:
            osc_socket.close()
        raise
    try:
        host = Host(settings, audio, engine_argv, state_file, engine_nice=usual_nice, osc_socket=osc_socket)
    except BaseException:
        for step in audio.close():
            step()
        priority.restore(usual_nice)
        if osc_socket is not None:
            osc_socket.close()
        raise
    failed.append(host)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, lambda *_: host.request_stop())
    signal.signal(signal.SIGTERM, lambda *_: host.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: host.reload())
    interval = gil.prepare_for_audio()  # the callback's thread waits at most 0.5 ms for the GIL
    try:
        host.start()
        return host.supervise()
    finally:
        host.close()
        gil.restore(interval)
        priority.restore(usual_nice)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if host.status.restarts:
            log.info("audio host: the engine was restarted %d times", host.status.restarts)


def engine_command(argv: list[str]) -> list[str]:
    """The child's command line: this riffengine, the same arguments."""
    return [sys.executable, "-m", "riffengine.cli", *argv]
