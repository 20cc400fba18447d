"""Training: the state pytree, the pure steps and the optimiser (the pretraining job builds on these)."""

from biocodec_jax.training.state import TrainState, create_train_state, init_state
from biocodec_jax.training.step import eval_step, train_step

__all__ = ["TrainState", "create_train_state", "init_state", "train_step", "eval_step"]
