"""The original's downstream classifier: a small transformer over frozen codec tokens.

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
tables of 256 x 16 and 2 classes the model has the original's 52,834 parameters.

Training follows the original's recipe (AdamW (0.5, 0.9), lr 1e-3, weight decay 1e-2, 20 %
linear warm-up then cosine, 20 epochs of batch 128, global-norm clip 1.0, class-weighted
cross-entropy with label smoothing 0.1) and keeps the epoch with the best validation balanced
accuracy. Everything is pure: the model is ``nnx.split`` once and the jitted train step and
evaluation ``nnx.merge`` it inside; dropout is driven by explicit keys.

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
  does it under ``no_grad``) and all rows are projected back to the max norm after each update,
  which gives the same parameters torch would look up.
- A class absent from the validation labels is allowed: balanced accuracy (sklearn) averages the
  recall over the classes present in the validation labels only.
- Dropout masks come from a counter-based hash keyed by ``jax.random`` (:class:`DropoutMasks`),
  not from a generator per site: same distribution, far cheaper on CPU.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from biocodec_jax.evaluation.dataset import DatasetError

# torch.nn.Embedding's renorm adds this to the norm before dividing (embedding_renorm_).
_RENORM_EPS = 1e-7
# torch.nn.LayerNorm's default epsilon.
_LAYER_NORM_EPS = 1e-5
# The original adds this to the std and to the norm when it initialises the tables from codebooks.
_INIT_EPS = 1e-8
# Evaluation batches are cut so one attention-weight tensor stays under 1 GiB of float32 (a batch
# of 256 windows of 64 channels x 105 frames would need 9 GiB per tensor).
_EVAL_ATTENTION_ELEMENTS = 2**28


@dataclass(frozen=True)
class TokenClassifierConfig:
    """Architecture and training recipe of the original's token classifier (its defaults)."""

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

    def __post_init__(self):
        for name in ("heads", "feedforward", "hidden", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenClassifierConfig.{name} must be >= 1; got {getattr(self, name)}")
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

    Each element's bits hash its index with the key and the site's number (two rounds of
    :func:`_fmix32`), which XLA fuses into the dropout itself. ``jax.random``'s generators cost
    about 50 ns per value on CPU; attention-weight dropout needs ``8 T'^2`` values per sequence, so
    with them the random bits took longer than the rest of the training step.
    """

    def __init__(self, key: jax.Array):
        self.words = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
        self.sites = 0

    def keep(self, shape: tuple[int, ...], rate: float) -> jax.Array:
        """Boolean mask of ``shape``, each element ``True`` with probability ``1 - rate`` (to 2^-32)."""
        n = math.prod(shape)
        if n >= 2**32:
            raise ValueError(f"a dropout site of {n} elements is too large for 32-bit counters; use a smaller batch")
        self.sites += 1
        salt = _fmix32(self.words[0] + jnp.uint32((self.sites * 0x9E3779B9) % 2**32))
        bits = _fmix32(_fmix32(jax.lax.iota(jnp.uint32, n) ^ salt) + self.words[-1])
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

    def __call__(self, codes: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Codes ``[B, C, T', K]`` -> logits ``[B, classes]``; dropout only when ``key`` is given."""
        b, c, t, _ = codes.shape
        masks = None if key is None else DropoutMasks(key)
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


# --- loss, optimiser, steps ----------------------------------------------------------------------


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``N / (classes * count)`` (sklearn's "balanced"); every class must occur."""
    counts = np.bincount(labels, minlength=n_classes)
    return (len(labels) / (n_classes * counts)).astype(np.float32)


def weighted_smoothed_cross_entropy(
    logits: jax.Array, labels: jax.Array, weights: jax.Array, mask: jax.Array, smoothing: float
) -> jax.Array:
    """``torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=smoothing)`` over the rows with ``mask``.

    Both terms are divided by the summed weight of the targets, as torch's mean reduction does.
    """
    log_p = jax.nn.log_softmax(logits, axis=-1)
    target_weight = weights[labels] * mask
    total = jnp.sum(target_weight)
    nll = -jnp.sum(target_weight * jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]) / total
    smooth = -jnp.sum(mask * jnp.sum(log_p * weights, axis=-1)) / total
    return (1.0 - smoothing) * nll + smoothing / logits.shape[-1] * smooth


@optax.inject_hyperparams
def clipped_adamw(learning_rate, b1, b2, weight_decay, clip_norm) -> optax.GradientTransformation:
    """Global-norm clip, then AdamW; every hyperparameter lives in the optimiser state (so changing
    one, or the learning rate each step, does not recompile the training step)."""
    return optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay),
    )


def make_optimizer(config: TokenClassifierConfig) -> optax.GradientTransformation:
    return clipped_adamw(config.learning_rate, config.b1, config.b2, config.weight_decay, config.clip_norm)


def learning_rates(config: TokenClassifierConfig, total_steps: int) -> np.ndarray:
    """The learning rate of every step: linear warm-up from 0 over ``warmup_fraction``, then cosine to 0."""
    warmup = max(1, int(round(config.warmup_fraction * total_steps)))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup_steps=warmup, decay_steps=max(total_steps, warmup + 1), end_value=0.0
    )
    # One small compiled program instead of a dozen eagerly compiled operations.
    return np.asarray(jax.jit(schedule)(np.arange(total_steps)), dtype=np.float32)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def train_step(
    params: nnx.State, opt_state: optax.OptState, key: jax.Array, learning_rate: jax.Array,
    codes: jax.Array, labels: jax.Array, mask: jax.Array, weights: jax.Array, label_smoothing: jax.Array,
    *, graphdef: nnx.GraphDef,
) -> tuple[nnx.State, optax.OptState, jax.Array]:
    """One clipped AdamW step on a (padded) batch; rows with ``mask == 0`` do not count. Returns the loss.

    The optimiser works on all parameters raveled into one vector: its update is then a handful of
    fused kernels instead of a few per parameter array (less to compile). ``opt_state`` is
    :func:`make_optimizer`'s state over that vector.
    """

    def loss_fn(p):
        logits = nnx.merge(graphdef, p)(codes, key)
        return weighted_smoothed_cross_entropy(logits, labels, weights, mask, label_smoothing)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    flat, unravel = ravel_pytree(params)
    opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": learning_rate})
    # The hyperparameters are read from opt_state; the placeholders only give the structure.
    updates, opt_state = clipped_adamw(0.0, 0.0, 0.0, 0.0, 0.0).update(ravel_pytree(grads)[0], opt_state, flat)
    model = nnx.merge(graphdef, unravel(flat + updates))
    # What torch would find at the next lookup: rows renormalised to max_norm.
    model.embeddings.set_value(renorm_rows(model.embeddings[...], model.max_norm))
    return nnx.state(model), opt_state, loss


@functools.partial(jax.jit, static_argnames=("graphdef",))
def probabilities(params: nnx.State, codes: jax.Array, *, graphdef: nnx.GraphDef) -> jax.Array:
    """Class probabilities ``[B, classes]`` in eval mode (no dropout)."""
    return jax.nn.softmax(nnx.merge(graphdef, params)(codes), axis=-1)


def _predict(graphdef: nnx.GraphDef, params: nnx.State, codes: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities for all ``codes``, in batches of one fixed size (the last one padded).

    The batch is at most ``batch_size`` and small enough to keep each attention-weight tensor under
    ``_EVAL_ATTENTION_ELEMENTS``; the result does not depend on it.
    """
    n, c, t, _ = codes.shape
    heads = nnx.merge(graphdef, params).time_layer.heads
    per_window = heads * (c * t * t + t * c * c)  # time layer + channel layer attention weights
    size = max(1, min(batch_size, n, _EVAL_ATTENTION_ELEMENTS // per_window))
    out = []
    for start in range(0, n, size):
        batch = codes[start:start + size]
        real = len(batch)
        if real < size:
            batch = np.concatenate([batch, np.repeat(batch[:1], size - real, axis=0)])
        out.append(np.asarray(probabilities(params, jnp.asarray(batch), graphdef=graphdef))[:real])
    return np.concatenate(out)


# --- validation of inputs -------------------------------------------------------------------------


def _check_codes(codes: np.ndarray, what: str, n_codes: int, n_books: int, n_channels: int | None = None,
                 allow_empty: bool = False) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 4:
        raise DatasetError(f"{what}: codes must be [windows, channels, frames, quantizers]; got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise DatasetError(f"{what}: codes must be integers; got {codes.dtype}")
    if len(codes) == 0 and not allow_empty:
        raise DatasetError(f"{what}: no windows")
    if codes.shape[-1] > n_books:
        raise DatasetError(f"{what}: codes have {codes.shape[-1]} quantizers but there are only {n_books} codebooks")
    if n_channels is not None and codes.shape[1] != n_channels:
        raise DatasetError(f"{what}: codes have {codes.shape[1]} channels; the classifier was built for {n_channels}")
    if codes.size and (codes.min() < 0 or codes.max() >= n_codes):
        raise DatasetError(f"{what}: codes must be in 0..{n_codes - 1}; got {codes.min()}..{codes.max()}")
    return codes.astype(np.int32)


def _check_labels(labels: np.ndarray, n: int, n_classes: int, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise DatasetError(f"{what}: {labels.shape} labels for {n} windows")
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"{what}: labels must be in 0..{n_classes - 1}; got {labels.min()}..{labels.max()}")
    return labels.astype(np.int32)


def _balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        # A prediction of a class absent from the validation labels is just a wrong prediction,
        # and one class in both labels and predictions is a well-defined score.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        return float(balanced_accuracy_score(labels, predicted))


# --- fitting ---------------------------------------------------------------------------------------


@dataclass
class FittedTokenClassifier:
    """A trained classifier: the parameters of its best validation epoch and its training history.

    ``history`` has one entry per epoch (``epoch`` counts from 1; ``train_loss``, the mean of the
    epoch's batch losses weighted by their windows; ``val_balanced_accuracy``). ``best_epoch`` is
    the first epoch with the highest validation balanced accuracy, whose parameters ``state`` holds.
    """

    graphdef: nnx.GraphDef
    state: nnx.State
    config: TokenClassifierConfig
    n_classes: int
    best_epoch: int
    history: list[dict] = field(default_factory=list)

    @property
    def embeddings(self) -> np.ndarray:
        """The embedding tables ``[K, V, d]``."""
        return np.asarray(nnx.merge(self.graphdef, self.state).embeddings[...])

    @property
    def n_parameters(self) -> int:
        return parameter_count(self.state)

    def predict_proba(self, codes: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``[N, n_classes]`` (rows sum to 1) for codes ``[N, C, T', K]``, eval mode."""
        model = nnx.merge(self.graphdef, self.state)
        n_books, n_codes, d = model.embeddings[...].shape
        n_channels = model.hidden.in_features // d  # the head sees [B, d * C]
        codes = _check_codes(codes, "token classifier input", n_codes, n_books, n_channels, allow_empty=True)
        if len(codes) == 0:
            return np.zeros((0, self.n_classes), np.float32)
        return _predict(self.graphdef, self.state, codes, batch_size)


def fit_token_classifier(
    codes_train: np.ndarray,
    y_train: np.ndarray,
    codes_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    codebooks: np.ndarray,
    config: TokenClassifierConfig = TokenClassifierConfig(),
    seed: int = 0,
    progress: bool = False,
) -> FittedTokenClassifier:
    """Train the original's token classifier on codes ``[N, C, T', K]`` and keep its best validation epoch.

    ``codebooks [K, V, d]`` are the codec's (``codec.codebooks.codebook``); they initialise the
    embedding tables and fix ``d``. Codes with fewer quantizers than codebooks use the first tables.
    Every class must occur in ``y_train`` (class weights are inverse frequencies); classes absent
    from ``y_val`` are left out of the validation balanced accuracy. Deterministic for ``seed``:
    the batch order and the initialisation come from ``numpy.random.Generator(seed)``, dropout
    from ``jax.random.key(seed)`` (see :class:`DropoutMasks`). The last batch of an epoch is
    padded to full size (the padding does not count), so one shape is compiled.
    """
    codebooks = np.asarray(codebooks, dtype=np.float32)
    if codebooks.ndim != 3:
        raise DatasetError(f"codebooks must be [quantizers, codes, dim]; got shape {codebooks.shape}")
    n_books, n_codes, _ = codebooks.shape
    codes_train = _check_codes(codes_train, "training codes", n_codes, n_books)
    _, n_channels, _, n_used = codes_train.shape
    codes_val = _check_codes(codes_val, "validation codes", n_codes, n_books, n_channels)
    if codes_val.shape[-1] != n_used:
        raise DatasetError(f"validation codes have {codes_val.shape[-1]} quantizers, training codes {n_used}")
    y_train = _check_labels(y_train, len(codes_train), n_classes, "training labels")
    y_val = _check_labels(y_val, len(codes_val), n_classes, "validation labels")
    missing = [c for c in range(n_classes) if not np.any(y_train == c)]
    if missing:
        raise DatasetError(f"class(es) {', '.join(map(str, missing))} of {n_classes} absent from the training labels; "
                           f"the classifier cannot learn them (and their inverse-frequency weight is undefined)")

    graphdef, params = init_token_classifier(codebooks[:n_used], n_channels, n_classes, config, seed)
    dropout_key = jax.random.key(seed)
    n = len(codes_train)
    batch = min(config.batch_size, n)
    steps_per_epoch = -(-n // batch)
    rates = learning_rates(config, config.epochs * steps_per_epoch)
    opt_state = make_optimizer(config).init(ravel_pytree(params)[0])
    weights = jnp.asarray(class_weights(y_train, n_classes))
    smoothing = jnp.float32(config.label_smoothing)
    shuffler = np.random.default_rng(seed)

    best_accuracy, best_epoch, best_params, history = -np.inf, 0, params, []
    step = 0
    for epoch in range(1, config.epochs + 1):
        order = shuffler.permutation(n)
        order = np.concatenate([order, order[: steps_per_epoch * batch - n]])
        mask = (np.arange(len(order)) < n).astype(np.float32)
        losses = []
        for i in range(steps_per_epoch):
            rows, in_batch = order[i * batch:(i + 1) * batch], mask[i * batch:(i + 1) * batch]
            params, opt_state, loss = train_step(
                params, opt_state, jax.random.fold_in(dropout_key, step), rates[step], codes_train[rows],
                y_train[rows], in_batch, weights, smoothing, graphdef=graphdef,
            )
            losses.append((loss, in_batch.sum()))
            step += 1
        train_loss = float(sum(float(v) * m for v, m in losses) / n)
        predicted = _predict(graphdef, params, codes_val, config.batch_size).argmax(axis=-1)
        accuracy = _balanced_accuracy(y_val, predicted)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_balanced_accuracy": accuracy})
        if accuracy > best_accuracy:
            best_accuracy, best_epoch, best_params = accuracy, epoch, params
        if progress:
            print(f"token classifier epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, "
                  f"val balanced accuracy {accuracy:.4f}" + (" (best)" if best_epoch == epoch else ""), flush=True)
    return FittedTokenClassifier(graphdef, best_params, config, n_classes, best_epoch, history)
