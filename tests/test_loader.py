"""data_pipelines.loader: Grain batches from shards: coverage, order, resumption, multi-process slicing."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_pipelines.loader import make_train_iterator, split_size
from data_pipelines.shards import ShardWriter, WindowOrigin, encode_window

T = 16
TRAIN_SHARDS = (100, 80, 60)  # 240 windows, ids 0..239
VAL_SHARDS = (30, 7)  # 37 windows, ids 240..276
N_TRAIN = sum(TRAIN_SHARDS)
WORKER = Path(__file__).parent / "multiprocess_loader_worker.py"


def build_shards(out: Path, splits: dict[str, tuple[int, ...]], length: int = T) -> Path:
    """A prepared directory whose window ``i`` (counted over all splits) is filled with the value ``i``."""
    manifest = {"shards": {}, "window_samples": length, "sample_rate": 250}
    index = 0
    for split, sizes in splits.items():
        entries = []
        for s, n in enumerate(sizes):
            rel = f"{split}/shard-{s:05d}.array_record"
            with ShardWriter(out / rel) as writer:
                for _ in range(n):
                    writer.write(encode_window(np.full(length, index, np.float32), WindowOrigin("rec", "sub", "C3", index)))
                    index += 1
                writer.commit()
            entries.append({"path": rel, "windows": n})
        manifest["shards"][split] = entries
    manifest["windows"] = index
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    return build_shards(tmp_path_factory.mktemp("shards"), {"train": TRAIN_SHARDS, "val": VAL_SHARDS})


def ids(batch: np.ndarray) -> list[int]:
    """Window ids of a batch (every sample of window i equals i)."""
    assert np.all(batch == batch[:, :, :1]), "a window mixes samples of different windows"
    return batch[:, 0, 0].astype(int).tolist()


def take(it, n: int) -> list[list[int]]:
    return [ids(next(it)) for _ in range(n)]


def train(shard_dir, **kwargs):
    kwargs.setdefault("process_index", 0)
    kwargs.setdefault("process_count", 1)
    return make_train_iterator(shard_dir, **kwargs)


def test_batch_shape_dtype_and_values(shard_dir):
    it = train(shard_dir, global_batch_size=8, seed=0)
    batch = next(it)
    assert batch.shape == (8, 1, T) and batch.dtype == np.float32 and isinstance(batch, np.ndarray)
    assert all(0 <= i < N_TRAIN for i in ids(batch))
    assert it.get_state() == {"next_index": 1}
    it = train(shard_dir, global_batch_size=8, seed=0, process_index=1, process_count=4)
    assert next(it).shape == (2, 1, T)


def test_split_size(shard_dir):
    assert split_size(shard_dir, "train") == N_TRAIN
    assert split_size(shard_dir, "val") == sum(VAL_SHARDS)


def test_epoch_is_a_permutation_and_epochs_reshuffle(shard_dir):
    # 240 windows / batch 8: one epoch is exactly 30 batches, so epochs do not share a batch.
    it = train(shard_dir, global_batch_size=8, seed=3, num_epochs=2)
    batches = list(it)
    assert len(batches) == 2 * N_TRAIN // 8
    epoch1 = [i for b in batches[:30] for i in ids(b)]
    epoch2 = [i for b in batches[30:] for i in ids(b)]
    assert sorted(epoch1) == sorted(epoch2) == list(range(N_TRAIN))
    assert epoch1 != epoch2
    assert epoch1 != list(range(N_TRAIN))  # shuffled at all


def test_same_seed_same_order_different_seed_different_order(shard_dir):
    a = take(train(shard_dir, global_batch_size=8, seed=7), 40)  # crosses into epoch 2
    b = take(train(shard_dir, global_batch_size=8, seed=7), 40)
    c = take(train(shard_dir, global_batch_size=8, seed=8), 40)
    assert a == b
    assert a != c
    # Neighbouring seeds do not replay each other's epochs (shuffle(seed=s) alone seeds epoch e with s + e).
    assert a[30:] != c[:10] and c[30:] != a[:10]


def test_finite_epochs_end_after_last_whole_global_batch(shard_dir):
    batches = list(train(shard_dir, global_batch_size=7, seed=0, num_epochs=1))
    assert len(batches) == N_TRAIN // 7 and all(len(b) == 7 for b in batches)
    kept = list(train(shard_dir, global_batch_size=7, seed=0, num_epochs=1, drop_remainder=False))
    assert [len(b) for b in kept] == [7] * (N_TRAIN // 7) + [N_TRAIN % 7]
    assert sorted(i for b in kept for i in ids(b)) == list(range(N_TRAIN))


@pytest.mark.parametrize("process_count", [2, 3])
def test_processes_split_each_global_batch(shard_dir, process_count):
    """Batch k of every process together = global batch k of one process; an epoch is covered once."""
    global_batch, steps = 6, N_TRAIN // 6  # exactly one epoch
    single = take(train(shard_dir, global_batch_size=global_batch, seed=11), steps)
    shares = [
        take(train(shard_dir, global_batch_size=global_batch, seed=11, process_index=p, process_count=process_count), steps)
        for p in range(process_count)
    ]
    for k in range(steps):
        # process p holds the p-th contiguous block of the global batch
        local = global_batch // process_count
        for p in range(process_count):
            assert shares[p][k] == single[k][p * local : (p + 1) * local]
    per_process = [{i for b in share for i in b} for share in shares]
    assert sum(len(s) for s in per_process) == N_TRAIN  # pairwise disjoint
    assert set().union(*per_process) == set(range(N_TRAIN))


def test_processes_run_equal_steps_with_finite_epochs(shard_dir):
    # 240 windows, global batch 14 (does not divide the epoch): process 0 would get one window more.
    counts = [
        len(list(train(shard_dir, global_batch_size=14, seed=0, num_epochs=1, process_index=p, process_count=2)))
        for p in range(2)
    ]
    assert counts == [N_TRAIN // 14] * 2


def test_resume_from_state(shard_dir):
    full = take(train(shard_dir, global_batch_size=8, seed=5), 45)
    it = train(shard_dir, global_batch_size=8, seed=5)
    assert take(it, 28) == full[:28]
    state = it.get_state()
    json.dumps(state)  # checkpointable as JSON
    fresh = train(shard_dir, global_batch_size=8, seed=5)
    fresh.set_state(state)
    assert take(fresh, 17) == full[28:]  # across the epoch boundary at batch 30


@pytest.mark.slow
def test_resume_from_state_with_worker_processes(shard_dir):
    """worker_count=2: same batches as in-process loading, and its (per-worker) state restores exactly."""
    full = take(train(shard_dir, global_batch_size=8, seed=5), 12)
    it = train(shard_dir, global_batch_size=8, seed=5, worker_count=2)
    try:
        assert take(it, 5) == full[:5]
        state = it.get_state()
    finally:
        it.close()
    json.dumps(state)
    fresh = train(shard_dir, global_batch_size=8, seed=5, worker_count=2)
    try:
        fresh.set_state(state)
        assert take(fresh, 7) == full[5:]
    finally:
        fresh.close()


def test_errors(shard_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        train(tmp_path, global_batch_size=8, seed=0)
    with pytest.raises(ValueError, match="'test'.*splits: \\['train', 'val'\\]"):
        train(shard_dir, global_batch_size=8, seed=0, split="test")
    with pytest.raises(ValueError, match="not divisible by process_count 3"):
        train(shard_dir, global_batch_size=8, seed=0, process_index=0, process_count=3)
    with pytest.raises(ValueError, match="drop_remainder=False"):
        train(shard_dir, global_batch_size=8, seed=0, process_index=0, process_count=2, drop_remainder=False)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        train(shard_dir, global_batch_size=512, seed=0, num_epochs=1)

    # a listed shard file missing; an empty split
    broken = build_shards(tmp_path / "broken", {"train": (5, 5), "val": (3,)})
    (broken / "train" / "shard-00001.array_record").unlink()
    with pytest.raises(FileNotFoundError, match="train/shard-00001.array_record"):
        train(broken, global_batch_size=2, seed=0)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["shards"]["val"] = []
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="'val' has no windows"):
        train(broken, global_batch_size=2, seed=0, split="val")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_jax_processes_assemble_global_batches(shard_dir, tmp_path):
    """Two JAX processes (CPU, 2 devices each) on 127.0.0.1, iterators with default process index/count."""
    global_batch, seed, steps = 8, 2, 33  # 33 steps cross the epoch boundary at 30
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    port = _free_port()
    outs = [tmp_path / f"process{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(shard_dir), str(port), str(i), str(outs[i]), str(global_batch), str(seed), str(steps)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=120)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-4000:]

    seen = [json.loads(out.read_text()) for out in outs]
    single = take(train(shard_dir, global_batch_size=global_batch, seed=seed), steps)
    assert [s["process_index"] for s in seen] == [0, 1] and all(s["process_count"] == 2 for s in seen)
    assert len(seen[0]["devices"]) == 4
    for s in seen:
        assert s["global_shape"] == [global_batch, 1, T]
        assert s["state"] == {"next_index": steps}
    for k in range(steps):
        # each process's local batch is its block of global batch k ...
        half = global_batch // 2
        assert seen[0]["local"][k] == single[k][:half] and seen[1]["local"][k] == single[k][half:]
        # ... and the assembled global array is global batch k row for row, the same on both
        for s in seen:
            assert s["global"][k] == single[k]
            np.testing.assert_array_equal(s["global_sums"][k], np.asarray(s["global"][k], np.float64) * T)
