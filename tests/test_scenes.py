"""Scenes saved during a show: files in the scenes folder, read back with the table's checks."""

from __future__ import annotations

import pytest

from riffengine.control.scenes import SceneBook, check_name, scene_values
from riffengine.errors import UserError
from riffengine.state import State, apply_many, recall_scene

CONFIGURED = {"verse": {"alpha": 0.0}, "chorus": {"alpha": 1.0}}


def playing() -> State:
    return apply_many(
        State(),
        [
            ("prompt_a/0", "late night"),
            ("alpha", 0.6),
            ("bpm", 96.0),
            ("gain", -20.0),
            ("mute", True),
            ("evolve", 0.25),
        ],
    )


def test_a_scene_keeps_the_music_and_not_the_live_controls():
    values = scene_values(playing())
    assert values["prompt_a"][0] == "late night" and values["alpha"] == 0.6 and values["bpm"] == 96.0
    assert values["evolve"] == 0.25
    assert not {"gain", "mute", "transport", "tempo_source", "scene"} & set(values)


def test_saved_scenes_number_after_the_configured_ones_and_survive_a_new_book(tmp_path):
    book = SceneBook(CONFIGURED, tmp_path / "scenes")
    assert book.save(playing(), "night") == ("night", 2)
    assert book.save(playing()) == ("scene 3", 3)
    again = SceneBook(CONFIGURED, tmp_path / "scenes")  # a restart or a reload reads the folder
    assert again.names == ["verse", "chorus", "night", "scene 3"]
    state = recall_scene(State(), again.get(2), 2)
    assert state.values["prompt_a"][0] == "late night" and state.values["alpha"] == 0.6
    assert state.values["gain"] == State().values["gain"]
    assert again.save(apply_many(playing(), [("alpha", 0.1)]), "verse") == ("verse", 0)  # saved over
    assert SceneBook(CONFIGURED, tmp_path / "scenes").get("verse")["alpha"] == 0.1


def test_bad_names_and_damaged_files_are_refused_clearly(tmp_path, caplog):
    for bad in ("../up", "", "a/b", "x" * 41, ".hidden"):
        with pytest.raises(UserError, match="is not valid"):
            check_name(bad)
    folder = tmp_path / "scenes"
    folder.mkdir()
    (folder / "broken.yaml").write_text("alpha: [unclosed")
    (folder / "wrong.yaml").write_text("alpha: 7\n")  # out of range
    (folder / "good.yaml").write_text("alpha: 0.5\n")
    book = SceneBook({}, folder)
    assert book.names == ["good"]
    assert "broken.yaml is left out" in caplog.text and "wrong.yaml is left out" in caplog.text
    with pytest.raises(UserError, match=r"scene 4 does not exist; scenes: 0=good"):
        book.get(4)


def test_an_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="make paths.scenes a writable folder"):
        SceneBook({}, blocker / "scenes").save(playing(), "x")
