"""TUH Abnormal EEG Corpus (TUAB): normal vs abnormal clinical EEG, scored on 10-s segments.

Dataset: the TUH Abnormal EEG Corpus v3.0.x (Lopez et al., "Automated identification of abnormal
adult EEGs", IEEE SPMB 2015; Obeid & Picone, Front. Neurosci. 2016), from
https://isip.piconepress.com/projects/nedc/html/tuh_eeg/ (free, after registration; rsync from
``nedc-tuh-eeg@www.isip.piconepress.com:data/tuh_eeg/tuh_eeg_abnormal/v3.0.1/``). Expected layout
(``--data`` is the release folder holding ``edf/``, or ``edf/`` itself)::

    edf/train/normal/01_tcp_ar/aaaaamye_s001_t000.edf
    edf/train/abnormal/01_tcp_ar/<subject>_s<session>_t<token>.edf
    edf/eval/{normal,abnormal}/01_tcp_ar/...

(v3.0.1: 2,993 files, train 1,371 normal / 1,346 abnormal, eval 150 / 126.) EDF files below
``{normal,abnormal}`` are found at any depth, so v2.0.0's deeper folders
(``01_tcp_ar/000/00000021/s004_2013_08_15/00000021_s004_t000.edf``) and a ``02_tcp_le`` folder work
too. The label is the ``normal``/``abnormal`` folder, the publisher's partition the ``train``/``eval``
folder, the subject the part of the file name before ``_s<session>``. Signals are referential,
named ``EEG FP1-REF`` (``-LE`` in linked-ear montages), at 250, 256 or 512 Hz.

Protocol (the original's, see the reference notes): 21 channels, the 19 electrodes of the 10-20
system and the two ear references (:data:`CHANNELS`: FP1 FP2 F7 F3 FZ F4 F8 T3 C3 CZ C4 T4 T5 P3
PZ P4 T6 O1 O2 A1 A2; the order of our TUEG pre-training set, then A1 A2). LaBraM's TUAB script
uses these 21 plus T1 and T2 (23, in another order) and BIOT a 16-channel bipolar montage; the
original's classifier (52,834 parameters for TUAB) has 21 channels, which we take to be LaBraM's
set without T1 and T2 (its code does not say; the order only names the channel positions the
classifier learns). The codec's
rate (``sample_rate``, 250 Hz), 5-s windows; every recording is cut into back-to-back 10-s
segments (a shorter tail is dropped), each made of two 5-s windows, and windows of one segment
share ``segments`` so they are scored together (mean of their probabilities), as the original
aggregates consecutive 5-s windows into 10-s segments. A recording shorter than 10 s gives no
segment and is skipped with a warning. Classes: ``normal`` (0), ``abnormal`` (1).

Preprocessing -- a documented departure: the original used TUAB data preprocessed outside its
code. Here: zero-phase FIR band-pass 0.1-75 Hz and a 60-Hz notch (MNE defaults) at the
recording's own rate, resampling to ``sample_rate``, then per channel the codec's pre-training
normalisation over the whole recording, ``(x - median) / IQR``, clipped to +-10. Band-pass as
LaBraM's TUAB script; the notch is at the US mains frequency of these Philadelphia recordings
(LaBraM notches 50 Hz); the normalisation keeps the codec's input in the range it was trained on
(TUEG, the same hospital's corpus). A recording with a flat (interquartile range 0, checked
before filtering) or non-finite channel is skipped with a warning naming the file and channel
(listed in ``preprocessing["skipped"]``).

Splits: the official ``eval`` partition is the test set of every split; the training subjects are
cut into 5 groups (:data:`N_FOLDS`), each in turn the validation set
(:func:`~biocodec_jax.evaluation.splits.holdout_folds`); LaBraM and BIOT hold out 20 % of the
training subjects once. A subject in both partitions is an error (leakage).

A recording that cannot be used -- unreadable, or lacking one of the 21 electrodes -- is skipped,
logged by name and listed in ``preprocessing["skipped_files"]`` (results.md then reports a partial
dataset). Errors: no recordings under ``--data`` (the message shows the layout), none usable, a
class with no recording.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import numpy as np

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from data_pipelines.errors import ChannelError, RecordingError
from data_pipelines.config import PrepareConfig
from data_pipelines.preprocess import make_windows, preprocess_recording
from data_pipelines.readers import read_raw as _read_raw
from experiments.tasks import common
from experiments.tasks.common import SkippedFiles, absent_classes, check_variant, require_electrodes

NAME = "tuab"
MODALITY = "eeg"
VARIANTS = ("abnormal",)

CHANNELS = ("FP1", "FP2", "F7", "F3", "FZ", "F4", "F8", "T3", "C3", "CZ", "C4", "T4", "T5", "P3", "PZ", "P4",
            "T6", "O1", "O2", "A1", "A2")
CLASS_NAMES = ("normal", "abnormal")
PARTITIONS = ("train", "eval")
BAND_HZ = (0.1, 75.0)
NOTCH_HZ = 60.0
CLIP = 10.0
WINDOW_SECONDS = 5.0
WINDOWS_PER_SEGMENT = 2  # 10-s scoring segments
N_FOLDS = 5

FILE_NAME = re.compile(r"^(?P<subject>[A-Za-z0-9]+)_s(?P<session>\d+)_t(?P<token>\d+)\.edf$", re.IGNORECASE)
LAYOUT = ("TUAB's layout: <data>/edf/{train,eval}/{normal,abnormal}/01_tcp_ar/<subject>_s<session>_t<token>.edf "
          "(e.g. edf/train/normal/01_tcp_ar/aaaaamye_s001_t000.edf)")

log = logging.getLogger(__name__)


def edf_root(data_dir, name: str = NAME, layout: str = LAYOUT) -> Path:
    """The folder holding ``train/`` and ``eval/``: ``<data>/edf`` or ``<data>`` itself."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{name}: {root} is not a directory; expected {layout}")
    for candidate in (root / "edf", root):
        if any((candidate / p).is_dir() for p in PARTITIONS):
            return candidate
    raise DatasetError(f"{name}: no edf/train or edf/eval folder under {root}; expected {layout}")


def find_recordings(data_dir) -> list[tuple[Path, str, int, str]]:
    """``(path, partition, label, subject)`` of every TUAB recording under ``data_dir``, sorted."""
    root = edf_root(data_dir)
    found = []
    for partition in PARTITIONS:
        for label, class_name in enumerate(CLASS_NAMES):
            for path in sorted((root / partition / class_name).rglob("*.edf")):
                match = FILE_NAME.match(path.name)
                if match is None:
                    log.warning("%s: %s is not named <subject>_s<session>_t<token>.edf; skipped", NAME, path)
                    continue
                found.append((path, partition, label, match.group("subject")))
    if not found:
        raise DatasetError(f"{NAME}: no recordings under {root}; expected {LAYOUT}")
    return found


def read_raw(path: Path):
    # A module-level name, so tests can hand the loader a damaged recording.
    return _read_raw(path)


def read_recording(path: Path):
    """The 21 channels of one recording in :data:`CHANNELS` order (an :class:`mne.io.Raw`).

    Raises :class:`ChannelError` naming the file and the first electrode it lacks.
    """
    raw = require_electrodes(read_raw(path), path, CHANNELS, f"the TUAB protocol needs all 21 of {', '.join(CHANNELS)}")
    return raw.reorder_channels(list(CHANNELS))


def preprocess(raw, sample_rate: float, path: Path) -> np.ndarray:
    """Band-pass, notch, resample, then the codec's pre-training normalisation: per channel
    ``(x - median) / IQR`` over the recording, clipped to +-10 (``[21, T]`` float32), by the
    function that prepares the codec's training data (:func:`~data_pipelines.preprocess.preprocess_recording`).

    Raises :class:`ChannelError` naming the channel if it holds NaN/Inf or is flat (checked before
    filtering, which would turn a flat line into rounding noise that normalisation then blows up):
    the protocol needs all 21 channels, so the recording is skipped rather than the channel dropped.
    """
    config = PrepareConfig(modality="eeg", sample_rate=float(sample_rate), l_freq=BAND_HZ[0], h_freq=BAND_HZ[1],
                           min_sample_rate=0.0, clip=CLIP, channels=CHANNELS)
    # One notch at the mains frequency only (not its harmonics, as PrepareConfig.notch_freq would give).
    return preprocess_recording(raw, config, source=path, min_length=(1, "one sample"), notch_freqs=NOTCH_HZ,
                                drop_unusable=False).signal


def segment_windows(x: np.ndarray, window_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Back-to-back 10-s segments of ``x`` ``[C, T]``, each as two 5-s windows: ``(windows [2S, C, W],
    segment index of each window)``; no segment (empty arrays) when ``T`` is under 10 s."""
    n_segments = x.shape[1] // (WINDOWS_PER_SEGMENT * window_samples)
    if n_segments == 0:
        return np.zeros((0, x.shape[0], window_samples), np.float32), np.zeros(0, np.int64)
    windows = make_windows(x[:, : n_segments * WINDOWS_PER_SEGMENT * window_samples], window_samples)
    return windows, np.arange(len(windows)) // WINDOWS_PER_SEGMENT


def load(data_dir, sample_rate: float, variant: str | None = None):
    """Every recording's 10-s segments as pairs of 5-s windows, labelled by folder (see the module doc)."""
    check_variant(NAME, VARIANTS, variant)
    root = edf_root(data_dir)
    recordings = find_recordings(data_dir)
    window_samples = int(round(WINDOW_SECONDS * sample_rate))
    x, y, subjects, names, segments, partitions, skipped = [], [], [], [], [], [], []
    unusable = SkippedFiles(NAME)
    for path, partition, label, subject in recordings:
        try:
            raw = read_recording(path)
        except RecordingError as err:  # unreadable, or lacking an electrode of the protocol
            unusable(path, err)
            continue
        try:
            signal = preprocess(raw, sample_rate, path)
        except ChannelError as err:
            log.warning("%s: %s; recording skipped", NAME, err)
            skipped.append(f"{path.relative_to(root)}: channel {err.channel!r}: {err.reason}")
            continue
        windows, segment = segment_windows(signal, window_samples)
        if not len(windows):
            log.warning("%s: %s is shorter than one 10-s segment; skipped", NAME, path)
            skipped.append(f"{path.relative_to(root)}: shorter than 10 s")
            continue
        x.append(windows)
        segments.append(segment)
        n = len(windows)
        y += [label] * n
        subjects += [subject] * n
        names += [str(path.relative_to(root).with_suffix(""))] * n
        partitions += [partition] * n
    note = f" ({len(unusable.files)} unusable file(s) skipped)" if unusable.files else ""
    if not x:
        raise DatasetError(f"{NAME}: none of the {len(recordings)} recordings under {root} gave a 10-s segment{note}")
    absent = absent_classes(y, CLASS_NAMES)
    if absent:
        raise DatasetError(f"{NAME}: no recording of class {', '.join(absent)} under {root}{note}; expected {LAYOUT}")
    preprocessing = {
        "channels": "21 referential (-REF/-LE): the 10-20 electrodes and A1, A2",
        "band_pass_hz": list(BAND_HZ), "notch_hz": NOTCH_HZ,
        "filter": "FIR, zero-phase (MNE default), at the recording's own rate",
        "resample_hz": float(sample_rate),
        "normalisation": f"per-channel (x - median) / IQR over the recording, clipped to +-{CLIP:g}",
        "window_seconds": WINDOW_SECONDS, "segment_seconds": WINDOW_SECONDS * WINDOWS_PER_SEGMENT,
        "skipped": skipped,
    }
    unusable.record(preprocessing)
    return LabelledWindows.build(NAME, np.concatenate(x), y, subjects, names, CLASS_NAMES, CHANNELS, sample_rate,
                                 preprocessing, segments=np.concatenate(segments), partitions=partitions)


make_splits = common.partition_fold_splits(N_FOLDS)


if __name__ == "__main__":  # python -m experiments.tasks.<task>: the shared command line
    sys.exit(common.main(sys.modules[__name__]))
