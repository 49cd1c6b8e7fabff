"""The audio process's CPU priority: ahead of the renders, the browsers and the engine.

The callback's thread is scheduled by the driver: JACK makes it real-time (``SCHED_FIFO``)
when its server runs real-time, PortAudio asks for it on ALSA. But a Python callback must
first take the GIL, and the thread holding it is one of the process's ordinary threads (the
supervisor, the control receiver, the recorder's writer). On a busy machine the kernel may
leave that thread waiting behind a render or a garbage collection in another process while the
callback waits for it: a late callback, a click. :func:`raise_priority` puts every thread of
the audio process at real-time round-robin scheduling at the lowest real-time priority
(:data:`HELPER_RT_PRIORITY`): no ordinary thread of the machine can hold up the thread that
holds the GIL, and the driver's callback still comes first. Where real-time scheduling is not
allowed, a high ``nice`` priority (:data:`AUDIO_NICE`, the value sound servers use) gets that
thread the CPU back within a scheduler tick. The threads are light (they wait on sockets,
queues and a 50 ms tick), so they cannot starve the machine.

Threads made later inherit the priority of the thread that makes them. A child process must
not (the engine renders: it would compete with its own audio): :func:`child_priority` is its
``preexec_fn``.

Raising priority needs the right to (root, ``CAP_SYS_NICE``, ``LimitRTPRIO=`` and
``LimitNICE=-11`` under systemd, or ``@audio - rtprio 95`` and ``@audio - nice -11`` in
``/etc/security/limits.conf``); without it the process runs as it is and says so once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

AUDIO_NICE = -11
"""The nice value of the audio process's threads (PulseAudio's and PipeWire's default)."""

HELPER_RT_PRIORITY = 1
"""The real-time (``SCHED_RR``) priority of the audio process's own threads: above every
ordinary thread of the machine, below the driver's callback (JACK's starts at 10 and up)."""


def _threads() -> list[int]:
    """This process's thread ids (Linux), or ``[0]`` (the calling thread) where /proc is missing."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _set_all(nice: int, realtime: bool) -> None:
    """Every thread at ``nice``, and ``SCHED_RR`` at :data:`HELPER_RT_PRIORITY` or the usual policy.

    PermissionError when not allowed; a thread that ended meanwhile is skipped.
    """
    policy, level = (os.SCHED_RR, HELPER_RT_PRIORITY) if realtime else (os.SCHED_OTHER, 0)
    for tid in _threads():
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
            os.sched_setscheduler(tid, policy, os.sched_param(level))
        except ProcessLookupError:
            pass


def raise_priority(nice: int = AUDIO_NICE) -> int | None:
    """Raise every thread of this process: nice ``nice``, and ``SCHED_RR`` at
    :data:`HELPER_RT_PRIORITY` where allowed. The previous nice value, or None.

    None when not even the nice value may be raised (logged once, with how to allow it); nothing
    changes then. On Linux both are a thread's, so each thread is set; threads made later
    inherit them.
    """
    if not hasattr(os, "sched_setscheduler"):
        return None
    before = os.getpriority(os.PRIO_PROCESS, 0)
    target = min(before, nice)
    try:
        _set_all(target, realtime=True)
    except PermissionError:
        try:
            _set_all(target, realtime=False)
        except PermissionError:
            log.info(
                "the audio process runs at its usual priority (nice %d): raising it to %d needs "
                "CAP_SYS_NICE, LimitNICE=%d under systemd, or a nice limit in "
                "/etc/security/limits.conf",
                before,
                nice,
                nice,
            )
            return None
        log.info(
            "the audio process's threads run at nice %d; real-time scheduling for them needs "
            "LimitRTPRIO=%d or more under systemd, or an rtprio limit in /etc/security/limits.conf",
            target,
            HELPER_RT_PRIORITY,
        )
        return before
    log.debug("audio process threads at nice %d, SCHED_RR %d", target, HELPER_RT_PRIORITY)
    return before


def restore(nice: int | None) -> None:
    """Put every thread back at ``nice`` and the usual policy (what :func:`raise_priority`
    returned; None: nothing)."""
    if nice is None:
        return
    try:
        _set_all(nice, realtime=False)
    except OSError:
        pass


def child_priority(nice: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that puts a child back at ``nice`` and the usual policy (what
    :func:`raise_priority` returned).

    None (no ``preexec_fn``) when the priority was never raised. Lowering one's own priority
    is always allowed, so the function cannot fail in the child.
    """
    if nice is None:
        return None

    def back() -> None:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, 0, nice)

    return back
