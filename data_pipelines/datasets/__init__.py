"""Dataset adapters: which files of a corpus are recordings, whose they are, how to read them.

``generic`` (any folder MNE reads), ``eegmmidb`` (PhysioNet motor imagery), ``tueg`` (TUH EEG
corpus), ``bonn`` (Bonn epilepsy text segments) and ``myo`` (Myo armband EMG, CSV).
"""

from data_pipelines.datasets.base import Dataset, RecordingRef, Skipped
from data_pipelines.datasets.bonn import BonnDataset
from data_pipelines.datasets.eegmmidb import EEGMMIDataset
from data_pipelines.datasets.generic import GenericDataset
from data_pipelines.datasets.myo import MyoDataset
from data_pipelines.datasets.tueg import TEN_TWENTY, TUEGDataset

DATASETS: dict[str, type[Dataset]] = {
    cls.name: cls for cls in (GenericDataset, EEGMMIDataset, TUEGDataset, BonnDataset, MyoDataset)
}


def get_dataset(name: str) -> Dataset:
    """The adapter called ``name``."""
    try:
        return DATASETS[name]()
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


__all__ = ["Dataset", "RecordingRef", "Skipped", "DATASETS", "get_dataset", "TEN_TWENTY"]
