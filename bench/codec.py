"""Decode benchmark: riffengine's codec against Riffusion's reference method, in one run.

Prints, for each golden image (or a given one): seconds per clip and spectral convergence (SC,
as defined in the golden README) of

* reference: torchaudio InverseMelScale (least squares) + GriffinLim(32 iterations, momentum
  0.99, random initial phase) at Riffusion's parameters, as the reference code runs today;
* riffengine: :class:`riffengine.spectrogram.Codec` (warmed up first).

On CUDA (or with ``--batch``) it also times a batch of 8 clips and gives their SC. Without the
shared golden images it decodes riffengine's built-in seed images. Usage::

    python bench/codec.py [--device cpu|cuda] [--repeat 3] [--iters 32] [IMAGE ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torchaudio

from riffengine.spectrogram import Codec, SpectrogramParams, load_image, pixels_from_image
from riffengine.spectrogram.image import channel_pixels
from riffengine.spectrogram.mel import audio_to_mel, pixels_to_mel

GOLDEN = Path(__file__).resolve().parent.parent.parent / "shared" / "golden"
# riffengine's built-in seed images: the clips decoded when the shared golden data is absent
# (it does not travel to a GPU machine).
BUILTIN = Path(__file__).resolve().parent.parent / "riffengine" / "seeds"


def spectral_convergence(reference: torch.Tensor, rebuilt: torch.Tensor) -> float:
    """||S_ref - g S_rec|| / ||S_ref|| with the least-squares gain g."""
    gain = (reference * rebuilt).sum() / (rebuilt * rebuilt).sum()
    return float((reference - gain * rebuilt).norm() / reference.norm())


def reference_decode(mel: torch.Tensor, params: SpectrogramParams, device: torch.device) -> torch.Tensor:
    """What Riffusion's image_to_audio does on torchaudio 2.11 (lstsq inverse mel + 32 GL iterations)."""
    inverse = torchaudio.transforms.InverseMelScale(
        n_stft=params.n_fft // 2 + 1,
        n_mels=params.num_frequencies,
        sample_rate=params.sample_rate,
        f_min=params.min_frequency,
        f_max=params.max_frequency,
        norm=None,
        mel_scale="htk",
    ).to(device)
    griffin = torchaudio.transforms.GriffinLim(
        n_fft=params.n_fft,
        n_iter=32,
        win_length=params.win_length,
        hop_length=params.hop_length,
        window_fn=torch.hann_window,
        power=1.0,
        momentum=0.99,
        rand_init=True,
    ).to(device)
    return griffin(inverse(mel))


def timed(fn, device: torch.device, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--iters", type=int, default=32, help="riffengine Griffin-Lim iterations")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--batch", action="store_true", help="time a batch of 8 on the CPU too")
    args = parser.parse_args()
    device = torch.device(args.device)
    images = args.images or sorted(GOLDEN.glob("*_*.png")) or sorted(BUILTIN.glob("*_*.png"))
    params = SpectrogramParams()
    print(f"device {device}, torch threads {torch.get_num_threads()}, torch {torch.__version__}")

    start = time.perf_counter()
    codec = Codec(device, params, n_iter=args.iters)
    codec.warm_up()
    print(f"riffengine warm-up (once per process): {time.perf_counter() - start:.2f} s")

    rows = []
    for path in images:
        image = load_image(path)
        rgb = pixels_from_image(image).unsqueeze(0)
        max_value = float(image.getexif().get(11080, 30e6))
        s_ref = pixels_to_mel(channel_pixels(rgb, False), params.power_for_image, max_value)[0, 0]

        def sc_of(audio: torch.Tensor) -> float:
            return spectral_convergence(s_ref, audio_to_mel(audio.float().cpu().reshape(1, -1), params)[0])

        ours_s, ours = timed(lambda: codec.decode_pixels(rgb), device, args.repeat)
        rows.append((path.stem, "riffengine", ours_s, sc_of(ours), ours.shape[-1]))
        if not args.skip_reference:
            mel = pixels_to_mel(channel_pixels(rgb, False), params.power_for_image, 30e6)[0].to(device)
            torch.manual_seed(0)
            ref_s, ref = timed(lambda: reference_decode(mel, params, device), device, 1)
            rows.append((path.stem, "reference", ref_s, sc_of(ref), ref.shape[-1]))

    print(f"{'clip':28} {'method':11} {'s/clip':>8} {'SC':>7} {'samples':>8}")
    for clip, method, seconds, sc, samples in rows:
        print(f"{clip:28} {method:11} {seconds:8.3f} {sc:7.4f} {samples:8d}")

    if device.type == "cuda" or args.batch:
        size = load_image(images[0]).size
        images = [p for p in images if load_image(p).size == size]  # one batch: one size
        batch = torch.stack([pixels_from_image(load_image(p)) for p in (images * 8)[:8]]).to(device)
        repeat = max(args.repeat, 5) if device.type == "cuda" else args.repeat
        seconds, audio = timed(lambda: codec.decode_pixels(batch), device, repeat)
        scs = []
        for i, path in enumerate((images * 8)[:8]):
            image = load_image(path)
            rgb = pixels_from_image(image).unsqueeze(0)
            s_ref = pixels_to_mel(channel_pixels(rgb, False), params.power_for_image,
                                  float(image.getexif().get(11080, 30e6)))[0, 0]
            scs.append(spectral_convergence(s_ref, audio_to_mel(audio[i].float().cpu().reshape(1, -1), params)[0]))
        print(f"batch of 8 on {device}: {seconds * 1000:.1f} ms per batch, {seconds * 1000 / 8:.2f} ms per clip; "
              f"SC median {statistics.median(scs):.4f}, max {max(scs):.4f}")


if __name__ == "__main__":
    main()
