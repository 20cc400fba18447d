"""braindecode baselines (EEGNet, ShallowFBCSPNet): shapes, learning, determinism, errors.

torch and braindecode are an optional extra: the tests that train a model are skipped without
them; the pure helpers and the missing-dependency error are tested everywhere.
"""

import importlib.util
import sys

import numpy as np
import pytest

from biocodec_jax.evaluation.baselines import (
    BASELINES, BaselineConfig, baselines_available, default_config, fit_baseline, min_input_samples, model_kwargs,
)
from biocodec_jax.evaluation.dataset import DatasetError

requires_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("braindecode") is None,
    reason="torch and braindecode are an optional extra (biocodec-jax[baselines])",
)
TINY = BaselineConfig(epochs=1, batch_size=8, threads=1, device="cpu")


def sinusoid_task(n, n_chans, n_times, sample_rate=250.0, seed=0, freqs=(6.0, 22.0)):
    """Windows whose class is the frequency of a sinusoid (random phase, amplitude and noise)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(freqs)
    rng.shuffle(y)
    t = np.arange(n_times) / sample_rate
    phase = rng.uniform(0, 2 * np.pi, (n, n_chans, 1))
    amp = rng.uniform(0.7, 1.3, (n, n_chans, 1))
    x = amp * np.sin(2 * np.pi * np.asarray(freqs)[y][:, None, None] * t + phase)
    x = x + 0.5 * rng.standard_normal((n, n_chans, n_times))
    return x.astype(np.float32), y


# -- without torch ---------------------------------------------------------------------------

def test_missing_torch_gives_install_hint(monkeypatch):
    assert isinstance(baselines_available(), bool)
    for module in ("torch", "braindecode", "braindecode.models"):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    assert baselines_available() is False
    x, y = sinusoid_task(4, 1, 302)
    with pytest.raises(ImportError, match=r"biocodec-jax\[baselines\]"):
        fit_baseline("eegnet", x, y, x, y, n_classes=2, sample_rate=250.0)


def test_time_constants_follow_the_sample_rate():
    # At each model's design rate the architecture is braindecode's default one.
    assert model_kwargs("eegnet", 128.0) == {"kernel_length": 64, "pool1_kernel_size": 4,
                                             "depthwise_kernel_length": 16, "pool2_kernel_size": 8}
    assert model_kwargs("shallow", 250.0) == {"filter_time_length": 25, "pool_time_length": 75, "pool_time_stride": 15}
    assert model_kwargs("eegnet", 256.0)["kernel_length"] == 128
    assert model_kwargs("shallow", 1000.0) == {"filter_time_length": 100, "pool_time_length": 300, "pool_time_stride": 60}
    # Same duration in seconds at any rate, so the shortest window scales with the rate.
    assert min_input_samples("shallow", 250.0) == 99  # 25-sample filter then a 75-sample pool
    assert min_input_samples("shallow", 1000.0) == 399
    assert min_input_samples("eegnet", 250.0) < 302 and min_input_samples("shallow", 250.0) < 302
    with pytest.raises(ValueError, match="unknown baseline 'deep4'"):
        model_kwargs("deep4", 250.0)


def test_default_configs():
    assert default_config("shallow").learning_rate == pytest.approx(0.0625 * 0.01)
    assert default_config("eegnet").learning_rate == pytest.approx(1e-3)
    assert {default_config(n).batch_size for n in BASELINES} == {64}
    with pytest.raises(ValueError, match="epochs"):
        BaselineConfig(epochs=0)


# -- with torch ------------------------------------------------------------------------------

@requires_torch
@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("n_chans,n_times", [(1, 302), (4, 1250)])
def test_probabilities_shape(name, n_chans, n_times):
    x, y = sinusoid_task(18, n_chans, n_times, freqs=(6.0, 12.0, 22.0))
    fitted = fit_baseline(name, x[:12], y[:12], x[12:], y[12:], n_classes=3, sample_rate=250.0, config=TINY)
    p = fitted.predict_proba(x, batch_size=5)  # several batches, a ragged last one
    assert p.shape == (18, 3) and p.dtype == np.float32
    assert np.all(p >= 0) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert fitted.best_epoch == 1 and len(fitted.history) == 1
    assert set(fitted.history[0]) == {"epoch", "train_loss", "val_loss", "val_balanced_accuracy", "learning_rate"}
    with pytest.raises(ValueError, match=f"{n_chans} channels x {n_times} samples"):
        fitted.predict_proba(x[:, :, :-1])


@requires_torch
@pytest.mark.parametrize("name", BASELINES)
def test_learns_a_separable_task(name):
    from sklearn.metrics import balanced_accuracy_score

    x, y = sinusoid_task(160, 2, 302, seed=1)
    config = BaselineConfig(epochs=6, batch_size=16, learning_rate=default_config(name).learning_rate * 4,
                            threads=1, device="cpu")
    fitted = fit_baseline(name, x[:96], y[:96], x[96:128], y[96:128], n_classes=2, sample_rate=250.0,
                          config=config, seed=0)
    best = max(h["val_balanced_accuracy"] for h in fitted.history)
    assert fitted.history[fitted.best_epoch - 1]["val_balanced_accuracy"] == best
    test_accuracy = balanced_accuracy_score(y[128:], fitted.predict_proba(x[128:]).argmax(axis=1))
    assert best > 0.8 and test_accuracy > 0.75, (fitted.history, test_accuracy)


@requires_torch
def test_same_seed_same_model_and_global_state_untouched():
    import torch

    x, y = sinusoid_task(24, 2, 302)
    config = BaselineConfig(epochs=2, batch_size=8, threads=1, device="cpu")
    rng_before, threads_before = torch.random.get_rng_state(), torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    runs = [fit_baseline("shallow", x[:16], y[:16], x[16:], y[16:], 2, 250.0, config, seed=s).predict_proba(x)
            for s in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads_before
    assert torch.are_deterministic_algorithms_enabled() == deterministic_before


@requires_torch
def test_class_missing_from_training_labels():
    x, y = sinusoid_task(12, 1, 302)
    y_train = np.zeros(8, dtype=int)
    with pytest.raises(DatasetError, match="class.*seizure.*absent from the training labels"):
        fit_baseline("eegnet", x[:8], y_train, x[8:], y[8:], 2, 250.0, TINY, class_names=("healthy", "seizure"))
    with pytest.raises(DatasetError, match=r"class\(es\) 1 absent"):
        fit_baseline("eegnet", x[:8], y_train, x[8:], y[8:], 2, 250.0, TINY)


@requires_torch
def test_bad_inputs():
    x, y = sinusoid_task(12, 1, 90)
    with pytest.raises(ValueError, match=r"shallow: windows of 90 samples are too short.*at least 99 samples"):
        fit_baseline("shallow", x[:8], y[:8], x[8:], y[8:], 2, 250.0, TINY)
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        fit_baseline("eegnet", x[:8], y[:8] + 1, x[8:], y[8:], 2, 250.0, TINY)
    with pytest.raises(ValueError, match="validation windows are 1 x 80"):
        fit_baseline("eegnet", x[:8], y[:8], x[8:, :, :80], y[8:], 2, 250.0, TINY)
    with pytest.raises(DatasetError, match="validation set is empty"):
        fit_baseline("eegnet", x[:8], y[:8], x[:0], y[:0], 2, 250.0, TINY)
    with pytest.raises(ValueError, match="unknown baseline"):
        fit_baseline("deep4", x[:8], y[:8], x[8:], y[8:], 2, 250.0, TINY)
