"""The pure training step: learning, determinism, schedule, evaluation without side effects."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biocodec_jax import preset
from biocodec_jax.config import OptimConfig
from biocodec_jax.training import eval_step, init_state, train_step
from biocodec_jax.training.optimizer import make_schedule
from tests.conftest import eeg_like_signals as _signals



def test_tiny_codec_overfits_one_batch():
    config = preset("tiny")
    batch = _signals(8, 250, 0)
    state = init_state(config, jax.random.PRNGKey(0), batch)
    losses = []
    for _ in range(200):
        state, metrics = train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert all(math.isfinite(v) for v in losses)
    print(f"tiny overfit: loss {losses[0]:.3f} -> {min(losses):.3f}")
    assert min(losses) <= 0.5 * losses[0]
    assert int(state.step) == 200


def test_same_seed_same_training_different_seed_different():
    config = preset("tiny")
    batch = _signals(4, 200, 1)

    def run(seed):
        state = init_state(config, jax.random.PRNGKey(seed), batch)
        for _ in range(3):
            state, metrics = train_step(state, batch)
        return state, metrics

    (a, ma), (b, mb), (c, _) = run(0), run(0), run(1)
    assert float(ma["loss"]) == float(mb["loss"])
    for u, v in zip(jax.tree.leaves((a.params, a.codebooks, a.opt_state)), jax.tree.leaves((b.params, b.codebooks, b.opt_state))):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert not np.array_equal(np.asarray(jax.tree.leaves(a.params)[0]), np.asarray(jax.tree.leaves(c.params)[0]))


def test_train_step_updates_everything_it_owns_and_eval_step_nothing():
    config = preset("tiny")
    batch = _signals(4, 200, 2)
    state = init_state(config, jax.random.PRNGKey(0), batch)
    before = jax.tree.map(np.asarray, (state.params, state.codebooks))
    metrics = eval_step(state, batch)
    assert set(metrics) >= {"loss", "l_t", "l_f", "commit_mse", "corr", "si_sdr"}
    after_eval = jax.tree.map(np.asarray, (state.params, state.codebooks))
    for u, v in zip(jax.tree.leaves(before), jax.tree.leaves(after_eval)):
        np.testing.assert_array_equal(u, v)
    new, train_metrics = train_step(state, batch)
    assert float(train_metrics["loss"]) == pytest.approx(float(metrics["loss"]), rel=1e-5)  # same forward
    assert int(new.step) == 1 and not np.array_equal(np.asarray(new.rng), np.asarray(state.rng))
    # Encoder, decoder and quantizer projections all receive gradient; codebooks move by EMA.
    for part in ("encoder", "decoder", "quantizer"):
        old, upd = jax.tree.leaves(state.params[part]), jax.tree.leaves(new.params[part])
        assert any(not np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(old, upd)), part
    assert not np.array_equal(np.asarray(new.codebooks.codebook), np.asarray(state.codebooks.codebook))


def test_schedule_is_the_originals_warmup_then_cosine():
    cfg = OptimConfig(learning_rate=1e-3, warmup_steps=100, total_steps=1000, warmup_init_ratio=5e-4)
    schedule = make_schedule(cfg)

    def original(t):
        if t < cfg.warmup_steps:
            return cfg.learning_rate * (5e-4 + (1 - 5e-4) * t / cfg.warmup_steps)
        return cfg.learning_rate * 0.5 * (1 + math.cos(math.pi * (t - cfg.warmup_steps) / (cfg.total_steps - cfg.warmup_steps)))

    for t in (0, 1, 50, 99, 100, 101, 550, 999, 1000):
        assert float(schedule(t)) == pytest.approx(original(t), rel=1e-5, abs=1e-7 * cfg.learning_rate)  # float32 cosine near pi


def test_train_step_accepts_multichannel_batches_as_independent_items():
    config = preset("tiny")
    batch = _signals(4, 200, 3)
    state = init_state(config, jax.random.PRNGKey(0), batch)
    as_channels = batch.reshape(2, 2, 200)
    m1 = eval_step(state, batch)
    m2 = eval_step(state, jnp.asarray(as_channels))
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), rel=1e-6)
