"""Checks shared by the tests of the convolution, pooling, normalisation and dropout layers:
the three-way agreement of every gradient and the layer contract."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np

from jacnet import ForwardNotCalledError, Layer, numerical_jacobian
from jacnet.layers import inference_mode

# Backward against the contracted expanded Jacobian: the same sums in another order.
EXACT = {"rtol": 1e-9, "atol": 1e-11}
# Against central finite differences (step 1e-6, float64): truncation plus rounding of f/eps.
FD = {"rtol": 1e-5, "atol": 1e-6}


def three_way(layer: Layer, X: Any, dY: Any) -> None:
    """For X and every parameter: backward's gradient == tensordot(dY, layer.jacobian) ==
    tensordot(dY, central finite differences), and the Jacobian's shape is Y.shape + A.shape."""
    fresh = copy.deepcopy(layer)
    Y = layer.forward(X)
    grads = {"X": layer.backward(dY)}
    grads.update({k: np.array(g) for k, g in layer.grads.items()})
    for wrt, grad in grads.items():
        A_shape = X.shape if wrt == "X" else layer.params[wrt].shape
        J = copy.deepcopy(fresh).jacobian(X, wrt)
        assert J.shape == Y.shape + A_shape, (wrt, J.shape)
        contracted = np.tensordot(dY, J, axes=dY.ndim)
        numeric = np.tensordot(dY, numerical_jacobian(fresh, X, wrt=wrt), axes=dY.ndim)
        assert grad.shape == A_shape
        np.testing.assert_allclose(grad, contracted, **EXACT, err_msg=f"d{wrt}: backward vs Jacobian")
        np.testing.assert_allclose(grad, numeric, **FD, err_msg=f"d{wrt}: backward vs finite diffs")


def contract(layer: Layer, X: Any, rng: np.random.Generator) -> None:
    """The layer contract: forward neither changes X nor keeps it by reference; backward leaves
    dY alone, does not accumulate, writes grads in place; config is JSON and rebuilds the layer;
    inference_mode keeps nothing."""
    X_before = X.copy()
    Y = layer.forward(X)
    np.testing.assert_array_equal(X, X_before)
    dY = rng.standard_normal(Y.shape).astype(Y.dtype)
    dY_before = dY.copy()
    buffers = {k: id(g) for k, g in layer.grads.items()}
    dX = layer.backward(dY)
    first = {k: g.copy() for k, g in layer.grads.items()}
    X[...] = 0  # the caller reuses its array: what forward kept must not change with it
    dX2 = layer.backward(dY)
    np.testing.assert_array_equal(dY, dY_before)
    np.testing.assert_array_equal(dX, dX2)
    assert dX.shape == X.shape and dX.dtype == Y.dtype
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(g, first[k])
        assert id(g) == buffers[k], f"grads[{k!r}] replaced instead of written in place"
        assert g.shape == layer.params[k].shape and g.dtype == layer.params[k].dtype
    # What forward and backward return is the caller's: later calls never write into it.
    kept_Y, kept_dX = Y.copy(), dX.copy()
    layer.forward(X_before + 1)
    layer.backward(-dY)
    np.testing.assert_array_equal(Y, kept_Y)
    np.testing.assert_array_equal(dX, kept_dX)
    layer.forward(X_before)
    config = layer.config()
    json.dumps(config)
    twin = type(layer).from_config(config)
    assert twin.config() == config
    shapes = type(layer).param_shapes(config)
    assert {k: (tuple(p.shape), p.dtype.name) for k, p in layer.params.items()} == {
        k: (tuple(s), d) for k, (s, d) in shapes.items()}
    assert repr(layer).startswith(type(layer).__name__)
    quiet = copy.deepcopy(layer)
    quiet.clear()
    with inference_mode():
        quiet.forward(X_before)
    try:
        quiet.backward(dY)
    except ForwardNotCalledError:
        pass
    else:
        raise AssertionError("backward after a forward under inference_mode should refuse")
