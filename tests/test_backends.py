"""The torch backend runs every built-in exactly as NumPy does (float64, 1e-6 relative)."""

from __future__ import annotations

import copy
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jacnet
from jacnet.backend import is_torch, to_numpy
from jacnet.errors import JacnetTypeError, JacnetValueError
from jacnet.registry import LAYERS, LOSSES, OPTIMIZERS

torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", *(["cuda"] if CUDA else [])]
RTOL = 1e-6


def close(actual: Any, expected: Any, what: str) -> None:
    assert is_torch(actual), f"{what}: expected a tensor, got {type(actual).__name__}"
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), rtol=RTOL, atol=1e-12,
                               err_msg=what)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_agrees_on_torch(name: str, training: bool, device: str) -> None:
    rng = np.random.default_rng(3)
    layer, X = LAYERS[name].example(rng, np.float64)
    layer.train(training)
    twin = copy.deepcopy(layer).to("torch", device)
    Y = layer.forward(X)
    Yt = twin.forward(torch.from_numpy(X).to(device))
    close(Yt, Y, f"{name} forward")
    if not training and name in ("dropout",):
        return
    dY = rng.standard_normal(Y.shape)
    dX = layer.backward(dY)
    dXt = twin.backward(torch.from_numpy(dY).to(device))
    close(dXt, dX, f"{name} backward")
    for key in layer.params:
        close(twin.grads[key], layer.grads[key], f"{name} grads[{key!r}]")
        assert is_torch(twin.params[key])
    for key in getattr(layer, "buffers", {}):
        close(twin.buffers[key], layer.buffers[key], f"{name} buffers[{key!r}]")
    if layer.params:  # the first layer's shortcut, dX not computed
        layer.backward_params(dY)
        twin.backward_params(torch.from_numpy(dY).to(device))
        for key in layer.params:
            close(twin.grads[key], layer.grads[key], f"{name} backward_params grads[{key!r}]")


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_agrees_on_torch(name: str, weighted: bool) -> None:
    rng = np.random.default_rng(4)
    loss, pred, target = LOSSES[name].example(rng, np.float64)
    twin = copy.deepcopy(loss)
    w = rng.uniform(0.5, 2.0, pred.shape[0]) if weighted else None
    value = loss.forward(pred, target, sample_weight=w)
    value_t = twin.forward(torch.from_numpy(pred), target, sample_weight=w)
    assert isinstance(value_t, float)
    np.testing.assert_allclose(value_t, value, rtol=RTOL)
    close(twin.backward(), loss.backward(), f"{name} backward")
    # Targets given as tensors too.
    value_tt = copy.deepcopy(loss).forward(torch.from_numpy(pred), torch.as_tensor(target))
    np.testing.assert_allclose(value_tt, loss.forward(pred, target), rtol=RTOL)


OPTIMIZER_CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.1, "momentum": 0.5}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.01, "weight_decay": 0.1}),
]


@pytest.mark.parametrize(("name", "kwargs"), OPTIMIZER_CASES)
def test_every_optimizer_agrees_on_torch(name: str, kwargs: dict[str, Any]) -> None:
    rng = np.random.default_rng(5)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    params_t = {k: torch.from_numpy(v.copy()) for k, v in params.items()}
    opt, opt_t = OPTIMIZERS[name](**kwargs), OPTIMIZERS[name](**kwargs)
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        opt.step(params, grads)
        opt_t.step(params_t, {k: torch.from_numpy(v) for k, v in grads.items()})
    for k in params:
        close(params_t[k], params[k], f"{name} {k}")
    state = opt_t.state_dict()  # saved as NumPy arrays, whatever the backend
    assert all(isinstance(v, np.ndarray) for v in state["state"].values())


def _mlp_data(rng: np.random.Generator, n: int = 96) -> tuple[Any, Any]:
    X = rng.standard_normal((n, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


@pytest.mark.parametrize("optimizer", [lambda: jacnet.SGD(0.1, momentum=0.9), lambda: jacnet.Adam(0.01)])
def test_fit_trains_the_same_weights_on_torch(optimizer: Any) -> None:
    rng = np.random.default_rng(6)
    X, y = _mlp_data(rng)
    model = jacnet.build_mlp(6, [16, 8], 3, rng=0, dtype=np.float64)
    twin = copy.deepcopy(model).to("torch")
    kwargs = {"loss": jacnet.SoftmaxCrossEntropy(), "epochs": 3, "batch_size": 16, "seed": 2,
              "verbose": 0, "validation_split": 0.25}
    history = jacnet.fit(model, X, y, optimizer=optimizer(), **kwargs)
    history_t = jacnet.fit(twin, torch.from_numpy(X), y, optimizer=optimizer(), **kwargs)
    np.testing.assert_allclose(history_t["loss"], history["loss"], rtol=RTOL)
    np.testing.assert_allclose(history_t["val_accuracy"], history["val_accuracy"])
    for k in model.params:
        close(twin.params[k], model.params[k], f"fit {k}")
    assert twin.backend == "torch"
    scores, scores_t = jacnet.evaluate(model, X, y), jacnet.evaluate(twin, X, y)
    np.testing.assert_allclose(scores_t["loss"], scores["loss"], rtol=RTOL)
    close(twin.predict(X), model.predict(X), "predict")
    close(twin.predict_proba(X), model.predict_proba(X), "predict_proba")
    np.testing.assert_array_equal(to_numpy(twin.predict_classes(X)), model.predict_classes(X))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 9), widths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
       activation=st.sampled_from(["relu", "tanh", "sigmoid", "leaky_relu"]),
       seed=st.integers(0, 2**16))
def test_mlp_forward_and_backward_agree_on_torch(n: int, widths: list[int], activation: str,
                                                 seed: int) -> None:
    rng = np.random.default_rng(seed)
    model = jacnet.build_mlp(widths[0], widths[1:-1], widths[-1], activation=activation,
                             rng=seed, dtype=np.float64)
    twin = copy.deepcopy(model).to("torch")
    X = rng.standard_normal((n, widths[0]))
    close(twin.forward(X), model.forward(X), "forward")
    dY = rng.standard_normal((n, widths[-1]))
    close(twin.backward(torch.from_numpy(dY)), model.backward(dY), "backward")
    for k in model.grads:
        close(twin.grads[k], model.grads[k], k)


def test_float32_is_the_default_on_torch_too() -> None:
    model = jacnet.build_mlp(4, [5], 2, rng=0).to("torch")
    assert model.dtype == np.float32
    assert model.params["0.W"].dtype == torch.float32
    out = model.predict(np.ones((3, 4)))  # float64 NumPy input: cast and moved once
    assert out.dtype == torch.float32 and out.shape == (3, 2)


def test_a_model_moves_back_and_forth_unchanged() -> None:
    model = jacnet.build_mlp(4, [5], 2, rng=0, dtype=np.float64)
    before = {k: v.copy() for k, v in model.params.items()}
    model.to("torch").to("numpy")
    for k, v in model.params.items():
        assert isinstance(v, np.ndarray)
        np.testing.assert_array_equal(v, before[k])


def test_optimizer_state_carries_over_to_a_moved_model() -> None:
    rng = np.random.default_rng(7)
    X, y = _mlp_data(rng)
    model = jacnet.build_mlp(6, [8], 3, rng=0, dtype=np.float64)
    twin = copy.deepcopy(model)
    opt, opt_twin = jacnet.Adam(0.01), jacnet.Adam(0.01)
    kwargs = {"loss": jacnet.SoftmaxCrossEntropy(), "epochs": 1, "seed": 1, "verbose": 0,
              "shuffle": False}
    jacnet.fit(model, X, y, optimizer=opt, **kwargs)
    jacnet.fit(twin, X, y, optimizer=opt_twin, **kwargs)
    twin.to("torch")
    with pytest.raises(JacnetValueError, match=r"moved by \.to\(\)"):
        jacnet.fit(twin, X, y, optimizer=opt_twin, **kwargs)
    moved = jacnet.Adam(0.01)
    moved.load_state_dict(opt_twin.state_dict())  # NumPy state onto the tensors
    jacnet.fit(model, X, y, optimizer=opt, **kwargs)
    jacnet.fit(twin, X, y, optimizer=moved, **kwargs)
    for k in model.params:
        close(twin.params[k], model.params[k], k)


def test_save_from_torch_loads_bitwise_on_numpy(tmp_path: Any) -> None:
    model = jacnet.build_mlp(4, [5], 2, rng=0).to("torch")
    model.loss = jacnet.SoftmaxCrossEntropy()
    path = tmp_path / "m.npz"
    jacnet.save(model, path)
    loaded = jacnet.load(path)
    for k, v in loaded.params.items():
        assert isinstance(v, np.ndarray)
        np.testing.assert_array_equal(v, model.params[k].numpy())


def test_check_gradients_and_jacobians_run_on_a_torch_model() -> None:
    rng = np.random.default_rng(8)
    model = jacnet.build_mlp(3, [4], 2, rng=0, dtype=np.float64).to("torch")
    X, y = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    report = jacnet.check_gradients(model, X, target=y, loss=jacnet.SoftmaxCrossEntropy())
    assert report.ok, report
    J = model.jacobian(X)
    J_numpy = copy.deepcopy(model).to("numpy").jacobian(X)
    np.testing.assert_array_equal(J, J_numpy)
    assert model.backend == "torch"  # the check worked on a copy


def test_a_layers_jacobian_on_torch_says_to_copy_it() -> None:
    layer = jacnet.Affine(3, 2, rng=0).to("torch")
    with pytest.raises(JacnetTypeError, match="numpy backend"):
        layer.jacobian(np.ones((2, 3)))


@pytest.mark.parametrize(("args", "match"), [
    (("jax",), "backend expects one of"),
    (("numpy", "cuda"), "device expects 'cpu' for the numpy backend"),
    (("torch", "tpu:0"), "device expects a torch device"),
    (("torch", 3), "device expects a string"),
])
def test_bad_backend_or_device_is_named(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises((JacnetValueError, JacnetTypeError), match=match):
        jacnet.build_mlp(2, [], 1, rng=0).to(*args)


@pytest.mark.skipif(CUDA, reason="this machine has a GPU")
def test_a_missing_gpu_is_named() -> None:
    with pytest.raises(JacnetValueError, match="torch sees no CUDA GPU"):
        jacnet.build_mlp(2, [], 1, rng=0).to("torch", "cuda")


def test_a_missing_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'jacnet\[torch\]'"):
        jacnet.build_mlp(2, [], 1, rng=0).to("torch")


def test_a_torch_input_is_checked_like_an_array() -> None:
    model = jacnet.build_mlp(3, [4], 2, rng=0).to("torch")
    with pytest.raises(jacnet.errors.NonFiniteError, match="finite"):
        model.predict(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(jacnet.errors.ShapeError, match="expects shape"):
        model.forward(torch.ones((2, 5)))
    with pytest.raises(JacnetTypeError, match="boolean"):
        model.forward(torch.ones((2, 3), dtype=torch.bool))


def test_a_caller_tensor_kept_for_backward_is_copied() -> None:
    layer = jacnet.Affine(3, 2, rng=0, dtype=np.float64).to("torch")
    X = torch.ones((4, 3), dtype=torch.float64)
    layer.forward(X)
    X.mul_(5)  # the caller changes its input after forward
    layer.backward(torch.ones((4, 2), dtype=torch.float64))
    np.testing.assert_allclose(to_numpy(layer.grads["W"]), np.full((3, 2), 4.0))


SPATIAL_CASES = [
    (jacnet.Conv1D, {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "stride": 2,
                     "padding": 1}, (2, 2, 9)),
    (jacnet.Conv2D, {"in_channels": 3, "out_channels": 2, "kernel_size": (2, 3),
                     "padding": (1, 0)}, (2, 3, 5, 6)),
    (jacnet.Conv2D, {"in_channels": 16, "out_channels": 4, "kernel_size": 3}, (3, 16, 6, 6)),
    # C·K >= 32: torch's own convolution kernels, strided and padded
    (jacnet.Conv1D, {"in_channels": 16, "out_channels": 3, "kernel_size": 3, "stride": 2,
                     "padding": 1}, (2, 16, 9)),
    (jacnet.Conv2D, {"in_channels": 8, "out_channels": 3, "kernel_size": (2, 3),
                     "stride": (2, 1), "padding": (1, 0)}, (2, 8, 5, 6)),
    (jacnet.MaxPool1D, {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 8)),
    (jacnet.MaxPool2D, {"kernel_size": 2, "stride": 1}, (2, 2, 4, 5)),
    (jacnet.MaxPool2D, {"kernel_size": 2}, (2, 2, 5, 5)),
    (jacnet.AvgPool2D, {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 2, 6, 5)),
]


@pytest.mark.parametrize(("cls", "kwargs", "shape"), SPATIAL_CASES)
def test_strided_and_padded_windows_agree_on_torch(cls: Any, kwargs: dict[str, Any],
                                                   shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(9)
    if "in_channels" in kwargs:
        kwargs = {**kwargs, "rng": 1, "dtype": np.float64}
    layer = cls(**kwargs)
    twin = copy.deepcopy(layer).to("torch")
    X = rng.standard_normal(shape)
    Y = layer.forward(X)
    close(twin.forward(torch.from_numpy(X)), Y, f"{cls.__name__} forward")
    dY = rng.standard_normal(Y.shape)
    close(twin.backward(torch.from_numpy(dY)), layer.backward(dY), f"{cls.__name__} backward")
    for key in layer.params:
        close(twin.grads[key], layer.grads[key], f"{cls.__name__} grads[{key!r}]")


def test_a_caller_tensor_kept_by_a_convolution_is_copied() -> None:
    layer = jacnet.Conv2D(16, 2, 3, rng=0, dtype=np.float64)
    twin = copy.deepcopy(layer).to("torch")
    X = np.random.default_rng(4).standard_normal((2, 16, 5, 5))
    X_t = torch.from_numpy(X.copy())
    dY = np.ones((2, 2, 3, 3))
    twin.forward(X_t)
    X_t.mul_(5)  # the caller changes its input after forward
    twin.backward(torch.from_numpy(dY))
    layer.forward(X)
    layer.backward(dY)
    close(twin.grads["W"], layer.grads["W"], "Conv2D grads['W'] after the caller's change")


@settings(max_examples=15)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(2, 9),
                       st.integers(2, 9)),
       kernel=st.sampled_from([2, (1, 2), (2, 1)]), seed=st.integers(0, 99))
def test_max_pooling_with_ties_routes_like_numpy_on_torch(
        shape: tuple[int, int, int, int], kernel: Any, seed: int) -> None:
    """Windows of 2 run axis by axis on torch: the first maximum wins every tie, as on NumPy."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-2, 2, shape).astype(np.float64)  # many equal maxima
    layer = jacnet.MaxPool2D(kernel)
    twin = copy.deepcopy(layer).to("torch")
    Y = layer.forward(X)
    np.testing.assert_array_equal(to_numpy(twin.forward(torch.from_numpy(X))), Y)
    dY = rng.standard_normal(Y.shape)
    np.testing.assert_array_equal(to_numpy(twin.backward(torch.from_numpy(dY))),
                                  layer.backward(dY))


def test_a_cnn_trains_the_same_on_torch() -> None:
    rng = np.random.default_rng(10)
    X = rng.standard_normal((24, 1, 8, 8))
    y = rng.integers(0, 3, 24)
    model = jacnet.Sequential([
        jacnet.Conv2D(1, 4, 3, rng=0, dtype=np.float64), jacnet.ReLU(), jacnet.MaxPool2D(2),
        jacnet.Flatten(), jacnet.Affine(36, 3, rng=1, dtype=np.float64)])
    twin = copy.deepcopy(model).to("torch")
    kwargs = {"loss": jacnet.SoftmaxCrossEntropy(), "epochs": 2, "batch_size": 8, "seed": 3,
              "verbose": 0}
    history = jacnet.fit(model, X, y, optimizer=jacnet.SGD(0.05, momentum=0.9), **kwargs)
    history_t = jacnet.fit(twin, X, y, optimizer=jacnet.SGD(0.05, momentum=0.9), **kwargs)
    np.testing.assert_allclose(history_t["loss"], history["loss"], rtol=RTOL)
    for k in model.params:
        close(twin.params[k], model.params[k], f"cnn {k}")


def test_tensor_finiteness_check_is_exact() -> None:
    from jacnet.backend import all_finite

    big = torch.full((1100, 1000), 3e38 / 4, dtype=torch.float32)  # the sum overflows
    assert all_finite(big)
    big[5, 5] = float("nan")
    assert not all_finite(big)
    small = torch.ones((4, 3))
    small[0, 0] = float("-inf")
    assert not all_finite(small) and all_finite(torch.ones((4, 3)))


def test_only_tensors_count_as_torch_arrays_and_torch_dtypes_name_numpys() -> None:
    assert is_torch(torch.ones(2)) and is_torch(torch.nn.Parameter(torch.ones(2)))
    assert not is_torch(torch.Size([2, 3])) and not is_torch(torch.float32)
    assert not is_torch(np.ones(2))
    assert jacnet.Affine(2, 3, rng=0, dtype=torch.float64).dtype == np.float64
    with pytest.raises(JacnetTypeError, match="float32 or float64, got int32"):
        jacnet.Affine(2, 3, dtype=torch.int32)
