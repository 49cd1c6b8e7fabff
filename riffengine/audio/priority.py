"""The audio process's CPU priority: ahead of the renders, the browsers and the engine.

The callback's thread is scheduled by the driver: JACK makes it real-time (``SCHED_FIFO``)
when its server runs real-time, PortAudio asks for it on ALSA. But a Python callback must
first take the GIL, and the thread holding it is one of the process's ordinary threads (the
supervisor, the control receiver, the recorder's writer). On a busy machine the kernel may
leave that thread waiting behind a render or a garbage collection in another process while the
callback waits for it: a late callback, a click. :func:`raise_priority` gives every thread of
the audio process a high ``nice`` priority (:data:`AUDIO_NICE`, the value sound servers use),
so the thread holding the GIL gets the CPU back within a scheduler tick; real-time scheduling
stays with the driver's own thread.

Threads made later inherit the priority of the thread that makes them. A child process must
not (the engine renders: it would compete with its own audio): :func:`child_priority` is its
``preexec_fn``.

Raising priority needs the right to (root, ``CAP_SYS_NICE``, ``LimitNICE=-11`` under systemd, or
``@audio - nice -11`` in ``/etc/security/limits.conf``); without it the process runs as it is
and says so once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

AUDIO_NICE = -11
"""The nice value of the audio process's threads (PulseAudio's and PipeWire's default)."""


def _threads() -> list[int]:
    """This process's thread ids (Linux), or ``[0]`` (the calling thread) where /proc is missing."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def raise_priority(nice: int = AUDIO_NICE) -> int | None:
    """Give every thread of this process the nice value ``nice``; the previous value, or None.

    None when the system does not allow it (logged once, with how to allow it); nothing changes
    then. On Linux the nice value is a thread's, so each thread is set.
    """
    if not hasattr(os, "setpriority"):
        return None
    before = os.getpriority(os.PRIO_PROCESS, 0)
    if before <= nice:
        return before
    try:
        for tid in _threads():
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except PermissionError:
        log.info("the audio process runs at its usual priority (nice %d): raising it to %d needs "
                 "CAP_SYS_NICE, LimitNICE=%d under systemd, or a nice limit in "
                 "/etc/security/limits.conf", before, nice, nice)
        return None
    except ProcessLookupError:  # a thread ended meanwhile: the others are set
        pass
    log.debug("audio process priority raised to nice %d", nice)
    return before


def restore(nice: int | None) -> None:
    """Put every thread back at ``nice`` (what :func:`raise_priority` returned; None: nothing)."""
    if nice is None:
        return
    for tid in _threads():
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:  # a thread ended meanwhile
            pass


def child_priority(nice: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that puts a child back at ``nice`` (what :func:`raise_priority` returned).

    None (no ``preexec_fn``) when the priority was never raised. Lowering one's own priority
    is always allowed, so the function cannot fail in the child.
    """
    if nice is None or not hasattr(os, "setpriority"):
        return None

    def back() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, nice)

    return back
