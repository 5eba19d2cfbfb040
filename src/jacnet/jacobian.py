"""Expanded Jacobians, finite differences, and the check that the two agree with backward.

For a module ``Y = f(A)`` the expanded Jacobian is the array ``∂Y/∂A`` of shape
``Y.shape + A.shape``. Every closed-form backward is a contraction of it with the upstream
gradient: ``dA = Σ dY ⊙ ∂Y/∂A`` over the axes of ``Y`` (``numpy.tensordot(dY, J, Y.ndim)``).
:func:`check_gradients` computes each gradient three ways (closed-form backward, expanded
Jacobian contracted with ``dY``, central finite differences) and reports how far apart they are.

Everything here computes in NumPy: a module on another backend (``model.to("torch")``) is
checked on a NumPy deep copy, and tensor inputs are copied to NumPy; the caller's module stays
on its backend, untouched.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jacnet import backend
from jacnet._validation import (
    MAX_JACOBIAN_ENTRIES,
    FloatArray,
    as_float_array,
    as_rng,
    check_jacobian_size,
    check_real,
    describe,
    jacobian_limit,
)
from jacnet.errors import JacnetError, JacnetTypeError, JacnetValueError, ShapeError
from jacnet.layers import Layer, _owner, uses_backward_params
from jacnet.losses import BinaryCrossEntropy, CategoricalCrossEntropy, Loss

__all__ = [
    "MAX_JACOBIAN_ENTRIES",
    "GradientCheck",
    "GradientReport",
    "check_gradients",
    "expanded_jacobian",
    "numerical_jacobian",
]

#: Default tolerances of :func:`check_gradients` by compute dtype: ``(rtol, atol)``.
TOLERANCES = {np.dtype(np.float64): (1e-5, 1e-8), np.dtype(np.float32): (2e-2, 1e-4)}

#: Default finite-difference step of :func:`check_gradients` by compute dtype.
STEPS = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-2}


def _is_network(module: Any) -> bool:
    return hasattr(module, "layers") and hasattr(module, "params")


def _layers(module: Any) -> list[Layer]:
    if _is_network(module):
        return list(module.layers)
    return [module] if isinstance(module, Layer) else []


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


def _on_another_backend(layer: Any) -> bool:
    """True when ``layer`` holds a tensor (its parameters, buffers or any array attribute)."""
    arrays = (*getattr(layer, "params", {}).values(), *getattr(layer, "buffers", {}).values(),
              *vars(layer).values())
    return any(backend.is_torch(A) for A in arrays)


def _on_numpy(module: Any) -> Any:
    """``module`` itself when it lives in NumPy, else a deep copy moved to NumPy (every
    layer's ``to("numpy")``): the checks build their arrays in NumPy, and the caller's module
    stays on its backend as it was."""
    if not any(_on_another_backend(layer) for layer in _layers(module)):
        return module
    clone = copy.deepcopy(module)
    for layer in _layers(clone):
        layer.to("numpy")
    return clone



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


def _input_dtype(module: Any, X: FloatArray) -> np.dtype[Any]:
    """The dtype the module computes in: its parameters' (a float32 layer casts its input), or
    the input's own for a parameterless layer or a loss."""
    params = getattr(module, "params", {})
    for p in params.values():
        return backend.numpy_dtype(p)
    return np.dtype(X.dtype)


def _prepare_copy(module: Any, X: FloatArray, f: Callable[..., FloatArray]) -> tuple[Any, FloatArray]:
    """A deep copy of ``module`` run once on ``X`` with its randomness then fixed (a dropout
    mask stays the same for every finite difference); returns it and its output."""
    clone = copy.deepcopy(module)
    out = f(clone, X)
    for layer in _layers(clone):
        layer.fix_randomness()
    return clone, out


def _sizes(module: Any, X: FloatArray, wrt: str, f: Callable[..., FloatArray]) -> tuple[int, int]:
    out = f(copy.deepcopy(module), X)
    in_size = X.size if wrt in ("X", "pred") else module.params[wrt].size
    return int(out.size), int(in_size)


def _refuse_if_too_large(out_size: int, in_size: int, max_entries: int, what: str) -> None:
    with jacobian_limit(max_entries):
        check_jacobian_size((out_size,), (in_size,), what)


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
    X : array_like, (N, ...)
        The input (or the prediction, for a loss).
    wrt : str
        ``"X"`` for the input, or a parameter name (``"W"``, ``"b"``, ``"0.W"``...).
    target : array_like, optional
        The loss's target.
    loss : Loss, optional
        Put a network or layer under this loss.
    max_entries : int
        Refuse (with :class:`~jacnet.errors.JacobianTooLargeError`) anything larger, the final
        array and every intermediate one, from the shapes alone, before building anything.

    Notes
    -----
    Built by ``module.jacobian``, never by calling ``backward`` and never by automatic
    differentiation, so it can check backward. The module runs in its current mode
    (``training``), on a copy whose randomness (a dropout mask) is fixed after one forward.
    """
    where = "expanded_jacobian"
    _prepared(module, target, loss, where)
    _check_wrt(module, wrt, where)
    module, target = _on_numpy(module), backend.to_numpy(target)
    X = backend.to_numpy(as_float_array(X, f"{where} X", ndim=None))
    f = _output_function(module, target, loss)
    _refuse_if_too_large(*_sizes(module, X, wrt, f), max_entries, where)
    with jacobian_limit(max_entries):
        if isinstance(module, Loss):
            return module.jacobian(X, target)
        clone, Y = _prepare_copy(module, X, lambda m, A: m.forward(A))
        # Before a user's jacobian() builds anything: its result has this shape.
        check_jacobian_size(np.shape(Y), X.shape if wrt == "X" else clone.params[wrt].shape, where)
        J = clone.jacobian(X, wrt)
        if loss is None:
            return J
        dJ_dY = loss.jacobian(Y, target)
        return np.tensordot(dJ_dY, J, axes=dJ_dY.ndim)


@dataclass
class _Differences:
    """Finite differences of every output entry (rows) in every input entry (columns)."""

    central: FloatArray
    forward: FloatArray   # (f(a + h) - f(a)) / h
    backward: FloatArray  # (f(a) - f(a - h)) / h
    magnitude: float      # max |f(a)|: each difference carries about eps·magnitude/h of rounding


def _differences(f: Callable[[], FloatArray], A: FloatArray, h: float, where: str, wrt: str
                 ) -> _Differences:
    """Perturb each entry of ``A`` (the array ``f`` reads, changed in place) by ``±h``.

    The step is measured after rounding to ``A``'s dtype, so a float32 array is differenced
    with the step it really took; a step that vanishes at an entry's magnitude is refused.
    """
    f0 = np.asarray(f(), dtype=np.float64).ravel()
    shape = (f0.size, A.size)
    central, forward, backward = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for k, idx in enumerate(np.ndindex(A.shape)):
        original = A[idx]
        try:
            A[idx] = original + h
            plus_value = A[idx]
            f_plus = np.asarray(f(), dtype=np.float64).ravel()
            A[idx] = original - h
            minus_value = A[idx]
            f_minus = np.asarray(f(), dtype=np.float64).ravel()
        except JacnetError as exc:  # a step left the module's domain (a probability past 1...)
            raise JacnetValueError(
                f"{where} X expects every entry at least eps={h:g} inside the module's domain, "
                f"got {wrt}{list(idx)} = {float(original)!r}, where a step of ±{h:g} leaves it: "
                f"{exc}") from exc
        finally:
            A[idx] = original
        up, down = float(plus_value) - float(original), float(original) - float(minus_value)
        if not (math.isfinite(up + down) and up > 0 and down > 0):
            raise JacnetValueError(
                f"{where} eps expects a step that changes {wrt} at its magnitude, got eps={h:g}, "
                f"which {'vanishes' if min(up, down) <= 0 else 'overflows'} at {wrt}{list(idx)} = "
                f"{float(original):.6g} in {A.dtype}")
        central[:, k] = (f_plus - f_minus) / (up + down)
        forward[:, k] = (f_plus - f0) / up
        backward[:, k] = (f0 - f_minus) / down
    return _Differences(central, forward, backward, float(np.max(np.abs(f0), initial=0.0)))


def numerical_jacobian(
    module: Any,
    X: Any,
    *,
    wrt: str = "X",
    target: Any = None,
    loss: Loss | None = None,
    eps: float | None = None,
    max_entries: int = MAX_JACOBIAN_ENTRIES,
) -> FloatArray:
    """Central finite differences ``(f(a + ε) - f(a - ε)) / 2ε``, entry by entry.

    Same arguments and result shape as :func:`expanded_jacobian`. Works on a deep copy of
    ``module`` (its randomness fixed after one forward); nothing the caller passed is
    modified. ``X`` (or the parameter) is perturbed in the dtype the module computes in, and
    the step actually taken is measured after rounding, so a float32 module is differenced
    with the step it really took; a step that vanishes at an entry's magnitude (``eps=1e-6``
    at ``x = 100`` in float32) raises instead of giving zeros. ``eps`` defaults to the
    dtype's step (float64: 1e-6; float32: 1e-2, where rounding would swamp a smaller one: a
    float32 module's differences are good to about 1e-3 relative; :func:`check_gradients`
    compares on a float64 copy instead). Differences are accumulated in float64.
    """
    where = "numerical_jacobian"
    _prepared(module, target, loss, where)
    _check_wrt(module, wrt, where)
    module, target = _on_numpy(module), backend.to_numpy(target)
    X = backend.to_numpy(as_float_array(X, f"{where} X", ndim=None))
    X = np.array(X, dtype=_input_dtype(module, X))
    # The default step follows the dtype: 1e-6 is lost in float32 rounding (eps·|f|/h ≈ 0.1).
    h = (STEPS.get(X.dtype, 1e-6) if eps is None
         else check_real(eps, f"{where} eps", low=0, low_open=True))
    f = _output_function(module, target, loss)
    out_size, in_size = _sizes(module, X, wrt, f)
    _refuse_if_too_large(out_size, in_size, max_entries, where)
    clone, out = _prepare_copy(module, X, f)
    A = X if wrt in ("X", "pred") else clone.params[wrt]
    diff = _differences(lambda: f(clone, X), A, h, where, wrt)
    return diff.central.reshape(np.shape(out) + A.shape)


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
    kinks: int = 0


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
                ("ok" if c.numerical_ok else "WRONG")
                + (f" ({c.kinks} kink{'s' if c.kinks > 1 else ''})" if c.kinks else ""),
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
    backward: FloatArray, reference: FloatArray, rtol: float, atol: float,
    bounds: tuple[FloatArray, FloatArray] | None = None,
) -> tuple[float, float, tuple[int, ...], float, bool, int]:
    """Max abs and rel error, the worst entry, how far outside tolerance it is, ok, and the
    number of entries excused as kinks.

    With ``bounds`` (the one-sided finite differences ``f'(a⁺)``, ``f'(a⁻)``), an entry outside
    tolerance whose one-sided slopes differ (the step straddles a point where the function is
    not differentiable, such as a ReLU at 0) and bracket the backward value is a kink, not an
    error: any value between the two slopes is a valid (sub)gradient there.
    """
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
    kinks = 0
    if bounds is not None:
        right, left = (np.asarray(x, dtype=np.float64) for x in bounds)
        low, high = np.minimum(left, right), np.maximum(left, right)
        slack = atol + rtol * np.maximum(np.abs(low), np.abs(high))
        # One-sided slopes carry an O(h·f'') truncation error; a tenth of the jump absorbs it
        # (backward sits on one side of the jump, a 1% error of a smooth gradient does not).
        jump = high - low
        margin = slack + 0.1 * jump
        bracketed = (a >= low - margin) & (a <= high + margin)
        # A jump of a tenth of the slopes themselves is a corner, not curvature: the point sits
        # on it (several ReLUs at exactly 0, a max-pool tie) and no step resolves it; backward's
        # value there follows the subgradient convention, which the Jacobian reference checks.
        # (A smooth entry's slopes differ by about 2h·f'', tiny next to the gradient's scale,
        # even where its own slope is near 0: the second bound keeps such entries judged.)
        corner = ((jump > 0.1 * np.maximum(np.maximum(np.abs(low), np.abs(high)), np.abs(a)))
                  & (jump > 1e-4 * float(np.max(np.abs(b), initial=0.0))))
        kink = (badness > 1) & (jump > slack) & (bracketed | corner)
        kinks = int(np.count_nonzero(kink))
        badness = np.where(kink, 0.0, badness)
    worst = np.unravel_index(int(np.argmax(badness)), a.shape) if a.size else ()
    worst_index = tuple(int(i) for i in worst)
    ok = bool(np.all(badness <= 1))
    return (float(diff.max(initial=0)), float(rel.max(initial=0)), worst_index,
            float(badness.max(initial=0)), ok, kinks)


def _label(quantity: str, is_loss: bool) -> str:
    return "dŶ" if is_loss else f"d{quantity}"


def _least_precise(m: Any, X: FloatArray, Y: FloatArray) -> tuple[np.dtype[Any], str]:
    """The least precise dtype any layer of the float64 copy computes in, and who: a layer that
    rounds to float32 (a user's, hard-coded) limits what finite differences can resolve even
    when the output is float64 again."""
    dtype, who = np.dtype(Y.dtype), type(m).__name__
    if _is_network(m):
        A: Any = X
        for layer in copy.deepcopy(m.layers):
            layer.fix_randomness()
            A = layer.forward(A)
            if np.dtype(A.dtype).itemsize < dtype.itemsize:
                dtype, who = np.dtype(A.dtype), type(layer).__name__
    return dtype, who


def _stale_jacobian(cls: type) -> bool:
    """True when ``cls`` overrides ``forward`` below the class its ``jacobian`` comes from."""
    forward, jacobian = _owner(cls, "forward"), _owner(cls, "jacobian")
    return jacobian is not Layer and forward is not jacobian and issubclass(forward, jacobian)


def _clipped(loss: Loss, P: Any) -> int:
    """How many entries of the prediction ``P`` a loss on probabilities clips (within ``ε`` of
    0 or 1): the clipped loss is flat there, its gradient (by the clipping policy) is not."""
    if not isinstance(loss, (BinaryCrossEntropy, CategoricalCrossEntropy)):
        return 0
    P = np.asarray(P)
    eps = np.finfo(P.dtype).eps
    return int(np.count_nonzero((eps > P) | (1 - eps < P)))


def _base(label: str) -> str:
    """The parameter a gradient label names (``"0.W (backward_params)"`` → ``"0.W"``)."""
    return label.split(" ", 1)[0]


def _grads_without_dX(m: Any, X: FloatArray, upstream: FloatArray) -> dict[str, FloatArray]:
    """The grads as ``fit`` computes them: a network's ``backward(dY, input_grad=False)``, a
    layer's ``backward_params`` (where it is the method a network would call)."""
    if _is_network(m):
        m.forward(X)
        m.backward(upstream, input_grad=False)
    elif isinstance(m, Layer) and m.params and uses_backward_params(m):
        m.forward(X)
        m.backward_params(upstream)
    else:
        return {}
    return {k: np.array(g) for k, g in m.grads.items()}


def _float64_copy(module: Any) -> Any:
    """A deep copy of ``module`` whose parameters are float64 (``Layer.astype``), whatever
    dtype the module trains in, a user's subclass included."""
    clone = copy.deepcopy(module)
    for layer in _layers(clone):
        layer.astype(np.float64)
    return clone


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

    As PyTorch's ``gradcheck`` and JAX's ``check_grads`` do, the comparison runs in float64 on
    a float64 copy of the module, whatever dtype it trains in (a user's subclass included):
    float32 rounding would otherwise swamp the finite differences. Where a finite-difference
    step straddles a point where the function is not differentiable (a ReLU input within ``eps``
    of 0), and backward lies between the two one-sided slopes, the entry is reported as such in
    a note, not as an error.

    Parameters
    ----------
    module : Layer, Loss or Sequential
        What to check; any user subclass of :class:`~jacnet.Layer` or :class:`~jacnet.Loss`.
        It is deep-copied: the caller's module, its caches and grads are left as they were.
        It runs in its current mode (``training``), its randomness fixed after one forward.
    X : array_like, (N, ...)
        The input (the prediction, for a loss).
    target : array_like, optional
        Required for a loss, or for a network checked under ``loss``.
    dY : array_like, optional
        Upstream gradient ``∂J/∂Y`` (shape of the output); random normal if omitted.
    loss : Loss, optional
        Check a layer or network under this loss (``dY`` then comes from the loss).
    rtol, atol : float, optional
        Entry ``a`` agrees with reference ``b`` when ``|a - b| <= atol + rtol·max(|a|, |b|)``.
        Defaults: 1e-5 and 1e-8 (float64).
    eps : float, optional
        Finite-difference step; default 1e-6.
    rng : numpy.random.Generator or int, optional
        Source of the random ``dY``; ``None`` means seed 0, so reports are reproducible.

    Returns
    -------
    GradientReport
        ``.ok``, ``.failures`` and a readable table from ``str(report)``.
    """
    where = "check_gradients"
    _prepared(module, target, loss, where)
    X = backend.to_numpy(as_float_array(X, f"{where} X", ndim=None))
    target, dY = backend.to_numpy(target), backend.to_numpy(dY)
    trained_dtype = _input_dtype(module, X)
    m = _float64_copy(_on_numpy(module))
    X = np.array(X, dtype=np.float64)
    is_loss = isinstance(m, Loss)
    scorer = copy.deepcopy(loss) if loss is not None else None
    notes: list[str] = []
    name = type(module).__name__

    clipped = 0  # predictions where a probability loss's clipping makes it flat
    if is_loss:
        m.forward(X, target)
        clipped = _clipped(m, X)
        closed = {"X": np.array(m.backward())}
        compute_dtype = closed["X"].dtype
        upstream = None
    else:
        Y = m.forward(X)
        for layer in _layers(m):
            layer.fix_randomness()
        compute_dtype, rounding = _least_precise(m, X, Y)
        if scorer is not None:
            if dY is not None:
                raise JacnetValueError(f"{where} dY expects None when a loss is given, got an array")
            scorer.forward(Y, target)
            clipped = _clipped(scorer, Y)
            upstream = scorer.backward()
        elif dY is None:
            generator = as_rng(0 if rng is None else rng, f"{where} rng")
            upstream = generator.standard_normal(Y.shape).astype(Y.dtype)
        else:
            upstream = as_float_array(dY, f"{where} dY", ndim=None, dtype=Y.dtype)
            if upstream.shape != Y.shape:
                raise ShapeError(f"{where} dY expects the output's shape {Y.shape}, "
                                 f"got {tuple(upstream.shape)}")
        dX = m.backward(upstream)
        closed = {"X": np.array(dX)}
        for k, p in m.params.items():
            if k in m.grads:
                closed[k] = np.array(m.grads[k])
            else:  # a gradient backward never wrote is wrong everywhere
                closed[k] = np.full(p.shape, np.nan)
                notes.append(f"note: {name}.backward did not fill grads[{k!r}]")
        # fit fills the first layer's grads without its dX (backward_params): check that path too.
        for k, g in _grads_without_dX(m, X, upstream).items():
            if k in closed and not np.array_equal(g, closed[k], equal_nan=True):
                closed[f"{k} (backward_params)"] = g

    if clipped:
        notes.append(
            f"note: {clipped} predicted probabilit{'y lies' if clipped == 1 else 'ies lie'} within "
            "ε of 0 or 1, where the loss clips them (see jacnet.losses): the clipped loss is flat "
            "there while its gradient keeps the formula's slope, so finite differences cannot "
            "judge backward and only the expanded Jacobian is compared (use the fused loss on "
            "logits, or inputs that do not saturate)")
    dtype = np.dtype(compute_dtype)
    if trained_dtype != np.float64 and dtype == np.float64:
        notes.append(f"note: compared on a float64 copy of the {trained_dtype.name} {name}")
    elif dtype != np.float64:
        notes.append(f"note: {rounding} computes in {dtype.name} even on a float64 copy; "
                     f"{dtype.name} tolerances and step used (a mistake smaller than them "
                     "cannot be seen)")
    default_rtol, default_atol = TOLERANCES.get(dtype, TOLERANCES[np.dtype(np.float64)])
    rtol = default_rtol if rtol is None else check_real(rtol, f"{where} rtol", low=0)
    atol = default_atol if atol is None else check_real(atol, f"{where} atol", low=0)
    step = STEPS.get(dtype, 1e-6) if eps is None else check_real(eps, f"{where} eps", low=0,
                                                                 low_open=True)
    stale = [layer for layer in _layers(m) if _stale_jacobian(type(layer))]
    for layer in stale:
        notes.append(
            f"note: {type(layer).__name__} overrides forward but inherits jacobian() from "
            f"{type(layer).__mro__[1].__name__}, which describes that class's function: the "
            "expanded Jacobian is not compared (override jacobian too)")
    f = _output_function(m, target, loss)
    # Every size is refused up front, before any finite difference is taken.
    for quantity in closed:
        _refuse_if_too_large(*_sizes(m, X, _base(quantity), f), max_entries, where)
    checks: list[GradientCheck] = []
    for label, grad in closed.items():
        quantity = _base(label)
        kwargs: dict[str, Any] = {"wrt": quantity, "target": target, "loss": loss,
                                  "max_entries": max_entries}
        try:  # first: it refuses oversized intermediates from their shapes
            analytic: FloatArray | None = expanded_jacobian(m, X, **kwargs)
        except NotImplementedError as exc:
            analytic = None
            if f"note: {exc}" not in notes:
                notes.append(f"note: {exc}")
        if stale:
            analytic = None
        inputs = np.array(X, dtype=_input_dtype(m, X))
        A = inputs if quantity in ("X", "pred") else m.params[quantity]
        diff = _differences(functools.partial(f, m, inputs), A, step, where, quantity)
        reshape = A.shape
        # The differences' own rounding error (eps·|f|/h per entry, summed over the contraction)
        # is noise, not a disagreement: it joins the absolute tolerance of that comparison.
        spread = 1.0
        if upstream is not None and scorer is None:
            weights = np.asarray(upstream, dtype=np.float64).ravel()
            spread = float(np.sum(np.abs(weights)))
            numeric, right, left = (weights @ d for d in (diff.central, diff.forward, diff.backward))
            if analytic is not None:
                analytic = np.tensordot(upstream, analytic, axes=upstream.ndim)
        else:
            numeric, right, left = diff.central[0], diff.forward[0], diff.backward[0]
        numeric, right, left = (x.reshape(reshape) for x in (numeric, right, left))
        references: dict[str, FloatArray] = {"numerical": numeric}
        if analytic is not None:
            references["jacobian"] = analytic
            if clipped:  # finite differences of the clipped loss cannot judge the policy's slope
                del references["numerical"]
        results = {}
        for ref_name, ref in references.items():
            if ref.shape != grad.shape:
                raise ShapeError(f"{name}.backward gives {_label(quantity, is_loss)} of shape "
                                 f"{grad.shape}, expected {ref.shape}")
            bounds = (right, left) if ref_name == "numerical" else None
            noise = 4 * np.finfo(np.float64).eps * diff.magnitude / step * spread
            results[ref_name] = _compare(grad, ref, rtol, atol + (noise if bounds else 0.0), bounds)
        kinks = results["numerical"][5] if "numerical" in results else 0
        if kinks:
            notes.append(
                f"note: {name} {_label(quantity, is_loss)}: {kinks} entr{'y' if kinks == 1 else 'ies'} "
                f"where the finite difference (step {step:g}) straddles a point where the function "
                "is not differentiable (a ReLU input within the step of 0, a max-pool tie): the "
                "one-sided slopes differ there, so finite differences cannot judge backward "
                "(the expanded Jacobian, where there is one, still does)")
        worst_ref = max(results, key=lambda r: results[r][3])
        abs_err = max(r[0] for r in results.values())
        rel_err = max(r[1] for r in results.values())
        worst_index = results[worst_ref][2]
        checks.append(GradientCheck(
            module=name,
            quantity=_label(label, is_loss),
            shape=tuple(grad.shape),
            max_abs_error=abs_err,
            max_rel_error=rel_err,
            worst_index=worst_index,
            worst_reference="expanded Jacobian" if worst_ref == "jacobian" else "finite difference",
            backward_value=float(grad[worst_index]) if grad.size else 0.0,
            reference_value=float(references[worst_ref][worst_index]) if grad.size else 0.0,
            jacobian_ok=results["jacobian"][4] if "jacobian" in results else None,
            numerical_ok=results["numerical"][4] if "numerical" in results else True,
            ok=all(r[4] for r in results.values()),
            kinks=kinks,
        ))
    return GradientReport(checks=checks, dtype=dtype.name, rtol=rtol, atol=atol, eps=step,
                          notes=notes)
