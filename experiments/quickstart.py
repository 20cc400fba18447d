"""The quick-start demo: train the EEG codec for a few minutes on bundled real EEG, then test it.

    python -m experiments.quickstart            # or: biocodec-jax demo (all of the config's steps)
    python -m experiments.quickstart --minutes 2 --output runs/demo2   # an explicit time budget

What it does, one function a step:

1. :func:`prepare_data` reads the bundled PhysioNet EEG Motor Movement/Imagery recordings
   (``data/eegmmidb``), resamples them to the codec's rate (250 Hz), robust-normalises and clips
   each channel and cuts 5-s windows; every (window, channel) is one single-channel item
   ``[1, 1250]``, as the original codes channels independently. One subject (S004) is held out:
   the split is by subject, never by window.
2. :func:`train` initialises the ``eeg`` codec (k-means codebooks on the first batch) and runs
   the jitted ``train_step`` on shuffled batches for the config's ``train.steps`` (160), with a
   progress line and an ETA. A time budget (``--minutes``) is opt-in; a run it cuts short says
   so loudly, at the cut and in the final summary, and ``metrics.json`` records
   ``steps_planned``, ``steps_done`` and ``cut_by_budget`` (its held-out numbers are then not
   those of the README, which hold for all 160 steps).
3. :func:`evaluate` codes the held-out subject with the trained codec in inference mode and
   reports Pearson correlation and SI-SDR with all quantizers and with fewer (lower bitrate).
   :func:`tokenizer_round_trip` then takes the held-out recording files through
   ``codec.tokenize`` / ``codec.detokenize`` and correlates the result with the files in volts.
4. :func:`save_outputs` writes the resolved config, the codec (with the preparation of its
   training data, which ``tokenize`` uses), ``metrics.json`` and a plot of held-out input vs
   reconstruction; then ``report/`` (:func:`biocodec_jax.reports.write_report`) on the first
   held-out recording: spectra, bands, per-channel metrics, codebook usage, quality vs bitrate.

The optimiser settings come from ``experiments/configs/demo_eeg.yaml``; the architecture is the
``eeg`` preset unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data" / "eegmmidb"
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "demo_eeg.yaml"
DEFAULT_OUTPUT = Path("runs/demo")
HELDOUT_SUBJECTS = ("S004",)
PROGRESS_EVERY_S = 15.0  # a log file (CI, nohup) gets a progress line this often
EVAL_N_QS = (1, 2, 4, 6)
EVAL_BATCH = 256
PLOT_CHANNELS = ("C3", "CZ", "C4")

_SUBJECT = re.compile(r"(S\d{3})", re.IGNORECASE)


# --- configuration ---------------------------------------------------------------------------


def load_demo_config(path: str | Path = DEFAULT_CONFIG, preset: str | None = None, overrides: Sequence[str] = ()):
    """The demo's :class:`~biocodec_jax.config.Config`: ``path`` (YAML), optionally on another preset.

    ``preset`` replaces the file's ``preset:`` key (e.g. ``tiny`` for a smoke test), keeping its
    other sections; ``overrides`` are ``section.key=value`` strings applied last.
    """
    from biocodec_jax import config as config_lib

    if preset is None:
        return config_lib.load_config(path, overrides)
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    return config_lib.apply_overrides(config_lib.from_dict({**data, "preset": preset}), overrides)


# --- 1. data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoData:
    """Single-channel windows ``[N, 1, T]`` float32 of the training and held-out subjects."""

    train: np.ndarray
    heldout: np.ndarray
    heldout_channels: tuple[str, ...]  # the electrode of each held-out item
    train_subjects: tuple[str, ...]
    heldout_subjects: tuple[str, ...]
    windows_per_subject: dict[str, int] = field(default_factory=dict)  # single-channel windows
    preprocessing: dict = field(default_factory=dict)  # the prepare config, stored with the codec
    heldout_recordings: tuple[Path, ...] = ()


def subject_of(path: str | Path) -> str:
    """The PhysioNet subject id in a file name: ``S001R04.edf`` -> ``"S001"``."""
    match = _SUBJECT.search(Path(path).name)
    if match is None:
        raise ValueError(f"{path}: no subject id (S###) in the file name")
    return match.group(1).upper()


def find_recordings(data_dir: str | Path = DATA_DIR) -> dict[str, list[Path]]:
    """The ``.edf`` recordings under ``data_dir`` grouped by subject (sorted)."""
    data_dir = Path(data_dir)
    files = sorted(data_dir.rglob("*.edf"))
    if not files:
        raise FileNotFoundError(
            f"no .edf recordings under {data_dir}; the demo expects the bundled data/eegmmidb "
            "(run from a checkout of the repository, or pass --data DIR)"
        )
    by_subject: dict[str, list[Path]] = {}
    for f in files:
        by_subject.setdefault(subject_of(f), []).append(f)
    return dict(sorted(by_subject.items()))


def prepare_data(config, data_dir: str | Path = DATA_DIR, heldout_subjects: Sequence[str] = HELDOUT_SUBJECTS) -> DemoData:
    """Preprocess every recording at ``config``'s rate and window length and split by subject."""
    from data_pipelines import prepare_preset, recording_windows
    from data_pipelines.config import config_to_dict

    sample_rate = config.codec.sample_rate
    prep = dataclasses.replace(
        prepare_preset("eeg"), sample_rate=float(sample_rate), window_seconds=config.train.window_seconds, clip=config.train.clip
    )
    assert prep.window_samples == config.train.window_samples(sample_rate)
    recordings = find_recordings(data_dir)
    heldout_subjects = tuple(s.upper() for s in heldout_subjects)
    missing = sorted(set(heldout_subjects) - set(recordings))
    if missing:
        raise ValueError(f"held-out subject(s) {missing} not among the recordings {sorted(recordings)} in {data_dir}")
    train_subjects = tuple(s for s in recordings if s not in heldout_subjects)
    if not train_subjects:
        raise ValueError(f"every subject in {data_dir} is held out; nothing left to train on")

    train, heldout, heldout_channels, counts, heldout_paths = [], [], [], {}, []
    for subject, paths in recordings.items():
        for path in paths:
            rec = recording_windows(path, prep)
            items = rec.single_channel()
            counts[subject] = counts.get(subject, 0) + len(items)
            if subject in heldout_subjects:
                heldout.append(items)
                heldout_paths.append(Path(path))
                heldout_channels.extend(rec.channels * rec.windows.shape[0])  # window-major, as single_channel()
            else:
                train.append(items)
    return DemoData(
        train=np.concatenate(train),
        heldout=np.concatenate(heldout),
        heldout_channels=tuple(heldout_channels),
        train_subjects=train_subjects,
        heldout_subjects=heldout_subjects,
        windows_per_subject=counts,
        preprocessing=config_to_dict(prep),
        heldout_recordings=tuple(heldout_paths),
    )


def shuffled_batches(windows: np.ndarray, batch_size: int, seed: int):
    """Endless shuffled batches ``[batch_size, 1, T]``: a new permutation every epoch, remainder dropped."""
    if len(windows) < batch_size:
        raise ValueError(f"{len(windows)} training windows are fewer than one batch of {batch_size}")
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(windows))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield windows[np.sort(order[start : start + batch_size])]


# --- 2. training -----------------------------------------------------------------------------


@dataclass
class TrainResult:
    state: object  # biocodec_jax.training.TrainState
    history: dict[str, list[float]]  # per-step metrics
    seconds: float  # training loop, first (compiling) step included
    init_seconds: float  # parameter init + k-means codebooks
    windows_per_second: float  # after the first step
    steps_planned: int = 0
    budget_seconds: float | None = None  # the time budget, if one was set

    @property
    def steps_done(self) -> int:
        return len(self.history.get("loss", ()))

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


def train(
    config, windows: np.ndarray, *, max_steps: int, max_seconds: float | None = None, seed: int = 0, progress: bool = True
) -> TrainResult:
    """Train a fresh codec on ``windows`` ``[N, 1, T]`` for ``max_steps`` steps.

    ``max_seconds`` (opt-in) is a time budget for the loop, the first step's compilation included:
    training stops at the first step that ends past it (at least one step is always taken), with
    a loud warning on stderr; :attr:`TrainResult.cut_by_budget` tells. Progress: a bar with an ETA
    on a terminal, a line every 15 s (step, loss, s/step, ETA) in a log file.
    """
    import jax
    from tqdm.auto import tqdm

    from biocodec_jax.training import init_state, train_step

    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"the time budget must be positive; got {max_seconds} s")
    batches = shuffled_batches(windows, config.train.batch_size, seed)
    first = next(batches)
    t0 = time.perf_counter()
    state = init_state(config, jax.random.PRNGKey(seed), first)
    jax.block_until_ready(state.codebooks)
    init_seconds = time.perf_counter() - t0

    history: dict[str, list[float]] = {}
    batch = first
    t0 = time.perf_counter()
    t_after_first = None
    interactive = sys.stderr.isatty()
    bar = tqdm(
        total=max_steps, desc="training", unit="step", disable=not (progress and interactive), dynamic_ncols=True,
        mininterval=0.1,
    )
    last_line = t0
    try:
        for step in range(max_steps):
            state, metrics = train_step(state, batch)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            for k, v in metrics.items():
                history.setdefault(k, []).append(v)
            if not np.isfinite(metrics["loss"]):
                raise FloatingPointError(f"training diverged at step {step}: loss {metrics['loss']}")
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", corr=f"{metrics['corr']:.3f}")
            now = time.perf_counter()
            if t_after_first is None:
                t_after_first = now
            done = step + 1
            if progress and not interactive and done == 1:
                print(f"training: step 1/{max_steps} took {now - t0:.0f} s (compilation included)", file=sys.stderr, flush=True)
            elif progress and not interactive and (now - last_line >= PROGRESS_EVERY_S or done == max_steps):
                pace = (now - t_after_first) / (done - 1)  # steady state: the first step compiles
                print(
                    f"training: step {done}/{max_steps}, loss {metrics['loss']:.3f}, corr {metrics['corr']:.3f}, "
                    f"{pace:.2f} s/step, elapsed {_eta(now - t0)}, ETA {_eta(pace * (max_steps - done))}",
                    file=sys.stderr, flush=True,
                )
                last_line = now
            if done < max_steps and max_seconds is not None and now - t0 >= max_seconds:
                break
            batch = next(batches)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    steps = len(history["loss"])
    steady = seconds - (t_after_first - t0)
    wps = (steps - 1) * config.train.batch_size / steady if steps > 1 and steady > 0 else float("nan")
    result = TrainResult(state, history, seconds, init_seconds, wps, steps_planned=max_steps, budget_seconds=max_seconds)
    if result.cut_by_budget:
        print(budget_message(result.steps_done, max_steps, max_seconds), file=sys.stderr, flush=True)
    return result


# --- 3. evaluation ---------------------------------------------------------------------------


def reconstruct_all(codec, windows: np.ndarray, n_qs: Sequence[int], batch_size: int = EVAL_BATCH) -> dict[int, np.ndarray]:
    """Reconstructions ``{n_q: [N, 1, T]}`` of ``windows`` with the first ``n_q`` quantizers.

    Encodes each batch once with all quantizers and decodes the first ``n_q`` code levels: the
    residual quantizer's first ``k`` codes do not depend on later ones, so this equals
    ``codec.reconstruct(x, n_q=k)`` for every ``k`` at the cost of one encoder pass.
    The last batch is padded to ``batch_size`` so every call has one compiled shape.
    """
    n, t = len(windows), windows.shape[-1]
    out = {k: np.empty_like(windows) for k in n_qs}
    for start in range(0, n, batch_size):
        x = windows[start : start + batch_size]
        m = len(x)
        if m < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - m, *x.shape[1:]), x.dtype)])
        codes = codec.encode(x)
        for k in n_qs:
            y = codec.decode(codes[:, :, :k])
            out[k][start : start + m] = np.asarray(y[:m, :, :t])
    return out


def quality(reference: np.ndarray, estimate: np.ndarray) -> dict[str, np.ndarray]:
    """Per-item Pearson correlation and SI-SDR (dB) of ``[N, 1, T]`` arrays."""
    from biocodec_jax.losses import pearson_correlation, si_sdr

    x = reference.reshape(-1, reference.shape[-1])
    y = estimate.reshape(-1, estimate.shape[-1])
    return {"corr": np.asarray(pearson_correlation(x, y)), "si_sdr": np.asarray(si_sdr(x, y))}


def evaluate(codec, windows: np.ndarray, n_qs: Sequence[int] = EVAL_N_QS, batch_size: int = EVAL_BATCH) -> tuple[dict, dict[int, np.ndarray]]:
    """Mean/median correlation and SI-SDR of ``codec`` on ``windows`` for each ``n_q``.

    ``n_qs`` outside ``1..codec.n_q`` are skipped and ``codec.n_q`` is always included.
    Returns ``(metrics, reconstructions)``; ``metrics[str(n_q)]`` holds the numbers and the
    bitrate in bits per second per channel.
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
    return metrics, recons


def tokenizer_round_trip(codec, recordings: Sequence[str | Path]) -> dict:
    """Whole recordings through ``codec.tokenize`` -> ``codec.detokenize``, compared with the file.

    Each recording is tokenized as a user would (the codec's stored preprocessing), decoded back to
    physical units at the recording's own rate and channel names, and correlated per channel with
    the recording as read (volts, no preprocessing). Agreement with :func:`evaluate`'s windowed
    numbers says the tokenizer's preparation and its way back (units, rate, names) are right.
    """
    from biocodec_jax.losses import pearson_correlation
    from data_pipelines.readers import read_raw

    per_recording, corrs = {}, []
    for path in recordings:
        original = read_raw(path)  # read once: tokenize works on a copy
        tokens = codec.tokenize(original, source=str(path))
        recon = codec.detokenize(tokens)
        assert recon.ch_names == list(tokens.channel_names)  # the file's own names
        x = original.get_data(picks=recon.ch_names)
        corr = np.asarray(pearson_correlation(x, recon.get_data()))
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


# --- 4. outputs ------------------------------------------------------------------------------


def plot_reconstructions(
    path: str | Path,
    windows: np.ndarray,
    recon: np.ndarray,
    channels: Sequence[str],
    sample_rate: float,
    wanted: Sequence[str] = PLOT_CHANNELS,
    window_index: int | None = None,
) -> Path:
    """A PNG of input vs reconstruction for a few channels of one held-out window, corr in titles.

    ``channels`` names each item of ``windows``/``recon`` (``[N, 1, T]``); items are taken from
    the window ``window_index`` (default: the middle one) for each electrode in ``wanted``
    (falling back to the first three electrodes when those are absent).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from biocodec_jax.losses import pearson_correlation

    names = list(dict.fromkeys(channels))  # electrodes, in order
    per_window = len(names)
    n_win = len(channels) // per_window
    w = n_win // 2 if window_index is None else window_index
    picked = [c for c in wanted if c in names] or names[:3]
    items = [w * per_window + names.index(c) for c in picked]

    t = np.arange(windows.shape[-1]) / sample_rate
    fig = Figure(figsize=(10, 2.2 * len(items)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(items), 1, sharex=True, squeeze=False)[:, 0]
    for ax, i, name in zip(axes, items, picked):
        x, y = windows[i, 0], recon[i, 0]
        corr = float(pearson_correlation(x[None], y[None])[0])
        ax.plot(t, x, lw=0.9, color="black", label="input")
        ax.plot(t, y, lw=0.9, color="tab:orange", alpha=0.85, label="reconstruction")
        ax.set_title(f"{name}, held-out window {w}: corr {corr:.3f}", fontsize=10)
        ax.set_ylabel("robust z")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def curve_summary(history: dict[str, list[float]], every: int) -> dict:
    """First/last values, the mean of the last 10 steps and a decimated curve of each metric."""
    every = max(int(every), 1)
    summary = {}
    for k, v in history.items():
        summary[k] = {
            "first": v[0],
            "last": v[-1],
            "last10_mean": float(np.mean(v[-10:])),
            "curve": [[i, v[i]] for i in range(0, len(v), every)] + ([[len(v) - 1, v[-1]]] if (len(v) - 1) % every else []),
        }
    return summary


def save_outputs(output: str | Path, config, codec, metrics: dict, data: DemoData, recons: dict[int, np.ndarray]) -> dict[str, Path]:
    """Write config.yaml, codec/, metrics.json and reconstruction.png into ``output``."""
    from biocodec_jax.config import save_config

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = {"config": output / "config.yaml", "codec": output / "codec", "metrics": output / "metrics.json"}
    save_config(config, paths["config"])
    codec.save(paths["codec"])
    paths["metrics"].write_text(json.dumps(metrics, indent=2) + "\n")
    paths["plot"] = plot_reconstructions(
        output / "reconstruction.png", data.heldout, recons[codec.n_q], data.heldout_channels, codec.sample_rate
    )
    return paths


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
) -> dict:
    """Prepare, train, evaluate and save; returns the metrics written to ``metrics.json``.

    ``steps``: how many training steps (default: the config's ``train.steps``). ``minutes``: an
    opt-in time budget for the training loop (default: none, every step is trained); if it cuts
    training short the demo warns at the cut and in its final summary, and ``metrics.json`` says
    so (``steps_planned``, ``steps_done``, ``cut_by_budget``). ``seed`` defaults to the config's
    ``train.seed``.
    ``eval_n_qs``: the numbers of quantizers to evaluate (all of them are always included).
    """
    t_start = time.perf_counter()
    config = load_demo_config(config_path, preset, overrides)
    seed = config.train.seed if seed is None else seed
    max_steps = config.train.steps if steps is None else steps
    if max_steps < 1 or (minutes is not None and minutes <= 0):
        raise ValueError(f"need at least one step and a positive time budget; got steps={max_steps}, minutes={minutes}")

    t0 = time.perf_counter()
    data = prepare_data(config, data_dir)
    data_seconds = time.perf_counter() - t0
    T = data.train.shape[-1]
    print(
        f"data: {len(data.train)} training windows [1, {T}] from {', '.join(data.train_subjects)}; "
        f"{len(data.heldout)} held-out windows from {', '.join(data.heldout_subjects)} "
        f"({config.codec.sample_rate} Hz, {config.train.window_seconds:g} s, {data_seconds:.1f} s to prepare)"
    )

    budget = None if minutes is None else 60.0 * minutes
    print(
        f"training {max_steps} steps of {config.train.batch_size} windows "
        + ("(no time budget)" if budget is None else f"(time budget {minutes:g} min: may stop early)")
    )
    result = train(config, data.train, max_steps=max_steps, max_seconds=budget, seed=seed, progress=progress)
    n_steps = result.steps_done
    print(
        f"trained {n_steps} of {max_steps} steps ({n_steps * config.train.batch_size} windows) in {result.seconds:.0f} s "
        f"(+{result.init_seconds:.0f} s init); {result.windows_per_second:.1f} windows/s after compilation"
    )

    from biocodec_jax import Codec

    codec = Codec(
        config, result.state.params, result.state.codebooks,
        metadata={"preprocessing": data.preprocessing, "training": {"step": n_steps, "data": str(data_dir)}},
    )
    t0 = time.perf_counter()
    heldout_metrics, recons = evaluate(codec, data.heldout, eval_n_qs)
    eval_seconds = time.perf_counter() - t0
    print(
        f"held-out subject {', '.join(data.heldout_subjects)} "
        f"({len(data.heldout)} single-channel {config.train.window_seconds:g}-s windows):"
    )
    for k, m in heldout_metrics.items():
        print(
            f"  n_q={k} ({m['bitrate_bps']:.0f} bit/s): corr {m['corr_mean']:.3f} (median {m['corr_median']:.3f}), "
            f"SI-SDR {m['si_sdr_mean']:.2f} dB (median {m['si_sdr_median']:.2f})"
        )

    t0 = time.perf_counter()
    round_trip = tokenizer_round_trip(codec, data.heldout_recordings)
    tokenize_seconds = time.perf_counter() - t0
    print(
        f"tokenize -> detokenize of the held-out recordings ({', '.join(round_trip['recordings'])}), "
        f"physical units at the recording's rate: corr {round_trip['corr_mean']:.3f} "
        f"(median {round_trip['corr_median']:.3f})"
    )

    metrics = {
        "preset": config.preset,
        "seed": seed,
        "steps": n_steps,
        "steps_planned": max_steps,
        "steps_done": n_steps,
        "cut_by_budget": result.cut_by_budget,
        "budget_minutes": minutes,
        "batch_size": config.train.batch_size,
        "train_windows_per_second": result.windows_per_second,
        "data": {
            "train_subjects": list(data.train_subjects),
            "heldout_subjects": list(data.heldout_subjects),
            "windows_per_subject": data.windows_per_subject,
            "window_samples": T,
            "sample_rate": config.codec.sample_rate,
        },
        "train": curve_summary(result.history, config.train.log_every),
        "heldout": heldout_metrics,
        "tokenizer_round_trip": round_trip,
        "seconds": {
            "data": data_seconds,
            "init": result.init_seconds,
            "train": result.seconds,
            "eval": eval_seconds,
            "tokenize": tokenize_seconds,
        },
    }
    t0 = time.perf_counter()
    paths = save_outputs(output, config, codec, metrics, data, recons)
    metrics["seconds"]["save"] = time.perf_counter() - t0
    # The quality report of the first held-out recording, as `biocodec-jax report` writes it.
    from biocodec_jax.reports import write_report

    t0 = time.perf_counter()
    paths["report"] = write_report(
        codec, data.heldout_recordings[0], Path(output) / "report", n_qs=[int(k) for k in heldout_metrics],
        codec_source=str(paths["codec"]),
    )["markdown"]
    metrics["seconds"]["report"] = time.perf_counter() - t0
    metrics["seconds"]["total"] = time.perf_counter() - t_start
    paths["metrics"].write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {', '.join(str(p) for p in paths.values())}; total {metrics['seconds']['total']:.0f} s")
    if result.cut_by_budget:  # again, last: the numbers above are those of an under-trained codec
        print(budget_message(n_steps, max_steps, budget), file=sys.stderr, flush=True)
    return metrics


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train the EEG codec for a few minutes on the bundled PhysioNet EEG and test it on a held-out\n"
        "subject: windows at 1-6 quantizers, the whole recording through tokenize/detokenize, and a\n"
        "report (figures). Writes OUTPUT/config.yaml, codec/, metrics.json, reconstruction.png, report/.",
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
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
