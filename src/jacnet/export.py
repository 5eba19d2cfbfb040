"""Converting jacnet networks to and from other systems: PyTorch both ways, ONNX out.

- :func:`to_torch` gives a ``torch.nn.Sequential`` with the same weights and dtype.
- :func:`from_torch` turns a ``torch.nn.Sequential`` of supported modules into a jacnet
  :class:`~jacnet.Sequential`, so a network trained elsewhere can have its Jacobians seen and
  checked (``jacnet.save`` it, then ``jacnet check --model FILE``).
- :func:`to_onnx` builds an ONNX model (opset :data:`OPSET`) with the ``onnx`` package's helper
  API; :func:`save_onnx` writes it atomically. Input ``"X"`` of shape ``(N, in)`` (``(N, C,
  L)`` / ``(N, C, H, W)`` for a convolutional network: :func:`input_dims`), output ``"Y"``,
  ``N`` and the spatial sizes dynamic, float32 or float64 as the network computes.

Every layer type crosses through one entry of :data:`CONVERSIONS`, keyed by the jacnet layer
class: it builds the torch module, emits the ONNX nodes and imports from the torch classes it
names. Adding a layer type is adding one entry. Where a conversion depends on the rank of a
layer's input (``BatchNorm`` is ``BatchNorm1d`` on ``(N, F)`` and ``(N, C, L)``, ``BatchNorm2d``
on ``(N, C, H, W)``; a global average's axes), :func:`input_ranks` finds it from the layers.

What the network computes is what ``Sequential.predict`` computes: inference, so ``BatchNorm``
uses its running statistics and ``Dropout`` is the identity (the torch module comes in eval
mode; the ONNX graph normalises with the running statistics and has an ``Identity`` for
dropout).

PyTorch (``pip install 'jacnet[torch]'``) and onnx (``pip install 'jacnet[onnx]'``) are
optional: each is imported inside the function that needs it. Nothing here unpickles: no PyTorch
file is ever read; a PyTorch network comes in as a live module.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jacnet._validation import FloatArray, all_finite, describe
from jacnet.conv import Conv1D, Conv2D, _Conv
from jacnet.dropout import Dropout
from jacnet.errors import JacnetTypeError, JacnetValueError, NonFiniteError, ShapeError
from jacnet.io import write_atomically
from jacnet.layers import Affine, Layer, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from jacnet.model import Sequential
from jacnet.normalization import BatchNorm, LayerNorm
from jacnet.pooling import (
    AvgPool1D,
    AvgPool2D,
    Flatten,
    GlobalAvgPool,
    MaxPool1D,
    MaxPool2D,
    Unflatten,
)

__all__ = ["CONVERSIONS", "OPSET", "Conversion", "OnnxGraph", "from_torch", "input_dims", "input_ranks",
           "save_onnx", "to_onnx", "to_torch"]

#: The ONNX operator set the exported graphs use (ONNX 1.12+, ONNX Runtime 1.13+ run it).
OPSET = 17
#: The ONNX IR version written: the one that came with opset 17, so older runtimes load it.
IR_VERSION = 8

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

Dims = tuple[int | str, ...]
#: The names of an input's axes after the batch axis, by rank: what stands where a network
#: does not fix the size (spatial sizes always, channels where no layer fixes them).
_AXES: dict[int, tuple[str, ...]] = {2: ("features",), 3: ("C", "L"), 4: ("C", "H", "W"),
                                     5: ("C", "D", "H", "W")}


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
    rank : int
        Its rank, batch axis included (2 for ``(N, features)``, 4 for ``(N, C, H, W)``).
    """

    def __init__(self, onnx: Any, dtype: np.dtype[Any]) -> None:
        self._onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.current = "X"
        self.dtype = dtype
        self.rank = 2
        self._prefix = ""
        self._count = 0

    def start_layer(self, index: int) -> None:
        """Name what follows after layer ``index``: nodes ``"<index>.<op>"``, ``"<index>.<param>"``."""
        self._prefix = f"{index}"
        self._count = 0

    def param(self, name: str, array: np.ndarray[Any, Any]) -> str:
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
        ``(layer, torch, rank) -> torch.nn.Module`` with the layer's weights (and buffers) and
        dtype; ``rank`` is that of the layer's input (see :func:`input_ranks`).
    to_onnx : callable
        ``(layer, graph)``: append the layer's nodes to the :class:`OnnxGraph`.
    from_torch : callable
        ``(module, where) -> Layer``; raise a jacnet error naming ``where`` for a setting
        jacnet does not have.
    input_dims : callable, optional
        ``(layer, rank) -> dims`` after the batch axis that the layer takes (the ONNX input's
        shape, when no layer before it fixes them), names (``"L"``, ``"H"``...) for the sizes it
        leaves free; ``None`` (the field, or what it returns) for a layer that keeps its input's
        shape, so a later layer says.
    output_rank : int or callable, optional
        The rank of the layer's output when it differs from its input's (``Flatten``,
        ``GlobalAvgPool``: 2; ``Unflatten``: ``layer -> 1 + len(layer.shape)``); ``None`` when
        the layer keeps the rank.
    """

    layer: type[Layer]
    torch_names: tuple[str, ...]
    to_torch: Callable[[Any, Any, int], Any]
    to_onnx: Callable[[Any, OnnxGraph], object]
    from_torch: Callable[[Any, str], Layer]
    input_dims: Callable[[Any, int], Dims | None] | None = None
    output_rank: int | Callable[[Any], int] | None = None

    def rank_after(self, layer: Layer, rank: int) -> int:
        """The rank of ``layer``'s output for an input of ``rank``."""
        if callable(self.output_rank):
            return self.output_rank(layer)
        return self.output_rank or rank


def _weights(tensor: Any, what: str) -> FloatArray:
    """A torch tensor as a NumPy copy, float32 or float64, finite."""
    A = tensor.detach().cpu().numpy().copy()
    if A.dtype not in _DTYPES:
        raise JacnetTypeError(f"from_torch expects float32 or float64 weights, got {A.dtype} in {what}")
    if not all_finite(A):
        raise NonFiniteError(f"from_torch expects finite weights, got NaN or infinity in {what}")
    return A


def _same_dtype(arrays: dict[str, FloatArray], where: str) -> np.dtype[Any]:
    """The one dtype of a module's weights (and buffers); refuses a mix."""
    dtypes = {name: A.dtype for name, A in arrays.items()}
    if len(set(dtypes.values())) > 1:
        found = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise JacnetTypeError(f"from_torch expects the weights of one dtype, got {found} in {where}")
    return next(iter(dtypes.values()))


def _bias(module: Any, where: str, size: int, dtype: np.dtype[Any]) -> FloatArray:
    """The module's bias, or zeros where it has none (``bias=False``)."""
    return _weights(module.bias, where) if module.bias is not None else np.zeros(size, dtype=dtype)


def _check_settings(module: Any, where: str, expected: dict[str, Any]) -> None:
    """Refuse by name a setting that jacnet's layer does not have: ``expected`` maps an attribute
    to its one supported value (an int also stands for that int on every axis); a module
    without the attribute (``AvgPool1d`` has no ``divisor_override``) has the supported one."""
    for name, want in expected.items():
        got = getattr(module, name, want)
        ok = got is want if isinstance(want, bool) or want is None else (
            got == want or (isinstance(got, tuple) and all(g == want for g in got)))
        if not ok:
            raise JacnetValueError(f"from_torch expects {name}={want!r} (the only setting jacnet has), "
                                   f"got {name}={got!r} in {where}")


def _tensor(torch: Any, A: FloatArray) -> Any:
    return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(A).copy()))


def _torch_dtype(torch: Any, dtype: np.dtype[Any]) -> Any:
    return torch.float64 if dtype == np.float64 else torch.float32


def _affine_to_torch(layer: Affine, torch: Any, _rank: int) -> Any:
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
    b = _bias(module, where, W.shape[1], W.dtype)
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
        to_torch=lambda _layer, torch, _rank: getattr(torch.nn, torch_name)(),
        to_onnx=lambda _layer, graph: graph.op(onnx_op, graph.current),
        from_torch=lambda _module, _where: layer(),
    )


# Sliding windows in ONNX: every kernel offset's strided slice ----------------------------------


def _window_slices(graph: OnnxGraph, kernel: tuple[int, ...], stride: tuple[int, ...],
                   padding: tuple[int, ...]) -> list[str]:
    """For each kernel offset ``κ`` (C order), ``Xp[:, :, κ::stride]`` of the zero-padded input,
    cut to the ``floor((s + 2p − k)/stride) + 1`` output positions: ``(N, C, *out)`` each.

    The end of each slice counts back from the input's end (``κ − (k − 1)``), so the spatial
    sizes stay free (dynamic) in the graph. How float64 convolution and average pooling run,
    which ONNX Runtime's CPU kernels (Conv, AveragePool) only have in float32.
    """
    d = len(kernel)
    X = graph.current
    if any(padding):
        X = graph.op("Pad", X, graph.param("pads", np.array([0, 0, *padding] * 2, dtype=np.int64)))
    axes = graph.param("axes", np.arange(2, 2 + d, dtype=np.int64))
    steps = graph.param("steps", np.array(stride, dtype=np.int64))
    last = np.iinfo(np.int64).max
    slices = []
    for offset in np.ndindex(*kernel):
        tag = "_".join(map(str, offset))
        ends = [o - (k - 1) if o < k - 1 else last for o, k in zip(offset, kernel, strict=True)]
        slices.append(graph.op("Slice", X, graph.param(f"starts.{tag}", np.array(offset, dtype=np.int64)),
                               graph.param(f"ends.{tag}", np.array(ends, dtype=np.int64)), axes, steps))
    return slices


def _window_attributes(layer: Any) -> dict[str, list[int]]:
    return {"kernel_shape": list(layer.kernel_size), "strides": list(layer.stride),
            "pads": list(layer.padding) * 2}


# Convolution ------------------------------------------------------------------------------------


def _conv_to_torch(layer: _Conv, torch: Any, _rank: int) -> Any:
    cls = getattr(torch.nn, f"Conv{layer.spatial_ndim}d")
    conv = cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
               padding=layer.padding, device="meta")  # no draw from torch's RNG; weights below
    conv.weight = _tensor(torch, layer.params["W"])  # the same (out, in, *k) layout
    conv.bias = _tensor(torch, layer.params["b"])
    return conv


def _conv_to_onnx(layer: _Conv, graph: OnnxGraph) -> None:
    X = graph.cast(layer.dtype)
    W, b = graph.param("W", layer.params["W"]), graph.param("b", layer.params["b"])
    if graph.dtype == np.float32:
        graph.op("Conv", X, W, b, **_window_attributes(layer))
        return
    # float64: jacnet's own im2col product, cols (N, *out, K·C) @ W_mat (K·C, O) + b, where
    # W_mat[(κ, c), o] = W[o, c, κ]; ONNX Runtime has no float64 Conv on the CPU.
    d = layer.spatial_ndim
    cols = graph.op("Concat", *_window_slices(graph, layer.kernel_size, layer.stride, layer.padding),
                    axis=1)  # (N, K·C, *out), channels ordered (κ, c)
    rows = graph.op("Transpose", cols, perm=[0, *range(2, 2 + d), 1])
    W_t = graph.op("Transpose", W, perm=[*range(2, 2 + d), 1, 0])  # (*k, C, O)
    W_mat = graph.op("Reshape", W_t, graph.param("W_mat_shape",
                                                 np.array([-1, layer.out_channels], dtype=np.int64)))
    Y = graph.op("Add", graph.op("MatMul", rows, W_mat), b)  # (N, *out, O)
    graph.op("Transpose", Y, perm=[0, d + 1, *range(1, d + 1)])


def _conv_from_torch(module: Any, where: str) -> _Conv:
    _check_settings(module, where, {"padding_mode": "zeros", "dilation": 1, "groups": 1})
    kernel = tuple(module.kernel_size)
    padding = module.padding
    if padding == "valid":
        padding = (0,) * len(kernel)
    elif padding == "same":  # stride 1 (torch's rule): symmetric exactly when every k is odd
        if any(k % 2 == 0 for k in kernel):
            raise JacnetValueError(f"from_torch expects padding='same' with odd kernel sizes (jacnet "
                                   f"pads both ends alike), got kernel_size={kernel} in {where}")
        padding = tuple(k // 2 for k in kernel)
    W = _weights(module.weight, where)
    b = _bias(module, where, W.shape[0], W.dtype)
    dtype = _same_dtype({"weight": W, "bias": b}, where)
    cls: type[_Conv] = Conv1D if len(kernel) == 1 else Conv2D
    layer = cls(module.in_channels, module.out_channels, kernel, tuple(module.stride), tuple(padding),
                init="zeros", dtype=dtype)
    layer.params["W"][...] = W
    layer.params["b"][...] = b
    return layer


def _conv(layer: type[_Conv]) -> Conversion:
    return Conversion(
        layer=layer,
        torch_names=(f"Conv{layer.spatial_ndim}d",),
        to_torch=_conv_to_torch,
        to_onnx=_conv_to_onnx,
        from_torch=_conv_from_torch,
        input_dims=lambda conv, _rank: (conv.in_channels, *_AXES[2 + conv.spatial_ndim][1:]),
    )


# Pooling and reshaping --------------------------------------------------------------------------


def _pool_to_onnx(layer: Any, graph: OnnxGraph) -> None:
    if isinstance(layer, (MaxPool1D, MaxPool2D)):  # padding never wins a max, as in PyTorch
        graph.op("MaxPool", graph.current, **_window_attributes(layer))
    elif graph.dtype == np.float32:
        graph.op("AveragePool", graph.current, count_include_pad=1, **_window_attributes(layer))
    else:  # float64: the mean of the window slices, zero padding counted (no float64 AveragePool)
        total = graph.op("Sum", *_window_slices(graph, layer.kernel_size, layer.stride, layer.padding))
        graph.op("Div", total, graph.param("count", np.array(np.prod(layer.kernel_size), dtype=graph.dtype)))


def _max_pool_from_torch(module: Any, where: str) -> Layer:
    _check_settings(module, where, {"dilation": 1, "ceil_mode": False, "return_indices": False})
    cls = MaxPool1D if type(module).__name__ == "MaxPool1d" else MaxPool2D
    return cls(module.kernel_size, module.stride, module.padding)


def _avg_pool_from_torch(module: Any, where: str) -> Layer:
    _check_settings(module, where, {"ceil_mode": False, "count_include_pad": True,
                                    "divisor_override": None})
    cls = AvgPool1D if type(module).__name__ == "AvgPool1d" else AvgPool2D
    return cls(module.kernel_size, module.stride, module.padding)


def _pool(layer: type[Layer]) -> Conversion:
    kind = "Max" if layer in (MaxPool1D, MaxPool2D) else "Avg"
    d = layer.spatial_ndim  # type: ignore[attr-defined]
    torch_name = f"{kind}Pool{d}d"
    return Conversion(
        layer=layer,
        torch_names=(torch_name,),
        # count_include_pad=True (torch's default) is jacnet's average: padding counts in K.
        to_torch=lambda pool, torch, _rank: getattr(torch.nn, torch_name)(
            pool.kernel_size, pool.stride, pool.padding),
        to_onnx=_pool_to_onnx,
        from_torch=_max_pool_from_torch if kind == "Max" else _avg_pool_from_torch,
        input_dims=lambda _pool, _rank: _AXES[2 + d],
    )


def _global_avg_pool_from_torch(module: Any, where: str) -> GlobalAvgPool:
    _check_settings(module, where, {"output_size": 1})
    return GlobalAvgPool()  # from_torch takes the Flatten that must follow


def _unflatten_from_torch(module: Any, where: str) -> Unflatten:
    if module.dim not in (1, -len(module.unflattened_size) - 1):
        raise JacnetValueError(f"from_torch expects Unflatten(1, shape) (jacnet's only form), got "
                               f"dim={module.dim} in Unflatten at {where}")
    return Unflatten(tuple(int(s) for s in module.unflattened_size))


def _flatten_from_torch(module: Any, where: str) -> Flatten:
    _check_settings(module, where, {"start_dim": 1, "end_dim": -1})
    return Flatten()


# Normalisation and dropout -----------------------------------------------------------------------


def _copy_into(module: Any, torch: Any, arrays: dict[str, FloatArray]) -> Any:
    """``module`` with its parameters and buffers set to copies of ``arrays``."""
    with torch.no_grad():
        for name, A in arrays.items():
            getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(A)))
    return module


def _batch_norm_to_torch(layer: BatchNorm, torch: Any, rank: int) -> Any:
    # BatchNorm1d takes (N, F) and (N, C, L), BatchNorm2d (N, C, H, W): the input's rank picks.
    cls = torch.nn.BatchNorm2d if rank == 4 else torch.nn.BatchNorm1d
    module = cls(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                 dtype=_torch_dtype(torch, layer.dtype))  # ones and zeros: no random draw
    return _copy_into(module, torch, {"weight": layer.params["gamma"], "bias": layer.params["beta"],
                                      **layer.buffers})


def _inverse_std(graph: OnnxGraph, var: str, eps: float) -> str:
    """``1/sqrt(var + eps)`` as jacnet computes it, eps in the graph's dtype."""
    shifted = graph.op("Add", var, graph.param("eps", np.array(eps, dtype=graph.dtype)))
    return graph.op("Reciprocal", graph.op("Sqrt", shifted))


def _batch_norm_to_onnx(layer: BatchNorm, graph: OnnxGraph) -> None:
    X = graph.cast(layer.dtype)
    gamma, beta = graph.param("gamma", layer.params["gamma"]), graph.param("beta", layer.params["beta"])
    mean = graph.param("running_mean", layer.buffers["running_mean"])
    var = graph.param("running_var", layer.buffers["running_var"])
    if graph.dtype == np.float32:  # inference: (x − running_mean)/sqrt(running_var + eps)·γ + β
        graph.op("BatchNormalization", X, gamma, beta, mean, var, epsilon=layer.eps)
        return
    # float64: epsilon is a float32 attribute (1e-5 moves by 2.5e-14), so jacnet's own steps.
    shape = graph.param("feature_shape", np.array([-1, *(1,) * (graph.rank - 2)], dtype=np.int64))
    inv_std, mean, gamma, beta = (graph.op("Reshape", v, shape) for v in
                                  (_inverse_std(graph, var, layer.eps), mean, gamma, beta))
    xhat = graph.op("Mul", graph.op("Sub", X, mean), inv_std)
    graph.op("Add", graph.op("Mul", xhat, gamma), beta)


def _batch_norm_from_torch(module: Any, where: str) -> BatchNorm:
    _check_settings(module, where, {"affine": True, "track_running_stats": True})
    if module.momentum is None:
        raise JacnetValueError(f"from_torch expects a momentum (a number), got momentum=None "
                               f"(a cumulative average) in {where}")
    arrays = {name: _weights(getattr(module, name), where)
              for name in ("weight", "bias", "running_mean", "running_var")}
    layer = BatchNorm(module.num_features, eps=module.eps, momentum=module.momentum,
                      dtype=_same_dtype(arrays, where))
    layer.params["gamma"][...] = arrays["weight"]
    layer.params["beta"][...] = arrays["bias"]
    layer.buffers["running_mean"][...] = arrays["running_mean"]
    layer.buffers["running_var"][...] = arrays["running_var"]
    return layer


def _layer_norm_to_torch(layer: LayerNorm, torch: Any, _rank: int) -> Any:
    module = torch.nn.LayerNorm(layer.normalized_shape, eps=layer.eps,
                                dtype=_torch_dtype(torch, layer.dtype))
    return _copy_into(module, torch, {"weight": layer.params["gamma"], "bias": layer.params["beta"]})


def _layer_norm_to_onnx(layer: LayerNorm, graph: OnnxGraph) -> None:
    X = graph.cast(layer.dtype)
    gamma, beta = graph.param("gamma", layer.params["gamma"]), graph.param("beta", layer.params["beta"])
    D = len(layer.normalized_shape)
    if graph.dtype == np.float32:
        graph.op("LayerNormalization", X, gamma, beta, axis=-D, epsilon=layer.eps)
        return
    # float64: jacnet's own steps (a float32 epsilon attribute, and ONNX Runtime's variance
    # as E[x²] − E[x]², would move outputs by up to ~1e-12).
    axes = list(range(graph.rank - D, graph.rank))
    centred = graph.op("Sub", X, graph.op("ReduceMean", X, axes=axes, keepdims=1))
    var = graph.op("ReduceMean", graph.op("Mul", centred, centred), axes=axes, keepdims=1)
    xhat = graph.op("Mul", centred, _inverse_std(graph, var, layer.eps))
    graph.op("Add", graph.op("Mul", xhat, gamma), beta)


def _layer_norm_from_torch(module: Any, where: str) -> LayerNorm:
    _check_settings(module, where, {"elementwise_affine": True})
    gamma = _weights(module.weight, where)
    beta = _weights(module.bias, where) if module.bias is not None else np.zeros_like(gamma)
    layer = LayerNorm(tuple(module.normalized_shape), eps=module.eps,
                      dtype=_same_dtype({"weight": gamma, "bias": beta}, where))
    layer.params["gamma"][...] = gamma
    layer.params["beta"][...] = beta
    return layer


def _layer_norm_dims(layer: LayerNorm, rank: int) -> Dims:
    """The trailing ``normalized_shape`` fixed, the axes before it named."""
    lead = _AXES[rank][: max(rank - 1 - len(layer.normalized_shape), 0)]
    return (*lead, *layer.normalized_shape)


#: Every layer type that crosses, keyed by jacnet class. A new layer type adds an entry here.
CONVERSIONS: dict[type[Layer], Conversion] = {
    Affine: Conversion(
        layer=Affine,
        torch_names=("Linear",),
        to_torch=_affine_to_torch,
        to_onnx=_affine_to_onnx,
        from_torch=_affine_from_torch,
        input_dims=lambda layer, _rank: (layer.in_features,),
    ),
    ReLU: _elementwise(ReLU, "ReLU", "Relu"),
    LeakyReLU: Conversion(
        layer=LeakyReLU,
        torch_names=("LeakyReLU",),
        to_torch=lambda layer, torch, _rank: torch.nn.LeakyReLU(layer.negative_slope),
        to_onnx=_leaky_to_onnx,
        from_torch=_leaky_from_torch,
    ),
    Sigmoid: _elementwise(Sigmoid, "Sigmoid", "Sigmoid"),
    Tanh: _elementwise(Tanh, "Tanh", "Tanh"),
    Softmax: Conversion(
        layer=Softmax,
        torch_names=("Softmax",),
        to_torch=lambda _layer, torch, _rank: torch.nn.Softmax(dim=-1),
        to_onnx=lambda _layer, graph: graph.op("Softmax", graph.current, axis=-1),
        from_torch=_softmax_from_torch,
    ),
    Conv1D: _conv(Conv1D),
    Conv2D: _conv(Conv2D),
    MaxPool1D: _pool(MaxPool1D),
    MaxPool2D: _pool(MaxPool2D),
    AvgPool1D: _pool(AvgPool1D),
    AvgPool2D: _pool(AvgPool2D),
    GlobalAvgPool: Conversion(
        layer=GlobalAvgPool,
        torch_names=("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d"),
        # torch's global average keeps size-1 spatial axes: a Flatten after it gives (N, C).
        to_torch=lambda _layer, torch, rank: torch.nn.Sequential(
            getattr(torch.nn, f"AdaptiveAvgPool{rank - 2}d")(1), torch.nn.Flatten()),
        # ReduceMean over the spatial axes is GlobalAveragePool + Flatten in one node, and has
        # a float64 kernel in ONNX Runtime.
        to_onnx=lambda _layer, graph: graph.op("ReduceMean", graph.current,
                                               axes=list(range(2, graph.rank)), keepdims=0),
        from_torch=_global_avg_pool_from_torch,
        input_dims=lambda _layer, rank: _AXES[rank],
        output_rank=2,
    ),
    Unflatten: Conversion(
        layer=Unflatten,
        torch_names=("Unflatten",),
        to_torch=lambda layer, torch, _rank: torch.nn.Unflatten(1, layer.shape),
        to_onnx=lambda layer, graph: graph.op(
            "Reshape", graph.current, graph.param("shape", np.array([0, *layer.shape], dtype=np.int64))),
        from_torch=_unflatten_from_torch,
        input_dims=lambda layer, _rank: (layer.in_features,),
        output_rank=lambda layer: 1 + len(layer.shape),
    ),
    Flatten: Conversion(
        layer=Flatten,
        torch_names=("Flatten",),
        to_torch=lambda _layer, torch, _rank: torch.nn.Flatten(),
        to_onnx=lambda _layer, graph: graph.op("Flatten", graph.current, axis=1),
        from_torch=_flatten_from_torch,
        input_dims=lambda _layer, rank: None if rank == 2 else _AXES[rank],
        output_rank=2,
    ),
    BatchNorm: Conversion(
        layer=BatchNorm,
        torch_names=("BatchNorm1d", "BatchNorm2d"),
        to_torch=_batch_norm_to_torch,
        to_onnx=_batch_norm_to_onnx,
        from_torch=_batch_norm_from_torch,
        input_dims=lambda layer, rank: (layer.num_features, *_AXES[rank][1:]),
    ),
    LayerNorm: Conversion(
        layer=LayerNorm,
        torch_names=("LayerNorm",),
        to_torch=_layer_norm_to_torch,
        to_onnx=_layer_norm_to_onnx,
        from_torch=_layer_norm_from_torch,
        input_dims=_layer_norm_dims,
    ),
    Dropout: Conversion(
        layer=Dropout,
        torch_names=("Dropout",),
        to_torch=lambda layer, torch, _rank: torch.nn.Dropout(layer.p),
        # Inference (what predict runs): the identity.
        to_onnx=lambda _layer, graph: graph.op("Identity", graph.current),
        from_torch=lambda module, _where: Dropout(float(module.p)),
    ),
}


def _flatten_is_trivial(module: Any) -> bool:
    return bool(module.start_dim == 1 and module.end_dim in (-1, 1))


#: torch modules that are the identity on ``(N, features)`` input: imported as nothing. (A
#: ``Flatten`` is too where its input is ``(N, features)``; after a convolution it is jacnet's.)
_IDENTITIES: dict[str, Callable[[Any], bool]] = {"Identity": lambda _module: True}


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


# Shapes: the rank each layer sees, the dims the network takes -----------------------------------


def input_ranks(layers: list[Layer]) -> list[int]:
    """The rank (batch axis included) of each layer's input, from the layers alone.

    The network's input rank is that of the first layer that takes one rank only (``Affine``
    2, ``Conv1D`` and the 1-D pools 3, ``Conv2D`` and the 2-D pools 4), reached through layers
    that keep the rank; a layer that changes it first (``Flatten``, ``GlobalAvgPool``) takes
    its smallest; with neither, 2. From there each layer keeps the rank or sets its
    :attr:`Conversion.output_rank`. (Picks ``BatchNorm1d`` or ``BatchNorm2d``, and the axes of
    a global average.)
    """
    conversions = [_conversion(layer, i, "input_ranks") for i, layer in enumerate(layers)]
    rank = 2
    for layer, conversion in zip(layers, conversions, strict=True):
        takes = tuple(layer.input_ndim)
        if len(takes) == 1:
            rank = takes[0]
            break
        if conversion.output_rank is not None:
            rank = min(n for n in takes if n >= 2)
            break
    ranks = []
    for layer, conversion in zip(layers, conversions, strict=True):
        ranks.append(rank)
        rank = conversion.rank_after(layer, rank)
    return ranks


def input_dims(model: Sequential) -> Dims:
    """The shape of one sample that ``model`` takes: ints where a layer fixes them, names where
    any size does (``(3, "L")`` for a ``Conv1D(3, ...)`` first, ``(20,)`` for an ``Affine(20,
    ...)``). What :func:`to_onnx` declares for its input after the batch axis ``"N"``.

    Raises
    ------
    JacnetTypeError
        For a model that is not a Sequential of jacnet's built-in layers.
    """
    model = _check_model(model, "input_dims")
    ranks = input_ranks(model.layers)
    for i, (layer, rank) in enumerate(zip(model.layers, ranks, strict=True)):
        make = _conversion(layer, i, "input_dims").input_dims
        dims = make(layer, rank) if make is not None else None
        if dims is not None:
            return tuple(dims)
    return _AXES[ranks[0]] if ranks else _AXES[2]


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
        In eval mode, one module per layer: ``Affine(in, out)`` becomes ``Linear(in, out)``
        with ``weight = Wᵀ`` of shape ``(out, in)`` and ``bias = b``; the activations their
        torch modules (``Softmax(dim=-1)``); ``Conv1D``/``Conv2D`` ``Conv1d``/``Conv2d`` (the
        same ``W (out, in, *k)``, ``b``, stride and padding); the poolings ``MaxPool1d/2d`` and
        ``AvgPool1d/2d`` (``count_include_pad=True``); ``GlobalAvgPool`` a
        ``Sequential(AdaptiveAvgPool{1,2}d(1), Flatten())``; ``Flatten`` ``Flatten()``;
        ``BatchNorm`` ``BatchNorm1d`` or ``BatchNorm2d`` by the rank of its input (see
        :func:`input_ranks`) with ``weight = γ``, ``bias = β``, the running statistics, eps and
        momentum; ``LayerNorm`` ``LayerNorm``; ``Dropout(p)`` ``Dropout(p)``. Its output equals
        ``model.predict`` (float64: within about 1e-14 relative). Parameters and buffers are
        copies.

    Raises
    ------
    ImportError
        When PyTorch is not installed (``pip install 'jacnet[torch]'``).
    JacnetTypeError
        For a layer that is not one of jacnet's built-ins, named with its position.
    """
    torch = _require("torch", "jacnet.export.to_torch")
    model = _check_model(model, "to_torch")
    conversions = [_conversion(layer, i, "to_torch") for i, layer in enumerate(model.layers)]
    ranks = input_ranks(model.layers)
    modules = [conversion.to_torch(layer, torch, rank)
               for conversion, layer, rank in zip(conversions, model.layers, ranks, strict=True)]
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
        ``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``Softmax(dim=-1 or 1)``; ``Conv1d``/``Conv2d``
        (with or without bias, padding an int, a tuple, ``"valid"`` or ``"same"`` with odd
        kernels; ``padding_mode="zeros"``, ``dilation=1``, ``groups=1``); ``MaxPool1d/2d``
        (no dilation, ``ceil_mode`` or ``return_indices``); ``AvgPool1d/2d``
        (``count_include_pad=True``, no ``ceil_mode`` or ``divisor_override``);
        ``AdaptiveAvgPool1d/2d(1)`` followed by ``Flatten()`` (one ``GlobalAvgPool``);
        ``Flatten()``; ``BatchNorm1d/2d`` (``affine``, ``track_running_stats``, running
        statistics copied); ``LayerNorm`` (``elementwise_affine``; no bias becomes zeros);
        ``Dropout``. Nested ``Sequential``\\ s are flattened; ``Identity``, and a
        ``Flatten(start_dim=1)`` whose input is ``(N, features)`` (first, or after a
        ``Linear``), are the identity and dropped. A single supported module is taken as a
        one-layer network. Weights must be float32 or float64 and finite.

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
        torch.nn.Conv3d at position 3``; for a subclass of a supported class (it may compute
        something else); for weights of another dtype.
    JacnetValueError
        For a setting jacnet's layer does not have, named with the module and its position:
        ``from_torch expects dilation=1 (the only setting jacnet has), got dilation=(2,) in
        Conv1d at position 0``.
    ShapeError
        When two ``Linear`` layers do not fit together.
    """
    torch = _require("torch", "jacnet.export.from_torch")
    if not isinstance(module, torch.nn.Module):
        raise JacnetTypeError(f"from_torch module expects a torch.nn.Sequential, got {describe(module)}")
    by_name = {name: c for c in CONVERSIONS.values() for name in c.torch_names}
    layers: list[Layer] = []
    width: tuple[int, str] | None = None  # the features the previous Linear gives, and its position
    pooled: str | None = None  # an AdaptiveAvgPool whose Flatten is still to come
    for position, child in _leaves(module, torch, ""):
        cls = type(child)
        name = cls.__name__
        where = f"{name} at position {position}"
        known = getattr(torch.nn, name, None) is cls
        if pooled is not None:  # torch's global average is (N, C, 1...): jacnet's is that flattened
            if not (known and name == "Flatten" and _flatten_is_trivial(child)):
                raise JacnetValueError(f"from_torch expects Flatten() right after {pooled} (jacnet's "
                                       f"GlobalAvgPool gives (N, C)), got {child!r} at position {position}")
            pooled = None
            continue
        flat_input = known and name == "Flatten" and input_ranks([*layers, Flatten()])[-1] == 2
        if (known and name in _IDENTITIES) or flat_input:  # the identity on (N, features)
            if name == "Flatten" and not _flatten_is_trivial(child):
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
        elif isinstance(layer, GlobalAvgPool):
            pooled = where
        layers.append(layer)
    if pooled is not None:
        raise JacnetValueError(f"from_torch expects Flatten() right after {pooled} (jacnet's "
                               "GlobalAvgPool gives (N, C)), got the end of the network")
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
        Checked by ``onnx.checker``. Input ``"X"``: ``(N, *input_dims(model))`` in the
        network's dtype (float32 or float64; that of its first parameter, as
        ``Sequential.predict`` casts): ``(N, in)``, ``(N, C, "L")``, ``(N, C, "H", "W")``.
        Output ``"Y"``: what ``model.predict`` returns (the logits for a network trained with
        a fused loss), its sizes as ONNX shape inference finds them. ``N`` and the spatial
        sizes are dynamic. Weights are initializers named like :attr:`Sequential.params`
        (``"0.W"``), BatchNorm's buffers likewise (``"1.running_mean"``). ``Affine`` is a
        ``Gemm``, the activations ``Relu``, ``LeakyRelu``, ``Sigmoid``, ``Tanh``,
        ``Softmax(axis=-1)``; ``Conv``, ``MaxPool``, ``AveragePool(count_include_pad=1)``,
        ``BatchNormalization`` (inference, running statistics), ``LayerNormalization``,
        ``Flatten``; ``GlobalAvgPool`` a ``ReduceMean`` over the spatial axes (``(N, C)``);
        ``Dropout`` an ``Identity``. In float64, where ONNX Runtime's CPU has no ``Conv`` or
        ``AveragePool`` kernel, those are built from ``Pad``, one ``Slice`` per kernel offset and
        a ``MatMul`` (jacnet's im2col product) or a ``Sum``; the normalisations, whose
        ``epsilon`` attribute is float32, from jacnet's own steps (``ReduceMean``, ``Sub``,
        ``Sqrt``, ``Reciprocal``...): float64 agrees to rounding. A layer of another dtype than
        its input gets a ``Cast`` first.

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
    ranks = input_ranks(model.layers)
    for i, (layer, conversion) in enumerate(zip(model.layers, conversions, strict=True)):
        graph.start_layer(i)
        graph.rank = ranks[i]
        conversion.to_onnx(layer, graph)
    graph.nodes[-1].output[0] = "Y"  # the last layer's output is the graph's
    helper = onnx.helper
    proto = helper.make_model(
        helper.make_graph(
            graph.nodes, "jacnet",
            [helper.make_tensor_value_info("X", _onnx_type(onnx, dtype), ["N", *input_dims(model)])],
            [helper.make_tensor_value_info("Y", _onnx_type(onnx, graph.dtype), None)],
            initializer=graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="jacnet",
    )
    # The output's dims: what ONNX's shape inference finds (the sizes that do not depend on the
    # input's free ones, e.g. an Affine's width), with the batch axis named like the input's.
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True).graph.output[0]
    out = proto.graph.output[0].type.tensor_type
    out.shape.CopyFrom(inferred.type.tensor_type.shape)
    if len(out.shape.dim):
        out.shape.dim[0].Clear()
        out.shape.dim[0].dim_param = "N"
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
