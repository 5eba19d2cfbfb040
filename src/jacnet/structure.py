"""Where an expanded Jacobian can be non-zero, read off the Kronecker deltas of its formula.

Every built-in layer's per-entry partial ``∂y[i...]/∂a[k...]`` is a product of deltas that tie
an output index to an input index (``δ_ik``: another sample contributes nothing), window
conditions (a convolution's ``W[o, c, s − t·stride + pad]`` exists only for ``0 ≤ s − t·stride
+ pad < k``) and a value computed from the input. The entries that the deltas and windows
rule out are *structural* zeros, zero for every input; the others are computed and may still
be zero (a ReLU at a negative input, a max pool's losing entries). A class states its pattern
as a :class:`Structure` (its ``jacobian_structure`` method); :mod:`jacnet.plots` draws the
structural zeros grey and ``jacnet jacobian`` counts them, at any size, without building the
Jacobian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Band", "Structure"]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Band:
    """A window condition between output axis ``out_axis`` (index ``t``) and input axis
    ``in_axis`` (index ``s``): the entry can be non-zero only where
    ``0 <= s − t·step + offset < width``.

    A convolution or a pooling layer in ``X``: ``step = stride``, ``offset = padding``,
    ``width = kernel``. A convolution in ``W`` (``s`` a kernel offset ``κ``, reading
    ``x_pad[t·stride + κ]``, inside ``X`` only): ``step = −stride``, ``offset = −padding``,
    ``width = L``.
    """

    out_axis: int
    in_axis: int
    step: int
    offset: int
    width: int

    def _relation(self, t: NDArray[np.int64], s: NDArray[np.int64]) -> NDArray[np.bool_]:
        d = s - t * self.step + self.offset
        return (d >= 0) & (d < self.width)

    def count(self, out_size: int, in_size: int) -> int:
        """Pairs ``(t, s)`` in ``range(out_size) × range(in_size)`` inside the band."""
        t = np.arange(out_size, dtype=np.int64)
        low = np.maximum(t * self.step - self.offset, 0)
        high = np.minimum(t * self.step - self.offset + self.width, in_size)
        return int(np.maximum(high - low, 0).sum())


@dataclass(frozen=True)
class Structure:
    """The pattern of an expanded Jacobian ``∂Y/∂A`` of shape ``Y.shape + A.shape``.

    Attributes
    ----------
    ties : tuple of (int, int)
        ``(a, b)``: output index on axis ``a`` equals input index on axis ``b`` (a ``δ``).
    bands : tuple of Band
        Window conditions between an output and an input axis.
    diagonal : bool
        The flattened identity: output entry ``a`` depends on input entry ``a`` only
        (element-wise layers, dropout, flatten); ``Y`` and ``A`` have the same size.

    With no ties, bands or diagonal every entry is computed (a loss's gradient). Each axis
    takes part in at most one tie or band, so the count of computed entries is a product.
    """

    ties: tuple[tuple[int, int], ...] = ()
    bands: tuple[Band, ...] = ()
    diagonal: bool = False

    def __post_init__(self) -> None:
        outs = [a for a, _ in self.ties] + [b.out_axis for b in self.bands]
        ins = [b for _, b in self.ties] + [b.in_axis for b in self.bands]
        if len(set(outs)) != len(outs) or len(set(ins)) != len(ins):
            raise ValueError(f"Structure expects each axis in one tie or band, got {self}")
        if self.diagonal and (self.ties or self.bands):
            raise ValueError("Structure expects diagonal alone, got ties or bands too")

    def mask(self, out_shape: Shape, in_shape: Shape) -> NDArray[np.bool_]:
        """``True`` where an entry is computed, ``False`` at the structural zeros; shape
        ``out_shape + in_shape``."""
        rows, cols = math.prod(out_shape), math.prod(in_shape)
        if self.diagonal:
            return np.eye(rows, cols, dtype=bool).reshape(out_shape + in_shape)
        rank = len(out_shape) + len(in_shape)
        mask = np.ones(out_shape + in_shape, dtype=bool)

        def index(axis: int, size: int) -> NDArray[np.int64]:
            shape = [1] * rank
            shape[axis] = size
            return np.arange(size, dtype=np.int64).reshape(shape)

        n_out = len(out_shape)
        for a, b in self.ties:
            mask &= index(a, out_shape[a]) == index(n_out + b, in_shape[b])
        for band in self.bands:
            mask &= band._relation(index(band.out_axis, out_shape[band.out_axis]),
                                   index(n_out + band.in_axis, in_shape[band.in_axis]))
        return mask

    def count(self, out_shape: Shape, in_shape: Shape) -> int:
        """The number of computed (not structurally zero) entries, from the shapes alone."""
        if self.diagonal:
            return min(math.prod(out_shape), math.prod(in_shape))
        total = 1
        free_out, free_in = set(range(len(out_shape))), set(range(len(in_shape)))
        for a, b in self.ties:
            total *= min(out_shape[a], in_shape[b])
            free_out.discard(a)
            free_in.discard(b)
        for band in self.bands:
            total *= band.count(out_shape[band.out_axis], in_shape[band.in_axis])
            free_out.discard(band.out_axis)
            free_in.discard(band.in_axis)
        return (total * math.prod(out_shape[a] for a in free_out)
                * math.prod(in_shape[b] for b in free_in))
