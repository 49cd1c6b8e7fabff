"""Output through a real JACK server (dummy backend): exact frames out, recorder equals JACK input.

Also: device lookup errors, the WAV-file target, resampling, and the callback's never-raise rule.
"""

import threading
import time

import numpy as np
import pytest
import soundfile
from jack_fixtures import JackCapture, assert_received, jack_server  # noqa: F401

from riffengine.audio.output import (
    DeviceOutput,
    WavFileOutput,
    list_devices,
    open_output,
    rescan_devices,
    resolve_device,
)
from riffengine.audio.recorder import Recorder
from riffengine.audio.ringbuffer import RingBuffer
from riffengine.audio.timeline import Timeline
from riffengine.errors import UserError
from riffengine.timing.tempo import TempoMap, loop_frames

RATE = 44100
BPM = 300.0  # one bar = 35280 frames = 0.8 s, so a few seconds hold several seams


def clip_noise(seed, frames):
    return np.random.default_rng(seed).uniform(-0.8, 0.8, (frames, 2)).astype(np.float32)


class Producer(threading.Thread):
    """Feeds the ring from a timeline, changing clip at fixed cursor positions; keeps every frame."""

    def __init__(self, ring, block=1024):
        super().__init__(daemon=True)
        self.ring = ring
        self.block = block
        self.timeline = Timeline(TempoMap(BPM, sample_rate=RATE))
        n = loop_frames(1, BPM, RATE)
        self.clips = [self.timeline.make_clip(f"clip{i}", clip_noise(i + 1, n), BPM, 1) for i in range(4)]
        # Clip i is submitted when the cursor reaches i bars minus 0.5 s (before the fade window).
        self.script = {max(0, i * n - RATE // 2): clip for i, clip in enumerate(self.clips)}
        self.produced = []
        self.events = []
        self.stop = threading.Event()

    def run(self):
        pending = None
        while not self.stop.is_set():
            if pending is None:
                cursor = self.timeline.cursor
                for frame in [f for f in self.script if f <= cursor]:
                    self.timeline.submit(self.script.pop(frame))
                upcoming = min(self.script, default=cursor + self.block)
                block = self.timeline.render_block(max(1, min(self.block, upcoming - cursor)))
                self.produced.append(block.frames)
                self.events.extend(block.events)
                pending = block.frames
            written = self.ring.write(pending)
            pending = pending[written:] if written < len(pending) else None
            if pending is not None:
                time.sleep(0.002)

    def all_frames(self):
        return np.concatenate(self.produced)


def test_jack_plays_exactly_the_produced_frames_and_the_recording_matches(jack_server, tmp_path):
    ring = RingBuffer(RATE, channels=2)  # 1 s
    rec_path = tmp_path / "recording.wav"
    recorder = Recorder(rec_path, sample_rate=RATE)
    recorder.start()
    output = open_output("jack", ring, sample_rate=RATE, client_name="riffengine-test", recorder=recorder)
    assert isinstance(output, DeviceOutput) and output.sample_rate == RATE
    producer = Producer(ring)
    with JackCapture(jack_server.name, seconds=8.0) as capture:
        output.open()
        ports = output.jack_port_names()
        assert ports == ["riffengine-test:out_0", "riffengine-test:out_1"]
        capture.connect_from(ports)
        producer.start()
        deadline = time.monotonic() + 10
        while ring.free() > 0 and time.monotonic() < deadline:  # prime the ring
            time.sleep(0.01)
        output.start()
        target = int(3.0 * RATE)
        while ring.frames_read < target and time.monotonic() < deadline:
            time.sleep(0.02)
        # PortAudio connected our ports to the system playback ports as well.
        playback = [p.name for p in capture.client.get_all_connections(ports[0])]
        assert "system:playback_1" in playback
        output.stop()
        output.close()
        producer.stop.set()
        producer.join()
        time.sleep(0.05)
        captured = capture.recorded().copy()
    recorder.close()

    assert output.callback_errors == 0
    assert ring.underruns == 0, f"{ring.underruns} underruns"
    played = ring.frames_read
    assert played >= target
    produced = producer.all_frames()
    assert np.abs(produced[0]).max() > 0  # the first produced frame is not silence

    # JACK received the produced frames, from the first non-silent one on, bit for bit.
    nonzero = np.flatnonzero(np.abs(captured).max(axis=1) > 0)
    assert len(nonzero), "nothing arrived at the capture client"
    offset = int(nonzero[0])
    received = captured[offset:]
    k = min(len(received), played)
    assert k >= int(2.5 * RATE)
    # A cycle lost by the server (an xrun on a loaded machine) shifts the capture from there on:
    # each stretch between xruns equals what was produced, at the shift it has.
    compared = assert_received(received[:k], produced[:played], [f - offset for f in capture.xrun_frames])
    assert compared >= RATE, f"xruns at {capture.xrun_frames} left {compared} frames (a loaded machine)"

    # The recording holds exactly what the callback played, hence what JACK received.
    recorded, rate = soundfile.read(str(rec_path), dtype="float32", always_2d=True)
    assert rate == RATE and recorder.error is None and recorder.frames_dropped == 0
    assert len(recorded) == output.frames_output == played
    np.testing.assert_array_equal(recorded, produced[:played])
    np.testing.assert_array_equal(recorded[:k], received[:k])  # (k: up to the first xrun)

    # Clips changed on bar lines while it played.
    starts = [(e.frame, e.clip_id) for e in producer.events if hasattr(e, "repeat") and e.repeat == 0]
    bar = loop_frames(1, BPM, RATE)
    assert starts[:4] == [(0, "clip0"), (bar, "clip1"), (2 * bar, "clip2"), (3 * bar, "clip3")]
    assert len(output.callback_durations_ns()) == output.callbacks > 0


def test_jack_devices_are_listed_and_found_by_name(jack_server):
    rescan_devices()
    text = list_devices()
    assert "JACK Audio Connection Kit" in text and "system" in text
    index = resolve_device("system")
    assert isinstance(index, int)
    with pytest.raises(UserError, match="--output jack"):
        resolve_device("no such sound card")


def test_no_device_at_all_is_a_user_error_listing_devices_and_suggesting_jack_or_wav(monkeypatch):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "riffengine-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    rescan_devices()
    try:
        import sounddevice

        if any(d["max_output_channels"] > 0 for d in sounddevice.query_devices()):
            pytest.skip("this machine has a real output device")
        with pytest.raises(UserError) as excinfo:
            open_output(None, RingBuffer(1024))
        message = str(excinfo.value)
        assert "Devices found" in message and "--output jack" in message and ".wav" in message
        with pytest.raises(UserError, match="riffengine-no-such-server"):
            open_output("jack", RingBuffer(1024))
    finally:
        monkeypatch.undo()
        rescan_devices()


def test_wav_target_writes_every_frame_without_a_clock(tmp_path):
    ring = RingBuffer(8192)
    path = tmp_path / "render.wav"
    output = open_output(str(path), ring)
    assert isinstance(output, WavFileOutput) and not output.realtime
    frames = clip_noise(9, 10 * RATE)  # ten seconds of audio
    output.start()
    sent = 0
    while sent < len(frames):
        n = ring.write(frames[sent : sent + 4096])
        sent += n
        if n == 0:
            time.sleep(0.0005)
    output.stop()
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    assert rate == RATE and output.error is None
    np.testing.assert_array_equal(data, frames)
    assert ring.underruns == 0
    with pytest.raises(UserError, match="does not exist"):
        open_output(str(tmp_path / "missing" / "x.wav"), ring)


def test_callback_never_raises_and_times_itself():
    ring = RingBuffer(1024)
    ring.write(np.full((100, 2), 0.5, np.float32))
    out = DeviceOutput(ring, device=0, sample_rate=RATE)
    buffer = np.full((64, 2), 9.0, np.float32)

    class Flags:
        output_underflow = False

    class Time:
        outputBufferDacTime = 1.5

    out._callback(buffer, 64, Time(), Flags())
    assert np.all(buffer == 0.5) and out.callback_errors == 0
    out._callback(buffer, 64, Time(), None)  # a broken status object: silence, counted, no raise
    assert out.callback_errors == 1 and not buffer.any()
    assert out.callbacks == 2 and np.all(out.callback_durations_ns() > 0)
