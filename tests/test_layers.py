"""Layers: closed-form backward = expanded-Jacobian contraction = finite differences, worked
examples from the lecture, the layer contract (no mutation, no accumulation, grads mirror
params), the dtype policy, initialisers, numerical stability and bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from named_errors import Case, named_error_test

from jacnet import (
    Affine,
    ForwardNotCalledError,
    JacnetTypeError,
    JacnetValueError,
    Layer,
    LeakyReLU,
    NonFiniteError,
    ReLU,
    Sequential,
    ShapeError,
    Sigmoid,
    Softmax,
    Tanh,
    check_gradients,
    expanded_jacobian,
    numerical_jacobian,
)

# Backward against the contracted expanded Jacobian: the same sums in another order, so only
# rounding separates them.
EXACT = {"rtol": 1e-10, "atol": 1e-12}
# Anything against central finite differences (step 1e-6 in float64): truncation plus rounding
# error of f/eps, a few 1e-8 on the values drawn here; a wrong gradient is off by O(0.1).
FD = {"rtol": 1e-5, "atol": 1e-6}

sizes = st.integers(min_value=1, max_value=5)


def values(lo: float = -2.0, hi: float = 2.0) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def arrays(shape: tuple[int, ...], lo: float = -2.0, hi: float = 2.0) -> st.SearchStrategy[Any]:
    return hnp.arrays(np.float64, shape, elements=values(lo, hi))


@st.composite
def away_from_zero(draw: st.DrawFn, shape: tuple[int, int]) -> Any:
    """Entries with ``1e-3 < |x| <= 2``: ReLU's kink stays out of the finite-difference stencil."""
    magnitude = draw(hnp.arrays(np.float64, shape, elements=st.floats(1e-3, 2.0, exclude_min=True)))
    negative = draw(hnp.arrays(np.bool_, shape))
    return np.where(negative, -magnitude, magnitude)


@st.composite
def affine_cases(draw: st.DrawFn) -> tuple[Any, Any, Any, Any]:
    n, n_in, n_out = draw(sizes), draw(sizes), draw(sizes)
    X = draw(arrays((n, n_in)))
    W = draw(arrays((n_in, n_out)))
    b = draw(arrays((n_out,)))
    dZ = draw(arrays((n, n_out)))
    return X, W, b, dZ


def make_affine(W: Any, b: Any, dtype: Any = np.float64) -> Affine:
    layer = Affine(W.shape[0], W.shape[1], init="zeros", dtype=dtype)
    layer.params["W"][...] = W
    layer.params["b"][...] = b
    return layer


def assert_three_way(
    layer: Layer, X: Any, dY: Any, wrt: str, grad: Any, A_shape: tuple[int, ...]
) -> None:
    """backward's gradient == tensordot(dY, expanded Jacobian) == tensordot(dY, finite diffs)."""
    J = expanded_jacobian(layer, X, wrt=wrt)
    assert J.shape == dY.shape + A_shape
    contracted = np.tensordot(dY, J, axes=dY.ndim)
    numeric = np.tensordot(dY, numerical_jacobian(layer, X, wrt=wrt), axes=dY.ndim)
    assert grad.shape == A_shape
    np.testing.assert_allclose(grad, contracted, **EXACT, err_msg=f"d{wrt}: backward vs Jacobian")
    np.testing.assert_allclose(grad, numeric, **FD, err_msg=f"d{wrt}: backward vs finite diffs")
    np.testing.assert_allclose(contracted, numeric, **FD, err_msg=f"d{wrt}: Jacobian vs finite diffs")


# Three-way agreement over hypothesis-drawn shapes (float64) ---------------------------------


@given(affine_cases())
def test_affine_backward_matches_jacobian_and_finite_differences(case: Any) -> None:
    X, W, b, dZ = case
    layer = make_affine(W, b)
    Z = layer.forward(X)
    np.testing.assert_allclose(Z, X @ W + b, **EXACT)
    dX = layer.backward(dZ)
    # The lecture's closed forms.
    np.testing.assert_allclose(dX, dZ @ W.T, **EXACT)
    np.testing.assert_allclose(layer.grads["W"], X.T @ dZ, **EXACT)
    np.testing.assert_allclose(layer.grads["b"], dZ.sum(axis=0), **EXACT)
    assert_three_way(layer, X, dZ, "X", dX, X.shape)
    assert_three_way(layer, X, dZ, "W", layer.grads["W"], W.shape)
    assert_three_way(layer, X, dZ, "b", layer.grads["b"], b.shape)
    report = check_gradients(layer, X, dY=dZ, rtol=1e-5, atol=1e-6)
    assert report.ok, str(report)
    assert [c.quantity for c in report.checks] == ["dX", "dW", "db"]
    assert all(c.jacobian_ok for c in report.checks)


def _relu(X: Any) -> Any:
    return np.where(X > 0, X, 0.0)


ACTIVATIONS: dict[str, tuple[Callable[[], Layer], Callable[[Any], Any], bool]] = {
    # name: (factory, forward written out independently, input must avoid 0)
    "ReLU": (ReLU, _relu, True),
    "LeakyReLU": (LeakyReLU, lambda X: np.where(X > 0, X, 0.01 * X), True),
    "LeakyReLU(0.3)": (lambda: LeakyReLU(0.3), lambda X: np.where(X > 0, X, 0.3 * X), True),
    "Sigmoid": (Sigmoid, lambda X: 1 / (1 + np.exp(-X)), False),
    "Tanh": (Tanh, np.tanh, False),
    "Softmax": (Softmax, lambda X: np.exp(X) / np.exp(X).sum(axis=1, keepdims=True), False),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@given(data=st.data())
def test_activation_backward_matches_jacobian_and_finite_differences(
    name: str, data: st.DataObject
) -> None:
    factory, reference, avoid_zero = ACTIVATIONS[name]
    shape = (data.draw(sizes, label="N"), data.draw(sizes, label="K"))
    X = data.draw(away_from_zero(shape) if avoid_zero else arrays(shape, -3.0, 3.0), label="X")
    dY = data.draw(arrays(shape), label="dY")
    layer = factory()
    Y = layer.forward(X)
    assert Y.dtype == np.float64
    np.testing.assert_allclose(Y, reference(X), rtol=1e-12, atol=1e-15)
    dX = layer.backward(dY)
    assert_three_way(layer, X, dY, "X", dX, X.shape)
    report = check_gradients(layer, X, dY=dY, rtol=1e-5, atol=1e-6)
    assert report.ok, str(report)
    assert [c.quantity for c in report.checks] == ["dX"]


def test_check_gradients_passes_with_default_tolerances(rng: np.random.Generator) -> None:
    X = rng.standard_normal((4, 3))
    for layer in (Affine(3, 2, rng=1, dtype=np.float64), Affine(3, 2, rng=1), Sigmoid(), Tanh(),
                  Softmax(), LeakyReLU(0.2)):
        report = check_gradients(layer, X)
        assert report.ok, str(report)


# Worked examples, computed by hand -----------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_affine_worked_example(dtype: Any) -> None:
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    W = np.array([[0.5, -1.0], [2.0, 1.0]])
    b = np.array([1.0, -2.0])
    layer = make_affine(W, b, dtype=dtype)
    # Z = X W + b: [1·0.5 + 2·2, 1·(-1) + 2·1] + b = [5.5, -1]; [3·0.5 + 4·2, -3 + 4] + b = [10.5, -1]
    np.testing.assert_array_equal(layer.forward(X), [[5.5, -1.0], [10.5, -1.0]])
    dZ = np.array([[1.0, 0.0], [-1.0, 2.0]])
    dX = layer.backward(dZ)
    # dX = dZ Wᵀ, Wᵀ = [[0.5, 2], [-1, 1]]: [0.5, 2]; [-0.5 - 2, -2 + 2] = [-2.5, 0]
    np.testing.assert_array_equal(dX, [[0.5, 2.0], [-2.5, 0.0]])
    # dW = Xᵀ dZ, Xᵀ = [[1, 3], [2, 4]]: [1 - 3, 0 + 6] = [-2, 6]; [2 - 4, 0 + 8] = [-2, 8]
    np.testing.assert_array_equal(layer.grads["W"], [[-2.0, 6.0], [-2.0, 8.0]])
    # db = column sums of dZ
    np.testing.assert_array_equal(layer.grads["b"], [0.0, 2.0])
    assert dX.dtype == dtype and layer.grads["W"].dtype == dtype


def test_softmax_worked_example() -> None:
    # e^L ∝ [1, 2, 3] (any shift) gives [1/6, 2/6, 3/6]; equal logits give equal shares.
    L = np.log(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])) + np.array([[100.0], [-7.0]])
    Y = Softmax().forward(L)
    np.testing.assert_allclose(Y, [[1 / 6, 1 / 3, 1 / 2], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-12)
    # Backward with dŶ = e_1 on the first row: ŷ ⊙ (e_1 - ŷ_1) = [5/36, -2/36, -3/36].
    layer = Softmax()
    layer.forward(L[:1])
    np.testing.assert_allclose(layer.backward([[1.0, 0.0, 0.0]]), [[5 / 36, -2 / 36, -3 / 36]],
                               rtol=1e-12)


def test_elementwise_worked_examples() -> None:
    X = np.array([[-1.0, 0.0, 2.0]])
    relu = ReLU()
    np.testing.assert_array_equal(relu.forward(X), [[0.0, 0.0, 2.0]])
    # The subgradient at 0 is 0.
    np.testing.assert_array_equal(relu.backward([[1.0, 1.0, 1.0]]), [[0.0, 0.0, 1.0]])
    leaky = LeakyReLU(0.1)
    np.testing.assert_allclose(leaky.forward(X), [[-0.1, 0.0, 2.0]], rtol=1e-15)
    np.testing.assert_allclose(leaky.backward([[2.0, 2.0, 2.0]]), [[0.2, 0.2, 2.0]], rtol=1e-15)
    sigmoid = Sigmoid()
    # σ(0) = 1/2, σ(ln 3) = 3/4, σ(-ln 3) = 1/4; σ' = σ(1 - σ) = 1/4, 3/16, 3/16
    np.testing.assert_allclose(sigmoid.forward([[0.0, np.log(3), -np.log(3)]]),
                               [[0.5, 0.75, 0.25]], rtol=1e-15)
    np.testing.assert_allclose(sigmoid.backward([[1.0, 1.0, 2.0]]), [[0.25, 3 / 16, 3 / 8]],
                               rtol=1e-14)
    tanh = Tanh()
    # tanh(ln 2) = (2 - 1/2)/(2 + 1/2) = 3/5; 1 - tanh² = 16/25
    np.testing.assert_allclose(tanh.forward([[np.log(2)]]), [[0.6]], rtol=1e-15)
    np.testing.assert_allclose(tanh.backward([[1.0]]), [[0.64]], rtol=1e-14)


# The layer contract ----------------------------------------------------------------------------

CONTRACT_LAYERS: dict[str, Callable[[], Layer]] = {
    "Affine-float64": lambda: Affine(3, 2, dtype=np.float64, rng=1),
    "Affine-float32": lambda: Affine(3, 2, rng=1),
    "ReLU": ReLU,
    "LeakyReLU": LeakyReLU,
    "Sigmoid": Sigmoid,
    "Tanh": Tanh,
    "Softmax": Softmax,
}


@pytest.fixture(params=list(CONTRACT_LAYERS))
def forwarded(request: pytest.FixtureRequest, rng: np.random.Generator) -> tuple[Layer, Any, Any]:
    """A layer after forward on a (4, 3) batch, with a dY of the output's shape and dtype."""
    layer = CONTRACT_LAYERS[request.param]()
    X = rng.standard_normal((4, 3))
    Y = layer.forward(X)
    dY = rng.standard_normal(Y.shape).astype(Y.dtype)
    return layer, X, dY


def test_backward_does_not_mutate_dY(forwarded: tuple[Layer, Any, Any]) -> None:
    layer, _, dY = forwarded
    before = dY.copy()
    layer.backward(dY)
    np.testing.assert_array_equal(dY, before)
    # A read-only dY is accepted: backward never writes into it.
    dY.setflags(write=False)
    layer.backward(dY)


def test_forward_does_not_mutate_X(rng: np.random.Generator) -> None:
    for factory in CONTRACT_LAYERS.values():
        X = rng.standard_normal((4, 3))
        before = X.copy()
        layer = factory()
        layer.forward(X)
        layer.backward(np.ones_like(layer.forward(X)))
        np.testing.assert_array_equal(X, before)


def test_backward_twice_is_bitwise_identical(forwarded: tuple[Layer, Any, Any]) -> None:
    layer, _, dY = forwarded
    dX1 = layer.backward(dY)
    grads1 = {k: v.copy() for k, v in layer.grads.items()}
    dX2 = layer.backward(dY)
    assert dX1.dtype == dX2.dtype and dX1.tobytes() == dX2.tobytes()
    for k, g in layer.grads.items():
        assert g.dtype == grads1[k].dtype and g.tobytes() == grads1[k].tobytes()


def test_backward_does_not_accumulate(forwarded: tuple[Layer, Any, Any]) -> None:
    layer, _, dY = forwarded
    dX1 = layer.backward(dY)
    grads1 = {k: v.copy() for k, v in layer.grads.items()}
    dX2 = layer.backward(2 * dY)  # every gradient is linear in dY; scaling by 2 is exact
    np.testing.assert_array_equal(dX2, 2 * dX1)
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(g, 2 * grads1[k])


def test_grads_mirror_params(forwarded: tuple[Layer, Any, Any]) -> None:
    layer, _, dY = forwarded
    layer.backward(dY)
    assert set(layer.grads) == set(layer.params)
    for k, p in layer.params.items():
        assert layer.grads[k].shape == p.shape
        assert layer.grads[k].dtype == p.dtype
    if isinstance(layer, Affine):
        assert set(layer.params) == {"W", "b"}
        assert layer.params["W"].shape == (3, 2) and layer.params["b"].shape == (2,)
        assert layer.n_params == 3 * 2 + 2
    else:
        assert layer.params == {} and layer.grads == {}


def test_call_is_forward(forwarded: tuple[Layer, Any, Any]) -> None:
    layer, X, _ = forwarded
    np.testing.assert_array_equal(layer(X), layer.forward(X))


def test_backward_params_fills_the_same_grads(rng: np.random.Generator) -> None:
    layer = Affine(3, 2, dtype=np.float64, rng=2)
    X, dZ = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.forward(X)
    layer.backward(dZ)
    expected = {k: v.copy() for k, v in layer.grads.items()}
    layer.backward_params(np.zeros_like(dZ))
    layer.backward_params(dZ)
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(g, expected[k])


# dtype policy ---------------------------------------------------------------------------------------


def test_affine_float32_default_computes_in_float32(rng: np.random.Generator) -> None:
    layer = Affine(3, 2, rng=0)
    assert layer.params["W"].dtype == np.float32 and layer.params["b"].dtype == np.float32
    X = rng.standard_normal((4, 3))  # float64 input
    Z = layer.forward(X)
    assert Z.dtype == np.float32
    dX = layer.backward(rng.standard_normal((4, 2)))  # float64 upstream
    assert dX.dtype == np.float32
    assert layer.grads["W"].dtype == np.float32 and layer.grads["b"].dtype == np.float32
    assert layer.forward(np.arange(6).reshape(2, 3)).dtype == np.float32  # integer input


def test_affine_float64_end_to_end(rng: np.random.Generator) -> None:
    layer = Affine(3, 2, rng=0, dtype=np.float64)
    assert layer.params["W"].dtype == np.float64 and layer.params["b"].dtype == np.float64
    Z = layer.forward(rng.standard_normal((4, 3)).astype(np.float32))
    assert Z.dtype == np.float64
    dX = layer.backward(rng.standard_normal((4, 2)).astype(np.float32))
    assert dX.dtype == np.float64
    assert layer.grads["W"].dtype == np.float64 and layer.grads["b"].dtype == np.float64


@pytest.mark.parametrize("factory", [ReLU, LeakyReLU, Sigmoid, Tanh, Softmax])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parameterless_layers_keep_the_input_dtype(factory: Callable[[], Layer], dtype: Any) -> None:
    layer = factory()
    Y = layer.forward(np.array([[0.5, -1.0], [2.0, 0.25]], dtype=dtype))
    assert Y.dtype == dtype
    assert layer.backward(np.ones((2, 2), dtype=dtype)).dtype == dtype


@pytest.mark.parametrize("factory", [ReLU, LeakyReLU, Sigmoid, Tanh, Softmax])
def test_parameterless_layers_turn_integers_into_float64(factory: Callable[[], Layer]) -> None:
    layer = factory()
    Y = layer.forward(np.array([[1, -2], [3, 0]], dtype=np.int32))
    assert Y.dtype == np.float64
    assert layer.backward(np.ones((2, 2), dtype=np.int64)).dtype == np.float64
    assert factory().forward([[1, 2]]).dtype == np.float64  # nested lists too


# Initialisers ------------------------------------------------------------------------------------


def test_he_init_statistics() -> None:
    n_in, n_out = 400, 300
    W = Affine(n_in, n_out, init="he", rng=0, dtype=np.float64).params["W"]
    std = np.sqrt(2.0 / n_in)
    assert abs(W.mean()) < 0.02 * std
    assert W.std() == pytest.approx(std, rel=0.02)
    # Normal, not uniform: about 4.6% of draws lie beyond 2 standard deviations.
    assert np.mean(np.abs(W) > 2 * std) == pytest.approx(0.0455, abs=0.005)


def test_glorot_init_statistics() -> None:
    n_in, n_out = 400, 300
    W = Affine(n_in, n_out, init="glorot", rng=0, dtype=np.float64).params["W"]
    limit = np.sqrt(6.0 / (n_in + n_out))
    assert np.abs(W).max() <= limit
    assert W.min() < -0.99 * limit and W.max() > 0.99 * limit  # it fills U(-limit, limit)
    assert abs(W.mean()) < 0.02 * limit
    assert W.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)


@pytest.mark.parametrize("init", ["he", "glorot", "zeros"])
def test_bias_starts_at_zero(init: str) -> None:
    layer = Affine(5, 4, init=init, rng=3)
    np.testing.assert_array_equal(layer.params["b"], np.zeros(4))
    if init == "zeros":
        np.testing.assert_array_equal(layer.params["W"], np.zeros((5, 4)))
    else:
        assert np.count_nonzero(layer.params["W"]) == 20


@pytest.mark.parametrize("init", ["he", "glorot"])
def test_init_is_reproducible_from_the_seed(init: str) -> None:
    a = Affine(6, 5, init=init, rng=7).params["W"]
    b = Affine(6, 5, init=init, rng=7).params["W"]
    c = Affine(6, 5, init=init, rng=np.random.default_rng(7)).params["W"]
    d = Affine(6, 5, init=init, rng=8).params["W"]
    assert a.tobytes() == b.tobytes() == c.tobytes()
    assert not np.array_equal(a, d)
    # A shared Generator is advanced, so two layers drawn from it differ.
    shared = np.random.default_rng(7)
    first = Affine(6, 5, init=init, rng=shared).params["W"]
    second = Affine(6, 5, init=init, rng=shared).params["W"]
    np.testing.assert_array_equal(first, a)
    assert not np.array_equal(first, second)


def _global_state() -> tuple[Any, ...]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, keys.tobytes(), pos, has_gauss, cached


def test_global_numpy_random_state_is_untouched() -> None:
    np.random.seed(12345)
    before = _global_state()
    X = np.random.default_rng(0).standard_normal((3, 4))
    for init in ("he", "glorot", "zeros"):
        layer = Affine(4, 2, init=init)  # rng=None: a fresh Generator, never np.random.*
        Affine(4, 2, init=init, rng=5)
        layer.forward(X)
        layer.backward(np.ones((3, 2)))
    check_gradients(Affine(4, 2, dtype=np.float64), X)  # random dY, rng=None
    check_gradients(Sigmoid(), X, rng=3)
    assert _global_state() == before


# Stability ------------------------------------------------------------------------------------------


def test_sigmoid_and_tanh_at_plus_minus_800_are_finite() -> None:
    X = np.array([[800.0, -800.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        sigmoid = Sigmoid()
        Y = sigmoid.forward(X)
        dX = sigmoid.backward(np.ones_like(X))
        tanh = Tanh()
        T = tanh.forward(X)
        dT = tanh.backward(np.ones_like(X))
    np.testing.assert_array_equal(Y, [[1.0, 0.0, 0.5]])
    np.testing.assert_array_equal(dX, [[0.0, 0.0, 0.25]])
    np.testing.assert_array_equal(T, [[1.0, -1.0, 0.0]])
    assert np.all(np.isfinite(dT))
    Y32 = Sigmoid().forward(X.astype(np.float32))
    np.testing.assert_array_equal(Y32, np.array([[1.0, 0.0, 0.5]], dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_of_huge_logits_is_finite(dtype: Any) -> None:
    L = np.array([[1000.0, 0.0, -1000.0], [1e30, 1e30, -1e30], [-5e3, -5e3, -5e3]], dtype=dtype)
    layer = Softmax()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        Y = layer.forward(L)
        dL = layer.backward(np.ones_like(L))
        J = expanded_jacobian(Softmax(), L)
    np.testing.assert_allclose(Y, [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    assert np.all(np.isfinite(dL)) and np.all(np.isfinite(J))
    np.testing.assert_allclose(Y.sum(axis=1), 1.0, rtol=1e-6)


# Bad input ------------------------------------------------------------------------------------------


def after_forward(layer: Layer, X: Any) -> Layer:
    layer.forward(X)
    return layer


X23 = np.ones((2, 3))

BAD_LAYER_INPUT: list[Case] = [
    # (id, call, jacnet class, builtin base, text the message must contain)
    ("affine-1d", lambda: Affine(3, 4).forward(np.ones(3)), ShapeError, ValueError, "X"),
    ("affine-3d", lambda: Affine(3, 4).forward(np.ones((2, 3, 1))), ShapeError, ValueError, "X"),
    ("affine-features", lambda: Affine(3, 4).forward(np.ones((5, 2))), ShapeError, ValueError,
     "(5, 2)"),
    ("relu-0d", lambda: ReLU().forward(np.float64(3.0)), ShapeError, ValueError, "X"),
    ("softmax-1d", lambda: Softmax().forward(np.ones(3)), ShapeError, ValueError, "X"),
    ("relu-scalar", lambda: ReLU().forward(1.0), ShapeError, ValueError, "X"),
    ("affine-empty", lambda: Affine(3, 4).forward(np.ones((0, 3))), ShapeError, ValueError, "X"),
    ("affine-dY", lambda: after_forward(Affine(3, 4), X23).backward(np.ones((2, 3))), ShapeError,
     ValueError, "dY"),
    ("relu-dY", lambda: after_forward(ReLU(), X23).backward(np.ones((3, 2))), ShapeError,
     ValueError, "dY"),
    ("softmax-dY", lambda: after_forward(Softmax(), X23).backward(np.ones(6)), ShapeError,
     ValueError, "dY"),
    ("sigmoid-dY-nan", lambda: after_forward(Sigmoid(), X23).backward(np.full((2, 3), np.nan)),
     NonFiniteError, ValueError, "dY"),
    ("affine-nan", lambda: Affine(3, 4).forward([[1.0, np.nan, 0.0]]), NonFiniteError, ValueError,
     "X"),
    ("tanh-inf", lambda: Tanh().forward([[1.0, np.inf]]), NonFiniteError, ValueError, "X"),
    ("relu-minus-inf", lambda: ReLU().forward([[-np.inf]]), NonFiniteError, ValueError, "X"),
    ("affine-strings", lambda: Affine(2, 1).forward(np.array([["a", "b"]])), JacnetTypeError,
     TypeError, "X"),
    ("relu-str", lambda: ReLU().forward("1.0"), JacnetTypeError, TypeError, "X"),
    ("relu-object", lambda: ReLU().forward(np.array([[1.0, None]], dtype=object)),
     JacnetTypeError, TypeError, "X"),
    ("sigmoid-complex", lambda: Sigmoid().forward(np.ones((2, 2), dtype=complex)),
     JacnetTypeError, TypeError, "X"),
    ("affine-bool", lambda: Affine(2, 1).forward(np.ones((1, 2), dtype=bool)), JacnetTypeError,
     TypeError, "X"),
    ("relu-ragged", lambda: ReLU().forward([[1.0, 2.0], [3.0]]), JacnetTypeError, TypeError, "X"),
    ("affine-dY-strings", lambda: after_forward(Affine(3, 4), X23).backward(
        np.full((2, 4), "x")), JacnetTypeError, TypeError, "dY"),
    ("affine-in-0", lambda: Affine(0, 4), JacnetValueError, ValueError, "in_features"),
    ("affine-out-0", lambda: Affine(3, 0), JacnetValueError, ValueError, "out_features"),
    ("affine-in-negative", lambda: Affine(-2, 4), JacnetValueError, ValueError, "in_features"),
    ("affine-in-float", lambda: Affine(2.5, 4), JacnetTypeError, TypeError, "in_features"),
    ("affine-in-bool", lambda: Affine(True, 4), JacnetTypeError, TypeError, "in_features"),
    ("affine-init", lambda: Affine(3, 4, init="uniform"), JacnetValueError, ValueError, "init"),
    ("affine-int-dtype", lambda: Affine(3, 4, dtype=np.int32), JacnetTypeError, TypeError,
     "dtype"),
    ("affine-bad-dtype", lambda: Affine(3, 4, dtype="not a dtype"), JacnetTypeError, TypeError,
     "dtype"),
    ("affine-rng", lambda: Affine(3, 4, rng="seed"), JacnetTypeError, TypeError, "rng"),
    ("affine-rng-negative", lambda: Affine(3, 4, rng=-1), JacnetValueError, ValueError, "rng"),
    ("leaky-slope-nan", lambda: LeakyReLU(float("nan")), JacnetValueError, ValueError,
     "negative_slope"),
    ("leaky-slope-str", lambda: LeakyReLU("0.1"), JacnetTypeError, TypeError, "negative_slope"),
]


test_bad_layer_input_raises_a_named_error = named_error_test(BAD_LAYER_INPUT)


def test_wrong_feature_count_message_says_what_was_expected() -> None:
    with pytest.raises(ShapeError) as info:
        Affine(3, 4).forward(np.ones((5, 2)))
    message = str(info.value)
    assert "Affine(3, 4)" in message and "X" in message
    assert "(N, 3)" in message and "(5, 2)" in message


@pytest.mark.parametrize("factory", list(CONTRACT_LAYERS.values()), ids=list(CONTRACT_LAYERS))
def test_backward_before_forward(factory: Callable[[], Layer]) -> None:
    layer = factory()
    with pytest.raises(ForwardNotCalledError, match="forward") as info:
        layer.backward(np.ones((2, 2)))
    assert isinstance(info.value, ValueError)
    assert type(layer).__name__ + ".backward" in str(info.value)


def test_failed_forward_keeps_the_previous_cache(rng: np.random.Generator) -> None:
    layer = Affine(3, 2, dtype=np.float64, rng=0)
    X, dZ = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.forward(X)
    expected = layer.backward(dZ)
    with pytest.raises(NonFiniteError):
        layer.forward(np.full((4, 3), np.nan))
    np.testing.assert_array_equal(layer.backward(dZ), expected)
    np.testing.assert_array_equal(layer.grads["W"], X.T @ dZ)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_on_large_inputs_matches_its_formula(dtype: Any) -> None:
    """From 2**18 entries ReLU keeps a bool mask and takes np.maximum; alone and inside a
    network (which hands it its own arrays to write into) it still gives max(x, 0) and
    dY ⊙ [x > 0], and leaves the caller's X as it was."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 4, 128, 260)).astype(dtype)
    X[0, 0, 0, :4] = 0.0  # the subgradient at 0 is 0
    dY = rng.standard_normal(X.shape).astype(dtype)
    before = X.copy()
    layer = ReLU()
    np.testing.assert_array_equal(layer.forward(X), np.where(X > 0, X, 0))
    np.testing.assert_array_equal(layer.backward(dY), np.where(X > 0, dY, 0))
    np.testing.assert_array_equal(X, before)
    net = Sequential([ReLU(), ReLU()])
    np.testing.assert_array_equal(net.forward(X), np.where(X > 0, X, 0))
    np.testing.assert_array_equal(net.backward(dY), np.where(X > 0, dY, 0))
    np.testing.assert_array_equal(X, before)
