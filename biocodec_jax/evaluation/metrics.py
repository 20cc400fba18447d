"""The original's downstream metrics (scikit-learn) and recording-level aggregation.

Binary tasks: balanced accuracy, AUROC, AUC-PR (average precision of the positive class, index 1).
Multi-class tasks: balanced accuracy, Cohen's kappa, weighted F1. Predictions are the argmax of
the class probabilities; where a protocol scores longer units than a window (TUAB's 10-s
segments, a Bonn file, a sleep epoch) the window probabilities are averaged per unit first.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics

from biocodec_jax.evaluation.dataset import DatasetError

BINARY_METRICS = ("balanced_accuracy", "auroc", "auc_pr")
MULTICLASS_METRICS = ("balanced_accuracy", "cohen_kappa", "weighted_f1")


def metric_names(n_classes: int) -> tuple[str, ...]:
    return BINARY_METRICS if n_classes == 2 else MULTICLASS_METRICS


def aggregate(proba: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean class probabilities and the label of each scoring unit (``groups``: unit id per window).

    Raises :class:`DatasetError` if the windows of one unit carry different labels: averaging
    them would score a label that no window has.
    """
    ids, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(ids), proba.shape[1]))
    np.add.at(sums, inverse, proba)
    counts = np.bincount(inverse, minlength=len(ids))[:, None]
    labels = np.full(len(ids), -1)
    labels[inverse] = y
    if np.any(labels[inverse] != y):
        bad = ids[np.unique(inverse[labels[inverse] != y])][:5]
        raise DatasetError(f"scoring units {', '.join(map(str, bad))} hold windows with different labels")
    return sums / counts, labels


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Balanced accuracy (sklearn: recall averaged over the classes of ``labels``) of class predictions.

    What model selection on validation windows scores. A predicted class absent from ``labels`` is
    just a wrong prediction, and one class in both is a well-defined score: sklearn's warnings about
    those are silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        return float(metrics.balanced_accuracy_score(labels, predicted))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float]:
    """The original's metrics for ``n_classes`` from true labels and class probabilities ``[N, n_classes]``.

    Every class must occur in ``y_true``: AUROC / AUC-PR are undefined without both classes, and a
    balanced accuracy over fewer classes is not the protocol's number. A missing class raises
    :class:`DatasetError` (use fewer folds or a larger test set) instead of reporting a wrong metric.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(y_true), n_classes):
        raise ValueError(f"proba must be [{len(y_true)}, {n_classes}]; got {proba.shape}")
    missing = sorted(set(range(n_classes)) - set(np.unique(y_true).tolist()))
    if missing:
        raise DatasetError(f"class(es) {missing} absent from the scored labels; the metrics would be undefined or biased")
    y_pred = proba.argmax(axis=1)
    out = {"balanced_accuracy": float(metrics.balanced_accuracy_score(y_true, y_pred))}
    if n_classes == 2:
        out["auroc"] = float(metrics.roc_auc_score(y_true, proba[:, 1]))
        out["auc_pr"] = float(metrics.average_precision_score(y_true, proba[:, 1]))
    else:
        out["cohen_kappa"] = float(metrics.cohen_kappa_score(y_true, y_pred))
        out["weighted_f1"] = float(metrics.f1_score(y_true, y_pred, average="weighted"))
    return out


def confusion(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]`` of the argmax predictions."""
    return metrics.confusion_matrix(y_true, np.asarray(proba).argmax(axis=1), labels=list(range(n_classes)))
