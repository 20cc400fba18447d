"""What a codec is: architecture, rates, bitrate, size and, where known, its training (``biocodec-jax info``).

Accepts what :class:`~biocodec_jax.codec.Codec` loads: a saved codec (``Codec.save``), a training
workdir or its ``checkpoints/`` directory, or the original's PyTorch checkpoint (``.pt``/``.npz``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax


def describe(source: str | Path, step: int | None = None) -> dict[str, Any]:
    """The facts of the codec at ``source`` (see the module doc) as a JSON-ready dict."""
    from biocodec_jax import codec as codec_lib
    from biocodec_jax.interop import torch_checkpoint

    path = Path(source)
    facts: dict[str, Any] = {"source": str(path)}
    if path.is_file():
        codec = codec_lib.Codec.from_torch_checkpoint(path)
        facts["kind"] = "PyTorch checkpoint (the original's layout)"
        obj = torch_checkpoint.read_torch_file(path) if path.suffix != ".npz" else {}
        facts["epoch"] = obj.get("epoch") if isinstance(obj, dict) and isinstance(obj.get("epoch"), int) else None
        facts["training_step"] = None
    elif (path / codec_lib.CONFIG_FILE).is_file():
        codec = codec_lib.Codec.load(path)
        facts["kind"] = "saved codec"
        facts["training_step"] = None
    elif path.is_dir() and codec_lib._has_checkpoints(path):
        from biocodec_jax.training import checkpointing

        config, params, codebooks, found = checkpointing.restore_params(path, step)
        codec = codec_lib.Codec(config, params, codebooks)
        facts["kind"] = "training run"
        facts["training_step"] = int(found)
    else:
        raise FileNotFoundError(f"{path}: not a saved codec, a training run or a PyTorch checkpoint")

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
        planned_steps=train.steps if facts["kind"] == "training run" else None,
        data=train.data or None,
    )
    return facts


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
