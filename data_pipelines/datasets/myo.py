"""``myo``: raw surface EMG from the Myo armband (github aljazfrancic/myo-readings-dataset, MIT).

Layout: ``<participant>-<session>/<gesture>.txt``; each line holds the 8 EMG channels (int8,
-128..127) and a gesture label, comma-separated, at about 200 Hz. The label column is dropped
(downstream tasks read it themselves). The subject is the participant. 200 Hz is far below the
``emg`` preset's 1 kHz: the preset's ``min_sample_rate`` (200 Hz) admits it and the signal is
resampled, but it carries no content above 100 Hz; say so when reporting results on it.
"""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np

from data_pipelines.datasets.base import Dataset, RecordingRef, Skipped, relative_id
from data_pipelines.datasets.generic import walk_files
from data_pipelines.errors import RecordingError
from data_pipelines.readers import raw_from_array

SAMPLE_RATE = 200.0
N_CHANNELS = 8
CHANNEL_NAMES = tuple(f"EMG{i}" for i in range(1, N_CHANNELS + 1))


class MyoDataset(Dataset):
    name = "myo"

    def find(self, root: Path) -> tuple[list[RecordingRef], list[Skipped]]:
        refs, skipped = [], []
        for path in walk_files(root):
            rel = path.relative_to(root)
            if path.suffix.lower() != ".txt" or len(rel.parts) != 2 or "-" not in rel.parts[0]:
                skipped.append(Skipped(rel.as_posix(), "not a Myo recording (expected <participant>-<session>/<gesture>.txt)"))
                continue
            participant = rel.parts[0].split("-", 1)[0]
            refs.append(RecordingRef(relative_id(path, root, ".txt"), participant, rel.as_posix()))
        return sorted(refs), skipped

    def read(self, root: Path, ref: RecordingRef) -> mne.io.BaseRaw:
        path = root / ref.path
        try:
            table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        except (OSError, ValueError) as e:
            raise RecordingError(path, f"cannot be read as Myo CSV ({type(e).__name__}: {e})") from e
        if table.shape[1] != N_CHANNELS + 1:
            raise RecordingError(path, f"expected {N_CHANNELS} EMG columns and a label per line; got {table.shape[1]} columns")
        return raw_from_array(table[:, :N_CHANNELS].T, list(CHANNEL_NAMES), SAMPLE_RATE, "emg", path)
