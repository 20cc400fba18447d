"""``eegmmidb``: the PhysioNet EEG Motor Movement/Imagery Dataset (``SxxxRyy.edf``, 64 ch, 160 Hz).

Files may sit in per-subject folders (``S001/S001R04.edf``, PhysioNet's layout) or all in one
folder. The subject is the ``Sxxx`` of the file name. Other ``.edf`` names are skipped with a
reason; PhysioNet's ``.edf.event`` side files and checksums are passed over silently.
"""

from __future__ import annotations

import re

from data_pipelines.datasets.base import NamedEDFDataset


class EEGMMIDataset(NamedEDFDataset):
    name = "eegmmidb"
    pattern = re.compile(r"^(?P<subject>S\d{3})R\d{2}\.edf$", re.IGNORECASE)
    expected = "SxxxRyy.edf"

    def subject_of(self, match: re.Match) -> str:
        return match.group("subject").upper()
