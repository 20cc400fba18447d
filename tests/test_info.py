"""``biocodec-jax info``: what a codec is, from each kind of source."""

import json

import jax

from biocodec_jax import Codec, preset
from biocodec_jax.cli import main as cli_main
from biocodec_jax.info import describe
from tests.conftest import ORIGINAL_CKPT


def test_describes_the_originals_checkpoint():
    facts = describe(ORIGINAL_CKPT)
    assert facts["kind"].startswith("PyTorch checkpoint") and facts["epoch"] == 1
    assert facts["preset"] == "eeg" and facts["sample_rate_hz"] == 250 and facts["hop_samples"] == 12
    assert facts["bitrate_bps_per_channel"] == 1000.0  # 6 x 8 bit x 20.83 Hz
    assert facts["parameters"] == 3_152_770 and facts["codebooks_initialized"] is True


def test_describes_a_saved_codec_as_json(tmp_path, capsys):
    codec = Codec.from_preset("tiny")
    codec.save(tmp_path / "tiny")
    assert cli_main(["info", str(tmp_path / "tiny"), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    cfg = preset("tiny").codec
    assert facts["kind"] == "saved codec" and facts["preset"] == "tiny"
    assert facts["bitrate_bps_per_channel"] == cfg.bitrate and facts["codebooks_initialized"] is False
    assert facts["parameters"] == sum(x.size for x in jax.tree.leaves(codec.params))


def test_a_saved_codec_tells_its_training_and_preprocessing(tmp_path):
    from data_pipelines.config import config_to_dict, prepare_preset

    prep = config_to_dict(prepare_preset("eeg"))
    codec = Codec.from_preset("tiny")
    codec.metadata = {"training": {"step": 1234, "data": "shards/tueg", "workdir": "runs/x"},
                      "preprocessing": {**prep, "l_freq": 0.5, "h_freq": 45.0, "notch_freq": 60.0}}
    facts = describe(codec.save(tmp_path / "tiny"))
    assert facts["training_step"] == 1234 and facts["data"] == "shards/tueg"
    assert facts["preprocessing"].startswith("EEG at 250 Hz, band-pass 0.5-45 Hz, notch 60 Hz")
    assert "not stored" in describe(Codec.from_preset("tiny").save(tmp_path / "bare"))["preprocessing"]


def test_names_what_is_not_a_codec(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert cli_main(["info", str(tmp_path / "empty_dir_that_is_missing")]) == 2
    assert "empty_dir_that_is_missing: not a saved codec" in capsys.readouterr().err
    assert cli_main(["info", str(tmp_path / "notes.txt")]) == 2
    assert "notes.txt" in capsys.readouterr().err



def test_planned_steps_of_a_codec_saved_by_a_run(tmp_path):
    codec = Codec.from_preset("tiny")
    codec.metadata = {"training": {"step": 160, "data": "shards", "workdir": "runs/demo"}}
    assert describe(codec.save(tmp_path / "run_codec"))["planned_steps"] == preset("tiny").train.steps
    assert describe(Codec.from_preset("tiny").save(tmp_path / "fresh"))["planned_steps"] is None  # no run made it


def test_a_codec_missing_or_with_damaged_arrays_is_one_clear_line(tmp_path, capsys):
    import shutil

    saved = Codec.from_preset("tiny").save(tmp_path / "codec")
    damaged = shutil.copytree(saved, tmp_path / "damaged")
    shutil.rmtree(saved / "arrays")
    assert cli_main(["info", str(saved)]) == 2
    err = capsys.readouterr().err.strip()
    assert "arrays/ is missing" in err and str(saved) in err and len(err.splitlines()) == 1
    for f in sorted(p for p in (damaged / "arrays").rglob("*") if p.is_file() and "ocdbt" in str(p) or p.suffix == ""):
        if f.is_file():
            f.write_bytes(b"")  # truncate the array data
    assert cli_main(["info", str(damaged)]) == 2
    err = capsys.readouterr().err.strip()
    assert "incomplete or damaged" in err and len(err) < 500 and "Traceback" not in err


def test_info_into_a_closed_pipe_has_no_traceback(tmp_path):
    """``info CODEC | head``: the reader is gone before the output is written (here: closed at once)."""
    import subprocess
    import sys

    saved = Codec.from_preset("tiny").save(tmp_path / "codec")
    proc = subprocess.Popen([sys.executable, "-m", "biocodec_jax.cli", "info", str(saved)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves before the first line
    _, err = proc.communicate(timeout=120)
    assert "BrokenPipeError" not in err.decode() and "Traceback" not in err.decode()
    assert proc.returncode == 1
