"""Data preparation for biocodec-jax: recordings on disk -> normalised, windowed numpy arrays.

One job a module: :mod:`~data_pipelines.readers` (files -> ``mne.io.Raw``),
:mod:`~data_pipelines.channels` (pick and name EEG channels), :mod:`~data_pipelines.preprocess`
(filter/resample, robust normalisation, clipping, windowing), :mod:`~data_pipelines.prepare`
(one file -> windows) and :mod:`~data_pipelines.errors`. Nothing here imports the model: rates
and window lengths are arguments.
"""

from data_pipelines.channels import eeg_channel_indices, is_eeg_channel, normalize_channel_name, pick_eeg
from data_pipelines.errors import ChannelError, RecordingError
from data_pipelines.prepare import RecordingWindows, recording_windows
from data_pipelines.preprocess import (
    DEFAULT_CLIP,
    check_finite,
    clip,
    count_windows,
    filter_and_resample,
    flat_channels,
    make_windows,
    preprocess_raw,
    robust_normalize,
    robust_stats,
)
from data_pipelines.readers import SUPPORTED_SUFFIXES, read_raw, recording_format

__all__ = [
    "ChannelError",
    "RecordingError",
    "read_raw",
    "recording_format",
    "SUPPORTED_SUFFIXES",
    "normalize_channel_name",
    "is_eeg_channel",
    "eeg_channel_indices",
    "pick_eeg",
    "filter_and_resample",
    "check_finite",
    "robust_stats",
    "flat_channels",
    "robust_normalize",
    "clip",
    "DEFAULT_CLIP",
    "count_windows",
    "make_windows",
    "preprocess_raw",
    "RecordingWindows",
    "recording_windows",
]
