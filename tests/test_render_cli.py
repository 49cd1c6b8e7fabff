"""``riffengine render`` and ``riffengine tiny-model`` end to end on the tiny model."""

from pathlib import Path

import pytest
import soundfile
from golden import GOLDEN
from PIL import Image

from riffengine.cli import main
from riffengine.render.model import PARTS

OG_BEAT = GOLDEN / "seed_images" / "og_beat.png"
pytestmark = pytest.mark.skipif(not OG_BEAT.is_file(), reason="shared seed images not present")

FRAMES = 64 * 441  # one 64-column clip


def render_args(model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "render",
        "lofi beat",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--steps",
        "2",
        "--width",
        "64",
        "--seed-image",
        str(OG_BEAT),
        "--frames",
        str(FRAMES),
        "-o",
        str(out),
        *extra,
    ]


def test_render_writes_wav_and_png(tiny_model_dir, tmp_path, capsys):
    wav, png = tmp_path / "clip.wav", tmp_path / "clip.png"
    assert main(render_args(tiny_model_dir, wav, "--image", str(png), "--negative", "x")) == 0
    audio, rate = soundfile.read(wav, always_2d=True)
    assert rate == 44100 and audio.shape == (FRAMES, 1)
    assert 0.5 < abs(audio).max() <= 1.0
    image = Image.open(png)
    assert image.size == (64, 512) and image.mode == "RGB"
    assert image.getexif().get(11000) == 44100  # Riffusion's spectrogram tags
    assert "1 clip(s)" in capsys.readouterr().out


def test_transition_writes_k_clips_of_samples(tiny_model_dir, tmp_path):
    wav, png = tmp_path / "t.wav", tmp_path / "t.png"
    args = render_args(
        tiny_model_dir, wav, "--to", "jazz piano", "--to-seed", "3", "--transition", "3", "--image", str(png)
    )
    assert main(args) == 0
    assert soundfile.info(wav).frames == 3 * FRAMES
    assert Image.open(png).size == (3 * 64, 512)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alpha", "2"], "alpha is 2.0"),
        (["--transition", "3"], "--transition needs a side B"),
        (["--steps", "0"], "steps is 0"),
        (["--seed-image", "nope"], "seed_image 'nope' is not a built-in seed image"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(tiny_model_dir, tmp_path, capsys, extra, message):
    assert main(render_args(tiny_model_dir, tmp_path / "x.wav", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("riffengine: error:") and message in err and "\n" not in err


def test_missing_model_is_a_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(render_args(Path("riffusion/riffusion-model-v1"), tmp_path / "x.wav")) == 2
    assert "huggingface-cli download riffusion/riffusion-model-v1" in capsys.readouterr().err


def test_tiny_model_command(tmp_path, capsys):
    folder = tmp_path / "tiny"
    assert main(["tiny-model", str(folder)]) == 0
    assert all((folder / part).is_dir() for part in PARTS)
    assert main(["tiny-model", str(folder)]) == 2  # not empty any more
    assert "not an empty folder" in capsys.readouterr().err


def test_evolve_renders_the_loops_of_the_walk_on_the_bar_grid(tiny_model_dir, tmp_path, capsys):
    from riffengine.timing.tempo import loop_frames

    wav = tmp_path / "walk.wav"
    args = [
        "render",
        "lofi beat",
        "--model",
        str(tiny_model_dir),
        "--device",
        "cpu",
        "--steps",
        "1",
        "--seed-image",
        str(OG_BEAT),
        "--evolve",
        "0.5",
        "--loops",
        "2",
        "--bpm",
        "240",
        "--bars",
        "1",
        "-o",
        str(wav),
    ]
    assert main(args) == 0
    audio, rate = soundfile.read(wav, always_2d=True, dtype="float32")
    assert rate == 44100 and audio.shape == (2 * loop_frames(1, 240.0, 44100), 2)
    out = capsys.readouterr().out
    assert "loop 0: alpha 0 seeds 0/-1" in out and "loop 1: alpha 0.5 seeds 0/1" in out
    assert "2 loop(s)" in out and abs(audio).max() > 0.01


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--glide", "2"], "--glide needs a change"),
        (["--evolve", "2"], "evolve: 2.0 is out of range"),
        (["--loops", "2", "--transition", "3"], "--transition renders clips"),
        (["--loops", "0"], "--loops 0"),
    ],
)
def test_walk_flags_bad_input_is_one_line(tiny_model_dir, tmp_path, capsys, extra, message):
    args = [
        "render",
        "lofi beat",
        "--model",
        str(tiny_model_dir),
        "--device",
        "cpu",
        "-o",
        str(tmp_path / "x.wav"),
        *extra,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("riffengine: error:") and message in err and "\n" not in err, err
