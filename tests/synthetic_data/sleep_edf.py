"""A tiny Sleep-EDF Database Expanded (PhysioNet sleep-edfx 1.0.0), laid out as PhysioNet distributes it::

    <root>/sleep-cassette/SC4ssNE0-PSG.edf   + SC4ssNEx-Hypnogram.edf   (ss subject, N night)
    <root>/sleep-telemetry/ST7ssNJ0-PSG.edf  + ST7ssNJx-Hypnogram.edf

PSG files are plain EDF with 30-s data records: cassette files hold ``EEG Fpz-Cz``, ``EEG Pz-Oz``,
``EOG horizontal`` at 100 Hz and ``Resp oro-nasal``, ``EMG submental``, ``Temp rectal``,
``Event marker`` at 1 Hz; telemetry files ``EEG Fpz-Cz``, ``EEG Pz-Oz``, ``EOG horizontal``,
``EMG submental`` at 100 Hz and ``Marker`` at 1 Hz. A hypnogram is an annotations-only EDF+C file
(one data record of duration 0, as SC4001EC-Hypnogram.edf) whose TALs give each run of 30-s
epochs: ``Sleep stage W``, ``1``, ``2``, ``3``, ``4``, ``R``, ``?``, ``Movement time``; the last,
``Sleep stage ?``, runs past the end of the PSG as in the real files.

``EEG Fpz-Cz`` carries in each 30-s epoch a tone whose frequency says the epoch's stage
(:data:`STAGE_HZ`) and ``EEG Pz-Oz`` a fixed tone (:data:`PZ_OZ_HZ`), so a test can check both
the channel order and that every window got its own epoch's label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from tests.synthetic_data.edf import EdfAnnotation, EdfSignal, write_edf

EPOCH_S = 30
EEG_RATE = 100.0
STAGE_HZ = {"Sleep stage W": 5.0, "Sleep stage 1": 7.0, "Sleep stage 2": 9.0, "Sleep stage 3": 11.0,
            "Sleep stage 4": 11.0, "Sleep stage R": 13.0, "Sleep stage ?": 3.0, "Movement time": 3.0}
PZ_OZ_HZ = 17.0

CASSETTE_CHANNELS = (("EEG Fpz-Cz", 100.0, "uV"), ("EEG Pz-Oz", 100.0, "uV"), ("EOG horizontal", 100.0, "uV"),
                     ("Resp oro-nasal", 1.0, ""), ("EMG submental", 1.0, "uV"), ("Temp rectal", 1.0, "DegC"),
                     ("Event marker", 1.0, ""))
TELEMETRY_CHANNELS = (("EEG Fpz-Cz", 100.0, "uV"), ("EEG Pz-Oz", 100.0, "uV"), ("EOG horizontal", 100.0, "uV"),
                      ("EMG submental", 100.0, "uV"), ("Marker", 1.0, ""))

# A night: 35 min of wake, a short sleep period with every stage (and an unscored epoch and a
# movement epoch inside it), 35 min of wake, then unscored epochs. 167 epochs; the PSG stops 5
# epochs before the hypnogram does.
LONG_NIGHT = (("Sleep stage W", 70), ("Sleep stage 1", 2), ("Sleep stage 2", 4), ("Sleep stage ?", 1),
              ("Sleep stage 3", 2), ("Sleep stage 4", 2), ("Movement time", 1), ("Sleep stage R", 3),
              ("Sleep stage 2", 2), ("Sleep stage W", 70), ("Sleep stage ?", 10))
# Less wake around the sleep than the usual 30-min margin: all of it is kept.
SHORT_NIGHT = (("Sleep stage W", 10), ("Sleep stage 2", 3), ("Sleep stage R", 2), ("Sleep stage 1", 1),
               ("Sleep stage W", 5), ("Sleep stage ?", 8))
PSG_SHORTER_BY_EPOCHS = 5

# (study, subject, night, stages): cassette subjects 00-02, telemetry subjects 01-02 (different
# people from cassette 01-02; the studies number their subjects separately).
DEFAULT_RECORDINGS = (
    ("SC", 0, 1, LONG_NIGHT), ("SC", 0, 2, SHORT_NIGHT), ("SC", 1, 1, SHORT_NIGHT), ("SC", 2, 1, SHORT_NIGHT),
    ("ST", 1, 1, LONG_NIGHT), ("ST", 2, 1, SHORT_NIGHT),
)


@dataclass(frozen=True)
class SleepRecording:
    """What :func:`make_sleep_edf` wrote for one night."""

    psg: Path
    hypnogram: Path
    study: str  # "SC" | "ST"
    subject: int
    night: int
    stages: tuple[tuple[str, int], ...]


def file_names(study: str, subject: int, night: int, scorer: str = "C") -> tuple[str, str]:
    """``("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf")`` and the telemetry equivalents."""
    if study == "SC":
        code = f"SC4{subject:02d}{night}E"
    elif study == "ST":
        code = f"ST7{subject:02d}{night}J"
    else:
        raise ValueError(f"study must be 'SC' or 'ST'; got {study!r}")
    return f"{code}0-PSG.edf", f"{code}{scorer}-Hypnogram.edf"


def epoch_descriptions(stages: Sequence[tuple[str, int]]) -> list[str]:
    """The stage of every 30-s epoch of a night."""
    return [d for d, n in stages for _ in range(n)]


def write_night(psg: Path, hypnogram: Path, study: str, stages: Sequence[tuple[str, int]], *, drop: Sequence[str] = (),
                flat_epochs: Sequence[int] = (), seed: int = 0) -> None:
    """One night's PSG and hypnogram; ``flat_epochs``: epochs in which ``EEG Fpz-Cz`` is a flat line."""
    rng = np.random.default_rng(seed)
    epochs = epoch_descriptions(stages)
    n_epochs = len(epochs) - PSG_SHORTER_BY_EPOCHS
    seconds = n_epochs * EPOCH_S
    t = np.arange(int(seconds * EEG_RATE)) / EEG_RATE
    stage_hz = np.repeat([STAGE_HZ[d] for d in epochs[:n_epochs]], int(EPOCH_S * EEG_RATE))
    # Phase-continuous tone whose frequency follows the hypnogram.
    fpz_cz = 40.0 * np.sin(2 * np.pi * np.cumsum(stage_hz) / EEG_RATE) + rng.normal(0, 2.0, t.size)
    for e in flat_epochs:
        fpz_cz[int(e * EPOCH_S * EEG_RATE):int((e + 1) * EPOCH_S * EEG_RATE)] = 0.0
    signals = []
    for label, rate, unit in CASSETTE_CHANNELS if study == "SC" else TELEMETRY_CHANNELS:
        if label in drop:
            continue
        n = int(seconds * rate)
        if label == "EEG Fpz-Cz":
            data = fpz_cz
        elif label == "EEG Pz-Oz":
            data = 30.0 * np.sin(2 * np.pi * PZ_OZ_HZ * t) + rng.normal(0, 2.0, n)
        elif label == "Temp rectal":
            data = 37.0 + rng.normal(0, 0.05, n)
        elif "arker" in label:
            data = np.zeros(n)
            data[::97] = 1.0
        else:
            data = rng.normal(0, 20.0, n)
        signals.append(EdfSignal(label, data, rate, physical_dimension=unit))
    start = datetime(1989, 4, 24, 16, 13, 0)
    header = dict(patient="X F X Female_33yr", recording="Startdate 24-APR-1989 X X X", start=start)
    write_edf(psg, signals, record_duration=EPOCH_S, **header)
    annotations, onset = [], 0.0
    for description, n in stages:
        annotations.append(EdfAnnotation(onset, n * EPOCH_S, description))
        onset += n * EPOCH_S
    write_edf(hypnogram, [], record_duration=0.0, annotations=annotations, **header)


def make_sleep_edf(root: str | Path, recordings: Sequence[tuple] = DEFAULT_RECORDINGS, *,
                   drop: dict[str, Sequence[str]] | None = None, flat_epochs: dict[str, Sequence[int]] | None = None,
                   seed: int = 0) -> list[SleepRecording]:
    """Write a Sleep-EDF copy under ``root``; ``drop`` maps a PSG file name to channel labels it lacks,
    ``flat_epochs`` to epochs in which its ``EEG Fpz-Cz`` is a flat line."""
    written = []
    for i, (study, subject, night, stages) in enumerate(recordings):
        folder = Path(root) / ("sleep-cassette" if study == "SC" else "sleep-telemetry")
        folder.mkdir(parents=True, exist_ok=True)
        psg_name, hyp_name = file_names(study, subject, night, scorer="CHJMPV"[i % 6])
        psg, hyp = folder / psg_name, folder / hyp_name
        write_night(psg, hyp, study, stages, drop=(drop or {}).get(psg_name, ()),
                    flat_epochs=(flat_epochs or {}).get(psg_name, ()), seed=seed + i)
        written.append(SleepRecording(psg, hyp, study, subject, night, tuple(stages)))
    return written
