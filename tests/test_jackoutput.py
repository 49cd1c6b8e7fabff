"""JackOutput's own count of xruns, against a real JACK dummy server.

In a cycle where some client of the graph was late, the driver skips no frame: only the
server's xrun notification tells. The audio host counts those notifications (once per cycle);
a process with python-rtmidi counts the frames the driver skipped (see ``_open_client``)."""

import threading
import time

from jack_fixtures import jack_server  # noqa: F401

from riffengine.audio.jackoutput import JackOutput
from riffengine.audio.ringbuffer import RingBuffer

RATE = 44100


def test_a_cycle_with_a_late_client_is_counted_from_the_servers_notification(jack_server):
    import jack

    output = JackOutput(RingBuffer(RATE, 2), client_name="riffengine-notified", connect=False, xrun_notifications=True)
    late = jack.Client("riffengine-late-client", servername=jack_server.name, no_start_server=True)
    stall = threading.Event()
    stalled = threading.Event()

    def process(frames: int) -> None:
        if stall.is_set():
            stall.clear()
            time.sleep(0.05)  # this client misses several cycles (the GIL is free meanwhile)
            stalled.set()

    late.set_process_callback(process)
    output.open()
    late.activate()
    try:
        time.sleep(0.5)
        before = output.xruns
        stall.set()
        assert stalled.wait(10), "the late client never ran"
        deadline = time.monotonic() + 10
        while output.xruns == before and time.monotonic() < deadline:
            time.sleep(0.05)
        counted = output.xruns - before
    finally:
        late.deactivate()
        late.close()
        output.close()
    assert counted >= 1
    assert output.callback_errors == 0
