"""The hand-counted FLOPs that benchmarks divide by: against XLA's own count, and the reference's figures."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from biocodec_jax import preset
from biocodec_jax.model import abstract_model, embed
from experiments.benchmarks import flops


def _xla_count(fn, *args) -> float:
    return jax.jit(fn, static_argnums=0).lower(*args).cost_analysis()["flops"]


def test_conv_stacks_match_xlas_count():
    """Without the LSTM (whose scan XLA counts once) XLA's count covers everything: agree within 3%
    (XLA also counts the element-wise work the hand count leaves out)."""
    cfg = dataclasses.replace(preset("eeg").codec, lstm_layers=0)
    graphdef, params = abstract_model(cfg)
    n, length = 4, 1250
    frames = -(-length // cfg.hop_length)
    enc = _xla_count(embed, graphdef, params, jax.ShapeDtypeStruct((n, length), jnp.float32)) / n
    assert enc == pytest.approx(flops.encoder_flops(cfg, length), rel=0.03)

    def synthesize(graphdef, params, z):
        from flax import nnx

        return nnx.merge(graphdef, params).synthesize(z)

    dec = _xla_count(synthesize, graphdef, params, jax.ShapeDtypeStruct((n, frames, cfg.dimension), jnp.float32)) / n
    assert dec == pytest.approx(flops.decoder_flops(cfg, frames), rel=0.03)


def test_counts_are_the_references():
    """shared/reference/performance.md: about 0.47 GFLOP per window for the encoder (LSTM about
    0.22 of it), the same for the decoder, about 2.8 GFLOP per training window."""
    config = preset("eeg")
    counts = flops.model_flops(config.codec, config.loss, 1250)
    assert flops.encoder_flops(config.codec, 1250) / 1e9 == pytest.approx(0.47, abs=0.015)
    assert counts["decode"] / 1e9 == pytest.approx(0.47, abs=0.015)
    assert counts["train_step"] / 1e9 == pytest.approx(2.8, abs=0.05)
    with_lstm = flops.encoder_flops(config.codec, 1250)
    without = flops.encoder_flops(dataclasses.replace(config.codec, lstm_layers=0), 1250)
    assert (with_lstm - without) / 1e9 == pytest.approx(0.22, abs=0.005)


def test_xla_undercounts_the_lstm_scan():
    """Why the hand count is needed: XLA counts the scan's body once, not once per frame, so it
    misses the recurrent products ``h W_hh`` of all frames but one (the input projection is one
    matmul outside the scan and is counted)."""
    cfg = preset("eeg").codec
    graphdef, params = abstract_model(cfg)
    xla = _xla_count(embed, graphdef, params, jax.ShapeDtypeStruct((2, 1250), jnp.float32)) / 2
    frames, width = 105, 256
    recurrent_missed = cfg.lstm_layers * (frames - 1) * 2 * width * 4 * width
    assert flops.encoder_flops(cfg, 1250) - xla == pytest.approx(recurrent_missed, rel=0.1)
