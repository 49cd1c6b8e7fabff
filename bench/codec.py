"""Decode benchmark: riffengine's codec against Riffusion's reference method, in one run.

For each image it prints seconds per clip and spectral convergence (SC, as defined in the
golden README; lower is better) of

* reference: torchaudio InverseMelScale (least squares) + GriffinLim(32 iterations, momentum
  0.99, random initial phase) at Riffusion's parameters, as the reference code runs today
  (:func:`riffengine.spectrogram.reference.reference_decode`);
* riffengine: :class:`riffengine.spectrogram.Codec` (warmed up first),

and the ratio of the two SCs (riffengine / reference: below 1 is better than the reference).
With ``--corpus DIR`` (made by ``scripts/make_corpus.py``) the clips are shown in their two
halves, tune and held-out, each with its worst and mean ratio. ``--whole-process`` also times
``riffengine decode`` and a reference decode as whole processes (start-up included) on the
first image. On CUDA (or with ``--batch``) it also times a batch of 8 clips and gives their SC.
Without the shared golden images it decodes riffengine's built-in seed images. Usage::

    python scripts/make_corpus.py                     # once: /tmp/riffengine-corpus
    python bench/codec.py --corpus /tmp/riffengine-corpus --whole-process
    python bench/codec.py [--device cpu|cuda] [--repeat 3] [--iters 40] [IMAGE ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from riffengine.spectrogram import Codec, SpectrogramParams, load_image, pixels_from_image  # noqa: E402
from riffengine.spectrogram.phase import DEFAULT_ITERATIONS  # noqa: E402
from riffengine.spectrogram.reference import audio_sc, image_mel, reference_decode  # noqa: E402

GOLDEN = ROOT.parent / "shared" / "golden"
# riffengine's built-in seed images: the clips decoded when the shared golden data is absent
# (it does not travel to a GPU machine).
BUILTIN = ROOT / "riffengine" / "seeds"


def load_corpus_script():
    spec = importlib.util.spec_from_file_location("make_corpus", ROOT / "scripts" / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Row:
    clip: str
    half: str
    ours_s: float
    ours_sc: float
    ours_cpu: float
    ref_s: float | None = None
    ref_sc: float | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.ref_sc is None else self.ours_sc / self.ref_sc


def timed_with_cpu(fn, device: torch.device, repeat: int) -> tuple[float, float, object]:
    """Median wall seconds, median CPU seconds of this process (all its threads) and the result."""
    times, cpu, result = [], [], None
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(times), statistics.median(cpu), result


def timed(fn, device: torch.device, repeat: int) -> tuple[float, object]:
    seconds, _, result = timed_with_cpu(fn, device, repeat)
    return seconds, result


def measure(path: Path, half: str, codec: Codec, args: argparse.Namespace) -> Row:
    params = codec.params
    rgb = pixels_from_image(load_image(path)).unsqueeze(0)
    mel = image_mel(rgb[0], params)
    ours_s, ours_cpu, ours = timed_with_cpu(lambda: codec.decode_pixels(rgb), codec.device, args.repeat)
    row = Row(path.stem, half, ours_s, audio_sc(mel, ours, params), ours_cpu)
    if not args.skip_reference:
        row.ref_s, ref = timed(lambda: reference_decode(mel.to(codec.device), params), codec.device, 1)
        row.ref_sc = audio_sc(mel, ref, params)
    return row


def print_header() -> None:
    print(f"{'clip':26} {'half':8} {'ours s':>7} {'CPU s':>6} {'ours SC':>8} {'ref s':>7} {'ref SC':>8} {'ratio':>6}")


def print_row(r: Row) -> None:
    ref = f"{r.ref_s:7.3f} {r.ref_sc:8.4f} {r.ratio:6.3f}" if r.ref_sc is not None else ""
    print(f"{r.clip:26} {r.half:8} {r.ours_s:7.3f} {r.ours_cpu:6.3f} {r.ours_sc:8.4f} {ref}", flush=True)


def print_summary(rows: list[Row]) -> None:
    halves = sorted({r.half for r in rows}, key=["tune", "held-out", "golden"].index) if rows else []
    groups = [(h, [r for r in rows if r.half == h]) for h in halves]
    if len(groups) > 1:
        groups.append(("all", rows))
    for name, group in groups:
        seconds = [r.ours_s for r in group]
        line = (
            f"{name:8} {len(group):2d} clips: riffengine {statistics.mean(seconds):.3f} s/clip "
            f"(median {statistics.median(seconds):.3f}, max {max(seconds):.3f}, "
            f"CPU {statistics.mean(r.ours_cpu for r in group):.3f})"
        )
        rated = [r for r in group if r.ratio is not None]
        if rated:
            worst = max(rated, key=lambda r: r.ratio)
            mean = statistics.mean(r.ratio for r in rated)
            ref_s = statistics.mean(r.ref_s for r in rated)
            line += f", reference {ref_s:.3f} s/clip; SC ratio worst {worst.ratio:.3f} ({worst.clip}), mean {mean:.3f}"
        print(line)


def whole_process_seconds(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_whole_process(image: Path, repeat: int) -> None:
    """``riffengine decode`` against a reference decode, each as a whole Python process."""
    with tempfile.TemporaryDirectory(prefix="bench_codec_") as tmp:
        ours = whole_process_seconds(
            [sys.executable, "-m", "riffengine.cli", "decode", str(image), "-o", f"{tmp}/ours.wav"], repeat
        )
        ref = whole_process_seconds(
            [sys.executable, __file__, "--reference-decode", str(image), "-o", f"{tmp}/ref.wav"], repeat
        )
    print(f"whole process on {image.name}: riffengine decode {ours:.2f} s, reference {ref:.2f} s ({ours / ref:.0%})")


def reference_to_file(image: Path, output: Path) -> None:
    """One reference decode from image to WAV file: what the whole-process timing runs."""
    from riffengine.spectrogram.audio_io import save_audio

    params = SpectrogramParams()
    audio = reference_decode(image_mel(pixels_from_image(load_image(image)), params), params)
    audio = audio / audio.abs().max().clamp(min=1e-30) * 10 ** (-1 / 20)
    save_audio(output, audio.reshape(1, -1).numpy(), params.sample_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--corpus", type=Path, help="a folder made by scripts/make_corpus.py")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--iters", type=int, default=DEFAULT_ITERATIONS, help="riffengine Griffin-Lim iterations")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--whole-process", action="store_true", help="also time whole decode processes")
    parser.add_argument("--batch", action="store_true", help="time a batch of 8 on the CPU too")
    parser.add_argument("--reference-decode", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("-o", "--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_decode:
        reference_to_file(args.reference_decode, args.output)
        return
    device = torch.device(args.device)
    default = sorted(GOLDEN.glob("*_*.png")) or sorted(BUILTIN.glob("*_*.png"))
    clips = [(path, "golden") for path in args.images or ([] if args.corpus else default)]
    if args.corpus:
        paths = sorted(args.corpus.glob("*.png"))
        if not paths:
            raise SystemExit(f"bench/codec.py: no images in {args.corpus}; run scripts/make_corpus.py first")
        tune, _ = load_corpus_script().split_halves([p.stem for p in paths])
        clips += [(p, "tune" if p.stem in tune else "held-out") for p in paths]
    print(f"device {device}, torch threads {torch.get_num_threads()}, torch {torch.__version__}")

    start = time.perf_counter()
    codec = Codec(device, SpectrogramParams(), n_iter=args.iters)
    codec.warm_up()
    print(f"riffengine warm-up (once per process): {time.perf_counter() - start:.2f} s", flush=True)

    print_header()
    rows = []
    for path, half in clips:
        rows.append(measure(path, half, codec, args))
        print_row(rows[-1])
    print_summary(rows)

    if args.whole_process:
        print_whole_process(clips[0][0], max(1, min(args.repeat, 3)))

    if device.type == "cuda" or args.batch:
        print_batch([path for path, _ in clips], codec, device, args.repeat)


def print_batch(images: list[Path], codec: Codec, device: torch.device, repeat: int) -> None:
    """Time one batch of 8 images of one size, and give each clip's SC against its image."""
    size = load_image(images[0]).size
    images = ([p for p in images if load_image(p).size == size] * 8)[:8]  # one batch: one size
    batch = torch.stack([pixels_from_image(load_image(p)) for p in images]).to(device)
    repeat = max(repeat, 5) if device.type == "cuda" else repeat
    seconds, audio = timed(lambda: codec.decode_pixels(batch), device, repeat)
    params = SpectrogramParams()
    scs = []
    for i, path in enumerate(images):
        image = load_image(path)
        mel = image_mel(pixels_from_image(image), params, float(image.getexif().get(11080, 30e6)))
        scs.append(audio_sc(mel, audio[i], params))
    print(
        f"batch of 8 on {device}: {seconds * 1000:.1f} ms per batch, {seconds * 1000 / 8:.2f} ms per clip; "
        f"SC median {statistics.median(scs):.4f}, max {max(scs):.4f}"
    )


if __name__ == "__main__":
    main()
