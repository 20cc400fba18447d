"""Read a recording from disk into an :class:`mne.io.Raw`, choosing the MNE reader by extension.

>>> raw = read_raw("data/eegmmidb/S001/S001R04.edf")   # 64 EEG channels at 160 Hz

Supported: EDF/EDF+ (``.edf``), BDF (``.bdf``), GDF (``.gdf``), FIF (``.fif``, ``.fif.gz``),
EEGLAB (``.set``, with its ``.fdt`` alongside when the data is stored separately) and BrainVision
(``.vhdr`` header, with its ``.eeg`` and ``.vmrk``). Data are loaded into memory (``preload``); MNE's
logging and warnings are silenced, except that a truncated EDF/BDF (which MNE would read in part)
is an error, :class:`TruncatedRecordingError`. Anything that goes wrong raises
:class:`RecordingError` naming the file.

A truncated EDF/BDF (the header declares more data records than the file holds, e.g. a recorder
stopped without closing the file, or a copy cut short) can be salvaged on request:
:func:`read_raw_salvaged` (or ``read_raw(path, salvage_truncated=True)``) keeps the whole records
that are in the file and says how much that is (:class:`Truncation`). The default stays strict.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
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


class TruncatedRecordingError(RecordingError):
    """A truncated EDF/BDF read strictly; ``truncation`` says what salvaging it would keep."""

    def __init__(self, path: str | Path | None, reason: str, truncation: "Truncation | None" = None):
        super().__init__(path, reason)
        self.truncation = truncation

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.truncation))


class TruncatedRecordingWarning(UserWarning):
    """``read_raw(path, salvage_truncated=True)`` kept only part of a truncated EDF/BDF."""


@dataclass(frozen=True)
class Truncation:
    """What is left of a truncated EDF/BDF: ``kept_s`` seconds of whole data records were read,
    the header declares ``declared_s`` (None when it does not say, e.g. ``-1`` records);
    ``detail`` is MNE's warning."""

    kept_s: float
    declared_s: float | None
    detail: str

    @property
    def summary(self) -> str:
        declared = "an unknown length" if self.declared_s is None else f"{self.declared_s:g} s"
        return f"the file holds {self.kept_s:g} s of whole data records of the {declared} its header declares"

    def describe(self) -> str:
        return f"truncated: {self.summary}"

    def to_dict(self) -> dict:
        return {"kept_s": self.kept_s, "declared_s": self.declared_s, "reason": self.describe()}


def _declared_seconds(path: Path) -> float | None:
    """Records x record duration from an EDF/BDF header (bytes 236-252), None if not stated."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
        n_records, duration = int(head[236:244].decode("ascii").strip()), float(head[244:252].decode("ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return n_records * duration if n_records > 0 and duration > 0 else None


def read_raw(path: str | Path, *, salvage_truncated: bool = False) -> mne.io.BaseRaw:
    """The recording at ``path`` as a preloaded :class:`mne.io.Raw` (values in SI units, e.g. volts).

    Raises :class:`RecordingError` if the extension is not supported, the file does not exist,
    or MNE cannot read it (corrupt or truncated file, missing companion file, ...); a truncated
    EDF/BDF raises :class:`TruncatedRecordingError`. ``salvage_truncated=True``: such a file is read
    up to its last whole data record instead, with a :class:`TruncatedRecordingWarning` saying how
    much was kept (:func:`read_raw_salvaged` returns that as a :class:`Truncation`).
    """
    raw, truncation = _read(Path(path), salvage_truncated)
    if truncation is not None:
        warnings.warn(f"{path}: {truncation.describe()}; kept those", TruncatedRecordingWarning, stacklevel=2)
    return raw


def read_raw_salvaged(path: str | Path) -> tuple[mne.io.BaseRaw, Truncation | None]:
    """:func:`read_raw`, keeping the readable whole records of a truncated EDF/BDF: ``(raw,
    truncation)``, ``truncation`` None when the file is whole. Every other problem still raises."""
    return _read(Path(path), True)


def _read(path: Path, salvage_truncated: bool) -> tuple[mne.io.BaseRaw, Truncation | None]:
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
    truncation = None
    for w in caught:
        # MNE reads a truncated EDF/BDF "inferring from the file size": the tail of the recording
        # is gone and the header lies about it. Treat it as the corrupt file it is, unless asked
        # to keep what is there (MNE reads whole records only: the partial last one is dropped).
        if "does not match the file size" in str(w.message):
            kept = raw.n_times / raw.info["sfreq"] if raw.n_times else 0.0
            truncation = Truncation(round(float(kept), 6), _declared_seconds(path), str(w.message))
            if not salvage_truncated:
                raise TruncatedRecordingError(path, f"truncated or damaged: {truncation.summary}", truncation)
    if raw.n_times == 0 or len(raw.ch_names) == 0:
        raise RecordingError(path, "contains no samples or no channels")
    return raw, truncation


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
