"""Pytest fixtures for tests against a real JACK server (dummy backend, no sound card).

Import the fixtures you need into a test module::

    from jack_fixtures import JackCapture, jack_server  # noqa: F401  (tests/ is on sys.path)

``jack_server`` starts ``jackd -n <unique name> -d dummy -r 44100 -p 256`` once per module,
points this process's JACK clients at it (``JACK_DEFAULT_SERVER``, which libjack and so
PortAudio's JACK host API honour) and stops it by its PID afterwards.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

from riffengine.audio.jackserver import JackServer

PERIOD = 256
"""The ``jack_server`` fixture's period (frames)."""


def clean_stretches(length: int, xruns: list[int], period: int = PERIOD) -> list[tuple[int, int]]:
    """The stretches of ``[0, length)`` clear of the xruns (the notification comes after the lost
    cycle: a margin of 8 periods before each, 2 after), each at least 4 periods long."""
    stretches, start = [], 0
    for frame in sorted(xruns):
        if frame - 8 * period - start >= 4 * period:
            stretches.append((start, min(frame - 8 * period, length)))
        start = max(start, frame + 2 * period)
    if length - start >= 4 * period:
        stretches.append((start, length))
    return stretches


def matching_shift(
    piece: np.ndarray, sent: np.ndarray, start: int, period: int = PERIOD, periods: int = 32
) -> int | None:
    """The shift (whole periods, nearest first) at which ``piece`` equals ``sent``, or None.
    A capture that lost cycles ends past the end of ``sent`` by as much: that tail is left out."""
    for shift in sorted(range(-periods * period, periods * period + 1, period), key=abs):
        at = start + shift
        n = min(len(piece), len(sent) - at)
        if at >= 0 and n >= len(piece) - periods * period and np.array_equal(piece[:n], sent[at : at + n]):
            return shift
    return None


def assert_received(received: np.ndarray, sent: np.ndarray, xruns: list[int], period: int = PERIOD) -> int:
    """Assert that what a capture client received equals what was sent, bit for bit, in every
    stretch clear of the server's xruns (``xruns``: received frames at each notification; a lost
    cycle shifts the capture from there on by whole periods). The frames compared."""
    compared = 0
    for start, end in clean_stretches(len(received), xruns, period):
        shift = matching_shift(received[start:end], sent, start, period)
        assert shift is not None, f"frames {start}..{end} of what JACK received are not what was sent (xruns {xruns})"
        compared += end - start
    print(f"compared {compared} frames bit for bit; server xruns at received frames {xruns}")
    return compared


@pytest.fixture(scope="module")
def jack_server():
    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed (scripts/setup.sh installs jackd2)")
    server = JackServer(sample_rate=44100, period=PERIOD)
    server.start()
    saved = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    try:
        yield server
    finally:
        if saved is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = saved
        if "sounddevice" in sys.modules:
            # PortAudio may hold a JACK client on this server: let it go while the server is
            # still up, or PortAudio's exit handler aborts the process.
            from riffengine.audio.output import rescan_devices

            rescan_devices()
        server.stop()


class JackCapture:
    """A JACK client made by the test: records what arrives at its input ports into an array."""

    def __init__(self, server_name: str, channels: int = 2, seconds: float = 10.0, name: str = "capture"):
        import jack
        import numpy as np

        self.client = jack.Client(name, servername=server_name, no_start_server=True)
        self.ports = [self.client.inports.register(f"in_{i + 1}") for i in range(channels)]
        self.data = np.zeros((int(seconds * self.client.samplerate), channels), dtype=np.float32)
        self.frames = 0
        self.xrun_frames: list[int] = []
        """``frames`` when the server reported an xrun (a cycle lost: the capture may skip)."""
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(lambda delay: self.xrun_frames.append(self.frames))

    def _process(self, nframes: int) -> None:
        n = min(nframes, len(self.data) - self.frames)
        if n > 0:
            for c, port in enumerate(self.ports):
                self.data[self.frames : self.frames + n, c] = port.get_array()[:n]
            self.frames += n

    def connect_from(self, source_ports: list[str]) -> None:
        for source, port in zip(source_ports, self.ports):
            self.client.connect(source, port)

    def recorded(self):
        return self.data[: self.frames]

    def __enter__(self):
        self.client.activate()
        return self

    def __exit__(self, *exc):
        self.client.deactivate()
        self.client.close()
