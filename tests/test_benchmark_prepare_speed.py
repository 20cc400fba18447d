"""experiments/benchmarks/prepare_speed.py on two bundled recordings: the runs, their checks, the estimate."""

import pytest

from experiments.benchmarks import prepare_speed


def test_prepare_speed_dry_run(tmp_path):
    report = prepare_speed.run(prepare_speed.BUNDLED, "eegmmidb", [1], beam_workers=0, baseline=True, limit=2,
                                repeats=2)
    assert set(report["results"]) == {"local_polyphase_w1", "local_fft_w1"}
    for row in report["results"].values():
        assert row["recordings"] == 2 and row["windows"] > 0 and row["seconds"] > 0
        assert row["repeats"] == 2 and row["seconds"] == min(row["seconds_all"]) and len(row["cpu_seconds_all"]) == 2
        assert row["recording_hours_per_minute"] == pytest.approx(row["recording_hours"] / (row["seconds"] / 60))
        assert row["recording_hours_per_minute_per_worker"] == pytest.approx(row["recording_hours_per_minute"])
        assert row["cpu_seconds"] > 0 and row["recording_hours_per_cpu_minute"] == pytest.approx(
            row["recording_hours"] / (row["cpu_seconds"] / 60))
    assert all(report["checks"].values()) and report["checks"]["polyphase_and_fft_same_windows_per_recording"]
    assert set(report["speedup_polyphase_over_fft"]) == {"w1"}
    est = report["estimate"]
    assert est["measured"] is False and "ESTIMATE" in est["what"]
    assert set(est["basis"]) == {"local_steady_state"}
    rate = est["basis"]["local_steady_state"]["recording_hours_per_minute_per_worker"]
    assert rate == pytest.approx(report["results"]["local_polyphase_w1"]["recording_hours_per_cpu_minute"])
    for row in est["cloud"]:
        cloud = row["local_steady_state"]
        assert cloud["recording_hours_per_minute"] == pytest.approx(rate * row["workers"])
        assert cloud["tueg_hours_of_wall_time"] == pytest.approx(27_000 / (rate * row["workers"]) / 60)
