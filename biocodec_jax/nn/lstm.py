"""A stacked unidirectional LSTM with PyTorch's equations, gate order and initialisation.

PyTorch: ``gates = x W_ih^T + b_ih + h W_hh^T + b_hh`` split as (i, f, g, o);
``c' = sigmoid(f) c + sigmoid(i) tanh(g)``; ``h' = sigmoid(o) tanh(c')``; zero initial state.
Weights are stored ``[in, 4H]`` (transposed from PyTorch); both biases are kept so that the
original's checkpoint maps one to one.

The LSTM is the training step's bottleneck on CPU, so the layer is written by hand (measured on
the 2-core CPU, EEG preset, batch 32, two layers of 256 over 105 steps):

- Only ``h W_hh`` is sequential: the input projection of all time steps is one matmul outside
  the scan, and the stack runs time-major (``[T, N, C]``) so no ``[N, T, 4H]`` array is transposed.
- One sigmoid over the whole ``[N, 4H]`` pre-activation (its g quarter is unused) and a tanh on
  the g quarter: XLA's CPU loop fusion of four separately sliced activations ran 1.5-1.7x slower.
- A custom VJP: the backward scan computes only the gate gradients, and the weight, bias and
  input gradients are single large matmuls over all ``T*N`` rows after it (autodiff accumulated
  ``h^T dgates`` inside the loop, one rank-N update per step).
- Without gradients and at batch >= 64 (inference), ``[x_t, h] @ [W_ih; W_hh]`` inside the loop
  instead: 1.1-1.3x faster there, as the ``[T, N, 4H]`` projection no longer goes through memory
  (110 MB at batch 256); at batch 32 the projection outside the loop is 10% faster.

Streaming (``LSTMLayer.time_major_step``, ``LSTM.step``): a chunk runs the same forward
(:func:`layer_forward`) from the carried ``(h, c)`` instead of zeros.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx


INLOOP_PROJECTION_MIN_BATCH = 64

# Time steps per iteration of the scans (``lax.scan(unroll=...)``) when ``unroll`` is 0. On a GPU
# each loop iteration costs some microseconds of control on top of two small kernels, and the
# recurrence runs 105 steps x 2 layers x (forward + backward) x 2 stacks per training step, so
# unrolling should pay there; on this CPU it made the step slower. GPU: 1 (as measured so far)
# until the device suite's sweep (experiments/benchmarks/device_suite.sh, "lstm_unroll_ms") says
# which factor is fastest; set it here from its JSON.
PLATFORM_LSTM_UNROLL: dict[str, int] = {"cpu": 1, "gpu": 1, "tpu": 1}


def resolve_unroll(unroll: int = 0) -> int:
    """``unroll``, or for 0 the platform's choice (:data:`PLATFORM_LSTM_UNROLL`)."""
    return unroll if unroll > 0 else PLATFORM_LSTM_UNROLL.get(jax.default_backend(), 1)


# Mixed precision: the matmuls take their operands in the compute dtype (weights cast once, outside
# the loops) and return the parameters' dtype (float32), so that the gates, the cell state c (a sum
# over up to hundreds of steps) and every gradient accumulated here stay float32; only the
# layer's output h is cast back to the compute dtype, for the next layer and the skip.


def _matmul(a, w, out_dtype):
    """``a @ w`` with ``a`` cast to ``w``'s dtype, accumulated and returned in ``out_dtype``."""
    if a.dtype == w.dtype == out_dtype:
        return a @ w
    return jnp.matmul(a.astype(w.dtype), w, preferred_element_type=out_dtype)


def _cast(w, dtype):
    return w if dtype is None else w.astype(dtype)


def lstm_cell(z, c, hidden):
    """``(h, c, s, g)`` after one step from the pre-activation ``z [N, 4H]`` and cell ``c``."""
    s = jax.nn.sigmoid(z)  # i, f and o are its quarters 0, 1, 3
    g = jnp.tanh(z[:, 2 * hidden : 3 * hidden])
    c = s[:, hidden : 2 * hidden] * c + s[:, :hidden] * g
    return s[:, 3 * hidden :] * jnp.tanh(c), c, s, g


def _zero_carry(x_tm, hidden, dtype):
    zeros = jnp.zeros(x_tm.shape[1:2] + (hidden,), dtype)
    return zeros, zeros


def scan_inloop_projection(x_tm, w_ih, w_hh, b_ih, b_hh, carry=None, *, dtype=None, unroll=1):
    """``((h, c), h [T, N, H])`` from ``carry`` (zeros by default), the input projected inside the
    loop (no gradient; see the module doc). ``dtype``: the matmuls' compute dtype (None: the weights')."""
    hidden, acc = w_hh.shape[0], w_hh.dtype
    w = _cast(jnp.concatenate([w_ih, w_hh]), dtype)
    b = b_ih + b_hh
    out = x_tm.dtype if dtype is None else dtype

    def step(carry, x_t):
        h, c = carry
        h, c, _, _ = lstm_cell(_matmul(jnp.concatenate([x_t, h.astype(x_t.dtype)], axis=1), w, acc) + b, c, hidden)
        return (h, c), h.astype(out)

    return jax.lax.scan(step, _zero_carry(x_tm, hidden, acc) if carry is None else carry, x_tm, unroll=unroll)


def scan_projected(x_proj, w_hh, carry=None, save=False, *, dtype=None, unroll=1):
    """The recurrence over an input already projected (``x_proj = x W_ih + b`` ``[T, N, 4H]``).

    Returns ``((h, c), outputs)``: ``h [T, N, H]`` (in ``dtype``, the matmuls' compute dtype; None:
    the weights'), and with ``save`` also the backward's residuals: the sigmoid of the full
    pre-activation ``s [T, N, 4H]``, ``g = tanh(.) [T, N, H]`` and the cell ``c [T, N, H]``.
    """
    hidden, acc = w_hh.shape[0], w_hh.dtype
    w = _cast(w_hh, dtype)
    out = acc if dtype is None else dtype

    def step(carry, xp):
        h, c, s, g = lstm_cell(xp + _matmul(carry[0], w, acc), carry[1], hidden)
        h_out = h.astype(out)
        return (h, c), ((h_out, s, g, c) if save else h_out)

    return jax.lax.scan(step, _zero_carry(x_proj, hidden, acc) if carry is None else carry, x_proj, unroll=unroll)


# A streamed chunk projects only a few rows (frames x items) at a time. XLA's CPU matmul picks its
# kernel by the row count and a few-row product rounds differently from a many-row one, so a
# stream pads the projection to at least this many rows: each row's result is then the one offline
# computes for any input of >= that many rows (see biocodec_jax/streaming.py, "Exactness").
STREAM_MIN_PROJECTION_ROWS = 64


def project_input(x_tm, w_ih, b_ih, b_hh, *, dtype=None, min_rows=0):
    """``x W_ih + b_ih + b_hh`` for all time steps at once, ``[T, N, I]`` -> ``[T, N, 4H]`` (in the
    weights' dtype); ``min_rows``: pad the matmul to at least that many rows (streaming, see above)."""
    w = _cast(w_ih, dtype)
    if not min_rows:
        return _matmul(x_tm, w, w_ih.dtype) + (b_ih + b_hh)
    t, n, i = x_tm.shape
    rows = max(t * n, min_rows)
    x_flat = jnp.pad(x_tm.reshape(t * n, i), ((0, rows - t * n), (0, 0)))
    return (_matmul(x_flat, w, w_ih.dtype)[: t * n] + (b_ih + b_hh)).reshape(t, n, -1)


def layer_forward(x_tm, w_ih, w_hh, b_ih, b_hh, carry=None, *, dtype=None, unroll=1, min_rows=0):
    """One layer's forward without gradient: ``((h, c), h [T, N, H])`` from ``carry`` (zeros by default).

    Offline inference (the primal of :func:`_lstm_time_major`) and streaming (a chunk from the
    carried ``(h, c)``, ``min_rows`` set) both run this; training runs :func:`_lstm_fwd`.
    """
    if x_tm.shape[1] >= INLOOP_PROJECTION_MIN_BATCH:
        return scan_inloop_projection(x_tm, w_ih, w_hh, b_ih, b_hh, carry, dtype=dtype, unroll=unroll)
    x_proj = project_input(x_tm, w_ih, b_ih, b_hh, dtype=dtype, min_rows=min_rows)
    return scan_projected(x_proj, w_hh, carry, dtype=dtype, unroll=unroll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _lstm_time_major(x_tm, w_ih, w_hh, b_ih, b_hh, dtype, unroll):
    """One LSTM layer, ``[T, N, I]`` -> ``[T, N, H]`` (differentiable by the custom VJP below).

    ``dtype``: the matmuls' compute dtype (None: the weights'); ``unroll``: steps per scan iteration.
    """
    return layer_forward(x_tm, w_ih, w_hh, b_ih, b_hh, dtype=dtype, unroll=unroll)[1]


def _lstm_fwd(x_tm, w_ih, w_hh, b_ih, b_hh, dtype, unroll):
    x_proj = project_input(x_tm, w_ih, b_ih, b_hh, dtype=dtype)  # [T, N, 4H], one matmul for all steps
    h, s, g, c = scan_projected(x_proj, w_hh, save=True, dtype=dtype, unroll=unroll)[1]
    return h, (x_tm, w_ih, w_hh, h, s, g, c)


def _lstm_bwd(dtype, unroll, res, dh_out):
    x_tm, w_ih, w_hh, h, s, g, c = res
    hidden, acc = w_hh.shape[0], w_hh.dtype
    shift = lambda a: jnp.concatenate([jnp.zeros_like(a[:1]), a[:-1]])  # noqa: E731  a[t-1], zero at t=0
    w_hh_t = _cast(w_hh.T, dtype)

    def step(carry, inp):
        dz_next, dc_next = carry  # gate gradient at t+1, and dc_{t+1} * f_{t+1}
        dh, s_t, g_t, c_t, c_prev = inp
        dh = dh.astype(acc) + _matmul(dz_next, w_hh_t, acc)
        i, f, o = s_t[:, :hidden], s_t[:, hidden : 2 * hidden], s_t[:, 3 * hidden :]
        tc = jnp.tanh(c_t)
        dc = dc_next + dh * o * (1 - tc * tc)
        dz = jnp.concatenate(
            [dc * g_t * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g_t * g_t), dh * tc * o * (1 - o)], -1
        )
        return (dz, dc * f), dz

    n = x_tm.shape[1]
    init = (jnp.zeros((n, 4 * hidden), acc), jnp.zeros((n, hidden), acc))
    _, dz = jax.lax.scan(step, init, (dh_out, s, g, c, shift(c)), reverse=True, unroll=unroll)  # [T, N, 4H]
    # Everything else is a big matmul (or sum) over the T*N rows.
    if dtype is None:
        d_w_hh = jnp.einsum("tnh,tng->hg", shift(h), dz)
        d_w_ih = jnp.einsum("tni,tng->ig", x_tm, dz)
        d_b = jnp.sum(dz, axis=(0, 1))
        d_x = dz @ w_ih.T
    else:
        dz_c = dz.astype(dtype)
        d_w_hh = jnp.einsum("tnh,tng->hg", shift(h).astype(dtype), dz_c, preferred_element_type=acc)
        d_w_ih = jnp.einsum("tni,tng->ig", x_tm.astype(dtype), dz_c, preferred_element_type=acc)
        d_b = jnp.sum(dz, axis=(0, 1))
        d_x = jnp.matmul(dz_c, w_ih.T.astype(dtype), preferred_element_type=acc).astype(x_tm.dtype)
    return d_x, d_w_ih, d_w_hh, d_b, d_b


_lstm_time_major.defvjp(_lstm_fwd, _lstm_bwd)


def lstm_layer(x: jax.Array, w_ih: jax.Array, w_hh: jax.Array, b_ih: jax.Array, b_hh: jax.Array, *,
               dtype=None, unroll: int = 0) -> jax.Array:
    """One LSTM layer over ``x`` ``[N, T, I]`` -> hidden states ``[N, T, H]``."""
    x_tm = jnp.swapaxes(x, 0, 1)
    return jnp.swapaxes(_lstm_time_major(x_tm, w_ih, w_hh, b_ih, b_hh, dtype, resolve_unroll(unroll)), 0, 1)


class LSTMLayer(nnx.Module):
    """``dtype``: the matmuls' compute dtype (None: the parameters'); ``unroll``: see :func:`resolve_unroll`."""

    def __init__(self, input_size: int, hidden_size: int, *, dtype=None, unroll: int = 0, rngs: nnx.Rngs):
        self.dtype, self.unroll = dtype, unroll
        bound = 1.0 / math.sqrt(hidden_size)

        def uniform(shape):
            return nnx.Param(jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound))

        self.w_ih = uniform((input_size, 4 * hidden_size))
        self.w_hh = uniform((hidden_size, 4 * hidden_size))
        self.b_ih = uniform((4 * hidden_size,))
        self.b_hh = uniform((4 * hidden_size,))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.swapaxes(self.time_major(jnp.swapaxes(x, 0, 1)), 0, 1)

    def time_major(self, x_tm: jax.Array) -> jax.Array:
        """``[T, N, I]`` -> ``[T, N, H]`` from a zero state (differentiable)."""
        return _lstm_time_major(
            x_tm, self.w_ih[...], self.w_hh[...], self.b_ih[...], self.b_hh[...], self.dtype, resolve_unroll(self.unroll)
        )

    def init_state(self, batch: int) -> tuple[jax.Array, jax.Array]:
        """``(h, c)`` at the start of a stream: zeros ``[batch, H]`` in the parameters' dtype."""
        zeros = jnp.zeros((batch, self.w_hh.shape[0]), self.w_hh.dtype)
        return zeros, zeros

    def time_major_step(self, x_tm: jax.Array, state: tuple[jax.Array, jax.Array] | None = None):
        """One chunk ``[T, N, I]`` -> ``(h [T, N, H], state)``.

        ``state`` None: the whole signal from a zero state (:meth:`time_major`; no state is kept).
        Otherwise the ``(h, c)`` carried from the chunk before (:meth:`init_state` at a stream's
        start), and the new ``(h, c)`` is returned (no gradient; see :data:`STREAM_MIN_PROJECTION_ROWS`).
        """
        if state is None:
            return self.time_major(x_tm), None
        state, h = layer_forward(
            x_tm, self.w_ih[...], self.w_hh[...], self.b_ih[...], self.b_hh[...], state,
            dtype=self.dtype, unroll=resolve_unroll(self.unroll), min_rows=STREAM_MIN_PROJECTION_ROWS,
        )
        return h, state


class LSTM(nnx.Module):
    """``num_layers`` stacked LSTM layers of width ``hidden_size``, channels-last ``[N, T, C]``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, *, dtype=None, unroll: int = 0,
                 rngs: nnx.Rngs):
        self.layers = nnx.List(
            [
                LSTMLayer(input_size if i == 0 else hidden_size, hidden_size, dtype=dtype, unroll=unroll, rngs=rngs)
                for i in range(num_layers)
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.step(x)[0]

    def init_state(self, batch: int) -> list:
        """Every layer's ``(h, c)`` at the start of a stream."""
        return [layer.init_state(batch) for layer in self.layers]

    def step(self, x: jax.Array, state: list | None = None) -> tuple[jax.Array, list]:
        """One chunk ``[N, T, C]`` -> ``(y, state)``, per layer as :meth:`LSTMLayer.time_major_step`."""
        x = jnp.swapaxes(x, 0, 1)  # time-major through the whole stack: one transpose in, one out
        new_state = []
        for i, layer in enumerate(self.layers):
            x, layer_state = layer.time_major_step(x, None if state is None else state[i])
            new_state.append(layer_state)
        return jnp.swapaxes(x, 0, 1), new_state
