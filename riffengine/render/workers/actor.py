"""The render actor: one per GPU (or CPU slot), it owns one model and makes clips.

The actor loads the model once, when it starts (and again when Ray restarts it), through
the same loader as the local worker (the factory the engine passes: ``ClipMaker`` over
``build_cached_renderer``), so its first clip does the same warm-up. What travels through
Ray: a :class:`~riffengine.clipmaker.ClipSpec` in (a few hundred bytes), a
:class:`~riffengine.clipmaker.MadeClip` out, the audio already decoded, at the output rate
(the codec runs next to the model, on the worker's GPU; see ``docs/scale-out.md``).

Thread rule: Ray runs one method at a time (``max_concurrency`` 1); the actor owns its maker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any


class RenderActor:
    """Makes clips with the maker ``make_maker()`` builds; wrapped by ``ray.remote`` in the pool."""

    def __init__(self, make_maker: Callable[[], Any]) -> None:
        self.maker = make_maker()

    def where(self) -> dict[str, object]:
        """Where this actor runs: host name, Ray node, process id, the GPUs Ray gave it."""
        import ray

        context = ray.get_runtime_context()
        return {
            "host": socket.gethostname(),
            "node": context.get_node_id()[:12],
            "pid": os.getpid(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
        }

    def render(self, spec: Any) -> Any:
        """One clip (a ``MadeClip``); a render error is raised to the caller, as Ray does."""
        return self.maker.render(spec)
