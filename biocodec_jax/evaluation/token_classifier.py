"""The original's downstream classifier, trained: its recipe, model selection and prediction.

The model (a small transformer over frozen codec tokens, :class:`TokenClassifier`) is
:mod:`biocodec_jax.evaluation.token_model`; its names are re-exported here. Training follows the
original's recipe (AdamW (0.5, 0.9), lr 1e-3, weight decay 1e-2, 20 % linear warm-up then cosine,
20 epochs of batch 128, global-norm clip 1.0, class-weighted cross-entropy with label smoothing
0.1) and keeps the epoch with the best validation balanced accuracy. Everything is pure: the model
is ``nnx.split`` once and the jitted train step and evaluation ``nnx.merge`` it inside; dropout is
driven by explicit keys.

Memory is bounded by ``TokenClassifierConfig.max_activation_bytes``: XLA assigns 27 GB of buffers
to a training step on a whole batch of 128 windows of 64 channels x 105 frames (165 GB at 313
frames, a codec of hop 4), so the training step sums the gradient over micro-batches that fit the budget (one ``lax.scan`` in one
compiled step, :func:`training_micro_batch`) and evaluation runs in batches that fit it. The
optimisation is the full batch's: the loss of each micro-batch is divided by the summed target
weight of the whole batch, and each window keeps its dropout masks (:class:`DropoutMasks`), so
only float rounding depends on the micro-batch size.

A class absent from the validation labels is allowed: balanced accuracy (sklearn) averages the
recall over the classes present in the validation labels only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from biocodec_jax.evaluation.dataset import DatasetError, check_labels
from biocodec_jax.evaluation.metrics import balanced_accuracy
from biocodec_jax.evaluation.token_model import (  # noqa: F401  (re-exported: the model's names)
    DropoutMasks,
    PostLNEncoderLayer,
    TokenClassifier,
    TokenClassifierConfig,
    attention_heads,
    embeddings_from_codebooks,
    init_token_classifier,
    parameter_count,
    probabilities,
    renorm_rows,
    renorm_scale,
    reset_layer_norm,
    reset_linear,
    sinusoidal_positions,
)

# Copies of a window's attention weights and of its per-token values that XLA's CPU programs hold
# at once, fitted to ``compiled.memory_analysis().temp_size_in_bytes`` of the train step and of
# ``probabilities`` at 1-64 channels, 8-313 frames, d = 4-16. Training: XLA's figure is 5.3-5.7
# attention copies (208 MB per window at 64 x 105, 1.29 GB at 64 x 313); the estimate is 5 % below
# to 35 % above it. Evaluation materialises little of the attention (5.8 MB per window at 64 x 105); the
# estimate is 1.2-4 times above it.
_TRAIN_ATTENTION_COPIES, _TRAIN_TOKEN_COPIES = 5.6, 8.0
_EVAL_ATTENTION_COPIES, _EVAL_TOKEN_COPIES = 0.5, 3.0


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
    return cross_entropy_share(logits, labels, weights, mask, smoothing, jnp.sum(weights[labels] * mask))


def cross_entropy_share(
    logits: jax.Array, labels: jax.Array, weights: jax.Array, mask: jax.Array, smoothing: float, total: jax.Array
) -> jax.Array:
    """The rows' part of :func:`weighted_smoothed_cross_entropy` over a batch whose summed target
    weight (``weights[labels] * mask``, summed) is ``total``: the parts of a batch's micro-batches
    add up to the batch's loss."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    target_weight = weights[labels] * mask
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


def loss_and_gradient(
    params: nnx.State, key: jax.Array, codes: jax.Array, labels: jax.Array, mask: jax.Array, weights: jax.Array,
    label_smoothing: jax.Array, graphdef: nnx.GraphDef, micro_batch: int | None = None,
) -> tuple[jax.Array, nnx.State]:
    """The training loss of a (padded) batch (rows with ``mask == 0`` do not count) and its gradient.

    With ``micro_batch`` smaller than the batch, both are summed over micro-batches of that many
    windows in a ``lax.scan`` (the last one padded with rows that do not count), each loss divided
    by the whole batch's summed target weight and each window given its dropout masks in the whole
    batch: the full batch's loss and gradient to float rounding, with the activations of one
    micro-batch held at a time. Traceable (called inside :func:`train_step`).
    """
    total = jnp.sum(weights[labels] * mask)

    def loss_fn(p, codes, labels, mask, first_window):
        logits = nnx.merge(graphdef, p)(codes, key, first_window)
        return cross_entropy_share(logits, labels, weights, mask, label_smoothing, total)

    b = codes.shape[0]
    if micro_batch is None or micro_batch >= b:
        return jax.value_and_grad(loss_fn)(params, codes, labels, mask, 0)
    n_micro = -(-b // micro_batch)
    pad = n_micro * micro_batch - b  # < n_micro <= b
    split = lambda a: jnp.concatenate([a, a[:pad]]).reshape(n_micro, micro_batch, *a.shape[1:])  # noqa: E731
    mask = jnp.concatenate([mask, jnp.zeros((pad,), mask.dtype)]).reshape(n_micro, micro_batch)

    def accumulate(carry, micro):
        return jax.tree.map(jnp.add, carry, jax.value_and_grad(loss_fn)(params, *micro)), None

    zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
    micro = (split(codes), split(labels), mask, jnp.arange(n_micro, dtype=jnp.uint32) * micro_batch)
    return jax.lax.scan(accumulate, zero, micro)[0]


@functools.partial(jax.jit, static_argnames=("graphdef", "micro_batch"))
def train_step(
    params: nnx.State, opt_state: optax.OptState, key: jax.Array, learning_rate: jax.Array,
    codes: jax.Array, labels: jax.Array, mask: jax.Array, weights: jax.Array, label_smoothing: jax.Array,
    *, graphdef: nnx.GraphDef, micro_batch: int | None = None,
) -> tuple[nnx.State, optax.OptState, jax.Array]:
    """One clipped AdamW step on a (padded) batch; rows with ``mask == 0`` do not count. Returns the loss.

    ``micro_batch``: the gradient is accumulated over micro-batches of that many windows
    (:func:`loss_and_gradient`); the step is the full batch's to float rounding.

    The optimiser works on all parameters raveled into one vector: its update is then a handful of
    fused kernels instead of a few per parameter array (less to compile). ``opt_state`` is
    :func:`make_optimizer`'s state over that vector.
    """
    loss, grads = loss_and_gradient(params, key, codes, labels, mask, weights, label_smoothing, graphdef, micro_batch)
    flat, unravel = ravel_pytree(params)
    opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": learning_rate})
    # The hyperparameters are read from opt_state; the placeholders only give the structure.
    updates, opt_state = clipped_adamw(0.0, 0.0, 0.0, 0.0, 0.0).update(ravel_pytree(grads)[0], opt_state, flat)
    model = nnx.merge(graphdef, unravel(flat + updates))
    # What torch would find at the next lookup: rows renormalised to max_norm.
    model.embeddings.set_value(renorm_rows(model.embeddings[...], model.max_norm))
    return nnx.state(model), opt_state, loss


def activation_bytes(n_channels: int, frames: int, d: int, heads: int, feedforward: int, training: bool) -> int:
    """Estimated bytes of the activations one window holds in a training step (forward and
    backward) or in evaluation, for ``n_channels x frames`` codes and a model of width ``d``.

    The attention weights dominate: ``heads * (C T'^2 + T' C^2)`` values (time and channel layer),
    against ``C T' (d + feedforward)`` per-token values; the number of copies of each that XLA
    keeps alive was fitted to its buffer assignment on CPU (``_TRAIN_*`` / ``_EVAL_*_COPIES``).
    """
    attention = heads * (n_channels * frames * frames + frames * n_channels * n_channels)
    tokens = n_channels * frames * (d + feedforward)
    if training:
        return int(4 * (_TRAIN_ATTENTION_COPIES * attention + _TRAIN_TOKEN_COPIES * tokens))
    return int(4 * (_EVAL_ATTENTION_COPIES * attention + _EVAL_TOKEN_COPIES * tokens))


def _window_bytes(graphdef: nnx.GraphDef, params: nnx.State, codes_shape: tuple[int, ...], training: bool) -> int:
    model = nnx.merge(graphdef, params)
    layer = model.time_layer
    _, c, t, _ = codes_shape
    return activation_bytes(c, t, layer.in_proj.in_features, layer.heads, layer.linear1.out_features, training)


def training_micro_batch(batch: int, window_bytes: int, max_bytes: int) -> int:
    """Windows per micro-batch for a training batch of ``batch`` windows of ``window_bytes`` each
    (:func:`activation_bytes`) under ``max_bytes``: the batch in as few micro-batches as fit, cut
    as evenly as possible (the last one is padded to the same size). At least 1, whatever the budget.
    """
    fits = max(1, max_bytes // max(1, window_bytes))
    n_micro = -(-batch // min(batch, fits))
    return -(-batch // n_micro)


def _predict(graphdef: nnx.GraphDef, params: nnx.State, codes: np.ndarray, batch_size: int,
             max_bytes: int) -> np.ndarray:
    """Probabilities for all ``codes``, in batches of one fixed size (the last one padded).

    The batch is at most ``batch_size`` and small enough that its estimated activations
    (:func:`activation_bytes`) stay under ``max_bytes``; the result does not depend on it.
    """
    n = len(codes)
    fits = max(1, max_bytes // _window_bytes(graphdef, params, codes.shape, training=False))
    size = max(1, min(batch_size, n, fits))
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
        return _predict(self.graphdef, self.state, codes, batch_size, self.config.max_activation_bytes)


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
    padded to full size (the padding does not count), so one shape is compiled. Batches whose
    activations exceed ``config.max_activation_bytes`` are trained in micro-batches
    (:func:`training_micro_batch`); that changes the result only by float rounding.
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
    y_train = check_labels(y_train, len(codes_train), n_classes, "training labels").astype(np.int32)
    y_val = check_labels(y_val, len(codes_val), n_classes, "validation labels").astype(np.int32)
    missing = [c for c in range(n_classes) if not np.any(y_train == c)]
    if missing:
        raise DatasetError(f"class(es) {', '.join(map(str, missing))} of {n_classes} absent from the training labels; "
                           f"the classifier cannot learn them (and their inverse-frequency weight is undefined)")

    graphdef, params = init_token_classifier(codebooks[:n_used], n_channels, n_classes, config, seed)
    dropout_key = jax.random.key(seed)
    n = len(codes_train)
    batch = min(config.batch_size, n)
    steps_per_epoch = -(-n // batch)
    micro = training_micro_batch(batch, _window_bytes(graphdef, params, codes_train.shape, training=True),
                                 config.max_activation_bytes)
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
                y_train[rows], in_batch, weights, smoothing, graphdef=graphdef, micro_batch=micro,
            )
            losses.append((loss, in_batch.sum()))
            step += 1
        train_loss = float(sum(float(v) * m for v, m in losses) / n)
        predicted = _predict(graphdef, params, codes_val, config.batch_size, config.max_activation_bytes).argmax(-1)
        accuracy = balanced_accuracy(y_val, predicted)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_balanced_accuracy": accuracy})
        if accuracy > best_accuracy:
            best_accuracy, best_epoch, best_params = accuracy, epoch, params
        if progress:
            print(f"token classifier epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, "
                  f"val balanced accuracy {accuracy:.4f}" + (" (best)" if best_epoch == epoch else ""), flush=True)
    return FittedTokenClassifier(graphdef, best_params, config, n_classes, best_epoch, history)
