"""Data pipelines for biocodec-jax: recordings on disk -> shards -> Grain batches.

One job a module:

- :mod:`~data_pipelines.readers` files -> ``mne.io.Raw`` (by extension; errors name the file);
- :mod:`~data_pipelines.datasets` corpus adapters (generic, eegmmidb, tueg, bonn, myo);
- :mod:`~data_pipelines.channels` pick and canonically name EEG / EMG channels;
- :mod:`~data_pipelines.preprocess` a recording -> the codec's input (:func:`preprocess_recording`:
  pick, filter/resample, robust normalisation, clipping, windowing; the one path for ``prepare``
  and ``Codec.tokenize``), and its steps;
- :mod:`~data_pipelines.shards` the record format and the atomic shard writer;
- :mod:`~data_pipelines.prepare` the batch job: recordings -> shards + ``manifest.json``;
- :mod:`~data_pipelines.manifest` reading ``manifest.json``;
- :mod:`~data_pipelines.loader` Grain: shards -> shuffled per-host batches, checkpointable;
- :mod:`~data_pipelines.config` typed ``PrepareConfig`` with ``eeg`` / ``emg`` presets.

Nothing here imports the model: rates and window lengths come from config values. Names are
loaded lazily, so worker processes that only preprocess do not import Grain or JAX. The batch job
itself is ``data_pipelines.prepare.prepare`` (not exported here: the name ``prepare`` is its module).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "make_train_iterator": "data_pipelines.loader",
    "preprocess_recording": "data_pipelines.preprocess",
    "PreprocessedRecording": "data_pipelines.preprocess",
    "process_recording": "data_pipelines.prepare",
    "recording_windows": "data_pipelines.prepare",
    "read_manifest": "data_pipelines.manifest",
    "RecordingResult": "data_pipelines.prepare",
    "PrepareConfig": "data_pipelines.config",
    "prepare_preset": "data_pipelines.config",
    "load_prepare_config": "data_pipelines.config",
    "get_dataset": "data_pipelines.datasets",
    "DATASETS": "data_pipelines.datasets",
    "RecordingError": "data_pipelines.errors",
    "ChannelError": "data_pipelines.errors",
    "read_raw": "data_pipelines.readers",
    "SUPPORTED_SUFFIXES": "data_pipelines.readers",
    "pick_channels": "data_pipelines.channels",
    "pick_eeg": "data_pipelines.channels",
    "normalize_channel_name": "data_pipelines.channels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'data_pipelines' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
