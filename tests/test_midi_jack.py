"""MIDI input over real JACK MIDI: python-rtmidi's JACK API in a JACK dummy server.

The test makes its own controller: a virtual JACK MIDI output port (mido backend
``mido.backends.rtmidi/UNIX_JACK``) that the engine's input finds by a part of its name.
Unplugging is closing that port; plugging back is opening it again under the same name.
"""

from __future__ import annotations

import os
import signal
import uuid

import mido
import pytest
import yaml
from jack_fixtures import jack_server  # noqa: F401  (module-scoped JACK dummy server)
from surface_fixtures import OscClient, RunningSurfaces, wait_until

from riffengine.config import load_config
from riffengine.control import mapping
from riffengine.control.jackmidi import JackMidiInput

BACKEND = "mido.backends.rtmidi/UNIX_JACK"

MAPPINGS = """\
# test desk
- cc: 0
  param: alpha
- cc: 1
  bits: 14
  param: bpm
  pickup: false
- cc: 16
  mode: offset_64
  step: 0.1
  param: denoise_a
- note: 36
  scene: chorus
"""

CONFIG = """\
osc:
  port: 0
midi:
  enabled: true
  backend: UNIX_JACK
  input: {input}
  mappings: desk.yaml
initial:
  alpha: 0.5
  denoise_a: 0.5
scenes:
  verse:
    alpha: 0.0
  chorus:
    prompt_b/0: "funky jazz trumpet"
    alpha: 1.0
"""


def jack_midi() -> mido.Backend:
    backend = mido.Backend(BACKEND, load=True)
    try:
        backend.get_output_names()
    except Exception as exc:  # pragma: no cover - depends on how python-rtmidi was built
        pytest.skip(f"python-rtmidi has no JACK MIDI here: {exc}")
    return backend


def settings_in(tmp_path, input_name: str):
    (tmp_path / "desk.yaml").write_text(MAPPINGS)
    path = tmp_path / "riffengine.yaml"
    path.write_text(CONFIG.format(input=input_name))
    return load_config(path)


class Controller:
    """The test's controller: a virtual JACK MIDI output port, opened and closed at will."""

    def __init__(self, backend: mido.Backend, name: str) -> None:
        self.backend, self.name = backend, name
        self.port = None
        self.sent = 0

    def plug(self) -> Controller:
        self.port = self.backend.open_output(self.name, virtual=True)
        return self

    def unplug(self) -> None:
        self.port.close()
        self.port = None

    def cc(self, control: int, value: int, channel: int = 0) -> None:
        self.send(mido.Message("control_change", control=control, value=value, channel=channel))

    def send(self, msg: mido.Message) -> None:
        self.port.send(msg)
        self.sent += 1


def delivered(engine: RunningSurfaces, count: int) -> None:
    """Wait until the engine has handled ``count`` MIDI messages."""
    wait_until(lambda: engine.surfaces.midi.messages >= count, what=f"{count} MIDI messages")


def test_jack_midi_controller_pickup_14bit_encoder_notes_learn_and_replug(jack_server, tmp_path):
    backend = jack_midi()
    name = f"riffdesk-{uuid.uuid4().hex[:6]}"
    desk = Controller(backend, name).plug()
    try:
        with RunningSurfaces(settings_in(tmp_path, name)) as engine, OscClient(engine.osc_port) as client:
            midi = engine.surfaces.midi
            assert midi.port_name is not None and name in midi.port_name

            # soft takeover: alpha is 0.5; the fader below it does nothing until it passes
            desk.cc(0, 10)
            desk.cc(0, 30)
            delivered(engine, 2)
            assert engine.values["alpha"] == 0.5
            desk.cc(0, 80)
            wait_until(lambda: engine.values["alpha"] == pytest.approx(80 / 127), what="pickup")

            # 14-bit pair, MSB first then LSB first
            desk.cc(1, 100)
            desk.cc(33, 50)
            expected = 40 + 200 * (100 * 128 + 50) / 16383
            wait_until(lambda: engine.values["bpm"] == pytest.approx(expected), what="14-bit bpm")
            desk.cc(33, 127)
            desk.cc(1, 127)
            wait_until(lambda: engine.values["bpm"] == 240.0, what="14-bit full scale")
            bpm_values = [v for k, v, _ in engine.changes if k == "bpm"]
            assert bpm_values == [pytest.approx(expected), 240.0]  # never half a pair

            # relative encoder, offset 64: two ticks up, one down
            for value in (65, 65, 63):
                desk.cc(16, value)
            wait_until(lambda: engine.values["denoise_a"] == pytest.approx(0.6), what="encoder")

            # a pad recalls a scene by name
            desk.send(mido.Message("note_on", note=36, velocity=100))
            wait_until(lambda: engine.values["scene"] == 1, what="scene recall")
            assert engine.values["prompt_b"][0] == "funky jazz trumpet"

            # learn over OSC: the next CC drives gain, and is saved to the mappings file
            client.send("/riff/notify", 1)
            client.wait_for("/riff/notify.reply")
            client.send("/riff/learn", "gain")
            wait_until(lambda: any(e.kind == "learning" for e in engine.events), what="armed")
            desk.cc(21, 106, channel=2)
            learned = client.wait_for("/riff/learned")
            assert learned.params == ["gain", 21, 3]
            entries = yaml.safe_load((tmp_path / "desk.yaml").read_text())
            assert entries[-1] == {"cc": 21, "channel": 3, "param": "gain"}
            assert (tmp_path / "desk.yaml").read_text().startswith("# test desk\n")
            assert len(mapping.load_mappings(tmp_path / "desk.yaml")) == 5
            desk.cc(21, 106, channel=2)  # 106/127 sits on gain's 0 dB: picked up at once
            desk.cc(21, 127, channel=2)
            wait_until(lambda: engine.values["gain"] == 12.0, what="learned control")

            # unplug: the engine notices by polling; plug back: it reopens by name
            desk.unplug()
            wait_until(lambda: midi.port is None, what="port closed after unplug")
            assert engine.values["alpha"] == 1.0  # the scene's value, untouched meanwhile
            desk.plug()
            wait_until(lambda: midi.port is not None and midi.opened == 2, what="reopened")
            desk.cc(0, 127)  # alpha is 1.0 after the scene; 127 is right on it
            desk.cc(0, 0)
            wait_until(lambda: engine.values["alpha"] == 0.0, what="control after replug")
            status = client.status()
            assert name in status["midi_port"]
            assert status["midi_messages"] == desk.sent
            assert status["alpha"] == 0.0
    finally:
        if desk.port is not None:
            desk.unplug()


def test_virtual_input_port_and_learn_at_start(jack_server, tmp_path):
    backend = jack_midi()
    name = f"riffin-{uuid.uuid4().hex[:6]}"
    settings = settings_in(tmp_path, f"virtual:{name}")
    with RunningSurfaces(settings, learn="crossfade_ms") as engine:
        target = wait_until(
            lambda: [n for n in backend.get_output_names() if name in n], what="the engine's virtual port"
        )[0]
        with backend.open_output(target) as port:
            port.send(mido.Message("control_change", control=9, value=0))
            wait_until(lambda: any(e.kind == "learned" for e in engine.events), what="learned")
            # crossfade_ms is 50 of 0..2000: the knob picks it up near 3/127, then drives it
            for value in (60, 3, 127):
                port.send(mido.Message("control_change", control=9, value=value))
            wait_until(lambda: engine.values["crossfade_ms"] == 2000.0, what="learned control")
            crossfades = [v for k, v, _ in engine.changes if k == "crossfade_ms"]
            assert crossfades == [pytest.approx(2000 * 3 / 127), 2000.0]
            # a bad scene number from a pad is reported on the bus, and changes nothing
            engine.call(engine.surfaces.midi.mapper.add, mapping.check_entry({"note": 50, "scene": 9}))
            before = engine.store.state
            port.send(mido.Message("note_on", note=50, velocity=99))
            fail = wait_until(lambda: [e for e in engine.events if e.kind == "fail"], what="fail")[0]
            assert "scene 9 does not exist" in fail.data["reason"]
            assert engine.store.state is before
    entries = yaml.safe_load((tmp_path / "desk.yaml").read_text())
    assert entries[-1] == {"cc": 9, "channel": 1, "param": "crossfade_ms"}


def test_a_dead_jack_midi_helper_is_replaced(jack_server, tmp_path):
    """JACK MIDI ports live in helper processes (riffengine.control.jackmidi); one that dies is
    reopened, and the engine's process is untouched."""
    backend = jack_midi()
    name = f"riffin-{uuid.uuid4().hex[:6]}"
    with RunningSurfaces(settings_in(tmp_path, f"virtual:{name}")) as engine:
        midi = engine.surfaces.midi
        helper = midi.port.pid
        os.kill(helper, signal.SIGKILL)
        wait_until(lambda: midi.opened == 2 and midi.port is not None, what="the port reopened")
        assert midi.port.pid != helper
        target = wait_until(
            lambda: [n for n in backend.get_output_names() if name in n], what="the engine's virtual port"
        )[0]
        with backend.open_output(target) as port:
            port.send(mido.Message("control_change", control=0, value=64))
            delivered(engine, 1)
        states = [e.data["state"] for e in engine.events if e.kind == "midi_port"]
        assert states == ["open", "closed", "open"]


def test_a_jack_midi_port_that_cannot_open_says_why(jack_server):
    reason = "cannot open JACK MIDI port 'no-such-desk': no JACK MIDI source port"
    with pytest.raises(OSError, match=reason):
        JackMidiInput("no-such-desk", lambda message: None)
