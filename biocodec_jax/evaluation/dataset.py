"""A labelled downstream dataset, preprocessed and windowed at the codec's rate.

Every task program (``experiments/tasks/<task>.py``) reads its dataset the way the publisher
distributes it and returns one :class:`LabelledWindows`; everything after that (codes, splits,
classifiers, metrics) is shared and lives in :mod:`biocodec_jax.evaluation`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


UNITS = ("subjects", "sessions", "session_repetitions", "subject_repetitions")


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
        if n and not np.all(np.isfinite(self.x)):
            bad = sorted(set(self.recordings[~np.all(np.isfinite(self.x), axis=(1, 2))]))
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
        """Hash of the windows, labels, grouping and preprocessing: the key of cached codes."""
        h = hashlib.sha256()
        h.update(json.dumps([self.name, self.class_names, self.channel_names, self.sample_rate,
                             self.preprocessing], sort_keys=True, default=str).encode())
        for a in (self.x, self.y, self.subjects, self.recordings):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> str:
        counts = ", ".join(f"{c} {int((self.y == i).sum())}" for i, c in enumerate(self.class_names))
        return (f"{self.name}: {len(self.y)} windows x {self.x.shape[1]} channels x {self.x.shape[2]} samples "
                f"at {self.sample_rate:g} Hz from {len(set(self.subjects))} subjects; {counts}")
