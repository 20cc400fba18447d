"""FLOP counts of the codec per window: by hand from the architecture, and as XLA's cost analysis sees it.

XLA's ``cost_analysis()`` counts the body of a ``scan`` once, not once per step, so it misses almost
all of the two LSTM stacks (about half of the encoder's forward; shared/reference/performance.md).
The hand count here is the one achieved FLOP/s are computed against; XLA's figure is reported next
to it so the gap is visible. Multiply-adds count as 2 FLOPs; element-wise work (activations, the
LSTM gates, normalisations, the Adam update) is left out, as is usual for such counts.
"""

from __future__ import annotations

import math

from biocodec_jax.config import CodecConfig, LossConfig


def _conv(length_out: int, k: int, c_in: int, c_out: int) -> int:
    return 2 * length_out * k * c_in * c_out


def _lstm(steps: int, width: int, layers: int) -> int:
    return layers * steps * 2 * (width + width) * 4 * width


def encoder_flops(cfg: CodecConfig, length: int) -> int:
    """Forward FLOPs of the encoder on one single-channel window of ``length`` samples."""
    c, t = cfg.n_filters, length
    total = _conv(t, cfg.kernel_size, 1, c)
    for stride in reversed(cfg.ratios):
        for _ in range(cfg.n_residual_layers):
            hidden = c // cfg.compress
            total += _conv(t, cfg.residual_kernel_size, c, hidden) + _conv(t, 1, hidden, c)
        t = math.ceil(t / stride)
        total += _conv(t, 2 * stride, c, 2 * c)
        c *= 2
    total += _lstm(t, c, cfg.lstm_layers)
    return total + _conv(t, cfg.last_kernel_size, c, cfg.dimension)


def decoder_flops(cfg: CodecConfig, frames: int) -> int:
    """Forward FLOPs of the decoder on ``frames`` embedding frames (output ``frames * hop`` samples)."""
    c, t = cfg.n_filters * 2 ** len(cfg.ratios), frames
    total = _conv(t, cfg.kernel_size, cfg.dimension, c) + _lstm(t, c, cfg.lstm_layers)
    for stride in cfg.ratios:
        total += _conv(t, 2 * stride, c, c // 2)  # transposed: every input frame meets every tap
        t, c = t * stride, c // 2
        for _ in range(cfg.n_residual_layers):
            hidden = c // cfg.compress
            total += _conv(t, cfg.residual_kernel_size, c, hidden) + _conv(t, 1, hidden, c)
    return total + _conv(t, cfg.last_kernel_size, c, 1)


def quantizer_flops(cfg: CodecConfig, frames: int, n_q: int | None = None) -> int:
    """Encode FLOPs of the residual quantizer: projections in and out, cosine scores against the codebook."""
    n_q = cfg.n_q if n_q is None else n_q
    per_q = 2 * cfg.dimension * cfg.codebook_dim * 2 + 2 * cfg.codebook_dim * cfg.codebook_size
    return n_q * frames * per_q


def stft_loss_flops(loss: LossConfig, length: int) -> int:
    """The multi-scale STFT of input and reconstruction (DFT as a matmul, cos and sin parts)."""
    total = 0
    for n_fft in loss.stft_n_ffts:
        hop = n_fft // 8
        frames = (length + 2 * ((n_fft - hop) // 2) - n_fft) // hop + 1
        total += 2 * 2 * 2 * frames * n_fft * (n_fft // 2 + 1)  # 2 signals x (cos, sin) x multiply-add
    return total


def model_flops(cfg: CodecConfig, loss: LossConfig, length: int) -> dict[str, int]:
    """Hand-counted FLOPs per single-channel window for encode, decode and one training step.

    The training step's backward pass is counted as twice its forward (one product for the input
    gradient, one for the weight gradient), the usual 3x rule.
    """
    frames = math.ceil(length / cfg.hop_length)
    enc, dec = encoder_flops(cfg, length), decoder_flops(cfg, frames)
    quant = quantizer_flops(cfg, frames)
    decode_quant = cfg.n_q * frames * 2 * cfg.codebook_dim * cfg.dimension
    return {
        "encode": enc + quant,
        "decode": decode_quant + dec,
        "train_step": 3 * (enc + quant + dec + stft_loss_flops(loss, length)),
    }


def xla_flops(compiled) -> float | None:
    """FLOPs of a compiled JAX function by XLA's cost analysis (scan bodies counted once), or None."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # not every backend implements it
        return None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    return float(analysis["flops"]) if analysis and "flops" in analysis else None
