"""A headless Pure Data running examples/puredata/riffengine.pd drives the engine over OSC."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest
from surface_fixtures import RunningSurfaces, wait_until

from riffengine.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATCH = os.path.join(ROOT, "examples", "puredata", "riffengine.pd")

pytestmark = pytest.mark.skipif(shutil.which("pd") is None, reason="Pure Data is not installed (Debian puredata-core)")


class PureData:
    """``pd -nogui`` with a patch, its printout collected; stopped by its PID."""

    def __init__(self, patch: str, *messages: str) -> None:
        cmd = ["pd", "-nogui", "-noaudio", "-nomidi", "-noprefs", "-stderr"]
        if messages:
            cmd += ["-send", "; ".join(messages)]
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            cmd + ["-open", patch], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))

    def line(self, prefix: str) -> str:
        return wait_until(
            lambda: next((ln for ln in self.lines if ln.startswith(prefix)), None), what=f"Pd printing {prefix!r}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(10)


def test_example_patch_sets_prompt_alpha_seed_and_prints_the_status(tmp_path):
    config = tmp_path / "riffengine.yaml"
    config.write_text("osc:\n  port: 0\n")
    with RunningSurfaces(load_config(config), figures=lambda: {"bar": 7}) as engine:
        pd = PureData(PATCH, f"riffengine-connect 127.0.0.1 {engine.osc_port}", "riffengine-demo bang")
        try:
            status = pd.line("riffengine-status:")
            assert engine.values["prompt_a"][0] == "lo-fi piano with rain"
            assert engine.values["alpha"] == 0.5
            assert engine.values["seed_a"] == 1234
            # Pd prints the reply's atoms; spaces inside a symbol come out escaped
            assert "prompt_a/0 lo-fi\\ piano\\ with\\ rain" in status
            assert " alpha 0.5 " in status
            assert " seed_a 1234 " in status
            assert " bar 7" in status
            sources = {source for *_, source in engine.changes}
            assert len(sources) == 1 and sources.pop().startswith("osc 127.0.0.1:")
            assert not [ln for ln in pd.lines if "error" in ln.lower()], pd.lines
            assert not [ln for ln in pd.lines if ln.startswith("riffengine-fail:")]
        finally:
            pd.stop()


def test_patch_shows_a_refused_message(tmp_path):
    """A value the engine refuses comes back as /riff/fail, printed by the patch."""
    config = tmp_path / "riffengine.yaml"
    config.write_text("osc:\n  port: 0\n")
    with RunningSurfaces(load_config(config)) as engine:
        before = engine.store.state
        # the patch sends the seed it is given; a negative one is refused
        pd = PureData(PATCH, f"riffengine-connect 127.0.0.1 {engine.osc_port}", "riffengine-seed -5")
        try:
            fail = pd.line("riffengine-fail:").replace("\\ ", " ")  # Pd escapes spaces
            assert "/riff/seed_a" in fail and "out of range" in fail
            assert engine.store.state is before
        finally:
            pd.stop()


def test_patch_sets_evolve_glide_and_the_transport(tmp_path):
    config = tmp_path / "riffengine.yaml"
    config.write_text("osc:\n  port: 0\n")
    with RunningSurfaces(load_config(config)) as engine:
        pd = PureData(
            PATCH,
            f"riffengine-connect 127.0.0.1 {engine.osc_port}",
            "riffengine-evolve 0.25",
            "riffengine-glide 4",
            "riffengine-transport stop",
        )
        try:
            wait_until(lambda: engine.values["transport"] == "stop", what="the transport to stop")
            assert engine.values["evolve"] == 0.25 and engine.values["glide"] == 4
            assert not [ln for ln in pd.lines if "error" in ln.lower() or ln.startswith("riffengine-fail:")]
        finally:
            pd.stop()
