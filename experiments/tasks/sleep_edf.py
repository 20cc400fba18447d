"""Sleep-EDF Expanded: five-stage sleep scoring (W, N1, N2, N3, REM) from two EEG derivations.

Dataset: the Sleep-EDF Database Expanded 1.0.0 (Kemp et al., IEEE TBME 47(9), 2000; PhysioNet,
ODC-By 1.0), https://physionet.org/content/sleep-edfx/1.0.0/ . Expected layout, as PhysioNet
distributes it (``--data`` is the folder holding the two study folders)::

    sleep-cassette/SC4001E0-PSG.edf    sleep-cassette/SC4001EC-Hypnogram.edf     (153 nights, 78 subjects)
    sleep-telemetry/ST7011J0-PSG.edf   sleep-telemetry/ST7011JP-Hypnogram.edf    (44 nights, 22 subjects)

File names are ``SC4ssN..`` / ``ST7ssN..``: ``ss`` the subject, ``N`` the night; a PSG file and its
hypnogram share their first 6 characters (``SC4001``), the rest differs (``E0`` vs ``EC``). The
two studies number their subjects separately (cassette 00-82, telemetry 01-24) and are different
people, so the subject here is the study and number, ``SC00`` or ``ST01``. PSG files are EDF at
100 Hz for ``EEG Fpz-Cz`` and ``EEG Pz-Oz`` (the other signals -- ``EOG horizontal``, ``EMG
submental``, ``Resp oro-nasal``, ``Temp rectal``, ``Event marker``/``Marker`` -- are not used).
A hypnogram is an annotations-only EDF+ file: runs of 30-s epochs labelled ``Sleep stage W``,
``1``, ``2``, ``3``, ``4``, ``R``, ``?`` (not scored) and ``Movement time``.

Variants: ``all`` (default; both studies, the original's protocol), ``cassette``, ``telemetry``.

Protocol (the original's): channels Fpz-Cz and Pz-Oz (:data:`CHANNEL_NAMES`); zero-phase FIR
band-pass 0.5-40 Hz (MNE's default filter) at 100 Hz, resampling to the codec's rate
(``sample_rate``); 30-s epochs labelled from the hypnogram, Rechtschaffen & Kales stages 3 and 4
merged into N3, ``?`` and movement epochs dropped; each epoch z-scored per channel (mean and SD of
that epoch; an epoch flat in the recording becomes 0) and cut into six 5-s windows carrying the epoch's label.
The six windows of an epoch share ``segments`` (the epoch's index in the night), so they are
scored together, as one 30-s epoch. Classes W, N1, N2, N3, REM.

Wake trimming (the original does not say; this is the common choice of DeepSleepNet and the MNE
sleep tutorial): the recordings run ~20 h (cassette) with long wake before and after the night;
only the epochs from 30 min (:data:`WAKE_MARGIN_SECONDS`) before the first sleep epoch to 30 min
after the last one are kept (all of it when there is less). Epochs the PSG does not fully cover
(the hypnogram's tail can run past it) are dropped; the filter sees 30 s of signal beyond the
kept stretch on each side when the recording has it.

Splits: 5 subject folds (:func:`~biocodec_jax.evaluation.splits.subject_folds`): fold ``i`` tests
on group ``i``, validates on group ``i+1``, trains on the rest; a subject's nights stay together.

A night that cannot be used -- an unreadable PSG or hypnogram, a hypnogram with an unknown label or
no sleep, a PSG lacking ``EEG Fpz-Cz`` or ``EEG Pz-Oz`` -- is skipped (PSG and hypnogram together),
logged naming the bad file and listed in ``preprocessing["skipped_files"]`` (results.md then reports
a partial dataset). Errors: no PSG files under ``--data`` or a study folder the variant needs
missing (the message shows the layout), a PSG without its hypnogram (names the PSG and the
hypnogram pattern; checked for every night before any is read), no usable night, a class with no
epoch. A hypnogram without a PSG is skipped with a warning.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import datetime
from pathlib import Path

import mne
import numpy as np

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from data_pipelines.errors import ChannelError, RecordingError
from data_pipelines.preprocess import check_finite, filter_and_resample
from data_pipelines.readers import read_raw as _read_raw
from experiments.tasks import common
from experiments.tasks.common import SkippedFiles, absent_classes, check_variant

NAME = "sleep_edf"
MODALITY = "eeg"
VARIANTS = ("all", "cassette", "telemetry")

STUDIES = {"cassette": ("sleep-cassette", "SC"), "telemetry": ("sleep-telemetry", "ST")}
PSG_CHANNELS = ("EEG Fpz-Cz", "EEG Pz-Oz")
CHANNEL_NAMES = ("FPZ-CZ", "PZ-OZ")
CLASS_NAMES = ("W", "N1", "N2", "N3", "REM")
# Hypnogram annotation -> class index; None: epochs that are dropped.
STAGES = {"Sleep stage W": 0, "Sleep stage 1": 1, "Sleep stage 2": 2, "Sleep stage 3": 3, "Sleep stage 4": 3,
          "Sleep stage R": 4, "Sleep stage ?": None, "Movement time": None}
SLEEP_CLASSES = (1, 2, 3, 4)
SOURCE_RATE = 100.0
BAND_HZ = (0.5, 40.0)
EPOCH_SECONDS = 30
WINDOW_SECONDS = 5
WAKE_MARGIN_SECONDS = 30 * 60
FILTER_CONTEXT_SECONDS = 30
N_FOLDS = 5
PROTOCOL = "subject_folds"  # results.json key: cross-subject folds

PSG_NAME = re.compile(r"^(?P<code>(?P<study>SC4|ST7)(?P<subject>\d\d)(?P<night>\d))[A-Z0-9]{2}-PSG\.edf$", re.IGNORECASE)
HYPNOGRAM_NAME = re.compile(r"^(?P<code>(SC4|ST7)\d{3})[A-Z0-9]{2}-Hypnogram\.edf$", re.IGNORECASE)
LAYOUT = ("PhysioNet's layout: <data>/sleep-cassette/SC4001E0-PSG.edf + SC4001EC-Hypnogram.edf ... and "
          "<data>/sleep-telemetry/ST7011J0-PSG.edf + ST7011JP-Hypnogram.edf ...")

# Printed by --help under "files read" (common.build_parser): which files it reads, how it checks them.
FILES = """\
Sleep-EDF Database Expanded 1.0.0 as downloaded from https://physionet.org/content/sleep-edfx/1.0.0/
(--data: the folder holding the study folders):
  <data>/sleep-cassette/SC4001E0-PSG.edf + SC4001EC-Hypnogram.edf ...
  <data>/sleep-telemetry/ST7011J0-PSG.edf + ST7011JP-Hypnogram.edf ...
Reads: variant all both folders, cassette / telemetry that one; every *-PSG.edf named SC4ssN?? /
  ST7ssN?? (other names are logged and skipped) with the one *-Hypnogram.edf sharing its first 6
  characters; from the PSG only EEG Fpz-Cz and EEG Pz-Oz, from the hypnogram its annotations;
  the EDF headers' start times align the two.
Checks, before any night is read: every PSG has exactly one hypnogram (missing or ambiguous fails
  the run, naming the PSG); a hypnogram without a PSG is logged and skipped.
Checks each night: a PSG MNE reads with both channels and finite values; a hypnogram MNE reads
  whose annotations are all Sleep stage W/1/2/3/4/R/? or Movement time; at least one sleep epoch
  inside the PSG.
Skips, logged with the reason and listed in results.json (preprocessing.skipped_files): a night
  failing a check (PSG and hypnogram together).
Fails the run (exit 2): --data not a folder, a study folder the variant needs missing, no PSG
  files, no usable night, a stage with no epoch.
"""

log = logging.getLogger(__name__)



def find_nights(data_dir, variant: str | None = None) -> list[tuple[Path, Path, str]]:
    """``(psg, hypnogram, subject)`` of every night of the variant's studies, sorted.

    Raises :class:`RecordingError` naming the first PSG without a hypnogram (before any is read).
    """
    variant = check_variant(NAME, VARIANTS, variant)
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{NAME}: {root} is not a directory; expected {LAYOUT}")
    studies = list(STUDIES) if variant == "all" else [variant]
    folders = [root / STUDIES[s][0] for s in studies]
    if not any(f.is_dir() for f in folders):
        raise DatasetError(f"{NAME}: no {' or '.join(STUDIES[s][0] for s in studies)} folder under {root}; expected {LAYOUT}")
    nights = []
    for study, folder in zip(studies, folders):
        if not folder.is_dir():
            other = next(s for s in STUDIES if s != study)
            raise DatasetError(f"{NAME} ({variant}): {folder} is missing; the protocol uses both studies "
                               f"(choose --variant {other} to use only the other); expected {LAYOUT}")
        hypnograms: dict[str, list[Path]] = {}
        for path in sorted(folder.glob("*-Hypnogram.edf")):
            match = HYPNOGRAM_NAME.match(path.name)
            if match:
                hypnograms.setdefault(match.group("code").upper(), []).append(path)
        used = set()
        for psg in sorted(folder.glob("*-PSG.edf")):
            match = PSG_NAME.match(psg.name)
            if match is None:
                log.warning("%s: %s is not named SC4ssN..-PSG.edf / ST7ssN..-PSG.edf; skipped", NAME, psg)
                continue
            code = match.group("code").upper()
            candidates = hypnograms.get(code, [])
            if len(candidates) != 1:
                problem = "missing" if not candidates else f"ambiguous ({', '.join(p.name for p in candidates)})"
                raise RecordingError(psg, f"its hypnogram {code}??-Hypnogram.edf is {problem} in {folder}")
            used.add(code)
            subject = f"{STUDIES[study][1]}{match.group('subject')}"
            nights.append((psg, candidates[0], subject))
        for code in sorted(set(hypnograms) - used):
            log.warning("%s: %s has no PSG file %s??-PSG.edf; skipped", NAME, hypnograms[code][0], code)
    if not nights:
        raise DatasetError(f"{NAME}: no PSG files in {', '.join(str(f) for f in folders)}; expected {LAYOUT}")
    return nights


def edf_start(path: Path) -> datetime | None:
    """The start date and time in an EDF header (bytes 168-183, ``dd.mm.yyhh.mm.ss``), None if unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(168)
            text = f.read(16).decode("ascii")
        return datetime.strptime(text, "%d.%m.%y%H.%M.%S")
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def hypnogram_epochs(path: Path, offset_s: float = 0.0) -> list[tuple[float, int | None]]:
    """``(start_s, class index or None)`` of every 30-s epoch in a hypnogram, by start time.

    ``offset_s``: the hypnogram's start minus the PSG's, added to every onset. Raises
    :class:`RecordingError` naming the file if it cannot be read or holds an unknown label.
    """
    try:
        annotations = mne.read_annotations(path)
    except Exception as e:  # MNE raises OSError, ValueError, ... for a damaged file
        raise RecordingError(path, f"cannot be read as an EDF+ hypnogram ({type(e).__name__}: {e})") from e
    epochs = []
    for onset, duration, description in zip(annotations.onset, annotations.duration, annotations.description):
        if description not in STAGES:
            raise RecordingError(path, f"unknown sleep stage annotation {description!r} at {onset:g} s; "
                                 f"expected one of {', '.join(STAGES)}")
        n = int(np.floor(duration / EPOCH_SECONDS + 1e-6))
        epochs += [(float(onset) + offset_s + i * EPOCH_SECONDS, STAGES[description]) for i in range(n)]
    return sorted(epochs, key=lambda e: e[0])


def select_epochs(epochs: list[tuple[float, int | None]], duration_s: float, path: Path) -> list[tuple[float, int]]:
    """The epochs kept: inside the PSG, scored, from 30 min before the first sleep epoch to 30 min
    after the last one. Raises :class:`RecordingError` if the night has no sleep epoch."""
    inside = [(t, c) for t, c in epochs if t >= 0 and t + EPOCH_SECONDS <= duration_s + 1e-6]
    sleep = [t for t, c in inside if c in SLEEP_CLASSES]
    if not sleep:
        raise RecordingError(path, "scores no sleep (stage 1-4 or R) inside the PSG recording")
    first, last = sleep[0] - WAKE_MARGIN_SECONDS, sleep[-1] + WAKE_MARGIN_SECONDS
    return [(t, c) for t, c in inside if c is not None and first <= t <= last]


def read_raw(path: Path):
    # A module-level name, so tests can hand the loader a damaged recording.
    return _read_raw(path)


def zscore_epochs(x: np.ndarray) -> np.ndarray:
    """Each ``[C, T]`` epoch of ``x`` ``[N, C, T]`` z-scored per channel (a constant one becomes 0)."""
    mean, sd = x.mean(axis=-1, keepdims=True), x.std(axis=-1, keepdims=True)
    return ((x - mean) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def night_windows(psg: Path, hypnogram: Path, sample_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One night: ``(windows [6E, 2, W], labels [6E], epoch index [6E])`` of its ``E`` kept epochs."""
    psg_start, hyp_start = edf_start(psg), edf_start(hypnogram)
    offset = (hyp_start - psg_start).total_seconds() if psg_start and hyp_start else 0.0
    raw = read_raw(psg)
    for channel in PSG_CHANNELS:
        if channel not in raw.ch_names:
            raise ChannelError(psg, channel, f"missing; the protocol needs {' and '.join(PSG_CHANNELS)} "
                               f"(has {', '.join(raw.ch_names)})")
    raw.pick(list(PSG_CHANNELS))
    kept = select_epochs(hypnogram_epochs(hypnogram, offset), raw.n_times / raw.info["sfreq"], hypnogram)

    # Filter and resample only the kept stretch (a cassette PSG runs ~20 h), with context for the filter.
    tmin = max(0.0, np.floor(kept[0][0] - FILTER_CONTEXT_SECONDS))
    tmax = min(raw.times[-1], kept[-1][0] + EPOCH_SECONDS + FILTER_CONTEXT_SECONDS)
    tmin = round(tmin * raw.info["sfreq"]) / raw.info["sfreq"]
    raw.crop(tmin, tmax)
    source = raw.get_data()
    check_finite(source, CHANNEL_NAMES, psg)
    # Flatness is judged before filtering, which turns a flat line into rounding noise that the
    # z-score would blow up to unit variance.
    rate, n = raw.info["sfreq"], int(round(EPOCH_SECONDS * raw.info["sfreq"]))
    source_starts = [int(round((t - tmin) * rate)) for t, _ in kept]
    flat = np.stack([np.ptp(source[:, s:s + n], axis=1) == 0 for s in source_starts])  # [E, 2]
    # Not data_pipelines.preprocess.preprocess_recording (the codec's training-data path): that one
    # normalises over the whole recording (median / IQR, clipped) and drops flat channels, this protocol
    # z-scores each 30-s epoch and judges flatness per epoch (above). Band-pass and resampling are its
    # shared step, filter_and_resample.
    x = filter_and_resample(raw, sample_rate, l_freq=BAND_HZ[0], h_freq=BAND_HZ[1]).get_data()

    window = int(round(WINDOW_SECONDS * sample_rate))
    per_epoch = EPOCH_SECONDS // WINDOW_SECONDS
    starts = [int(round((t - tmin) * sample_rate)) for t, _ in kept]
    if starts[-1] + per_epoch * window > x.shape[1]:
        raise RecordingError(psg, f"the epoch at {kept[-1][0]:g} s runs past the end of the resampled signal")
    epochs = np.stack([x[:, s:s + per_epoch * window] for s in starts])  # [E, 2, 6W]
    epochs = zscore_epochs(epochs)
    epochs[flat] = 0.0
    windows = epochs.reshape(len(kept), len(PSG_CHANNELS), per_epoch, window).transpose(0, 2, 1, 3)
    labels = np.repeat([c for _, c in kept], per_epoch)
    index = np.repeat([int(round(t / EPOCH_SECONDS)) for t, _ in kept], per_epoch)
    return windows.reshape(-1, len(PSG_CHANNELS), window), labels, index


def load(data_dir, sample_rate: float, variant: str | None = None):
    """The kept 30-s epochs of every night as six labelled 5-s windows each (see the module doc)."""
    variant = check_variant(NAME, VARIANTS, variant)
    nights = find_nights(data_dir, variant)
    if not float(EPOCH_SECONDS * sample_rate).is_integer() or not float(WINDOW_SECONDS * sample_rate).is_integer():
        raise ValueError(f"{NAME}: {sample_rate} Hz gives no whole number of samples per 5-s window")
    x, y, subjects, names, segments = [], [], [], [], []
    skipped = SkippedFiles(f"{NAME}-{variant}")
    for psg, hypnogram, subject in nights:
        try:  # the PSG and its hypnogram go together: either one unusable skips the night (the error names which)
            windows, labels, index = night_windows(psg, hypnogram, sample_rate)
        except RecordingError as err:
            skipped(err.path, err)
            continue
        x.append(windows)
        y.append(labels)
        segments.append(index)
        subjects += [subject] * len(labels)
        names += [psg.name.removesuffix("-PSG.edf")] * len(labels)
    note = f" ({len(skipped.files)} unusable file(s) skipped)" if skipped.files else ""
    if not x:
        raise DatasetError(f"{NAME} ({variant}): none of the {len(nights)} nights under {data_dir} could be used{note}")
    y = np.concatenate(y)
    absent = absent_classes(y, CLASS_NAMES)
    if absent:
        raise DatasetError(f"{NAME} ({variant}): no epoch of stage(s) {', '.join(absent)} in the hypnograms under "
                           f"{data_dir}{note}")
    preprocessing = {
        "studies": ["cassette", "telemetry"] if variant == "all" else [variant],
        "channels": list(PSG_CHANNELS),
        "band_pass_hz": list(BAND_HZ), "filter": "FIR, zero-phase (MNE default), at 100 Hz",
        "resample_hz": [SOURCE_RATE, float(sample_rate)],
        "epochs": f"{EPOCH_SECONDS} s; stages 3+4 -> N3; '?' and movement dropped",
        "wake_margin_minutes": WAKE_MARGIN_SECONDS // 60,
        "normalisation": "per-channel z-score of each 30-s epoch",
        "normalisation_scope": "epoch",
        "window_seconds": WINDOW_SECONDS, "windows_per_epoch": EPOCH_SECONDS // WINDOW_SECONDS,
    }
    skipped.record(preprocessing)
    return LabelledWindows.build(f"{NAME}-{variant}", np.concatenate(x), y, subjects, names, CLASS_NAMES, CHANNEL_NAMES,
                                 sample_rate, preprocessing, segments=np.concatenate(segments))


make_splits = common.subject_fold_splits(N_FOLDS)


if __name__ == "__main__":  # python -m experiments.tasks.<task>: the shared command line
    sys.exit(common.main(sys.modules[__name__]))
