"""``jacnet check``: every gradient three ways, for the built-ins, a user's own class, or a saved
network (``--model FILE``, e.g. one converted from PyTorch with :func:`jacnet.export.from_torch`).

Each gradient is computed by the module's closed-form ``backward``, by its expanded Jacobian
contracted with a random upstream gradient, and by central finite differences;
:func:`jacnet.check_gradients` compares them and this command prints one table. Exit status
0 when every gradient agrees, 1 when any is wrong, 2 for a bad command line or a class that
cannot be imported, built or run.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jacnet._validation import FloatArray, check_jacobian_size
from jacnet.cli._args import count, seed
from jacnet.errors import (
    JacnetError,
    JacnetTypeError,
    JacnetValueError,
    JacobianTooLargeError,
    ShapeError,
)
from jacnet.export import input_dims
from jacnet.io import load
from jacnet.jacobian import (
    MAX_JACOBIAN_ENTRIES,
    STEPS,
    TOLERANCES,
    GradientCheck,
    GradientReport,
    check_gradients,
    expanded_jacobian,
    numerical_jacobian,
)
from jacnet.layers import Layer
from jacnet.losses import (
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Loss,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
)
from jacnet.model import Sequential
from jacnet.registry import LAYERS, LOSSES

__all__ = ["INPUTS", "TARGETS", "add_parsers", "load_class", "load_model_example", "run"]

#: ``--target`` kinds for a loss: integer labels, one-hot rows, 0/1 entries, real numbers.
TARGETS = ("labels", "onehot", "binary", "real")

#: ``--input`` kinds: the values of ``X`` (or of a loss's prediction).
INPUTS = ("normal", "positive", "probabilities")

#: Batch size of the built-in checks.
BATCH = 4

#: Default batch of ``--model``: a network's expanded Jacobians grow with N².
MODEL_BATCH = 2

_SPEC = re.compile(r"^(?P<module>[^:]+):(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


# Command line -------------------------------------------------------------------------------


def _shape(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX×,]\s*(\d+)\s*", text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise argparse.ArgumentTypeError(f"expects NxK with positive integers like 4x3, got {text!r}")
    return int(match[1]), int(match[2])


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expects a JSON object like '{{\"k\": 1}}', got {text!r} "
                                         f"({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expects a JSON object like '{{\"k\": 1}}', got {text!r}")
    return value


def add_parsers(sub: Any) -> None:
    """Add ``jacnet check`` to the ``jacnet`` subcommands."""
    parser = sub.add_parser(
        "check",
        help="check backward passes against expanded Jacobians and finite differences",
        description=(
            "Check closed-form backward passes three ways: against the expanded Jacobian\n"
            "(contracted with a random upstream gradient) and against central finite differences.\n"
            "Without MODULE:CLASS, checks every built-in layer and loss; with --model FILE, a saved\n"
            "network (one trained here, or converted with jacnet.export.from_torch and saved with\n"
            "jacnet.save) on a small random batch. Exit status 0 when all gradients agree, 1 when\n"
            "any is wrong, 2 on errors."
        ),
        epilog=(
            "examples:\n"
            "  jacnet check\n"
            "  jacnet check --dtype float32\n"
            "  jacnet check my_layers:Scale --shape 4x3\n"
            "  jacnet check --model runs/digits/model.jacnet --batch 2\n"
            "  jacnet check my_losses:Huber --shape 5x2 --args '{\"delta\": 1.0}' --target real"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", nargs="?", metavar="MODULE:CLASS",
                        help="your own Layer or Loss subclass, e.g. my_layers:Scale (imported from the "
                             "current directory) or path/to/file.py:Scale")
    parser.add_argument("--model", type=Path, metavar="FILE",
                        help="a jacnet model file: check the whole network, every parameter, in --dtype")
    parser.add_argument("--batch", type=count, metavar="N",
                        help=f"--model: samples in the random batch (default: {MODEL_BATCH})")
    parser.add_argument("--shape", type=_shape, metavar="NxK",
                        help="shape of X (or of a loss's prediction) for MODULE:CLASS (default: 4x3)")
    parser.add_argument("--args", type=_json_object, metavar="JSON",
                        help="constructor keyword arguments for MODULE:CLASS, as a JSON object")
    parser.add_argument("--target", choices=TARGETS,
                        help="for a Loss: integer labels, one-hot rows, 0/1 entries or real numbers "
                             "(default: what the built-in it subclasses takes, else real)")
    parser.add_argument("--input", choices=INPUTS, dest="values",
                        help="values of X or of the prediction: ±[0.25, 2] (kept away from 0), "
                             "[0.25, 2], or [0.2, 0.8] (default: probabilities for losses on "
                             "probabilities, else normal)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="compute dtype; tolerances and the finite-difference step follow it "
                             "(default: float64)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the random inputs (default: 0)")
    parser.set_defaults(run=run)


# Inputs ---------------------------------------------------------------------------------------


def _values(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> FloatArray:
    """Random inputs away from kinks (0 for ReLU) and from saturation."""
    if kind == "positive":
        return rng.uniform(0.25, 2.0, shape)
    if kind == "probabilities":
        return rng.uniform(0.2, 0.8, shape)
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.25, 2.0, shape)


def _target(rng: np.random.Generator, shape: tuple[int, int], kind: str) -> Any:
    N, K = shape
    if kind == "labels":
        return rng.integers(0, K, N)
    if kind == "onehot":
        return np.eye(K)[rng.integers(0, K, N)]
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(np.float64)
    return rng.standard_normal(shape)


def _default_target(cls: type) -> str:
    if issubclass(cls, (CategoricalCrossEntropy, SoftmaxCrossEntropy)):
        return "labels"
    if issubclass(cls, (BinaryCrossEntropy, SigmoidBinaryCrossEntropy)):
        return "binary"
    return "real"


def _default_values(cls: type) -> str:
    return "probabilities" if issubclass(cls, (BinaryCrossEntropy, CategoricalCrossEntropy)) else "normal"


@dataclass
class Case:
    """One module to check, with its input (and target, for a loss)."""

    module: Layer | Loss | Sequential
    X: FloatArray
    target: Any = None


def builtin_cases(rng: np.random.Generator, dtype: np.dtype[Any]) -> list[Case]:
    """Every registered built-in layer and loss on its own small example input, kept away from
    kinks and saturation (``example`` of each class, see :mod:`jacnet.registry`)."""
    cases = []
    for layer_class in LAYERS.values():
        layer, X = layer_class.example(rng, dtype)
        cases.append(Case(layer, X))
    for loss_class in LOSSES.values():
        loss, pred, target = loss_class.example(rng, dtype)
        cases.append(Case(loss, pred, target))
    return cases


# A saved network ----------------------------------------------------------------------------------


def _in_dtype(model: Sequential, dtype: np.dtype[Any]) -> Sequential:
    """A copy of ``model`` computing in ``dtype``, its weights converted (float32 → float64 exactly)."""
    clone = copy.deepcopy(model)
    for layer in clone.layers:
        layer.astype(dtype)
    return clone


#: Sizes tried on a network's free input axes (a sequence's length, an image's sides).
INPUT_SIZES = range(3, 65)


def _input_shape(model: Sequential, command: str) -> tuple[int, ...]:
    """One sample's shape: the sizes the layers fix (:func:`jacnet.export.input_dims`: the
    first layer's features or channels), and on the free axes (spatial sizes; the features of
    a network of activations) the smallest size from 3 on that the whole network takes."""
    dims = input_dims(model)
    for size in INPUT_SIZES:
        shape = tuple(d if isinstance(d, int) else size for d in dims)
        try:
            model.predict(np.zeros((1, *shape), dtype=model.dtype))
        except JacnetError:  # the sizes do not fit (a window larger than the input, a Flatten
            continue         # before an Affine of another width): try the next
        return shape
    sample = ", ".join(map(str, dims))
    raise JacnetValueError(f"{command} --model expects a network that takes (N, {sample}) with the "
                           f"free sizes from {INPUT_SIZES.start} to {INPUT_SIZES.stop - 1}, got one "
                           "that takes none of them")


def load_model_example(path: Path, batch: int, dtype: np.dtype[Any], rng: np.random.Generator,
                       command: str) -> tuple[Sequential, FloatArray]:
    """The network in model file ``path`` (in ``dtype``) and a random ``(batch, *sample)`` input,
    the sample's shape from the network's layers (:func:`_input_shape`).

    Refuses with :class:`JacobianTooLargeError` a network whose expanded Jacobians (the chain's
    intermediate products included) would exceed ``MAX_JACOBIAN_ENTRIES`` entries at this batch.
    """
    model = _in_dtype(load(path), dtype)
    X = _values(rng, (batch, *_input_shape(model, command)), "normal").astype(dtype)
    # Sequential.jacobian multiplies ∂(layer l's output)/∂A into the chain for every layer l from
    # A's own on: the largest of those products is what materialising costs.
    sizes, A = [], X
    for layer in model.layers:
        A = copy.deepcopy(layer).forward(A)
        sizes.append(A.size)
    arguments = [("X", 0, X.size)] + [(f"{i}.{k}", i, p.size) for i, layer in enumerate(model.layers)
                                      for k, p in layer.params.items()]
    wrt, start, size = max(arguments, key=lambda a: max(sizes[a[1]:]) * a[2])
    entries = max(sizes[start:]) * size
    if entries > MAX_JACOBIAN_ENTRIES:
        # Entries grow with N for a parameter, with N² for X.
        single = entries // (batch * batch if wrt == "X" else batch)
        hint = (f"--batch 1 gives {single:,}" if single <= MAX_JACOBIAN_ENTRIES and batch > 1
                else f"even --batch 1 gives {single:,}: too large to materialise")
        raise JacobianTooLargeError(
            f"{command} --model expects a network whose expanded Jacobians have at most "
            f"{MAX_JACOBIAN_ENTRIES:,} entries, got {entries:,} for {wrt} at --batch {batch} ({hint})")
    return model, X


# Loading a user's class ---------------------------------------------------------------------------


def _import(module_name: str) -> Any:
    """Import ``module_name`` (dotted) or a ``.py`` file, with the current directory importable."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise JacnetValueError(f"jacnet check MODULE:CLASS expects an existing .py file, "
                                   f"got {module_name!r} (no such file)")
        stem = re.sub(r"\W", "_", path.stem)
        spec = importlib.util.spec_from_file_location(stem, path)
        if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
            raise JacnetValueError(f"jacnet check cannot import {module_name!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[stem] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[stem]
            raise JacnetValueError(f"importing {module_name} raised {_describe_exception(exc)}") from exc
        return module
    if not _DOTTED.match(module_name):
        raise JacnetValueError(f"jacnet check MODULE:CLASS expects a dotted module name or a .py file "
                               f"before ':', got {module_name!r}")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise JacnetValueError(
                f"jacnet check MODULE:CLASS expects an importable module, got {module_name!r}: no module "
                f"named {exc.name!r} in the current directory {cwd} or on sys.path") from None
        raise JacnetValueError(f"importing {module_name} raised {_describe_exception(exc)}") from exc
    except Exception as exc:
        raise JacnetValueError(f"importing {module_name} raised {_describe_exception(exc)}") from exc


def load_class(spec: str) -> type[Layer] | type[Loss]:
    """Import the ``Layer`` or ``Loss`` subclass that ``spec`` (``module:Class``) names.

    Parameters
    ----------
    spec : str
        ``package.module:ClassName`` (imported with the current directory on ``sys.path``)
        or ``path/to/file.py:ClassName``.

    Returns
    -------
    type
        The class, a subclass of :class:`jacnet.Layer` or :class:`jacnet.Loss`.

    Raises
    ------
    JacnetValueError
        For a malformed spec, a module that cannot be imported or a missing class.
    JacnetTypeError
        When the name is not a ``Layer`` or ``Loss`` subclass.
    """
    match = _SPEC.match(spec.strip())
    if not match:
        raise JacnetValueError(f"jacnet check MODULE:CLASS expects a spec like my_layers:MyLayer, "
                               f"got {spec!r}")
    module = _import(match["module"])
    target: Any = module
    for part in match["name"].split("."):
        if not hasattr(target, part):
            found = sorted(n for n, v in vars(module).items() if isinstance(v, type)
                           and issubclass(v, (Layer, Loss)) and v.__module__ == module.__name__)
            listing = f"; it defines {', '.join(found)}" if found else ""
            raise JacnetValueError(f"jacnet check MODULE:CLASS expects a class in {match['module']}, "
                                   f"got no {match['name']!r} there{listing}")
        target = getattr(target, part)
    if not (isinstance(target, type) and issubclass(target, (Layer, Loss))):
        what = f"class {target.__name__}" if isinstance(target, type) else type(target).__name__
        raise JacnetTypeError(f"jacnet check MODULE:CLASS expects a subclass of jacnet.Layer or "
                              f"jacnet.Loss, got {what} ({spec})")
    return target


def _describe_exception(exc: BaseException) -> str:
    """``TypeError: message (at file.py:12 in backward)``, naming the innermost user frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    here = str(Path(__file__).resolve().parents[1])
    user = [f for f in frames if not f.filename.startswith(here) and "/numpy/" not in f.filename
            and "importlib" not in f.filename and "<frozen" not in f.filename]
    where = ""
    if user:
        frame = user[-1]
        where = f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}{': ' + text if text else ''}{where}"


def _build(cls: type[Layer] | type[Loss], kwargs: dict[str, Any], dtype: np.dtype[Any], spec: str) -> Any:
    kwargs = dict(kwargs)
    try:
        accepts_dtype = "dtype" in inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        accepts_dtype = False
    given = json.dumps(kwargs)
    if accepts_dtype and "dtype" not in kwargs:
        kwargs["dtype"] = dtype.name
        given += f" (and dtype={dtype.name!r})"
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise JacnetValueError(f"{spec} could not be built from --args {given}: "
                               f"{_describe_exception(exc)}") from exc


# Reporting ----------------------------------------------------------------------------------------


def _yes_no(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "WRONG")


def format_table(checks: Sequence[GradientCheck]) -> str:
    """One aligned table: module, gradient, errors, worst entry, each reference, pass/fail."""
    header = ("module", "grad", "max abs err", "max rel err", "worst entry", "vs jacobian",
              "vs finite diff", "result")
    rows = [header]
    for c in checks:
        rows.append((c.module, c.quantity, f"{c.max_abs_error:.2e}", f"{c.max_rel_error:.2e}",
                     str(c.worst_index), _yes_no(c.jacobian_ok), _yes_no(c.numerical_ok),
                     "pass" if c.ok else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _wrt(quantity: str, module: Any) -> str:
    name = quantity[1:] if quantity.startswith("d") else quantity
    return "X" if isinstance(module, Loss) or name not in getattr(module, "params", {}) else name


def _explain(case: Case, check: GradientCheck, report: GradientReport, dY: Any) -> list[str]:
    """Where a wrong gradient is wrong: the diagnosis, a map of the wrong entries, a hint."""
    module, wrt = case.module, _wrt(check.quantity, case.module)
    lines = [f"{check.module} {check.quantity} is wrong: at {check.quantity}{list(check.worst_index)} "
             f"backward gives {check.backward_value:.6g}, the {check.worst_reference} gives "
             f"{check.reference_value:.6g}"]
    if check.jacobian_ok is None:
        lines.append("  backward disagrees with finite differences (the class has no jacobian() "
                     "to compare with)")
    elif not check.numerical_ok and not check.jacobian_ok:
        lines.append("  backward disagrees with both finite differences and the expanded Jacobian: "
                     "the backward pass is wrong")
    elif not check.numerical_ok:
        lines.append("  backward agrees with the class's own jacobian() but not with finite "
                     "differences: both share the mistake")
    else:
        lines.append("  backward agrees with finite differences: the class's jacobian() is what is wrong")
    # Recompute the backward gradient and the finite-difference reference to map every bad entry.
    m = copy.deepcopy(module)
    try:
        if isinstance(m, Loss):
            m.forward(case.X, case.target)
            grad = np.asarray(m.backward(), dtype=np.float64)
            ref = np.asarray(numerical_jacobian(module, case.X, target=case.target, eps=report.eps))
        else:
            m.forward(case.X)
            dX = m.backward(dY)
            grad = np.asarray(dX if wrt == "X" else m.grads[wrt], dtype=np.float64)
            J = numerical_jacobian(module, case.X, wrt=wrt, eps=report.eps)
            ref = np.tensordot(np.asarray(dY, dtype=np.float64), J, axes=np.ndim(dY))
            if not check.jacobian_ok and check.numerical_ok:
                J = expanded_jacobian(module, case.X, wrt=wrt)
                ref = np.tensordot(np.asarray(dY, dtype=np.float64), J, axes=np.ndim(dY))
    except Exception:  # the table already says what is wrong; the map is a bonus
        return lines
    if grad.shape != ref.shape:
        return lines
    diff = np.abs(grad - ref)
    bad = diff > report.atol + report.rtol * np.maximum(np.abs(grad), np.abs(ref))
    lines.append(f"  wrong at {int(bad.sum())} of {bad.size} entries of {check.quantity} "
                 f"(shape {grad.shape}; x = wrong, . = right):")
    if grad.ndim <= 2 and grad.size <= 400:
        for row in np.atleast_2d(bad):
            lines.append("    " + " ".join("x" if b else "." for b in row))
    nonzero = np.abs(ref) > 1e-12
    if nonzero.any():
        ratios = grad[nonzero] / ref[nonzero]
        r = float(np.median(ratios))
        if np.allclose(ratios, r, rtol=1e-3) and abs(r - 1) > 1e-3:
            lines.append(f"  backward = {r:.4g} × the reference at every entry: a constant factor is off")
            N = case.X.shape[0]
            if np.isclose(r, 1 / N, rtol=1e-3):
                lines.append(f"  (1/N with N = {N}: a mean where a sum belongs?)")
            elif np.isclose(r, N, rtol=1e-3):
                lines.append(f"  (N = {N}: a sum where a mean belongs?)")
            elif np.isclose(r, -1, rtol=1e-3):
                lines.append("  (the sign)")
    return lines


def _float32_note(reports: Sequence[GradientReport]) -> list[str]:
    f32, f64 = np.finfo(np.float32), np.finfo(np.float64)
    rtol32, atol32 = TOLERANCES[np.dtype(np.float32)]
    rtol64, atol64 = TOLERANCES[np.dtype(np.float64)]
    h32, h64 = STEPS[np.dtype(np.float32)], STEPS[np.dtype(np.float64)]
    rel = sorted(c.max_rel_error for r in reports for c in r.checks)
    digits32, digits64 = round(-np.log10(f32.eps)), round(-np.log10(f64.eps))
    lines = [
        "",
        "What float32 can resolve:",
        f"  machine eps {f32.eps:.3g}: about {digits32} significant digits (float64: {f64.eps:.3g}, "
        f"about {digits64})",
        f"  finite-difference step h = {h32:g} (float64: {h64:g}): truncation error ~h² = {h32 ** 2:.0e}, "
        f"rounding error ~eps/h = {f32.eps / h32:.0e}",
        "  so relative errors up to ~1e-4 are the check's own noise: a mistake smaller than that is "
        "invisible in float32",
        f"  tolerances: rtol {rtol32:g}, atol {atol32:g} (float64: rtol {rtol64:g}, atol {atol64:g})",
    ]
    if rel:
        lines.append(f"  observed here: max rel error median {float(np.median(rel)):.1e}, largest "
                     f"{rel[-1]:.1e} over {len(rel)} gradients (float64: 1e-9 or less)")
    return lines


# Running ------------------------------------------------------------------------------------------


def _guarded(name: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, turning any exception but jacnet's into a one-line error."""
    try:
        return call(*args, **kwargs)
    except JacnetError:
        raise
    except Exception as exc:
        raise JacnetValueError(f"checking {name} raised {_describe_exception(exc)}") from exc


def _run_cases(
    cases: Sequence[Case], rng: np.random.Generator
) -> tuple[list[GradientReport], list[str], list[tuple[str, str]]]:
    """Check every case; return the reports, the explanations, and gradients that are missing or
    of the wrong shape (wrong too, but with no numbers to put in the table)."""
    reports: list[GradientReport] = []
    details: list[str] = []
    broken: list[tuple[str, str]] = []
    for case in cases:
        module = case.module
        name = type(module).__name__
        dY = None
        if not isinstance(module, Loss):
            shape: tuple[int, ...] = _guarded(name, _forward_shape, module, case.X)
            dY = rng.standard_normal(shape).astype(case.X.dtype)
        try:
            report: GradientReport = _guarded(name, check_gradients, module, case.X,
                                              target=case.target, dY=dY)
        except ShapeError as exc:
            match = re.search(r"\.backward gives (\S+) of shape", str(exc))
            if not match:
                raise
            broken.append((f"{name} {match[1]}", f"{name} {match[1]} is wrong: {exc}"))
            continue
        reports.append(report)
        for check in report.failures:
            details.extend(_explain(case, check, report, dY))
        details.extend(n for n in report.notes if n not in details)
    return reports, details, broken


def _forward_shape(module: Layer | Sequential, X: FloatArray) -> tuple[int, ...]:
    out = np.asarray(copy.deepcopy(module).forward(X))
    return tuple(out.shape)


def _print_result(reports: Sequence[GradientReport], details: Sequence[str],
                  broken: Sequence[tuple[str, str]], dtype: np.dtype[Any]) -> int:
    checks = [c for r in reports for c in r.checks]
    if checks:
        print(format_table(checks))
    rtol, atol = TOLERANCES[dtype]
    print(f"dtype {dtype.name}, rtol {rtol:g}, atol {atol:g}, finite-difference step {STEPS[dtype]:g}")
    for line in (*(text for _, text in broken), *details):
        print(line)
    if dtype == np.float32 and checks:
        for line in _float32_note(reports):
            print(line)
    wrong = [f"{c.module} {c.quantity}" for c in checks if not c.ok] + [label for label, _ in broken]
    if wrong:
        print(f"{len(wrong)} of {len(checks) + len(broken)} gradients wrong: {', '.join(wrong)}")
        return 1
    print(f"all {len(checks)} gradients agree" if len(checks) > 1 else "the gradient agrees")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``jacnet check``; return 0 when every gradient agrees, 1 otherwise."""
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(args.seed)
    if args.model is None and args.batch is not None:
        raise JacnetValueError("jacnet check --batch expects --model FILE to apply to, got none")
    if args.model is not None:
        if args.spec is not None:
            raise JacnetValueError("jacnet check expects MODULE:CLASS or --model FILE, got both")
        given = [flag for flag, value in (("--shape", args.shape), ("--args", args.args),
                                          ("--target", args.target), ("--input", args.values))
                 if value is not None]
        if given:
            raise JacnetValueError(f"jacnet check {given[0]} expects a MODULE:CLASS to apply to, got "
                                   "--model FILE (a network fixes its own input; see --batch)")
        batch = args.batch if args.batch is not None else MODEL_BATCH
        model, X = load_model_example(args.model, batch, dtype, rng, "jacnet check")
        cases = [Case(model, X)]
        print(f"Checking the network in {args.model} ({len(model.layers)} layers, {model.n_params:,} "
              f"parameters) on a random X of shape {'x'.join(map(str, X.shape))}, {dtype.name}, seed "
              f"{args.seed}:")
        print("dX and every parameter's gradient by backward, by the chained expanded Jacobians, and by")
        print("central finite differences.")
        print()
    elif args.spec is None:
        for option in ("shape", "args", "target", "values"):
            if getattr(args, option) is not None:
                flag = "--input" if option == "values" else f"--{option}"
                raise JacnetValueError(f"jacnet check {flag} expects a MODULE:CLASS to apply to, got none")
        cases = builtin_cases(rng, dtype)
        print(f"Checking every built-in layer and loss on a random batch of {BATCH} ({dtype.name}, "
              f"seed {args.seed}):")
        print("closed-form backward vs the expanded Jacobian contracted with a random upstream gradient,")
        print("and vs central finite differences.")
        print()
    else:
        cls = load_class(args.spec)
        module = _build(cls, args.args or {}, dtype, args.spec)
        shape = args.shape or (4, 3)
        if not issubclass(cls, Loss):  # ∂Y/∂X is at least X.size², refused before X is drawn
            check_jacobian_size(shape, shape, "jacnet check --shape")
        if issubclass(cls, Loss):
            kind = args.target or _default_target(cls)
            X = _values(rng, shape, args.values or _default_values(cls)).astype(dtype)
            cases = [Case(module, X, _target(rng, shape, kind))]
            what = f"prediction of shape {shape[0]}x{shape[1]} ({args.values or _default_values(cls)}), " \
                   f"{kind} target"
        else:
            if args.target is not None:
                raise JacnetValueError(f"jacnet check --target expects a Loss, got {cls.__name__}, a Layer")
            X = _values(rng, shape, args.values or "normal").astype(dtype)
            cases = [Case(module, X)]
            what = f"X of shape {shape[0]}x{shape[1]} ({args.values or 'normal'})"
        print(f"Checking {cls.__name__} from {args.spec} on {what}, {dtype.name}, seed {args.seed}.")
        print()
    reports, details, broken = _run_cases(cases, rng)
    return _print_result(reports, details, broken, dtype)
