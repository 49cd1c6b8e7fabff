"""How long the audio callback can wait for the GIL, and how to keep that short.

The JACK process callback and the PortAudio callback are Python: before they run, their thread
must take the GIL. Another thread running pure Python keeps the GIL until the interpreter's
switch interval (5 ms by default) has passed since the callback asked for it, and a full
garbage collection holds it for as long as it takes to walk every tracked object (a loaded
model is hundreds of thousands of them). At a 256-frame period (5.8 ms) either one is a late
callback: an xrun, a click.

:func:`prepare_for_audio` shortens the switch interval to :data:`SWITCH_INTERVAL_S` and moves
everything alive once the engine has warmed up (the model, the modules) out of the collector's
sight with :func:`gc.freeze`, so later collections walk only what was made since. Both act on
the whole process; :func:`restore` puts them back (tests run several engines in one process).
"""

from __future__ import annotations

import gc
import sys

SWITCH_INTERVAL_S = 0.0005
"""The longest a thread running Python keeps the GIL while the audio thread waits (0.5 ms)."""


def prepare_for_audio() -> float:
    """Shorten the GIL switch interval and freeze the objects alive now; return the old interval."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, SWITCH_INTERVAL_S))
    gc.collect()
    gc.freeze()
    return old


def restore(interval: float) -> None:
    """Undo :func:`prepare_for_audio` (the interval it returned)."""
    sys.setswitchinterval(interval)
    gc.unfreeze()
