"""The original's downstream classifier, the model: a small transformer over frozen codec tokens.

Codes ``[N, C, T', K]`` (each electrode coded as its own channel, ``K`` residual quantizers) are
embedded with ``K`` tables initialised from the codec's codebooks and summed per frame, then a
time transformer (over ``T'``, per channel) and a channel transformer (over ``C``, per frame) mix
them, and a two-layer head classifies the time-averaged, flattened ``[B, d*C]`` features:

    codes -> sum_k E_k[codes[..., k]]            [B, C, T', d]   (max-norm 1 rows)
          -> + sinusoid(T') -> post-LN layer      over T' for each (B, C)
          -> + sinusoid(C)  -> post-LN layer      over C  for each (B, T')
          -> mean over T' -> flatten              [B, d*C]
          -> dropout 0.5 -> Linear(d*C, 64) -> GELU -> dropout 0.5 -> Linear(64, classes)

Each post-LN layer is ``torch.nn.TransformerEncoderLayer(d, 8, 64, dropout=0.2, activation="gelu",
norm_first=False)`` with the same parameter layout and initialisation, so for 21 channels, 6
tables of 256 x 16 and 2 classes the model has the original's 52,834 parameters. How it is
trained (the original's recipe) is :mod:`biocodec_jax.evaluation.token_classifier`.

Departures from the original, all forced or harmless:

- ``d`` is the codec's codebook dimension (16 for the released codecs). When ``config.heads``
  does not divide ``d`` (the tiny preset's ``d = 4``), the largest divisor of ``d`` below it is used.
- ``feedforward`` and ``hidden`` are fixed widths (64); the original ties both to ``4 * d``,
  which is 64 at ``d = 16``, so they differ only for other codebook dimensions.
- The original crops codes to a fixed ``T'`` set at construction; here the positions follow the
  input, so any ``T'`` works (the head sees a mean over time, which does not depend on ``T'``).
- As released, the original sums a Python list over ``dim=-1`` (it fails); the intended sum of the
  ``K`` embeddings is what is implemented.
- ``torch.nn.Embedding(max_norm=1)`` renormalises looked-up rows in place before each lookup;
  here rows are renormalised at lookup (with the scale held constant for the gradient, as torch
  does it under ``no_grad``) and the training step projects all rows back to the max norm after
  each update (:func:`renorm_rows`), which gives the same parameters torch would look up.
- Dropout masks come from a counter-based hash keyed by ``jax.random`` (:class:`DropoutMasks`),
  not from a generator per site: same distribution, far cheaper on CPU.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# torch.nn.Embedding's renorm adds this to the norm before dividing (embedding_renorm_).
_RENORM_EPS = 1e-7
# torch.nn.LayerNorm's default epsilon.
_LAYER_NORM_EPS = 1e-5
# The original adds this to the std and to the norm when it initialises the tables from codebooks.
_INIT_EPS = 1e-8


@dataclass(frozen=True)
class TokenClassifierConfig:
    """Architecture and training recipe of the original's token classifier (its defaults).

    One object for both, as the original's command line has them; the model reads the first six.
    ``max_activation_bytes`` is not the original's: it bounds the activations one training
    micro-batch (or evaluation batch) may hold, estimated from the shapes; the training step
    accumulates the gradient of a ``batch_size`` batch over micro-batches that fit it. The default
    (1.5 GiB) keeps the peak RSS of a training run at 64 channels under 4 GB on CPU.
    """

    heads: int = 8
    feedforward: int = 64
    dropout: float = 0.2
    hidden: int = 64
    head_dropout: float = 0.5
    max_norm: float = 1.0
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    b1: float = 0.5
    b2: float = 0.9
    warmup_fraction: float = 0.2
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    max_activation_bytes: int = 3 * 2**29

    def __post_init__(self):
        for name in ("heads", "feedforward", "hidden", "epochs", "batch_size", "max_activation_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenClassifierConfig.{name} must be >= 1; got {getattr(self, name)}")
        if self.batch_size > 2**16:
            raise ValueError(f"TokenClassifierConfig.batch_size must be at most 65536 (the dropout masks' "
                             f"counters); got {self.batch_size}")
        for name in ("dropout", "head_dropout", "warmup_fraction", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"TokenClassifierConfig.{name} must be in [0, 1); got {getattr(self, name)}")


def attention_heads(d: int, heads: int) -> int:
    """The largest divisor of ``d`` that is at most ``heads`` (8 heads for ``d = 16``, 4 for ``d = 4``)."""
    return max(h for h in range(1, min(heads, d) + 1) if d % h == 0)


def embeddings_from_codebooks(codebooks: np.ndarray) -> np.ndarray:
    """Initial embedding tables from codec codebooks ``[K, V, d]`` -> ``[K, V, d]`` float32.

    As the original: each dimension is standardised over the ``V`` codes of its codebook (torch's
    unbiased std), then every row is L2-normalised. An all-zero (untrained) codebook stays zero.
    """
    cb = np.asarray(codebooks, dtype=np.float64)
    if cb.ndim != 3 or min(cb.shape) < 1:
        raise ValueError(f"codebooks must be [quantizers, codes, dim]; got shape {cb.shape}")
    if cb.shape[1] < 2:
        raise ValueError(f"codebooks need at least 2 codes to standardise; got shape {cb.shape}")
    cb = cb - cb.mean(axis=1, keepdims=True)
    cb = cb / (cb.std(axis=1, ddof=1, keepdims=True) + _INIT_EPS)
    cb = cb / (np.linalg.norm(cb, axis=-1, keepdims=True) + _INIT_EPS)
    return cb.astype(np.float32)


def renorm_scale(table: jax.Array, max_norm: float) -> jax.Array:
    """Per-row factor ``[..., 1]`` that brings rows longer than ``max_norm`` back to it (torch's renorm)."""
    norm = jnp.linalg.norm(table, axis=-1, keepdims=True)
    return jnp.where(norm > max_norm, max_norm / (norm + _RENORM_EPS), 1.0)


def renorm_rows(table: jax.Array, max_norm: float) -> jax.Array:
    """Rows of ``table [..., d]`` longer than ``max_norm`` scaled back to it (torch's embedding renorm)."""
    return table * renorm_scale(table, max_norm)


def sinusoidal_positions(length: int, d: int) -> np.ndarray:
    """The original's fixed positional encodings ``[length, d]``: sin on even, cos on odd dims."""
    position = np.arange(length, dtype=np.float64)[:, None]
    div_term = np.exp(np.arange(0, d, 2, dtype=np.float64) * (-math.log(10000.0) / d))
    pe = np.zeros((length, d), dtype=np.float64)
    pe[:, 0::2] = np.sin(position * div_term)
    pe[:, 1::2] = np.cos(position * div_term)[:, : d // 2]  # odd d: one fewer cosine column
    return pe.astype(np.float32)


def _fmix32(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijection of ``uint32`` with full avalanche."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


class DropoutMasks:
    """Keep-masks for the dropout sites of one training pass, keyed by a ``jax.random`` key.

    Each element's bits hash its index in the whole batch with the key and the site's number (two
    rounds of :func:`_fmix32`), which XLA fuses into the dropout itself. ``jax.random``'s generators
    cost about 50 ns per value on CPU; attention-weight dropout needs ``8 T'^2`` values per
    sequence, so with them the random bits took longer than the rest of the training step.

    Every site's tensor is window-major (window ``i`` owns the ``i``-th of ``windows`` equal
    contiguous blocks), so a pass over windows ``first_window .. first_window + windows - 1`` of a
    batch (a micro-batch) gets exactly the masks of those windows in a pass over the whole batch:
    the masks do not depend on how the batch is cut. The index is 64-bit, kept as two 32-bit words;
    the high word (non-zero only past 2^32 elements of one site in the whole batch) is added after
    the first round, so below that the bits are those of a plain 32-bit counter. A batch may hold
    at most 2^16 windows, and one window at most 2^32 elements per site.
    """

    def __init__(self, key: jax.Array, windows: int = 1, first_window: jax.Array | int = 0):
        self.words = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
        self.sites = 0
        self.windows = windows
        self.first_window = jnp.asarray(first_window, jnp.uint32)

    def keep(self, shape: tuple[int, ...], rate: float) -> jax.Array:
        """Boolean mask of ``shape``, each element ``True`` with probability ``1 - rate`` (to 2^-32)."""
        n = math.prod(shape)
        per_window, rest = divmod(n, self.windows)
        if rest:
            raise ValueError(f"a dropout site of shape {shape} does not split into {self.windows} windows")
        if per_window >= 2**32:
            raise ValueError(f"a dropout site of {per_window} elements per window is too large for 32-bit counters")
        self.sites += 1
        salt = _fmix32(self.words[0] + jnp.uint32((self.sites * 0x9E3779B9) % 2**32))
        # first_window * per_window as (low, high) 32-bit words, from 16-bit halves of per_window.
        low_part = self.first_window * jnp.uint32(per_window % 2**16)
        high_part = self.first_window * jnp.uint32(per_window >> 16)
        base = low_part + (high_part << 16)
        base_high = (high_part >> 16) + (base < low_part).astype(jnp.uint32)
        index = base + jax.lax.iota(jnp.uint32, n)
        high = base_high + (index < base).astype(jnp.uint32)
        bits = _fmix32(_fmix32(index ^ salt) + self.words[-1] + high * jnp.uint32(0x85EBCA77))
        return bits.reshape(shape) >= jnp.uint32(min(round(rate * 2**32), 2**32 - 1))


def _dropout(x: jax.Array, rate: float, masks: DropoutMasks | None) -> jax.Array:
    """Inverted dropout; the identity in eval mode (``masks is None``)."""
    if masks is None or rate == 0.0:
        return x
    return jnp.where(masks.keep(x.shape, rate), x / (1.0 - rate), 0.0)


def _uniform(rng: np.random.Generator, bound: float, shape: tuple[int, ...]) -> jax.Array:
    return jnp.asarray(rng.uniform(-bound, bound, shape), jnp.float32)


def reset_linear(linear: nnx.Linear, rng: np.random.Generator, *, xavier: bool = False, zero_bias: bool = False):
    """PyTorch's init of a linear layer: weight U(+-1/sqrt(fan_in)) (``kaiming_uniform(a=sqrt(5))``),
    or xavier-uniform U(+-sqrt(6/(fan_in+fan_out))); bias U(+-1/sqrt(fan_in)) or zero."""
    fan_in, fan_out = linear.in_features, linear.out_features
    bound = math.sqrt(6.0 / (fan_in + fan_out)) if xavier else 1.0 / math.sqrt(fan_in)
    linear.kernel.set_value(_uniform(rng, bound, (fan_in, fan_out)))
    bias_bound = 0.0 if zero_bias else 1.0 / math.sqrt(fan_in)
    linear.bias.set_value(_uniform(rng, bias_bound, (fan_out,)) if bias_bound else jnp.zeros((fan_out,), jnp.float32))


def reset_layer_norm(norm: nnx.LayerNorm):
    norm.scale.set_value(jnp.ones((norm.num_features,), jnp.float32))
    norm.bias.set_value(jnp.zeros((norm.num_features,), jnp.float32))


class PostLNEncoderLayer(nnx.Module):
    """``torch.nn.TransformerEncoderLayer(batch_first=True, norm_first=False, activation="gelu")``.

    Same parameters: a joint ``in_proj`` ``[d, 3d]``, an ``out_proj``, two feed-forward linears
    and two layer norms; :meth:`reset_parameters` gives them torch's initialisation. Dropout on the
    attention weights, after attention, inside the feed-forward and after it, all at ``dropout``.
    """

    def __init__(self, d: int, heads: int, feedforward: int, dropout: float, *, rngs: nnx.Rngs):
        if d % heads:
            raise ValueError(f"{heads} attention heads do not divide the model dimension {d}")
        self.heads = heads
        self.dropout = dropout
        self.in_proj = nnx.Linear(d, 3 * d, rngs=rngs)
        self.out_proj = nnx.Linear(d, d, rngs=rngs)
        self.norm1 = nnx.LayerNorm(d, epsilon=_LAYER_NORM_EPS, rngs=rngs)
        self.linear1 = nnx.Linear(d, feedforward, rngs=rngs)
        self.linear2 = nnx.Linear(feedforward, d, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, epsilon=_LAYER_NORM_EPS, rngs=rngs)

    def reset_parameters(self, rng: np.random.Generator):
        """torch's init: ``in_proj`` xavier-uniform with zero bias, ``out_proj`` zero bias."""
        reset_linear(self.in_proj, rng, xavier=True, zero_bias=True)
        reset_linear(self.out_proj, rng, zero_bias=True)
        reset_linear(self.linear1, rng)
        reset_linear(self.linear2, rng)
        reset_layer_norm(self.norm1)
        reset_layer_norm(self.norm2)

    def self_attention(self, x: jax.Array, masks: DropoutMasks | None) -> jax.Array:
        """Multi-head self-attention over axis 1 of ``[S, L, d]``."""
        s, length, d = x.shape
        head_dim = d // self.heads
        qkv = self.in_proj(x).reshape(s, length, 3, self.heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        weights = jax.nn.softmax(jnp.einsum("sqhc,skhc->shqk", q, k) / math.sqrt(head_dim), axis=-1)
        weights = _dropout(weights, self.dropout, masks)
        return self.out_proj(jnp.einsum("shqk,skhc->sqhc", weights, v).reshape(s, length, d))

    def __call__(self, x: jax.Array, masks: DropoutMasks | None = None) -> jax.Array:
        """``[S, L, d]`` -> ``[S, L, d]``; dropout only when ``masks`` are given (training)."""
        x = self.norm1(x + _dropout(self.self_attention(x, masks), self.dropout, masks))
        ff = self.linear2(_dropout(jax.nn.gelu(self.linear1(x), approximate=False), self.dropout, masks))
        return self.norm2(x + _dropout(ff, self.dropout, masks))


class TokenClassifier(nnx.Module):
    """Summed code embeddings -> time layer -> channel layer -> time mean -> MLP head."""

    def __init__(self, embeddings: np.ndarray, n_channels: int, n_classes: int,
                 config: TokenClassifierConfig, *, rngs: nnx.Rngs):
        _, _, d = embeddings.shape
        self.max_norm = config.max_norm
        self.head_dropout = config.head_dropout
        self.embeddings = nnx.Param(jnp.asarray(embeddings, jnp.float32))  # [K, V, d]
        heads = attention_heads(d, config.heads)
        self.time_layer = PostLNEncoderLayer(d, heads, config.feedforward, config.dropout, rngs=rngs)
        self.channel_layer = PostLNEncoderLayer(d, heads, config.feedforward, config.dropout, rngs=rngs)
        self.hidden = nnx.Linear(d * n_channels, config.hidden, rngs=rngs)
        self.output = nnx.Linear(config.hidden, n_classes, rngs=rngs)

    def reset_parameters(self, embeddings: np.ndarray, rng: np.random.Generator):
        """The given embedding tables and torch's initialisation of everything else."""
        self.embeddings.set_value(jnp.asarray(embeddings, jnp.float32))
        self.time_layer.reset_parameters(rng)
        self.channel_layer.reset_parameters(rng)
        reset_linear(self.hidden, rng)
        reset_linear(self.output, rng)

    def embed(self, codes: jax.Array) -> jax.Array:
        """Codes ``[B, C, T', K]`` -> summed, max-normed embeddings ``[B, C, T', d]``."""
        # torch renorms under no_grad, so the gradient flows through the renormed rows unscaled.
        table = self.embeddings[...]
        table = table * jax.lax.stop_gradient(renorm_scale(table, self.max_norm))
        # One table at a time: never materialise [B, C, T', K, d].
        return functools.reduce(jnp.add, (table[k][codes[..., k]] for k in range(codes.shape[-1])))

    def __call__(self, codes: jax.Array, key: jax.Array | None = None, first_window: jax.Array | int = 0) -> jax.Array:
        """Codes ``[B, C, T', K]`` -> logits ``[B, classes]``; dropout only when ``key`` is given.

        ``codes`` may be a micro-batch: windows ``first_window ..`` of a batch, which then get that
        batch's dropout masks (:class:`DropoutMasks`).
        """
        b, c, t, _ = codes.shape
        masks = None if key is None else DropoutMasks(key, b, first_window)
        x = self.embed(codes)
        d = x.shape[-1]
        x = self.time_layer(x.reshape(b * c, t, d) + sinusoidal_positions(t, d), masks)
        x = x.reshape(b, c, t, d).transpose(0, 2, 1, 3).reshape(b * t, c, d)
        x = self.channel_layer(x + sinusoidal_positions(c, d), masks)
        x = x.reshape(b, t, c, d).mean(axis=1).reshape(b, c * d)
        x = jax.nn.gelu(self.hidden(_dropout(x, self.head_dropout, masks)), approximate=False)
        return self.output(_dropout(x, self.head_dropout, masks))


def init_token_classifier(
    codebooks: np.ndarray, n_channels: int, n_classes: int,
    config: TokenClassifierConfig = TokenClassifierConfig(), seed: int = 0,
) -> tuple[nnx.GraphDef, nnx.State]:
    """``(graphdef, params)`` of a fresh classifier: tables from ``codebooks [K, V, d]``, the rest
    initialised as torch does, drawn with ``numpy.random.Generator(seed)``.

    The structure is built abstractly and filled from numpy: JAX's random initialisers would be
    compiled one by one, which costs seconds on CPU for a model this small.
    """
    embeddings = embeddings_from_codebooks(codebooks)
    model = nnx.eval_shape(lambda: TokenClassifier(embeddings, n_channels, n_classes, config, rngs=nnx.Rngs(0)))
    model.reset_parameters(embeddings, np.random.default_rng(seed))
    return nnx.split(model)


def parameter_count(params: nnx.State) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


@functools.partial(jax.jit, static_argnames=("graphdef",))
def probabilities(params: nnx.State, codes: jax.Array, *, graphdef: nnx.GraphDef) -> jax.Array:
    """Class probabilities ``[B, classes]`` in eval mode (no dropout)."""
    return jax.nn.softmax(nnx.merge(graphdef, params)(codes), axis=-1)
