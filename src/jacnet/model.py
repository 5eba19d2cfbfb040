"""``Sequential``: a chain of layers, trained by running their backward passes in reverse.

For ``Y = f_L(... f_2(f_1(X)))`` the backward pass hands each layer the gradient of its
output and receives the gradient of its input: ``dX_{l} = layer_l.backward(dX_{l+1})``.
Parameters and gradients are exposed as flat dicts with stable names (``"0.W"``, ``"0.b"``,
``"2.W"``...) that hold the layers' own arrays, so an optimizer's in-place update reaches them.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from jacnet._validation import (
    FloatArray,
    all_finite,
    as_float_array,
    as_rng,
    check_positive_int,
    describe,
    overflow_message,
)
from jacnet.errors import JacnetTypeError, JacnetValueError, NonFiniteError
from jacnet.layers import Affine, Layer, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, sigmoid, softmax
from jacnet.losses import BinaryCrossEntropy, CategoricalCrossEntropy, Loss

__all__ = ["ACTIVATIONS", "Sequential", "build_mlp"]

#: Activation names accepted by :func:`build_mlp` (and the command line).
ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}


class Sequential:
    """A network that applies ``layers`` in order.

    Parameters
    ----------
    layers : iterable of Layer
        At least one layer.

    Examples
    --------
    >>> import jacnet
    >>> model = jacnet.Sequential([jacnet.Affine(4, 8, rng=0), jacnet.ReLU(), jacnet.Affine(8, 3, rng=1)])
    >>> model.forward(np.ones((2, 4))).shape
    (2, 3)
    """

    def __init__(self, layers: Iterable[Layer], *, loss: Loss | None = None) -> None:
        if isinstance(layers, Layer):
            raise JacnetTypeError("Sequential layers expects a list of Layer objects, got a "
                                  f"single {type(layers).__name__}; wrap it in a list")
        self.layers: list[Layer] = list(layers)
        if not self.layers:
            raise JacnetValueError("Sequential layers expects at least one Layer, got none")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise JacnetTypeError(
                    f"Sequential layers[{i}] expects a jacnet Layer, got {describe(layer)}")
        if loss is not None and not isinstance(loss, Loss):
            raise JacnetTypeError(f"Sequential loss expects a jacnet Loss or None, got {describe(loss)}")
        #: The loss the network is trained with; ``fit`` and ``evaluate`` use it by default, and
        #: it tells ``predict_proba`` whether the outputs are logits or probabilities.
        self.loss = loss

    # The chain -------------------------------------------------------------------------------

    def __call__(self, X: Any) -> FloatArray:
        return self.forward(X)

    def forward(self, X: Any) -> FloatArray:
        """Run every layer's forward in order; ``(N, in) -> (N, out)``.

        ``X`` is checked once, by the first layer; the layers after it get arrays that the
        network made itself (see :mod:`jacnet.layers`). A value that overflows on the way
        reaches the output as ``inf`` or ``NaN``; the network then runs again with every
        layer's checks, so the error names the layer that received it.
        """
        first, *rest = self.layers
        A = first.forward(X)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
            for layer in rest:
                A = layer._forward(A)
        if rest and not all_finite(A):
            for layer in self.layers:  # again, each layer checking its input: raises at the culprit
                X = layer.forward(X)
        return A

    def backward(self, dY: Any, *, input_grad: bool = True) -> FloatArray | None:
        """Run every layer's backward in reverse and return ``dX``, ``(N, in)``.

        With ``input_grad=False`` nobody reads ``dX``: the first layer with parameters fills its
        ``grads`` but skips its ``dX`` (a whole matrix product for an affine layer), the
        parameterless layers before it are skipped, and ``None`` is returned.
        """
        last = len(self.layers) - 1
        first = 0 if input_grad else next(
            (i for i, layer in enumerate(self.layers) if layer.params), last + 1)
        for i in range(last, first - 1, -1):
            layer = self.layers[i]
            # dY enters at the last layer, which checks it; the others get the network's dX.
            if not input_grad and i == first:
                (layer.backward_params if i == last else layer._backward_params)(dY)
            else:
                dY = layer.backward(dY) if i == last else layer._backward(dY)
        return dY if input_grad else None

    # Parameters ------------------------------------------------------------------------------

    @property
    def params(self) -> dict[str, FloatArray]:
        """``{"<layer index>.<name>": array}``: the layers' own arrays, not copies."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    @property
    def grads(self) -> dict[str, FloatArray]:
        """The gradients, keyed like :attr:`params`."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()}

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return sum(layer.n_params for layer in self.layers)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of the parameters (float64 for a network without any)."""
        for p in self.params.values():
            return p.dtype
        return np.dtype(np.float64)

    @property
    def in_features(self) -> int | None:
        """Input width, when the first layer fixes it."""
        first = self.layers[0]
        return first.in_features if isinstance(first, Affine) else None

    @property
    def out_features(self) -> int | None:
        """Output width, from the last affine layer."""
        for layer in reversed(self.layers):
            if isinstance(layer, Affine):
                return layer.out_features
        return None

    # Prediction ------------------------------------------------------------------------------

    def predict(self, X: Any, *, batch_size: int = 8192) -> FloatArray:
        """The network's output for ``X``, computed in batches to bound memory; ``(N, out)``."""
        batch_size = check_positive_int(batch_size, "Sequential.predict batch_size")
        X = as_float_array(X, "Sequential.predict X", ndim=2, dtype=self.dtype)
        try:  # overflow inside is reported below, not as NumPy RuntimeWarnings
            with np.errstate(over="ignore", invalid="ignore"):
                if X.shape[0] <= batch_size:
                    out = self.forward(X)
                else:
                    out = np.concatenate([self.forward(X[i:i + batch_size])
                                          for i in range(0, X.shape[0], batch_size)])
        except NonFiniteError as exc:  # a layer saw an overflowed value: say which input did it
            raise NonFiniteError(overflow_message("Sequential.predict X", X)) from exc
        if not all_finite(out):
            raise NonFiniteError(overflow_message("Sequential.predict X", X))
        return out

    def predict_proba(self, X: Any, *, batch_size: int = 8192) -> FloatArray:
        """Class probabilities, ``(N, K)``; a single output gives ``(N, 2)``: ``[1 - p, p]``.

        Outputs are already probabilities when the network ends in :class:`Softmax` or
        :class:`Sigmoid` (or its loss takes probabilities); otherwise they are read as logits,
        as trained with ``SoftmaxCrossEntropy`` or ``SigmoidBinaryCrossEntropy``.
        """
        out = self.predict(X, batch_size=batch_size)
        already = isinstance(self.layers[-1], (Softmax, Sigmoid)) or isinstance(
            self.loss, (CategoricalCrossEntropy, BinaryCrossEntropy))
        if out.shape[1] == 1:
            p = out if already else sigmoid(out)
            return np.concatenate([1 - p, p], axis=1)
        return out if already else softmax(out)

    def predict_classes(self, X: Any, *, batch_size: int = 8192) -> np.ndarray[Any, Any]:
        """Class indices ``0..K-1`` (the most probable class), ``(N,)``."""
        return np.argmax(self.predict_proba(X, batch_size=batch_size), axis=1)

    # Expanded Jacobian of the whole chain ----------------------------------------------------

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """``∂Y/∂A`` of the network, by the chain rule over the layers' expanded Jacobians.

        ``wrt`` is ``"X"`` or a name from :attr:`params`; the result has shape
        ``Y.shape + A.shape``. Each layer's Jacobian is contracted with the product so far:
        ``J ← tensordot(J_l, J, 2)``.
        """
        names = ("X", *self.params)
        if wrt not in names:
            raise JacnetValueError(f"Sequential.jacobian wrt expects one of {names}, got {wrt!r}")
        start, name = (0, "X") if wrt == "X" else (int(wrt.split(".")[0]), wrt.split(".", 1)[1])
        chain = copy.deepcopy(self.layers)  # forward fills caches; leave the caller's alone
        inputs = []
        for layer in chain:
            inputs.append(X)
            X = layer.forward(X)
        J = chain[start].jacobian(inputs[start], name)
        for layer, A in zip(chain[start + 1:], inputs[start + 1:], strict=True):
            J = np.tensordot(layer.jacobian(A, "X"), J, axes=2)
        return J

    # Presentation ----------------------------------------------------------------------------

    def summary(self) -> str:
        """A table of the layers with their output shapes and parameter counts."""
        rows = [("#", "layer", "output shape", "params")]
        width: int | None = None
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Affine):
                width = layer.out_features
            shape = f"(N, {width if width is not None else '?'})"
            rows.append((str(i), repr(layer), shape, f"{layer.n_params:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"total parameters: {self.n_params:,} ({self.dtype.name})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        loss = f"loss: {self.loss!r}\n" if self.loss is not None else ""
        return "Sequential(\n" + self.summary() + "\n" + loss + ")"


def build_mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    activation: str = "relu",
    output: str | None = None,
    init: str | None = None,
    rng: np.random.Generator | int | None = None,
    dtype: DTypeLike = np.float32,
) -> Sequential:
    """A multilayer perceptron ``Affine → act → ... → Affine [→ output]``.

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths.
    hidden : sequence of int
        Width of each hidden layer (may be empty: a linear model).
    activation : {"relu", "leaky_relu", "sigmoid", "tanh"}
        Hidden activation.
    output : {None, "softmax", "sigmoid"}
        Optional output activation. Leave ``None`` to output logits for the fused losses.
    init : {"he", "glorot", "zeros"}, optional
        Weight initialiser; defaults to He for ReLU-like activations, Glorot otherwise.
    rng : Generator or int, optional
        Seeds every layer's initial weights, in order.
    dtype : floating dtype
        float32 (default) or float64, end to end.
    """
    if activation not in ACTIVATIONS:
        raise JacnetValueError(
            f"build_mlp activation expects one of {tuple(ACTIVATIONS)}, got {activation!r}")
    outputs: dict[str | None, type[Layer] | None] = {None: None, "softmax": Softmax,
                                                     "sigmoid": Sigmoid}
    if output not in outputs:
        raise JacnetValueError(
            f"build_mlp output expects one of {tuple(outputs)}, got {output!r}")
    if isinstance(hidden, (int, np.integer)):
        raise JacnetTypeError(f"build_mlp hidden expects a sequence of ints, got {hidden!r}; "
                              f"write ({hidden},)")
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Iterable):
        raise JacnetTypeError(f"build_mlp hidden expects a sequence of ints, got {describe(hidden)}")
    widths = [check_positive_int(in_features, "build_mlp in_features")]
    widths += [check_positive_int(h, f"build_mlp hidden[{i}]") for i, h in enumerate(hidden)]
    widths.append(check_positive_int(out_features, "build_mlp out_features"))
    if init is None:
        init = "he" if activation in ("relu", "leaky_relu") else "glorot"
    generator = as_rng(rng, "build_mlp rng")
    layers: list[Layer] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(Affine(n_in, n_out, init=init, rng=generator, dtype=dtype))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    head = outputs[output]
    if head is not None:
        layers.append(head())
    return Sequential(layers)
