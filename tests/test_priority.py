"""The audio process's priority: raised for every thread, put back for its children."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

# Run in a child process: the test process keeps its own priority.
PROBE = textwrap.dedent("""
    import json, os, subprocess, sys, threading
    from riffengine.audio import priority

    started = threading.Event()
    hold = threading.Event()
    before = threading.Thread(target=lambda: (started.set(), hold.wait()))
    before.start()
    started.wait()
    usual = priority.raise_priority()
    nices = {}
    def after():
        nices["after"] = os.getpriority(os.PRIO_PROCESS, 0)
        nices["after_policy"] = os.sched_getscheduler(0)
    t = threading.Thread(target=after); t.start(); t.join()
    nices["before"] = os.getpriority(os.PRIO_PROCESS, before.native_id)
    nices["main"] = os.getpriority(os.PRIO_PROCESS, 0)
    nices["before_policy"] = os.sched_getscheduler(before.native_id)
    child = subprocess.run([sys.executable, "-c",
                            "import os; print(os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0))"],
                           capture_output=True, text=True, check=True,
                           preexec_fn=priority.child_priority(usual))
    nices["child"], nices["child_policy"] = map(int, child.stdout.split())
    priority.restore(usual)
    nices["restored"] = os.getpriority(os.PRIO_PROCESS, before.native_id)
    nices["restored_policy"] = os.sched_getscheduler(before.native_id)
    hold.set(); before.join()
    print(json.dumps({"usual": usual, **nices}))
""")


def test_every_thread_is_raised_and_children_are_not():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    if got["usual"] is None:  # not allowed here: nothing changed, and nothing broke
        assert got["main"] == got["before"] == got["after"] == got["child"] == got["restored"]
        return
    from riffengine.audio.priority import AUDIO_NICE

    # a thread that was running before, the calling thread, and a thread made after
    assert got["before"] == got["main"] == got["after"] == AUDIO_NICE
    assert got["before_policy"] == got["after_policy"]  # round robin where allowed, else usual
    assert got["before_policy"] in (os.SCHED_RR, os.SCHED_OTHER)
    assert got["child"] == got["usual"] and got["child_policy"] == os.SCHED_OTHER
    assert got["restored"] == got["usual"] and got["restored_policy"] == os.SCHED_OTHER
