"""Conv1D and Conv2D: the im2col product against the expanded (Toeplitz) Jacobian and finite
differences, a convolution worked out by hand, PyTorch's conv1d/conv2d, bad input, and a
small CNN trained with fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from layer_checks import EXACT, contract, three_way
from named_errors import Case, named_error_test

from jacnet import (
    Affine,
    Conv1D,
    Conv2D,
    Flatten,
    JacnetTypeError,
    JacnetValueError,
    MaxPool1D,
    ReLU,
    Sequential,
    ShapeError,
    SoftmaxCrossEntropy,
    check_gradients,
    evaluate,
    expanded_jacobian,
    fit,
)


@st.composite
def conv_cases(draw: st.DrawFn, d: int) -> tuple[Any, dict[str, Any], tuple[int, ...]]:
    """A small float64 convolution (options per axis drawn) and its input shape."""
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(d))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(d))
    padding = tuple(draw(st.integers(0, 1)) for _ in range(d))
    spatial = tuple(max(1, k - 2 * p) + draw(st.integers(0, 3 if d == 1 else 2))
                    for k, p in zip(kernel, padding, strict=True))
    n, c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    options = {"in_channels": c_in, "out_channels": c_out, "kernel_size": kernel,
               "stride": stride, "padding": padding}
    return draw(st.integers(0, 2**16)), options, (n, c_in, *spatial)


@pytest.mark.parametrize("cls", [Conv1D, Conv2D])
@given(data=st.data())
def test_conv_backward_matches_jacobian_and_finite_differences(cls: Any, data: st.DataObject) -> None:
    seed, options, shape = data.draw(conv_cases(cls.spatial_ndim))
    rng = np.random.default_rng(seed)
    layer = cls(**options, rng=seed, dtype=np.float64)
    layer.params["b"][...] = rng.standard_normal(layer.params["b"].shape)
    X = rng.standard_normal(shape)
    dY = rng.standard_normal(layer.forward(X).shape)
    three_way(layer, X, dY)


def _direct_conv1d(X: Any, W: Any, b: Any, stride: int, pad: int) -> Any:
    """The definition written as loops, independent of im2col."""
    Xp = np.pad(X, ((0, 0), (0, 0), (pad, pad)))
    N, _, L = Xp.shape
    n_out, _, k = W.shape
    T = (L - k) // stride + 1
    Y = np.zeros((N, n_out, T))
    for n in range(N):
        for o in range(n_out):
            for t in range(T):
                Y[n, o, t] = b[o] + np.sum(W[o] * Xp[n, :, t * stride:t * stride + k])
    return Y


def test_conv1d_matches_the_definition(rng: np.random.Generator) -> None:
    layer = Conv1D(3, 4, 3, stride=2, padding=1, rng=0, dtype=np.float64)
    layer.params["b"][...] = rng.standard_normal(4)
    X = rng.standard_normal((2, 3, 9))
    np.testing.assert_allclose(layer.forward(X), _direct_conv1d(X, layer.params["W"],
                                                                layer.params["b"], 2, 1), **EXACT)


def test_conv1d_worked_example() -> None:
    """x = (1, 2, 4, 7), kernel (1, −1), b = 0.5: y_t = x_t − x_{t+1} + 0.5.

    ∂y_t/∂x_s = W[s − t]: the 3×4 Toeplitz matrix with 1 on the diagonal and −1 above it.
    With dY = (1, 1, 1): dX = dYᵀ J = (1, 0, 0, −1), dW = (Σ x_t, Σ x_{t+1}) = (7, 13), db = 3.
    """
    layer = Conv1D(1, 1, 2, init="zeros", dtype=np.float64)
    layer.params["W"][...] = [[[1.0, -1.0]]]
    layer.params["b"][...] = 0.5
    X = np.array([[[1.0, 2.0, 4.0, 7.0]]])
    np.testing.assert_array_equal(layer.forward(X), [[[-0.5, -1.5, -2.5]]])
    J = expanded_jacobian(layer, X)
    assert J.shape == (1, 1, 3, 1, 1, 4)
    np.testing.assert_array_equal(J.reshape(3, 4), [[1, -1, 0, 0], [0, 1, -1, 0], [0, 0, 1, -1]])
    dX = layer.backward(np.ones((1, 1, 3)))
    np.testing.assert_array_equal(dX, [[[1.0, 0.0, 0.0, -1.0]]])
    np.testing.assert_array_equal(layer.grads["W"], [[[7.0, 13.0]]])
    np.testing.assert_array_equal(layer.grads["b"], [3.0])
    # wrt W the Jacobian holds the windows: ∂y_t/∂W_κ = x_{t+κ}.
    np.testing.assert_array_equal(expanded_jacobian(layer, X, wrt="W").reshape(3, 2),
                                  [[1, 2], [2, 4], [4, 7]])


def test_conv2d_jacobian_is_block_toeplitz() -> None:
    """A 2×2 kernel on a 3×3 image: each output row of the Jacobian holds the kernel at the
    input pixels its window covers, and nothing else."""
    layer = Conv2D(1, 1, 2, init="zeros", dtype=np.float64)
    layer.params["W"][...] = [[[[1.0, 2.0], [3.0, 4.0]]]]
    J = layer.jacobian(np.zeros((1, 1, 3, 3))).reshape(4, 9)
    expected = np.zeros((4, 9))
    for row, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        for (a, b), w in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [1, 2, 3, 4], strict=True):
            expected[row, (i + a) * 3 + (j + b)] = w
    np.testing.assert_array_equal(J, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("cls", "shape", "options"), [
    (Conv1D, (4, 3, 11), {"kernel_size": 3, "stride": 2, "padding": 1}),
    (Conv1D, (2, 2, 6), {"kernel_size": 6}),
    (Conv2D, (3, 2, 7, 6), {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0)}),
    (Conv2D, (2, 3, 5, 5), {"kernel_size": 3, "padding": 1}),
])
def test_conv_agrees_with_pytorch(cls: Any, shape: tuple[int, ...], options: dict[str, Any],
                                  dtype: Any, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer = cls(shape[1], 4, **options, rng=1, dtype=dtype)
    layer.params["b"][...] = rng.standard_normal(4)
    X = rng.standard_normal(shape).astype(dtype)
    Y = layer.forward(X)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dX = layer.backward(dY)
    Xt = torch.tensor(X, requires_grad=True)
    Wt = torch.tensor(layer.params["W"], requires_grad=True)
    bt = torch.tensor(layer.params["b"], requires_grad=True)
    conv = F.conv1d if cls is Conv1D else F.conv2d
    Yt = conv(Xt, Wt, bt, stride=options.get("stride", 1), padding=options.get("padding", 0))
    Yt.backward(torch.tensor(dY))
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    assert Y.dtype == dX.dtype == layer.grads["W"].dtype == dtype
    np.testing.assert_allclose(Y, Yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dX, Xt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads["W"], Wt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads["b"], bt.grad.numpy(), **tol)


@pytest.mark.parametrize(("layer", "shape"), [
    (Conv1D(2, 3, 3, stride=2, padding=1, rng=0), (4, 2, 9)),
    (Conv2D(2, 3, (2, 3), padding=(1, 0), rng=0, dtype=np.float64), (2, 2, 4, 5)),
    (Conv1D(2, 3, 3, rng=0), (1, 2, 3)),  # one sample, one position: nothing to transpose
    (Conv2D(1, 1, 1, rng=0), (1, 1, 1, 1)),
], ids=["Conv1D", "Conv2D", "Conv1D-one-position", "Conv2D-1x1"])
def test_conv_layer_contract(layer: Any, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    contract(layer, rng.standard_normal(shape).astype(layer.dtype), rng)


def test_backward_params_fills_the_same_grads(rng: np.random.Generator) -> None:
    layer = Conv1D(2, 3, 3, padding=1, rng=0, dtype=np.float64)
    X = rng.standard_normal((3, 2, 6))
    dY = rng.standard_normal(layer.forward(X).shape)
    layer.backward(dY)
    full = {k: g.copy() for k, g in layer.grads.items()}
    layer.backward_params(dY)
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(g, full[k])


def test_from_config_and_init() -> None:
    layer = Conv2D(3, 5, (3, 2), stride=(1, 2), padding=1, rng=0)
    assert layer.config() == {"in_channels": 3, "out_channels": 5, "kernel_size": [3, 2],
                              "stride": [1, 2], "padding": 1, "dtype": "float32"}
    assert layer.params["W"].shape == (5, 3, 3, 2) and layer.params["b"].shape == (5,)
    # He: W ~ N(0, 2 / fan_in), fan_in = C·kh·kw.
    big = Conv1D(64, 64, 5, rng=0, dtype=np.float64)
    assert abs(big.params["W"].std() - np.sqrt(2 / (64 * 5))) < 0.01 * np.sqrt(2 / 320) * 5
    np.testing.assert_array_equal(Conv1D(2, 2, 2, rng=3).params["W"], Conv1D(2, 2, 2, rng=3).params["W"])
    assert not Conv1D(2, 2, 2, init="zeros").params["W"].any()


def test_sequential_cnn_gradients_and_training() -> None:
    """Conv1D → ReLU → MaxPool1D → Flatten → Affine: the chain's gradients pass the three-way
    check, and fit learns a shift-invariant pattern that a linear model cannot."""
    rng = np.random.default_rng(0)
    small = Sequential([Conv1D(1, 2, 3, rng=0, dtype=np.float64), ReLU(), MaxPool1D(2),
                        Flatten(), Affine(2 * 3, 2, rng=1, dtype=np.float64)])
    Xs = rng.standard_normal((3, 1, 8))
    report = check_gradients(small, Xs, target=np.array([0, 1, 1]), loss=SoftmaxCrossEntropy())
    assert report.ok, str(report)

    N, L = 256, 16
    y = rng.integers(0, 2, N)
    X = (0.3 * rng.standard_normal((N, 1, L))).astype(np.float32)
    for i in np.flatnonzero(y):  # class 1 carries the motif (+2, −2, +2) somewhere
        p = rng.integers(0, L - 3)
        X[i, 0, p:p + 3] += [2.0, -2.0, 2.0]
    model = Sequential([Conv1D(1, 8, 3, rng=0), ReLU(), MaxPool1D(2), Flatten(),
                        Affine(8 * 7, 2, rng=1)])
    before = evaluate(model, X, y, loss=SoftmaxCrossEntropy())
    history = fit(model, X, y, loss=SoftmaxCrossEntropy(), epochs=40, batch_size=32, seed=0,
                  verbose=0)
    after = evaluate(model, X, y)
    assert after["loss"] < 0.5 * before["loss"], (before, after, history)
    assert after["accuracy"] >= 0.95, after


X1 = np.zeros((2, 3, 8), dtype=np.float32)

CASES: list[Case] = [
    ("rank", lambda: Conv1D(3, 2, 3).forward(np.zeros((2, 3))), ShapeError,
         ValueError, "Conv1D.forward X"),
    ("rank 2d", lambda: Conv2D(3, 2, 3).forward(X1), ShapeError, ValueError,
         "Conv2D.forward X"),
    ("channels", lambda: Conv1D(4, 2, 3).forward(X1), ShapeError, ValueError,
         "expects shape (N, 4, L)"),
    ("kernel larger than padded input", lambda: Conv1D(3, 2, 11, padding=1).forward(X1),
         ShapeError, ValueError, "at least the kernel (11,)"),
    ("stride 0", lambda: Conv1D(3, 2, 3, stride=0), JacnetValueError, ValueError,
         "Conv1D stride"),
    ("negative padding", lambda: Conv2D(3, 2, 3, padding=-1), JacnetValueError, ValueError,
         "Conv2D padding"),
    ("kernel tuple length", lambda: Conv2D(3, 2, (1, 2, 3)), JacnetValueError, ValueError,
         "Conv2D kernel_size"),
    ("kernel 0", lambda: Conv1D(3, 2, 0), JacnetValueError, ValueError, "Conv1D kernel_size"),
    ("float kernel", lambda: Conv1D(3, 2, 2.5), JacnetTypeError, TypeError,
         "Conv1D kernel_size"),
    ("float64 into float32", lambda: Conv1D(3, 2, 3).forward(X1.astype(np.float64)),
         JacnetTypeError, TypeError, "Conv1D.forward X expects float32"),
    ("init", lambda: Conv1D(3, 2, 3, init="ones"), JacnetValueError, ValueError,
         "Conv1D init"),
    ("dtype", lambda: Conv2D(3, 2, 3, dtype=np.int32), JacnetTypeError, TypeError,
         "Conv2D dtype"),
    ("channels 0", lambda: Conv1D(0, 2, 3), JacnetValueError, ValueError,
         "Conv1D in_channels"),
    ("dY shape", lambda: (lambda c: (c.forward(X1), c.backward(np.zeros((2, 2, 5)))))(
        Conv1D(3, 2, 3)), ShapeError, ValueError, "Conv1D.backward dY"),
    ("wrt", lambda: Conv1D(3, 2, 3).jacobian(X1, "V"), JacnetValueError, ValueError,
         "Conv1D.jacobian wrt"),
]

test_bad_input = named_error_test(CASES)


@pytest.mark.parametrize("cls", [Conv1D, Conv2D])
@given(data=st.data())
def test_unit_stride_input_gradient_is_the_strided_one(cls: Any, data: st.DataObject) -> None:
    """The contiguous-add col2im of unit strides (the wide grid) against the general one with a
    strided add per kernel offset, on shapes that take it (padding, long kernels, one position)."""
    seed, options, shape = data.draw(conv_cases(cls.spatial_ndim))
    options["stride"] = 1
    rng = np.random.default_rng(seed)
    layer = cls(**options, rng=seed, dtype=np.float64)
    dY = rng.standard_normal(layer.forward(rng.standard_normal(shape)).shape)
    np.testing.assert_allclose(layer._padded_input_gradient_unit_stride(dY),
                               layer._padded_input_gradient(dY), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("per_sample", [True, False])
@pytest.mark.parametrize("cls", [Conv1D, Conv2D])
@given(data=st.data())
def test_both_product_layouts_match_jacobian(cls: Any, per_sample: bool, data: st.DataObject) -> None:
    """Forward and dW as one product per sample or one over all samples (a layer picks by
    C·K, and the small drawn layers would always pick per sample): the three-way check on
    each."""
    seed, options, shape = data.draw(conv_cases(cls.spatial_ndim))
    rng = np.random.default_rng(seed)
    layer = cls(**options, rng=seed, dtype=np.float64)
    layer._per_sample = lambda: per_sample  # type: ignore[method-assign]
    layer.params["b"][...] = rng.standard_normal(layer.params["b"].shape)
    X = rng.standard_normal(shape)
    three_way(layer, X, rng.standard_normal(layer.forward(X).shape))
