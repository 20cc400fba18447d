"""Launch recipes for multi-host `biocodec-jax pretrain`, rendered from one template.

One pretrain argument list (:class:`Pretrain`: config, data, workdir, steps, batch size, ``--set``)
and one description per setting (:class:`TpuPod`, :class:`Slurm`, :class:`Local`) give two texts
each:

* the **recipe** (:func:`recipe`): the commands themselves, values inline, as the README shows
  them: the ``gcloud compute tpus tpu-vm ssh NAME --worker=all --command "..."`` lines of a TPU VM
  pod slice, an sbatch script with its ``#SBATCH`` lines and ``srun`` line, the N processes of a
  local rehearsal. It runs as a bash script, but is meant to be read and run step by step;
* the **script** (:func:`script`): the runnable tool with options (``tpu_vm_pod.sh --mount --sync
  --setup --detach --dry-run -- ARGS``, ``sbatch slurm_gpu.sbatch ARGS``,
  ``local_multiprocess.sh -n N -d D -- ARGS``) whose defaults are these values. The checked-in
  scripts in this folder are :func:`script` of the defaults (``python -m experiments.launch.recipes
  scripts`` rewrites them, ``--check`` compares; tests/test_launch_recipes.py checks them too).

Usage (from the repository root)::

    python -m experiments.launch.recipes tpu-pod --tpu-name my-pod --zone us-west4-a --bucket my-bucket
    python -m experiments.launch.recipes slurm --nodes 4 --gpus-per-node 8 \\
        --workdir /shared/runs/eeg --data /shared/shards/tueg > pretrain.sbatch
    python -m experiments.launch.recipes local --steps 20 --batch-size 32
    python -m experiments.launch.recipes tpu-pod --script ... > my_pod.sh   # the tool, with these defaults
    python -m experiments.launch.recipes scripts [--check]                   # the checked-in scripts

Values still at a placeholder default (the bucket ``BUCKET``, the TPU VM's name, ...) are listed
in the rendered text under ``SUBSTITUTE``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, fields
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERATOR = "python -m experiments.launch.recipes"
DEFAULT_CONFIG = "experiments/configs/pretrain_eeg.yaml"


# ---------------------------------------------------------------------------------------------
# the values


@dataclass(frozen=True)
class Pretrain:
    """The arguments of `biocodec-jax pretrain` that every recipe passes (the one shared list)."""

    workdir: str
    data: str | None
    config: str | None = DEFAULT_CONFIG
    steps: int | None = None
    batch_size: int | None = None
    sets: tuple[str, ...] = ()

    def pairs(self) -> list[tuple[str, str]]:
        """(flag, value) in command-line order."""
        out = [("--config", self.config), ("--workdir", self.workdir), ("--data", self.data),
               ("--steps", self.steps), ("--batch-size", self.batch_size)]
        out += [("--set", s) for s in self.sets]
        return [(flag, str(value)) for flag, value in out if value is not None]

    def args(self) -> list[str]:
        """The words after ``biocodec-jax pretrain``."""
        return [word for pair in self.pairs() for word in pair]


@dataclass(frozen=True)
class TpuPod:
    """A Cloud TPU VM pod slice; the shards on a gcsfuse mount of the bucket, the workdir a gs:// URL."""

    tpu_name: str = "biocodec-v5e-32"
    zone: str = "us-west4-a"
    project: str | None = None
    accelerator_type: str = "v5litepod-32"
    runtime_version: str = "v2-alpha-tpuv5-lite"
    bucket: str = "BUCKET"
    mount_point: str = "/mnt/gcs"
    repo_dir: str = "biocodec-jax"
    detach: bool = False

    def pretrain(self, **kw) -> Pretrain:
        """Default pretrain arguments: checkpoints and metrics straight to the bucket (gs://, the
        [gcs] extra), the shards through the mount (ArrayRecord reads local files only)."""
        kw.setdefault("workdir", f"gs://{self.bucket}/runs/pretrain-eeg")
        kw.setdefault("data", f"{self.mount_point}/shards/tueg")
        return Pretrain(**kw)

    def placeholders(self, pre: Pretrain) -> list[str]:
        out = []
        if self.tpu_name == TpuPod.tpu_name:
            out.append(f"{self.tpu_name}: your TPU VM's name (--tpu-name / TPU_NAME); {self.zone}: its zone")
        if "BUCKET" in (self.bucket, pre.workdir, pre.data or ""):
            out.append("BUCKET: your GCS bucket (--bucket): shards in gs://BUCKET/shards/tueg (read through the")
            out.append("  gcsfuse mount), runs in gs://BUCKET/runs/ (--workdir, written directly)")
        return out


@dataclass(frozen=True)
class Slurm:
    """GPU nodes under SLURM: one process per node driving all its GPUs."""

    nodes: int = 2
    gpus_per_node: int = 8
    cpus_per_task: int = 32
    time: str = "48:00:00"
    job_name: str = "biocodec-pretrain"
    venv: str = ".venv"

    def pretrain(self, **kw) -> Pretrain:
        kw.setdefault("workdir", "/shared/runs/pretrain-eeg")
        kw.setdefault("data", "/shared/shards/tueg")
        return Pretrain(**kw)

    def placeholders(self, pre: Pretrain) -> list[str]:
        if pre.workdir.startswith("/shared/") or (pre.data or "").startswith("/shared/"):
            return ["/shared: a filesystem every node mounts under the same path (NFS, Lustre, GPFS)"]
        return []


@dataclass(frozen=True)
class Local:
    """Several CPU processes on this machine, each with simulated devices (a multi-host rehearsal)."""

    processes: int = 2
    devices_per_process: int = 4
    port: int = 12355
    launcher: str = "biocodec-jax"

    def pretrain(self, **kw) -> Pretrain:
        kw.setdefault("workdir", "runs/local-mp")
        kw.setdefault("data", "data/shards/tueg")
        kw.setdefault("steps", 20)
        kw.setdefault("batch_size", 32)
        return Pretrain(**kw)

    def placeholders(self, pre: Pretrain) -> list[str]:
        return []


TARGETS = {"tpu-pod": TpuPod, "slurm": Slurm, "local": Local}
SCRIPTS = {"tpu-pod": "tpu_vm_pod.sh", "slurm": "slurm_gpu.sbatch", "local": "local_multiprocess.sh"}


# ---------------------------------------------------------------------------------------------
# quoting


def q(word: str) -> str:
    return shlex.quote(word)


def dq(text: str) -> str:
    """``text`` in double quotes for the local shell (the remote command of gcloud --command)."""
    return '"' + "".join("\\" + c if c in '\\"$`' else c for c in text) + '"'


def continued(words: list[str], indent: str = "  ", per_line: int = 2) -> str:
    """A command over several lines: the first word(s), then flag/value pairs, joined by `` \\``."""
    return f" \\\n{indent}".join(" ".join(words[i:i + per_line]) for i in range(0, len(words), per_line))


def pretrain_lines(pre: Pretrain, indent: str) -> str:
    """`` \\``-continued lines of the quoted pretrain arguments (each flag with its value)."""
    return "".join(f" \\\n{indent}{q(flag)} {q(value)}" for flag, value in pre.pairs())


def bash_array(name: str, pre: Pretrain) -> str:
    body = "".join(f"  {q(flag)} {q(value)}\n" for flag, value in pre.pairs())
    return f"{name}=(\n{body})"


def header(command: str, title: str | None, placeholders: list[str]) -> str:
    lines = [f"# {title}"] if title else []
    lines.append(f"# Generated by `{GENERATOR} {command}`: regenerate rather than edit.")
    if placeholders:
        lines.append("# SUBSTITUTE (placeholders; give the generator your values):")
        lines += [f"#   {p}" for p in placeholders]
    return "\n".join(lines)


def dq_lines(text: str) -> str:
    """Like :func:`dq`, keeping ``\\``+newline continuations (bash drops them inside double quotes too)."""
    return '"' + "\\\n".join(dq(part)[1:-1] for part in text.split("\\\n")) + '"'


# ---------------------------------------------------------------------------------------------
# TPU VM pod slice


def gcloud_tpu(tpu: TpuPod, verb: str, *words: str) -> list[str]:
    out = ["gcloud", "compute", "tpus", "tpu-vm", verb, *words, "--zone", tpu.zone]
    return out + (["--project", tpu.project] if tpu.project else [])


def tpu_ssh_all(tpu: TpuPod, remote: str) -> str:
    """``gcloud ... ssh NAME --zone Z --worker=all --command "remote"`` (remote: `` \\``-continued lines)."""
    return " ".join(q(w) for w in gcloud_tpu(tpu, "ssh", tpu.tpu_name)) + " --worker=all --command " + dq_lines(remote)


def remote_mount(bucket: str, mount_point: str) -> str:
    """Install gcsfuse (Google's apt repository) and mount the bucket read-only (remote shell text)."""
    return " \\\n".join((
        "\\\nset -e; if ! command -v gcsfuse > /dev/null; then",
        '  echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc]',
        '    https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -c -s) main"',
        "    | sudo tee /etc/apt/sources.list.d/gcsfuse.list > /dev/null;",
        "  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg",
        "    | sudo tee /usr/share/keyrings/cloud.google.asc > /dev/null;",
        "  sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; fi;",
        f"sudo mkdir -p {mount_point} && sudo chown $USER {mount_point};",
        f"mountpoint -q {mount_point} || gcsfuse --implicit-dirs -o ro {bucket} {mount_point}",
    ))


def remote_setup(repo_dir: str, venv: str = ".venv") -> str:
    """Unpack the code, create the venv, install jax[tpu] and the package with the [gcs] extra."""
    return " \\\n".join((
        "\\\nset -e; mkdir -p {r} && tar xzf biocodec-jax-code.tar.gz -C {r}",
        "&& rm biocodec-jax-code.tar.gz;",
        "cd {r} && python3 -m venv {v} && {v}/bin/pip install -q -U pip 'jax[tpu]'",
        "&& {v}/bin/pip install -q -e '.[gcs]'",
        "&& {v}/bin/python -c",
        "'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'",
    )).format(r=repo_dir, v=venv)


def remote_train(repo_dir: str, pre: Pretrain, detach: bool, venv: str = ".venv") -> str:
    """The remote training command, `` \\``-continued over lines."""
    cmd = f"BIOCODEC_AUTO_DISTRIBUTED=1 {venv}/bin/biocodec-jax pretrain" + pretrain_lines(pre, "    ")
    if detach:
        cmd = (f"nohup env {cmd} \\\n    > ~/biocodec-pretrain.log 2>&1 < /dev/null & "
               'echo "$(hostname): started, log in ~/biocodec-pretrain.log"')
    return f"\\\ncd {repo_dir} && {cmd}"


def tpu_recipe(tpu: TpuPod, pre: Pretrain, options: str = "") -> str:
    archive = "/tmp/biocodec-jax-code.tar.gz"
    create = " ".join(q(w) for w in gcloud_tpu(tpu, "create", tpu.tpu_name))
    train = tpu_ssh_all(tpu, remote_train(q(tpu.repo_dir), pre, tpu.detach))
    return f"""#!/usr/bin/env bash
{header("tpu-pod" + options, "Pretraining on a Cloud TPU VM pod slice: the same `biocodec-jax pretrain` on every worker.",
        tpu.placeholders(pre))}
# Run from the repository root, step by step (or the whole file with bash). The script
# experiments/launch/tpu_vm_pod.sh does the same with options (--mount --sync --setup --detach).
set -euo pipefail

# 0. If the slice does not exist yet ({tpu.accelerator_type}: --batch-size must be divisible by its chip count):
# {create} \\
#   --accelerator-type {q(tpu.accelerator_type)} --version {q(tpu.runtime_version)}

# 1. After every boot: mount gs://{tpu.bucket} read-only at {tpu.mount_point} on every worker (gcsfuse: the
#    shards are read as local files). The TPU VMs' service account needs read access to the bucket,
#    and write access to --workdir.
{tpu_ssh_all(tpu, remote_mount(q(tpu.bucket), q(tpu.mount_point)))}

# 2. Once: this project's code (committed HEAD, without data/ and tests/fixtures/) on every worker, in a
#    virtual environment with jax[tpu] (brings libtpu) and the [gcs] extra (gs:// workdirs).
git archive --format=tar.gz -o {archive} HEAD -- . ':(exclude)data' ':(exclude)tests/fixtures'
{" ".join(q(w) for w in gcloud_tpu(tpu, "scp", archive, tpu.tpu_name + ":biocodec-jax-code.tar.gz")[:7])} \\
  {" ".join(q(w) for w in gcloud_tpu(tpu, "scp", archive, tpu.tpu_name + ":biocodec-jax-code.tar.gz")[7:])} --worker=all
{tpu_ssh_all(tpu, remote_setup(q(tpu.repo_dir)))}

# 3. Train: one process per worker, each driving its chips; BIOCODEC_AUTO_DISTRIBUTED=1 makes
#    jax.distributed.initialize() take coordinator, process count and id from the TPU metadata.
#    {"Detached: each worker's log in ~/biocodec-pretrain.log." if tpu.detach
        else "In the foreground: run it inside tmux/screen (training stops when ssh ends)."}
#    Re-running the same command resumes from the latest checkpoint in --workdir.
{train}
"""


# ---------------------------------------------------------------------------------------------
# SLURM


def sbatch_directives(s: Slurm) -> str:
    return "\n".join(f"#SBATCH --{k}={v}" for k, v in (
        ("job-name", s.job_name), ("nodes", s.nodes), ("ntasks-per-node", 1), ("gpus-per-node", s.gpus_per_node),
        ("cpus-per-task", s.cpus_per_task), ("mem", 0), ("time", s.time), ("output", "%x-%j.out"),
        ("error", "%x-%j.out")))


SRUN = "srun --ntasks-per-node=1 --kill-on-bad-exit=1 --label"


def slurm_recipe(s: Slurm, pre: Pretrain, options: str = "") -> str:
    devices = ",".join(str(i) for i in range(s.gpus_per_node))
    return f"""#!/bin/bash
{header("slurm" + options, "Multi-node GPU pretraining under SLURM: one JAX process per node, each driving all its GPUs.",
        s.placeholders(pre))}
# Submit from the repository root: sbatch THIS_FILE. experiments/launch/slurm_gpu.sbatch is the same
# job taking the pretrain arguments on the sbatch line. The global --batch-size must be divisible by
# nodes x GPUs ({s.nodes * s.gpus_per_node}); --workdir and --data on a filesystem every node sees.
{sbatch_directives(s)}
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-.}}"
# jax.distributed.initialize() reads SLURM's variables; every GPU of the node for its single process.
export BIOCODEC_AUTO_DISTRIBUTED=1
export JAX_LOCAL_DEVICE_IDS={devices}
{SRUN} \\
  {q(s.venv + "/bin/biocodec-jax")} pretrain{pretrain_lines(pre, "    ")}
"""


# ---------------------------------------------------------------------------------------------
# local processes


def local_env(devices_per_process: int) -> str:
    return (f"JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count={devices_per_process} "
            "BIOCODEC_AUTO_DISTRIBUTED=0")


def local_recipe(loc: Local, pre: Pretrain, options: str = "") -> str:
    procs = "\n".join(
        f"{local_env(loc.devices_per_process)} \\\n  {loc.launcher} pretrain{pretrain_lines(pre, '    ')} \\\n"
        f"    --coordinator-address 127.0.0.1:{loc.port} --num-processes {loc.processes} --process-id {i} &"
        for i in range(loc.processes))
    return f"""#!/usr/bin/env bash
{header("local" + options, "A multi-host rehearsal on this machine: several CPU processes with simulated devices.",
        loc.placeholders(pre))}
# {loc.processes} processes x {loc.devices_per_process} devices = one {loc.processes * loc.devices_per_process}-device mesh \
(--batch-size divisible by that).
# experiments/launch/local_multiprocess.sh does this with per-process output prefixes and stops all
# processes when one fails.
set -euo pipefail
{procs}
wait
"""


# ---------------------------------------------------------------------------------------------
# the scripts (templates: @@NAME@@ is replaced)


TPU_SCRIPT = r"""#!/usr/bin/env bash
@@HEADER@@
# Run `biocodec-jax pretrain` on every worker (host) of a Cloud TPU VM pod slice, e.g. v5e-32 or v4-64.
#
# A pod slice is several hosts; JAX needs one process per host, all started with the same command.
# This script runs that command on all workers at once with
#   gcloud compute tpus tpu-vm ssh TPU_NAME --worker=all --command "..."
# and BIOCODEC_AUTO_DISTRIBUTED=1, so each process calls jax.distributed.initialize() without
# arguments: on a TPU VM the coordinator, process count and process id come from the TPU metadata.
#
# Usage:
#   [TPU_NAME=my-pod ZONE=us-central2-b PROJECT=my-project BUCKET=my-bucket] \
#     experiments/launch/tpu_vm_pod.sh [--mount] [--sync] [--setup] [--detach] [--dry-run] [-- [PRETRAIN_ARGS...]]
#
#   --mount   install gcsfuse and mount gs://$BUCKET read-only at $MOUNT_POINT on every worker (after
#             every boot; the shards are read through it as local files)
#   --sync    copy this working tree (git-tracked and untracked-but-not-ignored files, without
#             data/, tests/fixtures/ and anything ignored such as .venv) to $REPO_DIR on every worker
#   --setup   create $VENV on every worker and install jax[tpu] and this package with the [gcs] extra
#             (python3 -m venv; pip install -U "jax[tpu]"; pip install -e "$REPO_DIR[gcs]")
#   --        train: the arguments after it go to `biocodec-jax pretrain` unchanged; with none after
#             it, the PRETRAIN_ARGS below. Without --, nothing is trained.
#   --detach  start training in the background on every worker (nohup; output in
#             ~/biocodec-pretrain.log there) and return; without it training stops if this ssh
#             session ends, so run the script inside tmux / screen
#   --dry-run print the gcloud commands instead of running them
#
# Example (a fresh pod: mount, copy the code, install, train with the defaults below):
#   TPU_NAME=biocodec-v5e-32 ZONE=us-west4-a BUCKET=my-bucket experiments/launch/tpu_vm_pod.sh \
#       --mount --sync --setup -- \
#       --config experiments/configs/pretrain_eeg.yaml \
#       --workdir gs://my-bucket/runs/pretrain-eeg --data /mnt/gcs/shards/tueg
#
# The workdir (checkpoints, written by all workers together; metrics by worker 0) is a gs:// URL or
# a directory every worker mounts at the same path; the shards (--data; each host reads its own
# share of every batch) are local files at the same path on every worker: the gcsfuse mount.
#
# Environment (defaults below):
#   TPU_NAME, ZONE   the TPU VM; PROJECT the GCP project (empty: gcloud's)
#   BUCKET, MOUNT_POINT  what --mount mounts where
#   REPO_DIR         the code on the workers (relative to the home directory)
#   VENV             the virtual environment on the workers (default: $REPO_DIR/.venv)
#   PRETRAIN_ENV     extra "NAME=value ..." settings for the training processes (e.g. "TF_CPP_MIN_LOG_LEVEL=1")
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# Defaults: @@SUBSTITUTE@@
TPU_NAME=${TPU_NAME:-@@TPU_NAME@@}
ZONE=${ZONE:-@@ZONE@@}
PROJECT=${PROJECT:-@@PROJECT@@}
BUCKET=${BUCKET:-@@BUCKET@@}
MOUNT_POINT=${MOUNT_POINT:-@@MOUNT_POINT@@}
REPO_DIR=${REPO_DIR:-@@REPO_DIR@@}
VENV=${VENV:-$REPO_DIR/.venv}
@@PRETRAIN_ARGS@@

MOUNT=0 SYNC=0 SETUP=0 TRAIN=0 DRY_RUN=0 DETACH=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mount) MOUNT=1 ;;
    --sync) SYNC=1 ;;
    --setup) SETUP=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --detach) DETACH=1 ;;
    -h|--help) usage; exit 0 ;;
    --) TRAIN=1; shift; break ;;
    *) echo "error: unknown option $1 (pretrain arguments go after --)" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if ((TRAIN)) && [[ $# -eq 0 ]]; then set -- "${PRETRAIN_ARGS[@]}"; fi
if ((!TRAIN && !MOUNT && !SYNC && !SETUP)); then
  echo "error: nothing to do: no --mount, --sync, --setup or -- (train)" >&2
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

if ((MOUNT)); then
  on_all_workers "@@REMOTE_MOUNT@@"
fi

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
  # jax[tpu] pulls libtpu; the package's own requirements (flax, optax, orbax, grain, ...) come with -e,
  # gcsfs (gs:// workdirs) with the [gcs] extra.
  on_all_workers "set -e; python3 -m venv $(q "$VENV") && $(q "$VENV")/bin/pip install -q -U pip \
&& $(q "$VENV")/bin/pip install -q -U 'jax[tpu]' && $(q "$VENV")/bin/pip install -q -e $(q "$REPO_DIR[gcs]") \
&& $(q "$VENV")/bin/python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'"
fi

if ((TRAIN)); then
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
"""

SLURM_SCRIPT = r"""#!/bin/bash
@@HEADER@@
# Multi-node GPU pretraining under SLURM: one JAX process per node, each driving all GPUs of its node.
#
# Usage (from the repository root, on a login node):
#   sbatch [--nodes=N] [--gpus-per-node=G] experiments/launch/slurm_gpu.sbatch [PRETRAIN_ARGS...]
# The arguments go to `biocodec-jax pretrain` unchanged; with none, the PRETRAIN_ARGS below.
# Example:
#   sbatch --nodes=4 experiments/launch/slurm_gpu.sbatch \
#       --config experiments/configs/pretrain_eeg.yaml \
#       --workdir /shared/runs/pretrain-eeg --data /shared/shards/tueg
#
# srun starts one task per node; BIOCODEC_AUTO_DISTRIBUTED=1 makes each call
# jax.distributed.initialize() without arguments, which reads SLURM's variables (SLURM_STEP_NODELIST:
# the coordinator is the first node, its port derived from the job id; SLURM_NTASKS: process count;
# SLURM_PROCID: process id). Left alone it would also make each process see only GPU SLURM_LOCALID
# (one process per GPU), so JAX_LOCAL_DEVICE_IDS below lists every GPU of the node instead.
#
# The mesh spans nodes x gpus-per-node devices; the global batch (--batch-size) must be divisible by
# that. --workdir (checkpoints) and --data must be on a filesystem every node sees (NFS, Lustre,
# GPFS, ...) under the same path.
#
# Environment on the nodes: a virtual environment with JAX for CUDA and this package, e.g.
#   python3 -m venv .venv && .venv/bin/pip install -U "jax[cuda13]" && .venv/bin/pip install -e .
# ("jax[cuda12]" for CUDA 12 drivers; the pip wheels bring CUDA and cuDNN, only the driver is
# needed on the nodes). VENV (default: @@VENV@@ in the submission directory) selects it; MODULES, if
# set, is a list of environment modules to `module load` first.
#
@@SBATCH@@
set -euo pipefail

# Defaults: @@SUBSTITUTE@@
@@PRETRAIN_ARGS@@
if [[ $# -eq 0 ]]; then set -- "${PRETRAIN_ARGS[@]}"; fi

cd "${SLURM_SUBMIT_DIR:-.}"
VENV=${VENV:-@@VENV@@}
if [[ -n ${MODULES:-} ]]; then
  # shellcheck disable=SC2086
  module load $MODULES
fi

# Every GPU of the node for the node's single process (see above).
gpus_per_node=${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-@@GPUS_PER_NODE@@}}
gpus_per_node=${gpus_per_node##*:}  # "a100:8" -> "8"
JAX_LOCAL_DEVICE_IDS=$(seq -s, 0 $((gpus_per_node - 1)))
export JAX_LOCAL_DEVICE_IDS
export BIOCODEC_AUTO_DISTRIBUTED=1

echo "job $SLURM_JOB_ID: $SLURM_JOB_NUM_NODES node(s) ($SLURM_JOB_NODELIST) x $gpus_per_node GPU(s)," \
     "devices $JAX_LOCAL_DEVICE_IDS per node" >&2

# One task per node; --kill-on-bad-exit stops the whole step when one process fails (the others
# would otherwise wait for it in the next collective until the job's time limit).
@@SRUN@@ \
  "$VENV/bin/biocodec-jax" pretrain "$@"
"""

LOCAL_SCRIPT = r"""#!/usr/bin/env bash
@@HEADER@@
# Run `biocodec-jax pretrain` as several JAX processes on this machine (CPU, simulated devices).
#
# A rehearsal of a multi-host job without a cluster: NUM_PROCESSES processes join one job through
# a coordinator on 127.0.0.1, each with DEVICES_PER_PROCESS simulated CPU devices, so the mesh spans
# NUM_PROCESSES x DEVICES_PER_PROCESS devices and every cross-process code path runs (per-process
# data shares, all-reduces, multi-host checkpointing, process-0-only logging). It is slow: all
# processes share this machine's cores. The global batch must be divisible by the total device count.
#
# Usage:
#   experiments/launch/local_multiprocess.sh [-n NUM_PROCESSES] [-d DEVICES_PER_PROCESS] [-p PORT] [-- PRETRAIN_ARGS...]
# The arguments after -- go to `biocodec-jax pretrain`; with none, the PRETRAIN_ARGS below.
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
#   NUM_PROCESSES        processes (default @@PROCESSES@@)
#   DEVICES_PER_PROCESS  simulated CPU devices per process (default @@DEVICES@@)
#   PORT                 coordinator port on 127.0.0.1 (default @@PORT@@)
#   BIOCODEC_JAX         the command to run, split on spaces (default: @@LAUNCHER@@;
#                        e.g. ".venv/bin/biocodec-jax" or ".venv/bin/python -m biocodec_jax.cli")
#   LOG_DIR              if set, process I's output is also written to $LOG_DIR/process-I.log
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# Defaults: @@SUBSTITUTE@@
NUM_PROCESSES=${NUM_PROCESSES:-@@PROCESSES@@}
DEVICES_PER_PROCESS=${DEVICES_PER_PROCESS:-@@DEVICES@@}
PORT=${PORT:-@@PORT@@}
@@PRETRAIN_ARGS@@

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
if [[ $# -eq 0 ]]; then set -- "${PRETRAIN_ARGS[@]}"; fi
for v in NUM_PROCESSES DEVICES_PER_PROCESS PORT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "error: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done

read -r -a LAUNCHER <<< "${BIOCODEC_JAX:-@@LAUNCHER@@}"
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
"""


def _fill(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace(f"@@{name}@@", value)
    assert "@@" not in template, template[template.index("@@"):][:40]
    return template


def _substitute_note(placeholders: list[str], target: str, where: str, example: str) -> str:
    if not placeholders:
        return "override them in the environment or on the command line."
    return (f"SUBSTITUTE yours {where}, or render a copy with yours:\n"
            f"#   {GENERATOR} {target} --script {example} > FILE")


def tpu_script(tpu: TpuPod, pre: Pretrain, options: str = "") -> str:
    ph = tpu.placeholders(pre)
    note = _substitute_note(ph, "tpu-pod", "in the environment and after --", "--tpu-name NAME --zone ZONE --bucket B ...")
    # the recipe's mount command, on the script's variables
    mount = dq_lines(remote_mount("@B@", "@M@"))[1:-1]
    mount = mount.replace("@B@", '$(q "$BUCKET")').replace("@M@", '$(q "$MOUNT_POINT")')
    return _fill(TPU_SCRIPT, {
        "HEADER": header("tpu-pod" + options + " --script", None, ph), "SUBSTITUTE": note,
        "TPU_NAME": q(tpu.tpu_name), "ZONE": q(tpu.zone), "PROJECT": q(tpu.project) if tpu.project else "",
        "BUCKET": q(tpu.bucket), "MOUNT_POINT": q(tpu.mount_point), "REPO_DIR": q(tpu.repo_dir),
        "PRETRAIN_ARGS": bash_array("PRETRAIN_ARGS", pre), "REMOTE_MOUNT": mount,
    })


def slurm_script(s: Slurm, pre: Pretrain, options: str = "") -> str:
    ph = s.placeholders(pre)
    return _fill(SLURM_SCRIPT, {
        "HEADER": header("slurm" + options + " --script", None, ph),
        "SUBSTITUTE": _substitute_note(ph, "slurm", "as the arguments", "--nodes N --workdir DIR --data DIR ..."),
        "SBATCH": sbatch_directives(s), "VENV": q(s.venv), "GPUS_PER_NODE": str(s.gpus_per_node),
        "PRETRAIN_ARGS": bash_array("PRETRAIN_ARGS", pre), "SRUN": SRUN,
    })


def local_script(loc: Local, pre: Pretrain, options: str = "") -> str:
    ph = loc.placeholders(pre)
    return _fill(LOCAL_SCRIPT, {
        "HEADER": header("local" + options + " --script", None, ph),
        "SUBSTITUTE": _substitute_note(ph, "local", "in the environment and after --", "..."),
        "PROCESSES": str(loc.processes), "DEVICES": str(loc.devices_per_process), "PORT": str(loc.port),
        "LAUNCHER": loc.launcher, "PRETRAIN_ARGS": bash_array("PRETRAIN_ARGS", pre),
    })


_RECIPES = {"tpu-pod": tpu_recipe, "slurm": slurm_recipe, "local": local_recipe}
_SCRIPTS = {"tpu-pod": tpu_script, "slurm": slurm_script, "local": local_script}


def recipe(target: str, setting=None, pre: Pretrain | None = None, options: str = "") -> str:
    """The commands of ``target`` ("tpu-pod", "slurm", "local"); defaults where not given."""
    setting = setting if setting is not None else TARGETS[target]()
    return _RECIPES[target](setting, pre if pre is not None else setting.pretrain(), options)


def script(target: str, setting=None, pre: Pretrain | None = None, options: str = "") -> str:
    """The runnable script of ``target`` with these values as its defaults."""
    setting = setting if setting is not None else TARGETS[target]()
    return _SCRIPTS[target](setting, pre if pre is not None else setting.pretrain(), options)


def checked_in(target: str) -> Path:
    return HERE / SCRIPTS[target]


# ---------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=GENERATOR, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    for target, cls in TARGETS.items():
        p = sub.add_parser(target, help=f"print the {target} recipe (--script: the script)")
        p.add_argument("--script", action="store_true", help=f"print the script ({SCRIPTS[target]}) with these defaults")
        g = p.add_argument_group("pretrain arguments (shared by every recipe)")
        g.add_argument("--config", default=DEFAULT_CONFIG, help="(default %(default)s; '' for none)")
        d = cls().pretrain()
        g.add_argument("--workdir", default=None, help=f"(default {d.workdir})")
        g.add_argument("--data", default=None, help=f"(default {d.data}; shards)")
        g.add_argument("--steps", type=int, default=None, help=f"(default {d.steps or 'the config'})")
        g.add_argument("--batch-size", type=int, default=None,
                       help=f"global batch (default {d.batch_size or 'the config'})")
        g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets")
        s = p.add_argument_group(f"{target}")
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            if f.type == "bool":
                s.add_argument(flag, action="store_true", help="in the background (log in ~/biocodec-pretrain.log)")
            else:
                s.add_argument(flag, type=int if f.type == "int" else str, default=f.default,
                               help="(default %(default)s)")
    sc = sub.add_parser("scripts", help="write the checked-in scripts from the defaults (--check: compare only)")
    sc.add_argument("--check", action="store_true", help="exit 1 when a checked-in script differs from its rendering")
    return parser


def _options(argv: list[str]) -> str:
    """The generator's own options, for the header (without --script)."""
    return "".join(" " + q(a) for a in argv[1:] if a != "--script")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.target == "scripts":
        stale = []
        for target in TARGETS:
            path, text = checked_in(target), script(target)
            if path.read_text() != text:
                stale.append(path)
                if not args.check:
                    path.write_text(text)
        for path in stale:
            print(f"{path.relative_to(HERE.parent.parent)}: {'differs from' if args.check else 'rewritten from'} "
                  f"its rendering", file=sys.stderr)
        return 1 if stale and args.check else 0
    cls = TARGETS[args.target]
    setting = cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
    kw = {k: v for k, v in (("workdir", args.workdir), ("data", args.data), ("steps", args.steps),
                            ("batch_size", args.batch_size)) if v is not None}
    pre = setting.pretrain(config=args.config or None, sets=tuple(args.sets), **kw)
    render = script if args.script else recipe
    sys.stdout.write(render(args.target, setting, pre, _options(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
