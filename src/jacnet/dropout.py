"""Dropout: a random mask in training, the identity in inference."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike

from jacnet import backend
from jacnet._spatial import ShapeKept, output_kind
from jacnet._validation import FloatArray, as_rng, check_jacobian_size, check_real
from jacnet.layers import Layer, is_recording
from jacnet.registry import register_layer
from jacnet.structure import Structure

__all__ = ["Dropout"]


@register_layer("dropout")
class Dropout(ShapeKept):
    """Inverted dropout: in training ``y = x ⊙ m`` with ``m_i = [u_i ≥ p] / (1 − p)``,
    ``u_i ~ U[0, 1)`` drawn afresh each forward; in inference ``y = x``.

    Parameters
    ----------
    p : float in [0, 1)
        Probability of zeroing an entry. The survivors are scaled by ``1/(1 − p)`` so that
        ``E[y] = x`` and inference needs no rescaling.
    rng : numpy.random.Generator or int or None
        Source of the masks (never the global NumPy state); a seed makes runs repeatable.

    Notes
    -----
    Backward ``dX = dY ⊙ m`` (``dY`` in inference); the Jacobian is diagonal,
    ``∂y_a/∂x_b = δ_ab m_a`` (``δ_ab`` in inference), shape ``X.shape + X.shape``.
    After :meth:`fix_randomness` forward reuses the last mask (for an input of the same
    shape), so finite differences and :meth:`jacobian` see one function.
    """

    formulas: ClassVar[dict[str, tuple[str, str]]] = {
        "X": ("∂y_a/∂x_b = δ_ab m_a (the mask m fixed)",
              r"$\partial y_a/\partial x_b = \delta_{ab}\,m_a$"),
        "X, inference": ("∂y_a/∂x_b = δ_ab", r"$\partial y_a/\partial x_b = \delta_{ab}$"),
    }
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "diagonal: the mask m on the diagonal (0 or 1/(1 − p)); a dropped entry is a computed "
             "zero, and the mask stays fixed while the Jacobian is checked",
        "X, inference": "the identity: dropout is off in inference",
    }

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        return Structure(diagonal=True)  # a dropped entry is a computed zero: m_a = 0

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        return math.prod(X_shape), "dX = dY ⊙ m, one multiply per entry"

    input_ndim = (2, 3, 4, 5)

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        return cls(0.5, rng=rng), rng.standard_normal((4, 3)).astype(dtype)

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | int | None = None) -> None:
        super().__init__()
        self.p = check_real(p, "Dropout p", low=0, high=1, high_open=True)
        self.rng = as_rng(rng, "Dropout rng")
        self._mask: FloatArray | None = None
        self._fixed = False

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def fix_randomness(self) -> None:
        """Reuse the last mask from now on (a new one is drawn only for a new input shape)."""
        self._fixed = True

    def _mask_for(self, A: FloatArray) -> FloatArray:
        """The training mask for ``A``: the last one when fixed and it fits, else a new draw.

        The mask is drawn in NumPy from ``rng`` and moved to ``A``'s backend and device, so a
        seed gives the same masks on every backend.
        """
        mask = self._mask
        dtype = backend.numpy_dtype(A)
        if self._fixed and mask is not None and mask.shape == A.shape and (
                backend.numpy_dtype(mask) == dtype):
            return backend.like(mask, A)  # the fixed mask follows the input's backend
        drawn = (self.rng.random(A.shape) >= self.p).astype(dtype)
        drawn *= dtype.type(1.0 / (1.0 - self.p))
        mask = backend.like(drawn, A)
        if is_recording():  # inference_mode leaves the layer's state as it was
            self._mask = mask
        return mask

    def _multiplier(self, A: FloatArray) -> FloatArray:
        """``m`` in training, ones (a broadcast view, no memory) in inference."""
        if self.training:
            return self._mask_for(A)
        xp = backend.namespace(A)
        return xp.broadcast_to(xp.ones(1, dtype=A.dtype, device=A.device), A.shape)

    def forward(self, X: Any) -> FloatArray:
        A = self._input(X)
        m = self._multiplier(A)
        self._keep((A.shape, output_kind(A), m))
        return A * m

    def backward(self, dY: Any) -> FloatArray:
        """``dX = dY ⊙ m`` (a new array, also in inference)."""
        return self._upstream_for(dY) * self._saved[2]

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """``∂y_a/∂x_b = δ_ab m_a`` over flat indices, shape ``X.shape + X.shape``; uses the
        mask :meth:`forward` would (the last one after :meth:`fix_randomness`)."""
        self._check_wrt(wrt)
        A = backend.to_numpy(self._input(X))  # built in NumPy, whatever the backend
        check_jacobian_size(A.shape, A.shape, "Dropout.jacobian")
        J = np.zeros((A.size, A.size), dtype=A.dtype)
        J[np.arange(A.size), np.arange(A.size)] = self._multiplier(A).reshape(-1)
        return J.reshape(A.shape + A.shape)
