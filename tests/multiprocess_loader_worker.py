"""One process of the two-process loader test (tests/test_loader.py::test_two_jax_processes_assemble_global_batches).

    python tests/multiprocess_loader_worker.py SHARD_DIR PORT PROCESS_ID OUT_JSON GLOBAL_BATCH SEED STEPS

Joins a 2-process JAX CPU cluster on 127.0.0.1:PORT, builds the training iterator with the
defaults (process index and count from JAX), assembles each local batch into a global array over a
mesh of all devices, and writes what it saw to OUT_JSON: its local window ids, the global array's
window ids gathered to every process, and per-window sums computed by a jitted function on the
global array (replicated output: a cross-process collective).
"""

import json
import sys


def main(shard_dir: str, port: int, process_id: int, out: str, global_batch: int, seed: int, steps: int) -> None:
    import jax
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=2,
        process_id=process_id,
        initialization_timeout=60,
    )
    from data_pipelines.loader import make_train_iterator

    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    window_sums = jax.jit(lambda x: x.sum(axis=(1, 2)), out_shardings=NamedSharding(mesh, P()))

    it = make_train_iterator(shard_dir, global_batch_size=global_batch, seed=seed)
    seen = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "devices": [d.id for d in jax.devices()],
        "local_devices": [d.id for d in jax.local_devices()],
        "local": [],
        "global": [],
        "global_sums": [],
        "global_shape": None,
        "state": None,
    }
    for _ in range(steps):
        local = next(it)
        batch = jax.make_array_from_process_local_data(sharding, local)
        seen["global_shape"] = list(batch.shape)
        seen["local"].append(local[:, 0, 0].astype(int).tolist())
        gathered = multihost_utils.process_allgather(batch, tiled=True)
        seen["global"].append(np.asarray(gathered)[:, 0, 0].astype(int).tolist())
        seen["global_sums"].append(np.asarray(window_sums(batch)).tolist())
    seen["state"] = it.get_state()
    it.close()
    with open(out, "w") as f:
        json.dump(seen, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], int(a[1]), int(a[2]), a[3], int(a[4]), int(a[5]), int(a[6]))
