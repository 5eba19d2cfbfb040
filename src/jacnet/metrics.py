"""Metrics for ``fit`` and ``evaluate``: accuracy for classifiers, MSE and R² for regression."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from jacnet.losses import (
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Loss,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
)

__all__ = ["accuracy", "is_classification", "mean_squared_error", "predicted_labels", "r2_score",
           "true_labels"]

_ON_PROBABILITIES = (BinaryCrossEntropy, CategoricalCrossEntropy)
_CLASSIFICATION = (*_ON_PROBABILITIES, SoftmaxCrossEntropy, SigmoidBinaryCrossEntropy)


def is_classification(loss: Loss | None) -> bool:
    """True for the cross-entropy losses, whose targets are classes."""
    return isinstance(loss, _CLASSIFICATION)


def predicted_labels(outputs: NDArray[Any], loss: Loss | None) -> NDArray[Any]:
    """Class labels from network outputs trained with ``loss``.

    Several outputs: the arg-max per row, ``(N,)``. One output: ``1`` where the logit is
    above 0 (or the probability above 0.5, for a loss on probabilities), ``(N,)``.
    """
    if outputs.shape[1] > 1 and not isinstance(loss, (BinaryCrossEntropy, SigmoidBinaryCrossEntropy)):
        return np.argmax(outputs, axis=1)
    threshold = 0.5 if isinstance(loss, _ON_PROBABILITIES) else 0.0
    labels = (outputs > threshold).astype(np.int64)
    return labels[:, 0] if labels.shape[1] == 1 else labels


def true_labels(y: NDArray[Any], loss: Loss | None = None) -> NDArray[Any]:
    """Class labels from targets given as labels ``(N,)``, ``(N, 1)`` or one-hot ``(N, K)``.

    For the binary losses, whose targets are probabilities, the label is ``y > 0.5`` entry by
    entry: ``(N,)`` for one output, ``(N, K)`` for K independent (multi-label) outputs, as
    :func:`predicted_labels` gives them.
    """
    if isinstance(loss, (BinaryCrossEntropy, SigmoidBinaryCrossEntropy)):
        labels = (np.asarray(y) > 0.5).astype(np.int64)
        return labels[:, 0] if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if y.ndim == 1:
        return y
    if y.shape[1] == 1:
        return y[:, 0]
    return np.argmax(y, axis=1)


def accuracy(y_true: NDArray[Any], y_pred: NDArray[Any]) -> float:
    """Fraction of entries where the labels agree."""
    return float(np.mean(y_true == y_pred)) if y_true.size else 0.0


def mean_squared_error(y_true: NDArray[Any], y_pred: NDArray[Any]) -> float:
    """``1/(N·K) Σ (y - ŷ)²`` (the per-entry mean, as scikit-learn reports it)."""
    diff = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape) - y_pred
    return float(np.mean(diff * diff))


def r2_score(y_true: NDArray[Any], y_pred: NDArray[Any]) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``, averaged over outputs."""
    y = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)
    ss_res = np.sum((y - y_pred) ** 2, axis=0)
    ss_tot = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    scores = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
    return float(np.mean(scores))
