"""Peak memory and speed of the token classifier's training on CPU, in micro-batches.

    python -m experiments.benchmarks.token_classifier_memory [--channels 64] [--frames 105 313]
        [--batch 128] [--steps 2] [--output FILE]

For each number of frames (105: the EEG codec's 5-s window at hop 12; 313: a codec of hop 4, e.g.
the ``tiny`` preset) a fresh Python process trains the classifier (default
``TokenClassifierConfig``, so batch 128 split into micro-batches under its
``max_activation_bytes``) on random codes of ``--channels`` channels, with the EEG codec's
codebook shape (6 x 256 x 16, the widest model), and then predicts a validation set as every epoch
of ``fit_token_classifier`` does. Each process reports its peak RSS (``VmHWM``) after set-up,
after compiling the training step, after ``--steps`` training steps and after the validation pass
(one process per configuration, so the peaks are separate), the compile time apart from the
training throughput (windows/s, median over the steps, compilation excluded), the micro-batch
chosen, and XLA's own buffer size for the compiled step beside the estimate that chose it.

The steps are few to keep the whole run to a few minutes on a 2-core machine (a step at 313
frames takes about a minute there); the JSON says how many. Writes
``results/token_classifier_memory_cpu.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from biocodec_jax.evaluation.token_classifier import (
    FittedTokenClassifier,
    TokenClassifierConfig,
    activation_bytes,
    attention_heads,
    class_weights,
    init_token_classifier,
    learning_rates,
    make_optimizer,
    train_step,
    training_micro_batch,
)
from experiments.benchmarks.common import RESULTS, machine_info, write_report


def _vm_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmHWM``: peak resident set; ``VmRSS``: current)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line (not Linux?)")


def _mb(kib: int) -> float:
    return kib * 1024 / 1e6


def measure(channels: int, frames: int, batch: int, steps: int, val_windows: int, books: tuple[int, int, int],
            max_bytes: int | None = None) -> dict:
    """Train ``steps`` steps on random codes in this process and report memory and speed (see the module doc)."""
    config = TokenClassifierConfig(batch_size=batch)
    if max_bytes is not None:
        config = dataclasses.replace(config, max_activation_bytes=max_bytes)
    rng = np.random.default_rng(0)
    n_books, n_codes, d = books
    codebooks = rng.standard_normal(books).astype(np.float32)
    codes = rng.integers(0, n_codes, (batch, channels, frames, n_books)).astype(np.int32)
    labels = (np.arange(batch) % 2).astype(np.int32)
    graphdef, params = init_token_classifier(codebooks, channels, 2, config)
    opt_state = make_optimizer(config).init(ravel_pytree(params)[0])
    window = activation_bytes(channels, frames, d, attention_heads(d, config.heads), config.feedforward, training=True)
    micro = training_micro_batch(batch, window, config.max_activation_bytes)
    rates = learning_rates(config, steps + 1)
    args = (params, opt_state, jax.random.key(0), rates[0], codes, labels, np.ones(batch, np.float32),
            class_weights(labels, 2), np.float32(config.label_smoothing))
    rss_setup = _vm_kib("VmHWM")

    t0 = time.perf_counter()
    compiled = train_step.lower(*args, graphdef=graphdef, micro_batch=micro).compile()
    compile_s = time.perf_counter() - t0
    xla_temp = compiled.memory_analysis().temp_size_in_bytes
    rss_compile = _vm_kib("VmHWM")

    times, losses = [], []
    for step in range(steps):
        t0 = time.perf_counter()
        params, opt_state, loss = jax.block_until_ready(compiled(params, opt_state, jax.random.key(step + 1),
                                                                 rates[step], *args[4:]))
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    rss_train = _vm_kib("VmHWM")

    codes_val = rng.integers(0, n_codes, (val_windows, channels, frames, n_books)).astype(np.int32)
    t0 = time.perf_counter()
    FittedTokenClassifier(graphdef, params, config, 2, best_epoch=1).predict_proba(codes_val, batch_size=batch)
    predict_s = time.perf_counter() - t0
    rss_predict = _vm_kib("VmHWM")
    return {
        "channels": channels,
        "frames": frames,
        "codebooks": list(books),
        "batch": batch,
        "max_activation_bytes": config.max_activation_bytes,
        "micro_batch": micro,
        "micro_batches_per_step": -(-batch // micro),
        "estimated_activation_bytes_per_window": window,
        "xla_temp_bytes_of_step": xla_temp,
        "xla_temp_bytes_per_micro_batch_window": xla_temp / micro,
        "compile_s": compile_s,
        "steps_timed": steps,
        "seconds_per_step": times,
        "train_windows_per_s": batch / statistics.median(times),
        "losses": losses,
        "val_windows": val_windows,
        "val_predict_s_incl_compile": predict_s,
        "peak_rss_mb": {
            "after_setup": _mb(rss_setup),
            "after_compile": _mb(rss_compile),
            "after_training_steps": _mb(rss_train),
            "after_validation_predict": _mb(rss_predict),
        },
        "peak_rss_mb_max": _mb(rss_predict),
    }


def run_fresh(channels: int, frames: int, batch: int, steps: int, val_windows: int, books: tuple[int, int, int],
              max_bytes: int | None = None) -> dict:
    """:func:`measure` in a fresh Python process (its own peak RSS); the child's report, parsed."""
    command = [sys.executable, "-m", "experiments.benchmarks.token_classifier_memory", "--child",
               "--channels", str(channels), "--frames", str(frames), "--batch", str(batch), "--steps", str(steps),
               "--val-windows", str(val_windows), "--codebooks", *map(str, books)]
    if max_bytes is not None:
        command += ["--max-activation-bytes", str(max_bytes)]
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"token_classifier_memory: the run at {channels} channels x {frames} frames failed "
                           f"(exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--frames", type=int, nargs="+", default=[105, 313])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per configuration")
    parser.add_argument("--val-windows", type=int, default=128, help="windows in the validation pass")
    parser.add_argument("--codebooks", type=int, nargs=3, default=[6, 256, 16], metavar=("K", "V", "D"))
    parser.add_argument("--max-activation-bytes", type=int, default=None,
                        help="override TokenClassifierConfig.max_activation_bytes (default: the config's)")
    parser.add_argument("--output", type=Path, default=RESULTS / "token_classifier_memory_cpu.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    books = tuple(args.codebooks)
    if args.child:
        (frames,) = args.frames
        print(json.dumps(measure(args.channels, frames, args.batch, args.steps, args.val_windows, books,
                                 args.max_activation_bytes)))
        return
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = {f"{args.channels}ch_{frames}frames": run_fresh(args.channels, frames, args.batch, args.steps,
                                                              args.val_windows, books, args.max_activation_bytes)
               for frames in args.frames}
    report = {
        "what": "token classifier training on random codes, batch in micro-batches under "
                "TokenClassifierConfig.max_activation_bytes; one fresh process per configuration",
        "note": f"{args.steps} timed training steps per configuration (compilation apart), to keep the run short; "
                "peak RSS is the process's VmHWM, imports and data included",
        "results": results,
        "total_s": time.perf_counter() - t0,
        "load_average_1min_at_start": load,
        "machine": machine_info("jax", "jaxlib", "flax"),
    }
    write_report(report, args.output)
    for name, r in results.items():
        print(f"{name}: micro-batch {r['micro_batch']} ({r['micro_batches_per_step']} per step), peak RSS "
              f"{r['peak_rss_mb_max']:.0f} MB, {r['train_windows_per_s']:.1f} windows/s of training, "
              f"compile {r['compile_s']:.1f} s")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
