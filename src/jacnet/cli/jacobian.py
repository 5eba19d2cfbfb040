"""``jacnet jacobian``: see an expanded Jacobian, its structure, and why nobody materialises it.

For a small random batch the command builds ``∂Y/∂A`` with :func:`jacnet.expanded_jacobian`,
prints it as a labelled ``(N·out) × (N·in)`` matrix (zeros as ``.``), shows that the closed-form
backward equals the Jacobian contracted with a random upstream gradient, and counts what the
same Jacobian would cost at a realistic size against the multiply-adds of the closed form.
With ``--model FILE`` the module is a saved network and the Jacobian its chain over the layers.
"""

from __future__ import annotations

import argparse
import copy
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jacnet._validation import FloatArray, check_jacobian_size
from jacnet.cli._args import count, real, seed
from jacnet.cli.check import load_model_example
from jacnet.errors import JacnetValueError
from jacnet.jacobian import expanded_jacobian
from jacnet.layers import Affine, Layer, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, sigmoid, softmax
from jacnet.losses import (
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Loss,
    MeanSquaredError,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
)
from jacnet.model import Sequential
from jacnet.plots import JacobianMatrix, jacobian_formula, jacobian_matrix

__all__ = ["KINDS", "add_parsers", "format_matrix", "run"]

#: The modules ``jacnet jacobian`` can show.
KINDS = ("affine", "relu", "leaky_relu", "sigmoid", "tanh", "softmax",
         "mse", "bce", "cce", "softmax_ce", "sigmoid_bce")

LAYERS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax}

LOSSES = {"mse": MeanSquaredError, "bce": BinaryCrossEntropy, "cce": CategoricalCrossEntropy,
          "softmax_ce": SoftmaxCrossEntropy, "sigmoid_bce": SigmoidBinaryCrossEntropy}

#: Largest matrix printed with its numbers, and with its pattern of non-zeros.
PRINT_NUMBERS = (48, 16)
PRINT_PATTERN = (200, 120)

#: Bytes per entry at the realistic size (float32, what networks train in).
BYTES = 4


def add_parsers(sub: Any) -> None:
    """Add ``jacnet jacobian`` to the ``jacnet`` subcommands."""
    parser = sub.add_parser(
        "jacobian",
        help="print (and plot) the expanded Jacobian of a layer or loss",
        description=(
            "Materialise the expanded Jacobian of a layer or loss for a small random batch, print\n"
            "it as a labelled (N·out) × (N·in) matrix, show that the closed-form backward equals\n"
            "the Jacobian contracted with a random upstream gradient, and count what it would\n"
            "cost at a realistic size. With --model FILE instead of KIND: a saved network's\n"
            "Jacobian, the chain rule over its layers (one trained here, or converted with\n"
            "jacnet.export.from_torch and saved with jacnet.save)."
        ),
        epilog=(
            "examples:\n"
            "  jacnet jacobian softmax --batch 2 --features 3\n"
            "  jacnet jacobian affine --in 3 --out 2 --wrt W --plot affine_W.png\n"
            "  jacnet jacobian softmax_ce --batch 3 --features 4\n"
            "  jacnet jacobian --model model.jacnet --wrt 0.W"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", nargs="?", choices=KINDS, metavar="KIND",
                        help=f"one of: {', '.join(KINDS)}")
    parser.add_argument("--model", type=Path, metavar="FILE",
                        help="a jacnet model file: the whole network's Jacobian instead of KIND's")
    parser.add_argument("--batch", type=count, default=2, metavar="N", help="batch size (default: 2)")
    parser.add_argument("--features", type=count, metavar="K",
                        help="features of an activation, classes of a loss (default: 3)")
    parser.add_argument("--in", dest="n_in", type=count, metavar="I",
                        help="affine: input features (default: 3)")
    parser.add_argument("--out", dest="n_out", type=count, metavar="O",
                        help="affine: output features (default: 2)")
    parser.add_argument("--wrt", default="X",
                        help="affine: X, W or b; --model: X or a parameter such as 0.W (default: X)")
    parser.add_argument("--slope", type=real, default=0.01,
                        help="leaky_relu: negative slope (default: 0.01)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the random batch (default: 0)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also draw the Jacobian as a heatmap into FILE.png")
    parser.add_argument("--dpi", type=count, default=100, help="resolution of --plot (default: 100)")
    parser.set_defaults(run=run)


# The example ----------------------------------------------------------------------------------


@dataclass
class Example:
    """A module with a random input (and target) and the names the printout uses."""

    module: Layer | Loss | Sequential
    X: FloatArray
    wrt: str
    target: Any = None
    target_text: str = ""


def build_example(args: argparse.Namespace, rng: np.random.Generator) -> Example:
    """The module and random batch that ``args`` describes (float64)."""
    kind, N = args.kind, args.batch
    if (kind is None) == (args.model is None):
        raise JacnetValueError("jacnet jacobian expects KIND or --model FILE, got "
                               f"{'neither' if kind is None else 'both'}")
    if args.model is not None:
        for option, flag in (("features", "--features"), ("n_in", "--in"), ("n_out", "--out")):
            if getattr(args, option) is not None:
                raise JacnetValueError(f"jacnet jacobian {flag} expects a KIND, got --model FILE "
                                       "(a network fixes its own widths)")
        network, inputs = load_model_example(args.model, N, np.dtype(np.float64), rng, "jacnet jacobian")
        if args.wrt not in ("X", *network.params):
            raise JacnetValueError(f"jacnet jacobian --wrt expects X or one of this network's parameters "
                                   f"({', '.join(network.params)}), got {args.wrt!r}")
        return Example(network, inputs, args.wrt)
    if args.wrt not in ("X", "W", "b"):
        raise JacnetValueError(f"jacnet jacobian --wrt expects X, W or b, got {args.wrt!r}")
    if kind == "affine":
        if args.features is not None:
            raise JacnetValueError("jacnet jacobian --features expects a layer other than affine; "
                                   "affine takes --in and --out")
        n_in = args.n_in if args.n_in is not None else 3
        n_out = args.n_out if args.n_out is not None else 2
        layer = Affine(n_in, n_out, rng=rng, dtype=np.float64)
        layer.params["b"][:] = rng.standard_normal(n_out).round(1)
        return Example(layer, rng.standard_normal((N, n_in)), args.wrt)
    for option, flag in (("n_in", "--in"), ("n_out", "--out")):
        if getattr(args, option) is not None:
            raise JacnetValueError(f"jacnet jacobian {flag} expects affine, got {kind}; use --features")
    if args.wrt != "X":
        raise JacnetValueError(f"jacnet jacobian --wrt expects affine (the only layer with parameters), "
                               f"got {kind} with --wrt {args.wrt}")
    K = args.features if args.features is not None else 3
    if kind in LAYERS:
        module: Layer | Loss = LeakyReLU(args.slope) if kind == "leaky_relu" else LAYERS[kind]()
        X: FloatArray
        if kind in ("relu", "leaky_relu"):  # away from the kink at 0
            X = rng.choice([-1.0, 1.0], (N, K)) * rng.uniform(0.25, 2.0, (N, K))
        else:
            X = rng.standard_normal((N, K))
        return Example(module, X, "X")
    module = LOSSES[kind]()
    if kind in ("cce", "softmax_ce"):
        labels = rng.integers(0, K, N)
        logits = rng.standard_normal((N, K))
        X = softmax(logits) if kind == "cce" else logits
        return Example(module, X, "X", labels, f"labels {labels.tolist()}")
    if kind in ("bce", "sigmoid_bce"):
        Y = rng.integers(0, 2, (N, K)).astype(np.float64)
        X = rng.uniform(0.2, 0.8, (N, K)) if kind == "bce" else rng.standard_normal((N, K))
        return Example(module, X, "X", Y, "")
    return Example(module, rng.standard_normal((N, K)), "X", rng.standard_normal((N, K)), "")


# Printing --------------------------------------------------------------------------------------


def _cell(value: float, computed: bool) -> str:
    """A structural zero is ``.``; a computed one (a ReLU at a negative input) is ``0``."""
    if value == 0:
        return "0" if computed else "."
    return f"{value:.4f}"


def format_matrix(jm: JacobianMatrix, *, numbers: bool = True) -> str:
    """The labelled matrix, with ``|`` and ``-`` at block boundaries; structural zeros are ``.``,
    computed zeros ``0`` (every zero is ``.`` when the structure is not known).

    Parameters
    ----------
    jm : JacobianMatrix
        From :func:`jacnet.plots.jacobian_matrix`.
    numbers : bool
        Print values; otherwise only the pattern (``x`` non-zero, ``.`` zero) without labels
        on the columns.
    """
    M = jm.matrix
    rows, cols = M.shape
    known = jm.structure if jm.structure is not None else np.zeros(M.shape, dtype=bool)
    cells = [[_cell(float(v), bool(c)) if numbers else ("x" if v != 0 else "0" if c else ".")
              for v, c in zip(row, known_row, strict=True)] for row, known_row in zip(M, known, strict=True)]
    col_labels = jm.col_labels if numbers else ["" for _ in range(cols)]
    width = max([len(c) for row in cells for c in row] + [len(c) for c in col_labels] + [1])
    label_width = max(len(label) for label in jm.row_labels)
    sep = " " if numbers else ""
    if not numbers:
        width = 1

    def line(label: str, items: list[str]) -> str:
        parts = []
        for c, item in enumerate(items):
            if c and jm.col_block and c % jm.col_block == 0:
                parts.append("|")
            parts.append(item.rjust(width))
        return f"{label.ljust(label_width)}  " + sep.join(parts).rstrip()

    out = [line("", col_labels)] if numbers else []
    rule_parts = []
    for c in range(cols):
        if c and jm.col_block and c % jm.col_block == 0:
            rule_parts.append("+")
        rule_parts.append("-" * width)
    rule = "-" * label_width + "--" + ("-" if numbers else "").join(rule_parts)
    for r in range(rows):
        if r and jm.row_block and r % jm.row_block == 0:
            out.append(rule)
        out.append(line(jm.row_labels[r], cells[r]))
    return "\n".join(line.rstrip() for line in out)


#: Largest array printed in full; larger ones are summarised by their shape.
PRINT_ARRAY = 64


def _matrix_text(A: Any) -> str:
    A = np.asarray(A)
    if A.size > PRINT_ARRAY:
        return f"(an array of shape {A.shape}, not shown)"
    with np.printoptions(precision=4, suppress=True, floatmode="fixed", sign=" "):
        # + 0.0 turns -0.0 (a zero times a negative) into 0.0.
        return np.array2string(np.asarray(A, dtype=np.float64) + 0.0, separator=" ")


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _percent(part: int, whole: int) -> str:
    share = 100 * part / whole
    return f"{share:.1f}%" if share >= 1 else f"{share:.2g}%"


def _gb(n_bytes: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes:.0f} bytes"


@dataclass(frozen=True)
class Scale:
    """The same Jacobian at a realistic size, counted, not built."""

    setting: str
    rows: int
    cols: int
    nonzeros: int
    closed_form: int
    closed_form_text: str
    note: str = ""


def realistic(kind: str, wrt: str) -> Scale:
    """Entries, non-zeros and closed-form cost at a realistic size for each kind."""
    N = 128
    if kind == "affine":
        n_in, n_out = 784, 256
        setting = f"N = {N} samples through a {n_in}→{n_out} affine layer (an MNIST first layer)"
        if wrt == "X":
            return Scale(setting, N * n_out, N * n_in, N * n_out * n_in, N * n_in * n_out,
                         "dX = dZ Wᵀ, N·out·in multiply-adds")
        if wrt == "W":
            return Scale(setting, N * n_out, n_in * n_out, N * n_out * n_in, N * n_in * n_out,
                         "dW = Xᵀ dZ, N·in·out multiply-adds")
        return Scale(setting, N * n_out, n_out, N * n_out, N * n_out, "db = sum(dZ, axis=0), N·out additions")
    if kind == "softmax":
        K = 1000
        return Scale(f"N = {N} samples of K = {K} classes (ImageNet's)", N * K, N * K, N * K * K, 4 * N * K,
                     "dX = Y ⊙ (dY - sum(dY ⊙ Y, axis=1)), about 4·N·K operations")
    if kind in LAYERS:
        K = 256
        return Scale(f"N = {N} samples of K = {K} hidden features", N * K, N * K, N * K, N * K,
                     "dX = dY ⊙ f'(X), N·K multiplies")
    K = 10
    before = {"cce": "softmax", "softmax_ce": "softmax", "bce": "sigmoid", "sigmoid_bce": "sigmoid"}
    layer = before.get(kind, "output layer")
    note = (f"the cost is in the layers: the {layer} before it would have (N·K)² = {(N * K) ** 2:,} "
            f"entries ({_gb((N * K) ** 2 * BYTES)}), a 784→256 affine layer in X "
            f"{_gb(N * 256 * N * 784 * BYTES)}")
    return Scale(f"N = {N} samples of K = {K} outputs", 1, N * K, N * K, N * K,
                 "the gradient formula, a few operations per entry", note)


STRUCTURE = {
    ("affine", "X"): "block diagonal: sample i's outputs depend only on sample i's inputs (δ_ik), "
                     "and every diagonal block is Wᵀ",
    ("affine", "W"): "the Kronecker pattern: sample i's row block is x_iᵀ ⊗ I (δ_jl: z_ij depends on "
                     "column j of W only, through x_ik)",
    ("affine", "b"): "stacked identities, one per sample (δ_jl): contracting them with dZ sums over "
                     "the batch, db = sum(dZ, axis=0)",
    ("softmax", "X"): "block diagonal with a dense K×K block diag(y_i) - y_i y_iᵀ per sample: within a "
                      "sample every output depends on every input (the total derivative); across "
                      "samples, on nothing",
}


NETWORK_STRUCTURE = ("the chain rule over the layers: each layer's expanded Jacobian contracted with the "
                     "product so far, J ← tensordot(J_l, J, 2) (Sequential.jacobian)")


def _structure(kind: str, wrt: str) -> str:
    if (kind, wrt) in STRUCTURE:
        return STRUCTURE[(kind, wrt)]
    if kind in LAYERS:
        return "diagonal: y_ij depends on x_ij only, so the closed form is an element-wise product"
    return ("a loss is a scalar J, so its expanded Jacobian is a single row of N·K entries: the "
            "gradient itself, laid flat")


def _backward_and_contraction(ex: Example, J: FloatArray, rng: np.random.Generator,
                              say: Callable[..., None]) -> float:
    """Print the closed-form backward next to the contracted Jacobian; return their max difference."""
    m = copy.deepcopy(ex.module)
    name = "ŷ" if isinstance(m, Loss) else "x"
    if isinstance(m, Loss):
        m.forward(ex.X, ex.target)
        closed = m.backward()
        contracted = J  # dJ/dJ = 1: the Jacobian of a scalar is its gradient
        say("The loss is the end of the chain (upstream dJ/dJ = 1): backward() returns the Jacobian's "
            "one row, reshaped.")
        say("closed-form backward:")
        say(_indent(_matrix_text(closed)))
        say("expanded Jacobian, reshaped to the prediction's shape:")
        say(_indent(_matrix_text(contracted)))
    else:
        Y = m.forward(ex.X)
        dY = rng.standard_normal(Y.shape)
        dX = np.asarray(m.backward(dY))  # a network's backward may return None; not with dX asked for
        closed = dX if ex.wrt == "X" else m.grads[ex.wrt]
        contracted = np.tensordot(dY, J, axes=dY.ndim)
        grad = "dX" if ex.wrt == "X" else f"d{ex.wrt}"
        out = "z" if isinstance(m, Affine) else "y"
        wrt_name = name if ex.wrt == "X" else ex.wrt.lower()
        say(f"A random upstream gradient d{out.upper()} = ∂J/∂{out.upper()}:")
        say(_indent(_matrix_text(dY)))
        say(f"closed-form backward {grad}:")
        say(_indent(_matrix_text(closed)))
        idx = "kl" if np.ndim(closed) == 2 else "l"
        say(f"the expanded Jacobian contracted with it, {grad}[{idx}] = Σ_ij d{out.upper()}[ij] "
            f"∂{out}_ij/∂{wrt_name}_{idx}")
        say(f"(numpy.tensordot(d{out.upper()}, J, 2)):")
        say(_indent(_matrix_text(contracted)))
    return float(np.max(np.abs(np.asarray(closed) - np.asarray(contracted)), initial=0.0))


def _chain(ex: Example, say: Callable[..., None]) -> None:
    """For a fused loss: the same gradient through the activation's Jacobian (the lecture's chain)."""
    inner: Layer
    outer: Loss
    if isinstance(ex.module, SoftmaxCrossEntropy):
        inner, outer, what = Softmax(), CategoricalCrossEntropy(), "Softmax then CategoricalCrossEntropy"
        probabilities = softmax(ex.X)
    elif isinstance(ex.module, SigmoidBinaryCrossEntropy):
        inner, outer, what = Sigmoid(), BinaryCrossEntropy(), "Sigmoid then BinaryCrossEntropy"
        probabilities = sigmoid(ex.X)
    else:
        return
    dP = outer.jacobian(probabilities, ex.target)
    J_inner = expanded_jacobian(inner, ex.X)
    chained = np.tensordot(dP, J_inner, axes=2)
    fused = copy.deepcopy(ex.module)
    fused.forward(ex.X, ex.target)
    diff = float(np.max(np.abs(chained - fused.backward())))
    N, K = ex.X.shape
    say("")
    say(f"The fused gradient is the chain rule through {what}:")
    say(f"the {N * K} × {N * K} activation Jacobian contracted with the loss's gradient ∂J/∂ŷ gives")
    say(_indent(_matrix_text(chained)))
    say(f"max |chain - fused| = {diff:.2e}")


def _refuse_from_shapes(args: argparse.Namespace) -> None:
    """Refuse a Jacobian over the limit from the options alone, before any input is built."""
    N = args.batch
    if args.kind == "affine":
        n_in = args.n_in if args.n_in is not None else 3
        n_out = args.n_out if args.n_out is not None else 2
        shapes = {"X": (N, n_in), "W": (n_in, n_out), "b": (n_out,)}
        check_jacobian_size((N, n_out), shapes.get(args.wrt, (N, n_in)), "jacnet jacobian")
    elif args.kind not in LOSSES:  # a loss's Jacobian has the prediction's shape
        K = args.features if args.features is not None else 3
        check_jacobian_size((N, K), (N, K), "jacnet jacobian")


def run(args: argparse.Namespace) -> int:
    """Run ``jacnet jacobian``; return 0."""
    _refuse_from_shapes(args)
    rng = np.random.default_rng(args.seed)
    ex = build_example(args, rng)
    module = ex.module
    name = type(module).__name__

    def say(text: str = "") -> None:
        print(text)

    X = ex.X
    J = np.asarray(expanded_jacobian(module, X, wrt=ex.wrt, target=ex.target))
    jm = jacobian_matrix(module, X, wrt=ex.wrt, target=ex.target)
    rows, cols = jm.matrix.shape
    N = X.shape[0]
    if isinstance(module, Loss):
        symbol = jm.col_labels[0].split("[")[0]
        what = {"l": "logits L", "z": "logits Z"}.get(symbol, "prediction Ŷ")
        upper = {"l": "L", "z": "Z"}.get(symbol, "Ŷ")
        against = f" with {ex.target_text}" if ex.target_text else " against a random target Y"
        say(f"{name} on random {what} of shape {X.shape} (seed {args.seed}){against}.")
        say(f"{upper} =")
        say(_indent(_matrix_text(X)))
        if not ex.target_text:
            say("Y =")
            say(_indent(_matrix_text(ex.target)))
        say(f"expanded Jacobian ∂J/∂{upper}: shape {J.shape}, laid out as 1 × ({N}·{X.shape[1]}) "
            f"= 1 × {cols}")
    else:
        Y = copy.deepcopy(module).forward(X)
        A = X if ex.wrt == "X" else module.params[ex.wrt]
        symbol = "X" if ex.wrt == "X" else ex.wrt
        out = "Z" if isinstance(module, Affine) else "Y"
        what = (f"The network in {args.model} ({len(module.layers)} layers: "
                f"{', '.join(repr(layer) for layer in module.layers)}, float64)"
                if isinstance(module, Sequential) else repr(module))
        say(f"{what} on a random batch X of shape {X.shape} (seed {args.seed}); "
            f"{out} has shape {Y.shape}.")
        say("X =")
        say(_indent(_matrix_text(X)))
        if isinstance(module, Affine):
            say("W =")
            say(_indent(_matrix_text(module.params["W"])))
        shape_text = "·".join(str(s) for s in A.shape)
        say(f"expanded Jacobian ∂{out}/∂{symbol}: shape {J.shape}, laid out as ({N}·{Y.shape[1]}) × "
            f"({shape_text}) = {rows} × {cols}")
    say(f"  {jacobian_formula(module, ex.wrt)}")
    say("")
    if rows <= PRINT_NUMBERS[0] and cols <= PRINT_NUMBERS[1]:
        if jm.structure is not None and bool(np.any(jm.structure & (jm.matrix == 0))):
            say("(. = structural zero, 0 = computed zero)")  # only where both kinds appear
        say(format_matrix(jm))
    elif rows <= PRINT_PATTERN[0] and cols <= PRINT_PATTERN[1]:
        say("(too wide to print with numbers; x = non-zero, 0 = computed zero, . = structural zero)")
        say(format_matrix(jm, numbers=False))
    else:
        say("(too large to print; --plot FILE.png draws it)")
    nonzeros = int(np.count_nonzero(jm.matrix))
    entries = rows * cols
    say("")
    say(f"structure: {entries:,} entries, {nonzeros:,} non-zero ({_percent(nonzeros, entries)})")
    structure = NETWORK_STRUCTURE if isinstance(module, Sequential) else _structure(args.kind, ex.wrt)
    say(textwrap.fill(structure, width=100, initial_indent="  ", subsequent_indent="  "))
    say("")
    diff = _backward_and_contraction(ex, J, rng, say)
    say(f"max |backward - contraction| = {diff:.2e}")
    _chain(ex, say)
    if isinstance(module, Sequential):
        _plot(args, ex, rows, cols, say)
        return 0
    scale = realistic(args.kind, ex.wrt)
    big = scale.rows * scale.cols
    say("")
    say(f"At a realistic size, {scale.setting}:")
    if isinstance(module, Loss):
        say(f"  the loss's expanded Jacobian is its gradient: {big:,} entries, "
            f"{_gb(big * BYTES)} in float32;")
        say(textwrap.fill(scale.note, width=100, initial_indent="  ", subsequent_indent="  "))
    else:
        say(f"  the expanded Jacobian: {scale.rows:,} × {scale.cols:,} = {big:,} entries, "
            f"{_gb(big * BYTES)} in float32,")
        say(f"    of which {scale.nonzeros:,} are non-zero ({_percent(scale.nonzeros, big)})")
        say(f"  contracting it with the upstream gradient: {big:,} multiply-adds")
        say(f"  the closed form, {scale.closed_form_text}: {scale.closed_form:,},")
        say(f"    {big / scale.closed_form:,.0f}× fewer, and no Jacobian in memory")
    _plot(args, ex, rows, cols, say)
    return 0


def _plot(args: argparse.Namespace, ex: Example, rows: int, cols: int, say: Callable[..., None]) -> None:
    """Draw the Jacobian into ``--plot FILE.png``, when asked."""
    if args.plot:
        from jacnet.plots import plot_jacobian

        try:
            plot_jacobian(ex.module, ex.X, wrt=ex.wrt, target=ex.target, path=args.plot, dpi=args.dpi,
                          figsize=_figsize(rows, cols))
        except ImportError as exc:
            raise JacnetValueError(f"jacnet jacobian --plot expects matplotlib: {exc}") from exc
        except OSError as exc:
            raise JacnetValueError(f"jacnet jacobian --plot expects a writable file, got {args.plot!r} "
                                   f"({exc.strerror or exc})") from exc
        say("")
        say(f"wrote {args.plot}")


def _figsize(rows: int, cols: int) -> tuple[float, float]:
    """A figure shape that follows the matrix's: wide for a loss's single row."""
    if rows == 1:
        return (7.0, 2.6)
    return (6.4, 4.8)
