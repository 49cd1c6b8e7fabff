#!/usr/bin/env bash
# Gather, on a machine with network access, what bench/gpu.sh needs on a GPU machine that has
# none: Python wheels for CPython 3.12 (x86-64 manylinux) at the lock's versions, in .whl/, and
# the Debian packages of a JACK server and PortAudio, in .debs/. Both folders are ignored by
# git; carry them to the GPU machine with the working tree. Nothing here runs on the GPU.
#
#   bash bench/gpu_prepare.sh          # then: bash bench/gpu.sh "$OUT" on the GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."

# The engine's Python dependencies the GPU image lacks or holds at other versions
# (its transformers 5 / huggingface-hub 1 are newer than the lock's), at the lock's versions.
NAMES=(diffusers peft transformers tokenizers huggingface-hub python-osc mido python-rtmidi
       sounddevice jack-client soundfile cffi pycparser zeroconf ifaddr)
WHEELS=()
for name in "${NAMES[@]}"; do
  pin=$(grep -m1 -i "^${name}==" requirements/run.txt | cut -d' ' -f1)
  [[ -n "$pin" ]] || { echo "gpu_prepare: $name is not in requirements/run.txt" >&2; exit 2; }
  WHEELS+=("$pin")
done
mkdir -p .whl
PLATFORMS=()
for n in 28 27 17 5; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
for wheel in "${WHEELS[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]}" -d .whl "$wheel"
done

# jackd (dummy backend), jack_wait, libjack and PortAudio (with its JACK host API), and the
# libraries they link that a bare CUDA image may lack; gpu.sh installs only the missing ones.
DEBS=(jackd2 libjack-jackd2-0 libportaudio2 libopus0 libdb5.3 libsamplerate0 libasound2
      libreadline8 libzita-alsa-pcmi0 libzita-resampler1 libdbus-1-3 libexpat1)
mkdir -p .debs
(cd .debs && apt-get download "${DEBS[@]}")
du -sh .whl .debs
