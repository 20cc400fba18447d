"""SEANet encoder and decoder as BioCodec configures them (causal, weight norm, ELU, no norm layers).

Encoder, for ratios (3, 2, 2) and 32 filters::

    conv 1->32 k3
    per stride s in (2, 2, 3): 2 residual blocks (dilations 1, 2), ELU, conv C->2C k=2s stride s
    LSTM block (2 layers, skip)
    ELU, conv 256->128 k3                                  -> [N, ceil(T/12), 128]

The decoder mirrors it with transposed convolutions. All activations are ``[N, T, C]``.
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from biocodec_jax.config import CodecConfig
from biocodec_jax.nn.conv import CausalConv1d, CausalConvTranspose1d
from biocodec_jax.nn.lstm import LSTM

elu = jax.nn.elu


class ResidualBlock(nnx.Module):
    """``y = x + Conv1x1(ELU(Conv_k_dil(ELU(x))))`` (identity skip, ``compress`` narrows the middle)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, compress: int, *, rngs: nnx.Rngs):
        hidden = channels // compress
        self.dilated = CausalConv1d(channels, hidden, kernel_size, dilation=dilation, rngs=rngs)
        self.pointwise = CausalConv1d(hidden, channels, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.pointwise(elu(self.dilated(elu(x))))


class LSTMBlock(nnx.Module):
    """Stacked LSTM over time plus its input (skip)."""

    def __init__(self, channels: int, num_layers: int, *, rngs: nnx.Rngs):
        self.lstm = LSTM(channels, channels, num_layers, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.lstm(x) + x


def _residual_stack(cfg: CodecConfig, channels: int, rngs: nnx.Rngs) -> nnx.List:
    return nnx.List(
        [
            ResidualBlock(channels, cfg.residual_kernel_size, cfg.dilation_base**j, cfg.compress, rngs=rngs)
            for j in range(cfg.n_residual_layers)
        ]
    )


class EncoderStage(nnx.Module):
    """Residual blocks at width C, then ELU and a strided conv to 2C."""

    def __init__(self, cfg: CodecConfig, channels: int, stride: int, *, rngs: nnx.Rngs):
        self.residuals = _residual_stack(cfg, channels, rngs)
        self.downsample = CausalConv1d(channels, 2 * channels, 2 * stride, stride=stride, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in self.residuals:
            x = block(x)
        return self.downsample(elu(x))


class DecoderStage(nnx.Module):
    """ELU and a transposed conv from C to C/2, then residual blocks at C/2."""

    def __init__(self, cfg: CodecConfig, channels: int, stride: int, *, rngs: nnx.Rngs):
        self.upsample = CausalConvTranspose1d(channels, channels // 2, 2 * stride, stride=stride, rngs=rngs)
        self.residuals = _residual_stack(cfg, channels // 2, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.upsample(elu(x))
        for block in self.residuals:
            x = block(x)
        return x


class Encoder(nnx.Module):
    """``[N, T, 1]`` -> ``[N, ceil(T / hop), dimension]``."""

    def __init__(self, cfg: CodecConfig, *, rngs: nnx.Rngs):
        c = cfg.n_filters
        self.conv_in = CausalConv1d(1, c, cfg.kernel_size, rngs=rngs)
        stages = []
        for stride in reversed(cfg.ratios):
            stages.append(EncoderStage(cfg, c, stride, rngs=rngs))
            c *= 2
        self.stages = nnx.List(stages)
        self.lstm = LSTMBlock(c, cfg.lstm_layers, rngs=rngs)
        self.conv_out = CausalConv1d(c, cfg.dimension, cfg.last_kernel_size, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv_in(x)
        for stage in self.stages:
            x = stage(x)
        return self.conv_out(elu(self.lstm(x)))


class Decoder(nnx.Module):
    """``[N, T', dimension]`` -> ``[N, T' * hop, 1]`` (no final activation)."""

    def __init__(self, cfg: CodecConfig, *, rngs: nnx.Rngs):
        c = cfg.n_filters * 2 ** len(cfg.ratios)
        self.conv_in = CausalConv1d(cfg.dimension, c, cfg.kernel_size, rngs=rngs)
        self.lstm = LSTMBlock(c, cfg.lstm_layers, rngs=rngs)
        stages = []
        for stride in cfg.ratios:
            stages.append(DecoderStage(cfg, c, stride, rngs=rngs))
            c //= 2
        self.stages = nnx.List(stages)
        self.conv_out = CausalConv1d(c, 1, cfg.last_kernel_size, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = self.lstm(self.conv_in(z))
        for stage in self.stages:
            x = stage(x)
        return self.conv_out(elu(x))


def count_params(module: nnx.Module) -> int:
    """Number of trainable scalars in ``module``."""
    return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))
