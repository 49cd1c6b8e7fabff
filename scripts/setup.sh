#!/usr/bin/env bash
# Sets up riffengine on a Debian machine: system packages (audio, MIDI, OSC tools) and a
# Python virtual environment in .venv with the package installed in it.
#
#   scripts/setup.sh           engine only                    (from requirements/run.txt)
#   scripts/setup.sh --test    engine plus the test tools,     (from requirements/test.txt)
#                              the Link extra (aalink, GPL-3)
#                              and the Ray extra (render.backend: ray)
#
# Python packages come from the lock alone: exact versions, checked against the hashes in the
# lock, no resolution at install time, so two machines a month apart get the same tree. The
# environment is checked against the lock at the end (scripts/check_lock.py).
# Safe to run again: apt and pip skip what is already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

lock=requirements/run.txt
case "${1:-}" in
  "") ;;
  --test) lock=requirements/test.txt ;;
  *) echo "setup: unknown option '$1' (use --test, or nothing)" >&2; exit 2 ;;
esac

apt_packages=(
  libportaudio2      # sounddevice's PortAudio
  libsndfile1        # soundfile: wav/flac/ogg
  jackd2             # JACK server (dummy backend in tests, real at shows)
  jack-capture       # records a JACK graph to a file
  liblo-tools        # oscsend / oscdump
  puredata-core      # headless Pure Data for the example patch
  fluidsynth         # renders the project's seed loops from MIDI
  fluid-soundfont-gm # General MIDI soundfont for fluidsynth
)
# Only for the tests (--test).
test_apt_packages=(
  espeak-ng          # speech and sung vowels for the decoder's evaluation corpus
  curl               # an HTTP client nobody here wrote, for the OSCQuery tests
  chromium           # headless browser for the web surface tests (driven by Selenium)
  chromium-driver    # chromedriver for that browser; nothing is downloaded
  gcc                # builds bench/listener.c, the xrun benchmark's C JACK client
  libjack-jackd2-dev # JACK's headers for it
)
[[ "$lock" == requirements/test.txt ]] && apt_packages+=("${test_apt_packages[@]}")

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
echo "setup: installing $lock into .venv (torch is large the first time)"
.venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r "$lock"
# riffengine itself, editable, built with the locked setuptools; its dependencies are the lock's.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
.venv/bin/python scripts/check_lock.py "$lock"
echo "setup: done"
