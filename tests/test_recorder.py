"""Recorder: exact frames on disk, readable while recording and after SIGKILL, errors reported."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile

from riffengine.audio.recorder import Recorder, WavWriter, part_path
from riffengine.errors import UserError


def signal_frames(n, channels=2, seed=7):
    return np.random.default_rng(seed).uniform(-0.9, 0.9, (n, channels)).astype(np.float32)


def read_wav(path):
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data, rate


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_closed_recording_holds_exactly_the_tapped_frames_float32(tmp_path):
    frames = signal_frames(44100)
    path = tmp_path / "take.wav"
    with Recorder(path, sync_interval=0.1) as rec:
        for block in np.array_split(frames, 173):
            assert rec.tap(block) == len(block)
    data, rate = read_wav(path)
    assert rate == 44100
    np.testing.assert_array_equal(data, frames)
    assert rec.frames_recorded == 44100 and rec.frames_dropped == 0 and rec.error is None
    info = soundfile.info(str(path))
    assert info.subtype == "FLOAT" and info.channels == 2


def test_int16_recording_is_rounded_and_clipped(tmp_path):
    frames = np.array([[0.0, 1.0], [-1.0, 0.5], [2.0, -3.0], [1 / 32767, -0.25]], np.float32)
    path = tmp_path / "take16.wav"
    with Recorder(path, sample_format="int16") as rec:
        rec.tap(frames)
    data, _ = soundfile.read(str(path), dtype="int16", always_2d=True)
    np.testing.assert_array_equal(data, [[0, 32767], [-32767, 16384], [32767, -32767], [1, -8192]])
    assert soundfile.info(str(path)).subtype == "PCM_16"


def test_file_is_readable_while_recording_before_close(tmp_path):
    frames = signal_frames(3 * 44100)
    path = tmp_path / "live.wav"
    rec = Recorder(path, sync_interval=0.1)
    rec.start()
    try:
        rec.tap(frames[: 2 * 44100])
        # Without close(), the header must catch up with the data by itself.
        assert wait_until(lambda: soundfile.info(str(path)).frames == 2 * 44100)
        data, _ = read_wav(path)
        np.testing.assert_array_equal(data, frames[: 2 * 44100])
        rec.tap(frames[2 * 44100 :])
    finally:
        rec.close()
    np.testing.assert_array_equal(read_wav(path)[0], frames)


KILLED_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from riffengine.audio.recorder import Recorder
    frames = np.random.default_rng(7).uniform(-0.9, 0.9, (60 * 44100, 2)).astype(np.float32)
    rec = Recorder(sys.argv[1], sync_interval=0.5)
    rec.start()
    for i in range(0, len(frames), 4410):  # 100 ms blocks, roughly in real time
        rec.tap(frames[i : i + 4410])
        time.sleep(0.02)
    time.sleep(60)
    """
)


def test_file_survives_sigkill_with_the_frames_written_so_far(tmp_path):
    path = tmp_path / "killed.wav"
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(path)])
    try:
        assert wait_until(
            lambda: path.exists() and path.stat().st_size > 44 and soundfile.info(str(path)).frames >= 44100, 20
        )
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    data, rate = read_wav(path)
    assert rate == 44100 and len(data) >= 44100
    np.testing.assert_array_equal(data, signal_frames(60 * 44100)[: len(data)])


def test_unwritable_path_is_a_user_error_naming_the_path(tmp_path):
    bad = tmp_path / "no-such-folder" / "take.wav"
    with pytest.raises(UserError, match="no-such-folder"):
        Recorder(bad).start()
    with pytest.raises(UserError, match="float32"):
        Recorder(tmp_path / "x.wav", sample_format="mp3")


FULL_DISK_CHILD = textwrap.dedent(
    """
    import resource, signal, sys, time
    import numpy as np
    from riffengine.audio.recorder import Recorder
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    errors = []
    rec = Recorder(sys.argv[1], sync_interval=0.05, on_error=errors.append)
    rec.start()
    block = np.full((4410, 2), 0.25, np.float32)
    kept = 0
    for _ in range(40):                                # about 1.4 MB: far past the limit
        kept += rec.tap(block)
        time.sleep(0.005)
    rec.close()
    print("KEPT", kept, "ERRORS", len(errors), type(errors[0]).__name__ if errors else "-", rec.frames_recorded)
    """
)


def test_disk_full_is_reported_and_tapping_carries_on(tmp_path):
    path = tmp_path / "full.wav"
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    kept, errors, kind, recorded = int(words[1]), int(words[3]), words[4], int(words[5])
    assert kept == 40 * 4410  # the audio side never noticed
    assert errors == 1 and kind == "OSError"
    assert recorded < kept
    # What made it to disk before the error is still a readable WAV of the right samples.
    data, _ = read_wav(path)
    assert 0 < len(data) <= recorded
    assert np.all(data == 0.25)


def test_ring_overflow_drops_frames_counts_them_and_reports(tmp_path):
    reported = []
    rec = Recorder(tmp_path / "slow.wav", buffer_seconds=0.01, on_error=reported.append)  # 441 frames
    assert rec.tap(signal_frames(1000)) == 441  # writer not started: the ring fills up
    assert rec.frames_dropped == 559
    rec.start()
    rec.close()
    assert any("559" in str(e) for e in reported)
    assert len(read_wav(tmp_path / "slow.wav")[0]) == 441


def test_writer_rolls_over_to_a_new_part_at_the_size_limit(tmp_path, monkeypatch):
    rec = Recorder(tmp_path / "long.wav")
    monkeypatch.setattr(WavWriter, "room", property(lambda self: 1000 - self.frames))
    frames = signal_frames(2500)
    with rec:
        rec.tap(frames)
    parts = [part_path(tmp_path / "long.wav", k) for k in (1, 2, 3)]
    assert [p.name for p in parts] == ["long.wav", "long.part2.wav", "long.part3.wav"]
    joined = np.concatenate([read_wav(p)[0] for p in parts])
    np.testing.assert_array_equal(joined, frames)
