"""Everything that needs an accelerator, in one prepared run (issue 16): JAX vs PyTorch at matching precision.

    bash experiments/benchmarks/device_suite.sh              # on the GPU machine: < 8 minutes, JSON + Markdown
    bash experiments/benchmarks/device_suite.sh --dry-run    # anywhere (CPU): tiny batches, the same code paths

The shell script runs three parts of this module, each its own process so that JAX and PyTorch each get
the whole accelerator memory, against one deadline (``--deadline``, seconds since the epoch): what
would start too late to finish is recorded as ``{"skipped": "time budget"}``, never estimated.

- ``--part torch-core``: PyTorch eager float32 and AMP-bf16 (``torch.autocast``) training step at
  ``--batch``; encode and decode at ``--infer-batch``; encoder / decoder forward + backward.
- ``--part jax``: the LSTM scan's unroll factor (one 2-layer stack, forward + backward) — the fastest
  is used for every step below; the training step for each convolution implementation x
  {float32, bfloat16} at ``--batch`` (``lower().compile()`` timed: JAX's compile time); with the
  fastest implementation: the step at ``--big-batch``, encode / decode in both precisions, encoder /
  decoder / STFT-loss forward + backward, how often bfloat16 codes differ from float32 codes; the
  Grain loader's windows/s on this machine's cores.
- ``--part torch-extra``: PyTorch at ``--big-batch`` (eager, AMP) and ``torch.compile`` (float32).
- ``--part merge``: one ``device_suite_<platform>.json`` with the ratios and the issue's targets, and
  ``device_suite_<platform>.md`` (the README's table).

Inputs are real EEG windows (``--windows``: ``[N, 1, 1250]`` .npy, e.g. float16, written here by
``--save-windows`` from the bundled recordings; tiled to the batch). Precision: each framework's
default float32 on NVIDIA GPUs uses TF32 in convolutions (JAX: default matmul precision; PyTorch:
``cudnn.allow_tf32``), recorded in the JSON. Needs only the repo and the accelerator's own JAX and
PyTorch (with the JAX stack's wheels of ``.whl/``); without torch the PyTorch parts say so and the rest
runs. Every part imports the JAX stack (the PyTorch twin does too, for its weight conversion); only the
JAX part initialises it, so neither framework holds accelerator memory in the other's process. Windows
from the bundled recordings (no ``--windows``) need MNE as well, which the accelerator machine may lack.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from biocodec_jax import Codec, preset
from biocodec_jax.codec import decode_items, encode_items
from biocodec_jax.config import apply_overrides
from biocodec_jax.losses import multiscale_stft_loss
from biocodec_jax.model import BioCodecModel, abstract_model
from biocodec_jax.nn.lstm import LSTM
from biocodec_jax.training import init_state, train_step
from data_pipelines.loader import DEFAULT_PREFETCH_BATCHES, DEFAULT_READ_THREADS
from experiments.benchmarks import loader_speed as loader_benchmark
from experiments.benchmarks.common import RESULTS, machine_info, write_report

TARGETS = {"train_ratio": 1.5, "jax_bf16_windows_per_s": 14_000, "infer_ratio": 2.0}
PRETRAIN_WINDOW_STEPS = 1e8  # the original's budget: 20 epochs x 5M windows


# --- shared ----------------------------------------------------------------------------------


class Budget:
    """Skips what would not finish before the deadline, and keeps what was measured."""

    def __init__(self, deadline: float | None, out: Path, report: dict):
        self.deadline, self.out, self.report = deadline, out, report

    def left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.time()

    def run(self, name: str, estimate_s: float, fn, *args, **kwargs):
        """``report[name] = fn(...)``, or a skip / error record; the JSON is rewritten after each part."""
        if self.left() < estimate_s:
            self.report[name] = {"skipped": f"time budget ({self.left():.0f} s left, needs ~{estimate_s:.0f} s)"}
            print(f"[suite] {name}: SKIPPED (time budget)", flush=True)
        else:
            t0 = time.perf_counter()
            try:
                self.report[name] = fn(*args, **kwargs)
            except Exception as e:  # report and go on: one failure must not lose the rest
                self.report[name] = {"error": f"{type(e).__name__}: {str(e)[:500]}", "traceback": traceback.format_exc()[-2000:]}
            print(f"[suite] {name}: {time.perf_counter() - t0:.1f} s  {_short(self.report[name])}", flush=True)
        write_report(dict(self.report), self.out)
        return self.report[name]


def _short(result) -> str:
    if isinstance(result, dict):
        if "error" in result:
            return "ERROR " + result["error"][:200]
        if "windows_per_s" in result:
            return f"{result['windows_per_s']:.0f} windows/s"
    return ""


def summarize(batch: int, times: list[float], first_s: float | None = None, **extra) -> dict:
    rates = [batch / t for t in times]
    out = {
        "batch": batch,
        "windows_per_s": statistics.median(rates),
        "windows_per_s_min": min(rates),
        "windows_per_s_max": max(rates),
        "ms_per_call": 1e3 * statistics.median(times),
        "calls": len(times),
    }
    if first_s is not None:
        out["first_call_s"] = first_s
    out.update(extra)
    return out


def time_calls(call, calls: int, warmup: int = 2) -> list[float]:
    """Seconds per call (each call must wait for its result)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def load_windows(path: Path | None, n: int, length: int) -> np.ndarray:
    """``n`` real windows ``[n, 1, length]`` float32: from ``path`` (tiled if it holds fewer) or the bundled EEG."""
    if path is not None and Path(path).is_file():
        pool = np.load(path)
    else:  # the bundled EDF files, through prepare: needs MNE, which the accelerator machine may lack
        from experiments.benchmarks.compare_pytorch import real_windows

        pool = real_windows(preset("eeg"), 2048)
    if pool.shape[-1] < length:
        raise ValueError(f"{path}: windows of {pool.shape[-1]} samples, {length} needed")
    pool = pool[..., :length].astype(np.float32)
    reps = -(-n // len(pool))
    return np.concatenate([pool] * reps)[:n]


# --- PyTorch ---------------------------------------------------------------------------------


def torch_part(args, stage: str) -> dict:
    try:
        import torch
    except ImportError as e:
        return {"unavailable": f"torch not importable: {e}"}
    from experiments.baselines.torch_biocodec import TorchTrainer, build_torch_codec

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.enabled = True
        torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    config = preset(args.preset)
    length = config.train.window_samples(config.codec.sample_rate)
    report = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else None,
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "weights": "PyTorch's own initialisation; codebooks by the original's k-means in the first (warm-up) step",
    }
    out = Path(args.output_dir) / f"device_suite_torch_{stage}.json"
    budget = Budget(args.deadline, out, report)
    pool = load_windows(args.windows, max(args.batch, args.big_batch, args.infer_batch), length)

    def fresh_model():
        torch.manual_seed(0)
        model = build_torch_codec(config).to(device)
        TorchTrainer(model, config=config).step(torch.from_numpy(pool[: min(512, args.batch)]).to(device))  # k-means init
        return model

    model = fresh_model()

    def train(batch: int, amp: bool, compile_: bool = False) -> dict:
        m = fresh_model() if compile_ else model
        if compile_:
            torch._functorch.config.donated_buffer = False  # the original's double backward
            m = torch.compile(m)
        trainer = TorchTrainer(m, config=config, amp=amp)
        x = torch.from_numpy(pool[:batch]).to(device)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        metrics = trainer.step(x)
        sync()
        first = time.perf_counter() - t0
        times = time_calls(lambda: (trainer.step(x), sync()), args.calls, warmup=1)
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        return summarize(batch, times, first, peak_memory_mb=peak, loss_first=metrics["loss"], amp_bf16=amp, compiled=compile_)

    def infer(batch: int, amp: bool) -> dict:
        x = torch.from_numpy(pool[:batch]).to(device)
        model.eval()
        res = {}
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            codes = model.encode(x)
            sync()
            res["encode"] = summarize(batch, time_calls(lambda: (model.encode(x), sync()), args.calls))
            res["decode"] = summarize(batch, time_calls(lambda: (model.decode(codes), sync()), args.calls))
        model.train()
        return res

    def parts(batch: int, amp: bool) -> dict:
        x = torch.from_numpy(pool[:batch]).to(device)
        frames = config.codec.frames(length)
        z = torch.randn(batch, config.codec.dimension, frames, device=device)

        def grad_ms(fn):
            def run():
                model.zero_grad(set_to_none=True)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                    y = fn()
                (y.float() ** 2).sum().backward()
                sync()

            return 1e3 * statistics.median(time_calls(run, args.calls))

        return {"encoder_fwd_bwd_ms": grad_ms(lambda: model.encoder(x)), "decoder_fwd_bwd_ms": grad_ms(lambda: model.decoder(z))}

    if stage == "core":
        budget.run("train_fp32", 20, train, args.batch, False)
        budget.run("train_amp_bf16", 20, train, args.batch, True)
        budget.run("infer_fp32", 15, infer, args.infer_batch, False)
        budget.run("infer_amp_bf16", 15, infer, args.infer_batch, True)
        budget.run("parts_fp32", 10, parts, args.batch, False)
        budget.run("parts_amp_bf16", 10, parts, args.batch, True)
    else:
        budget.run("train_amp_bf16_big_batch", 25, _largest, lambda b: train(b, True), args.big_batch, torch=torch)
        budget.run("train_compile_fp32", args.compile_estimate_s, train, args.batch, False, True)
        budget.run("train_fp32_big_batch", 25, _largest, lambda b: train(b, False), args.big_batch, torch=torch)
    return report


def _largest(measure, batch: int, torch=None) -> dict:
    """``measure(batch)`` at ``batch``, halving it on out-of-memory until it fits."""
    tried = []
    while batch >= 1:
        try:
            res = measure(batch)
            res["tried_batches"] = tried + [batch]
            return res
        except Exception as e:  # XLA's RESOURCE_EXHAUSTED, torch.cuda.OutOfMemoryError
            msg = str(e)
            if "RESOURCE_EXHAUSTED" not in msg and "out of memory" not in msg.lower():
                raise
            tried.append(batch)
            if torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch //= 2
    raise RuntimeError(f"no batch fits (tried {tried})")


# --- JAX -------------------------------------------------------------------------------------


def jax_part(args) -> dict:
    base = preset(args.preset)
    length = base.train.window_samples(base.codec.sample_rate)
    report = {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    out = Path(args.output_dir) / "device_suite_jax.json"
    budget = Budget(args.deadline, out, report)
    pool = load_windows(args.windows, max(args.batch, args.big_batch, args.infer_batch), length)

    # 1. The LSTM's unroll factor: one 2-layer stack of the encoder's width over its frames.
    def lstm_sweep() -> dict:
        width, frames = base.codec.n_filters * 2 ** len(base.codec.ratios), base.codec.frames(length)
        h = jax.random.normal(jax.random.PRNGKey(1), (args.batch, frames, width), jnp.bfloat16)
        res = {}
        for unroll in args.unrolls:
            g, p = nnx.split(LSTM(width, width, base.codec.lstm_layers, dtype="bfloat16", unroll=unroll, rngs=nnx.Rngs(0)), nnx.Param)
            f = jax.jit(jax.grad(lambda p, h, g=g: jnp.sum(nnx.merge(g, p)(h).astype(jnp.float32) ** 2), argnums=(0, 1)))
            res[str(unroll)] = 1e3 * statistics.median(time_calls(lambda: jax.block_until_ready(f(p, h)), args.calls))
        res["best"] = int(min(args.unrolls, key=lambda u: res[str(u)]))
        res["what"] = f"ms, forward + backward of one {base.codec.lstm_layers}-layer LSTM stack (bf16), batch {args.batch}"
        return res

    sweep = budget.run("lstm_unroll_ms", 40, lstm_sweep)
    unroll = sweep.get("best", 0) if isinstance(sweep, dict) else 0
    report["lstm_unroll_used"] = unroll

    def config_for(precision: str, impl: str):
        return apply_overrides(base, [f"train.precision={precision}", f"train.conv_impl={impl}", f"train.lstm_unroll={unroll}"])

    # One initial state (k-means codebooks on real windows) for every variant: the numerics are
    # part of the graph, not of the (float32) parameters.
    state0 = init_state(config_for("float32", "xla"), jax.random.PRNGKey(0), pool[: args.batch])

    def state_for(config):
        return state0.replace(config=config, graphdef=abstract_model(config.codec, config.train.numerics)[0])

    def train(precision: str, impl: str, batch: int) -> dict:
        config = config_for(precision, impl)
        state = state_for(config)
        x = jax.device_put(jnp.asarray(pool[:batch]))
        t0 = time.perf_counter()
        compiled = train_step.lower(state, x).compile()
        compile_s = time.perf_counter() - t0
        holder = {"s": state}

        def call():
            holder["s"], m = compiled(holder["s"], x)
            return jax.block_until_ready(m["loss"])

        t0 = time.perf_counter()
        loss0 = float(call())
        first = time.perf_counter() - t0
        times = time_calls(call, args.calls)
        mem = None
        try:
            m = compiled.memory_analysis()
            mem = (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes) / 2**20
        except Exception:
            pass
        return summarize(batch, times, first, compile_s=compile_s, peak_memory_mb=mem, loss_first=loss0,
                         loss_finite=bool(np.isfinite(loss0)), precision=precision, conv_impl=impl, lstm_unroll=unroll)

    # bfloat16 first (the headline), the candidate implementation before the incumbent.
    for precision in ("bfloat16", "float32"):
        for impl in sorted(args.conv_impls, key=lambda i: i != "matmul"):
            budget.run(f"train_{precision}_{impl}", 60, train, precision, impl, args.batch)

    def best_impl(precision: str) -> str:
        rates = {i: report.get(f"train_{precision}_{i}", {}).get("windows_per_s", 0) for i in args.conv_impls}
        return max(rates, key=rates.get)

    impl = best_impl("bfloat16")
    report["conv_impl_fastest"] = {p: best_impl(p) for p in ("float32", "bfloat16")}

    def big(precision: str) -> dict:
        return _largest(lambda b: train(precision, best_impl(precision), b), args.big_batch)

    # Inference with the fastest implementation, both precisions; how often bf16 codes differ.
    codec = Codec(config_for("float32", impl), state0.params, state0.codebooks)
    x_inf = jax.device_put(jnp.asarray(pool[: args.infer_batch]).reshape(-1, length))

    def infer(precision: str) -> dict:
        c = codec.with_numerics(precision, conv_impl=best_impl(precision), lstm_unroll=unroll)
        res = {}
        t0 = time.perf_counter()
        enc = encode_items.lower(c.graphdef, c.params, c.codebooks, x_inf, c.n_q).compile()
        res["encode_compile_s"] = time.perf_counter() - t0
        codes = enc(c.params, c.codebooks, x_inf)
        res["encode"] = summarize(args.infer_batch, time_calls(lambda: jax.block_until_ready(enc(c.params, c.codebooks, x_inf)), args.calls))
        dec = decode_items.lower(c.graphdef, c.params, c.codebooks, codes).compile()
        res["decode"] = summarize(args.infer_batch, time_calls(lambda: jax.block_until_ready(dec(c.params, c.codebooks, codes)), args.calls))
        codes_by_precision[precision] = np.asarray(codes)
        return res

    codes_by_precision: dict = {}
    for p in ("float32", "bfloat16"):
        budget.run(f"infer_{p}", 25, infer, p)
    codes = codes_by_precision
    if codes.get("float32") is not None and codes.get("bfloat16") is not None:
        same = codes["float32"] == codes["bfloat16"]
        report["bf16_vs_fp32_codes"] = {
            "identical_fraction": float(same.mean()),
            "identical_fraction_per_quantizer": [float(v) for v in same.mean(axis=(0, 1))],
            "windows": int(args.infer_batch),
            "note": "fresh codec (k-means codebooks on real windows), not a trained one",
        }
    write_report(dict(report), out)

    # Where the step's time goes, with the fastest implementation.
    def parts(precision: str) -> dict:
        config = config_for(precision, best_impl(precision))
        g, p = nnx.split(BioCodecModel(config.codec, numerics=config.train.numerics, rngs=nnx.Rngs(params=0)), nnx.Param)
        items = jnp.asarray(pool[: args.batch]).reshape(args.batch, -1)
        z = jax.random.normal(jax.random.PRNGKey(3), (args.batch, config.codec.frames(length), config.codec.dimension))

        def grad_ms(f, *a):
            fn = jax.jit(jax.grad(f, argnums=tuple(range(len(a)))))
            return 1e3 * statistics.median(time_calls(lambda: jax.block_until_ready(fn(*a)), args.calls))

        res = {
            "encoder_fwd_bwd_ms": grad_ms(lambda p, x: jnp.sum(nnx.merge(g, p).embed(x) ** 2), p, items),
            "decoder_fwd_bwd_ms": grad_ms(lambda p, z: jnp.sum(nnx.merge(g, p).synthesize(z) ** 2), p, z),
        }
        if precision == "float32":
            res["stft_loss_fwd_bwd_ms"] = grad_ms(
                lambda y: multiscale_stft_loss(items, y, config.loss.stft_n_ffts, config.loss.stft_feature_weights), items * 0.5
            )
        res["conv_impl"] = best_impl(precision)
        return res

    # In order of need: what does not fit in the budget is skipped and says so.
    budget.run("train_bfloat16_big_batch", 50, big, "bfloat16")
    budget.run("parts_bfloat16", 30, parts, "bfloat16")
    budget.run("loader", 30, loader_speed, args)
    budget.run("train_float32_big_batch", 50, big, "float32")
    budget.run("parts_float32", 35, parts, "float32")
    return report


def loader_speed(args) -> dict:
    res = {"cores": os.cpu_count(), "global_batch": args.batch, "windows_in_shards": args.loader_windows}
    with tempfile.TemporaryDirectory() as tmp:
        shard_dir = loader_benchmark.write_random_shards(Path(tmp), args.loader_windows)
        for workers in args.loader_workers:
            res[f"workers_{workers}"] = loader_benchmark.measure(
                shard_dir, workers, global_batch=args.batch, batches=args.loader_batches, warmup=2, repeats=3,
                read_threads=DEFAULT_READ_THREADS, prefetch=DEFAULT_PREFETCH_BATCHES,
            )
    return res


# --- merging ---------------------------------------------------------------------------------


def _rate(d: dict, *path):
    for p in path:
        d = d.get(p, {}) if isinstance(d, dict) else {}
    return d.get("windows_per_s") if isinstance(d, dict) else None


def _ratio(a, b):
    return None if a is None or b is None else a / b


def merge(args) -> dict:
    out_dir = Path(args.output_dir)
    parts = {}
    for name in ("jax", "torch_core", "torch_extra"):
        f = out_dir / f"device_suite_{name}.json"
        parts[name] = json.loads(f.read_text()) if f.is_file() else {"missing": f"{f.name} not written (part did not run or crashed)"}
    j, tc, te = parts["jax"], parts["torch_core"], parts["torch_extra"]
    impl32 = j.get("conv_impl_fastest", {}).get("float32")
    impl16 = j.get("conv_impl_fastest", {}).get("bfloat16")
    jax32, jax16 = _rate(j, f"train_float32_{impl32}"), _rate(j, f"train_bfloat16_{impl16}")
    t32, t16 = _rate(tc, "train_fp32"), _rate(tc, "train_amp_bf16")
    ratios = {
        "train_fp32_jax_over_torch_eager": _ratio(jax32, t32),
        "train_bf16_jax_over_torch_amp": _ratio(jax16, t16),
        "train_fp32_jax_over_torch_compile": _ratio(jax32, _rate(te, "train_compile_fp32")),
    }
    for task in ("encode", "decode"):
        ratios[f"{task}_fp32_jax_over_torch"] = _ratio(_rate(j, "infer_float32", task), _rate(tc, "infer_fp32", task))
        ratios[f"{task}_bf16_jax_over_torch_amp"] = _ratio(_rate(j, "infer_bfloat16", task), _rate(tc, "infer_amp_bf16", task))
    def held(value, target):
        return None if value is None else bool(value >= target)

    targets = {
        "train_ratio_fp32": held(ratios["train_fp32_jax_over_torch_eager"], TARGETS["train_ratio"]),
        "train_ratio_bf16": held(ratios["train_bf16_jax_over_torch_amp"], TARGETS["train_ratio"]),
        "jax_bf16_batch_512_windows_per_s": held(jax16, TARGETS["jax_bf16_windows_per_s"]),
        **{f"{k}": held(v, TARGETS["infer_ratio"]) for k, v in ratios.items() if k.startswith(("encode", "decode"))},
    }
    hours = {k: (None if v is None else PRETRAIN_WINDOW_STEPS / v / 3600) for k, v in
             {"jax_bfloat16": jax16, "jax_float32": jax32, "torch_fp32": t32, "torch_amp_bf16": t16}.items()}
    report = {
        "what": "issue 16 device suite: one run, one machine; windows/s medians (range in the parts)",
        "targets": TARGETS,
        "ratios": ratios,
        "targets_met": targets,
        "hours_to_1e8_window_steps_at_batch": hours,
        "parts": parts,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("part",)},
        "machine": machine_info("jax", "jaxlib", "torch", "flax", platform=j.get("backend", "unknown"), device=j.get("device")),
    }
    platform = j.get("backend", "unknown")
    path = out_dir / f"device_suite_{platform}.json"
    write_report(report, path)
    (out_dir / f"device_suite_{platform}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {path}")
    return report


def _fmt(v, digits=0):
    if v is None:
        return "not measured"
    return f"{v:,.{digits}f}"


def markdown(report: dict) -> str:
    p = report["parts"]
    j, tc, te = p["jax"], p["torch_core"], p["torch_extra"]
    fast = j.get("conv_impl_fastest", {})
    b = report["settings"].get("batch")
    lines = [
        f"{j.get('device', '?')}: JAX {j.get('jax', '?')} vs PyTorch {tc.get('torch', '?')}; windows/s, median over "
        f"{report['settings'].get('calls')} calls; LSTM unroll {j.get('lstm_unroll_used')}; float32 = each framework's default (TF32 convolutions).",
        "",
        "| work | batch | JAX float32 | JAX bfloat16 | PyTorch eager fp32 | PyTorch AMP-bf16 | torch.compile fp32 | JAX / PyTorch (fp32, bf16) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    r = report["ratios"]

    def ratio_pair(a, c):
        return f"{_fmt(a, 2)}x, {_fmt(c, 2)}x".replace("not measuredx", "n/a")

    lines.append(
        f"| training step | {b} | {_fmt(_rate(j, 'train_float32_' + str(fast.get('float32'))))} | "
        f"{_fmt(_rate(j, 'train_bfloat16_' + str(fast.get('bfloat16'))))} | {_fmt(_rate(tc, 'train_fp32'))} | "
        f"{_fmt(_rate(tc, 'train_amp_bf16'))} | {_fmt(_rate(te, 'train_compile_fp32'))} | "
        f"{ratio_pair(r['train_fp32_jax_over_torch_eager'], r['train_bf16_jax_over_torch_amp'])} |"
    )
    big = {k: (j.get(f"train_{k}_big_batch") or {}) for k in ("float32", "bfloat16")}
    tb = {k: (te.get(f"train_{k}_big_batch") or {}) for k in ("fp32", "amp_bf16")}
    lines.append(
        f"| training step, largest batch tried | {big['float32'].get('batch', '-')} / {big['bfloat16'].get('batch', '-')} / "
        f"{tb['fp32'].get('batch', '-')} / {tb['amp_bf16'].get('batch', '-')} | {_fmt(_rate(big, 'float32'))} | {_fmt(_rate(big, 'bfloat16'))} | "
        f"{_fmt(_rate(tb, 'fp32'))} | {_fmt(_rate(tb, 'amp_bf16'))} | | |"
    )
    ib = report["settings"].get("infer_batch")
    for task in ("encode", "decode"):
        lines.append(
            f"| {task} | {ib} | {_fmt(_rate(j, 'infer_float32', task))} | {_fmt(_rate(j, 'infer_bfloat16', task))} | "
            f"{_fmt(_rate(tc, 'infer_fp32', task))} | {_fmt(_rate(tc, 'infer_amp_bf16', task))} | | "
            f"{ratio_pair(r[f'{task}_fp32_jax_over_torch'], r[f'{task}_bf16_jax_over_torch_amp'])} |"
        )
    lines += ["", "Training step by convolution implementation (JAX, batch %s): " % b + ", ".join(
        f"{k[len('train_'):]} {_fmt(v.get('windows_per_s'))} (compile {v.get('compile_s', float('nan')):.0f} s)"
        for k, v in j.items() if k.startswith("train_") and "big" not in k and isinstance(v, dict) and "windows_per_s" in v
    )]
    h = report["hours_to_1e8_window_steps_at_batch"]
    lines.append("Hours to 1e8 window-steps at that rate: " + ", ".join(f"{k} {_fmt(v, 2)}" for k, v in h.items()))
    codes = j.get("bf16_vs_fp32_codes")
    if codes:
        lines.append(f"bfloat16 vs float32 codes (same weights, {codes['windows']} real windows): {codes['identical_fraction']:.2%} identical")
    return "\n".join(lines) + "\n"


# --- entry -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", required=True, choices=["torch-core", "jax", "torch-extra", "merge"])
    parser.add_argument("--preset", default="eeg", choices=["eeg", "tiny"])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--big-batch", type=int, default=4096, help="tried first; halved until it fits")
    parser.add_argument("--infer-batch", type=int, default=1024)
    parser.add_argument("--calls", type=int, default=8, help="timed calls per measurement (after warm-up)")
    parser.add_argument("--conv-impls", nargs="+", default=["xla", "matmul"])
    parser.add_argument("--unrolls", nargs="+", type=int, default=[1, 4, 8, 16])
    parser.add_argument("--loader-windows", type=int, default=20_000)
    parser.add_argument("--loader-batches", type=int, default=10)
    parser.add_argument("--loader-workers", nargs="+", type=int, default=[0, 8])
    parser.add_argument("--compile-estimate-s", type=float, default=100.0, help="torch.compile's step is skipped with less time left")
    parser.add_argument("--deadline", type=float, default=None, help="seconds since the epoch; later parts are skipped")
    parser.add_argument("--windows", type=Path, default=None, help="real windows [N, 1, T] .npy")
    parser.add_argument("--save-windows", type=Path, default=None, help="write 2048 bundled windows (float16) there and exit")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.save_windows:
        np.save(args.save_windows, load_windows(None, 2048, 1250).astype(np.float16))
        print(f"wrote {args.save_windows}")
        return
    if args.part == "torch-core":
        torch_part(args, "core")
    elif args.part == "torch-extra":
        torch_part(args, "extra")
    elif args.part == "jax":
        jax_part(args)
    else:
        merge(args)


if __name__ == "__main__":
    sys.exit(main())
