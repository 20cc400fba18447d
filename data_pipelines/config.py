"""Typed configuration of ``prepare`` (recordings -> shards), with presets for EEG and EMG.

Rates and window lengths mirror the codec presets of :mod:`biocodec_jax.config` (``eeg``: 250 Hz,
``emg``: 1 kHz, 5-s windows) but are plain values here: the data pipeline does not import the model.
The resolved config is stored in every output's ``manifest.json``; a re-run into the same output
must use the same config (that is what makes it resumable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import yaml

from data_pipelines.typed_config import apply_overrides, dataclass_from_dict, to_dict

Modality = Literal["eeg", "emg"]
SplitBy = Literal["subject", "recording"]
Resample = Literal["polyphase", "fft"]

# What a stored config without a ``resample`` field means (an old manifest, a codec's
# ``preprocessing.json`` written before the field existed): MNE's FFT resampling, which every
# recording was prepared with then, so an old codec still sees at inference what it was trained on.
LEGACY_RESAMPLE: Resample = "fft"


@dataclass(frozen=True)
class PrepareConfig:
    """How recordings become windows. Filters are off by default: the original's pretraining
    recipe (reference section 4) names only resampling, robust normalisation and clipping."""

    modality: Modality = "eeg"
    sample_rate: float = 250.0
    window_seconds: float = 5.0
    # Distance between window starts; None = back to back (the original's non-overlapping windows).
    stride_seconds: float | None = None
    # Band-pass edges in Hz (either may be None) and the mains frequency for a notch (and its
    # harmonics below the recording's Nyquist frequency); None = no filter.
    l_freq: float | None = None
    h_freq: float | None = None
    notch_freq: float | None = None
    # How a recording is brought to ``sample_rate``: "polyphase" (scipy.signal.resample_poly: a
    # Kaiser-windowed FIR (beta 5) at the exact rational rate ratio, reflect-padded ends; about twice
    # as fast) or "fft" (MNE's FFT resampling, boxcar spectrum, what every recording was prepared with
    # before this field: a stored config without it loads as "fft", see LEGACY_RESAMPLE).
    resample: Resample = "polyphase"
    # Recordings sampled below this are rejected: up-sampling cannot restore the band the codec
    # expects. Below the target rate but above this (e.g. PhysioNet's 160 Hz EEG) is resampled.
    min_sample_rate: float = 128.0
    clip: float | None = 10.0
    # K random good channels per recording (the original took 5 from TUEG); None = all of them.
    channels_per_recording: int | None = None
    # Only these channels (canonical names) are used when given, e.g. the 10-20 set for TUEG.
    channels: tuple[str, ...] | None = None
    # Validation share of subjects (or recordings), assigned before any file is read.
    val_fraction: float = 0.1
    split_by: SplitBy = "subject"
    recordings_per_shard: int = 64
    seed: int = 0
    # A truncated EDF/BDF (fewer data records in the file than its header declares) is rejected;
    # True keeps its readable whole records instead (logged, and noted in the manifest's entry of
    # the recording as "salvaged": seconds kept of seconds declared). ``prepare --salvage``.
    salvage_truncated: bool = False

    def __post_init__(self):
        if self.sample_rate <= 0 or self.window_seconds <= 0:
            raise ValueError(f"sample_rate and window_seconds must be positive; got {self.sample_rate}, {self.window_seconds}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1); got {self.val_fraction}")
        if self.channels_per_recording is not None and self.channels_per_recording < 1:
            raise ValueError(f"channels_per_recording must be >= 1 or None; got {self.channels_per_recording}")
        if self.recordings_per_shard < 1:
            raise ValueError(f"recordings_per_shard must be >= 1; got {self.recordings_per_shard}")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def stride_samples(self) -> int:
        if self.stride_seconds is None:
            return self.window_samples
        return int(round(self.stride_seconds * self.sample_rate))

    def notch_freqs(self, source_rate: float) -> tuple[float, ...] | None:
        """The mains frequency and its harmonics below ``source_rate``'s Nyquist frequency."""
        if self.notch_freq is None:
            return None
        n = math.ceil((source_rate / 2) / self.notch_freq) - 1
        return tuple(self.notch_freq * k for k in range(1, n + 1)) or None


PRESETS = {
    "eeg": PrepareConfig(),
    # Myo-style armbands record at 200 Hz; lower rates are rejected.
    "emg": PrepareConfig(modality="emg", sample_rate=1000.0, min_sample_rate=200.0),
}


def prepare_preset(name: str) -> PrepareConfig:
    """The ``eeg`` or ``emg`` preparation preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def load_prepare_config(
    preset: str = "eeg", path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = ()
) -> PrepareConfig:
    """``preset``, updated by the YAML file ``path`` (if any), then by ``key=value`` overrides."""
    config = prepare_preset(preset)
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        try:
            config = dataclass_from_dict(PrepareConfig, {**to_dict(config), **data})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e
    return apply_overrides(config, list(overrides))


def codec_prepare_config(stored: dict | None, *, sample_rate: float, modality: Modality) -> PrepareConfig:
    """The typed prepare config of a codec running at ``sample_rate``: ``stored`` (the dict a codec
    keeps in ``metadata.json`` / a run in ``preprocessing.json``: :func:`config_to_dict`'s format)
    read back (:func:`config_from_dict`: without a ``resample`` field, "fft"), else (None or empty:
    e.g. the original's ``.pt``) the ``modality`` preset at that rate with ``resample="fft"`` (what
    such codecs were always fed here; the original's recipe does not name a resampling method).

    ValueError if ``stored`` is not a prepare config or resamples to another rate than ``sample_rate``.
    """
    if stored:
        try:
            prep = config_from_dict(stored)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the codec's stored preprocessing is not a prepare config: {e}") from e
        if prep.sample_rate != sample_rate:
            raise ValueError(
                f"the codec's stored preprocessing resamples to {prep.sample_rate:g} Hz but the codec runs at "
                f"{sample_rate} Hz"
            )
        return prep
    prep = replace(prepare_preset(modality), resample=LEGACY_RESAMPLE)
    if prep.sample_rate != sample_rate:
        prep = replace(prep, sample_rate=float(sample_rate))
    return prep


def config_from_dict(data: dict) -> PrepareConfig:
    """Inverse of :func:`config_to_dict` (e.g. a manifest's ``config``, a codec's stored preprocessing).

    A config stored before ``resample`` existed has no such key: it loads as ``"fft"``
    (:data:`LEGACY_RESAMPLE`), the resampling its windows were made with, not as today's default.
    """
    return dataclass_from_dict(PrepareConfig, {"resample": LEGACY_RESAMPLE, **data})


def config_to_dict(config: PrepareConfig) -> dict:
    return to_dict(config)


__all__ = [
    "PrepareConfig",
    "PRESETS",
    "LEGACY_RESAMPLE",
    "prepare_preset",
    "load_prepare_config",
    "config_from_dict",
    "config_to_dict",
    "codec_prepare_config",
]
