"""Typed configs: presets, YAML with partial sections, overrides, clear errors."""

from dataclasses import replace

import pytest

from biocodec_jax.config import apply_overrides, from_dict, load_config, preset, pretrain_config, save_config, to_dict


def test_presets_follow_the_original():
    eeg, emg = preset("eeg"), preset("emg")
    assert (eeg.codec.sample_rate, eeg.codec.ratios, eeg.loss.stft_n_ffts) == (250, (3, 2, 2), (32, 64, 128, 256))
    assert (emg.codec.sample_rate, emg.codec.ratios, emg.loss.stft_n_ffts) == (1000, (3, 3, 2), (128, 256, 512, 1024))
    assert (eeg.optim.learning_rate, emg.optim.learning_rate) == (1e-4, 5e-4)
    assert (eeg.optim.b1, eeg.optim.b2) == (0.5, 0.9)
    assert eeg.loss.commitment_weight == 0.5  # the original's effective weight (0.25, back-propagated twice)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("meg")


def test_yaml_round_trip_and_partial_sections(tmp_path):
    cfg = apply_overrides(preset("emg"), ["optim.learning_rate=3e-4", "codec.dead_code_mode=replace", "loss.stft_n_ffts=[64,128]"])
    assert cfg.optim.learning_rate == 3e-4 and cfg.codec.dead_code_mode == "replace" and cfg.loss.stft_n_ffts == (64, 128)
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    (tmp_path / "partial.yaml").write_text("preset: emg\ntrain:\n  batch_size: 16\n")
    partial = load_config(tmp_path / "partial.yaml", ["train.steps=7"])
    assert partial.codec == preset("emg").codec and partial.train.batch_size == 16 and partial.train.steps == 7


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(KeyError, match="unknown key"):
        apply_overrides(preset("eeg"), ["optim.lr=1"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(preset("eeg"), ["optim.learning_rate"])
    with pytest.raises(ValueError, match="not one of"):
        apply_overrides(preset("eeg"), ["codec.dead_code_mode=sometimes"])
    with pytest.raises(TypeError, match="expected an integer"):
        from_dict({"train": {"batch_size": "big"}})
    (tmp_path / "bad.yaml").write_text("codec:\n  ratioz: [2, 2]\n")
    with pytest.raises(ValueError, match=r"bad.yaml: .*unknown key"):
        load_config(tmp_path / "bad.yaml")


def test_to_dict_is_json_ready():
    import json

    assert json.loads(json.dumps(to_dict(preset("tiny"))))["codec"]["ratios"] == [2, 2]


def test_pretrain_config_leaves_the_window_to_the_data_unless_named(tmp_path):
    """`pretrain`'s config: the window is None (the shards' manifest decides) unless the file or --set names
    it; --preset over --config replaces the file's preset and keeps its other sections."""
    assert pretrain_config(preset_name="tiny").train.window_seconds is None
    assert pretrain_config().preset == "eeg"
    assert pretrain_config(preset_name="tiny", overrides=["train.window_seconds=2"]).train.window_seconds == 2.0
    (tmp_path / "run.yaml").write_text("preset: eeg\noptim:\n  learning_rate: 3.0e-4\ntrain:\n  batch_size: 32\n")
    on_tiny = pretrain_config(tmp_path / "run.yaml", "tiny", ["train.steps=3"])
    assert on_tiny.codec == preset("tiny").codec and on_tiny.loss == preset("tiny").loss
    assert (on_tiny.preset, on_tiny.optim.learning_rate, on_tiny.train.batch_size, on_tiny.train.steps) == ("tiny", 3e-4, 32, 3)
    assert on_tiny.train.window_seconds is None
    assert pretrain_config(tmp_path / "run.yaml") == replace(
        load_config(tmp_path / "run.yaml"), train=replace(load_config(tmp_path / "run.yaml").train, window_seconds=None))
    (tmp_path / "named.yaml").write_text("preset: eeg\ntrain:\n  window_seconds: 4\n")
    assert pretrain_config(tmp_path / "named.yaml", "tiny").train.window_seconds == 4.0
    with pytest.raises(ValueError, match="unknown preset 'meg'"):
        pretrain_config(tmp_path / "run.yaml", "meg")
    with pytest.raises(ValueError, match="not set: it is the training data's"):
        pretrain_config().train.window_samples(250)
