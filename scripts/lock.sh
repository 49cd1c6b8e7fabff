#!/usr/bin/env bash
# Refreshes the lock files from pyproject.toml's ranges:
#
#   requirements/test.txt   the engine, its tests, the Link and Ray extras (what `setup.sh --test` installs)
#   requirements/run.txt    the engine alone (what `setup.sh` installs), the same versions
#
# Every package, transitive ones included, at one exact version with the hashes of its files.
#
#   scripts/lock.sh             keep the current pins; resolve only what pyproject.toml changed
#   scripts/lock.sh --upgrade   move every package to the newest version the ranges allow
#
# It needs the package index (no GPU, no model). Run it after editing dependencies in
# pyproject.toml, or to take upgrades on purpose; then run the tests and commit the lock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

upgrade=()
case "${1:-}" in
  "") ;;
  --upgrade) upgrade=(--upgrade) ;;
  *) echo "lock.sh: unknown option '$1' (use --upgrade, or nothing)" >&2; exit 2 ;;
esac

python=${PYTHON:-python3}
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$python" -m venv "$tools"
# The resolver's own versions are pinned too, so a refresh is repeatable.
"$tools/bin/python" -m pip install -q "pip==25.2" "pip-tools==7.6.2"

# Resolve against the package index alone: this machine's pip configuration (local wheel
# folders, constraints, caches) must not leak into a file that every machine installs.
export PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1
export CUSTOM_COMPILE_COMMAND="scripts/lock.sh"
compile=("$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras
         --no-emit-index-url --no-emit-find-links --newline=lf "${upgrade[@]}")

"${compile[@]}" --extra test --extra link --extra ray -o requirements/test.txt pyproject.toml requirements/build.in
"${compile[@]}" -o requirements/run.txt pyproject.toml requirements/build.in requirements/run.in

echo "lock.sh: wrote requirements/test.txt and requirements/run.txt; run the tests, then commit them"
