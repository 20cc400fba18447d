"""A tiny BCI Competition IV dataset 2a, laid out and encoded as the organisers distribute it::

    <root>/A01T.gdf  A01E.gdf  ...   one GDF 2.x file per subject and session (T: training, E: evaluation)
    <root>/A01T.mat  A01E.mat  ...   the true labels released after the competition (``classlabel``, 1..4)

Each GDF holds 25 channels at 250 Hz stored as int16 over +-100 uV: the 22 EEG channels named
as in the real files (``EEG-Fz``, ``EEG-0`` ... ``EEG-16``) and ``EOG-left``, ``EOG-central``,
``EOG-right``. The event table follows the real files' codes: a session starts with a run of eye
recordings (``32766`` new run, ``276`` eyes open, ``277`` eyes closed, ``1072`` eye movements),
then runs of trials, each run opened by ``32766``; a trial is ``768`` (start, 6 s) with its cue
2 s later (``769``-``772`` = class 1-4 in T files, ``783`` unknown in E files, 1.25 s), and a
rejected trial also carries ``1023`` at its start.

The signals let a test check what a loader makes of them: ``EEG-Fz`` has a spike exactly at each
cue, and ``EEG-C3`` carries during each trial's imagery period (cue to cue + 4 s) a tone whose
frequency names the trial's class (:data:`CLASS_HZ`); everything else is noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.synthetic_data.gdf import GDFEvent, write_gdf

SAMPLE_RATE = 250.0
EEG_CHANNELS = ("EEG-Fz", "EEG-0", "EEG-1", "EEG-2", "EEG-3", "EEG-4", "EEG-5", "EEG-C3", "EEG-6", "EEG-Cz",
                "EEG-7", "EEG-C4", "EEG-8", "EEG-9", "EEG-10", "EEG-11", "EEG-12", "EEG-13", "EEG-14", "EEG-Pz",
                "EEG-15", "EEG-16")
EOG_CHANNELS = ("EOG-left", "EOG-central", "EOG-right")
CHANNELS = EEG_CHANNELS + EOG_CHANNELS
CUE_CODE = {1: 769, 2: 770, 3: 771, 4: 772}
UNKNOWN_CUE, TRIAL_START, REJECTED, NEW_RUN = 783, 768, 1023, 32766
EYES_OPEN, EYES_CLOSED, EYE_MOVEMENTS = 276, 277, 1072
CLASS_HZ = {1: 7.0, 2: 11.0, 3: 17.0, 4: 23.0}

TRIAL_S, CUE_AT_S, CUE_S, BREAK_S = 6.0, 2.0, 1.25, 1.5
NOISE_UV, TONE_UV, SPIKE_UV = 5.0, 20.0, 60.0


@dataclass(frozen=True)
class SessionTruth:
    """What a generated session holds: its labels (1..4, in trial order), cue samples and rejected trials."""

    name: str
    labels: np.ndarray
    cue_samples: np.ndarray
    rejected: tuple[int, ...]


def balanced_labels(n_trials: int, rng: np.random.Generator) -> np.ndarray:
    """``n_trials`` labels 1..4 in random order, every class as often as possible (as the real runs)."""
    return rng.permutation(np.resize(np.arange(1, 5), n_trials)).astype(np.int64)


def write_session(
    path: str | Path,
    labels: Sequence[int],
    *,
    session: str = "T",
    rejected: Sequence[int] = (),
    cue_labels: Sequence[int] | None = None,
    channels: Sequence[str] = CHANNELS,
    trials_per_run: int = 4,
    seed: int = 0,
) -> SessionTruth:
    """Write one session GDF with a trial per entry of ``labels`` (1..4) and return its truth.

    ``session`` ``"T"`` writes class cues (``cue_labels``, default ``labels``: give other values to
    make a file that disagrees with its label file), ``"E"`` writes ``783`` for every cue.
    ``rejected``: 0-based trials marked ``1023``. ``channels``: drop some to make a bad file.
    """
    rng = np.random.default_rng(seed)
    fs = SAMPLE_RATE
    labels = np.asarray(labels, dtype=np.int64)
    cue_labels = labels if cue_labels is None else np.asarray(cue_labels, dtype=np.int64)
    events = [GDFEvent(0, NEW_RUN), GDFEvent(int(0.5 * fs), EYES_OPEN, int(1.0 * fs)),
              GDFEvent(int(2.0 * fs), EYES_CLOSED, int(1.0 * fs)), GDFEvent(int(3.5 * fs), EYE_MOVEMENTS, int(1.0 * fs))]
    t = 5.0
    starts = []
    for k in range(len(labels)):
        if k % trials_per_run == 0:
            events.append(GDFEvent(int(t * fs), NEW_RUN))
            t += 1.0
        starts.append(int(round(t * fs)))
        t += TRIAL_S + BREAK_S
    n_samples = int(round((t + 1.0) * fs))
    x = rng.normal(0.0, NOISE_UV, (len(CHANNELS), n_samples))
    cues = np.asarray(starts) + int(CUE_AT_S * fs)
    imagery = np.arange(int(4.0 * fs)) / fs
    for k, (start, cue) in enumerate(zip(starts, cues)):
        events.append(GDFEvent(start, TRIAL_START, int(TRIAL_S * fs)))
        if k in rejected:
            events.append(GDFEvent(start, REJECTED, int(TRIAL_S * fs)))
        code = CUE_CODE[int(cue_labels[k])] if session == "T" else UNKNOWN_CUE
        events.append(GDFEvent(int(cue), code, int(round(CUE_S * fs))))
        x[CHANNELS.index("EEG-Fz"), cue] += SPIKE_UV
        tone = TONE_UV * np.sin(2 * np.pi * CLASS_HZ[int(labels[k])] * imagery)
        x[CHANNELS.index("EEG-C3"), cue:cue + len(imagery)] += tone
    keep = [CHANNELS.index(c) for c in channels]
    write_gdf(path, x[keep] * 1e-6, list(channels), fs, events, patient=Path(path).stem[:3])
    return SessionTruth(Path(path).stem, labels, cues, tuple(sorted(rejected)))


def write_labels(path: str | Path, labels: Sequence[int]) -> Path:
    """The true-label file of a session: MATLAB ``classlabel`` (trials x 1, uint8, 1..4), as released."""
    from scipy.io import savemat

    savemat(str(path), {"classlabel": np.asarray(labels, dtype=np.uint8).reshape(-1, 1)})
    return Path(path)


def make_dataset(
    root: str | Path,
    subjects: Sequence[int] = (1, 6, 8),
    trials: int = 6,
    rejected: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> dict[str, SessionTruth]:
    """Write ``A{s:02d}T`` and ``A{s:02d}E`` (GDF + .mat) for each subject under ``root``.

    ``rejected`` maps a session name (``"A01T"``) to its rejected trials (default: trial 1 of
    every T session). Returns the truth of every session by name.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rejected = {f"A{s:02d}T": (1,) for s in subjects} if rejected is None else dict(rejected)
    truth = {}
    for s in subjects:
        for session in ("T", "E"):
            name = f"A{s:02d}{session}"
            labels = balanced_labels(trials, rng)
            truth[name] = write_session(root / f"{name}.gdf", labels, session=session,
                                        rejected=rejected.get(name, ()), seed=int(rng.integers(1 << 31)))
            write_labels(root / f"{name}.mat", labels)
    return truth
