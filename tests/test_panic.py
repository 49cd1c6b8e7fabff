"""The panic stage of the callback: at once, in the loop's phase, handed back to the ring."""

import numpy as np

from riffengine.audio.panic import PanicRequest, PanicStage

RATE = 44100
BLOCK = 256


def loop(frames: int) -> np.ndarray:
    ramp = (np.arange(frames, dtype=np.float32) / frames) - 0.5
    return np.stack([ramp, -ramp], axis=1)


def run(stage: PanicStage, start: int, blocks: int, level: float = 0.25) -> np.ndarray:
    out = []
    for i in range(blocks):
        block = np.full((BLOCK, 2), level, dtype=np.float32)
        stage.apply(block, start + i * BLOCK)
        out.append(block)
    return np.concatenate(out)


def expected(request: PanicRequest, start: int, n: int) -> np.ndarray:
    idx = (np.arange(start, start + n) - request.origin) % len(request.frames)
    return request.frames[idx]


def test_no_request_leaves_the_ring_audio_alone():
    stage = PanicStage(RATE, 4096)
    assert np.all(run(stage, 0, 4) == 0.25)


def test_panic_fades_in_at_once_and_then_plays_the_loop_in_its_phase():
    stage = PanicStage(RATE, 4096)
    request = PanicRequest(loop(30000), origin=50000, until=50000)
    stage.request = request
    start = 10000
    out = run(stage, start, 40)
    want = expected(request, start, len(out))
    fade = stage.fade_frames
    # an equal-power crossfade from the first frame on: no waiting for the ring
    phase = (np.arange(fade) + 0.5) * (np.pi / 2 / fade)
    mix = 0.25 * np.cos(phase)[:, None] + want[:fade] * np.sin(phase)[:, None]
    np.testing.assert_allclose(out[:fade], mix, atol=1e-6)
    assert np.array_equal(out[fade:], want[fade:])


def test_it_hands_back_to_the_ring_once_the_ring_plays_the_loop():
    stage = PanicStage(RATE, 4096)
    request = PanicRequest(loop(3000), origin=5000, until=5000)
    stage.request = request
    run(stage, 0, 24)  # up to frame 6144: past until
    assert stage.finished is request
    assert np.all(run(stage, 6144, 4) == 0.25)


def test_it_keeps_the_loop_past_until_while_the_ring_runs_dry():
    stage = PanicStage(RATE, 4096)
    request = PanicRequest(loop(3000), origin=5000, until=5000)
    stage.request = request
    short = np.full((BLOCK, 2), 0.25, dtype=np.float32)
    for i in range(24):  # past until (frame 6144), the fade done; the ring gave half of each block
        stage.apply(short, i * BLOCK, from_ring=BLOCK // 2)
    assert stage.finished is None  # what filled the rest must not be heard
    whole = np.full((BLOCK, 2), 0.25, dtype=np.float32)
    position = 24 * BLOCK
    stage.apply(whole, position, from_ring=BLOCK)
    assert stage.finished is request
    np.testing.assert_array_equal(whole, expected(request, position, BLOCK))  # this block still the loop
    assert np.all(run(stage, position + BLOCK, 2) == 0.25)  # then the ring


def test_a_loop_shorter_than_the_block_wraps():
    stage = PanicStage(RATE, 4096)
    request = PanicRequest(loop(100), origin=0, until=10**9)
    stage.request = request
    out = run(stage, 0, 20)
    fade = stage.fade_frames
    assert np.array_equal(out[fade:], expected(request, 0, len(out))[fade:])


def test_a_second_panic_while_faded_in_crossfades_from_the_first_loop_to_the_second():
    stage = PanicStage(RATE, 4096)
    first = PanicRequest(loop(30000), origin=0, until=10**9)
    stage.request = first
    run(stage, 0, 20)
    second = PanicRequest(loop(20000) * 0.5, origin=7, until=10**9)  # another loop, another phase
    stage.request = second
    start = 20 * BLOCK
    out = run(stage, start, 20)  # the ring's own level (0.25) is not heard any more
    fade = stage.fade_frames
    phase = (np.arange(fade) + 0.5) * (np.pi / 2 / fade)
    old, new = expected(first, start, fade), expected(second, start, len(out))
    mix = old * np.cos(phase)[:, None] + new[:fade] * np.sin(phase)[:, None]
    np.testing.assert_allclose(out[:fade], mix, atol=1e-6)
    assert np.array_equal(out[fade:], new[fade:])
    assert stage.began is not None and stage.began[0] is second
