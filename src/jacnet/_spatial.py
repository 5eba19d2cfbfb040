"""Sliding windows over the spatial axes of ``(N, C, *spatial)`` arrays, shared by convolution
and pooling: option checks, output sizes, padding, and the two moves of im2col.

``unfold`` gathers every window an output position sees into a column of a matrix; ``fold``
(col2im) is its adjoint and sums window-shaped gradients back onto the padded input, one
vectorised strided add per kernel offset (no Python loop over samples or positions).
Measured on a ``(128, 32, 40)`` float32 input with a length-5 kernel, one thread: ``fold`` by
kernel offsets, 0.9 ms, against 6.6 ms for ``np.add.at`` with index arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from jacnet import backend
from jacnet._validation import FloatArray, check_positive_int, describe
from jacnet.errors import JacnetTypeError, JacnetValueError, ShapeError
from jacnet.layers import Layer, _Builtin, is_handed_over
from jacnet.threads import entries, over_batch

Ints = tuple[int, ...]


def ix(*parts: Any) -> tuple[Any, ...]:
    """An index tuple, e.g. ``A[ix(..., *offsets)]`` (a star inside ``[]`` needs Python 3.11)."""
    return parts


def as_ints(value: Any, n: int, name: str, *, minimum: int) -> Ints:
    """``value`` (an int, or a tuple/list of ``n`` ints) as a tuple of ``n`` ints >= ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise JacnetValueError(f"{name} expects an integer or {n} integers, got {describe(value)}")
        return tuple(check_positive_int(v, name, minimum=minimum) for v in value)
    return (check_positive_int(value, name, minimum=minimum),) * n


def plain(values: Ints) -> int | list[int]:
    """A tuple of options as ``config()`` writes it: one int when all agree, else a list."""
    return values[0] if len(set(values)) == 1 else list(values)


def checked_input(layer: Layer, X: Any, dtype: np.dtype[Any]) -> FloatArray:
    """``X`` checked by ``layer._input`` (rank, numbers, finite) and cast to ``dtype``; a
    float64 array into a float32 layer is refused: that cast would silently drop precision."""
    if is_handed_over(X) and X.dtype == dtype:
        return X
    A = layer._input(X)
    if (dtype == np.float32 and (isinstance(X, np.ndarray) or backend.is_torch(X))
            and backend.numpy_dtype(X) == np.float64):
        cast = ".to(torch.float32)" if backend.is_torch(X) else ".astype(np.float32)"
        raise JacnetTypeError(
            f"{type(layer).__name__}.forward X expects float32 values (the layer's dtype; cast "
            f"X with {cast} or build the layer with dtype=np.float64), got float64")
    return backend.astype(A, dtype)


def output_sizes(where: str, spatial: Ints, kernel: Ints, stride: Ints, padding: Ints) -> Ints:
    """``floor((s + 2p - k) / stride) + 1`` per axis; a window larger than the padded input is
    refused with a :class:`ShapeError` naming ``where``."""
    padded = tuple(s + 2 * p for s, p in zip(spatial, padding, strict=True))
    if any(k > s for k, s in zip(kernel, padded, strict=True)):
        raise ShapeError(
            f"{where} expects spatial size (with padding {padding}) of at least the kernel "
            f"{kernel}, got spatial size {spatial}, padded {padded}")
    return tuple((s - k) // st + 1 for s, k, st in zip(padded, kernel, stride, strict=True))


def pad(X: np.ndarray[Any, Any], padding: Ints, value: float = 0.0) -> np.ndarray[Any, Any]:
    """``X`` with ``padding[i]`` entries of ``value`` on both sides of spatial axis ``i``."""
    if not any(padding):
        return X
    shape = X.shape[:2] + tuple(s + 2 * p for s, p in zip(X.shape[2:], padding, strict=True))
    out = backend.namespace(X).full(shape, value, dtype=X.dtype, device=X.device)
    out[ix(..., *(slice(p, p + s) for p, s in zip(padding, X.shape[2:], strict=True)))] = X
    return out


def crop(Xp: FloatArray, padding: Ints) -> FloatArray:
    """The inverse of :func:`pad`: the interior of ``Xp``."""
    if not any(padding):
        return Xp
    return Xp[ix(..., *(slice(p, n - p) for p, n in zip(padding, Xp.shape[2:], strict=True)))]


def _offset_slices(offset: Ints, stride: Ints, out: Ints) -> tuple[slice, ...]:
    """Where kernel ``offset`` lands for every output position: ``offset + stride * t``."""
    return tuple(slice(o, o + s * (n - 1) + 1, s) for o, s, n in zip(offset, stride, out, strict=True))


def windows(Xp: np.ndarray[Any, Any], kernel: Ints, stride: Ints) -> np.ndarray[Any, Any]:
    """A read-only view ``(N, C, *out, *kernel)``: ``W[n, c, t, k] = Xp[n, c, t·stride + k]``."""
    if backend.is_torch(Xp):  # the array API has no sliding windows; torch's unfold is the view
        view: Any = Xp
        for axis, (k, s) in enumerate(zip(kernel, stride, strict=True), start=2):
            view = view.unfold(axis, k, s)
        return view
    d = len(kernel)
    view = np.lib.stride_tricks.sliding_window_view(Xp, kernel, axis=tuple(range(2, 2 + d)))
    return view[ix(slice(None), slice(None), *(slice(None, None, s) for s in stride))]


def unfold(Xp: FloatArray, kernel: Ints, stride: Ints, out: Ints, cols: FloatArray) -> None:
    """im2col into the C-contiguous ``cols (C·prod(kernel), N·prod(out))`` from the padded
    ``Xp (N, C, *padded)``: ``cols[(c, κ), (n, t)] = Xp[n, c, t·stride + κ]``.

    Row ``(c, κ)`` is the strided slice of ``Xp[:, c]`` that kernel offset ``κ`` sees, so the
    one copy of the windows' view moves runs of ``out[-1]`` numbers; the samples are split
    over threads.
    """
    d = len(kernel)
    # windows (N, C, *out, *kernel) -> (C, *kernel, N, *out)
    view = backend.namespace(Xp).moveaxis(windows(Xp, kernel, stride),
                                          (1, *range(2 + d, 2 + 2 * d), 0), tuple(range(2 + d)))
    target = cols.reshape(view.shape)
    samples = (slice(None),) * (1 + d)  # the N axis of view and target comes after (C, *kernel)

    def block(a: int, b: int) -> None:
        target[ix(*samples, slice(a, b))] = view[ix(*samples, slice(a, b))]

    over_batch(block, Xp.shape[0], entries(cols))


def fold(piece: Callable[[Ints], np.ndarray[Any, Any]], dest: np.ndarray[Any, Any], first: int,
         kernel: Ints, stride: Ints, out: Ints) -> np.ndarray[Any, Any]:
    """col2im, the adjoint of gathering windows: for every kernel offset ``κ``, add
    ``piece(κ)`` (the gradients of all windows' slot ``κ``) at ``κ + t·stride`` of ``dest``,
    whose spatial axes start at axis ``first``. Returns ``dest``, updated in place.

    One vectorised strided add per kernel offset, over all samples and output positions.
    """
    lead = (slice(None),) * first
    for offset in np.ndindex(*kernel):
        dest[ix(*lead, *_offset_slices(offset, stride, out))] += piece(offset)
    return dest


class ShapeKept(_Builtin):
    """A built-in layer whose ``_saved`` is ``(output shape, dtype, what backward reads...)``:
    ``backward`` checks ``dY`` against that shape and casts it to that dtype. On torch the
    dtype's place holds :func:`output_kind`'s empty tensor, which also gives the device."""

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        """A parameterless instance on a random ``(2, 2, 3)`` input; layers with options
        override it."""
        return cls(), rng.standard_normal((2, 2, 3)).astype(dtype)

    def _output_shape(self) -> tuple[int, ...]:
        return tuple(self._saved[0])

    def _upstream_for(self, dY: Any) -> FloatArray:
        if self._saved is None:
            return self._upstream(dY, None, ())  # raises ForwardNotCalledError
        kept = self._saved[1]  # a NumPy dtype, or an empty tensor from output_kind
        reference = kept if hasattr(kept, "shape") else np.empty(0, dtype=kept)
        return self._upstream(dY, reference, self._output_shape())


def output_kind(Y: Any) -> Any:
    """What a :class:`ShapeKept` layer keeps of its output ``Y`` besides the shape: the dtype
    of a NumPy array; for a tensor an empty tensor of its dtype and device, so that backward
    casts ``dY`` to that dtype and moves a NumPy ``dY`` there."""
    return Y.new_empty(0) if backend.is_torch(Y) else Y.dtype


def window_index(spatial: Ints, kernel: Ints, stride: Ints, padding: Ints, out: Ints
                 ) -> np.ndarray[Any, Any]:
    """Flat index into ``spatial`` of every window slot, ``(*out, prod(kernel))``; ``-1`` where
    the slot falls on padding. What the expanded Jacobians of pooling are built from."""
    flat = np.arange(math.prod(spatial), dtype=np.intp).reshape(1, 1, *spatial)
    return windows(pad(flat, padding, -1), kernel, stride).reshape(*out, -1)
