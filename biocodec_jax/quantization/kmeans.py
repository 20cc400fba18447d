"""K-means with Euclidean assignment, used once to initialise each codebook from the first batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from biocodec_jax.quantization.codebook import sample_vectors


def kmeans(key: jax.Array, x: jax.Array, num_clusters: int, num_iters: int) -> tuple[jax.Array, jax.Array]:
    """Cluster ``x [N, d]``; returns ``(means [K, d], counts [K])`` like the original.

    Means start as ``K`` rows sampled from ``x``; an empty cluster keeps its previous mean; the
    counts are those of the last assignment step (made with the means before its update).
    """
    means = sample_vectors(key, x, num_clusters)
    x_sq = jnp.sum(x * x, axis=-1, keepdims=True)

    def step(carry, _):
        means, _ = carry
        dists = 2.0 * x @ means.T - x_sq - jnp.sum(means * means, axis=-1)  # -||x - m||^2
        buckets = jnp.argmax(dists, axis=-1)
        onehot = jax.nn.one_hot(buckets, num_clusters, dtype=x.dtype)
        bins = onehot.sum(axis=0)
        new_means = (onehot.T @ x) / jnp.maximum(bins, 1.0)[:, None]
        means = jnp.where((bins == 0)[:, None], means, new_means)
        return (means, bins), None

    (means, bins), _ = jax.lax.scan(step, (means, jnp.zeros((num_clusters,), x.dtype)), None, length=num_iters)
    return means, bins
