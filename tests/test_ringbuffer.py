"""Ring buffer: wraparound, partial writes, underrun counting, no sample allocation on read."""

import threading
import time
import tracemalloc

import numpy as np
import pytest

from riffengine.audio.ringbuffer import RingBuffer


def ramp(start, n, channels=2):
    """Frames whose samples encode their own index: frame i, channel c = i + c / 10."""
    idx = np.arange(start, start + n, dtype=np.float32)[:, None]
    return idx + np.arange(channels, dtype=np.float32)[None, :] / 10


def test_write_then_read_round_trip_across_the_wrap_many_times():
    rb = RingBuffer(capacity=100, channels=2)
    out = np.empty((37, 2), dtype=np.float32)
    written = read = 0
    for _ in range(50):
        written += rb.write(ramp(written, 41))
        n = rb.read_into(out)
        assert n == 37
        np.testing.assert_array_equal(out, ramp(read, 37))
        read += n
    assert rb.frames_read == read == 50 * 37
    assert rb.frames_written == written
    assert rb.underruns == 0 and rb.errors == 0
    assert rb.frames_output == rb.frames_read


def test_write_stops_when_full_and_returns_the_count():
    rb = RingBuffer(capacity=10, channels=2)
    assert rb.write(ramp(0, 7)) == 7
    assert rb.free() == 3
    assert rb.write(ramp(7, 7)) == 3
    assert rb.write(ramp(10, 1)) == 0
    assert rb.available() == 10
    out = np.empty((10, 2), dtype=np.float32)
    rb.read_into(out)
    np.testing.assert_array_equal(out, ramp(0, 10))


def test_shortage_plays_what_there_is_then_zeros_and_counts_one_underrun():
    rb = RingBuffer(capacity=64, channels=2)
    rb.write(ramp(1, 5))
    out = np.full((8, 2), 99.0, dtype=np.float32)
    assert rb.read_into(out) == 5
    np.testing.assert_array_equal(out[:5], ramp(1, 5))
    np.testing.assert_array_equal(out[5:], 0.0)
    assert rb.underruns == 1 and rb.underrun_frames == 3
    # Empty ring: all zeros, another underrun; the output clock still advances.
    out[:] = 99.0
    assert rb.read_into(out) == 0
    assert not out.any()
    assert rb.underruns == 2 and rb.underrun_frames == 11
    assert rb.frames_read == 5 and rb.frames_output == 16


def test_read_into_never_raises_on_a_bad_buffer():
    rb = RingBuffer(capacity=16, channels=2)
    rb.write(ramp(0, 8))
    wrong = np.full((4, 3), 5.0, dtype=np.float32)  # three channels into a stereo ring
    assert rb.read_into(wrong) == 0
    assert rb.errors == 1
    assert not wrong.any()


def test_read_into_allocates_no_sample_memory():
    rb = RingBuffer(capacity=4096, channels=2)
    out = np.empty((256, 2), dtype=np.float32)
    block = ramp(0, 256)
    for _ in range(20):  # warm up (first calls may create caches)
        rb.write(block)
        rb.read_into(out)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        for i in range(200):
            if i % 2 == 0:
                rb.write(block)
            rb.read_into(out)  # every other call is a shortage (zero fill path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One block of samples is 2 KiB; small view objects are a few hundred bytes.
    assert peak - base < out.nbytes // 2
    assert rb.underruns > 0


def test_read_takes_only_what_is_available():
    rb = RingBuffer(capacity=8, channels=1)
    rb.write(np.arange(6, dtype=np.float32)[:, None])
    got = rb.read(100)
    np.testing.assert_array_equal(got[:, 0], np.arange(6))
    assert rb.read(10).shape == (0, 1)
    assert rb.underruns == 0


def test_one_producer_one_consumer_thread_see_every_frame_in_order():
    rb = RingBuffer(capacity=1000, channels=2)
    total = 50_000
    received = np.empty((total, 2), dtype=np.float32)

    def produce():
        sent = 0
        while sent < total:
            n = rb.write(ramp(sent, min(333, total - sent)))
            sent += n
            if n == 0:
                time.sleep(0.0005)

    t = threading.Thread(target=produce)
    t.start()
    got = 0
    while got < total:
        chunk = rb.read(min(256, total - got))
        received[got : got + len(chunk)] = chunk
        got += len(chunk)
        if len(chunk) == 0:
            time.sleep(0.0005)
    t.join()
    np.testing.assert_array_equal(received, ramp(0, total))


def test_wrong_shaped_write_is_refused():
    rb = RingBuffer(capacity=8, channels=2)
    with pytest.raises(ValueError):
        rb.write(np.zeros((4, 1), dtype=np.float32))
