"""Shared fixtures, and CI's rule that no test may be skipped.

A skip means a component is missing (a Debian package, the shared reference data, an extra).
On a developer's machine that is a note; under CI (``CI`` set) it is a failure, so a missing
install step in ``scripts/setup.sh`` cannot hide behind a green run.
"""

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """A test that loads the engine's model (which sets torch's thread count for the CPU) leaves
    the count as it found it, so later tests run as they would alone."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    if before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny randomly initialised model in the real Riffusion layout, built once per session."""
    from riffengine.render.model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, turn a skip into a failure that names what was missing."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI ({skip_reason(report)}): CI must install every "
            f"component the tests use (scripts/setup.sh --test)"
        )
