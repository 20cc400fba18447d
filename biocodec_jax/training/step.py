"""Pure, jit-compiled training and evaluation steps over a :class:`TrainState`."""

from __future__ import annotations

import jax
import optax
from flax import nnx

from biocodec_jax import model as model_lib
from biocodec_jax.quantization.codebook import CodebookState
from biocodec_jax.training.optimizer import make_schedule
from biocodec_jax.training.state import TrainState


def _items(batch: jax.Array, state: TrainState) -> jax.Array:
    """``[B, C, T]`` (or ``[N, T]``) -> single-channel items ``[N, T]`` in the state's precision."""
    return batch.reshape(-1, batch.shape[-1]).astype(state.codebooks.codebook.dtype)


@jax.jit
def loss_and_grads(
    state: TrainState, batch: jax.Array
) -> tuple[dict[str, jax.Array], CodebookState, nnx.State]:
    """Metrics, EMA-updated codebooks and parameter gradients on ``batch`` ``[B, C, T]``; no update."""
    cfg = state.config
    _, key = jax.random.split(state.rng)
    grad_fn = jax.value_and_grad(model_lib.training_loss, has_aux=True)
    (_, (metrics, codebooks)), grads = grad_fn(
        state.params, state.graphdef, state.codebooks, _items(batch, state), key, cfg.codec, cfg.loss
    )
    return metrics, codebooks, grads


@jax.jit
def train_step(state: TrainState, batch: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimisation step on ``batch`` ``[B, C, T]``: gradients, Adam update, EMA codebook update."""
    metrics, codebooks, grads = loss_and_grads(state, batch)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads), lr=make_schedule(state.config.optim)(state.step))
    rng, _ = jax.random.split(state.rng)
    new_state = state.replace(step=state.step + 1, params=params, codebooks=codebooks, opt_state=opt_state, rng=rng)
    return new_state, metrics


@jax.jit
def eval_step(state: TrainState, batch: jax.Array) -> dict[str, jax.Array]:
    """Loss terms and metrics on ``batch`` without changing anything (no EMA update, no gradient)."""
    cfg = state.config
    _, (metrics, _) = model_lib.training_loss(
        state.params, state.graphdef, state.codebooks, _items(batch, state), state.rng, cfg.codec, cfg.loss
    )
    return metrics
