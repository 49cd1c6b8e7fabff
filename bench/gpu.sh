#!/usr/bin/env bash
# Every GPU figure of issue 15 in one run, written under OUT (at most 8 files):
#
#   render.log    bench/render.py at riffusion-app's defaults on the full-size random SD 1.5
#                 model: (a) stock diffusers fp16 eager + reference decode, (b0) riffengine
#                 without levers, (b) with the eager levers, (c) fast preset, (d) instant
#                 preset (random rank-64 LoRA fused, LCM x4), and (b)'s image against (a)'s
#   codec.log     bench/codec.py: per-clip decode and SC on the GPU and on the CPU, batch of 8
#   compile.log   (b)/(c) compiled (model.compile mode, default max-autotune) from a cold
#                 compile cache, first-compile time; then a new process with the cache warm:
#                 the restart (model build + first render) and (b) again
#   live.log      bench/latency.py: the live engine with the full-size model playing into a
#                 private JACK dummy server: change-to-heard against the bar, render times,
#                 underruns, xruns, callback times, GPU memory
#   env.log       GPU, driver, packages, setup
#   figures.json  the numbers of render and compile as JSON
#   summary.txt   the figures against the issue's targets (also printed last)
#
#   bash bench/gpu.sh OUT                 # on the GPU machine (after bench/gpu_prepare.sh here)
#   bash bench/gpu.sh OUT --tiny          # the same steps on the CPU with the tiny model
#
# Options: --tiny, --phases render,codec,compile,live (default all), --live-seconds N (default
# 300, shortened to fit --budget), --budget S (seconds for the whole run, default 560).
# COMPILE_MODE (default max-autotune) and LIVE_SET (extra --set for the live run, e.g.
# "model.compile=max-autotune") come from the environment. Phases run in priority order and
# each has a time cap, so one that hangs cannot eat the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

OUT=${1:?usage: bench/gpu.sh OUT [--tiny] [--phases LIST] [--live-seconds N] [--budget S]}
shift
TINY=0; PHASES=render,codec,compile,live; LIVE_SECONDS=300; BUDGET=560
while [ $# -gt 0 ]; do
  case $1 in
    --tiny) TINY=1 ;;
    --phases) PHASES=$2; shift ;;
    --live-seconds) LIVE_SECONDS=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
START=$(date +%s)
COMPILE_MODE=${COMPILE_MODE:-max-autotune}
WORK=$(mktemp -d /tmp/riff-gpu.XXXXXX)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export RIFFENGINE_COMPILE_CACHE=$WORK/compile-cache   # cold for the first compile below
PY=${PYTHON:-python3}

log() { echo "[gpu.sh $(( $(date +%s) - START )) s] $*" | tee -a "$OUT/env.log"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
has_phase() { [[ ",$PHASES," == *",$1,"* ]]; }
# run CAP LOGFILE CMD...: run with a time cap (never past the budget), output to the log
run() {
  local cap=$1 file=$2; shift 2
  local limit; limit=$(left)
  [ "$cap" -lt "$limit" ] && limit=$cap
  if [ "$limit" -lt 20 ]; then log "skipped (budget spent): $*"; echo "SKIPPED: budget spent" >>"$file"; return 1; fi
  log "run (cap ${limit} s): $*"
  echo "\$ $*" >>"$file"
  timeout -k 10 "$limit" "$@" >>"$file" 2>&1
  local rc=$?
  [ $rc -eq 124 ] && echo "TIMED OUT after ${limit} s" >>"$file"
  log "exit $rc"
  return $rc
}

# --- setup: carried wheels and JACK packages (a GPU machine has no network) ---------------------
setup_device() {
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$WORK/site" .whl/*.whl >>"$OUT/env.log" 2>&1 && log "installed .whl/ into $WORK/site"
    export PYTHONPATH=$WORK/site:$ROOT
  fi
  if ! command -v jackd >/dev/null && [ -d .debs ]; then
    local root=$WORK/jackroot libs=$WORK/jacklibs
    mkdir -p "$root" "$libs"
    for deb in .debs/*.deb; do dpkg -x "$deb" "$root"; done
    # only the libraries this system lacks, by soname, so none of its own is shadowed
    for lib in "$root"/usr/lib/x86_64-linux-gnu/*.so.* "$root"/lib/x86_64-linux-gnu/*.so.*; do
      local name; name=$(basename "$lib")
      [[ $name =~ \.so\.[0-9]+$ ]] || continue
      ldconfig -p | grep -q "^[[:space:]]*$name " || cp -L "$lib" "$libs/$name"
    done
    echo "$libs" >/etc/ld.so.conf.d/zz-riffengine-jack.conf && ldconfig
    export PATH=$root/usr/bin:$PATH JACK_DRIVER_DIR=$root/usr/lib/x86_64-linux-gnu/jack
    log "JACK from .debs: $(ls "$libs" | tr '\n' ' ')"
  fi
}

export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
if [ $TINY -eq 1 ]; then
  DEVICE=cpu
  RENDER_ARGS=(--device cpu --tiny --steps 4 --fast-steps 2 --width 64 --repeat 1 --warmup 0)
  CODEC_IMAGES=(riffengine/seeds/groove_94.png riffengine/seeds/house_120.png)
  CODEC_ARGS=(--repeat 1 --skip-reference --batch)
  LIVE_ARGS=(--steps 2)
  [ "$COMPILE_MODE" = max-autotune ] && COMPILE_MODE=default   # no CUDA graphs on the CPU
  # inductor's C++ kernels take many minutes to build on a small CPU: capture the graphs only
  COMPILE_ARGS=(--compile-backend "${COMPILE_BACKEND:-aot_eager}" --channels-last)
  LIVE_SECONDS=$(( LIVE_SECONDS < 60 ? LIVE_SECONDS : 60 ))
  PY=${PYTHON:-python3}
else
  DEVICE=cuda
  RENDER_ARGS=(--device cuda)
  CODEC_IMAGES=()
  CODEC_ARGS=(--repeat 5)
  LIVE_ARGS=()
  COMPILE_ARGS=()
  setup_device
fi
log "mode $([ $TINY -eq 1 ] && echo tiny/CPU || echo GPU), phases $PHASES, budget $BUDGET s, compile mode $COMPILE_MODE"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>/dev/null
  $PY -c "import torch, diffusers, transformers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__); print('device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', 'threads', torch.get_num_threads())"
  command -v jackd jack_wait
} >>"$OUT/env.log" 2>&1

MODEL_DIR=$WORK/model
# 1. the render variants, eager (also writes the model for the live run)
if has_phase render; then
  run 200 "$OUT/render.log" $PY bench/render.py "${RENDER_ARGS[@]}" \
    --json "$WORK/render_eager.json" --save-model "$MODEL_DIR"
fi
# 2. the codec on the device (and on the CPU, for the same SC)
if has_phase codec; then
  run 90 "$OUT/codec.log" $PY bench/codec.py --device "$DEVICE" "${CODEC_ARGS[@]}" "${CODEC_IMAGES[@]}"
  if [ $TINY -eq 0 ]; then
    run 60 "$OUT/codec.log" $PY bench/codec.py --device cpu --repeat 1 --skip-reference
  fi
fi
# 3. compile from a cold cache, then restart with it warm
if has_phase compile; then
  rm -rf "$RIFFENGINE_COMPILE_CACHE"
  if run 300 "$OUT/compile.log" $PY bench/render.py "${RENDER_ARGS[@]}" --compile "$COMPILE_MODE" \
      "${COMPILE_ARGS[@]}" --skip-stock --no-lever-baseline --variants b,c --json "$WORK/render_compiled.json"; then
    echo "compile cache after the first compile: $(du -sh "$RIFFENGINE_COMPILE_CACHE" 2>/dev/null)" >>"$OUT/compile.log"
    restart_start=$(date +%s)
    run 150 "$OUT/compile.log" $PY bench/render.py "${RENDER_ARGS[@]}" --compile "$COMPILE_MODE" \
      "${COMPILE_ARGS[@]}" --skip-stock --no-lever-baseline --variants b --json "$WORK/render_restart.json"
    echo "restart with the warm cache: $(( $(date +%s) - restart_start )) s wall for the whole process (imports, model build, compile from the cache, renders)" >>"$OUT/compile.log"
  else
    # a compile cut short can leave half-written kernels behind: no restart on that cache
    echo "restart not measured: the first compile did not finish" >>"$OUT/compile.log"
  fi
fi
# 4. the live engine, as long as the budget allows (up to --live-seconds)
if has_phase live; then
  if [ ! -d "$MODEL_DIR/unet" ]; then
    run 120 "$OUT/live.log" $PY bench/render.py "${RENDER_ARGS[@]}" --skip-stock \
      --no-lever-baseline --variants b --save-model "$MODEL_DIR"
  fi
  spare=$(( $(left) - 60 ))   # model load, JACK start, warm-up and the report
  seconds=$(( LIVE_SECONDS < spare ? LIVE_SECONDS : spare ))
  if [ "$seconds" -ge 20 ]; then
    extra=()
    for kv in ${LIVE_SET:-}; do extra+=(--set "$kv"); done
    echo "live run: $seconds s (asked $LIVE_SECONDS s)" >>"$OUT/live.log"
    run $(( seconds + 120 )) "$OUT/live.log" $PY bench/latency.py --model "$MODEL_DIR" \
      --device "$DEVICE" --duration "$seconds" "${LIVE_ARGS[@]}" "${extra[@]}"
  else
    echo "SKIPPED: $spare s left in the budget" >>"$OUT/live.log"
  fi
fi

$PY bench/gpu_summary.py "$OUT" "$WORK" --tiny "$TINY" | tee "$OUT/summary.txt"
log "done in $(( $(date +%s) - START )) s"
rm -rf "$WORK/model" "$WORK/site"
