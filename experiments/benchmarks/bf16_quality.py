"""bfloat16 vs float32 training quality: the same codec, start and batches in both precisions,
against a float32 control that differs from float32 only in rounding.

    python -m experiments.benchmarks.bf16_quality [--schedule {original,demo}] [--lr LR] [--warmup-steps N]
        [--steps 200] [--batch 16] [--seed 0] [--output-dir DIR]

Issue 16, item 4 ("quality is not traded away"). Steps:

1. Config: ``experiments/configs/demo_eeg.yaml`` (the full ``eeg`` preset architecture and
   objective; batch 16, seed 0) with ``train.steps`` = ``--steps`` and one of two learning-rate
   schedules (``--schedule``):

   - ``original`` (default): the ``eeg`` preset's (the original BioCodec's) learning rate,
     ``--lr`` (default 1e-4), after ``--warmup-steps`` (default 0) linear warm-up steps and then
     constant: the cosine runs over ``optim.total_steps`` = 1e8 steps, flat over the run (as
     ``compare_pytorch.py``'s side-by-side training).
   - ``demo``: the demo's optimiser, lr 5e-3 with 20 warm-up steps and a cosine decay to zero over
     the run (``optim.total_steps`` = ``--steps``); ``--lr`` / ``--warmup-steps`` override it.
     At this learning rate training is chaotic: float32 runs that differ only in rounding part by
     tens of percent, which is what the control (below) measures.

2. Data: the demo's shards of the bundled PhysioNet EEG (``experiments.quickstart.prepare_shards``:
   ``data_pipelines.prepare``, subjects S001-S003 train, S004 held out; ``--shards``, default
   ``runs/demo/shards``, made there if missing). One fixed sequence of training batches, the
   first ``--steps`` batches of the Grain loader as ``pretrain`` draws them with this seed
   (``experiments.quickstart.training_batches``), is fed to every run; the first one also
   initialises the codebooks (k-means), as in the demo.
3. Training: one initial state is built with the float32 config; three runs start from the very
   same arrays (float32 parameters, optimiser state and codebooks) with only the config and the
   graph's numerics swapped:

   - ``float32``: the default numerics (``train.conv_impl=auto``: ``xla`` convolutions on CPU);
   - ``bfloat16``: ``train.precision=bfloat16`` (mixed precision);
   - ``control``: float32 with the other convolution implementation (``train.conv_impl=matmul``
     where the platform's default is ``xla``, else ``xla``): the same maths with different
     float32 rounding, so its deviation from ``float32`` is what rounding alone does to a run.

   Per-step ``loss``, ``l_t``, ``l_f``, ``commit_mse`` (and the rest of the step's metrics) are kept.
4. Held-out evaluation on up to ``--heldout-windows`` windows of S004 (evenly spaced over the
   held-out split as the loader reads it), in batches: each trained codec in float32 inference with the default numerics (so only
   training differs), and additionally the bfloat16-trained codec in bfloat16 inference
   (``codec.with_numerics``); mean Pearson correlation and SI-SDR of the reconstruction (all
   quantizers). Code agreement: the share of codes equal between float32 and bfloat16 inference of
   the float32-trained codec (overall and per quantizer; the bfloat16-trained codec's too), and
   between the codecs trained by the runs.

Both comparisons (bf16 vs fp32, control vs fp32) get the same statistics: the largest relative gap
of the 20-step moving averages of the loss curves, the mean per-step relative gap, the relative gap
of the last-20-step means, and the held-out correlation / SI-SDR differences.

Acceptance: the issue's absolute criteria (the 20-step moving averages of the bf16 and fp32 loss
curves within 5% of each other at every step, held-out correlation within 0.02), each reported as
measured, pass or fail, with the control's result on the same criteria beside them; and whether
bf16's deviation is within the control's (not worse than float32 rounding alone).

Writes ``bf16_quality_eeg_<platform>.json`` and ``.png`` (``original`` schedule at its default lr
and warm-up), ``bf16_quality_eeg_<platform>_demo_lr.*`` (``demo`` schedule), with an
``_lr<LR>_wu<N>`` suffix where ``--lr`` / ``--warmup-steps`` change a schedule's defaults
(loss, l_t, l_f, commit panels, the smoothed relative differences, training-batch correlation),
to ``--output-dir`` (default ``experiments/benchmarks/results``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import flax
import jax
import numpy as np

from biocodec_jax import Codec
from biocodec_jax import model as model_lib
from biocodec_jax.config import apply_overrides, load_config
from biocodec_jax.nn.conv import resolve_conv_impl
from biocodec_jax.signal_metrics import correlation, si_sdr
from biocodec_jax.training import init_state, train_step
from experiments.benchmarks.common import RESULTS, machine_info, write_report
from experiments.quickstart import padded_batches, prepare_shards, split_windows, training_batches

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data" / "eegmmidb"
DEMO_CONFIG = REPO_ROOT / "experiments" / "configs" / "demo_eeg.yaml"
DEMO_SHARDS = Path("runs/demo/shards")  # where `biocodec-jax demo` prepares them
CURVE_KEYS = ("loss", "l_t", "l_f", "commit_mse")
SMOOTH = 20  # moving-average window (steps) of the curve criterion and of the last-steps mean
CURVE_TOL = 0.05  # the issue: curves within 5%
CORR_TOL = 0.02  # the issue: held-out correlation within 0.02
SCHEDULES = ("original", "demo")
ORIGINAL_LR = 1e-4  # the eeg preset's (the original BioCodec's) learning rate
ORIGINAL_WARMUP = 0
FLAT_TOTAL_STEPS = 100_000_000  # a cosine over this many steps is flat over any run here
RUNS = ("float32", "bfloat16", "control")
COMPARISONS = {"bf16_vs_fp32": "bfloat16", "control_vs_fp32": "control"}


# --- configuration and data ------------------------------------------------------------------


def make_configs(steps: int, batch: int, seed: int, config_path: Path = DEMO_CONFIG, schedule: str = "original",
                 lr: float | None = None, warmup_steps: int | None = None) -> tuple[dict, str]:
    """({"float32", "bfloat16", "control"} configs, output-name suffix) for ``schedule``.

    ``original``: constant ``lr`` (default the preset's 1e-4) after ``warmup_steps`` (default 0);
    ``demo``: the config's lr and warm-up (unless given) with a cosine over ``steps``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    base = [f"train.steps={steps}", f"train.batch_size={batch}", f"train.seed={seed}", "train.precision=float32"]
    fp32 = load_config(config_path, base)
    if schedule == "original":
        default_lr, default_warmup, total = ORIGINAL_LR, ORIGINAL_WARMUP, FLAT_TOTAL_STEPS
        suffix = ""
    else:
        default_lr, default_warmup, total = fp32.optim.learning_rate, fp32.optim.warmup_steps, steps
        suffix = "_demo_lr"
    lr = default_lr if lr is None else float(lr)
    warmup_steps = default_warmup if warmup_steps is None else int(warmup_steps)
    if (lr, warmup_steps) != (default_lr, default_warmup):
        suffix += f"_lr{lr:g}_wu{warmup_steps}"
    # dataclasses.replace, not an override string: YAML would read e.g. "1e-05" as a string.
    optim = dataclasses.replace(fp32.optim, learning_rate=lr, warmup_steps=warmup_steps, total_steps=total)
    fp32 = dataclasses.replace(fp32, optim=optim)
    bf16 = apply_overrides(fp32, ["train.precision=bfloat16"])
    control_impl = "xla" if resolve_conv_impl(fp32.train.conv_impl) == "matmul" else "matmul"
    control = apply_overrides(fp32, [f"train.conv_impl={control_impl}"])
    if warmup_steps >= steps:
        print(f"note: --steps {steps} does not get past the {warmup_steps} warm-up steps (a smoke run)")
    return {"float32": fp32, "bfloat16": bf16, "control": control}, suffix


def schedule_description(schedule: str, optim) -> str:
    warm = f"{optim.warmup_steps} linear warm-up steps" if optim.warmup_steps else "no warm-up"
    if schedule == "original":
        then = f"constant after {warm}" if optim.warmup_steps else f"constant, {warm}"
        return f"lr {optim.learning_rate:g}, {then} (cosine over {optim.total_steps} steps: flat over the run)"
    return f"lr {optim.learning_rate:g}, {warm}, cosine decay to zero over the run ({optim.total_steps} steps)"


def heldout_subset(windows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` held-out windows evenly spaced over all of them (recordings, channels, times)."""
    idx = np.unique(np.linspace(0, len(windows) - 1, min(n, len(windows))).round().astype(int))
    return np.ascontiguousarray(windows[idx], dtype=np.float32), idx


# --- training --------------------------------------------------------------------------------


def train_run(state, batches: list[np.ndarray], label: str) -> dict:
    """Train ``state`` on ``batches``; per-step metrics, wall times and the final state."""
    history: dict[str, list[float]] = {}
    step_seconds = []
    first_nonfinite = None
    t0 = time.perf_counter()
    last_print = t0
    for step, batch in enumerate(batches):
        ts = time.perf_counter()
        state, metrics = train_step(state, batch)
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        step_seconds.append(time.perf_counter() - ts)
        for k, v in metrics.items():
            history.setdefault(k, []).append(v)
        if first_nonfinite is None and not all(math.isfinite(metrics[k]) for k in CURVE_KEYS):
            first_nonfinite = step
            print(f"[{label}] non-finite metrics at step {step}: {metrics}", flush=True)
        now = time.perf_counter()
        if step == 0 or now - last_print > 30 or step == len(batches) - 1:
            last_print = now
            print(
                f"[{label}] step {step + 1}/{len(batches)}: loss {metrics['loss']:.4f} l_t {metrics['l_t']:.4f} "
                f"l_f {metrics['l_f']:.4f} commit {metrics['commit_mse']:.4f} corr {metrics['corr']:.3f} "
                f"({now - t0:.0f} s)", flush=True,
            )
    seconds = time.perf_counter() - t0
    steady = step_seconds[1:]
    return {
        "state": state,
        "history": history,
        "first_nonfinite_step": first_nonfinite,
        "seconds": {
            "train_total": seconds,
            "first_step_incl_compile": step_seconds[0],
            "steady_step_median": float(np.median(steady)) if steady else float("nan"),
            "steady_windows_per_s": (len(steady) * batches[0].shape[0] / sum(steady)) if steady else float("nan"),
        },
    }


# --- evaluation ------------------------------------------------------------------------------


def codes_and_recons(codec, windows: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``[N, 1, n_q, T']`` and reconstructions ``[N, 1, T]`` (decode(encode(x)) trimmed, as
    ``codec.reconstruct``), batch by batch; the last batch is zero-padded to one compiled shape."""
    t = windows.shape[-1]
    codes, recons = [], []
    for _, m, x in padded_batches(windows, batch):
        c = codec.encode(x)
        y = codec.decode(c)
        codes.append(np.asarray(c[:m]))
        recons.append(np.asarray(y[:m, :, :t], dtype=np.float32))
    return np.concatenate(codes), np.concatenate(recons)


def quality(windows: np.ndarray, recons: np.ndarray) -> dict:
    x = windows.reshape(-1, windows.shape[-1])
    y = recons.reshape(-1, recons.shape[-1])
    corr = np.asarray(correlation(x, y))
    sdr = np.asarray(si_sdr(x, y))
    return {
        "corr_mean": float(np.mean(corr)),
        "corr_median": float(np.median(corr)),
        "si_sdr_mean": float(np.mean(sdr)),
        "si_sdr_median": float(np.median(sdr)),
        "nonfinite_items": int(np.sum(~np.isfinite(corr)) + np.sum(~np.isfinite(sdr))),
    }


def code_agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Share of equal codes of ``[N, C, n_q, T']`` arrays: overall, per quantizer, whole frames."""
    eq = a == b
    return {
        "overall": float(eq.mean()),
        "per_quantizer": [float(v) for v in eq.mean(axis=(0, 1, 3))],
        "frames_all_quantizers_equal": float(eq.all(axis=2).mean()),
        "n_codes": int(eq.size),
    }


# --- summary ---------------------------------------------------------------------------------


def moving_average(v, k: int) -> np.ndarray:
    v = np.asarray(v, np.float64)
    k = max(1, min(k, len(v)))
    return np.convolve(v, np.ones(k) / k, mode="valid")


def curve_comparison(ref: list[float], other: list[float], k: int = SMOOTH) -> dict:
    """How far ``other``'s curve is from ``ref``'s: the largest relative gap of their ``k``-step
    moving averages, the mean per-step relative gap, and the relative gap of their last-``k`` means."""
    a, b = np.asarray(ref, np.float64), np.asarray(other, np.float64)
    sa, sb = moving_average(a, k), moving_average(b, k)
    k_eff = len(a) - len(sa) + 1  # k, or the run's length when shorter
    rel = np.abs(sb - sa) / np.abs(sa)
    rel_step = np.abs(b - a) / np.abs(a)
    worst = int(np.nanargmax(rel)) if np.isfinite(rel).any() else 0
    last_a, last_b = float(np.mean(a[-k:])), float(np.mean(b[-k:]))
    return {
        "ref_first": float(a[0]),
        "other_first": float(b[0]),
        "ref_last": float(a[-1]),
        "other_last": float(b[-1]),
        f"ref_last{k}_mean": last_a,
        f"other_last{k}_mean": last_b,
        f"rel_diff_last{k}_mean": abs(last_b - last_a) / abs(last_a),
        "max_rel_diff_smoothed": float(np.max(rel)) if np.isfinite(rel).all() else float("nan"),
        # moving average i covers steps i..i+k-1; reported at its last step (1-based)
        "max_rel_diff_smoothed_at_step": worst + k_eff,
        "mean_rel_diff_smoothed": float(np.mean(rel)),
        "mean_rel_diff": float(np.mean(rel_step)),  # per step, unsmoothed, over all steps
        "max_rel_diff": float(np.max(rel_step)) if np.isfinite(rel_step).all() else float("nan"),
        "smoothed_rel_diff_curve": [float(v) for v in rel],
    }


def comparison_summary(curves: dict, ref: dict, other: dict) -> dict:
    """One comparison's headline numbers: ``curves`` per key from :func:`curve_comparison`,
    ``ref`` / ``other`` the held-out quality of the two codecs (float32 inference)."""
    loss = curves["loss"]
    return {
        f"loss_max_rel_diff_ma{SMOOTH}": loss["max_rel_diff_smoothed"],
        f"loss_max_rel_diff_ma{SMOOTH}_at_step": loss["max_rel_diff_smoothed_at_step"],
        "loss_mean_rel_diff": loss["mean_rel_diff"],
        f"loss_mean_rel_diff_ma{SMOOTH}": loss["mean_rel_diff_smoothed"],
        f"loss_rel_diff_last{SMOOTH}_mean": loss[f"rel_diff_last{SMOOTH}_mean"],
        f"terms_max_rel_diff_ma{SMOOTH}": {k: curves[k]["max_rel_diff_smoothed"] for k in CURVE_KEYS},
        "terms_mean_rel_diff": {k: curves[k]["mean_rel_diff"] for k in CURVE_KEYS},
        "heldout_corr_diff": other["corr_mean"] - ref["corr_mean"],
        "heldout_si_sdr_diff": other["si_sdr_mean"] - ref["si_sdr_mean"],
    }


def acceptance(bf16: dict, control: dict, corr_diff_bf16_infer: float, finite: bool) -> dict:
    """The issue's absolute criteria for bf16 (and for the control, beside them), and whether bf16's
    deviation from fp32 is within the control's (i.e. not worse than float32 rounding alone)."""
    ma = f"loss_max_rel_diff_ma{SMOOTH}"
    last = f"loss_rel_diff_last{SMOOTH}_mean"

    def absolute(s: dict) -> dict:
        curves_ok = bool(finite and s[ma] <= CURVE_TOL)
        corr_ok = bool(finite and abs(s["heldout_corr_diff"]) <= CORR_TOL)
        return {"curves_within_5pct": curves_ok, "heldout_corr_within_0.02": corr_ok, "pass": curves_ok and corr_ok}

    issue = absolute(bf16)
    issue["heldout_corr_within_0.02_bf16_inference"] = bool(finite and abs(corr_diff_bf16_infer) <= CORR_TOL)
    within = {
        f"max_rel_diff_ma{SMOOTH}": bool(finite and bf16[ma] <= control[ma]),
        "mean_rel_diff": bool(finite and bf16["loss_mean_rel_diff"] <= control["loss_mean_rel_diff"]),
        f"rel_diff_last{SMOOTH}_mean": bool(finite and bf16[last] <= control[last]),
        "heldout_corr_abs_diff": bool(finite and abs(bf16["heldout_corr_diff"]) <= abs(control["heldout_corr_diff"])),
        "heldout_si_sdr_abs_diff": bool(finite and abs(bf16["heldout_si_sdr_diff"]) <= abs(control["heldout_si_sdr_diff"])),
    }
    ratio = lambda a, b: a / b if b else float("inf")  # noqa: E731
    within["ratios_bf16_over_control"] = {
        f"max_rel_diff_ma{SMOOTH}": ratio(bf16[ma], control[ma]),
        "mean_rel_diff": ratio(bf16["loss_mean_rel_diff"], control["loss_mean_rel_diff"]),
        f"rel_diff_last{SMOOTH}_mean": ratio(bf16[last], control[last]),
        "heldout_corr_abs_diff": ratio(abs(bf16["heldout_corr_diff"]), abs(control["heldout_corr_diff"])),
    }
    within["pass"] = within[f"max_rel_diff_ma{SMOOTH}"] and within["heldout_corr_abs_diff"]
    return {
        "curves_criterion": f"max over steps of |MA{SMOOTH}(bf16 loss) - MA{SMOOTH}(fp32 loss)| / MA{SMOOTH}(fp32 loss) <= {CURVE_TOL}",
        "corr_criterion": f"|corr(bf16-trained) - corr(fp32-trained)| <= {CORR_TOL}, both in float32 inference",
        "issue": issue,
        "control_on_issue_criteria": absolute(control),
        "within_control_criterion": (
            "bf16's deviation from fp32 <= the float32 control's (the same maths with other float32 rounding): "
            f"max MA{SMOOTH} loss gap and |held-out corr diff| (pass); mean per-step gap, last-{SMOOTH} gap and "
            "|SI-SDR diff| reported too. One control run: one sample of rounding noise, not a bound."
        ),
        "within_control": within,
        "pass": issue["pass"],
        "pass_within_control": within["pass"],
    }


# --- plot ------------------------------------------------------------------------------------

STYLE = {  # label, colour, line style
    "float32": ("float32", "tab:blue", "-"),
    "bfloat16": ("bfloat16", "tab:orange", "-"),
    "control": ("float32 control", "dimgray", "--"),
}


def plot(path: Path, histories: dict, comparisons: dict, control_label: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = dict(STYLE, control=(f"float32 control ({control_label})", *STYLE["control"][1:]))
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), layout="constrained")
    panels = [("loss", "total loss"), ("l_t", "l_t (time-domain L1)"), ("l_f", "l_f (multi-scale STFT)"),
              ("commit_mse", "commitment MSE")]
    for ax, (key, name) in zip(axes.flat, panels):
        for run, h in histories.items():
            label, color, ls = style[run]
            v = np.asarray(h[key])
            steps = np.arange(1, len(v) + 1)
            ax.plot(steps, v, color=color, ls=ls, alpha=0.2, lw=0.8)
            s = moving_average(v, SMOOTH)
            ax.plot(np.arange(len(v) - len(s) + 1, len(v) + 1), s, color=color, ls=ls, lw=1.6,
                    label=f"{label} ({SMOOTH}-step avg)")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    ax = axes.flat[4]
    n = len(histories["float32"]["loss"])
    for key, color in zip(CURVE_KEYS, ("black", "tab:green", "tab:red", "tab:purple")):
        for name, ls, who in (("bf16_vs_fp32", "-", "bf16"), ("control_vs_fp32", "--", "control")):
            rel = np.asarray(comparisons[name][key]["smoothed_rel_diff_curve"])
            start = n - len(rel) + 1  # each average at its last step
            ax.plot(np.arange(start, start + len(rel)), 100 * np.maximum(rel, 1e-6), color=color, ls=ls,
                    lw=1.8 if key == "loss" else 0.9, label=f"{key}, {who}")
    ax.axhline(100 * CURVE_TOL, color="gray", ls=":", lw=1.2, label=f"{100 * CURVE_TOL:.0f}%")
    ax.set_title(f"|run - fp32| / fp32 of {SMOOTH}-step averages (solid bf16, dashed control)")
    ax.set_xlabel("step")
    ax.set_ylabel("%")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax = axes.flat[5]
    for run, h in histories.items():
        label, color, ls = style[run]
        v = np.asarray(h["corr"])
        s = moving_average(v, SMOOTH)
        ax.plot(np.arange(1, len(v) + 1), v, color=color, ls=ls, alpha=0.2, lw=0.8)
        ax.plot(np.arange(len(v) - len(s) + 1, len(v) + 1), s, color=color, ls=ls, lw=1.6, label=label)
    ax.set_title("training-batch correlation")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- the benchmark ---------------------------------------------------------------------------


def run(args) -> dict:
    t_start = time.perf_counter()
    cfgs, suffix = make_configs(args.steps, args.batch, args.seed, args.config, args.schedule, args.lr, args.warmup_steps)
    fp32_cfg = cfgs["float32"]
    conv_impls = {run: resolve_conv_impl(c.train.conv_impl) for run, c in cfgs.items()}
    control_label = f"conv_impl={conv_impls['control']}"
    schedule = schedule_description(args.schedule, fp32_cfg.optim)
    print(f"schedule {args.schedule}: {schedule}; convolutions: "
          + ", ".join(f"{run} {impl}" for run, impl in conv_impls.items()), flush=True)

    t0 = time.perf_counter()
    splits = prepare_shards(fp32_cfg, args.shards, args.data, progress=False)["splits"]
    batches = training_batches(args.shards, args.batch, args.steps, args.seed)
    all_heldout = split_windows(args.shards, "val")
    heldout, heldout_idx = heldout_subset(all_heldout, args.heldout_windows)
    data_seconds = time.perf_counter() - t0
    print(
        f"data: {splits['train']['windows']} training windows ({', '.join(splits['train']['subjects'])}), "
        f"{len(all_heldout)} held-out ({', '.join(splits['val']['subjects'])}; {len(heldout)} evaluated) in {args.shards}; "
        f"{args.steps} steps x batch {args.batch}; {data_seconds:.0f} s", flush=True,
    )

    t0 = time.perf_counter()
    state0 = init_state(fp32_cfg, jax.random.PRNGKey(args.seed), batches[0])
    jax.block_until_ready(state0.codebooks)
    init_seconds = time.perf_counter() - t0
    # The same arrays (and optimiser object) in every run; only the config and the graph's numerics differ.
    states = {"float32": state0}
    for run_name in ("bfloat16", "control"):
        cfg = cfgs[run_name]
        graphdef = model_lib.abstract_model(cfg.codec, cfg.train.numerics)[0]
        states[run_name] = state0.replace(config=cfg, graphdef=graphdef)
    param_dtypes = sorted({str(a.dtype) for a in jax.tree.leaves(states["bfloat16"].params)})

    runs = {run_name: train_run(states[run_name], batches, run_name) for run_name in RUNS}
    final_dtypes = {
        label: {
            "params": sorted({str(a.dtype) for a in jax.tree.leaves(r["state"].params)}),
            "codebooks": sorted({str(a.dtype) for a in jax.tree.leaves(r["state"].codebooks)}),
        }
        for label, r in runs.items()
    }

    # Held-out: every codec computing in float32 with the default numerics (Codec's), so only training differs.
    t0 = time.perf_counter()
    codecs = {label: Codec(fp32_cfg, r["state"].params, r["state"].codebooks) for label, r in runs.items()}
    results, codes = {}, {}
    for name, codec in (
        ("fp32_trained_fp32_infer", codecs["float32"]),
        ("bf16_trained_fp32_infer", codecs["bfloat16"]),
        ("control_trained_fp32_infer", codecs["control"]),
        ("bf16_trained_bf16_infer", codecs["bfloat16"].with_numerics("bfloat16")),
        ("fp32_trained_bf16_infer", codecs["float32"].with_numerics("bfloat16")),
    ):
        c, y = codes_and_recons(codec, heldout, args.eval_batch)
        codes[name] = c
        results[name] = quality(heldout, y)
        print(f"held-out {name}: corr {results[name]['corr_mean']:.4f}, SI-SDR {results[name]['si_sdr_mean']:.2f} dB", flush=True)
    eval_seconds = time.perf_counter() - t0
    agreement = {
        "fp32_trained": code_agreement(codes["fp32_trained_fp32_infer"], codes["fp32_trained_bf16_infer"]),
        "bf16_trained": code_agreement(codes["bf16_trained_fp32_infer"], codes["bf16_trained_bf16_infer"]),
        "fp32_vs_bf16_trained_both_fp32_infer": code_agreement(codes["fp32_trained_fp32_infer"], codes["bf16_trained_fp32_infer"]),
        "fp32_vs_control_trained_both_fp32_infer": code_agreement(codes["fp32_trained_fp32_infer"], codes["control_trained_fp32_infer"]),
    }

    histories = {label: r["history"] for label, r in runs.items()}
    comparisons = {
        name: {k: curve_comparison(histories["float32"][k], histories[other][k]) for k in CURVE_KEYS}
        for name, other in COMPARISONS.items()
    }
    r32 = results["fp32_trained_fp32_infer"]
    r16, rc = results["bf16_trained_fp32_infer"], results["control_trained_fp32_infer"]
    r16b = results["bf16_trained_bf16_infer"]
    bf16_summary = comparison_summary(comparisons["bf16_vs_fp32"], r32, r16)
    bf16_summary["heldout_corr_diff_bf16_infer"] = r16b["corr_mean"] - r32["corr_mean"]
    bf16_summary["heldout_si_sdr_diff_bf16_infer"] = r16b["si_sdr_mean"] - r32["si_sdr_mean"]
    control_summary = comparison_summary(comparisons["control_vs_fp32"], r32, rc)
    finite = all(r["first_nonfinite_step"] is None for r in runs.values())
    loss_last = {label: float(h["loss"][-1]) for label, h in histories.items()}
    loss_last_mean = {label: float(np.mean(h["loss"][-SMOOTH:])) for label, h in histories.items()}
    summary = {
        "schedule": args.schedule,
        "schedule_description": schedule,
        "control": f"float32, {control_label} (default: {conv_impls['float32']})",
        "loss_last": loss_last,
        f"loss_last{SMOOTH}_mean": loss_last_mean,
        "heldout_corr": {"float32": r32["corr_mean"], "bfloat16": r16["corr_mean"], "control": rc["corr_mean"],
                         "bfloat16_bf16_infer": r16b["corr_mean"]},
        "heldout_si_sdr": {"float32": r32["si_sdr_mean"], "bfloat16": r16["si_sdr_mean"], "control": rc["si_sdr_mean"],
                           "bfloat16_bf16_infer": r16b["si_sdr_mean"]},
        "bf16_vs_fp32": bf16_summary,
        "control_vs_fp32": control_summary,
        "code_agreement_fp32_trained_bf16_vs_fp32_infer": agreement["fp32_trained"]["overall"],
        "code_agreement_fp32_trained_per_quantizer": agreement["fp32_trained"]["per_quantizer"],
        "code_agreement_bf16_trained_bf16_vs_fp32_infer": agreement["bf16_trained"]["overall"],
        "code_agreement_fp32_vs_bf16_trained": agreement["fp32_vs_bf16_trained_both_fp32_infer"]["overall"],
        "code_agreement_fp32_vs_control_trained": agreement["fp32_vs_control_trained_both_fp32_infer"]["overall"],
        "all_finite": finite,
        "acceptance": acceptance(bf16_summary, control_summary, bf16_summary["heldout_corr_diff_bf16_infer"], finite),
    }
    config_path = Path(args.config).resolve()
    report = {
        "benchmark": "bf16_quality",
        "issue": "16, item 4: quality is not traded away",
        "preset": fp32_cfg.preset,
        "config": str(config_path.relative_to(REPO_ROOT)) if config_path.is_relative_to(REPO_ROOT) else str(args.config),
        "steps": args.steps,
        "batch_size": args.batch,
        "seed": args.seed,
        "optim": {
            "schedule": args.schedule,
            "description": schedule,
            "learning_rate": fp32_cfg.optim.learning_rate,
            "warmup_steps": fp32_cfg.optim.warmup_steps,
            "warmup_init_ratio": fp32_cfg.optim.warmup_init_ratio,
            "total_steps": fp32_cfg.optim.total_steps,
            "b1": fp32_cfg.optim.b1,
            "b2": fp32_cfg.optim.b2,
        },
        "runs": {
            label: {"precision": c.train.precision, "conv_impl": c.train.conv_impl, "conv_impl_resolved": conv_impls[label]}
            for label, c in cfgs.items()
        },
        "data": {
            "shards": str(args.shards),
            "train_subjects": list(splits["train"]["subjects"]),
            "heldout_subjects": list(splits["val"]["subjects"]),
            "train_windows": int(splits["train"]["windows"]),
            "heldout_windows_total": int(len(all_heldout)),
            "heldout_windows_evaluated": int(len(heldout)),
            "heldout_selection": "evenly spaced indices over the held-out split in the loader's (seed-0 shuffled) order",
            "window_samples": int(all_heldout.shape[-1]),
            "sample_rate": fp32_cfg.codec.sample_rate,
            "eval_batch": args.eval_batch,
        },
        "dtypes": {"initial_params_bf16_run": param_dtypes, "final": final_dtypes},
        "summary": summary,
        "curves": {"comparison": comparisons, **histories},
        "heldout": results,
        "code_agreement": agreement,
        "first_nonfinite_step": {label: r["first_nonfinite_step"] for label, r in runs.items()},
        "seconds": {
            "data": data_seconds,
            "init": init_seconds,
            **{label: r["seconds"] for label, r in runs.items()},
            "eval": eval_seconds,
        },
    }
    report["machine"] = machine_info(
        "jax", "jaxlib", "flax", "optax", "numpy",
        backend=jax.default_backend(), devices=[str(d) for d in jax.devices()], flax_version=flax.__version__,
    )
    stem = f"bf16_quality_{fp32_cfg.preset}_{jax.default_backend()}{suffix}"
    report["seconds"]["total"] = time.perf_counter() - t_start
    json_path = write_report(report, Path(args.output_dir) / f"{stem}.json")
    png_path = plot(
        Path(args.output_dir) / f"{stem}.png", histories, comparisons, control_label,
        f"{fp32_cfg.preset} codec, {args.steps} steps x batch {args.batch}, same start and batches: float32 vs bfloat16 "
        f"vs float32 control ({jax.default_backend()})\n{args.schedule} schedule: {schedule}",
    )
    print_summary(report)
    print(f"wrote {json_path} and {png_path}")
    return report


def print_summary(report: dict) -> None:
    s, sec = report["summary"], report["seconds"]
    acc = s["acceptance"]
    yes = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    ma, last = f"loss_max_rel_diff_ma{SMOOTH}", f"loss_rel_diff_last{SMOOTH}_mean"
    lines = [
        f"\n== bf16 vs fp32 vs fp32 control, {report['preset']} codec, {report['steps']} steps x batch "
        f"{report['batch_size']}, {s['schedule']} schedule ({s['schedule_description']}) ==",
        f"control: {s['control']}",
        "loss: final " + ", ".join(f"{k} {v:.4f}" for k, v in s["loss_last"].items())
        + f"; last-{SMOOTH} mean " + ", ".join(f"{k} {v:.4f}" for k, v in s[f"loss_last{SMOOTH}_mean"].items()),
        "held-out corr: " + ", ".join(f"{k} {v:.4f}" for k, v in s["heldout_corr"].items()),
        "held-out SI-SDR: " + ", ".join(f"{k} {v:.2f} dB" for k, v in s["heldout_si_sdr"].items()),
    ]
    for name in COMPARISONS:
        c = s[name]
        lines.append(
            f"{name}: max MA{SMOOTH} loss gap {100 * c[ma]:.2f}% (step {c[f'{ma}_at_step']}), "
            f"mean per-step gap {100 * c['loss_mean_rel_diff']:.2f}%, last-{SMOOTH} gap {100 * c[last]:.2f}%; "
            f"held-out corr diff {c['heldout_corr_diff']:+.4f}, SI-SDR diff {c['heldout_si_sdr_diff']:+.2f} dB; "
            f"terms max MA{SMOOTH}: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in c[f"terms_max_rel_diff_ma{SMOOTH}"].items())
        )
    issue, ctrl, within = acc["issue"], acc["control_on_issue_criteria"], acc["within_control"]
    lines += [
        f"codes equal, fp32-trained codec, bf16 vs fp32 inference: {100 * s['code_agreement_fp32_trained_bf16_vs_fp32_infer']:.2f}% "
        "(per quantizer: " + ", ".join(f"{100 * v:.1f}%" for v in s["code_agreement_fp32_trained_per_quantizer"]) + "); "
        f"bf16-trained codec {100 * s['code_agreement_bf16_trained_bf16_vs_fp32_infer']:.2f}%; "
        f"fp32- vs bf16-trained {100 * s['code_agreement_fp32_vs_bf16_trained']:.2f}%, "
        f"fp32- vs control-trained {100 * s['code_agreement_fp32_vs_control_trained']:.2f}%",
        f"all finite: {s['all_finite']}; wall: "
        + ", ".join(f"{k} train {sec[k]['train_total']:.0f} s ({sec[k]['steady_step_median']:.2f} s/step)" for k in RUNS)
        + f", eval {sec['eval']:.0f} s, total {sec['total']:.0f} s",
        f"issue criteria (bf16): curves within 5% {yes(issue['curves_within_5pct'])}, held-out corr within 0.02 "
        f"{yes(issue['heldout_corr_within_0.02'])} -> {yes(issue['pass'])}; "
        f"the control on the same criteria: {yes(ctrl['curves_within_5pct'])}, {yes(ctrl['heldout_corr_within_0.02'])} "
        f"-> {yes(ctrl['pass'])}",
        f"bf16 within the control (max MA{SMOOTH} gap {yes(within[f'max_rel_diff_ma{SMOOTH}'])}, |corr diff| "
        f"{yes(within['heldout_corr_abs_diff'])}; mean gap {yes(within['mean_rel_diff'])}, last-{SMOOTH} gap "
        f"{yes(within[f'rel_diff_last{SMOOTH}_mean'])}, |SI-SDR diff| {yes(within['heldout_si_sdr_abs_diff'])}): "
        f"{yes(within['pass'])}",
    ]
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", choices=SCHEDULES, default="original",
                        help="learning-rate schedule: original (the eeg preset's lr, constant after --warmup-steps; "
                             "default) or demo (the demo's lr 5e-3, 20 warm-up steps, cosine over the run)")
    parser.add_argument("--lr", type=float, default=None,
                        help=f"peak learning rate (default: {ORIGINAL_LR:g} for original, the config's 5e-3 for demo)")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help=f"linear warm-up steps (default: {ORIGINAL_WARMUP} for original, the config's 20 for demo)")
    parser.add_argument("--steps", type=int, default=200, help="training steps of each run (default %(default)s)")
    parser.add_argument("--batch", type=int, default=16, help="training batch (default %(default)s, the demo's)")
    parser.add_argument("--seed", type=int, default=0, help="init and batch-order seed (default %(default)s)")
    parser.add_argument("--heldout-windows", type=int, default=256, help="held-out windows to evaluate (default %(default)s)")
    parser.add_argument("--eval-batch", type=int, default=64, help="evaluation batch (default %(default)s)")
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="base config (default the demo's)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="eegmmidb .edf folder (default the bundled one)")
    parser.add_argument("--shards", type=Path, default=DEMO_SHARDS,
                        help="the demo's shards of --data (default %(default)s; prepared there if missing)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    if args.lr is not None and not args.lr > 0:
        parser.error("--lr must be positive")
    if args.warmup_steps is not None and args.warmup_steps < 0:
        parser.error("--warmup-steps must be >= 0")
    run(args)


if __name__ == "__main__":
    main()
