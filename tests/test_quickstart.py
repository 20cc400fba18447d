"""The quick-start demo (experiments/quickstart.py) and the ``biocodec-jax demo`` command."""

import json

import numpy as np
import pytest

from biocodec_jax.config import preset
from experiments import quickstart


@pytest.fixture(scope="module")
def demo_config():
    return quickstart.load_demo_config()


@pytest.fixture(scope="module")
def demo_data(demo_config):
    return quickstart.prepare_data(demo_config)


def test_demo_config_keeps_the_eeg_architecture(demo_config):
    eeg = preset("eeg")
    assert demo_config.preset == "eeg"
    assert demo_config.codec == eeg.codec
    assert demo_config.loss == eeg.loss
    assert demo_config.train.batch_size == 16
    assert demo_config.optim.total_steps == demo_config.train.steps
    assert demo_config.optim.warmup_steps < demo_config.optim.total_steps


def test_find_recordings():
    recordings = quickstart.find_recordings()
    assert list(recordings) == ["S001", "S002", "S003", "S004"]
    assert [p.name for p in recordings["S004"]] == ["S004R04.edf"]


def test_prepare_data_counts_and_subject_split(demo_data):
    # 125 s (S001, S003) and 123 s (S002, S004) at 250 Hz -> 25 and 24 windows of 5 s, x 64 channels.
    assert demo_data.windows_per_subject == {"S001": 1600, "S002": 1536, "S003": 1600, "S004": 1536}
    assert demo_data.train_subjects == ("S001", "S002", "S003")
    assert demo_data.heldout_subjects == ("S004",)
    assert "S004" not in demo_data.train_subjects
    assert demo_data.train.shape == (4736, 1, 1250) and demo_data.train.dtype == np.float32
    assert demo_data.heldout.shape == (1536, 1, 1250)
    assert len(demo_data.heldout_channels) == 1536 and demo_data.heldout_channels[:2] == ("FC5", "FC3")
    assert np.abs(demo_data.train).max() <= 10.0


def test_heldout_windows_are_not_in_training(demo_data):
    train_keys = {w.tobytes() for w in demo_data.train[:, 0, :16]}
    assert not any(w.tobytes() in train_keys for w in demo_data.heldout[:, 0, :16])


def test_unknown_heldout_subject(demo_config):
    with pytest.raises(ValueError, match="S999"):
        quickstart.prepare_data(demo_config, heldout_subjects=("S999",))


def test_missing_data_dir(tmp_path, demo_config):
    with pytest.raises(FileNotFoundError, match="no .edf recordings"):
        quickstart.prepare_data(demo_config, data_dir=tmp_path)


def test_shuffled_batches_cover_every_window_once_per_epoch():
    windows = np.arange(10, dtype=np.float32).reshape(10, 1, 1)
    batches = quickstart.shuffled_batches(windows, 3, seed=0)
    epoch = np.concatenate([next(batches) for _ in range(3)])  # 3 full batches; 1 window dropped
    assert epoch.shape == (9, 1, 1) and len(set(epoch.ravel())) == 9
    with pytest.raises(ValueError, match="fewer than one batch"):
        next(quickstart.shuffled_batches(windows, 11, seed=0))


def test_cli_demo_help(capsys):
    from biocodec_jax import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--help"])
    assert e.value.code == 0
    assert "usage: biocodec-jax demo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["nonsense"])


@pytest.mark.slow
def test_demo_runs_end_to_end_with_tiny_preset(tmp_path):
    from biocodec_jax import Codec

    metrics = quickstart.run_demo(output=tmp_path, preset="tiny", steps=2, minutes=5, progress=False)
    assert metrics["steps"] == 2 and metrics["preset"] == "tiny"
    assert set(metrics["heldout"]) == {"1", "2", "3"}
    assert all(np.isfinite(m["corr_mean"]) for m in metrics["heldout"].values())
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 2
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "reconstruction.png").stat().st_size > 0
    codec = Codec.load(tmp_path / "codec")
    assert codec.config.preset == "tiny" and codec.initialized
    # The codec keeps how its data was prepared (tokenize uses it) and its training.
    assert codec.preprocessing["sample_rate"] == codec.sample_rate and codec.preprocessing["clip"] == 10.0
    assert codec.metadata["training"]["step"] == 2
    round_trip = metrics["tokenizer_round_trip"]
    assert list(round_trip["recordings"]) == ["S004R04.edf"] and round_trip["recordings"]["S004R04.edf"]["channels"] == 64
    assert -1.0 <= round_trip["corr_mean"] <= 1.0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [row for row in report["quality_vs_bitrate"]["n_q"]] == [1, 2, 3]
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "figures" / "psd.png").is_file()


@pytest.mark.slow
def test_reconstruct_all_equals_codec_reconstruct():
    from biocodec_jax import Codec

    x = np.random.default_rng(0).normal(size=(5, 1, 250)).astype(np.float32)
    codec = Codec.from_preset("tiny", seed=0, init_batch=x)
    recons = quickstart.reconstruct_all(codec, x, (1, 3), batch_size=4)  # 2 batches, the last padded
    for k in (1, 3):
        np.testing.assert_allclose(recons[k], np.asarray(codec.reconstruct(x, n_q=k)), atol=1e-5)
