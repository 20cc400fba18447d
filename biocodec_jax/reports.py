"""How well a codec codes one recording: ``report.md``, ``report.json`` and figures (``biocodec-jax report``).

>>> results = analyze(codec, "data/eegmmidb/S004/S004R04.edf")          # every number, JSON-ready
>>> paths = write_report(codec, "data/eegmmidb/S004/S004R04.edf", "S004R04_report")

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
  (:mod:`biocodec_jax.signal_metrics`, the definition training logs). They are computed in the
  normalised domain, where the metrics' ``eps`` is negligible, and in float64. Both are invariant to the per-channel affine map
  back to physical units (``x * IQR + median``), so they are also the metrics of the signals in
  volts.
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

:func:`analyze` computes (no drawing, no files); :func:`write_report` also draws and writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mne
import numpy as np

from biocodec_jax.signal_metrics import correlation, si_sdr
from biocodec_jax.tokenizer import Prepared, channel_units, decode_channels, encode_channels, fingerprint, prepare_recording

if TYPE_CHECKING:
    from biocodec_jax.codec import Codec

# Frequency bands (Hz) by modality, in order; the upper edge of the last one is capped at the
# band limit of the recording (see the module doc). Bands are half-open, [low, high).
BANDS: dict[str, dict[str, tuple[float, float]]] = {
    "eeg": {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 80.0)},
    "emg": {"10-50 Hz": (10.0, 50.0), "50-100 Hz": (50.0, 100.0), "100-200 Hz": (100.0, 200.0), "200-450 Hz": (200.0, 450.0)},
}
WELCH_SECONDS = 2.0
REPORT_MD, REPORT_JSON, FIGURES_DIR = "report.md", "report.json", "figures"
FIGURES = ("signals", "psd", "bands", "channels", "codebooks", "quality_vs_bitrate")


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


def _display_scale(prepared: Prepared) -> tuple[np.ndarray, str]:
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
    scale, unit = _display_scale(p)

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
            "id": fingerprint(codec),
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


# ---------------------------------------------------------------------------------------------
# Figures (matplotlib's object API: no pyplot state).


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plotted_channels(n_channels: int, max_channels: int) -> list[int]:
    """Indices of at most ``max_channels`` channels spread evenly over ``n_channels`` (all if fewer)."""
    if n_channels <= max_channels:
        return list(range(n_channels))
    return sorted({int(round(i)) for i in np.linspace(0, n_channels - 1, max_channels)})


def _floats(values: list) -> np.ndarray:
    """A list from :func:`measure` as a float array, None (undefined) as NaN."""
    return np.array([np.nan if v is None else v for v in values], float)


def _fmt(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals ("-0.00" written "0.00"), None as "n/a"."""
    return "n/a" if value is None else f"{round(value, digits) + 0.0:.{digits}f}"


def plot_signals(path: Path, rec: Reconstruction, results: dict, *, max_channels: int, excerpt_seconds: float) -> Path:
    """Input vs reconstruction in physical (display) units on an excerpt from the middle."""
    p = rec.prepared
    sr = results["recording"]["sample_rate_hz"]
    n = rec.x.shape[1]
    length = int(min(n, max(1, round(excerpt_seconds * sr))))
    start = (n - length) // 2
    t = (start + np.arange(length)) / sr
    scale, unit = _display_scale(p)
    picks = plotted_channels(rec.x.shape[0], max_channels)
    fig = _figure(11, 0.6 + 1.5 * len(picks))
    axes = fig.subplots(len(picks), 1, sharex=True, squeeze=False)[:, 0]
    ch = results["channels"]
    for ax, i in zip(axes, picks):
        to_units = lambda s: (s[i, start : start + length].astype(np.float64) * p.iqr[i] + p.median[i]) * scale[i]  # noqa: E731
        ax.plot(t, to_units(rec.x), lw=0.7, color="black", label="input (prepared)")
        ax.plot(t, to_units(rec.y), lw=0.7, color="tab:orange", alpha=0.85, label="reconstruction")
        ax.set_title(f"{ch['names'][i]}: corr {_fmt(ch['correlation'][i], 3)}, SI-SDR {_fmt(ch['si_sdr_db'][i], 2)} dB "
                     "(whole recording)", fontsize=9, loc="left")
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(loc="upper right", fontsize=7, ncols=2)
    axes[-1].set_xlabel("time (s)")
    shown = f"{len(picks)} of {rec.x.shape[0]} channels" if len(picks) < rec.x.shape[0] else f"{len(picks)} channels"
    fig.suptitle(f"Input vs reconstruction, {t[0]:.1f}-{t[-1] + 1 / sr:.1f} s, {shown}", fontsize=10)
    fig.savefig(path, dpi=100)
    return path


def _shade_bands(ax, results: dict) -> None:
    for j, (name, (low, high)) in enumerate(zip(results["bands"]["names"], results["bands"]["edges_hz"])):
        ax.axvspan(low, high, color="0.92" if j % 2 else "0.85", lw=0, zorder=0)
        ax.text((low * high) ** 0.5, 0.98, name, transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=7, color="0.35")


def plot_psd(path: Path, results: dict) -> Path:
    """Mean PSD over channels of input, reconstruction and error on log-log axes, bands shaded.

    The y range is that of the curves below the band limit: above a low-rate recording's Nyquist
    frequency the input holds only the resampler's roll-off, orders of magnitude down.
    """
    psd = results["psd"]
    f = np.asarray(psd["freqs_hz"])
    keep = f > 0  # a log frequency axis: the EEG bands are an octave-like scale
    limit = results["bands"]["band_limit_hz"]
    fig = _figure(8, 4.2)
    ax = fig.subplots()
    _shade_bands(ax, results)
    in_band = []
    for key, label, color in (("input_mean", "input", "black"), ("reconstruction_mean", "reconstruction", "tab:orange"),
                              ("error_mean", "error (reconstruction - input)", "tab:red")):
        values = _floats(psd[key])
        ax.loglog(f[keep], values[keep], lw=1.1, color=color, label=label)
        in_band.append(values[keep & (f <= limit) & (values > 0)])
    in_band = np.concatenate(in_band)
    if np.isfinite(in_band).any():
        ax.set_ylim(np.nanmin(in_band) / 10, np.nanmax(in_band) * 10)
    if limit < f[-1]:
        ax.axvline(limit, color="0.4", ls="--", lw=0.8)
        ax.text(limit, 0.02, " recording's\n Nyquist", transform=ax.get_xaxis_transform(), fontsize=7, color="0.35")
    ax.set_xlim(f[keep][0] if keep.any() else None, f[-1])
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel(f"PSD ({psd['unit']}), mean over channels")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(f"Welch PSD, {psd['welch_segment_s']:g}-s segments", fontsize=10)
    fig.savefig(path, dpi=100)
    return path


def plot_bands(path: Path, results: dict) -> Path:
    """Per band: power bias and error-to-signal ratio (dB), mean over channels, channels as dots."""
    b = results["bands"]
    names = b["names"]
    fig = _figure(max(6, 1.3 * len(names) + 2), 4.2)
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "power_bias_db", "power bias 10 log10(P_recon / P_input)"),
                           (axes[1], "error_to_signal_db", "error-to-signal 10 log10(P_error / P_input)")):
        per_channel = np.array([_floats(row) for row in b[key]])  # [band, C]
        means = _floats(b[key + "_mean"])
        pos = np.arange(len(names))
        ax.bar(pos, means, color="tab:blue", alpha=0.6, label="mean over channels")
        rng = np.random.default_rng(0)  # fixed jitter: the same figure every run
        for j in pos:
            ax.plot(j + rng.uniform(-0.25, 0.25, per_channel.shape[1]), per_channel[j], ".", ms=3, color="black", alpha=0.5)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_xticks(pos, names, fontsize=8)
        ax.set_ylabel("dB")
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=100)
    return path


def plot_channels(path: Path, results: dict) -> Path:
    """Correlation and SI-SDR of every channel (the correlation axis ends at 1, its best)."""
    ch = results["channels"]
    names = ch["names"]
    pos = np.arange(len(names))
    fig = _figure(max(7, 0.18 * len(names) + 2), 5)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, key, label, color in ((axes[0], "correlation", "correlation", "tab:blue"),
                                  (axes[1], "si_sdr_db", "SI-SDR (dB)", "tab:green")):
        values = _floats(ch[key])
        ax.bar(pos, values, color=color)
        if np.isfinite(values).any():
            ax.axhline(np.nanmean(values), color="black", lw=0.8, ls="--", label=f"mean {np.nanmean(values):.3g}")
            ax.legend(fontsize=7, loc="best")
        ax.axhline(0, color="0.3", lw=0.6)
        ax.set_ylabel(label)
    corr = _floats(ch["correlation"])
    axes[0].set_ylim(min(0.0, np.nanmin(corr) if np.isfinite(corr).any() else 0.0) - 0.05, 1.0)
    axes[1].set_xticks(pos, names, rotation=90, fontsize=7 if len(names) <= 32 else 6)
    fig.suptitle("Per channel (whole recording)", fontsize=10)
    fig.savefig(path, dpi=100)
    return path


def plot_codebooks(path: Path, results: dict) -> Path:
    """Code frequencies sorted per quantizer, and usage / perplexity per quantizer."""
    cb = results["codebooks"]
    size = results["codec"]["codebook_size"]
    counts = np.asarray(cb["counts"], float)
    fig = _figure(11, 4.2)
    left, right = fig.subplots(1, 2)
    for k, row in enumerate(counts):
        freq = np.sort(row)[::-1] / row.sum()
        left.semilogy(np.arange(1, size + 1), np.where(freq > 0, freq, np.nan), lw=1.1, label=f"q{k + 1}")
    left.axhline(1 / size, color="0.4", ls="--", lw=0.8, label="uniform")
    left.set_xlabel("code rank")
    left.set_ylabel("frequency")
    left.set_title("Sorted code frequencies (all channels and frames)", fontsize=9)
    left.legend(fontsize=7, ncols=2)
    pos = np.arange(1, len(counts) + 1)
    right.bar(pos - 0.2, cb["used_codes"], width=0.4, label="distinct codes used")
    right.bar(pos + 0.2, cb["perplexity"], width=0.4, label="perplexity")
    right.axhline(size, color="0.4", ls="--", lw=0.8, label=f"codebook size {size}")
    right.set_ylim(0, size * 1.25)
    right.set_xticks(pos, [f"q{k}" for k in pos])
    right.set_xlabel("quantizer")
    right.set_title("Codebook usage", fontsize=9)
    right.legend(fontsize=7, loc="upper center", ncols=3)
    fig.savefig(path, dpi=100)
    return path


def plot_quality_vs_bitrate(path: Path, results: dict) -> Path:
    """Mean and median correlation and SI-SDR when decoding the first k quantizers; bitrate on
    the bottom axis, quantizers on the top one."""
    q = results["quality_vs_bitrate"]
    bps = np.asarray(q["bitrate_bps_per_channel"])
    per_quantizer = bps[0] / q["n_q"][0]
    fig = _figure(10, 4)
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "correlation", "correlation"), (axes[1], "si_sdr_db", "SI-SDR (dB)")):
        for stat, style in (("mean", "o-"), ("median", "s--")):
            ax.plot(bps, _floats(q[f"{key}_{stat}"]), style, ms=4, label=f"{stat} over channels")
        top = ax.secondary_xaxis("top", functions=(lambda b: b / per_quantizer, lambda k: k * per_quantizer))
        top.set_xticks(q["n_q"])
        top.set_xlabel("quantizers", fontsize=8)
        ax.set_xlabel("bitrate (bit/s per channel)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Quality vs bitrate: decoding the first k quantizers", fontsize=10)
    fig.savefig(path, dpi=100)
    return path


# ---------------------------------------------------------------------------------------------
# report.md


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(results: dict) -> str:
    """``report.md``: header, tables of every headline number and links to ``figures/``.

    Formats: correlation 3 decimals, dB 2 decimals, percentages 2 decimals, bit/s and ratios as
    written; None (undefined, e.g. a constant channel) as ``n/a``.
    """
    r, c, b, s = results["recording"], results["codec"], results["bitrate"], results["summary"]
    bands, ch, cb, q = results["bands"], results["channels"], results["codebooks"], results["quality_vs_bitrate"]
    fig = lambda name, alt: f"![{alt}]({FIGURES_DIR}/{name}.png)"  # noqa: E731
    clip = f"clipped to ±{r['clip']:g}" if r["clip"] is not None else "not clipped"
    unit = {"AU": "AU (no physical unit recorded, e.g. ADC counts)", "mixed": "mixed units"}.get(r["unit"], r["unit"])
    dropped = r.get("dropped_channels") or []
    left_out = ([f"- left out: {len(dropped)} {r['modality'].upper()} channel(s) that cannot be coded, not measured "
                 "in this report: " + "; ".join(f"`{d['channel']}` ({d['reason']})" for d in dropped)] if dropped else [])
    lines = [
        f"# Codec report: {Path(r['source']).name}", "",
        f"- recording: `{r['source']}`: {len(r['channels'])} {r['modality'].upper()} channels, "
        f"{r['duration_s']:.1f} s at {r['original_sample_rate_hz']:g} Hz ({r['original_n_samples']} samples), "
        f"values in {unit}",
        *left_out,
        f"- codec: `{c['source'] or '(in memory)'}`, preset {c['preset']}, id {c['id']}: {c['sample_rate_hz']:g} Hz, "
        f"hop {c['hop_samples']} ({c['frame_rate_hz']:.2f} frames/s), {c['n_q']} quantizers x {c['codebook_size']} codes",
        f"- compared: the codec's input (resampled to {c['sample_rate_hz']:g} Hz, (x - median) / IQR per channel, {clip}) "
        "and its reconstruction. Correlation, SI-SDR and band power ratios do not change when both are "
        "mapped back to physical units; clipping is before the codec and not counted as its error.",
        "", "## Summary", "",
        *_table(["metric", "mean over channels", "median over channels"], [
            ["correlation", _fmt(s["correlation"]["mean"], 3), _fmt(s["correlation"]["median"], 3)],
            ["SI-SDR (dB)", _fmt(s["si_sdr_db"]["mean"], 2), _fmt(s["si_sdr_db"]["median"], 2)],
            ["clipped samples (%)", _pct(s["clipped_fraction"]["mean"]), _pct(s["clipped_fraction"]["median"])],
        ]),
        "", "## Bitrate", "",
        *_table(["quantity", "value"], [
            ["bits per code", f"{b['bits_per_code']:g}"],
            ["bitrate per channel (bit/s)", f"{b['bps_per_channel']:.1f}"],
            [f"bitrate, all {len(r['channels'])} channels (bit/s)", f"{b['bps_all_channels']:.1f}"],
            [f"compression vs float32 samples at {c['sample_rate_hz']:g} Hz", f"{b['compression_vs_float32_at_codec_rate']:.2f}"],
            [f"compression vs 16-bit samples at {r['original_sample_rate_hz']:g} Hz (as recorded)",
             f"{b['compression_vs_int16_at_original_rate']:.2f}"],
        ]),
        "", "## Signals", "", fig("signals", "input vs reconstruction"), "",
        "## Spectrum and bands", "",
        f"Welch PSD, {results['psd']['welch_segment_s']:g}-s Hann segments, half overlap. Bands are [low, high) Hz, "
        f"cut at {bands['band_limit_hz']:g} Hz (the lower of the recording's and the codec's Nyquist frequency). "
        "Power bias: 10 log10(P_recon / P_input); error-to-signal: 10 log10(P_error / P_input), error = "
        "reconstruction - input (0 dB: as much error as signal).", "",
        fig("psd", "power spectral density"), "",
        *_table(["band", "Hz", "power bias (dB), mean", "error-to-signal (dB), mean"], [
            [name, f"{lo:g}-{hi:g}", _fmt(bias, 2), _fmt(err, 2)]
            for name, (lo, hi), bias, err in zip(bands["names"], bands["edges_hz"], bands["power_bias_db_mean"],
                                                 bands["error_to_signal_db_mean"])
        ]),
        "", fig("bands", "power bias and error per band"), "",
        "## Per channel", "",
        "Error-to-signal (dB) per band, then power bias (dB) per band.", "",
        *_table(["channel", "corr", "SI-SDR (dB)", "clipped (%)"] + [f"err {n}" for n in bands["names"]]
                + [f"bias {n}" for n in bands["names"]], [
            [name, _fmt(ch["correlation"][i], 3), _fmt(ch["si_sdr_db"][i], 2), _pct(ch["clipped_fraction"][i])]
            + [_fmt(row[i], 2) for row in bands["error_to_signal_db"]] + [_fmt(row[i], 2) for row in bands["power_bias_db"]]
            for i, name in enumerate(ch["names"])
        ]),
        "", fig("channels", "correlation and SI-SDR per channel"), "",
        "## Codebooks", "",
        "Over all channels and frames. Perplexity exp(-sum p ln p) of the code frequencies p: the number of "
        f"equally used codes carrying as much information (at most {c['codebook_size']}).", "",
        *_table(["quantizer", "codes used", "usage (%)", "perplexity"], [
            [f"q{k + 1}", str(used), _pct(usage), f"{ppl:.2f}"]
            for k, (used, usage, ppl) in enumerate(zip(cb["used_codes"], cb["usage"], cb["perplexity"]))
        ]),
        "", fig("codebooks", "codebook usage"), "",
        "## Quality vs bitrate", "",
        "The codes of the first k quantizers decoded (one encoding: a residual quantizer's first codes do not "
        "depend on later ones).", "",
        *_table(["quantizers", "bit/s per channel", "corr mean", "corr median", "SI-SDR mean (dB)", "SI-SDR median (dB)"], [
            [str(k), f"{bps:.1f}", _fmt(cm, 3), _fmt(cmed, 3), _fmt(sm, 2), _fmt(smed, 2)]
            for k, bps, cm, cmed, sm, smed in zip(q["n_q"], q["bitrate_bps_per_channel"], q["correlation_mean"],
                                                  q["correlation_median"], q["si_sdr_db_mean"], q["si_sdr_db_median"])
        ]),
        "", fig("quality_vs_bitrate", "quality vs bitrate"), "",
        f"All numbers: [{REPORT_JSON}]({REPORT_JSON}).", "",
    ]
    return "\n".join(lines)


def _pct(fraction: float | None) -> str:
    return _fmt(None if fraction is None else 100 * fraction, 2)


# ---------------------------------------------------------------------------------------------
# The report on disk.


def write_report(
    codec: "Codec",
    recording: Any,
    output_dir: str | Path,
    *,
    max_plot_channels: int = 8,
    excerpt_seconds: float = 10.0,
    n_qs: Any = None,
    source: str | None = None,
    codec_source: str | None = None,
) -> dict[str, Path]:
    """Measure ``codec`` on ``recording`` and write ``report.md``, ``report.json`` and
    ``figures/*.png`` into ``output_dir``; returns ``{"markdown", "json", <figure name>: path}``.

    ``n_qs``: the quantizer counts of the quality-vs-bitrate curve (default ``1 .. n_q``).
    All channels are measured and tabulated; ``max_plot_channels`` of them (spread over the
    montage) are drawn on an excerpt of ``excerpt_seconds`` from the middle of the recording.
    The recording is read and measured before ``output_dir`` is touched; the files are written
    into a temporary directory inside it and moved into place with ``report.md`` last (an older
    ``report.md`` is removed first), so a failure never leaves a report that looks complete.
    Only the report's own file names are replaced; nothing else in ``output_dir`` is touched.
    """
    if max_plot_channels < 1:
        raise ValueError(f"max_plot_channels must be at least 1; got {max_plot_channels}")
    rec = reconstruct_recording(codec, recording, source=source)
    results = measure(codec, rec, n_qs=n_qs, codec_source=codec_source)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-partial-", dir=output_dir))
    try:
        (staging / FIGURES_DIR).mkdir()
        drawn = {
            "signals": lambda p: plot_signals(p, rec, results, max_channels=max_plot_channels, excerpt_seconds=excerpt_seconds),
            "psd": lambda p: plot_psd(p, results),
            "bands": lambda p: plot_bands(p, results),
            "channels": lambda p: plot_channels(p, results),
            "codebooks": lambda p: plot_codebooks(p, results),
            "quality_vs_bitrate": lambda p: plot_quality_vs_bitrate(p, results),
        }
        for name, draw in drawn.items():
            draw(staging / FIGURES_DIR / f"{name}.png")
        (staging / REPORT_JSON).write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
        (staging / REPORT_MD).write_text(markdown(results), encoding="utf-8")

        (output_dir / REPORT_MD).unlink(missing_ok=True)  # an old report must not outlive a failed swap
        (output_dir / FIGURES_DIR).mkdir(exist_ok=True)
        paths: dict[str, Path] = {}
        for name in FIGURES:
            paths[name] = output_dir / FIGURES_DIR / f"{name}.png"
            os.replace(staging / FIGURES_DIR / f"{name}.png", paths[name])
        for key, name in (("json", REPORT_JSON), ("markdown", REPORT_MD)):
            paths[key] = output_dir / name
            os.replace(staging / name, paths[key])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"markdown": paths["markdown"], "json": paths["json"], **{name: paths[name] for name in FIGURES}}


__all__ = ["BANDS", "Reconstruction", "analyze", "markdown", "measure", "quality_curve", "reconstruct_recording", "write_report"]
