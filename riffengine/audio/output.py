"""The output stream: hands frames from the ring buffer to a sound card, to JACK, or to a file.

Targets (``open_output(target, ring)``):

- ``None`` or ``"default"``: PortAudio's default output device.
- a device index (``3`` or ``"3"``) or a name or part of one (``"Scarlett"``), as listed by
  :func:`list_devices`.
- ``"jack"``: PortAudio's JACK host API, as a JACK client named ``client_name`` whose ports
  (``riffengine:out_0``, ``riffengine:out_1``) PortAudio connects to the ``system`` playback
  ports when the stream starts. The server is the default one or ``$JACK_DEFAULT_SERVER``.
- a path ending in ``.wav``: no device; a thread pulls blocks from the ring as fast as they come
  and writes them to the file (non-real-time rendering, faster than real time).

Real-time rules for the audio callback (:meth:`DeviceOutput._callback`): it only copies from the
ring into the device buffer (and into the recorder's ring); it never allocates sample memory,
blocks, locks, logs, touches torch or raises. Any exception is caught, counted in
``callback_errors`` and answered with silence. Its duration is stored with ``perf_counter_ns``
into a preallocated array (``callback_durations_ns()``), for benchmarks.

Sample rate: the engine works at the rate the output really runs at (``output.sample_rate``).
A device that cannot run at 44.1 kHz (many run at 48 kHz only, and a JACK server runs at its own
rate) is opened at its default rate; the engine then builds its tempo map at that rate and
resamples each clip with :func:`riffengine.render.frames.resample_clip` before it enters the timeline (producer side,
never in the callback), so the ring, the callback and the recorder all run at the device rate.

PortAudio discovers JACK servers when it initialises: opening a ``"jack"`` target re-initialises
PortAudio (to apply the client name and to find a server started after import), so do it before
opening any other stream in the process.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from riffengine.audio.livegain import LiveGain
from riffengine.audio.panic import PanicStage
from riffengine.audio.recorder import Recorder, WavWriter
from riffengine.audio.ringbuffer import RingBuffer
from riffengine.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 44100
DURATION_SLOTS = 1 << 16
MAX_BLOCK = 8192
"""The largest callback period served without falling back (frames); buffers are this size."""

_jack_client_name_buffer: ctypes.Array | None = None  # PortAudio keeps the pointer: keep it alive


def _sd():
    """Import sounddevice, turning a missing PortAudio into a UserError."""
    try:
        import sounddevice
    except OSError as exc:  # the PortAudio library itself is missing
        raise UserError(
            f"PortAudio is not available ({exc}): install the Debian package libportaudio2 "
            "(scripts/setup.sh does), or render to a file with --output take.wav"
        ) from None
    return sounddevice


# --- device listing and lookup ---------------------------------------------------------------


def list_devices() -> str:
    """Human-readable table of audio devices and host APIs (for ``riffengine devices``)."""
    sd = _sd()
    hostapis = sd.query_hostapis()
    default_out = sd.default.device[1]
    lines = []
    for index, dev in enumerate(sd.query_devices()):
        mark = "*" if index == default_out else " "
        api = hostapis[dev["hostapi"]]["name"]
        lines.append(
            f"{mark} {index:3d}  {dev['name']}  [{api}]  out: {dev['max_output_channels']}  "
            f"in: {dev['max_input_channels']}  {dev['default_samplerate']:g} Hz"
        )
    if not lines:
        lines.append("  (no audio devices found)")
    apis = ", ".join(h["name"] for h in hostapis) or "none"
    lines.append(f"host APIs: {apis}")
    lines.append("targets: a device number or name, 'jack' (a running JACK server), or a .wav path")
    return "\n".join(lines)


def _output_devices(sd) -> list[tuple[int, dict]]:
    return [(i, d) for i, d in enumerate(sd.query_devices()) if d["max_output_channels"] > 0]


def _no_device_error(sd, wanted: str) -> UserError:
    return UserError(
        f"no audio output device {wanted}. Devices found:\n{list_devices()}\n"
        "Use --output jack with a running JACK server, or --output take.wav to render to a file."
    )


def resolve_device(spec: int | str | None) -> int:
    """The PortAudio device index for ``spec`` (index, name or part of a name, or default)."""
    sd = _sd()
    outputs = _output_devices(sd)
    if not outputs:
        raise _no_device_error(sd, "is available")
    if spec is None or spec == "default":
        index = sd.default.device[1]
        if index is None or index < 0:
            index = outputs[0][0]
        return int(index)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        if index not in dict(outputs):
            raise _no_device_error(sd, f"has number {index}")
        return index
    wanted = spec.lower()
    exact = [i for i, d in outputs if d["name"].lower() == wanted]
    if exact:
        return exact[0]
    matches = [(i, d) for i, d in outputs if wanted in d["name"].lower()]
    if len(matches) == 1:
        return matches[0][0]
    if not matches:
        raise _no_device_error(sd, f"matches {spec!r}")
    names = "; ".join(f"{i}: {d['name']}" for i, d in matches)
    raise UserError(f"output device {spec!r} matches several devices ({names}): give its number or a longer name")


def _reinitialise_portaudio(sd, client_name: str | None) -> None:
    """Restart PortAudio (finds JACK servers started since), optionally setting the JACK client name."""
    global _jack_client_name_buffer
    sd._terminate()
    try:
        if client_name:
            lib = ctypes.CDLL(sd._libname)
            setter = getattr(lib, "PaJack_SetClientName", None)
            if setter is not None:
                buffer = ctypes.create_string_buffer(client_name.encode())
                if setter(buffer) == 0:
                    _jack_client_name_buffer = buffer
    finally:
        sd._initialize()


def rescan_devices() -> None:
    """Re-initialise PortAudio so that devices (and JACK servers) that appeared since are seen.

    No stream may be open in this process while it runs.
    """
    _reinitialise_portaudio(_sd(), None)


def jack_device(client_name: str = "riffengine") -> int:
    """Index of PortAudio's JACK output device, with this process's JACK client named ``client_name``."""
    sd = _sd()
    _reinitialise_portaudio(sd, client_name)
    for api in sd.query_hostapis():
        if "JACK" in api["name"]:
            index = api["default_output_device"]
            if index is None or index < 0:
                outs = [i for i in api["devices"] if sd.query_devices(i)["max_output_channels"] > 0]
                if not outs:
                    break
                index = outs[0]
            return int(index)
    server = os.environ.get("JACK_DEFAULT_SERVER", "default")
    raise UserError(
        f"--output jack: no JACK server named {server!r} is running (or PortAudio lacks JACK support). "
        "Start one (e.g. `jackd -d dummy -r 44100` or your usual JACK setup; set JACK_DEFAULT_SERVER "
        "for a named server), or use a device from `riffengine devices`, or a .wav path."
    )


def choose_sample_rate(device: int, channels: int, preferred: int = DEFAULT_SAMPLE_RATE) -> int:
    """``preferred`` if the device supports it, else the device's default rate (e.g. 48000)."""
    sd = _sd()
    try:
        sd.check_output_settings(device=device, channels=channels, dtype="float32", samplerate=preferred)
        return preferred
    except Exception:
        return int(sd.query_devices(device)["default_samplerate"])


# --- outputs ---------------------------------------------------------------------------------


class _OutputBase:
    """What every output offers: start/stop/close, counters from its ring, a sample rate.

    :attr:`panic` and :attr:`live` are the stages a real-time output applies in its callback,
    after the ring (panic, gain and mute heard within a period); a file output leaves them to
    the producer.
    """

    realtime: bool = True

    def __init__(self, ring: RingBuffer, sample_rate: int, recorder: Recorder | None) -> None:
        self.ring = ring
        self.channels = ring.channels
        self.sample_rate = sample_rate
        self.recorder = recorder
        self.live: LiveGain | None = None
        self.panic: PanicStage | None = None
        if sample_rate:
            self._make_stages()

    def _make_stages(self) -> None:
        """The callback's stages, sized for the rate the output runs at (once it is known)."""
        self.live = LiveGain(self.sample_rate, MAX_BLOCK)
        self.panic = PanicStage(self.sample_rate, MAX_BLOCK, self.channels)

    @property
    def frames_output(self) -> int:
        """The master clock: frames handed to the device so far."""
        return self.ring.frames_output

    @property
    def underruns(self) -> int:
        return self.ring.underruns

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DeviceOutput(_OutputBase):
    """A PortAudio output stream (sound card or JACK) fed only from ``ring``.

    ``open()`` creates the stream (for JACK its ports exist from then on, so they can be
    connected before ``start()``); ``start()`` opens it if needed and starts it.

    A stream that stops by itself after ``start()`` (the device was unplugged, its sound
    server went away) is :attr:`lost`; :meth:`reopen` then tries a new stream on the same
    device, so that the engine plays on when the device is back. PortAudio's JACK host API
    cannot do that (closing a stream of a dead JACK server hangs): such a stream stays lost,
    which is why the engine plays to JACK through libjack (``audio.output: jack``).
    """

    def __init__(
        self,
        ring: RingBuffer,
        device: int,
        sample_rate: int,
        blocksize: int = 0,
        latency: str | float = "low",
        recorder: Recorder | None = None,
        jack_client_name: str | None = None,
    ) -> None:
        super().__init__(ring, sample_rate, recorder)
        self.device = device
        self.blocksize = blocksize
        self.latency = latency
        self.jack_client_name = jack_client_name
        self.callbacks = 0
        self.callback_errors = 0
        self.xruns = 0  # PortAudio's output underflow flags
        self.last_dac_time = 0.0  # stream time of the last block's first frame reaching the DAC
        self.last_dac_frame = 0  # frames_output at that block's start
        self._durations = np.zeros(DURATION_SLOTS, dtype=np.int64)
        self._stream: Any = None  # a sounddevice stream (sounddevice has no type information)
        self._started = False
        self._dead = False  # lost, and stopped since: never touch the stream again
        self.reopened = 0

    @property
    def host_api(self) -> str:
        """The device's PortAudio host API name (``ALSA``, ``JACK Audio Connection Kit``, ...)."""
        sd = _sd()
        return str(sd.query_hostapis(sd.query_devices(self.device)["hostapi"])["name"])

    @property
    def lost(self) -> bool:
        """True when the stream stopped by itself after :meth:`start` (until :meth:`reopen`)."""
        stream = self._stream
        return self._started and (stream is None or not stream.active)

    @property
    def lost_reason(self) -> str:
        return "the device stopped playing (unplugged, or its sound server went away)"

    def _callback(self, outdata, frames, time_info, status) -> None:
        """Audio callback: copy from the ring (and to the recorder). Real-time safe; never raises."""
        t0 = time.perf_counter_ns()
        try:
            self.last_dac_frame = self.ring.frames_output
            self.last_dac_time = time_info.outputBufferDacTime
            if status.output_underflow:
                self.xruns += 1
            position = self.ring.frames_read
            from_ring = self.ring.read_into(outdata)
            panic, live = self.panic, self.live
            assert panic is not None and live is not None  # made before the stream opens
            panic.apply(outdata, position, from_ring)
            live.apply(outdata)
            if self.recorder is not None:
                self.recorder.tap(outdata)
        except BaseException:
            self.callback_errors += 1
            try:
                outdata.fill(0)
            except BaseException:
                pass
        self._durations[self.callbacks % DURATION_SLOTS] = time.perf_counter_ns() - t0
        self.callbacks += 1

    def open(self) -> None:
        if self._stream is not None:
            return
        sd = _sd()
        try:
            self._stream = sd.OutputStream(
                device=self.device,
                samplerate=self.sample_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=self.blocksize,
                latency=self.latency,
                callback=self._callback,
            )
        except sd.PortAudioError as exc:
            name = sd.query_devices(self.device)["name"]
            raise UserError(
                f"cannot open output device {self.device} ({name}) at {self.sample_rate} Hz, "
                f"{self.channels} channels: {exc}. Pick another with --output (see `riffengine devices`)"
            ) from None

    def start(self) -> None:
        self.open()
        self._stream.start()
        self._started = True

    def stop(self) -> None:
        """Stop playing; a lost stream is left alone (stopping a dead JACK stream hangs)."""
        self._dead = self._dead or self.lost
        self._started = False
        if self._stream is not None and not self._dead:
            self._stream.stop()

    def close(self) -> None:
        """Close the stream; a lost JACK-hosted stream is only dropped (closing it would hang)."""
        self._dead = self._dead or self.lost
        dead, self._dead = self._dead, False
        self._started = False
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if dead and "JACK" in self.host_api:
            log.debug("dropping a PortAudio JACK stream whose server went away")
            return
        try:
            stream.close()
        except Exception as exc:  # noqa: BLE001 - the device is gone
            if not dead:
                raise
            log.debug("closing a lost stream: %s", exc)

    def reopen(self) -> bool:
        """After :attr:`lost`: a new stream on the same device; True when it plays again.

        Blocking: call it on an executor thread, never while another thread uses this output.
        False while the device is not back (call again later), and always for PortAudio's JACK
        host API. PortAudio is not re-initialised (that aborts the process once a JACK server
        it knew has gone), so the device list is the one found at start: a card that comes
        back in the same place plays again; one that comes back elsewhere needs a restart.
        """
        if "JACK" in self.host_api:
            return False
        self.close()
        try:
            self.start()
        except Exception as exc:  # noqa: BLE001 - not back yet
            log.debug("reopening output device %s: %s", self.device, exc)
            self.close()
            return False
        self.reopened += 1
        return True

    @property
    def active(self) -> bool:
        return self._stream is not None and self._stream.active

    def jack_port_names(self) -> list[str]:
        """This stream's JACK output port names (``client:out_0`` ...), for connecting them."""
        if not self.jack_client_name:
            return []
        sd = _sd()
        name = ctypes.c_char_p()
        getter = getattr(ctypes.CDLL(sd._libname), "PaJack_GetClientName", None)
        client = self.jack_client_name
        if getter is not None and getter(ctypes.byref(name)) == 0 and name.value:
            client = name.value.decode()
        return [f"{client}:out_{i}" for i in range(self.channels)]

    def callback_durations_ns(self) -> np.ndarray:
        """Durations of the most recent callbacks (up to 65536), oldest first, in nanoseconds."""
        n = min(self.callbacks, DURATION_SLOTS)
        start = self.callbacks % DURATION_SLOTS if self.callbacks > DURATION_SLOTS else 0
        return np.roll(self._durations, -start)[:n].copy()


class WavFileOutput(_OutputBase):
    """Non-real-time output: a thread writes ring blocks to a WAV file as fast as they come.

    The producer keeps filling the ring (it never waits for a clock); :meth:`stop` (or
    :meth:`close`) writes whatever is still in the ring and finalises the file.
    """

    realtime = False

    def __init__(
        self,
        ring: RingBuffer,
        path: str | os.PathLike,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        blocksize: int = 4096,
        sample_format: str = "float32",
        recorder: Recorder | None = None,
    ) -> None:
        super().__init__(ring, sample_rate, recorder)
        self.path = Path(path)
        self.blocksize = blocksize
        self.sample_format = sample_format
        self.error: Exception | None = None
        self._writer: WavWriter | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._writer = WavWriter(self.path, self.sample_rate, self.channels, self.sample_format)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="riffengine-wav-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        writer = self._writer
        assert writer is not None  # opened by start(), before this thread
        try:
            last_sync = time.monotonic()
            while True:
                stopping = self._stop.is_set()
                block = self.ring.read(self.blocksize)
                if len(block):
                    writer.write(block)
                    if self.recorder is not None:
                        self.recorder.tap(block)
                    if time.monotonic() - last_sync > 0.5:
                        writer.sync()
                        last_sync = time.monotonic()
                elif stopping:
                    break
                else:
                    time.sleep(0.001)
        except OSError as exc:
            self.error = exc
            log.error("writing %s: %s", self.path, exc)

    def stop(self) -> None:
        """Drain the ring into the file and finalise it."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        assert self._writer is not None  # opened by start()
        try:
            self._writer.close()
        except OSError as exc:
            self.error = self.error or exc

    def close(self) -> None:
        self.stop()

    @property
    def frames_written_to_file(self) -> int:
        return self._writer.frames if self._writer is not None else 0


def open_output(
    target: int | str | None,
    ring: RingBuffer,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    blocksize: int = 0,
    client_name: str = "riffengine",
    recorder: Recorder | None = None,
) -> DeviceOutput | WavFileOutput:
    """Build (not start) the output for ``target``; see the module docstring for the targets.

    Check ``output.sample_rate`` afterwards: a device that cannot run at ``sample_rate`` gets its
    own default rate, and everything upstream must follow it.
    """
    if isinstance(target, str) and target.lower().endswith(".wav"):
        path = Path(target).expanduser()
        if not path.parent.is_dir():
            raise UserError(f"cannot write {target!r}: the folder {str(path.parent)!r} does not exist")
        return WavFileOutput(ring, path, sample_rate, blocksize=blocksize or 4096, recorder=recorder)
    if isinstance(target, str) and target.lower() == "jack":
        device = jack_device(client_name)
        name = client_name
    else:
        device = resolve_device(target)
        name = None
    rate = choose_sample_rate(device, ring.channels, sample_rate)
    if rate != sample_rate:
        log.info("output device runs at %d Hz; clips are resampled from %d Hz", rate, sample_rate)
    return DeviceOutput(ring, device, rate, blocksize=blocksize, recorder=recorder, jack_client_name=name)
