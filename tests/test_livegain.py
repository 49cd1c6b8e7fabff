"""Gain and mute in the callback: ramps, and heard while the ring still holds look-ahead audio."""

import time

import numpy as np
from jack_fixtures import JackCapture, jack_server  # noqa: F401

from riffengine.audio.jackoutput import JackOutput
from riffengine.audio.livegain import LiveGain, db_to_gain
from riffengine.audio.ringbuffer import RingBuffer

RATE = 44100


def ones(frames: int) -> np.ndarray:
    return np.ones((frames, 2), dtype=np.float32)


def play(live: LiveGain, blocks: int, size: int = 256) -> np.ndarray:
    out = []
    for _ in range(blocks):
        block = ones(size)
        live.apply(block)
        out.append(block)
    return np.concatenate(out)


def test_unity_gain_leaves_the_block_alone():
    live = LiveGain(RATE, 1024)
    assert np.array_equal(play(live, 3), ones(768))


def test_a_steady_gain_scales_every_frame():
    live = LiveGain(RATE, 1024, gain=db_to_gain(-6.0))
    assert np.allclose(play(live, 2), 10 ** (-6 / 20))


def test_mute_ramps_to_exact_silence_within_the_ramp_and_back():
    live = LiveGain(RATE, 1024)
    live.set(1.0, muted=True)
    out = play(live, 4)[:, 0]
    ramp = live.ramp_frames
    assert 0.0 < out[0] < 1.0  # it starts moving at once, in the first block after the change
    assert np.all(np.diff(out) <= 0)  # monotonic: no click on the way down
    assert np.all(out[ramp:] == 0.0)
    live.set(1.0)
    back = play(live, 4)[:, 0]
    assert np.all(np.diff(back) >= 0) and np.all(back[ramp:] == 1.0)


def test_steps_are_bounded_by_the_ramp():
    live = LiveGain(RATE, 1024)
    live.set(0.0)
    out = play(live, 2, size=64)[:, 0]
    assert np.max(np.abs(np.diff(np.concatenate([[1.0], out])))) <= 1.0 / live.ramp_frames + 1e-6


def test_a_change_mid_ramp_continues_from_where_the_sound_is():
    live = LiveGain(RATE, 1024)
    live.set(0.0)
    first = play(live, 1, size=64)[:, 0]
    live.set(1.0)
    second = play(live, 1, size=64)[:, 0]
    assert second[0] > first[-1]  # turned round without a jump
    assert abs(second[0] - first[-1]) <= 1.0 / live.ramp_frames + 1e-6


def test_a_block_larger_than_the_buffers_jumps_to_the_target():
    live = LiveGain(RATE, 128)
    live.set(0.5)
    assert np.all(play(live, 1, size=512) == 0.5)


def test_jack_output_mutes_at_once_while_the_ring_is_still_full(jack_server):
    """The ring holds seconds of look-ahead: zeros while it still has audio come from the gain."""
    ring = RingBuffer(4 * RATE, 2)
    ring.write(ones(4 * RATE) * 0.5)
    output = JackOutput(ring, client_name="riffengine-livegain-test", connect=False)
    with JackCapture(jack_server.name, seconds=3.0, name="livegain-capture") as capture:
        output.open()
        capture.connect_from(output.jack_port_names())
        output.start()
        try:
            while ring.frames_read < RATE // 2:
                time.sleep(0.01)
            output.live.set(1.0, muted=True)
            muted_at = ring.frames_read
            while ring.frames_read < muted_at + RATE // 2:
                time.sleep(0.01)
            left_in_ring = ring.available()
        finally:
            output.close()
        heard = capture.recorded()[:, 0]
    assert left_in_ring > RATE  # the look-ahead audio was still queued ...
    sounding = np.flatnonzero(heard != 0.0)
    assert sounding.size and np.all(heard[sounding[0] : sounding[0] + RATE // 4] == 0.5)
    assert heard[-1] == 0.0  # ... and the output is silent anyway
    assert output.callback_errors == 0
