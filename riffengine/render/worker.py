"""The render worker: one thread owns the model and renders the newest request.

Thread rules:

- After :meth:`RenderWorker.start`, only the worker thread touches the renderer and the model
  (torch state, caches, CUDA streams). Other threads only call :meth:`submit`, :meth:`stop` and
  the read-only properties.
- :meth:`submit` never blocks on a render. A job that has not started yet is replaced by a newer
  one (newest wins; the dropped job is returned to the caller). A job that has started runs to
  the end; at most one render runs at a time.
- ``on_result`` is called on the worker thread, once per job that ran, with a
  :class:`RenderResult`. An asyncio program wraps it, e.g.
  ``lambda r: loop.call_soon_threadsafe(handle, r)``. It must not block for long.
- A render that raises does not stop the worker: the error is in the result. It is logged once
  per streak: the same failure again (same class and message, no success between) is logged
  at debug level only, so a renderer retried for minutes does not fill the journal.
- A program must not end while the worker thread is inside torch: a daemon thread that wakes
  up in a C++ frame during interpreter shutdown aborts the process ("terminate called without
  an active exception", status 134). Stop the render in flight (``on_step`` raising
  :class:`RenderCancelled`) and :meth:`stop` with a timeout long enough for it to end.
- A CUDA out-of-memory error frees PyTorch's cached GPU memory (on the worker thread, which owns
  the GPU) before the result is handed over, so a retry has a chance.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from riffengine.errors import UserError

log = logging.getLogger(__name__)


class RenderCancelled(Exception):
    """Raised from a renderer's ``on_step`` to stop a render nobody wants any more (a loop
    rendered ahead that a control change overtook). Its result carries it; it is not logged."""


class Maker(Protocol):
    """What the worker runs: ``render(spec)`` makes one clip (the engine's
    :class:`~riffengine.clipmaker.ClipMaker`, whose specs are :class:`~riffengine.clipmaker.ClipSpec`)."""

    on_step: Callable[[int, int], None] | None
    """Called with ``(step, steps)`` during a render while set (the engine's warm-up progress
    and its cancelling of renders nobody wants)."""

    def render(self, spec: Any) -> Any: ...


@dataclass(frozen=True)
class RenderJob:
    """What to make (a spec the maker takes: the engine's ``ClipSpec``) and a caller's tag."""

    spec: Any
    tag: object = field(default=None, compare=False)


@dataclass(frozen=True)
class RenderResult:
    """What came of a job: the maker's clip or an error, the seconds the render took, and the
    worker that made it (``local`` for the render thread, a Ray actor's name otherwise)."""

    job: RenderJob
    clip: Any
    error: BaseException | None
    seconds: float
    worker: str = "local"

    @property
    def ok(self) -> bool:
        return self.error is None


class RenderWorker:
    """Runs jobs one at a time on its own thread; see the module docstring for the rules."""

    def __init__(self, renderer: Maker, on_result: Callable[[RenderResult], None], name: str = "riffengine-render"):
        self.renderer = renderer
        self.on_result = on_result
        self._cond = threading.Condition()
        self._pending: RenderJob | None = None
        self._running: RenderJob | None = None
        self._stopping = False
        self._last_failure: tuple[str, str] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- called from any thread

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def submit(self, job: RenderJob) -> RenderJob | None:
        """Queue ``job`` as the next render; returns the not-yet-started job it replaced."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("the render worker is stopped")
            dropped, self._pending = self._pending, job
            self._cond.notify()
        return dropped

    def stop(self, timeout: float | None = None) -> None:
        """Drop the pending job, let a running render finish, and end the thread."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the worker thread runs (a render may be under way after :meth:`stop`)."""
        return self._thread.is_alive()

    @property
    def pending(self) -> RenderJob | None:
        """The job waiting to start, if any."""
        with self._cond:
            return self._pending

    @property
    def running(self) -> RenderJob | None:
        """The job being rendered now, if any."""
        with self._cond:
            return self._running

    @property
    def idle(self) -> bool:
        """True when nothing is running or waiting."""
        with self._cond:
            return self._pending is None and self._running is None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is running or waiting (tests and tools; never in the loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._running is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # -- the worker thread

    def _next_job(self) -> RenderJob | None:
        with self._cond:
            while self._pending is None and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            job, self._pending = self._pending, None
            self._running = job
            return job

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            result = self._render(job)
            try:
                self.on_result(result)
            except Exception:  # noqa: BLE001 - a bad callback must not kill the worker
                log.exception("render result callback failed")
            with self._cond:
                self._running = None
                self._cond.notify_all()

    def _render(self, job: RenderJob) -> RenderResult:
        start = time.perf_counter()
        try:
            clip = self.renderer.render(job.spec)
            self._last_failure = None
            return RenderResult(job, clip, None, time.perf_counter() - start)
        except RenderCancelled as exc:
            return RenderResult(job, None, exc, time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001 - the show goes on; the error is reported
            seconds = time.perf_counter() - start
            if is_out_of_memory(exc):
                free_gpu_cache()
            self._log_failure(exc)
            return RenderResult(job, None, exc, seconds)

    def _log_failure(self, exc: Exception) -> None:
        signature = (type(exc).__name__, str(exc))
        again, self._last_failure = signature == self._last_failure, signature
        if again:
            log.debug("render failed again: %s", exc)
        elif isinstance(exc, UserError):
            log.warning("render rejected: %s", exc)
        else:
            log.exception("render failed")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` (checked by name: no torch import needed)."""
    return any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__)


def free_gpu_cache() -> None:
    """Return PyTorch's cached CUDA memory to the driver (render worker thread only)."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception as exc:  # noqa: BLE001 - a broken driver must not kill the worker
        log.debug("freeing the CUDA cache failed: %s", exc)
