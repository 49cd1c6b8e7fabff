#!/usr/bin/env python3
"""Checks that the running Python environment holds exactly the versions a lock file pins.

    python scripts/check_lock.py requirements/test.txt

Exit status 0 when every locked package is installed at its locked version; 1 otherwise, with
one line per package naming the installed and the locked version and what to run. Packages
installed beyond the lock are listed as a note (a developer's own tools), not an error.
Standard library only, so it runs before anything else works.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

# "name==version" at the start of a line; hashes and comments follow on other lines.
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name: str) -> str:
    """A distribution name as the package index compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """The pins of a pip-compile lock file: canonical name -> exact version."""
    pins = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    """Every distribution the running interpreter sees: canonical name -> version."""
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def differences(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """One line per locked package that is missing or at another version."""
    problems = []
    for name, version in sorted(pins.items()):
        found = have.get(name)
        if found is None:
            problems.append(f"{name}: not installed, the lock pins {version}")
        elif found != version:
            problems.append(f"{name}: installed {found}, the lock pins {version}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_lock.py LOCKFILE", file=sys.stderr)
        return 2
    lock = Path(argv[0])
    if not lock.is_file():
        print(f"check_lock: no lock file at {lock}", file=sys.stderr)
        return 2
    pins = read_lock(lock)
    if not pins:
        print(f"check_lock: {lock} pins no package; regenerate it with scripts/lock.sh", file=sys.stderr)
        return 2
    have = installed()
    problems = differences(pins, have)
    extra = sorted(set(have) - set(pins) - {"pip", "riffengine"})
    if extra:
        print(f"check_lock: note: installed beyond {lock}: {', '.join(extra)}")
    if problems:
        for line in problems:
            print(f"check_lock: {line} ({lock})", file=sys.stderr)
        print(
            f"check_lock: this environment differs from {lock}: run scripts/setup.sh to "
            "install the lock, or scripts/lock.sh if pyproject.toml changed",
            file=sys.stderr,
        )
        return 1
    print(f"check_lock: {len(pins)} packages match {lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
