"""The codec against Riffusion's reference data: exact encoding, decoding quality, formats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from golden import CLIPS, GOLDEN, reference_metric
from PIL import Image

from riffengine.spectrogram import Codec, LoopInfo, SpectrogramParams, decode, encode, image_loop, pixels_from_image
from riffengine.spectrogram.audio_io import load_audio
from riffengine.spectrogram.image import channel_pixels
from riffengine.spectrogram.mel import audio_to_mel, pixels_to_mel, resample_loop

PARAMS = SpectrogramParams()


def spectral_convergence(reference: torch.Tensor, rebuilt: torch.Tensor) -> float:
    gain = (reference * rebuilt).sum() / (rebuilt * rebuilt).sum()
    return float((reference - gain * rebuilt).norm() / reference.norm())


def mel_of_image(image: Image.Image, max_value: float) -> torch.Tensor:
    return pixels_to_mel(channel_pixels(pixels_from_image(image), False), 0.25, max_value)[0]


def mel_of_audio(audio: np.ndarray) -> torch.Tensor:
    return audio_to_mel(torch.from_numpy(audio[:1]), PARAMS)[0]


@pytest.fixture(scope="module")
def decoded() -> dict[str, np.ndarray]:
    """Each golden image decoded once by riffengine (the slow part of this module)."""
    return {clip: decode(Image.open(GOLDEN / f"{clip}.png"))[0] for clip in CLIPS}


@pytest.mark.parametrize("clip", CLIPS)
def test_encoding_reproduces_the_reference_image(clip: str) -> None:
    audio, rate = load_audio(GOLDEN / f"{clip}.wav")
    ours = encode(audio, rate)
    ref = Image.open(GOLDEN / f"{clip}.png")
    assert ours.size == ref.size == (512, 512)
    a = np.asarray(ours.convert("RGB"), dtype=np.int16)
    b = np.asarray(ref.convert("RGB"), dtype=np.int16)
    diff = np.abs(a - b)
    assert (diff == 0).mean() >= 0.999
    assert diff.max() <= 1
    ours_exif, ref_exif = dict(ours.getexif()), dict(ref.getexif())
    for tag in range(11000, 11071):
        assert ours_exif.get(tag) == ref_exif.get(tag), tag
    # the max mel value agrees to float32 precision (within one float32 step)
    assert abs(ours_exif[11080] - ref_exif[11080]) <= float(np.spacing(np.float32(ref_exif[11080])))


def test_mono_image_is_grey_with_low_frequencies_at_the_bottom() -> None:
    t = np.arange(44100) / 44100
    audio = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)[None]
    pixels = np.asarray(encode(audio, 44100).convert("RGB"))
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    darkest_row = pixels[:, 50, 0].argmin()
    assert darkest_row > 400  # 200 Hz sits low in the 0-10 kHz mel range, i.e. near the bottom


@pytest.mark.parametrize("clip", CLIPS)
def test_decoding_beats_the_reference_quality(clip: str, decoded: dict[str, np.ndarray]) -> None:
    ref = Image.open(GOLDEN / f"{clip}.png")
    audio = decoded[clip]
    assert audio.shape == (1, 225351)
    sc = spectral_convergence(mel_of_image(ref, ref.getexif()[11080]), mel_of_audio(audio))
    assert sc <= reference_metric(clip, "recon_lstsq", "spectral_convergence")


@pytest.mark.parametrize("clip", CLIPS)
def test_decoded_audio_has_headroom_and_no_clipping(clip: str, decoded: dict[str, np.ndarray]) -> None:
    audio = decoded[clip]
    assert np.isfinite(audio).all()
    peak = np.abs(audio).max()
    assert 0.85 < peak < 0.9  # -1 dBFS
    assert (np.abs(audio) >= peak * 0.9999).sum() < 5  # no flat-topped run of clipped samples


@pytest.mark.parametrize("clip", CLIPS)
def test_round_trip_across_implementations(clip: str, decoded: dict[str, np.ndarray]) -> None:
    ref = np.asarray(Image.open(GOLDEN / f"{clip}.png").convert("RGB"))[..., 0].astype(np.float64)
    again = np.asarray(encode(decoded[clip], 44100).convert("RGB"))[..., 0].astype(np.float64)
    mae = np.abs(ref - again).mean()
    assert mae <= reference_metric(clip, "recon_lstsq", "reencoded_image_mae_8bit")


@pytest.mark.parametrize("name", ["og_beat", "agile", "vibes"])
def test_riffusion_seed_images_without_exif_decode(name: str) -> None:
    image = Image.open(GOLDEN / "seed_images" / f"{name}.png")
    assert 11000 not in image.getexif()
    audio, rate = decode(image, n_iter=4)
    assert rate == 44100 and audio.shape == (1, 225351)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.5


def test_image_modes_decode_alike() -> None:
    rgb = Image.open(GOLDEN / "a_drum_bass_100bpm.png")
    grey = rgb.convert("L")
    palette = grey.convert("P")
    outs = [decode(im, n_iter=2)[0] for im in (rgb, grey, palette)]
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
    np.testing.assert_allclose(outs[0], outs[2], atol=1e-5)


def test_width_follows_length_and_rate() -> None:
    for samples, rate in ((22050, 44100), (48000, 48000), (1000, 44100)):
        audio = np.random.default_rng(0).standard_normal((1, samples)).astype(np.float32) * 0.1
        image = encode(audio, rate)
        at_44k = round(samples * 44100 / rate)
        assert image.width == 1 + at_44k // 441
        assert image.height == 512


def test_stereo_keeps_two_channels() -> None:
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 300 * t)
    right = 0.5 * np.sin(2 * np.pi * 3000 * t)
    image = encode(np.stack([left, right]).astype(np.float32), 44100, stereo=True)
    pixels = np.asarray(image)
    assert (pixels[..., 0] == 0).all()
    assert image.getexif()[11005] == 1
    assert pixels[:, :, 1].argmin(axis=0)[50] > pixels[:, :, 2].argmin(axis=0)[50]  # left is lower
    audio, _ = decode(image, n_iter=4)
    assert audio.shape == (2, 441 * (image.width - 1))
    mel = audio_to_mel(torch.from_numpy(audio), PARAMS)
    assert mel[0].sum(dim=-1).argmax() < mel[1].sum(dim=-1).argmax()


def test_more_channels_mix_to_mono() -> None:
    audio = np.random.default_rng(1).standard_normal((4, 8820)).astype(np.float32) * 0.1
    image = encode(audio, 44100)
    assert image.getexif()[11005] == 0 and image.width == 21


def test_silence_decodes_to_silence() -> None:
    white = Image.new("RGB", (64, 512), (255, 255, 255))
    audio, _ = decode(white, n_iter=2)
    assert np.isfinite(audio).all() and not audio.any()


def test_batched_decode_equals_one_by_one() -> None:
    names = ("og_beat", "marim")
    images = [pixels_from_image(Image.open(GOLDEN / "seed_images" / f"{n}.png"))[..., :128] for n in names]
    codec = Codec("cpu", n_iter=4)
    batch = codec.decode_pixels(torch.stack(images))
    for i, px in enumerate(images):
        torch.testing.assert_close(batch[i], codec.decode_pixels(px)[0], atol=1e-5, rtol=0)


def test_stretch_gives_exact_length_and_keeps_pitch() -> None:
    t = np.arange(44100 * 2) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    pixels = pixels_from_image(encode(tone, 44100))
    codec = Codec("cpu", n_iter=8)
    for target in (100000, 123457):
        audio = codec.decode_pixels(pixels, num_samples=target)
        assert audio.shape == (1, 1, target)
        spectrum = np.abs(np.fft.rfft(audio[0, 0, 10000:60000].numpy()))
        peak_hz = spectrum.argmax() * 44100 / 50000
        assert abs(peak_hz - 440) < 5


def test_resample_loop_wraps_and_keeps_the_period() -> None:
    values = torch.arange(8, dtype=torch.float32)
    assert resample_loop(values, 8, 8, 8).tolist() == values.tolist()
    doubled = resample_loop(values, 8, 16, 16)
    assert doubled[::2].tolist() == values.tolist()
    assert doubled[15].item() == pytest.approx(3.5)  # between the last column and the first


def test_loop_encoding_records_tempo_and_fills_512_columns() -> None:
    bpm, bars = 120.0, 2
    samples = int(bars * 4 * 60 / bpm * 44100)
    audio = np.random.default_rng(2).standard_normal((1, samples)).astype(np.float32) * 0.1
    image = encode(audio, 44100, loop=LoopInfo(bpm, bars))
    assert image.size == (512, 512)
    assert image_loop(image) == LoopInfo(bpm, bars, 4)
    assert image_loop(Image.open(GOLDEN / "seed_images" / "og_beat.png")) is None
