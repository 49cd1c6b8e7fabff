"""Headless Chromium pages on the web surface, for the benchmarks that measure web clients."""

from __future__ import annotations

import os
import shutil
import subprocess

from riffengine.audio.priority import child_priority


def open_browsers(
    count: int, url: str, folder: str, nice: bool = False, back_to: int | None = None
) -> list[subprocess.Popen]:
    """``count`` headless Chromium processes showing ``url``, each with a fresh profile; the page
    keeps reconnecting until the engine's server is up. ``nice``: at the lowest priority;
    ``back_to``: at that nice value (the usual one, when the caller raised its own)."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    procs = []
    for i in range(count):
        procs.append(
            subprocess.Popen(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1200,900",
                    f"--user-data-dir={folder}/browser-{i}",
                    url,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=(lambda: os.nice(19)) if nice else child_priority(back_to),
            )
        )
    return procs
