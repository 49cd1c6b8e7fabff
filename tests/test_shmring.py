"""The shared-memory ring between engine and host, with real producer processes.

The producer is a child process (``python -c PRODUCER``) that attaches by name and writes a
ramp (frame k carries k on the left channel and -k on the right) from the ring's
``frames_written`` on, in chunks of random size; the consumer is this process, reading the way
the host's callback does. Ramp values stay below 2**24, so float32 holds them exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest

from riffengine.host import shmring
from riffengine.host.shmring import HEADER_BYTES, ShmRing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRODUCER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from riffengine.host.shmring import ShmRing

    name, total, fences, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
    ring = ShmRing.attach(name, fences=fences)
    rng = np.random.default_rng(seed)
    k = ring.frames_written
    print("start", k, flush=True)
    while total < 0 or k < total:
        n = int(rng.integers(1, 700))
        if total >= 0:
            n = min(n, total - k)
        ramp = np.arange(k, k + n, dtype=np.float32)
        block = np.stack([ramp, -ramp], axis=1)
        done = 0
        while done < n:
            wrote = ring.write(block[done:])
            done += wrote
            if wrote == 0:
                time.sleep(0.0005)
        k += n
        ring.engine_beat()
    print("done", k, flush=True)
    """
)


@pytest.fixture
def ring_name():
    name = f"riffengine-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        os.unlink(os.path.join(shmring.SHM_DIR, name))
    except FileNotFoundError:
        pass


def start_producer(name: str, total: int, fences: bool, seed: int = 1) -> subprocess.Popen:
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    args = [name, str(total), "1" if fences else "0", str(seed)]
    return subprocess.Popen(
        [sys.executable, "-c", PRODUCER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=path),
    )


def consume(ring: ShmRing, until: int, producer: subprocess.Popen | None, block: int = 256) -> list[np.ndarray]:
    """Read like the host's callback until ``frames_read`` reaches ``until``; the valid frames.
    Every short read must be zero-filled after its valid part. A producer that ends early fails
    the test; one that hangs is left to pytest's timeout (no assertion here is about time)."""
    out = np.empty((block, ring.channels), dtype=np.float32)
    ring.check_block(out)
    got = []
    while ring.frames_read < until:
        n = ring.read_into(out)
        assert not out[n:].any(), "an underrun must be silence"
        if n:
            got.append(out[:n].copy())
            continue
        if (producer is None or producer.poll() is not None) and ring.frames_written <= ring.frames_read:
            stderr = producer.stderr.read() if producer is not None and producer.stderr else ""
            raise AssertionError(f"no more frames: read {ring.frames_read} of {until}; {stderr}")
        time.sleep(0.0005)
    return got


def ramp_check(chunks: list[np.ndarray], start: int, stop: int) -> None:
    data = np.concatenate(chunks)
    expected = np.arange(start, stop, dtype=np.float32)
    assert len(data) == stop - start, "frames lost or duplicated"
    np.testing.assert_array_equal(data[:, 0], expected)
    np.testing.assert_array_equal(data[:, 1], -expected)


@pytest.mark.parametrize("fences", [False, True], ids=["no-fences", "membarrier"])
def test_ramp_crosses_wraparound_with_no_frame_lost_or_duplicated(ring_name, fences):
    if fences and not shmring._Membarrier().available:
        pytest.skip("membarrier(2) GLOBAL_EXPEDITED is not available here")
    total = 150_000
    with ShmRing.create(ring_name, capacity=1000, channels=2, fences=fences) as ring:  # 150 wraps
        producer = start_producer(ring_name, total, fences)
        try:
            chunks = consume(ring, total, producer)
            assert producer.wait(60) == 0, producer.stderr.read()
        finally:
            if producer.poll() is None:
                producer.kill()
                producer.wait()
        ramp_check(chunks, 0, total)
        header = ring.header()
        assert header.host_fenced == int(fences)
        assert header.frames_written == header.frames_read == total
        assert header.frames_output == header.frames_read + header.underrun_frames
        assert header.engine_attaches == 1 and header.engine_pid == producer.pid


def test_underrun_is_counted_and_silent(ring_name):
    with ShmRing.create(ring_name, capacity=512) as host, ShmRing.attach(ring_name) as engine:
        engine.write(np.full((100, 2), 0.5, dtype=np.float32))
        out = np.full((256, 2), 9.0, dtype=np.float32)
        assert host.read_into(out) == 100
        assert (out[:100] == 0.5).all() and not out[100:].any()
        out.fill(9.0)
        assert host.read_into(out) == 0
        assert not out.any()
        header = host.header()
        assert (header.underruns, header.underrun_frames, header.frames_output) == (2, 156 + 256, 512)
        assert (header.frames_written, header.frames_read) == (100, 100)


def test_full_ring_takes_what_fits(ring_name):
    with ShmRing.create(ring_name, capacity=300) as host, ShmRing.attach(ring_name) as engine:
        frames = np.ones((500, 2), dtype=np.float32)
        assert engine.write(frames) == 300
        assert engine.write(frames) == 0 and engine.writable() == 0
        assert host.read_into(np.empty((128, 2), dtype=np.float32)) == 128
        assert engine.writable() == 128 and engine.write(frames) == 128


def test_killed_producer_leaves_consumer_running_and_a_new_one_continues(ring_name):
    with ShmRing.create(ring_name, capacity=4096) as ring:
        first = start_producer(ring_name, -1, False, seed=2)
        try:
            chunks = consume(ring, 30_000, first)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        assert first.returncode == -signal.SIGKILL
        written = ring.frames_written
        chunks += consume(ring, written, None)  # what the dead engine left is still played
        out = np.ones((256, 2), dtype=np.float32)
        before = ring.header().underruns
        for _ in range(10):  # the host goes on: silence, counted
            assert ring.read_into(out) == 0 and not out.any()
        assert ring.header().underruns == before + 10
        assert ring.frames_written == written

        second = start_producer(ring_name, written + 30_000, False, seed=3)
        try:
            assert second.stdout.readline().split() == ["start", str(written)]
            chunks += consume(ring, written + 30_000, second)
            assert second.wait(60) == 0, second.stderr.read()
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        ramp_check(chunks, 0, written + 30_000)
        header = ring.header()
        assert header.engine_attaches == 2 and header.engine_pid == second.pid


HEADER_CHILD = textwrap.dedent(
    """
    import dataclasses, json, sys
    from riffengine.host.shmring import ShmRing
    ring = ShmRing.attach(sys.argv[1])
    ring.engine_beat(987654321)
    print(json.dumps({"header": dataclasses.asdict(ring.header()), "dac": ring.dac()}))
    ring.close()
    """
)


def test_header_fields_round_trip_between_processes(ring_name):
    with ShmRing.create(ring_name, capacity=2048, channels=2, sample_rate=48000) as host:
        host.set_dac(123_456, 7_000_000_001)
        host.host_beat(42_000)
        host.count_xrun(3)
        host.read_into(np.empty((64, 2), dtype=np.float32))  # an underrun of 64 frames
        env = dict(os.environ, PYTHONPATH=ROOT)
        result = subprocess.run(
            [sys.executable, "-c", HEADER_CHILD, ring_name],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout)
        header = seen["header"]
        assert seen["dac"] == [123_456, 7_000_000_001]
        assert header["magic"] == shmring.MAGIC and header["version"] == shmring.VERSION
        assert (header["capacity"], header["channels"], header["sample_rate"]) == (2048, 2, 48000)
        assert header["host_pid"] == os.getpid()
        assert header["host_heartbeat_ns"] == 42_000 and header["xruns"] == 3
        assert (header["underruns"], header["underrun_frames"], header["frames_output"]) == (1, 64, 64)
        assert header["dac_seq"] == 2 and header["engine_attaches"] == 1
        mine = host.header()
        assert mine.engine_heartbeat_ns == 987654321
        assert mine.engine_pid == header["engine_pid"] != os.getpid()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"capacity": 0}, "capacity must be an integer from 1"),
        ({"capacity": -5}, "capacity must be an integer from 1"),
        ({"capacity": 1.5}, "capacity must be an integer"),
        ({"capacity": True}, "capacity must be an integer"),
        ({"capacity": 64, "channels": 0}, "channels must be an integer from 1 to 64"),
        ({"capacity": 64, "channels": 65}, "channels must be an integer from 1 to 64"),
        ({"capacity": 64, "sample_rate": 0}, "sample_rate must be an integer"),
    ],
)
def test_bad_sizes_are_refused_clearly(ring_name, kwargs, words):
    with pytest.raises(ValueError, match=words):
        ShmRing.create(ring_name, **kwargs)
    assert not os.path.exists(os.path.join(shmring.SHM_DIR, ring_name))


def test_bad_segments_and_blocks_are_refused_clearly(ring_name):
    path = os.path.join(shmring.SHM_DIR, ring_name)
    with pytest.raises(ValueError, match="not a segment name"):
        ShmRing.create("a/b", capacity=64)
    with pytest.raises(FileNotFoundError, match="the host creates it"):
        ShmRing.attach(ring_name)
    with open(path, "wb") as f:
        f.write(b"\0" * 100)
    with pytest.raises(ValueError, match="100 bytes, smaller than the 4096-byte header"):
        ShmRing.attach(ring_name)
    with open(path, "wb") as f:
        f.write(b"\0" * (HEADER_BYTES + 64 * 8))
    with pytest.raises(ValueError, match="bad magic"):
        ShmRing.attach(ring_name)
    os.unlink(path)

    with ShmRing.create(ring_name, capacity=64) as ring:
        with pytest.raises(FileExistsError):
            ShmRing.create(ring_name, capacity=64)
        with pytest.raises(ValueError, match=r"float32 frames of shape \(n, 2\)"):
            ring.write(np.zeros((10, 2), dtype=np.float64))
        with pytest.raises(ValueError, match=r"float32 frames of shape \(n, 2\)"):
            ring.write(np.zeros((10, 1), dtype=np.float32))
        with pytest.raises(ValueError, match=r"writable float32 array of shape \(n, 2\)"):
            ring.check_block(np.zeros((10, 3), dtype=np.float32))
        bad = np.ones((16, 3), dtype=np.float32)
        assert ring.read_into(bad) == 0  # never raises in the callback
        assert ring.read_into(None) == 0  # type: ignore[arg-type]
        ring._header[shmring.FIELDS["version"]] = 99
        with pytest.raises(ValueError, match="layout version 99"):
            ShmRing.attach(ring_name)
        ring._header[shmring.FIELDS["version"]] = shmring.VERSION
    if shmring._Membarrier().available:
        with pytest.raises(ValueError, match="does not take part in membarrier"):
            ShmRing.attach(ring_name, fences=True)
    os.truncate(path, HEADER_BYTES + 64 * 8 + 4096)
    with pytest.raises(ValueError, match="64 frames of 2 channels need 4608"):
        ShmRing.attach(ring_name)
