"""The quick-start demo: the product's own path, from the bundled EEG recordings to tokens and a probe.

    python -m experiments.quickstart            # or: biocodec-jax demo (all of the config's steps)
    python -m experiments.quickstart --minutes 2 --output runs/demo2   # an explicit time budget

What it does, one function a step, each calling the library function a user would:

1. :func:`prepare_shards`: ``data_pipelines.prepare`` (= ``biocodec-jax prepare``) turns the bundled
   PhysioNet EEG Motor Movement/Imagery recordings (``data/eegmmidb``, S001-S004, run R04) into
   shards of single-channel 5-s windows at 250 Hz, robust-normalised and clipped, with the
   ``eeg`` prepare preset and ``experiments/configs/demo_prepare.yaml``. The split is by subject:
   S004 is the validation (held-out) split, never trained on.
2. :func:`train`: ``biocodec_jax.training.pretrain`` (= ``biocodec-jax pretrain``, the loop a pod
   job runs: Grain batches, k-means codebooks on the first batch, the data-parallel step, Orbax
   checkpoints, its progress bar) for the config's ``train.steps`` (160). A time budget
   (``--minutes``) is opt-in; it stops the loop the way a preemption does (a checkpoint of the
   last step, then a clean stop), says so loudly, at the cut and in the final summary, and
   ``metrics.json`` records ``steps_planned``, ``steps_done`` and ``cut_by_budget`` (its held-out
   numbers are then not those of the README, which hold for all 160 steps).
3. ``Codec.load`` of the training run, saved as ``OUTPUT/codec`` (with the preparation of its
   data, which ``tokenize`` uses); :func:`evaluate` codes every window of the held-out split,
   read from the shards through the Grain loader, with all quantizers and with fewer (lower
   bitrate): Pearson correlation and SI-SDR (:mod:`biocodec_jax.signal_metrics`).
4. :func:`tokenizer_round_trip` takes the held-out recording files through ``codec.tokenize`` /
   ``codec.detokenize`` and correlates the result with the files in volts; ``report/``
   (:func:`biocodec_jax.reports.write_report`) on the first held-out recording: signals,
   spectra, bands, per-channel metrics, codebook usage, quality vs bitrate.
5. :func:`downstream_probe`: a linear probe on the codec's embeddings of the left- vs right-fist
   imagery epochs (T1/T2) of the same runs (``experiments.tasks.eegmmi``'s loader and
   :func:`biocodec_jax.evaluation.run_evaluation`): trained on the training subjects, C chosen on
   the last of them, tested on S004, beside chance level.

The optimiser settings come from ``experiments/configs/demo_eeg.yaml``; the architecture is the
``eeg`` preset unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from biocodec_jax import Codec
from biocodec_jax import config as config_lib
from biocodec_jax.evaluation.runner import EvalConfig, run_evaluation
from biocodec_jax.evaluation.splits import fixed_split
from biocodec_jax.reports import write_report
from biocodec_jax.signal_metrics import correlation, si_sdr
from biocodec_jax.training.loop import Preempted, pretrain
from data_pipelines.config import PrepareConfig, load_prepare_config
from data_pipelines.loader import make_train_iterator, split_size
from data_pipelines.prepare import prepare
from data_pipelines.readers import read_raw
from experiments.tasks import eegmmi

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data" / "eegmmidb"
CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIGS / "demo_eeg.yaml"
DEFAULT_PREPARE = CONFIGS / "demo_prepare.yaml"
DEFAULT_OUTPUT = Path("runs/demo")
DATASET = "eegmmidb"  # the layout adapter of data_pipelines.datasets
HELDOUT_SUBJECTS = ("S004",)
SHARDS_DIR, RUN_DIR, CODEC_DIR, REPORT_DIR, PROBE_DIR = "shards", "run", "codec", "report", "probe"
PROGRESS_EVERY_S = 15.0  # a log file (CI, nohup) gets a progress line this often
EVAL_N_QS = (1, 2, 4, 6)
EVAL_BATCH = 256


# --- configuration ---------------------------------------------------------------------------


def load_demo_config(path: str | Path = DEFAULT_CONFIG, preset: str | None = None, overrides: Sequence[str] = ()):
    """The demo's :class:`~biocodec_jax.config.Config`: ``path`` (YAML), optionally on another preset.

    ``preset`` replaces the file's ``preset:`` key (e.g. ``tiny`` for a smoke test), keeping its
    other sections; ``overrides`` are ``section.key=value`` strings applied last.
    """
    return config_lib.load_config(path, tuple(overrides), preset_name=preset)


def demo_prepare_config(config, path: str | Path = DEFAULT_PREPARE) -> PrepareConfig:
    """The ``eeg`` prepare preset with ``path`` (the split) at ``config``'s rate, window and clip.

    The demo makes its own data, so the training config decides the windows once (250 Hz, 5 s for
    the ``eeg`` preset, 1 s for ``tiny``) and the shards carry them to ``pretrain``.
    """
    prep = load_prepare_config("eeg", path)
    return dataclasses.replace(
        prep, sample_rate=float(config.codec.sample_rate), window_seconds=config.train.window_seconds, clip=config.train.clip
    )


# --- 1. data ---------------------------------------------------------------------------------


def prepare_shards(
    config, output: str | Path, data_dir: str | Path = DATA_DIR, *, prepare_config: str | Path = DEFAULT_PREPARE,
    heldout_subjects: Sequence[str] = HELDOUT_SUBJECTS, progress: bool = True,
) -> dict:
    """``data_pipelines.prepare`` of the recordings under ``data_dir`` into ``output``; the manifest.

    A re-run into the same ``output`` with the same config finds the shards done and reads
    nothing (``prepare`` resumes). Raises ValueError unless the validation split is exactly
    ``heldout_subjects`` (the demo's held-out numbers are those of S004) and the training split
    is not empty, and FileNotFoundError if no recording was found.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir() or not any(data_dir.rglob("*.edf")):
        raise FileNotFoundError(
            f"no .edf recordings under {data_dir}; the demo expects the bundled data/eegmmidb "
            "(run from a checkout of the repository, or pass --data DIR)"
        )
    manifest = prepare(data_dir, output, demo_prepare_config(config, prepare_config), dataset=DATASET, progress=progress)
    splits = manifest["splits"]
    val = tuple(sorted(splits.get("val", {}).get("subjects", ())))
    train = tuple(sorted(splits.get("train", {}).get("subjects", ())))
    wanted = tuple(sorted(s.upper() for s in heldout_subjects))
    if val != wanted or not train:
        raise ValueError(
            f"{output}: prepare held out {list(val) or 'no subject'} and trains on {list(train) or 'nothing'}; the demo "
            f"holds out {list(wanted)} (val_fraction and seed in {prepare_config} choose it, among the subjects of {data_dir})"
        )
    return manifest


def split_windows(shards: str | Path, split: str = "val", batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Every window of ``split`` once, float32 ``[N, 1, T]``, through the Grain loader.

    The loader's one-epoch stream (shuffled with seed 0: the order does not matter for means over
    windows, and the training loop's own validation reads the split the same way).
    """
    it = make_train_iterator(
        shards, global_batch_size=batch_size, seed=0, split=split, num_epochs=1, drop_remainder=False,
        process_index=0, process_count=1,
    )
    try:
        windows = np.concatenate(list(it))
    finally:
        it.close()
    assert len(windows) == split_size(shards, split)
    return windows


def training_batches(shards: str | Path, batch_size: int, steps: int, seed: int) -> list[np.ndarray]:
    """The first ``steps`` training batches ``[batch_size, 1, T]`` exactly as ``pretrain`` draws them
    (same loader, seed and batch size; one process), for benchmarks that replay the demo's run."""
    it = make_train_iterator(shards, global_batch_size=batch_size, seed=seed, process_index=0, process_count=1)
    try:
        return [np.ascontiguousarray(next(it), dtype=np.float32) for _ in range(steps)]
    finally:
        it.close()


def heldout_recordings(manifest: dict, data_dir: str | Path) -> list[Path]:
    """The files of the held-out (``val``) split, in manifest order."""
    root = Path(manifest.get("input") or data_dir)
    return [root / r["path"] for r in manifest["recordings"] if r["split"] == "val"]


# --- 2. training -----------------------------------------------------------------------------


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` saw of the ``pretrain`` run, step by step."""

    history: dict[str, list[float]]  # per-step metrics of the steps this call ran
    seconds: float  # the whole pretrain call: setup, k-means init, compilation, steps, checkpoints
    first_step_seconds: float  # from the call to the end of its first step (init and compilation)
    windows_per_second: float  # after the first step
    start_step: int = 0  # > 0 when an earlier run in the same workdir was resumed
    last_step: int = 0
    steps_planned: int = 0
    budget_seconds: float | None = None  # the time budget, if one was set

    @property
    def steps_done(self) -> int:
        return self.last_step

    @property
    def cut_by_budget(self) -> bool:
        """Whether the time budget stopped training before ``steps_planned``."""
        return self.steps_done < self.steps_planned


def budget_message(steps_done: int, steps_planned: int, budget_seconds: float | None) -> str | None:
    """The warning for a run its time budget cut short (``None`` if it ran all its steps)."""
    if steps_done >= steps_planned:
        return None
    budget = f" of {budget_seconds / 60:g} min" if budget_seconds is not None else ""
    return (
        f"WARNING: the time budget{budget} (--minutes) stopped training after {steps_done} of {steps_planned} "
        f"steps: the codec is under-trained, and its held-out numbers are NOT comparable with a full run's "
        f"(the README's are for all steps, no --minutes). Drop --minutes to train every step."
    )


def _eta(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


def check_resumable(workdir: Path, config) -> None:
    """Refuse to continue a training run of another config in ``workdir`` (pretrain would resume it)."""
    saved = workdir / "config.yaml"
    if (workdir / "checkpoints").is_dir() and saved.is_file():
        if config_lib.load_config(saved) != config:
            raise ValueError(
                f"{workdir} holds a training run of another config; use a new --output (or delete {workdir}) "
                "to train afresh"
            )


def train(config, workdir: str | Path, *, max_seconds: float | None = None, progress: bool = True) -> TrainResult:
    """``pretrain(config, workdir)``, watched step by step; see the module docstring.

    ``max_seconds`` (opt-in) is a time budget counted from the call (k-means init and
    compilation included): at the first step that ends past it, with steps left, the demo raises
    SIGTERM in its own process, which ``pretrain`` handles as a preemption (it finishes the step,
    writes a checkpoint and stops), so the cut run is an ordinary resumable run. At least one step
    is always taken. Progress: ``pretrain``'s bar on a terminal; in a log file a line every 15 s.
    A run already at ``train.steps`` in ``workdir`` is resumed and ends at once.
    """
    if max_seconds is not None:
        if max_seconds <= 0:
            raise ValueError(f"the time budget must be positive; got {max_seconds} s")
        if threading.current_thread() is not threading.main_thread():
            # pretrain takes SIGTERM only in the main thread; elsewhere the signal would kill the process.
            raise RuntimeError("a time budget (--minutes) needs the demo to run in the main thread")
    planned = config.train.steps
    interactive = sys.stderr.isatty()
    history: dict[str, list[float]] = {}
    clock = {"t0": time.perf_counter(), "first": None, "line": 0.0, "start": None, "last": 0}

    def on_step(step: int, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        for k, v in metrics.items():
            history.setdefault(k, []).append(v)
        clock["last"] = step
        if clock["first"] is None:
            clock["first"], clock["line"], clock["start"] = now, now, step - 1
            if progress and not interactive:
                print(f"training: step {step}/{planned} took {now - clock['t0']:.0f} s (init and compilation included)",
                      file=sys.stderr, flush=True)
        elif progress and not interactive and (now - clock["line"] >= PROGRESS_EVERY_S or step == planned):
            pace = (now - clock["first"]) / (step - clock["start"] - 1)  # steady state: the first step compiles
            print(
                f"training: step {step}/{planned}, loss {metrics['loss']:.3f}, corr {metrics['corr']:.3f}, "
                f"{pace:.2f} s/step, elapsed {_eta(now - clock['t0'])}, ETA {_eta(pace * (planned - step))}",
                file=sys.stderr, flush=True,
            )
            clock["line"] = now
        if max_seconds is not None and step < planned and now - clock["t0"] >= max_seconds:
            print(budget_message(step, planned, max_seconds), file=sys.stderr, flush=True)
            signal.raise_signal(signal.SIGTERM)  # -> pretrain: checkpoint this step, then Preempted

    try:
        run = pretrain(config, workdir, on_step=on_step, progress=progress and interactive)
        start, last = run.start_step, run.step
    except Preempted as stop:
        if max_seconds is None:
            raise  # a real SIGTERM: the run is resumable, let the caller see it
        start, last = clock["start"] or 0, stop.step
    seconds = time.perf_counter() - clock["t0"]
    ran = last - start
    steady = None if clock["first"] is None else time.perf_counter() - clock["first"]
    wps = (ran - 1) * config.train.batch_size / steady if ran > 1 and steady else float("nan")
    first = float("nan") if clock["first"] is None else clock["first"] - clock["t0"]
    return TrainResult(history, seconds, first, wps, start_step=start, last_step=last, steps_planned=planned,
                       budget_seconds=max_seconds)


# --- 3. evaluation ---------------------------------------------------------------------------


def padded_batches(windows: np.ndarray, batch_size: int):
    """``(start, m, x)`` for consecutive batches of ``windows``: ``x`` holds the ``m`` windows from
    ``start``, the last batch zero-padded to ``batch_size`` so that every call has one compiled shape."""
    for start in range(0, len(windows), batch_size):
        x = windows[start : start + batch_size]
        m = len(x)
        if m < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - m, *x.shape[1:]), x.dtype)])
        yield start, m, x


def reconstruct_all(codec, windows: np.ndarray, n_qs: Sequence[int], batch_size: int = EVAL_BATCH) -> dict[int, np.ndarray]:
    """Reconstructions ``{n_q: [N, 1, T]}`` of ``windows`` with the first ``n_q`` quantizers.

    Encodes each batch once with all quantizers and decodes the first ``n_q`` code levels: the
    residual quantizer's first ``k`` codes do not depend on later ones, so this equals
    ``codec.reconstruct(x, n_q=k)`` for every ``k`` at the cost of one encoder pass.
    The last batch is padded to ``batch_size`` so every call has one compiled shape.
    """
    t = windows.shape[-1]
    out = {k: np.empty_like(windows) for k in n_qs}
    for start, m, x in padded_batches(windows, batch_size):
        codes = codec.encode(x)
        for k in n_qs:
            y = codec.decode(codes[:, :, :k])
            out[k][start : start + m] = np.asarray(y[:m, :, :t])
    return out


def quality(reference: np.ndarray, estimate: np.ndarray) -> dict[str, np.ndarray]:
    """Per-item Pearson correlation and SI-SDR (dB) of ``[N, 1, T]`` arrays."""
    x = reference.reshape(-1, reference.shape[-1])
    y = estimate.reshape(-1, estimate.shape[-1])
    return {"corr": np.asarray(correlation(x, y)), "si_sdr": np.asarray(si_sdr(x, y))}


def evaluate(codec, windows: np.ndarray, n_qs: Sequence[int] = EVAL_N_QS, batch_size: int = EVAL_BATCH) -> dict:
    """Mean/median correlation and SI-SDR of ``codec`` on ``windows`` for each ``n_q``.

    ``n_qs`` outside ``1..codec.n_q`` are skipped and ``codec.n_q`` is always included.
    ``metrics[str(n_q)]`` holds the numbers and the bitrate in bits per second per channel.
    """
    cfg = codec.codec_config
    n_qs = sorted({k for k in n_qs if 1 <= k <= cfg.n_q} | {cfg.n_q})
    recons = reconstruct_all(codec, windows, n_qs, batch_size)
    metrics = {}
    for k in n_qs:
        q = quality(windows, recons[k])
        metrics[str(k)] = {
            "corr_mean": float(np.mean(q["corr"])),
            "corr_median": float(np.median(q["corr"])),
            "si_sdr_mean": float(np.mean(q["si_sdr"])),
            "si_sdr_median": float(np.median(q["si_sdr"])),
            "bitrate_bps": k * float(np.log2(cfg.codebook_size)) * cfg.frame_rate,
        }
    return metrics


def tokenizer_round_trip(codec, recordings: Sequence[str | Path]) -> dict:
    """Whole recordings through ``codec.tokenize`` -> ``codec.detokenize``, compared with the file.

    Each recording is tokenized as a user would (the codec's stored preprocessing), decoded back to
    physical units at the recording's own rate and channel names, and correlated per channel with
    the recording as read (volts, no preprocessing). Agreement with :func:`evaluate`'s windowed
    numbers says the tokenizer's preparation and its way back (units, rate, names) are right.
    """
    per_recording, corrs = {}, []
    for path in recordings:
        original = read_raw(path)  # read once: tokenize works on a copy
        tokens = codec.tokenize(original, source=str(path))
        recon = codec.detokenize(tokens)
        assert recon.ch_names == list(tokens.channel_names)  # the file's own names
        x = original.get_data(picks=recon.ch_names)
        corr = np.asarray(correlation(x, recon.get_data()))
        corrs.append(corr)
        per_recording[Path(path).name] = {
            "channels": len(recon.ch_names),
            "sample_rate": recon.info["sfreq"],
            "seconds": float(recon.n_times / recon.info["sfreq"]),
            "corr_mean": float(np.mean(corr)),
            "corr_median": float(np.median(corr)),
        }
    corrs = np.concatenate(corrs)
    return {"recordings": per_recording, "corr_mean": float(np.mean(corrs)), "corr_median": float(np.median(corrs))}


# --- 4. a downstream probe -------------------------------------------------------------------


def downstream_probe(codec, data_dir: str | Path, train_subjects: Sequence[str], test_subjects: Sequence[str],
                     output: str | Path | None = None, progress: bool = True) -> dict:
    """Left vs right fist imagery (T1 vs T2, 0-4 s epochs) from the codec's embeddings, by a linear probe.

    The ``eegmmi`` task's loader and preprocessing and the evaluation runner, on the bundled runs:
    the probe trains on ``train_subjects`` but the last (its ``C`` is chosen on that one) and is
    tested on ``test_subjects`` (the codec's held-out subject). Returns the test metrics, the
    chance level beside them, and the epoch counts; ``output`` gets the runner's results.md/json.
    """
    train_subjects = sorted(train_subjects)
    if len(train_subjects) < 2:
        raise ValueError(f"the probe needs two training subjects (one to choose C on); got {train_subjects}")
    with _quiet_missing_runs():
        data = eegmmi.load(data_dir, codec.sample_rate, "motor_imagery")
    split = fixed_split(train_subjects[:-1], train_subjects[-1:], test_subjects, name="demo")
    results = run_evaluation(
        data, {"held_out_subject": [split]}, codec, EvalConfig(methods=("linear_probe",), controls=(), seeds=1),
        output_dir=output, progress=progress,
        info={"task": "eegmmi", "variant": "motor_imagery", "data": str(data_dir)},
    )
    summary = results["results"]["held_out_subject"]["100%"]["linear_probe"]["summary"]
    test = np.isin(data.subjects, list(test_subjects))
    positives = float(np.mean(data.y[test] == 1))
    return {
        "task": "left vs right fist imagery (T1 vs T2), linear probe on the codec's time-averaged embeddings",
        "split": dataclasses.asdict(split),
        "epochs": {part: int(np.isin(data.subjects, list(getattr(split, part))).sum()) for part in ("train", "val", "test")},
        "test": {name: s["mean"] for name, s in summary.items()},
        # A classifier that ignores its input: balanced accuracy and AUROC 0.5, AUC-PR the positives' share.
        "chance": {"balanced_accuracy": 1.0 / data.n_classes, "auroc": 0.5, "auc_pr": positives},
    }


class _MissingRunFilter(logging.Filter):
    # The bundled data hold run R04 of each subject; the task's loader, written for the whole
    # dataset, names every absent imagery run (R08, R12): expected here, so not shown.
    def filter(self, record: logging.LogRecord) -> bool:
        return "is missing; skipping that run" not in record.getMessage()


@contextlib.contextmanager
def _quiet_missing_runs():
    logger, quiet = logging.getLogger(eegmmi.__name__), _MissingRunFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


# --- 5. outputs ------------------------------------------------------------------------------


def curve_summary(history: dict[str, list[float]], every: int) -> dict:
    """First/last values, the mean of the last 10 steps and a decimated curve of each metric."""
    every = max(int(every), 1)
    summary = {}
    for k, v in history.items():
        if not v:
            continue
        summary[k] = {
            "first": v[0],
            "last": v[-1],
            "last10_mean": float(np.mean(v[-10:])),
            "curve": [[i, v[i]] for i in range(0, len(v), every)] + ([[len(v) - 1, v[-1]]] if (len(v) - 1) % every else []),
        }
    return summary


# --- the demo --------------------------------------------------------------------------------


def run_demo(
    config_path: str | Path = DEFAULT_CONFIG,
    output: str | Path = DEFAULT_OUTPUT,
    minutes: float | None = None,
    steps: int | None = None,
    seed: int | None = None,
    data_dir: str | Path = DATA_DIR,
    preset: str | None = None,
    overrides: Sequence[str] = (),
    eval_n_qs: Sequence[int] = EVAL_N_QS,
    progress: bool = True,
    probe: bool = True,
) -> dict:
    """Prepare, pretrain, load, evaluate, tokenize, report and probe; returns the metrics of ``metrics.json``.

    Writes ``output/``: ``shards/`` (prepare), ``run/`` (pretrain's workdir: config, checkpoints,
    metrics.jsonl), ``codec/`` (the trained codec), ``config.yaml``, ``metrics.json``, ``report/``
    and ``probe/``. ``steps``: how many training steps (default: the config's ``train.steps``).
    ``minutes``: an opt-in time budget for training (default: none, every step is trained); if it
    cuts training short the demo warns at the cut and in its final summary, and ``metrics.json``
    says so (``steps_planned``, ``steps_done``, ``cut_by_budget``). ``seed`` defaults to the
    config's ``train.seed``. ``eval_n_qs``: the numbers of quantizers to evaluate (all of them
    are always included). ``probe=False`` skips the downstream probe.
    An earlier demo run of the same config in ``output`` is resumed (a finished one is not
    trained again); one of another config is an error.
    """
    t_start = time.perf_counter()
    output = Path(output)
    config = load_demo_config(config_path, preset, overrides)
    sets = [f"train.data={(output / SHARDS_DIR).absolute()}"]
    if steps is not None:
        sets.append(f"train.steps={steps}")
    if seed is not None:
        sets.append(f"train.seed={seed}")
    config = config_lib.apply_overrides(config, sets)
    max_steps = config.train.steps
    if max_steps < 1 or (minutes is not None and minutes <= 0):
        raise ValueError(f"need at least one step and a positive time budget; got steps={max_steps}, minutes={minutes}")
    workdir = output / RUN_DIR
    check_resumable(workdir, config)

    t0 = time.perf_counter()
    manifest = prepare_shards(config, output / SHARDS_DIR, data_dir, progress=progress)
    data_seconds = time.perf_counter() - t0
    splits = manifest["splits"]
    train_subjects, heldout_subjects = splits["train"]["subjects"], splits["val"]["subjects"]
    T = manifest["window_samples"]
    print(
        f"data: {splits['train']['windows']} training windows [1, {T}] from {', '.join(train_subjects)}; "
        f"{splits['val']['windows']} held-out windows from {', '.join(heldout_subjects)} "
        f"({manifest['sample_rate']:g} Hz, {T / manifest['sample_rate']:g} s; shards in {output / SHARDS_DIR}, "
        f"{data_seconds:.1f} s)"
    )

    budget = None if minutes is None else 60.0 * minutes
    print(
        f"training {max_steps} steps of {config.train.batch_size} windows in {workdir} "
        + ("(no time budget)" if budget is None else f"(time budget {minutes:g} min: may stop early)")
    )
    result = train(config, workdir, max_seconds=budget, progress=progress)
    n_steps = result.steps_done
    resumed = f", resumed at step {result.start_step}" if result.start_step else ""
    print(
        f"trained {n_steps} of {max_steps} steps ({n_steps * config.train.batch_size} windows{resumed}) in "
        f"{result.seconds:.0f} s (first step, with init and compilation, {result.first_step_seconds:.0f} s); "
        f"{result.windows_per_second:.1f} windows/s after compilation"
    )

    t0 = time.perf_counter()
    codec = Codec.load(workdir)  # the latest checkpoint, with the shards' preparation (preprocessing.json)
    codec_path = codec.save(output / CODEC_DIR)
    load_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    heldout = split_windows(output / SHARDS_DIR, "val")
    heldout_metrics = evaluate(codec, heldout, eval_n_qs)
    eval_seconds = time.perf_counter() - t0
    print(
        f"held-out subject {', '.join(heldout_subjects)} "
        f"({len(heldout)} single-channel {T / manifest['sample_rate']:g}-s windows):"
    )
    for k, m in heldout_metrics.items():
        print(
            f"  n_q={k} ({m['bitrate_bps']:.0f} bit/s): corr {m['corr_mean']:.3f} (median {m['corr_median']:.3f}), "
            f"SI-SDR {m['si_sdr_mean']:.2f} dB (median {m['si_sdr_median']:.2f})"
        )

    recordings = heldout_recordings(manifest, data_dir)
    t0 = time.perf_counter()
    round_trip = tokenizer_round_trip(codec, recordings)
    tokenize_seconds = time.perf_counter() - t0
    print(
        f"tokenize -> detokenize of the held-out recordings ({', '.join(round_trip['recordings'])}), "
        f"physical units at the recording's rate: corr {round_trip['corr_mean']:.3f} "
        f"(median {round_trip['corr_median']:.3f})"
    )
    # The quality report of the first held-out recording, as `biocodec-jax report` writes it.
    t0 = time.perf_counter()
    report_path = write_report(
        codec, recordings[0], output / REPORT_DIR, n_qs=[int(k) for k in heldout_metrics], codec_source=str(codec_path)
    )["markdown"]
    report_seconds = time.perf_counter() - t0

    probe_result, probe_seconds = None, 0.0
    if probe:
        t0 = time.perf_counter()
        probe_result = downstream_probe(codec, data_dir, train_subjects, heldout_subjects, output / PROBE_DIR, progress)
        probe_seconds = time.perf_counter() - t0
        test, chance = probe_result["test"], probe_result["chance"]
        print(
            f"probe, {probe_result['task']}: test {', '.join(heldout_subjects)} ({probe_result['epochs']['test']} epochs) "
            + ", ".join(f"{k} {v:.3f} (chance {chance[k]:.3f})" for k, v in test.items())
        )

    metrics = {
        "preset": config.preset,
        "seed": config.train.seed,
        "steps": n_steps,
        "steps_planned": max_steps,
        "steps_done": n_steps,
        "cut_by_budget": result.cut_by_budget,
        "budget_minutes": minutes,
        "resumed_at_step": result.start_step,
        "batch_size": config.train.batch_size,
        "train_windows_per_second": result.windows_per_second,
        "data": {
            "shards": str(output / SHARDS_DIR),
            "train_subjects": list(train_subjects),
            "heldout_subjects": list(heldout_subjects),
            "windows": {split: s["windows"] for split, s in splits.items()},
            "window_samples": T,
            "sample_rate": manifest["sample_rate"],
        },
        "train": curve_summary(result.history, config.train.log_every),
        "heldout": heldout_metrics,
        "tokenizer_round_trip": round_trip,
        "probe": probe_result,
        "seconds": {
            "prepare": data_seconds,
            "train": result.seconds,
            "train_first_step": result.first_step_seconds,
            "load": load_seconds,
            "eval": eval_seconds,
            "tokenize": tokenize_seconds,
            "report": report_seconds,
            "probe": probe_seconds,
        },
    }
    config_lib.save_config(config, output / "config.yaml")
    metrics["seconds"]["total"] = time.perf_counter() - t_start
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    written = [output / "config.yaml", output / "metrics.json", codec_path, report_path] + ([output / PROBE_DIR] if probe else [])
    print(f"wrote {', '.join(str(p) for p in written)}; total {metrics['seconds']['total']:.0f} s")
    if result.cut_by_budget:  # again, last: the numbers above are those of an under-trained codec
        print(budget_message(n_steps, max_steps, budget), file=sys.stderr, flush=True)
    return metrics


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The product's path on the bundled PhysioNet EEG: prepare shards, pretrain the EEG codec for a few\n"
        "minutes, load it, test it on a held-out subject (windows at 1-6 quantizers, the whole recording\n"
        "through tokenize/detokenize, a report) and probe it on a downstream task. Writes OUTPUT/shards/,\n"
        "run/, codec/, config.yaml, metrics.json, report/, probe/.",
        epilog="examples:\n"
        "  biocodec-jax demo                                # all 160 steps (~5 min on 2 idle CPU cores), into runs/demo\n"
        "  biocodec-jax demo --minutes 3 --output runs/demo3  # at most 3 min of training (warns if steps are cut)\n"
        "  biocodec-jax demo --output runs/lr3e-3 --set optim.learning_rate=3e-3\n"
        "  biocodec-jax demo --preset tiny --steps 2 --eval-n-q 1   # a smoke test in seconds",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--minutes", type=float, default=None, metavar="M",
        help="opt-in time budget for training, compilation included: stop after M minutes even if steps remain "
        "(warns, and metrics.json records cut_by_budget; default: no budget, train every step)",
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's train.steps)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output directory (default %(default)s)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="demo config YAML (default experiments/configs/demo_eeg.yaml)")
    parser.add_argument("--preset", default=None, help="replace the config's preset (e.g. tiny, for a smoke test)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. optim.learning_rate=3e-3 (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the config's train.seed)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder of eegmmidb .edf files (default: the bundled data/eegmmidb)")
    parser.add_argument(
        "--eval-n-q", type=int, nargs="+", default=list(EVAL_N_QS), metavar="K",
        help="quantizer counts to evaluate (default %(default)s; fewer = faster)",
    )
    parser.add_argument("--no-probe", action="store_true", help="skip the downstream probe")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (or, in a log file, progress lines)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point (``python -m experiments.quickstart`` and ``biocodec-jax demo``)."""
    args = build_parser(prog).parse_args(argv)
    run_demo(
        config_path=args.config,
        output=args.output,
        minutes=args.minutes,
        steps=args.steps,
        seed=args.seed,
        data_dir=args.data,
        preset=args.preset,
        overrides=args.overrides,
        eval_n_qs=args.eval_n_q,
        progress=not args.no_progress,
        probe=not args.no_probe,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
