"""``jacnet jacobian``: see an expanded Jacobian, its structure, and why nobody materialises it.

KIND is any layer or loss in :mod:`jacnet.registry`; the command knows no list of its own.
For a small random batch (a layer's input shape from its class's ``example``, resized by the
options) it builds ``∂Y/∂A`` with :func:`jacnet.expanded_jacobian`, prints it as a labelled
``(outputs) × (inputs)`` matrix (structural zeros as ``.``, computed ones as ``0``), shows that
the closed-form backward equals the Jacobian contracted with a random upstream gradient, and
counts entries, structural zeros (the class's ``jacobian_structure``) and the closed form's
operations (its ``backward_cost``), here and at a realistic size. With ``--model FILE`` the
module is a saved network and the Jacobian its chain over the layers.
"""

from __future__ import annotations

import argparse
import copy
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import jacnet  # noqa: F401  (imports every built-in, so the registry is complete)
from jacnet._validation import FloatArray, check_jacobian_size
from jacnet.cli._args import count, int_at_least, real, seed
from jacnet.cli.check import load_model_example
from jacnet.errors import JacnetValueError
from jacnet.jacobian import expanded_jacobian
from jacnet.layers import Affine, Layer, LeakyReLU, ReLU, Sigmoid, Softmax, inference_mode, sigmoid, softmax
from jacnet.losses import (
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Loss,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
)
from jacnet.model import Sequential
from jacnet.plots import JacobianMatrix, jacobian_formula, jacobian_matrix
from jacnet.registry import LAYERS, LOSSES

__all__ = ["add_parsers", "format_matrix", "kinds", "run"]


def kinds() -> list[str]:
    """Every registered layer and loss, by its command-line name (:mod:`jacnet.registry`)."""
    return [*LAYERS, *LOSSES]


#: Size options of a layer, by the ``config()`` key each sets (``--channels`` also sets
#: ``in_channels``/``num_features`` through the input's channel axis).
CONFIG_OPTIONS = {"out_channels": ("n_out", "--out"), "kernel_size": ("kernel", "--kernel"),
                  "stride": ("stride", "--stride"), "padding": ("padding", "--padding")}

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
            "Materialise the expanded Jacobian of any registered layer or loss for a small random\n"
            "batch, print it as a labelled (outputs) × (inputs) matrix, show that the closed-form\n"
            "backward equals the Jacobian contracted with a random upstream gradient, count its\n"
            "entries, its structural zeros and the closed form's operations, here and at a\n"
            "realistic size. With --model FILE instead of KIND: a saved network's\n"
            "Jacobian, the chain rule over its layers (one trained here, or converted with\n"
            "jacnet.export.from_torch and saved with jacnet.save)."
        ),
        epilog=(
            "examples:\n"
            "  jacnet jacobian softmax --batch 2 --features 3\n"
            "  jacnet jacobian affine --in 3 --out 2 --wrt W --plot affine_W.png\n"
            "  jacnet jacobian softmax_ce --batch 3 --features 4\n"
            "  jacnet jacobian conv1d --channels 2 --out 2 --length 8 --kernel 3 --padding 1 --plot c.png\n"
            "  jacnet jacobian batchnorm --batch 4 --features 2 [--inference]\n"
            "  jacnet jacobian --model model.jacnet --wrt 0.W"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", nargs="?", choices=kinds(), metavar="KIND",
                        help=f"a registered layer or loss, one of: {', '.join(kinds())}")
    parser.add_argument("--model", type=Path, metavar="FILE",
                        help="a jacnet model file: the whole network's Jacobian instead of KIND's")
    parser.add_argument("--batch", type=count, metavar="N",
                        help="batch size (default: 2; for a layer beyond the lecture's, its example's)")
    parser.add_argument("--features", type=count, metavar="K",
                        help="features of an (N, K) input (activations, softmax, batchnorm, layernorm, "
                             "dropout), classes of a loss (default: 3)")
    parser.add_argument("--in", dest="n_in", type=count, metavar="I",
                        help="affine: input features (default: 3)")
    parser.add_argument("--out", dest="n_out", type=count, metavar="O",
                        help="affine: output features (default: 2); conv: output channels")
    parser.add_argument("--channels", type=count, metavar="C",
                        help="a layer on (N, C, L) or (N, C, H, W) input: its channels C")
    parser.add_argument("--length", type=count, metavar="L",
                        help="a layer on (N, C, L) or (N, C, H, W) input: its length L, or its height "
                             "and width")
    parser.add_argument("--kernel", type=count, metavar="K", help="conv, pooling: kernel size")
    parser.add_argument("--stride", type=count, metavar="S", help="conv, pooling: stride")
    parser.add_argument("--padding", type=int_at_least(0), metavar="P", help="conv, pooling: padding")
    parser.add_argument("--inference", action="store_true",
                        help="the layer in inference mode (eval(): running statistics, no dropout)")
    parser.add_argument("--wrt", default="X",
                        help="X or a parameter of the layer (affine: W, b; conv: W, b; batchnorm: "
                             "gamma, beta); --model: X or a parameter such as 0.W (default: X)")
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


_SIZE_FLAGS = (("channels", "--channels"), ("length", "--length"), ("kernel", "--kernel"),
               ("stride", "--stride"), ("padding", "--padding"))


def _side_rng(args: argparse.Namespace) -> np.random.Generator:
    """The generator of a layer's parameters and randomness, apart from the input's (so the
    input is the same draw whatever the layer)."""
    return np.random.default_rng([args.seed, 1])


def _takes(key: str) -> list[str]:
    """The registered layers whose example's ``config()`` has ``key``."""
    rng = np.random.default_rng(0)
    return [kind for kind, cls in LAYERS.items() if key in cls.example(rng, np.float64)[0].config()]


def build_layer(args: argparse.Namespace) -> tuple[Layer, tuple[int, ...]]:
    """The layer ``args`` describes and the shape of its input, before any input is drawn.

    Affine takes ``--in``/``--out``. Any other registered layer starts from its class's
    ``example`` (the layer and the input shape ``jacnet check`` uses), with the batch set to
    ``--batch`` and the sizes the options give: ``--features`` for a 2-D input ``(N, K)``;
    ``--channels`` and ``--length`` for ``(N, C, L)`` or ``(N, C, H, W)``; ``--out``,
    ``--kernel``, ``--stride``, ``--padding`` for the ``config()`` keys ``out_channels``,
    ``kernel_size``, ``stride``, ``padding``. A changed config rebuilds the layer with random
    parameters.
    """
    kind, N = args.kind, args.batch
    cls = LAYERS[kind]
    given = [flag for option, flag in (("n_in", "--in"), *_SIZE_FLAGS) if getattr(args, option) is not None]
    if issubclass(cls, Affine):
        if args.features is not None:
            raise JacnetValueError("jacnet jacobian --features expects a layer other than affine; "
                                   "affine takes --in and --out")
        if given and given[0] != "--in":
            raise JacnetValueError(f"jacnet jacobian {given[0]} expects a layer on (N, C, L) input, got "
                                   "affine; it takes --in and --out")
        n_in = args.n_in if args.n_in is not None else 3
        n_out = args.n_out if args.n_out is not None else 2
        N = N if N is not None else 2
        shapes = {"X": (N, n_in), "W": (n_in, n_out), "b": (n_out,)}
        check_jacobian_size((N, n_out), shapes.get(args.wrt, (N, n_in)), "jacnet jacobian")
        return Affine(n_in, n_out, init="zeros", dtype=np.float64), (N, n_in)
    if args.n_in is not None:
        raise JacnetValueError(f"jacnet jacobian --in expects affine, got {kind}; use --features "
                               "(or --channels for a layer on (N, C, L) input)")
    layer, X0 = cls.example(_side_rng(args), np.float64)
    if N is None:  # the lecture's 2 samples for its (N, K) layers; the example's batch otherwise
        N = 2 if X0.ndim == 2 and not layer.params else X0.shape[0]
    shape = [N, *X0.shape[1:]]
    if len(shape) == 2:
        if given:
            raise JacnetValueError(f"jacnet jacobian {given[0]} expects a layer on (N, C, L) input "
                                   f"({', '.join(_spatial_kinds())}), got {kind} on (N, K); use --features")
        shape[1] = args.features if args.features is not None else X0.shape[1]
    else:
        if args.features is not None:
            raise JacnetValueError(f"jacnet jacobian --features expects a layer on (N, K) input, got "
                                   f"{kind} on {_letters(len(shape))}; use --channels and --length")
        if args.channels is not None:
            shape[1] = args.channels
        if args.length is not None:
            shape[2:] = [args.length] * (len(shape) - 2)
    config = layer.config()
    changed = dict(config)
    for key in ("in_channels", "num_features"):
        if key in config:
            changed[key] = shape[1]
    if isinstance(config.get("normalized_shape"), int):
        changed["normalized_shape"] = shape[-1]
    if "negative_slope" in config:
        changed["negative_slope"] = args.slope
    for key, (option, flag) in CONFIG_OPTIONS.items():
        value = getattr(args, option)
        if value is None:
            continue
        if key not in config:
            raise JacnetValueError(f"jacnet jacobian {flag} expects a layer with {key} "
                                   f"({', '.join(_takes(key))}), got {kind}")
        changed[key] = value
    # Nothing as large as the limit is allocated: the input, then each parameter, by its shape.
    check_jacobian_size((1,), tuple(shape), "jacnet jacobian")
    for param_shape, _ in cls.param_shapes(changed).values():
        check_jacobian_size((1,), tuple(param_shape), "jacnet jacobian")
    if changed != config:
        layer = cls.from_config(changed)
        side = _side_rng(args)
        for p in layer.params.values():
            p[...] = side.standard_normal(p.shape)
    if args.inference:
        layer.eval()
    return layer, tuple(shape)


def _letters(ndim: int) -> str:
    return {3: "(N, C, L)", 4: "(N, C, H, W)"}.get(ndim, f"{ndim} axes")


def _spatial_kinds() -> list[str]:
    rng = np.random.default_rng(0)
    return [kind for kind, cls in LAYERS.items() if cls.example(rng, np.float64)[1].ndim >= 3]


def _output_shape(layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output's shape for an input of ``shape``, from one sample of zeros run through a copy
    in inference (nothing kept, no statistics updated)."""
    probe = copy.deepcopy(layer).eval()
    with inference_mode():
        Y = probe.forward(np.zeros((1, *shape[1:])))
    return (shape[0], *np.shape(Y)[1:])


def _check_wrt(layer: Layer, kind: str, wrt: str) -> None:
    if wrt in ("X", *layer.params):
        return
    if not layer.params:
        rng = np.random.default_rng(0)
        with_params = [k for k, cls in LAYERS.items() if cls.example(rng, np.float64)[0].params]
        raise JacnetValueError(f"jacnet jacobian --wrt expects affine or another layer with parameters "
                               f"({', '.join(with_params)}), got {kind} with --wrt {wrt}")
    raise JacnetValueError(f"jacnet jacobian --wrt expects X or a parameter of {kind} "
                           f"({', '.join(layer.params)}), got {wrt!r}")


def build_example(args: argparse.Namespace, rng: np.random.Generator) -> Example:
    """The module and random batch that ``args`` describes (float64); refuses a Jacobian over
    the size limit from the shapes, before the input is drawn."""
    kind, N = args.kind, args.batch
    if (kind is None) == (args.model is None):
        raise JacnetValueError("jacnet jacobian expects KIND or --model FILE, got "
                               f"{'neither' if kind is None else 'both'}")
    if args.model is not None:
        for option, flag in (("features", "--features"), ("n_in", "--in"), ("n_out", "--out"),
                             *_SIZE_FLAGS):
            if getattr(args, option) is not None:
                raise JacnetValueError(f"jacnet jacobian {flag} expects a KIND, got --model FILE "
                                       "(a network fixes its own widths)")
        network, inputs = load_model_example(args.model, N if N is not None else 2, np.dtype(np.float64),
                                             rng, "jacnet jacobian")
        if args.inference:
            network.eval()
        if args.wrt not in ("X", *network.params):
            raise JacnetValueError(f"jacnet jacobian --wrt expects X or one of this network's parameters "
                                   f"({', '.join(network.params)}), got {args.wrt!r}")
        return Example(network, inputs, args.wrt)
    if kind in LOSSES:
        return _loss_example(args, rng)
    layer, shape = build_layer(args)
    _check_wrt(layer, kind, args.wrt)
    in_shape = shape if args.wrt == "X" else layer.params[args.wrt].shape
    check_jacobian_size((1,), in_shape, "jacnet jacobian")  # the probe below stays small
    check_jacobian_size(_output_shape(layer, shape), in_shape, "jacnet jacobian")
    X: FloatArray
    if isinstance(layer, Affine):
        layer.params["W"][:] = rng.standard_normal(layer.params["W"].shape) * np.sqrt(2.0 / shape[1])
        layer.params["b"][:] = rng.standard_normal(layer.out_features).round(1)
        return Example(layer, rng.standard_normal(shape), args.wrt)
    if isinstance(layer, (ReLU, LeakyReLU)):  # away from the kink at 0
        X = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.25, 2.0, shape)
    else:
        X = rng.standard_normal(shape)
    return Example(layer, X, args.wrt)


def _loss_example(args: argparse.Namespace, rng: np.random.Generator) -> Example:
    N = args.batch if args.batch is not None else 2
    for option, flag in (("n_in", "--in"), ("n_out", "--out"), *_SIZE_FLAGS):
        if getattr(args, option) is not None:
            raise JacnetValueError(f"jacnet jacobian {flag} expects a layer, got the loss {args.kind}; "
                                   "use --features")
    if args.wrt != "X":
        raise JacnetValueError(f"jacnet jacobian --wrt expects X for a loss (its prediction), got "
                               f"{args.kind} with --wrt {args.wrt}")
    if args.inference:
        raise JacnetValueError(f"jacnet jacobian --inference expects a layer, got the loss {args.kind}")
    K = args.features if args.features is not None else 3
    check_jacobian_size((1,), (N, K), "jacnet jacobian")
    module = LOSSES[args.kind]()
    if isinstance(module, (CategoricalCrossEntropy, SoftmaxCrossEntropy)):
        labels = rng.integers(0, K, N)
        logits = rng.standard_normal((N, K))
        X = softmax(logits) if isinstance(module, CategoricalCrossEntropy) else logits
        return Example(module, X, "X", labels, f"labels {labels.tolist()}")
    if isinstance(module, (BinaryCrossEntropy, SigmoidBinaryCrossEntropy)):
        Y = rng.integers(0, 2, (N, K)).astype(np.float64)
        X = (rng.uniform(0.2, 0.8, (N, K)) if isinstance(module, BinaryCrossEntropy)
             else rng.standard_normal((N, K)))
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


#: Batch of the realistic size.
REALISTIC_BATCH = 128


def realistic(module: Layer | Loss, X_shape: tuple[int, ...], Y_shape: tuple[int, ...], wrt: str) -> Scale:
    """Entries, non-zeros and closed-form cost at a realistic size: the lecture's layers at
    their textbook sizes, any other layer as it is, at a batch of 128. Counted from the shapes
    and the class's ``jacobian_structure`` and ``backward_cost``, nothing built."""
    N = REALISTIC_BATCH
    if isinstance(module, Affine):
        n_in, n_out = 784, 256
        setting = f"N = {N} samples through a {n_in}→{n_out} affine layer (an MNIST first layer)"
        layer: Layer = Affine(n_in, n_out, init="zeros")
        X_big: tuple[int, ...] = (N, n_in)
        Y_big: tuple[int, ...] = (N, n_out)
    elif isinstance(module, Softmax):
        setting, layer, X_big = f"N = {N} samples of K = 1000 classes (ImageNet's)", module, (N, 1000)
        Y_big = X_big
    elif isinstance(module, Loss):
        K = 10
        setting = f"N = {N} samples of K = {K} outputs"
        before = ("softmax" if isinstance(module, (CategoricalCrossEntropy, SoftmaxCrossEntropy)) else
                  "sigmoid" if isinstance(module, (BinaryCrossEntropy, SigmoidBinaryCrossEntropy)) else
                  "output layer")
        note = (f"the cost is in the layers: the {before} before it would have (N·K)² = {(N * K) ** 2:,} "
                f"entries ({_gb((N * K) ** 2 * BYTES)}), a 784→256 affine layer in X "
                f"{_gb(N * 256 * N * 784 * BYTES)}")
        return Scale(setting, 1, N * K, N * K, N * K, "the gradient formula, a few operations per entry",
                     note)
    elif len(X_shape) == 2 and X_shape == Y_shape and not module.params:
        setting, layer = f"N = {N} samples of K = 256 hidden features", module
        X_big = Y_big = (N, 256)
    else:
        layer, X_big = _realistic_layer(module, X_shape)
        Y_big = _output_shape(layer, X_big)
        setting = f"N = {N} samples of shape {X_big[1:]} through {layer!r}"
    A_big = X_big if wrt == "X" else tuple(layer.params[wrt].shape)
    structure = layer.jacobian_structure(wrt, X_big)
    cost = layer.backward_cost(wrt, X_big)
    rows, cols = math.prod(Y_big), math.prod(A_big)
    nonzeros = structure.count(Y_big, A_big) if structure is not None else rows * cols
    closed, text = cost if cost is not None else (rows * cols, "unknown")
    if isinstance(module, Softmax):  # the lecture's wording
        text = "dX = Y ⊙ (dY - sum(dY ⊙ Y, axis=1)), about 4·N·K operations"
    return Scale(setting, rows, cols, nonzeros, closed, text)


#: Channels (or features) and spatial sizes of the realistic size: a hidden layer of a small
#: CNN on MNIST-1D's length 40, or on 16 × 16 feature maps; 256 features for an (N, K) input.
REALISTIC_CHANNELS, REALISTIC_SPATIAL, REALISTIC_FEATURES = 32, {3: 40, 4: 16}, 256


def _realistic_layer(module: Layer, X_shape: tuple[int, ...]) -> tuple[Layer, tuple[int, ...]]:
    """The same kind of layer at a realistic width, from its ``config()`` (channels and
    features scaled, kernel, stride and padding kept), with the input shape at batch 128."""
    N, config = REALISTIC_BATCH, module.config()
    if len(X_shape) == 2:
        shape: tuple[int, ...] = (N, REALISTIC_FEATURES)
    else:
        side = max(REALISTIC_SPATIAL.get(len(X_shape), 16), *X_shape[2:])
        shape = (N, REALISTIC_CHANNELS, *(side,) * (len(X_shape) - 2))
    changed = dict(config)
    for key in ("in_channels", "out_channels", "num_features"):
        if key in config:
            changed[key] = shape[1]
    if isinstance(config.get("normalized_shape"), int):
        changed["normalized_shape"] = shape[-1]
    if "shape" in config:  # Unflatten: rows of REALISTIC_FEATURES as channels × length
        changed["shape"] = [REALISTIC_CHANNELS, REALISTIC_FEATURES // REALISTIC_CHANNELS]
        shape = (N, REALISTIC_CHANNELS * (REALISTIC_FEATURES // REALISTIC_CHANNELS))
    if changed == config:
        return module, shape
    layer = type(module).from_config(changed)
    layer.train(module.training)
    return layer, shape


NETWORK_STRUCTURE = ("the chain rule over the layers: each layer's expanded Jacobian contracted with the "
                     "product so far, J ← tensordot(J_l, J, 2) (Sequential.jacobian)")


def _notes(module: Any, wrt: str) -> str:
    """What the structure means, from the class's ``jacobian_notes``."""
    notes = getattr(type(module), "jacobian_notes", None) or {}
    if not getattr(module, "training", True) and f"{wrt}, inference" in notes:
        return str(notes[f"{wrt}, inference"])
    return str(notes.get(wrt, ""))


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
        # The lecture's letters for matrices (ij out, kl in); a, b... and p, q... beyond two axes.
        idx = {1: "l", 2: "kl"}.get(np.ndim(closed), "pqrstu"[:np.ndim(closed)])
        out_idx = "ij" if dY.ndim == 2 else "abcdef"[:dY.ndim]
        say(f"the expanded Jacobian contracted with it, {grad}[{idx}] = Σ_{out_idx} "
            f"d{out.upper()}[{out_idx}] ∂{out}_{out_idx}/∂{wrt_name}_{idx}")
        say(f"(numpy.tensordot(d{out.upper()}, J, {dY.ndim})):")
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


def run(args: argparse.Namespace) -> int:
    """Run ``jacnet jacobian``; return 0."""
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
        shown = (["W"] if isinstance(module, Affine) else [] if isinstance(module, Sequential)
                 else list(module.params))
        for param in shown:
            say(f"{param} =")
            say(_indent(_matrix_text(module.params[param])))
        shape_text = "·".join(str(s) for s in A.shape)
        out_text = "·".join(str(s) for s in Y.shape)
        say(f"expanded Jacobian ∂{out}/∂{symbol}: shape {J.shape}, laid out as ({out_text}) × "
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
    notes = NETWORK_STRUCTURE if isinstance(module, Sequential) else _notes(module, ex.wrt)
    if notes:
        say(textwrap.fill(notes, width=100, initial_indent="  ", subsequent_indent="  "))
    if jm.structure is not None and isinstance(module, Layer):
        computed = int(np.count_nonzero(jm.structure))
        say(textwrap.fill(f"structural zeros: {entries - computed:,} entries are zero for every input "
                          f"(the formula's deltas and windows), {computed:,} are computed "
                          f"({_percent(computed, entries)})", width=100, initial_indent="  ",
                          subsequent_indent="    "))
        cost = module.backward_cost(ex.wrt, tuple(X.shape))
        if cost is not None:
            say(textwrap.fill(f"the closed form, {cost[1]}: {cost[0]:,} operations, against {entries:,} "
                              "multiply-adds to contract the expanded Jacobian", width=100,
                              initial_indent="  ", subsequent_indent="    "))
    say("")
    diff = _backward_and_contraction(ex, J, rng, say)
    say(f"max |backward - contraction| = {diff:.2e}")
    _chain(ex, say)
    if isinstance(module, Sequential):
        _plot(args, ex, rows, cols, say)
        return 0
    scale = realistic(module, tuple(X.shape), jm.output_shape, ex.wrt)
    big = scale.rows * scale.cols
    say("")
    say(textwrap.fill(f"At a realistic size, {scale.setting}:", width=100, subsequent_indent="  "))
    if isinstance(module, Loss):
        say(f"  the loss's expanded Jacobian is its gradient: {big:,} entries, "
            f"{_gb(big * BYTES)} in float32;")
        say(textwrap.fill(scale.note, width=100, initial_indent="  ", subsequent_indent="  "))
    else:
        say(f"  the expanded Jacobian: {scale.rows:,} × {scale.cols:,} = {big:,} entries, "
            f"{_gb(big * BYTES)} in float32,")
        say(f"    of which {scale.nonzeros:,} are non-zero ({_percent(scale.nonzeros, big)})")
        say(f"  contracting it with the upstream gradient: {big:,} multiply-adds")
        say(textwrap.fill(f"the closed form, {scale.closed_form_text}: {scale.closed_form:,}, "
                          f"{big / scale.closed_form:,.0f}× fewer, and no Jacobian in memory", width=100,
                          initial_indent="  ", subsequent_indent="    "))
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
