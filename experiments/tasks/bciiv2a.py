"""Motor imagery: BCI Competition IV dataset 2a (Graz; Brunner et al. 2008), four classes.

Download (https://www.bbci.de/competition/iv/#dataset2a): ``BCICIV_2a_gdf.zip`` (the recordings)
and, from the results page (https://www.bbci.de/competition/iv/results/#labels), ``true_labels.zip``
(the labels of both sessions, released after the competition). Unpack both into one folder::

    <data_dir>/A01T.gdf ... A09T.gdf   training sessions (cues name the class)
    <data_dir>/A01E.gdf ... A09E.gdf   evaluation sessions (cues are "unknown")
    <data_dir>/A01T.mat ... A09E.mat   true labels, variable ``classlabel`` (1..4, one per trial)

(the ``.mat`` files may also sit in ``<data_dir>/true_labels/``). Each GDF 2.x file holds 22 EEG
channels (``EEG-Fz``, ``EEG-0`` ... ``EEG-16``: Fz, FC3, FC1, FCz, FC2, FC4, C5, C3, C1, Cz, C2, C4,
C6, CP3, CP1, CPz, CP2, CP4, P1, Pz, P2, POz in that order, as MOABB's BNCI2014_001 names them) and
3 EOG channels at 250 Hz, and an event table whose codes are read as annotation descriptions:
``768`` trial start, ``769``/``770``/``771``/``772`` cue left hand / right hand / feet / tongue (T
files), ``783`` cue of unknown class (E files), ``1023`` rejected trial, ``276``/``277``/``1072``
eyes open / closed / moving, ``32766`` new run. 288 trials per session.

Protocol (the original's): the 22 EEG channels; one window per cue from 1 s before to 4 s after it
(1250 samples at 250 Hz); each window z-scored per channel with the mean and standard deviation
(ddof 1, plus 1e-8, on values in volts) of its 1-s pre-cue baseline; no filtering. Labels: the
k-th cue of a session gets ``classlabel[k]`` of its ``.mat`` file; in T files the cue codes must
agree with it. Both sessions (T and E) of every subject are used, as the original does, with the
published subject split: subjects 1-5 train, 6-7 validation, 8-9 test (``partitions`` keeps the
session: ``train`` for T, ``eval`` for E). Classes: left_hand, right_hand, feet, tongue.

Variants: ``all_trials`` (default, the original's: every cue, rejected trials included) and
``clean`` (drops the trials the organisers marked ``1023``).

Departures and caveats: with a ``sample_rate`` other than 250 Hz the recording is resampled
(MNE, FFT) before windowing, so windows are ``round(sample_rate) + round(4 * sample_rate)``
samples; the original only ran at 250 Hz. T-session labels come from the ``.mat`` files after
checking them against the cues (the original reads the cues); the two are the same. Samples that
BioSig reads as NaN (the gaps between runs, and single samples here and there) are stored as the
lowest value of the stored range, which MNE reads as -100 uV (mne-python issues #4327, #9895);
like the original, the windows use them as read.

A session whose ``.gdf`` cannot be used (unreadable, missing EEG channels, no cues, a window past
its ends) or whose ``.mat`` cannot be read is skipped, logged naming the bad file and listed in
``preprocessing["skipped_files"]`` (results.md then reports a partial dataset). A missing label
file, or one that does not match its recording, stays an error.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import mne
import numpy as np
from scipy.io import loadmat

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from biocodec_jax.evaluation.splits import fixed_split
from data_pipelines.channels import normalize_channel_name
from data_pipelines.errors import RecordingError
from data_pipelines.preprocess import filter_and_resample
from data_pipelines.readers import read_raw
from experiments.tasks import common
from experiments.tasks.common import SkippedFiles, absent_classes, check_variant

NAME = "bciiv2a"
MODALITY = "eeg"
VARIANTS = ("all_trials", "clean")
PROTOCOL = "fixed_subjects"  # results.json key: the published subject split 1-5 / 6-7 / 8-9 (cross-subject)

FILE_RATE = 250.0
# The EEG channels as the GDF files name them, and the electrodes they are (MOABB BNCI2014_001).
FILE_EEG_CHANNELS = ("EEG-Fz", "EEG-0", "EEG-1", "EEG-2", "EEG-3", "EEG-4", "EEG-5", "EEG-C3", "EEG-6", "EEG-Cz",
                     "EEG-7", "EEG-C4", "EEG-8", "EEG-9", "EEG-10", "EEG-11", "EEG-12", "EEG-13", "EEG-14",
                     "EEG-Pz", "EEG-15", "EEG-16")
ELECTRODES = ("Fz", "FC3", "FC1", "FCz", "FC2", "FC4", "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
              "CP3", "CP1", "CPz", "CP2", "CP4", "P1", "Pz", "P2", "POz")
CLASS_NAMES = ("left_hand", "right_hand", "feet", "tongue")
CLASS_CUES = {"769": 1, "770": 2, "771": 3, "772": 4}  # cue code -> classlabel
UNKNOWN_CUE = "783"
REJECTED_TRIAL = "1023"
PRE_CUE_S, POST_CUE_S = 1.0, 4.0
BASELINE_EPS = 1e-8
SPLIT = {"train": ("A01", "A02", "A03", "A04", "A05"), "val": ("A06", "A07"), "test": ("A08", "A09")}

_SESSION_FILE = re.compile(r"^A(\d\d)([TE])\.gdf$", re.IGNORECASE)

# Printed by --help under "files read" (common.build_parser): which files it reads, how it checks them.
FILES = """\
BCI Competition IV dataset 2a: BCICIV_2a_gdf.zip (https://www.bbci.de/competition/iv/#dataset2a)
and true_labels.zip (https://www.bbci.de/competition/iv/results/#labels), both unpacked into --data:
  <data>/A01T.gdf ... A09T.gdf  A01E.gdf ... A09E.gdf
  <data>/A01T.mat ... A09E.mat   (or <data>/true_labels/A01T.mat ...)
Reads: every A??T.gdf and A??E.gdf directly in <data> (any case) and, for each, its .mat
  (variable classlabel); nothing else.
Checks, before any recording is read: every session has its .mat (a missing one fails the run).
Checks each session: a GDF file MNE reads; the 22 EEG channels EEG-Fz, EEG-0 ... EEG-16, EEG-C3,
  EEG-Cz, EEG-C4, EEG-Pz (the EOG channels are dropped); cue events 769-772 (T) or 783 (E); the
  .mat's classlabel holds 1..4, one per cue, and in T sessions agrees with the cue codes; every
  window (-1..+4 s around its cue) inside the recording and finite.
Skips, logged with the reason and listed in results.json (preprocessing.skipped_files): a session
  whose .gdf fails a check or whose .mat cannot be read (the .gdf and .mat together).
Fails the run (exit 2): --data not a folder, no session files, a .mat missing, without classlabel,
  with values outside 1..4 or not matching its recording; no usable session; a class with no trial.
"""


def find_sessions(data_dir: str | Path) -> list[Path]:
    """The session files ``A??T.gdf`` / ``A??E.gdf`` directly under ``data_dir``, sorted by name."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise _dataset_error(f"{data_dir}: no such directory (expected the unpacked BCICIV_2a_gdf.zip)")
    found = sorted((p for p in data_dir.iterdir() if p.is_file() and _SESSION_FILE.match(p.name)),
                   key=lambda p: p.name.upper())
    if not found:
        raise _dataset_error(
            f"{data_dir}: no BCI IV 2a sessions found; expected A01T.gdf ... A09T.gdf and A01E.gdf ... A09E.gdf "
            "(from BCICIV_2a_gdf.zip) with the label files A01T.mat ... A09E.mat (from true_labels.zip) beside them"
        )
    return found


def label_file(gdf_path: Path) -> Path:
    """The ``.mat`` label file of a session: beside it, or in a ``true_labels/`` folder beside it."""
    stem = gdf_path.stem
    candidates = [gdf_path.with_name(f"{stem}.mat"), gdf_path.parent / "true_labels" / f"{stem}.mat"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise _dataset_error(
        f"{candidates[0]}: missing label file of {gdf_path.name} (variable 'classlabel'); get true_labels.zip "
        "from https://www.bbci.de/competition/iv/results/ and unpack it beside the .gdf files"
    )


def read_classlabels(path: Path) -> np.ndarray:
    """``classlabel`` of a label file as int64 1..4 (one per trial)."""
    try:
        content = loadmat(str(path))
    except Exception as e:  # scipy raises ValueError, MatReadError, OSError, ... for bad files
        raise RecordingError(path, f"cannot be read as a MATLAB file ({type(e).__name__}: {e})") from e
    if "classlabel" not in content:
        names = sorted(k for k in content if not k.startswith("__"))
        raise _dataset_error(f"{path}: no variable 'classlabel' (found {names})")
    labels = np.asarray(content["classlabel"]).reshape(-1).astype(np.int64)
    bad = sorted(set(labels.tolist()) - set(CLASS_CUES.values()))
    if bad:
        raise _dataset_error(f"{path}: classlabel must hold 1..4; found {bad}")
    return labels


def _events(raw) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions and code strings (``"769"``...) of every event of a GDF recording."""
    if len(raw.annotations) == 0:
        return np.zeros(0, np.int64), np.zeros(0, str)
    events, ids = mne.events_from_annotations(raw, verbose=False)
    code_of = {v: k for k, v in ids.items()}
    order = np.argsort(events[:, 0], kind="stable")
    return events[order, 0] - raw.first_samp, np.array([code_of[i] for i in events[order, 2]])


def session_trials(path: Path, sample_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows ``[trials, 22, T]``, labels (0..3) and rejected flags of one session file.

    Raises RecordingError (naming the file) for a file MNE cannot read, missing EEG channels, no
    cues, a window past the recording's ends or a label file scipy cannot read, and DatasetError
    for label files that are missing, of the wrong length, or (in T files) disagree with the cues.
    """
    raw = read_raw(path)
    missing = [c for c in FILE_EEG_CHANNELS if c not in raw.ch_names]
    if missing:
        raise RecordingError(path, f"missing EEG channel(s) {', '.join(missing)}: the protocol needs the 22 EEG "
                                   f"channels of the BCI IV 2a files ({', '.join(FILE_EEG_CHANNELS)}); "
                                   f"found {raw.ch_names}")
    raw.pick(list(FILE_EEG_CHANNELS))
    raw.reorder_channels(list(FILE_EEG_CHANNELS))
    # Not data_pipelines.preprocess.preprocess_recording (the codec's training-data path): that one
    # normalises each channel over the whole recording (median / IQR, clipped), this protocol z-scores
    # each trial from its own pre-cue baseline (below), and it must keep all 22 channels in file order
    # (that one drops unusable channels). Its resampling step, filter_and_resample, is the shared one.
    filter_and_resample(raw, sample_rate)  # only resamples, and only when sample_rate is not the file's 250 Hz
    positions, codes = _events(raw)
    is_cue = np.isin(codes, list(CLASS_CUES) + [UNKNOWN_CUE])
    cues, cue_codes = positions[is_cue], codes[is_cue]
    if len(cues) == 0:
        raise RecordingError(path, f"no cue events ({', '.join(CLASS_CUES)} or {UNKNOWN_CUE}) in its event table")

    labels_path = label_file(path)
    labels = read_classlabels(labels_path)
    if len(labels) != len(cues):
        raise _dataset_error(f"{labels_path}: {len(labels)} labels but {path.name} has {len(cues)} cues; "
                             "the label file does not belong to this recording")
    known = np.flatnonzero(cue_codes != UNKNOWN_CUE)
    from_cues = np.array([CLASS_CUES[c] for c in cue_codes[known]], dtype=np.int64)
    disagree = known[from_cues != labels[known]]
    if disagree.size:
        k = int(disagree[0])
        raise _dataset_error(
            f"{labels_path}: label of trial {k + 1} is {labels[k]} ({CLASS_NAMES[labels[k] - 1]}) but the cue of "
            f"{path.name} at {cues[k] / sample_rate:.2f} s is {cue_codes[k]} (class {CLASS_CUES[cue_codes[k]]}); "
            f"{len(disagree)} of {len(known)} cues disagree: the label file does not belong to this recording"
        )

    # A rejected trial carries 1023 at its start (2 s before its cue): it belongs to the next cue.
    rejected = np.zeros(len(cues), dtype=bool)
    marks = positions[codes == REJECTED_TRIAL]
    at = np.searchsorted(cues, marks, side="left")
    rejected[at[at < len(cues)]] = True

    pre, post = int(round(PRE_CUE_S * sample_rate)), int(round(POST_CUE_S * sample_rate))
    data = raw.get_data()
    outside = np.flatnonzero((cues - pre < 0) | (cues + post > data.shape[1]))
    if outside.size:
        k = int(outside[0])
        raise RecordingError(path, f"the window of trial {k + 1} (cue at {cues[k] / sample_rate:.2f} s, "
                                   f"-{PRE_CUE_S:g}..+{POST_CUE_S:g} s) runs past the recording "
                                   f"({data.shape[1] / sample_rate:.2f} s)")
    index = cues[:, None] + np.arange(-pre, post)[None, :]
    windows = data[:, index].transpose(1, 0, 2)  # [trials, channels, samples]
    windows = baseline_zscore(windows, pre)
    bad = np.flatnonzero(~np.isfinite(windows).all(axis=(1, 2)))
    if bad.size:
        raise RecordingError(path, f"non-finite values in the window of trial {int(bad[0]) + 1}")
    return windows.astype(np.float32), labels - 1, rejected


def baseline_zscore(windows: np.ndarray, n_baseline: int, eps: float = BASELINE_EPS) -> np.ndarray:
    """``(x - mean) / (std + eps)`` per window and channel, statistics over the first ``n_baseline``
    samples (the pre-cue baseline; std with ddof 1, as the original's torch ``std``)."""
    baseline = windows[..., :n_baseline]
    mean = baseline.mean(axis=-1, keepdims=True)
    std = baseline.std(axis=-1, ddof=1, keepdims=True)
    return (windows - mean) / (std + eps)


def load(data_dir, sample_rate: float, variant: str | None = None):
    """Every cue window of every session under ``data_dir``, z-scored from its baseline, labelled."""
    variant = check_variant(NAME, VARIANTS, variant)
    xs, ys, subjects, recordings, partitions = [], [], [], [], []
    n_rejected = 0
    sessions = find_sessions(data_dir)
    for path in sessions:
        label_file(path)  # a missing label file fails now, not after reading the sessions before it
    skipped = SkippedFiles(NAME)
    for path in sessions:
        subject_number, session = _SESSION_FILE.match(path.name).groups()
        try:  # the .gdf and its .mat go together: either one unreadable skips the session (the error names which)
            windows, labels, rejected = session_trials(path, sample_rate)
        except RecordingError as err:
            skipped(err.path, err)
            continue
        keep = ~rejected if variant == "clean" else np.ones(len(labels), dtype=bool)
        n_rejected += int(rejected.sum())
        xs.append(windows[keep])
        ys.append(labels[keep])
        n = int(keep.sum())
        subjects += [f"A{subject_number}"] * n
        recordings += [f"A{subject_number}{session.upper()}"] * n
        partitions += ["train" if session.upper() == "T" else "eval"] * n
    note = f" ({len(skipped.files)} unusable file(s) skipped)" if skipped.files else ""
    if not ys:
        raise _dataset_error(f"{data_dir}: none of the {len(sessions)} BCI IV 2a sessions found could be used{note}")
    y = np.concatenate(ys)
    absent = absent_classes(y, CLASS_NAMES)
    if absent:
        raise _dataset_error(f"{data_dir}: no trial of class(es) {', '.join(absent)} in the sessions found{note}")
    return LabelledWindows.build(
        NAME, np.concatenate(xs), y, subjects, recordings, CLASS_NAMES,
        [normalize_channel_name(e) for e in ELECTRODES], sample_rate,
        preprocessing=skipped.record({
            "variant": variant, "channels": "22 EEG (EOG dropped)", "file_rate": FILE_RATE,
            "resampled": sample_rate != FILE_RATE, "window": f"cue -{PRE_CUE_S:g} s .. +{POST_CUE_S:g} s",
            "normalisation": f"z-score per channel from the {PRE_CUE_S:g}-s pre-cue baseline "
                             f"(ddof 1, eps {BASELINE_EPS:g}, volts)",
            "normalisation_scope": "window",
            "filter": None, "sessions": "T and E", "labels": ".mat classlabel (T checked against cues)",
            "rejected_trials": "dropped" if variant == "clean" else "kept", "rejected_trials_seen": n_rejected,
        }),
        partitions=partitions,
    )


def make_splits(data, variant: str | None = None, seed: int = 0):
    """The published split: subjects 1-5 train, 6-7 validation, 8-9 test (``seed`` is not used)."""
    check_variant(NAME, VARIANTS, variant)
    present = set(data.subjects.tolist())
    for part, subjects in SPLIT.items():
        if not present & set(subjects):
            raise _dataset_error(f"{data.name}: none of the {part} subjects ({', '.join(subjects)}) are in the data; "
                                 f"found {', '.join(sorted(present))}")
    return [fixed_split(SPLIT["train"], SPLIT["val"], SPLIT["test"], name="subjects1-5_6-7_8-9")]



def _dataset_error(message: str):
    return DatasetError(f"{NAME}: {message}")


if __name__ == "__main__":  # python -m experiments.tasks.<task>: the shared command line
    sys.exit(common.main(sys.modules[__name__]))
