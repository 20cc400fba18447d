#!/usr/bin/env bash
# Run `biocodec-jax pretrain` as several JAX processes on this machine (CPU, simulated devices).
#
# A rehearsal of a multi-host job without a cluster: NUM_PROCESSES processes join one job through
# a coordinator on 127.0.0.1, each with DEVICES_PER_PROCESS simulated CPU devices, so the mesh spans
# NUM_PROCESSES x DEVICES_PER_PROCESS devices and every cross-process code path runs (per-process
# data shares, all-reduces, multi-host checkpointing, process-0-only logging). It is slow: all
# processes share this machine's cores. The global batch must be divisible by the total device count.
#
# Usage:
#   experiments/launch/local_multiprocess.sh [-n NUM_PROCESSES] [-d DEVICES_PER_PROCESS] [-p PORT] -- PRETRAIN_ARGS...
#
# Example (2 processes x 4 devices = 8 devices, global batch 32):
#   experiments/launch/local_multiprocess.sh -n 2 -d 4 -- \
#       --config experiments/configs/pretrain_eeg.yaml --workdir runs/local-mp \
#       --data data/shards/tueg --steps 20 --batch-size 32
#
# The script adds --coordinator-address 127.0.0.1:PORT --num-processes N --process-id I to
# PRETRAIN_ARGS for each process. Every output line is prefixed with "[I] ". It waits for all
# processes; when one fails the others are stopped (they would wait for it forever in the next
# collective) and the script exits with the failing process's status.
#
# Environment (flags win):
#   NUM_PROCESSES        processes (default 2)
#   DEVICES_PER_PROCESS  simulated CPU devices per process (default 4)
#   PORT                 coordinator port on 127.0.0.1 (default 12355)
#   BIOCODEC_JAX         the command to run, split on spaces (default: biocodec-jax;
#                        e.g. ".venv/bin/biocodec-jax" or ".venv/bin/python -m biocodec_jax.cli")
#   LOG_DIR              if set, process I's output is also written to $LOG_DIR/process-I.log
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

NUM_PROCESSES=${NUM_PROCESSES:-2}
DEVICES_PER_PROCESS=${DEVICES_PER_PROCESS:-4}
PORT=${PORT:-12355}
while getopts "n:d:p:h" opt; do
  case "$opt" in
    n) NUM_PROCESSES=$OPTARG ;;
    d) DEVICES_PER_PROCESS=$OPTARG ;;
    p) PORT=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ ${1:-} == "--" ]] && shift
if [[ $# -eq 0 ]]; then
  echo "error: no pretrain arguments (at least --config and --workdir)" >&2
  usage >&2
  exit 2
fi
for v in NUM_PROCESSES DEVICES_PER_PROCESS PORT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "error: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done

read -r -a LAUNCHER <<< "${BIOCODEC_JAX:-biocodec-jax}"
[[ -n ${LOG_DIR:-} ]] && mkdir -p "$LOG_DIR"

pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
trap 'echo "interrupted: stopping all processes" >&2; stop_all; wait; exit 130' INT TERM

echo "starting $NUM_PROCESSES processes x $DEVICES_PER_PROCESS CPU devices, coordinator 127.0.0.1:$PORT" >&2
for ((i = 0; i < NUM_PROCESSES; i++)); do
  if [[ -n ${LOG_DIR:-} ]]; then log="$LOG_DIR/process-$i.log"; else log=/dev/null; fi
  JAX_PLATFORMS=cpu \
  XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$DEVICES_PER_PROCESS" \
  BIOCODEC_AUTO_DISTRIBUTED=0 \
    "${LAUNCHER[@]}" pretrain "$@" \
      --coordinator-address "127.0.0.1:$PORT" --num-processes "$NUM_PROCESSES" --process-id "$i" \
      > >(sed -u "s/^/[$i] /" | tee -a "$log") 2>&1 &
  pids+=($!)
done

# Poll instead of `wait -n`: the first failure stops the rest at once.
status=0
remaining=${#pids[@]}
declare -A done_
while ((remaining > 0)); do
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    [[ -n ${done_[$i]:-} ]] && continue
    kill -0 "$pid" 2>/dev/null && continue
    rc=0
    wait "$pid" || rc=$?
    done_[$i]=1
    remaining=$((remaining - 1))
    if ((rc != 0)); then
      echo "process $i exited with status $rc: stopping the others" >&2
      status=$rc
      stop_all
      wait || true
      exit "$status"
    fi
  done
  sleep 1
done
wait || true  # the output filters
echo "all $NUM_PROCESSES processes finished" >&2
exit "$status"
