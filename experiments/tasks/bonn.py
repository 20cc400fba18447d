"""Bonn epilepsy EEG: seizure vs non-seizure, or healthy vs epileptic, one prediction per segment file.

Dataset: the Bonn University EEG database (Andrzejak et al., Phys. Rev. E 64, 061907, 2001; free
for research with citation), distributed by the University of Bonn as five zip files, one per set.
Expected layout (``--data`` is the folder holding them; the sets extracted into folders ``Z/Z001.txt``
... work too)::

    Z.zip  set A: healthy, eyes open          O.zip  set B: healthy, eyes closed
    N.zip  set C: interictal, hippocampal formation of the opposite hemisphere
    F.zip  set D: interictal, epileptogenic zone
    S.zip  set E: ictal (seizure)

Each holds 100 single-channel text files (``Z001.txt`` ... ``S100.txt``, one sample per line), 4097
samples at 173.61 Hz (23.6 s), already band-passed 0.53-40 Hz by the publishers. The set of a file
is the first letter of its name (so one archive holding several sets, as the test fixture
``ZS.zip`` does, works too); :mod:`data_pipelines.datasets.bonn` finds and reads them.

Variants
--------
``seizure`` (default): set E vs sets A-D (2 classes, 100 vs 400 files).
``epileptic``: healthy (A, B) vs epileptic (C, D, E) (2 classes, 200 vs 300 files).
A set a variant needs that is missing under ``--data`` is an error naming its zip file.

Preprocessing: resampling 173.61 Hz -> the codec's rate (MNE, FFT), then non-overlapping 5-s
windows (4 per segment; the last 3.6 s are dropped), each z-scored on its own (its mean and
standard deviation; ``preprocessing["normalisation_scope"] = "window"``). No extra filtering (the
release is band-passed already).

Why per window, not per segment file (until issue 19 each whole 23.6-s segment was z-scored): a
Bonn file is one class, and the project's rule is never to normalise over a file that is one
class. Statistics of such a file are statistics of one class's recording, so the normalisation
depends on the labelled unit itself: it can remove the very feature that tells the classes apart
(as per-file z-scores did to the Myo EMG gestures), and it gives a file's windows a common scale
that a new, unlabelled stretch of EEG would not have. A window normalised by itself alone is
treated the same in training, in test and in use. What per-window z-scoring removes is each
window's overall amplitude (seizure EEG is much larger); its shape and spectrum stay.

Scoring: every window is classified, and the windows of one file are scored together
(``segments`` is 0 for all of them, so the scoring unit is the file: one prediction per segment
file, the usual Bonn protocol).

**Subjects: the Bonn release does not say which segments come from which person** (sets A and B
are five healthy volunteers, sets C-E five patients, but the files are not linked to them). This
program therefore treats **each segment file as its own "subject"**: windows of one file never
cross train / validation / test, but segments of the same person may well do so. Results on Bonn
are segment-wise, not subject-wise, and are optimistic for that reason; say so when reporting them.

Splits: 5 folds over the files, stratified by class (each class's files shuffled with the seed and
dealt round-robin into 5 groups); fold ``i`` tests on group ``i``, validates on group ``i+1`` and
trains on the other three.
"""

from __future__ import annotations

import logging
import sys
import zipfile
from pathlib import Path

import numpy as np

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from biocodec_jax.evaluation.splits import Split
from data_pipelines.datasets.bonn import BonnDataset, parse_segment
from data_pipelines.errors import ChannelError, RecordingError
from data_pipelines.preprocess import filter_and_resample, make_windows
from data_pipelines.readers import raw_from_array
from experiments.tasks import common
from experiments.tasks.common import SkippedFiles, check_variant

NAME = "bonn"
MODALITY = "eeg"
VARIANTS = ("seizure", "epileptic")

# File letter -> (set name in the paper, zip file as distributed).
SETS = {"Z": ("A", "Z.zip"), "O": ("B", "O.zip"), "N": ("C", "N.zip"), "F": ("D", "F.zip"), "S": ("E", "S.zip")}
# Per variant: (class name, file letters of its sets), in label order.
CLASSES = {
    "seizure": (("non-seizure", "ZONF"), ("seizure", "S")),
    "epileptic": (("healthy", "ZO"), ("epileptic", "NFS")),
}
SOURCE_RATE = 173.61
WINDOW_SECONDS = 5.0
N_FOLDS = 5
PROTOCOL = "file_folds"  # results.json key: folds over segment files (the release names no subjects)
CHANNEL_NAMES = ("EEG",)  # the release names no electrode (intracranial for C-E, surface for A-B)

LAYOUT = "the five zip files Z.zip, O.zip, N.zip, F.zip, S.zip as distributed (or their extracted folders Z/Z001.txt ...)"

# Printed by --help under "files read" (common.build_parser): which files it reads, how it checks them.
FILES = """\
The Bonn University EEG database (Andrzejak et al. 2001), the five zip files as distributed
(--data: the folder holding them; the sets extracted into folders, Z/Z001.txt ..., work too):
  <data>/Z.zip (set A)  O.zip (B)  N.zip (C)  F.zip (D)  S.zip (E)
Reads: every .txt member of every .zip and every loose .txt under <data> (subfolders too); the
  set is the first letter of the file name (Z001.txt ... S100.txt; N001.TXT: any case). Both
  variants need all five sets. A name starting with another letter and files that are neither
  .zip nor .txt are logged and skipped; a segment found twice (a zip and its extracted folder)
  is read once.
Checks each segment: a zip that opens; one number per line (samples at 173.61 Hz; 4097 as
  published: any length of at least one 5-s window is used); no flat 5-s window.
Skips, logged with the reason and listed in results.json (preprocessing.skipped_files): a
  segment failing a check.
Fails the run (exit 2): --data not a folder; a set with no segment (the message names its zip
  file, e.g. S.zip (set E)); a class with no usable segment.
"""

log = logging.getLogger(__name__)



def zscore(windows: np.ndarray, source: str) -> np.ndarray:
    """Each window of ``windows`` ``[N, 1, W]`` minus its own mean, over its own SD (float32).

    Raises :class:`ChannelError` naming ``source`` and the first flat window (SD 0; it cannot be z-scored).
    """
    windows = np.asarray(windows, dtype=np.float64)
    sd = windows.std(axis=-1, keepdims=True)
    flat = np.flatnonzero((sd == 0).any(axis=(1, 2)))
    if flat.size:
        raise ChannelError(source, CHANNEL_NAMES[0], f"window {int(flat[0])} is flat (standard deviation 0); "
                           "cannot z-score")
    return ((windows - windows.mean(axis=-1, keepdims=True)) / sd).astype(np.float32)


def find_segments(root: Path, letters: str):
    """The Bonn segment files under ``root`` whose set letter is in ``letters``, one per recording id.

    Raises :class:`DatasetError` naming the zip file of every needed set that has no segment.
    """
    refs, skipped = BonnDataset().find(root)
    for s in skipped:
        log.warning("%s: skipping %s: %s", NAME, s.path, s.reason)
    kept, seen = [], set()
    for ref in refs:
        letter = ref.recording_id[0]
        if letter not in SETS:
            log.warning("%s: skipping %s: not a Bonn set file (names start with one of %s)", NAME, ref.display_path, "".join(SETS))
            continue
        if ref.recording_id in seen:  # e.g. a zip and its extracted folder side by side
            log.warning("%s: skipping %s: segment %s was already read from another file", NAME, ref.display_path, ref.recording_id)
            continue
        seen.add(ref.recording_id)
        if letter in letters:
            kept.append(ref)
    missing = [letter for letter in letters if not any(ref.recording_id[0] == letter for ref in kept)]
    if missing:
        names = ", ".join(f"{SETS[m][1]} (set {SETS[m][0]})" for m in missing)
        raise DatasetError(f"{NAME}: no segments of {names} under {root}; expected {LAYOUT}")
    return kept


def read_segments(root: Path, refs, skipped=None) -> tuple[list[np.ndarray], list[str], list]:
    """Each segment's samples (at 173.61 Hz), its source (``zip::member``) for error messages, and its ref.

    Parses as :class:`data_pipelines.datasets.bonn.BonnDataset` does (its ``parse_segment``), but
    opens each archive once rather than once per member. ``skipped`` (a :class:`SkippedFiles`): a
    segment that cannot be read is reported to it and left out, rather than raising.
    """
    segments, sources, kept, archives = [], [], [], {}
    try:
        for ref in refs:
            source = f"{root / ref.path}::{ref.member}" if ref.member else str(root / ref.path)
            try:
                try:
                    if ref.member:
                        if ref.path not in archives:
                            archives[ref.path] = zipfile.ZipFile(root / ref.path)
                        text = archives[ref.path].read(ref.member)
                    else:
                        text = (root / ref.path).read_bytes()
                except (OSError, KeyError, zipfile.BadZipFile) as e:
                    raise RecordingError(source, f"cannot be read as a Bonn segment ({type(e).__name__}: {e})") from e
                segment = parse_segment(text, source)
            except RecordingError as err:
                if skipped is None:
                    raise
                skipped(source, err)
                continue
            segments.append(segment)
            sources.append(source)
            kept.append(ref)
    finally:
        for archive in archives.values():
            archive.close()
    return segments, sources, kept


def resample_segments(segments: list[np.ndarray], sources: list[str], sample_rate: float) -> list[np.ndarray]:
    """Every segment resampled from 173.61 Hz to ``sample_rate`` (MNE, as filter_and_resample does).

    Segments of equal length go through MNE as the channels of one recording: the same per-channel
    FFT resampling, one call instead of 500 (seconds saved on the full release).
    """
    # Not data_pipelines.preprocess.preprocess_recording (the codec's training-data path): each segment
    # is cut into windows each z-scored on its own (that one normalises over the recording by median /
    # IQR with clipping, and a Bonn file is one class), and segments are single-channel text files
    # batched as channels here. The resampling step, filter_and_resample, is the shared one.
    out: list[np.ndarray | None] = [None] * len(segments)
    for length in sorted({len(s) for s in segments}):
        index = [i for i, s in enumerate(segments) if len(s) == length]
        names = [f"segment{i}" for i in range(len(index))]
        raw = raw_from_array(np.stack([segments[i] for i in index]), names, SOURCE_RATE, "eeg", sources[index[0]])
        for i, row in zip(index, filter_and_resample(raw, sample_rate).get_data()):
            out[i] = row
    return out


def load(data_dir, sample_rate: float, variant: str | None = None):
    """The variant's labelled 5-s windows of the Bonn segments under ``data_dir`` (see the module doc)."""
    variant = check_variant(NAME, VARIANTS, variant)
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{NAME}: {root} is not a directory; expected {LAYOUT}")
    classes = CLASSES[variant]
    label_of = {letter: i for i, (_, letters) in enumerate(classes) for letter in letters}
    refs = find_segments(root, "".join(label_of))
    skipped = SkippedFiles(NAME)
    segments, sources, refs = read_segments(root, refs, skipped)
    n = int(round(WINDOW_SECONDS * sample_rate))
    x, y, files = [], [], []
    resampled = resample_segments(segments, sources, sample_rate) if segments else []
    for ref, segment, source in zip(refs, resampled, sources):
        try:
            windows = zscore(make_windows(segment[None, :], n, source=source), source)
        except RecordingError as err:
            skipped(source, err)
            continue
        x.append(windows)
        y += [label_of[ref.recording_id[0]]] * len(windows)
        files += [ref.recording_id] * len(windows)
    absent = [name for i, (name, _) in enumerate(classes) if i not in set(y)]
    if absent:
        first = skipped.files[0] if skipped.files else None
        unusable = (f" ({len(skipped.files)} unusable file(s) skipped; the first, {first['path']}: {first['reason']})"
                    if first else "")
        raise DatasetError(f"{NAME} ({variant}): no usable segment of class(es) {', '.join(absent)} under {root}{unusable}")
    preprocessing = {
        "sets": {name: [SETS[letter][0] for letter in letters] for name, letters in classes},
        "resample_hz": [SOURCE_RATE, float(sample_rate)],
        "normalisation": f"z-score of each {WINDOW_SECONDS:g}-s window (its own mean and SD)",
        "normalisation_scope": "window",
        "window_seconds": WINDOW_SECONDS,
        "scoring": "one prediction per segment file (its windows' mean probability)",
        "subjects": "each segment file is its own subject (the release names no subjects)",
    }
    skipped.record(preprocessing)
    return LabelledWindows.build(
        f"{NAME}-{variant}", np.concatenate(x), y, subjects=files, recordings=files,
        class_names=[name for name, _ in classes], channel_names=CHANNEL_NAMES, sample_rate=sample_rate,
        preprocessing=preprocessing, segments=np.zeros(len(y), dtype=np.int64),
    )


def make_splits(data, variant: str | None = None, seed: int = 0):
    """5 folds over the segment files, stratified by class (see the module doc)."""
    files, first = np.unique(data.subjects, return_index=True)
    if len(files) < 3:
        raise DatasetError(f"{data.name}: folds need at least 3 segment files (train, validation, test); got {len(files)}")
    labels = data.y[first]
    n_folds = min(N_FOLDS, len(files))
    rng = np.random.default_rng(seed)
    # Each class shuffled, then all dealt round-robin: every group gets its share of every class.
    order = np.concatenate([rng.permutation(files[labels == c]) for c in np.unique(labels)])
    groups = [tuple(sorted(order[i::n_folds].tolist())) for i in range(n_folds)]
    splits = []
    for i in range(n_folds):
        val = (i + 1) % n_folds
        train = tuple(sorted(f for j, g in enumerate(groups) if j not in (i, val) for f in g))
        splits.append(Split(f"fold{i}", train, groups[val], groups[i]))
    return splits


if __name__ == "__main__":  # python -m experiments.tasks.<task>: the shared command line
    sys.exit(common.main(sys.modules[__name__]))
