"""``report.md``: a codec report's numbers as text (tables, and links to its figures), and how a
number is written in the report (:func:`fmt`, also used by the figures' titles).
"""

from __future__ import annotations

from pathlib import Path

# The report's file names (report.md links the others; write_report writes them all).
REPORT_MD, REPORT_JSON, FIGURES_DIR = "report.md", "report.json", "figures"


def fmt(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals ("-0.00" written "0.00"), None as "n/a"."""
    return "n/a" if value is None else f"{round(value, digits) + 0.0:.{digits}f}"


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
            ["correlation", fmt(s["correlation"]["mean"], 3), fmt(s["correlation"]["median"], 3)],
            ["SI-SDR (dB)", fmt(s["si_sdr_db"]["mean"], 2), fmt(s["si_sdr_db"]["median"], 2)],
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
            [name, f"{lo:g}-{hi:g}", fmt(bias, 2), fmt(err, 2)]
            for name, (lo, hi), bias, err in zip(bands["names"], bands["edges_hz"], bands["power_bias_db_mean"],
                                                 bands["error_to_signal_db_mean"])
        ]),
        "", fig("bands", "power bias and error per band"), "",
        "## Per channel", "",
        "Error-to-signal (dB) per band, then power bias (dB) per band.", "",
        *_table(["channel", "corr", "SI-SDR (dB)", "clipped (%)"] + [f"err {n}" for n in bands["names"]]
                + [f"bias {n}" for n in bands["names"]], [
            [name, fmt(ch["correlation"][i], 3), fmt(ch["si_sdr_db"][i], 2), _pct(ch["clipped_fraction"][i])]
            + [fmt(row[i], 2) for row in bands["error_to_signal_db"]] + [fmt(row[i], 2) for row in bands["power_bias_db"]]
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
            [str(k), f"{bps:.1f}", fmt(cm, 3), fmt(cmed, 3), fmt(sm, 2), fmt(smed, 2)]
            for k, bps, cm, cmed, sm, smed in zip(q["n_q"], q["bitrate_bps_per_channel"], q["correlation_mean"],
                                                  q["correlation_median"], q["si_sdr_db_mean"], q["si_sdr_db_median"])
        ]),
        "", fig("quality_vs_bitrate", "quality vs bitrate"), "",
        f"All numbers: [{REPORT_JSON}]({REPORT_JSON}).", "",
    ]
    return "\n".join(lines)


def _pct(fraction: float | None) -> str:
    return fmt(None if fraction is None else 100 * fraction, 2)
