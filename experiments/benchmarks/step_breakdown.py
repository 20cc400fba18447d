"""Where the training step's time goes: the step with and without its LSTMs, and the LSTM stack alone.

    python -m experiments.benchmarks.step_breakdown [--batch 32] [--repeats 5] [--output FILE]

Times (median of ``--repeats`` calls, compilation excluded), EEG preset, 5-s windows:

- JAX training step as configured, and with ``codec.lstm_layers=0`` (the LSTM blocks become their
  skip connection): the difference is what the two LSTM stacks cost inside the step;
- forward + backward of the encoder, the decoder and the multi-scale STFT loss alone, in JAX and
  (with the ``[torch]`` extra) in PyTorch;
- one 2-layer LSTM stack of width 256 over the encoder's 105 frames, forward + backward: ours
  (``biocodec_jax.nn.lstm``: a ``lax.scan`` with a custom VJP), PyTorch's ``nn.LSTM`` when the
  ``[torch]`` extra is installed (its fused CPU kernel, cuDNN on a GPU), and on a GPU JAX's
  cuDNN binding (``jax.experimental.rnn``) for comparison.

This is the profile behind the README's speed notes: it says how much of the gap to a PyTorch step
the recurrent part explains. JSON goes to ``results/step_breakdown_<platform>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import rnn

from biocodec_jax import preset
from biocodec_jax.losses import multiscale_stft_loss
from biocodec_jax.model import BioCodecModel
from biocodec_jax.nn.lstm import LSTM
from biocodec_jax.training import init_state, train_step
from experiments.benchmarks.common import RESULTS, machine_info, write_report


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def jax_parts(batch: int, repeats: int, windows: np.ndarray) -> dict:
    out = {}
    x = jnp.asarray(windows[:batch])
    for layers in (2, 0):
        config = preset("eeg")
        config = dataclasses.replace(config, codec=dataclasses.replace(config.codec, lstm_layers=layers))
        holder = {"s": init_state(config, jax.random.PRNGKey(0), np.asarray(x))}

        def step():
            holder["s"], metrics = train_step(holder["s"], x)
            jax.block_until_ready(metrics["loss"])

        out[f"train_step_lstm_layers_{layers}_s"] = _median_seconds(step, repeats)
    out["lstm_share_of_step"] = 1 - out["train_step_lstm_layers_0_s"] / out["train_step_lstm_layers_2_s"]

    config = preset("eeg")
    graphdef_m, params_m = nnx.split(BioCodecModel(config.codec, rngs=nnx.Rngs(params=0)), nnx.Param)
    items = x.reshape(batch, -1)
    z = jax.random.normal(jax.random.PRNGKey(3), (batch, 105, config.codec.dimension))

    def grad_time(f, *args):
        g = jax.jit(jax.grad(f, argnums=tuple(range(len(args)))))
        return _median_seconds(lambda: jax.block_until_ready(g(*args)), repeats)

    out["encoder_fwd_bwd_s"] = grad_time(lambda p, x: jnp.sum(nnx.merge(graphdef_m, p).embed(x) ** 2), params_m, items)
    out["decoder_fwd_bwd_s"] = grad_time(lambda p, z: jnp.sum(nnx.merge(graphdef_m, p).synthesize(z) ** 2), params_m, z)
    out["stft_loss_fwd_bwd_s"] = grad_time(
        lambda y: multiscale_stft_loss(items, y, config.loss.stft_n_ffts, config.loss.stft_feature_weights), items * 0.5
    )

    lstm = LSTM(256, 256, 2, rngs=nnx.Rngs(params=0))
    graphdef, params = nnx.split(lstm, nnx.Param)
    h = jax.random.normal(jax.random.PRNGKey(1), (batch, 105, 256))
    loss = jax.jit(jax.grad(lambda p, h: jnp.sum(nnx.merge(graphdef, p)(h) ** 2), argnums=(0, 1)))
    out["lstm_stack_fwd_bwd_scan_s"] = _median_seconds(lambda: jax.block_until_ready(loss(params, h)), repeats)

    if jax.default_backend() == "gpu":
        n_params = rnn.get_num_params_in_lstm(256, 256, 2, False)
        w = jax.random.uniform(jax.random.PRNGKey(2), (n_params,), minval=-0.06, maxval=0.06)
        zeros = jnp.zeros((2, batch, 256))
        lengths = jnp.full((batch,), 105, jnp.int32)

        def cudnn_loss(w, h):
            y, _, _ = rnn.lstm(h, zeros, zeros, w, lengths, 256, 256, 2, 0.0, False)
            return jnp.sum(y**2)

        grad = jax.jit(jax.grad(cudnn_loss, argnums=(0, 1)))
        out["lstm_stack_fwd_bwd_jax_cudnn_s"] = _median_seconds(lambda: jax.block_until_ready(grad(w, h)), repeats)
    return out


def torch_parts(batch: int, repeats: int) -> dict:
    try:
        import torch
    except ImportError:
        return {}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lstm = torch.nn.LSTM(256, 256, 2, batch_first=True).to(device)
    h = torch.randn(batch, 105, 256, device=device, requires_grad=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        lstm.zero_grad(set_to_none=True)
        (lstm(h)[0] ** 2).sum().backward()
        sync()

    from experiments.baselines.torch_biocodec import build_torch_codec, reconstruction_losses

    model = build_torch_codec("eeg").to(device)
    x = torch.randn(batch, 1, 1250, device=device)
    z = torch.randn(batch, 128, 105, device=device)

    def grad_time(fn):
        def run():
            model.zero_grad(set_to_none=True)
            fn().backward()
            sync()

        return _median_seconds(run, repeats)

    y = (0.5 * x).requires_grad_()
    return {
        "lstm_stack_fwd_bwd_torch_s": _median_seconds(step, repeats),
        "torch_encoder_fwd_bwd_s": grad_time(lambda: (model.encoder(x) ** 2).sum()),
        "torch_decoder_fwd_bwd_s": grad_time(lambda: (model.decoder(z) ** 2).sum()),
        "torch_stft_loss_fwd_bwd_s": grad_time(lambda: reconstruction_losses(x, y)["l_f"]),
        "torch_device": str(device),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="default 32 on CPU, 512 on a GPU")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--windows", type=Path, default=None, help="windows [N, 1, 1250] .npy (default: random)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--no-torch", action="store_true", help="JAX parts only")
    args = parser.parse_args(argv)
    batch = args.batch or (512 if jax.default_backend() == "gpu" else 32)
    rng = np.random.default_rng(0)
    windows = np.load(args.windows).astype(np.float32) if args.windows else rng.standard_normal((batch, 1, 1250)).astype(np.float32)
    report = {"batch": batch, **jax_parts(batch, args.repeats, windows), **({} if args.no_torch else torch_parts(batch, args.repeats))}
    report["machine"] = machine_info("jax", "torch", platform=jax.default_backend(), device=str(jax.devices()[0].device_kind))
    output = args.output or RESULTS / f"step_breakdown_{jax.default_backend()}.json"
    write_report(report, output)
    for k, v in report.items():
        if k != "machine":
            print(f"{k:36s} {v:.4f}" if isinstance(v, float) else f"{k:36s} {v}")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
