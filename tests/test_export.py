"""jacnet.export: PyTorch both ways, ONNX out (run in ONNX Runtime), and ``jacnet export``."""

from __future__ import annotations

import copy
import functools
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jacnet
from jacnet import JacnetTypeError, JacnetValueError, ModelFileError, NonFiniteError, ShapeError
from jacnet.cli import main
from jacnet.conv import Conv1D, Conv2D
from jacnet.dropout import Dropout
from jacnet.export import CONVERSIONS, OPSET, from_torch, save_onnx, to_onnx, to_torch
from jacnet.layers import softmax
from jacnet.normalization import BatchNorm, LayerNorm
from jacnet.pooling import AvgPool1D, AvgPool2D, Flatten, GlobalAvgPool, MaxPool1D, MaxPool2D

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

DTYPES = (np.float32, np.float64)
#: One factory per parameterless layer type: every one crosses to torch and ONNX.
ACTIVATIONS = {
    "ReLU": jacnet.ReLU,
    "LeakyReLU": lambda: jacnet.LeakyReLU(0.2),
    "Sigmoid": jacnet.Sigmoid,
    "Tanh": jacnet.Tanh,
    "Softmax": jacnet.Softmax,
}


def rel_error(actual: Any, expected: Any) -> float:
    """Largest ``|a - e| / max(|e|, tiny)`` over the entries."""
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(a - e) / np.maximum(np.abs(e), 1e-30)))


def network(widths: list[int], activations: list[str], dtype: Any, seed: int) -> jacnet.Sequential:
    """Affine layers of ``widths`` with ``activations[i]`` after the i-th (``""``: none)."""
    rng = np.random.default_rng(seed)
    layers: list[jacnet.Layer] = []
    for (n_in, n_out), act in zip(itertools.pairwise(widths), activations, strict=True):
        layer = jacnet.Affine(n_in, n_out, init="glorot", rng=rng, dtype=dtype)
        layer.params["b"][:] = rng.standard_normal(n_out).astype(dtype)  # non-zero biases
        layers.append(layer)
        if act:
            layers.append(ACTIVATIONS[act]())
    return jacnet.Sequential(layers)


def run_onnx(proto: Any, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, {"X": X})[0]
    return out


def torch_output(module: Any, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = module(torch.from_numpy(X)).numpy()
    return out


nets = st.builds(
    lambda widths, acts, dtype, seed: network(widths, acts[: len(widths) - 1], dtype, seed),
    st.lists(st.integers(1, 6), min_size=2, max_size=4),
    st.lists(st.sampled_from(["", *ACTIVATIONS]), min_size=3, max_size=3),
    st.sampled_from(DTYPES),
    st.integers(0, 2**16),
)


# to_torch / from_torch ------------------------------------------------------------------------


@given(nets)
def test_to_torch_then_from_torch_keeps_weights_bitwise_and_outputs(model: jacnet.Sequential) -> None:
    module = to_torch(model)
    assert isinstance(module, torch.nn.Sequential) and len(module) == len(model.layers)
    dtype = model.dtype
    for layer, child in zip(model.layers, module, strict=True):
        if isinstance(layer, jacnet.Affine):
            assert type(child) is torch.nn.Linear
            assert child.weight.dtype == {np.float32: torch.float32, np.float64: torch.float64}[dtype.type]
            assert np.array_equal(child.weight.detach().numpy(), layer.params["W"].T)
            assert np.array_equal(child.bias.detach().numpy(), layer.params["b"])
    back = from_torch(module)
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in model.layers]
    assert [layer.config() for layer in back.layers] == [layer.config() for layer in model.layers]
    assert back.params.keys() == model.params.keys()
    for key, value in model.params.items():
        assert back.params[key].dtype == value.dtype
        assert back.params[key].tobytes() == value.tobytes(), key
    X = np.random.default_rng(1).standard_normal((5, model.in_features or 1)).astype(dtype)
    expected = model.forward(X)
    out = torch_output(module, X)
    assert out.dtype == expected.dtype
    # float64: the same formulas in another library agree to rounding (1e-6 is asked).
    rtol, atol = (1e-6, 1e-12) if dtype == np.float64 else (1e-5, 1e-6)
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=atol)
    np.testing.assert_array_equal(back.forward(X), expected)


def test_to_torch_float64_within_1e_6_relative_for_every_layer_type(rng: np.random.Generator) -> None:
    worst = 0.0
    for name in ACTIVATIONS:
        model = network([7, 9, 4], [name, name], np.float64, 3)
        X = rng.standard_normal((11, 7)) * 3
        worst = max(worst, rel_error(torch_output(to_torch(model), X), model.forward(X)))
    assert worst <= 1e-6, worst


def test_to_torch_copies_and_leaves_torchs_global_rng_alone() -> None:
    model = network([3, 2], [""], np.float32, 0)
    state = torch.random.get_rng_state()
    module = to_torch(model)
    assert torch.equal(torch.random.get_rng_state(), state)
    with torch.no_grad():
        module[0].weight.zero_()
    assert np.any(model.params["0.W"] != 0)  # the jacnet weights are not shared


def test_from_torch_flattens_nested_sequentials_and_drops_identities() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(5, 6, bias=False),
        torch.nn.Sequential(torch.nn.LeakyReLU(0.3), torch.nn.Identity(), torch.nn.Linear(6, 4)),
        torch.nn.Tanh(),
        torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(4, 3))),
        torch.nn.Softmax(dim=1),
    ).double()
    model = from_torch(module)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Affine", "LeakyReLU", "Affine", "Tanh", "Affine", "Softmax"]
    assert model.dtype == np.float64 and model.layers[1].negative_slope == 0.3
    np.testing.assert_array_equal(model.params["0.b"], np.zeros(6))  # no bias: zeros
    X = np.random.default_rng(0).standard_normal((4, 5))
    assert rel_error(model.forward(X), torch_output(module, X)) <= 1e-12
    # A single supported module is a one-layer network; float32 stays float32.
    single = from_torch(torch.nn.Linear(3, 2))
    assert len(single.layers) == 1 and single.dtype == np.float32


def test_from_torch_sigmoid_relu_float32_matches_torch() -> None:
    torch.manual_seed(1)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2),
                                 torch.nn.Sigmoid())
    model = from_torch(module)
    X = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    np.testing.assert_allclose(model.forward(X), torch_output(module, X), rtol=1e-5, atol=1e-7)


class MyLinear(torch.nn.Linear):
    pass


@pytest.mark.parametrize(
    ("build", "error", "fragments"),
    [
        (lambda: torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4),
                                     torch.nn.Conv3d(1, 1, 3)),
         JacnetTypeError,
         ["from_torch expects a torch.nn.Sequential of Linear", "got torch.nn.Conv3d at position 3"]),
        (lambda: torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Sequential(torch.nn.Dropout2d())),
         JacnetTypeError, ["got torch.nn.Dropout2d at position 1.0"]),
        (lambda: torch.nn.Sequential(MyLinear(3, 4)),
         JacnetTypeError, ["MyLinear (a subclass of torch.nn.Linear", "at position 0"]),
        (lambda: torch.nn.Sequential(torch.nn.Softmax(dim=0)), JacnetValueError, ["dim=0", "position 0"]),
        (lambda: torch.nn.Sequential(torch.nn.Flatten(0)), JacnetValueError, ["Flatten", "position 0"]),
        (lambda: torch.nn.Sequential(torch.nn.Linear(3, 4).half()), JacnetTypeError, ["float16"]),
        (lambda: torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(5, 2)),
         ShapeError, ["position 1", "4 features", "in_features=5"]),
        (lambda: torch.nn.Sequential(), JacnetValueError, ["at least one"]),
        (lambda: torch.nn.Sequential(torch.nn.Identity()), JacnetValueError, ["at least one"]),
        (lambda: [torch.nn.Linear(3, 4)], JacnetTypeError, ["from_torch module expects"]),
    ],
)
def test_from_torch_refuses_by_name(build: Any, error: type[Exception], fragments: list[str]) -> None:
    with pytest.raises(error) as info:
        from_torch(build())
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_from_torch_refuses_non_finite_weights() -> None:
    linear = torch.nn.Linear(3, 2)
    with torch.no_grad():
        linear.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="Linear at position 0"):
        from_torch(torch.nn.Sequential(linear))


class Scale(jacnet.Layer):
    def forward(self, X: Any) -> Any:
        return np.asarray(X) * 2


@pytest.mark.parametrize("convert", [to_torch, to_onnx])
def test_a_user_layer_is_refused_by_name_and_position(convert: Any) -> None:
    model = jacnet.Sequential([jacnet.Affine(3, 2), Scale()])
    with pytest.raises(JacnetTypeError, match=r"got .*Scale at position 1"):
        convert(model)
    with pytest.raises(JacnetTypeError, match="expects a jacnet Sequential"):
        convert(jacnet.Affine(3, 2))


def test_every_built_in_layer_has_an_entry() -> None:
    from jacnet.registry import LAYERS

    assert set(CONVERSIONS) == set(LAYERS.values())


# ONNX -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_onnx_runtime_equals_predict_for_every_layer_type(activation: str, dtype: Any,
                                                          rng: np.random.Generator) -> None:
    model = network([6, 8, 5, 3], [activation, activation, activation], dtype, 7)
    proto = to_onnx(model)
    assert [o.version for o in proto.opset_import] == [OPSET]
    graph = proto.graph
    assert [i.name for i in graph.input] == ["X"] and [o.name for o in graph.output] == ["Y"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == 6
    for n in (1, 17):  # the batch dimension is dynamic
        X = (rng.standard_normal((n, 6)) * 2).astype(dtype)
        out = run_onnx(proto, X)
        expected = model.predict(X)
        assert out.dtype == expected.dtype and out.shape == expected.shape
        if dtype == np.float64:
            assert rel_error(out, expected) <= 1e-5, rel_error(out, expected)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def test_onnx_leaky_relu_keeps_a_float64_slope_exact(rng: np.random.Generator) -> None:
    # LeakyRelu's alpha attribute is float32; a float64 network gets Where(X > 0, X, X·slope).
    for dtype, op in ((np.float64, "Where"), (np.float32, "LeakyRelu")):
        model = network([5, 7, 3], ["LeakyReLU", ""], dtype, 2)
        proto = to_onnx(model)
        assert op in [node.op_type for node in proto.graph.node]
        X = rng.standard_normal((9, 5)).astype(dtype)
        assert rel_error(run_onnx(proto, X), model.predict(X)) <= (1e-12 if dtype == np.float64 else 1e-5)


def test_onnx_mixed_dtypes_cast_where_jacnet_does(rng: np.random.Generator) -> None:
    model = jacnet.Sequential([jacnet.Affine(4, 5, rng=0, dtype=np.float64), jacnet.Tanh(),
                               jacnet.Affine(5, 3, rng=1, dtype=np.float32), jacnet.Softmax()])
    proto = to_onnx(model)
    assert "Cast" in [node.op_type for node in proto.graph.node]
    X = rng.standard_normal((3, 4))
    out = run_onnx(proto, X)
    expected = model.predict(X)
    assert out.dtype == np.float32 == expected.dtype
    assert rel_error(out, expected) <= 1e-5


def test_onnx_initializers_are_named_like_params() -> None:
    model = network([3, 4, 2], ["ReLU", ""], np.float32, 0)
    names = {init.name: onnx.numpy_helper.to_array(init) for init in to_onnx(model).graph.initializer}
    assert names.keys() == model.params.keys()
    for key, value in model.params.items():
        assert names[key].tobytes() == value.tobytes()


def test_save_onnx_is_atomic_and_names_an_unwritable_path(tmp_path: Path) -> None:
    model = network([3, 2], [""], np.float32, 0)
    target = tmp_path / "m.onnx"
    assert save_onnx(model, target) == target
    onnx.checker.check_model(onnx.load_model_from_string(target.read_bytes()))
    before = target.read_bytes()
    with pytest.raises(JacnetTypeError):  # a failing export leaves the previous file alone
        save_onnx(jacnet.Sequential([Scale()]), target)
    assert target.read_bytes() == before
    with pytest.raises(ModelFileError, match="cannot create a file in"):
        save_onnx(model, tmp_path / "missing" / "m.onnx")
    with pytest.raises(ModelFileError, match="it is a directory"):
        save_onnx(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temporary files left


# Convolutional networks -------------------------------------------------------------------------


def cnn_1d(dtype: Any, rng: np.random.Generator) -> jacnet.Sequential:
    """(N, 2, 12) -> (N, 3): Conv1D, BatchNorm (torch's BatchNorm1d), max and average pooling,
    LayerNorm over (C, L), Flatten, Dropout, Affine."""
    return jacnet.Sequential([
        Conv1D(2, 4, 3, padding=1, rng=rng, dtype=dtype), BatchNorm(4, dtype=dtype), jacnet.ReLU(),
        MaxPool1D(2), AvgPool1D(3, stride=1, padding=1), LayerNorm((4, 6), dtype=dtype), Flatten(),
        Dropout(0.3, rng=rng), jacnet.Affine(24, 3, rng=rng, dtype=dtype)])


def cnn_2d(dtype: Any, rng: np.random.Generator) -> jacnet.Sequential:
    """(N, 1, H, W) -> (N, 3), any H >= 4, W >= 5: Conv2D, BatchNorm (BatchNorm2d), both poolings,
    a strided non-square Conv2D, GlobalAvgPool, LayerNorm, Affine."""
    return jacnet.Sequential([
        Conv2D(1, 3, 3, padding=1, rng=rng, dtype=dtype), BatchNorm(3, dtype=dtype), jacnet.Tanh(),
        MaxPool2D(2, stride=1), AvgPool2D(2, padding=1), Conv2D(3, 4, (2, 3), stride=(1, 2), rng=rng,
                                                                 dtype=dtype),
        jacnet.LeakyReLU(0.2), GlobalAvgPool(), LayerNorm(4, dtype=dtype),
        jacnet.Affine(4, 3, rng=rng, dtype=dtype)])


def cnn_flat(dtype: Any, rng: np.random.Generator) -> jacnet.Sequential:
    """(N, 24) -> (N, 3): flat rows unflattened to (N, 2, 12) for a Conv1D, as build_cnn does."""
    return jacnet.Sequential([
        jacnet.Unflatten((2, 12)), Conv1D(2, 4, 3, rng=rng, dtype=dtype), jacnet.ReLU(), Flatten(),
        jacnet.Affine(40, 3, rng=rng, dtype=dtype)])


CNNS = {"cnn_1d": (cnn_1d, (2, 12)), "cnn_2d": (cnn_2d, (1, 7, 7)), "cnn_flat": (cnn_flat, (24,))}


@functools.cache
def _trained(name: str, dtype: Any) -> jacnet.Sequential:
    build, shape = CNNS[name]
    rng = np.random.default_rng(0)
    model = build(dtype, rng)
    X = rng.standard_normal((64, *shape)).astype(dtype) * 2 + 0.5
    y = rng.integers(0, 3, 64)
    jacnet.fit(model, X, y, loss=jacnet.SoftmaxCrossEntropy(), epochs=2, batch_size=16, seed=0, verbose=0)
    return model


def trained_cnn(name: str, dtype: Any) -> jacnet.Sequential:
    """The network trained a few steps with jacnet.fit (BatchNorm's running statistics moved)."""
    model = copy.deepcopy(_trained(name, dtype))
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            assert not np.allclose(layer.buffers["running_mean"], 0)
            assert not np.allclose(layer.buffers["running_var"], 1)
    return model


def cnn_input(name: str, dtype: Any, n: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, *CNNS[name][1])) * 2 + 0.5).astype(dtype)


def test_the_test_networks_hold_every_layer_type() -> None:
    from jacnet.registry import LAYERS

    used = {type(layer) for build, _ in CNNS.values()
            for layer in build(np.float64, np.random.default_rng(0)).layers}
    used |= {type(make()) for make in ACTIVATIONS.values()} | {jacnet.Affine}
    assert used == set(LAYERS.values())


def assert_close(out: np.ndarray, expected: np.ndarray, rtol_float64: float) -> None:
    """float64: within ``rtol_float64`` relative everywhere; float32: as the MLP tests."""
    assert out.dtype == expected.dtype and out.shape == expected.shape
    if expected.dtype == np.float64:
        assert rel_error(out, expected) <= rtol_float64, rel_error(out, expected)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CNNS))
def test_cnn_to_torch_equals_predict_and_from_torch_keeps_it_bitwise(name: str, dtype: Any) -> None:
    model = trained_cnn(name, dtype)
    module = to_torch(model)
    assert len(module) == len(model.layers) and not module.training
    kinds = [type(child).__name__ for child in module]
    if name != "cnn_flat":  # the one without batch norm
        assert ("BatchNorm1d" if name == "cnn_1d" else "BatchNorm2d") in kinds
    X = cnn_input(name, dtype, 9)
    assert_close(torch_output(module, X), model.predict(X), 1e-6)
    back = from_torch(module)
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in model.layers]
    assert [layer.config() for layer in back.layers] == [layer.config() for layer in model.layers]
    assert back.params.keys() == model.params.keys()
    for key, value in model.params.items():
        assert back.params[key].dtype == value.dtype and back.params[key].tobytes() == value.tobytes(), key
    for ours, theirs in zip(model.layers, back.layers, strict=True):
        for key, value in getattr(ours, "buffers", {}).items():
            assert theirs.buffers[key].tobytes() == value.tobytes(), key
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CNNS))
def test_cnn_onnx_runtime_equals_predict(name: str, dtype: Any) -> None:
    model = trained_cnn(name, dtype)
    proto = to_onnx(model)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    expected_dims = {"cnn_1d": ["N", 2, "L"], "cnn_2d": ["N", 1, "H", "W"], "cnn_flat": ["N", 24]}[name]
    assert [d.dim_param or d.dim_value for d in dims] == expected_dims
    out_dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in out_dims] == ["N", 3]
    ops = {node.op_type for node in proto.graph.node}
    # float64 convolves by window slices and normalises in jacnet's own steps (ONNX Runtime has
    # no float64 Conv; the normalisations' epsilon attribute is float32).
    native = {"Conv", "AveragePool", "BatchNormalization", "LayerNormalization"} & ops
    expected_native = ({"Conv"} if name == "cnn_flat" else
                       {"Conv", "AveragePool", "BatchNormalization", "LayerNormalization"})
    assert native == (set() if dtype == np.float64 else expected_native)
    inputs = [cnn_input(name, dtype, n, seed) for n, seed in ((1, 2), (17, 3))]
    if name == "cnn_2d":  # any image size: the spatial axes are dynamic too
        inputs.append(np.random.default_rng(4).standard_normal((5, 1, 10, 6)).astype(dtype))
    for X in inputs:
        out, expected = run_onnx(proto, X), model.predict(X)
        assert_close(out, expected, 1e-5)
        if dtype == np.float64:  # to rounding: 1e-12 of the largest output
            assert float(np.max(np.abs(out - expected))) <= 1e-12 * float(np.abs(expected).max())


def test_from_torch_imports_a_torch_cnn() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding="same", bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d((2, 1)), torch.nn.Conv2d(4, 5, (1, 3), stride=2, padding=(0, 1)),
        torch.nn.AvgPool2d(2, stride=1, padding=1), torch.nn.Dropout(0.25),
        torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d((1, 1)), torch.nn.Flatten()),
        torch.nn.LayerNorm(5, bias=False), torch.nn.Linear(5, 2),
    ).double()
    with torch.no_grad():  # running statistics as training would leave them
        module[1].running_mean.uniform_(-1, 1)
        module[1].running_var.uniform_(0.5, 2)
    module.eval()
    model = from_torch(module)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "BatchNorm", "ReLU", "MaxPool2D", "Conv2D", "AvgPool2D", "Dropout", "GlobalAvgPool",
        "LayerNorm", "Affine"]
    assert model.layers[0].padding == (1, 1) and model.layers[6].p == 0.25
    np.testing.assert_array_equal(model.params["0.b"], np.zeros(4))
    np.testing.assert_array_equal(model.layers[1].buffers["running_var"], module[1].running_var.numpy())
    X = np.random.default_rng(0).standard_normal((3, 2, 8, 6))
    assert rel_error(model.predict(X), torch_output(module, X)) <= 1e-12
    # A 1-D one, float32, with the Flatten after a convolution kept as jacnet's Flatten.
    module = torch.nn.Sequential(torch.nn.Conv1d(3, 2, 2), torch.nn.Flatten(), torch.nn.Linear(8, 1))
    model = from_torch(module)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv1D", "Flatten", "Affine"]
    X = np.random.default_rng(1).standard_normal((4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(model.predict(X), torch_output(module, X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("build", "error", "fragments"),
    [
        (lambda: torch.nn.Conv1d(2, 2, 3, padding_mode="reflect"), JacnetValueError,
         ["padding_mode='zeros'", "padding_mode='reflect'", "Conv1d at position 0"]),
        (lambda: torch.nn.Conv2d(2, 2, 3, dilation=2), JacnetValueError, ["dilation=1", "(2, 2)"]),
        (lambda: torch.nn.Conv2d(2, 2, 3, groups=2), JacnetValueError, ["groups=1", "groups=2"]),
        (lambda: torch.nn.Conv1d(2, 2, 2, padding="same"), JacnetValueError, ["odd kernel"]),
        (lambda: torch.nn.MaxPool1d(2, dilation=2), JacnetValueError, ["dilation=1", "MaxPool1d"]),
        (lambda: torch.nn.MaxPool2d(2, ceil_mode=True), JacnetValueError, ["ceil_mode=False"]),
        (lambda: torch.nn.MaxPool2d(2, return_indices=True), JacnetValueError, ["return_indices=False"]),
        (lambda: torch.nn.AvgPool1d(2, ceil_mode=True), JacnetValueError, ["ceil_mode=False"]),
        (lambda: torch.nn.AvgPool2d(2, count_include_pad=False), JacnetValueError,
         ["count_include_pad=True", "count_include_pad=False"]),
        (lambda: torch.nn.AvgPool2d(2, divisor_override=3), JacnetValueError, ["divisor_override=None"]),
        (lambda: torch.nn.BatchNorm1d(3, affine=False), JacnetValueError, ["affine=True"]),
        (lambda: torch.nn.BatchNorm2d(3, track_running_stats=False), JacnetValueError,
         ["track_running_stats=True"]),
        (lambda: torch.nn.BatchNorm1d(3, momentum=None), JacnetValueError, ["momentum=None"]),
        (lambda: torch.nn.LayerNorm(3, elementwise_affine=False), JacnetValueError,
         ["elementwise_affine=True"]),
        (lambda: torch.nn.Sequential(torch.nn.Conv1d(1, 1, 1), torch.nn.AdaptiveAvgPool1d(2)),
         JacnetValueError, ["output_size=1", "AdaptiveAvgPool1d at position 1"]),
        (lambda: torch.nn.Sequential(torch.nn.Conv1d(1, 1, 1), torch.nn.AdaptiveAvgPool1d(1),
                                     torch.nn.ReLU()),
         JacnetValueError, ["Flatten() right after AdaptiveAvgPool1d at position 1", "position 2"]),
        (lambda: torch.nn.Sequential(torch.nn.Conv1d(1, 1, 1), torch.nn.AdaptiveAvgPool1d(1)),
         JacnetValueError, ["Flatten() right after", "the end of the network"]),
        (lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.Flatten(2)),
         JacnetValueError, ["start_dim=1", "Flatten at position 1"]),
    ],
)
def test_from_torch_refuses_cnn_settings_by_name(build: Any, error: type[Exception],
                                                 fragments: list[str]) -> None:
    with pytest.raises(error) as info:
        from_torch(build())
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_cli_export_check_and_jacobian_take_a_saved_cnn(tmp_path: Path) -> None:
    model = trained_cnn("cnn_1d", np.float64)
    jacnet.save(model, tmp_path / "cnn.jacnet")
    done = jacnet_cli("export", "cnn.jacnet", "--to", "onnx", "cnn.onnx", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "input X of shape (N, 2, L)" in done.stdout
    X = cnn_input("cnn_1d", np.float64, 6)
    out = run_onnx(onnx.load_model_from_string((tmp_path / "cnn.onnx").read_bytes()), X)
    assert rel_error(out, model.predict(X)) <= 1e-5
    # The input's length: the smallest from 3 that the Flatten -> Affine(24, 3) takes, 12.
    done = jacnet_cli("check", "--model", "cnn.jacnet", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "random X of shape 2x2x12" in done.stdout and "gradients agree" in done.stdout
    done = jacnet_cli("jacobian", "--model", "cnn.jacnet", "--wrt", "0.W", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "expanded Jacobian ∂Y/∂0.W: shape (2, 3, 4, 2, 3)" in done.stdout


# Missing extras -------------------------------------------------------------------------------


@pytest.mark.parametrize(("package", "call"), [("torch", lambda m: to_torch(m)),
                                               ("torch", lambda m: from_torch(m)),
                                               ("onnx", lambda m: to_onnx(m))])
def test_a_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, package: str, call: Any) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # import now raises ImportError
    with pytest.raises(ImportError, match=rf"pip install 'jacnet\[{package}\]'"):
        call(network([3, 2], [""], np.float32, 0))


def test_cli_export_without_onnx_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    jacnet.save(network([3, 2], [""], np.float32, 0), tmp_path / "m.jacnet")
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", str(tmp_path / "m.jacnet"), "--to", "onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'jacnet[onnx]'" in err[0], err


# The command line -----------------------------------------------------------------------------


def jacnet_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "jacnet.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=120)


def one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(("loss", "dtype"), [(jacnet.SoftmaxCrossEntropy(), np.float32),
                                             (jacnet.MeanSquaredError(), np.float64)])
def test_cli_export_runs_in_onnx_runtime_like_jacnet_predict(tmp_path: Path, loss: Any, dtype: Any) -> None:
    model = network([4, 16, 8, 3], ["Tanh", "LeakyReLU", ""], dtype, 5)
    model.loss = loss
    jacnet.save(model, tmp_path / "m.jacnet")
    X = np.random.default_rng(3).standard_normal((25, 4))
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", fmt="%.17g")
    done = jacnet_cli("export", "m.jacnet", "--to", "onnx", "m.onnx", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"opset {OPSET}" in done.stdout
    out = run_onnx(onnx.load_model_from_string((tmp_path / "m.onnx").read_bytes()), X.astype(dtype))
    flags = ["--proba"] if isinstance(loss, jacnet.SoftmaxCrossEntropy) else []
    done = jacnet_cli("predict", "m.jacnet", "x.csv", *flags, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    predicted = np.loadtxt(done.stdout.splitlines(), delimiter=",", ndmin=2)
    if flags:  # the predicted label first, then one probability per class
        predicted = predicted[:, 1:]
    onnx_prediction = softmax(out.astype(np.float64)) if flags else out
    # jacnet predict prints 6 significant digits: 5e-6 relative at most.
    assert rel_error(onnx_prediction, predicted) <= 1e-5


def test_cli_export_errors_are_one_line(tmp_path: Path) -> None:
    jacnet.save(network([3, 2], [""], np.float32, 0), tmp_path / "m.jacnet")
    (tmp_path / "bad.jacnet").write_bytes(b"not a model")
    one_line_error(jacnet_cli("export", "m.jacnet", "--to", "onnx", "no/such/dir/m.onnx", cwd=tmp_path),
                   "export OUT expects a writable file", "no/such/dir")
    one_line_error(jacnet_cli("export", "m.jacnet", "--to", "onnx", ".", cwd=tmp_path), "it is a directory")
    one_line_error(jacnet_cli("export", "missing.jacnet", "--to", "onnx", "m.onnx", cwd=tmp_path),
                   "no such file")
    one_line_error(jacnet_cli("export", "bad.jacnet", "--to", "onnx", "m.onnx", cwd=tmp_path),
                   "bad.jacnet")
    one_line_error(jacnet_cli("export", "m.jacnet", "--to", "torch", "m.pt", cwd=tmp_path), "--to")
    one_line_error(jacnet_cli("export", "m.jacnet", "m.onnx", cwd=tmp_path), "--to")
    assert not (tmp_path / "m.onnx").exists()


# A network trained elsewhere, checked here ------------------------------------------------------


@pytest.fixture
def torch_trained(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    path = tmp_path / "from_torch.jacnet"
    jacnet.save(from_torch(module), path)
    return path


def test_cli_check_and_jacobian_accept_a_network_from_torch(torch_trained: Path) -> None:
    done = jacnet_cli("check", "--model", str(torch_trained))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {(r[0], r[1]): r[-1] for r in (line.split() for line in done.stdout.splitlines()) if len(r) >= 8}
    assert {("Sequential", q) for q in ("dX", "d0.W", "d0.b", "d2.W", "d2.b")} <= rows.keys()
    assert all(rows[("Sequential", q)] == "pass" for q in ("dX", "d0.W", "d2.b"))
    assert "all 5 gradients agree" in done.stdout
    done = jacnet_cli("jacobian", "--model", str(torch_trained), "--wrt", "0.W")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "expanded Jacobian ∂Y/∂0.W: shape (2, 2, 3, 5)" in done.stdout
    diff = float(done.stdout.split("max |backward - contraction| = ")[1].split()[0])
    assert diff < 1e-12


def test_check_model_agrees_with_check_gradients_on_the_loaded_network(torch_trained: Path) -> None:
    model = jacnet.load(torch_trained)
    X = np.random.default_rng(0).standard_normal((2, 3))
    report = jacnet.check_gradients(copy.deepcopy(model), X)
    assert report.ok and len(report.checks) == 5


def test_cli_model_errors_are_one_line(torch_trained: Path, tmp_path: Path) -> None:
    model = str(torch_trained)
    one_line_error(jacnet_cli("check", "--batch", "2"), "--batch expects --model")
    one_line_error(jacnet_cli("check", "jacnet:Affine", "--model", model), "MODULE:CLASS or --model")
    one_line_error(jacnet_cli("check", "--model", model, "--shape", "4x3"), "--shape")
    one_line_error(jacnet_cli("check", "--model", str(tmp_path / "none.jacnet")), "no such file")
    one_line_error(jacnet_cli("jacobian", "--model", model, "--wrt", "W"), "--wrt", "0.W, 0.b")
    one_line_error(jacnet_cli("jacobian"), "KIND or --model")
    one_line_error(jacnet_cli("jacobian", "relu", "--model", model), "KIND or --model")
    big = tmp_path / "big.jacnet"
    jacnet.save(jacnet.build_mlp(400, [256], 10, rng=0), big)
    one_line_error(jacnet_cli("check", "--model", str(big)), "at most 10,000,000 entries",
                   "0.W", "--batch 1")


def test_the_readme_export_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Export\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    commands = section.split("```sh\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)  # the example's torch network draws from torch's global generator
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out == "True\n"
    for line in commands.splitlines():
        args = line.split("#")[0].split()
        if "--model" in args:  # the export line needs a trained digits model: tested above
            done = jacnet_cli(*args[1:], cwd=tmp_path)
            assert done.returncode == 0, done.stdout + done.stderr


def test_cli_model_without_a_fitting_input_size_is_one_line(tmp_path: Path) -> None:
    # A kernel longer than any length tried: no input the network takes, said once, by flag.
    jacnet.save(jacnet.Sequential([Conv1D(1, 2, 70, rng=0, dtype=np.float64)]), tmp_path / "long.jacnet")
    one_line_error(jacnet_cli("check", "--model", "long.jacnet", cwd=tmp_path),
                   "jacnet check --model expects a network that takes (N, 1, L)", "from 3 to 64")
