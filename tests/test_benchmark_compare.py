"""The measuring parts of experiments/benchmarks/compare_pytorch.py that need no PyTorch."""

import numpy as np
import pytest

from experiments.benchmarks import compare_pytorch as cp


@pytest.mark.skipif(cp._LIVE_HEAP is None, reason="needs glibc's mallinfo2")
def test_peak_heap_counts_what_a_call_holds():
    """Heap growth is seen whether the memory is still held at the end of the block or not; the
    sampler runs every 2 ms, so here the array lives through a few samples' worth of work."""
    with cp.PeakHeap() as heap:
        a = np.ones(16 * 2**20 // 8)  # 16 MiB
    assert heap.delta >= 15 * 2**20
    del a
    with cp.PeakHeap() as heap:
        b = np.ones(32 * 2**20 // 8)
        for _ in range(20):  # some tens of milliseconds of work while it is held
            b = np.sqrt(b + 1.0)
        del b
    assert heap.delta >= 31 * 2**20


def test_summary_rates_and_a_failed_runner():
    runner = cp.Runner("jax", call=lambda: None, first_call_s=3.0, times=[0.5, 0.25, 1.0], peak_bytes=2**20)
    s = cp._summary(runner, batch=32, flops_per_window=10**9)
    assert s["windows_per_s"] == 64 and s["windows_per_s_min"] == 32 and s["windows_per_s_max"] == 128
    assert s["achieved_gflop_per_s"] == 64 and s["peak_memory_mb"] == 1
    failed = cp.Runner("torch_compile", call=lambda: None)

    def boom():
        raise RuntimeError("no C++ compiler\nmore detail")

    failed.call = boom
    failed.warm_up()
    assert failed.error == "RuntimeError: no C++ compiler"
    assert cp._summary(failed, 32, 1)["error"] == failed.error
