"""A stacked unidirectional LSTM with PyTorch's equations, gate order and initialisation.

PyTorch: ``gates = x W_ih^T + b_ih + h W_hh^T + b_hh`` split as (i, f, g, o);
``c' = sigmoid(f) c + sigmoid(i) tanh(g)``; ``h' = sigmoid(o) tanh(c')``; zero initial state.
Weights are stored ``[in, 4H]`` (transposed from PyTorch); both biases are kept so that the
original's checkpoint maps one to one.

The input projection of all time steps is one matmul outside the scan; only ``h W_hh`` is
sequential (the LSTM is the training step's bottleneck on CPU).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def lstm_layer(x: jax.Array, w_ih: jax.Array, w_hh: jax.Array, b_ih: jax.Array, b_hh: jax.Array) -> jax.Array:
    """One LSTM layer over ``x`` ``[N, T, I]`` -> hidden states ``[N, T, H]``."""
    n = x.shape[0]
    hidden = w_hh.shape[0]
    x_proj = jnp.swapaxes(x @ w_ih + (b_ih + b_hh), 0, 1)  # [T, N, 4H], time-major for the scan

    def step(carry, xp):
        h, c = carry
        gates = xp + h @ w_hh
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((n, hidden), x.dtype)
    _, hs = jax.lax.scan(step, (zeros, zeros), x_proj)
    return jnp.swapaxes(hs, 0, 1)


class LSTMLayer(nnx.Module):
    def __init__(self, input_size: int, hidden_size: int, *, rngs: nnx.Rngs):
        bound = 1.0 / math.sqrt(hidden_size)

        def uniform(shape):
            return nnx.Param(jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound))

        self.w_ih = uniform((input_size, 4 * hidden_size))
        self.w_hh = uniform((hidden_size, 4 * hidden_size))
        self.b_ih = uniform((4 * hidden_size,))
        self.b_hh = uniform((4 * hidden_size,))

    def __call__(self, x: jax.Array) -> jax.Array:
        return lstm_layer(x, self.w_ih[...], self.w_hh[...], self.b_ih[...], self.b_hh[...])


class LSTM(nnx.Module):
    """``num_layers`` stacked LSTM layers of width ``hidden_size``, channels-last ``[N, T, C]``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, *, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [LSTMLayer(input_size if i == 0 else hidden_size, hidden_size, rngs=rngs) for i in range(num_layers)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        return x
