"""``generic``: any folder of recordings in a format MNE reads (EDF/BDF/GDF, FIF, EEGLAB, BrainVision).

Every file under the root is looked at. Companion files (EEGLAB ``.fdt``, BrainVision ``.eeg`` /
``.vmrk``) and hidden files are passed over silently; any other file of an unsupported type is
listed in the manifest as skipped, so nothing under the root goes unaccounted for.

The subject is the first folder below the root (``sub-01/...`` in BIDS-like layouts); a file
directly in the root is its own subject.
"""

from __future__ import annotations

from pathlib import Path

# walk_files: defined in base (NamedEDFDataset walks too), importable from here as before.
from data_pipelines.datasets.base import Dataset, RecordingRef, Skipped, relative_id, walk_files
from data_pipelines.errors import RecordingError
from data_pipelines.readers import SUPPORTED_SUFFIXES, recording_format

COMPANION_SUFFIXES = (".fdt", ".vmrk", ".eeg")


class GenericDataset(Dataset):
    name = "generic"

    def find(self, root: Path) -> tuple[list[RecordingRef], list[Skipped]]:
        refs, skipped = [], []
        for path in walk_files(root):
            rel = path.relative_to(root)
            try:
                suffix = recording_format(path)
            except RecordingError:
                if path.suffix.lower() not in COMPANION_SUFFIXES:
                    skipped.append(
                        Skipped(rel.as_posix(), f"unsupported file type {path.suffix or '(no extension)'!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
                    )
                continue
            rid = relative_id(path, root, suffix)
            subject = rel.parts[0] if len(rel.parts) > 1 else rid
            refs.append(RecordingRef(rid, subject, rel.as_posix()))
        return sorted(refs), skipped
