#!/usr/bin/env bash
# Run `biocodec-jax pretrain` on every worker (host) of a Cloud TPU VM pod slice, e.g. v5e-32 or v4-64.
#
# A pod slice is several hosts; JAX needs one process per host, all started with the same command.
# This script runs that command on all workers at once with
#   gcloud compute tpus tpu-vm ssh TPU_NAME --worker=all --command "..."
# and BIOCODEC_AUTO_DISTRIBUTED=1, so each process calls jax.distributed.initialize() without
# arguments: on a TPU VM the coordinator, process count and process id come from the TPU metadata.
#
# Usage:
#   TPU_NAME=my-pod ZONE=us-central2-b [PROJECT=my-project] \
#     experiments/launch/tpu_vm_pod.sh [--sync] [--setup] -- PRETRAIN_ARGS...
#
#   --sync    copy this working tree (git-tracked and untracked-but-not-ignored files, without
#             data/, tests/fixtures/ and anything ignored such as .venv) to $REPO_DIR on every worker
#   --setup   create $VENV on every worker and install jax[tpu] and this package into it
#             (python3 -m venv; pip install -U "jax[tpu]"; pip install -e $REPO_DIR)
#   --detach  start training in the background on every worker (nohup; output in
#             ~/biocodec-pretrain.log there) and return; without it training stops if this ssh
#             session ends, so run the script inside tmux / screen
#   --dry-run print the gcloud commands instead of running them
#
# Example (a fresh pod: copy the code, install, train):
#   TPU_NAME=biocodec-v5e-32 ZONE=us-west4-a experiments/launch/tpu_vm_pod.sh --sync --setup -- \
#       --config experiments/configs/pretrain_eeg.yaml \
#       --workdir /mnt/shared/runs/pretrain-eeg --data /mnt/shared/shards/tueg
#
# The workdir (checkpoints, written by all workers together) and the shards (--data; each host
# reads its own share of every batch) must be at the same path on every worker: a filesystem
# mounted on all of them (Filestore, or a GCS bucket through gcsfuse); not a gs:// URL.
#
# Environment:
#   TPU_NAME, ZONE   the TPU VM (required); PROJECT the GCP project (default: gcloud's)
#   REPO_DIR         the code on the workers (default: biocodec-jax, relative to the home directory)
#   VENV             the virtual environment on the workers (default: $REPO_DIR/.venv)
#   PRETRAIN_ENV     extra "NAME=value ..." settings for the training processes (e.g. "TF_CPP_MIN_LOG_LEVEL=1")
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

SYNC=0 SETUP=0 DRY_RUN=0 DETACH=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sync) SYNC=1 ;;
    --setup) SETUP=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --detach) DETACH=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (pretrain arguments go after --)" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU VM zone}"
REPO_DIR=${REPO_DIR:-biocodec-jax}
VENV=${VENV:-$REPO_DIR/.venv}
if [[ $# -eq 0 && $SYNC -eq 0 && $SETUP -eq 0 ]]; then
  echo "error: nothing to do: no pretrain arguments (at least --config and --workdir), --sync or --setup" >&2
  exit 2
fi

GCLOUD_TPU=(gcloud compute tpus tpu-vm)
FLAGS=(--zone "$ZONE")
[[ -n ${PROJECT:-} ]] && FLAGS+=(--project "$PROJECT")

run() {  # run (or print) one local command
  if ((DRY_RUN)); then printf '%q ' "$@"; echo; else "$@"; fi
}

on_all_workers() {  # on_all_workers "remote shell command"
  run "${GCLOUD_TPU[@]}" ssh "$TPU_NAME" "${FLAGS[@]}" --worker=all --command "$1"
}

q() { printf '%q' "$1"; }  # quote one word for the remote bash

if ((SYNC)); then
  repo_root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
  archive=$(mktemp -t biocodec-jax-XXXXXX.tar.gz)
  trap 'rm -f "$archive"' EXIT
  # The code only: not the test fixtures or the bundled demo recordings (tens of MB).
  (cd "$repo_root" && git ls-files -z --cached --others --exclude-standard -- . ':!tests/fixtures' ':!data' \
     | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
     | tar czf "$archive" --null -T -)
  echo "copying $(du -h "$archive" | cut -f1) of code to $REPO_DIR on all workers" >&2
  run "${GCLOUD_TPU[@]}" scp "$archive" "$TPU_NAME:biocodec-jax-code.tar.gz" "${FLAGS[@]}" --worker=all
  on_all_workers "mkdir -p $(q "$REPO_DIR") && tar xzf biocodec-jax-code.tar.gz -C $(q "$REPO_DIR") && rm biocodec-jax-code.tar.gz"
fi

if ((SETUP)); then
  # jax[tpu] pulls libtpu; the package's own requirements (flax, optax, orbax, grain, ...) come with -e.
  on_all_workers "set -e; python3 -m venv $(q "$VENV") && $(q "$VENV")/bin/pip install -q -U pip \
&& $(q "$VENV")/bin/pip install -q -U 'jax[tpu]' && $(q "$VENV")/bin/pip install -q -e $(q "$REPO_DIR") \
&& $(q "$VENV")/bin/python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'"
fi

if [[ $# -gt 0 ]]; then
  args=""
  for a in "$@"; do args+=" $(q "$a")"; done
  # Same command on every worker (in $REPO_DIR, so relative paths in the arguments are the repo's).
  # The output of all workers is interleaved on this terminal unless --detach.
  cmd="env BIOCODEC_AUTO_DISTRIBUTED=1 ${PRETRAIN_ENV:-} \"\$venv/bin/biocodec-jax\" pretrain$args"
  if ((DETACH)); then
    cmd="nohup $cmd > ~/biocodec-pretrain.log 2>&1 < /dev/null & echo \"\$(hostname): started, log in ~/biocodec-pretrain.log\""
  fi
  on_all_workers "set -e; venv=\$(realpath -- $(q "$VENV")); cd -- $(q "$REPO_DIR"); $cmd"
fi
