"""Read a recording from disk into an :class:`mne.io.Raw`, choosing the MNE reader by extension.

>>> raw = read_raw("data/eegmmidb/S001/S001R04.edf")   # 64 EEG channels at 160 Hz

Supported: EDF/EDF+ (``.edf``), BDF (``.bdf``), GDF (``.gdf``), FIF (``.fif``, ``.fif.gz``),
EEGLAB (``.set``, with its ``.fdt`` alongside when the data is stored separately) and BrainVision
(``.vhdr`` header, with its ``.eeg`` and ``.vmrk``). Data are loaded into memory (``preload``) and
MNE's logging is silenced. Anything that goes wrong raises :class:`RecordingError` naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mne

from data_pipelines.errors import RecordingError

# Suffix (lower case) -> MNE reader. Longer suffixes are matched first (".fif.gz" before ".gz").
READERS: dict[str, Callable[..., mne.io.BaseRaw]] = {
    ".edf": mne.io.read_raw_edf,
    ".bdf": mne.io.read_raw_bdf,
    ".gdf": mne.io.read_raw_gdf,
    ".fif": mne.io.read_raw_fif,
    ".fif.gz": mne.io.read_raw_fif,
    ".set": mne.io.read_raw_eeglab,
    ".vhdr": mne.io.read_raw_brainvision,
}

SUPPORTED_SUFFIXES = tuple(sorted(READERS))


def recording_format(path: str | Path) -> str:
    """The supported suffix ``path`` ends with (``".edf"``, ``".fif.gz"``, ...), else RecordingError."""
    name = Path(path).name.lower()
    for suffix in sorted(READERS, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise RecordingError(
        path, f"unknown recording format {Path(path).suffix or '(no extension)'!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
    )


def read_raw(path: str | Path) -> mne.io.BaseRaw:
    """The recording at ``path`` as a preloaded :class:`mne.io.Raw` (values in SI units, e.g. volts).

    Raises :class:`RecordingError` if the extension is not supported, the file does not exist,
    or MNE cannot read it (corrupt or truncated file, missing companion file, ...).
    """
    path = Path(path)
    reader = READERS[recording_format(path)]
    if not path.is_file():
        raise RecordingError(path, "no such file")
    try:
        raw = reader(path, preload=True, verbose=False)
    except Exception as e:  # MNE raises many types (ValueError, OSError, RuntimeError, struct.error, ...)
        raise RecordingError(path, f"cannot be read ({type(e).__name__}: {e})") from e
    if raw.n_times == 0 or len(raw.ch_names) == 0:
        raise RecordingError(path, "contains no samples or no channels")
    return raw
