"""Training metrics to ``<workdir>/metrics.jsonl`` and TensorBoard, written by process 0 only.

In a multi-process job every process runs the same step and gets the same, already all-reduced
metrics (they are replicated over the mesh), so one writer is enough; more than one would write
every line N times into the same file on a shared filesystem, or race on it. The logger is
therefore enabled on ``jax.process_index() == 0`` by default and is a no-op everywhere else (it
does not even create the directory).

Each :meth:`MetricsLogger.write` appends one JSON line ``{"step": ..., "split": ..., name: value,
...}`` and flushes it, so the file is readable while training runs and survives a crash;
:func:`read_metrics` reads it back. The same values go to TensorBoard as scalars
``<split>/<name>`` (``tensorboard --logdir <workdir>/tensorboard``) when ``tensorboardX`` is
installed; without it a warning is given once and only the JSONL is written. After a resume from
a checkpoint older than the last logged step, those steps appear twice; the later lines are the
resumed run's.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"

_warned_no_tensorboardx = False


def _summary_writer(logdir: Path):
    """A tensorboardX ``SummaryWriter`` on ``logdir``, or ``None`` (warned once) without tensorboardX."""
    global _warned_no_tensorboardx
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        if not _warned_no_tensorboardx:
            warnings.warn(
                "tensorboardX is not installed: metrics go to metrics.jsonl only (pip install tensorboardX)",
                stacklevel=3,
            )
            _warned_no_tensorboardx = True
        return None
    return SummaryWriter(str(logdir))


def _scalar(name: str, value: Any) -> float:
    """A Python float from a Python, numpy or JAX scalar (or a one-element array)."""
    array = np.asarray(value)
    if array.size != 1:
        raise ValueError(f"metric {name!r} is not a scalar (shape {array.shape})")
    return float(array.reshape(()))


class MetricsLogger:
    """Appends metrics to ``<workdir>/metrics.jsonl`` and TensorBoard (``<workdir>/tensorboard``).

    ``enabled`` defaults to ``jax.process_index() == 0``; a disabled logger creates nothing and
    every method does nothing. ``tensorboard=False`` writes the JSONL only. ``workdir`` is a
    filesystem path (a ``gs://`` URL is refused: the JSONL is appended to, which object stores
    cannot do; mount the bucket instead).
    """

    def __init__(self, workdir: str | Path, *, enabled: bool | None = None, tensorboard: bool = True):
        if "://" in str(workdir):  # checked on every process, so all fail alike
            raise ValueError(
                f"metrics are written with local file I/O (appending); {workdir} is a URL: "
                "give a local path or a mounted bucket (gcsfuse)"
            )
        if enabled is None:
            enabled = jax.process_index() == 0
        self.enabled = bool(enabled)
        self.workdir = Path(workdir)
        self.path = self.workdir / METRICS_FILE
        self._file = None
        self._tb = None
        if not self.enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            self._tb = _summary_writer(self.workdir / TENSORBOARD_DIR)

    def write(self, step: int, metrics: Mapping[str, Any], split: str = "train") -> None:
        """Log ``metrics`` (scalars: Python, numpy or JAX) for ``step`` under ``split``."""
        if not self.enabled:
            return
        if self._file is None:
            raise RuntimeError("the metrics logger is closed")
        reserved = {"step", "split"} & set(metrics)
        if reserved:
            raise ValueError(f"metric names {sorted(reserved)} are reserved")
        step = int(step)
        values = {str(name): _scalar(name, value) for name, value in metrics.items()}
        record = {"step": step, "split": split, **values}
        # NaN / inf are written as the (non-standard) tokens NaN / Infinity, which json reads back.
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(f"{split}/{name}", value, step)
            self._tb.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(workdir: str | Path, split: str | None = None) -> list[dict]:
    """The records of ``<workdir>/metrics.jsonl`` in file order (only ``split``'s if given).

    A missing file gives ``[]``; a truncated last line (a crash mid-write) is skipped.
    """
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON line") from None
        if split is None or record.get("split") == split:
            records.append(record)
    return records


__all__ = ["MetricsLogger", "read_metrics", "METRICS_FILE", "TENSORBOARD_DIR"]
