"""JACK audio output and JACK MIDI ports in one process must not deadlock.

python-rtmidi holds the GIL while it waits on the JACK server (opening a client), and libjack
runs some notifications synchronously; a Python callback there would need that GIL. This runs
the engine's JACK output (playing) while JACK MIDI inputs are opened, listed and closed again
and again, in a child process, so that a deadlock fails the test instead of hanging it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from jack_fixtures import jack_server  # noqa: F401

CHILD = textwrap.dedent(
    """
    import threading
    import mido
    from riffengine.audio.jackoutput import JackOutput
    from riffengine.audio.ringbuffer import RingBuffer

    output = JackOutput(RingBuffer(44100, 2), client_name="riffengine-deadlock-test", connect=False)
    output.open()
    output.start()
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    done = []

    def churn():
        for i in range(40):
            port = backend.open_input(f"knobs{i}", virtual=True, client_name="riffengine")
            backend.get_input_names()
            port.close()
            done.append(i)

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    worker.join(90)
    print("opened", len(done), "callbacks", output.callbacks, "errors", output.callback_errors, flush=True)
    output.stop()
    output.close()
    """
)


def test_jack_midi_ports_open_and_close_while_jack_audio_plays(jack_server):
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=150,
                            env=jack_server.env | {"PYTHONUNBUFFERED": "1"}, check=False)
    words = result.stdout.split()
    assert result.returncode == 0, result.stderr[-2000:]
    assert words[:2] == ["opened", "40"], result.stdout
    assert int(words[3]) > 0 and words[5] == "0"
