"""The training state: one pytree holding everything a training step reads and writes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from biocodec_jax import model as model_lib
from biocodec_jax.config import Config
from biocodec_jax.quantization.codebook import CodebookState
from biocodec_jax.training.optimizer import make_optimizer


class TrainState(struct.PyTreeNode):
    """Parameters, codebooks, optimiser state, RNG and step; graph, optimiser and config are static."""

    step: jax.Array
    params: nnx.State
    codebooks: CodebookState
    opt_state: optax.OptState
    rng: jax.Array  # raw uint32 key data (checkpoint-friendly)
    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    config: Config = struct.field(pytree_node=False)


def create_train_state(
    config: Config, graphdef: nnx.GraphDef, params: nnx.State, codebooks: CodebookState, rng: jax.Array
) -> TrainState:
    """A state at step 0 from given parameters and codebooks (e.g. the original's checkpoint)."""
    tx = make_optimizer(config.optim)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        codebooks=codebooks,
        opt_state=tx.init(params),
        rng=rng,
        graphdef=graphdef,
        tx=tx,
        config=config,
    )


def init_state(config: Config, rng: jax.Array, first_batch: jax.Array) -> TrainState:
    """Random parameters and codebooks initialised by k-means on ``first_batch`` ``[B, C, T]``.

    This is what the original does inside its first training forward; doing it here keeps
    ``train_step`` free of a one-off branch. ``rng`` is a ``jax.random.PRNGKey``.
    """
    dtype = param_dtype(config)
    param_key, kmeans_key, step_key = jax.random.split(rng, 3)
    graphdef, params = model_lib.init_model(config.codec, param_key, config.train.numerics)
    params = cast_floats(params, dtype)
    x = jnp.asarray(first_batch, dtype).reshape(-1, first_batch.shape[-1])
    codebooks = jax.jit(model_lib.kmeans_init, static_argnums=(0, 2))(graphdef, params, config.codec, x, kmeans_key)
    return create_train_state(config, graphdef, params, cast_floats(codebooks, dtype), step_key)


def param_dtype(config: Config) -> jnp.dtype:
    """The dtype of parameters, optimiser state and codebooks (``config.train.precision``: float32
    for bfloat16 mixed precision, whose layers compute in bfloat16 through the graph's numerics)."""
    dtype = jnp.dtype(config.train.numerics.param_dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("train.precision=float64 needs 64-bit JAX: jax.config.update('jax_enable_x64', True) first")
    return dtype


def cast_floats(tree, dtype):
    """``tree`` with every floating-point leaf cast to ``dtype`` (flags and counters untouched)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)
