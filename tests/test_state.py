"""State: immutable snapshots, versioned changes, render requests, scenes."""

from __future__ import annotations

import dataclasses

import pytest

from riffengine import state as st
from riffengine.config import Settings, merge_overrides
from riffengine.control import params
from riffengine.errors import UserError
from riffengine.render.request import PromptSlot, RenderRequest, Side, to_render_request


@pytest.fixture
def s0() -> st.State:
    return st.initial_state()


def test_initial_state_holds_every_default(s0):
    assert s0.version == 0
    assert set(s0.values) == set(params.names())
    for p in params.PARAMS:
        assert st.get(s0, p.name) == p.default


def test_state_is_immutable(s0):
    with pytest.raises(dataclasses.FrozenInstanceError):
        s0.version = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        s0.values["bars"] = 8  # type: ignore[index]


def test_apply_returns_a_new_state_and_bumps_the_version(s0):
    s1 = st.apply(s0, "bars", 8.0)
    assert st.get(s1, "bars") == 8 and s1.version == 1
    assert st.get(s0, "bars") == 2 and s0.version == 0


def test_apply_without_change_keeps_the_version(s0):
    assert st.apply(s0, "bars", 2) is s0
    assert st.apply(s0, "bpm", 120) is s0  # int 120 equals float 120.0


def test_apply_slots(s0):
    s1 = st.apply(s0, "prompt_a", "techno", slot=1)
    s2 = st.apply(s1, "prompt_a/2", "dub")
    assert st.get(s2, "prompt_a") == ("lo-fi hip hop beat", "techno", "dub", "")
    assert st.get(s2, "prompt_a", 2) == st.get(s2, "prompt_a/2") == "dub"
    assert s2.version == 2
    s3 = st.apply(s2, "prompt_a", ["jazz"])
    assert st.get(s3, "prompt_a") == ("jazz", "", "", "")


def test_apply_refuses_bad_values_and_keeps_the_state(s0):
    with pytest.raises(UserError, match=r"^bars: 17 is out of range"):
        st.apply(s0, "bars", 17)
    with pytest.raises(UserError, match="slot 4 does not exist"):
        st.apply(s0, "weight_a", 0.5, slot=4)
    with pytest.raises(UserError, match="unknown parameter 'gian'; did you mean 'gain'"):
        st.apply(s0, "gian", 1.0)


def test_apply_many_is_one_version_and_all_or_nothing(s0):
    s1 = st.apply_many(s0, {"bars": 4, "alpha": 0.5, "prompt_b/0": "jazz"})
    assert s1.version == 1
    assert (st.get(s1, "bars"), st.get(s1, "alpha"), st.get(s1, "prompt_b/0")) == (4, 0.5, "jazz")
    with pytest.raises(UserError, match="alpha"):
        st.apply_many(s1, [("bars", 8), ("alpha", 3.0)])
    assert st.get(s1, "bars") == 4
    assert st.apply_many(s1, {"bars": 4}) is s1


def test_to_render_request_defaults(s0):
    request = to_render_request(s0)
    assert request == RenderRequest(
        a=Side((PromptSlot("lo-fi hip hop beat", 1.0),), seed=42, denoise=0.75, guidance=7.0),
        b=None,
        alpha=0.0,
        negative="",
        steps=50,
        scheduler="default",
        seed_image="groove_94",
    )


def test_to_render_request_blend_and_b_side(s0):
    s = st.apply_many(
        s0,
        [
            ("prompt_a/1", "techno"),
            ("weight_a/1", 0.5),
            ("prompt_a/2", "muted"),
            ("weight_a/2", 0.0),  # zero weight: left out
            ("prompt_a/3", "   "),  # blank: left out
            ("prompt_b/0", "jazz"),
            ("seed_b", 7.0),
            ("denoise_b", 0.5),
            ("guidance_b", 9),
            ("alpha", 0.25),
            ("negative", "vocals"),
            ("steps", 20),
            ("scheduler", "ddim"),
            ("seed_image", ""),
        ],
    )
    request = to_render_request(s)
    assert request.a.prompts == (PromptSlot("lo-fi hip hop beat", 1.0), PromptSlot("techno", 0.5))
    assert request.b == Side((PromptSlot("jazz", 1.0),), seed=7, denoise=0.5, guidance=9.0)
    assert (request.alpha, request.negative, request.steps, request.scheduler) == (0.25, "vocals", 20, "ddim")
    assert request.seed_image is None


def test_b_side_is_left_out_when_unheard(s0):
    s = st.apply(s0, "prompt_b/0", "jazz")
    assert to_render_request(s).b is None  # alpha is 0
    s = st.apply_many(s0, {"alpha": 0.5})
    assert to_render_request(s).b is None  # B has no prompt
    assert to_render_request(s).alpha == 0.0


def test_as_pairs_expands_slots_in_table_order(s0):
    pairs = st.as_pairs(s0)
    keys = [k for k, _ in pairs]
    assert keys[:5] == ["prompt_a/0", "prompt_a/1", "prompt_a/2", "prompt_a/3", "weight_a/0"]
    assert ("bars", 2) in pairs and ("gain", 0.0) in pairs
    for key, value in pairs:
        p, slot = params.lookup_address(f"{params.PREFIX}/{key}")
        assert st.get(s0, p.name, slot) == value


def test_recall_scene(s0):
    scene = {"prompt_b": ["jazz"], "alpha": 1.0, "bars": 4}
    s1 = st.recall_scene(s0, scene, number=2)
    assert s1.version == 1
    assert (st.get(s1, "prompt_b/0"), st.get(s1, "alpha"), st.get(s1, "bars"), st.get(s1, "scene")) == (
        "jazz",
        1.0,
        4,
        2,
    )
    assert st.recall_scene(s1, scene, number=2) is s1


def test_initial_state_from_settings():
    settings = merge_overrides(
        Settings(),
        {
            "loop.bars": 8,
            "tempo.bpm": 90,
            "render.denoise": 0.5,
            "initial.prompt_a/1": "techno",
            "initial.seed_a": 7,
        },
    )
    s = st.initial_state(settings)
    assert s.version == 0
    assert st.get(s, "bars") == 8 and st.get(s, "bpm") == 90.0
    assert st.get(s, "denoise_a") == st.get(s, "denoise_b") == 0.5
    assert st.get(s, "prompt_a") == ("lo-fi hip hop beat", "techno", "", "")
    assert st.get(s, "seed_a") == 7


def test_initial_section_wins_over_plain_sections():
    settings = merge_overrides(Settings(), {"loop.bars": 8, "initial.bars": 3})
    assert st.get(st.initial_state(settings), "bars") == 3
