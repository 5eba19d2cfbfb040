"""Input checks shared by every public entry point.

Each check raises a :mod:`jacnet.errors` class whose message names the argument, what was
expected and what was received.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from jacnet import backend
from jacnet.errors import (
    JacnetTypeError,
    JacnetValueError,
    JacobianTooLargeError,
    NonFiniteError,
    ShapeError,
)

FloatArray = NDArray[np.floating[Any]]


def describe(value: Any) -> str:
    """Short description of a value for an error message (shape and dtype for arrays)."""
    if isinstance(value, np.ndarray) or backend.is_torch(value):
        kind = "tensor" if backend.is_torch(value) else "array"
        return f"{kind} of shape {tuple(value.shape)} and dtype {backend.numpy_dtype(value)}"
    text = repr(value)
    return text if len(text) <= 60 else f"{type(value).__name__} {text[:57]}..."


def all_finite(A: NDArray[Any]) -> bool:
    """True when every entry of the floating array ``A`` is finite.

    Checked in chunks of at most ``2**20`` entries, so a large array never needs a boolean
    temporary of its own size. A tensor is checked on its device.
    """
    if type(A) is not np.ndarray and backend.is_torch(A):
        return backend.all_finite(A)
    # A finite sum proves every entry finite (a NaN or an infinity makes the sum NaN or
    # infinite), in one pass without a temporary; only a sum that is not finite (a bad entry,
    # or finite entries whose sum overflows) needs the entry-by-entry check.
    if A.dtype.kind == "f" and A.size > 1 << 16:
        with np.errstate(over="ignore", invalid="ignore"):
            if math.isfinite(float(np.sum(A))):
                return True
    chunk = 1 << 20
    if A.size <= chunk:
        return bool(np.isfinite(A).all())
    flat = A.reshape(-1)
    return all(bool(np.isfinite(flat[i:i + chunk]).all()) for i in range(0, flat.shape[0], chunk))


def as_ndarray(value: Any, name: str, expected: str) -> NDArray[Any]:
    """``np.asarray(value)``; a string, or what NumPy cannot make an array of (ragged nested
    lists and the like), raises ``JacnetTypeError("<name> expects <expected>, got ...")``."""
    if type(value) is np.ndarray:
        return value
    if backend.is_torch(value):
        return backend.to_numpy(value)
    if isinstance(value, (str, bytes)):
        raise JacnetTypeError(f"{name} expects {expected}, got {describe(value)}")
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise JacnetTypeError(f"{name} expects {expected}, got {describe(value)}") from exc


def _non_numeric_column(value: Any) -> str | None:
    """For a DataFrame (anything with ``columns`` and ``dtypes``, no pandas import) or a Series
    (``name`` and ``dtype``): its first column that is not numeric, described, or None."""
    columns, dtypes = getattr(value, "columns", None), getattr(value, "dtypes", None)
    if columns is not None and dtypes is not None:
        pairs = list(zip(list(columns), list(dtypes), strict=False))
    elif hasattr(value, "dtype") and hasattr(value, "name") and not isinstance(value, np.ndarray):
        pairs = [(value.name, value.dtype)]
    else:
        return None
    for column, dtype in pairs:
        if getattr(dtype, "kind", "O") not in "fiu":
            return f"column {column!r} of dtype {dtype}"
    return None


def _numeric_frame(value: Any) -> NDArray[Any] | None:
    """A DataFrame whose columns are all numeric but of mixed extension dtypes (nullable
    ``Int64`` next to ``float64``...), which NumPy turns into objects: its columns stacked,
    a missing value (``pd.NA``) becoming NaN. None for anything else."""
    columns, dtypes = getattr(value, "columns", None), getattr(value, "dtypes", None)
    if columns is None or dtypes is None or not len(columns):
        return None
    if any(getattr(dtype, "kind", "O") not in "fiu" for dtype in dtypes):
        return None
    return np.column_stack([np.asarray(value[c], dtype=np.float64) for c in columns])


def as_float_array(
    value: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = 2,
    dtype: DTypeLike | None = None,
    finite: bool = True,
    min_samples: int = 1,
    min_features: int = 0,
    like: Any = None,
) -> FloatArray:
    """Return ``value`` as a floating array after checking it.

    Parameters
    ----------
    value : array_like
        What the caller passed.
    name : str
        The argument's name as the caller wrote it, e.g. ``"Affine.forward X"``.
    ndim : int or tuple of int or None
        Accepted ranks; ``None`` accepts any rank.
    dtype : dtype or None
        Cast to this floating dtype; ``None`` keeps a floating dtype and turns integers
        into float64.
    finite : bool
        Reject NaN and infinities.
    min_samples : int
        Smallest accepted length of the first axis.
    min_features : int
        Smallest accepted length of the second axis of a 2-D array.
    like : array, optional
        Return the array on this array's backend and device (a layer passes its parameter):
        a NumPy input to a torch model becomes a tensor there. Without it a tensor stays a
        tensor and anything else becomes a NumPy array.
    """
    if dtype is not None and backend.is_torch_dtype(dtype):
        dtype = backend.numpy_dtype_of(dtype)
    if backend.is_torch(value):
        T = _as_float_tensor(value, name, ndim=ndim, finite=finite,
                             dtype=None if dtype is None else np.dtype(dtype),
                             min_samples=min_samples, min_features=min_features, like=like)
        # A tensor given to a NumPy model (like= a NumPy array) is computed on in NumPy.
        return T if like is None or backend.is_torch(like) else backend.to_numpy(T)
    A = _as_float_ndarray(value, name, ndim=ndim, dtype=dtype, finite=finite,
                          min_samples=min_samples, min_features=min_features)
    if like is not None and backend.is_torch(like):
        return backend.to_backend(A, "torch", backend.device_of(like))
    return A


def _check_rank(shape: tuple[int, ...], name: str, ndim: int | tuple[int, ...] | None,
                min_samples: int, min_features: int) -> None:
    if ndim is not None:
        ranks = (ndim,) if isinstance(ndim, int) else ndim
        if len(shape) not in ranks:
            wanted = " or ".join(f"{r}-D" for r in ranks)
            raise ShapeError(f"{name} expects a {wanted} array, got shape {shape}")
    if len(shape) >= 1 and shape[0] < min_samples:
        raise ShapeError(f"{name} expects at least {min_samples} sample(s), got shape {shape}")
    if len(shape) == 2 and shape[1] < min_features:
        raise ShapeError(f"{name} expects at least {min_features} feature(s), got shape {shape}")


def _as_float_tensor(T: Any, name: str, *, ndim: int | tuple[int, ...] | None,
                     dtype: np.dtype[Any] | None, finite: bool, min_samples: int,
                     min_features: int, like: Any) -> Any:
    """:func:`as_float_array` for a PyTorch tensor: the same checks, on its device; the
    result is a tensor (on ``like``'s device when given)."""
    if str(T.dtype) == "torch.bfloat16":  # no NumPy twin; float32 holds each value exactly
        T = T.float()
    kind = backend.numpy_dtype(T).kind
    if kind == "b":
        raise JacnetTypeError(f"{name} expects a numeric tensor, got a boolean tensor; cast it "
                              "with .float()")
    if kind not in "fiu":
        raise JacnetTypeError(f"{name} expects a real tensor, got dtype {T.dtype}")
    _check_rank(tuple(T.shape), name, ndim, min_samples, min_features)
    target = np.dtype(np.float64) if dtype is None and kind != "f" else dtype
    device = backend.device_of(like) if like is not None and backend.is_torch(like) else None
    if T.requires_grad:
        T = T.detach()
    A = T if target is None and device is None else T.to(
        device=device, dtype=None if target is None else backend.torch_dtype(target))
    if finite and not backend.all_finite(A):
        if A is not T and kind == "f" and backend.all_finite(T):  # finite before the cast
            raise NonFiniteError(_overflow_message(name, backend.numpy_dtype(A), T.abs().max()))
        raise NonFiniteError(f"{name} expects finite values, got NaN or infinity")
    return A


def _overflow_message(name: str, dtype: np.dtype[Any], largest: Any) -> str:
    """What to say when finite values overflowed to infinity in the cast to ``dtype``."""
    limit = float(np.finfo(dtype).max)
    return (f"{name} expects finite values that fit in {dtype} (|x| <= {limit:.3g}), got "
            f"values up to {float(largest):.3g}, which overflow to infinity")


def _as_float_ndarray(value: Any, name: str, *, ndim: int | tuple[int, ...] | None,
                      dtype: DTypeLike | None, finite: bool, min_samples: int,
                      min_features: int) -> FloatArray:
    A = as_ndarray(value, name, "a numeric array")
    if A.dtype.kind == "O" and (stacked := _numeric_frame(value)) is not None:
        A = stacked
    kind = A.dtype.kind
    if kind == "b":
        raise JacnetTypeError(
            f"{name} expects a numeric array, got a boolean array; cast it with .astype(float)"
        )
    if kind == "c":
        raise JacnetTypeError(f"{name} expects a real array, got complex dtype {A.dtype}")
    if kind not in "fiu":
        column = _non_numeric_column(value)
        if column is not None:
            raise JacnetTypeError(f"{name} expects numeric columns, got {column}")
        raise JacnetTypeError(f"{name} expects a numeric array, got dtype {A.dtype}")
    _check_rank(A.shape, name, ndim, min_samples, min_features)
    original = A
    target = np.float64 if dtype is None and kind != "f" else dtype
    if target is not None and A.dtype != target:
        # A finite value too large for the target dtype becomes infinity: said below, not in a
        # RuntimeWarning from NumPy.
        with np.errstate(over="ignore"):
            A = A.astype(target)
    if finite and not all_finite(A):
        if A is not original and original.dtype.kind == "f" and all_finite(original):
            raise NonFiniteError(_overflow_message(name, A.dtype, np.max(np.abs(original))))
        raise NonFiniteError(f"{name} expects finite values, got NaN or infinity")
    return A


def check_same_shape(A: NDArray[Any], name: str, expected: tuple[int, ...]) -> None:
    """Raise :class:`ShapeError` unless ``A.shape == expected``."""
    if A.shape != expected:
        raise ShapeError(f"{name} expects shape {expected}, got {tuple(A.shape)}")


def check_sample_weight(value: Any, n: int, where: str) -> FloatArray:
    """``value`` as NumPy float64 weights ``(n,)``: finite, >= 0 and not all zero (a tensor
    is copied to NumPy: weights are indexed and summed on the host, like the shuffle order)."""
    name = f"{where} sample_weight"
    w = backend.to_numpy(as_float_array(value, name, ndim=1, dtype=np.float64, min_samples=0))
    if w.shape != (n,):
        raise ShapeError(f"{name} expects shape ({n},) (one weight per sample), got {w.shape}")
    if n and w.min() < 0:
        raise JacnetValueError(f"{name} expects weights >= 0, got a minimum of {float(w.min())!r}")
    if not w.any():
        raise JacnetValueError(f"{name} expects weights that are not all zero, got all zero")
    return w


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise JacnetTypeError(f"{name} expects an integer >= {minimum}, got {describe(value)}")
    if value < minimum:
        raise JacnetValueError(f"{name} expects an integer >= {minimum}, got {value}")
    return int(value)


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float after checking it is a finite real in the given interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise JacnetTypeError(f"{name} expects a real number, got {describe(value)}")
    x = float(value)
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    bad = not math.isfinite(x)
    if low is not None:
        bad = bad or x < low or (low_open and x == low)
    if high is not None:
        bad = bad or x > high or (high_open and x == high)
    if bad:
        raise JacnetValueError(f"{name} expects a finite number in {interval}, got {value!r}")
    return x


def as_rng(rng: Any, name: str = "rng") -> np.random.Generator:
    """Turn ``None``, an int seed or a Generator into a ``numpy.random.Generator``.

    ``None`` gives a fresh, unseeded Generator; the global NumPy state is never used.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        if rng is not None and rng < 0:
            raise JacnetValueError(f"{name} expects a seed >= 0 or a Generator, got {rng}")
        return np.random.default_rng(rng)
    raise JacnetTypeError(
        f"{name} expects None, an int seed or a numpy.random.Generator, got {describe(rng)}"
    )


def overflow_message(name: str, X: FloatArray) -> str:
    """Message for finite inputs whose result overflowed to NaN or infinity on the way."""
    A = backend.to_numpy(X)
    largest = float(np.max(np.abs(A))) if A.size else 0.0
    return (f"{name} expects inputs that the network maps to finite values, got inputs up to "
            f"|x| = {largest:.3g} whose outputs overflow to NaN or infinity (standardise X?)")


#: Largest expanded Jacobian materialised unless a caller raises the limit (80 MB in float64).
MAX_JACOBIAN_ENTRIES = 10_000_000

_jacobian_limit: ContextVar[int] = ContextVar("jacnet_jacobian_limit", default=MAX_JACOBIAN_ENTRIES)


@contextmanager
def jacobian_limit(max_entries: int) -> Iterator[None]:
    """Within the block, :func:`check_jacobian_size` refuses more than ``max_entries`` entries."""
    token = _jacobian_limit.set(max_entries)
    try:
        yield
    finally:
        _jacobian_limit.reset(token)


def check_jacobian_size(out_shape: tuple[int, ...], in_shape: tuple[int, ...], where: str) -> None:
    """Refuse, from the shapes alone and before anything is built, an expanded Jacobian
    ``out_shape + in_shape`` larger than the current limit (``JacobianTooLargeError``)."""
    limit = _jacobian_limit.get()
    out_size, in_size = math.prod(out_shape), math.prod(in_shape)
    entries = out_size * in_size
    if entries > limit:
        raise JacobianTooLargeError(
            f"{where} expects an expanded Jacobian of at most max_entries={limit:,} entries, got "
            f"shape {tuple(out_shape) + tuple(in_shape)}: {out_size:,} x {in_size:,} = {entries:,} "
            f"entries ({entries * 8 / 2**20:,.1f} MiB in float64); use a smaller batch or layer, "
            "or raise max_entries")
