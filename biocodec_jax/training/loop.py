"""The pretraining job: Grain batches -> data-parallel ``train_step`` -> metrics and Orbax checkpoints.

>>> pretrain(load_config("experiments/configs/pretrain_eeg.yaml"), "runs/eeg")

Every process of a multi-host job runs this same function (after
:func:`~biocodec_jax.training.parallel.initialize_distributed`). What it does, in order:

1. the resolved config (``config.yaml``) and the preparation of the training data
   (``preprocessing.json``, from the shards' manifest; ``Codec.load`` and ``tokenize`` use it)
   into ``workdir``; a mesh over all devices of all hosts; the Grain iterator over
   ``config.train.data`` giving this process its share of every global batch;
2. resume from the latest readable checkpoint in ``workdir/checkpoints`` (parameters,
   codebooks, optimiser state, step, RNG and the iterator's position), onto however many devices
   this run has (newer unreadable ones are moved aside to ``<step>.corrupt-<time>`` with a
   warning, and trained again); or start afresh: k-means codebooks from the first global batch,
   which is then also the first training batch (as in the original, where k-means runs inside the
   first step);
3. steps until ``config.train.steps``; every ``log_every`` steps metrics (with throughput and
   codebook health: dead codes and perplexity per quantizer) to ``metrics.jsonl`` and TensorBoard
   from process 0; every ``eval_every`` steps validation on held-out shards (loss, correlation,
   SI-SDR); every ``checkpoint_every`` steps an asynchronous checkpoint (the last K and the best by
   validation loss are kept), and one at the end;
4. SIGTERM (preemption): the step in flight finishes, a checkpoint is written, the job exits
   cleanly (:class:`Preempted` carries the step); a non-finite loss stops the run
   (:class:`NonFiniteLoss`) before anything is saved, so the last good checkpoint stays intact.

``workdir`` may be a ``gs://`` URL: the config, checkpoints (Orbax's GCS support) and metrics
(staged locally and uploaded, see :mod:`biocodec_jax.training.logging`) go to the bucket, and a
run resumes from it. ``train.data`` must be local (or a gcsfuse mount): ArrayRecord reads local files.

Runs are deterministic: the same config, data and device count give the same losses, with or
without an interruption in between.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from biocodec_jax.storage import PREPROCESSING_FILE
from biocodec_jax.config import Config, save_config
from biocodec_jax.quantization.codebook import dead_code_count, perplexity
from biocodec_jax.training import parallel
from biocodec_jax.training.checkpointing import CHECKPOINTS_DIR, Checkpointer, abstract_train_state, location
from biocodec_jax.training.logging import MetricsLogger
from biocodec_jax.training.state import TrainState
from data_pipelines import paths
from data_pipelines.loader import local_shard_dir, make_train_iterator, split_size
from data_pipelines.manifest import MANIFEST, read_manifest

log = logging.getLogger(__name__)

class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving the broken state."""

    def __init__(self, step: int, metrics: dict[str, float], last_checkpoint: int | None):
        self.step = step
        where = f"step {last_checkpoint}" if last_checkpoint is not None else "none yet"
        super().__init__(
            f"non-finite loss at step {step} ({', '.join(f'{k}={v:.4g}' for k, v in sorted(metrics.items()))}); "
            f"stopped without saving. Last good checkpoint: {where}. Lower the learning rate or check the data."
        )


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint of ``step`` was written and the run stopped cleanly."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"preempted: checkpoint saved at step {step}; re-run the same command to resume")


@dataclass
class RunResult:
    """What :func:`pretrain` did: the last step, the losses of the steps it ran, and where it started."""

    step: int
    start_step: int
    losses: dict[int, float] = field(default_factory=dict)
    last_eval: dict[str, float] = field(default_factory=dict)


class _TermFlag:
    """SIGTERM -> a flag the loop reads at the next step boundary (single-process runs).

    Multi-process runs use JAX's own preemption notice through Orbax (``reached_preemption``),
    which also makes every process stop at the same step.
    """

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.raised = True
        log.warning("SIGTERM received: saving at the end of this step")

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def codebook_health(state: TrainState) -> dict[str, float]:
    """Dead codes (EMA count below the threshold) and usage perplexity, per quantizer."""
    counts = state.codebooks.cluster_size
    dead = np.asarray(dead_code_count(state.codebooks, state.config.codec.dead_code_threshold))
    ppl = np.asarray(perplexity(counts))
    out = {}
    for q in range(dead.shape[0]):
        out[f"dead_codes_q{q}"] = float(dead[q])
        out[f"perplexity_q{q}"] = float(ppl[q])
    return out


def evaluate(state: TrainState, eval_fn, config: Config, mesh) -> dict[str, float]:
    """Mean validation metrics over ``eval_batches`` global batches of the ``val`` split."""
    data = config.train.data
    try:
        n = split_size(data, "val")
    except ValueError:  # no validation split
        return {}
    batches = min(config.train.eval_batches, n // config.train.batch_size)
    if batches == 0:
        return {}
    # A fixed shuffled sample of whole global batches: equal shares on every host, same every time.
    it = make_train_iterator(data, global_batch_size=config.train.batch_size, seed=0, split="val", num_epochs=1)
    sums: dict[str, float] = {}
    try:
        for _ in range(batches):
            metrics = eval_fn(state, parallel.global_batch(next(it), mesh))
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
    finally:
        it.close()
    return {f"val_{k}" if k != "loss" else "val_loss": v / batches for k, v in sums.items()}


def with_data_window(config: Config, manifest: dict, where: str | Path) -> Config:
    """``config`` training on the windows of the shards whose manifest (read from ``where``) is ``manifest``.

    The shards decide the window: ``train.window_seconds`` None becomes theirs. A window the config
    names and the shards do not have, or shards at another rate than the codec's (its architecture
    is built for its rate), is a ValueError naming both values, the manifest and what to write instead.
    """
    rate, samples = float(manifest["sample_rate"]), int(manifest["window_samples"])
    codec_rate = config.codec.sample_rate
    if rate != float(codec_rate):
        raise ValueError(
            f"{where}: the shards are at {rate:g} Hz but the codec ({config.preset} preset) is at {codec_rate} Hz "
            f"(codec.sample_rate): train a codec of their rate (the emg preset is 1000 Hz, eeg and tiny 250 Hz), or "
            f"prepare the recordings at {codec_rate} Hz (biocodec-jax prepare ... --set sample_rate={codec_rate})"
        )
    shards_seconds = samples / rate
    if config.train.window_seconds is None:
        return dataclasses.replace(config, train=dataclasses.replace(config.train, window_seconds=shards_seconds))
    window = config.train.window_samples(codec_rate)
    if window != samples:
        raise ValueError(
            f"{where}: the shards hold {samples}-sample windows ({shards_seconds:g} s at {rate:g} Hz) but "
            f"train.window_seconds={config.train.window_seconds:g} asks for {window}: leave train.window_seconds out "
            f"(the shards decide; or --set train.window_seconds={shards_seconds:g}), or prepare the recordings for "
            f"{config.train.window_seconds:g}-s windows (biocodec-jax prepare ... --set window_seconds="
            f"{config.train.window_seconds:g})"
        )
    return config


def pretrain(
    config: Config,
    workdir: str | Path,
    *,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> RunResult:
    """Train (or resume training) ``config`` in ``workdir``; see the module docstring.

    ``on_step(step, metrics)`` is called after every step with the step just completed and its
    metrics as floats (a hook for callers; the loop itself never needs it). Raises
    :class:`Preempted` after a SIGTERM (checkpoint written) and :class:`NonFiniteLoss`.
    """
    if not config.train.data:
        raise ValueError("no training data: set train.data (or --data) to a `biocodec-jax prepare` output")
    local_shard_dir(config.train.data)  # a gs:// URL: ValueError saying to mount it (gcsfuse), before any work
    manifest = read_manifest(config.train.data)
    config = with_data_window(config, manifest, Path(config.train.data) / MANIFEST)
    tcfg = config.train
    if tcfg.precision == "float64":
        jax.config.update("jax_enable_x64", True)
    workdir = location(workdir)  # a local path or a gs:// URL (every file below goes through epath / Orbax)
    lead = jax.process_index() == 0
    if lead:
        workdir.mkdir(parents=True, exist_ok=True)
        save_config(config, workdir / "config.yaml")  # with the window the run trains on
        # Stored with the run so that a codec loaded from it tokenizes recordings as its data was prepared.
        paths.write_text(workdir / PREPROCESSING_FILE, json.dumps(manifest["config"], indent=2) + "\n")
    mesh = parallel.make_mesh()
    parallel.check_batch_size(tcfg.batch_size, mesh)
    data_iter = make_train_iterator(
        tcfg.data, global_batch_size=tcfg.batch_size, seed=tcfg.seed, worker_count=tcfg.loader_workers
    )
    checkpointer = Checkpointer(workdir / CHECKPOINTS_DIR, keep=tcfg.keep_checkpoints, async_save=tcfg.async_checkpointing)
    metrics_log = MetricsLogger(workdir, enabled=lead)
    try:
        state = checkpointer.restore(abstract_train_state(config, parallel.replicated(mesh)), data_iter)
        # Unreadable newer steps the restore skipped: moved aside now (every process calls this), so
        # the steps trained again are saved anew and later readers find them, not the fallback.
        checkpointer.set_aside_unreadable()
        pending_first = None
        if state is None:
            pending_first = parallel.global_batch(next(data_iter), mesh)
            state = parallel.init_sharded_state(config, jax.random.PRNGKey(tcfg.seed), pending_first, mesh)
            log.info("new run in %s: %d devices, %d processes", workdir, mesh.devices.size, jax.process_count())
        else:
            log.info("resumed %s at step %d on %d devices", workdir, int(state.step), mesh.devices.size)
        result = _run(
            config, state, data_iter, pending_first, mesh, checkpointer, metrics_log, on_step, progress and lead
        )
        checkpointer.wait_until_finished()
        return result
    finally:
        metrics_log.close()
        checkpointer.close()
        data_iter.close()


def _run(config, state, data_iter, pending_first, mesh, checkpointer, metrics_log, on_step, progress) -> RunResult:
    tcfg = config.train
    train_fn = parallel.parallel_train_step(mesh)
    eval_fn = parallel.parallel_eval_step(mesh)
    start = int(state.step)
    result = RunResult(step=start, start_step=start)
    bar = None
    if progress:
        bar = tqdm(total=tcfg.steps, initial=start, desc="pretrain", unit="step", dynamic_ncols=True)
    window_clock, window_steps = time.perf_counter(), 0
    multi = jax.process_count() > 1
    with _TermFlag() as term:
        try:
            for step in range(start + 1, tcfg.steps + 1):
                batch = pending_first if pending_first is not None else parallel.global_batch(next(data_iter), mesh)
                pending_first = None
                new_state, metrics = train_fn(state, batch)
                metrics = {k: float(v) for k, v in metrics.items()}
                if not math.isfinite(metrics["loss"]):
                    raise NonFiniteLoss(step, metrics, checkpointer.latest_step())
                state = new_state
                result.step = step
                result.losses[step] = metrics["loss"]
                window_steps += 1
                if bar is not None:
                    bar.update(1)
                if step % tcfg.log_every == 0 or step == tcfg.steps:
                    elapsed = time.perf_counter() - window_clock
                    metrics["windows_per_s"] = window_steps * tcfg.batch_size / max(elapsed, 1e-9)
                    metrics_log.write(step, {**metrics, **codebook_health(state)}, split="train")
                    if bar is not None:
                        bar.set_postfix(loss=f"{metrics['loss']:.3f}", wps=f"{metrics['windows_per_s']:.0f}")
                    window_clock, window_steps = time.perf_counter(), 0
                eval_metrics = None
                if tcfg.eval_every and (step % tcfg.eval_every == 0 or step == tcfg.steps):
                    eval_metrics = evaluate(state, eval_fn, config, mesh)
                    if eval_metrics:
                        metrics_log.write(step, eval_metrics, split="val")
                        result.last_eval = eval_metrics
                if on_step is not None:
                    on_step(step, metrics)
                preempted = checkpointer.reached_preemption(step) if multi else term.raised
                if step % tcfg.checkpoint_every == 0 or step == tcfg.steps or preempted:
                    checkpointer.save(state, data_iter, metrics=eval_metrics, force=preempted or step == tcfg.steps)
                if preempted:
                    checkpointer.wait_until_finished()
                    raise Preempted(step)
        finally:
            if bar is not None:
                bar.close()
    return result
