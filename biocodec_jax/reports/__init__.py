"""How well a codec codes one recording: ``report.md``, ``report.json`` and figures (``biocodec-jax report``).

>>> results = analyze(codec, "data/eegmmidb/S004/S004R04.edf")          # every number, JSON-ready
>>> paths = write_report(codec, "data/eegmmidb/S004/S004R04.edf", "S004R04_report")

One concept a module: :mod:`~biocodec_jax.reports.measurement` (every number: what is compared and
measured, :func:`analyze`), :mod:`~biocodec_jax.reports.figures` (the PNGs),
:mod:`~biocodec_jax.reports.text` (``report.md``) and :mod:`~biocodec_jax.reports.write`
(:func:`write_report`: all of them on disk, atomically). The correlation and SI-SDR are
:mod:`biocodec_jax.signal_metrics`'s. Everything is importable from here, as before the split.
"""

from __future__ import annotations

# The package's names, from the modules that define them (re-exported: nothing is used here).
from biocodec_jax.reports.figures import (
    FIGURES,
    plot_bands,
    plot_channels,
    plot_codebooks,
    plot_psd,
    plot_quality_vs_bitrate,
    plot_signals,
    plotted_channels,
)
from biocodec_jax.reports.measurement import (
    BANDS,
    WELCH_SECONDS,
    Reconstruction,
    analyze,
    band_power,
    bands_for,
    bitrate,
    clipped_fraction,
    code_statistics,
    decode_first,
    display_scale,
    measure,
    quality,
    quality_curve,
    ratio_db,
    reconstruct_recording,
    welch_psd,
)
from biocodec_jax.reports.text import FIGURES_DIR, REPORT_JSON, REPORT_MD, fmt, markdown
from biocodec_jax.reports.write import write_report
from biocodec_jax.signal_metrics import correlation, si_sdr

__all__ = ["BANDS", "Reconstruction", "analyze", "markdown", "measure", "quality_curve", "reconstruct_recording", "write_report"]
