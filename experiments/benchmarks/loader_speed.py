"""Speed of the Grain training loader (data_pipelines.loader) on shards of real-sized windows.

    python -m experiments.benchmarks.loader_speed [--shard-dir DIR] [--workers 0 2] [--repeats 5] [--output FILE]

Without ``--shard-dir`` it writes ``--windows`` (20,000) windows of 1250 random samples (5 s of EEG
at 250 Hz) into a temporary prepared directory (3 train shards). For each worker count it builds
the training iterator (global batch 32, one process), takes ``--warmup`` batches (worker start-up
and first reads excluded), then times ``--repeats`` runs of ``--batches`` batches each: windows/s,
median and range. Alongside, the ratio to what the training step consumes
(``results.train_step.windows_per_s`` of ``results/codec_speed_eeg_cpu.json``, when present): how
many times faster than the model the loader delivers on this machine, measured without the model
competing for the cores (during training both share them).

Writes JSON to ``experiments/benchmarks/results/loader_speed_cpu.json`` by default. The shards sit
in the page cache after the first pass, so this measures the pipeline (random record access,
decoding, batching, inter-process transfer), not the disk.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from data_pipelines.loader import DEFAULT_PREFETCH_BATCHES, DEFAULT_READ_THREADS, make_train_iterator
from data_pipelines.shards import ShardWriter, WindowOrigin, encode_window
from experiments.benchmarks.common import RESULTS, machine_info, rate_summary, write_report

CODEC_RESULTS = RESULTS / "codec_speed_eeg_cpu.json"


def write_random_shards(out: Path, windows: int, window_samples: int = 1250, shards: int = 3, seed: int = 0) -> Path:
    """A prepared directory (manifest + train shards) of ``windows`` random float32 windows."""
    rng = np.random.default_rng(seed)
    sizes = [windows // shards + (i < windows % shards) for i in range(shards)]
    entries, start = [], 0
    for s, n in enumerate(sizes):
        rel = f"train/shard-{s:05d}.array_record"
        with ShardWriter(out / rel) as writer:
            for i in range(n):
                window = rng.standard_normal(window_samples, dtype=np.float32)
                writer.write(encode_window(window, WindowOrigin("random", "sub-00", "C3", (start + i) * window_samples)))
            writer.commit()
        entries.append({"path": rel, "windows": n})
        start += n
    manifest = {"shards": {"train": entries}, "window_samples": window_samples, "sample_rate": 250, "windows": windows}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def measure(shard_dir: Path, worker_count: int, global_batch: int, batches: int, warmup: int, repeats: int,
            read_threads: int, prefetch: int) -> dict:
    t0 = time.perf_counter()
    it = make_train_iterator(shard_dir, global_batch_size=global_batch, seed=0, process_index=0, process_count=1,
                             worker_count=worker_count, read_threads=read_threads, prefetch_buffer_size=prefetch)
    try:
        next(it)
        first = time.perf_counter() - t0  # build + worker start-up + first batch
        for _ in range(warmup - 1):
            next(it)
        seconds_per_batch = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(batches):
                batch = next(it)
            seconds_per_batch.append((time.perf_counter() - t0) / batches)
        assert batch.shape[0] == global_batch and batch.dtype == np.float32
    finally:
        it.close()
    summary = rate_summary(global_batch, first, seconds_per_batch)  # windows/s, range, "first call" = time to first batch
    summary.update(worker_count=worker_count, batches_per_repeat=batches, warmup_batches=warmup,
                   read_threads=read_threads, prefetch_buffer_batches=prefetch)
    return summary


def run(shard_dir: Path | None, windows: int, workers: list[int], global_batch: int, batches: int, warmup: int,
        repeats: int, read_threads: int, prefetch: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="loader_speed_") as tmp:
        generated = shard_dir is None
        if generated:
            t0 = time.perf_counter()
            shard_dir = write_random_shards(Path(tmp), windows)
            write_s = time.perf_counter() - t0
        manifest = json.loads((shard_dir / "manifest.json").read_text())
        results = {
            f"workers_{w}": measure(shard_dir, w, global_batch, batches, warmup, repeats, read_threads, prefetch)
            for w in workers
        }
    report = {
        "shards": {
            "dir": "generated (random data, temporary)" if generated else str(shard_dir),
            "train_windows": sum(e["windows"] for e in manifest["shards"]["train"]),
            "train_shards": len(manifest["shards"]["train"]),
            "window_samples": manifest["window_samples"],
            **({"write_s": write_s} if generated else {}),
        },
        "global_batch": global_batch,
        "note": "first_call_s_incl_compile = build + worker start-up + first batch; warm-up batches excluded from rates",
        "results": results,
    }
    if CODEC_RESULTS.is_file():
        consumed = json.loads(CODEC_RESULTS.read_text())["results"]["train_step"]["windows_per_s"]
        report["train_step_windows_per_s"] = consumed
        report["ratio_to_train_step"] = {k: r["windows_per_s"] / consumed for k, r in results.items()}
    report["machine"] = machine_info("grain", "array-record")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard-dir", type=Path, default=None, help="a prepared directory (default: random shards)")
    parser.add_argument("--windows", type=int, default=20_000, help="windows to generate without --shard-dir")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=100, help="batches per timed repeat")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--read-threads", type=int, default=DEFAULT_READ_THREADS)
    parser.add_argument("--prefetch", type=int, default=DEFAULT_PREFETCH_BATCHES, help="prefetch buffer, in batches")
    parser.add_argument("--output", type=Path, default=RESULTS / "loader_speed_cpu.json")
    args = parser.parse_args(argv)
    report = run(args.shard_dir, args.windows, args.workers, args.global_batch, args.batches, args.warmup,
                 args.repeats, args.read_threads, args.prefetch)
    write_report(report, args.output)
    ratios = report.get("ratio_to_train_step", {})
    for key, r in report["results"].items():
        ratio = f"; {ratios[key]:.0f}x the training step" if key in ratios else ""
        print(f"workers {r['worker_count']}: {r['windows_per_s']:8.0f} windows/s (range {r['windows_per_s_min']:.0f}-"
              f"{r['windows_per_s_max']:.0f}; first batch {r['first_call_s_incl_compile']:.1f} s{ratio})")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
