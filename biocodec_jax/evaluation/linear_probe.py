"""Linear probe on frozen codec features: standardise, then class-balanced logistic regression.

Features are the encoder output averaged over time per channel, flattened (``embedding``), or the
normalised code histograms of every quantizer summed over channels (``histogram``). The inverse
regularisation strength ``C`` is chosen on the validation subjects by balanced accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from biocodec_jax.evaluation.dataset import DatasetError
from biocodec_jax.evaluation.features import CodecFeatures
from biocodec_jax.evaluation.metrics import balanced_accuracy

FEATURE_KINDS = ("embedding", "histogram")


@dataclass(frozen=True)
class LinearProbeConfig:
    features: str = "embedding"
    c_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
    max_iter: int = 2000


def probe_features(features: CodecFeatures, kind: str = "embedding", codebook_size: int = 256) -> np.ndarray:
    """``[N, F]`` features for the probe (see the module docstring)."""
    if kind == "embedding":
        return features.pooled.reshape(len(features.pooled), -1)
    if kind == "histogram":
        n, c, t, k = features.codes.shape
        offsets = np.arange(k) * codebook_size
        flat = (features.codes.astype(np.int64) + offsets).reshape(n, -1)
        hist = np.zeros((n, k * codebook_size), np.float32)
        np.add.at(hist, (np.repeat(np.arange(n), flat.shape[1]), flat.ravel()), 1.0)
        return hist / (c * t)
    raise ValueError(f"unknown probe features {kind!r}; choose one of {FEATURE_KINDS}")


@dataclass
class FittedProbe:
    model: object
    c: float
    history: list[dict] = field(default_factory=list)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)


def _check_classes(y: np.ndarray, n_classes: int, where: str) -> None:
    missing = sorted(set(range(n_classes)) - set(np.unique(y).tolist()))
    if missing:
        raise DatasetError(f"class(es) {missing} absent from the {where} labels; cannot train a classifier for them")


def fit_linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                     n_classes: int, config: LinearProbeConfig = LinearProbeConfig(), seed: int = 0) -> FittedProbe:
    """Fit one probe per ``C`` in the grid; keep the best on validation balanced accuracy."""
    _check_classes(y_train, n_classes, "training")
    best, history = None, []
    for c in config.c_grid:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced",
                                                                   max_iter=config.max_iter, random_state=seed))
        model.fit(x_train, y_train)
        score = balanced_accuracy(y_val, model.predict(x_val))
        history.append({"C": c, "val_balanced_accuracy": score})
        if best is None or score > best[0]:
            best = (score, c, model)
    return FittedProbe(best[2], best[1], history)
