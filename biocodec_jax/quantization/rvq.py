"""Residual vector quantization: pure functions over projection parameters and a CodebookState.

Each of the ``Q`` quantizers projects the residual ``D -> d`` (``project_in``), picks the most
cosine-similar code, and projects back ``d -> D`` (``project_out``). Training uses the
straight-through estimator and updates codebooks by EMA (outside the gradient); inference
encodes to int32 codes and decodes by summing the projected codes.

All functions take embeddings channels-last, ``[N, T', D]``; codes are ``[N, T', Q]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from biocodec_jax.config import CodecConfig
from biocodec_jax.quantization.codebook import CodebookState, assign, ema_update, l2_normalize, replace_dead_codes
from biocodec_jax.quantization.kmeans import kmeans

sg = jax.lax.stop_gradient


class RVQProjections(nnx.Module):
    """``project_in`` / ``project_out`` of every quantizer, stacked on axis 0 (PyTorch Linear init)."""

    def __init__(self, cfg: CodecConfig, *, rngs: nnx.Rngs):
        q, dim, cdim = cfg.n_q, cfg.dimension, cfg.codebook_dim

        def uniform(shape, fan_in):
            b = 1.0 / math.sqrt(fan_in)
            return nnx.Param(jax.random.uniform(rngs.params(), shape, jnp.float32, -b, b))

        self.in_kernel = uniform((q, dim, cdim), dim)
        self.in_bias = uniform((q, cdim), dim)
        self.out_kernel = uniform((q, cdim, dim), cdim)
        self.out_bias = uniform((q, dim), cdim)

    def project_in(self, i: int, r: jax.Array) -> jax.Array:
        return r @ self.in_kernel[i] + self.in_bias[i]

    def project_out(self, i: int, q: jax.Array) -> jax.Array:
        return q @ self.out_kernel[i] + self.out_bias[i]


class TrainQuantized(NamedTuple):
    quantized: jax.Array  # [N, T', D], straight-through
    codes: jax.Array  # [N, T', Q]
    commit_mse: jax.Array  # mean over quantizers of mean((sg(q) - x)^2)
    codebooks: CodebookState  # after the EMA step


def quantize_train(
    proj: RVQProjections, state: CodebookState, emb: jax.Array, key: jax.Array, cfg: CodecConfig
) -> TrainQuantized:
    """The training forward of the original's RVQ, with the EMA codebook update.

    The residual passed on is ``r - sg(out_i)``: the next quantizer's gradient reaches the encoder
    through ``r`` but not through the previous quantizer's output. Codes are chosen with the
    codebooks *before* this batch's update, as in the original.
    """
    n, t, _ = emb.shape
    residual = emb
    quantized = jnp.zeros_like(emb)
    codes, mses, layers = [], [], []
    keys = jax.random.split(key, cfg.n_q)
    for i in range(cfg.n_q):
        layer = state.layer(i)
        x = proj.project_in(i, residual).reshape(n * t, -1)
        idx = assign(x, layer.codebook)
        q = layer.codebook[idx]
        mses.append(jnp.mean((sg(q) - x) ** 2))
        out = proj.project_out(i, x + sg(q - x)).reshape(n, t, -1)
        quantized = quantized + out
        residual = residual - sg(out)
        codes.append(idx.reshape(n, t))
        layer = ema_update(layer, sg(x), idx, decay=cfg.ema_decay, eps=cfg.ema_epsilon)
        if cfg.dead_code_mode == "replace":
            layer = replace_dead_codes(layer, sg(x), keys[i], threshold=cfg.dead_code_threshold)
        layers.append(layer)
    return TrainQuantized(quantized, jnp.stack(codes, -1), jnp.mean(jnp.stack(mses)), CodebookState.stack(layers))


def encode(proj: RVQProjections, state: CodebookState, emb: jax.Array, n_q: int) -> jax.Array:
    """Codes ``[N, T', n_q]`` (int32) of the first ``n_q`` quantizers."""
    residual = emb
    codes = []
    for i in range(n_q):
        codebook = state.codebook[i]
        idx = assign(proj.project_in(i, residual), codebook)
        residual = residual - proj.project_out(i, codebook[idx])
        codes.append(idx)
    return jnp.stack(codes, -1)


def decode(proj: RVQProjections, state: CodebookState, codes: jax.Array) -> jax.Array:
    """``sum_i project_out_i(codebook_i[codes[..., i]])`` over the quantizers present in ``codes``."""
    out = 0.0
    for i in range(codes.shape[-1]):
        out = out + proj.project_out(i, state.codebook[i][codes[..., i]])
    return out


def kmeans_init(proj: RVQProjections, emb: jax.Array, key: jax.Array, cfg: CodecConfig) -> CodebookState:
    """Initialise every codebook by k-means on the residuals of one batch, quantizer after quantizer.

    As in the original: ``codebook = normalize(means)``, ``embed_avg = codebook``,
    ``cluster_size = counts``; the next quantizer sees the residual left by the new codebook.
    """
    residual = sg(emb).reshape(-1, emb.shape[-1])
    layers = []
    for i, k in enumerate(jax.random.split(key, cfg.n_q)):
        x = proj.project_in(i, residual)
        means, counts = kmeans(k, x, cfg.codebook_size, cfg.kmeans_iters)
        codebook = l2_normalize(means)
        layers.append(CodebookState(codebook, codebook, counts, jnp.asarray(True)))
        residual = residual - proj.project_out(i, codebook[assign(x, codebook)])
    return CodebookState.stack(layers)
