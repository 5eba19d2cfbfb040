"""Backends: where a model's arrays live and which array library computes on them.

jacnet writes each closed form once, against the Python array API standard: a formula takes
``xp = namespace(A)`` from its input and calls ``xp.exp``, ``xp.sum(A, axis=0)``, ``A @ W``.
Two backends run those formulas:

- ``"numpy"`` (the default, the only hard requirement): ``xp`` is NumPy itself.
- ``"torch"``: PyTorch tensors on a ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``), with
  ``xp`` from ``array-api-compat``; ``pip install 'jacnet[torch]'`` brings both. Autograd is
  never used: the closed forms are the backward pass.

A model moves with ``model.to("torch", device="cuda")``; files, Jacobians and the gradient
checker work on NumPy copies (:func:`to_numpy`), so a file saved from any backend loads on any
other with bitwise the same weights.
"""

from __future__ import annotations

import math
import sys
from types import ModuleType
from typing import Any

import numpy as np

from jacnet.errors import JacnetTypeError, JacnetValueError

__all__ = ["BACKENDS", "backend_of", "device_of", "is_torch", "namespace", "to_backend", "to_numpy"]

#: The backends a model can run on.
BACKENDS = ("numpy", "torch")


_TORCH_TYPES: dict[type, bool] = {}


def is_torch(A: Any) -> bool:
    """True for a PyTorch tensor (never imports torch: without it no tensor exists; cached
    per type)."""
    kind = type(A)
    found = _TORCH_TYPES.get(kind)
    if found is None:
        torch = sys.modules.get("torch")
        found = _TORCH_TYPES[kind] = torch is not None and issubclass(kind, torch.Tensor)
    return found


def is_torch_dtype(dtype: Any) -> bool:
    """True for a torch dtype such as ``torch.float32``."""
    kind = type(dtype)
    return kind.__module__ == "torch" and kind.__name__ == "dtype"


def _torch() -> ModuleType:
    found = sys.modules.get("torch")  # already imported: skip the import machinery
    if found is not None:
        return found
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "the torch backend expects PyTorch (and array-api-compat), got torch missing; "
            "run: pip install 'jacnet[torch]'") from exc
    return torch


_COMPAT: list[ModuleType] = []  # array_api_compat.torch, once imported


def _compat_torch() -> ModuleType:
    if _COMPAT:
        return _COMPAT[0]
    _torch()
    try:
        import array_api_compat.torch as xp
    except ImportError as exc:
        raise ImportError(
            "the torch backend expects array-api-compat, got it missing; "
            "run: pip install 'jacnet[torch]'") from exc
    _COMPAT.append(xp)
    return xp


def namespace(A: Any) -> Any:
    """The array API namespace of ``A``: NumPy for NumPy arrays (and anything else array-like),
    ``array_api_compat.torch`` for a tensor."""
    if type(A) is np.ndarray or not is_torch(A):
        return np
    return _compat_torch()


def backend_of(A: Any) -> str:
    """``"torch"`` for a tensor, else ``"numpy"``."""
    return "torch" if is_torch(A) else "numpy"


def device_of(A: Any) -> str:
    """``"cpu"`` for a NumPy array; a tensor's device as text (``"cuda:0"``)."""
    return str(A.device) if is_torch(A) else "cpu"


def check_backend(backend: Any, device: Any, where: str) -> tuple[str, str]:
    """``(backend, device)`` checked; ``device`` defaults to ``"cpu"`` and must be ``"cpu"``
    for NumPy. A torch device that this machine lacks is refused here, naming it."""
    if backend not in BACKENDS:
        hint = (f"; for a GPU write .to('torch', device={backend!r})"
                if isinstance(backend, str) and backend.startswith(("cuda", "mps")) else "")
        raise JacnetValueError(f"{where} backend expects one of {BACKENDS}, got {backend!r}{hint}")
    if device is None:
        device = "cpu"
    if not isinstance(device, str) and type(device).__name__ != "device":
        raise JacnetTypeError(f"{where} device expects a string such as 'cpu' or 'cuda', "
                              f"got {device!r}")
    device = str(device)
    if backend == "numpy":
        if device != "cpu":
            raise JacnetValueError(f"{where} device expects 'cpu' for the numpy backend, got "
                                   f"{device!r}; use backend='torch' for a GPU")
        return backend, device
    torch = _torch()
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise JacnetValueError(f"{where} device expects a torch device such as 'cpu' or "
                               f"'cuda:0', got {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise JacnetValueError(f"{where} device expects a device this machine has, got "
                               f"{device!r}, but torch sees no CUDA GPU")
    return backend, str(resolved)


def torch_dtype(dtype: Any) -> Any:
    """The torch dtype of a NumPy floating (or integer) dtype."""
    torch = _torch()
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
            np.dtype(np.int64): torch.int64, np.dtype(np.bool_): torch.bool}[np.dtype(dtype)]


def numpy_dtype(A: Any) -> np.dtype[Any]:
    """``A.dtype`` as a NumPy dtype (a tensor's ``torch.float32`` is ``float32``)."""
    return numpy_dtype_of(A.dtype)


def numpy_dtype_of(dtype: Any) -> np.dtype[Any]:
    """The NumPy dtype ``dtype`` names: a NumPy dtype or name, or a torch dtype
    (``torch.float32`` is ``float32``)."""
    if is_torch_dtype(dtype):
        return np.dtype(str(dtype).removeprefix("torch."))
    return np.dtype(dtype)


def to_numpy(A: Any) -> Any:
    """A NumPy array with ``A``'s values (a tensor is copied off its device, detached); a NumPy
    array or anything else is returned as it is."""
    if is_torch(A):
        return A.detach().cpu().numpy()
    return A


def to_backend(A: Any, backend: str, device: str = "cpu", dtype: Any = None) -> Any:
    """``A`` (an array of either backend) on ``backend`` and ``device``, cast to the NumPy
    ``dtype`` if given. Returns ``A`` itself when it is already there."""
    if backend == "numpy":
        out = to_numpy(A)
        return out if dtype is None or out.dtype == dtype else out.astype(dtype)
    torch = _torch()
    target = None if dtype is None else torch_dtype(dtype)
    if is_torch(A):
        return A.to(device=device, dtype=target)
    return torch.from_numpy(np.ascontiguousarray(A)).to(device=device, dtype=target)


def astype(A: Any, dtype: Any) -> Any:
    """``A`` cast to the NumPy floating ``dtype`` on its own backend and device."""
    return to_backend(A, backend_of(A), device_of(A), dtype)


def like(A: Any, reference: Any) -> Any:
    """``A`` on the backend and device of ``reference`` (its dtype unchanged)."""
    if is_torch(reference):
        return to_backend(A, "torch", device_of(reference))
    return to_numpy(A)


def copy(A: Any) -> Any:
    """A new array with ``A``'s values, on ``A``'s backend."""
    return A.clone() if is_torch(A) else A.copy()


def subtract_scaled(p: Any, g: Any, scale: float, buffer: Any) -> None:
    """``p -= scale · g`` in place, ``buffer`` (shaped like ``p``) as scratch: NumPy in two
    passes through ``buffer``, torch in one fused ``add_(g, alpha=-scale)``."""
    if is_torch(p):
        p.add_(g, alpha=-scale)
        return
    np.multiply(g, scale, out=buffer)
    p -= buffer


def put_along_last_axis(shape: tuple[int, ...], index: Any, values: Any) -> Any:
    """Zeros of ``shape`` with ``values[..., i]`` at ``[..., index[..., i]]`` of the last axis
    (the array API has no scatter: NumPy's ``put_along_axis``, torch's ``scatter``)."""
    if is_torch(values):
        out = _torch().zeros(shape, dtype=values.dtype, device=values.device)
        return out.scatter_(-1, index[..., None], values[..., None])
    out = np.zeros(shape, dtype=values.dtype)
    np.put_along_axis(out, index[..., None], values[..., None], axis=-1)
    return out


def contiguous(A: Any) -> Any:
    """``A`` laid out C-contiguously (a copy only when it is not)."""
    return A.contiguous() if is_torch(A) else np.ascontiguousarray(A)


def _address(A: Any) -> int | None:
    """Where the data of a tensor or NumPy array starts; None for anything else."""
    if is_torch(A):
        return int(A.data_ptr())
    if isinstance(A, np.ndarray):
        return int(A.__array_interface__["data"][0])
    return None


def shares_memory(A: Any, B: Any) -> bool:
    """True when ``A`` and ``B``, of which one at least is a tensor, start at the same memory
    (a view, a detached copy, a NumPy view of a CPU tensor and the reverse); False for
    anything else."""
    if not (is_torch(A) or is_torch(B)):
        return False
    start = _address(A)
    return start is not None and start == _address(B)


def matmul_into(A: Any, B: Any, out: Any) -> Any:
    """``out[...] = A @ B`` without a temporary (NumPy's and torch's ``out=``)."""
    if is_torch(out):
        if A.ndim == 1:  # torch's matmul would resize a vector out to a (1, n) matrix
            return _torch().mv(B.T, A, out=out)
        return _torch().matmul(A, B, out=out)
    return np.matmul(A, B, out=out)


def take_rows(X: Any, rows: Any, out: Any = None) -> Any:
    """``X[rows]`` (``rows`` valid indices on ``X``'s backend), written into ``out`` when
    given."""
    if is_torch(X):
        return X[rows] if out is None else _torch().index_select(X, 0, rows, out=out)
    # mode="clip" lets take write straight into out (mode="raise" would buffer it again).
    return np.take(X, rows, axis=0, out=out, mode="clip")


def positive_mask(X: Any) -> Any:
    """``[x > 0]`` entry by entry, in ``X``'s dtype (ReLU's derivative).

    NumPy compares. On torch the same values come from ``ceil(clip(x, 0, 1))`` (0 for
    ``x <= 0``, 1 for ``x > 0``, exactly): torch's CPU comparisons and bool-to-float casts
    take about ten times as long as these two float kernels on a (128, 256) batch.
    """
    if type(X) is np.ndarray:
        return (X > 0).astype(X.dtype)
    return _torch().clamp(X, 0.0, 1.0).ceil_()


def positive_part(X: Any, in_place: bool = False) -> Any:
    """``max(x, 0)`` entry by entry, written into ``X`` when ``in_place``."""
    if type(X) is np.ndarray:
        return np.maximum(X, 0, out=X if in_place else None)
    return X.clamp_(min=0) if in_place else X.clamp(min=0)


def all_finite(A: Any) -> bool:
    """True when every entry of the tensor ``A`` is finite (NumPy arrays: see
    :func:`jacnet._validation.all_finite`).

    ``sum(A - A)`` is 0 exactly when every entry is finite and NaN otherwise; on torch's CPU
    it is several times faster than ``isfinite(A).all()``. Checked in chunks of at most
    ``2**20`` entries, so a large tensor needs no temporary of its own size.
    """
    torch = _torch()
    flat, chunk = A.reshape(-1), 1 << 20
    if flat.shape[0] <= chunk:
        return math.isfinite(float(torch.sum(flat - flat)))
    # A finite sum proves every entry finite, in one pass without a temporary; a sum that is
    # not finite (a bad entry, or an overflow of finite entries) takes the exact check.
    if math.isfinite(float(torch.sum(flat))):
        return True
    return all(math.isfinite(float(torch.sum(part - part)))
               for part in (flat[i:i + chunk] for i in range(0, flat.shape[0], chunk)))
