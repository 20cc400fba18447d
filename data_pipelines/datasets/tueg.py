"""``tueg``: the Temple University Hospital EEG Corpus (TUEG) directory layout and channel names.

TUEG v2 keeps each session as::

    edf/<group>/<subject>/s<session>_<yyyy>_<mm>_<dd>/<montage>/<subject>_s<session>_t<token>.edf
    e.g. edf/000/aaaaaaaa/s001_2015_12_30/01_tcp_ar/aaaaaaaa_s001_t000.edf

(v1 put the montage folder first and used numeric subject ids; both work, since only the file
name is parsed). The subject is the part of the file name before ``_s<session>``. Channels are
named ``EEG FP1-REF`` / ``EEG FP1-LE``; they are matched by their canonical names, and by default
only the 19 electrodes of the international 10-20 system are used, the set every TUEG montage
has (the original drew its 5 random channels per recording from the recording's EEG channels;
restricting to 10-20 keeps the odd ``EEG 26-REF``-style extras and photic/EKG leads out).
Non-EDF files (reports, annotations) are passed over; EDF files with other names are skipped
with a reason.
"""

from __future__ import annotations

import re

from data_pipelines.datasets.base import NamedEDFDataset

TEN_TWENTY = ("FP1", "FP2", "F7", "F3", "FZ", "F4", "F8", "T3", "C3", "CZ", "C4", "T4", "T5", "P3", "PZ", "P4", "T6", "O1", "O2")


class TUEGDataset(NamedEDFDataset):
    name = "tueg"
    channels = TEN_TWENTY
    pattern = re.compile(r"^(?P<subject>[A-Za-z0-9]+)_s(?P<session>\d+)_t(?P<token>\d+)\.edf$", re.IGNORECASE)
    expected = "<subject>_s<session>_t<token>.edf"
