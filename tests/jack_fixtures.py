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

import pytest

from riffengine.audio.jackserver import JackServer


@pytest.fixture(scope="module")
def jack_server():
    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed (scripts/setup.sh installs jackd2)")
    server = JackServer(sample_rate=44100, period=256)
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
