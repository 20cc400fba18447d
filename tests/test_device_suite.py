"""The device suite's bookkeeping (experiments/benchmarks/device_suite.py), without an accelerator:
ratios and targets from the parts' JSON, unmeasured rows said as such, the time budget honoured."""

import argparse
import json
import time

import pytest

from experiments.benchmarks import device_suite


def _write(path, obj):
    path.write_text(json.dumps(obj))


def _args(tmp_path, **kw):
    base = dict(part="merge", output_dir=tmp_path, batch=512, infer_batch=1024, calls=10, deadline=None, preset="eeg")
    base.update(kw)
    return argparse.Namespace(**base)


def test_merge_ratios_targets_and_unmeasured(tmp_path):
    _write(tmp_path / "device_suite_jax.json", {
        "backend": "gpu", "device": "H200", "jax": "0.11.2", "lstm_unroll_used": 8,
        "conv_impl_fastest": {"float32": "matmul", "bfloat16": "matmul"},
        "train_float32_matmul": {"windows_per_s": 9000.0, "compile_s": 30.0},
        "train_float32_xla": {"windows_per_s": 5000.0, "compile_s": 20.0},
        "train_bfloat16_matmul": {"windows_per_s": 15000.0, "compile_s": 30.0},
        "infer_float32": {"encode": {"windows_per_s": 50000.0}, "decode": {"windows_per_s": 40000.0}},
        "infer_bfloat16": {"skipped": "time budget"},
    })
    _write(tmp_path / "device_suite_torch_core.json", {
        "torch": "2.11", "train_fp32": {"windows_per_s": 6000.0}, "train_amp_bf16": {"windows_per_s": 9000.0},
        "infer_fp32": {"encode": {"windows_per_s": 20000.0}, "decode": {"windows_per_s": 25000.0}},
    })
    # torch_extra missing: its rows must say so, not invent numbers
    report = device_suite.merge(_args(tmp_path))
    r = report["ratios"]
    assert r["train_fp32_jax_over_torch_eager"] == pytest.approx(1.5)
    assert r["train_bf16_jax_over_torch_amp"] == pytest.approx(15000 / 9000)
    assert r["encode_fp32_jax_over_torch"] == pytest.approx(2.5)
    assert r["decode_fp32_jax_over_torch"] == pytest.approx(1.6)
    assert r["encode_bf16_jax_over_torch_amp"] is None and r["train_fp32_jax_over_torch_compile"] is None
    t = report["targets_met"]
    assert t["train_ratio_fp32"] is True and t["train_ratio_bf16"] is True
    assert t["jax_bf16_batch_512_windows_per_s"] is True
    assert t["decode_fp32_jax_over_torch"] is False and t["encode_bf16_jax_over_torch_amp"] is None
    assert report["hours_to_1e8_window_steps_at_batch"]["jax_bfloat16"] == pytest.approx(1e8 / 15000 / 3600)
    assert "missing" in report["parts"]["torch_extra"]
    md = (tmp_path / "device_suite_gpu.md").read_text()
    assert "| training step | 512 | 9,000 | 15,000 | 6,000 | 9,000 | not measured | 1.50x, 1.67x |" in md
    assert "not measured" in md.split("| encode |")[1].splitlines()[0]  # bf16 encode was skipped
    assert json.loads((tmp_path / "device_suite_gpu.json").read_text())["ratios"] == r


def test_budget_skips_late_parts_and_keeps_errors(tmp_path):
    report = {}
    budget = device_suite.Budget(time.time() + 5, tmp_path / "part.json", report)
    budget.run("quick", 1, lambda: {"windows_per_s": 1.0})
    budget.run("too_long", 60, lambda: pytest.fail("must not run"))
    budget.run("broken", 1, lambda: 1 / 0)
    assert report["quick"]["windows_per_s"] == 1.0
    assert "time budget" in report["too_long"]["skipped"]
    assert report["broken"]["error"].startswith("ZeroDivisionError")
    assert json.loads((tmp_path / "part.json").read_text())["quick"]["windows_per_s"] == 1.0


def test_largest_halves_on_out_of_memory():
    calls = []

    def measure(batch):
        calls.append(batch)
        if batch > 1024:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
        return {"windows_per_s": float(batch)}

    res = device_suite._largest(measure, 4096)
    assert calls == [4096, 2048, 1024] and res["tried_batches"] == [4096, 2048, 1024]
    with pytest.raises(ValueError):
        device_suite._largest(lambda b: (_ for _ in ()).throw(ValueError("other")), 8)
