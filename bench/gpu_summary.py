"""The figures of a ``bench/gpu.sh`` run against issue 15's targets, as text (and figures.json).

    python bench/gpu_summary.py OUT WORK [--tiny 1]

Reads the JSON that bench/render.py wrote under WORK and the logs under OUT; writes
OUT/figures.json and prints the summary. Figures only: a missed target is reported, not raised.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

TARGETS = {"b_ms": 150.0, "b_speedup": 2.5, "c_ms": 40.0, "codec_ms": 10.0}


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def grep(path: Path, pattern: str) -> list[str]:
    """Lines of a log matching a regular expression (none when the log is missing)."""
    try:
        return [line.strip() for line in path.read_text(errors="replace").splitlines() if re.search(pattern, line)]
    except OSError:
        return []


def verdict(ok: bool | None, tiny: bool) -> str:
    if tiny:
        return "(tiny/CPU: no target)"
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def ms(figures: dict, key: str) -> float | None:
    return figures[key] * 1000.0 if key in figures else None


def render_lines(eager: dict, compiled: dict, restart: dict, tiny: bool) -> list[str]:
    """The render variants, best of eager and compiled, against the targets."""
    lines = []
    a = ms(eager, "a")
    for name, figures in (("eager levers", eager), (f"compiled ({compiled.get('compile')})", compiled)):
        for key in ("b_no_levers", "b", "c", "d"):
            value = ms(figures, key)
            if value is not None:
                ratio = f", {a / value:.2f}x faster than (a)" if a else ""
                lines.append(
                    f"  {key:12s} {name:28s} {value:9.1f} ms per clip "
                    f"({figures['clip_seconds'] * 1000 / value:.1f}x real time){ratio}"
                )
    best_b = min([v for v in (ms(eager, "b"), ms(compiled, "b")) if v is not None], default=None)
    best_c = min([v for v in (ms(eager, "c"), ms(compiled, "c")) if v is not None], default=None)
    lines.insert(0, f"  (a) stock pipeline + reference decode: {a:.1f} ms" if a else "  (a): not run")
    ok_b = None if best_b is None else best_b <= TARGETS["b_ms"]
    ok_speed = None if best_b is None or not a else a / best_b >= TARGETS["b_speedup"]
    ok_c = None if best_c is None else best_c <= TARGETS["c_ms"]
    lines.append(
        f"  target (b) <= {TARGETS['b_ms']:.0f} ms: {verdict(ok_b, tiny)}; "
        f"(b) >= {TARGETS['b_speedup']}x (a): {verdict(ok_speed, tiny)}; "
        f"(c) <= {TARGETS['c_ms']:.0f} ms: {verdict(ok_c, tiny)}"
    )
    check = eager.get("image_check")
    if check:
        lines.append(
            f"  (b) image vs (a): mean {check['mean']:.3f}, p99 {check['p99']:.0f}, "
            f"max {check['max']:.0f} levels -> {check['verdict']}"
        )
    for key, label in (("first_render", "first compile (cold cache)"),):
        if key in compiled:
            lines.append(f"  {label}: {compiled[key]:.1f} s (model build {compiled['model_build']:.1f} s)")
    if "first_render" in restart:
        lines.append(
            f"  restart, warm compile cache: first render {restart['first_render']:.1f} s "
            f"+ model build {restart['model_build']:.1f} s; (b) then "
            f"{ms(restart, 'b') or float('nan'):.1f} ms"
        )
    for figures in (eager, compiled):
        if "gpu_memory_peak_gib" in figures:
            lines.append(f"  GPU memory peak (render bench): {figures['gpu_memory_peak_gib']:.2f} GiB")
    return lines


def codec_lines(out: Path, tiny: bool) -> list[str]:
    lines = [f"  {line}" for line in grep(out / "codec.log", r"batch of 8|riffengine\s+\d|reference\s+\d")]
    batch = grep(out / "codec.log", r"batch of 8 on cuda")
    if batch:
        value = float(re.search(r"([\d.]+) ms per clip", batch[0]).group(1))
        lines.append(
            f"  target codec <= {TARGETS['codec_ms']:.0f} ms per clip in a batch of 8: "
            f"{verdict(value <= TARGETS['codec_ms'], tiny)}"
        )
    return lines


def live_lines(out: Path) -> list[str]:
    patterns = (
        r"live run:|renderer built|^median:|render times|GPU memory|audio callback|memory \(RSS\)"
        r"|^engine:|SKIPPED|TIMED OUT|Error"
    )
    return [f"  {line}" for line in grep(out / "live.log", patterns)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--tiny", default="0")
    args = parser.parse_args(argv)
    tiny = args.tiny == "1"
    eager = read_json(args.work / "render_eager.json")
    compiled = read_json(args.work / "render_compiled.json")
    restart = read_json(args.work / "render_restart.json")
    (args.out / "figures.json").write_text(
        json.dumps({"eager": eager, "compiled": compiled, "restart": restart}, indent=2, default=str)
    )
    sections = [
        "riffengine GPU figures ("
        + ("tiny model on the CPU: a dry run, no targets" if tiny else "full-size random SD 1.5")
        + ")",
        "render (riffusion-app defaults: img2img 50 steps x 0.75, guidance 7, 512x512, to audio):",
        *render_lines(eager, compiled, restart, tiny),
        *[f"  {line}" for line in grep(args.out / "compile.log", r"compile cache after|restart with the warm")],
        "codec:",
        *codec_lines(args.out, tiny),
        "live engine into a JACK dummy server:",
        *live_lines(args.out),
    ]
    print("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
