"""Speed of the JAX codec: training step and encode/decode throughput, compile time excluded.

    python -m experiments.benchmarks.codec_speed [--preset eeg] [--repeats 5] [--output FILE]

Writes JSON (windows/s per task, median and spread over repeats, compile times, machine) to
``experiments/benchmarks/results/codec_speed_<device>.json`` by default. Reference figures of the
PyTorch original measured on the same kind of machine are in shared/reference/performance.md;
``compare_pytorch.py`` (issue 6) times both in one process.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from biocodec_jax import Codec, preset
from biocodec_jax.training import init_state, train_step
from experiments.benchmarks.common import RESULTS, machine_info, rate_summary, write_report
from experiments.benchmarks.timing import timed


def run(preset_name: str = "eeg", train_batch: int = 32, infer_batch: int = 256, repeats: int = 5) -> dict:
    config = preset(preset_name)
    length = config.train.window_samples(config.codec.sample_rate)
    rng = np.random.default_rng(0)
    train_x = rng.standard_normal((train_batch, 1, length)).astype(np.float32)
    infer_x = jnp.asarray(rng.standard_normal((infer_batch, 1, length)).astype(np.float32))

    state = init_state(config, jax.random.PRNGKey(0), train_x)
    holder = {"state": state}
    train_x = jnp.asarray(train_x)

    def step():
        holder["state"], metrics = train_step(holder["state"], train_x)
        return metrics["loss"]

    results = {"train_step": rate_summary(train_batch, *timed(step, repeats)[:2])}
    codec = Codec(config, holder["state"].params, holder["state"].codebooks)
    codes = codec.encode(infer_x)
    results["encode"] = rate_summary(infer_batch, *timed(lambda: codec.encode(infer_x), repeats)[:2])
    results["decode"] = rate_summary(infer_batch, *timed(lambda: codec.decode(codes), repeats)[:2])
    return {
        "preset": preset_name,
        "window_samples": length,
        "results": results,
        "machine": machine_info(
            "jax",
            device=str(jax.devices()[0].device_kind),
            platform=jax.default_backend(),
            xla_flags=os.environ.get("XLA_FLAGS", ""),
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="eeg", choices=["eeg", "emg", "tiny"])
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run(args.preset, args.train_batch, args.infer_batch, args.repeats)
    output = args.output or RESULTS / f"codec_speed_{args.preset}_{report['machine']['platform']}.json"
    write_report(report, output)
    for task, r in report["results"].items():
        print(f"{task:11s} batch {r['batch']:4d}: {r['windows_per_s']:8.1f} windows/s "
              f"(range {r['windows_per_s_min']:.1f}-{r['windows_per_s_max']:.1f}; first call {r['first_call_s_incl_compile']:.1f} s)")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
