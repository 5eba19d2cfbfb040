"""Expanded Jacobians, finite differences, and the check that the two agree with backward.

For a module ``Y = f(A)`` the expanded Jacobian is the array ``∂Y/∂A`` of shape
``Y.shape + A.shape``. Every closed-form backward is a contraction of it with the upstream
gradient: ``dA = Σ dY ⊙ ∂Y/∂A`` over the axes of ``Y`` (``numpy.tensordot(dY, J, Y.ndim)``).
:func:`check_gradients` computes each gradient three ways (closed-form backward, expanded
Jacobian contracted with ``dY``, central finite differences) and reports how far apart they are.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jacnet._validation import FloatArray, as_float_array, as_rng, check_real, describe
from jacnet.errors import JacnetTypeError, JacnetValueError, JacobianTooLargeError, ShapeError
from jacnet.layers import Layer
from jacnet.losses import Loss

__all__ = [
    "MAX_JACOBIAN_ENTRIES",
    "GradientCheck",
    "GradientReport",
    "check_gradients",
    "expanded_jacobian",
    "numerical_jacobian",
]

#: Largest expanded Jacobian materialised without ``max_entries`` raised (80 MB in float64).
MAX_JACOBIAN_ENTRIES = 10_000_000

#: Default tolerances of :func:`check_gradients` by compute dtype: ``(rtol, atol)``.
TOLERANCES = {np.dtype(np.float64): (1e-5, 1e-8), np.dtype(np.float32): (2e-2, 1e-4)}

#: Default finite-difference step of :func:`check_gradients` by compute dtype.
STEPS = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-2}


def _is_network(module: Any) -> bool:
    return hasattr(module, "layers") and hasattr(module, "params")


def _check_module(module: Any, where: str) -> None:
    if not isinstance(module, (Layer, Loss)) and not _is_network(module):
        raise JacnetTypeError(
            f"{where} module expects a jacnet Layer, Loss or Sequential, got {describe(module)}"
        )


def _check_wrt(module: Any, wrt: str, where: str) -> None:
    if isinstance(module, Loss):
        if wrt not in ("X", "pred"):
            raise JacnetValueError(f"{where} wrt expects 'X' (the prediction) for a loss, got {wrt!r}")
        return
    names = ("X", *module.params)
    if wrt not in names:
        raise JacnetValueError(f"{where} wrt expects one of {names}, got {wrt!r}")


def _prepared(module: Any, target: Any, loss: Loss | None, where: str) -> None:
    _check_module(module, where)
    if loss is not None and not isinstance(loss, Loss):
        raise JacnetTypeError(f"{where} loss expects a jacnet Loss, got {describe(loss)}")
    if isinstance(module, Loss) and loss is not None:
        raise JacnetValueError(f"{where} loss expects None when module is itself a Loss")
    if (isinstance(module, Loss) or loss is not None) and target is None:
        raise JacnetValueError(f"{where} target expects the targets of the loss, got None")


def _output_function(
    module: Any, target: Any, loss: Loss | None
) -> Callable[[Any, FloatArray], FloatArray]:
    """``f(m, X)``: the module's output, or the scalar loss, as an array."""
    if isinstance(module, Loss):
        return lambda m, X: np.asarray(m.forward(X, target))
    if loss is not None:
        scorer = copy.deepcopy(loss)
        return lambda m, X: np.asarray(scorer.forward(m.forward(X), target))
    return lambda m, X: m.forward(X)


def _refuse_if_too_large(out_size: int, in_size: int, max_entries: int, what: str) -> None:
    entries = out_size * in_size
    if entries > max_entries:
        raise JacobianTooLargeError(
            f"{what} expects at most max_entries={max_entries:,} entries, got a request for "
            f"{out_size:,} x {in_size:,} = {entries:,} entries ({entries * 8 / 2**20:,.1f} MiB "
            "in float64); use a smaller batch or layer, or raise max_entries"
        )


def _sizes(module: Any, X: FloatArray, wrt: str, f: Callable[..., FloatArray]) -> tuple[int, int]:
    out = f(copy.deepcopy(module), X)
    in_size = X.size if wrt in ("X", "pred") else module.params[wrt].size
    return int(out.size), int(in_size)


def expanded_jacobian(
    module: Any,
    X: Any,
    *,
    wrt: str = "X",
    target: Any = None,
    loss: Loss | None = None,
    max_entries: int = MAX_JACOBIAN_ENTRIES,
) -> FloatArray:
    """Materialise the expanded Jacobian ``∂Y/∂A`` from the module's per-entry partials.

    Parameters
    ----------
    module : Layer, Loss or Sequential
        A layer or network gives ``∂Y/∂A`` of shape ``Y.shape + A.shape``. A loss gives
        ``∂J/∂pred`` of shape ``pred.shape`` (``X`` is ``pred``; ``target`` required). A network
        with ``loss`` gives ``∂J/∂A`` of shape ``A.shape``.
    X : array_like, (N, in)
        The input (or the prediction, for a loss).
    wrt : str
        ``"X"`` for the input, or a parameter name (``"W"``, ``"b"``, ``"0.W"``...).
    target : array_like, optional
        The loss's target.
    loss : Loss, optional
        Put a network or layer under this loss.
    max_entries : int
        Refuse (with :class:`~jacnet.errors.JacobianTooLargeError`) anything larger.

    Notes
    -----
    Built by ``module.jacobian``, never by calling ``backward`` and never by automatic
    differentiation, so it can check backward.
    """
    where = "expanded_jacobian"
    _prepared(module, target, loss, where)
    _check_wrt(module, wrt, where)
    X = as_float_array(X, f"{where} X", ndim=None)
    f = _output_function(module, target, loss)
    _refuse_if_too_large(*_sizes(module, X, wrt, f), max_entries, where)
    if isinstance(module, Loss):
        return module.jacobian(X, target)
    J = module.jacobian(X, wrt)
    if loss is None:
        return J
    Y = copy.deepcopy(module).forward(X)  # leave the caller's forward cache alone
    dJ_dY = loss.jacobian(Y, target)
    return np.tensordot(dJ_dY, J, axes=dJ_dY.ndim)


def numerical_jacobian(
    module: Any,
    X: Any,
    *,
    wrt: str = "X",
    target: Any = None,
    loss: Loss | None = None,
    eps: float = 1e-6,
    max_entries: int = MAX_JACOBIAN_ENTRIES,
) -> FloatArray:
    """Central finite differences ``(f(a + ε) - f(a - ε)) / 2ε``, entry by entry, in float64.

    Same arguments and result shape as :func:`expanded_jacobian`. Works on a deep copy of
    ``module``; nothing the caller passed is modified. The step actually taken is measured
    after rounding to the module's dtype, so a float32 module is differenced correctly.
    """
    where = "numerical_jacobian"
    _prepared(module, target, loss, where)
    _check_wrt(module, wrt, where)
    h = check_real(eps, f"{where} eps", low=0, low_open=True)
    X = np.array(as_float_array(X, f"{where} X", ndim=None), dtype=np.float64)
    f = _output_function(module, target, loss)
    out_size, in_size = _sizes(module, X, wrt, f)
    _refuse_if_too_large(out_size, in_size, max_entries, where)
    clone = copy.deepcopy(module)
    A = X if wrt in ("X", "pred") else clone.params[wrt]
    out_shape = f(clone, X).shape
    J = np.zeros((out_size, in_size))
    for k, idx in enumerate(np.ndindex(A.shape)):
        original = A[idx]
        A[idx] = original + h
        plus_value = A[idx]
        f_plus = np.asarray(f(clone, X), dtype=np.float64).ravel()
        A[idx] = original - h
        minus_value = A[idx]
        f_minus = np.asarray(f(clone, X), dtype=np.float64).ravel()
        A[idx] = original
        step = float(plus_value) - float(minus_value)
        if not (math.isfinite(step) and step > 0):
            raise JacnetValueError(
                f"{where} eps expects a step that changes {wrt} at its magnitude, got eps={h:g}, "
                f"which {'vanishes' if step == 0 else 'overflows'} at {wrt}{list(idx)} = "
                f"{float(original):.6g}")
        J[:, k] = (f_plus - f_minus) / step
    return J.reshape(out_shape + A.shape)


@dataclass(frozen=True)
class GradientCheck:
    """How one gradient (``dX``, ``dW``...) compares across the three computations.

    ``max_abs_error`` and ``max_rel_error`` are the largest over both references (the
    contracted expanded Jacobian and finite differences); ``worst_index`` is the entry that is
    furthest outside the tolerance, ``worst_reference`` which reference it disagrees with,
    ``backward_value`` and ``reference_value`` the two numbers there.
    """

    module: str
    quantity: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...]
    worst_reference: str
    backward_value: float
    reference_value: float
    jacobian_ok: bool | None
    numerical_ok: bool
    ok: bool


@dataclass
class GradientReport:
    """The result of :func:`check_gradients`: one :class:`GradientCheck` per gradient."""

    checks: list[GradientCheck]
    dtype: str
    rtol: float
    atol: float
    eps: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every gradient agrees with every reference within tolerance."""
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[GradientCheck]:
        """The gradients that disagree."""
        return [c for c in self.checks if not c.ok]

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        header = ("module", "grad", "max abs err", "max rel err", "worst entry", "jacobian",
                  "numerical", "result")
        rows = [header]
        for c in self.checks:
            jac = "n/a" if c.jacobian_ok is None else ("ok" if c.jacobian_ok else "WRONG")
            rows.append((
                c.module,
                c.quantity,
                f"{c.max_abs_error:.2e}",
                f"{c.max_rel_error:.2e}",
                str(c.worst_index),
                jac,
                "ok" if c.numerical_ok else "WRONG",
                "pass" if c.ok else "FAIL",
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"dtype {self.dtype}, rtol {self.rtol:g}, atol {self.atol:g}, "
                     f"finite-difference step {self.eps:g}")
        for c in self.failures:
            lines.append(
                f"{c.module} {c.quantity} is wrong: at {c.worst_index} backward gives "
                f"{c.backward_value:.6g}, the {c.worst_reference} gives {c.reference_value:.6g}"
            )
        lines.extend(self.notes)
        lines.append("all gradients agree" if self.ok else f"{len(self.failures)} gradient(s) wrong")
        return "\n".join(lines)


def _compare(
    backward: FloatArray, reference: FloatArray, rtol: float, atol: float
) -> tuple[float, float, tuple[int, ...], float, bool]:
    """Max abs and rel error, the worst entry, how far outside tolerance it is, and ok."""
    a = np.asarray(backward, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    diff = np.abs(a - b)
    scale = np.maximum(np.abs(a), np.abs(b))
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    # Entries that agree exactly are fine even with atol = 0 (where 0/0 would be NaN).
    with np.errstate(divide="ignore", invalid="ignore"):
        badness = np.where(diff == 0, 0.0, diff / (atol + rtol * scale))
    if not np.all(np.isfinite(badness)):
        badness = np.where(np.isfinite(badness), badness, np.inf)
    worst = np.unravel_index(int(np.argmax(badness)), a.shape) if a.size else ()
    worst_index = tuple(int(i) for i in worst)
    ok = bool(np.all(badness <= 1))
    return float(diff.max(initial=0)), float(rel.max(initial=0)), worst_index, float(
        badness.max(initial=0)), ok


def _label(quantity: str, is_loss: bool) -> str:
    return "dŶ" if is_loss else f"d{quantity}"


def check_gradients(
    module: Any,
    X: Any,
    *,
    target: Any = None,
    dY: Any = None,
    loss: Loss | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    eps: float | None = None,
    rng: np.random.Generator | int | None = None,
    max_entries: int = MAX_JACOBIAN_ENTRIES,
) -> GradientReport:
    """Check a module's closed-form backward against its expanded Jacobian and finite differences.

    Parameters
    ----------
    module : Layer, Loss or Sequential
        What to check; any user subclass of :class:`~jacnet.Layer` or :class:`~jacnet.Loss`.
        It is deep-copied: the caller's module, its caches and grads are left as they were.
    X : array_like, (N, in)
        The input (the prediction, for a loss).
    target : array_like, optional
        Required for a loss, or for a network checked under ``loss``.
    dY : array_like, optional
        Upstream gradient ``∂J/∂Y`` (shape of the output); random normal if omitted.
    loss : Loss, optional
        Check a layer or network under this loss (``dY`` then comes from the loss).
    rtol, atol : float, optional
        Entry ``a`` agrees with reference ``b`` when ``|a - b| <= atol + rtol·max(|a|, |b|)``.
        Defaults follow the compute dtype (float64: 1e-5, 1e-8; float32: 2e-2, 1e-4).
    eps : float, optional
        Finite-difference step; defaults follow the dtype (float64: 1e-6; float32: 1e-2).
    rng : numpy.random.Generator or int, optional
        Source of the random ``dY``; ``None`` means seed 0, so reports are reproducible.

    Returns
    -------
    GradientReport
        ``.ok``, ``.failures`` and a readable table from ``str(report)``.
    """
    where = "check_gradients"
    _prepared(module, target, loss, where)
    X = as_float_array(X, f"{where} X", ndim=None)
    m = copy.deepcopy(module)
    is_loss = isinstance(m, Loss)
    scorer = copy.deepcopy(loss) if loss is not None else None
    notes: list[str] = []

    if is_loss:
        m.forward(X, target)
        closed = {"X": m.backward()}
        compute_dtype = closed["X"].dtype
        upstream = None
    else:
        Y = m.forward(X)
        compute_dtype = Y.dtype
        if scorer is not None:
            if dY is not None:
                raise JacnetValueError(f"{where} dY expects None when a loss is given, got an array")
            scorer.forward(Y, target)
            upstream = scorer.backward()
        elif dY is None:
            generator = as_rng(0 if rng is None else rng, f"{where} rng")
            upstream = generator.standard_normal(Y.shape).astype(Y.dtype)
        else:
            upstream = as_float_array(dY, f"{where} dY", ndim=None, dtype=Y.dtype)
            if upstream.shape != Y.shape:
                raise ShapeError(f"{where} dY expects the output's shape {Y.shape}, "
                                 f"got {upstream.shape}")
        dX = m.backward(upstream)
        closed = {"X": dX}
        for k, p in m.params.items():
            if k in m.grads:
                closed[k] = np.array(m.grads[k])
            else:  # a gradient backward never wrote is wrong everywhere
                closed[k] = np.full(p.shape, np.nan)
                notes.append(f"note: {type(module).__name__}.backward did not fill grads[{k!r}]")

    dtype = np.dtype(compute_dtype)
    default_rtol, default_atol = TOLERANCES.get(dtype, TOLERANCES[np.dtype(np.float64)])
    rtol = default_rtol if rtol is None else check_real(rtol, f"{where} rtol", low=0)
    atol = default_atol if atol is None else check_real(atol, f"{where} atol", low=0)
    step = STEPS.get(dtype, 1e-6) if eps is None else check_real(eps, f"{where} eps", low=0,
                                                                 low_open=True)
    name = type(module).__name__
    checks: list[GradientCheck] = []
    for quantity, grad in closed.items():
        kwargs: dict[str, Any] = {"wrt": quantity, "target": target, "loss": loss,
                                  "max_entries": max_entries}
        numeric = numerical_jacobian(module, X, eps=step, **kwargs)
        try:
            analytic: FloatArray | None = expanded_jacobian(module, X, **kwargs)
        except NotImplementedError as exc:
            analytic = None
            if f"note: {exc}" not in notes:
                notes.append(f"note: {exc}")
        if upstream is not None and scorer is None:
            numeric = np.tensordot(upstream, numeric, axes=upstream.ndim)
            if analytic is not None:
                analytic = np.tensordot(upstream, analytic, axes=upstream.ndim)
        references = {"numerical": numeric}
        if analytic is not None:
            references["jacobian"] = analytic
        results = {}
        for ref_name, ref in references.items():
            if ref.shape != grad.shape:
                raise ShapeError(f"{name}.backward gives {_label(quantity, is_loss)} of shape "
                                 f"{grad.shape}, expected {ref.shape}")
            results[ref_name] = _compare(grad, ref, rtol, atol)
        worst_ref = max(results, key=lambda r: results[r][3])
        abs_err = max(r[0] for r in results.values())
        rel_err = max(r[1] for r in results.values())
        worst_index = results[worst_ref][2]
        checks.append(GradientCheck(
            module=name,
            quantity=_label(quantity, is_loss),
            shape=tuple(grad.shape),
            max_abs_error=abs_err,
            max_rel_error=rel_err,
            worst_index=worst_index,
            worst_reference="expanded Jacobian" if worst_ref == "jacobian" else "finite difference",
            backward_value=float(grad[worst_index]) if grad.size else 0.0,
            reference_value=float(references[worst_ref][worst_index]) if grad.size else 0.0,
            jacobian_ok=results["jacobian"][4] if "jacobian" in results else None,
            numerical_ok=results["numerical"][4],
            ok=all(r[4] for r in results.values()),
        ))
    return GradientReport(checks=checks, dtype=dtype.name, rtol=rtol, atol=atol, eps=step,
                          notes=notes)
