"""SEANet encoder and decoder as BioCodec configures them (causal, weight norm, ELU, no norm layers).

Encoder, for ratios (3, 2, 2) and 32 filters::

    conv 1->32 k3
    per stride s in (2, 2, 3): 2 residual blocks (dilations 1, 2), ELU, conv C->2C k=2s stride s
    LSTM block (2 layers, skip)
    ELU, conv 256->128 k3                                  -> [N, ceil(T/12), 128]

The decoder mirrors it with transposed convolutions. All activations are ``[N, T, C]``, in the
compute dtype of ``numerics`` (:class:`~biocodec_jax.config.Numerics`: e.g. bfloat16 with float32
parameters); the encoder returns and the decoder takes the quantizer's dtype, float32.
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from biocodec_jax.config import CodecConfig, Numerics
from biocodec_jax.nn.conv import CausalConv1d, CausalConvTranspose1d
from biocodec_jax.nn.lstm import LSTM

elu = jax.nn.elu


def _conv(c_in: int, c_out: int, k: int, numerics: Numerics, rngs: nnx.Rngs, **kw) -> CausalConv1d:
    return CausalConv1d(c_in, c_out, k, dtype=numerics.compute_dtype, impl=numerics.conv_impl, rngs=rngs, **kw)


class ResidualBlock(nnx.Module):
    """``y = x + Conv1x1(ELU(Conv_k_dil(ELU(x))))`` (identity skip, ``compress`` narrows the middle)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, compress: int, *, numerics: Numerics,
                 rngs: nnx.Rngs):
        hidden = channels // compress
        self.dilated = _conv(channels, hidden, kernel_size, numerics, rngs, dilation=dilation)
        self.pointwise = _conv(hidden, channels, 1, numerics, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.pointwise(elu(self.dilated(elu(x))))


class LSTMBlock(nnx.Module):
    """Stacked LSTM over time plus its input (skip)."""

    def __init__(self, channels: int, num_layers: int, *, numerics: Numerics, rngs: nnx.Rngs):
        self.lstm = LSTM(
            channels, channels, num_layers, dtype=numerics.compute_dtype, unroll=numerics.lstm_unroll, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.lstm(x) + x


def _residual_stack(cfg: CodecConfig, channels: int, numerics: Numerics, rngs: nnx.Rngs) -> nnx.List:
    return nnx.List(
        [
            ResidualBlock(
                channels, cfg.residual_kernel_size, cfg.dilation_base**j, cfg.compress, numerics=numerics, rngs=rngs
            )
            for j in range(cfg.n_residual_layers)
        ]
    )


class EncoderStage(nnx.Module):
    """Residual blocks at width C, then ELU and a strided conv to 2C."""

    def __init__(self, cfg: CodecConfig, channels: int, stride: int, *, numerics: Numerics, rngs: nnx.Rngs):
        self.residuals = _residual_stack(cfg, channels, numerics, rngs)
        self.downsample = _conv(channels, 2 * channels, 2 * stride, numerics, rngs, stride=stride)

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in self.residuals:
            x = block(x)
        return self.downsample(elu(x))


class DecoderStage(nnx.Module):
    """ELU and a transposed conv from C to C/2, then residual blocks at C/2."""

    def __init__(self, cfg: CodecConfig, channels: int, stride: int, *, numerics: Numerics, rngs: nnx.Rngs):
        self.upsample = CausalConvTranspose1d(
            channels, channels // 2, 2 * stride, stride=stride, dtype=numerics.compute_dtype, rngs=rngs
        )
        self.residuals = _residual_stack(cfg, channels // 2, numerics, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.upsample(elu(x))
        for block in self.residuals:
            x = block(x)
        return x


class Encoder(nnx.Module):
    """``[N, T, 1]`` -> ``[N, ceil(T / hop), dimension]`` (in the input's dtype)."""

    def __init__(self, cfg: CodecConfig, *, numerics: Numerics = Numerics(), rngs: nnx.Rngs):
        c = cfg.n_filters
        self.conv_in = _conv(1, c, cfg.kernel_size, numerics, rngs)
        stages = []
        for stride in reversed(cfg.ratios):
            stages.append(EncoderStage(cfg, c, stride, numerics=numerics, rngs=rngs))
            c *= 2
        self.stages = nnx.List(stages)
        self.lstm = LSTMBlock(c, cfg.lstm_layers, numerics=numerics, rngs=rngs)
        self.conv_out = _conv(c, cfg.dimension, cfg.last_kernel_size, numerics, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv_in(x)
        for stage in self.stages:
            y = stage(y)
        return self.conv_out(elu(self.lstm(y))).astype(x.dtype)


class Decoder(nnx.Module):
    """``[N, T', dimension]`` -> ``[N, T' * hop, 1]`` (no final activation; in the input's dtype)."""

    def __init__(self, cfg: CodecConfig, *, numerics: Numerics = Numerics(), rngs: nnx.Rngs):
        c = cfg.n_filters * 2 ** len(cfg.ratios)
        self.conv_in = _conv(cfg.dimension, c, cfg.kernel_size, numerics, rngs)
        self.lstm = LSTMBlock(c, cfg.lstm_layers, numerics=numerics, rngs=rngs)
        stages = []
        for stride in cfg.ratios:
            stages.append(DecoderStage(cfg, c, stride, numerics=numerics, rngs=rngs))
            c //= 2
        self.stages = nnx.List(stages)
        self.conv_out = _conv(c, 1, cfg.last_kernel_size, numerics, rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = self.lstm(self.conv_in(z))
        for stage in self.stages:
            x = stage(x)
        return self.conv_out(elu(x)).astype(z.dtype)


def count_params(module: nnx.Module) -> int:
    """Number of trainable scalars in ``module``."""
    return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))
