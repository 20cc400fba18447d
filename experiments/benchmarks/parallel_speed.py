"""Throughput of the data-parallel training step on 1 and on 8 (simulated CPU) devices, same global batch.

    python -m experiments.benchmarks.parallel_speed [--preset eeg] [--batch 32] [--devices 1 8] [--repeats 5] [--output FILE]

For each device count ``n`` the step of :mod:`biocodec_jax.training.parallel` is compiled for
``make_mesh(jax.devices()[:n])`` (state replicated, global batch sharded over ``n`` devices) and
timed on the same global batch (default 32 windows of 5 s of EEG, 1250 samples, preset ``eeg``):
windows/s, median and range over ``--repeats`` calls, the first call (compilation) kept apart.
The batch is put on the devices once, outside the timing. The loss of the first step is recorded
for each ``n``: it must agree (same global batch, same initial state; only the summation order
differs).

The device count is fixed when JAX starts, so each configuration runs in a fresh subprocess of
this script with ``XLA_FLAGS=--xla_force_host_platform_device_count=n JAX_PLATFORMS=cpu``: the
1-device baseline is an ordinary one-device process (simulating 8 devices splits XLA's CPU thread
pool, which would slow the baseline too). Results go to one JSON,
``experiments/benchmarks/results/parallel_speed_<preset>_cpu.json`` by default.

On a 2-core CPU the 8 simulated devices share those 2 cores: this measures the overhead of the
sharded program (per-device partitioning, the all-reduces of gradients, codebook statistics and
metrics, 8 small programs instead of one large one), not a speed-up. A real speed-up needs real
devices (GPUs, TPU cores), one per shard of the batch. ``--preset tiny`` is a quick smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from biocodec_jax import preset
from biocodec_jax.training.parallel import check_batch_size, global_batch, init_sharded_state, make_mesh, parallel_train_step
from experiments.benchmarks.common import RESULTS, machine_info, rate_summary, write_report
from experiments.benchmarks.timing import timed

SIMULATED_DEVICES = 8
REPO_ROOT = Path(__file__).resolve().parents[2]


def measure(n_devices: int, preset_name: str, batch: int, repeats: int, seed: int = 0) -> dict:
    """Time the parallel train step on the first ``n_devices`` devices (run inside the subprocess)."""
    devices = jax.devices()
    if len(devices) < n_devices:
        raise RuntimeError(f"{n_devices} devices asked for, {len(devices)} available")
    mesh = make_mesh(devices[:n_devices])
    check_batch_size(batch, mesh)
    config = preset(preset_name)
    length = config.train.window_samples(config.codec.sample_rate)
    x = np.random.default_rng(seed).standard_normal((batch, 1, length)).astype(np.float32)
    x = global_batch(x, mesh)

    t0 = time.perf_counter()
    state = jax.block_until_ready(init_sharded_state(config, jax.random.PRNGKey(seed), x, mesh))
    init_s = time.perf_counter() - t0
    step = parallel_train_step(mesh)
    holder = {"state": state}

    def call():
        holder["state"], metrics = step(holder["state"], x)
        return metrics["loss"]

    first, times, first_loss = timed(call, repeats)
    return {
        "devices": n_devices,
        "per_device_batch": batch // n_devices,
        "first_step_loss": float(first_loss),
        "init_s_incl_compile": init_s,
        **rate_summary(batch, first, times),
        "device_kind": str(devices[0].device_kind),
        "platform": jax.default_backend(),
        "visible_devices": len(devices),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def run_subprocess(n_devices: int, preset_name: str, batch: int, repeats: int) -> dict:
    """:func:`measure` in a fresh Python with ``n_devices`` simulated CPU devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n_devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable, "-m", "experiments.benchmarks.parallel_speed",
            "--worker", str(n_devices), "--worker-output", str(out),
            "--preset", preset_name, "--batch", str(batch), "--repeats", str(repeats),
        ]
        subprocess.run(cmd, env=env, cwd=REPO_ROOT, check=True)
        return json.loads(out.read_text())


def run(preset_name: str = "eeg", batch: int = 32, devices: tuple[int, ...] = (1, 8), repeats: int = 5) -> dict:
    load_before = os.getloadavg()
    results = {}
    for n in devices:
        print(f"{n} device(s): compiling and timing ...", file=sys.stderr, flush=True)
        results[str(n)] = run_subprocess(n, preset_name, batch, repeats)
    base = results.get("1")
    if base is not None:
        for r in results.values():
            r["rate_vs_1_device"] = r["windows_per_s"] / base["windows_per_s"]
            r["first_step_loss_diff_vs_1_device"] = abs(r["first_step_loss"] - base["first_step_loss"])
    first = next(iter(results.values()))
    return {
        "preset": preset_name,
        "global_batch": batch,
        "window_samples": _window_samples(preset_name),
        "simulated_devices": SIMULATED_DEVICES,
        "note": (
            f"{SIMULATED_DEVICES} simulated CPU devices share the machine's {os.cpu_count()} cores: this measures "
            "the overhead of the sharded program, not a speed-up"
        ),
        "results": results,
        "machine": machine_info(
            "jax",
            platform=first["platform"],
            device=first["device_kind"],
            xla_flags=first["xla_flags"],
            # Other jobs on the machine slow both configurations; the load shows how busy it was.
            load_average_1_5_15_before=list(load_before),
            load_average_1_5_15_after=list(os.getloadavg()),
        ),
    }


def _window_samples(preset_name: str) -> int:
    config = preset(preset_name)
    return config.train.window_samples(config.codec.sample_rate)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="eeg", choices=["eeg", "emg", "tiny"])
    parser.add_argument("--batch", type=int, default=32, help="global batch (divisible by every device count)")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, SIMULATED_DEVICES])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # internal: one configuration
    parser.add_argument("--worker-output", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        result = measure(args.worker, args.preset, args.batch, args.repeats)
        args.worker_output.write_text(json.dumps(result))
        return

    if any(n > SIMULATED_DEVICES or args.batch % n for n in args.devices):
        parser.error(f"device counts must be at most {SIMULATED_DEVICES} and divide --batch {args.batch}")
    report = run(args.preset, args.batch, tuple(args.devices), args.repeats)
    output = args.output or RESULTS / f"parallel_speed_{args.preset}_{report['machine']['platform']}.json"
    write_report(report, output)
    for n, r in report["results"].items():
        print(
            f"{int(n):2d} device(s), global batch {r['batch']} ({r['per_device_batch']}/device): "
            f"{r['windows_per_s']:7.1f} windows/s (range {r['windows_per_s_min']:.1f}-{r['windows_per_s_max']:.1f}; "
            f"first call {r['first_call_s_incl_compile']:.1f} s; first loss {r['first_step_loss']:.6f})"
        )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
