"""Peak memory of the probe's features at corpus scale: flat from 200 to 2,000 TUAB-like recordings.

    python -m experiments.benchmarks.eval_memory [--sizes 200 2000] [--seconds 20] [--corpus DIR]

Writes a synthetic TUAB corpus once (TUH-style EDF files in TUAB's layout, ``edf/{train,eval}/
{normal,abnormal}/01_tcp_ar/<subject>_s001_t000.edf``, by ``tests/synthetic_data/tuh.py``'s writer:
the 21 electrodes TUAB's loader needs plus TUH's extra leads, 250 Hz, ``--seconds`` long, 90 % train /
10 % eval, classes alternating); each size reads the first N recordings (a folder of links). For each
size a fresh Python process runs the streaming path and reports its own peak resident set
(``VmHWM`` from ``/proc/self/status``; ``ru_maxrss`` beside it):

1. ``experiments.tasks.tuab.load`` into a :class:`~biocodec_jax.evaluation.dataset.WindowStore`
   (read, filter 0.1-75 Hz + 60-Hz notch, per-window normalisation, appended to a memmap);
2. :func:`~biocodec_jax.evaluation.features.codec_features` with the ``tiny`` preset (random weights,
   k-means codebooks from the first two windows; hop 4) into a cache directory;
3. :func:`~biocodec_jax.evaluation.linear_probe.probe_features` (``embedding`` and ``histogram``);
4. the out-of-core linear probe (:func:`~biocodec_jax.evaluation.linear_probe.fit_linear_probe` on
   :class:`~biocodec_jax.evaluation.linear_probe.Rows`, budget forced to 1 MB, chunks of 1 MB, 2 SGD epochs) on the
   first of TUAB's splits.

The JSON has, per size, windows, seconds and windows/s of each stage and of the whole, the peak RSS
after start-up (imports and the codec) and at the end; and the ratio of the two end peaks (the
claim: within 20 %, so memory does not grow with the corpus). Writes ``results/eval_memory_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from biocodec_jax import Codec
from biocodec_jax.evaluation.dataset import read_rows
from biocodec_jax.evaluation.features import codec_features
from biocodec_jax.evaluation.linear_probe import LinearProbeConfig, Rows, fit_linear_probe, probe_features
from biocodec_jax.evaluation.splits import split_indices
from experiments.benchmarks.common import RESULTS, machine_info, write_report
from experiments.tasks import tuab
from tests.synthetic_data.tuab import tuab_path
from tests.synthetic_data.tuh import write_tuh_edf

RATE = 250.0


def peak_rss_mb() -> dict:
    """This process's peak resident set: ``VmHWM`` (MB) and ``ru_maxrss`` (MB)."""
    hwm = None
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return {"vm_hwm_mb": hwm, "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def write_corpus(root: Path, n: int, seconds: int) -> list[Path]:
    """``n`` TUAB-layout recordings under ``root`` (skipped when already there); their paths in order."""
    paths = []
    for i in range(n):
        partition = "eval" if i % 10 == 9 else "train"
        label = ("normal", "abnormal")[i % 2]
        subject = f"s{i:07d}"
        path = tuab_path(root, partition, label, subject, 1)
        if not path.is_file():
            write_tuh_edf(path, subject, seconds, RATE, seed=i)
        paths.append(path)
    return paths


def link_subset(paths: list[Path], corpus: Path, target: Path) -> Path:
    """A TUAB folder at ``target`` holding links to ``paths`` (the first N of the corpus)."""
    for path in paths:
        link = target / path.relative_to(corpus)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(path)
    return target


def worker(data: Path, work: Path) -> dict:
    """The streaming path in this process (see the module doc); what it measured."""
    out, t_all = {}, time.perf_counter()
    t0 = time.perf_counter()
    data = tuab.load(data, RATE, workdir=work / "windows")
    out["load"] = {"seconds": time.perf_counter() - t0, "recordings": len(set(data.recordings)),
                   "window_file_mb": data.x.nbytes / 2**20}
    n = len(data.y)
    codec = Codec.from_preset("tiny", seed=0, init_batch=read_rows(data.x, 0, 2).reshape(-1, 1, data.x.shape[2]))
    out["after_start_up"] = peak_rss_mb()
    t0 = time.perf_counter()
    features = codec_features(codec, data, work / "cache")
    out["codec_features"] = {"seconds": time.perf_counter() - t0, "codes_mb": features.codes.nbytes / 2**20,
                             "pooled_mb": features.pooled.nbytes / 2**20}
    t0 = time.perf_counter()
    embedding = probe_features(features, "embedding")
    histogram = probe_features(features, "histogram", codec.codec_config.codebook_size)
    out["probe_features"] = {"seconds": time.perf_counter() - t0, "embedding_shape": list(embedding.shape),
                             "histogram_shape": list(histogram.shape)}
    t0 = time.perf_counter()
    split = tuab.make_splits(data, seed=0)[0]
    tr, va, te = split_indices(data, split)
    config = LinearProbeConfig(memory_budget_mb=1.0, sgd_epochs=2, sgd_chunk_mb=1.0)
    fitted = fit_linear_probe(Rows(embedding, tr), data.y[tr], Rows(embedding, va), data.y[va], 2, config)
    proba = fitted.predict_proba(Rows(embedding, te))
    out["probe_fit"] = {"seconds": time.perf_counter() - t0, "out_of_core": fitted.out_of_core,
                        "train_windows": int(len(tr)), "test_windows": int(len(te)),
                        "test_accuracy": float(np.mean(proba.argmax(1) == data.y[te]))}
    seconds = time.perf_counter() - t_all
    out.update(windows=n, channels=int(data.x.shape[1]), samples_per_window=int(data.x.shape[2]),
               seconds=seconds, windows_per_s=n / seconds,
               coding_windows_per_s=n / out["codec_features"]["seconds"],
               load_windows_per_s=n / out["load"]["seconds"], peak=peak_rss_mb())
    return out


def run(sizes: list[int], seconds: int, corpus: Path | None) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="eval-memory-") as tmp:
        corpus = Path(corpus) if corpus else Path(tmp) / "corpus"
        t0 = time.perf_counter()
        paths = write_corpus(corpus, max(sizes), seconds)
        written_s = time.perf_counter() - t0
        for size in sizes:
            data = link_subset(paths[:size], corpus, Path(tmp) / f"subset{size}")
            work = Path(tmp) / f"work{size}"
            proc = subprocess.run([sys.executable, "-m", "experiments.benchmarks.eval_memory", "--worker",
                                   str(data), str(work)], capture_output=True, text=True, cwd=Path(__file__).parents[2])
            if proc.returncode:
                raise RuntimeError(f"size {size}: the worker failed:\n{proc.stderr[-4000:]}")
            results[str(size)] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[str(size)]
            print(f"{size} recordings: {r['windows']} windows in {r['seconds']:.0f} s ({r['windows_per_s']:.1f} windows/s), "
                  f"peak RSS {r['peak']['vm_hwm_mb']:.0f} MB (after start-up {r['after_start_up']['vm_hwm_mb']:.0f} MB)",
                  flush=True)
    small, large = results[str(min(sizes))], results[str(max(sizes))]
    ratio = large["peak"]["vm_hwm_mb"] / small["peak"]["vm_hwm_mb"]
    return {
        "what": ("peak RSS of one process running tuab.load (WindowStore) -> codec_features (tiny codec, cache "
                 "directory) -> probe_features (embedding, histogram) -> out-of-core linear probe, per corpus size"),
        "corpus": {"recordings": max(sizes), "seconds_per_recording": seconds, "sample_rate": RATE,
                   "layout": "edf/{train,eval}/{normal,abnormal}/01_tcp_ar/<subject>_s001_t000.edf, 33 signals",
                   "write_seconds": written_s},
        "results": results,
        "peak_ratio_largest_to_smallest": ratio,
        "flat_within_20_percent": bool(abs(ratio - 1) <= 0.2),
        "machine": machine_info("jax", "numpy", "scikit-learn", "mne", device="cpu"),
    }


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        print(json.dumps(worker(Path(argv[1]), Path(argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000], help="recordings per run (default 200 2000)")
    parser.add_argument("--seconds", type=int, default=20, help="length of each recording (default 20 s: 4 windows)")
    parser.add_argument("--corpus", type=Path, help="write / reuse the synthetic corpus here (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=RESULTS / "eval_memory_cpu.json")
    args = parser.parse_args(argv)
    report = run(sorted(args.sizes), args.seconds, args.corpus)
    write_report(report, args.output)
    print(f"peak RSS ratio {report['peak_ratio_largest_to_smallest']:.3f} "
          f"({'flat' if report['flat_within_20_percent'] else 'NOT flat'} within 20 %); wrote {args.output}")


if __name__ == "__main__":
    main()
