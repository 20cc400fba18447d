"""A tiny TUH Abnormal EEG Corpus (TUAB v3.0.x), laid out as the publisher distributes it::

    <root>/edf/{train,eval}/{normal,abnormal}/01_tcp_ar/<subject>_s<session>_t<token>.edf

e.g. ``edf/train/abnormal/01_tcp_ar/aaaaamye_s001_t000.edf`` (the layout of v3.0.0/v3.0.1, as read
by LaBraM's and BIOT's TUAB scripts and braindecode's ``TUHAbnormal``). Recordings are TUH-style
EDF (:mod:`tests.synthetic_data.tuh`), a few tens of seconds long instead of ~20 minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.synthetic_data.tuh import write_tuh_edf

MONTAGE_FOLDERS = {"ar": "01_tcp_ar", "le": "02_tcp_le"}


@dataclass(frozen=True)
class TuabRecording:
    """What :func:`make_tuab` wrote for one recording."""

    path: Path
    partition: str  # "train" | "eval"
    label: str  # "normal" | "abnormal"
    subject: str
    session: int
    sample_rate: float
    duration_s: int


# (partition, label, subject, session, rate, seconds): rates as in TUAB (250/256/512 Hz); subject
# aaaaaaaa has a normal and an abnormal session in train, as TUAB subjects can.
DEFAULT_RECORDINGS = (
    ("train", "normal", "aaaaaaaa", 1, 250.0, 40),
    ("train", "normal", "aaaaaaab", 1, 256.0, 45),
    ("train", "abnormal", "aaaaaaac", 1, 250.0, 40),
    ("train", "abnormal", "aaaaaaad", 2, 512.0, 40),
    ("train", "abnormal", "aaaaaaaa", 2, 250.0, 50),
    ("eval", "normal", "aaaaaaae", 1, 250.0, 40),
    ("eval", "abnormal", "aaaaaaaf", 3, 256.0, 55),
)


def tuab_path(root: str | Path, partition: str, label: str, subject: str, session: int, token: int = 0,
              montage: str = "ar") -> Path:
    """Where TUAB keeps a recording."""
    return Path(root) / "edf" / partition / label / MONTAGE_FOLDERS[montage] / f"{subject}_s{session:03d}_t{token:03d}.edf"


def make_tuab(root: str | Path, recordings: Sequence[tuple] = DEFAULT_RECORDINGS, *, montage: str = "ar",
              drop: dict[str, Sequence[str]] | None = None, flat: dict[str, Sequence[str]] | None = None,
              seed: int = 0) -> list[TuabRecording]:
    """Write a TUAB copy under ``root``; ``drop`` / ``flat`` map a subject to channel labels its files
    lack / record as a flat line."""
    written = []
    for i, (partition, label, subject, session, rate, seconds) in enumerate(recordings):
        path = tuab_path(root, partition, label, subject, session, montage=montage)
        write_tuh_edf(path, subject, seconds, rate, montage=montage, drop=(drop or {}).get(subject, ()),
                      flat=(flat or {}).get(subject, ()), seed=seed + i)
        written.append(TuabRecording(path, partition, label, subject, session, rate, seconds))
    return written
