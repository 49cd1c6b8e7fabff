"""`riffengine encode` / `decode` end to end, and their answers to bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from golden import GOLDEN
from PIL import Image

from riffengine.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_encode_then_decode_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = np.arange(48000) / 48000
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 880 * t)]).T * 0.3
    src = tmp_path / "in.flac"
    soundfile.write(src, stereo, 48000)
    png = tmp_path / "x.png"
    code, out, _ = run_cli(capsys, "encode", str(src), "-o", str(png))
    assert code == 0 and "101 columns, mono" in out
    image = Image.open(png)
    assert image.size == (1 + 44100 // 441, 512) and image.getexif()[11000] == 44100
    wav = tmp_path / "x.wav"
    code, out, _ = run_cli(capsys, "decode", str(png), "-o", str(wav), "--iters", "4")
    assert code == 0
    info = soundfile.info(wav)
    assert (info.samplerate, info.channels, info.frames) == (44100, 1, 441 * 100)


def test_decode_golden_image_length(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "og.wav"
    code, _, _ = run_cli(capsys, "decode", str(GOLDEN / "seed_images" / "og_beat.png"), "-o", str(wav), "--iters", "2")
    assert code == 0
    data, rate = soundfile.read(wav)
    assert rate == 44100 and data.shape == (225351,)
    assert np.abs(data).max() < 0.95


def test_encode_seed_loop_records_tempo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop = np.random.default_rng(0).standard_normal(int(44100 * 4)).astype(np.float32) * 0.1
    src = tmp_path / "loop.wav"
    soundfile.write(src, loop, 44100)
    png = tmp_path / "seed.png"
    code, out, _ = run_cli(capsys, "encode", str(src), "--bpm", "120", "--bars", "2", "-o", str(png))
    assert code == 0 and "2 bars at 120 BPM" in out
    exif = Image.open(png).getexif()
    assert Image.open(png).size == (512, 512)
    assert (exif[11100], exif[11110], exif[11120]) == (120.0, 2, 4)


def write_tall(tmp_path: Path) -> Path:
    path = tmp_path / "tall.png"
    Image.new("RGB", (64, 300), "white").save(path)
    return path


def write_bad_rate(tmp_path: Path) -> Path:
    image = Image.new("RGB", (64, 512), "white")
    exif = image.getexif()
    exif[11000] = 1000
    path = tmp_path / "rate.png"
    image.save(path, exif=exif.tobytes())
    return path


def write_text(tmp_path: Path) -> Path:
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    return path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (lambda d: ["decode", str(d / "missing.png"), "-o", str(d / "x.wav")], "missing.png: no such file"),
        (lambda d: ["decode", str(write_text(d)), "-o", str(d / "x.wav")], "notes.png: not an image"),
        (lambda d: ["decode", str(write_tall(d)), "-o", str(d / "x.wav")], "300 pixels high"),
        (lambda d: ["decode", str(write_bad_rate(d)), "-o", str(d / "x.wav")], "sample rate 1000 Hz"),
        (
            lambda d: ["decode", str(GOLDEN / "seed_images" / "og_beat.png"), "-o", str(d / "no" / "x.wav")],
            "cannot write",
        ),
        (
            lambda d: [
                "decode",
                str(GOLDEN / "seed_images" / "og_beat.png"),
                "-o",
                str(d / "x.wav"),
                "--device",
                "tpu",
            ],
            "unknown device",
        ),
        (lambda d: ["encode", str(d / "missing.wav"), "-o", str(d / "x.png")], "missing.wav: no such file"),
        (lambda d: ["encode", str(write_text(d)), "-o", str(d / "x.png")], "cannot read audio"),
        (
            lambda d: ["encode", str(GOLDEN / "a_drum_bass_100bpm.wav"), "-o", str(d / "x.png"), "--bpm", "100"],
            "--bpm and --bars go together",
        ),
        (
            lambda d: [
                "encode",
                str(GOLDEN / "a_drum_bass_100bpm.wav"),
                "-o",
                str(d / "x.png"),
                "--bpm",
                "60",
                "--bars",
                "4",
            ],
            "lasts 5.110 s",
        ),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args, expected: str) -> None:
    code, _, err = run_cli(capsys, *args(tmp_path))
    assert code == 2
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_installed_command_reports_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "riffengine.cli", "decode", str(tmp_path / "nope.png"), "-o", str(tmp_path / "x.wav")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"riffengine: error: {tmp_path / 'nope.png'}: no such file; check the path"
