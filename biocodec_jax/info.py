"""What a codec is: architecture, rates, bitrate, size and, where known, its training (``biocodec-jax info``).

Accepts what :class:`~biocodec_jax.codec.Codec` loads: a saved codec (``Codec.save``), a training
workdir or its ``checkpoints/`` directory, or the original's PyTorch checkpoint (``.pt``/``.npz``);
:func:`biocodec_jax.storage.path_kind` says which. Local paths and ``gs://`` URLs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax

from biocodec_jax import storage
from biocodec_jax.codec import Codec
from biocodec_jax.interop import torch_checkpoint
from biocodec_jax.storage import PathKind
from data_pipelines import paths


def describe(source: str | Path, step: int | None = None) -> dict[str, Any]:
    """The facts of the codec at ``source`` (see the module doc) as a JSON-ready dict."""
    path = paths.as_path(source) if paths.is_url(source) else Path(source)
    kind = storage.path_kind(path)  # FileNotFoundError naming what it expected
    facts: dict[str, Any] = {"source": str(path), "kind": kind.value}
    if kind is PathKind.TORCH:
        codec = Codec.from_torch_checkpoint(path)
        with paths.local_copy(path) as local:
            obj = torch_checkpoint.read_torch_file(local) if path.suffix != ".npz" else {}
        facts["epoch"] = obj.get("epoch") if isinstance(obj, dict) and isinstance(obj.get("epoch"), int) else None
        facts["training_step"] = None
    elif kind is PathKind.CODEC:
        codec = Codec.load(path)
        facts["training_step"] = codec.metadata.get("training", {}).get("step")
    else:
        codec = Codec.load(path, step)  # metadata: the checkpoint's step and the run's preprocessing
        facts["training_step"] = codec.metadata["training"]["step"]

    cfg, train = codec.codec_config, codec.config.train
    facts.update(
        preset=codec.config.preset,
        sample_rate_hz=cfg.sample_rate,
        hop_samples=cfg.hop_length,
        frame_rate_hz=cfg.frame_rate,
        quantizers=cfg.n_q,
        codebook_size=cfg.codebook_size,
        bits_per_code=math.log2(cfg.codebook_size),
        bitrate_bps_per_channel=cfg.bitrate,
        compression_ratio_vs_float32=32 * cfg.sample_rate / cfg.bitrate,
        parameters=int(sum(x.size for x in jax.tree.leaves(codec.params))),
        codebooks_initialized=codec.initialized,
        window_seconds=train.window_seconds,
        # The run's planned length: known for a training run, and for a codec saved by one (its config is the run's).
        planned_steps=train.steps if kind is PathKind.RUN or codec.metadata.get("training") else None,
        data=codec.metadata.get("training", {}).get("data") or train.data or None,
        preprocessing=_preprocessing_summary(codec.preprocessing),
    )
    return facts


def _preprocessing_summary(prep: dict | None) -> str:
    """One line on how the training data was prepared (what ``tokenize`` will do to a recording)."""
    if not prep:
        return "not stored (tokenize uses the modality's prepare preset)"
    lo, hi = prep.get("l_freq"), prep.get("h_freq")
    band = "no band-pass" if lo is None and hi is None else f"band-pass {lo or 0:g}-{'Nyquist' if hi is None else f'{hi:g}'} Hz"
    notch = f", notch {prep['notch_freq']:g} Hz" if prep.get("notch_freq") else ""
    clip = f"clip +-{prep['clip']:g}" if prep.get("clip") is not None else "no clipping"
    channels = f", channels {', '.join(prep['channels'])}" if prep.get("channels") else ""
    return (f"{prep.get('modality', '?').upper()} at {prep.get('sample_rate', 0):g} Hz, {band}{notch}, "
            f"robust (x - median) / IQR, {clip}{channels}")


def format_facts(facts: dict[str, Any]) -> str:
    """``describe``'s dict as aligned ``name: value`` lines."""
    labels = {
        "source": "source", "kind": "kind", "preset": "preset", "sample_rate_hz": "sample rate (Hz)",
        "hop_samples": "hop (samples per frame)", "frame_rate_hz": "frame rate (Hz)", "quantizers": "quantizers",
        "codebook_size": "codes per quantizer", "bits_per_code": "bits per code",
        "bitrate_bps_per_channel": "bitrate (bit/s per channel)",
        "compression_ratio_vs_float32": "compression vs float32 samples", "parameters": "parameters",
        "codebooks_initialized": "codebooks initialised", "training_step": "training step",
        "planned_steps": "planned steps", "epoch": "epoch", "window_seconds": "training window (s)", "data": "training data",
        "preprocessing": "preprocessing",
    }

    def show(value: Any) -> str:
        if value is None:
            return "unknown"
        if isinstance(value, float):
            return f"{value:,.2f}".rstrip("0").rstrip(".")
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    width = max(len(labels.get(k, k)) for k in facts)
    return "\n".join(f"{labels.get(k, k):<{width}}  {show(v)}" for k, v in facts.items())


def to_json(facts: dict[str, Any]) -> str:
    return json.dumps(facts, indent=2)
