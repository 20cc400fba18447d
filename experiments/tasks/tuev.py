"""TUH EEG Events Corpus (TUEV): six classes of 1-s EEG events, one 5-s window per annotated event.

Dataset: the TUH EEG Events Corpus v2.0.x (Harati et al., "Improved EEG event classification using
differential energy", IEEE SPMB 2015), from https://isip.piconepress.com/projects/nedc/html/tuh_eeg/
(free, after registration; rsync from ``nedc-tuh-eeg@www.isip.piconepress.com:data/tuh_eeg/tuh_eeg_events/v2.0.1/``).
Expected layout (``--data`` is the release folder holding ``edf/``, or ``edf/`` itself)::

    edf/train/aaaaaaar/aaaaaaar_00000001.edf   + aaaaaaar_00000001.rec   (359 files, v2.0.1)
    edf/eval/000/bckg_000_a_.edf               + bckg_000_a_.rec         (159 files)
    edf/eval/032/spsw_032_a_1.edf ...

(other files beside them -- ``.lab``, ``.htk`` -- are not read). The subject is the folder the
file is in (``aaaaaaar`` in train; the numbered eval folders), the publisher's partition the
``train``/``eval`` folder. Each ``.edf`` has a ``.rec`` file of the same name: CSV rows
``channel,start_s,stop_s,label`` (e.g. ``13,90.4,91.4,6``), one per channel an event was marked
on; ``channel`` indexes the 22-channel TCP bipolar montage (:data:`TCP_MONTAGE`, 0 FP1-F7 ...
21 P4-O2), ``label`` is 1 spsw (spike and sharp wave), 2 gped (generalized periodic
epileptiform discharge), 3 pled (periodic lateralized epileptiform discharge), 4 eyem (eye
movement), 5 artf (artifact), 6 bckg (background). Signals are referential (``EEG FP1-REF``, or
``-LE``), mostly at 250 Hz.

Protocol (the original's: 16 bipolar channels, Butterworth order 5 0.5-40 Hz zero-phase,
per-channel z-score, 5-s windows; how channels and events become windows follows BIOT's TUEV
script, which LaBraM and CBraMod reuse):

- channels: 16 of the TCP bipolar montage, the chains without the ear/central row
  (:data:`CHANNEL_NAMES`: FP1-F7 F7-T3 T3-T5 T5-O1 FP2-F8 F8-T4 T4-T6 T6-O2 FP1-F3 F3-C3 C3-P3
  P3-O1 FP2-F4 F4-C4 C4-P4 P4-O2, i.e. montage channels 0-7 and 14-21), formed from the
  referential signals; TUH names (T3/T4/T5/T6 = T7/T8/P7/P8);
- Butterworth band-pass of order 5, 0.5-40 Hz, zero-phase (forward-backward, ``sosfiltfilt``),
  on the whole recording at its own rate, then resampling to the codec's rate (``sample_rate``);
- one 5-s window per ``.rec`` row, centred on the event: for the corpus's 1-s events, 2 s before
  its start to 2 s after its end, as BIOT's ``BuildEvents``. An event marked on k channels gives k
  windows with the same signal (and label), as in BIOT/LaBraM/CBraMod, whose published numbers
  count them so. Near the ends of a recording the window wraps around circularly, as BIOT's
  (which tiles the recording three times), so no event is lost;
- per-channel z-score of each window (the mean and SD of each bipolar channel over that window
  only; ``preprocessing["normalisation_scope"] = "window"``). A channel flat over the window in
  the signal as recorded (before filtering, which turns a flat line into rounding noise) is 0
  there; one flat over the whole recording is logged;
- 6 classes in label order (:data:`CLASS_NAMES`).

Why per window (until issue 19 each channel was z-scored over its whole recording): the original
says "per-channel z-score" without saying over what; the field's practice for TUEV normalises each
window on its own (BIOT's loader, reused by LaBraM and CBraMod, divides each window's channels by
their 95th percentile of absolute value). A recording is not a neutral unit here: the eval
partition's files are cut around events of one kind and named by it (``spsw_032_a_1.edf``), so
statistics over a recording are close to statistics of a class, and the project's rule is never
to normalise over a file that is one class. What per-window scaling removes is an event's amplitude
relative to the rest of its recording (artifacts are large); its shape and spectrum stay.

Splits: the official ``eval`` partition is the test set of every split; the training subjects
are cut into 5 groups (:data:`N_FOLDS`), each in turn the validation set
(:func:`~biocodec_jax.evaluation.splits.holdout_folds`).

A recording that cannot be used -- an unreadable ``.edf``, one lacking an electrode of the montage
or shorter than a window, or a ``.rec`` with a malformed row or one outside the recording -- is
skipped with its ``.rec``, logged naming the bad file (and line or electrode) and listed in
``preprocessing["skipped_files"]`` (results.md then reports a partial dataset). Errors: no
recordings under ``--data`` (the message shows the layout), an ``.edf`` without its ``.rec``
(names the missing file; checked for every recording before any is read), none usable, a class
with no event.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from data_pipelines.errors import RecordingError
from data_pipelines.preprocess import check_finite, filter_and_resample
from data_pipelines.readers import raw_from_array, read_raw as _read_raw
from experiments.tasks import common
from experiments.tasks.common import SkippedFiles, absent_classes, check_variant, require_electrodes
from experiments.tasks.tuab import edf_root

NAME = "tuev"
MODALITY = "eeg"
VARIANTS = ("events",)

# The TCP bipolar montage of the .rec channel indices (TUEV's documentation, "montage = 0, FP1-F7: EEG FP1-REF -- EEG F7-REF").
TCP_MONTAGE = (("FP1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1"), ("FP2", "F8"), ("F8", "T4"), ("T4", "T6"),
               ("T6", "O2"), ("A1", "T3"), ("T3", "C3"), ("C3", "CZ"), ("CZ", "C4"), ("C4", "T4"), ("T4", "A2"),
               ("FP1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1"), ("FP2", "F4"), ("F4", "C4"), ("C4", "P4"),
               ("P4", "O2"))
MONTAGE_INDICES = (0, 1, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17, 18, 19, 20, 21)  # BIOT's 16
CHANNEL_PAIRS = tuple(TCP_MONTAGE[i] for i in MONTAGE_INDICES)
CHANNEL_NAMES = tuple(f"{a}-{b}" for a, b in CHANNEL_PAIRS)
ELECTRODES = tuple(dict.fromkeys(e for pair in CHANNEL_PAIRS for e in pair))
CLASS_NAMES = ("spsw", "gped", "pled", "eyem", "artf", "bckg")  # .rec labels 1..6
PARTITIONS = ("train", "eval")
BUTTERWORTH_ORDER = 5
BAND_HZ = (0.5, 40.0)
WINDOW_SECONDS = 5.0
N_FOLDS = 5
PROTOCOL = "official_eval"  # results.json key: the official eval partition; train subjects in folds

LAYOUT = ("TUEV's layout: <data>/edf/train/<subject>/<subject>_<n>.edf and <data>/edf/eval/<nnn>/<label>_<nnn>_a_<run>.edf, "
          "each with its .rec file (channel,start_s,stop_s,label) beside it")

# Printed by --help under "files read" (common.build_parser): which files it reads, how it checks them.
FILES = """\
TUH EEG Events Corpus v2.0.x as distributed (rsync from
nedc-tuh-eeg@www.isip.piconepress.com:data/tuh_eeg/tuh_eeg_events/v2.0.1/; --data: the release
folder holding edf/, or edf/ itself):
  <data>/edf/train/<subject>/<subject>_<n>.edf   + <subject>_<n>.rec
  <data>/edf/eval/<nnn>/<label>_<nnn>_a_<run>.edf + <label>_<nnn>_a_<run>.rec
Reads: every .edf under edf/train and edf/eval (any depth) and the .rec of the same name beside
  it; the subject is the .edf's folder, the partition train or eval. .lab, .htk and other files
  are not read.
Checks, before any signal is read: every .edf has its .rec (a missing one fails the run, naming it).
Checks each recording: an EDF file MNE reads with the electrodes FP1 F7 T3 T5 O1 FP2 F8 T4 T6 O2
  F3 C3 P3 F4 C4 P4 (as TUH names them: EEG FP1-REF or EEG FP1-LE ...); finite values; at least
  5 s long; its .rec: at least one row, every row channel,start_s,stop_s,label with channel 0-21
  (TCP montage), label 1-6, the event inside the recording.
Skips, logged with the reason (naming the file and line or electrode) and listed in results.json
  (preprocessing.skipped_files): a recording failing a check, with its .rec.
Fails the run (exit 2): no edf/train or edf/eval folder, no recordings, none usable, a class
  with no event.
"""

log = logging.getLogger(__name__)


def find_recordings(data_dir) -> list[tuple[Path, Path, str, str]]:
    """``(edf, rec, partition, subject)`` of every TUEV recording under ``data_dir``, sorted.

    Raises :class:`RecordingError` naming the first ``.rec`` file that is missing.
    """
    root = edf_root(data_dir, NAME, LAYOUT)
    found = []
    for partition in PARTITIONS:
        for path in sorted((root / partition).rglob("*.edf")):
            rec = path.with_suffix(".rec")
            if not rec.is_file():
                raise RecordingError(rec, f"missing: the event labels of {path.name} (every TUEV .edf has a .rec beside it)")
            found.append((path, rec, partition, path.parent.name))
    if not found:
        raise DatasetError(f"{NAME}: no recordings under {root}; expected {LAYOUT}")
    return found


def read_rec(path: Path, duration_s: float) -> list[tuple[float, float, int]]:
    """``(start_s, stop_s, class index)`` of each row of a ``.rec`` file, in file order.

    Raises :class:`RecordingError` naming the file and line for a malformed row, an unknown label
    or channel, or an event outside the recording's ``duration_s``.
    """
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            if len(parts) != 4:
                raise ValueError
            channel, start, stop, label = int(float(parts[0])), float(parts[1]), float(parts[2]), int(float(parts[3]))
        except ValueError:
            raise RecordingError(path, f"line {number}: expected 'channel,start_s,stop_s,label'; got {line!r}") from None
        if not 1 <= label <= len(CLASS_NAMES):
            raise RecordingError(path, f"line {number}: label {label} is not one of 1-6 ({', '.join(CLASS_NAMES)})")
        if not 0 <= channel < len(TCP_MONTAGE):
            raise RecordingError(path, f"line {number}: channel {channel} is not a TCP montage index 0-{len(TCP_MONTAGE) - 1}")
        if not 0 <= start < stop <= duration_s + 1e-6:
            raise RecordingError(path, f"line {number}: event {start}-{stop} s is not inside the {duration_s:g}-s recording")
        rows.append((start, stop, label - 1))
    if not rows:
        raise RecordingError(path, "holds no events")
    return rows


def read_raw(path: Path):
    # A module-level name, so tests can hand the loader a damaged recording.
    return _read_raw(path)


def bipolar_montage(path: Path) -> tuple[np.ndarray, float]:
    """The 16 bipolar channels (:data:`CHANNEL_NAMES`) of a recording at its own rate, and that rate.

    Raises :class:`ChannelError` naming the file and the first electrode it lacks.
    """
    raw = require_electrodes(read_raw(path), path, ELECTRODES, f"the 16-channel TCP montage needs {', '.join(ELECTRODES)}")
    data = raw.get_data(picks=list(ELECTRODES))
    index = {e: i for i, e in enumerate(ELECTRODES)}
    return data[[index[a] for a, _ in CHANNEL_PAIRS]] - data[[index[b] for _, b in CHANNEL_PAIRS]], float(raw.info["sfreq"])


def preprocess(x: np.ndarray, rate: float, sample_rate: float, path: Path) -> np.ndarray:
    """Butterworth band-pass (zero-phase) of ``x`` ``[16, T]`` at ``rate``, then resampling to
    ``sample_rate`` (float64; no normalisation: each window is z-scored by :func:`zscore_windows`).

    Raises :class:`RecordingError` naming ``path`` for non-finite values; logs each channel flat
    over the whole recording (it is 0 in every window).
    """
    check_finite(x, CHANNEL_NAMES, path)
    for c in np.flatnonzero(np.ptp(x, axis=1) == 0):
        log.warning("%s: %s: channel %s is flat; it is 0 in every window", NAME, path, CHANNEL_NAMES[c])
    sos = butter(BUTTERWORTH_ORDER, BAND_HZ, btype="bandpass", fs=rate, output="sos")
    x = sosfiltfilt(sos, x, axis=-1)
    # Not data_pipelines.preprocess.preprocess_recording (the codec's training-data path): this protocol
    # works on bipolar derivations made above (not channels of the recording), band-passes with a
    # Butterworth filter and z-scores each window (mean / SD, a flat channel kept as 0), where that one
    # picks recorded channels, drops flat ones and normalises over the recording by median / IQR with
    # clipping. The resampling step, filter_and_resample, is the shared one.
    return filter_and_resample(raw_from_array(x, list(CHANNEL_NAMES), rate, "eeg", path), sample_rate).get_data()


def zscore_windows(windows: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Each channel of each window of ``windows`` ``[N, C, W]`` z-scored over that window (float32);
    where ``flat`` ``[N, C]`` is True (the channel is flat there as recorded) it is 0."""
    mean, sd = windows.mean(axis=-1, keepdims=True), windows.std(axis=-1, keepdims=True)
    out = (windows - mean) / np.where(sd > 0, sd, 1.0)
    out[flat] = 0.0
    return out.astype(np.float32)


def event_windows(x: np.ndarray, events: list[tuple[float, float, int]], sample_rate: float) -> np.ndarray:
    """The 5-s window centred on each event, ``[n_events, C, W]``; circular at the recording's ends."""
    n = int(round(WINDOW_SECONDS * sample_rate))
    starts = np.array([int(round(((start + stop) / 2 - WINDOW_SECONDS / 2) * sample_rate)) for start, stop, _ in events])
    index = (starts[:, None] + np.arange(n)[None, :]) % x.shape[1]
    return np.ascontiguousarray(x[:, index].transpose(1, 0, 2))


def load(data_dir, sample_rate: float, variant: str | None = None):
    """One 5-s window per ``.rec`` event, 16 bipolar channels, 6 classes (see the module doc)."""
    check_variant(NAME, VARIANTS, variant)
    root = edf_root(data_dir, NAME, LAYOUT)
    recordings = find_recordings(data_dir)
    x, y, subjects, names, partitions = [], [], [], [], []
    skipped = SkippedFiles(NAME)
    for path, rec, partition, subject in recordings:
        try:  # the .edf and its .rec go together: either one unusable skips the pair (the error names which)
            signal, rate = bipolar_montage(path)
            if signal.shape[1] < WINDOW_SECONDS * rate:
                raise RecordingError(path, f"{signal.shape[1] / rate:g} s is shorter than one {WINDOW_SECONDS:g}-s window")
            events = read_rec(rec, signal.shape[1] / rate)
            # Flatness is judged on the windows as recorded: filtering turns a flat line into rounding
            # noise that the z-score would blow up to unit variance.
            flat = np.ptp(event_windows(signal, events, rate), axis=-1) == 0  # [events, 16]
            signal = preprocess(signal, rate, sample_rate, path)
        except RecordingError as err:
            skipped(err.path, err)
            continue
        x.append(zscore_windows(event_windows(signal, events, sample_rate), flat))
        y += [label for _, _, label in events]
        subjects += [subject] * len(events)
        names += [str(path.relative_to(root).with_suffix(""))] * len(events)
        partitions += [partition] * len(events)
    note = f" ({len(skipped.files)} unusable file(s) skipped)" if skipped.files else ""
    if not x:
        raise DatasetError(f"{NAME}: none of the {len(recordings)} recordings under {root} could be used{note}")
    absent = absent_classes(y, CLASS_NAMES)
    if absent:
        raise DatasetError(f"{NAME}: no event of class(es) {', '.join(absent)} in the .rec files under {root}{note}")
    preprocessing = {
        "montage": "TCP bipolar, channels 0-7 and 14-21 of the 22 (BIOT's 16)",
        "band_pass_hz": list(BAND_HZ), "filter": f"Butterworth order {BUTTERWORTH_ORDER}, zero-phase (sosfiltfilt), "
                                                 "on the whole recording at its own rate",
        "resample_hz": float(sample_rate),
        "normalisation": "per-channel z-score of each window (a channel flat there as recorded is 0)",
        "normalisation_scope": "window",
        "window": f"{WINDOW_SECONDS:g} s centred on each .rec row (circular at the ends), one window per row",
        "window_seconds": WINDOW_SECONDS,
    }
    skipped.record(preprocessing)
    return LabelledWindows.build(NAME, np.concatenate(x), y, subjects, names, CLASS_NAMES, CHANNEL_NAMES, sample_rate,
                                 preprocessing, partitions=partitions)


make_splits = common.partition_fold_splits(N_FOLDS)


if __name__ == "__main__":  # python -m experiments.tasks.<task>: the shared command line
    sys.exit(common.main(sys.modules[__name__]))
