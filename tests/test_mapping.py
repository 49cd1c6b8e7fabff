"""MIDI mappings: curves, pickup, 14-bit pairs, relative encoders, triggers, files, learn."""

from __future__ import annotations

import os

import mido
import pytest
import yaml

from riffengine.control import mapping, params
from riffengine.control.mapping import Mapper, RecallScene, SetValues, check_entry
from riffengine.errors import UserError
from riffengine.state import State, apply_many

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cc(control: int, value: int, channel: int = 0) -> mido.Message:
    return mido.Message("control_change", control=control, value=value, channel=channel)


class Desk:
    """A Mapper applied to a real State, as the MIDI input does it."""

    def __init__(self, *entries: dict, state: State | None = None) -> None:
        self.mapper = Mapper([check_entry(e) for e in entries])
        self.state = state or State()
        self.now = 0.0
        self.actions: list = []

    def send(self, msg, dt: float = 0.001) -> list:
        self.now += dt
        return self._apply(self.mapper.handle(msg, self.state.values, self.now))

    def tick(self, dt: float) -> list:
        self.now += dt
        return self._apply(self.mapper.tick(self.state.values, self.now))

    def _apply(self, actions: list) -> list:
        for action in actions:
            if isinstance(action, SetValues):
                self.state = apply_many(self.state, action.changes)
        self.actions += actions
        return actions

    def set(self, **values) -> None:  # a change from elsewhere (OSC, a scene)
        self.state = apply_many(self.state, values)

    def __getitem__(self, key):
        return self.state.values[key]


# --- curves --------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", mapping.CURVES)
@pytest.mark.parametrize("lo, hi", [(0.0, 1.0), (1.0, 150.0), (-60.0, 12.0), (20.0, 2.0)])
def test_curves_hit_both_ends_and_invert(curve, lo, hi):
    assert mapping.curve_value(curve, 0.0, lo, hi) == pytest.approx(lo)
    assert mapping.curve_value(curve, 1.0, lo, hi) == pytest.approx(hi)
    for x in (0.1, 0.37, 0.5, 0.9):
        v = mapping.curve_value(curve, x, lo, hi)
        assert min(lo, hi) <= v <= max(lo, hi)
        assert mapping.curve_position(curve, v, lo, hi) == pytest.approx(x)


def test_exponential_is_geometric_on_a_positive_range_and_log_is_its_mirror():
    assert mapping.curve_value("exponential", 0.5, 1.0, 100.0) == pytest.approx(10.0)
    assert mapping.curve_value("linear", 0.5, 1.0, 100.0) == pytest.approx(50.5)
    # log rises fast first: at half travel it is past the middle
    assert mapping.curve_value("log", 0.5, 1.0, 100.0) == pytest.approx(101 - 10.0)


def test_knob_uses_range_curve_and_the_table_curve_by_default():
    desk = Desk(
        {"cc": 1, "param": "steps", "pickup": False},
        {"cc": 2, "param": "gain", "range": [-24, 0], "pickup": False},
        {"cc": 3, "param": "scheduler", "pickup": False},
    )
    desk.send(cc(1, 127))
    assert desk["steps"] == 150
    desk.send(cc(1, 0))
    assert desk["steps"] == 1
    # the table's steps curve is log: half travel is the geometric middle, not 75
    desk.send(cc(1, 64))
    assert desk["steps"] == round(150 ** (64 / 127))
    desk.send(cc(2, 127))
    assert desk["gain"] == 0.0
    desk.send(cc(2, 0))
    assert desk["gain"] == -24.0
    desk.send(cc(3, 127))
    assert desk["scheduler"] == params.SCHEDULERS[-1]


def test_channel_filter():
    desk = Desk({"cc": 7, "channel": 2, "param": "alpha", "pickup": False})
    desk.send(cc(7, 127, channel=0))
    assert desk["alpha"] == 0.0
    desk.send(cc(7, 127, channel=1))
    assert desk["alpha"] == 1.0


# --- soft takeover -------------------------------------------------------------------------


def test_pickup_waits_until_the_knob_passes_the_current_value():
    desk = Desk({"cc": 0, "param": "alpha"}, state=apply_many(State(), {"alpha": 0.5}))
    desk.send(cc(0, 10))
    desk.send(cc(0, 30))
    assert desk["alpha"] == 0.5  # below the value: nothing happens
    desk.send(cc(0, 80))  # passes 0.5 on the way up: picked up
    assert desk["alpha"] == pytest.approx(80 / 127)
    desk.send(cc(0, 20))  # now it follows
    assert desk["alpha"] == pytest.approx(20 / 127)


def test_pickup_from_above_and_at_the_value():
    desk = Desk({"cc": 0, "param": "alpha"}, state=apply_many(State(), {"alpha": 0.5}))
    desk.send(cc(0, 120))
    assert desk["alpha"] == 0.5
    desk.send(cc(0, 64))  # 64/127 is within the pickup window of 0.5
    assert desk["alpha"] == pytest.approx(64 / 127)


def test_a_change_from_elsewhere_drops_the_pickup():
    desk = Desk({"cc": 0, "param": "alpha"})
    desk.send(cc(0, 1))
    assert desk["alpha"] == pytest.approx(1 / 127)
    desk.set(alpha=0.9)  # OSC or a scene moved it
    desk.send(cc(0, 5))
    assert desk["alpha"] == 0.9  # the knob must come back to 0.9 first
    desk.send(cc(0, 127))
    assert desk["alpha"] == 1.0


def test_pickup_off_jumps_at_once():
    desk = Desk({"cc": 0, "param": "alpha", "pickup": False}, state=apply_many(State(), {"alpha": 0.5}))
    desk.send(cc(0, 0))
    assert desk["alpha"] == 0.0


# --- 14-bit pairs ----------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["msb first", "lsb first"])
def test_14_bit_pair_in_either_order_moves_once(order):
    desk = Desk({"cc": 1, "bits": 14, "param": "alpha", "pickup": False})
    pair = [cc(1, 100), cc(33, 50)]
    if order == "lsb first":
        pair.reverse()
    assert desk.send(pair[0]) == []  # waits for its partner
    desk.send(pair[1])
    assert desk["alpha"] == pytest.approx((100 * 128 + 50) / 16383)
    assert len(desk.actions) == 1  # no glitch from half a pair


def test_14_bit_lone_half_is_committed_after_the_pair_window():
    desk = Desk({"cc": 1, "bits": 14, "param": "alpha", "pickup": False})
    desk.send(cc(1, 64))
    desk.send(cc(33, 0))
    desk.send(cc(1, 127))  # a controller sending only the MSB now
    assert desk.mapper.busy
    desk.tick(mapping.PAIR_WINDOW * 2)
    assert desk["alpha"] == pytest.approx(127 * 128 / 16383)
    assert not desk.mapper.busy


def test_14_bit_full_scale_and_resolution():
    desk = Desk({"cc": 0, "bits": 14, "param": "bpm", "pickup": False})
    desk.send(cc(0, 127))
    desk.send(cc(32, 127))
    assert desk["bpm"] == 240.0
    desk.send(cc(0, 0))
    desk.send(cc(32, 1))
    assert desk["bpm"] == pytest.approx(40 + 200 / 16383)


# --- relative encoders --------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, up, down", [("twos_complement", 1, 127), ("offset_64", 65, 63), ("sign_magnitude", 1, 65)]
)
def test_relative_modes(mode, up, down):
    assert mapping.relative_delta(mode, up) == 1
    assert mapping.relative_delta(mode, down) == -1
    desk = Desk({"cc": 16, "mode": mode, "step": 0.1, "param": "alpha"}, state=apply_many(State(), {"alpha": 0.5}))
    desk.send(cc(16, up))
    desk.send(cc(16, up))
    assert desk["alpha"] == pytest.approx(0.7)
    desk.send(cc(16, down))
    assert desk["alpha"] == pytest.approx(0.6)


def test_relative_encoder_moves_an_integer_in_small_steps_and_clamps():
    desk = Desk({"cc": 16, "mode": "offset_64", "param": "steps"}, state=apply_many(State(), {"steps": 1}))
    for _ in range(20):
        desk.send(cc(16, 65))
    assert desk["steps"] > 1  # small steps add up instead of rounding away
    for _ in range(300):
        desk.send(cc(16, 63 - 10))
    assert desk["steps"] == 1


# --- smoothing -----------------------------------------------------------------------------


def test_smoothing_glides_to_the_target_on_ticks():
    desk = Desk({"cc": 0, "param": "alpha", "smoothing": 0.2, "pickup": False})
    desk.send(cc(0, 127))
    first = desk["alpha"]
    assert 0.0 <= first < 0.5
    values = [first]
    while desk.mapper.busy:
        desk.tick(0.01)
        values.append(desk["alpha"])
    assert values == sorted(values)
    assert desk["alpha"] == 1.0


# --- notes, buttons, program changes ----------------------------------------------------


def test_notes_buttons_and_programs():
    desk = Desk(
        {"note": 36, "scene": 2},
        {"note": 40, "param": "weight_b/1"},
        {"note": 41, "param": "weight_b/2", "latch": True},
        {"cc": 45, "set": {"prompt_a/1": "dusty vinyl crackle", "weight_a/1": 0.5}},
        {"program": "any"},
        {"program": 7, "scene": "chorus"},
    )
    assert desk.send(mido.Message("note_on", note=36, velocity=90)) == [RecallScene(2)]
    assert desk.send(mido.Message("note_off", note=36)) == []
    desk.send(mido.Message("note_on", note=40, velocity=127))
    assert desk["weight_b"][1] == 1.0
    desk.send(mido.Message("note_off", note=40))
    assert desk["weight_b"][1] == 0.0
    desk.send(mido.Message("note_on", note=41, velocity=0))  # note off as velocity 0, latched
    assert desk["weight_b"][2] == 1.0
    desk.send(cc(45, 127))
    desk.send(cc(45, 127))  # held: fires once
    desk.send(cc(45, 0))
    assert desk["prompt_a"][1] == "dusty vinyl crackle" and desk["weight_a"][1] == 0.5
    assert sum(isinstance(a, SetValues) and len(a.changes) == 2 for a in desk.actions) == 1
    assert desk.send(mido.Message("program_change", program=3)) == [RecallScene(3)]
    assert desk.send(mido.Message("program_change", program=7)) == [RecallScene(7), RecallScene("chorus")]


def test_a_later_knob_entry_for_the_same_parameter_replaces_the_earlier():
    mapper = Mapper([check_entry({"cc": 1, "param": "alpha"}), check_entry({"cc": 2, "param": "gain"})])
    mapper.add(check_entry({"cc": 9, "param": "alpha"}))
    assert [(b.number, b.key) for b in mapper.bindings] == [(2, "gain"), (9, "alpha")]


# --- checking entries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"cc": 0}, "exactly one target"),
        ({"param": "alpha"}, "exactly one of cc, note or program"),
        ({"cc": 0, "note": 1, "param": "alpha"}, "exactly one of cc, note or program"),
        ({"cc": 128, "param": "alpha"}, "cc: 128 is out of range; use a whole number from 0 to 127"),
        ({"cc": 40, "bits": 14, "param": "alpha"}, "from 0 to 31"),
        ({"cc": 0, "param": "alpah"}, "did you mean 'alpha'"),
        ({"cc": 0, "param": "prompt_a/0"}, "is text"),
        ({"cc": 0, "param": "weight_a"}, "name one, e.g. weight_a/0"),
        ({"cc": 0, "param": "scene"}, "is an action"),
        ({"cc": 0, "param": "alpha", "curve": "exponental"}, "did you mean 'exponential'"),
        ({"cc": 0, "param": "alpha", "range": [0, 2]}, "out of range"),
        ({"cc": 0, "param": "alpha", "range": [0.5]}, "use [low, high]"),
        ({"cc": 0, "param": "alpha", "mode": "relative"}, "mode: 'relative' is not a choice"),
        ({"cc": 0, "param": "alpha", "mode": "offset_64", "pickup": True}, "pickup: does not apply"),
        ({"cc": 0, "param": "alpha", "step": 0.1}, "step: does not apply"),
        ({"cc": 0, "param": "alpha", "mode": "offset_64", "bits": 14}, "relative encoders"),
        ({"cc": 0, "param": "alpha", "smoothing": -1}, "smoothing"),
        ({"cc": 0, "param": "alpha", "channel": 17}, "channel: 17"),
        ({"cc": 0, "param": "alpha", "colour": "red"}, "colour: unknown key (valid keys here: cc, note,"),
        ({"cc": 0, "param": "alpha", "curv": "log"}, "curv: unknown key; did you mean 'curve'?"),
        ({"note": 1, "scene": -1}, "out of range"),
        ({"note": 1, "set": {"alpha": 3}}, "alpha: 3 is out of range"),
        ({"note": 1, "set": {"scene": 1}}, "use scene: N"),
        ({"program": 5}, "give a scene number or name"),
        ({"program": 5, "param": "alpha"}, "recalls a scene"),
        ({"note": 60, "param": "scheduler", "range": [0, 1]}, "picks its value by position"),
    ],
)
def test_bad_entries_are_refused_with_the_fix(entry, words):
    with pytest.raises(UserError) as exc:
        check_entry(entry)
    assert words in str(exc.value)


def test_whole_numbers_follow_the_config_rule():
    """One coercion rule: an integral float is a whole number here too (Pure Data, JSON)."""
    binding = check_entry({"cc": 7.0, "channel": 2.0, "param": "alpha", "bits": 14.0})
    assert (binding.number, binding.channel, binding.bits) == (7, 1, 14)
    with pytest.raises(UserError, match=r"cc: 7\.5 is not a whole number"):
        check_entry({"cc": 7.5, "param": "alpha"})


def test_every_bad_key_of_an_entry_is_reported_at_once():
    with pytest.raises(UserError) as exc:
        check_entry({"cc": 300, "channel": 0, "param": "alpha", "smoothing": "slow"})
    assert str(exc.value).split("; use")[0] == "cc: 300 is out of range"
    assert "channel: 0 is out of range" in str(exc.value)
    assert "smoothing: 'slow' is not a number" in str(exc.value)


def test_scene_names_are_checked_when_known():
    check_entry({"note": 36, "scene": "verse"}, scenes=["verse", "chorus"])
    check_entry({"note": 36, "scene": 5}, scenes=["verse", "chorus"])  # checked when recalled
    with pytest.raises(UserError, match="scenes: 0=verse, 1=chorus"):
        check_entry({"note": 36, "scene": "bridge"}, scenes=["verse", "chorus"])


def test_file_errors_name_file_line_and_entry(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "# my desk\n- cc: 0\n  param: alpha\n\n- cc: 1\n  param: alpah\n- note: 3\n  scene: x\n  latch: true\n"
    )
    with pytest.raises(UserError) as exc:
        mapping.load_mappings(path)
    lines = str(exc.value).splitlines()
    assert lines[0].startswith(f"{path}:5: entry 2 (cc 1 -> alpah): ")
    assert lines[1].startswith(f"{path}:7: entry 3 (note 3 -> scene x): latch: does not apply")
    assert len(lines) == 2
    path.write_text("cc: 0\n")
    with pytest.raises(UserError, match="is a YAML list of entries"):
        mapping.load_mappings(path)
    path.write_text("- cc: [\n")
    with pytest.raises(UserError, match="bad.yaml:2:1: YAML syntax error"):
        mapping.load_mappings(path)
    with pytest.raises(UserError, match="mappings file not found"):
        mapping.load_mappings(tmp_path / "none.yaml")


@pytest.mark.parametrize("name", ["nanokontrol2.yaml", "mpk_mini.yaml", "launch_control_xl.yaml"])
def test_ready_controller_mappings_load(name):
    bindings = mapping.load_mappings(os.path.join(ROOT, "configs", name))
    assert len(bindings) >= 8
    assert any(b.continuous for b in bindings)
    assert any(b.scene is not None or b.values is not None for b in bindings)


# --- learn: appending to a file --------------------------------------------------------------


def test_append_entry_keeps_comments_and_the_result_loads(tmp_path):
    path = tmp_path / "desk.yaml"
    path.write_text("# my desk\n- cc: 0  # fader 1\n  param: alpha\n")
    mapping.append_entry(path, mapping.learned_entry("gain", cc=21, channel=0))
    text = path.read_text()
    assert text.startswith("# my desk\n- cc: 0  # fader 1\n")
    assert "# learned " in text
    bindings = mapping.load_mappings(path)
    assert [(b.number, b.key, b.channel) for b in bindings] == [(0, "alpha", None), (21, "gain", 0)]


def test_append_entry_creates_the_file_and_refuses_a_file_it_cannot_extend(tmp_path):
    path = tmp_path / "new" / "learned.yaml"
    mapping.append_entry(path, mapping.learned_entry("alpha", cc=5, channel=3))
    assert yaml.safe_load(path.read_text()) == [{"cc": 5, "channel": 4, "param": "alpha"}]
    odd = tmp_path / "odd.yaml"
    odd.write_text("[{cc: 0, param: alpha}]\n")
    with pytest.raises(UserError, match="not a YAML list of entries in block style"):
        mapping.append_entry(odd, mapping.learned_entry("alpha", cc=5, channel=0))
    assert odd.read_text() == "[{cc: 0, param: alpha}]\n"
