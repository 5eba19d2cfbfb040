"""``Sequential``: a chain of layers, trained by running their backward passes in reverse.

For ``Y = f_L(... f_2(f_1(X)))`` the backward pass hands each layer the gradient of its
output and receives the gradient of its input: ``dX_{l} = layer_l.backward(dX_{l+1})``.
Parameters and gradients are exposed as flat dicts with stable names (``"0.W"``, ``"0.b"``,
``"2.W"``...) that hold the layers' own arrays, so an optimizer's in-place update reaches them.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from jacnet import backend
from jacnet._validation import (
    FloatArray,
    all_finite,
    as_float_array,
    as_rng,
    check_jacobian_size,
    check_positive_int,
    describe,
    overflow_message,
)
from jacnet.errors import JacnetTypeError, JacnetValueError, NonFiniteError
from jacnet.layers import (
    Affine,
    Layer,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    _handed,
    _owner,
    _place,
    inference_mode,
    sigmoid,
    softmax,
    uses_backward_params,
)
from jacnet.losses import BinaryCrossEntropy, CategoricalCrossEntropy, Loss
from jacnet.metrics import is_classification

__all__ = ["ACTIVATIONS", "Sequential", "build_mlp"]


def _jacnet_code(layer: Any, method: str) -> bool:
    """True when ``layer.<method>`` is jacnet's own code. Such a method returns a new array that
    it keeps no reference to, so the network may hand that array on as jacnet's; and only such
    a method receives a hand-over: a user's code (a residual block that adds its input back)
    may still hold the array, so it must never be told it may write into it."""
    key = (type(layer), method)
    found = _JACNET_CODE.get(key)
    if found is None:
        found = _JACNET_CODE[key] = _owner(type(layer), method).__module__.startswith("jacnet.")
    return found


_JACNET_CODE: dict[tuple[type, str], bool] = {}

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
        seen: dict[int, int] = {}
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise JacnetTypeError(
                    f"Sequential layers[{i}] expects a jacnet Layer, got {describe(layer)}")
            if id(layer) in seen:  # one object, two places: each call would overwrite the other's
                raise JacnetValueError(
                    f"Sequential layers[{i}] expects a layer of its own, got the same "
                    f"{type(layer).__name__} object as layers[{seen[id(layer)]}]; build a second "
                    "one (shared weights are not supported)")
            seen[id(layer)] = i
        if loss is not None and not isinstance(loss, Loss):
            raise JacnetTypeError(f"Sequential loss expects a jacnet Loss or None, got {describe(loss)}")
        #: The loss the network is trained with; ``fit`` and ``evaluate`` use it by default, and
        #: it tells ``predict_proba`` whether the outputs are logits or probabilities.
        self.loss = loss

    # The chain -------------------------------------------------------------------------------

    def __call__(self, X: Any) -> FloatArray:
        return self.forward(X)

    def forward(self, X: Any) -> FloatArray:
        """Run every layer's ``forward`` in order; ``(N, ...) -> (N, out)``.

        Each layer's own ``forward`` runs, overrides included. The first layer checks ``X``;
        a built-in layer's fresh output is handed to the next layer as jacnet's own array
        (no copy, no second check), a user's layer's output is checked like any input. A value
        that overflows on the way reaches the output as ``inf`` or ``NaN``; the network then
        runs again with every layer checking its input, so the error names the layer that
        received it.
        """
        return self._run(self.layers, X)

    def _run(self, layers: list[Layer], X: Any) -> FloatArray:
        A = self._chain(layers, X, hand_over=True)
        if len(layers) > 1 and not all_finite(A):
            self._chain(layers, X, hand_over=False)  # raises at the culprit, if a layer saw it
        return A

    @staticmethod
    def _chain(layers: list[Layer], X: Any, *, hand_over: bool) -> FloatArray:
        A = X
        outer = _handed.get()  # the caller's hand-over (fit's batch) may reach layer 0
        token = _handed.set(outer)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported above
                for i, layer in enumerate(layers):
                    ours = outer if i == 0 else (
                        id(A) if hand_over and _jacnet_code(layers[i - 1], "forward") else 0)
                    _handed.set(ours if _jacnet_code(layer, "forward") else 0)
                    A = layer.forward(A)
        finally:
            _handed.reset(token)
        return A

    def backward(self, dY: Any, *, input_grad: bool = True) -> FloatArray | None:
        """Run every layer's ``backward`` in reverse and return ``dX``, ``(N, in)``.

        With ``input_grad=False`` nobody reads ``dX``: the first layer with parameters fills its
        ``grads`` through ``backward_params`` (an affine layer then skips the product
        ``dZ Wᵀ``), unless it overrides ``backward`` alone, the parameterless layers before it
        are skipped, and ``None`` is returned.
        """
        layers = self.layers
        last = len(layers) - 1
        first = 0 if input_grad else next(
            (i for i, layer in enumerate(layers) if layer.params), last + 1)
        outer = _handed.get()
        token = _handed.set(outer)
        try:
            for i in range(last, first - 1, -1):
                layer = layers[i]
                method = ("backward_params" if not input_grad and i == first
                          and uses_backward_params(layer) else "backward")
                # dY is the next layer's dX: jacnet's own if that layer's backward is built in;
                # handed only to a built-in method.
                ours = outer if i == last else (
                    id(dY) if _jacnet_code(layers[i + 1], "backward") else 0)
                _handed.set(ours if _jacnet_code(layer, method) else 0)
                if method == "backward_params":
                    layer.backward_params(dY)
                else:
                    dY = layer.backward(dY)
        finally:
            _handed.reset(token)
        return dY if input_grad else None

    # Modes -----------------------------------------------------------------------------------

    @property
    def training(self) -> bool:
        """True when every layer is in training mode."""
        return all(layer.training for layer in self.layers)

    def train(self, mode: bool = True) -> Sequential:
        """Put every layer in training (``mode=True``) or inference mode; returns the network."""
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self) -> Sequential:
        """Inference mode for every layer (dropout off, running statistics); returns the network."""
        return self.train(False)

    def clear(self) -> None:
        """Forget what the layers kept for backward (their last inputs)."""
        for layer in self.layers:
            layer.clear()

    @contextmanager
    def inference(self) -> Iterator[list[Layer]]:
        """Within the block: :meth:`inference_layers` under ``inference_mode``; afterwards each
        layer's own ``train(its mode)`` runs again, so a layer whose ``train`` reaches into
        layers it shares with its copy is put back as it was."""
        try:
            with inference_mode():
                yield self.inference_layers()
        finally:
            for layer in self.layers:
                layer.train(layer.training)

    def inference_layers(self) -> list[Layer]:
        """Shallow copies of the layers in inference mode: they share the parameters, and
        nothing a forward keeps reaches the network's own layers (how ``predict`` runs)."""
        twins = []
        for layer in self.layers:
            twin = copy.copy(layer)
            twin.train(False)  # the layer's own train(), overrides included
            twins.append(twin)
        return twins

    # Backends --------------------------------------------------------------------------------

    def to(self, backend: str, device: str | None = None) -> Sequential:
        """Move every layer to ``backend`` (``"numpy"`` or ``"torch"``) on ``device``
        (``"cpu"``, ``"cuda"``...) in place; returns the network. See :mod:`jacnet.backend`.

        Values and dtypes are unchanged; ``fit``, ``predict`` and ``evaluate`` then run there,
        moving their inputs once. The parameters are new arrays: make the optimizer after
        moving (or carry its state over with ``state_dict``/``load_state_dict``).
        """
        name, where = _place(backend, device, "Sequential.to")
        for layer in self.layers:
            layer.to(name, where)
        return self

    @property
    def backend(self) -> str:
        """``"numpy"`` or ``"torch"``: where the parameters live (NumPy without any)."""
        for p in self.params.values():
            return backend.backend_of(p)
        return "numpy"

    @property
    def device(self) -> str:
        """The parameters' device (``"cpu"`` for NumPy, ``"cuda:0"``...)."""
        for p in self.params.values():
            return backend.device_of(p)
        return "cpu"

    def _reference(self, where: str = "Sequential") -> Any:
        """An array on the network's backend and device (its first parameter), or None; a
        network with a layer moved alone (``layer.to``, not ``model.to``) is refused."""
        params = self.params
        first = next(iter(params.items()), None)
        if first is None:
            return None
        place = (backend.backend_of(first[1]), backend.device_of(first[1]))
        for name, p in params.items():
            if (backend.backend_of(p), backend.device_of(p)) != place:
                raise JacnetValueError(
                    f"{where} model expects every parameter on one backend and device, got "
                    f"{first[0]} on {place[0]} ({place[1]}) and {name} on "
                    f"{backend.backend_of(p)} ({backend.device_of(p)}); move the whole network "
                    f"with model.to(backend, device=...)")
        return first[1]

    # Parameters ------------------------------------------------------------------------------

    @property
    def params(self) -> dict[str, FloatArray]:
        """``{"<layer index>.<name>": array}``: the layers' own arrays, not copies."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    @property
    def buffers(self) -> dict[str, FloatArray]:
        """``{"<layer index>.<name>": array}``: the layers' buffers (running statistics)."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in getattr(layer, "buffers", {}).items()}

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
            return backend.numpy_dtype(p)
        return np.dtype(np.float64)

    @property
    def in_features(self) -> int | None:
        """Input width, when the first layer fixes it."""
        width = getattr(self.layers[0], "in_features", None)
        return width if isinstance(width, int) else None

    @property
    def out_features(self) -> int | None:
        """Output width, from the last affine layer."""
        for layer in reversed(self.layers):
            if isinstance(layer, Affine):
                return layer.out_features
        return None

    # Prediction ------------------------------------------------------------------------------

    def predict(self, X: Any, *, batch_size: int = 8192) -> FloatArray:
        """The network's output for ``X`` in inference mode, in batches to bound memory.

        The layers run as :meth:`inference_layers` under :func:`~jacnet.layers.inference_mode`:
        the training state (what a ``forward`` kept for ``backward``, the layers' modes) is
        left exactly as it was.
        """
        batch_size = check_positive_int(batch_size, "Sequential.predict batch_size")
        X = as_float_array(X, "Sequential.predict X", ndim=(1, 2, 3, 4, 5), dtype=self.dtype,
                           min_features=1, like=self._reference("Sequential.predict"))
        try:  # overflow inside is reported below, not as NumPy RuntimeWarnings
            with self.inference() as layers, np.errstate(over="ignore", invalid="ignore"):
                if X.shape[0] <= batch_size:
                    out = self._run(layers, X)
                else:
                    out = backend.namespace(X).concat(
                        [self._run(layers, X[i:i + batch_size])
                         for i in range(0, X.shape[0], batch_size)], axis=0)
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
        if self.loss is not None and not is_classification(self.loss):
            raise JacnetValueError(
                f"Sequential.predict_proba expects a classifier (trained with a cross-entropy "
                f"loss), got a model trained with {type(self.loss).__name__}; use predict")
        out = self.predict(X, batch_size=batch_size)
        already = isinstance(self.layers[-1], (Softmax, Sigmoid)) or isinstance(
            self.loss, (CategoricalCrossEntropy, BinaryCrossEntropy))
        if out.shape[1] == 1:
            p = out if already else sigmoid(out)
            return backend.namespace(p).concat([1 - p, p], axis=1)
        return out if already else softmax(out)

    def predict_classes(self, X: Any, *, batch_size: int = 8192) -> np.ndarray[Any, Any]:
        """Class indices ``0..K-1`` (the most probable class), ``(N,)``."""
        proba = self.predict_proba(X, batch_size=batch_size)
        return backend.namespace(proba).argmax(proba, axis=1)

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
        chain = copy.deepcopy(self.layers)  # forward keeps arrays; leave the caller's alone
        if self.backend != "numpy":  # expanded Jacobians are built in NumPy
            for layer in chain:
                layer.to("numpy")
            X = backend.to_numpy(X)
        inputs, outputs = [], []
        for layer in chain:
            inputs.append(X)
            X = layer.forward(X)
            layer.fix_randomness()
            outputs.append(X)
        # Every intermediate product is refused from its shapes before anything is built.
        target = inputs[0].shape if wrt == "X" else chain[start].params[name].shape
        check_jacobian_size(outputs[start].shape, target, "Sequential.jacobian")
        for i in range(start + 1, len(chain)):
            check_jacobian_size(outputs[i].shape, inputs[i].shape, f"Sequential.jacobian layer {i}")
            check_jacobian_size(outputs[i].shape, target, "Sequential.jacobian")
        J = chain[start].jacobian(inputs[start], name)
        for layer, A in zip(chain[start + 1:], inputs[start + 1:], strict=True):
            J_layer = layer.jacobian(A, "X")
            J = np.tensordot(J_layer, J, axes=np.ndim(A))
        return J

    # Presentation ----------------------------------------------------------------------------

    def summary(self, input_shape: tuple[int, ...] | None = None) -> str:
        """A table of the layers with their output shapes and parameter counts.

        ``input_shape`` (one sample's, e.g. ``(1, 40)`` for a ``Conv1D`` network) gives every
        layer's output shape, from one zero sample run in inference mode; without it, a
        network that starts with an affine layer shows its widths and others show ``?``.
        """
        shapes: list[str] = []
        if input_shape is None and self.in_features is not None:
            input_shape = (self.in_features,)
        if input_shape is not None:
            try:
                A = np.zeros((1, *input_shape), dtype=self.dtype)
                with self.inference() as layers:
                    for layer in layers:
                        A = layer.forward(A)
                        shapes.append("(N, " + ", ".join(str(d) for d in A.shape[1:]) + ")")
            except Exception:  # a layer refused the zero sample: show what the widths say
                shapes = []
        if len(shapes) != len(self.layers):
            width: int | None = None
            shapes = []
            for layer in self.layers:
                width = getattr(layer, "out_features", width)
                shapes.append(f"(N, {width if width is not None else '?'})")
        rows = [("#", "layer", "output shape", "params")]
        for i, (layer, shape) in enumerate(zip(self.layers, shapes, strict=True)):
            rows.append((str(i), repr(layer), shape, f"{layer.n_params:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        where = "" if self.backend == "numpy" else f", torch on {self.device}"
        lines.append(f"total parameters: {self.n_params:,} ({self.dtype.name}{where})")
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
