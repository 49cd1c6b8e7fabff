"""The live engine: state -> planner -> render worker -> timeline -> ring -> output, on one loop.

One asyncio program (:meth:`Engine.run`) wires the parts of ``DESIGN.md``'s one-way flow:

- the :class:`~riffengine.store.StateStore` holds the newest State; control surfaces, a script
  and the tempo followers (Link, MIDI clock) change it;
- the :class:`~riffengine.planner.Planner` decides which clip to make next (newest state wins,
  one job at a time) and when it will be heard;
- a :class:`~riffengine.render.worker.RenderWorker` thread owns the renderer (through a
  :class:`~riffengine.clipmaker.ClipMaker`); results come back with ``call_soon_threadsafe``;
  the loop never waits on a render;
- the :class:`~riffengine.audio.timeline.Timeline` places clips on the bar grid and repeats the
  last good loop when a render is late or bad;
- the loop's tick renders timeline blocks into the :class:`~riffengine.audio.ringbuffer.RingBuffer`;
  the output's callback (or the ``.wav`` writer thread) only copies frames out.

Clocks. The master clock is the output's frame counter; the frame being heard is the ring's
``frames_read`` (with a ``.wav`` output, which has no clock, the render cursor itself). The
render cursor runs ahead by the ring's fill. Events the timeline reports at cursor frames
(loop started, tempo) are published when the heard frame reaches them; beats likewise.

File output (``--output take.wav``) runs faster than real time and simulates the live timing:
when a job is in flight the cursor waits for its result, which is then applied at
``issue frame + render seconds`` (measured, or the fake renderer's simulated time), exactly
where a live run would have got it. With the fake renderer a scripted session is therefore
deterministic to the frame.

Faults. A render that fails (raises, CUDA out of memory, NaN, silence) leaves the last good
loop playing; the same state is tried again after a back-off (:data:`RETRY_FIRST_SECONDS`,
doubling up to :data:`RETRY_MAX_SECONDS`), so the engine recovers when the renderer does. The
failure is reported once per streak (``render_failed``; later attempts are ``render_retry``
events) and the end of a streak as ``render_recovered``. A render still running when its bar
comes is reported once (``render_late``). When the JACK server goes away, or a sound card
stops (unplugged), the output is reported lost and reopened every :data:`RECONNECT_SECONDS`;
when it is back, it plays on from the ring (the recorder with it). A recording that fails
(disk full, unwritable) is reported and the audio goes on.

Daemon. Under systemd (``$NOTIFY_SOCKET``) ``READY=1`` is sent once the first loop is rendered
and the stream runs, ``WATCHDOG=1`` from the loop, ``STATUS=`` on faults, ``RELOADING=1`` on
SIGHUP, ``STOPPING=1`` at the end. SIGHUP reloads the config (:meth:`Engine.reload`).
``/riff/panic`` crossfades to the bank's safe loop (:meth:`Engine.panic`).

Thread rules: everything here runs on the loop's thread, except :class:`ClipMaker` (worker
thread), the recorder's ``on_error`` (writer thread, handed over with
``call_soon_threadsafe``) and the output's reopening (an executor thread, while the output is
lost and nothing else touches it).

The engine's roles, one module each (methods of :class:`Engine`, on its loop thread):

- :mod:`~riffengine.engine.core`: building and wiring the parts, the tick, state changes, the end;
- :mod:`~riffengine.engine.feed`: feeding the ring (or the file), the fade-out;
- :mod:`~riffengine.engine.renders`: scheduling renders and taking their results;
- :mod:`~riffengine.engine.heard`: publishing what is heard (loops, beats, xruns);
- :mod:`~riffengine.engine.faults`: supervising outputs and faults (lost output, recording, model);
- :mod:`~riffengine.engine.hosted`: the engine under the audio host;
- :mod:`~riffengine.engine.safe`: the safe loop and panic;
- :mod:`~riffengine.engine.daemon`: readiness and reload;
- :mod:`~riffengine.engine.base`: the attributes the roles share, declared once with their types;
- :mod:`~riffengine.engine.parts` and :mod:`~riffengine.engine.model`: constants, small types,
  loading the model.
"""

from riffengine.engine.core import Engine
from riffengine.engine.model import build_cached_renderer, build_renderer
from riffengine.engine.parts import Position, WarmUpFailed

__all__ = ["Engine", "Position", "WarmUpFailed", "build_cached_renderer", "build_renderer"]
