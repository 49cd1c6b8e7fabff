"""A local Ray instance for the scale-out tests, started once per test session.

Import it into a test module::

    from ray_fixtures import ray_instance  # noqa: F401  (tests/ is on sys.path)

``ray.init(num_cpus=2)`` starts a head (GCS, raylet) and its workers as children of this
process; the fixture shuts it down at the end, unless a test stopped it already (the one
that checks the fall-back to local rendering). It stops nothing it did not start: a Ray
instance already running in this process is used and left running.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_instance():
    ray = pytest.importorskip("ray", reason="Ray is not installed (scripts/setup.sh --test installs it)")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
