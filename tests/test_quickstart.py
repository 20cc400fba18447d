"""The quick-start demo (experiments/quickstart.py) and the ``biocodec-jax demo`` command."""

import json

import numpy as np
import pytest

from biocodec_jax import Codec, cli
from biocodec_jax.config import preset
from data_pipelines.manifest import read_manifest
from experiments import quickstart


@pytest.fixture(scope="module")
def demo_config():
    return quickstart.load_demo_config()


@pytest.fixture(scope="module")
def demo_shards(demo_config, tmp_path_factory):
    """The demo's shards of the bundled recordings (eeg preset: 250 Hz, 5-s windows); a few seconds."""
    out = tmp_path_factory.mktemp("demo") / "shards"
    quickstart.prepare_shards(demo_config, out, progress=False)
    return out


def test_demo_config_keeps_the_eeg_architecture(demo_config):
    eeg = preset("eeg")
    assert demo_config.preset == "eeg"
    assert demo_config.codec == eeg.codec
    assert demo_config.loss == eeg.loss
    assert demo_config.train.batch_size == 16
    assert demo_config.optim.total_steps == demo_config.train.steps
    assert demo_config.optim.warmup_steps < demo_config.optim.total_steps
    assert demo_config.train.eval_every == 0  # the demo measures the held-out subject itself


def test_demo_prepares_at_the_training_configs_rate_and_window(demo_config):
    prep = quickstart.demo_prepare_config(demo_config)
    assert (prep.sample_rate, prep.window_seconds, prep.clip) == (250.0, 5.0, 10.0)
    assert prep.window_samples == demo_config.train.window_samples(demo_config.codec.sample_rate)
    assert (prep.val_fraction, prep.split_by, prep.modality, prep.channels_per_recording) == (0.25, "subject", "eeg", None)
    tiny = quickstart.load_demo_config(preset="tiny")
    assert quickstart.demo_prepare_config(tiny).window_samples == 250  # the tiny preset's 1-s windows


def test_prepare_shards_counts_and_subject_split(demo_shards):
    manifest = read_manifest(demo_shards)
    # 125 s (S001, S003) and 123 s (S002, S004) at 250 Hz -> 25 and 24 windows of 5 s, x 64 channels.
    per_subject = {r["subject"]: r["windows"] for r in manifest["recordings"]}
    assert per_subject == {"S001": 1600, "S002": 1536, "S003": 1600, "S004": 1536}
    assert manifest["splits"]["train"]["subjects"] == ["S001", "S002", "S003"]
    assert manifest["splits"]["val"]["subjects"] == ["S004"]
    assert (manifest["window_samples"], manifest["sample_rate"]) == (1250, 250.0)
    assert [p.name for p in quickstart.heldout_recordings(manifest, quickstart.DATA_DIR)] == ["S004R04.edf"]


def test_heldout_windows_are_every_s004_window_and_not_in_training(demo_shards):
    heldout = quickstart.split_windows(demo_shards, "val")
    train = quickstart.split_windows(demo_shards, "train")
    assert heldout.shape == (1536, 1, 1250) and heldout.dtype == np.float32
    assert train.shape == (4736, 1, 1250) and np.abs(train).max() <= 10.0
    keys = {w.tobytes() for w in train[:, 0, :16]}
    assert len({w.tobytes() for w in heldout[:, 0, :16]}) == 1536  # each window once
    assert not any(w.tobytes() in keys for w in heldout[:, 0, :16])


def test_training_batches_are_the_loaders_seeded_stream(demo_shards):
    a = quickstart.training_batches(demo_shards, 16, 3, seed=0)
    assert len(a) == 3 and all(b.shape == (16, 1, 1250) for b in a)
    np.testing.assert_array_equal(np.stack(a), np.stack(quickstart.training_batches(demo_shards, 16, 3, seed=0)))
    assert not np.array_equal(a[0], quickstart.training_batches(demo_shards, 16, 1, seed=1)[0])


def test_prepare_shards_refuses_another_heldout_subject(demo_config, demo_shards):
    with pytest.raises(ValueError, match="S999"):
        quickstart.prepare_shards(demo_config, demo_shards, heldout_subjects=("S999",), progress=False)


def test_missing_data_dir(tmp_path, demo_config):
    with pytest.raises(FileNotFoundError, match="no .edf recordings"):
        quickstart.prepare_shards(demo_config, tmp_path / "shards", data_dir=tmp_path, progress=False)


def test_cli_demo_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--help"])
    assert e.value.code == 0
    assert "usage: biocodec-jax demo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["nonsense"])


@pytest.mark.slow
def test_demo_runs_end_to_end_with_tiny_preset(tmp_path):
    metrics = quickstart.run_demo(output=tmp_path, preset="tiny", steps=2, minutes=5, eval_n_qs=(1,), progress=False)
    assert metrics["steps"] == 2 and metrics["preset"] == "tiny"
    assert metrics["steps_planned"] == metrics["steps_done"] == 2 and metrics["cut_by_budget"] is False
    assert set(metrics["heldout"]) == {"1", "3"}  # those asked for, and all of the codec's
    assert all(np.isfinite(m["corr_mean"]) for m in metrics["heldout"].values())
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 2
    assert metrics["data"]["windows"] == {"train": 23872, "val": 7872}  # 1-s windows of the tiny preset
    # The product's outputs: shards + manifest, pretrain's workdir with an Orbax checkpoint, the codec.
    assert (tmp_path / "shards" / "manifest.json").is_file()
    assert (tmp_path / "run" / "checkpoints" / "2").is_dir() and (tmp_path / "run" / "metrics.jsonl").is_file()
    assert (tmp_path / "config.yaml").is_file()
    codec = Codec.load(tmp_path / "codec")
    assert codec.config.preset == "tiny" and codec.initialized
    # The codec keeps how its data was prepared (tokenize uses it) and its training.
    assert codec.preprocessing["sample_rate"] == codec.sample_rate and codec.preprocessing["clip"] == 10.0
    assert codec.preprocessing["val_fraction"] == 0.25
    assert codec.metadata["training"]["step"] == 2
    round_trip = metrics["tokenizer_round_trip"]
    assert list(round_trip["recordings"]) == ["S004R04.edf"] and round_trip["recordings"]["S004R04.edf"]["channels"] == 64
    assert -1.0 <= round_trip["corr_mean"] <= 1.0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["quality_vs_bitrate"]["n_q"] == [1, 3]
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "figures" / "psd.png").is_file()
    probe = metrics["probe"]
    assert probe["split"]["train"] == ("S001", "S002") and probe["split"]["test"] == ("S004",)
    assert probe["epochs"]["test"] > 0 and probe["chance"]["balanced_accuracy"] == 0.5
    assert 0.0 <= probe["test"]["balanced_accuracy"] <= 1.0 and (tmp_path / "probe" / "results.json").is_file()


@pytest.mark.slow
def test_reconstruct_all_equals_codec_reconstruct():
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


@pytest.mark.slow
def test_demo_cut_by_its_time_budget_warns_records_it_and_resumes(tmp_path, monkeypatch, capsys):
    """A budget that stops training after the first of 4 steps: loud warnings, metrics.json says so,
    the checkpoint of step 1 is the codec; the same command without the budget resumes at step 1.

    The tokenizer round trip, the report and the probe are stubbed or skipped (they are tested end
    to end above), so that this runs in seconds on the tiny preset.
    """
    monkeypatch.setattr(quickstart, "tokenizer_round_trip", lambda codec, recordings: {"recordings": {}, "corr_mean": 0.0, "corr_median": 0.0})
    monkeypatch.setattr(quickstart, "write_report", lambda *a, **k: {"markdown": tmp_path / "report.md"})
    out = tmp_path / "out"
    run = dict(output=out, preset="tiny", steps=4, eval_n_qs=(1,), progress=False, probe=False)

    metrics = quickstart.run_demo(minutes=1e-6, **run)
    written = json.loads((out / "metrics.json").read_text())
    for m in (metrics, written):
        assert m["steps_planned"] == 4 and m["steps_done"] == 1 and m["steps"] == 1
        assert m["cut_by_budget"] is True and m["budget_minutes"] == 1e-6
    assert Codec.load(out / "codec").metadata["training"]["step"] == 1
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("WARNING: the time budget") and "1 of 4 steps" in line]
    assert len(warnings) == 2  # at the cut, and again after the summary
    assert "trained 1 of 4 steps" in captured.out
    assert captured.err.rstrip().splitlines()[-1] == warnings[-1]  # the last word of the run

    metrics = quickstart.run_demo(**run)  # no budget: pretrain resumes the cut run
    assert metrics["resumed_at_step"] == 1 and metrics["steps_done"] == 4 and metrics["cut_by_budget"] is False
    assert len(metrics["train"]["loss"]["curve"]) >= 1 and Codec.load(out / "codec").metadata["training"]["step"] == 4
    with pytest.raises(ValueError, match="another config"):
        quickstart.run_demo(**{**run, "overrides": ["optim.learning_rate=1e-4"]})
