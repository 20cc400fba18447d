"""The pretraining job: data parallel equals one device, multi-host equals one host, exact resume,
checkpoints across device counts, corrupted checkpoints, non-finite loss."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from biocodec_jax.config import apply_overrides, load_config, preset
from data_pipelines.config import prepare_preset
from data_pipelines.prepare import prepare

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).parent / "pretrain_worker.py"
BUNDLED = REPO / "data" / "eegmmidb"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """1-s windows (the tiny preset's) of two bundled recordings, one subject held out for validation."""
    inp = tmp_path_factory.mktemp("rec")
    for src in sorted(BUNDLED.glob("*/*.edf"))[:2]:
        shutil.copy(src, inp / src.name)
    out = tmp_path_factory.mktemp("shards")
    config = replace(prepare_preset("eeg"), window_seconds=1.0, val_fraction=0.5, split_by="recording")
    prepare(inp, out, config, dataset="eegmmidb", workers=1, progress=False)
    return out


def overrides(shards, steps, **extra):
    base = {
        "train.data": str(shards), "train.steps": steps, "train.batch_size": 16, "train.log_every": 5,
        "train.eval_every": 0, "train.checkpoint_every": 5, "train.async_checkpointing": "true",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


# Comparisons across device counts and hosts: in float64 and at the original's learning rate, so
# that what is compared is what is computed and not float32 summation order. In float32 the
# k-means initialisation on real EEG already turns summation-order differences into ~1e-4 in the
# first loss, and training at the tiny preset's 3e-3 amplifies any difference about 10x per 3
# steps (1e-13 -> 7e-5 over 20 steps even in float64); at 3e-4 float64 runs agree to ~1e-8.
PRECISE = {"train.precision": "float64", "optim.learning_rate": 3e-4}


def run_worker(out: Path, workdir: Path, args: list[str], devices: int, extra: list[str] = (), check=True):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    proc = subprocess.run([sys.executable, str(WORKER), str(out), str(workdir), *extra, "--", *args],
                          env=env, cwd=REPO, capture_output=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return proc


def losses(path: Path) -> dict[int, float]:
    return {int(k): v for k, v in json.loads(path.read_text())["losses"].items()}


def rel(a: dict[int, float], b: dict[int, float]) -> float:
    assert sorted(a) == sorted(b)
    return max(abs(a[k] - b[k]) / abs(a[k]) for k in a)


@pytest.mark.slow
def test_eight_devices_equal_one_device(shards, tmp_path):
    """Same global batch and seed on 1 and 8 devices: the same 20 steps and codebooks.

    Checks the global k-means and EMA statistics and global gradients (see PRECISE).
    """
    args = overrides(shards, 20, **PRECISE)
    run_worker(tmp_path / "one.json", tmp_path / "one", args, devices=1)
    run_worker(tmp_path / "eight.json", tmp_path / "eight", args, devices=8)
    one, eight = losses(tmp_path / "one.json"), losses(tmp_path / "eight.json")
    assert len(one) == 20 and rel(one, eight) <= 1e-4
    from biocodec_jax import Codec

    a, b = Codec.load(tmp_path / "one"), Codec.load(tmp_path / "eight")
    x, y = np.asarray(a.codebooks.codebook), np.asarray(b.codebooks.codebook)
    assert np.max(np.abs(x - y)) <= 1e-4 * np.max(np.abs(x))
    # The EMA statistics: the runs' parameters differ by ~1e-5 after 20 steps, which can move a
    # vector lying on a near-tie between two codes from one to the other (seen on the polyphase-
    # resampled shards: codes 2 and 9 of the last quantizer). Such a flip moves mass between two
    # codes and keeps each quantizer's totals; any other difference (a wrong global sum) would not.
    for name in ("embed_avg", "cluster_size"):
        x, y = np.asarray(getattr(a.codebooks, name)), np.asarray(getattr(b.codebooks, name))
        tol = 1e-4 * np.max(np.abs(x))
        np.testing.assert_allclose(x.sum(axis=1), y.sum(axis=1), rtol=1e-6, atol=tol, err_msg=name)
        differing = np.abs(x - y).reshape(x.shape[0], x.shape[1], -1).max(axis=-1) > tol  # [quantizer, code]
        assert differing.sum(axis=1).max() <= 2, (name, np.argwhere(differing).tolist())
    assert np.all(np.asarray(a.codebooks.initialized))
    # The run keeps how its data was prepared; the codec loaded from it carries that and its step.
    manifest = json.loads((Path(shards) / "manifest.json").read_text())
    assert a.preprocessing == manifest["config"] and a.metadata["training"]["step"] == 20
    assert a.metadata["training"]["workdir"] == str((tmp_path / "one").absolute())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_hosts_equal_one_host(shards, tmp_path):
    args = overrides(shards, 10, **PRECISE)
    run_worker(tmp_path / "single.json", tmp_path / "single", args, devices=4)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(tmp_path / f"host{i}.json"), str(tmp_path / "multi"),
             "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i), "--", *args],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-3000:]
    single = losses(tmp_path / "single.json")
    for i in range(2):
        host = json.loads((tmp_path / f"host{i}.json").read_text())
        assert host["devices"] == 4 and host["processes"] == 2
        assert rel(single, losses(tmp_path / f"host{i}.json")) <= 1e-6


def test_sigterm_saves_and_resume_equals_uninterrupted(shards, tmp_path):
    from biocodec_jax.training.loop import Preempted, pretrain

    config = apply_overrides(preset("tiny"), overrides(shards, 30, **{"train.checkpoint_every": 10}))
    whole = pretrain(config, tmp_path / "whole", progress=False)
    assert sorted(whole.losses) == list(range(1, 31))

    def term_at_15(step, metrics):
        if step == 15:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled by the loop

    with pytest.raises(Preempted) as e:
        pretrain(config, tmp_path / "cut", on_step=term_at_15, progress=False)
    assert e.value.step == 15
    resumed = pretrain(config, tmp_path / "cut", progress=False)
    assert resumed.start_step == 15 and sorted(resumed.losses) == list(range(16, 31))
    assert all(resumed.losses[s] == whole.losses[s] for s in range(16, 31))  # bit for bit
    assert signal.getsignal(signal.SIGTERM) is not None  # the loop restored the previous handler


@pytest.mark.slow
def test_kill9_resumes_from_last_saved_step(shards, tmp_path, caplog):
    args = overrides(shards, 24)
    run_worker(tmp_path / "whole.json", tmp_path / "whole", args, devices=2)
    whole = losses(tmp_path / "whole.json")

    run_worker(tmp_path / "killed.json", tmp_path / "run", args, devices=2, extra=["--sigkill-at", "17"], check=False)
    assert json.loads((tmp_path / "killed.json").read_text())["killed_at"] == 17
    from biocodec_jax.training.checkpointing import Checkpointer

    with Checkpointer(tmp_path / "run" / "checkpoints") as ckpt:
        saved = ckpt.latest_step()
    assert saved in (10, 15)  # 15 unless the kill beat its asynchronous write

    run_worker(tmp_path / "resumed.json", tmp_path / "run", args, devices=2)
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    assert resumed["start_step"] == saved and resumed["step"] == 24
    assert rel({s: whole[s] for s in range(saved + 1, 25)}, losses(tmp_path / "resumed.json")) == 0.0

    # A corrupt latest checkpoint on restart: test_corrupt_latest_is_moved_aside_and_trained_again (and
    # tests/test_gcs.py for a bucket).


@pytest.mark.slow
def test_checkpoint_from_four_devices_continues_on_one(shards, tmp_path):
    run_worker(tmp_path / "four.json", tmp_path / "run", overrides(shards, 10, **PRECISE), devices=4)
    run_worker(tmp_path / "four_more.json", tmp_path / "ref", overrides(shards, 15, **PRECISE), devices=4)
    run_worker(tmp_path / "one.json", tmp_path / "run", overrides(shards, 15, **PRECISE), devices=1)
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["start_step"] == 10 and one["devices"] == 1
    reference = {s: v for s, v in losses(tmp_path / "four_more.json").items() if s > 10}
    assert rel(reference, losses(tmp_path / "one.json")) <= 1e-6


def test_non_finite_loss_stops_and_keeps_last_checkpoint(shards, tmp_path):
    from biocodec_jax.training.checkpointing import Checkpointer
    from biocodec_jax.training.loop import NonFiniteLoss, pretrain

    config = apply_overrides(preset("tiny"), overrides(shards, 12, **{"train.async_checkpointing": "false"}))

    first = pretrain(config, tmp_path / "run", progress=False)
    assert first.step == 12
    # Continue with an absurd learning rate: the loss explodes, nothing after step 12 is saved.
    bad = apply_overrides(config, ["train.steps=40", "optim.learning_rate=1e12", "optim.warmup_steps=1"])
    with pytest.raises(NonFiniteLoss, match="non-finite loss at step"):
        pretrain(bad, tmp_path / "run", progress=False)
    with Checkpointer(tmp_path / "run" / "checkpoints") as ckpt:
        assert ckpt.latest_step() == 12


# Orbax's reader may leave a callback for its closed event loop after a failed read: harmless.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_latest_is_moved_aside_and_trained_again(shards, tmp_path, caplog, capfd):
    """Corrupt newest step -> resume: it is set aside, trained again and what every reader finds."""
    import gc
    import logging

    from biocodec_jax import Codec, info
    from biocodec_jax.training.checkpointing import Checkpointer
    from biocodec_jax.training.loop import pretrain

    config = apply_overrides(preset("tiny"), overrides(shards, 10, **{"train.async_checkpointing": "false"}))
    run = tmp_path / "run"
    first = pretrain(config, run, progress=False)
    trained = Codec.load(run)  # step 10 before the damage (resuming is exact: training again gives it back)
    ckpts = run / "checkpoints"
    for f in (ckpts / "10" / "state").rglob("*"):  # truncate the array files of the newest step
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[:16])

    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="biocodec_jax.training.checkpointing"):
        again = pretrain(config, run, progress=False)
        gc.collect()  # asyncio reports a failed read's unretrieved futures when they are collected
    assert again.start_step == 5 and again.step == 10 and sorted(again.losses) == list(range(6, 11))
    assert all(again.losses[s] == first.losses[s] for s in range(6, 11))  # an exact resume from 5
    ours = [r.getMessage() for r in caplog.records if r.name == "biocodec_jax.training.checkpointing"]
    assert len(ours) == 2, ours
    fallback, moved = ours
    assert "step 10" in fallback and "falling back to step 5" in fallback
    assert "\n" not in fallback and len(fallback) < 600
    assert not [r for r in caplog.records if r.exc_info or r.name == "asyncio"]  # no traceback dumps
    assert "moved" in moved and "10.corrupt-" in moved
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Event loop is closed" not in err

    (aside,) = [p for p in ckpts.iterdir() if not p.name.isdigit()]
    assert aside.name.startswith("10.corrupt-") and (aside / "state").is_dir()
    with Checkpointer(ckpts, read_only=True) as ckpt:
        assert ckpt.all_steps() == [5, 10]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="biocodec_jax.training.checkpointing"):
        codec = Codec.load(run)
        facts = info.describe(run)
    assert not [r for r in caplog.records if r.name.startswith("biocodec_jax")]  # step 10 is readable: no fallback
    assert codec.metadata["training"]["step"] == 10 and facts["training_step"] == 10
    for a, b in zip(jax_leaves(codec.params), jax_leaves(trained.params)):
        np.testing.assert_array_equal(a, b)


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_shards_of_another_window_length_say_the_fix(shards, tmp_path):
    """A window the config names (here the eeg preset's 5 s, set in the Config itself) on 1-s shards:
    refused before anything starts, naming both values and the manifest, and saying what to write."""
    from biocodec_jax.training.loop import pretrain

    config = apply_overrides(preset("eeg"), [f"train.data={shards}", "train.steps=1"])
    with pytest.raises(ValueError) as err:
        pretrain(config, tmp_path / "run", progress=False)
    msg = str(err.value)
    assert str(shards / "manifest.json") in msg and "250-sample windows (1 s at 250 Hz)" in msg
    assert "train.window_seconds=5 asks for 1250" in msg and "leave train.window_seconds out" in msg
    assert "--set train.window_seconds=1" in msg and "--set window_seconds=5" in msg
    assert not (tmp_path / "run").exists()  # nothing written


def test_shards_at_another_rate_name_both_rates(shards):
    from biocodec_jax.training.loop import with_data_window

    with pytest.raises(ValueError, match=r"m.json: the shards are at 250 Hz but the codec \(emg preset\) is at 1000 Hz"):
        with_data_window(preset("emg"), {"sample_rate": 250.0, "window_samples": 250}, "m.json")


@pytest.fixture(scope="module")
def eeg_shards(tmp_path_factory):
    """The eeg prepare preset's shards (5-s windows at 250 Hz) of one bundled recording."""
    inp = tmp_path_factory.mktemp("rec_eeg")
    src = sorted(BUNDLED.glob("*/*.edf"))[0]
    shutil.copy(src, inp / src.name)
    out = tmp_path_factory.mktemp("eeg_shards")
    prepare(inp, out, replace(prepare_preset("eeg"), val_fraction=0.0), dataset="eegmmidb", workers=1, progress=False)
    return out


def test_the_shards_decide_the_window(eeg_shards, tmp_path, capsys):
    """`biocodec-jax pretrain --preset tiny --data <eeg shards>`: the tiny preset (1-s windows when it
    makes its own data) trains on the shards' 5-s windows without being told; the run records them.
    A window named with --set that the shards do not have exits 2 naming both and the manifest."""
    from biocodec_jax.cli import main as cli_main

    run = tmp_path / "run"
    common = ["--data", str(eeg_shards), "--steps", "2", "--batch-size", "8", "--set", "train.eval_every=0",
              "--no-progress"]
    assert cli_main(["pretrain", "--preset", "tiny", "--workdir", str(run), *common]) == 0
    assert f"{run}: trained to step 2" in capsys.readouterr().out
    saved = load_config(run / "config.yaml")
    assert (saved.preset, saved.train.window_seconds) == ("tiny", 5.0)

    bad = ["pretrain", "--preset", "tiny", "--workdir", str(tmp_path / "bad"), *common, "--set", "train.window_seconds=1"]
    assert cli_main(bad) == 2
    err = capsys.readouterr().err
    assert str(eeg_shards / "manifest.json") in err and "1250-sample windows (5 s at 250 Hz)" in err
    assert "train.window_seconds=1 asks for 250" in err
