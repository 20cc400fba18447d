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
recording's own rate, resampling to ``sample_rate``, then per channel the codec's robust
normalisation, ``(x - median) / IQR``, clipped to +-10 (the codec's input range), computed over
each 5-s window on its own (``preprocessing["normalisation_scope"] = "window"``). Not over the
recording: every TUAB file is one class (normal or abnormal), so statistics over a file would be
statistics of one class, and normalising by them would remove (or leak) the amplitude differences
between the classes file by file; a window's own statistics use nothing outside the window being
classified. A channel flat within a window (IQR under :data:`FLAT_WINDOW_IQR` of the recording's)
is 0 in that window (counted in ``preprocessing["flat_window_channels"]``). Band-pass as LaBraM's
TUAB script; the notch is at the US mains frequency of these Philadelphia recordings (LaBraM
notches 50 Hz). A recording with a flat (interquartile range 0, checked before filtering) or
non-finite channel is skipped with a warning naming the file and channel (listed in
``preprocessing["skipped"]``).

Memory: recordings are read and preprocessed one at a time and their windows appended to a
:class:`~biocodec_jax.evaluation.dataset.WindowStore` on disk (``workdir``, default
:data:`DEFAULT_WORKDIR`): the returned windows are a read-only memmap, so memory holds one recording
whatever the corpus's size (the full corpus's windows are ~86 GB).

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

from biocodec_jax.evaluation.dataset import DatasetError, WindowStore
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
PROTOCOL = "official_eval"  # results.json key: the official eval partition; train subjects in folds
FLAT_WINDOW_IQR = 1e-4  # a channel's IQR in a window, in units of its IQR over the recording, below which it is flat
DEFAULT_WORKDIR = Path("runs/eval/windows") / NAME  # where load() writes the windows without a workdir

FILE_NAME = re.compile(r"^(?P<subject>[A-Za-z0-9]+)_s(?P<session>\d+)_t(?P<token>\d+)\.edf$", re.IGNORECASE)
LAYOUT = ("TUAB's layout: <data>/edf/{train,eval}/{normal,abnormal}/01_tcp_ar/<subject>_s<session>_t<token>.edf "
          "(e.g. edf/train/normal/01_tcp_ar/aaaaamye_s001_t000.edf)")

FILES = """\
Reads: <data>/edf/{train,eval}/{normal,abnormal}/**/<subject>_s<session>_t<token>.edf (any depth below the
  class folder: 01_tcp_ar/, 02_tcp_le/, v2.0.0's deeper folders); --data is the release folder or edf/ itself.
  Nothing else (no .csv/.txt lists): label = class folder, partition = train/eval folder, subject = name part.
Channels: all 21 of EEG FP1 FP2 F7 F3 FZ F4 F8 T3 C3 CZ C4 T4 T5 P3 PZ P4 T6 O1 O2 A1 A2, named
  'EEG <electrode>-REF' or '-LE'; other signals are ignored. Any sampling rate (resampled).
Skipped with a warning: an .edf not named <subject>_s<session>_t<token>.edf (logged only); an unreadable or
  truncated file, or one lacking an electrode (results.json: preprocessing.skipped_files, with the reason);
  a recording with a flat or NaN/Inf channel, or shorter than 10 s (preprocessing.skipped).
Fails the run: --data not a folder; no edf/train or edf/eval folder; no such .edf file; no usable recording;
  a class (normal/abnormal) with no usable recording; a subject in both train and eval (leakage).
"""

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
    """Band-pass, notch and resample by the function that prepares the codec's training data
    (:func:`~data_pipelines.preprocess.preprocess_recording`), without clipping: ``[21, T]`` float32,
    per channel ``(x - median) / IQR`` over the recording. That scaling is only a change of units:
    :func:`normalise_windows` then normalises each window by its own statistics, which an affine
    change of the channel leaves unchanged, so no statistic of the file (one class) reaches a window.

    Raises :class:`ChannelError` naming the channel if it holds NaN/Inf or is flat (checked before
    filtering, which would turn a flat line into rounding noise that normalisation then blows up):
    the protocol needs all 21 channels, so the recording is skipped rather than the channel dropped.
    """
    config = PrepareConfig(modality="eeg", sample_rate=float(sample_rate), l_freq=BAND_HZ[0], h_freq=BAND_HZ[1],
                           min_sample_rate=0.0, clip=None, channels=CHANNELS)
    # One notch at the mains frequency only (not its harmonics, as PrepareConfig.notch_freq would give).
    return preprocess_recording(raw, config, source=path, min_length=(1, "one sample"), notch_freqs=NOTCH_HZ,
                                drop_unusable=False).signal


def normalise_windows(windows: np.ndarray) -> tuple[np.ndarray, int]:
    """Per window and channel, ``(x - median) / IQR`` of that window, clipped to +-:data:`CLIP`:
    ``(windows [n, C, W] float32, number of window-channels flat)``. ``windows`` are in units of each
    channel's IQR over the recording (:func:`preprocess`); a channel whose IQR in a window is under
    :data:`FLAT_WINDOW_IQR` of that is flat there (a disconnected stretch: normalising it would blow
    rounding noise up to the full range) and is 0 in that window."""
    q25, median, q75 = np.percentile(np.asarray(windows, np.float64), [25.0, 50.0, 75.0], axis=-1)
    iqr = q75 - q25
    flat = iqr < FLAT_WINDOW_IQR
    out = (windows - median[..., None]) / np.where(flat, 1.0, iqr)[..., None]
    out[flat] = 0.0
    return np.clip(out, -CLIP, CLIP).astype(np.float32), int(flat.sum())


def segment_windows(x: np.ndarray, window_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Back-to-back 10-s segments of ``x`` ``[C, T]``, each as two 5-s windows: ``(windows [2S, C, W],
    segment index of each window)``; no segment (empty arrays) when ``T`` is under 10 s."""
    n_segments = x.shape[1] // (WINDOWS_PER_SEGMENT * window_samples)
    if n_segments == 0:
        return np.zeros((0, x.shape[0], window_samples), np.float32), np.zeros(0, np.int64)
    windows = make_windows(x[:, : n_segments * WINDOWS_PER_SEGMENT * window_samples], window_samples)
    return windows, np.arange(len(windows)) // WINDOWS_PER_SEGMENT


def load(data_dir, sample_rate: float, variant: str | None = None, workdir=None):
    """Every recording's 10-s segments as pairs of 5-s windows, labelled by folder (see the module doc).

    Streams: one recording in memory at a time, its windows appended to a
    :class:`~biocodec_jax.evaluation.dataset.WindowStore` in ``workdir`` (default
    :data:`DEFAULT_WORKDIR`); the result's ``x`` is a read-only memmap of a file there.
    """
    check_variant(NAME, VARIANTS, variant)
    root = edf_root(data_dir)
    recordings = find_recordings(data_dir)
    window_samples = int(round(WINDOW_SECONDS * sample_rate))
    store = WindowStore(DEFAULT_WORKDIR if workdir is None else workdir, len(CHANNELS), window_samples)
    labels, skipped, flat_window_channels = [], [], 0
    unusable = SkippedFiles(NAME)
    try:
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
            del raw
            windows, segment = segment_windows(signal, window_samples)
            if not len(windows):
                log.warning("%s: %s is shorter than one 10-s segment; skipped", NAME, path)
                skipped.append(f"{path.relative_to(root)}: shorter than 10 s")
                continue
            windows, flat = normalise_windows(windows)
            flat_window_channels += flat
            store.append(windows, y=label, subjects=subject, recordings=str(path.relative_to(root).with_suffix("")),
                         segments=segment, partitions=partition)
            labels.append(label)
        note = f" ({len(unusable.files)} unusable file(s) skipped)" if unusable.files else ""
        if not labels:
            raise DatasetError(f"{NAME}: none of the {len(recordings)} recordings under {root} gave a 10-s segment{note}")
        absent = absent_classes(labels, CLASS_NAMES)
        if absent:
            raise DatasetError(f"{NAME}: no recording of class {', '.join(absent)} under {root}{note}; expected {LAYOUT}")
        preprocessing = {
            "channels": "21 referential (-REF/-LE): the 10-20 electrodes and A1, A2",
            "band_pass_hz": list(BAND_HZ), "notch_hz": NOTCH_HZ,
            "filter": "FIR, zero-phase (MNE default), at the recording's own rate",
            "resample_hz": float(sample_rate),
            "normalisation": (f"per-channel (x - median) / IQR over each {WINDOW_SECONDS:g}-s window, clipped to "
                              f"+-{CLIP:g}; not per recording: every TUAB file is one class, so a file's statistics "
                              "are a class's; a channel flat in a window is 0 there"),
            "normalisation_scope": "window",
            "flat_window_channels": flat_window_channels,
            "window_seconds": WINDOW_SECONDS, "segment_seconds": WINDOW_SECONDS * WINDOWS_PER_SEGMENT,
            "skipped": skipped,
        }
        unusable.record(preprocessing)
        return store.finish(NAME, CLASS_NAMES, CHANNELS, sample_rate, preprocessing)
    except BaseException:
        store.abort()
        raise


make_splits = common.partition_fold_splits(N_FOLDS)


if __name__ == "__main__":  # python -m experiments.tasks.<task>: the shared command line
    sys.exit(common.main(sys.modules[__name__]))
