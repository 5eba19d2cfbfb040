"""Convolution as the lecture's matrix product: im2col, one GEMM per sample forward, two backward.

A convolution (PyTorch's cross-correlation) of ``X (N, C, *S)`` with ``W (O, C, *k)``::

    y[n, o, t] = b[o] + Σ_c Σ_κ W[o, c, κ] · x_pad[n, c, t·stride + κ]

Unfolding every window of sample ``n`` into a column (im2col) gives ``cols (N, C·K, T)``
(``T = prod(out)`` output positions, ``K = prod(k)`` kernel offsets; ``cols[n, (c, κ), t] =
x_pad[n, c, t·stride + κ]``), and the weight is the matrix ``W_mat (O, C·K)``, ``W`` itself
reshaped. Per sample the layer is the affine map ``Y_n = W_mat cols_n + b 1ᵀ``, ``(O, T)``, and
the lecture's closed forms for ``C = A B`` apply unchanged: ``dA = dC Bᵀ``, ``dB = Aᵀ dC``.
Samples stay the leading axis throughout, so ``Y (N, O, T)`` is already the layer's
``(N, O, *out)`` and ``dY`` is used as it comes: no transposes on the way in or out. The input
gradient comes back from the columns by col2im (every window's gradient summed onto the
inputs it read).

The expanded Jacobian in ``X`` is, per sample, a (block) Toeplitz matrix: the kernel repeated
along diagonals, ``∂y[n,o,t]/∂x[m,c,s] = δ_nm W[o, c, s − t·stride + pad]``.
"""

from __future__ import annotations

import math
import string
from typing import Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike

from jacnet._spatial import (
    Ints,
    ShapeKept,
    as_ints,
    checked_input,
    crop,
    fold,
    ix,
    output_sizes,
    pad,
    plain,
    unfold,
    windows,
)
from jacnet._validation import FloatArray, as_rng, check_jacobian_size, check_positive_int
from jacnet.errors import JacnetValueError, ShapeError
from jacnet.layers import INITS, Layer, _float_dtype, is_recording
from jacnet.registry import register_layer
from jacnet.structure import Band, Structure

__all__ = ["Conv1D", "Conv2D"]


class _Conv(ShapeKept):
    """A convolution over ``d`` spatial axes; :class:`Conv1D` and :class:`Conv2D` fix ``d``."""

    #: Number of spatial axes.
    spatial_ndim = 1

    formulas: ClassVar[dict[str, tuple[str, str]]] = {
        "X": ("∂y[n,o,t]/∂x[m,c,s] = δ_nm W[o,c,s−t·stride+pad]",
              r"$\partial y_{n,o,t}/\partial x_{m,c,s} = \delta_{nm}\,"
              r"W_{o,\,c,\,s - t\cdot\mathrm{stride} + \mathrm{pad}}$"),
        "W": ("∂y[n,o,t]/∂W[p,c,κ] = δ_op x_pad[n,c,t·stride+κ]",
              r"$\partial y_{n,o,t}/\partial W_{p,c,\kappa} = \delta_{op}\,"
              r"x^{\mathrm{pad}}_{n,\,c,\,t\cdot\mathrm{stride} + \kappa}$"),
        "b": ("∂y[n,o,t]/∂b[p] = δ_op", r"$\partial y_{n,o,t}/\partial b_{p} = \delta_{op}$"),
    }
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "block diagonal over samples (δ_nm), and within a sample one Toeplitz band per pair of "
             "channels (o, c): the kernel W[o,c,:] repeated along the diagonals, shifted by the "
             "stride at each output position; zero outside the window",
        "W": "δ_op: output channel o depends on its own filter only, and each of its rows holds the "
             "window of x_pad that the filter saw (a row of im2col's cols)",
        "b": "δ_op: stacked identities over samples and positions; contracting them with dY sums "
             "over both, db = sum(dY_mat, axis=0)",
    }

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        # X: δ_nm and the kernel's window, 0 <= s − t·stride + pad < k (the Toeplitz band);
        # W: δ_op and x_pad inside X, 0 <= t·stride + κ − pad < L; b: δ_op.
        axes = range(self.spatial_ndim)
        if wrt == "X":
            return Structure(ties=((0, 0),), bands=tuple(
                Band(2 + i, 2 + i, self.stride[i], self.padding[i], self.kernel_size[i])
                for i in axes))
        if wrt == "W":
            return Structure(ties=((1, 0),), bands=tuple(
                Band(2 + i, 2 + i, -self.stride[i], -self.padding[i], X_shape[2 + i])
                for i in axes))
        return Structure(ties=((1, 0),))

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        out = output_sizes(type(self).__name__, X_shape[2:], self.kernel_size, self.stride,
                           self.padding)
        N, O, C = X_shape[0], self.out_channels, self.in_channels  # noqa: E741
        T, K = math.prod(out), math.prod(self.kernel_size)
        where, k = ("L_out", "k") if self.spatial_ndim == 1 else ("H_out·W_out", "kh·kw")
        if wrt == "X":
            return N * T * O * K * C, (f"dcols_n = W_matᵀ dY_n (dB = Aᵀ dC) then col2im, "
                                       f"N·{where}·O·C·{k} multiply-adds")
        if wrt == "W":
            return N * T * O * K * C, (f"dW_mat = Σ_n dY_n cols_nᵀ (dA = dC Bᵀ), "
                                       f"N·O·{where}·C·{k} multiply-adds")
        return N * O * T, f"db = Σ_n,t dY[n, :, t], N·O·{where} additions"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] = 0,
        *,
        init: str = "he",
        rng: np.random.Generator | int | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        name, d = type(self).__name__, self.spatial_ndim
        self.in_channels = check_positive_int(in_channels, f"{name} in_channels")
        self.out_channels = check_positive_int(out_channels, f"{name} out_channels")
        self.kernel_size: Ints = as_ints(kernel_size, d, f"{name} kernel_size", minimum=1)
        self.stride: Ints = as_ints(stride, d, f"{name} stride", minimum=1)
        self.padding: Ints = as_ints(padding, d, f"{name} padding", minimum=0)
        if init not in INITS:
            raise JacnetValueError(f"{name} init expects one of {INITS}, got {init!r}")
        self.init = init
        self.dtype = _float_dtype(dtype, f"{name} dtype")
        generator = as_rng(rng, f"{name} rng")
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        fan_in = self.in_channels * math.prod(self.kernel_size)
        fan_out = self.out_channels * math.prod(self.kernel_size)
        if init == "he":
            W = generator.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif init == "glorot":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W = generator.uniform(-limit, limit, shape)
        else:
            W = np.zeros(shape)
        self.params = {"W": W.astype(self.dtype),
                       "b": np.zeros(self.out_channels, dtype=self.dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        # A scratch array reused from step to step (cols): a fresh multi-megabyte array per
        # call costs its page faults every time, as much as a matrix product here.
        self._work: dict[str, FloatArray] = {}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={plain(self.kernel_size)}, stride={plain(self.stride)}, "
                f"padding={plain(self.padding)}, dtype={self.dtype.name})")

    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": plain(self.kernel_size), "stride": plain(self.stride),
                "padding": plain(self.padding), "dtype": self.dtype.name}

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
        kernel = as_ints(config["kernel_size"], cls.spatial_ndim, f"{cls.__name__} kernel_size",
                         minimum=1)
        n_in, n_out, dtype = config["in_channels"], config["out_channels"], str(config["dtype"])
        return {"W": ((n_out, n_in, *kernel), dtype), "b": ((n_out,), dtype)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config, init="zeros")

    # Forward and backward -------------------------------------------------------------------

    def _checked(self, X: Any) -> tuple[FloatArray, Ints]:
        """``X`` checked (rank, channels, dtype, size against the kernel) and the output sizes."""
        A = checked_input(self, X, self.dtype)
        name = type(self).__name__
        if A.shape[1] != self.in_channels:
            axes = ", ".join(("L",) if self.spatial_ndim == 1 else ("H", "W"))
            raise ShapeError(f"{name}({self.in_channels}, {self.out_channels}).forward X expects "
                             f"shape (N, {self.in_channels}, {axes}), got {A.shape}")
        out = output_sizes(f"{name}.forward X", A.shape[2:], self.kernel_size, self.stride,
                           self.padding)
        return A, out

    def clear(self) -> None:
        super().clear()
        self._work = {}

    def _scratch(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> FloatArray:
        """A reusable array of ``shape`` and ``dtype`` (contents undefined). Only for training
        steps: under inference_mode the layer may be a shallow copy sharing ``_work``."""
        buf = self._work.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._work[name] = np.empty(shape, dtype=dtype)
        return buf

    def _weight_matrix(self) -> FloatArray:
        """``W_mat (O, C·K)``: ``W`` reshaped, ``W_mat[o, (c, κ)] = W[o, c, κ]`` (a view)."""
        return self.params["W"].reshape(self.out_channels, -1)

    def forward(self, X: Any) -> FloatArray:
        """``Y_n = W_mat cols_n + b 1ᵀ``: ``(O, C·K) @ (N, C·K, T) -> (N, O, T)``, one product
        per sample, returned as ``(N, O, *out)``. Keeps ``cols`` (an array of its own)."""
        A, out = self._checked(X)
        N = A.shape[0]
        shape = (N, self.in_channels * math.prod(self.kernel_size), math.prod(out))
        buffer = self._scratch("cols", shape, A.dtype) if is_recording() else None
        cols = unfold(pad(A, self.padding), self.kernel_size, self.stride, out, buffer)
        Y = self._weight_matrix() @ cols
        Y += self.params["b"][:, None]
        self._keep(((N, self.out_channels, *out), Y.dtype, cols, A.shape))
        return Y.reshape(N, self.out_channels, *out)

    def _upstream_matrices(self, dY: Any) -> FloatArray:
        """``dY (N, O, *out)`` checked, as the matrices ``dY_n``: ``(N, O, T)`` (a view)."""
        upstream = self._upstream_for(dY)
        return upstream.reshape(*upstream.shape[:2], -1)

    def backward(self, dY: Any) -> FloatArray:
        """``dcols_n = W_matᵀ dY_n``: ``(C·K, O) @ (N, O, T) -> (N, C·K, T)`` (the lecture's
        ``dB = Aᵀ dC``), then col2im sums every window's gradient onto the inputs it read:
        ``dX (N, C, *S)``. Fills ``grads`` through :meth:`backward_params` (so an override of
        it runs here too)."""
        self.backward_params(dY)
        upstream = self._upstream_for(dY)
        if all(s == 1 for s in self.stride):
            dXp = self._padded_input_gradient_unit_stride(upstream)
        else:
            dXp = self._padded_input_gradient(upstream)
        return crop(dXp, self.padding).copy() if any(self.padding) else dXp

    def _padded_shape(self) -> tuple[int, ...]:
        """``(N, C, *padded)``: the shape of ``x_pad`` in the last forward."""
        in_shape = self._saved[3]
        return (*in_shape[:2], *(s + 2 * p for s, p in zip(in_shape[2:], self.padding,
                                                             strict=True)))

    def _padded_input_gradient(self, dY: FloatArray) -> FloatArray:
        """``dX_pad (N, C, *padded)`` from ``dY (N, O, *out)``: ``dcols_n = W_matᵀ dY_n``, then
        col2im, one strided add of slab ``κ`` ``(N, C, *out)`` per kernel offset."""
        N, C, *padded = self._padded_shape()
        out = dY.shape[2:]
        dcols = self._weight_matrix().T @ dY.reshape(N, self.out_channels, -1)
        slabs = dcols.reshape(N, C, *self.kernel_size, *out)
        dXp = np.zeros((N, C, *padded), dtype=dcols.dtype)
        return fold(lambda offset: slabs[ix(slice(None), slice(None), *offset)], dXp, 2,
                    self.kernel_size, self.stride, out)

    def _padded_input_gradient_unit_stride(self, dY: FloatArray) -> FloatArray:
        """:meth:`_padded_input_gradient` for unit strides, with contiguous adds.

        With stride 1 on every axis, kernel offset ``κ`` moves every window by the same
        distance in the flattened ``x_pad``, ``off(κ) = Σ_i κ_i · prod(padded[i+1:])``. So
        ``dcols`` is computed over the *wide* grid ``(out_0, *padded[1:])`` (``dY`` set to 0 at
        the extra positions, which no window has): there slab ``κ`` of ``dcols_n``, flattened,
        lands on ``dX_pad[n]`` flattened from ``off(κ)`` on, one contiguous add per offset
        (its tail past the end holds only extra positions, zeros, and is dropped). The same
        sums as the strided adds, plus zeros: 3x faster at ``(128, 16, 13, 13)``, where the
        strided adds move runs of 11 numbers.
        """
        N, C, *padded = self._padded_shape()
        out, O = dY.shape[2:], self.out_channels  # noqa: E741
        wide = np.zeros((N, O, out[0], *padded[1:]), dtype=dY.dtype)
        wide[ix(slice(None), slice(None), *(slice(0, o) for o in out))] = dY
        dcols = self._weight_matrix().T @ wide.reshape(N, O, -1)  # (N, C·K, L)
        slabs = dcols.reshape(N, C, math.prod(self.kernel_size), -1)
        P, L = math.prod(padded), slabs.shape[-1]
        dXp = np.zeros((N, C, P), dtype=dcols.dtype)
        for j, offset in enumerate(np.ndindex(*self.kernel_size)):
            start = int(np.ravel_multi_index(offset, padded))
            n = min(L, P - start)
            dXp[:, :, start:start + n] += slabs[:, :, j, :n]
        return dXp.reshape(N, C, *padded)

    def backward_params(self, dY: Any) -> None:
        """``dW_mat = Σ_n dY_n cols_nᵀ`` ``(O, C·K)`` (the lecture's ``dA = dC Bᵀ``, summed
        over the samples), ``W``'s ``(O, C, *k)`` reshaped; ``db = Σ_{n,t} dY[n, :, t]``
        ``(O,)``. No ``dX``."""
        dYm = self._upstream_matrices(dY)
        cols = self._saved[2]
        # Written into the existing buffers (fit's optimizer holds them): no accumulation.
        self.grads["W"][...] = (dYm @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(
            self.grads["W"].shape)
        self.grads["b"][...] = dYm.sum(axis=(0, 2))

    # The expanded Jacobian from the per-entry formula ---------------------------------------

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """Expanded Jacobian of ``Y (N, O, *out)`` from the per-entry partials.

        - ``wrt="X"``: ``∂y[n,o,t]/∂x[m,c,s] = δ_nm W[o, c, s − t·stride + pad]`` where that
          kernel index is in range, else 0; shape ``(N, O, *out, N, C, *S)``. Per sample a
          Toeplitz matrix: the kernel repeated along diagonals, shifted by ``stride``.
        - ``wrt="W"``: ``∂y[n,o,t]/∂W[p,c,κ] = δ_op x_pad[n, c, t·stride + κ]``, shape
          ``(N, O, *out, O, C, *k)``.
        - ``wrt="b"``: ``∂y[n,o,t]/∂b[p] = δ_op``, shape ``(N, O, *out, O)``.
        """
        self._check_wrt(wrt)
        A, out = self._checked(X)
        N, O, d = A.shape[0], self.out_channels, self.spatial_ndim  # noqa: E741
        W = self.params["W"]
        in_shape = A.shape if wrt == "X" else self.params[wrt].shape
        check_jacobian_size((N, O, *out), in_shape, f"{type(self).__name__}.jacobian")
        eye_O = np.eye(O, dtype=W.dtype)
        # einsum letters: n sample, o/p channels out, c channel in, t.. output, k.. kernel axes.
        t, k = string.ascii_uppercase[:d], string.ascii_uppercase[d:2 * d]
        if wrt == "b":
            return np.ascontiguousarray(np.broadcast_to(
                eye_O.reshape(1, O, *(1,) * d, O), (N, O, *out, O)))
        if wrt == "W":
            win = windows(pad(A, self.padding), self.kernel_size, self.stride)
            return np.einsum(f"op,nc{t}{k}->no{t}pc{k}", eye_O, win)
        # One sample's Toeplitz block T[o, t, c, s] = W[o, c, s − t·stride + pad], entry by entry
        # over the output positions and kernel offsets whose input index s lies inside X.
        block = np.zeros((O, *out, self.in_channels, *A.shape[2:]), dtype=W.dtype)
        for pos in np.ndindex(*out):
            for kappa in np.ndindex(*self.kernel_size):
                s = tuple(p * st + kk - pd for p, st, kk, pd in
                          zip(pos, self.stride, kappa, self.padding, strict=True))
                if all(0 <= si < n for si, n in zip(s, A.shape[2:], strict=True)):
                    block[ix(slice(None), *pos, slice(None), *s)] = W[ix(slice(None),
                                                                       slice(None), *kappa)]
        return np.einsum(f"nm,o{t}c{k}->no{t}mc{k}", np.eye(N, dtype=W.dtype), block)


@register_layer("conv1d")
class Conv1D(_Conv):
    """1-D convolution on ``X (N, C_in, L)``, PyTorch's ``Conv1d`` (cross-correlation).

    Parameters
    ----------
    in_channels, out_channels : int
        ``W`` has shape ``(out_channels, in_channels, kernel_size)``, ``b`` shape
        ``(out_channels,)`` (PyTorch's layout).
    kernel_size, stride : int or tuple of one int
        Window length and step (stride >= 1).
    padding : int or tuple of one int
        Zeros added at both ends of ``L``.
    init : {"he", "glorot", "zeros"}
        ``"he"``: ``W ~ N(0, 2/fan_in)`` with ``fan_in = C_in·k``; ``"glorot"``:
        ``U(±sqrt(6/(fan_in + fan_out)))``; ``b`` starts at zero.
    rng : numpy.random.Generator or int or None
        Source of the initial weights.
    dtype : {float32, float64}
        Dtype of the parameters and the computation; a float64 ``X`` into a float32 layer is
        refused (:class:`~jacnet.JacnetTypeError`) rather than silently rounded.

    Notes
    -----
    ``y[n, o, t] = b[o] + Σ_c Σ_κ W[o, c, κ] x_pad[n, c, t·stride + κ]``, ``Y (N, O, L_out)``
    with ``L_out = (L + 2·pad − k) // stride + 1``. With ``cols (N, C·k, L_out)`` from im2col,
    ``cols[n, (c, κ), t] = x_pad[n, c, t·stride + κ]``, and ``W_mat (O, C·k)``, ``W``
    reshaped, one product per sample ``n``:

    - forward ``Y_n = W_mat cols_n + b 1ᵀ``          ``(O, L_out)``: ``Y (N, O, L_out)`` as it is
    - ``dW_mat = Σ_n dY_n cols_nᵀ`` (``dA = dC Bᵀ``)   ``(O, C·k)``, reshaped to ``(O, C, k)``
    - ``db = Σ_{n,t} dY[n, :, t]``                    ``(O,)``
    - ``dcols_n = W_matᵀ dY_n`` (``dB = Aᵀ dC``)       ``(C·k, L_out)``, col2im to ``(N, C, L)``

    Examples
    --------
    >>> conv = Conv1D(1, 1, 2, dtype=np.float64, init="zeros")
    >>> conv.params["W"][...] = [[[1.0, -1.0]]]
    >>> conv.forward(np.array([[[1.0, 2.0, 4.0, 7.0]]]))
    array([[[-1., -2., -3.]]])
    """

    input_ndim = (3,)
    spatial_ndim = 1

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        layer = cls(2, 3, 3, padding=1, rng=rng, dtype=dtype)
        layer.params["b"][:] = rng.standard_normal(3)
        return layer, rng.standard_normal((2, 2, 5)).astype(dtype)


@register_layer("conv2d")
class Conv2D(_Conv):
    """2-D convolution on ``X (N, C_in, H, W)``, PyTorch's ``Conv2d`` (cross-correlation).

    Parameters as :class:`Conv1D`; ``kernel_size``, ``stride`` and ``padding`` are an int (the
    same on both axes) or a pair ``(h, w)``. ``W`` has shape ``(out, in, kh, kw)``.

    Notes
    -----
    ``y[n, o, i, j] = b[o] + Σ_c Σ_{a,b} W[o, c, a, b] x_pad[n, c, i·s_h + a, j·s_w + b]``,
    ``Y (N, O, H_out, W_out)``. The same im2col product as :class:`Conv1D` with
    ``cols (N, C·kh·kw, H_out·W_out)``: ``Y_n = W_mat cols_n + b 1ᵀ``, ``dW_mat = Σ_n dY_n
    cols_nᵀ``, ``db = Σ_{n,t} dY[n, :, t]``, ``dcols_n = W_matᵀ dY_n`` then col2im to
    ``(N, C, H, W)``.
    """

    input_ndim = (4,)
    spatial_ndim = 2

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        layer = cls(2, 2, 2, rng=rng, dtype=dtype)
        layer.params["b"][:] = rng.standard_normal(2)
        return layer, rng.standard_normal((2, 2, 4, 4)).astype(dtype)
