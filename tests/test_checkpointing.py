"""Training checkpoints: exact round trip (arrays and data position), retention, corruption, layouts."""

import logging
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biocodec_jax import Codec, preset
from biocodec_jax.training.checkpointing import Checkpointer, abstract_train_state, restore_config
from data_pipelines.loader import make_train_iterator
from tests.test_loader import build_shards

ROOT = Path(__file__).parent.parent
LOGGER = "biocodec_jax.training.checkpointing"


@pytest.fixture(scope="module")
def config():
    return preset("tiny")


@pytest.fixture(scope="module")
def abstract(config):
    return abstract_train_state(config)


def random_state(abstract, step: int, seed: int):
    """A state with every leaf random (no model run: fast), at ``step``."""
    rng = np.random.default_rng(seed)

    def fill(x):
        if x.dtype == jnp.bool_:
            return jnp.asarray(rng.random(x.shape) < 0.5)
        if jnp.issubdtype(x.dtype, jnp.unsignedinteger):
            return jnp.asarray(rng.integers(0, 2**32, x.shape, dtype=np.uint32))
        if jnp.issubdtype(x.dtype, jnp.integer):
            return jnp.asarray(rng.integers(0, 1000, x.shape), x.dtype)
        return jnp.asarray(rng.standard_normal(x.shape), x.dtype)

    return jax.tree.map(fill, abstract).replace(step=jnp.asarray(step, jnp.int32))


def assert_states_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    return build_shards(tmp_path_factory.mktemp("shards"), {"train": (30, 20)})


def iterator(shard_dir):
    return make_train_iterator(shard_dir, global_batch_size=4, seed=3, process_index=0, process_count=1)


def test_round_trip_arrays_iterator_and_config(tmp_path, abstract, config, shard_dir):
    state = random_state(abstract, step=7, seed=0)
    it = iterator(shard_dir)
    for _ in range(5):
        next(it)
    with Checkpointer(tmp_path / "checkpoints") as ckpt:  # asynchronous
        assert ckpt.save(state, it, metrics={"val_loss": jnp.float32(0.5)})
        expected = [next(it) for _ in range(15)]  # the uninterrupted run, across an epoch boundary
        ckpt.wait_until_finished()
        assert ckpt.latest_step() == 7 and ckpt.all_steps() == [7]
        assert ckpt.metrics(7) == {"val_loss": 0.5}
        assert not ckpt.save(state, it)  # the same step again: skipped

    fresh = iterator(shard_dir)
    with Checkpointer(tmp_path / "checkpoints") as ckpt:  # a new process would do this
        restored = ckpt.restore(abstract, fresh)
    assert_states_equal(restored, state)
    assert restored.graphdef is abstract.graphdef and restored.tx is abstract.tx and restored.config == config
    target = jax.tree.leaves(abstract)[0].sharding
    assert all(x.sharding.is_equivalent_to(target, x.ndim) for x in jax.tree.leaves(restored))
    for want in expected:
        np.testing.assert_array_equal(next(fresh), want)
    assert restore_config(tmp_path) == config  # workdir or its checkpoints/ dir
    assert restore_config(tmp_path / "checkpoints", step=7) == config

    # A concrete state works as the target too, and no iterator is needed.
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert_states_equal(ckpt.restore(random_state(abstract, step=0, seed=1)), state)


def test_no_checkpoint_restores_none_and_missing_step_raises(tmp_path, abstract):
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert ckpt.latest_step() is None and ckpt.all_steps() == []
        assert ckpt.restore(abstract) is None
        with pytest.raises(FileNotFoundError, match="step 3"):
            ckpt.restore(abstract, step=3)


@pytest.mark.parametrize(
    "losses, keep_best, kept",
    [
        ({2: 0.1, 3: 0.5, 5: 0.3}, True, [2, 4, 5]),  # best (step 2) is older than the last 2: kept too
        ({2: 0.1, 3: 0.5, 5: 0.3}, False, [4, 5]),
        ({1: 0.9, 4: 0.2}, True, [4, 5]),  # best among the last 2: nothing extra
        ({}, True, [4, 5]),  # no save carried the metric
    ],
)
def test_keeps_last_k_and_the_best(tmp_path, abstract, losses, keep_best, kept):
    state = random_state(abstract, step=0, seed=0)
    with Checkpointer(tmp_path, keep=2, keep_best=keep_best, async_save=False) as ckpt:
        for step in range(1, 6):
            # Saves without val_loss (train metrics only) are never "the best".
            metrics = {"val_loss": losses[step]} if step in losses else {"loss": 0.01}
            assert ckpt.save(state.replace(step=jnp.asarray(step, jnp.int32)), metrics=metrics)
        assert ckpt.all_steps() == kept
    assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == kept
    with Checkpointer(tmp_path, keep=2, keep_best=keep_best) as ckpt:  # metrics survive a restart
        assert ckpt.all_steps() == kept
        if keep_best and losses:
            assert ckpt.best_step() == min(losses, key=losses.get)


def _garbage_data(step_dir: Path):
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    for p in files:
        p.write_bytes(b"\x00garbage" * 8)


def _truncated_metadata(step_dir: Path):
    meta = step_dir / "state" / "_METADATA"
    meta.write_bytes(meta.read_bytes()[:100])


def _state_item_deleted(step_dir: Path):
    shutil.rmtree(step_dir / "state")


# Orbax's reader may leave a callback for its closed event loop after a failed read: harmless.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("corrupt", [_garbage_data, _truncated_metadata, _state_item_deleted])
def test_unreadable_latest_checkpoint_falls_back_with_a_warning(tmp_path, abstract, corrupt, caplog):
    states = {s: random_state(abstract, step=s, seed=s) for s in (1, 2)}
    with Checkpointer(tmp_path / "checkpoints", async_save=False) as ckpt:
        for s in (1, 2):
            ckpt.save(states[s])
    corrupt(tmp_path / "checkpoints" / "2")

    with Checkpointer(tmp_path / "checkpoints") as ckpt, caplog.at_level(logging.WARNING, logger=LOGGER):
        restored = ckpt.restore(abstract)
        assert_states_equal(restored, states[1])
        warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "step 2" in warnings[0] and "falling back" in warnings[0]
        with pytest.raises(Exception):  # an explicitly requested step is not skipped
            ckpt.restore(abstract, step=2)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        codec = Codec.load(tmp_path)  # the same fallback for inference
    assert any("step 2" in r.getMessage() for r in caplog.records if r.name == LOGGER)
    assert_states_equal(codec.params, states[1].params)

    corrupt(tmp_path / "checkpoints" / "1")
    with Checkpointer(tmp_path / "checkpoints") as ckpt, pytest.raises(RuntimeError, match="no readable checkpoint"):
        ckpt.restore(abstract)


def test_codec_load_from_training_checkpoints(tmp_path, abstract, config):
    states = {s: random_state(abstract, step=s, seed=10 + s) for s in (3, 6)}
    with Checkpointer(tmp_path / "run" / "checkpoints") as ckpt:
        for s in (3, 6):
            ckpt.save(states[s])
    for where, step, want in [("run", None, 6), ("run", 3, 3), ("run/checkpoints", None, 6)]:
        codec = Codec.load(tmp_path / where, step=step)
        assert codec.config == config
        assert_states_equal(codec.params, states[want].params)
        assert_states_equal(codec.codebooks, states[want].codebooks)
    with pytest.raises(FileNotFoundError, match="step 4"):
        Codec.load(tmp_path / "run", step=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a saved codec"):
        Codec.load(tmp_path / "empty")




# Orbax's reader may leave a callback for its closed event loop after a failed read: harmless.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unreadable_step_is_set_aside_and_written_again(tmp_path, abstract, caplog):
    """The fallback skips step 2; the next save moves it to 2.corrupt-<time> and writes step 2 anew."""
    states = {s: random_state(abstract, step=s, seed=s) for s in (1, 2)}
    with Checkpointer(tmp_path / "checkpoints", async_save=False) as ckpt:
        for s in (1, 2):
            ckpt.save(states[s])
    _garbage_data(tmp_path / "checkpoints" / "2")

    # Readers never change anything: read-only checkpointers (Codec.load, info, convert) only fall back.
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert_states_equal(Codec.load(tmp_path).params, states[1].params)
    (fallback,) = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "step 2" in fallback and "falling back to step 1" in fallback
    assert "\n" not in fallback and len(fallback) < 600 and "tensorstore_spec" not in fallback  # was ~5 kB
    assert (tmp_path / "checkpoints" / "2").is_dir()

    caplog.clear()
    again = random_state(abstract, step=2, seed=99)  # the step trained again: a different state
    with Checkpointer(tmp_path / "checkpoints", async_save=False) as ckpt, caplog.at_level(logging.WARNING, logger=LOGGER):
        assert_states_equal(ckpt.restore(abstract), states[1])
        assert ckpt.unreadable_steps() == [2]
        assert ckpt.save(again)  # not skipped as "already exists"
        assert ckpt.all_steps() == [1, 2] and ckpt.unreadable_steps() == []
    moved = [r.getMessage() for r in caplog.records if r.name == LOGGER and "moved" in r.getMessage()]
    assert len(moved) == 1 and "step 2" in moved[0]
    (aside,) = [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("2.")]
    assert aside.name.startswith("2.corrupt-") and (aside / "state").is_dir()  # kept for inspection
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        codec = Codec.load(tmp_path)
    assert not [r for r in caplog.records if r.name == LOGGER]  # no fallback any more
    assert codec.metadata["training"]["step"] == 2
    assert_states_equal(codec.params, again.params)
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert ckpt.all_steps() == [1, 2]
        assert_states_equal(ckpt.restore(abstract), again)


def test_saves_without_validation_metrics_do_not_flood_the_log(tmp_path, abstract, caplog):
    """Orbax's "Requested `tracked_metric`; did not provide metrics." on every save without
    validation metrics is dropped; a save with metrics, and other warnings, still log."""
    with caplog.at_level(logging.WARNING), Checkpointer(tmp_path / "checkpoints", async_save=False) as ckpt:
        for s in (1, 2, 3):
            ckpt.save(random_state(abstract, step=s, seed=s))
        logging.getLogger("absl").warning("another absl warning")
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "tracked_metric" in m or "did not provide metrics" in m], messages
    assert "another absl warning" in messages


def test_reading_a_run_logs_no_read_only_warnings(tmp_path, abstract, caplog):
    """Opening checkpoints read-only (every ``Codec.load`` of a training run) is the intent: Orbax's
    "read_only=True, setting save_interval_steps=0" and "Given directory is read only" are dropped."""
    with Checkpointer(tmp_path / "checkpoints", async_save=False) as ckpt:
        ckpt.save(random_state(abstract, step=1, seed=1))
    with caplog.at_level(logging.WARNING), Checkpointer(tmp_path / "checkpoints", read_only=True) as ckpt:
        assert ckpt.all_steps() == [1]
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "read only" in m or "read_only" in m], messages
