"""Convolution as the lecture's matrix product: im2col, one GEMM forward, two GEMMs backward.

A convolution (PyTorch's cross-correlation) of ``X (N, C, *S)`` with ``W (O, C, *k)``::

    y[n, o, t] = b[o] + Σ_c Σ_κ W[o, c, κ] · x_pad[n, c, t·stride + κ]

Unfolding every window into a column (im2col) gives ``cols (C·K, N·T)`` (``T = prod(out)``
output positions, ``K = prod(k)`` kernel offsets; ``cols[(c, κ), (n, t)] = x_pad[n, c,
t·stride + κ]``), and the weight is the matrix ``W_mat (O, C·K)``, ``W`` itself reshaped, so
the layer is the affine map ``Y_mat = W_mat cols + b 1ᵀ`` ``(O, N·T)`` and the lecture's closed
forms for ``C = A B`` apply unchanged: ``dA = dC Bᵀ``, ``dB = Aᵀ dC``. The input gradient
comes back from the columns by col2im (every window's gradient summed onto the inputs it read).
The bias rides in the product, ``Y_mat = [W_mat b] [cols; 1ᵀ]``, as the weight of a row of
ones, so ``db`` comes out of the product for ``dW``.
``Y_mat`` holds channels first, ``(O, N, T)``; the layer's ``(N, O, *out)`` is its transpose.
Where a channel's product has few multiply-adds per output (a first layer on one channel),
that transpose costs more than the product, and forward and ``dW`` run instead one product per
sample, ``Y_n = W_mat cols_n + b 1ᵀ`` ``(O, T)``, on the same ``cols``.

On the torch backend's CPU a layer that does not run per sample hands its three products to
torch's convolution kernels (``conv{1,2}d`` and its backward, oneDNN), the same sums in the
kernel's order; per-sample layers, and every layer on CUDA, run the products above on tensors.

The expanded Jacobian in ``X`` is, per sample, a (block) Toeplitz matrix: the kernel repeated
along diagonals, ``∂y[n,o,t]/∂x[m,c,s] = δ_nm W[o, c, s − t·stride + pad]``.
"""

from __future__ import annotations

import math
import string
from typing import Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike

from jacnet import backend, threads
from jacnet._spatial import (
    Ints,
    ShapeKept,
    as_ints,
    checked_input,
    crop,
    fold,
    ix,
    output_kind,
    output_sizes,
    pad,
    plain,
    unfold,
    windows,
)
from jacnet._validation import FloatArray, as_rng, check_jacobian_size, check_positive_int
from jacnet.errors import JacnetValueError, ShapeError
from jacnet.layers import INITS, Layer, _float_dtype, is_recording, private
from jacnet.registry import register_layer
from jacnet.structure import Band, Structure
from jacnet.threads import entries, over_batch

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
             "window of x_pad that the filter saw (a column of im2col's cols)",
        "b": "δ_op: stacked identities over samples and positions; contracting them with dY sums "
             "over both, db = sum(dY_mat, axis=1)",
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
            return N * T * O * K * C, (f"dcols = W_matᵀ dY_mat (dB = Aᵀ dC) then col2im, "
                                       f"N·{where}·O·C·{k} multiply-adds")
        if wrt == "W":
            return N * T * O * K * C, (f"dW_mat = dY_mat colsᵀ (dA = dC Bᵀ), "
                                       f"N·O·{where}·C·{k} multiply-adds")
        return N * O * T, f"db = sum(dY_mat, axis=1), N·O·{where} additions"

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
                             f"shape (N, {self.in_channels}, {axes}), got {tuple(A.shape)}")
        out = output_sizes(f"{name}.forward X", A.shape[2:], self.kernel_size, self.stride,
                           self.padding)
        return A, out

    def clear(self) -> None:
        super().clear()
        self._work = {}

    def _scratch(self, name: str, shape: tuple[int, ...], A: FloatArray) -> FloatArray:
        """A reusable array of ``shape`` with ``A``'s dtype, backend and device (contents
        undefined). Only for training steps: under inference_mode the layer may be a shallow
        copy sharing ``_work``."""
        buf = self._work.get(name)
        if (buf is None or buf.shape != shape or buf.dtype != A.dtype or type(buf) is not type(A)
                or buf.device != A.device):
            buf = self._work[name] = backend.namespace(A).empty(shape, dtype=A.dtype,
                                                                device=A.device)
        return buf

    def _weight_matrix(self) -> FloatArray:
        """``W_mat (O, C·K)``: ``W`` reshaped, ``W_mat[o, (c, κ)] = W[o, c, κ]`` (a view)."""
        return self.params["W"].reshape(self.out_channels, -1)

    def _per_sample(self) -> bool:
        """Whether forward and ``dW`` run one product per sample on ``cols_n (C·K, T)``, which
        writes ``Y (N, O, T)`` as it is and reads ``dY`` as it comes, rather than one product
        over all samples and a transpose of ``Y`` and of ``dY``: with few multiply-adds per
        output entry (``C·K < 32``, a first layer on one channel) the transposes cost more than
        the product. Measured at ``N = 128``, float32, two threads: at ``C·K = 9`` (one channel,
        3×3) per sample is 2-3x faster, at ``C·K = 144`` (16 channels) 1.5x slower."""
        return self.in_channels * math.prod(self.kernel_size) < 32

    def forward(self, X: Any) -> FloatArray:
        """``Y_mat = [W_mat b] [cols; 1ᵀ]``: ``(O, C·K+1) @ (C·K+1, N·T) -> (O, N·T)``,
        returned as ``(N, O, *out)``; per sample (see :meth:`_per_sample`) ``Y_n = [W_mat b]
        [cols_n; 1ᵀ]``, ``-> (N, O, T)``. The bias rides in the product as the weight of a row
        of ones (no pass of its own over ``Y``, and ``db`` comes out of ``dW``'s product).
        Keeps ``[cols; 1ᵀ]`` (an array of its own)."""
        A, out = self._checked(X)
        if self._torch_kernel(A):
            return self._forward_torch(A, X, out)
        xp = backend.namespace(A)
        N, O, T = A.shape[0], self.out_channels, math.prod(out)  # noqa: E741
        shape = (self.in_channels * math.prod(self.kernel_size) + 1, N * T)
        cols = (self._scratch("cols", shape, A) if is_recording()
                else xp.empty(shape, dtype=A.dtype, device=A.device))
        unfold(pad(A, self.padding), self.kernel_size, self.stride, out, cols[:-1])
        cols[-1] = 1
        self._keep(((N, O, *out), output_kind(A), cols, A.shape))
        W_b = xp.concat([self._weight_matrix(), self.params["b"][:, None]], axis=1)
        if self._per_sample():  # one product per sample, the samples split over threads
            cols_n = xp.permute_dims(cols.reshape(-1, N, T), (1, 0, 2))
            Y = xp.empty((N, O, T), dtype=A.dtype, device=A.device)
            over_batch(lambda a, b: backend.matmul_into(W_b, cols_n[a:b], Y[a:b]), N,
                       entries(cols))
            return Y.reshape(N, O, *out)
        Y_t = xp.permute_dims((W_b @ cols).reshape(O, N, T), (1, 0, 2))
        return threads.contiguous(Y_t).reshape(N, O, *out)

    @staticmethod
    def _as_matrix(dY: FloatArray) -> FloatArray:
        """``dY (N, O, *out)`` as the matrix ``dY_mat (O, N·T)``, columns ``(n, t)`` (a copy
        unless ``N`` or ``O`` is 1; only read)."""
        N, O = dY.shape[:2]  # noqa: E741
        swapped = backend.namespace(dY).permute_dims(dY.reshape(N, O, -1), (1, 0, 2))
        return threads.contiguous(swapped, axis=1).reshape(O, -1)

    def backward(self, dY: Any) -> FloatArray:
        """``dcols = W_matᵀ dY_mat``: ``(C·K, O) @ (O, N·T) -> (C·K, N·T)`` (the lecture's
        ``dB = Aᵀ dC``), then col2im sums every window's gradient onto the inputs it read:
        ``dX (N, C, *S)``. Fills ``grads`` through :meth:`backward_params` (so an override of
        it runs here too)."""
        self.backward_params(dY)
        upstream = self._upstream_for(dY)
        if self._kept_input():
            return self._torch_gradients(upstream, (True, False, False))[0]
        if all(s == 1 for s in self.stride):
            dXp = self._padded_input_gradient_unit_stride(upstream)
        else:
            dXp = self._padded_input_gradient(upstream)
        swapped = backend.namespace(dXp).permute_dims(crop(dXp, self.padding),
                                                      (1, 0, *range(2, dXp.ndim)))
        return threads.contiguous(swapped)

    def _padded_shape(self) -> tuple[int, ...]:
        """``(C, N, *padded)``: the shape of ``x_pad``, channels first, in the last forward."""
        in_shape = self._saved[3]
        return (in_shape[1], in_shape[0], *(s + 2 * p for s, p in zip(in_shape[2:], self.padding,
                                                                        strict=True)))

    def _padded_input_gradient(self, dY: FloatArray) -> FloatArray:
        """``dX_pad (C, N, *padded)`` (channels first) from ``dY (N, O, *out)``: ``dcols =
        W_matᵀ dY_mat``, then col2im, one strided add of slab ``κ`` ``(C, N, *out)`` per
        kernel offset."""
        C, N, *padded = self._padded_shape()
        out = dY.shape[2:]
        slabs = (self._weight_matrix().T @ self._as_matrix(dY)).reshape(C, *self.kernel_size, N, *out)
        dXp = backend.namespace(dY).zeros((C, N, *padded), dtype=slabs.dtype, device=dY.device)
        return fold(lambda offset: slabs[ix(slice(None), *offset)], dXp, 2, self.kernel_size,
                    self.stride, out)

    def _padded_input_gradient_unit_stride(self, dY: FloatArray) -> FloatArray:
        """:meth:`_padded_input_gradient` for unit strides, with contiguous adds.

        With stride 1 on every axis, kernel offset ``κ`` moves every window by the same
        distance in the flattened ``x_pad``, ``off(κ) = Σ_i κ_i · prod(padded[i+1:])``. So
        ``dcols`` is computed over the whole padded grid of every sample (``dY`` set to 0 at
        the extra positions, which no window has): there slab ``κ`` ``(C, N·P)`` lands on
        ``dX_pad`` ``(C, N·P)`` from ``off(κ)`` on, one contiguous add per offset over all
        samples at once. A window's entries stay inside its sample (``t + κ < padded``); what
        crosses into the next sample, or past the end (dropped), comes from the extra
        positions, zeros. The same sums as the strided adds, plus zeros: 3x faster at
        ``(128, 16, 13, 13)``, where the strided adds move runs of 11 numbers (and 1.2x faster
        than adds per sample over a grid of ``out_0`` rows).
        """
        C, N, *padded = self._padded_shape()
        out, O = dY.shape[2:], self.out_channels  # noqa: E741
        xp = backend.namespace(dY)
        wide = xp.empty((O, N, *padded), dtype=dY.dtype, device=dY.device)  # dY_mat, widened
        dY_t = xp.permute_dims(dY, (1, 0, *range(2, dY.ndim)))
        inside = tuple(slice(0, o) for o in out)

        def widen(a: int, b: int) -> None:
            wide[:, a:b] = 0
            wide[ix(slice(None), slice(a, b), *inside)] = dY_t[:, a:b]

        over_batch(widen, N, entries(wide))
        dcols = self._weight_matrix().T @ wide.reshape(O, -1)  # (C·K, N·P)
        P = math.prod(padded)
        slabs = dcols.reshape(C, math.prod(self.kernel_size), N * P)
        starts = [sum(o * math.prod(padded[i + 1:]) for i, o in enumerate(offset))
                  for offset in np.ndindex(*self.kernel_size)]
        dXp = xp.empty((C, N * P), dtype=dcols.dtype, device=dcols.device)

        def block(a: int, b: int) -> None:  # the columns of samples a:b, the same sums
            low, high = a * P, b * P
            dXp[:, low:high] = slabs[:, 0, low:high]  # offset 0 covers all: no zero fill
            for j, start in enumerate(starts[1:], start=1):
                first = max(low, start)
                if first < high:
                    dXp[:, first:high] += slabs[:, j, first - start:high - start]

        over_batch(block, N, entries(dcols))
        return dXp.reshape(C, N, *padded)

    def backward_params(self, dY: Any) -> None:
        """``[dW_mat db] = dY_mat [cols; 1ᵀ]ᵀ`` ``(O, C·K+1)`` (the lecture's ``dA = dC Bᵀ``;
        the last column is ``db = Σ_{n,t} dY[n, :, t]``), or per sample ``Σ_n dY_n [cols_n;
        1ᵀ]ᵀ``; ``dW_mat`` reshaped to ``W``'s ``(O, C, *k)``. No ``dX``.

        Computed as its transpose, ``[cols; 1ᵀ] dY_matᵀ`` ``(C·K+1, O)``: the same sums, in
        the operand order that OpenBLAS runs 1.4x faster at ``(145, 15488) @ (15488, 32)``."""
        upstream = self._upstream_for(dY)
        cols = self._saved[2]
        if self._kept_input():  # torch's kernels: it kept the input, not cols
            _, self.grads["W"][...], self.grads["b"][...] = self._torch_gradients(
                upstream, (False, True, True))
            return
        xp = backend.namespace(cols)
        if self._per_sample():  # one product per sample, the samples split over threads
            dY_n = upstream.reshape(*upstream.shape[:2], -1)  # (N, O, T)
            N = dY_n.shape[0]
            cols_n = xp.permute_dims(cols.reshape(cols.shape[0], N, -1), (1, 0, 2))
            dY_t = xp.permute_dims(dY_n, (0, 2, 1))
            products = xp.empty((N, cols.shape[0], dY_n.shape[1]), dtype=cols.dtype,
                                device=cols.device)
            over_batch(lambda a, b: backend.matmul_into(cols_n[a:b], dY_t[a:b], products[a:b]),
                       N, entries(cols))
            dW_b_t = xp.sum(products, axis=0)
        else:
            dW_b_t = cols @ self._as_matrix(upstream).T
        # Written into the existing buffers (fit's optimizer holds them): no accumulation.
        self.grads["W"][...] = dW_b_t[:-1].T.reshape(self.grads["W"].shape)
        self.grads["b"][...] = dW_b_t[-1]

    # On the torch backend: the same products as torch's convolution kernels ----------------

    def _torch_kernel(self, A: Any) -> bool:
        """Whether the layer runs torch's own convolution kernels on ``A`` (a tensor) rather
        than im2col and products: where it does not run per sample (:meth:`_per_sample`).
        Measured on the CPU (oneDNN, two threads), a training step of ``bench.conv``'s network
        at batch 128: 8.7-9.7 ms so, against 11.8-12.7 ms with im2col in both convolutions
        and 11.7 ms with torch's kernels in both (on one input channel they are slower).

        On the CPU only (oneDNN): on CUDA, cuDNN may round float32 products to TF32 (PyTorch's
        default on Ampere and newer GPUs, about 1e-3 relative) and its backward need not repeat
        bit for bit, so there the products above run (and no GPU has measured either)."""
        return (backend.is_torch(A) and A.device.type == "cpu" and not self._per_sample())

    def _kept_input(self) -> bool:
        """Whether the last forward ran torch's kernels and kept its input ``(N, C, *S)``
        rather than ``[cols; 1ᵀ]`` (a matrix)."""
        return len(self._saved[2].shape) > 2

    def _forward_torch(self, A: Any, X: Any, out: Ints) -> Any:
        """``Y`` by ``torch.nn.functional.conv{1,2}d``: the sums of ``[W_mat b] [cols; 1ᵀ]``
        computed by torch's convolution kernel (oneDNN). Keeps the input (a copy unless
        jacnet's own) for backward, where the kernel's adjoints give ``dX``, ``dW`` and
        ``db``; inference keeps and copies nothing."""
        from torch.nn import functional

        conv: Any = functional.conv1d if self.spatial_ndim == 1 else functional.conv2d
        if is_recording():  # (inference keeps nothing, and copies nothing)
            self._saved = ((A.shape[0], self.out_channels, *out), output_kind(A), private(A, X),
                           A.shape)
        return conv(A, self.params["W"], self.params["b"], stride=self.stride,
                    padding=self.padding)

    def _torch_gradients(self, dY: Any, wanted: tuple[bool, bool, bool]) -> tuple[Any, ...]:
        """``(dX, dW, db)`` (``None`` where not ``wanted``) by torch's convolution backward
        kernel: ``dX`` is col2im of ``W_matᵀ dY_mat``, ``[dW_mat db] = dY_mat [cols; 1ᵀ]ᵀ``,
        the sums of the NumPy path in torch's order."""
        import torch

        d = self.spatial_ndim
        return tuple(torch.ops.aten.convolution_backward(
            dY, self._saved[2], self.params["W"], [self.out_channels], list(self.stride),
            list(self.padding), [1] * d, False, [0] * d, 1, list(wanted)))

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
    with ``L_out = (L + 2·pad − k) // stride + 1``. With ``cols (C·k, N·L_out)`` from im2col,
    ``cols[(c, κ), (n, t)] = x_pad[n, c, t·stride + κ]``, ``W_mat (O, C·k)`` (``W`` reshaped)
    and ``dY_mat (O, N·L_out)`` (``dY`` channels first):

    - forward ``Y_mat = W_mat cols + b 1ᵀ``        ``(O, N·L_out)``, transposed to ``(N, O, L_out)``
    - ``dW_mat = dY_mat colsᵀ`` (``dA = dC Bᵀ``)     ``(O, C·k)``, reshaped to ``(O, C, k)``
    - ``db = Σ_{n,t} dY[n, :, t]``                  ``(O,)``
    - ``dcols = W_matᵀ dY_mat`` (``dB = Aᵀ dC``)     ``(C·k, N·L_out)``, col2im to ``(N, C, L)``

    With ``C·k < 32`` forward and ``dW_mat`` run per sample on ``cols_n (C·k, L_out)``:
    ``Y_n = W_mat cols_n + b 1ᵀ``, ``dW_mat = Σ_n dY_n cols_nᵀ`` (no transposes).

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
    ``cols (C·kh·kw, N·H_out·W_out)``: ``Y_mat = W_mat cols + b 1ᵀ``, ``dW_mat = dY_mat
    colsᵀ``, ``db = Σ_{n,t} dY[n, :, t]``, ``dcols = W_matᵀ dY_mat`` then col2im to
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
