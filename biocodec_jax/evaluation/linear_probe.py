"""Linear probe on frozen codec features: standardise, then class-balanced logistic regression.

Features are the encoder output averaged over time per channel, flattened (``embedding``), or the
normalised code histograms of every quantizer summed over channels (``histogram``). The inverse
regularisation strength ``C`` is chosen on the validation subjects by balanced accuracy.

Bounded memory at corpus scale: features may be a disk-backed array (a memmap, as
:func:`probe_features` returns for memmapped codec features) and the windows of a split given as
:class:`Rows` (the array and the row numbers), read chunk by chunk. A training matrix that fits
``LinearProbeConfig.memory_budget_mb`` is read into memory and fitted exactly (scikit-learn's
``LogisticRegression``, L-BFGS, class-balanced: the same model as for in-memory features); a larger
one is fitted out of core: ``StandardScaler.partial_fit`` over chunks, then for every ``C`` of the grid
an ``SGDClassifier(loss="log_loss")`` with class-balanced sample weights and the same L2 penalty
(``alpha = 1 / (C n)``, ``n`` training windows: the objective of ``LogisticRegression(C)`` divided by
``C n``), ``partial_fit`` over shuffled chunks for ``sgd_epochs`` epochs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from biocodec_jax.evaluation.dataset import DatasetError, NpyAppender, iter_rows, take_rows
from biocodec_jax.evaluation.features import CodecFeatures
from biocodec_jax.evaluation.metrics import balanced_accuracy

FEATURE_KINDS = ("embedding", "histogram")
SGD_BLOCKS_PER_STEP = 16  # contiguous blocks of rows mixed into each SGD chunk (windows are stored by class)


@dataclass(frozen=True)
class LinearProbeConfig:
    """``memory_budget_mb``: the largest training matrix (float32 MB) fitted in memory (exactly);
    larger ones are fitted out of core by SGD for ``sgd_epochs`` epochs, ``sgd_chunk_mb`` at a time."""

    features: str = "embedding"
    c_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
    max_iter: int = 2000
    memory_budget_mb: float = 1024.0
    sgd_epochs: int = 5
    sgd_chunk_mb: float = 64.0


@dataclass(frozen=True)
class Rows:
    """The rows ``index`` of a feature matrix ``x`` ``[N, F]`` (in memory or a memmap): a split's
    windows without reading them all at once."""

    x: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        return len(self.index) * int(np.prod(self.x.shape[1:], dtype=np.int64)) * self.x.itemsize

    def load(self) -> np.ndarray:
        """``x[index]`` in memory (read chunk by chunk from a memmap)."""
        return take_rows(self.x, self.index)


def _histograms(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Normalised code histograms ``[n, K * codebook_size]`` float32 of ``codes`` ``[n, C, T', K]``."""
    n, c, t, k = codes.shape
    flat = (codes.astype(np.int64) + np.arange(k) * codebook_size).reshape(n, -1)
    flat += (np.arange(n) * (k * codebook_size))[:, None]
    counts = np.bincount(flat.ravel(), minlength=n * k * codebook_size).reshape(n, k * codebook_size)
    return counts.astype(np.float32) / (c * t)


def probe_features(features: CodecFeatures, kind: str = "embedding", codebook_size: int = 256) -> np.ndarray:
    """``[N, F]`` features for the probe (see the module docstring).

    For disk-backed codec features (``features.directory`` set) the result is a read-only memmap:
    ``embedding`` a view of ``pooled``, ``histogram`` computed chunk by chunk into
    ``<directory>/probe-histogram-<codebook_size>.npy`` (kept there, written under another name and
    renamed when complete). In memory otherwise.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown probe features {kind!r}; choose one of {FEATURE_KINDS}")
    if kind == "embedding":
        return features.pooled.reshape(len(features.pooled), -1)
    if features.directory is None:
        return _histograms(np.asarray(features.codes), codebook_size)
    path = Path(features.directory) / f"probe-histogram-{codebook_size}.npy"
    n, k = len(features.codes), features.codes.shape[-1]
    if path.is_file():
        try:
            cached = np.load(path, mmap_mode="r")
            if cached.shape == (n, k * codebook_size):
                return cached
        except (OSError, ValueError):
            pass  # damaged: recomputed below
    writer = NpyAppender(path.with_name(f"{path.name}.part-{os.getpid()}"),
                         (k * codebook_size,), np.float32)
    try:
        for _, codes in iter_rows(features.codes, chunk_bytes=4 << 20):  # held x8 as int64 indices and sums
            writer.append(_histograms(codes, codebook_size))
    except BaseException:
        writer.abort()
        raise
    os.replace(writer.close(), path)
    return np.load(path, mmap_mode="r")


@dataclass
class FittedProbe:
    """The chosen model (a scaler + classifier pipeline), its ``C`` and the validation history;
    ``out_of_core``: fitted by SGD over chunks (the training matrix was over the memory budget)."""

    model: object
    c: float
    history: list[dict] = field(default_factory=list)
    out_of_core: bool = False

    def predict_proba(self, x: np.ndarray | Rows) -> np.ndarray:
        """Class probabilities ``[n, n_classes]`` of an array or of :class:`Rows` (chunk by chunk)."""
        return _predict(self.model, x, "predict_proba")


def _predict(model, x: np.ndarray | Rows, method: str = "predict") -> np.ndarray:
    if not isinstance(x, Rows):
        return getattr(model, method)(x)
    out = None
    for where, rows in iter_rows(x.x, x.index):
        part = getattr(model, method)(rows)
        if out is None:
            out = np.empty((len(x),) + part.shape[1:], part.dtype)
        out[where] = part
    return out if out is not None else getattr(model, method)(x.x[:0])


def _check_classes(y: np.ndarray, n_classes: int, where: str) -> None:
    missing = sorted(set(range(n_classes)) - set(np.unique(y).tolist()))
    if missing:
        raise DatasetError(f"class(es) {missing} absent from the {where} labels; cannot train a classifier for them")


def _nbytes(x: np.ndarray | Rows) -> int:
    return x.nbytes if isinstance(x, Rows) else int(np.asarray(x).nbytes)


def fit_linear_probe(x_train: np.ndarray | Rows, y_train: np.ndarray, x_val: np.ndarray | Rows, y_val: np.ndarray,
                     n_classes: int, config: LinearProbeConfig = LinearProbeConfig(), seed: int = 0) -> FittedProbe:
    """Fit one probe per ``C`` in the grid; keep the best on validation balanced accuracy.

    ``x_train`` / ``x_val``: ``[n, F]`` arrays or :class:`Rows` of a (disk-backed) feature matrix.
    Within ``config.memory_budget_mb`` the training rows are read into memory and fitted exactly;
    beyond it, out of core (see the module docstring). Raises :class:`DatasetError` when a class has
    no training window.
    """
    y_train = np.asarray(y_train)
    _check_classes(y_train, n_classes, "training")
    if _nbytes(x_train) > config.memory_budget_mb * 2**20:
        if not isinstance(x_train, Rows):
            x_train = Rows(x_train, np.arange(len(x_train)))
        return _fit_out_of_core(x_train, y_train, x_val, np.asarray(y_val), n_classes, config, seed)
    if isinstance(x_train, Rows):
        x_train = x_train.load()
    best, history = None, []
    for c in config.c_grid:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced",
                                                                   max_iter=config.max_iter, random_state=seed))
        model.fit(x_train, y_train)
        score = balanced_accuracy(y_val, _predict(model, x_val))
        history.append({"C": c, "val_balanced_accuracy": score})
        if best is None or score > best[0]:
            best = (score, c, model)
    return FittedProbe(best[2], best[1], history)


def _blocks(rows: Rows, config: LinearProbeConfig) -> list[np.ndarray]:
    """Positions (into ``rows.index``) of contiguous stretches of stored rows, in file order, each about
    ``sgd_chunk_mb / SGD_BLOCKS_PER_STEP``: the unit read at once and shuffled."""
    order = np.argsort(rows.index, kind="stable")
    row_bytes = max(1, rows.nbytes // max(len(rows), 1))
    per_block = max(1, int(config.sgd_chunk_mb * 2**20 / SGD_BLOCKS_PER_STEP // row_bytes))
    return [order[i:i + per_block] for i in range(0, len(order), per_block)]


def _fit_out_of_core(x_train: Rows, y_train: np.ndarray, x_val: np.ndarray | Rows, y_val: np.ndarray,
                     n_classes: int, config: LinearProbeConfig, seed: int) -> FittedProbe:
    """StandardScaler over chunks, then one SGD logistic regression per ``C`` trained together on
    the same shuffled chunks (each chunk read once per epoch); the best on validation kept."""
    n = len(x_train)
    chunk_bytes = int(config.sgd_chunk_mb * 2**20)
    scaler = StandardScaler()
    for _, rows in iter_rows(x_train.x, x_train.index, chunk_bytes):
        scaler.partial_fit(rows)
    counts = np.bincount(y_train, minlength=n_classes)
    class_weight = n / (n_classes * np.maximum(counts, 1))  # "balanced", as LogisticRegression's
    classes = np.arange(n_classes)
    models = {c: SGDClassifier(loss="log_loss", alpha=1.0 / (c * n), random_state=seed) for c in config.c_grid}
    blocks = _blocks(x_train, config)
    rng = np.random.default_rng(seed)
    for _ in range(config.sgd_epochs):
        order = rng.permutation(len(blocks))
        for start in range(0, len(order), SGD_BLOCKS_PER_STEP):
            where = np.concatenate([blocks[b] for b in order[start:start + SGD_BLOCKS_PER_STEP]])
            where = where[np.argsort(x_train.index[where], kind="stable")]  # read in file order
            x = take_rows(x_train.x, x_train.index[where], chunk_bytes)
            shuffle = rng.permutation(len(where))
            x, y = scaler.transform(x[shuffle]), y_train[where[shuffle]]
            for model in models.values():
                model.partial_fit(x, y, classes=classes, sample_weight=class_weight[y])
    best, history = None, []
    for c, sgd in models.items():
        model = make_pipeline(scaler, sgd)
        score = balanced_accuracy(y_val, _predict(model, x_val))
        history.append({"C": c, "val_balanced_accuracy": score, "alpha": sgd.alpha})
        if best is None or score > best[0]:
            best = (score, c, model)
    return FittedProbe(best[2], best[1], history, out_of_core=True)
