"""A second Ableton Link peer in a child process, driven line by line over its stdin.

Commands: ``tempo BPM``, ``play``, ``stop`` (answered ``ok``), ``report`` (``report PEERS TEMPO
BAR_START``: the peer's bar start in ``time.monotonic()``), ``playing`` (``PEERS 0|1``), ``quit``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

PEER = textwrap.dedent(
    """
    import asyncio, sys, time
    from aalink import Link

    async def main(tempo, start_stop_sync):
        link = Link(tempo)
        link.quantum = 4.0
        link.start_stop_sync_enabled = start_stop_sync
        link.enabled = True
        loop = asyncio.get_running_loop()
        print("ready", flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            words = line.split()
            if not words or words[0] == "quit":
                return
            if words[0] == "tempo":
                link.tempo = float(words[1])
                print("ok", flush=True)
            elif words[0] in ("play", "stop"):
                link.playing = words[0] == "play"
                print("ok", flush=True)
            elif words[0] == "report":
                # bar start in time.monotonic(), from Link's own clock and beat
                m0 = time.monotonic(); lt = link.time.total_seconds(); m1 = time.monotonic()
                beat, tempo = link.beat, link.tempo
                bar = lt - (beat % 4.0) * 60.0 / tempo + (m0 + m1) / 2 - lt
                print("report", link.num_peers, tempo, repr(bar), flush=True)
            elif words[0] == "playing":
                print(link.num_peers, int(link.playing), flush=True)

    asyncio.run(main(float(sys.argv[1]), sys.argv[2] == "1"))
    """
)


class Peer:
    """The child process; started by PID, ended with ``quit`` (or killed) by :meth:`close`."""

    def __init__(self, tempo: float = 123.0, start_stop_sync: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PEER, str(tempo), "1" if start_stop_sync else "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def ask(self, line: str) -> list[str]:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().split()

    def report(self) -> tuple[int, float, float]:
        words = self.ask("report")
        return int(words[1]), float(words[2]), float(words[3])

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def bar_offset(a: float, b: float, bar: float) -> float:
    """``a - b`` folded into one bar around 0."""
    return (a - b + bar / 2) % bar - bar / 2


async def wait_for(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` every 50 ms on the running loop; False if it never held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False
