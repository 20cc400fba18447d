"""Pure, jit-compiled training and evaluation steps over a :class:`TrainState`."""

from __future__ import annotations

import jax
import optax

from biocodec_jax import model as model_lib
from biocodec_jax.training.optimizer import make_schedule
from biocodec_jax.training.state import TrainState


def _items(batch: jax.Array) -> jax.Array:
    """``[B, C, T]`` (or ``[N, T]``) -> single-channel items ``[N, T]``."""
    return batch.reshape(-1, batch.shape[-1]).astype("float32")


@jax.jit
def train_step(state: TrainState, batch: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimisation step on ``batch`` ``[B, C, T]``: gradients, Adam update, EMA codebook update."""
    cfg = state.config
    rng, key = jax.random.split(state.rng)
    grad_fn = jax.value_and_grad(model_lib.training_loss, has_aux=True)
    (_, (metrics, codebooks)), grads = grad_fn(
        state.params, state.graphdef, state.codebooks, _items(batch), key, cfg.codec, cfg.loss
    )
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, grad_norm=optax.global_norm(grads), lr=make_schedule(cfg.optim)(state.step))
    new_state = state.replace(step=state.step + 1, params=params, codebooks=codebooks, opt_state=opt_state, rng=rng)
    return new_state, metrics


@jax.jit
def eval_step(state: TrainState, batch: jax.Array) -> dict[str, jax.Array]:
    """Loss terms and metrics on ``batch`` without changing anything (no EMA update, no gradient)."""
    cfg = state.config
    _, (metrics, _) = model_lib.training_loss(
        state.params, state.graphdef, state.codebooks, _items(batch), state.rng, cfg.codec, cfg.loss
    )
    return metrics
