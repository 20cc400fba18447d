"""A codec report on disk: ``report.md``, ``report.json`` and ``figures/*.png`` (:func:`write_report`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biocodec_jax.reports import figures
from biocodec_jax.reports.measurement import measure, reconstruct_recording
from biocodec_jax.reports.text import FIGURES_DIR, REPORT_JSON, REPORT_MD, markdown

if TYPE_CHECKING:
    from biocodec_jax.codec import Codec


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
            "signals": lambda p: figures.plot_signals(p, rec, results, max_channels=max_plot_channels,
                                                      excerpt_seconds=excerpt_seconds),
            "psd": lambda p: figures.plot_psd(p, results),
            "bands": lambda p: figures.plot_bands(p, results),
            "channels": lambda p: figures.plot_channels(p, results),
            "codebooks": lambda p: figures.plot_codebooks(p, results),
            "quality_vs_bitrate": lambda p: figures.plot_quality_vs_bitrate(p, results),
        }
        for name, draw in drawn.items():
            draw(staging / FIGURES_DIR / f"{name}.png")
        (staging / REPORT_JSON).write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
        (staging / REPORT_MD).write_text(markdown(results), encoding="utf-8")

        (output_dir / REPORT_MD).unlink(missing_ok=True)  # an old report must not outlive a failed swap
        (output_dir / FIGURES_DIR).mkdir(exist_ok=True)
        paths: dict[str, Path] = {}
        for name in figures.FIGURES:
            paths[name] = output_dir / FIGURES_DIR / f"{name}.png"
            os.replace(staging / FIGURES_DIR / f"{name}.png", paths[name])
        for key, name in (("json", REPORT_JSON), ("markdown", REPORT_MD)):
            paths[key] = output_dir / name
            os.replace(staging / name, paths[key])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"markdown": paths["markdown"], "json": paths["json"], **{name: paths[name] for name in figures.FIGURES}}
