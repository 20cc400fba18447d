"""Signal preprocessing: filter/resample, robust normalisation, clipping and windowing.

The pre-training recipe of the original BioCodec, one step a function:

1. band-pass / notch (optional, off by default) and resampling to the codec's rate, with MNE;
2. per-channel robust normalisation over the whole recording, ``(x - median) / IQR`` with
   ``IQR = q75 - q25``;
3. clipping to ``+-clip`` (10 by default; the original's loader does this);
4. non-overlapping windows of ``window_samples`` (``stride`` may make them overlap or skip).

All but step 1 are pure numpy functions on ``[channels, samples]`` arrays. Non-finite values and
flat channels (IQR 0) raise :class:`ChannelError` naming the recording and the channel; a
recording shorter than one window raises :class:`RecordingError`. Rates and window lengths are
arguments (take them from the model's config): this package does not import the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mne
import numpy as np

from data_pipelines.errors import ChannelError, RecordingError

DEFAULT_CLIP = 10.0


def filter_and_resample(
    raw: mne.io.BaseRaw,
    sample_rate: float,
    *,
    l_freq: float | None = None,
    h_freq: float | None = None,
    notch_freqs: float | Sequence[float] | None = None,
) -> mne.io.BaseRaw:
    """Band-pass (``l_freq``..``h_freq``, either may be None), notch, then resample to ``sample_rate``.

    MNE's default zero-phase FIR filters and FFT resampling. Works in place on a preloaded
    ``raw`` and returns it. With every filter None and the rate already right, nothing changes.

    Every channel of ``raw`` is filtered, whatever its type (pick the channels to use first, as
    ``prepare`` and ``tokenize`` do): MNE's own default picks only its "data" types, which leave
    out ``emg`` (an EMG recording would raise "yielded no channels"), and bad channels.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive; got {sample_rate}")
    if l_freq is not None or h_freq is not None:
        raw.filter(l_freq, h_freq, picks="all", verbose=False)
    if notch_freqs is not None:
        raw.notch_filter(notch_freqs, picks="all", verbose=False)
    if raw.info["sfreq"] != sample_rate:
        raw.resample(sample_rate, verbose=False)
    return raw


def _channel_name(channel_names: Sequence[str] | None, index: int) -> str:
    return str(channel_names[index]) if channel_names is not None else f"#{index}"


def _check_2d(x: np.ndarray, source: str | Path | None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise RecordingError(source, f"expected a [channels, samples] array; got shape {x.shape}")
    return x


def check_finite(x: np.ndarray, channel_names: Sequence[str] | None = None, source: str | Path | None = None) -> None:
    """Raise :class:`ChannelError` for the first channel of ``x`` ``[C, T]`` holding NaN or +-Inf."""
    x = _check_2d(x, source)
    bad = ~np.isfinite(x)
    if bad.any():
        channel = int(np.flatnonzero(bad.any(axis=1))[0])
        count = int(bad[channel].sum())
        raise ChannelError(source, _channel_name(channel_names, channel), f"{count} non-finite (NaN/Inf) sample(s)")


def robust_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(median, IQR)`` of ``x`` ``[C, T]`` (linear-interpolated quantiles, float64)."""
    q25, median, q75 = np.percentile(np.asarray(x, np.float64), [25.0, 50.0, 75.0], axis=-1)
    return median, q75 - q25


def flat_channels(x: np.ndarray) -> list[int]:
    """Indices of the channels of ``x`` ``[C, T]`` whose IQR is 0 (robust normalisation undefined)."""
    _, iqr = robust_stats(x)
    return [int(i) for i in np.flatnonzero(iqr == 0)]


def unusable_channels(x: np.ndarray, channel_names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """``(channel name, reason)`` for each channel of ``x`` ``[C, T]`` that cannot be used: one
    holding NaN/Inf samples, then one that is flat (IQR 0, judged on its finite samples).

    The one rule for dropping a channel, shared by ``prepare`` (training data) and ``tokenize``:
    apply it to the data as recorded, before filtering and resampling (filtering would smear a
    NaN over the channel and turn a flat line into rounding noise). Empty if every channel is fine.
    """
    x = _check_2d(x, None)
    finite = np.isfinite(x)
    out = []
    for i in np.flatnonzero(~finite.all(axis=1)):
        out.append((_channel_name(channel_names, int(i)), f"{int((~finite[i]).sum())} non-finite (NaN/Inf) sample(s)"))
    _, iqr = robust_stats(np.where(finite, x, 0.0))
    for i in np.flatnonzero(finite.all(axis=1) & (iqr == 0)):
        out.append((_channel_name(channel_names, int(i)), "flat signal (interquartile range 0)"))
    return out


def robust_normalize(
    x: np.ndarray, channel_names: Sequence[str] | None = None, source: str | Path | None = None
) -> np.ndarray:
    """``(x - median) / IQR`` per channel over the whole recording ``[C, T]`` -> float32.

    Raises :class:`ChannelError` naming the channel if it holds NaN/Inf or is flat (IQR 0).
    """
    x = _check_2d(x, source)
    check_finite(x, channel_names, source)
    median, iqr = robust_stats(x)
    flat = np.flatnonzero(iqr == 0)
    if flat.size:
        name = _channel_name(channel_names, int(flat[0]))
        raise ChannelError(source, name, "flat signal (interquartile range 0); drop it before normalising")
    return ((x - median[:, None]) / iqr[:, None]).astype(np.float32)


def clip(x: np.ndarray, limit: float | None = DEFAULT_CLIP) -> np.ndarray:
    """``x`` clipped to ``[-limit, limit]`` (unchanged when ``limit`` is None)."""
    if limit is None:
        return x
    if limit <= 0:
        raise ValueError(f"clip limit must be positive; got {limit}")
    return np.clip(x, -limit, limit)


def count_windows(n_samples: int, window_samples: int, stride: int | None = None) -> int:
    """Whole windows of ``window_samples`` every ``stride`` (default: the window) in ``n_samples``."""
    stride = window_samples if stride is None else stride
    if window_samples <= 0 or stride <= 0:
        raise ValueError(f"window_samples and stride must be positive; got {window_samples}, {stride}")
    return 0 if n_samples < window_samples else 1 + (n_samples - window_samples) // stride


def make_windows(
    x: np.ndarray, window_samples: int, stride: int | None = None, source: str | Path | None = None
) -> np.ndarray:
    """Cut ``x`` ``[C, T]`` into ``[n_windows, C, window_samples]`` float32 windows.

    Windows start every ``stride`` samples (default ``window_samples``: back to back, no overlap);
    a trailing remainder shorter than a window is dropped. A recording shorter than one window
    raises :class:`RecordingError`.
    """
    x = _check_2d(x, source)
    stride = window_samples if stride is None else stride
    n = count_windows(x.shape[1], window_samples, stride)
    if n == 0:
        raise RecordingError(source, f"{x.shape[1]} samples is shorter than one window of {window_samples}")
    starts = np.arange(n) * stride
    index = starts[:, None] + np.arange(window_samples)[None, :]  # [n, W]
    return np.ascontiguousarray(x[:, index].transpose(1, 0, 2), dtype=np.float32)
