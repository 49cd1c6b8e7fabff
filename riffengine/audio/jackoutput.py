"""Output to JACK through libjack directly (the JACK-Client package), surviving a server restart.

The engine plays to ``--output jack`` through this class rather than PortAudio's JACK host API,
because a show must outlive its JACK server: when the server goes away under an open
PortAudio stream, ``Pa_StopStream``/``Pa_CloseStream``/``Pa_Terminate`` wait up to ten minutes
for a process callback that never comes, and PortAudio's exit handler then fails an assertion
and aborts the process. libjack tells this client at once (its shutdown callback), and a dead
client closes in milliseconds; :meth:`JackOutput.reopen` makes a new client when a server of
the same name is back.

The interface is :class:`~riffengine.audio.output.DeviceOutput`'s (``open``/``start``/``stop``/
``close``, ``active``, ``jack_port_names``, ``callbacks``, ``callback_errors``, ``xruns``,
``callback_durations_ns``, ``sample_rate``, ``frames_output``), plus :attr:`lost` and
:meth:`reopen`.

Real-time rules for :meth:`JackOutput._process` (JACK's process thread): it only copies frames
from the ring into a preallocated scratch block and from there into the port buffers (and into
the recorder's ring); it never blocks, allocates sample memory (only small numpy views of the
port buffers), logs, touches torch or raises. The shutdown callback (a JACK thread) only sets
:attr:`lost`; the xrun callback (when counting notifications) only counts. Everything else
runs on the engine's loop thread, or on an executor thread for :meth:`reopen` (which may take a
moment).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from typing import Any

import numpy as np

from riffengine.audio.output import DURATION_SLOTS, MAX_BLOCK, _OutputBase
from riffengine.audio.recorder import Recorder
from riffengine.audio.ringbuffer import RingBuffer
from riffengine.errors import UserError

log = logging.getLogger(__name__)


def server_name() -> str | None:
    """The JACK server clients reach: ``$JACK_DEFAULT_SERVER``, else the default one (None)."""
    return os.environ.get("JACK_DEFAULT_SERVER") or None


def forget_portaudio_at_exit() -> None:
    """Skip PortAudio's exit handler in this process (loop thread).

    Once a JACK server that PortAudio's JACK host API connected to (at ``import sounddevice``)
    has gone away, ``Pa_Terminate`` fails an assertion and aborts the process at exit, and no
    rescan can help any more (a rescan is a ``Pa_Terminate``). Leaving PortAudio unterminated is
    harmless: the operating system releases everything when the process ends.
    """
    sd = sys.modules.get("sounddevice")
    handler = getattr(sd, "_exit_handler", None)
    if handler is not None:
        atexit.unregister(handler)


class JackOutput(_OutputBase):
    """A JACK client with ``channels`` output ports fed only from ``ring``.

    ``open()`` activates the client, which plays silence until ``start()`` (so its ports can be
    connected first: JACK connects only active clients); ``start()`` connects the ports to the
    physical playback ports and starts taking frames from the ring.
    """

    def __init__(
        self,
        ring: RingBuffer,
        client_name: str = "riffengine",
        recorder: Recorder | None = None,
        connect: bool = True,
        xrun_notifications: bool = False,
    ) -> None:
        super().__init__(ring, 0, recorder)
        self.client_name = client_name
        self.connect = connect
        self.xrun_notifications = xrun_notifications
        """Count the server's xrun notifications (every late client of a cycle, and the driver's
        own late wake-ups) rather than the cycles the driver skipped. Only for a process without
        python-rtmidi (the audio host): see :meth:`_open_client`."""
        self._xrun_frame: int | None = None
        self.jack_client_name = client_name
        self.callbacks = 0
        self.callback_errors = 0
        self.xruns = 0
        self.reopened = 0
        self.last_dac_time = 0.0
        """``time.monotonic()`` at which the last block's first frame reaches the speakers."""
        self.last_dac_frame = 0
        """``frames_output`` at that block's start (the pair is the master clock's anchor)."""
        self._latency_s = 0.0
        self.lost = False
        """True once the server went away (or the client was kicked out), until :meth:`reopen`."""
        self.lost_reason = ""
        self._scratch = np.zeros((MAX_BLOCK, self.channels), dtype=np.float32)
        self._durations = np.zeros(DURATION_SLOTS, dtype=np.int64)
        self._client: Any = None  # a jack.Client (JACK-Client has no type information)
        self._ports: list = []
        self._active = False
        self._started = False
        self._open_client()
        self._make_stages()  # the server's rate is known now

    # --- the client -----------------------------------------------------------------------------

    def _open_client(self) -> None:
        import jack

        try:
            client = jack.Client(self.client_name, no_start_server=True, servername=server_name())
        except jack.JackOpenError:
            server = server_name() or "default"
            raise UserError(
                f"--output jack: no JACK server named {server!r} is running. Start one (e.g. "
                "`jackd -d dummy -r 44100` or your usual JACK setup; set JACK_DEFAULT_SERVER for "
                "a named server), or use a device from `riffengine devices`, or a .wav path."
            ) from None
        if client.samplerate != self.sample_rate and self.sample_rate:
            log.warning(
                "the JACK server now runs at %d Hz, not %d Hz; the pitch will be off until a restart",
                client.samplerate,
                self.sample_rate,
            )
        self.sample_rate = self.sample_rate or client.samplerate
        self._ports = [client.outports.register(f"out_{i}") for i in range(self.channels)]
        client.set_process_callback(self._process)
        # libjack delivers xrun notifications synchronously on its notification thread, and a
        # Python callback there needs the GIL. A python-rtmidi call that is itself waiting on the
        # server (opening a JACK MIDI client) holds the GIL: with rtmidi in the process that is a
        # deadlock of the whole process, so there xruns are counted in the process callback, from
        # frame times (the cycles the driver skipped). JACK-Client's own calls release the GIL, so
        # a process without rtmidi (the audio host) counts the server's notifications: those
        # include a cycle in which a client was late, which skips no frame.
        if self.xrun_notifications:
            client.set_xrun_callback(self._xrun)
        client.set_shutdown_callback(self._shutdown)
        self._last_frame_time = None
        self._process_client = client  # the process callback's own reference (never None once set)
        self._client = client
        self.jack_client_name = client.name
        self.lost = False

    def _process(self, frames: int) -> None:
        """JACK's process thread: copy from the ring. Real-time safe; never raises."""
        t0 = time.perf_counter_ns()
        try:
            now = self._process_client.last_frame_time
            if (
                not self.xrun_notifications
                and self._last_frame_time is not None
                and (now - self._last_frame_time) & 0xFFFFFFFF != frames
            ):
                self.xruns += 1  # a cycle was skipped
            self._last_frame_time = now
            if not self._started:
                for port in self._ports:
                    port.get_array().fill(0.0)
                return
            self.last_dac_frame = self.ring.frames_output
            # The cycle's start, not this callback's (which may run late): the DAC time stays exact.
            started = time.monotonic() - self._process_client.frames_since_cycle_start / self.sample_rate
            self.last_dac_time = started + self._latency_s
            n = min(frames, MAX_BLOCK)
            block = self._scratch[:n]
            position = self.ring.frames_read
            from_ring = self.ring.read_into(block)
            panic, live = self.panic, self.live
            assert panic is not None and live is not None  # made once the client is open
            panic.apply(block, position, from_ring)
            live.apply(block)
            for c, port in enumerate(self._ports):
                out = port.get_array()
                out[:n] = block[:, c]
                if n < frames:
                    out[n:] = 0.0
            if self.recorder is not None:
                self.recorder.tap(block)
        except BaseException:
            self.callback_errors += 1
        self._durations[self.callbacks % DURATION_SLOTS] = time.perf_counter_ns() - t0
        self.callbacks += 1

    def _xrun(self, delayed_usecs: float) -> None:
        """libjack's notification thread: an xrun. The server notifies once for each client that
        was late in a cycle, and once when its own wake-up was late: one click, counted once per
        cycle. Only counts; takes the GIL for a few microseconds."""
        frame = self._process_client.last_frame_time
        if frame != self._xrun_frame:
            self._xrun_frame = frame
            self.xruns += 1

    def _shutdown(self, status, reason: str) -> None:
        """A JACK thread: the server went away. Only records it."""
        self.lost_reason = str(reason)
        self.lost = True

    # --- control (loop thread) ----------------------------------------------------------------------

    def open(self) -> None:
        """Activate the client (silent until :meth:`start`); its ports can be connected now."""
        if not self._active:
            self._client.activate()
            self._active = True

    def start(self) -> None:
        """Connect the ports to the physical playback ports and start playing from the ring."""
        self.open()
        if self.connect:
            self._connect_playback()
        self._latency_s = self._playback_latency()
        self._started = True

    def _playback_latency(self) -> float:
        """Seconds from the start of a process cycle to the speakers: the ports' playback
        latency (JACK's own estimate), at least one period."""
        import jack

        client = self._client
        frames = client.blocksize
        try:
            frames = max([frames] + [p.get_latency_range(jack.LATENCY_PLAYBACK)[1] for p in self._ports])
        except Exception as exc:  # noqa: BLE001 - an estimate only
            log.debug("JACK latency: %s", exc)
        return frames / float(client.samplerate)

    def _connect_playback(self) -> None:
        client = self._client
        try:
            targets = client.get_ports(is_physical=True, is_input=True, is_audio=True)
        except Exception as exc:  # noqa: BLE001 - no playback ports is not fatal
            log.warning("JACK: cannot list playback ports: %s", exc)
            return
        for port, target in zip(self._ports, targets):
            try:
                client.connect(port, target)
            except Exception as exc:  # noqa: BLE001 - already connected, or refused
                log.debug("JACK: %s -> %s: %s", port.name, target.name, exc)

    def stop(self) -> None:
        self._started = False
        if self._client is not None and self._active:
            self._active = False
            try:
                self._client.deactivate()
            except Exception as exc:  # noqa: BLE001 - a dead server
                log.debug("JACK deactivate: %s", exc)

    def close(self) -> None:
        self.stop()
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - a dead server
                log.debug("JACK close: %s", exc)

    def reopen(self) -> bool:
        """After :attr:`lost`: close the dead client and try a new one; True when playing again.

        Blocking (a few milliseconds to connect): call it on an executor thread, never while
        another thread uses this output. Returns False while no server runs (call again later).
        The dead client is closed first: libjack must not clean it up while a new one opens.
        """
        self.close()
        try:
            self._open_client()
        except UserError:
            return False
        self.start()
        self.reopened += 1
        return True

    @property
    def active(self) -> bool:
        return self._client is not None and self._started and self._active and not self.lost

    def jack_port_names(self) -> list[str]:
        """This client's output port names (``client:out_0`` ...), for connecting them."""
        return [port.name for port in self._ports]

    def callback_durations_ns(self) -> np.ndarray:
        """Durations of the most recent process callbacks (up to 65536), oldest first, in ns."""
        n = min(self.callbacks, DURATION_SLOTS)
        start = self.callbacks % DURATION_SLOTS if self.callbacks > DURATION_SLOTS else 0
        return np.roll(self._durations, -start)[:n].copy()
