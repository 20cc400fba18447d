"""The figures of a codec report (matplotlib's object API: no pyplot state), each drawn from
:func:`~biocodec_jax.reports.measurement.measure`'s numbers into one PNG.

matplotlib is imported where a figure is made (:func:`_figure`): it is an optional dependency of
the library, needed only to draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from biocodec_jax.reports.measurement import Reconstruction, display_scale
from biocodec_jax.reports.text import fmt

FIGURES = ("signals", "psd", "bands", "channels", "codebooks", "quality_vs_bitrate")


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


def plot_signals(path: Path, rec: Reconstruction, results: dict, *, max_channels: int, excerpt_seconds: float) -> Path:
    """Input vs reconstruction in physical (display) units on an excerpt from the middle."""
    p = rec.prepared
    sr = results["recording"]["sample_rate_hz"]
    n = rec.x.shape[1]
    length = int(min(n, max(1, round(excerpt_seconds * sr))))
    start = (n - length) // 2
    t = (start + np.arange(length)) / sr
    scale, unit = display_scale(p)
    picks = plotted_channels(rec.x.shape[0], max_channels)
    fig = _figure(11, 0.6 + 1.5 * len(picks))
    axes = fig.subplots(len(picks), 1, sharex=True, squeeze=False)[:, 0]
    ch = results["channels"]
    for ax, i in zip(axes, picks):
        to_units = lambda s: (s[i, start : start + length].astype(np.float64) * p.iqr[i] + p.median[i]) * scale[i]  # noqa: E731
        ax.plot(t, to_units(rec.x), lw=0.7, color="black", label="input (prepared)")
        ax.plot(t, to_units(rec.y), lw=0.7, color="tab:orange", alpha=0.85, label="reconstruction")
        ax.set_title(f"{ch['names'][i]}: corr {fmt(ch['correlation'][i], 3)}, SI-SDR {fmt(ch['si_sdr_db'][i], 2)} dB "
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
