"""BatchNorm, LayerNorm and Dropout on the torch backend (CPU, float64) against NumPy: random
shapes over several training steps (outputs, input gradients, parameter gradients, running
statistics), eval mode, the layer contract on tensors, and a fit that trains the same weights."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jacnet
from jacnet import BatchNorm, Dropout, JacnetTypeError, Layer, LayerNorm
from jacnet.backend import is_torch, to_numpy
from jacnet.layers import inference_mode

torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")

RTOL = 1e-6


def close(actual: Any, expected: Any, what: str) -> None:
    assert is_torch(actual), f"{what}: expected a tensor, got {type(actual).__name__}"
    assert isinstance(expected, np.ndarray), f"{what}: the NumPy layer returned a tensor"
    np.testing.assert_allclose(to_numpy(actual), expected, rtol=RTOL, atol=1e-12, err_msg=what)


def tensor(A: np.ndarray[Any, Any]) -> Any:
    return torch.from_numpy(A.copy())


def randomized(layer: Layer, rng: np.random.Generator) -> Layer:
    """``layer`` with random parameters (gamma away from 0) and, if any, running statistics."""
    for name, p in layer.params.items():
        p[...] = rng.uniform(0.5, 1.5, p.shape) if name == "gamma" else rng.standard_normal(p.shape)
    for name, b in layer.buffers.items():
        b[...] = rng.uniform(0.5, 2.0, b.shape) if name == "running_var" else rng.standard_normal(
            b.shape)
    return layer


def agree(layer: Layer, shape: tuple[int, ...], rng: np.random.Generator, *, steps: int = 3,
          numpy_upstream: bool = False) -> Layer:
    """Train ``layer`` and its torch twin side by side for ``steps`` steps, then once in eval
    mode, comparing everything each step; returns the twin."""
    twin = copy.deepcopy(layer).to("torch")
    for step in range(steps + 1):
        if step == steps:
            layer.eval()
            twin.eval()
        what = f"step {step}" + (" (eval)" if step == steps else "")
        X = rng.uniform(-2.0, 2.0, shape) * rng.uniform(0.5, 3.0)
        Y, Yt = layer.forward(X), twin.forward(tensor(X))
        close(Yt, Y, f"{what} forward")
        dY = rng.standard_normal(Y.shape)
        # A NumPy dY to a tensor layer comes back as a tensor too.
        dX = layer.backward(dY)
        dXt = twin.backward(dY.copy() if numpy_upstream else tensor(dY))
        close(dXt, dX, f"{what} backward")
        for key in layer.params:
            close(twin.grads[key], layer.grads[key], f"{what} grads[{key!r}]")
            assert is_torch(twin.params[key])
        for key in layer.buffers:
            close(twin.buffers[key], layer.buffers[key], f"{what} buffers[{key!r}]")
        if layer.params:
            layer.backward_params(-dY)
            twin.backward_params(tensor(-dY))
            for key in layer.params:
                close(twin.grads[key], layer.grads[key], f"{what} backward_params[{key!r}]")
    return twin


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 5), features=st.integers(1, 4),
       spatial=st.lists(st.integers(1, 3), max_size=2), momentum=st.sampled_from([0.0, 0.1, 0.7, 1.0]),
       eps=st.sampled_from([1e-5, 1e-3]), numpy_upstream=st.booleans(), seed=st.integers(0, 2**16))
def test_batchnorm_on_torch_agrees_with_numpy(n: int, features: int, spatial: list[int],
                                              momentum: float, eps: float, numpy_upstream: bool,
                                              seed: int) -> None:
    if n * int(np.prod(spatial)) < 2:
        n = 2  # training needs more than one value per feature
    rng = np.random.default_rng(seed)
    layer = randomized(BatchNorm(features, eps, momentum, dtype=np.float64), rng)
    twin = agree(layer, (n, features, *spatial), rng, numpy_upstream=numpy_upstream)
    assert all(is_torch(b) for b in twin.buffers.values())


@settings(max_examples=20, deadline=None)
@given(lead=st.lists(st.integers(1, 3), min_size=1, max_size=3),
       normalized=st.lists(st.integers(1, 4), min_size=1, max_size=2),
       eps=st.sampled_from([1e-5, 1e-2]), numpy_upstream=st.booleans(), seed=st.integers(0, 2**16))
def test_layernorm_on_torch_agrees_with_numpy(lead: list[int], normalized: list[int], eps: float,
                                              numpy_upstream: bool, seed: int) -> None:
    lead = lead[:5 - len(normalized)]
    rng = np.random.default_rng(seed)
    layer = randomized(LayerNorm(tuple(normalized), eps, dtype=np.float64), rng)
    agree(layer, (*lead, *normalized), rng, numpy_upstream=numpy_upstream)


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=5),
       p=st.sampled_from([0.0, 0.2, 0.5, 0.9]), numpy_upstream=st.booleans(),
       seed=st.integers(0, 2**16))
def test_dropout_on_torch_draws_the_same_masks_as_numpy(shape: list[int], p: float,
                                                        numpy_upstream: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer = Dropout(p, rng=seed)
    twin = agree(layer, tuple(shape), rng, numpy_upstream=numpy_upstream)
    # A fixed mask is reused, as a tensor, on both.
    layer.train()
    twin.train()
    X = rng.standard_normal(shape)
    close(twin.forward(tensor(X)), layer.forward(X), "a fresh mask")
    layer.fix_randomness()
    twin.fix_randomness()
    X = rng.standard_normal(shape)
    Y, Yt = layer.forward(X), twin.forward(tensor(X))
    close(Yt, Y, "the fixed mask")
    np.testing.assert_array_equal(to_numpy(twin.forward(tensor(X))), to_numpy(Yt))
    assert is_torch(twin._mask)


def _bn_dropout_mlp() -> jacnet.Sequential:
    f64 = np.float64
    return jacnet.Sequential([
        jacnet.Affine(6, 16, rng=0, dtype=f64), BatchNorm(16, dtype=f64), jacnet.ReLU(),
        Dropout(0.3, rng=1), jacnet.Affine(16, 8, rng=2, dtype=f64), LayerNorm(8, dtype=f64),
        jacnet.Tanh(), Dropout(0.2, rng=3), jacnet.Affine(8, 3, rng=4, dtype=f64)])


def test_fit_with_batchnorm_and_dropout_trains_the_same_weights_on_torch() -> None:
    rng = np.random.default_rng(9)
    X = rng.standard_normal((96, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    model = _bn_dropout_mlp()
    twin = copy.deepcopy(model).to("torch")
    kwargs = {"loss": jacnet.SoftmaxCrossEntropy(), "epochs": 3, "batch_size": 16, "seed": 2,
              "verbose": 0, "validation_split": 0.25}
    history = jacnet.fit(model, X, y, optimizer=jacnet.SGD(0.1, momentum=0.9), **kwargs)
    history_t = jacnet.fit(twin, torch.from_numpy(X), y, optimizer=jacnet.SGD(0.1, momentum=0.9),
                           **kwargs)
    np.testing.assert_allclose(history_t["loss"], history["loss"], rtol=RTOL)
    for k in model.params:
        close(twin.params[k], model.params[k], f"fit params[{k!r}]")
    assert model.buffers, "the network should report BatchNorm's running statistics"
    for k in model.buffers:
        close(twin.buffers[k], model.buffers[k], f"fit buffers[{k!r}]")
    # The weights changed from the start (dropout and batch statistics were in play).
    assert not np.allclose(model.params["0.W"], _bn_dropout_mlp().params["0.W"])
    close(twin.predict(X), model.predict(X), "predict (eval mode, running statistics)")


@pytest.mark.parametrize("make", [lambda: BatchNorm(3, dtype=np.float64),
                                  lambda: LayerNorm(3, dtype=np.float64),
                                  lambda: Dropout(0.5, rng=0)])
def test_layer_contract_on_tensors(make: Any) -> None:
    """Forward leaves X alone and keeps nothing of it; backward leaves dY alone, repeats, writes
    grads in place; later calls never write into what was returned; eval and inference_mode
    leave the running statistics alone; inference_mode keeps nothing."""
    rng = np.random.default_rng(11)
    layer = randomized(make(), rng).to("torch")
    X = tensor(rng.standard_normal((4, 3)))
    X_before = X.clone()
    Y = layer.forward(X)
    assert torch.equal(X, X_before) and Y.data_ptr() != X.data_ptr()
    dY = tensor(rng.standard_normal((4, 3)))
    dY_before = dY.clone()
    grads = {k: g for k, g in layer.grads.items()}
    dX = layer.backward(dY)
    first = {k: g.clone() for k, g in layer.grads.items()}
    X.zero_()  # the caller reuses its tensor
    dX2 = layer.backward(dY)
    assert torch.equal(dY, dY_before) and torch.equal(dX, dX2)
    for k, g in layer.grads.items():
        assert g is grads[k] and torch.equal(g, first[k])
    kept_Y, kept_dX = Y.clone(), dX.clone()
    layer.forward(X_before + 1)
    layer.backward(-dY)
    assert torch.equal(Y, kept_Y) and torch.equal(dX, kept_dX)
    running = {k: b.clone() for k, b in layer.buffers.items()}
    with inference_mode():
        quiet = copy.deepcopy(layer)
        quiet.clear()
        quiet.forward(X_before)
    with pytest.raises(jacnet.ForwardNotCalledError):
        quiet.backward(dY)
    layer.eval()
    layer.forward(X_before)
    for k, b in layer.buffers.items():
        assert torch.equal(b, running[k]), f"{k} changed in eval mode or under inference_mode"


def test_batchnorm_buffers_stay_on_the_backend_through_astype_and_back() -> None:
    layer = randomized(BatchNorm(3, dtype=np.float64), np.random.default_rng(12))
    layer.to("torch").astype(np.float32)
    assert layer.dtype == np.float32
    for table in (layer.params, layer.grads, layer.buffers):
        assert all(is_torch(a) and a.dtype == torch.float32 for a in table.values())
    Y = layer.forward(torch.ones((2, 3)))  # running statistics updated in place, in float32
    assert Y.dtype == torch.float32 and layer.buffers["running_mean"].dtype == torch.float32
    layer.to("numpy")
    assert all(isinstance(b, np.ndarray) and b.dtype == np.float32
               for b in layer.buffers.values())


def test_a_float64_tensor_into_a_float32_norm_is_refused_as_on_numpy() -> None:
    layer = BatchNorm(3).to("torch")
    with pytest.raises(JacnetTypeError, match="float32 values"):
        layer.forward(torch.ones((2, 3), dtype=torch.float64))
    with pytest.raises(JacnetTypeError, match="float32 values"):
        BatchNorm(3).forward(np.ones((2, 3)))


@pytest.mark.parametrize("make", [lambda: BatchNorm(3, dtype=np.float64),
                                  lambda: LayerNorm(3, dtype=np.float64)])
def test_a_norms_jacobian_on_torch_says_to_copy_it(make: Any) -> None:
    layer = make().to("torch")
    with pytest.raises(JacnetTypeError, match="numpy backend"):
        layer.jacobian(np.ones((2, 3)))


def test_dropouts_jacobian_on_a_tensor_is_built_in_numpy() -> None:
    layer, twin = Dropout(0.5, rng=4), Dropout(0.5, rng=4).to("torch")
    X = np.random.default_rng(13).standard_normal((3, 4))
    for one in (layer, twin):
        one.fix_randomness()
    layer.forward(X)
    twin.forward(tensor(X))  # the fixed mask is a tensor now
    J, Jt = layer.jacobian(X), twin.jacobian(tensor(X))
    assert isinstance(Jt, np.ndarray)
    np.testing.assert_array_equal(Jt, J)
    for one in (layer, twin):
        one.eval()
    np.testing.assert_array_equal(twin.jacobian(tensor(X)), np.eye(12).reshape(3, 4, 3, 4))


def test_example_layers_agree_on_torch() -> None:
    for cls in (BatchNorm, LayerNorm, Dropout):
        rng = np.random.default_rng(14)
        layer, X = cls.example(rng, np.float64)
        twin = copy.deepcopy(layer).to("torch")
        close(twin.forward(X if layer.params else tensor(X)), layer.forward(X),
              f"{cls.__name__}.example forward")
