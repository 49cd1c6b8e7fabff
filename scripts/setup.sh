#!/usr/bin/env bash
# Sets up riffengine on a Debian machine: system packages (audio, MIDI, OSC tools) and a
# Python virtual environment in .venv with the package installed in it.
#
#   scripts/setup.sh           engine only
#   scripts/setup.sh --test    engine plus the test tools and the Link extra (aalink, GPL-3)
#
# Safe to run again: apt and pip skip what is already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extra=""
[[ "${1:-}" == "--test" ]] && extra="[test,link]"

apt_packages=(
  libportaudio2      # sounddevice's PortAudio
  libsndfile1        # soundfile: wav/flac/ogg
  jackd2             # JACK server (dummy backend in tests, real at shows)
  jack-capture       # records a JACK graph to a file
  liblo-tools        # oscsend / oscdump
  puredata-core      # headless Pure Data for the example patch
  fluidsynth         # renders the project's seed loops from MIDI
  fluid-soundfont-gm # General MIDI soundfont for fluidsynth
  espeak-ng          # speech and sung vowels for the decoder's evaluation corpus
)

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
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: installing riffengine${extra} into .venv (torch 2.11 is large the first time)"
.venv/bin/python -m pip install -q -e ".${extra}"
echo "setup: done"
