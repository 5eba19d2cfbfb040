"""Metrics for ``fit`` and ``evaluate``: accuracy for classifiers, MSE and R² for regression."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from jacnet import backend
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
    outputs = backend.to_numpy(outputs)  # a tensor's labels are read on the CPU
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


def accuracy(y_true: NDArray[Any], y_pred: NDArray[Any],
             sample_weight: NDArray[Any] | None = None) -> float:
    """Fraction of entries where the labels agree; with ``sample_weight`` ``(N,)``, the
    weighted fraction ``Σᵢ wᵢ aᵢ / Σᵢ wᵢ`` (``aᵢ`` the fraction of row ``i``'s labels right)."""
    if not y_true.size:
        return 0.0
    if sample_weight is None:
        return float(np.mean(y_true == y_pred))
    right = y_true == y_pred
    per_row = right if right.ndim == 1 else right.mean(axis=1)
    return float(np.average(per_row, weights=sample_weight))


def mean_squared_error(y_true: NDArray[Any], y_pred: NDArray[Any],
                       sample_weight: NDArray[Any] | None = None) -> float:
    """``1/(N·K) Σ (y - ŷ)²`` (the per-entry mean, as scikit-learn reports it); with
    ``sample_weight`` ``(N,)`` each row counts ``wᵢ / Σ w`` instead of ``1/N``."""
    diff = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape) - y_pred
    if sample_weight is None:
        return float(np.mean(diff * diff))
    return float(np.mean(np.average(diff * diff, axis=0, weights=sample_weight)))


def r2_score(y_true: NDArray[Any], y_pred: NDArray[Any],
             sample_weight: NDArray[Any] | None = None) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``, averaged over outputs; with
    ``sample_weight``, weighted sums around the weighted mean (as scikit-learn's)."""
    y = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)
    if sample_weight is None:
        ss_res = np.sum((y - y_pred) ** 2, axis=0)
        ss_tot = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    else:
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1, 1)
        ss_res = np.sum(w * (y - y_pred) ** 2, axis=0)
        ss_tot = np.sum(w * (y - np.average(y, axis=0, weights=w[:, 0])) ** 2, axis=0)
    scores = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
    return float(np.mean(scores))
