"""The 4-device half of tests/test_checkpointing.py::test_checkpoint_from_4_devices_resumes_on_1.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu \
        python tests/checkpoint_worker.py SHARD_DIR CKPT_DIR OUT_NPZ

Trains the tiny codec one step with the state replicated over 4 CPU devices and the batch split
over them, checkpoints it (asynchronously, with the data iterator), then continues one more step
from the in-memory state. OUT_NPZ gets what the 1-device restore must reproduce: the checkpointed
state's leaves (``leaf_<i>``), the batch the iterator yields after the checkpoint (``next_batch``)
and the loss of the step on it, with that batch replicated (``next_loss``: the same arithmetic as
on one device) and split over the 4 devices (``next_loss_split``: data parallel, so sums are
reduced in a different order).
"""

import sys


def main(shard_dir: str, ckpt_dir: str, out: str) -> None:
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from biocodec_jax import preset
    from biocodec_jax.training import init_state, train_step
    from biocodec_jax.training.checkpointing import Checkpointer
    from data_pipelines.loader import make_train_iterator

    assert jax.device_count() == 4, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    it = make_train_iterator(shard_dir, global_batch_size=4, seed=0, process_index=0, process_count=1)
    first = next(it)
    state = init_state(preset("tiny"), jax.random.PRNGKey(0), first)
    state = jax.device_put(state, jax.tree.map(lambda _: replicated, state))
    state, _ = train_step(state, jax.device_put(first, split))
    assert all(len(x.sharding.device_set) == 4 for x in jax.tree.leaves(state))

    with Checkpointer(ckpt_dir) as ckpt:  # async
        assert ckpt.save(state, it, metrics={"val_loss": 1.0})
        ckpt.wait_until_finished()
    saved = {f"leaf_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))}

    batch = next(it)
    _, metrics = train_step(state, jax.device_put(batch, replicated))
    _, metrics_split = train_step(state, jax.device_put(batch, split))
    np.savez(out, next_batch=batch, next_loss=np.asarray(metrics["loss"]),
             next_loss_split=np.asarray(metrics_split["loss"]), **saved)


if __name__ == "__main__":
    main(*sys.argv[1:4])
