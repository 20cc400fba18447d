"""Typed configs: presets, YAML with partial sections, overrides, clear errors."""

import pytest

from biocodec_jax.config import apply_overrides, from_dict, load_config, preset, save_config, to_dict


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
