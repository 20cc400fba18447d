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
    assert metrics["steps_planned"] == metrics["steps_done"] == 2 and metrics["cut_by_budget"] is False
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


def test_demo_trains_every_step_unless_a_budget_is_given():
    parser = quickstart.build_parser()
    assert parser.parse_args([]).minutes is None  # no silent default budget
    assert parser.parse_args(["--minutes", "2.5"]).minutes == 2.5
    assert quickstart.budget_message(160, 160, None) is None
    message = quickstart.budget_message(50, 160, 270.0)
    assert message.startswith("WARNING") and "50 of 160 steps" in message and "4.5 min" in message


def test_demo_cut_by_its_time_budget_warns_and_records_it(tmp_path, monkeypatch, capsys):
    """A budget that stops training after the first of 4 steps: loud warnings, and metrics.json says so.

    The data are synthetic and the tokenizer round trip and the report stubbed (they are tested
    end to end above), so that this runs in seconds on the tiny preset.
    """
    from biocodec_jax import Codec

    rng = np.random.default_rng(0)
    channels = ("C3", "CZ", "C4")

    def tiny_data(config, data_dir=None, heldout_subjects=()):
        t = config.train.window_samples(config.codec.sample_rate)
        return quickstart.DemoData(
            train=rng.standard_normal((32, 1, t)).astype(np.float32),
            heldout=rng.standard_normal((6, 1, t)).astype(np.float32),
            heldout_channels=channels * 2, train_subjects=("S001",), heldout_subjects=("S004",),
            heldout_recordings=(tmp_path / "S004R04.edf",),
        )

    monkeypatch.setattr(quickstart, "prepare_data", tiny_data)
    monkeypatch.setattr(quickstart, "tokenizer_round_trip", lambda codec, recordings: {"recordings": {}, "corr_mean": 0.0, "corr_median": 0.0})
    import biocodec_jax.reports

    monkeypatch.setattr(biocodec_jax.reports, "write_report", lambda *a, **k: {"markdown": tmp_path / "report.md"})

    metrics = quickstart.run_demo(
        output=tmp_path / "out", preset="tiny", steps=4, minutes=1e-6, eval_n_qs=(1,), progress=False
    )
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for m in (metrics, written):
        assert m["steps_planned"] == 4 and m["steps_done"] == 1 and m["steps"] == 1
        assert m["cut_by_budget"] is True and m["budget_minutes"] == 1e-6
    assert Codec.load(tmp_path / "out" / "codec").metadata["training"]["step"] == 1
    out = capsys.readouterr()
    warnings = [line for line in out.err.splitlines() if line.startswith("WARNING") and "1 of 4 steps" in line]
    assert len(warnings) == 2  # at the cut, and again after the summary
    assert "trained 1 of 4 steps" in out.out
    assert out.err.rstrip().splitlines()[-1] == warnings[-1]  # the last word of the run
