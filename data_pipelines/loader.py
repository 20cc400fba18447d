"""Training batches from prepared shards, with Grain: global shuffle, resumable, multi-host.

Validation reads the ``val`` split through the same iterator (``split="val", num_epochs=1``).

Pipeline of :func:`make_train_iterator` (Grain ``MapDataset``: every step is an index mapping, so
the whole order is a pure function of ``seed`` and nothing is buffered that a checkpoint would
have to hold)::

    ArrayRecordDataSource(shard files of the split)     all windows of the split, index i -> record
    .seed(seed).shuffle()                               global shuffle (a permutation, not a buffer)
    .repeat(num_epochs)                                 epoch e reads index e*N + i: reshuffled per epoch
    [: n_batches * global_batch_size]                   finite runs only: whole global batches
    _HostBlocks(process_index, process_count, B)        this host's block of every global batch (below)
    .map(decode -> float32 [1, T])
    .batch(global_batch_size // process_count, drop_remainder=True)
    .to_iter_dataset(ReadOptions(...))                  threads + prefetch buffer, in this process
    .mp_prefetch(MultiprocessingOptions(...))           only when worker_count > 0

Epochs: Grain's ``shuffle`` draws a fresh permutation for every epoch of a ``repeat`` that comes
after it (``repeat(reseed_each_epoch=True)``, the default, passes the global index on and the
shuffle seeds epoch ``e`` with ``shuffle_seed + e``); ``.seed(seed)`` derives ``shuffle_seed`` by
hashing, so runs with neighbouring seeds (0, 1, ...) do not replay each other's epochs shifted by
one, which ``shuffle(seed=s)`` alone would do.

Multi-host: every process builds the same global stream (same seed) and, before batching by
``L = B / P``, keeps only its contiguous block of every global batch: process ``p``'s ``k``-th
batch is global elements ``[k*B + p*L, k*B + (p+1)*L)``. ``jax.make_array_from_process_local_data``
places process ``p``'s rows at exactly those positions of the global array (devices are ordered by
process on the mesh), so the global batch a ``P``-host job trains on is global batch ``k`` of the
one-process stream, row for row, not merely the same set of windows: order-dependent steps (the
k-means initialisation draws its starting points by position) give the same result too. Every host
runs the same number of steps, and no host reads a window another host reads in the same epoch. Without workers the iterator state is ``{"next_index": k}``, the same on every host, so one
saved state restores all of them.

Resuming: ``it.get_state()`` after ``k`` batches, and ``set_state(state)`` on a freshly built
iterator with the same arguments, continues with batch ``k`` exactly; nothing about the data order
lives outside the state and the arguments. With ``worker_count > 0`` the state is Grain's
per-worker interleave state: it restores an iterator with the same ``worker_count`` only.

Shards on an object store: ArrayRecord's reader (Grain's ``ArrayRecordDataSource``) opens local
files only (a ``gs://`` name is not read through gcsfs). A ``gs://`` shard directory is therefore
refused at once (:func:`local_shard_dir`) with the fix: mount the bucket with Cloud Storage FUSE
(``gcsfuse``), as MaxText advises for ArrayRecord, and give the mount's path.

Multiprocessing (``worker_count > 0``): Grain starts the workers with the ``spawn`` method, which
imports the main module afresh in every worker. A script that builds an iterator with workers
must therefore keep its top-level code under ``if __name__ == "__main__":``. Grain also reads its
(absl) flags when starting workers; this module marks absl flags as parsed if nothing has parsed
them yet, so a plain script (no ``absl.app.run``) works. Call ``it.close()`` when done so the workers
exit promptly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grain
import jax  # grain imports it anyway: no cost to the data work
import numpy as np
from absl import flags

from data_pipelines import paths
from data_pipelines.manifest import MANIFEST, read_manifest
from data_pipelines.shards import decode_window

# Threads each process (or worker) uses to read and decode batches, and how many batches it keeps
# ready. Elements of the buffered stream are whole batches, so these are batches, not windows.
DEFAULT_READ_THREADS = 4
DEFAULT_PREFETCH_BATCHES = 8


def local_shard_dir(shard_dir: str | Path) -> Path:
    """``shard_dir`` as a local path; a URL (``gs://bucket/shards``) is a ValueError saying to mount the
    bucket with gcsfuse and giving the path to use (ArrayRecord reads local files only)."""
    if not paths.is_url(shard_dir):
        return Path(shard_dir)
    url = str(shard_dir)
    scheme, _, rest = url.partition("://")
    bucket, _, inside = rest.partition("/")
    mount = f"/mnt/{bucket}"
    raise ValueError(
        f"{url}: the shards are read with ArrayRecord (Grain's ArrayRecordDataSource), which opens local files only, "
        f"not {scheme}:// URLs. Mount the bucket with Cloud Storage FUSE and give the mounted path, e.g. "
        f"`mkdir -p {mount} && gcsfuse --implicit-dirs {bucket} {mount}`, then train.data={mount}/{inside.strip('/')} "
        "(--data). Workdirs, checkpoints, metrics and codecs may stay gs:// URLs."
    )


def _split_entries(shard_dir: Path, manifest: dict[str, Any], split: str) -> list[dict[str, Any]]:
    splits = manifest.get("shards") or {}
    if split not in splits:
        raise ValueError(f"{shard_dir}: split {split!r} not in {MANIFEST} (splits: {sorted(splits) or 'none'})")
    entries = splits[split]
    if not entries or sum(int(e["windows"]) for e in entries) == 0:
        raise ValueError(f"{shard_dir}: split {split!r} has no windows")
    return entries


def _existing_files(shard_dir: Path, entries: list[dict[str, Any]], split: str) -> list[Path]:
    files = [shard_dir / e["path"] for e in entries]
    missing = [str(f.relative_to(shard_dir)) for f in files if not f.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{shard_dir}: {len(missing)} shard file(s) of split {split!r} missing: {shown}")
    return files


def split_size(shard_dir: str | Path, split: str) -> int:
    """Number of windows in ``split``, from the manifest (no shard is opened)."""
    shard_dir = local_shard_dir(shard_dir)
    return sum(int(e["windows"]) for e in _split_entries(shard_dir, read_manifest(shard_dir), split))


@dataclass(frozen=True)
class _DecodeWindow:
    """Record -> float32 ``[1, T]``. A module-level class so Grain's worker processes can unpickle it."""

    window_samples: int

    def __call__(self, record: bytes) -> np.ndarray:
        samples = decode_window(record)
        if samples.shape[0] != self.window_samples:
            raise ValueError(f"a record holds {samples.shape[0]} samples; the manifest says {self.window_samples}")
        return samples.reshape(1, self.window_samples)


def _source(shard_dir: str | Path, split: str) -> tuple[grain.MapDataset, int]:
    """The split's windows as a ``MapDataset`` of records, and the window length ``T``."""
    shard_dir = local_shard_dir(shard_dir)
    manifest = read_manifest(shard_dir)
    entries = _split_entries(shard_dir, manifest, split)
    source = grain.sources.ArrayRecordDataSource([str(f) for f in _existing_files(shard_dir, entries, split)])
    expected = sum(int(e["windows"]) for e in entries)
    if len(source) != expected:
        raise ValueError(
            f"{shard_dir}: split {split!r} shards hold {len(source)} records but {MANIFEST} lists {expected} windows"
        )
    return grain.MapDataset.source(source), int(manifest["window_samples"])


class _HostBlocks(grain.MapDataset):
    """Process ``p``'s contiguous block of every global batch of ``parent`` (see the module docstring).

    Element ``j`` of process ``p`` is parent element ``(j // L) * B + p * L + j % L`` with
    ``L = B / P``. A trailing partial global batch is split into blocks the same way (process ``p``
    keeps what falls into its block, possibly nothing).
    """

    def __init__(self, parent: grain.MapDataset, process_index: int, process_count: int, global_batch: int):
        super().__init__(parent)
        self._p, self._count, self._global = process_index, process_count, global_batch
        self._local = global_batch // process_count
        n = len(parent)
        whole, rest = divmod(n, global_batch)
        self._length = whole * self._local + min(max(rest - process_index * self._local, 0), self._local)

    def __len__(self) -> int:
        return self._length

    def _parent_index(self, index: int) -> int:
        block, offset = divmod(index, self._local)
        return block * self._global + self._p * self._local + offset

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[self._parent_index(index)]

    def __str__(self) -> str:
        return f"_HostBlocks(process {self._p} of {self._count}, {self._local} of every {self._global})"


def _processes(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """(index, count), from JAX where not given."""
    if process_index is None or process_count is None:
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in range for process_count {process_count}")
    return int(process_index), int(process_count)


def _per_process_batch(batch_size: int, process_count: int, what: str) -> int:
    if batch_size < 1:
        raise ValueError(f"{what} must be positive, got {batch_size}")
    if batch_size % process_count:
        raise ValueError(
            f"{what} {batch_size} is not divisible by process_count {process_count}: "
            "every process must hold an equal share of each global batch"
        )
    return batch_size // process_count


def _ensure_absl_flags_parsed() -> None:
    """Grain's multiprocessing reads absl flags; a script that never ran ``absl.app`` has not parsed them."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def make_train_iterator(
    shard_dir: str | Path,
    *,
    global_batch_size: int,
    seed: int,
    split: str = "train",
    process_index: int | None = None,
    process_count: int | None = None,
    num_epochs: int | None = None,
    worker_count: int = 0,
    prefetch_buffer_size: int = DEFAULT_PREFETCH_BATCHES,
    read_threads: int = DEFAULT_READ_THREADS,
    drop_remainder: bool = True,
) -> grain.DatasetIterator:
    """Shuffled training batches, float32 ``[global_batch_size // process_count, 1, T]``, this process's share.

    ``seed`` fixes the order of every epoch (each epoch a different permutation of the split);
    ``num_epochs=None`` repeats forever. The returned iterator has ``get_state()`` /
    ``set_state(state)`` for exact resumption. ``process_index`` / ``process_count`` default to
    ``jax.process_index()`` / ``jax.process_count()``; the processes' batches ``k`` together are
    global batch ``k`` of the one-process stream (module docstring). ``worker_count > 0`` decodes in
    that many Grain worker processes (same batches, same order); ``prefetch_buffer_size`` and
    ``read_threads`` count batches and threads per process (per worker with workers).

    With a finite ``num_epochs`` the stream ends after the last whole global batch
    (``drop_remainder=True``, needed with several processes so that all run the same number of
    steps); ``drop_remainder=False`` keeps the final partial batch (one process only).
    """
    process_index, process_count = _processes(process_index, process_count)
    local_batch = _per_process_batch(global_batch_size, process_count, "global_batch_size")
    if not drop_remainder and process_count > 1:
        raise ValueError(
            "drop_remainder=False with several processes: a partial last global batch cannot be split "
            "evenly, so processes would run different numbers of steps"
        )
    if worker_count < 0:
        raise ValueError(f"worker_count must be >= 0, got {worker_count}")

    ds, window_samples = _source(shard_dir, split)
    ds = ds.seed(seed).shuffle().repeat(num_epochs)
    if num_epochs is not None and drop_remainder:
        whole = len(ds) // global_batch_size * global_batch_size
        if whole == 0:
            raise ValueError(
                f"{shard_dir}: split {split!r} has {len(ds)} windows over {num_epochs} epoch(s), "
                f"fewer than one global batch of {global_batch_size}"
            )
        ds = ds[:whole]
    ds = _HostBlocks(ds, process_index, process_count, global_batch_size)
    ds = ds.map(_DecodeWindow(window_samples))
    ds = ds.batch(local_batch, drop_remainder=drop_remainder)
    return _to_iterator(ds, worker_count, prefetch_buffer_size, read_threads)


def _to_iterator(
    ds: grain.MapDataset, worker_count: int, prefetch_buffer_size: int, read_threads: int
) -> grain.DatasetIterator:
    it_ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_buffer_size)
    )
    if worker_count > 0:
        _ensure_absl_flags_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(it_ds)
