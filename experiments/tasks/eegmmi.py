"""PhysioNet EEG Motor Movement/Imagery: left vs right fist imagery, or eyes open vs closed.

Dataset: the PhysioNet EEG Motor Movement/Imagery Dataset 1.0.0 (Schalk et al., IEEE TBME 51(6),
2004; ODC-By 1.0), https://physionet.org/content/eegmmidb/1.0.0/ . Expected layout, as PhysioNet
distributes it (``--data`` is the folder holding the subject folders; one flat folder of
``SxxxRyy.edf`` files works too)::

    S001/S001R01.edf  S001/S001R02.edf ... S001/S001R14.edf
    S002/S002R01.edf ...

EDF+ files, 64 EEG channels (10-10 names with trailing dots, ``Fc5.``), 160 Hz; the labels are EDF+
annotations (``T0`` rest, ``T1``/``T2`` the two tasks of a run). The subject is the ``Sxxx`` of the
file name. The ``.edf.event`` side files are not needed.

Variants
--------
``motor_imagery`` (default): left fist (``T1``) vs right fist (``T2``) *imagined* in runs R04, R08
and R12 (:data:`IMAGERY_RUNS`). The real-movement runs R03, R07, R11 (:data:`MOVEMENT_RUNS`) are
used as well only when ``load(..., include_real_movement=True)`` (default
:data:`INCLUDE_REAL_MOVEMENT`, False): imagined and executed movement are different tasks. Each
``T1``/``T2`` event gives one epoch 0..4 s after its onset (the events last 4.1-4.2 s); ``T0``
(rest) is not used. 2 classes.

``eyes``: eyes open (R01) vs eyes closed (R02), the original's protocol. The original takes one 5-s
window (0-5 s) per baseline run; this program takes every non-overlapping 5-s window of each
61-s baseline run (12 per run), so a subject gives 24 windows instead of 2 -- a deliberate
departure, for a test set that is more than a handful of windows.

Preprocessing (both variants, as the original's eyes protocol): zero-phase FIR band-pass
0.5-40 Hz (MNE's default filter) on the whole run at 160 Hz, resampling 160 Hz -> the codec's rate
(``sample_rate``, 250 Hz for the EEG codec), then the window is cut and each channel z-scored with
the mean and standard deviation of the **first 0.5 s of that window** (:data:`BASELINE_SECONDS`).
The original normalises its eyes windows this way; the motor-imagery epochs use the same rule for
consistency (the first 0.5 s after the cue, before the imagery has much effect), not a pre-cue
baseline. No clipping.

Normalisation scope: the window (``preprocessing["normalisation_scope"] = "window"``): each window
is normalised with statistics of its own first 0.5 s only, never of its run or subject.

Channels: all 64 EEG channels in the dataset's own order (:data:`CHANNEL_NAMES`, canonical names:
``Fc5.`` -> ``FC5``); a recording lacking any of them is an error naming the file.

Eye movements (``--ocular``, ``load(..., ocular=...)``; ``preprocessing["ocular"]`` says which)
-----------------------------------------------------------------------------------------------
In the motor-imagery runs the target appears on the left or the right of the screen, so the eyes
move toward it and left vs right is confounded by gaze: one number, the F7-F8 difference 1-4 s
after the cue, separates the classes at 0.67-0.78 balanced accuracy across subjects, while mu/beta
power over the motor strip gives 0.45-0.56 (issue 19). A classifier's score on ``keep`` may
therefore be eye movement, not motor imagery. The choices (:data:`OCULAR_MODES`):

- ``keep`` (default, :data:`OCULAR`; the original's protocol): all 64 channels as recorded.
- ``drop``: the 21 frontal and peri-ocular channels (:data:`OCULAR_CHANNELS`: the Fp and AF rows,
  the F row, and FT7, FT8, T9, T10, the lateral sites nearest the outer canthi; i.e. the 10-10
  channels within about one electrode row of the eyes) are removed before windowing; 43 channels
  are left, in the dataset's order. Eye-movement fields fall off with distance, so the remaining
  channels carry less of them, not none: in the bundled S001 R04, T7 still correlates 0.63 with
  F7 - F8 and FC5 0.70 with mean(FP1, FP2) over the run (part eye movement, part activity shared
  with neighbouring sites); ``regress`` takes that share out too. On the 10 subjects of
  ../shared/data/eegmmidb (450 epochs, 5 subject folds, logistic regression on the mean of one
  lateral difference 1-4 s after the cue): F7-F8 with ``keep`` 0.68 balanced accuracy; T7-T8 0.59
  with ``drop``, 0.50 with ``regress``.
- ``regress``: EOG-like components are removed from every remaining channel by ordinary least
  squares on two EOG proxies made of frontal channels, VEOG = mean(FP1, FP2) (blinks, vertical)
  and HEOG = F7 - F8 (horizontal), with an intercept (:func:`regress_ocular`). The fit is per run,
  on the whole band-passed, resampled run (label-blind: a run holds rest and both classes), and
  applied before windowing; the channels of :data:`OCULAR_CHANNELS` are then dropped as in ``drop``.
  Over the run each remaining channel is then uncorrelated with both proxies; brain activity that
  the proxies share (e.g. frontal sources) is removed with them.

Splits: 5 subject folds (:func:`~biocodec_jax.evaluation.splits.subject_folds`): fold ``i`` tests
on group ``i``, validates on group ``i+1``, trains on the rest; fewer folds when there are fewer
than 5 subjects, and at least 3 subjects are needed.

Missing files: a subject lacking one of the variant's runs is logged (naming the file) and only
that run is skipped; no usable run at all is a :class:`DatasetError` describing the layout.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from data_pipelines.channels import pick_channels
from data_pipelines.datasets.eegmmidb import EEGMMIDataset
from data_pipelines.errors import ChannelError, RecordingError
from data_pipelines.preprocess import filter_and_resample, make_windows
from data_pipelines.readers import read_raw as _read_raw
from experiments.tasks import common
from experiments.tasks.common import SkippedFiles, check_variant

NAME = "eegmmi"
MODALITY = "eeg"
VARIANTS = ("motor_imagery", "eyes")

IMAGERY_RUNS = (4, 8, 12)  # left/right fist, imagined
MOVEMENT_RUNS = (3, 7, 11)  # left/right fist, executed
INCLUDE_REAL_MOVEMENT = False
EYES_RUNS = (1, 2)  # R01 eyes open, R02 eyes closed

# The 64 EEG channels in the order of the dataset's EDF files, canonical names.
CHANNEL_NAMES = (
    "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "C5", "C3", "C1", "CZ", "C2", "C4", "C6",
    "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "FP1", "FPZ", "FP2", "AF7", "AF3", "AFZ", "AF4",
    "AF8", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "FT7", "FT8", "T7", "T8", "T9",
    "T10", "TP7", "TP8", "P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8", "PO7", "PO3", "POZ",
    "PO4", "PO8", "O1", "OZ", "O2", "IZ",
)
SOURCE_RATE = 160.0
BAND_HZ = (0.5, 40.0)
EPOCH_SECONDS = 4.0  # motor imagery: 0..4 s after the cue
EYES_WINDOW_SECONDS = 5.0
BASELINE_SECONDS = 0.5  # each window is z-scored on its own first 0.5 s
N_FOLDS = 5
PROTOCOL = "subject_folds"  # results.json key: cross-subject folds (MOABB: cross-subject)

MOTOR_IMAGERY_EVENTS = {"T1": 0, "T2": 1}
MOTOR_IMAGERY_CLASSES = ("left fist", "right fist")
EYES_CLASSES = ("eyes open", "eyes closed")

# Eye movements: what the task does about them (see the module doc), and the channels it uses.
OCULAR_MODES = ("keep", "drop", "regress")
OCULAR = "keep"  # the original's protocol
# The 10-10 channels within about one electrode row of the eyes (PhysioNet spells them Fp1., Af7., F7.., Ft7., T9.., ...).
OCULAR_CHANNELS = ("FP1", "FPZ", "FP2", "AF7", "AF3", "AFZ", "AF4", "AF8", "F7", "F5", "F3", "F1", "FZ", "F2", "F4",
                   "F6", "F8", "FT7", "FT8", "T9", "T10")
VEOG_CHANNELS = ("FP1", "FP2")  # VEOG proxy: their mean
HEOG_CHANNELS = ("F7", "F8")  # HEOG proxy: their difference

LAYOUT = "PhysioNet's layout: <data>/S001/S001R01.edf ... (one folder per subject, or all SxxxRyy.edf in one folder)"

# Printed by --help under "files read" (common.build_parser): which files it reads, how it checks them.
FILES = """\
PhysioNet EEG Motor Movement/Imagery Dataset 1.0.0 as downloaded from
https://physionet.org/content/eegmmidb/1.0.0/ (--data: the folder of the subject folders):
  <data>/S001/S001R01.edf ... <data>/S109/S109R14.edf   (or all SxxxRyy.edf in <data> itself)
Reads, per subject Sxxx: motor_imagery runs R04, R08, R12 (with --include-real-movement also
  R03, R07, R11); eyes runs R01, R02. Other runs, other .edf names and the .edf.event side files
  are not read.
Checks each file: an EDF+ file MNE reads; all 64 EEG channels, as PhysioNet spells them (Fc5.
  Fc3. ... Fp1. ... Iz.., compared as FC5 ... IZ); motor_imagery: T1/T2 annotations (T1 left,
  T2 right fist; T0 rest is not used); eyes: at least one whole 5-s window; no channel flat over
  the 0.5-s baseline of a window.
Skips, logged with the reason and listed in results.json (preprocessing.skipped_files): a file
  failing a check. Logged and skipped: a subject's missing run; a T1/T2 event without 4 s of
  signal after it.
Fails the run (exit 2): --data not a folder, no SxxxRyy.edf under it, no usable run of the
  variant, a class with no window.
"""

log = logging.getLogger(__name__)



def runs_of(variant: str | None, include_real_movement: bool = INCLUDE_REAL_MOVEMENT) -> tuple[int, ...]:
    """The run numbers a variant reads (R04, R08, R12 for motor imagery; R01, R02 for eyes)."""
    if check_variant(NAME, VARIANTS, variant) == "eyes":
        return EYES_RUNS
    return tuple(sorted(IMAGERY_RUNS + (MOVEMENT_RUNS if include_real_movement else ())))


def check_ocular(ocular: str) -> str:
    """``ocular`` if it is one of :data:`OCULAR_MODES`; a ValueError listing them otherwise."""
    if ocular not in OCULAR_MODES:
        raise ValueError(f"{NAME}: unknown ocular mode {ocular!r}; choose one of {', '.join(OCULAR_MODES)}")
    return ocular


def channels_kept(ocular: str = OCULAR) -> tuple[str, ...]:
    """The channels the windows have under ``ocular``: all 64 for ``keep``, else the 43 outside
    :data:`OCULAR_CHANNELS`, in the dataset's order (:data:`CHANNEL_NAMES`)."""
    if check_ocular(ocular) == "keep":
        return CHANNEL_NAMES
    return tuple(c for c in CHANNEL_NAMES if c not in OCULAR_CHANNELS)


def eog_proxies(x: np.ndarray, channel_names) -> np.ndarray:
    """``[2, T]``: VEOG = mean(FP1, FP2) and HEOG = F7 - F8 of ``x`` ``[C, T]`` (channels named by ``channel_names``)."""
    index = {c: i for i, c in enumerate(channel_names)}
    veog = x[[index[c] for c in VEOG_CHANNELS]].mean(axis=0)
    heog = x[index[HEOG_CHANNELS[0]]] - x[index[HEOG_CHANNELS[1]]]
    return np.stack([veog, heog])


def regress_ocular(x: np.ndarray, channel_names) -> np.ndarray:
    """``x`` ``[C, T]`` with the EOG proxies (:func:`eog_proxies`) regressed out of every channel
    outside :data:`OCULAR_CHANNELS`; those channels themselves are returned unchanged (the caller
    drops them).

    Ordinary least squares with an intercept, fitted on all ``T`` samples (the whole run); each
    channel becomes its residual plus its own mean, so over the run it is uncorrelated with both
    proxies. ``x`` is not modified.
    """
    proxies = eog_proxies(x, channel_names)
    proxies = proxies - proxies.mean(axis=1, keepdims=True)
    rows = [i for i, c in enumerate(channel_names) if c not in OCULAR_CHANNELS]
    target = x[rows] - x[rows].mean(axis=1, keepdims=True)
    coef, *_ = np.linalg.lstsq(proxies.T, target.T, rcond=None)  # [2, len(rows)]
    out = np.array(x, copy=True)
    out[rows] = x[rows] - (coef.T @ proxies)
    return out


def zscore_on_baseline(x: np.ndarray, baseline_samples: int, channel_names, source: str) -> np.ndarray:
    """``x`` ``[C, T]`` z-scored per channel with the mean and SD of its first ``baseline_samples``.

    Raises :class:`ChannelError` naming ``source`` and the channel if that stretch is flat.
    """
    baseline = x[:, :baseline_samples]
    mean, sd = baseline.mean(axis=1), baseline.std(axis=1)
    flat = np.flatnonzero(sd == 0)
    if flat.size:
        raise ChannelError(source, channel_names[int(flat[0])], f"flat over the first {baseline_samples} samples; cannot z-score")
    return ((x - mean[:, None]) / sd[:, None]).astype(np.float32)


def read_run(path: Path, sample_rate: float, ocular: str = OCULAR):
    """One run: the 64 EEG channels in :data:`CHANNEL_NAMES` order, band-passed and resampled, then
    the ``ocular`` step (``drop``: :data:`OCULAR_CHANNELS` removed; ``regress``: :func:`regress_ocular`
    over the whole run, then those channels removed); its channels are :func:`channels_kept`."""
    raw = read_raw(path)
    pick_channels(raw, "eeg")
    missing = [c for c in CHANNEL_NAMES if c not in raw.ch_names]
    if missing:
        raise RecordingError(
            path, f"has {len(raw.ch_names)} EEG channels but the protocol needs all {len(CHANNEL_NAMES)} of the dataset; "
            f"missing {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"
        )
    raw.pick(list(CHANNEL_NAMES))
    raw.reorder_channels(list(CHANNEL_NAMES))
    # Not data_pipelines.preprocess.preprocess_recording (the codec's training-data path): the protocol
    # needs all 64 channels in dataset order (that one drops unusable channels) and z-scores each window
    # on its baseline (that one normalises over the recording by median / IQR, clipped). Band-pass and
    # resampling are its shared step, filter_and_resample.
    raw = filter_and_resample(raw, sample_rate, l_freq=BAND_HZ[0], h_freq=BAND_HZ[1])
    if check_ocular(ocular) == "regress":  # on the whole run, before any window is cut
        raw.apply_function(regress_ocular, picks=list(CHANNEL_NAMES), channel_wise=False, channel_names=CHANNEL_NAMES)
    if ocular != "keep":
        raw.drop_channels(list(OCULAR_CHANNELS))
    return raw


def read_raw(path: Path):
    # A module-level name, so tests can hand the loader a damaged recording.
    return _read_raw(path)


def motor_imagery_epochs(raw, path: Path, sample_rate: float) -> tuple[list[np.ndarray], list[int]]:
    """One z-scored epoch 0..4 s after each ``T1``/``T2`` annotation of a run, and its label."""
    annotations = raw.annotations
    events = [(float(o) - raw.first_time, MOTOR_IMAGERY_EVENTS[d]) for o, d in zip(annotations.onset, annotations.description)
              if d in MOTOR_IMAGERY_EVENTS]
    if not events:
        found = sorted(set(annotations.description))
        raise RecordingError(path, f"no T1/T2 (left/right fist) annotations, which label a motor-imagery run; found {found or 'none'}")
    n, baseline = int(round(EPOCH_SECONDS * sample_rate)), int(round(BASELINE_SECONDS * sample_rate))
    data = raw.get_data()
    epochs, labels = [], []
    for onset, label in events:
        start = int(round(onset * sample_rate))
        if start < 0 or start + n > data.shape[1]:
            log.warning("%s: event at %.1f s has no full %.0f-s epoch before the end of the run; skipped", path, onset, EPOCH_SECONDS)
            continue
        epochs.append(zscore_on_baseline(data[:, start:start + n], baseline, raw.ch_names, f"{path} (event at {onset:.1f} s)"))
        labels.append(label)
    return epochs, labels


def eyes_windows(raw, path: Path, sample_rate: float) -> list[np.ndarray]:
    """Every non-overlapping 5-s window of a baseline run, each z-scored on its own first 0.5 s."""
    n, baseline = int(round(EYES_WINDOW_SECONDS * sample_rate)), int(round(BASELINE_SECONDS * sample_rate))
    windows = make_windows(raw.get_data(), n, source=path)
    return [zscore_on_baseline(w, baseline, raw.ch_names, f"{path} (window {i})") for i, w in enumerate(windows)]


def add_arguments(parser) -> None:
    """This task's command-line options (:func:`experiments.tasks.common.build_parser`), passed to :func:`load`."""
    parser.add_argument(
        "--ocular", choices=OCULAR_MODES, default=OCULAR,
        help="eye movements, which confound left vs right fist (the target is shown on that side of the screen): "
             f"keep = all 64 channels as recorded (default, the original's protocol); drop = remove the "
             f"{len(OCULAR_CHANNELS)} frontal/peri-ocular channels ({', '.join(OCULAR_CHANNELS)}), "
             f"{len(CHANNEL_NAMES) - len(OCULAR_CHANNELS)} left; regress = least-squares regression of every "
             "remaining channel on EOG proxies VEOG = mean(FP1, FP2) and HEOG = F7 - F8, fitted on each whole run "
             "before windowing, then the same channels removed as with drop")
    parser.add_argument(
        "--include-real-movement", action="store_true", default=INCLUDE_REAL_MOVEMENT,
        help="motor_imagery: also the executed-movement runs R03, R07, R11 (default: the imagery runs only)")


def load(data_dir, sample_rate: float, variant: str | None = None, *,
         include_real_movement: bool = INCLUDE_REAL_MOVEMENT, ocular: str = OCULAR):
    """The variant's labelled windows from the PhysioNet files under ``data_dir`` (see the module doc).

    ``ocular``: ``keep`` (default), ``drop`` or ``regress``, what is done about eye movements (the
    module doc's "Eye movements"); a ValueError for another value.
    """
    variant = check_variant(NAME, VARIANTS, variant)
    check_ocular(ocular)
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{NAME}: {root} is not a directory; expected {LAYOUT}")
    refs, _ = EEGMMIDataset().find(root)
    if not refs:
        raise DatasetError(f"{NAME}: no SxxxRyy.edf recordings under {root}; expected {LAYOUT}")
    by_subject_run = {(ref.subject, int(Path(ref.path).stem[-2:])): ref for ref in refs}
    runs = runs_of(variant, include_real_movement)

    x, y, subjects, recordings = [], [], [], []
    skipped = SkippedFiles(NAME)
    for subject in sorted({ref.subject for ref in refs}):
        for run in runs:
            ref = by_subject_run.get((subject, run))
            if ref is None:
                log.warning("%s: %s/%sR%02d.edf is missing; skipping that run of %s", NAME, subject, subject, run, subject)
                continue
            path = root / ref.path
            try:
                raw = read_run(path, sample_rate, ocular)
                if variant == "eyes":
                    windows = eyes_windows(raw, path, sample_rate)
                    labels = [EYES_RUNS.index(run)] * len(windows)
                else:
                    windows, labels = motor_imagery_epochs(raw, path, sample_rate)
            except RecordingError as err:
                skipped(path, err)
                continue
            x += windows
            y += labels
            subjects += [subject] * len(windows)
            recordings += [ref.recording_id] * len(windows)
    class_names = EYES_CLASSES if variant == "eyes" else MOTOR_IMAGERY_CLASSES
    if not x:
        wanted = ", ".join(f"R{r:02d}" for r in runs)
        first = skipped.files[0] if skipped.files else None
        unusable = (f" ({len(skipped.files)} unusable file(s) skipped; the first, {first['path']}: {first['reason']})"
                    if first else "")
        raise DatasetError(f"{NAME} ({variant}): no subject under {root} has any usable run of {wanted}{unusable}; "
                           f"expected {LAYOUT}")
    absent = [c for i, c in enumerate(class_names) if i not in set(y)]
    if absent:
        raise DatasetError(f"{NAME} ({variant}): no window of class(es) {', '.join(absent)} under {root}")
    window_seconds = EYES_WINDOW_SECONDS if variant == "eyes" else EPOCH_SECONDS
    preprocessing = {
        "runs": [f"R{r:02d}" for r in runs],
        "band_pass_hz": list(BAND_HZ), "filter": "FIR, zero-phase (MNE default), on the whole run at 160 Hz",
        "resample_hz": [SOURCE_RATE, float(sample_rate)],
        "window": (f"every non-overlapping {EYES_WINDOW_SECONDS:g} s window of the run" if variant == "eyes"
                   else f"0..{EPOCH_SECONDS:g} s after each T1/T2 onset"),
        "window_seconds": window_seconds,
        "normalisation": f"per-channel z-score on the first {BASELINE_SECONDS:g} s of each window",
        "normalisation_scope": "window",
        "ocular": ocular,
    }
    if ocular != "keep":
        preprocessing["ocular_channels_removed"] = list(OCULAR_CHANNELS)
    if ocular == "regress":
        preprocessing["ocular_regression"] = (
            "per run, on the whole band-passed, resampled run before windowing: ordinary least squares with an "
            "intercept of each remaining channel on VEOG = mean(FP1, FP2) and HEOG = F7 - F8")
    skipped.record(preprocessing)
    return LabelledWindows.build(f"{NAME}-{variant}", x, y, subjects, recordings, class_names, channels_kept(ocular),
                                 sample_rate, preprocessing)


make_splits = common.subject_fold_splits(N_FOLDS)


if __name__ == "__main__":  # python -m experiments.tasks.<task>: the shared command line
    sys.exit(common.main(sys.modules[__name__]))
