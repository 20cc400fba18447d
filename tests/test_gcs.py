"""gs:// end to end against the local GCS emulator (tests/conftest.py): a pretrain whose workdir is a
bucket writes its config, checkpoints and metrics there, resumes from it exactly, and Codec.load /
Codec.save / Codec.open / info read and write codecs there. Shards stay local (ArrayRecord reads
local files only: a gs:// train.data is refused with the gcsfuse advice)."""

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from biocodec_jax import Codec, storage
from biocodec_jax.config import apply_overrides, preset
from biocodec_jax.training.logging import MetricsLogger, read_metrics
from data_pipelines import paths
from data_pipelines.config import config_to_dict, prepare_preset
from data_pipelines.shards import ShardWriter, WindowOrigin, encode_window
from tests.conftest import ORIGINAL_CKPT, eeg_like_signals
from tests.test_checkpointing import abstract, assert_states_equal, config, random_state  # noqa: F401 (fixtures)

WINDOW = 250  # the tiny preset: 1-s windows at 250 Hz


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A prepared directory of 64 EEG-like 1-s training windows (local: ArrayRecord reads local files)."""
    out = tmp_path_factory.mktemp("shards")
    windows = eeg_like_signals(64, WINDOW, seed=0)[:, 0]
    with ShardWriter(out / "train" / "shard-00000.array_record") as writer:
        for i, w in enumerate(windows):
            writer.write(encode_window(w, WindowOrigin("rec", "sub", "C3", i)))
        writer.commit()
    manifest = {"shards": {"train": [{"path": "train/shard-00000.array_record", "windows": len(windows)}]},
                "window_samples": WINDOW, "sample_rate": 250, "windows": len(windows),
                "config": config_to_dict(replace(prepare_preset("eeg"), window_seconds=1.0))}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def tiny(shards, steps: int):
    return apply_overrides(preset("tiny"), [
        f"train.data={shards}", f"train.steps={steps}", "train.batch_size=8", "train.log_every=2",
        "train.eval_every=0", "train.checkpoint_every=3", "train.async_checkpointing=true",
    ])


def names(url: str) -> set[str]:
    return {p.name for p in paths.as_path(url).iterdir()}


@pytest.mark.slow
def test_pretrain_on_a_bucket_writes_resumes_and_codec_load_reads_it(gcs_bucket, shards, tmp_path, capsys, caplog):
    from biocodec_jax.training.checkpointing import Checkpointer
    from biocodec_jax.training.loop import Preempted, pretrain

    # The uninterrupted local reference first; the bucket's run has the same config (its programs are
    # then compiled once for both) and is preempted after step 6 (a real SIGTERM, as a TPU VM gets).
    whole = pretrain(tiny(shards, 10), tmp_path / "whole", progress=False)
    run = gcs_bucket + "/run"

    def term_at_6(step, metrics):
        if step == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Preempted) as cut:
        pretrain(tiny(shards, 10), run, on_step=term_at_6, progress=False)
    assert cut.value.step == 6
    assert {"config.yaml", "preprocessing.json", "checkpoints", "metrics.jsonl", "tensorboard"} <= names(run)
    assert {"3", "6"} <= names(run + "/checkpoints")
    assert paths.read_json(run + "/preprocessing.json")["window_seconds"] == 1.0
    assert [r["step"] for r in read_metrics(run)] == [2, 4, 6]  # uploaded on preemption
    assert any(n.startswith("events.out.tfevents.") for n in names(run + "/tensorboard"))

    # The rest through the command line: resumes from step 6 in the bucket (the metrics file goes on
    # from step 6, no step twice) and trains exactly as the uninterrupted run.
    from biocodec_jax.cli import main

    assert main(["pretrain", "--preset", "tiny", "--data", str(shards), "--workdir", run, "--steps", "10",
                 "--batch-size", "8", "--checkpoint-every", "3", "--set", "train.log_every=2",
                 "--set", "train.eval_every=0", "--no-progress"]) == 0
    records = read_metrics(run)
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10]
    assert all(r["loss"] == whole.losses[r["step"]] for r in records)  # bit for bit, before and after the resume
    with Checkpointer(run + "/checkpoints", read_only=True) as ckpt:
        assert ckpt.latest_step() == 10

    # Codec.load of the gs:// workdir: the last checkpoint's model, equal to the uninterrupted run's.
    assert storage.path_kind(run) is storage.PathKind.RUN
    codec = Codec.load(run)
    assert codec.metadata["training"]["step"] == 10 and codec.metadata["training"]["workdir"] == run
    assert codec.preprocessing["window_seconds"] == 1.0
    assert codec.fingerprint() == Codec.load(tmp_path / "whole").fingerprint()

    # Codec.save to the bucket, and back: equal arrays.
    saved = gcs_bucket + "/codec"
    assert str(codec.save(saved)) == saved and storage.path_kind(saved) is storage.PathKind.CODEC
    for again in (Codec.load(saved), Codec.open(saved)):
        assert again.fingerprint() == codec.fingerprint() and again.metadata == codec.metadata
        for a, b in zip(jax_leaves(codec), jax_leaves(again)):
            np.testing.assert_array_equal(a, b)

    # `biocodec-jax info` on the gs:// run.
    capsys.readouterr()
    assert main(["info", run, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["kind"] == "training run" and facts["training_step"] == 10 and facts["source"] == run

    # A damaged latest checkpoint in the bucket: Codec.load warns and falls back to the one before.
    import fsspec

    fs = fsspec.filesystem("gs")
    for name in fs.find(run + "/checkpoints/10/state"):
        fs.pipe_file(name, b"\0garbage")
    assert Codec.load(run).metadata["training"]["step"] == 9
    assert any("step 10" in r.getMessage() and "falling back to step 9" in r.getMessage() for r in caplog.records)


def jax_leaves(codec):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves((codec.params, codec.codebooks))]


def test_metrics_on_a_bucket_are_staged_and_uploaded(gcs_bucket):
    run = gcs_bucket + "/metrics"
    with MetricsLogger(run, enabled=True, upload_every=3600) as logger:
        logger.write(1, {"loss": 2.0})  # the first write uploads at once
        assert [r["step"] for r in read_metrics(run)] == [1]
        logger.write(2, {"loss": 1.0})  # within upload_every: local only
        assert [r["step"] for r in read_metrics(run)] == [1]
        logger.flush()
        assert [r["step"] for r in read_metrics(run)] == [1, 2]
        logger.write(3, {"loss": 0.5}, split="val")
        stage = logger._stage
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]  # close uploads the rest
    assert not Path(stage).exists()  # and removes the staging directory
    events = [n for n in names(run + "/tensorboard") if n.startswith("events.out.tfevents.")]
    assert len(events) == 1 and len((paths.as_path(run) / "tensorboard" / events[0]).read_bytes()) > 0
    # A resumed run continues the bucket's metrics.jsonl (downloaded first), with a new event file.
    with MetricsLogger(run, enabled=True, upload_every=0) as logger:
        logger.write(4, {"loss": 0.25})
        assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]
    assert read_metrics(run, split="val") == [{"step": 3, "split": "val", "loss": 0.5}]
    assert read_metrics(gcs_bucket + "/nothing") == []


def test_the_originals_pt_file_on_a_bucket_opens(gcs_bucket, original_codec):
    from biocodec_jax import info

    url = gcs_bucket + "/original/" + ORIGINAL_CKPT.name
    with paths.staged_file(url) as tmp:
        tmp.write_bytes(ORIGINAL_CKPT.read_bytes())
    assert storage.path_kind(url) is storage.PathKind.TORCH
    local = original_codec
    assert Codec.open(url).fingerprint() == local.fingerprint()
    facts = info.describe(url)
    assert facts["source"] == url and facts["preset"] == "eeg"
    # ... and the original's format written to a bucket reads back the same.
    out = gcs_bucket + "/export/ckpt.pt"
    assert str(local.to_torch_checkpoint(out)) == out
    assert Codec.from_torch_checkpoint(out).fingerprint() == local.fingerprint()


def test_shards_on_a_bucket_are_refused_with_the_gcsfuse_fix(tmp_path):
    from biocodec_jax.training.loop import pretrain
    from data_pipelines.loader import make_train_iterator

    config = tiny("gs://my-bucket/shards/eeg", 2)
    with pytest.raises(ValueError, match="gcsfuse") as e:
        pretrain(config, tmp_path / "run", progress=False)
    assert "gcsfuse --implicit-dirs my-bucket /mnt/my-bucket" in str(e.value)
    assert "train.data=/mnt/my-bucket/shards/eeg" in str(e.value)
    assert not (tmp_path / "run").exists()  # refused before anything is written
    with pytest.raises(ValueError, match="local files only"):
        make_train_iterator("gs://my-bucket/shards", global_batch_size=8, seed=0)


# Orbax's reader may leave a callback for its closed event loop after a failed read: harmless.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unreadable_step_in_a_bucket_is_set_aside_and_written_again(gcs_bucket, abstract):
    """On gs:// the step directory is moved aside by copy and delete (no rename): same outcome as locally."""
    import fsspec

    from biocodec_jax.training.checkpointing import Checkpointer

    directory = gcs_bucket + "/run/checkpoints"
    states = {s: random_state(abstract, step=s, seed=s) for s in (1, 2)}
    with Checkpointer(directory, async_save=False) as ckpt:
        for s in (1, 2):
            ckpt.save(states[s])
    fs = fsspec.filesystem("gs")
    for name in fs.find(directory + "/2/state"):
        fs.pipe_file(name, b"\0garbage")
    again = random_state(abstract, step=2, seed=99)
    with Checkpointer(directory, async_save=False) as ckpt:
        assert_states_equal(ckpt.restore(abstract), states[1])
        assert ckpt.save(again) and ckpt.all_steps() == [1, 2]
    assert any(n.startswith("2.corrupt-") for n in names(directory))
    with Checkpointer(directory, read_only=True) as ckpt:
        assert_states_equal(ckpt.restore(abstract), again)
