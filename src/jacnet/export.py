"""Converting jacnet networks to and from other systems: PyTorch both ways, ONNX out.

- :func:`to_torch` gives a ``torch.nn.Sequential`` with the same weights and dtype.
- :func:`from_torch` turns a ``torch.nn.Sequential`` of supported modules into a jacnet
  :class:`~jacnet.Sequential`, so a network trained elsewhere can have its Jacobians seen and
  checked (``jacnet.save`` it, then ``jacnet check --model FILE``).
- :func:`to_onnx` builds an ONNX model (opset :data:`OPSET`) with the ``onnx`` package's helper
  API; :func:`save_onnx` writes it atomically. Input ``"X"`` of shape ``(N, in)``, output
  ``"Y"`` of shape ``(N, out)``, ``N`` dynamic, float32 or float64 as the network computes.

Every layer type crosses through one entry of :data:`CONVERSIONS`, keyed by the jacnet layer
class: it builds the torch module, emits the ONNX nodes and imports from the torch classes it
names. Adding a layer type (a convolution, a normalisation...) is adding one entry.

PyTorch (``pip install 'jacnet[torch]'``) and onnx (``pip install 'jacnet[onnx]'``) are
optional: each is imported inside the function that needs it. Nothing here unpickles: no PyTorch
file is ever read; a PyTorch network comes in as a live module.
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jacnet._validation import FloatArray, all_finite, describe
from jacnet.errors import JacnetTypeError, JacnetValueError, NonFiniteError, ShapeError
from jacnet.io import write_atomically
from jacnet.layers import Affine, Layer, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from jacnet.model import Sequential

__all__ = ["CONVERSIONS", "OPSET", "Conversion", "OnnxGraph", "from_torch", "save_onnx", "to_onnx",
           "to_torch"]

#: The ONNX operator set the exported graphs use (ONNX 1.12+, ONNX Runtime 1.13+ run it).
OPSET = 17
#: The ONNX IR version written: the one that came with opset 17, so older runtimes load it.
IR_VERSION = 8

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# The PyTorch and ONNX imports, with the one-line message for a missing extra ----------------


def _require(package: str, what: str) -> Any:
    """Import ``torch`` or ``onnx``; the extra to install has the package's name."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise ImportError(f"{what} expects the {package} package, which is not installed; install it "
                          f"with pip install 'jacnet[{package}]'") from exc


# Building ONNX graphs ------------------------------------------------------------------------


class OnnxGraph:
    """The ONNX graph under construction: each layer's entry appends its nodes here.

    Attributes
    ----------
    current : str
        The name of the tensor the next layer reads (``"X"`` at first).
    dtype : numpy.dtype
        Its dtype: float32 or float64.
    """

    def __init__(self, onnx: Any, dtype: np.dtype[Any]) -> None:
        self._onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.current = "X"
        self.dtype = dtype
        self._prefix = ""
        self._count = 0

    def start_layer(self, index: int) -> None:
        """Name what follows after layer ``index``: nodes ``"<index>.<op>"``, ``"<index>.<param>"``."""
        self._prefix = f"{index}"
        self._count = 0

    def param(self, name: str, array: FloatArray) -> str:
        """Store ``array`` as an initializer named ``"<layer index>.<name>"``; return the name."""
        full = f"{self._prefix}.{name}"
        self.initializers.append(self._onnx.numpy_helper.from_array(np.ascontiguousarray(array), full))
        return full

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        """Append node ``op_type(inputs)``; its output becomes :attr:`current` and is returned."""
        self._count += 1
        name = f"{self._prefix}.{op_type}" + (f".{self._count}" if self._count > 1 else "")
        self.nodes.append(self._onnx.helper.make_node(op_type, list(inputs), [name], name=name,
                                                      **attributes))
        self.current = name
        return name

    def cast(self, dtype: np.dtype[Any]) -> str:
        """:attr:`current` in ``dtype``: a ``Cast`` node when the dtype changes (a mixed network)."""
        if dtype != self.dtype:
            self.op("Cast", self.current, to=_onnx_type(self._onnx, dtype))
            self.dtype = dtype
        return self.current


def _onnx_type(onnx: Any, dtype: np.dtype[Any]) -> int:
    return int(onnx.TensorProto.DOUBLE if dtype == np.float64 else onnx.TensorProto.FLOAT)


# The conversion table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversion:
    """How one jacnet layer class crosses to PyTorch and ONNX, and back from PyTorch.

    Attributes
    ----------
    layer : type
        The jacnet layer class (exactly this class: a subclass may compute something else).
    torch_names : tuple of str
        The ``torch.nn`` classes that :func:`from_torch` imports as this layer.
    to_torch : callable
        ``(layer, torch) -> torch.nn.Module`` with the layer's weights and dtype.
    to_onnx : callable
        ``(layer, graph)``: append the layer's nodes to the :class:`OnnxGraph`.
    from_torch : callable
        ``(module, where) -> Layer``; raise a jacnet error naming ``where`` for a setting
        jacnet does not have.
    input_dims : callable, optional
        ``layer -> dims`` after the batch axis that the layer takes (the ONNX input's shape,
        when no layer before it fixes them); ``None`` for a layer that keeps its input's shape.
    """

    layer: type[Layer]
    torch_names: tuple[str, ...]
    to_torch: Callable[[Any, Any], Any]
    to_onnx: Callable[[Any, OnnxGraph], object]
    from_torch: Callable[[Any, str], Layer]
    input_dims: Callable[[Any], tuple[int | str, ...]] | None = None


def _weights(tensor: Any, what: str) -> FloatArray:
    """A torch tensor as a NumPy copy, float32 or float64, finite."""
    A = tensor.detach().cpu().numpy().copy()
    if A.dtype not in _DTYPES:
        raise JacnetTypeError(f"from_torch expects float32 or float64 weights, got {A.dtype} in {what}")
    if not all_finite(A):
        raise NonFiniteError(f"from_torch expects finite weights, got NaN or infinity in {what}")
    return A


def _tensor(torch: Any, A: FloatArray) -> Any:
    return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(A).copy()))


def _affine_to_torch(layer: Affine, torch: Any) -> Any:
    # Built on the meta device (no initialisation, no draw from torch's global RNG), then given
    # the weights. torch keeps W as (out, in): W.T.
    linear = torch.nn.Linear(layer.in_features, layer.out_features, device="meta")
    linear.weight = _tensor(torch, layer.params["W"].T)
    linear.bias = _tensor(torch, layer.params["b"])
    return linear


def _affine_to_onnx(layer: Affine, graph: OnnxGraph) -> None:
    # Gemm computes X·W + b with W as jacnet stores it, (in, out): no transpose.
    X = graph.cast(np.dtype(layer.params["W"].dtype))
    graph.op("Gemm", X, graph.param("W", layer.params["W"]), graph.param("b", layer.params["b"]))


def _affine_from_torch(module: Any, where: str) -> Affine:
    W = _weights(module.weight, where).T
    b = (_weights(module.bias, where) if module.bias is not None
         else np.zeros(W.shape[1], dtype=W.dtype))
    if b.dtype != W.dtype:
        raise JacnetTypeError(f"from_torch expects the weight and bias of one dtype, got {W.dtype} "
                              f"and {b.dtype} in {where}")
    layer = Affine(W.shape[0], W.shape[1], init="zeros", dtype=W.dtype)
    layer.params["W"][...] = W
    layer.params["b"][...] = b
    return layer


def _leaky_to_onnx(layer: LeakyReLU, graph: OnnxGraph) -> None:
    slope = float(layer.negative_slope)
    if graph.dtype == np.float32 or float(np.float32(slope)) == slope:
        graph.op("LeakyRelu", graph.current, alpha=slope)
        return
    # LeakyRelu's alpha is a float32 attribute: a float64 slope that float32 rounds (0.2, 0.01)
    # would move every negative output by ~1e-8 relative. Where(X > 0, X, X·slope) keeps it exact.
    X = graph.current
    scaled = graph.op("Mul", X, graph.param("negative_slope", np.array(slope, dtype=graph.dtype)))
    positive = graph.op("Greater", X, graph.param("zero", np.zeros((), dtype=graph.dtype)))
    graph.op("Where", positive, X, scaled)


def _leaky_from_torch(module: Any, where: str) -> LeakyReLU:
    return LeakyReLU(float(module.negative_slope))


def _softmax_from_torch(module: Any, where: str) -> Softmax:
    if module.dim not in (-1, 1):
        raise JacnetValueError(f"from_torch expects Softmax over the features (dim=-1 or dim=1), "
                               f"got dim={module.dim} in {where}")
    return Softmax()


def _elementwise(layer: type[Layer], torch_name: str, onnx_op: str) -> Conversion:
    """The entry of a parameterless layer that is one torch module and one ONNX node."""
    return Conversion(
        layer=layer,
        torch_names=(torch_name,),
        to_torch=lambda _layer, torch: getattr(torch.nn, torch_name)(),
        to_onnx=lambda _layer, graph: graph.op(onnx_op, graph.current),
        from_torch=lambda _module, _where: layer(),
    )


#: Every layer type that crosses, keyed by jacnet class. New layer types add an entry here; for
#: instance a Conv2D with W (out_ch, in_ch, kh, kw) and b (out_ch,) is torch.nn.Conv2d with
#: ``weight = W`` (the same layout) and an ONNX ``Conv(X, W, b)``, and its ``input_dims`` gives
#: ``(in_ch, "H", "W")``; a BatchNorm in eval mode is ``BatchNormalization(X, gamma, beta,
#: running_mean, running_var, epsilon=1e-5)`` (torch: ``weight = gamma``, ``bias = beta``).
CONVERSIONS: dict[type[Layer], Conversion] = {
    Affine: Conversion(
        layer=Affine,
        torch_names=("Linear",),
        to_torch=_affine_to_torch,
        to_onnx=_affine_to_onnx,
        from_torch=_affine_from_torch,
        input_dims=lambda layer: (layer.in_features,),
    ),
    ReLU: _elementwise(ReLU, "ReLU", "Relu"),
    LeakyReLU: Conversion(
        layer=LeakyReLU,
        torch_names=("LeakyReLU",),
        to_torch=lambda layer, torch: torch.nn.LeakyReLU(layer.negative_slope),
        to_onnx=_leaky_to_onnx,
        from_torch=_leaky_from_torch,
    ),
    Sigmoid: _elementwise(Sigmoid, "Sigmoid", "Sigmoid"),
    Tanh: _elementwise(Tanh, "Tanh", "Tanh"),
    Softmax: Conversion(
        layer=Softmax,
        torch_names=("Softmax",),
        to_torch=lambda _layer, torch: torch.nn.Softmax(dim=-1),
        to_onnx=lambda _layer, graph: graph.op("Softmax", graph.current, axis=-1),
        from_torch=_softmax_from_torch,
    ),
}


def _flatten_is_trivial(module: Any) -> bool:
    return bool(module.start_dim == 1 and module.end_dim in (-1, 1))


#: torch modules that are the identity on ``(N, features)`` input: imported as nothing. (When
#: jacnet gains a Flatten layer, its entry in CONVERSIONS takes "Flatten" over from here.)
_IDENTITIES: dict[str, Callable[[Any], bool]] = {"Identity": lambda _module: True,
                                                 "Flatten": _flatten_is_trivial}


def _supported_names() -> str:
    names = [name for c in CONVERSIONS.values() for name in c.torch_names]
    names += [name for name in _IDENTITIES if name not in names]
    return ", ".join(names)


def _conversion(layer: Any, i: int, what: str) -> Conversion:
    conversion = CONVERSIONS.get(type(layer))
    if conversion is None:
        cls = type(layer)
        raise JacnetTypeError(
            f"{what} expects jacnet's built-in layers ({', '.join(c.__name__ for c in CONVERSIONS)}), "
            f"got {cls.__module__}.{cls.__qualname__} at position {i}")
    return conversion


def _check_model(model: Any, what: str) -> Sequential:
    if not isinstance(model, Sequential):
        raise JacnetTypeError(f"{what} model expects a jacnet Sequential, got {describe(model)}")
    return model


# PyTorch --------------------------------------------------------------------------------------


def to_torch(model: Sequential) -> Any:
    """The network as a ``torch.nn.Sequential`` with the same weights and dtypes.

    Parameters
    ----------
    model : Sequential
        Built from jacnet's layers (see :data:`CONVERSIONS`).

    Returns
    -------
    torch.nn.Sequential
        One module per layer: ``Affine(in, out)`` becomes ``Linear(in, out)`` with
        ``weight = Wᵀ`` of shape ``(out, in)`` and ``bias = b``; the activations their torch
        modules (``Softmax(dim=-1)``). Its output for an ``(N, in)`` tensor equals
        ``model.forward`` (float64: within about 1e-15 relative). The parameters are copies.

    Raises
    ------
    ImportError
        When PyTorch is not installed (``pip install 'jacnet[torch]'``).
    JacnetTypeError
        For a layer that is not one of jacnet's built-ins, named with its position.
    """
    torch = _require("torch", "jacnet.export.to_torch")
    model = _check_model(model, "to_torch")
    modules = [_conversion(layer, i, "to_torch").to_torch(layer, torch)
               for i, layer in enumerate(model.layers)]
    return torch.nn.Sequential(*modules).eval()


def _torch_name(cls: type) -> str:
    """``torch.nn.Conv2d`` for torch's own classes, ``module.Class`` for anything else."""
    if cls.__module__.startswith("torch.nn.modules"):
        return f"torch.nn.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _leaves(module: Any, torch: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(position, module)`` for every module, nested Sequentials flattened (``"1.0"``...)."""
    if type(module) is torch.nn.Sequential:
        for name, child in module.named_children():
            yield from _leaves(child, torch, f"{path}.{name}" if path else name)
    else:
        yield path or "0", module


def from_torch(module: Any) -> Sequential:
    """A jacnet network with the weights and dtypes of a PyTorch ``Sequential``.

    Parameters
    ----------
    module : torch.nn.Sequential
        Of ``Linear`` (with or without bias; a missing bias becomes zeros), ``ReLU``,
        ``LeakyReLU``, ``Sigmoid``, ``Tanh`` and ``Softmax(dim=-1 or 1)``, on ``(N, features)``
        input; nested ``Sequential``\\ s are flattened and ``Identity`` and
        ``Flatten(start_dim=1)`` (the identity there) are dropped. A single supported module is
        taken as a one-layer network. Weights must be float32 or float64 and finite.

    Returns
    -------
    Sequential
        Without a loss; ``jacnet.save`` it to check it with ``jacnet check --model FILE``.

    Raises
    ------
    ImportError
        When PyTorch is not installed (``pip install 'jacnet[torch]'``).
    JacnetTypeError
        For any other module, named with its position: ``from_torch expects ..., got
        torch.nn.Conv2d at position 3``; for a subclass of a supported class (it may compute
        something else); for weights of another dtype.
    ShapeError
        When two ``Linear`` layers do not fit together.
    """
    torch = _require("torch", "jacnet.export.from_torch")
    if not isinstance(module, torch.nn.Module):
        raise JacnetTypeError(f"from_torch module expects a torch.nn.Sequential, got {describe(module)}")
    by_name = {name: c for c in CONVERSIONS.values() for name in c.torch_names}
    layers: list[Layer] = []
    width: tuple[int, str] | None = None  # the features the previous Linear gives, and its position
    for position, child in _leaves(module, torch, ""):
        cls = type(child)
        name = cls.__name__
        where = f"{name} at position {position}"
        known = getattr(torch.nn, name, None) is cls
        if known and name in _IDENTITIES and name not in by_name:
            if not _IDENTITIES[name](child):
                raise JacnetValueError(f"from_torch expects {name} to be the identity on (N, features) "
                                       f"input, got {child!r} at position {position}")
            continue
        if not known or name not in by_name:
            parent = next((f" (a subclass of torch.nn.{base.__name__}; only the class itself "
                           "is converted)" for base in cls.__mro__[1:]
                           if getattr(torch.nn, base.__name__, None) is base and base.__name__ in by_name),
                          "")
            raise JacnetTypeError(f"from_torch expects a torch.nn.Sequential of {_supported_names()}, "
                                  f"got {_torch_name(cls)}{parent} at position {position}")
        layer = by_name[name].from_torch(child, where)
        if isinstance(layer, Affine):
            if width is not None and width[0] != layer.in_features:
                raise ShapeError(f"from_torch expects {where} to take the {width[0]} features that "
                                 f"position {width[1]} gives, got in_features={layer.in_features}")
            width = (layer.out_features, position)
        layers.append(layer)
    if not layers:
        raise JacnetValueError("from_torch expects at least one supported layer, got none")
    return Sequential(layers)


# ONNX -----------------------------------------------------------------------------------------


def to_onnx(model: Sequential) -> Any:
    """The network as an ONNX model (opset 17), built with the ``onnx`` helper API.

    Parameters
    ----------
    model : Sequential
        Built from jacnet's layers (see :data:`CONVERSIONS`).

    Returns
    -------
    onnx.ModelProto
        Checked by ``onnx.checker``. Input ``"X"``: ``(N, in)`` in the network's dtype
        (float32 or float64; that of its first parameter, as ``Sequential.predict`` casts);
        output ``"Y"``: ``(N, out)``, what ``model.predict`` returns (the logits for a network
        trained with a fused loss). ``N`` is dynamic. Weights are initializers named like
        :attr:`Sequential.params` (``"0.W"``); ``Affine`` is a ``Gemm``, the activations
        ``Relu``, ``LeakyRelu``, ``Sigmoid``, ``Tanh``, ``Softmax(axis=-1)``; a layer of another
        dtype than its input gets a ``Cast`` first.

    Raises
    ------
    ImportError
        When onnx is not installed (``pip install 'jacnet[onnx]'``).
    JacnetTypeError
        For a layer that is not one of jacnet's built-ins, named with its position.
    """
    onnx = _require("onnx", "jacnet.export.to_onnx")
    model = _check_model(model, "to_onnx")
    conversions = [_conversion(layer, i, "to_onnx") for i, layer in enumerate(model.layers)]
    dtype = np.dtype(model.dtype)
    graph = OnnxGraph(onnx, dtype)
    for i, (layer, conversion) in enumerate(zip(model.layers, conversions, strict=True)):
        graph.start_layer(i)
        conversion.to_onnx(layer, graph)
    graph.nodes[-1].output[0] = "Y"  # the last layer's output is the graph's
    # The input's dims: those of the first layer that fixes them (the ones before keep the shape).
    in_dims = next((c.input_dims(layer) for c, layer in zip(conversions, model.layers, strict=True)
                    if c.input_dims is not None), ("features",))
    if all(isinstance(d, int) for d in in_dims):  # the output's dims: from one sample, on a copy
        out_dims: tuple[int | str, ...] = copy.deepcopy(model).forward(np.zeros((1, *in_dims))).shape[1:]
    else:  # no layer fixes them: every layer keeps the shape
        out_dims = in_dims
    helper = onnx.helper
    proto = helper.make_model(
        helper.make_graph(
            graph.nodes, "jacnet",
            [helper.make_tensor_value_info("X", _onnx_type(onnx, dtype), ["N", *in_dims])],
            [helper.make_tensor_value_info("Y", _onnx_type(onnx, graph.dtype), ["N", *out_dims])],
            initializer=graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="jacnet",
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def save_onnx(model: Sequential, path: str | os.PathLike[str]) -> Path:
    """Write :func:`to_onnx` of ``model`` to ``path``, atomically (temporary file, fsync, rename).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ModelFileError
        The file could not be written (missing or unwritable directory, a directory at
        ``path``, disk full); any previous file at ``path`` is left as it was.
    ImportError, JacnetTypeError
        As for :func:`to_onnx`.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise JacnetTypeError(f"save_onnx path expects a file name, got {describe(path)}")
    target = Path(os.fspath(path))
    data = to_onnx(model).SerializeToString()
    write_atomically(target, [data], "save_onnx")
    return target
