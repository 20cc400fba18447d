"""The controls every evaluation scores beside its methods, and the trained codec's gain over them.

A number for a trained codec means little alone: a reviewer asks what chance gives, what the same
architecture gives untrained, and what simple features of the signal give. Each control is scored
on the same splits, seeds and label fractions as the methods, by the same metrics:

``chance``
    A classifier that ignores its input: it predicts the training labels' class frequencies for
    every test unit (scikit-learn's ``DummyClassifier(strategy="prior")``). Balanced accuracy is
    exactly ``1 / n_classes``, AUROC 0.5, AUC-PR the positives' share, Cohen's kappa 0.
``random_codec``
    The evaluated codec's architecture with random weights (its own seeded initialisation) and
    codebooks from the original's k-means initialisation on a sample of the task's windows (no
    labels, no training step), read by the linear probe (the same features, classifier and model
    selection as the ``linear_probe`` method). What training the codec adds is the difference.
``handcrafted``
    Simple features of the task's windows suited to the modality, read by the same linear probe:
    EEG, log band power per channel (delta 1-4, theta 4-8, alpha 8-13, beta 13-30, gamma 30-45 Hz,
    Welch); EMG, log RMS, log mean absolute value and log waveform length per channel (the classic
    time-domain set of Hudgins et al., 1993). Computed from the same windows the codec reads.

:func:`gains` turns the runs into the methods' gain over each control: the mean over the paired
runs (split x seed) of ``method - control`` and its 95 % t-interval over those runs. Splits share
training data, so the runs are not independent and the interval is a little optimistic (the usual
caveat of cross-validated comparisons; Nadeau & Bengio, 2003); it is what the field reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import scipy.signal
import scipy.stats

from biocodec_jax.codec import Codec
from biocodec_jax.evaluation.dataset import LabelledWindows, read_rows, take_rows

CONTROLS = ("chance", "random_codec", "handcrafted")
EEG_BANDS = {"delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 45.0)}
EMG_FEATURES = ("log_rms", "log_mav", "log_waveform_length")
KMEANS_ITEMS = 256  # single-channel windows the random codec's k-means sees
FEATURE_BATCH = 512  # windows per step of the feature stream (bounded memory on disk-backed windows)
_LOG_FLOOR = 1e-12


def chance_proba(y_train: np.ndarray, n_test: int, n_classes: int) -> np.ndarray:
    """``[n_test, n_classes]``: the training labels' class frequencies for every test unit."""
    prior = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=n_classes).astype(np.float64)
    prior /= max(prior.sum(), 1.0)
    return np.repeat(prior[None], n_test, axis=0)


def _batches(x: np.ndarray, size: int = FEATURE_BATCH) -> Iterator[np.ndarray]:
    """``x`` a block of windows at a time, float64; a disk-backed ``x`` is read from its file
    (:func:`~biocodec_jax.evaluation.dataset.read_rows`), so memory stays bounded at corpus scale."""
    for start in range(0, len(x), size):
        yield read_rows(x, start, start + size).astype(np.float64)


def eeg_band_power(x: np.ndarray, sample_rate: float) -> np.ndarray:
    """Log band power ``[N, C * 5]`` (channel-major) of windows ``x [N, C, T]``: Welch PSD (1-s
    Hann segments, or the window if shorter) integrated over each of :data:`EEG_BANDS` that lies
    below Nyquist (a band above it is left out, so the width depends on the rate)."""
    bands = [(lo, min(hi, sample_rate / 2)) for lo, hi in EEG_BANDS.values() if lo < sample_rate / 2]
    out = []
    for batch in _batches(x):
        nperseg = min(batch.shape[-1], int(round(sample_rate)))
        freqs, psd = scipy.signal.welch(batch, fs=sample_rate, nperseg=nperseg, axis=-1)
        df = freqs[1] - freqs[0]
        power = [psd[..., (freqs >= lo) & (freqs < hi)].sum(axis=-1) * df for lo, hi in bands]
        out.append(np.log(np.maximum(np.stack(power, axis=-1), _LOG_FLOOR)).reshape(len(batch), -1))
    return np.concatenate(out).astype(np.float32)


def emg_time_domain(x: np.ndarray) -> np.ndarray:
    """``[N, C * 3]`` (channel-major): log RMS, log mean absolute value and log waveform length (sum of
    absolute sample-to-sample differences, per sample) of each channel of windows ``x [N, C, T]``."""
    out = []
    for batch in _batches(x):
        rms = np.sqrt(np.mean(batch ** 2, axis=-1))
        mav = np.mean(np.abs(batch), axis=-1)
        wl = np.mean(np.abs(np.diff(batch, axis=-1)), axis=-1)
        feats = np.stack([rms, mav, wl], axis=-1)
        out.append(np.log(np.maximum(feats, _LOG_FLOOR)).reshape(len(batch), -1))
    return np.concatenate(out).astype(np.float32)


def handcrafted_features(data: LabelledWindows, modality: str) -> np.ndarray:
    """The ``handcrafted`` control's features of every window of ``data`` (``modality`` ``eeg`` or ``emg``)."""
    if modality == "eeg":
        return eeg_band_power(data.x, data.sample_rate)
    if modality == "emg":
        return emg_time_domain(data.x)
    raise ValueError(f"no handcrafted features for modality {modality!r}; choose eeg or emg")


def handcrafted_description(modality: str) -> str:
    if modality == "emg":
        return "log RMS, log MAV, log waveform length per channel"
    return "log band power per channel (" + ", ".join(f"{k} {lo:g}-{hi:g} Hz" for k, (lo, hi) in EEG_BANDS.items()) + "; Welch)"


def kmeans_sample(data: LabelledWindows, seed: int = 0, n_items: int = KMEANS_ITEMS) -> np.ndarray:
    """``[n, 1, T]`` single-channel windows drawn (seeded, without labels) from every window and channel of
    ``data``: what the random codec's k-means initialisation sees."""
    n, c, t = data.x.shape
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(n * c, size=min(n_items, n * c), replace=False))
    drawn, row = np.unique(picks // c, return_inverse=True)
    windows = take_rows(data.x, drawn)  # only the windows drawn, read from disk if stored there
    return windows[row, picks % c].astype(np.float32)[:, None]


def random_codec(codec, data: LabelledWindows, seed: int = 0):
    """``codec``'s architecture, randomly initialised (``seed``), codebooks by k-means on :func:`kmeans_sample`."""
    return Codec.from_config(codec.config, seed=seed, init_batch=kmeans_sample(data, seed))


def t_interval(values, confidence: float = 0.95) -> dict:
    """Mean, sd and the two-sided t-interval of ``values``; the interval is None for fewer than 2 values."""
    v = np.asarray(list(values), dtype=np.float64)
    mean = float(v.mean()) if len(v) else float("nan")
    if len(v) < 2:
        return {"mean": mean, "sd": None, "ci95": None, "n": int(len(v))}
    sd = float(v.std(ddof=1))
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * sd / math.sqrt(len(v)))
    return {"mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "n": int(len(v))}


def gains(by_method: dict, metric: str = "balanced_accuracy", controls=CONTROLS) -> dict:
    """Each non-control method's gain over each control: ``{method: {control: t_interval(...)}}``.

    ``by_method`` maps a method to its list of runs (``{"seed", "split", "metrics"}``); runs are
    paired by ``(split, seed)``; pairs missing on either side are left out (``n`` says how many count).
    """
    out = {}
    for method, runs in by_method.items():
        if method in controls:
            continue
        mine = {(r["split"], r["seed"]): r["metrics"][metric] for r in runs if metric in r.get("metrics", {})}
        out[method] = {}
        for control in controls:
            if control not in by_method:
                continue
            theirs = {(r["split"], r["seed"]): r["metrics"][metric] for r in by_method[control]
                      if metric in r.get("metrics", {})}
            pairs = sorted(set(mine) & set(theirs))
            out[method][control] = t_interval(mine[p] - theirs[p] for p in pairs)
    return out
