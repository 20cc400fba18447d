"""The residual vector quantizer: assignment, EMA update, k-means, straight-through, dead codes."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from biocodec_jax import preset
from biocodec_jax.model import BioCodecModel
from biocodec_jax.quantization import rvq
from biocodec_jax.quantization.codebook import CodebookState, assign, ema_update, replace_dead_codes
from biocodec_jax.quantization.kmeans import kmeans


def _normalize(a):
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def test_assignment_is_cosine_not_euclidean():
    codebook = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
    # Closer to code 1 in Euclidean distance, but pointing along code 0.
    x = jnp.asarray([[0.3, 0.0], [5.0, 4.0]])
    np.testing.assert_array_equal(np.asarray(assign(x, codebook)), [0, 0])


def test_ema_update_against_numpy_reference():
    rng = np.random.default_rng(0)
    k, d, n, decay, eps = 8, 4, 50, 0.99, 1e-5
    codebook = _normalize(rng.standard_normal((k, d))).astype(np.float32)
    embed_avg = rng.standard_normal((k, d)).astype(np.float32)
    cluster_size = rng.uniform(0, 5, k).astype(np.float32)
    x = rng.standard_normal((n, d)).astype(np.float32)
    idx = rng.integers(0, k, n)
    idx[:3] = 0  # make sure code 0 is used and some code likely is not

    counts = np.bincount(idx, minlength=k)
    sums = np.zeros((k, d))
    np.add.at(sums, idx, x)
    cs = decay * cluster_size + (1 - decay) * counts
    ea = decay * embed_avg + (1 - decay) * sums
    total = cs.sum()
    smoothed = (cs + eps) / (total + k * eps) * total
    expected = _normalize(ea / smoothed[:, None])

    state = CodebookState(jnp.asarray(codebook), jnp.asarray(embed_avg), jnp.asarray(cluster_size), jnp.asarray(True))
    new = ema_update(state, jnp.asarray(x), jnp.asarray(idx), decay=decay, eps=eps)
    np.testing.assert_allclose(np.asarray(new.cluster_size), cs, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new.embed_avg), ea, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new.codebook), expected, rtol=1e-5, atol=1e-6)


def test_kmeans_finds_separated_clusters_and_counts_them():
    rng = np.random.default_rng(1)
    centres = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    x = np.concatenate([c + 0.1 * rng.standard_normal((30, 2)) for c in centres]).astype(np.float32)
    means, counts = kmeans(jax.random.PRNGKey(0), jnp.asarray(x), 3, 20)
    means = np.asarray(means)
    for c in centres:
        assert np.min(np.linalg.norm(means - c, axis=1)) < 0.2
    np.testing.assert_array_equal(np.sort(np.asarray(counts)), [30, 30, 30])


@pytest.fixture(scope="module")
def tiny_parts():
    cfg = preset("tiny").codec
    model = BioCodecModel(cfg, rngs=nnx.Rngs(0))
    emb = jax.random.normal(jax.random.PRNGKey(1), (4, 30, cfg.dimension))
    codebooks = rvq.kmeans_init(model.quantizer, emb, jax.random.PRNGKey(2), cfg)
    return cfg, model, emb, codebooks


def test_kmeans_init_sets_unit_codebooks_and_counts(tiny_parts):
    cfg, _, emb, codebooks = tiny_parts
    assert bool(np.all(np.asarray(codebooks.initialized)))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(codebooks.codebook), axis=-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(codebooks.embed_avg), np.asarray(codebooks.codebook))
    # k-means counts cover every vector of the batch, per quantizer.
    np.testing.assert_allclose(np.asarray(codebooks.cluster_size).sum(-1), emb.shape[0] * emb.shape[1])


def test_training_forward_equals_inference_and_codes_use_old_codebooks(tiny_parts):
    cfg, model, emb, codebooks = tiny_parts
    out = rvq.quantize_train(model.quantizer, codebooks, emb, jax.random.PRNGKey(3), cfg)
    codes = rvq.encode(model.quantizer, codebooks, emb, cfg.n_q)
    np.testing.assert_array_equal(np.asarray(out.codes), np.asarray(codes))
    decoded = rvq.decode(model.quantizer, codebooks, codes)
    np.testing.assert_allclose(np.asarray(out.quantized), np.asarray(decoded), atol=1e-5)
    assert not np.allclose(np.asarray(out.codebooks.codebook), np.asarray(codebooks.codebook))  # EMA moved


def test_straight_through_gradient_reaches_the_embedding(tiny_parts):
    cfg, model, emb, codebooks = tiny_parts
    target = jax.random.normal(jax.random.PRNGKey(4), emb.shape)

    def loss(e):
        q = rvq.quantize_train(model.quantizer, codebooks, e, jax.random.PRNGKey(3), cfg).quantized
        return jnp.sum(q * target)

    g = jax.grad(loss)(emb)
    # Without the commitment term, d/d emb = sum_i W_in_i (W_out_i target) through the estimator.
    assert float(jnp.linalg.norm(g)) > 1e-3
    proj = model.quantizer
    # Quantizer 0 sees the embedding directly: its straight-through path contributes W_in0 W_out0^T target.
    first = target @ proj.out_kernel[0].T @ proj.in_kernel[0].T
    assert float(jnp.sum(g * first)) > 0


def test_commitment_pulls_projections_towards_codes(tiny_parts):
    cfg, model, emb, codebooks = tiny_parts
    g = jax.grad(lambda e: rvq.quantize_train(model.quantizer, codebooks, e, jax.random.PRNGKey(3), cfg).commit_mse)(emb)
    assert float(jnp.linalg.norm(g)) > 0


def test_fewer_quantizers_give_a_prefix_of_the_codes(tiny_parts):
    cfg, model, emb, codebooks = tiny_parts
    full = np.asarray(rvq.encode(model.quantizer, codebooks, emb, cfg.n_q))
    for k in range(1, cfg.n_q + 1):
        codes = rvq.encode(model.quantizer, codebooks, emb, k)
        np.testing.assert_array_equal(np.asarray(codes), full[..., :k])
        assert rvq.decode(model.quantizer, codebooks, codes).shape == emb.shape


def test_dead_code_modes():
    rng = np.random.default_rng(5)
    k, d = 6, 3
    codebook = _normalize(rng.standard_normal((k, d))).astype(np.float32)
    state = CodebookState(jnp.asarray(codebook), jnp.asarray(codebook), jnp.asarray([5.0, 5, 5, 5, 0.5, 0.1]), jnp.asarray(True))
    x = jnp.asarray(rng.standard_normal((40, d)).astype(np.float32))
    new = replace_dead_codes(state, x, jax.random.PRNGKey(0), threshold=2.0)
    cb = np.asarray(new.codebook)
    np.testing.assert_array_equal(cb[:4], codebook[:4])  # live codes untouched
    assert not np.allclose(cb[4:], codebook[4:])  # dead ones replaced ...
    np.testing.assert_allclose(np.linalg.norm(cb[4:], axis=-1), 1.0, atol=1e-6)  # ... by unit vectors
    np.testing.assert_array_equal(np.asarray(new.cluster_size)[4:], [2.0, 2.0])
    # In "faithful" mode the training forward leaves no trace of a replacement; in "replace" it does.
    cfg = dataclasses.replace(preset("tiny").codec, n_q=1)
    model = BioCodecModel(cfg, rngs=nnx.Rngs(0))
    emb = jax.random.normal(jax.random.PRNGKey(1), (2, 10, cfg.dimension))
    cbs = rvq.kmeans_init(model.quantizer, emb, jax.random.PRNGKey(2), cfg)
    x = model.quantizer.project_in(0, emb).reshape(-1, cfg.codebook_dim)
    ema_only = ema_update(cbs.layer(0), x, assign(x, cbs.codebook[0]), decay=cfg.ema_decay, eps=cfg.ema_epsilon)
    faithful = rvq.quantize_train(model.quantizer, cbs, emb, jax.random.PRNGKey(3), cfg).codebooks
    np.testing.assert_allclose(np.asarray(faithful.codebook[0]), np.asarray(ema_only.codebook), atol=1e-6)
    replace_cfg = dataclasses.replace(cfg, dead_code_mode="replace")
    replaced = rvq.quantize_train(model.quantizer, cbs, emb, jax.random.PRNGKey(3), replace_cfg).codebooks
    dead = np.asarray(ema_only.cluster_size) < cfg.dead_code_threshold
    assert dead.any()  # 20 vectors over 16 codes leave some codes unused
    np.testing.assert_array_equal(np.asarray(replaced.cluster_size[0])[dead], cfg.dead_code_threshold)
    assert not np.allclose(np.asarray(replaced.codebook[0])[dead], np.asarray(ema_only.codebook)[dead])
    np.testing.assert_allclose(np.asarray(replaced.codebook[0])[~dead], np.asarray(ema_only.codebook)[~dead], atol=1e-6)
