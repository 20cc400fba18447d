"""The original's optimiser: Adam (0.5, 0.9), no weight decay, no clipping, per-step warm-up + cosine."""

from __future__ import annotations

import functools

import optax

from biocodec_jax.config import OptimConfig


def make_schedule(cfg: OptimConfig) -> optax.Schedule:
    """``lr * (r + (1 - r) t / W)`` for ``t < W``, then ``lr * (1 + cos(pi (t - W) / (M - W))) / 2``."""
    cosine = optax.cosine_decay_schedule(cfg.learning_rate, max(cfg.total_steps - cfg.warmup_steps, 1))
    if cfg.warmup_steps <= 0:
        return cosine
    warmup = optax.linear_schedule(cfg.learning_rate * cfg.warmup_init_ratio, cfg.learning_rate, cfg.warmup_steps)
    return optax.join_schedules([warmup, cosine], [cfg.warmup_steps])


@functools.lru_cache(maxsize=None)
def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """One optimiser object per config: it is a static field of the TrainState, so a new object
    for an equal config would make every jitted step recompile."""
    return optax.adam(make_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
