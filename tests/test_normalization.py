"""BatchNorm and LayerNorm: backward against the expanded Jacobian (dense over the batch for
batch norm in training) and finite differences, a worked example, PyTorch, running
statistics, train/eval, bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from layer_checks import contract, three_way
from named_errors import Case, named_error_test

from jacnet import (
    Affine,
    AvgPool1D,
    BatchNorm,
    Conv1D,
    Dropout,
    GlobalAvgPool,
    JacnetTypeError,
    JacnetValueError,
    LayerNorm,
    ReLU,
    Sequential,
    ShapeError,
    SoftmaxCrossEntropy,
    check_gradients,
    expanded_jacobian,
)
from jacnet.layers import inference_mode


def _with_random_affine(layer: Any, rng: np.random.Generator) -> Any:
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape)
    return layer


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@given(data=st.data())
def test_batchnorm_three_way(training: bool, data: st.DataObject) -> None:
    F = data.draw(st.integers(1, 3))
    spatial = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    N = data.draw(st.integers(2 if not spatial else 1, 4))
    if training and N * int(np.prod(spatial)) < 2:
        N = 2
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    layer = _with_random_affine(BatchNorm(F, dtype=np.float64), rng)
    layer.buffers["running_mean"][...] = rng.standard_normal(F)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, F)
    layer.train(training)
    X = 2 * rng.standard_normal((N, F, *spatial)) + 1
    three_way(layer, X, rng.standard_normal(X.shape))


@given(data=st.data())
def test_layernorm_three_way(data: st.DataObject) -> None:
    shape = tuple(data.draw(st.lists(st.integers(1, 3), min_size=2, max_size=4)))
    k = data.draw(st.integers(1, len(shape) - 1))
    normalized = shape[len(shape) - k:]
    if int(np.prod(normalized)) < 2:  # one entry: x̂ = 0 whatever x, nothing to check but zeros
        normalized = (*normalized[:-1], 2)
        shape = (*shape[:-1], 2)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    layer = _with_random_affine(LayerNorm(normalized, dtype=np.float64), rng)
    X = rng.standard_normal(shape)
    three_way(layer, X, rng.standard_normal(shape))


# The hand example: x = (1, 2, 3) in one feature, μ = 2, var = 2/3, σ = sqrt(2/3) (eps ≈ 0),
# x̂ = (−1, 0, 1)/σ and ∂x̂_i/∂x_k = (δ_ik − 1/3 − x̂_i x̂_k/3)/σ = [[1, −2, 1], [−2, 4, −2],
# [1, −2, 1]] / (6σ). Every entry is non-zero off the diagonal: sample 0's output moves with
# sample 2's input, through the batch mean and variance.
HAND_J = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]) / (6 * np.sqrt(2 / 3))


def test_batchnorm_worked_example() -> None:
    layer = BatchNorm(1, eps=1e-12, dtype=np.float64)
    X = np.array([[1.0], [2.0], [3.0]])
    np.testing.assert_allclose(layer.forward(X)[:, 0], np.array([-1.0, 0.0, 1.0]) / np.sqrt(2 / 3))
    J = expanded_jacobian(layer, X)
    assert J.shape == (3, 1, 3, 1)
    np.testing.assert_allclose(J[:, 0, :, 0], HAND_J, atol=1e-9)
    # Running statistics: mean 0.9·0 + 0.1·2, var 0.9·1 + 0.1·1 (unbiased: 2/2).
    np.testing.assert_allclose(layer.buffers["running_mean"], [0.2])
    np.testing.assert_allclose(layer.buffers["running_var"], [1.0])
    # dX = Jᵀ dY: with dY = (1, 0, 0) it is the Jacobian's first row.
    dY = np.array([[1.0], [0.0], [0.0]])
    np.testing.assert_allclose(layer.backward(dY)[:, 0], HAND_J[0], atol=1e-9)


def test_layernorm_worked_example() -> None:
    """The same numbers along one sample's features: the block is the batch-norm block."""
    layer = LayerNorm(3, eps=1e-12, dtype=np.float64)
    X = np.array([[1.0, 2.0, 3.0], [7.0, 8.0, 9.0]])
    np.testing.assert_allclose(layer.forward(X), np.array([[-1.0, 0.0, 1.0]] * 2) / np.sqrt(2 / 3))
    J = expanded_jacobian(layer, X)
    np.testing.assert_allclose(J[0, :, 0, :], HAND_J, atol=1e-9)
    np.testing.assert_allclose(J[1, :, 1, :], HAND_J, atol=1e-9)
    np.testing.assert_array_equal(J[0, :, 1, :], 0)  # samples do not mix


def test_batchnorm_jacobian_couples_samples_not_features(rng: np.random.Generator) -> None:
    layer = BatchNorm(2, dtype=np.float64)
    X = rng.standard_normal((3, 2, 2))
    J = layer.jacobian(X)  # (N, C, L, N, C, L)
    assert np.all(J[0, 0, :, 1, 0, :] != 0)  # sample 0 depends on sample 1, same channel
    np.testing.assert_array_equal(J[:, 0, :, :, 1, :], 0)  # never on another channel
    layer.eval()
    J_eval = layer.jacobian(X).reshape(X.size, X.size)
    np.testing.assert_array_equal(J_eval, np.diag(np.diag(J_eval)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6), (3, 3, 4, 5)])
def test_batchnorm_agrees_with_pytorch(shape: tuple[int, ...], dtype: Any,
                                       rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    layer = _with_random_affine(BatchNorm(3, momentum=0.2, dtype=dtype), rng)
    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}[len(shape)]
    ref = cls(3, momentum=0.2).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        ref.weight[...] = torch.tensor(layer.params["gamma"])
        ref.bias[...] = torch.tensor(layer.params["beta"])
    tol = {"rtol": 2e-4, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    for _ in range(3):  # three training steps move the running statistics
        X = (3 * rng.standard_normal(shape) + 2).astype(dtype)
        Y = layer.forward(X)
        dY = rng.standard_normal(Y.shape).astype(dtype)
        dX = layer.backward(dY)
        Xt = torch.tensor(X, requires_grad=True)
        ref.zero_grad()
        Yt = ref(Xt)
        Yt.backward(torch.tensor(dY))
        np.testing.assert_allclose(Y, Yt.detach().numpy(), **tol)
        np.testing.assert_allclose(dX, Xt.grad.numpy(), **tol)
        np.testing.assert_allclose(layer.grads["gamma"], ref.weight.grad.numpy(), **tol)
        np.testing.assert_allclose(layer.grads["beta"], ref.bias.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.buffers["running_mean"], ref.running_mean.numpy(), **tol)
    np.testing.assert_allclose(layer.buffers["running_var"], ref.running_var.numpy(), **tol)
    layer.eval()
    ref.eval()
    X = (3 * rng.standard_normal(shape) + 2).astype(dtype)
    Y = layer.forward(X)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dX = layer.backward(dY)
    Xt = torch.tensor(X, requires_grad=True)
    Yt = ref(Xt)
    Yt.backward(torch.tensor(dY))
    np.testing.assert_allclose(Y, Yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dX, Xt.grad.numpy(), **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("normalized", "shape"), [(4, (3, 4)), ((2, 3), (2, 5, 2, 3)),
                                                   ((3, 2, 2), (2, 3, 2, 2))])
def test_layernorm_agrees_with_pytorch(normalized: Any, shape: tuple[int, ...], dtype: Any,
                                       rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    layer = _with_random_affine(LayerNorm(normalized, dtype=dtype), rng)
    ref = torch.nn.LayerNorm(normalized).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        ref.weight[...] = torch.tensor(layer.params["gamma"])
        ref.bias[...] = torch.tensor(layer.params["beta"])
    X = (2 * rng.standard_normal(shape) - 1).astype(dtype)
    Y = layer.forward(X)
    dY = rng.standard_normal(shape).astype(dtype)
    dX = layer.backward(dY)
    Xt = torch.tensor(X, requires_grad=True)
    Yt = ref(Xt)
    Yt.backward(torch.tensor(dY))
    tol = {"rtol": 2e-4, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(Y, Yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dX, Xt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads["gamma"], ref.weight.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads["beta"], ref.bias.grad.numpy(), **tol)


def test_batchnorm_train_and_eval(rng: np.random.Generator) -> None:
    layer = BatchNorm(2, dtype=np.float64)
    X = 5 * rng.standard_normal((50, 2)) + 3
    Y = layer.forward(X)
    np.testing.assert_allclose(Y.mean(axis=0), 0, atol=1e-12)  # batch statistics
    np.testing.assert_allclose(Y.std(axis=0), 1, atol=1e-5)
    running = {k: v.copy() for k, v in layer.buffers.items()}
    np.testing.assert_allclose(running["running_mean"], 0.1 * X.mean(axis=0))
    np.testing.assert_allclose(running["running_var"], 0.9 + 0.1 * X.var(axis=0, ddof=1))
    assert layer.eval() is layer and not layer.training
    Y_eval = layer.forward(X)
    expected = (X - running["running_mean"]) / np.sqrt(running["running_var"] + 1e-5)
    np.testing.assert_allclose(Y_eval, expected)
    for k, v in layer.buffers.items():  # inference leaves the statistics alone
        np.testing.assert_array_equal(v, running[k])
    # One sample is fine in inference, refused in training (no batch statistics).
    assert layer.forward(X[:1]).shape == (1, 2)
    layer.train()
    with pytest.raises(ShapeError, match="more than one value per feature"):
        layer.forward(X[:1])


def test_inference_mode_does_not_update_running_statistics(rng: np.random.Generator) -> None:
    layer = BatchNorm(3)
    before = {k: v.copy() for k, v in layer.buffers.items()}
    with inference_mode():
        layer.forward(rng.standard_normal((4, 3)).astype(np.float32))
    for k, v in layer.buffers.items():
        np.testing.assert_array_equal(v, before[k])


def test_buffers_follow_astype() -> None:
    layer = BatchNorm(3).astype(np.float64)
    assert all(b.dtype == np.float64 for b in layer.buffers.values())
    assert layer.params["gamma"].dtype == np.float64


@pytest.mark.parametrize(("layer", "shape"), [
    (BatchNorm(3), (4, 3)), (BatchNorm(2, dtype=np.float64), (3, 2, 5)),
    (BatchNorm(2), (2, 2, 3, 3)), (LayerNorm((2, 3)), (4, 2, 3)),
    (LayerNorm(5, dtype=np.float64), (3, 5)),
], ids=["bn2", "bn3", "bn4", "ln2", "ln1"])
def test_normalization_layer_contract(layer: Any, shape: tuple[int, ...],
                                      rng: np.random.Generator) -> None:
    contract(layer, rng.standard_normal(shape).astype(layer.dtype), rng)


def test_config() -> None:
    assert BatchNorm(4, momentum=0.2).config() == {"num_features": 4, "eps": 1e-5,
                                                   "momentum": 0.2, "dtype": "float32"}
    assert LayerNorm((2, 3)).config() == {"normalized_shape": [2, 3], "eps": 1e-5,
                                          "dtype": "float32"}
    assert LayerNorm(3).params["gamma"].shape == (3,)


X32 = np.zeros((4, 3), dtype=np.float32)

CASES: list[Case] = [
    ("bn features", lambda: BatchNorm(4).forward(X32), ShapeError, ValueError,
     "BatchNorm(4).forward X expects 4 features"),
    ("bn rank", lambda: BatchNorm(3).forward(np.zeros((2, 3, 2, 2, 2), np.float32)), ShapeError,
     ValueError, "BatchNorm.forward X"),
    ("bn float64 into float32", lambda: BatchNorm(3).forward(X32.astype(np.float64)),
     JacnetTypeError, TypeError, "BatchNorm.forward X expects float32"),
    ("bn momentum", lambda: BatchNorm(3, momentum=1.5), JacnetValueError, ValueError,
     "BatchNorm momentum"),
    ("bn eps", lambda: BatchNorm(3, eps=0), JacnetValueError, ValueError, "BatchNorm eps"),
    ("bn num_features", lambda: BatchNorm(0), JacnetValueError, ValueError,
     "BatchNorm num_features"),
    ("ln shape", lambda: LayerNorm(4).forward(X32), ShapeError, ValueError,
     "LayerNorm(4).forward X expects shape (N, ..., 4)"),
    ("ln too few axes", lambda: LayerNorm((4, 3)).forward(X32), ShapeError, ValueError,
     "LayerNorm([4, 3]).forward X"),
    ("ln float64 into float32", lambda: LayerNorm(3).forward(X32.astype(np.float64)),
     JacnetTypeError, TypeError, "LayerNorm.forward X expects float32"),
    ("ln empty shape", lambda: LayerNorm(()), JacnetTypeError, TypeError,
     "LayerNorm normalized_shape"),
    ("ln zero", lambda: LayerNorm((3, 0)), JacnetValueError, ValueError,
     "LayerNorm normalized_shape"),
    ("bn wrt", lambda: BatchNorm(3).jacobian(X32, "W"), JacnetValueError, ValueError,
     "BatchNorm.jacobian wrt"),
]

test_bad_input = named_error_test(CASES)


def test_a_network_with_every_new_layer_passes_check_gradients(rng: np.random.Generator) -> None:
    """Conv1D → BatchNorm → ReLU → Dropout (mask fixed) → AvgPool1D → LayerNorm → GlobalAvgPool
    → Affine under a loss: the chain rule over the layers' Jacobians, backward and finite
    differences agree, in training mode (batch statistics) and in inference mode."""
    dropout = Dropout(0.3, rng=0)
    dropout.fix_randomness()
    model = Sequential([Conv1D(2, 3, 3, padding=1, rng=0, dtype=np.float64),
                        BatchNorm(3, dtype=np.float64), ReLU(), dropout, AvgPool1D(2),
                        LayerNorm((3, 3), dtype=np.float64), GlobalAvgPool(),
                        Affine(3, 2, rng=1, dtype=np.float64)])
    X = rng.standard_normal((4, 2, 6))
    y = np.array([0, 1, 1, 0])
    for training in (True, False):
        model.train(training)
        report = check_gradients(model, X, target=y, loss=SoftmaxCrossEntropy())
        assert report.ok, str(report)
