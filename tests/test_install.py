"""The install: the environment equals the lock, every import is declared, a wheel is whole."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK_LOCK = ROOT / "scripts" / "check_lock.py"
TEST_LOCK = ROOT / "requirements" / "test.txt"
RUN_LOCK = ROOT / "requirements" / "run.txt"

sys.path.insert(0, str(ROOT / "scripts"))
import check_lock  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def check(lock: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK_LOCK), str(lock)], capture_output=True, text=True, timeout=60)


def requirement_name(spec: str) -> str:
    """The distribution a requirement such as ``"torch==2.11.0"`` names, canonical."""
    return check_lock.canonical(re.match(r"\s*([A-Za-z0-9._-]+)", spec).group(1))


def declared() -> set[str]:
    project = PYPROJECT["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    return {requirement_name(s) for s in specs}


# --- the lock ---------------------------------------------------------------------------------


def test_the_test_environment_equals_the_lock():
    result = check(TEST_LOCK)
    assert result.returncode == 0, result.stderr


def test_a_changed_pin_fails_naming_the_package(tmp_path):
    locked = check_lock.read_lock(TEST_LOCK)["torchaudio"]
    changed = tmp_path / "test.txt"
    changed.write_text(TEST_LOCK.read_text().replace(f"torchaudio=={locked}", "torchaudio==2.11.1"))
    result = check(changed)
    assert result.returncode == 1
    assert f"torchaudio: installed {locked}, the lock pins 2.11.1" in result.stderr
    assert "scripts/setup.sh" in result.stderr


def test_a_missing_package_fails_naming_it(tmp_path):
    lock = tmp_path / "test.txt"
    lock.write_text(TEST_LOCK.read_text() + "not-a-riffengine-dependency==1.0 \\\n    --hash=sha256:00\n")
    result = check(lock)
    assert result.returncode == 1
    assert "not-a-riffengine-dependency: not installed, the lock pins 1.0" in result.stderr


def test_the_engine_lock_agrees_with_the_test_lock():
    run, test = check_lock.read_lock(RUN_LOCK), check_lock.read_lock(TEST_LOCK)
    assert run, "requirements/run.txt pins nothing"
    assert {name: test.get(name) for name in run} == run
    # The engine alone does not install the test tools or the GPL-3 Link extra.
    assert not {"pytest", "aalink", "hypothesis"} & set(run)


@pytest.mark.parametrize("lock", [RUN_LOCK, TEST_LOCK], ids=["run", "test"])
def test_every_pin_is_exact_and_hashed(lock):
    text = lock.read_text()
    pins = check_lock.read_lock(lock)
    for name, version in pins.items():
        block = text.split(f"{name}=={version}", 1)[1].split("\n\n", 1)[0]
        assert "--hash=sha256:" in block.split("\n", 2)[1], f"{name} has no hash in {lock.name}"
    # No machine's local wheel folder or index is written into a file every machine installs.
    assert "file://" not in text and "--find-links" not in text and "--index-url" not in text


def test_torch_and_torchaudio_are_one_pair_everywhere():
    deps = {requirement_name(d): d for d in PYPROJECT["project"]["dependencies"]}
    for lock in (RUN_LOCK, TEST_LOCK):
        pins = check_lock.read_lock(lock)
        for name in ("torch", "torchaudio"):
            assert deps[name].replace(" ", "") == f"{name}=={pins[name]}", (name, lock.name)


def test_every_dependency_and_extra_is_locked():
    pins = check_lock.read_lock(TEST_LOCK)
    assert declared() - set(pins) == set()


# --- every import is declared -----------------------------------------------------------------


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def local_modules() -> set[str]:
    folders = ("tests", "bench", "scripts", "examples")
    return {"riffengine"} | {p.stem for f in folders for p in (ROOT / f).rglob("*.py")}


def import_providers() -> dict[str, set[str]]:
    """Top-level module name -> the distributions that install it, read from their file lists
    (Python 3.11's ``packages_distributions`` misses single-file extension modules)."""
    providers: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        for file in dist.files or ():
            top = file.parts[0]
            if top.endswith((".dist-info", ".egg-info", ".pth")) or top in ("..", "__pycache__"):
                continue
            module = top.split(".")[0]
            if len(file.parts) > 1 or top.endswith((".py", ".so", ".pyd")):
                providers.setdefault(module, set()).add(check_lock.canonical(dist.metadata["Name"]))
    return providers


def test_every_third_party_import_is_declared():
    """psutil, say, imported by a test but declared nowhere would install only by luck."""
    providers = import_providers()
    ours, wanted = local_modules(), declared()
    missing = {}
    for folder in ("riffengine", "tests", "bench", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            for module in top_level_imports(path) - ours - set(sys.stdlib_module_names):
                dists = providers.get(module, set())
                if not dists & wanted:
                    missing.setdefault(module, []).append(str(path.relative_to(ROOT)))
    assert missing == {}, "imported but not declared in pyproject.toml: " + repr(missing)


# --- a plain (non-editable) install is whole ---------------------------------------------------


def test_a_wheel_install_runs_check_with_the_shipped_default_config(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "cwd"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=240,
        capture_output=True,
    )
    wheel = next(wheels.glob("riffengine-*.whl"))
    subprocess.run(
        pip + ["install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert (target / "riffengine" / "configs" / "default.yaml").is_file()
    assert len(list((target / "riffengine" / "seeds").glob("*.png"))) >= 1
    # The wheel's copy is imported, not the checkout's, from a folder with no configs/ in it.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import riffengine, riffengine.cli as c; "
        "print('FROM', riffengine.__file__); sys.exit(c.main(['check']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(target)], cwd=elsewhere, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert f"FROM {target}" in result.stdout
    assert f"{target / 'riffengine' / 'configs' / 'default.yaml'}: OK" in result.stdout
