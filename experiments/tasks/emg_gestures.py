"""EMG gesture recognition (Myo armband readings, or Ninapro DB2 / DB3 / DB5): reads the publisher's
files (Myo: every ``<participant>-<session>/<gesture>.txt``, 8 EMG columns and a label per line;
Ninapro: ``S<n>_E<e>_A1.mat`` with ``emg``, ``restimulus``, ``rerepetition``), z-scores each
channel over each participant-session (all of its files, rest included; never per file, since a
Myo file holds one gesture), cuts 1-s windows inside the labelled gesture blocks, and scores two
protocols: ``within_participant`` (Myo: MOABB's cross-session, leave one session of a participant
out; Ninapro: within-session, the publisher's repetition split) and ``leave_one_participant_out``
(MOABB's cross-subject).

Both variants: the signal is resampled to the EMG codec's rate (``sample_rate``, 1 kHz), each
channel z-scored with the mean and SD of every resampled sample of its participant-session (Myo:
the session folder's files, rest and the all-rest ``0.txt`` included; Ninapro: every exercise file
read of the subject, who is recorded in one session), and non-overlapping 1-s windows
(:data:`WINDOW_SECONDS`) are cut inside each labelled gesture block, centred in the block; a window
never spans two blocks. No filtering. Until issue 19 each file was z-scored on its own; a Myo file
holds exactly one gesture, so that normalised the per-channel amplitude pattern (the main gesture
feature) away per class and every method sat at chance. A channel flat over a whole
participant-session skips the session's files, each with the reason (the channel and the files).
Rest is not a class by default (:data:`INCLUDE_REST`): in both datasets it fills about half of the
recording time, 7-10 times any one gesture, and "which gesture" is the question asked.
``load(..., include_rest=True)`` (``--include-rest``) adds it as class 0.

``myo`` (default)
    Raw surface EMG of a Myo armband, github.com/aljazfrancic/myo-readings-dataset (MIT). Layout
    (``--data`` is the repository as published, a folder above it, one of its reading folders or a
    folder holding the session folders; they are found at any depth, see
    :mod:`data_pipelines.datasets.myo`)::

        <participant>-<session>/<gesture>.txt      e.g. 12345-1/0.txt ... 12345-1/7.txt
        _readings_right_hand/12345-1/0.txt ...     as published (and _readings_left_hand/...)

    The recording id is the path below ``--data``, so the hand folder stays in it; the session
    is the recording id's folder (``_readings_right_hand/12345-1``), the subject the participant.
    Comma-separated lines: 8 EMG channels (int8) then the label, about 200 Hz
    (:data:`data_pipelines.datasets.myo.SAMPLE_RATE`), about 60 s a file. Within a file the label
    alternates every 5 s between 0 (rest) and the file's gesture (``0.txt`` is all rest): six
    gesture blocks a file, its *repetitions* 1-6 (a rest block belongs to the gesture block after
    it; in a file without gesture, repetition ``k`` is its ``k``-th 10-s stretch,
    :data:`MYO_CYCLE_SECONDS`). Classes: the 7 gestures (:data:`MYO_GESTURES`). The labels follow
    the on-screen cue, not the movement, so windows keep at least :data:`MYO_EDGE_SECONDS` (0.4 s;
    about 0.5 s for a 5-s block) from each block edge, where the hand is still moving between
    postures: a 5-s block gives four 1-s windows. 200 Hz EMG carries nothing above 100 Hz:
    upsampling to 1 kHz adds no content; say so when reporting.

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
    edge margin. The subject is the ``S<n>`` of the file name with its database (``DB2_S1``); its
    repetition is ``rerepetition`` (a rest block takes the repetition before it).

Protocols (:func:`make_splits`; each scored on its own, its name the key in ``results.json``), in
MOABB's terms (within-session / cross-session / cross-subject):

``within_participant``
    Myo: MOABB's *cross-session* evaluation. For each participant with at least two sessions,
    each session in turn is the test set (every window of it); the participant's other sessions
    train, except the last gesture repetition of each of them, which validates (split unit
    ``session_repetitions``, ids ``12345-1/rep6``; split names ``12345-test3``). Ninapro: the
    publisher's protocol, *within-session* (each subject is recorded in one session): per
    subject, repetitions 2, 5, 7 test and 1, 3, 4, 6, 8, 9, 10 train (DB2/DB3/DB5 record 6
    repetitions: 2, 5 test and 1, 3, 4, 6 train, their papers' split); the last training
    repetition present (10, or 6) is held out of training to validate, so the test set is
    exactly the publisher's (unit ``subject_repetitions``, ids ``DB5_S1/rep2``; one split per
    subject, named by it). Repetitions above 10 are not used.
``leave_one_participant_out``
    MOABB's *cross-subject* evaluation: each participant in turn is the test set (all its
    windows); the others train, except their last repetition (Ninapro: the last training
    repetition, 10 or 6), which validates (unit ``subject_repetitions``). Needs two
    participants.

A protocol the data cannot support (no participant with two sessions; one participant) is left
out with a warning; :class:`DatasetError` if none can be run.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from biocodec_jax.evaluation.splits import Split
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

FILES = """\
myo: every <participant>-<session>/<gesture>.txt at any depth under --data (the published repository:
  _readings_right_hand/12345-1/0.txt ... 7.txt). Each line: 8 EMG values, then the label, comma-separated
  (about 200 Hz); labels 0 (rest) .. 7, one gesture per file. Skipped with the reason (listed in
  results.json): a file that is not CSV, has another column count or a label outside 0..7, and every file
  of a session with a channel flat over the whole session. Other files are named in a warning and passed
  over (README, LICENSE, *.md, images silently). The run fails if no gesture window is left or a gesture
  has no window.
ninapro: every S<n>_E<e>_A1.mat (or S<n>_A1_E<e>.mat) under --data; the database from the nearest DB<n>
  folder, else the channel count (12: DB2, 16: DB5). Variables: emg [samples, channels] (12 for DB2/DB3,
  16 for DB5), restimulus and rerepetition (one per sample), frequency if present (else 2000 / 200 Hz).
  Exercises: DB2/DB3 E1-E2, DB5 E1-E3 (others are logged and skipped). Skipped with the reason: an
  unreadable file, a missing variable, a wrong channel count or length, movement ids outside the
  exercise. The run fails on databases with different channel counts, no window, or a movement without
  a window.
normalisation: per-channel z-score over each participant-session (all its files, rest included), never
  per file.
"""

WINDOW_SECONDS = 1.0
INCLUDE_REST = False

MYO_GESTURES = ("flexion", "extension", "radial deviation", "ulnar deviation", "pronation", "supination", "fist")
MYO_EDGE_SECONDS = 0.4
MYO_CYCLE_SECONDS = 10.0  # one rest + gesture cycle of a Myo file: the repetition of a file without gesture

# The Ninapro publishers' repetition split (DB1's 10 repetitions; DB2/DB3/DB5 record 6, and
# the same lists restricted to 1-6 are their papers' split: 1, 3, 4, 6 train, 2, 5 test).
NINAPRO_TRAIN_REPETITIONS = (1, 3, 4, 6, 8, 9, 10)
NINAPRO_TEST_REPETITIONS = (2, 5, 7)

NORMALISATION = "per-channel z-score over each participant-session (all its files, rest included), never per file"
NORMALISATION_SCOPE = "participant-session"


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


def rest_repetitions(repetitions: list[int], moving: list[bool], after: bool) -> list[int]:
    """Each block's repetition, rest blocks (``moving`` False) given one of a movement block:
    the next movement block's (``after``; Myo, where rest precedes its gesture) or the previous
    one's (Ninapro, where rest follows its repetition), else the nearest one on the other side.
    Unchanged if no block moves."""
    out = list(repetitions)
    moves = [i for i, m in enumerate(moving) if m]
    if not moves:
        return out
    for i, m in enumerate(moving):
        if m:
            continue
        later = [j for j in moves if j > i]
        earlier = [j for j in moves if j < i]
        if after:
            out[i] = repetitions[later[0]] if later else repetitions[earlier[-1]]
        else:
            out[i] = repetitions[earlier[-1]] if earlier else repetitions[later[0]]
    return out


def channel_moments(x: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(n, mean, m2)`` of each channel of ``x`` ``[C, T]`` (``m2``: sum of squared deviations),
    float64, to be pooled over the files of a session by :func:`pool_moments`."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=1)
    return x.shape[1], mean, ((x - mean[:, None]) ** 2).sum(axis=1)


def pool_moments(a, b):
    """The moments of two sets of samples together (Chan et al.'s pairwise update); ``a`` may be None."""
    if a is None:
        return b
    (na, ma, sa), (nb, mb, sb) = a, b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), sa + sb + delta ** 2 * (na * nb / n)


def resampled(emg: np.ndarray, channel_names, source_rate: float, sample_rate: float, source) -> np.ndarray:
    """``emg`` ``[C, T]`` resampled to ``sample_rate`` (float64, not normalised)."""
    # Not data_pipelines.preprocess.preprocess_recording (the codec's training-data path): this task
    # z-scores over each participant-session (mean / SD) and keeps all 8 (Myo) or every (Ninapro)
    # channel in order, where that one normalises each recording by median / IQR with clipping and
    # drops unusable channels. Resampling is the shared step, filter_and_resample.
    raw = filter_and_resample(raw_from_array(emg, list(channel_names), source_rate, "emg", source), sample_rate)
    return raw.get_data()


def cut_windows(x: np.ndarray, blocks, source_rate: float, sample_rate: float, margin_s: float):
    """The windows of each ``(start, stop, label, repetition)`` block (source-rate samples) of ``x``
    ``[C, T]`` (at ``sample_rate``): ``(windows, labels, repetitions, starts)``, windows float32
    copies, starts in ``sample_rate`` samples. A block's repetition None: the window's
    :data:`MYO_CYCLE_SECONDS` stretch of the file (1-based)."""
    ratio, window = sample_rate / source_rate, int(round(WINDOW_SECONDS * sample_rate))
    windows, labels, repetitions, starts = [], [], [], []
    for start, stop, label, repetition in blocks:
        for s in block_window_starts(start * ratio, min(stop * ratio, x.shape[1]), window, margin_s * sample_rate):
            windows.append(x[:, s:s + window].astype(np.float32))
            labels.append(label)
            repetitions.append(repetition if repetition is not None
                               else 1 + int((s + window / 2) / sample_rate // MYO_CYCLE_SECONDS))
            starts.append(s)
    return windows, labels, repetitions, starts


def zscore_sessions(windows: list[np.ndarray], sessions: list[str], moments: dict, files: dict, channel_names,
                    unusable: SkippedFiles) -> list[bool]:
    """Z-score each window in place with its session's per-channel mean and SD (``moments[session]``,
    pooled over every sample of the session's ``files[session]``). Returns which windows are kept: a
    session with a channel flat over all its files is dropped, each of its files listed in ``unusable``
    with a :class:`ChannelError` naming the channel and the session's files."""
    scale = {}
    for session, (n, mean, m2) in moments.items():
        sd = np.sqrt(m2 / n)
        flat = np.flatnonzero(~(sd > 0))
        if flat.size:
            names = ", ".join(Path(p).name for p in files[session])
            for path in files[session]:
                unusable(path, ChannelError(path, channel_names[int(flat[0])],
                                            f"flat over the whole session {session} (its {len(files[session])} "
                                            f"file(s): {names}); cannot z-score the session"))
            continue
        scale[session] = (mean[:, None], sd[:, None])
    keep = []
    for i, (w, session) in enumerate(zip(windows, sessions)):
        if session in scale:
            mean, sd = scale[session]
            windows[i] = ((w - mean) / sd).astype(np.float32)
        keep.append(session in scale)
    return keep


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


def _kept(keep: list[bool], *lists: list) -> list[list]:
    return [[v for v, k in zip(values, keep) if k] for values in lists]


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


def myo_blocks(labels: np.ndarray) -> list[tuple[int, int, int, int | None]]:
    """``(start, stop, label, repetition)`` of each labelled block of a Myo file (samples, stop
    exclusive). Gesture block ``k`` is repetition ``k``; a rest block belongs to the gesture block
    after it (the last one's after the last); in a file without gesture the repetition is None (per
    window: its :data:`MYO_CYCLE_SECONDS` stretch, :func:`cut_windows`)."""
    blocks = label_blocks(labels)
    moving = [label > 0 for _, _, label in blocks]
    count = np.cumsum(moving).tolist()
    repetitions = rest_repetitions(count, moving, after=True) if any(moving) else [None] * len(blocks)
    return [(a, b, label, r) for (a, b, label), r in zip(blocks, repetitions)]


def session_of(recording_id: str) -> str:
    """The session of a Myo recording: its folder (``_readings_right_hand/12345-1`` of
    ``_readings_right_hand/12345-1/3``)."""
    return recording_id.rsplit("/", 1)[0]


def load_myo(root: Path, sample_rate: float, include_rest: bool = INCLUDE_REST):
    refs, skipped = MyoDataset().find(root)
    for s in skipped:
        log.warning("%s: skipping %s: %s", NAME, s.path, s.reason)
    if not refs:
        raise DatasetError(f"{NAME} (myo): no recordings under {root}; expected {MYO_LAYOUT}")
    class_names = (("rest",) if include_rest else ()) + MYO_GESTURES
    offset = 0 if include_rest else -1  # file label -> class index
    x, y, subjects, recordings, sessions, repetitions = [], [], [], [], [], []
    moments, session_files = {}, defaultdict(list)  # per session: pooled channel moments, the files read
    unusable = SkippedFiles(NAME)
    for ref in refs:
        path = root / ref.path
        session = session_of(ref.recording_id)
        try:
            emg, labels = read_myo(path)
            signal = resampled(emg, CHANNEL_NAMES, SAMPLE_RATE, sample_rate, path)
        except RecordingError as err:
            unusable(path, err)
            continue
        # Every sample of the session's files (rest and 0.txt included) enters its statistics.
        moments[session] = pool_moments(moments.get(session), channel_moments(signal))
        session_files[session].append(path)
        blocks = [(a, b, label + offset, r) for a, b, label, r in myo_blocks(labels) if include_rest or label > 0]
        windows, window_labels, window_repetitions, _ = cut_windows(signal, blocks, SAMPLE_RATE, sample_rate, MYO_EDGE_SECONDS)
        x += windows
        y += window_labels
        repetitions += window_repetitions
        subjects += [ref.subject] * len(windows)
        recordings += [ref.recording_id] * len(windows)
        sessions += [session] * len(windows)
    keep = zscore_sessions(x, sessions, moments, session_files, CHANNEL_NAMES, unusable)
    x, y, subjects, recordings, sessions, repetitions = _kept(keep, x, y, subjects, recordings, sessions, repetitions)
    if not x:
        raise DatasetError(f"{NAME} (myo): no gesture (label 1-7) of at least {WINDOW_SECONDS + 2 * MYO_EDGE_SECONDS:g} s "
                           f"in the {len(refs)} recording(s) under {root}"
                           + _skipped_note(unusable))
    _check_classes(f"{NAME} (myo)", y, class_names, root, unusable)
    preprocessing = {
        "resample_hz": [SAMPLE_RATE, float(sample_rate)],
        "normalisation": NORMALISATION, "normalisation_scope": NORMALISATION_SCOPE,
        "window_seconds": WINDOW_SECONDS, "edge_margin_seconds": MYO_EDGE_SECONDS,
        "windows": "non-overlapping, centred in each labelled block", "rest": "class" if include_rest else "dropped",
        "repetitions": "gesture block of the file (1-based); rest: the gesture block after it",
    }
    unusable.record(preprocessing)
    return LabelledWindows.build(f"{NAME}-myo", x, y, subjects, recordings, class_names, CHANNEL_NAMES, sample_rate,
                                 preprocessing, sessions=sessions, repetitions=repetitions)


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


def ninapro_blocks(restimulus: np.ndarray, repetition: np.ndarray, include_rest: bool) -> list[tuple[int, int, int, int]]:
    """``(start, stop, movement, repetition)`` of each block of constant ``restimulus`` and
    ``rerepetition`` (a rest block takes the repetition before it, or after it at the file's start);
    rest blocks only with ``include_rest``."""
    blocks = label_blocks(restimulus, repetition)
    moving = [label > 0 for _, _, label in blocks]
    reps = rest_repetitions([int(repetition[a]) for a, _, _ in blocks], moving, after=False)
    return [(a, b, label, r) for (a, b, label), r in zip(blocks, reps) if include_rest or label > 0]


def load_ninapro(root: Path, sample_rate: float, include_rest: bool = INCLUDE_REST):
    files = find_ninapro(root)
    if not files:
        raise DatasetError(f"{NAME} (ninapro): no Ninapro .mat files under {root}; expected {NINAPRO_LAYOUT}")
    x, movements, subjects, recordings, repetitions = [], [], [], [], []
    moments, session_files = {}, defaultdict(list)  # per subject (one session): pooled channel moments, the files read
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
            names = [f"EMG{i}" for i in range(1, spec.n_channels + 1)]
            signal = resampled(emg.T, names, rate, sample_rate, path)
        except RecordingError as err:
            unusable(path, err)
            continue
        channels.setdefault(spec.n_channels, path)
        databases.add(database)
        rates.add(rate)
        used.add((database, exercise))
        who = f"{database}_S{subject}"  # DB2 and DB3 both number from S1
        # The subject's one session: every sample of its exercise files (rest included) enters the statistics.
        moments[who] = pool_moments(moments.get(who), channel_moments(signal))
        session_files[who].append(path)
        windows, labels, window_repetitions, _ = cut_windows(signal, ninapro_blocks(restimulus, repetition, include_rest),
                                                             rate, sample_rate, 0.0)
        x += windows
        movements += labels
        repetitions += window_repetitions
        subjects += [who] * len(windows)
        recordings += [path.relative_to(root).with_suffix("").as_posix()] * len(windows)
    names = [f"EMG{i}" for i in range(1, max(channels, default=0) + 1)]  # for a flat channel's message
    keep = zscore_sessions(x, subjects, moments, session_files, names, unusable)
    x, movements, subjects, recordings, repetitions = _kept(keep, x, movements, subjects, recordings, repetitions)
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
        "normalisation": NORMALISATION + " (a Ninapro subject is recorded in one session: all its exercise files)",
        "normalisation_scope": NORMALISATION_SCOPE, "window_seconds": WINDOW_SECONDS,
        "windows": "non-overlapping, centred in each repetition", "rest": "class" if include_rest else "dropped",
        "repetitions": "rerepetition (rest: the repetition before it)",
    }
    unusable.record(preprocessing)
    names = [f"EMG{i}" for i in range(1, next(iter(channels)) + 1)]
    return LabelledWindows.build(f"{NAME}-ninapro", x, y, subjects, recordings, class_names, names, sample_rate,
                                 preprocessing, sessions=subjects, repetitions=repetitions)


# ------------------------------------------------------------------------------------------ task

def add_arguments(group) -> None:
    """The task's own options (``--include-rest``)."""
    group.add_argument("--include-rest", action="store_true", default=INCLUDE_REST,
                       help="add rest as class 0 (default: the gestures only)")


def load(data_dir, sample_rate: float, variant: str | None = None, *, include_rest: bool = INCLUDE_REST):
    """The variant's labelled 1-s EMG windows under ``data_dir`` (see the module doc), z-scored per
    participant-session, with ``sessions`` and ``repetitions`` for the protocols (:func:`make_splits`)."""
    variant = check_variant(NAME, VARIANTS, variant)
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{NAME}: {root} is not a directory; expected {MYO_LAYOUT if variant == 'myo' else NINAPRO_LAYOUT}")
    if variant == "myo":
        return load_myo(root, sample_rate, include_rest)
    return load_ninapro(root, sample_rate, include_rest)


# ------------------------------------------------------------------------------------- protocols

def _units(ids: np.ndarray, pick: np.ndarray) -> list[str]:
    return sorted(set(ids[pick].tolist()))


def _session_key(session: str):
    """Sort key of a Myo session id: its folders, then the session number (``12345-2`` before ``12345-10``)."""
    head, _, number = session.rpartition("-")
    return (head, int(number)) if number.isdigit() else (head, -1)


def _require(data: LabelledWindows, *what: str) -> None:
    absent = [w for w in what if getattr(data, w) is None]
    if absent:
        raise DatasetError(f"{data.name}: the windows carry no {' or '.join(absent)}; "
                           f"load them with experiments.tasks.{NAME}.load")


def myo_within_participant(data: LabelledWindows) -> list[Split]:
    """MOABB's cross-session evaluation: per participant, each of its sessions in turn tests (every
    window of it); the other sessions train, the last gesture repetition of each validates. Unit
    ``session_repetitions``; participants with one session are left out. :class:`DatasetError` if
    no participant has two sessions."""
    _require(data, "sessions", "repetitions")
    ids = data.unit_ids("session_repetitions")
    splits, single = [], []
    for participant in sorted(set(data.subjects.tolist())):
        mine = data.subjects == participant
        sessions = sorted(set(data.sessions[mine].tolist()), key=_session_key)
        if len(sessions) < 2:
            single.append(participant)
            continue
        for test in sessions:
            train, val = [], []
            for session in sessions:
                if session == test:
                    continue
                here = data.sessions == session
                last = f"{session}/rep{int(data.repetitions[here].max())}"
                val.append(last)
                train += [u for u in _units(ids, here) if u != last]
            splits.append(Split(f"{test.rsplit('-', 1)[0]}-test{test.rsplit('-', 1)[1]}", tuple(sorted(train)),
                                tuple(sorted(val)), tuple(_units(ids, data.sessions == test)), unit="session_repetitions"))
    if not splits:
        raise DatasetError(f"{data.name}: within-participant (cross-session) splits need a participant with at "
                           f"least 2 sessions; each of {', '.join(single)} has one")
    if single:
        log.warning("%s: within_participant: participant(s) %s have one session; left out of the protocol",
                    data.name, ", ".join(single))
    return splits


def leave_one_participant_out(data: LabelledWindows, last_repetition) -> list[Split]:
    """MOABB's cross-subject evaluation: each participant in turn tests (all its windows); the others
    train, except repetition ``last_repetition(mask)`` of each (``mask``: that participant's windows),
    which validates. Unit ``subject_repetitions``; needs at least 2 participants."""
    _require(data, "repetitions")
    ids = data.unit_ids("subject_repetitions")
    participants = sorted(set(data.subjects.tolist()))
    if len(participants) < 2:
        raise DatasetError(f"{data.name}: leave-one-participant-out splits need at least 2 participants; "
                           f"got {', '.join(participants)}")
    splits = []
    for test in participants:
        train, val = [], []
        for other in participants:
            if other == test:
                continue
            mine = data.subjects == other
            held = f"{other}/rep{last_repetition(mine)}"
            val.append(held)
            train += [u for u in _units(ids, mine) if u != held]
        splits.append(Split(f"{test}-test", tuple(sorted(train)), tuple(sorted(val)),
                            tuple(_units(ids, data.subjects == test)), unit="subject_repetitions"))
    return splits


def ninapro_training_repetitions(data: LabelledWindows, mine: np.ndarray) -> list[int]:
    """The publisher's training repetitions (:data:`NINAPRO_TRAIN_REPETITIONS`) present in the windows ``mine``."""
    present = set(data.repetitions[mine].tolist())
    return [r for r in NINAPRO_TRAIN_REPETITIONS if r in present]


def ninapro_within_participant(data: LabelledWindows) -> list[Split]:
    """The publisher's protocol per subject (within-session): repetitions 2, 5, 7 test, the training
    repetitions 1, 3, 4, 6, 8, 9, 10 train except the last present (10, or 6 in DB2/DB3/DB5), which
    validates. Unit ``subject_repetitions``; :class:`DatasetError` naming a subject without two
    training repetitions or without a test repetition."""
    _require(data, "repetitions")
    ids = data.unit_ids("subject_repetitions")
    splits = []
    for subject in sorted(set(data.subjects.tolist())):
        mine = data.subjects == subject
        training = ninapro_training_repetitions(data, mine)
        test = [r for r in NINAPRO_TEST_REPETITIONS if r in set(data.repetitions[mine].tolist())]
        if len(training) < 2 or not test:
            raise DatasetError(f"{data.name}: subject {subject} has repetitions "
                               f"{sorted(set(data.repetitions[mine].tolist()))}; the publisher's protocol needs "
                               f"test repetitions {NINAPRO_TEST_REPETITIONS} and two of {NINAPRO_TRAIN_REPETITIONS} "
                               f"(one to validate)")
        unit = lambda r: f"{subject}/rep{r}"  # noqa: E731
        splits.append(Split(subject, tuple(sorted(map(unit, training[:-1]))), (unit(training[-1]),),
                            tuple(sorted(map(unit, test))), unit="subject_repetitions"))
    return splits


def make_splits(data: LabelledWindows, variant: str | None = None, seed: int = 0) -> dict[str, list[Split]]:
    """``{"within_participant": [...], "leave_one_participant_out": [...]}``: the two protocols of the
    module doc, each scored on its own. Deterministic (``seed`` is not used). A protocol the data
    cannot support is left out with a warning; :class:`DatasetError` if neither can be run."""
    variant = check_variant(NAME, VARIANTS, variant or data.name.rpartition("-")[2])
    if variant == "myo":
        within = myo_within_participant
        last = lambda mine: int(data.repetitions[mine].max())  # noqa: E731
    else:
        within = ninapro_within_participant

        def last(mine):
            training = ninapro_training_repetitions(data, mine)
            return training[-1] if training else int(data.repetitions[mine].max())
    protocols, errors = {}, []
    for name, build in (("within_participant", within),
                        ("leave_one_participant_out", lambda d: leave_one_participant_out(d, last))):
        try:
            protocols[name] = build(data)
        except DatasetError as err:
            errors.append(f"{name}: {err}")
    if not protocols:
        raise DatasetError("; ".join(errors))
    for error in errors:
        log.warning("%s: protocol left out: %s", data.name, error)
    return protocols


if __name__ == "__main__":  # python -m experiments.tasks.<task>: the shared command line
    sys.exit(common.main(sys.modules[__name__]))
