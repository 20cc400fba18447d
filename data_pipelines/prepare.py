"""One recording file -> model-ready windows: read, pick EEG, filter/resample, normalise, clip, window.

The per-file step of data preparation. (Writing the windows of many files into shards with a
manifest builds on this.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_pipelines.channels import pick_eeg
from data_pipelines.preprocess import DEFAULT_CLIP, preprocess_raw
from data_pipelines.readers import read_raw


@dataclass(frozen=True)
class RecordingWindows:
    """The windows of one recording: ``windows`` is float32 ``[n_windows, n_channels, window_samples]``."""

    path: Path
    windows: np.ndarray
    channel_names: tuple[str, ...]
    sample_rate: float

    @property
    def n_windows(self) -> int:
        return self.windows.shape[0]

    def single_channel(self) -> np.ndarray:
        """Every (window, channel) as its own item: ``[n_windows * n_channels, 1, window_samples]``."""
        n, c, t = self.windows.shape
        return self.windows.reshape(n * c, 1, t)


def recording_windows(
    path: str | Path,
    sample_rate: float,
    window_samples: int,
    *,
    stride: int | None = None,
    clip_limit: float | None = DEFAULT_CLIP,
    l_freq: float | None = None,
    h_freq: float | None = None,
    notch_freqs: float | Sequence[float] | None = None,
) -> RecordingWindows:
    """Read the EEG of ``path`` and cut it into normalised windows (see :func:`preprocess_raw`).

    Raises :class:`~data_pipelines.errors.RecordingError` (or its :class:`ChannelError`) naming
    the file, and the channel where there is one, when the recording cannot be used.
    """
    raw = pick_eeg(read_raw(path))
    windows = preprocess_raw(
        raw, sample_rate, window_samples, stride=stride, clip_limit=clip_limit,
        l_freq=l_freq, h_freq=h_freq, notch_freqs=notch_freqs,
    )
    return RecordingWindows(Path(path), windows, tuple(raw.ch_names), float(raw.info["sfreq"]))
