"""Pooling, GlobalAvgPool and Flatten: backward against the expanded Jacobian and finite
differences, worked examples, PyTorch's pooling functions, bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from layer_checks import contract, three_way
from named_errors import Case, named_error_test

from jacnet import (
    AvgPool1D,
    AvgPool2D,
    Flatten,
    GlobalAvgPool,
    JacnetTypeError,
    JacnetValueError,
    MaxPool1D,
    MaxPool2D,
    ShapeError,
    expanded_jacobian,
)

WINDOWED = {"MaxPool1D": MaxPool1D, "MaxPool2D": MaxPool2D, "AvgPool1D": AvgPool1D,
            "AvgPool2D": AvgPool2D}


@pytest.mark.parametrize("name", list(WINDOWED))
@given(data=st.data())
def test_pool_backward_matches_jacobian_and_finite_differences(name: str, data: st.DataObject) -> None:
    cls = WINDOWED[name]
    d = cls.spatial_ndim
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(d))
    stride = data.draw(st.none() | st.tuples(*[st.integers(1, 3)] * d))
    padding = tuple(data.draw(st.integers(0, k // 2)) for k in kernel)
    spatial = tuple(max(1, k - 2 * p) + data.draw(st.integers(0, 3 if d == 1 else 2))
                    for k, p in zip(kernel, padding, strict=True))
    shape = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)), *spatial)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    layer = cls(kernel, stride, padding)
    # Normal draws: a tie within a window (where max is not differentiable) has probability 0.
    X = rng.standard_normal(shape)
    dY = rng.standard_normal(layer.forward(X).shape)
    three_way(layer, X, dY)


@given(data=st.data())
def test_global_pool_and_flatten_three_way(data: st.DataObject) -> None:
    shape = tuple(data.draw(st.lists(st.integers(1, 3), min_size=3, max_size=4)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    X = rng.standard_normal(shape)
    for layer in (GlobalAvgPool(), Flatten()):
        three_way(layer, X, rng.standard_normal(layer.forward(X).shape))


def test_maxpool1d_worked_example() -> None:
    """x = (1, 5, 2, 3, 7, 0), window 2: y = (5, 3, 7); each output's row of the Jacobian is a
    single 1 at its winner, and dX sends dY there."""
    layer = MaxPool1D(2)
    X = np.array([[[1.0, 5.0, 2.0, 3.0, 7.0, 0.0]]])
    np.testing.assert_array_equal(layer.forward(X), [[[5.0, 3.0, 7.0]]])
    J = expanded_jacobian(layer, X).reshape(3, 6)
    np.testing.assert_array_equal(J, [[0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]])
    np.testing.assert_array_equal(layer.backward(np.array([[[10.0, 20.0, 30.0]]])),
                                  [[[0.0, 10.0, 0.0, 20.0, 30.0, 0.0]]])


def test_overlapping_maxpool_sums_over_windows() -> None:
    """Window 3, stride 1 on (0, 9, 0, 0): input 9 wins both windows and gets both gradients."""
    layer = MaxPool1D(3, stride=1)
    X = np.array([[[0.0, 9.0, 0.0, 0.0]]])
    np.testing.assert_array_equal(layer.forward(X), [[[9.0, 9.0]]])
    np.testing.assert_array_equal(layer.backward(np.array([[[1.0, 2.0]]])), [[[0.0, 3.0, 0.0, 0.0]]])


def test_avgpool1d_worked_example_with_padding() -> None:
    """x = (2, 4, 6), window 2, stride 2, padding 1: windows (0, 2), (4, 6) with the zero pad
    counted, y = (1, 5); ∂y/∂x = [[1/2, 0, 0], [0, 1/2, 1/2]]."""
    layer = AvgPool1D(2, padding=1)
    X = np.array([[[2.0, 4.0, 6.0]]])
    np.testing.assert_array_equal(layer.forward(X), [[[1.0, 5.0]]])
    np.testing.assert_array_equal(expanded_jacobian(layer, X).reshape(2, 3),
                                  [[0.5, 0, 0], [0, 0.5, 0.5]])
    np.testing.assert_array_equal(layer.backward(np.array([[[2.0, 4.0]]])), [[[1.0, 2.0, 2.0]]])


def test_global_avg_pool_and_flatten_worked_examples() -> None:
    X = np.arange(12.0).reshape(1, 2, 2, 3)
    pool = GlobalAvgPool()
    np.testing.assert_array_equal(pool.forward(X), [[2.5, 8.5]])
    np.testing.assert_array_equal(pool.backward(np.array([[6.0, 12.0]])),
                                  np.concatenate([np.ones((1, 1, 2, 3)), 2 * np.ones((1, 1, 2, 3))], 1))
    flat = Flatten()
    np.testing.assert_array_equal(flat.forward(X), np.arange(12.0).reshape(1, 12))
    np.testing.assert_array_equal(expanded_jacobian(flat, X).reshape(12, 12), np.eye(12))
    np.testing.assert_array_equal(flat.backward(np.arange(12.0).reshape(1, 12)), X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "layer", "shape", "reference"), [
    ("max1d", MaxPool1D(3, 2, 1), (3, 2, 9), lambda F, x: F.max_pool1d(x, 3, 2, 1)),
    ("max2d", MaxPool2D((2, 3), (1, 2), (1, 1)), (2, 3, 5, 6),
     lambda F, x: F.max_pool2d(x, (2, 3), (1, 2), (1, 1))),
    ("avg1d", AvgPool1D(3, 2, 1), (3, 2, 9), lambda F, x: F.avg_pool1d(x, 3, 2, 1)),
    ("avg2d", AvgPool2D(2), (2, 3, 5, 6), lambda F, x: F.avg_pool2d(x, 2)),
    ("global", GlobalAvgPool(), (2, 3, 4, 5), lambda F, x: F.adaptive_avg_pool2d(x, 1).flatten(1)),
    ("flatten", Flatten(), (2, 3, 4), lambda F, x: x.flatten(1)),
])
def test_pooling_agrees_with_pytorch(name: str, layer: Any, shape: tuple[int, ...],
                                     reference: Any, dtype: Any, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    X = rng.standard_normal(shape).astype(dtype)
    Y = layer.forward(X)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dX = layer.backward(dY)
    Xt = torch.tensor(X, requires_grad=True)
    Yt = reference(torch.nn.functional, Xt)
    Yt.backward(torch.tensor(dY))
    assert Y.dtype == dX.dtype == dtype
    np.testing.assert_allclose(Y, Yt.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dX, Xt.grad.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("layer", "shape"), [
    (MaxPool1D(2), (3, 2, 8)), (MaxPool2D(2, padding=1), (2, 2, 4, 5)),
    (AvgPool1D(3, 1, 1), (3, 2, 8)), (AvgPool2D((2, 1)), (2, 2, 4, 5)),
    (GlobalAvgPool(), (2, 3, 4)), (Flatten(), (2, 3, 4, 2)),
], ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else str(v))
def test_pooling_layer_contract(layer: Any, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    contract(layer, rng.standard_normal(shape), rng)


def test_stride_defaults_to_the_kernel() -> None:
    assert MaxPool2D((2, 3)).stride == (2, 3)
    assert AvgPool1D(4, stride=1).config() == {"kernel_size": 4, "stride": 1, "padding": 0}


X3 = np.zeros((2, 3, 4))

CASES: list[Case] = [
    ("rank", lambda: MaxPool1D(2).forward(np.zeros((2, 3, 4, 4))), ShapeError, ValueError,
     "MaxPool1D.forward X expects a 3-D array"),
    ("rank 2d", lambda: AvgPool2D(2).forward(X3), ShapeError, ValueError, "AvgPool2D.forward X"),
    ("window larger than input", lambda: MaxPool1D(5).forward(X3), ShapeError, ValueError,
     "at least the kernel (5,)"),
    ("stride 0", lambda: AvgPool1D(2, stride=0), JacnetValueError, ValueError, "AvgPool1D stride"),
    ("padding over half", lambda: MaxPool1D(2, padding=2), JacnetValueError, ValueError,
     "MaxPool1D padding expects at most half"),
    ("kernel pair wrong length", lambda: MaxPool2D((2, 2, 2)), JacnetValueError, ValueError,
     "MaxPool2D kernel_size"),
    ("kernel not int", lambda: AvgPool2D("2"), JacnetTypeError, TypeError, "AvgPool2D kernel_size"),
    ("global rank", lambda: GlobalAvgPool().forward(np.zeros((2, 3))), ShapeError, ValueError,
     "GlobalAvgPool.forward X"),
    ("flatten rank", lambda: Flatten().forward(np.zeros(3)), ShapeError, ValueError,
     "Flatten.forward X"),
    ("dY shape", lambda: (lambda p: (p.forward(X3), p.backward(np.zeros((2, 3, 3)))))(MaxPool1D(2)),
     ShapeError, ValueError, "MaxPool1D.backward dY"),
    ("non-finite", lambda: AvgPool1D(2).forward(np.full((1, 1, 4), np.nan)), JacnetValueError,
     ValueError, "AvgPool1D.forward X"),
]

test_bad_input = named_error_test(CASES)


@pytest.mark.parametrize(("cls", "shape", "kernel"), [
    (MaxPool2D, (3, 4, 7, 9), 2), (MaxPool1D, (3, 4, 11), 3), (MaxPool2D, (2, 3, 6, 6), (2, 3)),
    # rows of at least 8 windows: NumPy's axis-by-axis path (covered or not, k = 1, 2, 3, 4)
    (MaxPool2D, (3, 2, 7, 17), 2), (MaxPool1D, (3, 4, 27), 3), (MaxPool1D, (3, 4, 16), 2),
    (MaxPool2D, (2, 3, 7, 16), (3, 1)), (MaxPool2D, (2, 3, 4, 17), (1, 2)),
    (MaxPool2D, (2, 2, 9, 33), (3, 4))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiling_max_pool_fast_path_is_bitwise_the_general_one(cls: Any, shape: tuple[int, ...],
                                                               kernel: Any, dtype: Any) -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, shape).astype(dtype)  # many ties: the first maximum must win
    fast, general = cls(kernel), cls(kernel)
    general._slots = lambda out: None  # force the gather-every-window path
    np.testing.assert_array_equal(fast.forward(X), general.forward(X))
    dY = rng.standard_normal(fast.forward(X).shape).astype(dtype)
    general.forward(X)
    assert fast.backward(dY).tobytes() == general.backward(dY).tobytes()
