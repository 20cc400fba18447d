#!/usr/bin/env bash
# Every accelerator measurement of issue 16 in one run (< 8 minutes on an H200): see device_suite.py.
#
#   bash experiments/benchmarks/device_suite.sh             # on the accelerator machine
#   bash experiments/benchmarks/device_suite.sh --dry-run   # on a CPU: small batches, same code paths
#
# Options: --budget-s S (default 440: parts that would end later are skipped and say so),
# --out DIR (default $OUT if set, else experiments/benchmarks/results), --preset eeg|tiny (default eeg). Uses the machine's own
# python3 (PYTHON=... to override) with its JAX and PyTorch; wheels in .whl/ (e.g. flax, optax,
# grain) are installed into /tmp/site first when present; real windows from .device/windows.npy
# when present (`python -m experiments.benchmarks.device_suite --part merge --save-windows
# .device/windows.npy` writes them from the bundled EEG), else read from the bundled EDF files.
set -uo pipefail
cd "$(dirname "$0")/../.."
budget=440
dry=0
preset=eeg
out="${OUT:-experiments/benchmarks/results}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --budget-s) budget="$2"; shift ;;
    --out) out="$2"; shift ;;
    --preset) preset="$2"; shift ;;
    *) echo "device_suite.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
mkdir -p "$out"
log="$out/device_suite.log"
start=$(date +%s)
deadline=$((start + budget))
args=(--deadline "$deadline" --output-dir "$out" --preset "$preset")
[ -f .device/windows.npy ] && args+=(--windows .device/windows.npy)
if [ "$dry" = 1 ]; then
  args+=(--batch 8 --big-batch 16 --infer-batch 16 --calls 2 --unrolls 1 4 --loader-windows 2000 --loader-batches 3 --loader-workers 0 2)
fi
{
  echo "device suite: $(date -u), budget ${budget} s, dry-run ${dry}"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
  for part in torch-core jax torch-extra; do
    echo "== part $part at +$(( $(date +%s) - start )) s"
    "$PY" -m experiments.benchmarks.device_suite --part "$part" "${args[@]}" || echo "== part $part exited $?"
  done
  "$PY" -m experiments.benchmarks.device_suite --part merge "${args[@]}"
  echo "== done in $(( $(date +%s) - start )) s"
} 2>&1 | tee "$log"
