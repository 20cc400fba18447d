"""The objective and metrics against formulas, NumPy and the original's values."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biocodec_jax import losses
from tests.conftest import FIXTURES, load_fixture


def test_smooth_l1_matches_pytorch_definition():
    d = np.array([-2.0, -0.7, -0.3, 0.0, 0.2, 0.69, 1.5], np.float32)
    expected = np.where(np.abs(d) < 0.7, 0.5 * d**2 / 0.7, np.abs(d) - 0.35).mean()
    assert float(losses.smooth_l1(jnp.asarray(d), jnp.zeros_like(d), 0.7)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n_fft, shape", [(32, (312, 17)), (64, (156, 33)), (128, (78, 65)), (256, (39, 129))])
def test_stft_shapes_and_values_against_numpy(n_fft, shape):
    x = np.random.default_rng(0).standard_normal((2, 1250)).astype(np.float32)
    re, im = losses.stft(jnp.asarray(x), n_fft)
    assert re.shape == (2, *shape)
    hop, pad = n_fft // 8, (n_fft - n_fft // 8) // 2
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad, pad)), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([xp[:, i * hop : i * hop + n_fft] for i in range(shape[0])], 1) * window
    ref = np.fft.rfft(frames, axis=-1)
    np.testing.assert_allclose(np.asarray(re), ref.real, atol=2e-4)
    np.testing.assert_allclose(np.asarray(im), ref.imag, atol=2e-4)


def test_stft_loss_per_scale_matches_the_original(train_step_ref):
    summary = json.loads((FIXTURES / "summary.json").read_text())
    x = jnp.asarray(load_fixture("input")[:, 0])
    y = jnp.asarray(train_step_ref["recon_train"][:, 0])
    for n_fft, ref in summary["l_f_per_scale"].items():
        l1, l2 = losses.stft_loss_terms(x, y, int(n_fft), (1.0, 0.2, 0.2))
        assert float(l1) == pytest.approx(ref["l1"], rel=1e-5)
        assert float(l2) == pytest.approx(ref["l2"], rel=1e-5)
    total = losses.multiscale_stft_loss(x, y, (32, 64, 128, 256), (1.0, 0.2, 0.2))
    assert float(total) == pytest.approx(float(train_step_ref["l_f"]), rel=1e-5)


def test_metrics_match_the_original(train_step_ref):
    x = jnp.asarray(load_fixture("input")[:, 0])
    y = jnp.asarray(train_step_ref["recon_train"][:, 0])
    assert float(jnp.mean(losses.pearson_correlation(x, y))) == pytest.approx(float(train_step_ref["corr"]), rel=1e-3)
    assert float(jnp.mean(losses.si_sdr(x, y))) == pytest.approx(float(train_step_ref["sdr"]), abs=1e-3)


def test_metrics_on_known_signals():
    t = jnp.linspace(0, 1, 500)
    x = jnp.sin(2 * jnp.pi * 5 * t)[None]
    assert float(losses.pearson_correlation(x, 3 * x + 1)[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(losses.pearson_correlation(x, -x)[0]) == pytest.approx(-1.0, abs=1e-6)
    noise = jnp.asarray(np.random.default_rng(0).standard_normal(500), jnp.float32)[None]
    noise = noise - losses.pearson_correlation(noise, x)[0] * x * jnp.std(noise) / jnp.std(x)
    y = x + 0.1 * noise / jnp.std(noise) * jnp.std(x)  # 20 dB below the signal
    assert float(losses.si_sdr(x, 2 * y)[0]) == pytest.approx(20.0, abs=0.3)  # scale-invariant


def test_stft_loss_gradient_is_finite_on_silence_and_clipping():
    x = jnp.zeros((2, 300))
    clipped = jnp.clip(jnp.asarray(np.random.default_rng(0).standard_normal((2, 300)), jnp.float32) * 50, -10, 10)
    for target in (x, clipped):
        g = jax.grad(lambda y: losses.multiscale_stft_loss(target, y, (32, 64), (1.0, 0.2, 0.2)))(jnp.zeros((2, 300)))
        assert bool(jnp.all(jnp.isfinite(g)))
