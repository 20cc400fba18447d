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

**A workdir on an object store** (``gs://bucket/run``): objects cannot be appended to, so the
logger writes both files to a local staging directory exactly as above and uploads them, each
as one whole object (``metrics.jsonl``, ``tensorboard/events.out.tfevents.*``), after a write
when the last upload is at least ``upload_every`` seconds old (default 30 s; the first write
uploads at once), on :meth:`MetricsLogger.flush` and on :meth:`MetricsLogger.close` (which
``pretrain`` calls on every exit: the end, an exception, a SIGTERM preemption). A resumed run
first downloads the existing ``metrics.jsonl`` and continues it; TensorBoard writes a new event
file per run, as it does locally. What a crash can lose: a process killed without running its
``finally`` blocks (``kill -9``, a lost machine) loses the records written since the last upload,
at most ``upload_every`` seconds of them; the bucket always holds a complete earlier version of
each file, never a truncated one. A failed upload is a warning, not an error (training goes on;
the next upload sends everything); if the last one at close fails, the staging directory is kept
and the warning names it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from data_pipelines import paths

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
UPLOAD_EVERY_S = 30.0  # a URL workdir: the least time between two uploads of the metrics files

log = logging.getLogger(__name__)
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
    every method does nothing. ``tensorboard=False`` writes the JSONL only. ``workdir`` is a local
    path or a ``gs://`` URL; for a URL the files are staged locally and uploaded whole at most
    every ``upload_every`` seconds and on :meth:`flush` / :meth:`close` (module docstring: what a
    crash can lose).
    """

    def __init__(
        self, workdir: str | Path, *, enabled: bool | None = None, tensorboard: bool = True,
        upload_every: float = UPLOAD_EVERY_S,
    ):
        if enabled is None:
            enabled = jax.process_index() == 0
        self.enabled = bool(enabled)
        self.remote = paths.is_url(workdir)
        self.workdir = paths.as_path(workdir) if self.remote else Path(workdir)
        self.path = self.workdir / METRICS_FILE
        self.upload_every = float(upload_every)
        self._file = None
        self._tb = None
        self._stage: Path | None = None  # a URL workdir: the local directory the files are written to
        self._uploaded: dict[Path, tuple[int, int]] = {}  # staged file -> (size, mtime_ns) at its last upload
        self._last_upload = -math.inf
        if not self.enabled:
            return
        if self.remote:
            self._stage = Path(tempfile.mkdtemp(prefix="biocodec-metrics-"))
            local = self._stage
            if self.path.exists():  # a resumed run continues the run's file
                with self.path.open("rb") as src, open(local / METRICS_FILE, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                self._uploaded[local / METRICS_FILE] = self._signature(local / METRICS_FILE)
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            local = self.workdir
        self._file = open(local / METRICS_FILE, "a", encoding="utf-8")
        if tensorboard:
            self._tb = _summary_writer(local / TENSORBOARD_DIR)

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
        if self.remote and time.monotonic() - self._last_upload >= self.upload_every:
            self._upload()

    def flush(self) -> None:
        """Make everything written so far visible in the workdir (a URL workdir: upload now)."""
        if not self.enabled or self._file is None:
            return
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()
        if self.remote:
            self._upload()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._stage is not None:
            if self._upload():
                shutil.rmtree(self._stage, ignore_errors=True)
            else:
                warnings.warn(f"the last metrics were not uploaded to {self.workdir}; they are in {self._stage}",
                              stacklevel=2)
            self._stage = None

    # --- a URL workdir -----------------------------------------------------------------------

    @staticmethod
    def _signature(path: Path) -> tuple[int, int]:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns

    def _upload(self) -> bool:
        """Upload each staged file that changed since its last upload, whole; False (warned) on a failure."""
        self._last_upload = time.monotonic()
        assert self._stage is not None
        try:
            for local in sorted(p for p in self._stage.rglob("*") if p.is_file()):
                signature = self._signature(local)
                if self._uploaded.get(local) == signature:
                    continue
                remote = self.workdir.joinpath(*local.relative_to(self._stage).parts)
                with open(local, "rb") as src, remote.open("wb") as dst:
                    shutil.copyfileobj(src, dst, length=16 << 20)
                self._uploaded[local] = signature
        except Exception as e:  # noqa: BLE001 -- a lost upload must not stop training; the next one retries
            log.warning("could not upload the metrics to %s (%s: %s); retrying at the next write",
                        self.workdir, type(e).__name__, e)
            return False
        return True

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(workdir: str | Path, split: str | None = None) -> list[dict]:
    """The records of ``<workdir>/metrics.jsonl`` in file order (only ``split``'s if given); ``workdir``
    is a local path or a ``gs://`` URL.

    A missing file gives ``[]``; a truncated last line (a crash mid-write) is skipped.
    """
    path = (paths.as_path(workdir) if paths.is_url(workdir) else Path(workdir)) / METRICS_FILE
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


__all__ = ["MetricsLogger", "read_metrics", "METRICS_FILE", "TENSORBOARD_DIR", "UPLOAD_EVERY_S"]
