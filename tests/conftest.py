# --- tiny Riffusion model (render tests) ---------------------------------------------------
import os as _os

import pytest as _pytest

_os.environ.setdefault("HF_HUB_OFFLINE", "1")


@_pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny randomly initialised model in the real Riffusion layout, built once per session."""
    from riffengine.render.model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")
