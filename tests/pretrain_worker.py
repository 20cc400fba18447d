"""One pretraining process for tests/test_pretrain.py (device count and JAX cluster set per process).

    python tests/pretrain_worker.py OUT_JSON WORKDIR [--sigkill-at N] [--coordinator HOST:PORT --num-processes N
        --process-id I] -- [pretrain overrides key=value ...]

Runs :func:`biocodec_jax.training.loop.pretrain` with the tiny preset and the overrides, records
each step's loss, and writes ``{"losses": {step: loss}, "start_step", "step"}`` to OUT_JSON.
``--sigkill-at N`` kills the process with SIGKILL right after step N (a crash: no clean-up).
Set XLA_FLAGS=--xla_force_host_platform_device_count=K in the environment for K devices.
"""

import argparse
import json
import os
import signal
import sys

import jax

from biocodec_jax.config import apply_overrides, preset
from biocodec_jax.training import parallel
from biocodec_jax.training.loop import pretrain


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("workdir")
    parser.add_argument("--sigkill-at", type=int, default=None)
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    own, overrides = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser.parse_args(own)
    args.overrides = overrides

    # Before anything touches a device (importing JAX does not).
    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    config = apply_overrides(preset("tiny"), args.overrides)
    losses = {}

    def on_step(step, metrics):
        losses[step] = metrics["loss"]
        if step == args.sigkill_at:
            with open(args.out, "w") as f:
                json.dump({"losses": losses, "killed_at": step}, f)
            os.kill(os.getpid(), signal.SIGKILL)

    result = pretrain(config, args.workdir, on_step=on_step, progress=False)
    with open(args.out, "w") as f:
        json.dump({"losses": losses, "start_step": result.start_step, "step": result.step,
                   "devices": jax.device_count(), "processes": jax.process_count()}, f)
    if args.num_processes:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
