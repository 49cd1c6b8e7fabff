"""Config loading: defaults, every kind of mistake, overrides, and the check command."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from riffengine import cli
from riffengine.config import (
    Settings,
    load_config,
    merge_overrides,
    parse_override,
)
from riffengine.control import params
from riffengine.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_YAML = ROOT / "configs" / "default.yaml"


def write(tmp_path: Path, text: str, name: str = "show.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(UserError) as info:
        load_config(path)
    return str(info.value).splitlines()


def test_empty_file_gives_the_defaults(tmp_path):
    settings = load_config(write(tmp_path, ""))
    assert settings.model.id == "riffusion/riffusion-model-v1"
    assert settings.loop.bars == params.param("bars").default
    assert settings.osc.host == "127.0.0.1" and settings.osc.port == 9000
    assert settings.scenes == {} and settings.initial == {}
    assert settings.paths.seeds == str(tmp_path / "seeds")


def test_default_yaml_validates_and_matches_the_defaults(tmp_path):
    settings = load_config(DEFAULT_YAML)
    empty = load_config(write(tmp_path, ""))
    for section in ("model", "audio", "tempo", "loop", "render", "osc", "midi", "logging", "cache"):
        assert getattr(settings, section) == getattr(empty, section), section
    for name in type(settings.paths).model_fields:
        written, default = getattr(settings.paths, name), getattr(empty.paths, name)
        assert Path(written).relative_to(DEFAULT_YAML.parent) == Path(default).relative_to(tmp_path)
    assert settings.scenes == {}
    for key, value in settings.initial.items():
        p, slot = params.parse_key(key)
        assert value == (p.default if slot is None else p.slot_default(slot)), key


def test_default_yaml_lists_every_setting():
    text = DEFAULT_YAML.read_text(encoding="utf-8")
    settings = Settings()
    for section in ("model", "audio", "tempo", "loop", "render", "osc", "midi", "logging", "paths", "cache"):
        assert f"\n{section}:\n" in text
        for name in type(getattr(settings, section)).model_fields:
            assert f"  {name}:" in text, f"{section}.{name} missing from default.yaml"
    assert "\ninitial:\n" in text and "\nscenes:" in text


def test_settings_are_frozen(tmp_path):
    settings = load_config(write(tmp_path, "loop: {bars: 4}\n"))
    with pytest.raises(ValidationError, match="frozen"):
        settings.loop.bars = 8  # type: ignore[misc]


def test_unknown_key_names_the_path_and_suggests(tmp_path):
    path = write(tmp_path, "loop:\n  barz: 4\n")
    assert errors_of(path) == [
        f"{path}:2: loop.barz: unknown key; did you mean 'bars'? (valid keys here: bars, crossfade_ms)"
    ]


def test_a_retired_setting_loads_with_a_warning_naming_file_line_and_key(tmp_path, caplog):
    path = write(tmp_path, "audio:\n  sample_rate: 48000\n  block_size: 256\n")
    with caplog.at_level("WARNING", logger="riffengine.config"):
        settings = load_config(path)
    assert settings.audio.sample_rate == 48000
    assert not hasattr(settings.audio, "block_size")
    [record] = caplog.records
    assert record.getMessage().startswith(f"{path}:3: audio.block_size: is no longer used (")
    assert record.getMessage().endswith("); remove it")


def test_a_retired_setting_given_as_an_override_is_a_warning(caplog):
    with caplog.at_level("WARNING", logger="riffengine.config"):
        merge_overrides(Settings(), {"audio.block_size": 256})
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["override: audio.block_size: is no longer used"]


def test_unknown_section_suggests(tmp_path):
    [line] = errors_of(write(tmp_path, "loops:\n  bars: 4\n"))
    assert ":1: loops: unknown section; did you mean 'loop'?" in line


def test_wrong_type(tmp_path):
    [line] = errors_of(write(tmp_path, "osc:\n  port: 'nine'\n"))
    assert line.endswith(":2: osc.port: 'nine' is not a number; use a whole number from 0 to 65535")


def test_out_of_range(tmp_path):
    [line] = errors_of(write(tmp_path, "loop:\n  bars: 17\n"))
    assert line.endswith(":2: loop.bars: 17 is out of range; use a whole number from 1 to 16")


def test_all_errors_are_reported_at_once(tmp_path):
    lines = errors_of(
        write(
            tmp_path,
            (
                "tempo:\n  bpm: 300\n  source: clock\n"
                "osc:\n  allow: [10.0.0.0/8, nonsense]\n"
                "initial:\n  prompt_a/7: x\n  alpha: 2\n  scene: 1\n"
                "scenes:\n  verse: {gian: 1}\n  chorus: [1]\n"
                "model: {dtype: fp8}\n"
            ),
        )
    )
    keys = [line.split(": ")[1] for line in lines]
    assert keys == [
        "tempo.bpm",
        "tempo.source",
        "osc.allow",
        "initial.prompt_a/7",
        "initial.alpha",
        "initial.scene",
        "scenes.verse.gian",
        "scenes.chorus",
        "model.dtype",
    ]
    assert "did you mean 'gain'" in lines[6]
    assert all(line.startswith(str(tmp_path)) for line in lines)


def test_cross_check_midi_clock(tmp_path):
    [line] = errors_of(write(tmp_path, "tempo: {source: midi}\n"))
    assert "tempo.midi_clock_in: is not set" in line


def test_cross_check_workers_need_the_ray_backend(tmp_path):
    [line] = errors_of(write(tmp_path, "render: {workers: 2}\n"))
    assert "render.workers: is 2 but render.backend is local" in line and "render.backend: ray" in line
    settings = load_config(write(tmp_path, "render: {backend: ray, workers: 2, ray: {address: '10.0.0.2:6379'}}\n"))
    assert (settings.render.backend, settings.render.workers, settings.render.ray.address) == (
        "ray",
        2,
        "10.0.0.2:6379",
    )


def test_duplicate_key(tmp_path):
    [line] = errors_of(write(tmp_path, "loop: {bars: 4}\nloop: {bars: 8}\n"))
    assert ":1: loop: appears twice (again on line 2)" in line


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = write(tmp_path, "loop:\n  bars: 4\n crossfade_ms: [1\n")
    with pytest.raises(UserError, match=rf"^{path}:\d+:\d+: YAML syntax error: "):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path):
    [line] = errors_of(write(tmp_path, "- loop\n"))
    assert "is not a config; the file must be a mapping of sections" in line


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_relative_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(
        tmp_path / "sub",
        (
            "paths: {scenes: ../scenes}\naudio: {output: out.wav, record: rec.wav}\n"
            "render: {seed_image: my_loop.png}\nmidi: {mappings: pads.yaml}\n"
        ),
    )
    settings = load_config(path)
    assert settings.paths.scenes == str(tmp_path / "scenes")
    assert settings.paths.spectrograms == str(tmp_path / "sub" / "spectrograms")
    assert settings.audio.output == str(tmp_path / "sub" / "out.wav")
    assert settings.audio.record == str(tmp_path / "sub" / "rec.wav")
    assert settings.midi.mappings == str(tmp_path / "sub" / "pads.yaml")
    assert settings.render.seed_image == "my_loop.png"  # looked up by the renderer


def test_typed_values(tmp_path):
    settings = load_config(
        write(
            tmp_path,
            (
                "audio: {output: 3}\nlogging: {level: debug}\nrender: {seed_image: null}\n"
                "midi: {backend: UNIX_JACK, mappings: [{cc: 1, param: alpha}]}\n"
                "initial: {prompt_a: [jazz], bars: 8.0}\n"
                "scenes: {verse: {alpha: 0}, chorus: {alpha: 1}}\n"
            ),
        )
    )
    assert settings.audio.output == 3
    assert settings.logging.level == "DEBUG"
    assert settings.render.seed_image == ""
    assert settings.midi.mido_backend == "mido.backends.rtmidi/UNIX_JACK"
    assert settings.midi.mappings == ({"cc": 1, "param": "alpha"},)
    assert settings.initial == {"prompt_a": ("jazz", "", "", ""), "bars": 8}
    assert settings.scene(1) == settings.scene("chorus") == {"alpha": 1.0}
    with pytest.raises(UserError, match="scene 2 does not exist; scenes: 0=verse, 1=chorus"):
        settings.scene(2)


def test_merge_overrides(tmp_path):
    settings = load_config(write(tmp_path, "loop: {bars: 4}\n"))
    merged = merge_overrides(settings, {"loop.bars": 8, "osc.port": 9100, "initial.prompt_a/1": "dub"})
    assert (merged.loop.bars, merged.osc.port) == (8, 9100)
    assert merged.initial == {"prompt_a/1": "dub"}
    assert merged.paths == settings.paths and merged.source == settings.source
    assert settings.loop.bars == 4


def test_merge_overrides_reports_bad_keys():
    with pytest.raises(UserError) as info:
        merge_overrides(Settings(), {"loop.bars": 30, "bars": 1, "loop.barz": 1})
    assert str(info.value).splitlines() == [
        "override: bars: is not a setting; use SECTION.KEY, e.g. loop.bars",
        "override: loop.bars: 30 is out of range; use a whole number from 1 to 16",
        "override: loop.barz: unknown key; did you mean 'bars'? (valid keys here: bars, crossfade_ms)",
    ]


def test_parse_override():
    assert parse_override("loop.bars=8") == ("loop.bars", 8)
    assert parse_override("initial.prompt_a/0=deep house") == ("initial.prompt_a/0", "deep house")
    with pytest.raises(UserError, match="use KEY=VALUE"):
        parse_override("loop.bars")


@pytest.fixture
def only_check(monkeypatch):
    """The CLI with only the commands under test, whatever else is being built."""
    monkeypatch.setattr(cli, "COMMANDS", ("check", "params"))


def test_check_command_ok(only_check, capsys):
    assert cli.main(["check", "--config", str(DEFAULT_YAML)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{DEFAULT_YAML}: OK\n")
    assert "loop: 2 bar(s) of 4 beats at 120 BPM" in out


def test_check_command_error_is_one_line_and_exit_2(only_check, capsys, tmp_path):
    path = write(tmp_path, "loop:\n  bars: 17\n")
    assert cli.main(["check", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"riffengine: error: {path}:2: loop.bars: 17 is out of range; use a whole number from 1 to 16\n"
    )
    assert "Traceback" not in captured.err


def test_check_command_missing_file(only_check, capsys, tmp_path):
    assert cli.main(["check", "-c", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config file not found" in err


def test_check_command_with_override(only_check, capsys):
    assert cli.main(["check", "-c", str(DEFAULT_YAML), "--set", "loop.bars=99"]) == 2
    assert "override: loop.bars: 99 is out of range" in capsys.readouterr().err


def test_params_command_writes_the_docs_page(only_check, tmp_path):
    out = tmp_path / "parameters.md"
    assert cli.main(["params", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == params.parameters_markdown()


def test_fast_preset_caps_steps_and_picks_its_scheduler() -> None:
    from riffengine.config import FAST_SCHEDULER, FAST_STEPS, initial_values

    values = dict(initial_values(merge_overrides(Settings(), {"render.fast": True, "render.steps": 50})))
    assert values["steps"] == FAST_STEPS and values["scheduler"] == FAST_SCHEDULER
    values = dict(initial_values(merge_overrides(Settings(), {"render.fast": True, "render.steps": 8})))
    assert values["steps"] == 8


def test_speed_levers_settings(tmp_path):
    from riffengine.render.speed import describe_levers, resolve_levers

    settings = load_config(write(tmp_path, ("model: {channels_last: false, fuse_qkv: auto, compile: max-autotune}\n")))
    assert (settings.model.channels_last, settings.model.fuse_qkv) == (False, "auto")
    levers = resolve_levers("cuda", settings.model.channels_last, settings.model.fuse_qkv, settings.model.compile)
    assert describe_levers(levers) == "fused QKV, compiled (max-autotune)"
    assert describe_levers(resolve_levers("cpu")) == "none"
    assert describe_levers(resolve_levers("cuda")) == "channels-last, fused QKV"
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, "model: {compile: fastest, channels_last: maybe}\n"))
    message = str(err.value)
    assert "model.compile" in message and "max-autotune-no-cudagraphs" in message
    assert "model.channels_last" in message and "auto (on for CUDA), true or false" in message


def test_scene_names_may_be_numbers_and_the_count_is_bounded(tmp_path):
    settings = load_config(write(tmp_path, "scenes:\n  1: {alpha: 0}\n  verse:\n"))
    assert list(settings.scenes) == ["1", "verse"] and settings.scene("1") == {"alpha": 0.0}
    many = "scenes:\n" + "".join(f"  s{i}: {{alpha: 0}}\n" for i in range(130))
    [line] = errors_of(write(tmp_path, many))
    assert line.endswith(":1: scenes: 130 scenes are too many; use at most 128")


def test_the_ray_section_names_its_own_keys(tmp_path):
    path = write(tmp_path, "render:\n  backend: ray\n  ray:\n    adress: x\n    address: 5\n")
    lines = errors_of(path)
    assert any(":4: render.ray.adress: unknown key; did you mean 'address'" in line for line in lines)
    assert any(":5: render.ray.address: 5 is not valid" in line for line in lines)
