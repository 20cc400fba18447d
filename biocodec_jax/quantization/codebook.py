"""One cosine-similarity codebook with EMA updates: pure functions over explicit arrays.

State per quantizer (stacked over quantizers in :class:`CodebookState`):
``codebook [K, d]`` (unit rows, the original's ``embed``), ``embed_avg [K, d]``,
``cluster_size [K]`` and an ``initialized`` flag.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


class CodebookState(struct.PyTreeNode):
    """Codebooks of all quantizers, stacked on a leading axis ``Q``; not trained by gradient."""

    codebook: jax.Array  # [Q, K, d], unit rows
    embed_avg: jax.Array  # [Q, K, d]
    cluster_size: jax.Array  # [Q, K]
    initialized: jax.Array  # [Q] bool

    @classmethod
    def zeros(cls, n_q: int, codebook_size: int, dim: int) -> "CodebookState":
        """The original's state before k-means: all zeros, not initialised."""
        return cls(
            codebook=jnp.zeros((n_q, codebook_size, dim), jnp.float32),
            embed_avg=jnp.zeros((n_q, codebook_size, dim), jnp.float32),
            cluster_size=jnp.zeros((n_q, codebook_size), jnp.float32),
            initialized=jnp.zeros((n_q,), bool),
        )

    def layer(self, i: int) -> "CodebookState":
        return jax.tree.map(lambda a: a[i], self)

    @staticmethod
    def stack(layers: list["CodebookState"]) -> "CodebookState":
        return jax.tree.map(lambda *a: jnp.stack(a), *layers)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``x / max(||x||, eps)`` over the last axis (PyTorch's ``F.normalize``)."""
    norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
    return x / jnp.maximum(norm, eps)


def assign(x: jax.Array, codebook: jax.Array) -> jax.Array:
    """Index of the most cosine-similar code for each row of ``x [N, d]`` -> int32 ``[N]``."""
    sim = l2_normalize(x) @ l2_normalize(codebook).T
    return jnp.argmax(sim, axis=-1).astype(jnp.int32)


def sample_vectors(key: jax.Array, x: jax.Array, num: int) -> jax.Array:
    """``num`` rows of ``x``: without replacement when there are enough, else with."""
    n = x.shape[0]
    idx = jax.random.choice(key, n, (num,), replace=n < num)
    return x[idx]


def ema_update(
    state: CodebookState, x: jax.Array, idx: jax.Array, *, decay: float, eps: float
) -> CodebookState:
    """The original's EMA step for one quantizer from the batch ``x [N, d]`` assigned to ``idx``.

    ``cluster_size`` and ``embed_avg`` move towards the batch counts and per-code sums; the
    codebook is their Laplace-smoothed ratio, L2-normalised.
    """
    k = state.codebook.shape[0]
    onehot = jax.nn.one_hot(idx, k, dtype=x.dtype)  # [N, K]
    counts = onehot.sum(axis=0)
    sums = onehot.T @ x  # [K, d]
    cluster_size = decay * state.cluster_size + (1 - decay) * counts
    embed_avg = decay * state.embed_avg + (1 - decay) * sums
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + k * eps) * n
    codebook = l2_normalize(embed_avg / smoothed[:, None])
    return state.replace(codebook=codebook, embed_avg=embed_avg, cluster_size=cluster_size)


def replace_dead_codes(state: CodebookState, x: jax.Array, key: jax.Array, *, threshold: float) -> CodebookState:
    """Re-seed codes whose EMA count fell below ``threshold`` with vectors of the batch.

    The original samples replacements (clamped to +-1, L2-normalised) but its EMA step then
    overwrites them, so nothing changes. Here (``dead_code_mode="replace"``) the replacement is
    applied *after* the EMA step, and the code's statistics are reset to ``threshold`` counts of
    the new vector (as vector-quantize-pytorch does), so the next EMA step keeps it.
    """
    k = state.codebook.shape[0]
    dead = state.cluster_size < threshold
    samples = l2_normalize(jnp.clip(sample_vectors(key, x, k), -1.0, 1.0))
    return state.replace(
        codebook=jnp.where(dead[:, None], samples, state.codebook),
        embed_avg=jnp.where(dead[:, None], samples * threshold, state.embed_avg),
        cluster_size=jnp.where(dead, threshold, state.cluster_size),
    )


def dead_code_count(state: CodebookState, threshold: float) -> jax.Array:
    """Codes with an EMA count below ``threshold``, per quantizer (works stacked or single)."""
    return jnp.sum(state.cluster_size < threshold, axis=-1)


def perplexity(counts: jax.Array) -> jax.Array:
    """``exp(entropy)`` of code usage counts over the last axis (K means uniform use)."""
    p = counts / jnp.maximum(counts.sum(axis=-1, keepdims=True), 1e-12)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1))
