#!/usr/bin/env bash
# GPU check: the measurements docs/scaling.md projects, in one go, for when a GPU is lent.
#
#   bash benchmarks/gpu_check.sh [--out DIR]          # on a CUDA machine (ViT-B-16, random weights)
#   bash benchmarks/gpu_check.sh --cpu-smoke          # the same chain on CPU, toy backbone, tiny sizes (~20 s)
#
# Runs, each logged to DIR (default: a fresh temp folder):
#   1. step_time.py --backbone ViT-B-16 --image-size 224 --batch-size 64 --device cuda --precision bf16
#      --real-config --flops: SynSeg / MixReorg step vs a CLIP step (ratios), SynSeg training images/s,
#      GFLOP per image (and so the achieved TFLOP/s, for the MFU assumed in docs/scaling.md);
#   2. eval_speed.py --device cuda (fp32, as `make eval`; then bf16, GPU only): ViT-B/16 ms per image at the
#      paper's protocol (448 short side, 448 / 224 sliding window, 20 classes), MaskCLIP-style and SynSeg;
#   3. data_throughput.py --real: per-core samples/s of the real data path on this machine's CPU.
# A failing part is reported and the others still run; the exit status is 1 if any part failed. If the bf16
# step fails, it is rerun in fp32 (reported as such) so that a GPU session still yields step times.
# Ends with a summary of `name: value` lines. Nothing here needs the network (random weights).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python
MODE=gpu
LOG_DIR=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu-smoke) MODE=smoke; shift ;;
    --out) LOG_DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (expected --cpu-smoke, --out DIR)" >&2; exit 2 ;;
  esac
done
LOG_DIR=${LOG_DIR:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$LOG_DIR"
export WANDB_MODE=${WANDB_MODE:-offline} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONWARNINGS=ignore

if [[ $MODE == gpu ]]; then
  if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check.sh: torch sees no CUDA device (use --cpu-smoke to check the script on CPU)" >&2
    exit 2
  fi
  DEVICE_NAME=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')
  STEP_ARGS=(--backbone ViT-B-16 --image-size 224 --batch-size 64 --device cuda --precision bf16
             --real-config --flops --repeats 15)
  EVAL_ARGS=(--device cuda --repeats 20)
  DATA_ARGS=(--real --real-n 400 --repeats 3)
else
  DEVICE_NAME="CPU smoke ($(nproc) cores)"
  STEP_ARGS=(--backbone toyclip-vit-p8c --batch-size 4 --device cpu --precision bf16 --flops --repeats 2)
  EVAL_ARGS=(--device cpu --backbone toyclip-vit-p8c --short-side 64 --height 64 --width 85 --classes 5
             --repeats 2)
  DATA_ARGS=(--real --real-n 16 --real-size 250 188 --batch-size 8 --repeats 1)
fi

FAILED=()
# run NAME CMD...: runs one part, output shown and kept in $LOG_DIR/NAME.log; a failure is recorded.
run() {
  local name=$1
  shift
  echo "== $name: $*"
  if "$@" 2>&1 | tee "$LOG_DIR/$name.log"; then
    return 0
  fi
  FAILED+=("$name")
  echo "== $name FAILED (log: $LOG_DIR/$name.log)"
}
# value NAME LABEL: the number after "LABEL: " in part NAME's log, or "n/a".
value() {
  local v
  v=$(sed -n "s|^$2: \([-0-9.eE+]*\).*|\1|p" "$LOG_DIR/$1.log" 2>/dev/null | tail -n 1)
  echo "${v:-n/a}"
}

START=$(date +%s)
STEP=step
STEP_PRECISION=bf16
run step "$PY" benchmarks/step_time.py "${STEP_ARGS[@]}"
if [[ " ${FAILED[*]} " == *" step "* ]]; then
  STEP=step_fp32
  STEP_PRECISION="fp32 (bf16 failed)"
  run step_fp32 "$PY" benchmarks/step_time.py "${STEP_ARGS[@]}" --precision fp32
fi
run eval_fp32 "$PY" benchmarks/eval_speed.py "${EVAL_ARGS[@]}" --precision fp32
if [[ $MODE == gpu ]]; then  # an extra beyond `make eval`'s fp32 (the smoke skips it to stay short)
  run eval_bf16 "$PY" benchmarks/eval_speed.py "${EVAL_ARGS[@]}" --precision bf16
fi
run data "$PY" benchmarks/data_throughput.py "${DATA_ARGS[@]}"

IMG_S=$(value $STEP "synseg training images/s")
GFLOP=$(value $STEP "synseg train step GFLOP/image")
TFLOPS=n/a
if [[ $IMG_S != n/a && $GFLOP != n/a ]]; then
  TFLOPS=$(awk -v a="$IMG_S" -v b="$GFLOP" 'BEGIN { printf "%.1f", a * b / 1000 }')
fi
echo
echo "== gpu_check summary: $MODE, $DEVICE_NAME, $(date -u +%Y-%m-%dT%H:%MZ), $(($(date +%s) - START)) s, logs in $LOG_DIR"
echo "step args: ${STEP_ARGS[*]}; step precision: $STEP_PRECISION"
echo "synseg/clip step ratio: $(value $STEP 'synseg/clip step ratio')"
echo "mixreorg/clip step ratio: $(value $STEP 'mixreorg/clip step ratio')"
echo "synseg step ms: $(value $STEP 'synseg step ms (median)')"
echo "synseg training images/s: $IMG_S"
echo "synseg train step GFLOP/image: $GFLOP"
echo "synseg achieved TFLOP/s: $TFLOPS"
echo "eval ms/image (maskclip, fp32): $(value eval_fp32 'ms/image')"
echo "eval synseg ms/image (fp32): $(value eval_fp32 'synseg ms/image')"
echo "eval ms/image (maskclip, bf16): $(value eval_bf16 'ms/image')"
echo "eval synseg ms/image (bf16): $(value eval_bf16 'synseg ms/image')"
echo "real pipeline samples/s/core: $(value data 'real pipeline samples/s/core')"
echo "real decode samples/s/core: $(value data 'real decode samples/s/core')"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "FAILED parts: ${FAILED[*]}"
  exit 1
fi
echo "all parts passed"
