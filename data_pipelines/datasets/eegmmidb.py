"""``eegmmidb``: the PhysioNet EEG Motor Movement/Imagery Dataset (``SxxxRyy.edf``, 64 ch, 160 Hz).

Files may sit in per-subject folders (``S001/S001R04.edf``, PhysioNet's layout) or all in one
folder. The subject is the ``Sxxx`` of the file name. Other ``.edf`` names are skipped with a
reason; PhysioNet's ``.edf.event`` side files and checksums are passed over silently.
"""

from __future__ import annotations

import re
from pathlib import Path

from data_pipelines.datasets.base import Dataset, RecordingRef, Skipped, relative_id
from data_pipelines.datasets.generic import walk_files

_NAME = re.compile(r"^(S\d{3})R\d{2}\.edf$", re.IGNORECASE)


class EEGMMIDataset(Dataset):
    name = "eegmmidb"

    def find(self, root: Path) -> tuple[list[RecordingRef], list[Skipped]]:
        refs, skipped = [], []
        for path in walk_files(root):
            if path.suffix.lower() != ".edf":
                continue
            rel = path.relative_to(root).as_posix()
            match = _NAME.match(path.name)
            if match is None:
                skipped.append(Skipped(rel, "not an EEGMMI recording name (expected SxxxRyy.edf)"))
                continue
            refs.append(RecordingRef(relative_id(path, root, ".edf"), match.group(1).upper(), rel))
        return sorted(refs), skipped
