"""Layers: the affine map and the activations, each with its closed-form backward and its
expanded Jacobian built from the lecture's per-entry derivatives.

The contract every layer follows (and a user's own layer can follow too):

- ``Y = layer.forward(X)`` (or ``layer(X)``) caches only what ``backward`` needs.
- ``dX = layer.backward(dY)`` reads that cache, writes ``layer.grads[k]`` for every
  ``layer.params[k]`` (same keys, same shapes) and returns ``dX``. It never writes into ``dY``
  and never accumulates: a second call gives bitwise the same result.
- ``layer.jacobian(X, wrt)`` returns the expanded Jacobian ``∂Y/∂A`` of shape
  ``Y.shape + A.shape``, built from per-entry formulas, independently of ``backward``.

Inputs are checked where they enter: a built-in layer's ``forward`` and ``backward`` check
their argument, then run the formula in ``_forward`` / ``_backward``. A ``Sequential`` checks
only what enters the network and calls ``_forward`` / ``_backward`` inside, where every array
is one the previous layer made (a user's layer, which need not define them, gets its own
``forward`` / ``backward``).

All layers take a batch ``X`` of shape ``(N, features)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from jacnet._validation import (
    FloatArray,
    as_float_array,
    as_rng,
    check_positive_int,
    check_real,
    check_same_shape,
)
from jacnet.errors import ForwardNotCalledError, JacnetTypeError, JacnetValueError, ShapeError

__all__ = ["Affine", "Layer", "LeakyReLU", "ReLU", "Sigmoid", "Softmax", "Tanh"]

INITS = ("he", "glorot", "zeros")


class Layer:
    """Base class of every layer; subclass it to write your own.

    Attributes
    ----------
    params : dict[str, ndarray]
        Trainable arrays, by name. Optimizers update them in place.
    grads : dict[str, ndarray]
        ``∂J/∂params[k]`` after ``backward``, same keys and shapes as ``params``.
    """

    def __init__(self) -> None:
        self.params: dict[str, FloatArray] = {}
        self.grads: dict[str, FloatArray] = {}

    def __call__(self, X: Any) -> FloatArray:
        return self.forward(X)

    def forward(self, X: Any) -> FloatArray:
        """Compute ``Y`` from ``X`` of shape ``(N, in)`` and cache what backward needs."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(X)")

    def backward(self, dY: Any) -> FloatArray:
        """Return ``dX = ∂J/∂X`` from ``dY = ∂J/∂Y`` and fill ``grads``."""
        raise NotImplementedError(f"{type(self).__name__} must implement backward(dY)")

    def backward_params(self, dY: Any) -> None:
        """Fill ``grads`` only; a network calls this on its first layer, whose dX nobody reads.

        The default runs ``backward`` and drops dX; layers with parameters may skip the work.
        """
        self.backward(dY)

    # What a Sequential calls between its layers: the arrays are already checked.

    def _forward(self, X: FloatArray) -> FloatArray:
        return self.forward(X)

    def _backward(self, dY: FloatArray) -> FloatArray:
        return self.backward(dY)

    def _backward_params(self, dY: FloatArray) -> None:
        self.backward_params(dY)

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """Expanded Jacobian ``∂Y/∂A`` of shape ``Y.shape + A.shape`` for ``A`` = X or a param."""
        raise NotImplementedError(
            f"{type(self).__name__} does not provide jacobian(X, wrt); "
            "check_gradients then compares backward with finite differences only"
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this layer (JSON-serialisable); see ``jacnet.io``."""
        return {}

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return sum(int(p.size) for p in self.params.values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # Helpers for subclasses -------------------------------------------------------------

    def _input(self, X: Any, dtype: DTypeLike | None = None) -> FloatArray:
        return as_float_array(X, f"{type(self).__name__}.forward X", ndim=2, dtype=dtype,
                              min_features=1)

    def _upstream(self, dY: Any, cached: FloatArray | None) -> tuple[FloatArray, FloatArray]:
        """Check that forward ran and that ``dY`` has the output's shape; return ``dY, cached``."""
        name = type(self).__name__
        if cached is None:
            raise ForwardNotCalledError(
                f"{name}.backward expects forward to have been called first, got no cached input"
            )
        dY = as_float_array(dY, f"{name}.backward dY", ndim=None, dtype=cached.dtype)
        check_same_shape(dY, f"{name}.backward dY", self._output_shape(cached))
        return dY, cached

    def _output_shape(self, cached: FloatArray) -> tuple[int, ...]:
        # The cached array has the output's shape for every built-in but Affine.
        return cached.shape

    def _check_wrt(self, wrt: str) -> None:
        names = ("X", *self.params)
        if wrt not in names:
            raise JacnetValueError(
                f"{type(self).__name__}.jacobian wrt expects one of {names}, got {wrt!r}"
            )


class _BuiltIn(Layer):
    """A built-in layer: checks in ``forward``/``backward``, the formulas in ``_forward``/
    ``_backward``, and what backward needs in ``_cache`` (``None`` before forward)."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: FloatArray | None = None

    def forward(self, X: Any) -> FloatArray:
        return self._forward(self._input(X))

    def backward(self, dY: Any) -> FloatArray:
        return self._backward(self._upstream(dY, self._cache)[0])

    def _forward(self, X: FloatArray) -> FloatArray:
        raise NotImplementedError

    def _backward(self, dY: FloatArray) -> FloatArray:
        raise NotImplementedError

    def _cached(self) -> FloatArray:
        if self._cache is None:  # reached only through a network whose forward failed half-way
            raise ForwardNotCalledError(
                f"{type(self).__name__}.backward expects forward to have been called first"
            )
        return self._cache


class Affine(_BuiltIn):
    """The affine layer ``Z = X W + bᵀ``.

    Parameters
    ----------
    in_features, out_features : int
        ``W`` has shape ``(in_features, out_features)``, ``b`` shape ``(out_features,)``.
    init : {"he", "glorot", "zeros"}
        ``"he"``: ``W ~ N(0, 2/in)``; ``"glorot"``: ``W ~ U(±sqrt(6/(in+out)))``;
        ``"zeros"``: all zero. ``b`` starts at zero.
    rng : numpy.random.Generator or int or None
        Source of the initial weights; never the global NumPy state.
    dtype : floating dtype
        The dtype of ``W``, ``b`` and of everything the layer computes (float32 default).

    Notes
    -----
    Shapes: ``X (N, in)``, ``W (in, out)``, ``b (out,)``, ``Z (N, out)``. Backward:

    - ``dX = dZ Wᵀ``           ``(N, in)``
    - ``dW = Xᵀ dZ``           ``(in, out)``
    - ``db = sum(dZ, axis=0)`` ``(out,)``
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init: str = "he",
        rng: np.random.Generator | int | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int(in_features, "Affine in_features")
        self.out_features = check_positive_int(out_features, "Affine out_features")
        if init not in INITS:
            raise JacnetValueError(f"Affine init expects one of {INITS}, got {init!r}")
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as exc:
            raise JacnetTypeError(f"Affine dtype expects a floating dtype, got {dtype!r}") from exc
        if self.dtype.kind != "f":
            raise JacnetTypeError(f"Affine dtype expects a floating dtype, got {self.dtype}")
        self.init = init
        generator = as_rng(rng, "Affine rng")
        n_in, n_out = self.in_features, self.out_features
        if init == "he":
            W = generator.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        elif init == "glorot":
            limit = np.sqrt(6.0 / (n_in + n_out))
            W = generator.uniform(-limit, limit, (n_in, n_out))
        else:
            W = np.zeros((n_in, n_out))
        self.params = {"W": W.astype(self.dtype), "b": np.zeros(n_out, dtype=self.dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._ones = np.ones(0, dtype=self.dtype)  # the 1 of db = dZᵀ 1, grown as batches need

    def __repr__(self) -> str:
        return f"Affine({self.in_features}, {self.out_features}, dtype={self.dtype.name})"

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "dtype": self.dtype.name}

    def _input(self, X: Any, dtype: DTypeLike | None = None) -> FloatArray:
        return super()._input(X, self.params["W"].dtype)  # the width: in _forward and jacobian

    def _check_width(self, X: FloatArray) -> FloatArray:
        if X.shape[1] != self.in_features:
            raise ShapeError(
                f"Affine({self.in_features}, {self.out_features}).forward X expects "
                f"shape (N, {self.in_features}), got {X.shape}"
            )
        return X

    def _forward(self, X: FloatArray) -> FloatArray:
        """``Z = X W + bᵀ``: ``(N, in) @ (in, out) + (out,) -> (N, out)``."""
        # The width is checked here too: in a network it is where two layers fail to fit. A
        # network may mix float32 and float64 layers: each computes in its own dtype.
        X = self._check_width(X).astype(self.params["W"].dtype, copy=False)
        self._cache = X
        Z = X @ self.params["W"]
        Z += self.params["b"]
        return Z

    def _output_shape(self, cached: FloatArray) -> tuple[int, ...]:
        return (cached.shape[0], self.out_features)

    def _backward(self, dZ: FloatArray) -> FloatArray:
        """``dX = dZ Wᵀ`` ``(N, in)``; fills ``grads["W"] = Xᵀ dZ`` and ``grads["b"]``."""
        self._backward_params(dZ)
        return dZ @ self.params["W"].T

    def backward_params(self, dZ: Any) -> None:
        """``dW = Xᵀ dZ`` ``(in, out)`` and ``db = sum(dZ, axis=0)`` ``(out,)``, without dX."""
        self._backward_params(self._upstream(dZ, self._cache)[0])

    def _backward_params(self, dZ: FloatArray) -> None:
        X = self._cached()
        N = dZ.shape[0]
        if self._ones.shape[0] < N or self._ones.dtype != dZ.dtype:
            self._ones = np.ones(N, dtype=dZ.dtype)
        # Written into the existing buffers: no allocation per step, and no accumulation.
        np.matmul(X.T, dZ, out=self.grads["W"])
        # db = sum(dZ, axis=0) written as the contraction it is, 1ᵀ dZ: one BLAS call, about
        # three times faster than np.sum over axis 0 on a (128, 256) float32 batch.
        np.matmul(self._ones[:N], dZ, out=self.grads["b"])

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """Expanded Jacobian of ``Z`` from the per-entry partials.

        - ``wrt="X"``: ``∂z_ij/∂x_kl = δ_ik w_lj``, shape ``(N, out, N, in)``
        - ``wrt="W"``: ``∂z_ij/∂w_kl = x_ik δ_jl``, shape ``(N, out, in, out)``
        - ``wrt="b"``: ``∂z_ij/∂b_l = δ_jl``,       shape ``(N, out, out)``
        """
        self._check_wrt(wrt)
        X = self._check_width(self._input(X))
        N = X.shape[0]
        W = self.params["W"]
        delta_N = np.eye(N, dtype=W.dtype)
        delta_out = np.eye(self.out_features, dtype=W.dtype)
        if wrt == "X":
            return np.einsum("ik,lj->ijkl", delta_N, W)
        if wrt == "W":
            return np.einsum("ik,jl->ijkl", X, delta_out)
        return np.broadcast_to(delta_out, (N, *delta_out.shape)).copy()


class _Elementwise(_BuiltIn):
    """A parameterless layer ``y_ij = f(x_ij)`` whose Jacobian is diagonal: ``δ_ik δ_jl f'(x_ij)``."""

    def _derivative(self, X: FloatArray) -> FloatArray:
        """``f'(x)`` entry by entry."""
        raise NotImplementedError

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """``∂y_ij/∂x_kl = δ_ik δ_jl f'(x_ij)``, shape ``(N, K, N, K)``."""
        self._check_wrt(wrt)
        X = self._input(X)
        N, K = X.shape
        J = np.zeros((N, K, N, K), dtype=X.dtype)
        i, j = np.meshgrid(np.arange(N), np.arange(K), indexing="ij")
        J[i, j, i, j] = self._derivative(X)
        return J


class ReLU(_Elementwise):
    """``y = max(x, 0)``; backward ``dX = dY ⊙ [x > 0]`` (the subgradient 0 at ``x = 0``)."""

    def _forward(self, X: FloatArray) -> FloatArray:
        # y = x ⊙ [x > 0] with the 0/1 mask in X's dtype, kept for backward: on float32 the
        # mask and two multiplies cost less than np.maximum and backward's own comparison.
        mask = (X > 0).astype(X.dtype)
        self._cache = mask
        return X * mask

    def _backward(self, dY: FloatArray) -> FloatArray:
        return dY * self._cached()

    def _derivative(self, X: FloatArray) -> FloatArray:
        return (X > 0).astype(X.dtype)


def _select(mask: np.ndarray[Any, np.dtype[np.bool_]], A: FloatArray, B: FloatArray) -> FloatArray:
    """``A`` where ``mask`` else ``B``, exactly, by arithmetic (``np.where`` is slower here)."""
    return A * mask + B * ~mask


class LeakyReLU(_Elementwise):
    """``y = x`` for ``x > 0``, else ``negative_slope · x``; ``dX = dY ⊙ (1 or slope)``."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = check_real(negative_slope, "LeakyReLU negative_slope")

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self.negative_slope})"

    def config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def _forward(self, X: FloatArray) -> FloatArray:
        self._cache = X
        return _select(X > 0, X, X * X.dtype.type(self.negative_slope))

    def _backward(self, dY: FloatArray) -> FloatArray:
        X = self._cached()
        return _select(X > 0, dY, dY * dY.dtype.type(self.negative_slope))

    def _derivative(self, X: FloatArray) -> FloatArray:
        return np.where(X > 0, 1.0, self.negative_slope).astype(X.dtype)


def sigmoid(X: FloatArray) -> FloatArray:
    """``σ(x) = 1 / (1 + e^{-x})``, evaluated without overflow for any finite ``x``."""
    # e^{-|x|} never overflows; the two branches are the same function rearranged.
    E = np.exp(-np.abs(X))
    return np.where(X >= 0, 1 / (1 + E), E / (1 + E))


class Sigmoid(_Elementwise):
    """``y = σ(x)``; backward ``dX = dY ⊙ y(1 - y)``."""

    def _forward(self, X: FloatArray) -> FloatArray:
        Y = sigmoid(X)
        self._cache = Y
        return Y

    def _backward(self, dY: FloatArray) -> FloatArray:
        Y = self._cached()
        return dY * Y * (1 - Y)

    def _derivative(self, X: FloatArray) -> FloatArray:
        S = sigmoid(X)
        return S * (1 - S)


class Tanh(_Elementwise):
    """``y = tanh(x)``; backward ``dX = dY ⊙ (1 - y²)``."""

    def _forward(self, X: FloatArray) -> FloatArray:
        Y = np.tanh(X)
        self._cache = Y
        return Y

    def _backward(self, dY: FloatArray) -> FloatArray:
        Y = self._cached()
        return dY * (1 - Y * Y)

    def _derivative(self, X: FloatArray) -> FloatArray:
        return 1 - np.tanh(X) ** 2


def softmax(L: FloatArray) -> FloatArray:
    """Row-wise ``ŷ_j = e^{l_j} / Σ_k e^{l_k}`` over the last axis, after subtracting the row max."""
    E = L - L.max(axis=-1, keepdims=True)
    np.exp(E, out=E)
    E /= E.sum(axis=-1, keepdims=True)
    return E


class Softmax(_BuiltIn):
    """Row-wise softmax of logits ``L (N, K)`` into probabilities ``Ŷ (N, K)``.

    Its Jacobian, per sample, is ``∂ŷ_a/∂l_b = ŷ_a(1 - ŷ_a)`` on the diagonal and
    ``-ŷ_a ŷ_b`` off it. Backward applies it without building it (the lecture's total
    derivative)::

        dL = Ŷ ⊙ (dŶ - sum(dŶ ⊙ Ŷ, axis=1))
    """

    def _forward(self, X: FloatArray) -> FloatArray:
        Y = softmax(X)
        self._cache = Y
        return Y

    def _backward(self, dY: FloatArray) -> FloatArray:
        Y = self._cached()
        return Y * (dY - np.sum(dY * Y, axis=1, keepdims=True))

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """``∂ŷ_ij/∂l_kl = δ_ik ŷ_ij (δ_jl - ŷ_il)``, shape ``(N, K, N, K)``."""
        self._check_wrt(wrt)
        Y = softmax(self._input(X))
        N, K = Y.shape
        delta_N = np.eye(N, dtype=Y.dtype)
        delta_K = np.eye(K, dtype=Y.dtype)
        # ŷ_ij δ_jl - ŷ_ij ŷ_il for each sample i: a dense K×K block on the diagonal.
        block = np.einsum("ij,jl->ijl", Y, delta_K) - np.einsum("ij,il->ijl", Y, Y)
        return np.einsum("ik,ijl->ijkl", delta_N, block)

