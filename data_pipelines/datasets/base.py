"""What a dataset adapter is: it finds the recordings of a corpus on disk and reads one of them.

An adapter knows a corpus's layout (which files are recordings, who the subject is, which
channels to use) and, for formats MNE has no reader for (text, CSV), how to build an
:class:`mne.io.Raw`. Everything after reading (channel picking, filtering, normalising,
windowing) is shared, :func:`data_pipelines.preprocess.preprocess_recording`, and sharding is
:mod:`data_pipelines.prepare`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
import mne

from data_pipelines.readers import Truncation, read_raw, read_raw_salvaged


@dataclass(frozen=True, order=True)
class RecordingRef:
    """One recording of a dataset.

    ``recording_id`` is unique within the dataset and stable across runs (the relative path
    without its extension); ``subject`` decides the train/validation split (adapters that cannot
    tell the subject use the recording id). ``path`` is relative to the dataset's root;
    ``member`` names a file inside an archive ``path`` (e.g. Bonn's zip files).
    """

    recording_id: str
    subject: str
    path: str
    member: str | None = None

    @property
    def display_path(self) -> str:
        """``path``, or ``path::member`` for a file inside an archive."""
        return f"{self.path}::{self.member}" if self.member else self.path


@dataclass(frozen=True)
class Skipped:
    """A file under the root that is not a usable recording, with the reason (goes to the manifest)."""

    path: str
    reason: str


class Dataset:
    """Base class: subclasses set ``name`` and implement :meth:`find` and (if needed) :meth:`read`."""

    name = "base"
    # Canonical channel names to restrict to (None: every channel of the modality).
    channels: tuple[str, ...] | None = None

    def find(self, root: Path) -> tuple[list[RecordingRef], list[Skipped]]:
        """The recordings under ``root`` (sorted by id) and the files passed over, with reasons."""
        raise NotImplementedError

    def read(self, root: Path, ref: RecordingRef) -> mne.io.BaseRaw:
        """The recording as a preloaded Raw; raises :class:`~data_pipelines.errors.RecordingError`
        (:class:`~data_pipelines.readers.TruncatedRecordingError` for a truncated EDF/BDF)."""
        return read_raw(root / ref.path)

    def read_recording(
        self, root: Path, ref: RecordingRef, *, salvage_truncated: bool = False
    ) -> tuple[mne.io.BaseRaw, Truncation | None]:
        """What ``prepare`` reads with: ``(raw, truncation)``.

        Strict by default (:meth:`read`; ``truncation`` None). ``salvage_truncated=True``
        (``PrepareConfig.salvage_truncated``, ``prepare --salvage``): a truncated EDF/BDF read by
        the file reader keeps its readable whole data records and ``truncation``
        (:class:`~data_pipelines.readers.Truncation`) says how many seconds of how many declared.
        An adapter with its own reader (it overrides :meth:`read`: text, CSV, archives) reads as
        :meth:`read` does; there is no EDF record structure to salvage there.
        """
        if not salvage_truncated or type(self).read is not Dataset.read:
            return self.read(root, ref), None
        return read_raw_salvaged(root / ref.path)


def walk_files(root: Path) -> list[Path]:
    """Every regular, non-hidden file under ``root``, sorted."""
    return sorted(
        p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def relative_id(path: Path, root: Path, suffix: str) -> str:
    """``path`` relative to ``root`` as a POSIX string without ``suffix`` (case-insensitive)."""
    rel = path.relative_to(root).as_posix()
    return rel[: -len(suffix)] if rel.lower().endswith(suffix) else rel


class NamedEDFDataset(Dataset):
    """A corpus whose recordings are ``.edf`` files named by a pattern that also names the subject.

    Subclasses set ``pattern`` (a regex for the file name with a group ``subject``) and
    ``expected`` (the naming rule, for the skip reason). Non-EDF files are passed over silently
    (reports, annotations, checksums); EDF files with other names are skipped with a reason.
    """

    pattern: re.Pattern
    expected: str

    def find(self, root: Path) -> tuple[list[RecordingRef], list[Skipped]]:
        refs, skipped = [], []
        for path in walk_files(root):
            if path.suffix.lower() != ".edf":
                continue
            rel = path.relative_to(root).as_posix()
            match = self.pattern.match(path.name)
            if match is None:
                skipped.append(Skipped(rel, f"not a{'n' if self.name[0] in 'aeiou' else ''} {self.name} recording name (expected {self.expected})"))
                continue
            refs.append(RecordingRef(relative_id(path, root, ".edf"), self.subject_of(match), rel))
        return sorted(refs), skipped

    def subject_of(self, match: re.Match) -> str:
        return match.group("subject")
