"""`riffengine check` also validates the MIDI mapping file when MIDI is on."""

from __future__ import annotations

from pathlib import Path

import pytest

from riffengine.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write_config(tmp_path: Path, mappings: str) -> Path:
    config = tmp_path / "show.yaml"
    config.write_text(f"midi:\n  enabled: true\n  mappings: {mappings}\n")
    return config


def test_bad_mapping_entry_fails_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "map.yaml").write_text("- cc: 300\n  param: alpha\n")
    assert main(["check", "-c", str(write_config(tmp_path, "map.yaml"))]) == 2
    err = capsys.readouterr().err
    assert "map.yaml:1" in err and "cc: 300 is out of range" in err


@pytest.mark.parametrize("name", ["nanokontrol2.yaml", "mpk_mini.yaml", "launch_control_xl.yaml"])
def test_shipped_mappings_pass_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert main(["check", "-c", str(write_config(tmp_path, str(CONFIGS / name)))]) == 0
    out = capsys.readouterr().out
    assert "midi mappings:" in out and "mappings: 0 binding" not in out
