"""Normalisation layers: batch normalisation (statistics over the batch) and layer
normalisation (statistics over each sample's trailing axes).

Both standardise a group of ``M`` entries, ``x̂_i = (x_i − μ)/σ`` with ``μ`` the mean,
``σ = sqrt(var + eps)`` and ``var`` the biased variance of the group, then scale and shift,
``y_i = γ x̂_i + β``. The per-entry partials inside one group are::

    ∂x̂_i/∂x_k = (δ_ik − 1/M − x̂_i x̂_k / M) / σ

so the expanded Jacobian is dense within a group. For batch normalisation a group is one
feature (channel) across the whole batch: every output depends on every sample of the batch,
which no per-sample picture shows. Contracting with ``dY`` gives the closed form::

    dX = (1/σ) (g − mean(g) − x̂ · mean(g ⊙ x̂)),   g = γ ⊙ dY,  means over the group
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike

from jacnet import backend
from jacnet._spatial import ShapeKept, checked_input, output_kind
from jacnet._validation import (
    FloatArray,
    check_jacobian_size,
    check_positive_int,
    check_real,
    describe,
)
from jacnet.errors import JacnetTypeError, ShapeError
from jacnet.layers import Layer, _float_dtype, is_recording
from jacnet.registry import register_layer
from jacnet.structure import Structure

__all__ = ["BatchNorm", "LayerNorm"]


def _standardize(A: FloatArray, axes: tuple[int, ...], eps: float
                 ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """``x̂``, ``1/σ``, ``μ`` and the biased ``var`` of ``A`` over ``axes`` (kept as size 1)."""
    xp = backend.namespace(A)
    mean = xp.mean(A, axis=axes, keepdims=True)
    centred = A - mean
    var = xp.mean(centred * centred, axis=axes, keepdims=True)
    inv_std = _inverse_std(var, eps)
    centred *= inv_std
    return centred, inv_std, mean, var


def _inverse_std(var: FloatArray, eps: float) -> FloatArray:
    """``1/σ = 1/sqrt(var + eps)`` in ``var``'s dtype (a Python float does not promote)."""
    return 1.0 / backend.namespace(var).sqrt(var + eps)


def _standardized_backward(g: FloatArray, xhat: FloatArray, inv_std: FloatArray,
                           axes: tuple[int, ...]) -> FloatArray:
    """``dX = (1/σ)(g − mean(g) − x̂ mean(g ⊙ x̂))`` over ``axes``: ``Σ_i g_i ∂x̂_i/∂x_k``."""
    xp = backend.namespace(g)
    dX = g - xp.mean(g, axis=axes, keepdims=True)
    dX -= xhat * xp.mean(g * xhat, axis=axes, keepdims=True)
    dX *= inv_std
    return dX


def _standardized_blocks(xhat: FloatArray, inv_std: FloatArray) -> FloatArray:
    """Per group ``r``, the dense block ``∂x̂_i/∂x_k = (δ_ik − 1/M − x̂_i x̂_k/M)/σ_r``, built
    entry by entry from ``xhat (R, M)`` and ``inv_std (R,)``; shape ``(R, M, M)``."""
    M = xhat.shape[1]
    eye = np.eye(M, dtype=xhat.dtype)
    blocks = eye[None] - 1.0 / M - np.einsum("ri,rk->rik", xhat, xhat) / M
    return blocks * inv_std[:, None, None]


def _block_diagonal(blocks: FloatArray) -> FloatArray:
    """``(R, M, M)`` blocks into the ``(R, M, R, M)`` array that is zero between groups."""
    R, M = blocks.shape[:2]
    J = np.zeros((R, M, R, M), dtype=blocks.dtype)
    J[np.arange(R), :, np.arange(R), :] = blocks
    return J



def _example(layer: Layer, rng: np.random.Generator, dtype: DTypeLike) -> tuple[Layer, FloatArray]:
    """``layer`` over 3 features with random ``gamma``, ``beta`` and a ``(4, 3)`` input."""
    layer.params["gamma"][:] = rng.uniform(0.5, 1.5, 3)
    layer.params["beta"][:] = rng.standard_normal(3)
    return layer, rng.standard_normal((4, 3)).astype(dtype)


@register_layer("batchnorm")
class BatchNorm(ShapeKept):
    """Batch normalisation per feature of ``(N, F)`` or per channel of ``(N, C, L)`` /
    ``(N, C, H, W)`` (PyTorch's ``BatchNorm1d``/``BatchNorm2d``).

    Parameters
    ----------
    num_features : int
        ``F`` (or ``C``); ``gamma`` (ones) and ``beta`` (zeros) have shape ``(F,)``.
    eps : float
        Added to the variance, ``σ = sqrt(var + eps)``.
    momentum : float in [0, 1]
        Weight of the new batch in the running statistics.
    dtype : {float32, float64}
        Dtype of parameters, buffers and computation; float64 ``X`` into float32 is refused.

    Attributes
    ----------
    buffers : dict[str, ndarray]
        ``running_mean`` (zeros) and ``running_var`` (ones), shape ``(F,)``: state, not
        parameters (no gradient), updated in place by each training forward outside
        :func:`~jacnet.layers.inference_mode`::

            running_mean ← (1 − momentum) running_mean + momentum μ_B
            running_var  ← (1 − momentum) running_var  + momentum var_B · M/(M − 1)

        (the unbiased variance, as PyTorch keeps it; ``M = N·prod(spatial)``).

    Notes
    -----
    Training (``training=True``): statistics of the batch, over ``M = N·prod(spatial)`` entries
    per feature, ``x̂ = (x − μ_B)/σ_B``, ``y = γ x̂ + β``. Backward::

        dγ = Σ dY ⊙ x̂          dβ = Σ dY          (sums over all axes but the feature's)
        dX = (γ/σ_B)(dY − mean(dY) − x̂ mean(dY ⊙ x̂))

    and the Jacobian couples every sample of the batch:
    ``∂y[n,f,s]/∂x[m,g,u] = δ_fg γ_f (δ_nm δ_su − 1/M − x̂[n,f,s] x̂[m,f,u]/M)/σ_f``.
    Inference (``training=False``): the running statistics, ``x̂ = (x − μ_run)/σ_run``; each
    output depends on its own input only, ``dX = γ dY / σ_run``.
    """

    formulas: ClassVar[dict[str, tuple[str, str]]] = {
        "X": ("∂y[n,f]/∂x[m,g] = δ_fg γ_f (δ_nm − 1/M − x̂[n,f] x̂[m,f]/M) / σ_f",
              r"$\partial y_{n,f}/\partial x_{m,g} = \delta_{fg}\,\gamma_f\,"
              r"(\delta_{nm} - \frac{1}{M} - \frac{\hat{x}_{n,f}\,\hat{x}_{m,f}}{M})\,/\,\sigma_f$"),
        "X, inference": ("∂y[n,f]/∂x[m,g] = δ_nm δ_fg γ_f / σ_run,f",
                         r"$\partial y_{n,f}/\partial x_{m,g} = \delta_{nm}\,\delta_{fg}\,"
                         r"\gamma_f\,/\,\sigma^{\mathrm{run}}_f$"),
        "gamma": ("∂y[n,f]/∂γ_g = δ_fg x̂[n,f]",
                  r"$\partial y_{n,f}/\partial \gamma_g = \delta_{fg}\,\hat{x}_{n,f}$"),
        "beta": ("∂y[n,f]/∂β_g = δ_fg", r"$\partial y_{n,f}/\partial \beta_g = \delta_{fg}$"),
    }
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "dense over the batch within each feature (δ_fg only): through the batch mean and "
             "variance every output of feature f depends on every sample's x[·,f], a dense block "
             "γ_f/σ_f (I − 1/M − x̂ x̂ᵀ/M) that couples the samples",
        "X, inference": "diagonal: with the running statistics each output depends on its own "
                        "input only, γ_f/σ_run,f",
        "gamma": "δ_fg: each column holds the normalised x̂ of its feature",
        "beta": "δ_fg: stacked identities; contracting them with dY sums over the batch",
    }

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        if wrt != "X":
            return Structure(ties=((1, 0),))  # δ_fg
        # Training: δ_fg only, dense over the batch (and positions) within a feature.
        return Structure(ties=((1, 1),)) if self.training else Structure(diagonal=True)

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        size = math.prod(X_shape)
        if wrt == "gamma":
            return size, "dγ = Σ dY ⊙ x̂, one multiply-add per entry"
        if wrt == "beta":
            return size, "dβ = Σ dY, one addition per entry"
        if not self.training:
            return size, "dX = γ dY / σ_run, one multiply per entry"
        return 6 * size, "dX = (γ/σ)(dY − mean(dY) − x̂ mean(dY ⊙ x̂)), about 6 operations per entry"

    input_ndim = (2, 3, 4)

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        return _example(cls(3, dtype=dtype), rng, dtype)

    @classmethod
    def buffer_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
        shape = (int(config["num_features"]),)
        return {"running_mean": (shape, str(config["dtype"])),
                "running_var": (shape, str(config["dtype"]))}

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__()
        self.num_features = check_positive_int(num_features, "BatchNorm num_features")
        self.eps = check_real(eps, "BatchNorm eps", low=0, low_open=True)
        self.momentum = check_real(momentum, "BatchNorm momentum", low=0, high=1)
        self.dtype = _float_dtype(dtype, "BatchNorm dtype")
        F = self.num_features
        self.params = {"gamma": np.ones(F, dtype=self.dtype), "beta": np.zeros(F, dtype=self.dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers: dict[str, FloatArray] = {"running_mean": np.zeros(F, dtype=self.dtype),
                                               "running_var": np.ones(F, dtype=self.dtype)}

    def __repr__(self) -> str:
        return (f"BatchNorm({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"dtype={self.dtype.name})")

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "dtype": self.dtype.name}

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
        shape = (int(config["num_features"]),)
        return {"gamma": (shape, str(config["dtype"])), "beta": (shape, str(config["dtype"]))}

    def _checked(self, X: Any) -> FloatArray:
        A = checked_input(self, X, self.dtype)
        if A.shape[1] != self.num_features:
            raise ShapeError(f"BatchNorm({self.num_features}).forward X expects "
                             f"{self.num_features} features on axis 1, got shape {tuple(A.shape)}")
        if self.training and math.prod(A.shape) // A.shape[1] < 2:
            raise ShapeError("BatchNorm.forward X expects more than one value per feature in "
                             f"training (batch statistics), got shape {tuple(A.shape)}")
        return A

    def _feature(self, v: FloatArray, ndim: int) -> FloatArray:
        """A per-feature ``(F,)`` vector shaped to broadcast over ``(N, F, *spatial)``."""
        return v.reshape(1, -1, *(1,) * (ndim - 2))

    def _normalized(self, A: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``x̂`` and ``1/σ`` (broadcastable), from the batch (training) or the running stats."""
        axes = (0, *range(2, A.ndim))
        if self.training:
            xhat, inv_std, _, _ = _standardize(A, axes, self.eps)
            return xhat, inv_std
        inv_std = _inverse_std(self._feature(self.buffers["running_var"], A.ndim), self.eps)
        xhat = A - self._feature(self.buffers["running_mean"], A.ndim)
        xhat *= inv_std
        return xhat, inv_std

    def forward(self, X: Any) -> FloatArray:
        """``y = γ x̂ + β``, ``X`` and ``Y`` of shape ``(N, F, *spatial)``."""
        A = self._checked(X)
        axes = (0, *range(2, A.ndim))
        if self.training:
            xhat, inv_std, mean, var = _standardize(A, axes, self.eps)
            if is_recording():
                M = math.prod(A.shape) // A.shape[1]
                m = self.momentum  # a Python float: computed in the buffers' dtype
                for name, batch in (("running_mean", mean), ("running_var", var * (M / (M - 1)))):
                    running = self.buffers[name]
                    running *= 1 - m
                    running += m * batch.reshape(-1)
        else:
            xhat, inv_std = self._normalized(A)
        Y = xhat * self._feature(self.params["gamma"], A.ndim)
        Y += self._feature(self.params["beta"], A.ndim)
        self._keep((Y.shape, output_kind(Y), xhat, inv_std, self.training))
        return Y

    def backward(self, dY: Any) -> FloatArray:
        """``dX`` (batch or running statistics, as forward used); fills ``grads``."""
        dY = self._upstream_for(dY)
        xhat, inv_std, batch_stats = self._saved[2:]
        axes = (0, *range(2, dY.ndim))
        xp = backend.namespace(dY)
        xp.sum(dY * xhat, axis=axes, out=self.grads["gamma"])
        xp.sum(dY, axis=axes, out=self.grads["beta"])
        g = dY * self._feature(self.params["gamma"], dY.ndim)
        if not batch_stats:
            return g * inv_std
        return _standardized_backward(g, xhat, inv_std, axes)

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """Expanded Jacobian of ``Y (N, F, *S)``, from the per-entry partials.

        - ``wrt="X"``, training: ``∂y[n,f,s]/∂x[m,g,u] = δ_fg γ_f (δ_nm δ_su − 1/M −
          x̂[n,f,s] x̂[m,f,u]/M)/σ_f``: dense over the batch within each feature. Inference:
          ``δ_nm δ_fg δ_su γ_f/σ_run,f``. Shape ``(N, F, *S, N, F, *S)``.
        - ``wrt="gamma"``: ``∂y[n,f,s]/∂γ_g = δ_fg x̂[n,f,s]``, shape ``(N, F, *S, F)``.
        - ``wrt="beta"``: ``∂y[n,f,s]/∂β_g = δ_fg``, shape ``(N, F, *S, F)``.
        """
        self._check_wrt(wrt)
        A = self._checked(X)
        F = self.num_features
        in_shape = A.shape if wrt == "X" else (F,)
        check_jacobian_size(A.shape, in_shape, "BatchNorm.jacobian")
        xhat, inv_std = self._normalized(A)
        eye_F = np.eye(F, dtype=A.dtype)
        # Features first: (F, M) with M running over (n, *spatial).
        by_feature = np.moveaxis(xhat, 1, 0)
        rest = by_feature.shape[1:]
        if wrt in ("gamma", "beta"):
            values = by_feature if wrt == "gamma" else np.ones_like(by_feature)
            J = np.einsum("f...,fg->f...g", values, eye_F)  # (F, N, *S, F)
            return np.ascontiguousarray(np.moveaxis(J, 0, 1))
        gamma_over_sigma = self.params["gamma"] * inv_std.reshape(-1)
        M = math.prod(rest)
        if self.training:
            blocks = _standardized_blocks(by_feature.reshape(F, M), inv_std.reshape(-1))
            blocks *= self.params["gamma"][:, None, None]
        else:
            blocks = np.eye(M, dtype=A.dtype)[None] * gamma_over_sigma[:, None, None]
        J = _block_diagonal(blocks).reshape((F, *rest, F, *rest))
        # (F, N, *S, F, N, *S) -> (N, F, *S, N, F, *S)
        d = len(rest)
        order = (1, 0, *range(2, 1 + d), 2 + d, 1 + d, *range(3 + d, 2 + 2 * d))
        return np.ascontiguousarray(J.transpose(order))


@register_layer("layernorm")
class LayerNorm(ShapeKept):
    """Layer normalisation over the trailing axes ``normalized_shape`` of each sample
    (PyTorch's ``LayerNorm``).

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing shape normalised together; ``gamma`` (ones) and ``beta`` (zeros) have it.
    eps : float
        Added to the variance.
    dtype : {float32, float64}
        Dtype of parameters and computation; float64 ``X`` into float32 is refused.

    Notes
    -----
    For each leading index ``r`` (a sample, and any axes before the normalised ones), over
    its ``D = prod(normalized_shape)`` entries: ``x̂ = (x − μ_r)/σ_r``, ``y = γ ⊙ x̂ + β``.
    The same in training and inference. Backward, with ``g = γ ⊙ dY``::

        dγ = Σ_r dY ⊙ x̂     dβ = Σ_r dY
        dX = (1/σ_r)(g − mean(g) − x̂ mean(g ⊙ x̂))   (means over the D entries of r)

    Jacobian: ``∂y[r,j]/∂x[q,k] = δ_rq γ_j (δ_jk − 1/D − x̂[r,j] x̂[r,k]/D)/σ_r``, dense within
    a sample and zero across samples.
    """

    formulas: ClassVar[dict[str, tuple[str, str]]] = {
        "X": ("∂y[r,j]/∂x[q,k] = δ_rq γ_j (δ_jk − 1/D − x̂[r,j] x̂[r,k]/D) / σ_r",
              r"$\partial y_{r,j}/\partial x_{q,k} = \delta_{rq}\,\gamma_j\,"
              r"(\delta_{jk} - \frac{1}{D} - \frac{\hat{x}_{r,j}\,\hat{x}_{r,k}}{D})\,/\,\sigma_r$"),
        "gamma": ("∂y[r,j]/∂γ_l = δ_jl x̂[r,j]",
                  r"$\partial y_{r,j}/\partial \gamma_l = \delta_{jl}\,\hat{x}_{r,j}$"),
        "beta": ("∂y[r,j]/∂β_l = δ_jl", r"$\partial y_{r,j}/\partial \beta_l = \delta_{jl}$"),
    }
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "block diagonal over samples (δ_rq) with a dense D×D block per sample: the statistics "
             "are each sample's own, so samples never mix",
        "gamma": "δ_jl: each column holds the normalised x̂ of its feature",
        "beta": "δ_jl: stacked identities; contracting them with dY sums over the batch",
    }

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        lead = len(X_shape) - len(self.normalized_shape)
        if wrt == "X":  # δ_rq over the leading axes: dense within each normalised group
            return Structure(ties=tuple((a, a) for a in range(lead)))
        return Structure(ties=tuple((lead + a, a) for a in range(len(self.normalized_shape))))

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        size = math.prod(X_shape)
        if wrt == "gamma":
            return size, "dγ = Σ dY ⊙ x̂, one multiply-add per entry"
        if wrt == "beta":
            return size, "dβ = Σ dY, one addition per entry"
        return 6 * size, "dX = (1/σ)(g − mean(g) − x̂ mean(g ⊙ x̂)), about 6 operations per entry"

    input_ndim = (2, 3, 4, 5)

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        return _example(cls(3, dtype=dtype), rng, dtype)

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, *,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__()
        dims = normalized_shape if isinstance(normalized_shape, (tuple, list)) else (normalized_shape,)
        if not dims:
            raise JacnetTypeError("LayerNorm normalized_shape expects an int or a non-empty tuple "
                                  f"of ints, got {describe(normalized_shape)}")
        self.normalized_shape = tuple(check_positive_int(n, "LayerNorm normalized_shape")
                                      for n in dims)
        if len(self.normalized_shape) >= max(self.input_ndim):
            raise ShapeError(f"LayerNorm normalized_shape expects at most "
                             f"{max(self.input_ndim) - 1} axes, got {self.normalized_shape}")
        self.eps = check_real(eps, "LayerNorm eps", low=0, low_open=True)
        self.dtype = _float_dtype(dtype, "LayerNorm dtype")
        self.params = {"gamma": np.ones(self.normalized_shape, dtype=self.dtype),
                       "beta": np.zeros(self.normalized_shape, dtype=self.dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def _shape_config(self) -> int | list[int]:
        return self.normalized_shape[0] if len(self.normalized_shape) == 1 else list(
            self.normalized_shape)

    def __repr__(self) -> str:
        return f"LayerNorm({self._shape_config()}, eps={self.eps}, dtype={self.dtype.name})"

    def config(self) -> dict[str, Any]:
        return {"normalized_shape": self._shape_config(), "eps": self.eps,
                "dtype": self.dtype.name}

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
        raw = config["normalized_shape"]
        shape = tuple(int(n) for n in raw) if isinstance(raw, (list, tuple)) else (int(raw),)
        return {"gamma": (shape, str(config["dtype"])), "beta": (shape, str(config["dtype"]))}

    def _checked(self, X: Any) -> tuple[FloatArray, tuple[int, ...]]:
        """``X`` checked against ``normalized_shape``, and the normalised axes."""
        A = checked_input(self, X, self.dtype)
        D = len(self.normalized_shape)
        if A.ndim <= D or A.shape[A.ndim - D:] != self.normalized_shape:
            raise ShapeError(f"LayerNorm({self._shape_config()}).forward X expects shape "
                             f"(N, ..., {', '.join(map(str, self.normalized_shape))}), "
                             f"got {tuple(A.shape)}")
        return A, tuple(range(A.ndim - D, A.ndim))

    def forward(self, X: Any) -> FloatArray:
        """``y = γ ⊙ x̂ + β`` over the trailing ``normalized_shape``; ``Y`` has ``X``'s shape."""
        A, axes = self._checked(X)
        xhat, inv_std, _, _ = _standardize(A, axes, self.eps)
        Y = xhat * self.params["gamma"]
        Y += self.params["beta"]
        self._keep((Y.shape, output_kind(Y), xhat, inv_std))
        return Y

    def backward(self, dY: Any) -> FloatArray:
        """``dX = (1/σ)(g − mean(g) − x̂ mean(g ⊙ x̂))``, ``g = γ ⊙ dY``; fills ``grads``."""
        dY = self._upstream_for(dY)
        xhat, inv_std = self._saved[2:]
        D = len(self.normalized_shape)
        lead = tuple(range(dY.ndim - D))
        xp = backend.namespace(dY)
        xp.sum(dY * xhat, axis=lead, out=self.grads["gamma"])
        xp.sum(dY, axis=lead, out=self.grads["beta"])
        axes = tuple(range(dY.ndim - D, dY.ndim))
        return _standardized_backward(dY * self.params["gamma"], xhat, inv_std, axes)

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """Expanded Jacobian of ``Y`` (``X``'s shape) from the per-entry partials.

        - ``wrt="X"``: ``∂y[r,j]/∂x[q,k] = δ_rq γ_j (δ_jk − 1/D − x̂[r,j] x̂[r,k]/D)/σ_r``,
          shape ``X.shape + X.shape``.
        - ``wrt="gamma"``: ``∂y[r,j]/∂γ_l = δ_jl x̂[r,j]``; ``wrt="beta"``: ``δ_jl``; shape
          ``X.shape + normalized_shape``.
        """
        self._check_wrt(wrt)
        A, axes = self._checked(X)
        in_shape = A.shape if wrt == "X" else self.normalized_shape
        check_jacobian_size(A.shape, in_shape, "LayerNorm.jacobian")
        xhat, inv_std, _, _ = _standardize(A, axes, self.eps)
        D = math.prod(self.normalized_shape)
        rows = xhat.reshape(-1, D)
        if wrt in ("gamma", "beta"):
            values = rows if wrt == "gamma" else np.ones_like(rows)
            J = np.einsum("rj,jl->rjl", values, np.eye(D, dtype=A.dtype))
            return J.reshape(A.shape + self.normalized_shape)
        blocks = _standardized_blocks(rows, inv_std.reshape(-1))
        blocks *= self.params["gamma"].reshape(1, D, 1)
        return _block_diagonal(blocks).reshape(A.shape + A.shape)
