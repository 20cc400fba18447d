"""Speed of ``prepare`` (recordings -> shards): recording-hours per minute of wall time.

    python -m experiments.benchmarks.prepare_speed [--input DIR] [--dataset eegmmidb] [--workers 1 2]

Default input: ``../shared/data/eegmmidb`` when present (41 PhysioNet recordings, 64 channels at
160 Hz -> 250 Hz), else the bundled ``data/eegmmidb``. For each worker count it prepares the whole
folder into a fresh temporary output (EEG preset) and reports recording-hours and channel-hours per
minute and windows/s, worker start-up included (it is part of every real run). The first pass also
warms the page cache, so it is run once untimed. Writes ``results/prepare_speed_cpu.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from data_pipelines.config import prepare_preset
from data_pipelines.prepare import prepare
from experiments.benchmarks.common import RESULTS, machine_info, write_report

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "eegmmidb"
BUNDLED = REPO / "data" / "eegmmidb"


def run(input_dir: Path, dataset: str, worker_counts: list[int]) -> dict:
    config = prepare_preset("eeg")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        prepare(input_dir, Path(tmp) / "warm", config, dataset=dataset, workers=1, progress=False)  # page cache
        for workers in worker_counts:
            t0 = time.perf_counter()
            manifest = prepare(input_dir, Path(tmp) / f"w{workers}", config, dataset=dataset, workers=workers, progress=False)
            seconds = time.perf_counter() - t0
            used = [r for r in manifest["recordings"] if r["duration_s"]]
            hours = sum(r["duration_s"] for r in used) / 3600
            channel_hours = sum(r["duration_s"] * len(r["channels"]) for r in used) / 3600
            results[f"workers_{workers}"] = {
                "workers": workers,
                "seconds": seconds,
                "recordings": len(manifest["recordings"]),
                "recording_hours": hours,
                "recording_hours_per_minute": hours / (seconds / 60),
                "channel_hours_per_minute": channel_hours / (seconds / 60),
                "windows_per_s": manifest["windows"] / seconds,
                "windows": manifest["windows"],
            }
    return {
        "input": str(input_dir),
        "dataset": dataset,
        "config": "eeg preset (250 Hz, 5-s windows, no filters, all channels)",
        "results": results,
        "machine": machine_info("mne", "array-record"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=SHARED if SHARED.is_dir() else BUNDLED)
    parser.add_argument("--dataset", default="eegmmidb")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--output", type=Path, default=RESULTS / "prepare_speed_cpu.json")
    args = parser.parse_args(argv)
    report = run(args.input, args.dataset, args.workers)
    write_report(report, args.output)
    for r in report["results"].values():
        print(f"workers {r['workers']}: {r['recording_hours_per_minute']:.1f} recording-hours/min "
              f"({r['channel_hours_per_minute']:.0f} channel-hours/min, {r['windows_per_s']:.0f} windows/s; "
              f"{r['recording_hours']:.2f} h in {r['seconds']:.1f} s)")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
