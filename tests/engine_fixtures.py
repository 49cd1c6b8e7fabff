"""Helpers for live-engine tests: the engine on its own loop thread, or as a ``riffengine run``
process, against a real JACK server.

:class:`LiveEngine` runs :meth:`Engine.run` on a background thread (signals off) and records
every bus event, so a test can act (OSC, MIDI, JACK) from its own thread and wait for what it
expects. :class:`EngineProcess` runs the command line in a subprocess (for faults that touch
the whole process: SIGKILL, a file-size limit, the JACK server going away), and reads its
events log. Waiting is always "poll until true or time out".
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from surface_fixtures import wait_until

from riffengine.engine import Engine
from riffengine.eventlog import read_events
from riffengine.render.bank import item_for, write_safe
from riffengine.render.cache import RenderCache
from riffengine.render.fake import FakeRenderer
from riffengine.state import initial_state

TIMEOUT = 30.0


class LiveEngine:
    """An :class:`Engine` running on a loop thread; ``with LiveEngine(engine) as live: ...``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.events: list = []
        self.result: int | None = None
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="live-engine", daemon=True)
        engine.bus.subscribe(self.events.append)

    def _run(self) -> None:
        async def main() -> int:
            self.loop = asyncio.get_running_loop()
            return await self.engine.run()

        try:
            self.result = asyncio.run(main())
        except BaseException as exc:  # reported by __exit__ / wait_started
            self.error = exc

    def __enter__(self) -> LiveEngine:
        self._thread.start()
        wait_until(lambda: self.error is not None or self.kinds("started"), TIMEOUT, "the stream to start")
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive() and self.loop is not None:
            self.loop.call_soon_threadsafe(self.engine.stop)
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "the engine did not stop"
        if self.error is not None:
            raise self.error
        assert self.result == 0

    def call(self, fn: Callable, *args):
        """Run ``fn(*args)`` on the engine's loop thread and return its result (or raise)."""

        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(TIMEOUT)

    def kinds(self, kind: str) -> list:
        return [e for e in list(self.events) if e.kind == kind]

    def wait_event(self, kind: str, predicate: Callable[[dict], bool] = lambda d: True, timeout: float = TIMEOUT):
        """The first event of ``kind`` whose data matches ``predicate``."""

        def find():
            return next((e for e in self.kinds(kind) if predicate(e.data)), None)

        return wait_until(find, timeout, f"a {kind} event")

    def loops_after(self, count: int, timeout: float = TIMEOUT) -> None:
        """Wait until ``count`` more loops have started (the audio goes on)."""
        start = len(self.kinds("loop_started"))
        wait_until(lambda: len(self.kinds("loop_started")) >= start + count, timeout, f"{count} more loops")


class EngineProcess:
    """``riffengine run`` as a subprocess with an events log; stopped by its PID."""

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.events_path = tmp_path / "events.jsonl"
        self.log_path = tmp_path / "engine.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "riffengine.cli", "run", "--events", str(self.events_path), *args],
            env=dict(os.environ, **(env or {})),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )

    def events(self, kind: str | None = None) -> list[dict]:
        if not self.events_path.exists():
            return []
        events = read_events(self.events_path)
        return events if kind is None else [e for e in events if e["kind"] == kind]

    def wait_event(self, kind: str, predicate: Callable[[dict], bool] = lambda e: True, timeout: float = 60.0) -> dict:
        def find():
            if self.proc.poll() is not None:
                raise AssertionError(f"the engine exited ({self.proc.returncode}): {self.output()}")
            return next((e for e in self.events(kind) if predicate(e)), None)

        return wait_until(find, timeout, f"a {kind} event")

    def loops_after(self, count: int, timeout: float = 60.0) -> None:
        start = len(self.events("loop_started"))
        self.wait_event("loop_started", lambda e: len(self.events("loop_started")) >= start + count, timeout)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit status (SIGKILL if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def bank_safe_loop(folder: Path, settings) -> None:
    """Bank the starting state of ``settings`` as the safe loop in the render cache ``folder``,
    as ``riffengine bank`` would (rendered by the fake renderer)."""
    item = item_for("verse", initial_state(settings))
    clip = FakeRenderer().render(item.request, item.model_frames)
    cache = RenderCache(folder)
    cache.put("safe", clip.image, clip.audio, clip.sample_rate)
    write_safe(cache, item, "safe")
