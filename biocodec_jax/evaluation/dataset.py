"""A labelled downstream dataset, preprocessed and windowed at the codec's rate.

Every task program (``experiments/tasks/<task>.py``) reads its dataset the way the publisher
distributes it and returns one :class:`LabelledWindows`; everything after that (codes, splits,
classifiers, metrics) is shared and lives in :mod:`biocodec_jax.evaluation`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


UNITS = ("subjects", "sessions", "session_repetitions", "subject_repetitions")
CHUNK_BYTES = 64 << 20  # what one pass over a disk-backed array holds in memory at a time


class DatasetError(ValueError):
    """A downstream dataset that cannot be evaluated as asked (names the dataset and the problem)."""


def check_labels(labels: np.ndarray, n: int, n_classes: int, what: str) -> np.ndarray:
    """``labels`` as int64 ``[n]``, each in ``0 .. n_classes - 1``; :class:`DatasetError` naming
    ``what`` (e.g. "training labels") otherwise. Every classifier checks its labels with this."""
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise DatasetError(f"{what}: {labels.shape} labels for {n} windows")
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"{what}: labels must be in 0..{n_classes - 1}; got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


# --- disk-backed arrays: read in chunks, written by appending ------------------------------------


def _backing_file(a: np.ndarray) -> tuple[str, int] | None:
    """``(file, byte offset)`` of ``a`` when it is a C-contiguous :class:`numpy.memmap` covering the
    rest of its file from its offset (what ``np.load(..., mmap_mode="r")`` returns, or a reshape of
    it); None for anything else (a slice of a memmap, an in-memory array, a file gone)."""
    if not isinstance(a, np.memmap) or not a.filename or not a.flags.c_contiguous:
        return None
    try:
        size = os.path.getsize(a.filename)
    except OSError:
        return None
    return (a.filename, int(a.offset)) if int(a.offset) + a.nbytes == size else None


def chunk_rows(a: np.ndarray, chunk_bytes: int = CHUNK_BYTES) -> int:
    """How many rows (first-axis entries) of ``a`` make about ``chunk_bytes`` (at least 1)."""
    row = a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64))
    return max(1, int(chunk_bytes // max(row, 1)))


def read_rows(a: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``a[start:stop]`` as an in-memory array (a copy).

    A whole-file memmap (:func:`_backing_file`) is read from its file, not through the mapping:
    pages touched through a mapping stay in the process's resident set (they count to its peak
    RSS) until the mapping goes, so a pass over a corpus-sized memmap would grow RSS to the file's
    size; a read into a fresh buffer does not.
    """
    start, stop = max(0, int(start)), min(len(a), int(stop))
    backing = _backing_file(a)
    if backing is None or stop <= start:
        return np.array(a[start:stop])
    out = np.empty((stop - start,) + a.shape[1:], a.dtype)
    row = out.nbytes // len(out)
    buffer = out.reshape(-1).view(np.uint8)
    with open(backing[0], "rb") as f:
        f.seek(backing[1] + start * row)
        got = f.readinto(buffer)
    if got != out.nbytes:
        raise OSError(f"{backing[0]}: expected {out.nbytes} bytes at row {start}, read {got} (file truncated?)")
    return out


def iter_rows(a: np.ndarray, index: np.ndarray | None = None,
              chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(where, rows)`` over the rows of ``a`` (all of them, or those at ``index``), about
    ``chunk_bytes`` of ``a`` at a time, in file order: ``rows`` are ``a[index[where]]`` (``where``
    are positions in ``index``; without it, row numbers). Bounded memory whatever ``len(a)``."""
    step = chunk_rows(a, chunk_bytes)
    if index is None:
        for start in range(0, len(a), step):
            stop = min(start + step, len(a))
            yield np.arange(start, stop), read_rows(a, start, stop)
        return
    index = np.asarray(index, dtype=np.int64)
    if index.size and (index.min() < 0 or index.max() >= len(a)):
        raise IndexError(f"row index out of range 0..{len(a) - 1}")
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    i = 0
    while i < len(ordered):
        lo = ordered[i]
        j = int(np.searchsorted(ordered, lo + step, side="left"))  # every wanted row in [lo, lo + step)
        span = read_rows(a, lo, ordered[j - 1] + 1)
        yield order[i:j], span[ordered[i:j] - lo]
        i = j


def take_rows(a: np.ndarray, index: np.ndarray, chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """``a[index]`` in memory, read chunk by chunk (:func:`iter_rows`): the result's size, no more."""
    index = np.asarray(index, dtype=np.int64)
    if _backing_file(a) is None:
        return np.asarray(a[index])
    out = np.empty((len(index),) + a.shape[1:], a.dtype)
    for where, rows in iter_rows(a, index, chunk_bytes):
        out[where] = rows
    return out


class NpyAppender:
    """A ``.npy`` file written row block by row block, never held in memory: ``append`` writes each
    block after a header reserved at the start; :meth:`close` writes the header with the final
    shape. Until then the file is not a valid ``.npy`` (a killed run leaves no array that loads).

    ``row_shape`` and ``dtype`` fix every row; :meth:`close` may give the array a different leading
    shape of the same size (items appended one per channel, stored as ``[windows, channels, ...]``).
    """

    HEADER_BYTES = 128  # a version-1.0 header for any array of up to ~40 digits of shape

    def __init__(self, path: str | Path, row_shape: Sequence[int], dtype):
        self.path = Path(path)
        self.row_shape, self.dtype, self.rows = tuple(int(d) for d in row_shape), np.dtype(dtype), 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")
        self._file.write(b"\0" * self.HEADER_BYTES)

    def append(self, block: np.ndarray) -> None:
        """Write ``block`` ``[n, *row_shape]`` (converted to the appender's dtype)."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path}: rows of shape {block.shape[1:]} appended to rows of {self.row_shape}")
        self._file.write(block.reshape(-1).view(np.uint8).data)
        self.rows += len(block)

    def close(self, shape: Sequence[int] | None = None) -> Path:
        """Write the header (``shape``: default ``[rows, *row_shape]``) and close; returns the path."""
        shape = (self.rows,) + self.row_shape if shape is None else tuple(int(d) for d in shape)
        if int(np.prod(shape, dtype=np.int64)) != self.rows * int(np.prod(self.row_shape, dtype=np.int64)):
            raise ValueError(f"{self.path}: {self.rows} rows of {self.row_shape} cannot be shaped {shape}")
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape})
        header = header.getvalue()
        if len(header) == self.HEADER_BYTES:
            self._file.seek(0)
            self._file.write(header)
            self._file.close()
            return self.path
        self._file.close()  # a header of another length (a very long shape): copy the data behind it
        moved = self.path.with_name(self.path.name + ".data")
        os.replace(self.path, moved)
        with open(moved, "rb") as src, open(self.path, "wb") as dst:
            dst.write(header)
            src.seek(self.HEADER_BYTES)
            shutil.copyfileobj(src, dst, CHUNK_BYTES)
        moved.unlink()
        return self.path

    def abort(self) -> None:
        """Close and delete the file (nothing half-written left behind)."""
        self._file.close()
        self.path.unlink(missing_ok=True)


def _all_finite(x: np.ndarray) -> np.ndarray:
    """Per window of ``x`` ``[N, ...]``: all its values finite (chunk by chunk, bounded memory)."""
    ok = np.ones(len(x), bool)
    for where, rows in iter_rows(x):
        ok[where] = np.isfinite(rows).reshape(len(rows), -1).all(axis=1)
    return ok


@dataclass(frozen=True)
class LabelledWindows:
    """Windows ``x [N, C, T]`` (float32, preprocessed) with labels and where each came from.

    ``subjects`` decides the splits (no subject is ever in two of train/validation/test);
    ``recordings`` names the recording (file) of each window, and ``segments`` (optional) the
    scoring unit inside it: windows sharing ``(recording, segment)`` are scored together (mean
    of their class probabilities), as TUAB scores 10-s segments made of two 5-s windows. Without
    ``segments`` every window is scored on its own. ``partitions`` (optional) is the publisher's
    own split of each window (e.g. ``"train"`` / ``"eval"`` for TUAB), for protocols that test on it.
    ``sessions`` (optional) names each window's recording session (e.g. Myo ``"12345-2"``: participant
    12345, session 2) and ``repetitions`` (optional) the repetition of its gesture or trial inside the
    session (1, 2, ...): within-participant protocols split by them (:meth:`unit_ids`).

    ``x`` may be a read-only :class:`numpy.memmap` (a corpus written to disk by :class:`WindowStore`);
    the checks here and :meth:`fingerprint` then read it chunk by chunk, never all at once.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    subjects: np.ndarray
    recordings: np.ndarray
    class_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    sample_rate: float
    preprocessing: dict[str, Any] = field(default_factory=dict)
    segments: np.ndarray | None = None
    partitions: np.ndarray | None = None
    sessions: np.ndarray | None = None
    repetitions: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.x)
        if self.x.ndim != 3:
            raise DatasetError(f"{self.name}: x must be [windows, channels, samples]; got shape {self.x.shape}")
        for what in ("y", "subjects", "recordings", "segments", "partitions", "sessions", "repetitions"):
            if getattr(self, what) is None:
                continue
            if len(getattr(self, what)) != n:
                raise DatasetError(f"{self.name}: {what} has {len(getattr(self, what))} entries for {n} windows")
        if self.x.shape[1] != len(self.channel_names):
            raise DatasetError(f"{self.name}: {self.x.shape[1]} channels in x but {len(self.channel_names)} names")
        if n and (self.y.min() < 0 or self.y.max() >= len(self.class_names)):
            raise DatasetError(f"{self.name}: labels must be in 0..{len(self.class_names) - 1}; got {self.y.min()}..{self.y.max()}")
        finite = _all_finite(self.x) if n else None
        if n and not finite.all():
            bad = sorted(set(self.recordings[~finite]))
            raise DatasetError(f"{self.name}: non-finite values in windows of {', '.join(map(str, bad[:5]))}")

    @classmethod
    def build(
        cls,
        name: str,
        x: Sequence[np.ndarray] | np.ndarray,
        y: Sequence[int] | np.ndarray,
        subjects: Sequence[str] | np.ndarray,
        recordings: Sequence[str] | np.ndarray,
        class_names: Sequence[str],
        channel_names: Sequence[str],
        sample_rate: float,
        preprocessing: dict[str, Any] | None = None,
        segments: Sequence[int] | np.ndarray | None = None,
        partitions: Sequence[str] | np.ndarray | None = None,
        sessions: Sequence[str] | np.ndarray | None = None,
        repetitions: Sequence[int] | np.ndarray | None = None,
    ) -> "LabelledWindows":
        """Stack per-window lists into arrays (float32 x, int64 y, str subjects/recordings)."""
        if len(x) == 0:
            raise DatasetError(f"{name}: no labelled windows were found")
        return cls(
            name=name,
            x=np.ascontiguousarray(np.stack(list(x)) if not isinstance(x, np.ndarray) else x, dtype=np.float32),
            y=np.asarray(y, dtype=np.int64),
            subjects=np.asarray(subjects).astype(str),
            recordings=np.asarray(recordings).astype(str),
            class_names=tuple(class_names),
            channel_names=tuple(channel_names),
            sample_rate=float(sample_rate),
            preprocessing=dict(preprocessing or {}),
            segments=None if segments is None else np.asarray(segments, dtype=np.int64),
            partitions=None if partitions is None else np.asarray(partitions).astype(str),
            sessions=None if sessions is None else np.asarray(sessions).astype(str),
            repetitions=None if repetitions is None else np.asarray(repetitions, dtype=np.int64),
        )

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def binary(self) -> bool:
        return self.n_classes == 2

    def subset(self, index: np.ndarray) -> "LabelledWindows":
        """The windows at ``index`` (integer or boolean array), everything else unchanged."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return dataclasses.replace(
            self, x=self.x[index], y=self.y[index], subjects=self.subjects[index],
            recordings=self.recordings[index], segments=pick(self.segments), partitions=pick(self.partitions),
            sessions=pick(self.sessions), repetitions=pick(self.repetitions),
        )

    def unit_ids(self, unit: str = "subjects") -> np.ndarray:
        """The id of each window's split unit: what a :class:`~biocodec_jax.evaluation.splits.Split`
        with this ``unit`` names.

        ``"subjects"`` (cross-subject protocols), ``"sessions"`` (``"12345-2"``),
        ``"session_repetitions"`` (``"12345-2/rep3"``: a repetition inside one session) or
        ``"subject_repetitions"`` (``"DB2_S1/rep3"``: a repetition of a subject, every session).
        """
        if unit == "subjects":
            return self.subjects
        if unit not in UNITS:
            raise DatasetError(f"{self.name}: unknown split unit {unit!r}; choose one of {', '.join(UNITS)}")
        needs = {"sessions": ("sessions",), "session_repetitions": ("sessions", "repetitions"),
                 "subject_repetitions": ("repetitions",)}[unit]
        absent = [a for a in needs if getattr(self, a) is None]
        if absent:
            raise DatasetError(f"{self.name}: the windows carry no {' or '.join(absent)}; a split by {unit} needs them")
        if unit == "sessions":
            return self.sessions
        owner = self.sessions if unit == "session_repetitions" else self.subjects
        return np.char.add(np.char.add(owner.astype(str), "/rep"), self.repetitions.astype(str))

    def score_groups(self) -> np.ndarray:
        """Integer id of each window's scoring unit (its recording and segment, or itself)."""
        if self.segments is None:
            return np.arange(len(self.y))
        keys = np.char.add(np.char.add(self.recordings.astype(str), "#"), self.segments.astype(str))
        return np.unique(keys, return_inverse=True)[1]

    def fingerprint(self) -> str:
        """Hash of the windows, labels, grouping and preprocessing: the key of cached codes.

        ``x`` is hashed chunk by chunk (its bytes in order, so an in-memory ``x`` and the same
        windows in a :class:`WindowStore` give the same fingerprint)."""
        h = hashlib.sha256()
        h.update(json.dumps([self.name, self.class_names, self.channel_names, self.sample_rate,
                             self.preprocessing], sort_keys=True, default=str).encode())
        for _, rows in iter_rows(self.x):
            h.update(np.ascontiguousarray(rows, dtype=self.x.dtype).data)
        for a in (self.y, self.subjects, self.recordings):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> str:
        counts = ", ".join(f"{c} {int((self.y == i).sum())}" for i, c in enumerate(self.class_names))
        return (f"{self.name}: {len(self.y)} windows x {self.x.shape[1]} channels x {self.x.shape[2]} samples "
                f"at {self.sample_rate:g} Hz from {len(set(self.subjects))} subjects; {counts}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WindowStore:
    """A corpus's windows written to disk as a loader reads them, recording by recording, so that
    memory holds one recording at a time whatever the corpus's size.

    >>> store = WindowStore(workdir, channels=21, samples=1250)
    >>> store.append(windows, y=label, subjects=subject, recordings=name, segments=segment)  # per recording
    >>> data = store.finish("tuab", class_names, channel_names, 250.0, preprocessing)

    ``windows`` ``[n, C, T]`` go to ``<directory>/windows-<pid>-<id>.npy`` (float32, appended by
    :class:`NpyAppender`); the per-window facts (labels, subjects, recordings, ...) stay in memory
    (a few bytes each). ``append`` takes each fact as one value for all ``n`` windows or as ``n``
    values. :meth:`finish` gives a :class:`LabelledWindows` whose ``x`` is a read-only
    :class:`numpy.memmap` of that file; its windows, labels and fingerprint equal those of
    :meth:`LabelledWindows.build` on the same windows in memory. Each store writes its own file (a run
    reading the windows is never disturbed by another writing); files left by processes no longer
    running are deleted when a store opens in the same directory. Raises :class:`DatasetError` naming
    the recording when a window holds NaN/Inf, or when the windows' shape differs from the store's.
    """

    FACTS = ("y", "subjects", "recordings", "segments", "partitions", "sessions", "repetitions")

    def __init__(self, directory: str | Path, channels: int, samples: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for old in self.directory.glob("windows-*.npy*"):
            pid = old.name.split("-")[1]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                old.unlink(missing_ok=True)
        self.path = self.directory / f"windows-{os.getpid()}-{uuid.uuid4().hex[:8]}.npy"
        self._writer = NpyAppender(self.path.with_name(self.path.name + ".part"), (channels, samples), np.float32)
        self._facts: dict[str, list[np.ndarray]] = {k: [] for k in self.FACTS}

    def __len__(self) -> int:
        return self._writer.rows

    def append(self, windows: np.ndarray, *, y, subjects, recordings, segments=None, partitions=None,
               sessions=None, repetitions=None) -> None:
        """Write the windows ``[n, C, T]`` of one recording (or any group) with their facts."""
        windows = np.asarray(windows, dtype=np.float32)
        n = len(windows)
        given = {"y": y, "subjects": subjects, "recordings": recordings, "segments": segments,
                 "partitions": partitions, "sessions": sessions, "repetitions": repetitions}
        where = recordings if np.ndim(recordings) == 0 else ", ".join(sorted(set(map(str, recordings)))[:3])
        if windows.ndim != 3 or windows.shape[1:] != self._writer.row_shape:
            raise DatasetError(f"{self.directory}: windows of {where} are {windows.shape[1:]}; the store holds "
                               f"{self._writer.row_shape} (channels, samples)")
        if not np.isfinite(windows).all():
            raise DatasetError(f"{self.directory}: non-finite values in windows of {where}")
        for key, value in given.items():
            if value is None:
                if self._facts[key] and len(self):
                    raise DatasetError(f"{self.directory}: {key} given for earlier windows but not for {where}")
                continue
            if len(self) and not self._facts[key]:
                raise DatasetError(f"{self.directory}: {key} given for {where} but not for earlier windows")
            value = np.asarray(value)
            value = np.repeat(value[None], n) if value.ndim == 0 else value
            if len(value) != n:
                raise DatasetError(f"{self.directory}: {len(value)} {key} for {n} windows of {where}")
            self._facts[key].append(value)
        self._writer.append(windows)

    def finish(self, name: str, class_names: Sequence[str], channel_names: Sequence[str], sample_rate: float,
               preprocessing: dict[str, Any] | None = None) -> LabelledWindows:
        """Close the file and return the windows as a :class:`LabelledWindows` (``x`` memmapped)."""
        if not len(self):
            self._writer.abort()
            raise DatasetError(f"{name}: no labelled windows were found")
        os.replace(self._writer.close(), self.path)
        facts = {k: (np.concatenate(v) if v else None) for k, v in self._facts.items()}
        as_str = lambda a: None if a is None else a.astype(str)  # noqa: E731
        as_int = lambda a: None if a is None else a.astype(np.int64)  # noqa: E731
        return LabelledWindows(
            name=name, x=np.load(self.path, mmap_mode="r"), y=facts["y"].astype(np.int64),
            subjects=as_str(facts["subjects"]), recordings=as_str(facts["recordings"]),
            class_names=tuple(class_names), channel_names=tuple(channel_names), sample_rate=float(sample_rate),
            preprocessing=dict(preprocessing or {}), segments=as_int(facts["segments"]),
            partitions=as_str(facts["partitions"]), sessions=as_str(facts["sessions"]),
            repetitions=as_int(facts["repetitions"]),
        )

    def abort(self) -> None:
        """Delete what was written (a loader that fails before :meth:`finish`)."""
        self._writer.abort()
