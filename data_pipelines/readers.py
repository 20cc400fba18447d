"""Read a recording from disk into an :class:`mne.io.Raw`, choosing the MNE reader by extension.

>>> raw = read_raw("data/eegmmidb/S001/S001R04.edf")   # 64 EEG channels at 160 Hz

Supported: EDF/EDF+ (``.edf``), BDF (``.bdf``), GDF (``.gdf``), FIF (``.fif``, ``.fif.gz``),
EEGLAB (``.set``, with its ``.fdt`` alongside when the data is stored separately) and BrainVision
(``.vhdr`` header, with its ``.eeg`` and ``.vmrk``). Data are loaded into memory (``preload``); MNE's
logging and warnings are silenced, except that a truncated EDF/BDF (which MNE would read in part)
is an error. Anything that goes wrong raises :class:`RecordingError` naming the file.
"""

from __future__ import annotations

import warnings
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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = reader(path, preload=True, verbose=False)
    except Exception as e:  # MNE raises many types (ValueError, OSError, RuntimeError, struct.error, ...)
        content = sniff_format(path)
        hint = ""
        if content is not None and content != recording_format(path):
            hint = f"; its content looks like {content}, not {recording_format(path)}: wrong extension?"
        raise RecordingError(path, f"cannot be read ({type(e).__name__}: {e}){hint}") from e
    for w in caught:
        # MNE reads a truncated EDF/BDF "inferring from the file size": the tail of the recording
        # is gone and the header lies about it. Treat it as the corrupt file it is.
        if "does not match the file size" in str(w.message):
            raise RecordingError(path, f"truncated or damaged: {w.message}")
    if raw.n_times == 0 or len(raw.ch_names) == 0:
        raise RecordingError(path, "contains no samples or no channels")
    return raw


# First bytes of the binary formats (EDF's version field is "0" padded with spaces to 8 bytes).
_MAGIC = ((b"0       ", ".edf"), (b"\xffBIOSEMI", ".bdf"), (b"GDF", ".gdf"), (b"\x1f\x8b", ".gz (compressed)"))


def sniff_format(path: str | Path) -> str | None:
    """What the first bytes of ``path`` say it is (``".edf"``, ``".bdf"``, ``"text"``...), None if unknown."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "text"
    return None


def raw_from_array(
    data, channel_names: list[str], sample_rate: float, ch_type: str, source: str | Path
) -> mne.io.RawArray:
    """An :class:`mne.io.RawArray` ``[C, T]`` for data read by a dataset adapter (text, CSV, MAT).

    ``source`` is remembered for error messages (MNE keeps no file name for in-memory data).
    """
    info = mne.create_info(list(channel_names), float(sample_rate), ch_type)
    raw = mne.io.RawArray(data, info, verbose=False)
    raw._filenames = [str(source)]  # what errors.source_of reads; MNE's own readers set it too
    return raw
