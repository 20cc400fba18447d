"""A tiny Kaggle "BCI Challenge @ NER 2015" (inria-bci-challenge), laid out as Kaggle distributes it::

    <root>/train/Data_S02_Sess01.csv ...   training subjects (Kaggle: 16 subjects x 5 sessions)
    <root>/test/Data_S01_Sess01.csv ...    test subjects (Kaggle: 10 subjects x 5 sessions)
    <root>/TrainLabels.csv                 IdFeedBack,Prediction   (S02_Sess01_FB001,1 ...)
    <root>/SampleSubmission.csv            IdFeedBack,Prediction   (every test feedback, Prediction 0)
    <root>/true_labels.csv                 test labels released after the competition: one 0/1 per
                                           line, no header, in SampleSubmission.csv order
    <root>/ChannelsLocation.csv            Labels,Radius,Phi

A session CSV has the header ``Time,Fp1,...,O2,EOG,FeedBackEvent`` (56 EEG columns, spelled as in
the real files, ``P08`` included) and one row per sample at 200 Hz; ``FeedBackEvent`` is 1 at the
onset of each feedback and 0 elsewhere. Prediction 1 is good feedback (the speller chose the
intended letter), 0 bad feedback (an error).

Signals: noise on every channel; at each feedback onset a spike on ``Cz`` (to check where a loader
puts the onset) and, after bad feedback only, a negative deflection on ``FCz`` 250 ms later (an
"error-related negativity"); blinks on ``EOG`` that leak into the frontal channels (for ICA).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE_RATE = 200.0
EEG_COLUMNS = ("Fp1", "Fp2", "AF7", "AF3", "AF4", "AF8", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8",
               "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "Cz", "C2",
               "C4", "C6", "T8", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "P7", "P5", "P3",
               "P1", "Pz", "P2", "P4", "P6", "P8", "PO7", "POz", "P08", "O1", "O2")
COLUMNS = ("Time",) + EEG_COLUMNS + ("EOG", "FeedBackEvent")
TRAIN_SUBJECTS = (2, 6, 7, 11, 12, 13, 14, 16, 17, 18, 20, 21, 22, 23, 24, 26)
TEST_SUBJECTS = (1, 3, 4, 5, 8, 9, 10, 15, 19, 25)
FRONTAL = ("Fp1", "Fp2", "AF7", "AF3", "AF4", "AF8")

FIRST_FEEDBACK_S, FEEDBACK_EVERY_S, TAIL_S = 2.0, 3.0, 2.0
NOISE_UV, SPIKE_UV, ERN_UV, BLINK_UV = 10.0, 200.0, 30.0, 300.0


@dataclass(frozen=True)
class SessionTruth:
    """A generated session: its id (``S02_Sess01``), labels (0/1 per feedback) and onset samples."""

    name: str
    labels: np.ndarray
    onsets: np.ndarray


def session_name(subject: int, session: int) -> str:
    return f"S{subject:02d}_Sess{session:02d}"


def feedback_ids(truth: SessionTruth) -> list[str]:
    """``S02_Sess01_FB001`` ... for each feedback of a session, as the label files name them."""
    return [f"{truth.name}_FB{k:03d}" for k in range(1, len(truth.labels) + 1)]


def write_session(path: str | Path, labels: Sequence[int], *, columns: Sequence[str] = COLUMNS,
                  seed: int = 0) -> SessionTruth:
    """Write one session CSV with a feedback per entry of ``labels`` (1 good, 0 bad)."""
    rng = np.random.default_rng(seed)
    fs = FILE_RATE
    labels = np.asarray(labels, dtype=np.int64)
    onsets = np.round((FIRST_FEEDBACK_S + FEEDBACK_EVERY_S * np.arange(len(labels))) * fs).astype(np.int64)
    n = int(onsets[-1] + TAIL_S * fs) if len(labels) else int(5 * fs)
    eeg = rng.normal(0.0, NOISE_UV, (len(EEG_COLUMNS), n))
    # Blinks: 150-ms Gaussian bumps at random times, strong on EOG, weaker on the frontal channels.
    eog = rng.normal(0.0, NOISE_UV, n)
    t = np.arange(n)
    for centre in rng.uniform(0.5 * fs, n - 0.5 * fs, size=max(1, n // int(2 * fs))):
        bump = BLINK_UV * np.exp(-0.5 * ((t - centre) / (0.05 * fs)) ** 2)
        eog += bump
        for name in FRONTAL:
            eeg[EEG_COLUMNS.index(name)] += 0.5 * bump
    ern = -ERN_UV * np.exp(-0.5 * ((np.arange(int(0.5 * fs)) - 0.25 * fs) / (0.03 * fs)) ** 2)
    for onset, label in zip(onsets, labels):
        eeg[EEG_COLUMNS.index("Cz"), onset] += SPIKE_UV
        if label == 0:
            eeg[EEG_COLUMNS.index("FCz"), onset:onset + len(ern)] += ern
    feedback = np.zeros(n)
    feedback[onsets] = 1
    table = {"Time": t / fs, "EOG": eog, "FeedBackEvent": feedback, **dict(zip(EEG_COLUMNS, eeg))}
    matrix = np.stack([table[c] for c in columns], axis=1)
    formats = ["%.3f" if c == "Time" else "%d" if c == "FeedBackEvent" else "%.6f" for c in columns]
    np.savetxt(path, matrix, fmt=formats, delimiter=",", header=",".join(columns), comments="")
    return SessionTruth(Path(path).stem.removeprefix("Data_"), labels, onsets)


def write_id_labels(path: str | Path, truths: Sequence[SessionTruth], zero: bool = False) -> Path:
    """``IdFeedBack,Prediction`` rows for every feedback of ``truths`` (``zero``: as SampleSubmission.csv)."""
    lines = ["IdFeedBack,Prediction"]
    for truth in truths:
        lines += [f"{i},{0 if zero else int(y)}" for i, y in zip(feedback_ids(truth), truth.labels)]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def write_true_labels(path: str | Path, truths: Sequence[SessionTruth]) -> Path:
    """The post-competition test labels: one 0/1 per line, no header, in SampleSubmission.csv order."""
    values = [str(int(y)) for truth in truths for y in truth.labels]
    Path(path).write_text("\n".join(values) + "\n")
    return Path(path)


def make_dataset(
    root: str | Path,
    train_subjects: Sequence[int] = (2, 6, 7),
    test_subjects: Sequence[int] = (1, 3),
    sessions: Sequence[int] = (1, 2),
    feedbacks: int = 4,
    seed: int = 0,
) -> dict[str, SessionTruth]:
    """Write the train and test sessions and every label file under ``root``; the truth by session id.

    Each session's labels are random 0/1 with both values present (subjects are sorted, as on
    Kaggle, so the label files list sessions in the published order).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    truth: dict[str, SessionTruth] = {}
    for part, subjects in (("train", train_subjects), ("test", test_subjects)):
        (root / part).mkdir(parents=True, exist_ok=True)
        for subject in sorted(subjects):
            for session in sessions:
                name = session_name(subject, session)
                labels = rng.permutation(np.resize([1, 0, 1], feedbacks))
                truth[name] = write_session(root / part / f"Data_{name}.csv", labels, seed=int(rng.integers(1 << 31)))
    train = [truth[session_name(s, k)] for s in sorted(train_subjects) for k in sessions]
    test = [truth[session_name(s, k)] for s in sorted(test_subjects) for k in sessions]
    write_id_labels(root / "TrainLabels.csv", train)
    write_id_labels(root / "SampleSubmission.csv", test, zero=True)
    write_true_labels(root / "true_labels.csv", test)
    angles = np.linspace(0, 2 * np.pi, len(EEG_COLUMNS), endpoint=False)
    rows = [f"{name},{0.5:.4f},{phi:.4f}" for name, phi in zip(EEG_COLUMNS, angles)]
    (root / "ChannelsLocation.csv").write_text("Labels,Radius,Phi\n" + "\n".join(rows) + "\n")
    return truth
