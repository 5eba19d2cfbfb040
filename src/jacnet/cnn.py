"""A small convolutional network for sequences and images, and its input standardisation.

:func:`build_cnn` builds what ``jacnet train --model cnn`` trains::

    Unflatten(input_shape)                       (N, F) -> (N, C, *S)
    [ConvND(c_in, c, k) -> ReLU -> MaxPoolND(2)] for each c in channels
    Flatten -> Dropout(p) -> Affine(features, out_features) [-> output]

The network takes flat rows ``(N, F)``, as an MLP does, so a model file reads the same tables
(``jacnet predict``, ``jacnet evaluate``). The convolutions are unpadded: that is what makes the
input standardisation foldable into the first convolution exactly
(:func:`fold_scalar_standardization`); a zero-padded border would be a raw 0 after folding,
where training saw the standardised 0 (the raw mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from jacnet._validation import as_rng, check_positive_int, check_real
from jacnet.conv import Conv1D, Conv2D
from jacnet.dropout import Dropout
from jacnet.errors import JacnetValueError
from jacnet.layers import Affine, Layer, ReLU, Sigmoid, Softmax
from jacnet.model import Sequential
from jacnet.pooling import Flatten, MaxPool1D, MaxPool2D, Unflatten

__all__ = ["build_cnn", "fold_scalar_standardization"]

#: Spatial rank -> (convolution, max pooling) classes.
_BLOCKS: dict[int, tuple[type[Conv1D] | type[Conv2D], type[MaxPool1D] | type[MaxPool2D]]] = {
    1: (Conv1D, MaxPool1D), 2: (Conv2D, MaxPool2D)}

#: ``output`` names -> output layers.
_OUTPUTS: dict[str, type[Softmax] | type[Sigmoid]] = {"softmax": Softmax, "sigmoid": Sigmoid}

#: Every block but the last ends in a max-pool of this size (where the input is long enough).
POOL = 2


def _pools(size: int, n_blocks: int, kernel_size: int) -> list[bool] | None:
    """Which blocks pool: all of them, less the first ones while the network does not fit
    a spatial side of ``size`` (every convolution needs ``kernel_size`` inputs, every pool
    ``POOL``). None when not even the network without pooling fits."""
    for first_pooled in range(n_blocks + 1):
        pools = [i >= first_pooled for i in range(n_blocks)]
        side = size
        for pooled in pools:
            side -= kernel_size - 1
            if side < 1:
                break
            if pooled:
                side //= POOL
                if side < 1:
                    break
        else:
            return pools
    return None


def build_cnn(
    input_shape: Sequence[int],
    channels: Sequence[int],
    out_features: int,
    *,
    kernel_size: int = 5,
    dropout: float = 0.3,
    output: str | None = None,
    rng: np.random.Generator | int | None = None,
    dtype: DTypeLike = np.float32,
) -> Sequential:
    """A small CNN on flat rows: ``Unflatten → [Conv → ReLU → MaxPool(2)]… → Flatten →
    Dropout → Affine``.

    Parameters
    ----------
    input_shape : sequence of int
        One sample's shape, ``(C, L)`` for sequences (Conv1D) or ``(C, H, W)`` for images
        (Conv2D); the network takes rows of ``prod(input_shape)`` features.
    channels : sequence of int
        Output channels of each convolution block (at least one block).
    out_features : int
        Width of the final affine layer (classes, or 1).
    kernel_size : int
        Length (or square side) of every convolution's window; no padding, stride 1.
    dropout : float in [0, 1)
        Dropout before the affine layer (0: no Dropout layer).
    output : {None, "softmax", "sigmoid"}
        Optional output activation, as in :func:`~jacnet.build_mlp`.
    rng : numpy.random.Generator or int or None
        Source of the initial weights (He normal for the convolutions, the affine layer's
        default) and of the dropout masks.
    dtype : {float32, float64}

    Returns
    -------
    Sequential
        Takes ``X (N, prod(input_shape))``, returns ``(N, out_features)``.

    Notes
    -----
    Every block ends in a 2-wide max-pool, except the first blocks when the input is too short
    for all of them: pools are dropped from the front until the network fits (an 8×8 image
    with two 3×3 blocks: 8 → 6 → 4 → pool → 2). ``build_cnn((1, 40), (32, 32, 32), 10)`` is
    40 → 36 → 18 → 14 → 7 → 3 → 1 positions, 32 features into the affine layer.

    Examples
    --------
    >>> net = build_cnn((1, 8, 8), (4, 8), 10, kernel_size=3, rng=0, dtype=np.float64)
    >>> net.forward(np.zeros((5, 64))).shape
    (5, 10)
    """
    shape = tuple(check_positive_int(s, "build_cnn input_shape") for s in input_shape)
    if len(shape) not in (2, 3):
        raise JacnetValueError(f"build_cnn input_shape expects (channels, length) or (channels, "
                               f"height, width), got {shape}")
    widths = [check_positive_int(c, "build_cnn channels") for c in channels]
    if not widths:
        raise JacnetValueError("build_cnn channels expects at least one block, got none")
    out_features = check_positive_int(out_features, "build_cnn out_features")
    kernel_size = check_positive_int(kernel_size, "build_cnn kernel_size")
    dropout = check_real(dropout, "build_cnn dropout", low=0, high=1, high_open=True)
    if output is not None and output not in _OUTPUTS:
        raise JacnetValueError(f"build_cnn output expects one of {sorted(_OUTPUTS)} or None, got {output!r}")
    side = min(shape[1:])
    pools = _pools(side, len(widths), kernel_size)
    if pools is None:
        raise JacnetValueError(f"build_cnn kernel_size expects {len(widths)} unpadded convolutions to "
                               f"fit a side of {side}, got kernel_size {kernel_size}")
    generator = as_rng(rng, "build_cnn rng")
    conv, pool = _BLOCKS[len(shape) - 1]
    layers: list[Layer] = [Unflatten(shape)]
    c_in, sides = shape[0], list(shape[1:])
    for c_out, pooled in zip(widths, pools, strict=True):
        layers += [conv(c_in, c_out, kernel_size, rng=generator, dtype=dtype), ReLU()]
        sides = [s - kernel_size + 1 for s in sides]
        if pooled:
            layers.append(pool(POOL))
            sides = [s // POOL for s in sides]
        c_in = c_out
    layers.append(Flatten())
    if dropout > 0:
        layers.append(Dropout(dropout, rng=generator))
    layers.append(Affine(c_in * int(np.prod(sides)), out_features, rng=generator, dtype=dtype))
    if output is not None:
        layers.append(_OUTPUTS[output]())
    return Sequential(layers)


def fold_scalar_standardization(model: Sequential, mean: float, std: float) -> None:
    """Make a CNN trained on ``(x − mean)/std`` (one scalar each) take raw ``x``, exactly.

    The first convolution absorbs it: every window sums ``W·(x − mean)/std``, which is
    ``(W/std)·x − (mean/std)·ΣW``, so ``W ← W/std`` and ``b[o] ← b[o] − mean·Σ_{c,κ} W_new[o, c, κ]``.
    Exact only without padding (a padded 0 is not a standardised raw value), which
    :func:`build_cnn` guarantees; a padded first convolution is refused.
    """
    first: Any = next((layer for layer in model.layers if layer.params), None)
    if not isinstance(first, (Conv1D, Conv2D)) or any(first.padding):
        raise JacnetValueError(f"fold_scalar_standardization model expects an unpadded convolution "
                               f"as its first layer with parameters, got {first!r}")
    W, b = first.params["W"], first.params["b"]
    W /= W.dtype.type(std)
    sums = W.astype(np.float64).sum(axis=tuple(range(1, W.ndim)))
    b -= (mean * sums).astype(b.dtype)
