"""What every benchmark here shares: where results go, rate summaries, the machine block.

No JAX here (timing JAX calls is timing.py): prepare_speed's spawned workers re-import this module.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def rate_summary(items: int, first: float, times: list[float]) -> dict:
    """Throughput of ``items`` per call over timed ``times`` (median and range); ``first`` is the
    first call, compilation / start-up included, kept apart from the rates."""
    rates = [items / t for t in times]
    return {
        "batch": items,
        "windows_per_s": statistics.median(rates),
        "windows_per_s_min": min(rates),
        "windows_per_s_max": max(rates),
        "seconds_per_call_median": statistics.median(times),
        "first_call_s_incl_compile": first,
        "repeats": len(times),
    }


def package_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def machine_info(*packages: str, **extra) -> dict:
    """CPU, Python and the versions of ``packages``, plus ``extra`` fields."""
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        **{p: package_version(p) for p in packages},
        **extra,
    }


def write_report(report: dict, path: Path) -> Path:
    """Stamp ``report`` with the date and write it as JSON to ``path``."""
    report.setdefault("date", time.strftime("%Y-%m-%d %H:%M:%S"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
