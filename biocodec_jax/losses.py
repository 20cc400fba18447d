"""The objective: Huber time loss, multi-scale STFT loss.

The quality metrics (Pearson correlation, SI-SDR) are defined in :mod:`biocodec_jax.signal_metrics`
and re-exported here as ``pearson_correlation`` and ``si_sdr``.

All functions take single-channel signals ``[N, T]`` and are pure and jit-able.
The STFT is framing + a real DFT as a matmul: as fast as an FFT on CPU at these sizes, and free of
complex numbers (friendlier to TPUs).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from biocodec_jax.signal_metrics import correlation, si_sdr  # noqa: F401  (re-exported)


def smooth_l1(x: jax.Array, y: jax.Array, beta: float) -> jax.Array:
    """PyTorch's ``smooth_l1_loss(x, y, beta)`` (mean): ``0.5 d^2 / beta`` below ``beta``, else ``|d| - beta/2``."""
    d = jnp.abs(x - y)
    return jnp.mean(jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta))


@functools.lru_cache(maxsize=None)
def _dft_basis(n_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Periodic-Hann-windowed one-sided DFT basis (cos, -sin), each ``[n_fft, n_fft//2 + 1]``,
    and the DFT of the window itself (what a constant frame of ones transforms to)."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    angle = 2 * np.pi * np.outer(n, np.arange(n_fft // 2 + 1)) / n_fft
    cos, msin = window[:, None] * np.cos(angle), -window[:, None] * np.sin(angle)
    msin[:, [0, -1]] = 0.0  # exactly real at DC and Nyquist, as an FFT gives (sin(pi n) is not 0 in floats)
    return tuple(a.astype(np.float32) for a in (cos, msin, cos.sum(0), msin.sum(0)))


def _frames(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """Overlapping frames ``[N, frames, n_fft]`` of ``x [N, L]`` at hop ``hop``, a divisor of ``n_fft``.

    Frame ``f`` is the blocks ``f .. f + n_fft/hop - 1`` of the signal cut into hop-sized blocks,
    so the frames are a concatenation of shifted slices. Same values as the gather
    ``x[:, f*hop + j]``, 1.2x faster forward and backward here (the gather's backward is a scatter-add).
    """
    per_frame = n_fft // hop
    n_frames = (x.shape[-1] - n_fft) // hop + 1
    blocks = x[:, : (n_frames + per_frame - 1) * hop].reshape(x.shape[0], -1, hop)
    return jnp.concatenate([blocks[:, a : a + n_frames] for a in range(per_frame)], axis=-1)


def stft(x: jax.Array, n_fft: int) -> tuple[jax.Array, jax.Array]:
    """Real and imaginary parts ``[N, frames, n_fft//2 + 1]`` of the original's STFT.

    Hop ``n_fft // 8``, periodic Hann window, reflect padding of ``(n_fft - hop) // 2`` on both
    sides and no centring: 1250 samples at n_fft 32 give 312 frames.

    Each frame's mean is taken out before the DFT and its (exact, two-bin) contribution added
    back: the same transform, but float32 rounding then scales with the frame's fluctuation
    rather than its offset, which matters for the phase features of quiet bins.
    """
    hop = n_fft // 8
    pad = (n_fft - hop) // 2
    frames = _frames(jnp.pad(x, ((0, 0), (pad, pad)), mode="reflect"), n_fft, hop)  # [N, frames, n_fft]
    offset = jnp.mean(frames, axis=-1, keepdims=True)
    cos, msin, window_cos, window_msin = _dft_basis(n_fft)
    return (frames - offset) @ cos + offset * window_cos, (frames - offset) @ msin + offset * window_msin


def stft_features(x: jax.Array, n_fft: int, weights: tuple[float, float, float]) -> jax.Array:
    """``[w0 log1p|X|, w1 Re(X/|X|), w2 Im(X/|X|)]`` stacked -> ``[N, 3, frames, bins]``.

    The magnitude is ``sqrt(re^2 + im^2 + 1e-20)``: the plain modulus has an undefined gradient at
    ``X = 0`` (silent or clipped input would give NaN); 1e-20 shifts it by at most 1e-10.
    """
    re, im = stft(x, n_fft)
    mag = jnp.sqrt(re * re + im * im + 1e-20)
    denom = jnp.maximum(mag, 1e-8)
    w0, w1, w2 = weights
    return jnp.stack([w0 * jnp.log1p(mag), w1 * re / denom, w2 * im / denom], axis=1)


def stft_loss_terms(x: jax.Array, y: jax.Array, n_fft: int, weights: tuple[float, float, float]) -> tuple[jax.Array, jax.Array]:
    """(mean L1, mean squared error) between the STFT features of ``x`` and ``y`` at one scale."""
    d = stft_features(x, n_fft, weights) - stft_features(y, n_fft, weights)
    return jnp.mean(jnp.abs(d)), jnp.mean(d * d)


def multiscale_stft_loss(x: jax.Array, y: jax.Array, n_ffts: tuple[int, ...], weights: tuple[float, float, float]) -> jax.Array:
    """Sum over scales of L1 + MSE between STFT features (the original's ``l_f``)."""
    return sum(sum(stft_loss_terms(x, y, n, weights)) for n in n_ffts)


# The quality metrics have one definition, in signal_metrics; these names stay for existing imports.
pearson_correlation = correlation
