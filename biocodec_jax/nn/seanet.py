"""SEANet encoder and decoder as BioCodec configures them (causal, weight norm, ELU, no norm layers).

Encoder, for ratios (3, 2, 2) and 32 filters::

    conv 1->32 k3
    per stride s in (2, 2, 3): 2 residual blocks (dilations 1, 2), ELU, conv C->2C k=2s stride s
    LSTM block (2 layers, skip)
    ELU, conv 256->128 k3                                  -> [N, ceil(T/12), 128]

The decoder mirrors it with transposed convolutions. All activations are ``[N, T, C]``, in the
compute dtype of ``numerics`` (:class:`~biocodec_jax.config.Numerics`: e.g. bfloat16 with float32
parameters); the encoder returns and the decoder takes the quantizer's dtype, float32.

Every module also runs chunk by chunk with explicit state (``step`` / ``init_state``, below): the
streaming encoder and decoder (``biocodec_jax/streaming.py``) are these modules, not a copy.
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from biocodec_jax.config import CodecConfig, Numerics
from biocodec_jax.nn.conv import CausalConv1d, CausalConvTranspose1d
from biocodec_jax.nn.lstm import LSTM

elu = jax.nn.elu


# Streaming. Every module has ``step(x, state) -> (y, state)``: one chunk through the module given
# what it carries from the chunks before (convolutions: their last input samples; transposed
# convolutions: their last input frames; LSTM layers: (h, c)), and ``init_state(batch)`` for the
# start of a stream. ``__call__(x)`` is ``step(x)`` from no state: the whole signal, offline; the
# states it returns are unused and jit drops them, so this is the one forward definition.


def _part(state, key):
    """``state[key]``, or None (no state: offline) for every part of a missing state."""
    return None if state is None else state[key]


def _init_states(modules, batch: int) -> list:
    return [m.init_state(batch) for m in modules]


def _step_all(modules, x: jax.Array, states: list | None) -> tuple[jax.Array, list]:
    """``x`` through ``modules`` in turn, each with its own state."""
    new_states = []
    for i, module in enumerate(modules):
        x, state = module.step(x, _part(states, i))
        new_states.append(state)
    return x, new_states


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
        return self.step(x)[0]

    def init_state(self, batch: int) -> dict:
        return {"dilated": self.dilated.init_state(batch), "pointwise": self.pointwise.init_state(batch)}

    def step(self, x: jax.Array, state: dict | None = None) -> tuple[jax.Array, dict]:
        h, dilated = self.dilated.step(elu(x), _part(state, "dilated"))
        y, pointwise = self.pointwise.step(elu(h), _part(state, "pointwise"))
        return x + y, {"dilated": dilated, "pointwise": pointwise}


class LSTMBlock(nnx.Module):
    """Stacked LSTM over time plus its input (skip)."""

    def __init__(self, channels: int, num_layers: int, *, numerics: Numerics, rngs: nnx.Rngs):
        self.lstm = LSTM(
            channels, channels, num_layers, dtype=numerics.compute_dtype, unroll=numerics.lstm_unroll, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.step(x)[0]

    def init_state(self, batch: int) -> list:
        return self.lstm.init_state(batch)

    def step(self, x: jax.Array, state: list | None = None) -> tuple[jax.Array, list]:
        y, state = self.lstm.step(x, state)
        return y + x, state


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
        return self.step(x)[0]

    def init_state(self, batch: int) -> dict:
        return {"residuals": _init_states(self.residuals, batch), "downsample": self.downsample.init_state(batch)}

    def step(self, x: jax.Array, state: dict | None = None) -> tuple[jax.Array, dict]:
        x, residuals = _step_all(self.residuals, x, _part(state, "residuals"))
        y, downsample = self.downsample.step(elu(x), _part(state, "downsample"))
        return y, {"residuals": residuals, "downsample": downsample}


class DecoderStage(nnx.Module):
    """ELU and a transposed conv from C to C/2, then residual blocks at C/2."""

    def __init__(self, cfg: CodecConfig, channels: int, stride: int, *, numerics: Numerics, rngs: nnx.Rngs):
        self.upsample = CausalConvTranspose1d(
            channels, channels // 2, 2 * stride, stride=stride, dtype=numerics.compute_dtype, rngs=rngs
        )
        self.residuals = _residual_stack(cfg, channels // 2, numerics, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.step(x)[0]

    def init_state(self, batch: int) -> dict:
        return {"upsample": self.upsample.init_state(batch), "residuals": _init_states(self.residuals, batch)}

    def step(self, x: jax.Array, state: dict | None = None) -> tuple[jax.Array, dict]:
        x, upsample = self.upsample.step(elu(x), _part(state, "upsample"))
        x, residuals = _step_all(self.residuals, x, _part(state, "residuals"))
        return x, {"upsample": upsample, "residuals": residuals}


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
        return self.step(x)[0]

    def init_state(self, batch: int) -> dict:
        """The state of a stream of ``batch`` items at its start (see :meth:`step`)."""
        return {
            "conv_in": self.conv_in.init_state(batch),
            "stages": _init_states(self.stages, batch),
            "lstm": self.lstm.init_state(batch),
            "conv_out": self.conv_out.init_state(batch),
        }

    def step(self, x: jax.Array, state: dict | None = None) -> tuple[jax.Array, dict]:
        """One chunk ``[N, n, 1]`` -> ``([N, ceil(n / hop), dimension], state)``.

        ``state`` None: ``x`` is the whole signal (offline). A stream starts from
        :meth:`init_state`, whose first chunk must give every layer more input samples than its
        left padding, and every later chunk but the last must be a whole number of frames
        (``biocodec_jax/streaming.py``); each layer then computes what it computes offline.
        """
        y, conv_in = self.conv_in.step(x, _part(state, "conv_in"))
        y, stages = _step_all(self.stages, y, _part(state, "stages"))
        y, lstm = self.lstm.step(y, _part(state, "lstm"))
        y, conv_out = self.conv_out.step(elu(y), _part(state, "conv_out"))
        return y.astype(x.dtype), {"conv_in": conv_in, "stages": stages, "lstm": lstm, "conv_out": conv_out}


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
        return self.step(z)[0]

    def init_state(self, batch: int) -> dict:
        """The state of a stream of ``batch`` items at its start (see :meth:`step`)."""
        return {
            "conv_in": self.conv_in.init_state(batch),
            "lstm": self.lstm.init_state(batch),
            "stages": _init_states(self.stages, batch),
            "conv_out": self.conv_out.init_state(batch),
        }

    def step(self, z: jax.Array, state: dict | None = None) -> tuple[jax.Array, dict]:
        """One chunk of frames ``[N, m, dimension]`` -> ``([N, m * hop, 1], state)``.

        ``state`` None: ``z`` is the whole signal (offline). A stream starts from
        :meth:`init_state` with a first chunk long enough for the first convolution's reflect
        padding (``biocodec_jax/streaming.py``); later chunks are any number of frames.
        """
        x, conv_in = self.conv_in.step(z, _part(state, "conv_in"))
        x, lstm = self.lstm.step(x, _part(state, "lstm"))
        x, stages = _step_all(self.stages, x, _part(state, "stages"))
        x, conv_out = self.conv_out.step(elu(x), _part(state, "conv_out"))
        return x.astype(z.dtype), {"conv_in": conv_in, "lstm": lstm, "stages": stages, "conv_out": conv_out}


def count_params(module: nnx.Module) -> int:
    """Number of trainable scalars in ``module``."""
    return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))
