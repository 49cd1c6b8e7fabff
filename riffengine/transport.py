"""Transport sync: the ``transport`` parameter against Link start/stop and MIDI Start/Stop.

The engine plays and stops on its own bar grid (:meth:`Timeline.stop`/:meth:`Timeline.play`);
this module only moves the ``transport`` value, and tells the others when it moves:

- Follow. When the tempo source reports a transport (a Link session with start/stop sync, MIDI
  clock in: Start and Continue play, Stop stops) and it *changes*, ``transport`` is set to match,
  with the source's name as the change's source. The first reading only sets the baseline, so
  joining a session that is stopped does not silence a show; a performer's own play/stop stands
  until the reference moves again.
- Send. A ``transport`` change from anyone else (OSC, MIDI, a scene, the web) starts or stops a
  Link session (start/stop sync on) and sends MIDI Start (on the next bar line) or Stop to the
  MIDI clock output.

Loop thread only.
"""

from __future__ import annotations

from riffengine.state import State


def followed(seen: bool | None, playing: bool | None) -> str | None:
    """The ``transport`` value to apply when a reference's transport moved, else None.

    ``seen``: the reference's transport at the previous reading (None: no reading yet);
    ``playing``: at this one (None: the reference has no transport).
    """
    if playing is None or seen is None or playing == seen:
        return None
    return "play" if playing else "stop"


class TransportSync:
    """Follows and sends start/stop for one :class:`~riffengine.timing.sources.TempoSync`.

    ``clock_out``: a :class:`~riffengine.timing.midiclock.MidiClockOut` or None.
    """

    def __init__(self, store, sync, clock_out=None) -> None:
        self.store = store
        self.sync = sync
        self.clock_out = clock_out
        self._seen: bool | None = None
        self._unsubscribe = store.subscribe(self._on_state)

    def poll(self, reading) -> None:
        """After each tempo reading: follow the reference's transport when it moved."""
        playing = None if reading is None else reading.playing
        value = followed(self._seen, playing)
        if playing is not None:
            self._seen = playing
        if value is not None and self.store.state.values["transport"] != value:
            self.store.apply({"transport": value}, source=self.sync.source)

    def _on_state(self, old: State, new: State, source: str) -> None:
        value = new.values["transport"]
        if value == old.values["transport"]:
            return
        playing = value == "play"
        if source != self.sync.source:
            if self.sync.set_playing(playing):
                self._seen = playing  # our own change coming back is not a new one
        if self.clock_out is not None:
            if playing:
                self.clock_out.play()
            else:
                self.clock_out.stop_transport()

    def close(self) -> None:
        self._unsubscribe()
