"""Error-related negativity: Kaggle "BCI Challenge @ NER 2015" (inria-bci-challenge; Perrin et al. 2012).

A P300 speller shows its choice after each letter; the task is to tell from the EEG after that
feedback whether the choice was right. Download from https://www.kaggle.com/c/inria-bci-challenge/data
(``train.zip``, ``test.zip``, ``TrainLabels.csv``, ``SampleSubmission.csv``) plus the test labels
released after the competition, ``true_labels.csv`` (posted on the competition forum;
https://storage.googleapis.com/kaggle-forum-message-attachments/80787/2570/true_labels.csv), laid out::

    <data_dir>/train/Data_S02_Sess01.csv ...  16 training subjects x 5 sessions
    <data_dir>/test/Data_S01_Sess01.csv ...   10 test subjects x 5 sessions
    <data_dir>/TrainLabels.csv                IdFeedBack,Prediction (S02_Sess01_FB001,1 ...)
    <data_dir>/true_labels.csv                test labels: one 0/1 per line in SampleSubmission.csv order
    <data_dir>/SampleSubmission.csv           (optional) the order of true_labels.csv

Each session CSV holds ``Time``, 56 EEG columns (``Fp1`` ... ``O2``; the file spells PO8 ``P08``),
``EOG`` and ``FeedBackEvent`` (1 at each feedback onset) at 200 Hz; feedback ``k`` of session
``S02_Sess01`` is ``S02_Sess01_FB{k:03d}`` in the label files (60 per session, 100 in session 5).
``TrainLabels.csv`` and ``true_labels.csv`` may also sit in ``train/`` and ``test/``. In place of
``true_labels.csv``, a ``TestLabels.csv`` with ``IdFeedBack,Prediction`` columns (the layout the
original's code reads) is accepted; a ``true_labels.csv`` with a header naming ``IdFeedBack`` and
``Prediction`` (or ``label``) columns too.

Protocol (the original's), per session: 1-40 Hz band-pass on EEG and EOG, 50 Hz notch on EEG
(MNE's zero-phase FIR filters); ICA EOG removal (MNE ICA, 20 components, ``random_state=42``,
``max_iter=1000``, fitted on the EEG; the components ``find_bads_eog`` ties to ``EOG`` removed);
epochs -0.2..+1.0 s around each feedback (241 samples at 200 Hz, ends included, as ``mne.Epochs``)
minus their -0.2..0 s mean (``mne.Epochs``' baseline); each epoch resampled to ``sample_rate``
with ``scipy.signal.resample_poly`` (200 -> 250 Hz turns 241 samples into ceil(241 * 5/4) = 302:
the original's 302 samples and 26 codec frames, not 1.2 s * 250 = 300); common average
reference; per-channel z-score over the epoch (ddof 1, plus 1e-8). Classes: 0 bad feedback (the
speller chose the wrong letter: the error the ERN follows), 1 good feedback, as ``Prediction``.
Split: the training subjects in 4 groups, each in turn the validation set (a seeded shuffle, so
not the original's groups), with the test subjects as the test set; the data's own ``train/`` and
``test/`` folders say which subjects are which.

Variants: ``no_ica`` (default) skips the ICA; ``ica`` runs it exactly as the original does.
The default departs from the original because of cost: FastICA over 130 sessions of 10-15
minutes at 200 Hz, up to 1000 iterations each when it does not converge (it took about 30 s on a
16-s session of synthetic noise on 2 shared cores here), would dominate every evaluation run.

Other departures: the common average is over the 56 EEG channels (the original's epochs carried
the EOG channel along, so its average took that in too); a feedback whose epoch would run past the
recording is an error (``mne.Epochs`` drops such an epoch). The original read test labels from a
``TestLabels.csv`` of its own making and numbered each session's classes by their annotation
names in sorted order, so a session holding only good feedback would get label 0; here labels are
``Prediction`` as published.
"""

from __future__ import annotations

import csv
import re
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import mne
import numpy as np
from scipy.signal import resample_poly

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from biocodec_jax.evaluation.splits import holdout_folds
from data_pipelines.channels import normalize_channel_name
from data_pipelines.errors import RecordingError
from experiments.tasks import common
from experiments.tasks.common import SkippedFiles, absent_classes, check_variant

NAME = "kaggle_ern"
MODALITY = "eeg"
VARIANTS = ("no_ica", "ica")

FILE_RATE = 200.0
# The 56 EEG columns as the CSV files spell them ("P08" is PO8); a corrected "PO8" is accepted too.
EEG_COLUMNS = ("Fp1", "Fp2", "AF7", "AF3", "AF4", "AF8", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8",
               "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "Cz", "C2",
               "C4", "C6", "T8", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "P7", "P5", "P3",
               "P1", "Pz", "P2", "P4", "P6", "P8", "PO7", "POz", "P08", "O1", "O2")
COLUMN_ALIASES = {"P08": ("P08", "PO8")}
EOG_COLUMN, EVENT_COLUMN = "EOG", "FeedBackEvent"
CLASS_NAMES = ("bad_feedback", "good_feedback")
TMIN, TMAX = -0.2, 1.0
BAND_HZ, NOTCH_HZ = (1.0, 40.0), 50.0
ICA_COMPONENTS, ICA_SEED, ICA_MAX_ITER = 20, 42, 1000
ZSCORE_EPS = 1e-8
N_FOLDS = 4
PROTOCOL = "official_test"  # results.json key: the challenge's test subjects; train subjects in folds

_SESSION_FILE = re.compile(r"^Data_(S\d\d)_Sess(\d\d)\.csv$", re.IGNORECASE)

# Printed by --help under "files read" (common.build_parser): which files it reads, how it checks them.
FILES = """\
Kaggle "BCI Challenge @ NER 2015" (https://www.kaggle.com/c/inria-bci-challenge/data: train.zip,
test.zip, TrainLabels.csv, SampleSubmission.csv) and the test labels released after it,
true_labels.csv, laid out in --data:
  <data>/train/Data_S02_Sess01.csv ...   <data>/test/Data_S01_Sess01.csv ...
  <data>/TrainLabels.csv        (or train/)  IdFeedBack,Prediction
  <data>/true_labels.csv        (or test/; or TestLabels.csv with IdFeedBack,Prediction)
  <data>/SampleSubmission.csv   (or test/; optional: the order of true_labels.csv)
Reads: every Data_S??_Sess??.csv in train/ and test/ (any case), its columns Fp1 ... O2 (the 56
  EEG; PO8 spelled P08 or PO8), EOG and FeedBackEvent; the label files above.
Checks, before any session is read: train/ and test/ hold session files; TrainLabels.csv and the
  test labels exist.
Checks each session: a CSV with those columns and as many values per row as names, finite EEG;
  each feedback's epoch (-0.2..+1.0 s) inside the recording; the label files list exactly its
  feedbacks (S02_Sess01_FB001 ...), each 0 or 1; true_labels.csv by position, in
  SampleSubmission.csv's order (without it, the test sessions found, which must be all).
Skips, logged with the reason and listed in results.json (preprocessing.skipped_files): a session
  CSV that cannot be read, lacks a column, or has an epoch past its end.
Fails the run (exit 2): a folder, session file or label file missing; labels not matching a
  session's feedbacks; no feedback at all; a class with no feedback.
"""


def find_sessions(data_dir: str | Path, part: str) -> list[tuple[str, str, Path]]:
    """``(subject, session id, path)`` of every ``Data_S??_Sess??.csv`` in ``data_dir/part``, sorted."""
    folder = Path(data_dir) / part
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = _SESSION_FILE.match(path.name)
            if match and path.is_file():
                subject = match.group(1).upper()
                found.append((subject, f"{subject}_Sess{match.group(2)}", path))
    if not found:
        raise _dataset_error(
            f"{folder}: no session files found; expected {part}/Data_S??_Sess??.csv (unpacked {part}.zip of "
            "inria-bci-challenge) with TrainLabels.csv and true_labels.csv in the folder above"
        )
    return sorted(found, key=lambda f: f[1])


def read_session(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(eeg [56, T], eog [T], feedback onsets [K])`` of a session CSV, values as stored."""
    try:
        with open(path, newline="") as f:
            header = [h.strip() for h in f.readline().strip().split(",")]
            table = np.loadtxt(f, delimiter=",", ndmin=2)
    except (OSError, ValueError) as e:
        raise RecordingError(path, f"cannot be read as a session CSV ({type(e).__name__}: {e})") from e
    column = {name: i for i, name in enumerate(header)}
    picks, missing = [], []
    for name in EEG_COLUMNS:
        spelled = [a for a in COLUMN_ALIASES.get(name, (name,)) if a in column]
        if spelled:
            picks.append(column[spelled[0]])
        else:
            missing.append(name)
    missing += [c for c in (EOG_COLUMN, EVENT_COLUMN) if c not in column]
    if missing:
        raise RecordingError(path, f"missing column(s) {', '.join(missing)}: the protocol needs the 56 EEG "
                                   f"columns, {EOG_COLUMN} and {EVENT_COLUMN}; found {len(header)} columns")
    if table.shape[1] != len(header):
        raise RecordingError(path, f"{table.shape[1]} values per row but {len(header)} column names in the header")
    onsets = np.flatnonzero(table[:, column[EVENT_COLUMN]] > 0.5)
    eeg = np.ascontiguousarray(table[:, picks].T)
    if not np.isfinite(eeg).all():
        raise RecordingError(path, "non-finite values in the EEG columns")
    return eeg, table[:, column[EOG_COLUMN]], onsets


def clean_session(eeg: np.ndarray, eog: np.ndarray, use_ica: bool) -> np.ndarray:
    """Band-pass (EEG and EOG), notch (EEG) and, with ``use_ica``, remove EOG components; -> EEG ``[56, T]``."""
    # A plain RawArray: one given a file name (data_pipelines.readers.raw_from_array) makes ICA's
    # internal crop look for that file on disk.
    names = [_canonical(c) for c in EEG_COLUMNS] + [EOG_COLUMN]
    info = mne.create_info(names, FILE_RATE, ["eeg"] * len(EEG_COLUMNS) + ["eog"])
    raw = mne.io.RawArray(np.vstack([eeg, eog[None]]), info, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # filter-length and ICA convergence notes on short recordings
        raw.filter(*BAND_HZ, picks=["eeg", "eog"], verbose=False)
        raw.notch_filter(NOTCH_HZ, picks=["eeg"], verbose=False)
        if use_ica:
            ica = mne.preprocessing.ICA(n_components=ICA_COMPONENTS, random_state=ICA_SEED, max_iter=ICA_MAX_ITER,
                                        verbose=False)
            ica.fit(raw, picks="eeg", verbose=False)
            ica.exclude = list(ica.find_bads_eog(raw, ch_name=EOG_COLUMN, verbose=False)[0])
            ica.apply(raw, verbose=False)
    return raw.get_data(picks="eeg")


def epochs(eeg: np.ndarray, onsets: np.ndarray, source: Path) -> np.ndarray:
    """``[K, 56, 241]`` epochs -0.2..+1.0 s (ends included) at 200 Hz, minus their -0.2..0 s mean."""
    start, stop = int(round(TMIN * FILE_RATE)), int(round(TMAX * FILE_RATE))
    outside = np.flatnonzero((onsets + start < 0) | (onsets + stop >= eeg.shape[1]))
    if outside.size:
        k = int(outside[0])
        raise RecordingError(source, f"the epoch of feedback {k + 1} (onset at {onsets[k] / FILE_RATE:.2f} s, "
                                     f"{TMIN:g}..{TMAX:g} s) runs past the recording ({eeg.shape[1] / FILE_RATE:.2f} s)")
    index = onsets[:, None] + np.arange(start, stop + 1)[None, :]
    out = eeg[:, index].transpose(1, 0, 2)
    return out - out[..., : -start + 1].mean(axis=-1, keepdims=True)


def resample_factors(sample_rate: float) -> tuple[int, int]:
    """``(up, down)`` of ``resample_poly`` from 200 Hz to ``sample_rate`` (250 Hz -> (5, 4))."""
    ratio = Fraction(sample_rate).limit_denominator(1000) / Fraction(int(FILE_RATE))
    return ratio.numerator, ratio.denominator


def epoch_samples(sample_rate: float) -> int:
    """Samples per window at ``sample_rate``: ceil(241 * up / down) (302 at 250 Hz)."""
    up, down = resample_factors(sample_rate)
    n = int(round((TMAX - TMIN) * FILE_RATE)) + 1
    return -(-n * up // down)


def normalise(windows: np.ndarray, sample_rate: float) -> np.ndarray:
    """Resample ``[K, C, 241]`` epochs to ``sample_rate``, common-average reference, z-score per channel."""
    # Not data_pipelines.preprocess.preprocess_recording (the codec's training-data path): the protocol
    # resamples each short epoch (polyphase, to a fixed length), re-references to the common average and
    # z-scores each epoch, where that one resamples the whole recording and normalises it by median / IQR.
    up, down = resample_factors(sample_rate)
    if up != down:
        windows = resample_poly(windows, up, down, axis=-1)
    windows = windows - windows.mean(axis=1, keepdims=True)
    mean = windows.mean(axis=-1, keepdims=True)
    std = windows.std(axis=-1, ddof=1, keepdims=True)
    return (windows - mean) / (std + ZSCORE_EPS)


def _label_path(data_dir: Path, name: str, sub: str) -> Path | None:
    for candidate in (data_dir / name, data_dir / sub / name):
        if candidate.is_file():
            return candidate
    return None


def _read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return [[cell.strip() for cell in row] for row in csv.reader(f) if row and any(c.strip() for c in row)]


def _parse_label(value: str, path: Path, where: str) -> int:
    try:
        label = float(value)
    except ValueError:
        raise _dataset_error(f"{path}: {where}: {value!r} is not a label (0 or 1)") from None
    if label not in (0.0, 1.0):
        raise _dataset_error(f"{path}: {where}: label {value!r} is not 0 or 1")
    return int(label)


def read_id_labels(path: Path) -> dict[str, int]:
    """``IdFeedBack -> Prediction`` of a ``TrainLabels.csv``-style file (header ``IdFeedBack,Prediction``)."""
    rows = _read_rows(path)
    if not rows or "IdFeedBack" not in rows[0]:
        raise _dataset_error(f"{path}: expected a header with IdFeedBack and Prediction columns; got {rows[:1]}")
    header = rows[0]
    value_column = _value_column(header, path)
    ids = header.index("IdFeedBack")
    return {row[ids]: _parse_label(row[value_column], path, f"row {i + 2}") for i, row in enumerate(rows[1:])}


def _value_column(header: list[str], path: Path) -> int:
    for name in ("Prediction", "label", "Label"):
        if name in header:
            return header.index(name)
    raise _dataset_error(f"{path}: no Prediction (or label) column in its header {header}")


def test_label_path(data_dir: Path) -> Path:
    """``true_labels.csv`` (or, failing that, ``TestLabels.csv``) of ``data_dir`` or its ``test/``."""
    for name in ("true_labels.csv", "TestLabels.csv"):
        found = _label_path(data_dir, name, "test")
        if found is not None:
            return found
    raise _dataset_error(
        f"{data_dir / 'true_labels.csv'}: missing test labels (one 0/1 per line in SampleSubmission.csv order, "
        "released after the competition: "
        "https://storage.googleapis.com/kaggle-forum-message-attachments/80787/2570/true_labels.csv)"
    )


def read_test_labels(data_dir: Path, test_ids: list[str]) -> tuple[dict[str, int], Path]:
    """Labels of the test feedbacks by id, and the file they came from.

    ``test_ids`` are the ids of every feedback of the test sessions found, in Kaggle's order; they
    place a plain list of labels when there is no ``SampleSubmission.csv`` to give its order.
    """
    path = test_label_path(data_dir)
    rows = _read_rows(path)
    header = rows[0] if rows and not _is_number(rows[0][-1]) else None
    if header is not None and "IdFeedBack" in header:
        return read_id_labels(path), path
    column = _value_column(header, path) if header is not None else -1
    body = rows[1:] if header is not None else rows
    values = [_parse_label(row[column], path, f"line {i + 1 + (header is not None)}") for i, row in enumerate(body)]
    submission = _label_path(data_dir, "SampleSubmission.csv", "test")
    if submission is not None:
        order = [row[0] for row in _read_rows(submission)[1:]]
        if len(order) != len(values):
            raise _dataset_error(f"{path}: {len(values)} labels but {submission} lists {len(order)} feedbacks")
    else:
        order = test_ids
        if len(order) != len(values):
            raise _dataset_error(
                f"{path}: {len(values)} labels but the test sessions found hold {len(order)} feedbacks; the labels "
                "are matched by position, so put SampleSubmission.csv beside it or keep every test session"
            )
    return dict(zip(order, values)), path


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _session_labels(labels: dict[str, int], session_id: str, n_feedback: int, label_path: Path,
                    source: Path) -> np.ndarray:
    """The labels of a session's ``n_feedback`` feedbacks; an error unless the file lists exactly those."""
    ids = [f"{session_id}_FB{k:03d}" for k in range(1, n_feedback + 1)]
    missing = [i for i in ids if i not in labels]
    listed = sum(1 for i in labels if i.startswith(f"{session_id}_FB"))
    if missing or listed != n_feedback:
        raise _dataset_error(f"{label_path}: {listed} labels for {session_id} but {source.name} has {n_feedback} "
                             f"feedback events{f' (no label for {missing[0]})' if missing else ''}")
    return np.array([labels[i] for i in ids], dtype=np.int64)


def load(data_dir, sample_rate: float, variant: str | None = None):
    """Every feedback epoch of the train and test sessions, preprocessed as the original, labelled."""
    variant = check_variant(NAME, VARIANTS, variant)
    data_dir = Path(data_dir)
    train = find_sessions(data_dir, "train")
    test = find_sessions(data_dir, "test")
    train_path = _label_path(data_dir, "TrainLabels.csv", "train")
    if train_path is None:
        raise _dataset_error(f"{data_dir / 'TrainLabels.csv'}: missing training labels (IdFeedBack,Prediction), "
                             "part of the inria-bci-challenge download")
    train_labels = read_id_labels(train_path)
    test_label_path(data_dir)  # fail before the slow part if the test labels are missing

    xs, ys, subjects, recordings, partitions = [], [], [], [], []
    test_sessions: list[tuple[str, int, Path]] = []  # (session id, feedbacks, path), labelled after the loop
    skipped = SkippedFiles(NAME)
    for part, found in (("train", train), ("test", test)):
        for subject, session_id, path in found:
            try:
                eeg, eog, onsets = read_session(path)
            except RecordingError as err:
                skipped(path, err)
                continue
            if part == "train":  # checked even without feedbacks: the label file must not list any then
                labels = _session_labels(train_labels, session_id, len(onsets), train_path, path)
            if len(onsets) == 0:
                continue
            try:
                clean = clean_session(eeg, eog, variant == "ica")
                windows = normalise(epochs(clean, onsets, path), sample_rate).astype(np.float32)
            except RecordingError as err:
                skipped(path, err)
                continue
            if part == "train":
                ys.append(labels)
            else:
                test_sessions.append((session_id, len(onsets), path))
            xs.append(windows)
            subjects += [subject] * len(onsets)
            recordings += [session_id] * len(onsets)
            partitions += [part] * len(onsets)
    test_ids = [f"{sid}_FB{k:03d}" for sid, n, _ in test_sessions for k in range(1, n + 1)]
    test_labels, test_source = read_test_labels(data_dir, test_ids)
    ys += [_session_labels(test_labels, sid, n, test_source, path) for sid, n, path in test_sessions]
    if not xs:
        first = skipped.files[0] if skipped.files else None
        unusable = (f" ({len(skipped.files)} unusable file(s) skipped; the first, {first['path']}: {first['reason']})"
                    if first else "")
        raise _dataset_error(f"{data_dir}: no feedback events (FeedBackEvent = 1) in any usable session{unusable}")
    y = np.concatenate(ys)
    absent = absent_classes(y, CLASS_NAMES)
    if absent:
        raise _dataset_error(f"{data_dir}: no feedback of class(es) {', '.join(absent)}")
    return LabelledWindows.build(
        NAME, np.concatenate(xs), y, subjects, recordings, CLASS_NAMES,
        [_canonical(c) for c in EEG_COLUMNS], sample_rate,
        preprocessing=skipped.record({
            "variant": variant, "file_rate": FILE_RATE, "band_pass_hz": BAND_HZ, "notch_hz": NOTCH_HZ,
            "ica": (f"{ICA_COMPONENTS} components, seed {ICA_SEED}, find_bads_eog on {EOG_COLUMN}"
                    if variant == "ica" else None),
            "epoch": f"{TMIN:g}..{TMAX:g} s around FeedBackEvent, baseline {TMIN:g}..0 s",
            "resample": f"resample_poly {resample_factors(sample_rate)} -> {epoch_samples(sample_rate)} samples",
            "reference": "common average of the 56 EEG channels",
            "normalisation": f"z-score per channel over each epoch (ddof 1, eps {ZSCORE_EPS:g})",
            "normalisation_scope": "window",
        }),
        partitions=partitions,
    )


def make_splits(data, variant: str | None = None, seed: int = 0):
    """The training subjects in 4 groups, each in turn the validation set; the test subjects as test."""
    check_variant(NAME, VARIANTS, variant)
    train = sorted(set(data.subjects[data.partitions == "train"].tolist()))
    test = sorted(set(data.subjects[data.partitions == "test"].tolist()))
    if len(train) < 2 or not test:
        raise _dataset_error(f"{data.name}: need at least 2 training subjects and 1 test subject; got {train} and {test}")
    return holdout_folds(train, test, N_FOLDS, seed=seed)


def _canonical(column: str) -> str:
    return normalize_channel_name("PO8" if column == "P08" else column)



def _dataset_error(message: str):
    return DatasetError(f"{NAME}: {message}")


if __name__ == "__main__":  # python -m experiments.tasks.<task>: the shared command line
    sys.exit(common.main(sys.modules[__name__]))
