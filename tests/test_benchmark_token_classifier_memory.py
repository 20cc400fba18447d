"""The token classifier's memory benchmark, at toy sizes: it runs, and reports what it claims to."""

from experiments.benchmarks.token_classifier_memory import measure


def test_measure_reports_micro_batches_memory_and_speed():
    # A budget below one window's estimate: one window per micro-batch, 6 per step.
    report = measure(channels=3, frames=8, batch=6, steps=2, val_windows=3, books=(2, 16, 4), max_bytes=1000)
    assert report["micro_batch"] == 1 and report["micro_batches_per_step"] == 6
    assert report["estimated_activation_bytes_per_window"] > report["max_activation_bytes"]
    assert len(report["seconds_per_step"]) == 2 and report["train_windows_per_s"] > 0
    assert all(loss > 0 for loss in report["losses"])
    peaks = list(report["peak_rss_mb"].values())
    assert peaks == sorted(peaks) and peaks[0] > 0  # VmHWM never goes down
    assert report["peak_rss_mb_max"] == peaks[-1]
