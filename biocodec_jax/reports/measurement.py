"""How well a codec codes one recording, in numbers: :func:`analyze` (no drawing, no files).

What is compared: the codec's input ``x``, the recording prepared exactly as for tokenization
(:func:`biocodec_jax.tokenizer.prepare_recording`: the codec's channels, resampled to its rate,
``(x - median) / IQR`` per channel, clipped), and its reconstruction ``y = decode(encode(x))``
trimmed to the length of ``x``. Clipping and filtering happen before the codec and cannot be
undone by it, so they are not counted as its error; the share of clipped samples per channel is
reported next to the metrics so that a heavily clipped channel is not mistaken for a well coded one.
Channels the tokenizer leaves out (NaN/Inf samples or flat, :attr:`Prepared.dropped_channels`)
are not measured; the report says which and why (``recording.dropped_channels`` in
``report.json``, a "left out" line in ``report.md``). Units are the recording's own
(``info["chs"][i]["unit"]``): volts are drawn in µV, channels without a physical unit (e.g. the
Myo armband's ADC counts) unscaled, in "AU" (``recording.unit`` / ``recording.units``).

What is measured, all per channel (the codec codes every channel on its own) and summarised by
mean and median over channels:

- Pearson correlation and scale-invariant SDR (dB) of ``y`` against ``x``
  (:mod:`biocodec_jax.signal_metrics`, the definitions training logs), computed in the normalised
  domain, where the metrics' ``eps`` is negligible, and in float64. Both are invariant to the
  per-channel affine map back to physical units (``x * IQR + median``), so they are also the
  metrics of the signals in volts.
- Power spectra (Welch, Hann window, 2-s segments with half overlap, shorter for short
  recordings) of ``x``, ``y`` and the error ``y - x``, and per frequency band: the power bias
  ``10 log10(P_y / P_x)`` dB (does the codec keep the band's power?) and the error-to-signal ratio
  ``10 log10(P_err / P_x)`` dB (how much of the band is wrong, amplitude and phase; 0 dB: as much
  error as signal). Power ratios do not depend on the per-channel scale either. Bands
  (:data:`BANDS`) are the classical EEG rhythms for EEG codecs and broad bands of the surface-EMG
  spectrum for the ``emg`` preset, cut at the lower of the recording's and the codec's Nyquist
  frequency: a recording sampled below the codec's rate has no content above its own Nyquist
  frequency after resampling, and a ratio of two empty bands says nothing.
- Bitrate: ``n_q * log2(codebook_size) * frame_rate`` bit/s per channel, and the compression
  ratio against float32 samples at the codec's rate and 16-bit samples at the recording's rate.
- Codebook usage per quantizer over all channels and frames: the share of the codebook used and
  the perplexity ``exp(-sum p ln p)`` of the code frequencies ``p`` (the number of equally used
  codes that would carry as much information; at most the codebook size).
- Quality against bitrate: the codes of the first ``k`` quantizers decoded, ``k = 1 .. n_q``. A
  residual quantizer's first ``k`` codes do not depend on the later ones, so one encoding serves
  every ``k``; this is the curve of what dropping quantizers costs.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Any

import mne
import numpy as np

from biocodec_jax.signal_metrics import correlation, si_sdr
from biocodec_jax.tokenizer import Prepared, channel_units, decode_channels, encode_channels, prepare_recording

if TYPE_CHECKING:
    from biocodec_jax.codec import Codec


# Frequency bands (Hz) by modality, in order; the upper edge of the last one is capped at the
# band limit of the recording (see the module doc). Bands are half-open, [low, high).
BANDS: dict[str, dict[str, tuple[float, float]]] = {
    "eeg": {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 80.0)},
    "emg": {"10-50 Hz": (10.0, 50.0), "50-100 Hz": (50.0, 100.0), "100-200 Hz": (100.0, 200.0), "200-450 Hz": (200.0, 450.0)},
}
WELCH_SECONDS = 2.0


# ---------------------------------------------------------------------------------------------
# Metrics (pure numpy, per channel: arrays [C, n]).


def quality(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation and SI-SDR (dB) of ``y`` against ``x`` per channel ``[C]``, in float64
    (the one definition, :mod:`biocodec_jax.signal_metrics`)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return correlation(x, y), si_sdr(x, y)


def clipped_fraction(x: np.ndarray, limit: float | None) -> np.ndarray:
    """Share of the samples of each channel at the clip limit ``[C]`` (zeros without clipping)."""
    if limit is None:
        return np.zeros(x.shape[0])
    return np.mean(np.abs(x) >= np.float32(limit), axis=-1)


def welch_psd(x: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """``(psd [C, F], freqs [F])``: Welch, Hann, :data:`WELCH_SECONDS` segments (or the whole
    signal when shorter) with half overlap, mean over segments, DC removed per segment."""
    n_per_seg = int(min(round(WELCH_SECONDS * sample_rate), x.shape[-1]))
    return mne.time_frequency.psd_array_welch(
        np.asarray(x, np.float64), float(sample_rate), fmin=0.0, fmax=sample_rate / 2, n_fft=n_per_seg,
        n_per_seg=n_per_seg, n_overlap=n_per_seg // 2, window="hann", average="mean", verbose=False,
    )


def bands_for(modality: str, band_limit_hz: float) -> dict[str, tuple[float, float]]:
    """The :data:`BANDS` of ``modality`` below ``band_limit_hz``, the last one cut there."""
    out = {}
    for name, (low, high) in BANDS[modality].items():
        if low < band_limit_hz:
            out[name] = (low, min(high, band_limit_hz))
    return out


def band_power(psd: np.ndarray, freqs: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Power of ``psd [C, F]`` in ``[low, high)``: the PSD summed over the band's bins times the
    bin width ``[C]`` (0 for a band without bins, e.g. delta in a recording shorter than 2 s)."""
    low, high = band
    in_band = (freqs >= low) & (freqs < high)
    df = freqs[1] - freqs[0] if len(freqs) > 1 else 1.0
    return psd[:, in_band].sum(axis=-1) * df


def ratio_db(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``10 log10(numerator / denominator)``; NaN where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(np.asarray(numerator, np.float64) / np.asarray(denominator, np.float64))


def code_statistics(codes: np.ndarray, codebook_size: int) -> dict[str, list]:
    """Per quantizer of ``codes`` ``[C, K, T']`` over all channels and frames: counts of each
    code, distinct codes used, usage (used / codebook size) and perplexity ``exp(-sum p ln p)``."""
    counts = np.stack([np.bincount(codes[:, k].ravel(), minlength=codebook_size) for k in range(codes.shape[1])])
    p = counts / counts.sum(axis=1, keepdims=True)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    used = (counts > 0).sum(axis=1)
    return {
        "counts": counts.tolist(),
        "used_codes": used.tolist(),
        "usage": (used / codebook_size).tolist(),
        "perplexity": np.exp(entropy).tolist(),
    }


def bitrate(n_q: int, codebook_size: int, frame_rate: float) -> float:
    """Bits per second per channel of ``n_q`` codes of ``log2(codebook_size)`` bits per frame."""
    return n_q * math.log2(codebook_size) * frame_rate


# ---------------------------------------------------------------------------------------------
# The codec on a recording.


@dataclasses.dataclass(frozen=True, eq=False)
class Reconstruction:
    """A recording prepared for a codec (``prepared.x`` ``[C, n]``), its codes ``[C, n_q, T']`` and
    their decoding ``y`` ``[C, n]`` (all quantizers, normalised domain, trimmed to ``n``)."""

    prepared: Prepared
    codes: np.ndarray
    y: np.ndarray

    @property
    def x(self) -> np.ndarray:
        return self.prepared.x


def reconstruct_recording(codec: "Codec", recording: Any, *, source: str | None = None) -> Reconstruction:
    """Prepare ``recording`` (a path or ``mne.io.Raw``) as for tokenization, encode and decode it.

    Raises :class:`~biocodec_jax.tokenizer.TokenizeError` (a ValueError naming the recording) for
    a recording the codec cannot take.
    """
    prepared = prepare_recording(codec, recording, source=source)
    codes = encode_channels(codec, prepared.x)  # [C, n_q, T'], a few channels a call, as tokenize
    return Reconstruction(prepared, codes, decode_first(codec, codes, codec.n_q, prepared.x.shape[1]))


def decode_first(codec: "Codec", codes: np.ndarray, k: int, n_samples: int) -> np.ndarray:
    """The decoding ``[C, n_samples]`` of the codes ``[C, n_q, T']`` of the first ``k`` quantizers."""
    return np.asarray(decode_channels(codec, codes[:, :k])[:, :n_samples], np.float32)


def _quantizer_counts(codec: "Codec", n_qs: Any) -> list[int]:
    """``n_qs`` (default ``1 .. n_q``) sorted, with ``n_q`` itself; ValueError outside ``1 .. n_q``."""
    ks = sorted({int(k) for k in (range(1, codec.n_q + 1) if n_qs is None else n_qs)} | {codec.n_q})
    bad = [k for k in ks if not 1 <= k <= codec.n_q]
    if bad:
        raise ValueError(f"quantizer counts must be between 1 and {codec.n_q}; got {bad[0]}")
    return ks


def quality_curve(codec: "Codec", rec: Reconstruction, n_qs: Any = None) -> dict[str, list]:
    """Mean and median correlation and SI-SDR over channels, and the bitrate, when decoding the
    first ``k`` quantizers, ``k`` in ``n_qs`` (see :func:`_quantizer_counts`). One decoding at a
    time (memory), the full one taken from ``rec``."""
    cfg = codec.codec_config
    curve: dict[str, list] = {key: [] for key in ("n_q", "bitrate_bps_per_channel", "correlation_mean", "correlation_median",
                                                  "si_sdr_db_mean", "si_sdr_db_median")}
    for k in _quantizer_counts(codec, n_qs):
        y = rec.y if k == codec.n_q else decode_first(codec, rec.codes, k, rec.x.shape[1])
        corr, sdr = map(_summary, quality(rec.x, y))
        curve["n_q"].append(k)
        curve["bitrate_bps_per_channel"].append(bitrate(k, cfg.codebook_size, cfg.frame_rate))
        for stat in ("mean", "median"):
            curve[f"correlation_{stat}"].append(corr[stat])
            curve[f"si_sdr_db_{stat}"].append(sdr[stat])
    return curve


def display_scale(prepared: Prepared) -> tuple[np.ndarray, str]:
    """Per-channel factor from recording units to display units, and the display unit's name.

    The unit is the recording's (``info["chs"][i]["unit"]``, :func:`~biocodec_jax.tokenizer.channel_units`),
    not the channel type's: volts of EEG/EMG are shown as MNE shows them (µV); channels without a
    physical unit (``FIFF_UNIT_NONE``, e.g. Myo ADC counts) unscaled, in "AU"; mixed types or
    units unscaled in "AU"."""
    types, units = prepared.info.get_channel_types(), channel_units(prepared.info)
    if len(set(types)) == 1 and len(set(units)) == 1:
        defaults = mne.defaults.DEFAULTS
        if units[0] == defaults["si_units"].get(types[0]) and types[0] in defaults["units"]:  # the type's own SI unit
            return np.full(len(types), defaults["scalings"][types[0]]), defaults["units"][types[0]]
        return np.ones(len(types)), units[0]
    return np.ones(len(types)), "AU"


def _recording_unit(prepared: Prepared) -> str:
    """The recording's unit ("V"; "AU": none, e.g. ADC counts), or "mixed"."""
    units = set(channel_units(prepared.info))
    return units.pop() if len(units) == 1 else "mixed"


def _nan_stat(stat, values: np.ndarray, **kwargs) -> Any:
    """``stat`` (np.nanmean, np.nanmedian) of ``values``, NaN without a warning when all are NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stat(values, **kwargs)


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(_nan_stat(np.nanmean, values)), "median": float(_nan_stat(np.nanmedian, values))}


def measure(codec: "Codec", rec: Reconstruction, *, n_qs: Any = None, codec_source: str | None = None) -> dict[str, Any]:
    """Every number of the report (see the module doc) from ``rec``; a JSON-ready dict
    (non-finite values, e.g. the correlation of a constant channel, become None). ``n_qs``: the
    quantizer counts of the quality-vs-bitrate curve (default ``1 .. n_q``)."""
    p, x, y = rec.prepared, rec.x, rec.y
    cfg = codec.codec_config
    sr = float(codec.sample_rate)
    modality = p.prep.modality
    band_limit = min(sr, p.original_sample_rate) / 2
    bands = bands_for(modality, band_limit)
    scale, unit = display_scale(p)

    psd_x, freqs = welch_psd(x, sr)
    psd_y, _ = welch_psd(y, sr)
    psd_e, _ = welch_psd(y - x, sr)
    powers = {name: [band_power(psd, freqs, edges) for psd in (psd_x, psd_y, psd_e)] for name, edges in bands.items()}
    to_display = ((p.iqr * scale) ** 2)[:, None]  # normalised PSD -> display unit^2 / Hz

    (corr, sdr), clipped = quality(x, y), clipped_fraction(x, p.prep.clip)
    full_bps = bitrate(cfg.n_q, cfg.codebook_size, cfg.frame_rate)

    results = {
        "recording": {
            "source": p.source,
            "channels": list(p.info.ch_names),
            "channel_types": list(p.info.get_channel_types()),
            "modality": modality,
            "original_sample_rate_hz": p.original_sample_rate,
            "original_n_samples": p.original_n_samples,
            "sample_rate_hz": sr,
            "n_samples": int(x.shape[1]),
            "duration_s": x.shape[1] / sr,
            "median": np.asarray(p.median).tolist(),
            "iqr": np.asarray(p.iqr).tolist(),
            "unit": _recording_unit(p),
            "units": list(channel_units(p.info)),
            # channels of the modality left out (NaN/Inf samples, flat): {channel, canonical, reason}
            "dropped_channels": [dict(d) for d in p.dropped_channels],
            "clip": p.prep.clip,
            "l_freq_hz": p.prep.l_freq,
            "h_freq_hz": p.prep.h_freq,
        },
        "codec": {
            "source": codec_source,
            "id": codec.fingerprint(),
            "preset": codec.config.preset,
            "sample_rate_hz": sr,
            "hop_samples": cfg.hop_length,
            "frame_rate_hz": cfg.frame_rate,
            "n_q": cfg.n_q,
            "codebook_size": cfg.codebook_size,
        },
        "bitrate": {
            "bits_per_code": math.log2(cfg.codebook_size),
            "bps_per_channel": full_bps,
            "bps_all_channels": full_bps * x.shape[0],
            "compression_vs_float32_at_codec_rate": 32 * sr / full_bps,
            "compression_vs_int16_at_original_rate": 16 * p.original_sample_rate / full_bps,
        },
        "summary": {
            "correlation": _summary(corr),
            "si_sdr_db": _summary(sdr),
            "clipped_fraction": _summary(clipped),
        },
        "channels": {
            "names": list(p.info.ch_names),
            "correlation": corr.tolist(),
            "si_sdr_db": sdr.tolist(),
            "clipped_fraction": clipped.tolist(),
        },
        "bands": {
            "band_limit_hz": band_limit,
            "names": list(bands),
            "edges_hz": [list(e) for e in bands.values()],
            # [band][channel]; the powers in the normalised domain (unit^2 of (x - median) / IQR)
            "input_power": [pw[0].tolist() for pw in powers.values()],
            "reconstruction_power": [pw[1].tolist() for pw in powers.values()],
            "error_power": [pw[2].tolist() for pw in powers.values()],
            "power_bias_db": [ratio_db(pw[1], pw[0]).tolist() for pw in powers.values()],
            "error_to_signal_db": [ratio_db(pw[2], pw[0]).tolist() for pw in powers.values()],
            "power_bias_db_mean": [float(_nan_stat(np.nanmean, ratio_db(pw[1], pw[0]))) for pw in powers.values()],
            "error_to_signal_db_mean": [float(_nan_stat(np.nanmean, ratio_db(pw[2], pw[0]))) for pw in powers.values()],
        },
        "psd": {
            "welch_segment_s": min(WELCH_SECONDS, x.shape[1] / sr),
            "unit": f"{unit}²/Hz",
            "freqs_hz": freqs.tolist(),
            # mean over channels in display units: what the PSD figure shows
            "input_mean": np.mean(psd_x * to_display, axis=0).tolist(),
            "reconstruction_mean": np.mean(psd_y * to_display, axis=0).tolist(),
            "error_mean": np.mean(psd_e * to_display, axis=0).tolist(),
        },
        "codebooks": code_statistics(rec.codes, cfg.codebook_size),
        "quality_vs_bitrate": quality_curve(codec, rec, n_qs),
    }
    return _json_ready(results)


def analyze(codec: "Codec", recording: Any, *, n_qs: Any = None, source: str | None = None,
            codec_source: str | None = None) -> dict[str, Any]:
    """All the numbers of the report of ``codec`` on ``recording`` (a path or ``mne.io.Raw``).

    ``n_qs``: quantizer counts of the quality-vs-bitrate curve (default ``1 .. n_q``); ``source``:
    the recording's name in errors and the report; ``codec_source``: where the codec came from.
    Returns a JSON-ready dict (see :func:`measure`).
    """
    _quantizer_counts(codec, n_qs)  # a wrong count fails before the recording is read
    rec = reconstruct_recording(codec, recording, source=source)
    return measure(codec, rec, n_qs=n_qs, codec_source=codec_source)


def _json_ready(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and NaN/Inf as None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
