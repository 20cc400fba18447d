"""Data parallelism over every device of every host, set up in one place.

One 1-D mesh (axis ``"data"``) spans all devices of all processes. The global batch is sharded
over it; parameters, codebooks, optimiser state, RNG and step are replicated. ``train_step`` is
the same pure function as on one device, jit-compiled with those shardings: XLA inserts the
all-reduces, so every statistic over the batch (loss, gradients, the k-means initialisation and
the EMA counts and sums of the codebooks) is computed over the **global** batch, and one device
and eight devices with the same global batch compute the same thing (up to float summation order).

Each process feeds only its own share of every global batch (see :mod:`data_pipelines.loader`);
:func:`global_batch` turns the per-process numpy arrays into one global ``jax.Array`` without
gathering anything to one host.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


from biocodec_jax.training.state import TrainState, init_state
from biocodec_jax.training.step import eval_step, train_step

log = logging.getLogger(__name__)

DATA_AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Join a multi-process JAX job when one is configured; a no-op for a single process.

    Explicit arguments win; otherwise ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` from the environment; otherwise, on a multi-host TPU VM pod or in a SLURM
    job with several tasks (detected from the environment, or forced with
    ``BIOCODEC_AUTO_DISTRIBUTED=1``), ``jax.distributed.initialize()`` finds everything itself.
    Call before anything touches a device.
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    if coordinator_address is not None:
        if num_processes is None or process_id is None:
            raise ValueError("a coordinator address needs the process count and this process's id as well")
        if num_processes > 1:
            jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    elif env.get("BIOCODEC_AUTO_DISTRIBUTED") == "1" or _cluster_detected(env):
        jax.distributed.initialize()  # TPU VM pods, SLURM: the cluster tells JAX who is who
    if jax.process_count() > 1:
        log.info(
            "process %d of %d: %d local of %d devices",
            jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(),
        )


def _cluster_detected(env) -> bool:
    """A multi-process job JAX can configure itself: SLURM with several tasks, or a TPU VM pod."""
    if env.get("BIOCODEC_AUTO_DISTRIBUTED") == "0":
        return False
    slurm_tasks = env.get("SLURM_NTASKS") or env.get("SLURM_NPROCS")
    if slurm_tasks and slurm_tasks.isdigit() and int(slurm_tasks) > 1:
        return True
    return "," in env.get("TPU_WORKER_HOSTNAMES", "")


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D data-parallel mesh over ``devices`` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if global_batch_size % n:
        raise ValueError(f"global batch size {global_batch_size} is not divisible by the {n} devices of the mesh")


def global_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """This process's rows of a global batch -> the global ``jax.Array`` sharded over ``mesh``.

    Every process passes its own ``[B / process_count, ...]`` share; nothing is gathered.
    """
    return jax.make_array_from_process_local_data(data_sharding(mesh), np.asarray(local))


def init_sharded_state(config, rng: jax.Array, first_batch: jax.Array, mesh: Mesh) -> TrainState:
    """:func:`init_state` with the state replicated over ``mesh`` and k-means run on the global
    ``first_batch`` (already a global array from :func:`global_batch`)."""
    # One sharding is a prefix for the whole state pytree: every array replicated. The config is a
    # static argument of the module-level init_state (not a closure), so JAX's caches key on its
    # value: a second run in the process with an equal config (a resume, a test) compiles nothing.
    init = jax.jit(init_state, static_argnums=0, out_shardings=replicated(mesh))
    return init(config, rng, first_batch)


def parallel_train_step(mesh: Mesh):
    """``train_step`` compiled for ``mesh``: state replicated, batch sharded, metrics replicated.

    The state is donated (its buffers are reused for the new state).
    """
    rep = replicated(mesh)
    return jax.jit(
        train_step,
        in_shardings=(rep, data_sharding(mesh)),
        out_shardings=(rep, rep),
        donate_argnums=(0,),
    )


def parallel_eval_step(mesh: Mesh):
    """``eval_step`` compiled for ``mesh`` (batch sharded, metrics replicated)."""
    return jax.jit(
        eval_step,
        in_shardings=(replicated(mesh), data_sharding(mesh)),
        out_shardings=replicated(mesh),
    )
