"""Pooling and reshaping layers: max and average pooling over windows, global average pooling
flattening and its inverse (unflattening). None has parameters; each keeps the dtype of its input.

Max pooling routes each output's gradient to the one input that won its window; average
pooling spreads it evenly over the window. Both expanded Jacobians are 0/1 (or ``1/K``)
selection matrices, block diagonal over samples and channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike

from jacnet import backend
from jacnet._spatial import (
    Ints,
    ShapeKept,
    as_ints,
    crop,
    fold,
    ix,
    output_kind,
    output_sizes,
    pad,
    plain,
    window_index,
    windows,
)
from jacnet._validation import FloatArray, check_jacobian_size, check_positive_int
from jacnet.errors import JacnetValueError, ShapeError
from jacnet.layers import Layer
from jacnet.registry import register_layer
from jacnet.structure import Band, Structure
from jacnet.threads import entries, over_batch

__all__ = ["AvgPool1D", "AvgPool2D", "Flatten", "GlobalAvgPool", "MaxPool1D", "MaxPool2D",
           "Unflatten"]


def _selection_jacobian(weights: FloatArray, index: np.ndarray[Any, Any], in_shape: Ints
                        ) -> FloatArray:
    """``J[n, c, t, m, d, s] = δ_nm δ_cd Σ_j weights[n, c, t, j] [s = index[t, j]]``: the
    expanded Jacobian of a pooling layer, from the weight of each window slot (``index``: flat
    spatial index of slot ``j`` of window ``t``, ``-1`` on padding, which no input feeds).
    Shape ``(N, C, *out, N, C, *S)``."""
    N, C = in_shape[:2]
    out = index.shape[:-1]
    T, K, S = math.prod(out), index.shape[-1], math.prod(in_shape[2:])
    J = np.zeros((N, C, T, N, C, S), dtype=weights.dtype)
    n, c, t, _ = np.indices((N, C, T, K))
    slot = np.broadcast_to(index.reshape(1, 1, T, K), (N, C, T, K))
    inside = slot >= 0
    np.add.at(J, (n[inside], c[inside], t[inside], n[inside], c[inside], slot[inside]),
              weights.reshape(N, C, T, K)[inside])
    return J.reshape((N, C, *out, *in_shape))


def _along(axis: int, j: int, k: int, n: int) -> tuple[Any, ...]:
    """Slot ``j`` of ``n`` tiling windows of length ``k`` along ``axis``: ``j, j + k, ...``."""
    return ix(*(slice(None),) * axis, slice(j, j + k * n, k))


def _axis_max(A: FloatArray, kernel: Ints, out: Ints) -> tuple[FloatArray, list[Any]]:
    """Tiling max pooling of ``A (N, C, *S)`` one spatial axis at a time, the last first:
    ``Y (N, C, *out)`` and, per axis, the winning slot of each reduced window (``None`` where
    ``k = 1``; for ``k = 2`` the mask of slot 1, see :func:`_pair_max`; else, on NumPy, the
    slot index).

    Reducing the last axis first with strict comparisons makes the first maximum in row-major
    order win, as argmax over the whole window: 1.3x faster than the running maximum over
    ``K`` strided slices with its argmax at ``(128, 16, 26, 26)``, float32, ``k = 2``, on
    NumPy; on torch (windows of 2, two threads) 1.15x faster forward and 2x faster backward,
    and 2.9x faster forward than torch's own ``max_pool2d`` (1.2 against 3.4 ms). NumPy's
    samples are split over threads (:func:`jacnet.threads.over_batch`).
    """
    xp = backend.namespace(A)
    N, C = A.shape[:2]
    Y = xp.empty((N, C, *out), dtype=A.dtype, device=A.device)
    winners: list[Any] = [None] * len(kernel)
    shape = [N, C, *(o * k for o, k in zip(out, kernel, strict=True))]
    for axis in reversed(range(len(kernel))):  # the order the axes are reduced in
        shape[2 + axis] = out[axis]
        k = kernel[axis]
        if k == 2:
            winners[axis] = xp.empty(shape, dtype=xp.bool if backend.is_torch(A) else xp.int8,
                                     device=A.device)
        elif k > 2:  # NumPy only: torch takes this path for windows of 2
            winners[axis] = np.empty(shape, dtype=np.int8 if k <= 127 else np.int64)

    def block(a: int, b: int) -> None:
        _axis_max_into(A[a:b], kernel, out, Y[a:b], [w if w is None else w[a:b] for w in winners])

    over_batch(block, N, entries(A))
    return Y, winners


def _pair_max(first: Any, second: Any, winner: Any, dest: Any) -> Any:
    """``max(first, second)`` (into ``dest`` if given), and into ``winner`` where ``second`` is
    strictly larger (a tie goes to ``first``): on NumPy an int8 0/-1 mask of bits for
    :func:`_pair_route`, on torch bools."""
    if type(first) is np.ndarray:
        np.greater(second, first, out=winner.view(np.bool_))
        np.negative(winner, out=winner)
        return np.maximum(first, second, out=dest)
    import torch

    torch.gt(second, first, out=winner)
    return torch.maximum(first, second, out=dest)


def _pair_route(d: Any, winner: Any, to_first: Any, to_second: Any) -> None:
    """``d`` to ``to_second`` where ``winner`` (of :func:`_pair_max`) is set, else to
    ``to_first``; the other slot gets zero. NumPy moves bits (``d`` an integer view): ``and``
    with the 0/-1 mask, then ``xor``. torch multiplies by the mask as bytes and subtracts (its
    bitwise and bool arithmetic cost more)."""
    if type(d) is np.ndarray:
        second = np.bitwise_and(d, winner, out=to_second)
        np.bitwise_xor(d, second, out=to_first)
        return
    import torch

    second = torch.mul(d, winner.view(torch.uint8), out=to_second)
    torch.sub(d, second, out=to_first)


def _axis_max_into(A: FloatArray, kernel: Ints, out: Ints, Y_out: FloatArray,
                   winners: list[Any]) -> None:
    """:func:`_axis_max` for one block of samples, into ``Y_out`` and ``winners``."""
    # only the inputs some window covers
    Y = A[ix(..., *(slice(0, o * k) for o, k in zip(out, kernel, strict=True)))]
    for axis in reversed(range(len(kernel))):
        k, n = kernel[axis], out[axis]
        dest = Y_out if axis == 0 else None  # the last reduction writes the output
        parts = [Y[_along(2 + axis, j, k, n)] for j in range(k)]
        if k == 1:
            Y = parts[0]
            if dest is not None:
                dest[...] = Y
        elif k == 2:
            Y = _pair_max(parts[0], parts[1], winners[axis], dest)
        else:  # NumPy only
            arg, Y = winners[axis], parts[0]
            arg[...] = 0
            for j, part in enumerate(parts[1:], start=1):
                larger = np.maximum(Y, part, out=dest if j == k - 1 else None)
                arg += (larger > Y) * (j - arg)  # in arithmetic: np.where is 10x slower
                Y = larger


def _axis_max_backward(dY: FloatArray, winners: list[Any], kernel: Ints, in_shape: Ints
                       ) -> FloatArray:
    """``dX`` of :func:`_axis_max`: ``dY`` sent back through the axes in reverse, each value
    to its window's winning slot, the others zero. On NumPy the values move as bits: the other
    slots get +0.0 exactly, and the winner ``dY + 0.0``, as the general path's sums. NumPy's
    samples are split over threads."""
    xp = backend.namespace(dY)
    covered = all(o * k == s for o, k, s in zip(dY.shape[2:], kernel, in_shape[2:], strict=True))
    dX = (xp.empty if covered else xp.zeros)(in_shape, dtype=dY.dtype, device=dY.device)

    def block(a: int, b: int) -> None:
        _axis_max_backward_into(dY[a:b], [w if w is None else w[a:b] for w in winners], kernel,
                                dX[a:b])

    over_batch(block, len(dX), entries(dX))
    return dX


def _axis_max_backward_into(dY: FloatArray, winners: list[Any], kernel: Ints, dX: FloatArray
                            ) -> None:
    """:func:`_axis_max_backward` for one block of samples, into that block's ``dX``."""
    out = dY.shape[2:]
    block = dX[ix(..., *(slice(0, o * k) for o, k in zip(out, kernel, strict=True)))]
    if type(dY) is np.ndarray:
        bits = np.dtype(f"i{dY.dtype.itemsize}")
        d, block = (dY + 0.0).view(bits), block.view(bits)  # -0.0 to 0.0, as 0.0 + dY
    else:
        d = dY
    shape = list(d.shape)
    for axis, (k, n) in enumerate(zip(kernel, out, strict=True)):
        if k == 1:
            continue
        shape[2 + axis] = n * k
        last = all(kk == 1 for kk in kernel[axis + 1:])
        e = block if last else backend.namespace(d).empty(shape, dtype=d.dtype, device=d.device)
        if k == 2:
            _pair_route(d, winners[axis], e[_along(2 + axis, 0, 2, n)],
                        e[_along(2 + axis, 1, 2, n)])
        else:  # NumPy only
            for j in range(k):
                mask = np.negative((winners[axis] == j).view(np.int8))
                np.bitwise_and(d, mask, out=e[_along(2 + axis, j, k, n)])
        d = e


class _Pool(ShapeKept):
    """Pooling over ``d`` spatial axes with a window, a stride and padding."""

    spatial_ndim = 1

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        # δ_nm δ_cd, and s inside window t: 0 <= s − t·stride + pad < k
        return Structure(ties=((0, 0), (1, 1)), bands=tuple(
            Band(2 + i, 2 + i, self.stride[i], self.padding[i], self.kernel_size[i])
            for i in range(self.spatial_ndim)))

    def _positions(self, X_shape: tuple[int, ...]) -> int:
        """``N·C·prod(out)``: the outputs."""
        out = output_sizes(type(self).__name__, X_shape[2:], self.kernel_size, self.stride,
                           self.padding)
        return X_shape[0] * X_shape[1] * math.prod(out)

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        # Distinct values a step apart: no finite-difference step can swap a window's maximum.
        shape = (2, 2) + (4,) * cls.spatial_ndim
        values = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0
        return cls(2), values.astype(dtype)

    def __init__(self, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] | None = None,
                 padding: int | tuple[int, ...] = 0) -> None:
        super().__init__()
        name, d = type(self).__name__, self.spatial_ndim
        self.kernel_size: Ints = as_ints(kernel_size, d, f"{name} kernel_size", minimum=1)
        self.stride: Ints = (self.kernel_size if stride is None
                             else as_ints(stride, d, f"{name} stride", minimum=1))
        self.padding: Ints = as_ints(padding, d, f"{name} padding", minimum=0)
        # PyTorch's rule: every window holds at least one real input.
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise JacnetValueError(f"{name} padding expects at most half the kernel size "
                                   f"{self.kernel_size}, got {self.padding}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(kernel_size={plain(self.kernel_size)}, "
                f"stride={plain(self.stride)}, padding={plain(self.padding)})")

    def config(self) -> dict[str, Any]:
        return {"kernel_size": plain(self.kernel_size), "stride": plain(self.stride),
                "padding": plain(self.padding)}

    def _checked(self, X: Any) -> tuple[FloatArray, Ints]:
        A = self._input(X)
        out = output_sizes(f"{type(self).__name__}.forward X", A.shape[2:], self.kernel_size,
                           self.stride, self.padding)
        return A, out

    def _fold(self, dwin: FloatArray, in_shape: Ints) -> FloatArray:
        """col2im of window gradients ``(N, C, *out, *k)`` back to ``dX`` of ``in_shape``."""
        d = self.spatial_ndim
        padded = tuple(s + 2 * p for s, p in zip(in_shape[2:], self.padding, strict=True))
        dXp = backend.namespace(dwin).zeros((*in_shape[:2], *padded), dtype=dwin.dtype,
                                            device=dwin.device)
        fold(lambda offset: dwin[ix(..., *offset)], dXp, 2, self.kernel_size, self.stride,
             dwin.shape[2:2 + d])
        return backend.contiguous(crop(dXp, self.padding))

    def _index(self, A: FloatArray, out: Ints) -> np.ndarray[Any, Any]:
        return window_index(A.shape[2:], self.kernel_size, self.stride, self.padding, out)


class _MaxPool(_Pool):
    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂y[n,c,t]/∂x[m,d,s] = δ_nm δ_cd [s is the largest x of window t]",
        r"$\partial y_{n,c,t}/\partial x_{m,d,s} = \delta_{nm}\,\delta_{cd}\,"
        r"[s = \mathrm{argmax}_{s' \in \mathrm{window}\,t}\, x_{n,c,s'}]$")}
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "a selection matrix: one 1 per row, at the largest entry of the output's window; the "
             "rest of the window are computed zeros, everything outside it (other windows, channels "
             "and samples) structural zeros"}

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        return (self._positions(X_shape),
                "dX gets each dY at its window's largest input, one addition per output")

    def _slots(self, out: Ints) -> list[tuple[Any, ...]] | None:
        """For tiling windows (stride = kernel, no padding): slot ``j`` of every window as one
        strided slice of the input, slots in the window's row-major order; else None."""
        if self.stride != self.kernel_size or any(self.padding):
            return None
        return [ix(..., *(slice(o, o + k * n, k) for o, k, n in zip(offset, self.kernel_size, out,
                                                                     strict=True)))
                for offset in np.ndindex(*self.kernel_size)]

    def forward(self, X: Any) -> FloatArray:
        """``y[n, c, t] = max_κ x_pad[n, c, t·stride + κ]`` (padding is ``-inf``)."""
        A, out = self._checked(X)
        slots = self._slots(out)
        # Axis by axis on NumPy where rows hold at least 8 windows; on shorter rows the K slices
        # win (measured at (128, 32, 12, 12), k = 2: 1.05x slower; at (128, 16, 26, 26) 1.2x
        # faster). On torch axis by axis for windows of 2 (see _axis_max).
        if slots is not None and len(slots) > 1 and (
                (type(A) is np.ndarray and out[-1] >= 8)
                or (backend.is_torch(A) and max(self.kernel_size) == 2)):
            Y, winners = _axis_max(A, self.kernel_size, out)
            self._keep((Y.shape, output_kind(A), winners, A.shape))
            return Y
        if slots is not None:  # tiling windows: a running maximum over K strided slices
            xp = backend.namespace(A)
            Y = xp.empty((*A.shape[:2], *out), dtype=A.dtype, device=A.device)
            arg = xp.zeros(Y.shape, dtype=xp.int8 if len(slots) <= 128 else xp.int64,
                           device=A.device)

            def block(a: int, b: int) -> None:
                best = A[a:b][slots[0]]  # rather than gathering every window into a copy
                if len(slots) == 1:
                    Y[a:b] = best
                for j, slot in enumerate(slots[1:], start=1):
                    # the last maximum is written into Y itself
                    larger = xp.maximum(best, A[a:b][slot],
                                        out=Y[a:b] if j == len(slots) - 1 else None)
                    # arg <- j where slot j beats the maximum so far (strictly: the first slot
                    # holding the maximum wins, as argmax), in arithmetic: np.where is 10x slower.
                    arg[a:b] += (larger > best) * (j - arg[a:b])
                    best = larger

            over_batch(block, len(A), entries(A))
            self._keep((arg.shape, output_kind(A), arg, A.shape))
            return Y
        win = windows(pad(A, self.padding, -math.inf), self.kernel_size, self.stride)
        flat = win.reshape(*win.shape[:2 + self.spatial_ndim], -1)  # (N, C, *out, K), a copy
        xp = backend.namespace(flat)
        arg = xp.argmax(flat, axis=-1)
        self._keep((arg.shape, output_kind(A), arg, A.shape))
        return xp.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]

    def backward(self, dY: Any) -> FloatArray:
        """``dX`` gets ``dY[n, c, t]`` at the input that won window ``t``, summed over windows."""
        dY = self._upstream_for(dY)
        arg, in_shape = self._saved[2:]
        if isinstance(arg, list):  # the tiling path's winners, axis by axis
            return _axis_max_backward(dY, arg, self.kernel_size, in_shape)
        slots = self._slots(arg.shape[2:])
        if slots is not None:  # tiling windows: every input is in at most one window
            covered = all(o * k == s for o, k, s in zip(arg.shape[2:], self.kernel_size,
                                                         in_shape[2:], strict=True))
            xp = backend.namespace(dY)
            dX = (xp.empty if covered else xp.zeros)(in_shape, dtype=dY.dtype, device=dY.device)

            def block(a: int, b: int) -> None:
                for j, slot in enumerate(slots):
                    xp.multiply(dY[a:b], arg[a:b] == j, out=dX[a:b][slot])
                dX[a:b] += 0.0  # -0.0 (a negative dY times 0) to 0.0: the general path's bits

            over_batch(block, len(dX), entries(dX))
            return dX
        dwin = backend.put_along_last_axis((*dY.shape, math.prod(self.kernel_size)), arg, dY)
        return self._fold(dwin.reshape(*dY.shape, *self.kernel_size), in_shape)

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """``∂y[n,c,t]/∂x[m,d,s] = δ_nm δ_cd [s is the largest input of window t]`` (the first
        on a tie), shape ``(N, C, *out, N, C, *S)``: one 1 per row."""
        self._check_wrt(wrt)
        A, out = self._checked(X)
        A = backend.to_numpy(A)  # built in NumPy, whatever the backend
        check_jacobian_size((*A.shape[:2], *out), A.shape, f"{type(self).__name__}.jacobian")
        index = self._index(A, out)
        flat = A.reshape(*A.shape[:2], -1)
        values = np.where(index >= 0, flat[:, :, np.maximum(index, 0)], -np.inf)
        winner = np.argmax(values, axis=-1)[..., None]
        weights = (np.arange(index.shape[-1]) == winner).astype(A.dtype)
        return _selection_jacobian(weights, index, A.shape)


class _AvgPool(_Pool):
    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂y[n,c,t]/∂x[m,d,s] = δ_nm δ_cd [s in window t] / k",
        r"$\partial y_{n,c,t}/\partial x_{m,d,s} = \delta_{nm}\,\delta_{cd}\,"
        r"[s \in \mathrm{window}\,t]\,/\,k$")}
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "a band per channel: each row holds 1/k over its output's window (δ_nm δ_cd)"}

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        K = math.prod(self.kernel_size)
        return (self._positions(X_shape) * K,
                "dX[s] = Σ_t dY[t] / k over the windows holding s, k multiply-adds per output")

    def forward(self, X: Any) -> FloatArray:
        """``y[n, c, t] = (1/K) Σ_κ x_pad[n, c, t·stride + κ]``, ``K = prod(kernel)``; the zero
        padding counts in ``K`` (PyTorch's ``count_include_pad=True``)."""
        A, _ = self._checked(X)
        d = self.spatial_ndim
        win = windows(pad(A, self.padding), self.kernel_size, self.stride)
        Y = backend.namespace(A).mean(win, axis=tuple(range(2 + d, 2 + 2 * d)))
        self._keep((Y.shape, output_kind(Y), A.shape))
        return Y

    def backward(self, dY: Any) -> FloatArray:
        """``dX[n, c, s] = Σ_{t: s in window t} dY[n, c, t] / K``."""
        dY = self._upstream_for(dY)
        share = (dY / math.prod(self.kernel_size)).reshape(*dY.shape, *(1,) * self.spatial_ndim)
        spread = backend.namespace(dY).broadcast_to(share, (*dY.shape, *self.kernel_size))
        return self._fold(spread, self._saved[2])

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """``∂y[n,c,t]/∂x[m,d,s] = δ_nm δ_cd / K`` for ``s`` in window ``t``, else 0; shape
        ``(N, C, *out, N, C, *S)``."""
        self._check_wrt(wrt)
        A, out = self._checked(X)
        A = backend.to_numpy(A)  # built in NumPy, whatever the backend
        check_jacobian_size((*A.shape[:2], *out), A.shape, f"{type(self).__name__}.jacobian")
        index = self._index(A, out)
        weights = np.full((*A.shape[:2], *index.shape), 1.0 / index.shape[-1], dtype=A.dtype)
        return _selection_jacobian(weights, index, A.shape)


@register_layer("maxpool1d")
class MaxPool1D(_MaxPool):
    """Max over windows of ``X (N, C, L)``: ``y[n, c, t] = max_κ x_pad[n, c, t·stride + κ]``.

    Parameters
    ----------
    kernel_size : int or tuple of one int
        Window length.
    stride : int or tuple or None
        Step between windows; ``None`` (default) means ``kernel_size`` (non-overlapping).
    padding : int or tuple
        ``-inf`` entries at both ends (at most half the kernel, as in PyTorch).

    Notes
    -----
    ``Y (N, C, L_out)``, ``L_out = (L + 2·pad − k) // stride + 1``. Backward sends
    ``dY[n, c, t]`` to the input that won window ``t`` (the first one on a tie) and sums over
    overlapping windows.
    """

    input_ndim = (3,)
    spatial_ndim = 1


@register_layer("maxpool2d")
class MaxPool2D(_MaxPool):
    """Max over ``(kh, kw)`` windows of ``X (N, C, H, W)``; options as :class:`MaxPool1D`,
    each an int or a pair. ``Y (N, C, H_out, W_out)``."""

    input_ndim = (4,)
    spatial_ndim = 2


@register_layer("avgpool1d")
class AvgPool1D(_AvgPool):
    """Mean over windows of ``X (N, C, L)``: ``y[n, c, t] = (1/k) Σ_κ x_pad[n, c, t·stride + κ]``.

    Parameters as :class:`MaxPool1D`; padding is zeros and counts in the mean (PyTorch's
    default ``count_include_pad=True``). Backward: ``dX[n, c, s] = Σ_t dY[n, c, t] / k`` over
    the windows ``t`` that contain ``s``.
    """

    input_ndim = (3,)
    spatial_ndim = 1


@register_layer("avgpool2d")
class AvgPool2D(_AvgPool):
    """Mean over ``(kh, kw)`` windows of ``X (N, C, H, W)``; options as :class:`AvgPool1D`,
    each an int or a pair; ``K = kh·kw``."""

    input_ndim = (4,)
    spatial_ndim = 2


@register_layer("globalavgpool")
class GlobalAvgPool(ShapeKept):
    """Mean over every spatial axis: ``X (N, C, *S) -> Y (N, C)``, ``y[n, c] = mean_s x[n, c, s]``.

    Backward spreads ``dY[n, c] / prod(S)`` over the spatial positions; the Jacobian is
    ``∂y[n,c]/∂x[m,d,s] = δ_nm δ_cd / prod(S)``.
    """

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂y[n,c]/∂x[m,d,s] = δ_nm δ_cd / S",
        r"$\partial y_{n,c}/\partial x_{m,d,s} = \delta_{nm}\,\delta_{cd}\,/\,S$")}
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "each output averages its own channel: a row of 1/S per (n, c), zero elsewhere"}

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        return Structure(ties=((0, 0), (1, 1)))  # δ_nm δ_cd

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        return math.prod(X_shape), "dX = dY / S spread over the positions, one multiply per entry"

    input_ndim = (3, 4, 5)

    def forward(self, X: Any) -> FloatArray:
        A = self._input(X)
        Y = backend.namespace(A).mean(A, axis=tuple(range(2, A.ndim)))
        self._keep((Y.shape, output_kind(Y), A.shape))
        return Y

    def backward(self, dY: Any) -> FloatArray:
        dY = self._upstream_for(dY)
        in_shape = self._saved[2]
        share = dY / math.prod(in_shape[2:])
        spread = share.reshape(*share.shape, *(1,) * (len(in_shape) - 2))
        return backend.contiguous(backend.namespace(dY).broadcast_to(spread, in_shape))

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        self._check_wrt(wrt)
        A = backend.to_numpy(self._input(X))  # built in NumPy, whatever the backend
        N, C = A.shape[:2]
        check_jacobian_size((N, C), A.shape, "GlobalAvgPool.jacobian")
        S = math.prod(A.shape[2:])
        block = np.einsum("nm,cd->ncmd", np.eye(N, dtype=A.dtype), np.eye(C, dtype=A.dtype)) / S
        return np.ascontiguousarray(np.broadcast_to(block[..., None], (N, C, N, C, S))
                                    ).reshape((N, C, *A.shape))


class _Reshape(ShapeKept):
    """A layer that only reshapes each sample: its Jacobian is the identity, reshaped."""

    def _sample_shape(self, A: FloatArray) -> tuple[int, ...]:
        """The shape of one output sample for the checked input ``A``."""
        raise NotImplementedError

    def _checked(self, X: Any) -> FloatArray:
        return self._input(X)

    def forward(self, X: Any) -> FloatArray:
        A = self._checked(X)
        # A copy: the caller may hold A, and nobody else may write into what a layer returns.
        Y = backend.copy(A.reshape(A.shape[0], *self._sample_shape(A)))
        self._keep((Y.shape, output_kind(Y), A.shape))
        return Y

    def backward(self, dY: Any) -> FloatArray:
        return backend.copy(self._upstream_for(dY).reshape(self._saved[2]))

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """``∂y[n, i]/∂x[m, j] = δ_nm [flat(i) = flat(j)]``, shape ``Y.shape + X.shape``."""
        self._check_wrt(wrt)
        A = backend.to_numpy(self._checked(X))  # built in NumPy, whatever the backend
        out_shape = (A.shape[0], *self._sample_shape(A))
        check_jacobian_size(out_shape, A.shape, f"{type(self).__name__}.jacobian")
        return np.eye(A.size, dtype=A.dtype).reshape(out_shape + A.shape)

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        return Structure(diagonal=True)  # the identity, reshaped

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        return math.prod(X_shape), "dX = dY reshaped, no arithmetic, one copy per entry"


@register_layer("flatten")
class Flatten(_Reshape):
    """``X (N, *rest) -> Y (N, prod(rest))`` in C order (PyTorch's ``Flatten()``).

    Backward reshapes ``dY`` back to ``X``'s shape; the Jacobian is the identity,
    ``∂y[n, j]/∂x[m, i...] = δ_nm [j = flat(i...)]``.
    """

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂y[n,j]/∂x[m,i] = δ_nm [j = flat(i)]",
        r"$\partial y_{n,j}/\partial x_{m,i} = \delta_{nm}\,[j = \mathrm{flat}(i)]$")}
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "the identity: flattening moves values, it computes none"}


    input_ndim = (2, 3, 4, 5)

    def _sample_shape(self, A: FloatArray) -> tuple[int, ...]:
        return (math.prod(A.shape[1:]),)


@register_layer("unflatten")
class Unflatten(_Reshape):
    """``X (N, prod(shape)) -> Y (N, *shape)`` in C order, the inverse of :class:`Flatten`
    (PyTorch's ``Unflatten(1, shape)``).

    The first layer of a convolutional network that takes flat rows: a model file then reads
    the same ``(N, features)`` tables as an MLP's (``jacnet predict``, ``jacnet evaluate``).

    Parameters
    ----------
    shape : int or sequence of int
        The shape of one sample, e.g. ``(1, 40)`` (channels, length) or ``(1, 8, 8)``.

    Notes
    -----
    Backward reshapes ``dY`` to ``(N, prod(shape))``; the Jacobian is the identity,
    ``∂y[n, i...]/∂x[m, j] = δ_nm [j = flat(i...)]``, shape ``(N, *shape, N, prod(shape))``.
    """

    input_ndim = (2,)
    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂y[n,i]/∂x[m,j] = δ_nm [j = flat(i)]",
        r"$\partial y_{n,i}/\partial x_{m,j} = \delta_{nm}\,[j = \mathrm{flat}(i)]$")}
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "the identity: unflattening moves values, it computes none"}


    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        return cls((2, 3)), rng.standard_normal((2, 6)).astype(dtype)

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> None:
        shape = config.get("shape")
        if not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 4:
            raise JacnetValueError(f"Unflatten shape expects 1 to 4 integers, got {shape!r}")
        for size in shape:
            check_positive_int(size, "Unflatten shape")

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__()
        sizes = [shape] if isinstance(shape, int) else list(shape)
        self.check_config({"shape": sizes})
        self.shape: tuple[int, ...] = tuple(int(s) for s in sizes)

    @property
    def in_features(self) -> int:
        """Features per input row, ``prod(shape)``."""
        return math.prod(self.shape)

    def __repr__(self) -> str:
        return f"Unflatten({self.shape})"

    def config(self) -> dict[str, Any]:
        return {"shape": list(self.shape)}

    def _checked(self, X: Any) -> FloatArray:
        A = super()._checked(X)
        if A.shape[1] != self.in_features:
            raise ShapeError(f"Unflatten({self.shape}).forward X expects shape "
                             f"(N, {self.in_features}), got {tuple(A.shape)}")
        return A

    def _sample_shape(self, A: FloatArray) -> tuple[int, ...]:
        return self.shape
