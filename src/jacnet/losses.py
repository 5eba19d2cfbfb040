"""Losses from the lecture, each a mean over the N samples of a sum over the K outputs.

``value = loss.forward(pred, target)`` returns a Python float ``J``;
``dpred = loss.backward()`` returns ``∂J/∂pred`` with the shape of ``pred``;
``loss.forward(pred, target, sample_weight=w)`` returns the weighted mean ``Σᵢ wᵢ lᵢ / Σᵢ wᵢ``
of the per-row values ``lᵢ`` (``J`` is their plain mean), and ``backward`` its gradient;
``loss.jacobian(pred, target)`` returns the same gradient built from the per-entry
partial derivatives, independently of ``backward``.

Clipping policy (the one place probabilities are clipped): ``BinaryCrossEntropy`` and
``CategoricalCrossEntropy`` take probabilities in ``[0, 1]`` and evaluate both the value and
the gradient at ``clip(Ŷ, ε, 1 - ε)`` with ``ε = numpy.finfo(dtype).eps``, so an exact 0 or 1
gives a large finite number instead of ``inf``. The fused losses on logits never clip: they
are exact for every finite logit. Prefer them for training.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike, NDArray

from jacnet import backend
from jacnet._validation import (
    FloatArray,
    as_float_array,
    as_ndarray,
    check_same_shape,
    check_sample_weight,
)
from jacnet.errors import ForwardNotCalledError, JacnetTypeError, JacnetValueError, ShapeError
from jacnet.layers import BATCH, is_handed_over, is_recording, private, sigmoid, softmax
from jacnet.registry import register_loss
from jacnet.structure import Structure

__all__ = [
    "BinaryCrossEntropy",
    "CategoricalCrossEntropy",
    "Loss",
    "MeanSquaredError",
    "SigmoidBinaryCrossEntropy",
    "SoftmaxCrossEntropy",
]


class Loss:
    """Base class of every loss; subclass it to write your own.

    A subclass implements ``_value(P, T)`` and ``_gradient(P, T)`` on checked arrays
    (``P`` the prediction ``(N, K)``, ``T`` the target as ``_target`` returns it), and
    ``_partials(P, T)`` for the expanded Jacobian. It may override ``_target`` to accept
    other target layouts.

    Sample weights need ``_rows(P, T)``, the per-row values ``lᵢ`` ``(N,)`` whose mean is
    ``_value``: every built-in loss is such a mean. The weighted loss is then
    ``Σᵢ wᵢ lᵢ / Σᵢ wᵢ``, and its gradient is ``_gradient``'s row ``i`` times ``N wᵢ / Σ w``
    (exact for a mean of per-row terms). A loss without ``_rows`` refuses weights.
    """

    #: The per-entry formula of the gradient ``∂J/∂ŷ`` (key ``"X"``): (plain text, mathtext).
    formulas: ClassVar[dict[str, tuple[str, str]]] = {}

    #: The letters of the scalar and the prediction in labels (``J``, ``ŷ[0,1]``).
    symbols: ClassVar[tuple[str, str]] = ("J", "ŷ")

    #: What the structure of the gradient means (``jacnet jacobian`` prints it).
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "a loss is a scalar J, so its expanded Jacobian is a single row of N·K entries: the "
             "gradient itself, laid flat"}

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        """A scalar's gradient: every entry is computed (no structural zeros)."""
        return Structure()

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        """The gradient formula, a few operations per entry of the prediction."""
        return int(np.prod(X_shape)), "the gradient formula, a few operations per entry"

    def __init__(self) -> None:
        self._pred: FloatArray | None = None
        self._target: FloatArray | None = None
        # (N, 1) factors N wᵢ / Σ w of a weighted forward; None when unweighted.
        self._row_scale: FloatArray | None = None

    def __call__(self, pred: Any, target: Any) -> float:
        return self.forward(pred, target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def forward(self, pred: Any, target: Any, sample_weight: Any = None) -> float:
        """Return the loss ``J`` for ``pred (N, K)`` against ``target``; keep both for backward.

        What is kept is the loss's own: an array the caller passed is copied (``N×K``, cheap),
        so changing ``pred`` or ``target`` afterwards cannot change the gradient.

        With ``sample_weight`` ``(N,)`` (finite, >= 0, not all zero) the value is the weighted
        mean of the per-row values, ``Σᵢ wᵢ lᵢ / Σᵢ wᵢ``, and ``backward`` returns its gradient.
        """
        P, T = self._checked(pred, target)
        if sample_weight is None:
            return self._cache_and_value(private(P, pred), private(T, target))
        weights = check_sample_weight(sample_weight, P.shape[0], f"{type(self).__name__}.forward")
        check_weighted(self, f"{type(self).__name__}.forward")
        return self._cache_and_weighted_value(private(P, pred), private(T, target), weights)

    def clear(self) -> None:
        """Forget the prediction and target kept for backward (``fit`` calls it at the end)."""
        self._pred = self._target = self._row_scale = None

    def backward(self) -> FloatArray:
        """Return ``∂J/∂pred``, shape ``(N, K)``, from what ``forward`` cached."""
        if self._pred is None or self._target is None:
            raise ForwardNotCalledError(
                f"{type(self).__name__}.backward expects forward to have been called first, "
                "got no cached prediction"
            )
        grad = self._gradient(self._pred, self._target)
        if self._row_scale is not None:
            grad = grad * self._row_scale
        return grad

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Loss, FloatArray, Any]:
        """A small instance, a prediction and a target (what ``jacnet check`` runs): real
        targets and a normal prediction; the built-ins on classes override it."""
        return cls(), rng.standard_normal((BATCH, 3)).astype(dtype), rng.standard_normal((BATCH, 3))

    def jacobian(self, pred: Any, target: Any) -> FloatArray:
        """``∂J/∂pred`` from the per-entry partial derivatives (shape of ``pred``)."""
        P, T = self._checked(pred, target)
        return self._partials(backend.to_numpy(P), backend.to_numpy(T))  # built in NumPy

    # To implement ----------------------------------------------------------------------

    def _value(self, P: FloatArray, T: Any) -> float:
        raise NotImplementedError

    def _rows(self, P: FloatArray, T: Any) -> FloatArray:
        """The per-row values ``lᵢ``, ``(N,)``, whose mean is ``_value`` (for sample weights)."""
        raise NotImplementedError

    def _gradient(self, P: FloatArray, T: Any) -> FloatArray:
        raise NotImplementedError

    def _partials(self, P: FloatArray, T: Any) -> FloatArray:
        raise NotImplementedError(f"{type(self).__name__} does not provide jacobian")

    # Input checks ------------------------------------------------------------------------

    def _checked(self, pred: Any, target: Any) -> tuple[FloatArray, Any]:
        P = self._check_pred(pred)
        if not backend.is_torch(P):  # a tensor target comes to NumPy, like the prediction
            return P, backend.to_numpy(self._target_for(P, target))
        # Targets are checked and converted in NumPy (against a stand-in of P's shape and
        # dtype that allocates nothing), then moved to P's device.
        stand_in = np.broadcast_to(np.zeros((), backend.numpy_dtype(P)), tuple(P.shape))
        return P, backend.like(self._target_for(stand_in, target), P)

    def _check_pred(self, pred: Any) -> FloatArray:
        if is_handed_over(pred) and pred.ndim == 2:  # a network's output, checked as it left
            return pred
        return as_float_array(pred, f"{type(self).__name__} pred", ndim=2, min_features=1)

    def _forward_prepared(self, pred: Any, T: Any, weights: FloatArray | None = None) -> float:
        """``forward`` with ``T`` already checked and in the form ``_target_for`` returns.

        ``fit`` converts every target once, up front, and passes each batch's rows here: the
        prediction is still checked, the per-step target conversion is not repeated.
        ``weights`` (checked by the caller, with a positive sum) make it the weighted mean.
        """
        P = private(self._check_pred(pred), pred)
        if weights is None:
            return self._cache_and_value(P, T)
        return self._cache_and_weighted_value(P, T, weights)

    def _cache_and_value(self, P: FloatArray, T: Any) -> float:
        if is_recording():
            self._pred, self._target, self._row_scale = P, T, None
        return float(self._value(P, T))

    def _cache_and_weighted_value(self, P: FloatArray, T: Any, weights: FloatArray) -> float:
        total = float(weights.sum())
        rows = self._rows(P, T)
        if is_recording():
            # ∂/∂pᵢ (Σ w l / Σ w) = (wᵢ / Σ w) ∂lᵢ/∂pᵢ = (N wᵢ / Σ w) · (row i of ∂(mean l)/∂P).
            scale = (weights * (P.shape[0] / total)).astype(backend.numpy_dtype(P)).reshape(-1, 1)
            self._pred, self._target, self._row_scale = P, T, backend.like(scale, P)
        return float(np.dot(weights, backend.to_numpy(rows))) / total

    def _target_for(self, P: FloatArray, target: Any) -> Any:
        """Default: a target of the prediction's shape, cast to its dtype; ``(N,)`` is accepted
        for a single-output prediction ``(N, 1)``, as scikit-learn does."""
        name = f"{type(self).__name__} target"
        T = as_float_array(target, name, ndim=None, dtype=P.dtype)
        if T.ndim == 1 and P.shape == (T.shape[0], 1):
            T = T.reshape(-1, 1)
        check_same_shape(T, name, P.shape)
        return T


def _check_probabilities(A: FloatArray, name: str) -> None:
    if math.prod(A.shape) and (A.min() < 0 or A.max() > 1):
        raise JacnetValueError(
            f"{name} expects probabilities in [0, 1], got values in "
            f"[{float(A.min())!r}, {float(A.max())!r}]"
        )


def _clip_probabilities(P: FloatArray) -> FloatArray:
    """The module's one clipping policy: ``clip(Ŷ, ε, 1 - ε)``, ``ε = finfo(dtype).eps``."""
    xp = backend.namespace(P)
    eps = float(xp.finfo(P.dtype).eps)
    return xp.clip(P, eps, 1 - eps)


def supports_sample_weight(loss: Loss) -> bool:
    """True when ``loss`` has per-row values that belong to its own value and gradient: its
    ``_rows`` is defined in the class that defines ``_value`` and ``_gradient`` or in a subclass
    of it, and it keeps the base ``forward`` and ``backward`` (which apply the weights)."""
    cls = type(loss)
    if cls.forward is not Loss.forward or cls.backward is not Loss.backward:
        return False

    def owner(name: str) -> type:
        return next(c for c in cls.__mro__ if name in c.__dict__)

    rows = owner("_rows")
    return rows is not Loss and all(issubclass(rows, owner(n)) for n in ("_value", "_gradient"))


def check_weighted(loss: Loss, where: str) -> None:
    """Refuse sample weights for a loss without per-row values (never ignore them silently)."""
    if not supports_sample_weight(loss):
        name = type(loss).__name__
        raise JacnetTypeError(
            f"{where} sample_weight expects a loss with per-row values, got {name}, which has "
            f"none: implement {name}._rows(P, T) returning the (N,) values whose mean is "
            f"{name}._value, or train without sample_weight")


class _ProbabilityPred(Loss):
    """A loss on probabilities: ``pred`` must lie in ``[0, 1]``."""

    def _check_pred(self, pred: Any) -> FloatArray:
        P = super()._check_pred(pred)
        _check_probabilities(P, f"{type(self).__name__} pred")
        return P


def _labels_to_one_hot(labels: NDArray[Any], K: int, dtype: np.dtype[Any], name: str) -> FloatArray:
    """Check integer class labels in ``[0, K)`` and return them one-hot, ``(N, K)``."""
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or np.any(labels != np.round(labels)):
            raise JacnetValueError(f"{name} expects integer class labels, got non-integer floats")
    elif labels.dtype.kind not in "iu":
        raise JacnetTypeError(f"{name} expects integer class labels, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= K):
        raise JacnetValueError(
            f"{name} expects class labels in [0, {K - 1}], "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    Y = np.zeros((labels.shape[0], K), dtype=dtype)
    Y[np.arange(labels.shape[0]), labels.astype(np.intp)] = 1
    return Y


class _ClassTargets(Loss):
    """Targets for the categorical losses: one-hot (or any distribution) ``(N, K)``, or
    integer labels ``(N,)`` in ``[0, K)``. Each target row must sum to 1."""

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Loss, FloatArray, Any]:
        loss, pred, _ = super().example(rng, dtype)
        if issubclass(cls, _ProbabilityPred):  # a softmax of mild logits: every entry near 1/K
            pred = softmax(rng.uniform(-0.5, 0.5, pred.shape)).astype(dtype)
        return loss, pred, rng.integers(0, pred.shape[1], pred.shape[0])

    def _target_for(self, P: FloatArray, target: Any) -> Any:
        name = f"{type(self).__name__} target"
        raw = as_ndarray(target, name, "labels or a one-hot array")
        N, K = P.shape
        if raw.ndim == 1:
            if raw.shape[0] != N:
                raise ShapeError(f"{name} expects {N} labels for pred of shape {P.shape}, "
                                 f"got shape {raw.shape}")
            return _labels_to_one_hot(raw, K, P.dtype, name)
        T = as_float_array(raw, name, ndim=2, dtype=P.dtype)
        check_same_shape(T, name, P.shape)
        _check_probabilities(T, name)
        sums = T.sum(axis=1)
        if not np.allclose(sums, 1, atol=1e-4):
            raise JacnetValueError(f"{name} expects rows that sum to 1 (one-hot), "
                                   f"got row sums in [{sums.min():.4g}, {sums.max():.4g}]")
        return T


class _BinaryTargets(Loss):
    """Targets for the binary losses: ``(N, K)`` in ``[0, 1]``, or ``(N,)`` when ``K = 1``."""

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Loss, FloatArray, Any]:
        loss, pred, _ = super().example(rng, dtype)
        if issubclass(cls, _ProbabilityPred):  # probabilities kept away from 0 and 1
            pred = rng.uniform(0.2, 0.8, pred.shape).astype(dtype)
        return loss, pred, rng.integers(0, 2, pred.shape).astype(np.float64)

    def _target_for(self, P: FloatArray, target: Any) -> Any:
        name = f"{type(self).__name__} target"
        T = as_float_array(target, name, ndim=(1, 2), dtype=P.dtype)
        if T.ndim == 1 and P.shape[1] == 1 and T.shape[0] == P.shape[0]:
            T = T.reshape(-1, 1)
        check_same_shape(T, name, P.shape)
        _check_probabilities(T, name)
        return T


@register_loss("mse")
class MeanSquaredError(Loss):
    """``J = 1/N Σᵢ Σₖ (y_ik - ŷ_ik)²``; gradient ``dŶ = -2/N (Y - Ŷ)``, shape ``(N, K)``."""

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂J/∂ŷ_ij = -2/N (y_ij - ŷ_ij)",
        r"$\partial J/\partial \hat{y}_{ij} = -\frac{2}{N}(y_{ij} - \hat{y}_{ij})$")}

    def _value(self, P: FloatArray, T: FloatArray) -> float:
        D = (T - P).reshape(-1)
        return float(D @ D) / P.shape[0]

    def _rows(self, P: FloatArray, T: FloatArray) -> FloatArray:
        D = T - P
        return backend.namespace(D).vecdot(D, D)

    def _gradient(self, P: FloatArray, T: FloatArray) -> FloatArray:
        return (-2 / P.shape[0]) * (T - P)

    def _partials(self, P: FloatArray, T: FloatArray) -> FloatArray:
        # ∂/∂ŷ_ij of (y_ij - ŷ_ij)²/N, the only term holding ŷ_ij.
        return 2 * (P - T) / P.shape[0]


@register_loss("bce")
class BinaryCrossEntropy(_ProbabilityPred, _BinaryTargets):
    """``J = -1/N Σᵢ Σₖ [y log ŷ + (1 - y) log(1 - ŷ)]`` on probabilities ``Ŷ``.

    Gradient ``dŶ = 1/N (Ŷ - Y) / (Ŷ (1 - Ŷ))``, shape ``(N, K)``. ``Ŷ`` is clipped to
    ``[ε, 1 - ε]`` (see the module's clipping policy).
    """

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂J/∂ŷ_ij = 1/N (ŷ_ij - y_ij) / (ŷ_ij (1 - ŷ_ij))",
        r"$\partial J/\partial \hat{y}_{ij} = \frac{1}{N}\,"
        r"\frac{\hat{y}_{ij} - y_{ij}}{\hat{y}_{ij}(1 - \hat{y}_{ij})}$")}

    def _value(self, P: FloatArray, T: FloatArray) -> float:
        return -float(backend.namespace(P).sum(self._log_likelihoods(P, T))) / P.shape[0]

    def _rows(self, P: FloatArray, T: FloatArray) -> FloatArray:
        return -backend.namespace(P).sum(self._log_likelihoods(P, T), axis=1)

    @staticmethod
    def _log_likelihoods(P: FloatArray, T: FloatArray) -> FloatArray:
        xp = backend.namespace(P)
        C = _clip_probabilities(P)
        return T * xp.log(C) + (1 - T) * xp.log1p(-C)

    def _gradient(self, P: FloatArray, T: FloatArray) -> FloatArray:
        C = _clip_probabilities(P)
        return (C - T) / (C * (1 - C)) / P.shape[0]

    def _partials(self, P: FloatArray, T: FloatArray) -> FloatArray:
        # ∂/∂ŷ of -[y log ŷ + (1 - y) log(1 - ŷ)]/N, term by term.
        C = _clip_probabilities(P)
        return (-T / C + (1 - T) / (1 - C)) / P.shape[0]


@register_loss("cce")
class CategoricalCrossEntropy(_ProbabilityPred, _ClassTargets):
    """``J = -1/N Σᵢ Σₖ y_ik log ŷ_ik`` on probabilities ``Ŷ (N, K)``.

    Gradient ``dŶ = -1/N Y / Ŷ``. ``Ŷ`` is clipped to ``[ε, 1 - ε]`` (see the module's
    clipping policy). Targets are one-hot ``(N, K)`` or labels ``(N,)``.
    """

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂J/∂ŷ_ij = -1/N y_ij / ŷ_ij",
        r"$\partial J/\partial \hat{y}_{ij} = -\frac{1}{N}\,\frac{y_{ij}}{\hat{y}_{ij}}$")}

    def _value(self, P: FloatArray, T: FloatArray) -> float:
        xp = backend.namespace(P)
        return -float(xp.sum(T * xp.log(_clip_probabilities(P)))) / P.shape[0]

    def _rows(self, P: FloatArray, T: FloatArray) -> FloatArray:
        xp = backend.namespace(P)
        return -xp.sum(T * xp.log(_clip_probabilities(P)), axis=1)

    def _gradient(self, P: FloatArray, T: FloatArray) -> FloatArray:
        return (-1 / P.shape[0]) * T / _clip_probabilities(P)

    def _partials(self, P: FloatArray, T: FloatArray) -> FloatArray:
        # Only the k = j term of sample i holds ŷ_ij: ∂/∂ŷ_ij [y_ij log ŷ_ij] = y_ij / ŷ_ij.
        J = np.zeros_like(P)
        C = _clip_probabilities(P)
        for i, j in zip(*np.nonzero(T), strict=True):
            J[i, j] = -T[i, j] / C[i, j] / P.shape[0]
        return J


@register_loss("softmax_ce")
class SoftmaxCrossEntropy(_ClassTargets):
    """Softmax and categorical cross-entropy fused, on logits ``L (N, K)``.

    ``J = 1/N Σᵢ [logsumexp(l_i) - Σₖ y_ik l_ik]`` (log-sum-exp, exact for any finite
    logits). Through the softmax Jacobian the CCE gradient collapses (the lecture's total
    derivative) to ``dL = -1/N (Y - Ŷ)`` with ``Ŷ = softmax(L)``.
    """

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂J/∂l_ij = -1/N (y_ij - ŷ_ij)",
        r"$\partial J/\partial l_{ij} = -\frac{1}{N}(y_{ij} - \hat{y}_{ij})$")}
    symbols: ClassVar[tuple[str, str]] = ("J", "l")

    def __init__(self) -> None:
        super().__init__()
        self._probabilities: FloatArray | None = None

    def clear(self) -> None:
        super().clear()
        self._probabilities = None

    def _value(self, P: FloatArray, T: FloatArray) -> float:
        xp = backend.namespace(P)
        S, log_sums = self._shifted(P)
        # Σₖ y_k (log Σ e^s - s_k): rows of Y sum to 1.
        value = float(xp.sum(T * (log_sums - S)))
        if math.isnan(value):  # 0·inf from s_k = -inf: only classes with y_k ≠ 0 count
            value = float(xp.sum(_nonzero_terms(T, log_sums - S)))
        return value / P.shape[0]

    def _rows(self, P: FloatArray, T: FloatArray) -> FloatArray:
        xp = backend.namespace(P)
        S, log_sums = self._shifted(P)
        rows = xp.sum(T * (log_sums - S), axis=1)
        if bool(xp.any(xp.isnan(rows))):
            rows = xp.sum(_nonzero_terms(T, log_sums - S), axis=1)
        return rows

    def _shifted(self, P: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``S = P - max`` and ``log Σ e^S`` per row; keeps ``softmax(P)`` for backward."""
        xp = backend.namespace(P)
        S = P - xp.max(P, axis=1, keepdims=True)  # logits ~1e308 apart: s_k = -inf, e^s_k = 0
        E = xp.exp(S)
        sums = xp.sum(E, axis=1, keepdims=True)
        if is_recording():
            self._probabilities = E / sums
        return S, xp.log(sums)

    def _gradient(self, P: FloatArray, T: FloatArray) -> FloatArray:
        Y_hat = self._probabilities if self._probabilities is not None else softmax(P)
        return (Y_hat - T) / P.shape[0]

    def _partials(self, P: FloatArray, T: FloatArray) -> FloatArray:
        # Total derivative: ∂J/∂l_ij = Σₖ (∂J/∂ŷ_ik)(∂ŷ_ik/∂l_ij), with ∂J/∂ŷ_ik = -y_ik/(N ŷ_ik)
        # and ∂ŷ_ik/∂l_ij = ŷ_ik(δ_kj - ŷ_ij). The ŷ_ik cancel, as in the lecture; cancelling
        # them before multiplying keeps saturated logits (ŷ_ik underflowing to 0) finite.
        Y_hat = softmax(P)
        K = P.shape[1]
        dY_dL_over_Y = np.eye(K, dtype=P.dtype)[None, :, :] - Y_hat[:, None, :]
        return np.einsum("ik,ikj->ij", -T / P.shape[0], dY_dL_over_Y)


def _nonzero_terms(T: FloatArray, M: FloatArray) -> FloatArray:
    """``T * M`` with the entries where ``T = 0`` left 0 (even where ``M`` is infinite)."""
    if backend.is_torch(M):
        return backend.namespace(M).where(T != 0, T * M, 0.0)
    terms = np.zeros_like(M)
    np.multiply(T, M, out=terms, where=T != 0)
    return terms


@register_loss("sigmoid_bce")
class SigmoidBinaryCrossEntropy(_BinaryTargets):
    """Sigmoid and binary cross-entropy fused, on logits ``Z (N, K)``.

    ``J = 1/N Σᵢ Σₖ [max(z, 0) - z y + log1p(exp(-|z|))]``, exact for any finite logit;
    gradient ``dZ = 1/N (σ(Z) - Y)``.
    """

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂J/∂z_ij = 1/N (σ(z_ij) - y_ij)",
        r"$\partial J/\partial z_{ij} = \frac{1}{N}(\sigma(z_{ij}) - y_{ij})$")}
    symbols: ClassVar[tuple[str, str]] = ("J", "z")

    def _value(self, P: FloatArray, T: FloatArray) -> float:
        return float(backend.namespace(P).sum(self._terms(P, T))) / P.shape[0]

    def _rows(self, P: FloatArray, T: FloatArray) -> FloatArray:
        return backend.namespace(P).sum(self._terms(P, T), axis=1)

    @staticmethod
    def _terms(P: FloatArray, T: FloatArray) -> FloatArray:
        xp = backend.namespace(P)
        return xp.clip(P, 0.0, None) - P * T + xp.log1p(xp.exp(-xp.abs(P)))

    def _gradient(self, P: FloatArray, T: FloatArray) -> FloatArray:
        return (sigmoid(P) - T) / P.shape[0]

    def _partials(self, P: FloatArray, T: FloatArray) -> FloatArray:
        # d/dz of each of the three terms: [z ≥ 0], -y and -s e^{-|z|} / (1 + e^{-|z|}) with
        # s = ±1 the side of |z| taken (either side at z = 0, where the sum is smooth).
        E = np.exp(-np.abs(P))
        side = np.where(P >= 0, 1, -1)
        return ((P >= 0) - T - side * E / (1 + E)) / P.shape[0]
