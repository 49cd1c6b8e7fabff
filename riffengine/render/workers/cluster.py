"""Finding Ray and joining (or starting) an instance; where an actor is placed.

Ray is an optional extra (``pip install 'riffengine[ray]'``): it is imported here only, and
only when ``render.backend`` is ``ray``.
"""

from __future__ import annotations

import logging
from types import ModuleType

from riffengine.errors import UserError

log = logging.getLogger(__name__)

NOT_INSTALLED = (
    "render.backend is ray but Ray is not installed: pip install 'riffengine[ray]' "
    "(or scripts/setup.sh --test), or set render.backend: local"
)


def import_ray() -> ModuleType:
    """The ``ray`` module; UserError naming the fix when it is not installed."""
    try:
        import ray
    except ImportError as exc:
        raise UserError(NOT_INSTALLED) from exc
    return ray


def init_arguments(address: str) -> dict[str, object]:
    """``ray.init`` keywords for ``render.ray.address``: ``local`` starts an instance here,
    ``auto`` joins the one ``ray start`` runs on this machine, anything else is an address."""
    quiet: dict[str, object] = {"include_dashboard": False, "log_to_driver": False}
    if address == "local":
        return quiet
    return {"address": address, **quiet}


def connect(address: str) -> tuple[ModuleType, bool]:
    """Join the Ray instance at ``address``; also whether this call started or joined it (a
    connection this process already has is used as it is, and left to its owner).

    Blocking (seconds; a new local instance takes longer): call it off the engine's loop.
    Raises what ``ray.init`` raises (ConnectionError when nothing listens there).
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    ray.init(**init_arguments(address))
    return ray, True


def actor_options(device: str, cluster_gpus: float) -> dict[str, object]:
    """Ray options of one render actor: one GPU each when the cluster has GPUs and the model
    is not put on the CPU, else one CPU each. Ray restarts a dead actor (``max_restarts``);
    a task is not retried on it (``max_task_retries`` 0): the pool moves the job to another
    worker at once rather than wait for a model to load again."""
    options: dict[str, object] = {
        "max_restarts": -1,
        "max_task_retries": 0,
        "max_concurrency": 1,
        "num_cpus": 1,
        "scheduling_strategy": "SPREAD",
    }
    if device != "cpu" and cluster_gpus >= 1:
        options["num_gpus"] = 1
    return options
