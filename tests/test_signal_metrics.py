"""The one definition of the signal-quality metrics: same numbers on numpy and JAX arrays, inside
``jit``, and the edge cases the module doc promises (eps = 1e-8 as the original)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biocodec_jax import losses, signal_metrics


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 500)).astype(np.float32)
    return x, (0.8 * x + 0.3 * rng.standard_normal(x.shape)).astype(np.float32)


def test_numpy_and_jax_agree_and_keep_the_dtype(pair):
    x, y = pair
    for metric in (signal_metrics.correlation, signal_metrics.si_sdr):
        on_np, on_jax, jitted = metric(x, y), metric(jnp.asarray(x), jnp.asarray(y)), jax.jit(metric)(x, y)
        assert isinstance(on_np, np.ndarray) and on_np.shape == (3, 2) and on_np.dtype == np.float32
        assert isinstance(on_jax, jax.Array) and on_jax.dtype == jnp.float32
        np.testing.assert_allclose(on_np, on_jax, rtol=1e-5)
        np.testing.assert_allclose(on_jax, jitted, rtol=1e-6)  # XLA fuses differently under jit
        assert metric(x.astype(np.float64), y.astype(np.float64)).dtype == np.float64
    assert losses.pearson_correlation is signal_metrics.correlation and losses.si_sdr is signal_metrics.si_sdr


def test_against_the_definitions(pair):
    x, y = (a.astype(np.float64)[0, 0] for a in pair)
    assert float(signal_metrics.correlation(x, y)) == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    r, e = x - x.mean(), y - y.mean()
    target = (e @ r) / (r @ r) * r
    assert float(signal_metrics.si_sdr(x, y)) == pytest.approx(10 * np.log10(target @ target / ((e - target) @ (e - target))), abs=1e-6)
    assert float(signal_metrics.si_sdr(x, 3 * y + 2)) == pytest.approx(float(signal_metrics.si_sdr(x, y)), abs=1e-9)


def test_edges_follow_the_eps_convention():
    flat, ramp = np.ones((1, 100)), np.linspace(0.0, 1.0, 100)[None]
    assert np.isnan(signal_metrics.correlation(flat, ramp)[0])  # no warning either (errstate)
    assert signal_metrics.si_sdr(flat, ramp)[0] == pytest.approx(-80.0)  # 10 log10(eps)
    energy = np.sum((ramp - ramp.mean()) ** 2)
    assert signal_metrics.si_sdr(ramp, ramp)[0] == pytest.approx(10 * np.log10(energy / 1e-8), abs=1e-6)  # finite, not inf
    assert signal_metrics.correlation([[1.0, 2.0, 3.0]], [[2.0, 4.0, 6.0]])[0] == pytest.approx(1.0)  # lists read with numpy
