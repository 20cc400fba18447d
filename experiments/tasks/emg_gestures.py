"""EMG gesture recognition: the Myo armband readings, or Ninapro DB2 / DB3 / DB5.

Both variants: the signal is resampled to the EMG codec's rate (``sample_rate``, 1 kHz), each
channel z-scored over its whole recording (file), and non-overlapping 1-s windows
(:data:`WINDOW_SECONDS`) are cut inside each labelled gesture block, centred in the block; a window
never spans two blocks. No filtering (the original's EMG protocol: per-channel z-score, EMG codec).
Rest is not a class by default (:data:`INCLUDE_REST`): in both datasets it fills about half of the
recording time, 7-10 times any one gesture, and "which gesture" is the question asked.
``load(..., include_rest=True)`` adds it as class 0.

``myo`` (default)
    Raw surface EMG of a Myo armband, github.com/aljazfrancic/myo-readings-dataset (MIT). Layout
    (``--data`` is the repository as published, a folder above it, one of its reading folders or a
    folder holding the session folders; they are found at any depth, see
    :mod:`data_pipelines.datasets.myo`)::

        <participant>-<session>/<gesture>.txt      e.g. 12345-1/0.txt ... 12345-1/7.txt
        _readings_right_hand/12345-1/0.txt ...     as published (and _readings_left_hand/...)

    The recording id is the path below ``--data``, so the hand folder stays in it.
    Comma-separated lines: 8 EMG channels (int8) then the label, about 200 Hz
    (:data:`data_pipelines.datasets.myo.SAMPLE_RATE`), about 60 s a file. Within a file the label
    alternates every 5 s between 0 (rest) and the file's gesture (``0.txt`` is all rest). Classes:
    the 7 gestures (:data:`MYO_GESTURES`). The labels follow the on-screen cue, not the movement,
    so windows keep at least :data:`MYO_EDGE_SECONDS` (0.4 s; about 0.5 s for a 5-s block) from
    each block edge, where the hand is still moving between postures: a 5-s block gives four 1-s
    windows. The subject is the participant. 200 Hz EMG carries nothing above 100 Hz: upsampling
    to 1 kHz adds no content; say so when reporting.

``ninapro``
    Ninapro (ninapro.hevs.ch) databases 2, 3 and 5, the ``.mat`` files as published::

        DB2_s1/S1_E1_A1.mat  DB2_s1/S1_E2_A1.mat ...   DB2 / DB3 (DB3 files may be named S1_A1_E1.mat)
        s1/S1_E1_A1.mat ...                            DB5

    Variables read (scipy.io.loadmat): ``emg`` ``[samples, channels]``, ``restimulus`` (the
    movement, relabelled by the publishers to the actual movement), ``rerepetition`` (its
    repetition) and ``frequency`` where present. The database is named by the nearest folder
    called ``DB<n>...`` (or the data folder itself), else told by the channel count (12: DB2,
    16: DB5); its rate and channels are :data:`NINAPRO` (DB2/DB3: 12 Delsys electrodes at
    2 kHz; DB5: two Myo armbands, 16 channels at 200 Hz; a ``frequency`` variable overrides the
    rate). Exercises used (:data:`NINAPRO`): DB2/DB3 exercises 1 and 2 (17 + 23 = 40 hand and
    wrist movements; exercise 3 is finger force patterns with a different label coding, skipped);
    DB5 exercises 1-3 (12 + 17 + 23 = 52 movements). Labels are made global over the exercises
    (exercise 2 of DB5 starts at 13, of DB2 at 18): DB5 stores exercise-local ids (1..n) and they
    are shifted by the movements of the earlier exercises; DB2/DB3 exercise 2 already stores global
    ids (18..40), recognised because none is at or below the offset. Classes: every movement of the
    exercises present (``M1`` ... ``M52``). A window lies inside one repetition (a block of constant
    ``restimulus``/``rerepetition``); the relabelled blocks already follow the movement, so no
    edge margin. The subject is the ``S<n>`` of the file name with its database (``DB2_S1``).

Splits: subject folds (:func:`~biocodec_jax.evaluation.splits.subject_folds`): 5, or one per
subject with fewer (3 Myo participants: test on one, validate on another, train on the third);
at least 3 subjects.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from data_pipelines.datasets.generic import walk_files
from data_pipelines.datasets.myo import CHANNEL_NAMES, MyoDataset, N_CHANNELS, SAMPLE_RATE
from data_pipelines.errors import ChannelError, RecordingError
from data_pipelines.preprocess import filter_and_resample
from data_pipelines.readers import raw_from_array
from experiments.tasks import common
from experiments.tasks.common import SkippedFiles, check_variant

NAME = "emg_gestures"
MODALITY = "emg"
VARIANTS = ("myo", "ninapro")

WINDOW_SECONDS = 1.0
INCLUDE_REST = False
N_FOLDS = 5

MYO_GESTURES = ("flexion", "extension", "radial deviation", "ulnar deviation", "pronation", "supination", "fist")
MYO_EDGE_SECONDS = 0.4


@dataclass(frozen=True)
class NinaproDatabase:
    """What the loader needs to know of one Ninapro database."""

    sample_rate: float  # Hz, when the file has no `frequency` variable
    n_channels: int
    movements: tuple[int, ...]  # movements of exercise 1, 2, 3 (exercise-local ids 1..n)
    exercises: tuple[int, ...]  # the exercises this protocol uses


NINAPRO = {
    "DB2": NinaproDatabase(2000.0, 12, (17, 23, 9), (1, 2)),
    "DB3": NinaproDatabase(2000.0, 12, (17, 23, 9), (1, 2)),
    "DB5": NinaproDatabase(200.0, 16, (12, 17, 23), (1, 2, 3)),
}
NINAPRO_BY_CHANNELS = {12: "DB2", 16: "DB5"}
NINAPRO_FILE = re.compile(r"^S(?P<subject>\d+)_(?:E(?P<e1>\d+)_A\d+|A\d+_E(?P<e2>\d+))\.mat$", re.IGNORECASE)
NINAPRO_FOLDER = re.compile(r"^DB(?P<number>\d+)(?:_|$)", re.IGNORECASE)

MYO_LAYOUT = ("the Myo readings layout: <participant>-<session>/<gesture>.txt at any depth under <data>, e.g. "
              "_readings_right_hand/12345-1/0.txt (8 EMG columns and a label per line)")
NINAPRO_LAYOUT = "Ninapro's layout: <data>/DB2_s1/S1_E1_A1.mat ... (DB2/DB3) or <data>/s1/S1_E1_A1.mat ... (DB5)"

log = logging.getLogger(__name__)



# ---------------------------------------------------------------------------------------- shared

def label_blocks(labels: np.ndarray, *keys: np.ndarray) -> list[tuple[int, int, int]]:
    """``(start, stop, label)`` of each run of constant ``labels`` (and constant ``keys``, e.g. the
    repetition), in samples, stop exclusive."""
    change = np.zeros(len(labels), dtype=bool)
    for a in (labels, *keys):
        change[1:] |= a[1:] != a[:-1]
    starts = np.flatnonzero(change)
    starts = np.concatenate([[0], starts]) if len(labels) else starts
    stops = np.concatenate([starts[1:], [len(labels)]])
    return [(int(a), int(b), int(labels[a])) for a, b in zip(starts, stops)]


def block_window_starts(start: float, stop: float, window: int, margin: float) -> list[int]:
    """Starts of the non-overlapping ``window``-sample windows that fit in ``[start + margin,
    stop - margin)`` (output-rate samples; the block's ends may be fractional), centred in the block."""
    first, last = int(np.ceil(start)), int(np.floor(stop))
    n = max(0, int(((last - first) - 2 * margin) // window))
    offset = first + ((last - first) - n * window) // 2
    return [offset + i * window for i in range(n)]


def zscore_channels(x: np.ndarray, channel_names, source) -> np.ndarray:
    """Each channel of ``x`` ``[C, T]`` z-scored over the recording; :class:`ChannelError` if flat."""
    sd = x.std(axis=1)
    flat = np.flatnonzero(sd == 0)
    if flat.size:
        raise ChannelError(source, channel_names[int(flat[0])], "flat signal (standard deviation 0); cannot z-score")
    return ((x - x.mean(axis=1, keepdims=True)) / sd[:, None]).astype(np.float32)


def resampled_windows(emg: np.ndarray, channel_names, source_rate: float, sample_rate: float, blocks, margin_s: float, source):
    """Resample ``emg`` ``[C, T]`` to ``sample_rate``, z-score it, and cut the windows of each
    ``(start, stop, label)`` block (source-rate samples). Returns ``(windows, labels)``."""
    # Not data_pipelines.preprocess.preprocess_recording (the codec's training-data path): this task
    # z-scores each file (mean / SD; its rule until issue 19) and keeps all 8 (Myo) or every (NinaPro)
    # channel in order, where that one normalises by median / IQR with clipping and drops unusable
    # channels. Resampling is the shared step, filter_and_resample.
    raw = filter_and_resample(raw_from_array(emg, list(channel_names), source_rate, "emg", source), sample_rate)
    x = zscore_channels(raw.get_data(), channel_names, source)
    ratio, window = sample_rate / source_rate, int(round(WINDOW_SECONDS * sample_rate))
    windows, labels = [], []
    for start, stop, label in blocks:
        for s in block_window_starts(start * ratio, min(stop * ratio, x.shape[1]), window, margin_s * sample_rate):
            windows.append(x[:, s:s + window])
            labels.append(label)
    return windows, labels


def _skipped_note(skipped) -> str:
    """`` (n unusable file(s) skipped; the first, path: reason)`` for a dataset-level error; "" if none."""
    if skipped is None or not skipped.files:
        return ""
    first = skipped.files[0]
    return f" ({len(skipped.files)} unusable file(s) skipped; the first, {first['path']}: {first['reason']})"


def _check_classes(name: str, y: list[int], class_names, root: Path, skipped=None) -> None:
    absent = [c for i, c in enumerate(class_names) if i not in set(y)]
    if absent:
        raise DatasetError(f"{name}: no window of class(es) {', '.join(absent)} under {root}{_skipped_note(skipped)}")


# -------------------------------------------------------------------------------------------- myo

def read_myo(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A Myo file as ``(emg [8, T] float64, labels [T] int)``; :class:`RecordingError` if malformed."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as e:
        raise RecordingError(path, f"cannot be read as Myo CSV ({type(e).__name__}: {e})") from e
    if table.shape[1] != N_CHANNELS + 1:
        raise RecordingError(path, f"expected {N_CHANNELS} EMG columns and a label column per line; got {table.shape[1]} columns"
                             + (" (no label column)" if table.shape[1] == N_CHANNELS else ""))
    labels = table[:, N_CHANNELS]
    bad = sorted(set(labels[(labels != np.round(labels)) | (labels < 0) | (labels > len(MYO_GESTURES))].tolist()))
    if bad:
        raise RecordingError(path, f"labels must be 0 (rest) .. {len(MYO_GESTURES)}; found {bad[:5]}")
    return table[:, :N_CHANNELS].T, labels.astype(np.int64)


def load_myo(root: Path, sample_rate: float, include_rest: bool = INCLUDE_REST):
    refs, skipped = MyoDataset().find(root)
    for s in skipped:
        log.warning("%s: skipping %s: %s", NAME, s.path, s.reason)
    if not refs:
        raise DatasetError(f"{NAME} (myo): no recordings under {root}; expected {MYO_LAYOUT}")
    class_names = (("rest",) if include_rest else ()) + MYO_GESTURES
    offset = 0 if include_rest else -1  # file label -> class index
    x, y, subjects, recordings = [], [], [], []
    unusable = SkippedFiles(NAME)
    for ref in refs:
        path = root / ref.path
        try:
            emg, labels = read_myo(path)
            blocks = [(a, b, label + offset) for a, b, label in label_blocks(labels) if include_rest or label > 0]
            windows, window_labels = resampled_windows(emg, CHANNEL_NAMES, SAMPLE_RATE, sample_rate, blocks, MYO_EDGE_SECONDS, path)
        except RecordingError as err:
            unusable(path, err)
            continue
        x += windows
        y += window_labels
        subjects += [ref.subject] * len(windows)
        recordings += [ref.recording_id] * len(windows)
    if not x:
        raise DatasetError(f"{NAME} (myo): no gesture (label 1-7) of at least {WINDOW_SECONDS + 2 * MYO_EDGE_SECONDS:g} s "
                           f"in the {len(refs)} recording(s) under {root}"
                           + _skipped_note(unusable))
    _check_classes(f"{NAME} (myo)", y, class_names, root, unusable)
    preprocessing = {
        "resample_hz": [SAMPLE_RATE, float(sample_rate)],
        "normalisation": "per-channel z-score over each recording (file)",
        "window_seconds": WINDOW_SECONDS, "edge_margin_seconds": MYO_EDGE_SECONDS,
        "windows": "non-overlapping, centred in each labelled block", "rest": "class" if include_rest else "dropped",
    }
    unusable.record(preprocessing)
    return LabelledWindows.build(f"{NAME}-myo", x, y, subjects, recordings, class_names, CHANNEL_NAMES, sample_rate, preprocessing)


# ---------------------------------------------------------------------------------------- ninapro

def _mat_vector(mat: dict, name: str, n: int, path: Path) -> np.ndarray:
    if name not in mat:
        raise RecordingError(path, f"no {name!r} variable (the labels); found {sorted(k for k in mat if not k.startswith('__'))}")
    v = np.asarray(mat[name]).ravel()
    if len(v) != n:
        raise RecordingError(path, f"{name!r} has {len(v)} samples but 'emg' has {n}")
    return v.astype(np.int64)


def database_folder(path: Path, root: Path) -> str | None:
    """``"DB2"`` ... from the nearest folder (from ``root`` down) named ``DB<n>...``, else None."""
    for folder in reversed((root.name,) + path.relative_to(root).parts[:-1]):
        match = NINAPRO_FOLDER.match(folder)
        if match:
            return f"DB{int(match.group('number'))}"
    return None


def ninapro_database(path: Path, root: Path, n_channels: int) -> str:
    """The database of a Ninapro file: the nearest ``DB<n>...`` folder, else its channel count."""
    name = database_folder(path, root)
    if name is not None:
        if name not in NINAPRO:
            raise RecordingError(path, f"{name} is not supported (raw EMG gesture databases: {', '.join(NINAPRO)})")
        return name
    if n_channels not in NINAPRO_BY_CHANNELS:
        raise RecordingError(path, f"'emg' has {n_channels} channels and no DB<n> folder names the database; "
                             f"expected 12 (DB2/DB3) or 16 (DB5)")
    return NINAPRO_BY_CHANNELS[n_channels]


def global_movements(labels: np.ndarray, database: str, exercise: int, path: Path) -> np.ndarray:
    """Exercise-local movement ids (1..n; 0 rest) made global over the database's exercises.

    Files already holding global ids (DB2/DB3 exercise 2: 18..40) are recognised because no
    movement id is at or below the exercise's offset, and kept.
    """
    counts = NINAPRO[database].movements
    offset, n = sum(counts[:exercise - 1]), counts[exercise - 1]
    moving = labels > 0
    out = labels.copy()
    if moving.any() and labels[moving].min() <= offset:
        out[moving] += offset
    bad = sorted(set(out[moving & ((out <= offset) | (out > offset + n))].tolist()))
    if bad:
        raise RecordingError(path, f"movement id(s) {bad[:5]} outside exercise {exercise} of {database} "
                             f"(movements {offset + 1}..{offset + n}, or 1..{n} exercise-local)")
    return out


def find_ninapro(root: Path) -> list[tuple[Path, int, int]]:
    """``(path, subject number, exercise)`` of every Ninapro ``S<n>_E<e>_A1.mat`` file under ``root``."""
    found = []
    for path in walk_files(root):
        if path.suffix.lower() != ".mat":
            continue
        match = NINAPRO_FILE.match(path.name)
        if match is None:
            log.warning("%s: skipping %s: not a Ninapro file name (expected S<n>_E<e>_A1.mat)", NAME, path)
            continue
        found.append((path, int(match.group("subject")), int(match.group("e1") or match.group("e2"))))
    return found


def load_ninapro(root: Path, sample_rate: float, include_rest: bool = INCLUDE_REST):
    files = find_ninapro(root)
    if not files:
        raise DatasetError(f"{NAME} (ninapro): no Ninapro .mat files under {root}; expected {NINAPRO_LAYOUT}")
    x, movements, subjects, recordings = [], [], [], []
    databases, used, rates = set(), set(), set()  # used: (database, exercise) pairs read
    channels: dict[int, Path] = {}
    unusable = SkippedFiles(NAME)
    for path, subject, exercise in files:
        named = database_folder(path, root)
        if named in NINAPRO and exercise not in NINAPRO[named].exercises:  # skip before reading it
            log.info("%s: skipping %s: exercise %d of %s is not part of this protocol", NAME, path, exercise, named)
            continue
        try:
            try:
                mat = scipy.io.loadmat(path)
            except Exception as e:  # scipy raises ValueError, TypeError, OSError, MatReadError ... for damaged files
                raise RecordingError(path, f"cannot be read as a MATLAB file ({type(e).__name__}: {e})") from e
            if "emg" not in mat:
                raise RecordingError(path, "no 'emg' variable")
            emg = np.asarray(mat["emg"], dtype=np.float64)
            if emg.ndim != 2:
                raise RecordingError(path, f"'emg' must be [samples, channels]; got shape {emg.shape}")
            database = ninapro_database(path, root, emg.shape[1])
            spec = NINAPRO[database]
            if exercise not in spec.exercises:
                log.info("%s: skipping %s: exercise %d of %s is not part of this protocol", NAME, path, exercise, database)
                continue
            if emg.shape[1] != spec.n_channels:
                raise RecordingError(path, f"'emg' has {emg.shape[1]} channels; {database} has {spec.n_channels} and the protocol needs all")
            rate = float(np.ravel(mat["frequency"])[0]) if "frequency" in mat else spec.sample_rate
            restimulus = global_movements(_mat_vector(mat, "restimulus", len(emg), path), database, exercise, path)
            repetition = _mat_vector(mat, "rerepetition", len(emg), path)
            blocks = [b for b in label_blocks(restimulus, repetition) if include_rest or b[2] > 0]
            names = [f"EMG{i}" for i in range(1, spec.n_channels + 1)]
            windows, labels = resampled_windows(emg.T, names, rate, sample_rate, blocks, 0.0, path)
        except RecordingError as err:
            unusable(path, err)
            continue
        channels.setdefault(spec.n_channels, path)
        databases.add(database)
        rates.add(rate)
        used.add((database, exercise))
        x += windows
        movements += labels
        subjects += [f"{database}_S{subject}"] * len(windows)  # DB2 and DB3 both number from S1
        recordings += [path.relative_to(root).with_suffix("").as_posix()] * len(windows)
    if len(channels) > 1:
        raise DatasetError(f"{NAME} (ninapro): databases with different channel counts under {root} "
                           f"({', '.join(f'{n} in {p}' for n, p in channels.items())}); evaluate one database at a time")
    if not x:
        raise DatasetError(f"{NAME} (ninapro): no movement window of {WINDOW_SECONDS:g} s in the {len(files)} file(s) under {root}"
                           + _skipped_note(unusable))
    # Classes: every movement of every exercise read (one database, or DB2 + DB3, which share them).
    spec = NINAPRO[sorted(databases)[0]]
    ids = sorted({sum(spec.movements[:e - 1]) + k for _, e in used for k in range(1, spec.movements[e - 1] + 1)})
    ids = ([0] if include_rest else []) + ids
    index = {m: i for i, m in enumerate(ids)}
    class_names = [("rest" if m == 0 else f"M{m}") for m in ids]
    y = [index[m] for m in movements]
    _check_classes(f"{NAME} (ninapro)", y, class_names, root, unusable)
    preprocessing = {
        "databases": sorted(databases), "exercises": sorted(e for _, e in used),
        "labels": "restimulus, global movement ids", "resample_hz": [sorted(rates), float(sample_rate)],
        "normalisation": "per-channel z-score over each recording (file)", "window_seconds": WINDOW_SECONDS,
        "windows": "non-overlapping, centred in each repetition", "rest": "class" if include_rest else "dropped",
    }
    unusable.record(preprocessing)
    names = [f"EMG{i}" for i in range(1, next(iter(channels)) + 1)]
    return LabelledWindows.build(f"{NAME}-ninapro", x, y, subjects, recordings, class_names, names, sample_rate, preprocessing)


# ------------------------------------------------------------------------------------------ task

def load(data_dir, sample_rate: float, variant: str | None = None, *, include_rest: bool = INCLUDE_REST):
    """The variant's labelled 1-s EMG windows under ``data_dir`` (see the module doc)."""
    variant = check_variant(NAME, VARIANTS, variant)
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{NAME}: {root} is not a directory; expected {MYO_LAYOUT if variant == 'myo' else NINAPRO_LAYOUT}")
    if variant == "myo":
        return load_myo(root, sample_rate, include_rest)
    return load_ninapro(root, sample_rate, include_rest)


make_splits = common.subject_fold_splits(N_FOLDS)


if __name__ == "__main__":  # python -m experiments.tasks.<task>: the shared command line
    sys.exit(common.main(sys.modules[__name__]))
