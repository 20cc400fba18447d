"""Weight-normed causal 1-D convolutions with the original's reflect padding.

Activations are channels-last, ``[N, T, C]`` (5-12% faster than channels-first on CPU), and
kernels are stored ``[k, C_in, C_out]``; ``interop/torch_checkpoint.py`` converts from and to the
original's ``[C_out, C_in, k]`` (``[C_in, C_out, k]`` for transposed convolutions).

How a convolution is computed is chosen per platform behind one function, :func:`conv1d`
(``impl="auto"``; see :data:`PLATFORM_CONV_IMPL`, and ``train.conv_impl`` to override):

- ``"xla"``: ``lax.conv_general_dilated``. On this CPU (jax 0.12) 1.5-3.8x faster than im2col +
  matmul forward and backward.
- ``"matmul"``: im2col + one matmul: the ``k`` shifted slices of the (padded) input side by side,
  ``[N*T, k*C_in] @ [k*C_in, C_out]``; a strided convolution reads the input as stride-sized blocks
  (polyphase), so it needs no strided gather. Everything before the matmul (ELU, reflect padding,
  slicing) fuses into the one producer of its left operand, and the backward is two matmuls plus
  the adjoint of that producer (pads and adds), with no convolution kernel anywhere.

Transposed convolutions are one matmul plus shifted adds on every platform
(:func:`conv_transpose1d_causal`; XLA's transposed convolutions through ``lhs_dilation`` are slow,
jax-ml/jax#23783).

Mixed precision (``dtype``, e.g. bfloat16): the weight norm ``g * v / ||v||`` is computed in the
parameters' dtype (float32), so the norm of ``v`` is never rounded; the input is cast to ``dtype``
and the convolution computes and returns ``dtype``. The float32 kernel is cast at the convolution
(``xla``) or kept: the matmul paths accumulate in float32 and return a float32 kernel gradient
(:func:`mixed_matmul`).

Streaming: each layer's ``step(x, state)`` computes one chunk from the input it carries from the
chunk before (None at the start of a signal); ``__call__`` is ``step`` from no state, so offline
and streaming are one definition (``biocodec_jax/streaming.py``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from biocodec_jax.config import ConvImpl  # noqa: F401  ("auto", "xla", "matmul")

# What "auto" means on each platform (jax.default_backend() at trace time). CPU: measured (module
# doc). GPU: "xla" until the device suite (experiments/benchmarks/device_suite.sh) has measured
# "matmul" against it on an accelerator; set the faster one here from its JSON (README, "Speed").
PLATFORM_CONV_IMPL: dict[str, str] = {"cpu": "xla", "gpu": "xla", "tpu": "xla"}


def resolve_conv_impl(impl: str = "auto") -> str:
    """``impl``, or for ``"auto"`` the platform's choice (:data:`PLATFORM_CONV_IMPL`)."""
    if impl == "auto":
        return PLATFORM_CONV_IMPL.get(jax.default_backend(), "xla")
    if impl not in ("xla", "matmul"):
        raise ValueError(f"unknown convolution implementation {impl!r}; choose auto, xla or matmul")
    return impl


def causal_padding(length: int, kernel_size: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """Left/right padding of the original's causal conv for an input of ``length`` samples.

    All of ``k_eff - stride`` goes on the left; the right gets just enough for the last
    (partial) frame, so the output has ``ceil(length / stride)`` frames.
    """
    k_eff = (kernel_size - 1) * dilation + 1
    pad_total = k_eff - stride
    frames = (length - k_eff + pad_total) / stride + 1
    extra = (math.ceil(frames) - 1) * stride + k_eff - pad_total - length
    return pad_total, extra


def reflect_pad(x: jax.Array, left: int, right: int) -> jax.Array:
    """Reflect-pad the time axis (1) of ``[N, T, C]`` like the original's ``pad1d``.

    When the signal is too short to reflect (``T <= max(left, right)``) it is zero-extended on the
    right first and the extension is cut off again afterwards, exactly as the original does.
    """
    length = x.shape[1]
    max_pad = max(left, right)
    extra = 0
    if length <= max_pad:
        extra = max_pad - length + 1
        x = jnp.pad(x, ((0, 0), (0, extra), (0, 0)))
    padded = jnp.pad(x, ((0, 0), (left, right), (0, 0)), mode="reflect")
    return padded[:, : padded.shape[1] - extra]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def mixed_matmul(a: jax.Array, w: jax.Array, dtype) -> jax.Array:
    """``a [..., K] @ w [K, M]`` with both operands in ``dtype`` (e.g. bfloat16) and ``w`` kept in its
    own (wider) dtype: products accumulated in ``w``'s dtype, the result in ``dtype``; the gradient of
    ``a`` in ``dtype`` and that of ``w`` in ``w``'s dtype, both accumulated wide.

    Why by hand: autodiff of a plain bfloat16 matmul returns the weight gradient rounded to bfloat16
    (and XLA's CPU backend even accumulates that transposed product in bfloat16: 2-3e-2 relative
    error over a few thousand rows, against 1.5e-3 here). The weight gradient sums over every
    (item, time) row of the batch, so it is the one product that must not be rounded early.
    """
    return jnp.matmul(a, w.astype(dtype), preferred_element_type=w.dtype).astype(dtype)


def _mixed_matmul_fwd(a, w, dtype):
    return mixed_matmul(a, w, dtype), (a, w)


def _mixed_matmul_bwd(dtype, res, g):
    a, w = res
    da = jnp.matmul(g, w.astype(dtype).T, preferred_element_type=w.dtype).astype(a.dtype)
    dw = jnp.matmul(a.reshape(-1, a.shape[-1]).T, g.reshape(-1, g.shape[-1]), preferred_element_type=w.dtype)
    return da, dw


mixed_matmul.defvjp(_mixed_matmul_fwd, _mixed_matmul_bwd)


def _matmul(a: jax.Array, w: jax.Array) -> jax.Array:
    """``a @ w`` in ``a``'s dtype; a wider ``w`` goes through :func:`mixed_matmul`."""
    if w.dtype == a.dtype:
        return jnp.einsum("...c,cd->...d", a, w)
    return mixed_matmul(a, w, a.dtype)


def conv1d(
    x: jax.Array, kernel: jax.Array, bias: jax.Array | None, stride: int = 1, dilation: int = 1, impl: str = "auto"
) -> jax.Array:
    """Valid 1-D convolution of ``[N, T, C_in]`` with ``[k, C_in, C_out]`` (``impl``: see the module doc).

    Computes in ``x``'s dtype; a kernel (and bias) in a wider dtype, e.g. float32 under bfloat16,
    is cast (``xla``) or kept for wide accumulation and a wide gradient (``matmul``, :func:`mixed_matmul`).
    """
    if resolve_conv_impl(impl) == "matmul":
        y = _conv1d_matmul(x, kernel, stride, dilation)
    else:
        y = jax.lax.conv_general_dilated(
            x, kernel.astype(x.dtype), (stride,), "VALID", rhs_dilation=(dilation,), dimension_numbers=("NWC", "WIO", "NWC")
        )
    return y if bias is None else y + bias.astype(x.dtype)


def _conv1d_matmul(x: jax.Array, kernel: jax.Array, stride: int, dilation: int) -> jax.Array:
    """:func:`conv1d` (no bias) as im2col + one matmul."""
    k, c_in, c_out = kernel.shape
    n, length, _ = x.shape
    frames = (length - (k - 1) * dilation - 1) // stride + 1
    if k == 1:
        cols = x[:, : (frames - 1) * stride + 1 : stride]
    elif stride == 1:
        cols = jnp.concatenate([x[:, j * dilation : j * dilation + frames] for j in range(k)], axis=-1)
    elif dilation == 1:
        # Polyphase: frame t reads blocks t .. t+m-1 of the input cut into stride-sized blocks;
        # the kernel gets zero taps up to m*stride (those read samples past the end, zero-padded).
        m = -(-k // stride)
        need = (frames - 1 + m) * stride
        x = x[:, :need] if length >= need else jnp.pad(x, ((0, 0), (0, need - length), (0, 0)))
        blocks = x.reshape(n, need // stride, stride * c_in)
        cols = jnp.concatenate([blocks[:, a : a + frames] for a in range(m)], axis=-1)
        kernel = jnp.pad(kernel, ((0, m * stride - k), (0, 0), (0, 0)))
        k = m * stride
    else:
        last = (frames - 1) * stride + 1
        cols = jnp.concatenate([x[:, j * dilation : j * dilation + last : stride] for j in range(k)], axis=-1)
    return _matmul(cols, kernel.reshape(k * c_in, c_out))


def conv_transpose1d_causal(x: jax.Array, kernel: jax.Array, bias: jax.Array | None, stride: int) -> jax.Array:
    """Transposed conv of ``[N, T, C_in]`` with ``[k, C_in, C_out]``, causally trimmed to ``T*stride``.

    Output sample ``t*stride + j`` receives ``x[t] @ kernel[j]``; the full result has
    ``(T-1)*stride + k`` samples, and the original trims ``k - stride`` from the right. Written as
    one matmul and ``ceil(k/stride)`` shifted adds of stride-sized blocks. Computes in ``x``'s
    dtype; a wider kernel goes through :func:`mixed_matmul` (see :func:`conv1d`).
    """
    k, c_in, c_out = kernel.shape
    n, t, _ = x.shape
    m = -(-k // stride)
    if m * stride != k:
        kernel = jnp.pad(kernel, ((0, m * stride - k), (0, 0), (0, 0)))
    if kernel.dtype == x.dtype:
        z = jnp.einsum("ntc,kcd->ntkd", x, kernel)
    else:
        z = mixed_matmul(x, jnp.transpose(kernel, (1, 0, 2)).reshape(c_in, m * stride * c_out), x.dtype)
    z = z.reshape(n, t, m, stride, c_out)
    y = z[:, :, 0]
    for a in range(1, m):  # block t also receives tap-block a of frame t - a
        y = y + jnp.pad(z[:, : t - a, a], ((0, 0), (a, 0), (0, 0), (0, 0)))
    y = y.reshape(n, t * stride, c_out)
    return y if bias is None else y + bias.astype(x.dtype)


def weight_norm(g: jax.Array, v: jax.Array, keep_axis: int) -> jax.Array:
    """PyTorch's weight norm ``g * v / ||v||``, the norm over every axis but ``keep_axis``."""
    axes = tuple(a for a in range(v.ndim) if a != keep_axis % v.ndim)
    norm = jnp.sqrt(jnp.sum(v * v, axis=axes, keepdims=True))
    shape = [1] * v.ndim
    shape[keep_axis] = -1
    return g.reshape(shape) * v / norm


def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float) -> jax.Array:
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def _cast(a: jax.Array, dtype) -> jax.Array:
    return a if dtype is None else a.astype(dtype)


class CausalConv1d(nnx.Module):
    """Weight-normed conv with the original's causal reflect padding: ``T -> ceil(T / stride)``.

    Initialised like PyTorch's ``Conv1d`` (uniform, bound ``1/sqrt(C_in * k)``) with ``g = ||v||``.
    ``dtype``: the compute dtype (None: the parameters'); ``impl``: see :func:`conv1d`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 dilation: int = 1, dtype=None, impl: str = "auto", rngs: nnx.Rngs):
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.dtype, self.impl = dtype, impl
        bound = 1.0 / math.sqrt(in_channels * kernel_size)
        v = _uniform(rngs.params(), (kernel_size, in_channels, out_channels), bound)
        self.weight_v = nnx.Param(v)
        self.weight_g = nnx.Param(jnp.sqrt(jnp.sum(v * v, axis=(0, 1))))
        self.bias = nnx.Param(_uniform(rngs.params(), (out_channels,), bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        """The whole signal ``[N, T, C_in]`` -> ``[N, ceil(T / stride), C_out]``."""
        return self.step(x)[0]

    def init_state(self, batch: int) -> None:
        """The state at the start of a stream: none (the first chunk is reflect-padded, as offline)."""
        return None

    def step(self, x: jax.Array, state: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """One chunk ``[N, n, C_in]`` -> ``(y [N, ceil(n / stride), C_out], state)``.

        ``state`` None: ``x`` starts the signal (the whole signal offline, or a stream's first chunk)
        and is reflect-padded on the left like the original. Otherwise ``state`` holds the last
        ``k_eff - stride`` input samples before ``x``, which follows a whole number of frames: the
        convolution of those plus ``x`` is the one offline computes at these positions. The right
        padding of a last, partial frame is the same either way. Returns the input samples the next
        chunk needs (unused offline; jit drops them).
        """
        x = _cast(x, self.dtype)
        left, right = causal_padding(x.shape[1], self.kernel_size, self.stride, self.dilation)
        if state is None:
            x = reflect_pad(x, left, right)
        else:
            x = jnp.concatenate([state, x], axis=1)
            if right:
                x = reflect_pad(x, 0, right)
        state = x[:, x.shape[1] - right - left : x.shape[1] - right]  # the last `left` samples before the right padding
        kernel = weight_norm(self.weight_g[...], self.weight_v[...], keep_axis=2)  # parameters' dtype
        return conv1d(x, kernel, self.bias[...], self.stride, self.dilation, self.impl), state


class CausalConvTranspose1d(nnx.Module):
    """Weight-normed transposed conv trimmed causally: ``T -> T * stride``.

    As in PyTorch's ``ConvTranspose1d`` + weight norm, ``g`` is per *input* channel and the init
    bound is ``1/sqrt(C_out * k)``. ``dtype``: the compute dtype (None: the parameters').
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int, dtype=None,
                 rngs: nnx.Rngs):
        self.kernel_size, self.stride, self.dtype = kernel_size, stride, dtype
        bound = 1.0 / math.sqrt(out_channels * kernel_size)
        v = _uniform(rngs.params(), (kernel_size, in_channels, out_channels), bound)
        self.weight_v = nnx.Param(v)
        self.weight_g = nnx.Param(jnp.sqrt(jnp.sum(v * v, axis=(0, 2))))
        self.bias = nnx.Param(_uniform(rngs.params(), (out_channels,), bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        """The whole signal ``[N, T, C_in]`` -> ``[N, T * stride, C_out]``."""
        return self.step(x)[0]

    def init_state(self, batch: int) -> None:
        """The state at the start of a stream: none (nothing precedes the first frame)."""
        return None

    def step(self, x: jax.Array, state: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """One chunk of frames ``[N, m, C_in]`` -> ``(y [N, m * stride, C_out], state)``.

        Causal without padding: output block ``t`` needs input frames ``t - h .. t`` (``h =
        ceil(k / stride) - 1``), so ``state`` (None at the start of the signal) holds the last ``h``
        frames before ``x``; the blocks they produce themselves were returned by the chunk before.
        """
        s = self.stride
        history = -(-self.kernel_size // s) - 1
        kernel = weight_norm(self.weight_g[...], self.weight_v[...], keep_axis=1)  # parameters' dtype
        x = _cast(x, self.dtype)
        if state is not None:
            x = jnp.concatenate([state, x], axis=1)
        y = conv_transpose1d_causal(x, kernel, self.bias[...], s)
        if state is not None:
            y = y[:, history * s :]
        return y, x[:, x.shape[1] - history :]
