"""Training checkpoints: save and resume a run exactly, on any number of devices.

A thin layer over Orbax's :class:`~orbax.checkpoint.CheckpointManager`. Each checkpoint is a step
directory ``<workdir>/checkpoints/<step>/`` holding three items:

``state``
    The arrays of the :class:`TrainState` -- ``step``, ``params``, ``codebooks``, ``opt_state``,
    ``rng`` -- as one Orbax pytree (``StandardSave``). The static fields (graph definition,
    optimiser, config) are code, not data: the caller rebuilds them from the config.
``data_iter``
    The Grain iterator's position (``grain.checkpoint.CheckpointSave``; one small JSON file per
    process), so that a resumed run sees exactly the batches an uninterrupted run would have seen.
``config``
    The run's :class:`~biocodec_jax.config.Config` as JSON (``JsonSave``), so that a checkpoint
    alone says which model it holds (:func:`restore_config`, ``Codec.load(workdir)``).

Why these choices:

* Arrays are written with their global shapes, independent of how they were sharded. A restore
  names the *target* layout (``jax.ShapeDtypeStruct`` leaves with ``.sharding``, see
  :func:`abstract_train_state`), so a checkpoint written on 4 devices restores onto 1 or onto 8.
* Saving is asynchronous by default: :meth:`Checkpointer.save` returns once the arrays are copied
  off the accelerator and the files are written in a background thread, so training is not held
  up. Orbax publishes a step directory only once every file is written (locally it writes to a
  temporary directory and renames it; on ``gs://``, where there is no rename, it writes a
  ``commit_success.txt`` marker last and lists only marked steps), so a run killed mid-save never
  leaves a half-written step that looks complete.
* The directory may be a local path or a ``gs://`` URL (Orbax writes the arrays through
  TensorStore's GCS driver and the rest through ``etils.epath``/``gcsfs``); setting an unreadable
  step aside is then a copy and delete, not a rename.
* A committed checkpoint can still be damaged afterwards (a full disk, a truncated copy, a bad
  sync). :meth:`Checkpointer.restore` therefore falls back to the previous step, with a short
  warning, instead of either crashing or silently starting from scratch; a run that resumed so
  then moves the unreadable step directory aside (:meth:`Checkpointer.set_aside_unreadable`, to
  ``<step>.corrupt-<time>``, kept for inspection, outside Orbax's step listing) before it saves,
  so that the step it trains again replaces it for every later reader.
* Retention keeps the last ``keep`` checkpoints plus the best one by a validation metric, so a
  long run's best model survives later, worse checkpoints.

Every process of a multi-process run must call :meth:`Checkpointer.save` and
:meth:`Checkpointer.restore` (they synchronise); each writes its own iterator state and its
shards of the arrays.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import grain.checkpoint as grain_ckpt  # registers Grain's argument classes with Orbax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from orbax.checkpoint import checkpoint_managers as cm

from biocodec_jax import config as config_lib
from biocodec_jax import model as model_lib
from biocodec_jax.config import Config
from biocodec_jax.training.state import TrainState, init_state
from data_pipelines import paths

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
STATE_ITEM = "state"
DATA_ITER_ITEM = "data_iter"
CONFIG_ITEM = "config"
_ARRAY_FIELDS = ("step", "params", "codebooks", "opt_state", "rng")
CORRUPT_SUFFIX = ".corrupt-"  # <step>.corrupt-<time>: an unreadable step directory set aside
_barrier_ids = itertools.count()  # unique barrier names; every process makes the same calls


def short_error(e: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one line, without TensorStore's JSON specs: what a warning should say."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = re.sub(r"\s*\[tensorstore_spec.*$", "", text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _is_closed_loop_callback(unraisable: Any) -> bool:
    exc = getattr(unraisable, "exc_value", None)
    return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


class _FailedReadTaskFilter(logging.Filter):
    """Drops asyncio's "Task/Future exception was never retrieved" records of a failed Orbax read."""

    _biocodec_quiet = True

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if msg.startswith(("Task exception was never retrieved", "Future exception was never retrieved")):
            exc = record.exc_info[1] if record.exc_info else None
            if "async_deserialize" in msg or "tensorstore_spec" in msg or "tensorstore_spec" in str(exc):
                return False
        return True


def _quiet_failed_read_noise() -> None:
    """Silence what a failed Orbax read leaves behind, so that its warning is all a user sees.

    When one array of a checkpoint cannot be read, the read's other TensorStore futures complete
    later: they call back into the asyncio loop Orbax has already closed (Python prints each
    "Event loop is closed" error as an unraisable exception) and asyncio logs their exceptions
    as "never retrieved" when they are collected -- dozens of traceback and JSON lines after the
    one-line fallback warning, often at exit. Installed before a fallback read, for the rest of
    the process; both filters match only those messages, everything else passes unchanged.
    """
    asyncio_log = logging.getLogger("asyncio")
    if not any(getattr(f, "_biocodec_quiet", False) for f in asyncio_log.filters):
        asyncio_log.addFilter(_FailedReadTaskFilter())
    previous = sys.unraisablehook
    if getattr(previous, "_biocodec_quiet", False):
        return

    def hook(unraisable, _previous=previous):
        if _is_closed_loop_callback(unraisable):
            log.debug("ignored a TensorStore callback into a closed event loop after a failed checkpoint read")
            return
        _previous(unraisable)

    hook._biocodec_quiet = True
    sys.unraisablehook = hook


def _grain_args():
    """Grain's Orbax argument classes (they registered themselves with Orbax when imported)."""
    return grain_ckpt.CheckpointSave, grain_ckpt.CheckpointRestore


def _metric_value(metric: str):
    """``metrics -> float`` for ranking: a missing or non-finite metric ranks last (``+inf``)."""

    def value(metrics: Any) -> float:
        try:
            v = float(metrics[metric])
        except (KeyError, TypeError, ValueError):
            return math.inf
        return v if math.isfinite(v) else math.inf

    return value


def _replicated_sharding() -> NamedSharding:
    """Every array whole on every device: the default target layout."""
    return NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec())


def _array_tree(state: TrainState) -> dict[str, Any]:
    """The array fields of ``state`` as the dict that is saved as the ``state`` item."""
    return {name: getattr(state, name) for name in _ARRAY_FIELDS}


def _abstract_leaf(x: Any, sharding: jax.sharding.Sharding | None) -> jax.ShapeDtypeStruct:
    if sharding is None:
        sharding = getattr(x, "sharding", None)
        if not isinstance(sharding, jax.sharding.Sharding):
            sharding = _replicated_sharding()
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)


def abstract_train_state(
    state_or_config: TrainState | Config, shardings: Any = None
) -> TrainState:
    """A :class:`TrainState` whose array leaves are ``jax.ShapeDtypeStruct`` with a ``.sharding``.

    This is the restore target: it says the shapes, dtypes and -- through the shardings -- on which
    devices and how split the restored arrays should live. Static fields (graph, optimiser,
    config) come from ``state_or_config``.

    ``state_or_config``: a state (concrete or abstract) or a :class:`Config` (the model is traced,
    never materialised). ``shardings``: ``None`` keeps each leaf's own sharding (abstract leaves
    without one, and every leaf built from a config, are replicated over all devices); a single
    :class:`jax.sharding.Sharding` for every leaf; or a pytree of shardings with the state's
    structure (e.g. a ``TrainState`` of shardings).
    """
    if isinstance(state_or_config, Config):
        state = _abstract_state_from_config(state_or_config)
    elif isinstance(state_or_config, TrainState):
        state = state_or_config
    else:
        raise TypeError(f"expected a TrainState or a Config, got {type(state_or_config).__name__}")

    if shardings is None or isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda x: _abstract_leaf(x, shardings), state)
    return jax.tree.map(_abstract_leaf, state, shardings)


def _abstract_state_from_config(config: Config) -> TrainState:
    """The state ``init_state`` would build for ``config`` (shapes, dtypes, structure), traced only."""
    # The parameters' and codebooks' shapes do not depend on the window's length: a config whose
    # window is still the data's (None) is traced on 5-s windows.
    seconds = 5.0 if config.train.window_seconds is None else config.train.window_seconds
    batch = jax.ShapeDtypeStruct((config.train.batch_size, 1, int(round(seconds * config.codec.sample_rate))), jnp.float32)
    return jax.eval_shape(lambda rng, x: init_state(config, rng, x), jax.random.PRNGKey(0), batch)


def location(path: str | Path) -> Path:
    """``path`` as a path object: a local path made absolute (``pathlib.Path``), a URL
    (``gs://bucket/...``) as an ``etils.epath.Path`` (the filesystem layer Orbax uses, same API)."""
    return paths.as_path(path) if paths.is_url(path) else Path(path).absolute()


def checkpoints_dir(directory: str | Path) -> Path:
    """``directory`` itself if it holds checkpoints, else ``directory/checkpoints`` if that exists.

    Lets every reader accept either a training workdir or its ``checkpoints/`` directory (local or
    a ``gs://`` URL).
    """
    directory = location(directory)
    sub = directory / CHECKPOINTS_DIR
    return sub if sub.is_dir() else directory


class _DropExpectedOrbaxWarnings(logging.Filter):
    """Orbax warns of what this module does on purpose; each line is noise in training logs and in
    every ``Codec.load`` of a training run:

    - "Requested `tracked_metric`; did not provide metrics." on every save without validation
      metrics (most saves: only eval steps have them); the best-checkpoint policy handles those
      saves as intended;
    - "CheckpointManagerOptions.read_only=True, setting save_interval_steps=0." and "Given directory
      is read only=..." when a run is opened for reading (``read_only=True``), which is the point.
    """

    EXPECTED = ("did not provide metrics", "read_only=True, setting save_interval_steps", "Given directory is read only")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.EXPECTED)


_EXPECTED_ORBAX_WARNINGS = _DropExpectedOrbaxWarnings()


class Checkpointer:
    """Saves and restores a run's :class:`TrainState`, data-iterator position and config.

    ``directory`` is ``<workdir>/checkpoints``. Retention: the last ``keep`` checkpoints, plus
    (``keep_best``) the one with the lowest ``best_metric`` among the saves whose ``metrics``
    carried it, so an early good checkpoint is not deleted by later worse ones. ``async_save``
    writes in the background (call :meth:`wait_until_finished` before reading the files).
    ``read_only`` opens existing checkpoints for reading only (never creates or deletes anything).

    Implementation: Orbax ``AnyPreservationPolicy([LatestN(keep), BestN(n=1)])``. ``best_fn`` is
    also set, because Orbax only writes a save's metrics to disk when ``best_fn`` is set; without
    them a restarted run would forget which checkpoint was best. A save whose metrics lack
    ``best_metric`` (or whose value is not finite) ranks last, i.e. is never "the best" while any
    save carries a finite value.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        keep: int = 3,
        keep_best: bool = True,
        best_metric: str = "val_loss",
        async_save: bool = True,
        read_only: bool = False,
    ):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = location(directory)  # a URL (gs://...) works too: Orbax writes through epath
        self.best_metric = best_metric
        metric_fn = _metric_value(best_metric)
        policies = [cm.LatestN(n=keep)]
        if keep_best:
            # reverse=True: BestN keeps the *last* n after sorting, so sort descending to keep the minimum.
            policies.append(
                cm.BestN(get_metric_fn=metric_fn, reverse=True, n=1, keep_checkpoints_without_metrics=False)
            )
        logging.getLogger("absl").addFilter(_EXPECTED_ORBAX_WARNINGS)  # Orbax logs through absl (no-op if added)
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(policies),
            best_fn=metric_fn,
            best_mode="min",
            enable_async_checkpointing=async_save,
            read_only=read_only,
            create=not read_only,
        )
        # No handler registry: Orbax picks each item's handler from its argument class (Grain's
        # CheckpointSave/CheckpointRestore registered themselves with Orbax on import, above).
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self.read_only = read_only
        self._unreadable: list[int] = []  # steps the last fallback skipped, to be set aside before saving

    # --- saving ------------------------------------------------------------------------------

    def save(
        self,
        state: TrainState,
        data_iter: Any = None,
        *,
        metrics: dict[str, Any] | None = None,
        force: bool = False,
    ) -> bool:
        """Checkpoint ``state`` (and ``data_iter``'s position) at step ``int(state.step)``.

        ``metrics`` (scalars; e.g. ``{"val_loss": ...}``) are stored with the checkpoint and rank
        it for ``keep_best``. ``force`` saves even where Orbax's save policy would not (e.g. a
        step that is not newer than the latest). Returns whether a save happened; a step that is
        already saved is skipped (``False``) rather than raising. Asynchronous unless the
        checkpointer was made with ``async_save=False``.
        """
        step = int(state.step)
        if self._unreadable:  # a fallback skipped them: out of the way before Orbax lists steps to save
            self.set_aside_unreadable()
        if step in self._manager.all_steps():
            log.warning(
                "checkpoint for step %d already exists in %s; keeping it, this state is NOT saved", step, self.directory
            )
            return False
        items = {
            STATE_ITEM: ocp.args.StandardSave(_array_tree(state)),
            CONFIG_ITEM: ocp.args.JsonSave(config_lib.to_dict(state.config)),
        }
        if data_iter is not None:
            save_iter, _ = _grain_args()
            items[DATA_ITER_ITEM] = save_iter(data_iter)
        if metrics is not None:
            metrics = {k: float(np.asarray(v)) for k, v in metrics.items()}
        return bool(self._manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=force))

    # --- what is there -----------------------------------------------------------------------

    def latest_step(self) -> int | None:
        """The newest saved step (including one still being written asynchronously), or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All saved steps, ascending."""
        return sorted(self._manager.all_steps())

    def best_step(self) -> int | None:
        """The step with the lowest ``best_metric`` among saves that carried it, else the latest."""
        return self._manager.best_step()

    def metrics(self, step: int) -> dict[str, Any] | None:
        """The metrics saved with ``step``, if any."""
        return self._manager.metrics(step)

    def reload(self) -> None:
        """Re-read the directory (steps written by another process or checkpointer)."""
        self._manager.reload()

    # --- restoring ---------------------------------------------------------------------------

    def restore(
        self, abstract_state: TrainState, data_iter: Any = None, step: int | None = None
    ) -> TrainState | None:
        """The saved state at ``step`` (default: the latest readable one), laid out as ``abstract_state``.

        ``abstract_state`` is a :class:`TrainState` whose array leaves are ``jax.ShapeDtypeStruct``
        with ``.sharding`` (see :func:`abstract_train_state`) or concrete arrays (their sharding is
        used); the arrays are restored directly onto those shardings, whatever the device count of
        the run that wrote them. Static fields are taken from ``abstract_state``. If ``data_iter``
        is given, its position is set to the one saved with the checkpoint.

        With ``step=None``, a checkpoint that cannot be read is skipped with a warning naming the
        step and the error, and the previous one is tried, and so on; returns ``None`` if there is
        no checkpoint at all and raises ``RuntimeError`` if there are checkpoints but none can be
        read (starting over silently would discard a run). The skipped steps are set aside by
        :meth:`set_aside_unreadable` (called by ``pretrain`` right after this, else by the next
        :meth:`save`). An explicit ``step`` is not skipped: its errors propagate
        (``FileNotFoundError`` if it does not exist). In a multi-process run every process must see
        the same files, or processes could fall back to different steps.
        """
        target = abstract_train_state(abstract_state)
        self.wait_until_finished()  # the step to read may still be being written
        if step is None and not self.all_steps():
            return None
        return self.first_readable(step, lambda s: self._restore_step(target, data_iter, s))

    def first_readable(self, step: int | None, read: Callable[[int], Any]) -> Any:
        """``read(step)``; with ``step=None``, ``read`` of the newest step for which it does not raise.

        The fallback policy shared by every reader: skip an unreadable checkpoint with a short
        warning (Orbax raises ``ValueError``, ``KeyError``, ``FileNotFoundError``,
        ``json.JSONDecodeError`` or a bare ``Exception`` from TensorStore, depending on what is
        damaged, so any exception counts; the full error is logged at DEBUG), and raise
        ``RuntimeError`` if none is readable. The skipped steps are remembered: a writable
        checkpointer sets them aside before its next save (:meth:`set_aside_unreadable`).
        """
        steps = self.all_steps()
        if step is not None:
            if step not in steps:
                raise FileNotFoundError(f"{self.directory}: no checkpoint for step {step}; saved steps: {steps}")
            return read(step)
        if not steps:
            raise FileNotFoundError(f"{self.directory}: no checkpoints")
        errors, skipped = [], []
        _quiet_failed_read_noise()
        for s in reversed(steps):
            try:
                value = read(s)
            except Exception as e:  # noqa: BLE001 -- whatever failed, an older step may be fine
                older = [t for t in steps if t < s]
                log.warning(
                    "checkpoint step %d in %s is unreadable (%s); falling back to %s",
                    s, self.directory, short_error(e), f"step {older[-1]}" if older else "nothing older",
                )
                log.debug("checkpoint step %d: full error", s, exc_info=e)
                errors.append(f"step {s}: {short_error(e)}")
                skipped.append(s)
                continue
            self._unreadable = sorted(skipped)
            return value
        raise RuntimeError(f"{self.directory}: no readable checkpoint among steps {steps}:\n" + "\n".join(errors))

    def unreadable_steps(self) -> list[int]:
        """The steps the last fallback skipped and that are not set aside yet (ascending)."""
        return list(self._unreadable)

    def set_aside_unreadable(self) -> list[Path]:
        """Move the step directories the last fallback found unreadable to ``<step>.corrupt-<time>``.

        They stay next to the good ones for inspection but leave Orbax's step listing, so the step
        trained again is saved anew (instead of being skipped as "already saved") and every later
        reader -- ``Codec.load``, ``info``, ``convert``, the next resume -- finds it rather than
        falling back again. Warns for each directory moved; returns the new paths (empty on other
        processes, and for a read-only checkpointer, which never changes anything).

        Multi-process runs: every process must call this (``pretrain`` does, right after
        :meth:`restore`); process 0 moves the directories, all wait at a barrier, then all re-read
        the directory. Every process sees the same files, so all fell back to the same step.
        """
        if self.read_only:
            return []
        pending, self._unreadable = self._unreadable, []
        moved: list[Path] = []
        if pending and jax.process_index() == 0:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for step in pending:
                src = self._step_dir(step)
                if not src.exists():
                    continue
                dst = src.with_name(f"{src.name}{CORRUPT_SUFFIX}{stamp}")
                for n in itertools.count(1):
                    if not dst.exists():
                        break
                    dst = src.with_name(f"{src.name}{CORRUPT_SUFFIX}{stamp}-{n}")
                src.rename(dst)
                moved.append(dst)
                log.warning(
                    "moved the unreadable checkpoint step %d aside to %s (kept for inspection); "
                    "step %d will be written anew when training reaches it again",
                    step, dst, step,
                )
        if jax.process_count() > 1:
            ocp.multihost.sync_global_processes(f"biocodec_jax_set_aside_unreadable_{next(_barrier_ids)}")
        if pending or jax.process_count() > 1:
            self._manager.reload()
        return moved

    def _restore_step(self, target: TrainState, data_iter: Any, step: int) -> TrainState:
        items = {STATE_ITEM: ocp.args.StandardRestore(_array_tree(target))}
        if data_iter is not None:
            if (self._step_dir(step) / DATA_ITER_ITEM).exists():
                _, restore_iter = _grain_args()
                items[DATA_ITER_ITEM] = restore_iter(data_iter)
            else:
                log.warning("checkpoint step %d has no data-iterator state; the iterator is left where it is", step)
        arrays = self._manager.restore(step, args=ocp.args.Composite(**items))[STATE_ITEM]
        if int(arrays["step"]) != step:
            raise ValueError(f"checkpoint directory {step} holds a state at step {int(arrays['step'])}")
        return target.replace(**arrays)

    def _step_dir(self, step: int) -> Path:
        name_format = ocp.step.standard_name_format()
        return location(str(ocp.step.build_step_path(self._manager.directory, name_format, step)))

    def restore_config(self, step: int | None = None) -> Config:
        """The config saved with ``step`` (default: the latest step whose config is readable)."""
        return self.first_readable(step, self._read_config)

    def _read_config(self, step: int) -> Config:
        restored = self._manager.restore(step, args=ocp.args.Composite(**{CONFIG_ITEM: ocp.args.JsonRestore()}))
        return config_lib.from_dict(dict(restored[CONFIG_ITEM]))

    def restore_params(self, step: int | None = None) -> tuple[Config, Any, Any, int]:
        """``(config, params, codebooks, step)`` of ``step`` (default: the latest readable one).

        What inference needs: only the parameters and codebooks are read (not the optimiser
        state), as single-device (replicated) arrays, with the config stored in the checkpoint.
        """
        return self.first_readable(step, self._read_params)

    def _read_params(self, step: int) -> tuple[Config, Any, Any, int]:
        config = self._read_config(step)
        _, params = model_lib.abstract_model(config.codec)
        codebooks = jax.eval_shape(lambda: model_lib.init_codebooks(config.codec))
        sharding = _replicated_sharding()
        target = jax.tree.map(lambda x: _abstract_leaf(x, sharding), {"params": params, "codebooks": codebooks})
        # PyTreeRestore (the handler StandardSave wraps) can read a subset of the saved tree.
        args = ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True
        )
        restored = self._manager.restore(step, args=ocp.args.Composite(**{STATE_ITEM: args}))[STATE_ITEM]
        return config, restored["params"], restored["codebooks"], step

    # --- preemption and lifetime -------------------------------------------------------------

    def reached_preemption(self, step: int) -> bool:
        """Whether this step is the agreed preemption sync point (JAX caught SIGTERM): save now.

        All processes get the same answer for the same step, so all of them save; only meaningful
        in a ``jax.distributed`` run (always False otherwise).
        """
        return self._manager.reached_preemption(step)

    def wait_until_finished(self) -> None:
        """Block until any asynchronous save has been written and committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release Orbax's resources."""
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def restore_config(directory: str | Path, step: int | None = None) -> Config:
    """The :class:`Config` stored with a checkpoint in ``directory`` (a workdir or its ``checkpoints/``)."""
    with Checkpointer(_existing_checkpoints_dir(directory), read_only=True, async_save=False) as ckpt:
        return ckpt.restore_config(step)


def _existing_checkpoints_dir(directory: str | Path) -> Path:
    path = checkpoints_dir(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory")
    return path


def restore_params(directory: str | Path, step: int | None = None) -> tuple[Config, Any, Any, int]:
    """``(config, params, codebooks, step)`` from a workdir or checkpoints directory: what inference needs.

    See :meth:`Checkpointer.restore_params`; unreadable latest checkpoints are skipped with a
    warning as in :meth:`Checkpointer.restore`. Used by ``Codec.load(workdir)``.
    """
    with Checkpointer(_existing_checkpoints_dir(directory), read_only=True, async_save=False) as ckpt:
        return ckpt.restore_params(step)
