"""JAX vs PyTorch, side by side in one process: the same weights, inputs and machine.

    python -m experiments.benchmarks.compare_pytorch [--preset eeg] [--rounds 5] [--no-compile] [--output-dir DIR]

Needs the ``[torch]`` extra. The PyTorch side is ``experiments/baselines/torch_biocodec.py``, our
PyTorch rendering of the original (it reproduces the original's fixtures; its state-dict keys are
the original's). Steps:

1. Weights: a fresh JAX codec, codebooks k-means-initialised on a batch of real EEG windows (the
   bundled PhysioNet EEGMMI recordings, prepared by ``data_pipelines.prepare`` into the demo's shards,
   ``--shards``), exported to the original's state dict and loaded strictly into the PyTorch model.
2. Agreement: embeddings, codes and reconstructions of both on the same real windows.
3. Speed: training step (batch 32 on CPU, 512 on a GPU), encode and decode (batch 256) for JAX,
   PyTorch eager and ``torch.compile``, timed in alternating rounds (PyTorch's CPU speed swings
   from run to run; alternating exposes both to the same swings): windows/s (median and range),
   first call (compilation), peak memory, achieved FLOP/s against the hand-counted FLOPs
   (``flops.py``; XLA's cost analysis, which counts a scan's body once, is reported beside it).
4. Training side by side: the same initial state, the same real batches, constant learning rate;
   the loss curves of both are written as a plot.

Writes ``compare_pytorch_<preset>_<platform>.json``, ``.md`` (the table) and ``_curves.png`` to
``--output-dir`` (default ``experiments/benchmarks/results``). On a GPU both frameworks run there
(cuDNN on, ``cudnn.benchmark``), and the card is recorded. Threads: both frameworks use every core
(PyTorch ``set_num_threads(os.cpu_count())``, XLA its own pool).
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import dataclasses
import json
import logging
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from biocodec_jax import Codec, preset
from biocodec_jax import codec as codec_module
from biocodec_jax.config import apply_overrides
from biocodec_jax.training import init_state, train_step
from experiments.benchmarks.common import RESULTS, machine_info, write_report
from experiments.benchmarks.flops import model_flops, xla_flops
from experiments.quickstart import DATA_DIR, prepare_shards, split_windows


def default_shards(preset_name: str) -> Path:
    """Where the bundled EEG's shards for ``preset_name`` go: the demo's for ``eeg`` (``biocodec-jax
    demo`` makes the same ones), a folder of their own for another preset's window length."""
    return Path("runs/demo/shards") if preset_name == "eeg" else Path(f"runs/demo_{preset_name}/shards")


# --- measuring ---------------------------------------------------------------------------------


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_reader() -> Callable[[], int] | None:
    """Bytes the C heap has handed out and not got back (glibc ``mallinfo2``: arenas + mmapped blocks).

    Both frameworks allocate their CPU buffers with malloc, so this follows their live memory;
    resident memory would not, as glibc keeps freed blocks. None where glibc's call is missing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
    except (OSError, AttributeError):
        return None

    def live() -> int:
        info = libc.mallinfo2()
        return int(info.uordblks + info.hblkhd)

    return live


_LIVE_HEAP = _heap_reader()


class PeakHeap:
    """Peak of the live C heap above its level at entry, sampled every 2 ms (CPU memory of a call)."""

    def __enter__(self):
        self.base = self.peak = _LIVE_HEAP() if _LIVE_HEAP else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if _LIVE_HEAP:
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _LIVE_HEAP())

    def __exit__(self, *exc):
        self._stop.set()
        if _LIVE_HEAP:
            self._thread.join()
            self.peak = max(self.peak, _LIVE_HEAP())

    @property
    def delta(self) -> int | None:
        return self.peak - self.base if _LIVE_HEAP else None


@dataclasses.dataclass
class Runner:
    """One framework doing one task: ``call()`` runs it once and waits for the result."""

    framework: str
    call: Callable[[], object]
    first_call_s: float = float("nan")
    times: list = dataclasses.field(default_factory=list)
    peak_bytes: int | None = None
    error: str | None = None
    setup: Callable[[], None] | None = None  # e.g. compilation, timed as part of the first call

    def warm_up(self):
        t0 = time.perf_counter()
        try:
            if self.setup is not None:
                self.setup()
            self.call()
        except Exception as e:  # e.g. torch.compile without a working compiler: report, go on
            self.error = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        self.first_call_s = time.perf_counter() - t0


def _time_rounds(runners: list[Runner], rounds: int, calls: int) -> None:
    """``rounds`` x (each runner ``calls`` times), alternating."""
    for _ in range(rounds):
        for runner in runners:
            if runner.error:
                continue
            for _ in range(calls):
                t0 = time.perf_counter()
                runner.call()
                runner.times.append(time.perf_counter() - t0)


def _measure_memory(runners: list[Runner], memory: Callable[[Runner], int | None], reset: Callable[[], None]) -> None:
    """Peak memory of one more call of each runner, untimed (the heap sampler would slow the timing)."""
    for runner in runners:
        if runner.error:
            continue
        reset()
        with PeakHeap() as heap:
            runner.call()
        measured = memory(runner)
        runner.peak_bytes = heap.delta if measured is None else measured


def _summary(runner: Runner, batch: int, flops_per_window: int) -> dict:
    if runner.error:
        return {"error": runner.error, "first_call_s": runner.first_call_s}
    rates = [batch / t for t in runner.times]
    median = statistics.median(rates)
    return {
        "windows_per_s": median,
        "windows_per_s_min": min(rates),
        "windows_per_s_max": max(rates),
        "calls": len(rates),
        "first_call_s": runner.first_call_s,
        "peak_memory_mb": None if runner.peak_bytes is None else runner.peak_bytes / 2**20,
        "achieved_gflop_per_s": median * flops_per_window / 1e9,
    }


# --- the two frameworks ------------------------------------------------------------------------


def real_windows(config, n: int, seed: int = 0, path: Path | None = None, shards: Path | None = None) -> np.ndarray:
    """``n`` single-channel windows ``[n, 1, T]`` of the bundled EEG (repeated if there are fewer).

    The windows are the demo's shards (``experiments.quickstart.prepare_shards``: ``data_pipelines.prepare``
    of the bundled recordings at ``config``'s rate and window) in ``shards`` (default
    :func:`default_shards` of the preset; made there if missing), both splits.
    ``path``: take them from a ``.npy`` of such windows instead (e.g. written by ``--save-windows``
    on a machine with MNE, for a GPU machine without it).
    """
    if path is not None:
        pool = np.load(path)
        expected = config.train.window_samples(config.codec.sample_rate)
        if pool.ndim != 3 or pool.shape[1:] != (1, expected):
            raise ValueError(f"{path}: expected windows [N, 1, {expected}], got {pool.shape}")
    else:
        shards = default_shards(config.preset) if shards is None else shards
        prepare_shards(config, shards, DATA_DIR, progress=False)
        pool = np.concatenate([split_windows(shards, "train"), split_windows(shards, "val")])
    rng = np.random.default_rng(seed)
    return pool[rng.choice(len(pool), n, replace=n > len(pool))].astype(np.float32)


def _jax_memory(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes)
    except Exception:
        return None


def agreement(codec, torch_model, x: np.ndarray, torch, device) -> dict:
    """How closely the two give the same embeddings, codes and reconstructions on ``x [N, 1, T]``."""
    emb_j = np.asarray(codec.embed(x))[:, 0]  # [N, D, T']
    codes_j = np.asarray(codec.encode(x))[:, 0]  # [N, K, T']
    with torch.inference_mode():
        xt = torch.from_numpy(x).to(device)
        emb_t = torch_model.embed(xt).cpu().numpy()
        codes_t = torch_model.encode(xt).cpu().numpy()
        # Decode the JAX codes in both, so the decoders are compared on identical input.
        dec_t = torch_model.decode(torch.from_numpy(codes_j.astype(np.int64)).to(device)).cpu().numpy()[:, 0]
    dec_j = np.asarray(codec.decode(codes_j[:, None]))[:, 0]
    length = x.shape[-1]
    recon_j, recon_t = dec_j[:, :length], dec_t[:, :length]

    def corr(a, b):
        a, b = a - a.mean(-1, keepdims=True), b - b.mean(-1, keepdims=True)
        return float(np.mean(np.sum(a * b, -1) / np.sqrt(np.sum(a * a, -1) * np.sum(b * b, -1))))

    return {
        "windows": int(len(x)),
        "embedding_max_abs_diff": float(np.max(np.abs(emb_j - emb_t))),
        "embedding_rel_rms_diff": float(np.sqrt(np.mean((emb_j - emb_t) ** 2) / np.mean(emb_t**2))),
        "codes_identical_fraction": float(np.mean(codes_j == codes_t)),
        "codes_identical_fraction_per_quantizer": [float(v) for v in np.mean(codes_j == codes_t, axis=(0, 2))],
        "decode_max_abs_diff": float(np.max(np.abs(dec_j - dec_t))),
        "decode_rel_rms_diff": float(np.sqrt(np.mean((dec_j - dec_t) ** 2) / np.mean(dec_t**2))),
        "input_vs_reconstruction_corr_jax": corr(x[:, 0], recon_j),
        "input_vs_reconstruction_corr_torch": corr(x[:, 0], recon_t),
    }


def training_curves(config, state, torch_model, batches: np.ndarray, lr: float, torch, device) -> dict:
    """Both frameworks trained from the same state on the same batches ``[S, B, 1, T]``; their losses."""
    from experiments.baselines.torch_biocodec import TorchTrainer

    curves = {"jax": {"l_t": [], "l_f": [], "commit_mse": []}, "torch": {"l_t": [], "l_f": [], "commit_mse": []}}
    for x in batches:
        state, metrics = train_step(state, x)
        metrics = jax.device_get(metrics)
        for k in curves["jax"]:
            curves["jax"][k].append(float(metrics[k]))
    model = copy.deepcopy(torch_model)
    trainer = TorchTrainer(model, lr=lr, config=config)
    for x in batches:
        metrics = trainer.step(torch.from_numpy(x).to(device))
        for k in curves["torch"]:
            curves["torch"][k].append(float(metrics[k]))
    for k in ("l_t", "l_f"):
        a, b = np.asarray(curves["jax"][k]), np.asarray(curves["torch"][k])
        curves[f"{k}_max_rel_diff"] = float(np.max(np.abs(a - b) / np.abs(b)))
    curves["steps"], curves["batch"], curves["learning_rate"] = len(batches), int(batches.shape[1]), lr
    return curves


def plot_curves(curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, label in zip(axes, ("l_t", "l_f", "commit_mse"), ("time loss l_t", "STFT loss l_f", "commitment (mse)")):
        for fw, style in (("jax", "-"), ("torch", "--")):
            ax.plot(np.arange(1, curves["steps"] + 1), curves[fw][key], style, label={"jax": "JAX", "torch": "PyTorch"}[fw])
        ax.set_title(label)
        ax.set_xlabel("step")
    axes[0].legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- the run -----------------------------------------------------------------------------------

TASKS = ("train_step", "encode", "decode")


def torch_device(torch, gpu: bool):
    """The PyTorch device (the GPU where JAX has one), every core for CPU threads, cuDNN tuned on GPUs."""
    device = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
    torch.set_num_threads(os.cpu_count())
    if device.type == "cuda":
        torch.backends.cudnn.enabled = True
        torch.backends.cudnn.benchmark = True
    return device


def comparison_config(preset_name: str, lr: float):
    """The preset with a constant learning rate for the side-by-side training (no warm-up; the
    cosine over a long horizon is flat over a few steps), the same in both frameworks."""
    return apply_overrides(
        preset(preset_name), ["optim.warmup_steps=0", f"optim.learning_rate={lr}", "optim.total_steps=100000000"]
    )


def jax_runners(state, codec, config, train_x: np.ndarray, infer_x: np.ndarray, xla_counts: dict) -> tuple[dict, np.ndarray, dict]:
    """``({task: Runner}, codes of infer_x [N, T', K], {task: compiled})`` for the JAX side.

    JAX runs the ahead-of-time compiled step, encoder and decoder; their compilation is part of
    the first call (``Runner.setup``), as torch.compile's is. ``xla_counts`` gets XLA's FLOP count
    of each compiled program.
    """
    length = train_x.shape[-1]
    x_train_j = jax.device_put(jnp.asarray(train_x))
    x_inf_j = jax.device_put(jnp.asarray(infer_x).reshape(-1, length))
    codes = codec_module.encode_items(codec.graphdef, codec.params, codec.codebooks, x_inf_j, config.codec.n_q)  # [N, T', K]
    jax.clear_caches()  # so that the runners' first calls include compiling the encoder too
    compiled: dict = {}
    jax_state = {"s": state}

    def runner(task: str, lower: Callable, call: Callable) -> Runner:
        def setup():
            compiled[task] = lower().compile()
            xla_counts[task] = xla_flops(compiled[task])

        return Runner("jax", lambda: jax.block_until_ready(call(compiled[task])), setup=setup)

    def train(step):
        jax_state["s"], metrics = step(jax_state["s"], x_train_j)
        return metrics["loss"]

    args_enc = (codec.graphdef, codec.params, codec.codebooks, x_inf_j, config.codec.n_q)
    args_dec = (codec.graphdef, codec.params, codec.codebooks, codes)
    runners = {
        "train_step": runner("train_step", lambda: train_step.lower(state, x_train_j), train),
        "encode": runner("encode", lambda: codec_module.encode_items.lower(*args_enc), lambda f: f(*args_enc[1:4])),
        "decode": runner("decode", lambda: codec_module.decode_items.lower(*args_dec), lambda f: f(*args_dec[1:])),
    }
    return runners, codes, compiled


def torch_runners(model, config, codes, train_x: np.ndarray, infer_x: np.ndarray, lr: float, compile_too: bool,
                  torch, device) -> dict[str, list[Runner]]:
    """``{task: [eager Runner, torch.compile Runner (if asked and available)]}`` for the PyTorch side."""
    from experiments.baselines.torch_biocodec import TorchTrainer

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    x_train_t = torch.from_numpy(train_x).to(device)
    x_inf_t = torch.from_numpy(infer_x).to(device)
    codes_t = torch.from_numpy(np.asarray(codes).transpose(0, 2, 1).astype(np.int64)).to(device)

    def trainer(m):
        t = TorchTrainer(m, lr=lr, config=config)

        def call():
            out = t.step(x_train_t)
            sync()
            return out

        return call

    def infer(fn, arg):
        def call():
            with torch.inference_mode():
                out = fn(arg)
            sync()
            return out

        return call

    runners = {
        "train_step": [Runner("torch_eager", trainer(copy.deepcopy(model)))],
        "encode": [Runner("torch_eager", infer(model.encode, x_inf_t))],
        "decode": [Runner("torch_eager", infer(model.decode, codes_t))],
    }
    if compile_too and hasattr(torch, "compile"):
        # The original back-propagates twice through one graph (retain_graph=True), which
        # compiled autograd's donated buffers forbid.
        torch._functorch.config.donated_buffer = False
        runners["train_step"].append(Runner("torch_compile", trainer(torch.compile(copy.deepcopy(model)))))
        runners["encode"].append(Runner("torch_compile", infer(torch.compile(model.encode), x_inf_t)))
        runners["decode"].append(Runner("torch_compile", infer(torch.compile(model.decode), codes_t)))
    return runners


def time_tasks(runners: dict[str, list[Runner]], batches: dict[str, int], flops: dict, memory: Callable,
               reset: Callable[[], None], rounds: int, calls: int, save_partial: Callable[[dict], None]) -> dict:
    """First calls, alternating timed rounds and peak memory of every runner of every task; the summaries.

    ``memory(runner, task)``: a framework's own peak-memory figure, or None for the live heap's growth.
    ``save_partial(results)`` after each task keeps what is measured so far, in case a later part
    (e.g. torch.compile) runs out of time.
    """
    results: dict = {}
    for task, task_runners in runners.items():
        print(f"[compare] {task}: first calls (compilation)", flush=True)
        for runner in task_runners:
            runner.warm_up()
            print(f"  {runner.framework:14s} first call {runner.first_call_s:6.1f} s" + (f"  FAILED {runner.error}" if runner.error else ""), flush=True)
        print(f"[compare] {task}: {rounds} alternating rounds of {calls} calls", flush=True)
        _time_rounds(task_runners, rounds, calls)
        _measure_memory(task_runners, lambda r, t=task: memory(r, t), reset)
        results[task] = {r.framework: _summary(r, batches[task], flops[task]) for r in task_runners}
        jax_rate = results[task]["jax"].get("windows_per_s")
        for fw, summary in list(results[task].items()):
            if fw != "jax" and "windows_per_s" in summary and jax_rate:
                results[task][f"jax_over_{fw}"] = jax_rate / summary["windows_per_s"]
        print("  " + ", ".join(f"{fw} {s['windows_per_s']:.1f}" for fw, s in results[task].items() if isinstance(s, dict) and "windows_per_s" in s) + " windows/s", flush=True)
        save_partial(results)
    return results


def machine_report(torch, device) -> dict:
    """The machine, both frameworks' versions and devices, and the precision settings that differ."""
    return machine_info(
        "jax", "jaxlib", "torch", "flax",
        platform=jax.default_backend(),
        jax_device=str(jax.devices()[0].device_kind),
        torch_device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        torch_threads=torch.get_num_threads(),
        cudnn=bool(torch.backends.cudnn.enabled) if device.type == "cuda" else None,
        # Each framework's default float32 precision is kept; on GPUs they differ (TF32 use).
        torch_matmul_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
        torch_cudnn_tf32=bool(torch.backends.cudnn.allow_tf32),
        jax_default_matmul_precision=str(jax.config.jax_default_matmul_precision),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
    )


def run(args) -> dict:
    # Compilation is timed cold on both sides: no on-disk caches of earlier runs (JAX has none
    # unless JAX_COMPILATION_CACHE_DIR is set; Inductor keeps one in /tmp by default).
    for var in ("TORCHINDUCTOR_FX_GRAPH_CACHE", "TORCHINDUCTOR_AUTOGRAD_CACHE"):
        os.environ.setdefault(var, "0")
    import torch

    from experiments.baselines.torch_biocodec import build_torch_codec

    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)  # graph-break notes (codebook init's .item())
    gpu = jax.default_backend() == "gpu"
    device = torch_device(torch, gpu)
    train_batch = args.train_batch or (512 if gpu else 32)
    infer_batch = args.infer_batch
    config = comparison_config(args.preset, args.lr)
    length = config.train.window_samples(config.codec.sample_rate)
    print(f"[compare] reading the bundled EEG windows ({jax.default_backend()}, torch on {device})", flush=True)
    shards = args.shards or default_shards(args.preset)
    pool = real_windows(config, max(train_batch, args.curve_steps * args.curve_batch) + infer_batch, path=args.windows,
                        shards=shards)
    if args.save_windows:
        np.save(args.save_windows, real_windows(config, 2048, shards=shards))
    train_x, infer_x = pool[:train_batch], pool[-infer_batch:]

    state = init_state(config, jax.random.PRNGKey(args.seed), train_x)
    codec = Codec(config, state.params, state.codebooks)
    model = build_torch_codec(config).to(device)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in codec.to_torch_state_dict().items()}, strict=True)
    model.eval()

    report: dict = {"preset": args.preset, "window_samples": length, "train_batch": train_batch, "infer_batch": infer_batch}
    flops = model_flops(config.codec, config.loss, length)
    xla_counts: dict = {}
    jax_side, codes, compiled = jax_runners(state, codec, config, train_x, infer_x, xla_counts)
    torch_side = torch_runners(model, config, codes, train_x, infer_x, args.lr, args.compile, torch, device)
    runners = {task: [jax_side[task], *torch_side[task]] for task in TASKS}

    def memory(runner: Runner, task: str) -> int | None:
        if runner.framework == "jax":
            if gpu:
                return _jax_memory(compiled[task])
            return None  # CPU: the live heap's growth, as for PyTorch
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated()
        return None

    batches = {"train_step": train_batch, "encode": infer_batch, "decode": infer_batch}
    reset = torch.cuda.reset_peak_memory_stats if device.type == "cuda" else (lambda: None)
    partial = args.output_dir / f"compare_pytorch_{args.preset}_partial.json"
    report["results"] = time_tasks(
        runners, batches, flops, memory, reset, args.rounds, args.calls,
        lambda results: write_report({**report, "results": results, "incomplete": True}, partial),
    )
    print("[compare] agreement on the same weights and windows", flush=True)
    report["agreement"] = agreement(codec, model, infer_x, torch, device)
    report["flops_per_window"] = {"hand_count": flops, "xla_cost_analysis": xla_counts}

    if args.curve_steps > 0:
        print(f"[compare] side-by-side training: {args.curve_steps} steps of batch {args.curve_batch}", flush=True)
        curve_x = pool[: args.curve_steps * args.curve_batch].reshape(args.curve_steps, args.curve_batch, 1, length)
        report["training_curves"] = training_curves(config, state, model, curve_x, args.lr, torch, device)

    report["machine"] = machine_report(torch, device)
    report["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "output_dir"}
    return report


# --- reporting ---------------------------------------------------------------------------------


def markdown_table(report: dict) -> str:
    m = report["machine"]
    where = m["torch_device"] if m["platform"] == "gpu" else f"{m['cpu_count']}-core CPU ({m['processor']})"
    lines = [
        f"JAX {m['jax']} vs PyTorch {m['torch']} on {where}, preset {report['preset']}, "
        f"{report['window_samples']}-sample windows; windows/s median (range) over alternating rounds.",
        "",
        "| work | batch | framework | windows/s | JAX speed-up | first call (s) | peak memory (MB) | achieved GFLOP/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, per_fw in report["results"].items():
        batch = report["train_batch"] if task == "train_step" else report["infer_batch"]
        for fw, s in per_fw.items():
            if not isinstance(s, dict):
                continue
            if "error" in s:
                lines.append(f"| {task} | {batch} | {fw} | failed: {s['error'][:80]} | | {s['first_call_s']:.1f} | | |")
                continue
            ratio = "" if fw == "jax" else f"{per_fw.get(f'jax_over_{fw}', float('nan')):.2f}x"
            mem = "" if s["peak_memory_mb"] is None else f"{s['peak_memory_mb']:.0f}"
            lines.append(
                f"| {task} | {batch} | {fw} | {s['windows_per_s']:.1f} ({s['windows_per_s_min']:.1f}-{s['windows_per_s_max']:.1f}) "
                f"| {ratio} | {s['first_call_s']:.1f} | {mem} | {s['achieved_gflop_per_s']:.1f} |"
            )
    f = report["flops_per_window"]
    lines += [
        "",
        "FLOPs per window (hand count; XLA's cost analysis in brackets, which counts a scan's body once): "
        + ", ".join(
            f"{k} {v / 1e9:.2f} G" + (f" [{f['xla_cost_analysis'][k] / report_batch(report, k) / 1e9:.2f} G]" if f["xla_cost_analysis"].get(k) else "")
            for k, v in f["hand_count"].items()
        ),
    ]
    a = report["agreement"]
    lines += [
        "",
        f"Same weights, {a['windows']} real windows: codes identical {a['codes_identical_fraction']:.4%}; "
        f"embedding max |diff| {a['embedding_max_abs_diff']:.2e}; decoding the same codes max |diff| "
        f"{a['decode_max_abs_diff']:.2e} (relative RMS {a['decode_rel_rms_diff']:.1e}).",
    ]
    if "training_curves" in report:
        c = report["training_curves"]
        lines.append(
            f"Training side by side, {c['steps']} steps of batch {c['batch']} from the same state: "
            f"largest relative difference of l_t {c['l_t_max_rel_diff']:.1e}, of l_f {c['l_f_max_rel_diff']:.1e}."
        )
    return "\n".join(lines) + "\n"


def report_batch(report: dict, task: str) -> int:
    return report["train_batch"] if task == "train_step" else report["infer_batch"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="eeg", choices=["eeg", "tiny"], help="the bundled data is EEG")
    parser.add_argument("--train-batch", type=int, default=None, help="default 32 on CPU, 512 on a GPU")
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    parser.add_argument("--calls", type=int, default=2, help="timed calls per framework per round")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    parser.add_argument("--curve-steps", type=int, default=30, help="side-by-side training steps (0: none)")
    parser.add_argument("--curve-batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4, help="constant learning rate of both (timing and curves); the EEG preset's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--windows", type=Path, default=None, help="real windows [N, 1, T] as .npy instead of reading the bundled EDF")
    parser.add_argument("--shards", type=Path, default=None,
                        help="the demo's shards of the bundled EDF (default runs/demo/shards for eeg; prepared there if missing)")
    parser.add_argument("--save-windows", type=Path, default=None, help="also save 2048 bundled windows as .npy (for --windows)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    report = run(args)
    report["wall_s"] = time.perf_counter() - t0
    stem = f"compare_pytorch_{args.preset}_{report['machine']['platform']}"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if "training_curves" in report:
        plot_curves(report["training_curves"], args.output_dir / f"{stem}_curves.png", f"BioCodec {args.preset}: JAX vs PyTorch, same start, same batches")
    (args.output_dir / f"compare_pytorch_{args.preset}_partial.json").unlink(missing_ok=True)
    table = markdown_table(report)
    (args.output_dir / f"{stem}.md").write_text(table)
    write_report(report, args.output_dir / f"{stem}.json")
    print(table)
    print(f"wrote {args.output_dir / stem}.json, .md" + (", _curves.png" if "training_curves" in report else "") + f" in {report['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
