"""Subject-wise splits, folds and the low-resource label subsets.

A split names *units*, never windows: subjects (cross-subject protocols, the default), or, for
within-participant protocols, sessions or repetitions inside a session
(:meth:`LabelledWindows.unit_ids <biocodec_jax.evaluation.dataset.LabelledWindows.unit_ids>`).
:func:`split_indices` turns it into window indices and refuses a split in which a unit would sit in
two of train / validation / test (leakage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows


class LeakageError(DatasetError):
    """A unit (subject, session, repetition) appears in two of train / validation / test."""


@dataclass(frozen=True)
class Split:
    """Units for training, model selection (validation) and testing.

    ``unit`` says what the names are (:data:`~biocodec_jax.evaluation.dataset.UNITS`): ``"subjects"``
    (default), ``"sessions"`` (``"12345-2"``), ``"session_repetitions"`` (``"12345-2/rep3"``) or
    ``"subject_repetitions"`` (``"DB2_S1/rep3"``).
    """

    name: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    unit: str = "subjects"

    def __post_init__(self):
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = set(getattr(self, a)) & set(getattr(self, b))
            if shared:
                raise LeakageError(f"split {self.name}: {self.unit} {', '.join(sorted(shared)[:5])} in both {a} and {b}")
        for part in ("train", "val", "test"):
            if not getattr(self, part):
                raise DatasetError(f"split {self.name}: no {part} {self.unit}")


def fixed_split(train: Sequence[str], val: Sequence[str], test: Sequence[str], name: str = "fixed") -> Split:
    """A published split (e.g. BCI IV 2a: subjects 1-5 / 6-7 / 8-9)."""
    return Split(name, tuple(sorted(map(str, train))), tuple(sorted(map(str, val))), tuple(sorted(map(str, test))))


def subject_folds(subjects: Sequence[str], n_folds: int, seed: int = 0, name: str = "fold",
                  where: str = "") -> list[Split]:
    """``n_folds`` subject folds: fold ``i`` tests on group ``i``, validates on group ``i+1``, trains on the rest.

    Subjects are shuffled with ``seed`` then dealt round-robin into groups, so group sizes differ by
    at most one; fewer folds than ``n_folds`` when there are fewer subjects. Needs at least 3
    distinct subjects (one each for train, validation and test); ``where`` (a dataset name)
    prefixes the error.
    """
    unique = np.array(sorted(set(map(str, subjects))))
    if len(unique) < 3:
        raise DatasetError(f"{where + ': ' if where else ''}subject-wise folds need at least 3 subjects "
                           f"(train, validation, test); got {len(unique)}: {', '.join(unique)}")
    n_folds = min(int(n_folds), len(unique))
    if n_folds < 3:
        raise DatasetError(f"need at least 3 folds (train, validation, test); got {n_folds}")
    order = np.random.default_rng(seed).permutation(unique).tolist()  # plain str, not np.str_
    groups = [tuple(sorted(order[i::n_folds])) for i in range(n_folds)]
    splits = []
    for i in range(n_folds):
        test, val = groups[i], groups[(i + 1) % n_folds]
        train = tuple(sorted(s for j, g in enumerate(groups) if j not in (i, (i + 1) % n_folds) for s in g))
        splits.append(Split(f"{name}{i}", train, val, test))
    return splits


def holdout_folds(train_subjects: Sequence[str], test_subjects: Sequence[str], n_folds: int, seed: int = 0) -> list[Split]:
    """A fixed test set (e.g. a dataset's official evaluation set) with the training subjects cut into
    ``n_folds`` groups, each in turn the validation set (TUAB, TUEV, Kaggle ERN protocols)."""
    train_unique = np.array(sorted(set(map(str, train_subjects))))
    test_unique = tuple(sorted(set(map(str, test_subjects))))
    if len(train_unique) < 2:
        raise DatasetError(f"need at least 2 training subjects (train and validation); got {len(train_unique)}")
    n_folds = max(2, min(int(n_folds), len(train_unique)))
    order = np.random.default_rng(seed).permutation(train_unique).tolist()  # plain str, not np.str_
    groups = [tuple(sorted(order[i::n_folds])) for i in range(n_folds)]
    return [
        Split(f"fold{i}", tuple(sorted(s for j, g in enumerate(groups) if j != i for s in g)), groups[i], test_unique)
        for i in range(n_folds)
    ]


def partition_holdout_folds(data: LabelledWindows, n_folds: int, seed: int = 0,
                            train_partition: str = "train", test_partition: str = "eval") -> list[Split]:
    """:func:`holdout_folds` over a dataset's published partitions (TUAB/TUEV ``edf/train`` and ``edf/eval``):
    the test partition's subjects test every split; the train partition's subjects are cut into folds."""
    if data.partitions is None:
        raise DatasetError(f"{data.name}: the windows carry no {train_partition}/{test_partition} partition; "
                           f"the protocol tests on the official {test_partition} set")
    train = sorted(set(data.subjects[data.partitions == train_partition].tolist()))
    test = sorted(set(data.subjects[data.partitions == test_partition].tolist()))
    if not test:
        raise DatasetError(f"{data.name}: no recordings in the {test_partition} partition; the protocol tests on it")
    if len(train) < 2:
        raise DatasetError(f"{data.name}: need at least 2 subjects in the {train_partition} partition "
                           f"(train and validation); got {len(train)}")
    shared = sorted(set(train) & set(test))
    if shared:
        raise DatasetError(f"{data.name}: subject(s) {', '.join(shared[:5])} have recordings in both {train_partition} "
                           f"and {test_partition}; the official partitions should not share subjects")
    return holdout_folds(train, test, n_folds, seed)


def split_indices(data: LabelledWindows, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window indices of train, validation and test; every window of a split's units, no other.

    Raises :class:`LeakageError` if the index sets would share a unit (a subject, for a
    cross-subject split), and :class:`DatasetError` if a part has no windows or its units are not
    in the data.
    """
    ids = data.unit_ids(split.unit)
    parts = []
    known = set(ids.tolist())
    for part in ("train", "val", "test"):
        units = getattr(split, part)
        missing = [s for s in units if s not in known]
        if len(missing) == len(units):
            raise DatasetError(f"{data.name}, split {split.name}: none of the {part} {split.unit} are in the data ({', '.join(missing[:5])})")
        parts.append(np.flatnonzero(np.isin(ids, units)))
    check_disjoint(data, *parts, where=f"{data.name}, split {split.name}", unit=split.unit)
    return tuple(parts)


def check_disjoint(data: LabelledWindows, train: np.ndarray, val: np.ndarray, test: np.ndarray, where: str = "",
                   unit: str = "subjects") -> None:
    """Raise :class:`LeakageError` if any unit (default: subject) has windows in two of the three index sets."""
    names = ("train", "val", "test")
    ids = data.unit_ids(unit)
    sets = [set(ids[i].tolist()) for i in (train, val, test)]
    for a in range(3):
        for b in range(a + 1, 3):
            shared = sets[a] & sets[b]
            if shared:
                what = "subject(s)" if unit == "subjects" else unit
                raise LeakageError(f"{where or data.name}: {what} {', '.join(sorted(shared)[:5])} in both {names[a]} and {names[b]}")


def label_fraction(y: np.ndarray, index: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A class-stratified ``fraction`` of the labelled training windows ``index`` (low-resource protocol).

    Keeps at least one window of every class present, so 1 % of a small dataset still trains on every
    class. ``fraction=1`` returns ``index`` unchanged.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    if fraction == 1:
        return np.asarray(index)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y[index]):
        members = index[y[index] == c]
        k = max(1, int(round(fraction * len(members))))
        keep.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(keep))
