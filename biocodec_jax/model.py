"""The BioCodec network (encoder, quantizer projections, decoder) and its pure forward functions.

``BioCodecModel`` holds structure and trainable parameters only. Codebooks live outside it in a
:class:`~biocodec_jax.quantization.codebook.CodebookState`, so every function here is pure:
``nnx.split`` the model once, jit a function over ``(params, codebooks, x)``, ``nnx.merge`` inside.

Signals enter as ``[N, T]`` (one channel per item, as the original codes channels independently).

How the network computes (``numerics``: compute dtype, convolution implementation, LSTM unroll) is
part of the graph, not of the parameters: the same ``params`` run under any
:class:`~biocodec_jax.config.Numerics`. Under bfloat16 the encoder and decoder compute in bfloat16
while the quantizer (projections, cosine similarities and argmax, EMA statistics) and the losses
get and give float32: a code is chosen by comparing similarities that can differ in the 3rd digit,
and the EMA sums thousands of vectors per step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from biocodec_jax.config import CodecConfig, LossConfig, Numerics
from biocodec_jax.losses import multiscale_stft_loss, pearson_correlation, si_sdr, smooth_l1
from biocodec_jax.nn.seanet import Decoder, Encoder
from biocodec_jax.quantization import rvq
from biocodec_jax.quantization.codebook import CodebookState


class BioCodecModel(nnx.Module):
    def __init__(self, cfg: CodecConfig, *, numerics: Numerics = Numerics(), rngs: nnx.Rngs):
        self.encoder = Encoder(cfg, numerics=numerics, rngs=rngs)
        self.quantizer = rvq.RVQProjections(cfg, rngs=rngs)
        self.decoder = Decoder(cfg, numerics=numerics, rngs=rngs)

    def embed(self, x: jax.Array) -> jax.Array:
        """``[N, T]`` -> ``[N, ceil(T/hop), D]``."""
        return self.encoder(x[..., None])

    def synthesize(self, z: jax.Array) -> jax.Array:
        """``[N, T', D]`` -> ``[N, T' * hop]``."""
        return self.decoder(z)[..., 0]


def init_model(
    cfg: CodecConfig, seed: int | jax.Array = 0, numerics: Numerics = Numerics()
) -> tuple[nnx.GraphDef, nnx.State]:
    """Randomly initialised (float32) parameters, PyTorch-style; returns ``(graphdef, params)``."""
    model = BioCodecModel(cfg, numerics=numerics, rngs=nnx.Rngs(params=seed))
    return nnx.split(model, nnx.Param)


def abstract_model(cfg: CodecConfig, numerics: Numerics = Numerics()) -> tuple[nnx.GraphDef, nnx.State]:
    """``(graphdef, params)`` with ``jax.ShapeDtypeStruct`` leaves: structure without computation."""
    return nnx.split(nnx.eval_shape(lambda: BioCodecModel(cfg, numerics=numerics, rngs=nnx.Rngs(params=0))), nnx.Param)


def init_codebooks(cfg: CodecConfig) -> CodebookState:
    return CodebookState.zeros(cfg.n_q, cfg.codebook_size, cfg.codebook_dim)


# --- inference -------------------------------------------------------------------------------


def embed(graphdef: nnx.GraphDef, params: nnx.State, x: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, params).embed(x)


def encode(graphdef: nnx.GraphDef, params: nnx.State, codebooks: CodebookState, x: jax.Array, n_q: int) -> jax.Array:
    """``[N, T]`` -> int32 codes ``[N, T', n_q]``."""
    model = nnx.merge(graphdef, params)
    return rvq.encode(model.quantizer, codebooks, model.embed(x), n_q)


def decode(graphdef: nnx.GraphDef, params: nnx.State, codebooks: CodebookState, codes: jax.Array) -> jax.Array:
    """Codes ``[N, T', K]`` (any ``K <= n_q``) -> ``[N, T' * hop]``."""
    model = nnx.merge(graphdef, params)
    return model.synthesize(rvq.decode(model.quantizer, codebooks, codes))


def kmeans_init(graphdef: nnx.GraphDef, params: nnx.State, cfg: CodecConfig, x: jax.Array, key: jax.Array) -> CodebookState:
    """Codebooks initialised by k-means on the embeddings of the batch ``x [N, T]``."""
    model = nnx.merge(graphdef, params)
    return rvq.kmeans_init(model.quantizer, model.embed(x), key, cfg)


# --- training --------------------------------------------------------------------------------


def training_loss(
    params: nnx.State,
    graphdef: nnx.GraphDef,
    codebooks: CodebookState,
    x: jax.Array,
    key: jax.Array,
    codec_cfg: CodecConfig,
    loss_cfg: LossConfig,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], CodebookState]]:
    """The training forward and objective on a batch ``x [N, T]``; differentiable in ``params``.

    Returns ``(loss, (metrics, codebooks))`` for ``jax.value_and_grad(..., has_aux=True)``; the
    codebooks are those after this batch's EMA update.
    """
    model = nnx.merge(graphdef, params)
    emb = model.embed(x)
    q = rvq.quantize_train(model.quantizer, codebooks, emb, key, codec_cfg)
    recon = model.synthesize(q.quantized)[:, : x.shape[-1]]
    l_t = smooth_l1(x, recon, loss_cfg.huber_beta)
    l_f = multiscale_stft_loss(x, recon, loss_cfg.stft_n_ffts, loss_cfg.stft_feature_weights)
    loss = loss_cfg.time_weight * l_t + loss_cfg.freq_weight * l_f + loss_cfg.commitment_weight * q.commit_mse
    recon = jax.lax.stop_gradient(recon)
    metrics = {
        "loss": loss,
        "l_t": l_t,
        "l_f": l_f,
        "commit_mse": q.commit_mse,
        "corr": jnp.mean(pearson_correlation(x, recon)),
        "si_sdr": jnp.mean(si_sdr(x, recon)),
    }
    return loss, (metrics, q.codebooks)
