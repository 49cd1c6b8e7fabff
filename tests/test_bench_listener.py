"""The xrun benchmark's instrument (``bench/listener.c``): built, joined to a real JACK dummy
server, it hears a source it connected to by itself and counts the cycles it ran.

What it measures (xruns, clicks) is printed by ``bench/xruns.py``, never asserted here."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from riffengine.audio.jackserver import JackServer

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_xruns", BENCH / "xruns.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture
def server():
    with JackServer(sample_rate=44100, period=256) as s:
        yield s


def test_the_listener_connects_to_its_source_and_hears_every_cycle(server, tmp_path):
    bench = load_bench()
    binary = bench.build_listener(tmp_path)
    listener = bench.Listener(binary, server.name, 30, tmp_path, ("bench-sine:output1", "bench-sine:output2"))
    listener.start()
    env = dict(os.environ, **server.env, JACK_NO_START_SERVER="1")
    sine = subprocess.Popen(
        ["jack_simple_client", "bench-sine"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while not (listener.connect() and listener.peaks[: listener.cycles].max(initial=0) > 0):
            assert time.monotonic() < deadline, "the listener never heard jack_simple_client"
            assert sine.poll() is None, "jack_simple_client ended"
            time.sleep(0.1)
        first = listener.cycles
        while listener.cycles < first + 100:
            assert time.monotonic() < deadline + 20, "the listener stopped counting cycles"
            time.sleep(0.05)
        n = listener.cycles
        times, peaks = np.array(listener.times[:n]), np.array(listener.peaks[:n])
        assert np.all(np.diff(times) >= 0)
        assert abs(times[-1] - time.monotonic()) < 5.0  # the same clock as time.monotonic
        assert 0.05 < float(peaks[first:].max()) <= 1.0  # the sine, not silence, not garbage
        assert listener.xruns <= listener.notifications
    finally:
        sine.terminate()
        sine.wait(10)
        listener.close()
    assert listener.proc.returncode == 0  # SIGTERM: it closes its client and ends cleanly


def test_a_missing_server_is_a_clear_error(tmp_path):
    bench = load_bench()
    binary = bench.build_listener(tmp_path)
    listener = bench.Listener(binary, "riffengine-no-such-server", 5, tmp_path)
    with pytest.raises(RuntimeError, match="cannot join the JACK server riffengine-no-such-server"):
        listener.start()
