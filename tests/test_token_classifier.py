"""The original's downstream token classifier: layout, initialisation, loss, training, selection."""

import dataclasses

import jax
import numpy as np
import pytest

from biocodec_jax.evaluation.dataset import DatasetError
from biocodec_jax.evaluation.token_classifier import (
    DropoutMasks,
    PostLNEncoderLayer,
    TokenClassifierConfig,
    activation_bytes,
    attention_heads,
    class_weights,
    embeddings_from_codebooks,
    fit_token_classifier,
    init_token_classifier,
    loss_and_gradient,
    make_optimizer,
    parameter_count,
    probabilities,
    train_step,
    training_micro_batch,
    weighted_smoothed_cross_entropy,
)

N_CHANNELS, N_FRAMES, N_BOOKS, N_CODES, DIM = 3, 8, 3, 16, 4
# Short training with a larger learning rate, so a few dozen steps learn the synthetic task.
FAST = TokenClassifierConfig(epochs=6, batch_size=32, learning_rate=1e-2)


def _task(n: int, seed: int, classes: int = 2):
    """Random codes; the class is the code that fills channel 0's first quantizer (1 for class 0, 6 for 1, ...)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    rng.shuffle(y)
    codes = rng.integers(0, N_CODES, (n, N_CHANNELS, N_FRAMES, N_BOOKS))
    codes[:, 0, :, 0] = np.where(rng.random((n, N_FRAMES)) < 0.8, (1 + 5 * y)[:, None], codes[:, 0, :, 0])
    return codes, y


def _proba(model, codes):
    """Probabilities in batches of the training batch size: the evaluation compiled during fitting."""
    return model.predict_proba(codes, batch_size=FAST.batch_size)


def _codebooks(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N_BOOKS, N_CODES, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    codes, y = _task(160, seed=1)
    codes_val, y_val = _task(64, seed=2)
    model = fit_token_classifier(codes, y, codes_val, y_val, 2, _codebooks(), FAST, seed=0)
    return model, codes_val, y_val


def test_parameter_count_matches_original():
    # 6 tables of 256 x 16 + two post-LN layers (3,280 each) + Linear(336, 64) + Linear(64, 2).
    codebooks = np.random.default_rng(0).standard_normal((6, 256, 16))
    _, params = init_token_classifier(codebooks, n_channels=21, n_classes=2)
    assert parameter_count(params) == 52_834


@pytest.mark.parametrize("d, heads", [(16, 8), (4, 4), (6, 6), (12, 6), (5, 5), (7, 7), (1, 1)])
def test_attention_heads_divide_dimension(d, heads):
    assert attention_heads(d, 8) == heads


def test_embeddings_from_codebooks_standardise_then_normalise():
    rng = np.random.default_rng(0)
    codebooks = rng.normal(loc=[3.0, -1.0, 0.0, 10.0], scale=[0.1, 5.0, 1.0, 2.0], size=(2, 64, 4))
    emb = embeddings_from_codebooks(codebooks)
    assert emb.shape == codebooks.shape and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-5)
    z = (codebooks - codebooks.mean(1, keepdims=True)) / codebooks.std(1, ddof=1, keepdims=True)
    np.testing.assert_allclose(emb, z / np.linalg.norm(z, axis=-1, keepdims=True), atol=1e-5)
    # An untrained (all-zero) codec gives zero tables, not NaN.
    assert np.all(embeddings_from_codebooks(np.zeros((1, 8, 4))) == 0)


def test_lookup_respects_max_norm_and_sums_tables():
    from flax import nnx

    codebooks = _codebooks()
    graphdef, params = init_token_classifier(codebooks, N_CHANNELS, 2)
    model = nnx.merge(graphdef, params)
    model.embeddings.set_value(model.embeddings[...] * 5.0)  # every row now has norm 5
    codes = np.random.default_rng(0).integers(0, N_CODES, (2, N_CHANNELS, N_FRAMES, 1))
    single = np.asarray(model.embed(codes))
    np.testing.assert_allclose(np.linalg.norm(single, axis=-1), 1.0, atol=1e-5)
    # Rows under the max norm are left alone, and the K looked-up rows of a frame are summed.
    model.embeddings.set_value(model.embeddings[...] / 10.0)
    both = np.asarray(model.embed(np.concatenate([codes, np.full_like(codes, 3)], axis=-1)))
    tables = np.asarray(model.embeddings[...])
    np.testing.assert_allclose(both, tables[0][codes[..., 0]] + tables[1][3], atol=1e-6)


def test_weighted_smoothed_cross_entropy_ignores_padding_and_weights_like_torch():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 2, 1, 0])
    weights = np.array([0.5, 2.0, 1.0], np.float32)
    mask = np.array([1, 1, 1, 1, 0, 0], np.float32)  # the last two rows are padding
    got = float(jax.jit(weighted_smoothed_cross_entropy)(logits, labels, weights, mask, 0.1))
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    w = weights[labels[:4]]
    nll = -(w * log_p[np.arange(4), labels[:4]]).sum() / w.sum()
    smooth = -(log_p[:4] * weights).sum() / w.sum()
    np.testing.assert_allclose(got, 0.9 * nll + 0.1 / 3 * smooth, rtol=1e-5)


def test_weighted_smoothed_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 4)).astype(np.float32)
    labels = np.array([3, 0, 1, 3, 2])
    weights = np.array([1.5, 0.5, 2.0, 1.0], np.float32)
    got = float(jax.jit(weighted_smoothed_cross_entropy)(logits, labels, weights, np.ones(5, np.float32), 0.1))
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(logits), torch.tensor(labels), weight=torch.tensor(weights), label_smoothing=0.1
    )
    np.testing.assert_allclose(got, float(expected), rtol=1e-5)


def test_post_ln_layer_matches_torch_encoder_layer():
    torch = pytest.importorskip("torch")
    from flax import nnx

    d, heads, ff = 8, 4, 16
    layer = PostLNEncoderLayer(d, heads, ff, 0.2, rngs=nnx.Rngs(params=0))
    ref = torch.nn.TransformerEncoderLayer(d, heads, ff, dropout=0.2, activation="gelu", batch_first=True).eval()
    t = lambda a: torch.tensor(np.asarray(a))  # noqa: E731
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(t(layer.in_proj.kernel[...]).T)
        ref.self_attn.in_proj_bias.copy_(t(layer.in_proj.bias[...]) + 0.1)
        ref.self_attn.out_proj.weight.copy_(t(layer.out_proj.kernel[...]).T)
        ref.linear1.weight.copy_(t(layer.linear1.kernel[...]).T)
        ref.linear1.bias.copy_(t(layer.linear1.bias[...]))
        ref.linear2.weight.copy_(t(layer.linear2.kernel[...]).T)
        ref.linear2.bias.copy_(t(layer.linear2.bias[...]))
    layer.in_proj.bias.set_value(layer.in_proj.bias[...] + 0.1)  # a non-zero bias is part of the check
    x = np.random.default_rng(0).standard_normal((5, 7, d)).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.tensor(x)).numpy()
    graphdef, params = nnx.split(layer)
    run = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))  # one compilation, not one per operation
    np.testing.assert_allclose(np.asarray(run(params, x)), expected, atol=2e-5)


def test_fit_learns_a_separable_task(fitted):
    model, codes_val, y_val = fitted
    proba = _proba(model, codes_val[:40])  # one full batch and a padded one
    assert proba.shape == (40, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(proba >= 0)
    accuracy = np.mean([np.mean(proba[y_val[:40] == c].argmax(1) == c) for c in (0, 1)])
    assert accuracy >= 0.9, model.history
    # Eval mode (no dropout), and the padding does not leak into the real rows.
    np.testing.assert_array_equal(_proba(model, codes_val[:40]), proba)
    np.testing.assert_allclose(_proba(model, codes_val)[:40], proba, atol=1e-6)
    assert _proba(model, codes_val[:0]).shape == (0, 2)


def test_history_and_best_epoch_are_consistent(fitted):
    model, codes_val, y_val = fitted
    assert [h["epoch"] for h in model.history] == list(range(1, FAST.epochs + 1))
    accuracies = [h["val_balanced_accuracy"] for h in model.history]
    assert model.best_epoch == 1 + int(np.argmax(accuracies))
    assert all(np.isfinite(h["train_loss"]) for h in model.history)
    assert model.history[-1]["train_loss"] < model.history[0]["train_loss"]
    # The kept parameters are the best epoch's: they reproduce its validation balanced accuracy.
    predicted = _proba(model, codes_val).argmax(1)
    recalls = [np.mean(predicted[y_val == c] == c) for c in (0, 1)]
    assert np.mean(recalls) == pytest.approx(max(accuracies))


def test_keeps_the_best_epoch_not_the_last(fitted):
    # Validation labels flipped: the better the model learns the training task, the worse it
    # scores, so the first epoch is the best and the kept parameters must be that epoch's.
    _, codes_val, y_val = fitted
    codes, y = _task(160, seed=1)
    model = fit_token_classifier(codes, y, codes_val, 1 - y_val, 2, _codebooks(), FAST, seed=0)
    accuracies = [h["val_balanced_accuracy"] for h in model.history]
    assert model.best_epoch == 1 and accuracies[0] > accuracies[-1] + 0.3, model.history
    predicted = _proba(model, codes_val).argmax(1)
    assert np.mean([np.mean(predicted[y_val == c] == 1 - c) for c in (0, 1)]) == pytest.approx(accuracies[0])


def test_fitted_tables_respect_max_norm(fitted):
    model, _, _ = fitted
    assert np.linalg.norm(model.embeddings, axis=-1).max() <= 1.0 + 1e-5


def test_same_seed_same_model_other_seed_differs(fitted):
    model, codes_val, y_val = fitted
    codes, y = _task(160, seed=1)
    again = fit_token_classifier(codes, y, codes_val, y_val, 2, _codebooks(), FAST, seed=0)
    np.testing.assert_array_equal(_proba(again, codes_val), _proba(model, codes_val))
    assert again.history == model.history
    other = fit_token_classifier(codes, y, codes_val, y_val, 2, _codebooks(), FAST, seed=1)
    assert not np.allclose(_proba(other, codes_val), _proba(model, codes_val))


def test_class_absent_from_validation_is_allowed(fitted):
    _, codes_val, y_val = fitted
    codes, y = _task(160, seed=1)
    model = fit_token_classifier(codes, y, codes_val[y_val == 1], y_val[y_val == 1], 2, _codebooks(),
                                 dataclasses.replace(FAST, epochs=1), seed=0)
    assert len(model.history) == 1 and 0.0 <= model.history[0]["val_balanced_accuracy"] <= 1.0


def test_class_absent_from_training_is_an_error():
    codes, y = _task(40, seed=1, classes=3)
    keep = y != 1
    with pytest.raises(DatasetError, match=r"class\(es\) 1 of 3 absent from the training labels"):
        fit_token_classifier(codes[keep], y[keep], codes, y, 3, _codebooks(), FAST)


def test_bad_codes_are_errors(fitted):
    model, codes_val, _ = fitted
    with pytest.raises(DatasetError, match="built for 3"):
        model.predict_proba(codes_val[:, :2])
    with pytest.raises(DatasetError, match="must be in 0..15"):
        model.predict_proba(codes_val + N_CODES)
    codes, y = _task(40, seed=1)
    with pytest.raises(DatasetError, match="4 quantizers but there are only 3 codebooks"):
        fit_token_classifier(np.concatenate([codes, codes[..., :1]], -1), y, codes, y, 2, _codebooks(), FAST)


# --- micro-batches: bounded memory, the full batch's optimisation -----------------------------------


def _fmix32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> np.uint32(13))
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> np.uint32(16))


def test_dropout_masks_do_not_depend_on_the_micro_batch():
    key = jax.random.key(3)
    whole = DropoutMasks(key, windows=6)
    parts = [DropoutMasks(key, windows=2, first_window=first) for first in (0, 2, 4)]
    for shape, rate in [((6 * 3, 5, 2), 0.2), ((6, 7), 0.5)]:  # two sites: [B*C, ...] and [B, ...]
        expected = np.asarray(whole.keep(shape, rate))
        got = np.concatenate([np.asarray(m.keep((2 * shape[0] // 6, *shape[1:]), rate)) for m in parts])
        np.testing.assert_array_equal(got, expected)
    assert 0.3 < expected.mean() < 0.7
    with pytest.raises(ValueError, match="does not split into 6 windows"):
        whole.keep((7, 2), 0.2)


def test_dropout_mask_counters_go_past_32_bits():
    # A window whose elements straddle 2^32 in the whole batch (4095 * per_window < 2^32 < 4096 *
    # per_window): bits from a 64-bit index split into words, as a numpy reference computes them.
    key, per_window, first, rate = jax.random.key(5), 2**20 + 3, 4095, 0.3
    got = np.asarray(DropoutMasks(key, windows=1, first_window=first).keep((per_window,), rate))
    words = np.asarray(jax.random.key_data(key)).reshape(-1).astype(np.uint32)
    with np.errstate(over="ignore"):
        salt = _fmix32(words[:1] + np.uint32(0x9E3779B9))  # site 1
        index = np.uint64(first * per_window) + np.arange(per_window, dtype=np.uint64)
        low, high = (index % 2**32).astype(np.uint32), (index >> np.uint64(32)).astype(np.uint32)
        assert high.min() == 0 and high.max() == 1
        bits = _fmix32(_fmix32(low ^ salt) + words[-1] + high * np.uint32(0x85EBCA77))
    np.testing.assert_array_equal(got, bits >= np.uint32(round(rate * 2**32)))


def _micro_setup(dropout: float, n: int = 12, real: int = 10):
    """A batch of ``n`` windows whose last ``n - real`` are padding, and a fresh model."""
    config = TokenClassifierConfig(dropout=dropout, head_dropout=2 * dropout, learning_rate=1e-2)
    codes, y = _task(n, seed=3)
    mask = (np.arange(n) < real).astype(np.float32)
    graphdef, params = init_token_classifier(_codebooks(), N_CHANNELS, 2, config)
    return config, codes, y, mask, np.asarray(class_weights(y, 2)), graphdef, params


def test_micro_batched_gradient_is_the_full_batch_gradient():
    """With dropout on: each window keeps its masks, so only float rounding differs."""
    from jax.flatten_util import ravel_pytree

    _, codes, y, mask, weights, graphdef, params = _micro_setup(0.2)
    run = jax.jit(loss_and_gradient, static_argnames=("graphdef", "micro_batch"))
    key = jax.random.key(7)
    loss, grads = run(params, key, codes, y, mask, weights, 0.1, graphdef=graphdef)
    grads = np.asarray(ravel_pytree(grads)[0])
    for micro in (5,):  # three micro-batches, the last padded with 3 rows (1 and 4: the steps' test)
        micro_loss, micro_grads = run(params, key, codes, y, mask, weights, 0.1, graphdef=graphdef, micro_batch=micro)
        assert float(micro_loss) == pytest.approx(float(loss), rel=1e-6)
        np.testing.assert_allclose(np.asarray(ravel_pytree(micro_grads)[0]), grads,
                                   rtol=1e-5, atol=1e-6 * np.abs(grads).max())
    # Dropout is on: another key, another loss.
    other_loss, _ = run(params, jax.random.key(8), codes, y, mask, weights, 0.1, graphdef=graphdef)
    assert float(other_loss) != pytest.approx(float(loss), rel=1e-3)


def test_micro_batched_steps_are_the_full_batch_steps():
    """Three optimiser steps without dropout: the parameters agree to float rounding.

    Two exceptions, both forced by AdamW, whose step is about ``lr`` whatever the gradient's size:
    the bias of the attention keys has a gradient of exactly zero in exact arithmetic (a shift of
    every key's score cancels in the softmax), so its float rounding (1e-10) becomes a step of
    +-lr; it changes no output, and is left out. Elsewhere, small gradients' rounding moves a
    parameter by up to ~1e-6, hence ``atol=1e-5`` (a thousandth of one step of lr 1e-2).
    """
    from flax import nnx
    from jax.flatten_util import ravel_pytree

    config, codes, y, mask, weights, graphdef, params0 = _micro_setup(0.0)

    def train(micro):
        params = params0
        opt_state = make_optimizer(config).init(ravel_pytree(params)[0])
        for step in range(3):
            params, opt_state, _ = train_step(params, opt_state, jax.random.key(step), np.float32(1e-2), codes, y,
                                              mask, weights, np.float32(0.1), graphdef=graphdef, micro_batch=micro)
        model = nnx.merge(graphdef, params)
        for layer in (model.time_layer, model.channel_layer):  # the key bias: see the docstring
            layer.in_proj.bias.set_value(layer.in_proj.bias[...].at[DIM:2 * DIM].set(0.0))
        return nnx.state(model)

    full = train(None)
    full_flat = np.asarray(ravel_pytree(full)[0])
    assert np.abs(full_flat - np.asarray(ravel_pytree(params0)[0])).max() > 1e-2  # the steps did move it
    for micro in (1, 4):
        got = train(micro)
        np.testing.assert_allclose(np.asarray(ravel_pytree(got)[0]), full_flat, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(probabilities(got, codes, graphdef=graphdef)),
                                   np.asarray(probabilities(full, codes, graphdef=graphdef)), atol=1e-5)


def test_training_micro_batch_fits_the_budget():
    assert training_micro_batch(128, 10, 10**9) == 128  # everything fits: one batch
    assert training_micro_batch(128, 10, 10 * 43) == 43  # 3 micro-batches of 43 (the last padded by 1)
    assert training_micro_batch(128, 10, 10 * 40) == 32  # 4 micro-batches, as even as possible: 32 each
    assert training_micro_batch(128, 10, 10 * 64) == 64
    assert training_micro_batch(128, 10, 1) == 1  # nothing fits: one window at a time
    assert training_micro_batch(5, 10, 10 * 4) == 3  # 2 micro-batches, as even as possible
    # 64 channels x 105 frames, d = 16 at the default budget: XLA needs ~208 MB a window.
    window = activation_bytes(64, 105, 16, 8, 64, training=True)
    assert 208e6 <= window <= 1.2 * 208e6
    micro = training_micro_batch(128, window, TokenClassifierConfig().max_activation_bytes)
    assert micro * window <= TokenClassifierConfig().max_activation_bytes and micro >= 4


def test_activation_estimate_covers_xlas_buffers():
    """The estimate against XLA's own buffer assignment of the compiled programs (CPU)."""
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    c, t, d, b = 16, 32, 16, 2
    config = TokenClassifierConfig()
    codebooks = np.random.default_rng(0).standard_normal((2, N_CODES, d)).astype(np.float32)
    graphdef, params = init_token_classifier(codebooks, c, 2, config)
    codes = jax.ShapeDtypeStruct((b, c, t, 2), jnp.int32)
    opt_state = make_optimizer(config).init(ravel_pytree(params)[0])
    train = train_step.lower(params, opt_state, jax.random.key(0), np.float32(1e-3), codes, np.zeros(b, np.int32),
                             np.ones(b, np.float32), np.ones(2, np.float32), np.float32(0.1), graphdef=graphdef)
    xla_train = train.compile().memory_analysis().temp_size_in_bytes / b
    xla_eval = probabilities.lower(params, codes, graphdef=graphdef).compile().memory_analysis().temp_size_in_bytes / b
    estimate = activation_bytes(c, t, d, attention_heads(d, config.heads), config.feedforward, training=True)
    assert 0.9 * xla_train <= estimate <= 1.5 * xla_train
    assert xla_eval <= activation_bytes(c, t, d, attention_heads(d, config.heads), config.feedforward, training=False)


def test_fit_in_micro_batches_matches_the_full_batch_fit(fitted):
    # A budget of one byte: every step accumulates 32 micro-batches of one window.
    _, codes_val, y_val = fitted
    codes, y = _task(160, seed=1)
    config = dataclasses.replace(FAST, epochs=2)
    full = fit_token_classifier(codes, y, codes_val, y_val, 2, _codebooks(), config, seed=0)
    micro = fit_token_classifier(codes, y, codes_val, y_val, 2, _codebooks(),
                                 dataclasses.replace(config, max_activation_bytes=1), seed=0)
    for a, b in zip(micro.history, full.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert micro.best_epoch == full.best_epoch
    np.testing.assert_allclose(micro.predict_proba(codes_val), full.predict_proba(codes_val), atol=1e-4)


def test_config_rejects_bad_budget_and_batch():
    with pytest.raises(ValueError, match="max_activation_bytes must be >= 1"):
        TokenClassifierConfig(max_activation_bytes=0)
    with pytest.raises(ValueError, match="at most 65536"):
        TokenClassifierConfig(batch_size=2**16 + 1)
