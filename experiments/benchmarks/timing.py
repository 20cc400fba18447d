"""Timing JAX calls. Apart from common.py, which stays free of JAX: prepare_speed's spawned workers
re-import their main module (and so common.py), and must not pay JAX's import in the start-up they time."""

from __future__ import annotations

import time

import jax


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    """(first-call seconds incl. compilation, steady-state seconds per call, first call's result).

    Waits for JAX's asynchronous dispatch (``block_until_ready``) so each time is the whole call.
    """
    t0 = time.perf_counter()
    first_out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, times, first_out
