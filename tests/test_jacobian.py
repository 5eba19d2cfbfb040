"""Expanded Jacobians, finite differences and check_gradients: the structure the lecture derives,
result shapes, catching a wrong user-written backward, leaving the caller's objects alone, the
size limit and bad arguments."""

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
    CategoricalCrossEntropy,
    JacnetTypeError,
    JacnetValueError,
    JacobianTooLargeError,
    Layer,
    LeakyReLU,
    Loss,
    MeanSquaredError,
    ReLU,
    ShapeError,
    Sigmoid,
    SigmoidBinaryCrossEntropy,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
    check_gradients,
    expanded_jacobian,
    numerical_jacobian,
)

sizes = st.integers(min_value=1, max_value=5)
elements = st.floats(-3, 3, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def arrays(shape: tuple[int, ...]) -> st.SearchStrategy[Any]:
    return hnp.arrays(np.float64, shape, elements=elements)


# Structure of the expanded Jacobians -------------------------------------------------------------


@given(data=st.data())
def test_affine_jacobian_structure(data: st.DataObject) -> None:
    n, n_in, n_out = data.draw(sizes), data.draw(sizes), data.draw(sizes)
    X = data.draw(arrays((n, n_in)), label="X")
    layer = Affine(n_in, n_out, dtype=np.float64, rng=data.draw(st.integers(0, 2**32 - 1)))
    layer.params["b"][...] = data.draw(arrays((n_out,)), label="b")
    W = layer.params["W"]

    # wrt X: ∂z_ij/∂x_kl = δ_ik w_lj, block diagonal with Wᵀ blocks.
    JX = expanded_jacobian(layer, X, wrt="X")
    assert JX.shape == (n, n_out, n, n_in)
    for i in range(n):
        for k in range(n):
            if i == k:
                np.testing.assert_array_equal(JX[i, :, i, :], W.T)
            else:
                assert not JX[i, :, k, :].any()

    # wrt W: ∂z_ij/∂w_kl = x_ik δ_jl.
    JW = expanded_jacobian(layer, X, wrt="W")
    assert JW.shape == (n, n_out, n_in, n_out)
    for i, j, k, m in np.ndindex(JW.shape):
        assert JW[i, j, k, m] == (X[i, k] if j == m else 0.0)

    # wrt b: ∂z_ij/∂b_l = δ_jl, one identity per sample.
    Jb = expanded_jacobian(layer, X, wrt="b")
    assert Jb.shape == (n, n_out, n_out)
    for i in range(n):
        np.testing.assert_array_equal(Jb[i], np.eye(n_out))


@given(data=st.data())
def test_softmax_jacobian_structure(data: st.DataObject) -> None:
    n, k = data.draw(sizes), data.draw(sizes)
    L = data.draw(arrays((n, k)), label="L")
    J = expanded_jacobian(Softmax(), L)
    assert J.shape == (n, k, n, k)
    Y = Softmax().forward(L)
    for i in range(n):
        for m in range(n):
            if i != m:
                assert not J[i, :, m, :].any()  # samples do not interact
        block = J[i, :, i, :]
        # ŷ_a(1 - ŷ_a) on the diagonal, -ŷ_a ŷ_b off it
        np.testing.assert_allclose(block, np.diag(Y[i]) - np.outer(Y[i], Y[i]), rtol=1e-12,
                                   atol=1e-15)
        np.testing.assert_allclose(block.sum(axis=1), 0.0, atol=1e-14)  # rows sum to 0
        if k > 1:
            assert np.all(block != 0)  # dense: every output depends on every logit of its row


def test_softmax_jacobian_block_worked_example() -> None:
    # ŷ = [1/6, 1/3, 1/2]: diagonal ŷ(1 - ŷ) = 5/36, 8/36, 9/36; off-diagonal -ŷ_a ŷ_b =
    # -2/36 (1,2), -3/36 (1,3), -6/36 (2,3).
    # ŷ = [1/4, 1/4, 1/2]: diagonal 3/16, 3/16, 4/16; off-diagonal -1/16, -2/16, -2/16.
    L = np.log(np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 2.0]]))
    J = expanded_jacobian(Softmax(), L)
    expected_0 = np.array([[5, -2, -3], [-2, 8, -6], [-3, -6, 9]]) / 36
    expected_1 = np.array([[3, -1, -2], [-1, 3, -2], [-2, -2, 4]]) / 16
    np.testing.assert_allclose(J[0, :, 0, :], expected_0, rtol=1e-12)
    np.testing.assert_allclose(J[1, :, 1, :], expected_1, rtol=1e-12)
    np.testing.assert_array_equal(J[0, :, 1, :], np.zeros((3, 3)))
    np.testing.assert_array_equal(J[1, :, 0, :], np.zeros((3, 3)))


@pytest.mark.parametrize("factory", [ReLU, LeakyReLU, Sigmoid, Tanh])
def test_elementwise_jacobians_are_diagonal(factory: Callable[[], Layer]) -> None:
    X = np.array([[-1.5, 0.5, 2.0], [0.25, -0.75, 1.0]])
    J = expanded_jacobian(factory(), X)
    assert J.shape == (2, 3, 2, 3)
    d = np.array([[J[i, j, i, j] for j in range(3)] for i in range(2)])
    flat = J.reshape(6, 6)
    np.testing.assert_array_equal(flat - np.diag(np.diag(flat)), np.zeros((6, 6)))
    expected = {
        ReLU: (X > 0).astype(float),
        LeakyReLU: np.where(X > 0, 1.0, 0.01),
        Sigmoid: np.exp(-X) / (1 + np.exp(-X)) ** 2,
        Tanh: 1 / np.cosh(X) ** 2,
    }[factory]
    np.testing.assert_allclose(d, expected, rtol=1e-12)


SHAPE_CASES: list[tuple[str, Callable[[], Any], str, tuple[int, ...]]] = [
    ("Affine-X", lambda: Affine(3, 2, rng=0, dtype=np.float64), "X", (4, 2, 4, 3)),
    ("Affine-W", lambda: Affine(3, 2, rng=0, dtype=np.float64), "W", (4, 2, 3, 2)),
    ("Affine-b", lambda: Affine(3, 2, rng=0, dtype=np.float64), "b", (4, 2, 2)),
    ("ReLU", ReLU, "X", (4, 3, 4, 3)),
    ("LeakyReLU", LeakyReLU, "X", (4, 3, 4, 3)),
    ("Sigmoid", Sigmoid, "X", (4, 3, 4, 3)),
    ("Tanh", Tanh, "X", (4, 3, 4, 3)),
    ("Softmax", Softmax, "X", (4, 3, 4, 3)),
    ("MSE", MeanSquaredError, "X", (4, 3)),
    ("SoftmaxCE", SoftmaxCrossEntropy, "X", (4, 3)),
    ("SigmoidBCE", SigmoidBinaryCrossEntropy, "X", (4, 3)),
]


@pytest.mark.parametrize(
    ("factory", "wrt", "shape"), [c[1:] for c in SHAPE_CASES], ids=[c[0] for c in SHAPE_CASES]
)
def test_result_shapes(
    factory: Callable[[], Any], wrt: str, shape: tuple[int, ...], rng: np.random.Generator
) -> None:
    X = rng.standard_normal((4, 3))
    module = factory()
    target = None
    if isinstance(module, Loss):
        target = np.array([0, 2, 1, 1]) if isinstance(module, SoftmaxCrossEntropy) else (
            rng.uniform(0, 1, (4, 3)))
    J = expanded_jacobian(module, X, wrt=wrt, target=target)
    N = numerical_jacobian(module, X, wrt=wrt, target=target)
    assert J.shape == shape and N.shape == shape
    assert N.dtype == np.float64
    np.testing.assert_allclose(J, N, rtol=1e-5, atol=1e-7)


# A user's own layer, written wrong ---------------------------------------------------------------


class StudentLinear(Layer):
    """``Z = X W`` with a square ``W``, written the way a student might, with no jacobian method.

    ``mistake`` plants a bug: ``"dW transpose"`` returns ``(Xᵀ dZ)ᵀ`` (right shape, wrong
    entries), ``"dX factor 2"`` doubles dX.
    """

    def __init__(self, W: Any, mistake: str | None = None) -> None:
        super().__init__()
        self.params = {"W": np.array(W, dtype=np.float64)}
        self.grads = {"W": np.zeros_like(self.params["W"])}
        self.mistake = mistake
        self._X: Any = None

    def forward(self, X: Any) -> Any:
        self._X = np.asarray(X, dtype=np.float64)
        return self._X @ self.params["W"]

    def backward(self, dZ: Any) -> Any:
        dZ = np.asarray(dZ, dtype=np.float64)
        dW = self._X.T @ dZ
        dX = dZ @ self.params["W"].T
        if self.mistake == "dW transpose":
            dW = dZ.T @ self._X
        if self.mistake == "dX factor 2":
            dX = 2 * dX
        self.grads["W"] = dW
        return dX


class StudentLinearWithJacobian(StudentLinear):
    """The same layer with its per-entry Jacobian, as the built-ins provide it."""

    def jacobian(self, X: Any, wrt: str = "X") -> Any:
        X = np.asarray(X, dtype=np.float64)
        W = self.params["W"]
        N, (n_in, n_out) = X.shape[0], W.shape
        if wrt == "X":  # ∂z_ij/∂x_kl = δ_ik w_lj
            J = np.zeros((N, n_out, N, n_in))
            for i, j, k, m in np.ndindex(J.shape):
                J[i, j, k, m] = W[m, j] if i == k else 0.0
        else:  # ∂z_ij/∂w_kl = x_ik δ_jl
            J = np.zeros((N, n_out, n_in, n_out))
            for i, j, k, m in np.ndindex(J.shape):
                J[i, j, k, m] = X[i, k] if j == m else 0.0
        return J


@pytest.fixture
def student_data(rng: np.random.Generator) -> tuple[Any, Any, Any]:
    W = rng.standard_normal((2, 2))
    X = rng.standard_normal((3, 2))
    dZ = rng.standard_normal((3, 2))
    assert not np.allclose(X.T @ dZ, (X.T @ dZ).T, atol=1e-3)  # the planted bug is visible
    return W, X, dZ


@pytest.mark.parametrize("cls", [StudentLinear, StudentLinearWithJacobian])
def test_a_correct_custom_layer_passes(cls: type[StudentLinear], student_data: Any) -> None:
    W, X, dZ = student_data
    report = check_gradients(cls(W), X, dY=dZ)
    assert report.ok and bool(report), str(report)
    assert [c.quantity for c in report.checks] == ["dX", "dW"]
    expected_jacobian_ok = None if cls is StudentLinear else True
    assert all(c.jacobian_ok is expected_jacobian_ok for c in report.checks)
    assert all(c.numerical_ok for c in report.checks)
    assert "all gradients agree" in str(report)


@pytest.mark.parametrize("cls", [StudentLinear, StudentLinearWithJacobian])
def test_a_missing_transpose_in_dW_is_caught(cls: type[StudentLinear], student_data: Any) -> None:
    W, X, dZ = student_data
    report = check_gradients(cls(W, mistake="dW transpose"), X, dY=dZ)
    assert not report.ok and not bool(report)
    assert [c.quantity for c in report.failures] == ["dW"]
    failure = report.failures[0]
    assert failure.module == cls.__name__ and failure.shape == (2, 2)
    assert failure.numerical_ok is False
    assert failure.jacobian_ok is (None if cls is StudentLinear else False)
    # The worst entry, and the two values there: the wrong one and the right one.
    right, wrong = X.T @ dZ, dZ.T @ X
    idx = failure.worst_index
    assert failure.backward_value == pytest.approx(wrong[idx])
    assert failure.reference_value == pytest.approx(right[idx], rel=1e-5, abs=1e-7)
    assert failure.max_abs_error == pytest.approx(np.abs(right - wrong).max(), rel=1e-5)
    text = str(report)
    assert f"{cls.__name__} dW is wrong" in text
    assert "FAIL" in text and "1 gradient(s) wrong" in text
    assert str(idx) in text
    dX_check = next(c for c in report.checks if c.quantity == "dX")
    assert dX_check.ok


@pytest.mark.parametrize("cls", [StudentLinear, StudentLinearWithJacobian])
def test_a_factor_two_on_dX_is_caught(cls: type[StudentLinear], student_data: Any) -> None:
    W, X, dZ = student_data
    report = check_gradients(cls(W, mistake="dX factor 2"), X, dY=dZ)
    assert not report.ok
    assert [c.quantity for c in report.failures] == ["dX"]
    failure = report.failures[0]
    assert failure.backward_value == pytest.approx(2 * failure.reference_value, rel=1e-5)
    assert failure.max_rel_error == pytest.approx(0.5, rel=1e-4)  # |2a - a| / |2a|
    assert f"{cls.__name__} dX is wrong" in str(report)


def test_a_layer_without_jacobian_is_checked_against_finite_differences_only(
    student_data: Any,
) -> None:
    W, X, dZ = student_data
    report = check_gradients(StudentLinear(W), X, dY=dZ)
    assert all(c.jacobian_ok is None for c in report.checks)
    text = str(report)
    assert "n/a" in text and "does not provide jacobian" in text
    with pytest.raises(NotImplementedError):
        expanded_jacobian(StudentLinear(W), X)


def test_check_gradients_catches_the_mistake_with_a_random_dY(student_data: Any) -> None:
    W, X, _ = student_data
    assert not check_gradients(StudentLinear(W, mistake="dW transpose"), X).ok
    assert not check_gradients(StudentLinear(W, mistake="dX factor 2"), X, rng=3).ok


class MSEWithoutTheTwo(MeanSquaredError):  # noqa: N818 - a loss, not an exception
    """A user's MSE whose backward forgot the factor 2 of ``-2/N (Y - Ŷ)``."""

    def _gradient(self, P: Any, T: Any) -> Any:
        return -(T - P) / P.shape[0]


class MyAbsoluteError(Loss):
    """A correct user-written loss with no per-entry Jacobian: ``1/N Σ |Ŷ - Y|``."""

    def _value(self, P: Any, T: Any) -> float:
        return float(np.abs(P - T).sum()) / P.shape[0]

    def _gradient(self, P: Any, T: Any) -> Any:
        return np.sign(P - T) / P.shape[0]


def test_a_wrong_custom_loss_is_caught(rng: np.random.Generator) -> None:
    P, T = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    report = check_gradients(MSEWithoutTheTwo(), P, target=T)
    assert not report.ok
    failure = report.failures[0]
    assert failure.quantity == "dŶ" and failure.module == "MSEWithoutTheTwo"
    assert failure.jacobian_ok is False and failure.numerical_ok is False
    assert "MSEWithoutTheTwo dŶ is wrong" in str(report)
    good = check_gradients(MyAbsoluteError(), P, target=T)
    assert good.ok, str(good)
    assert good.checks[0].jacobian_ok is None


def test_check_gradients_under_a_loss(rng: np.random.Generator) -> None:
    layer = Affine(3, 2, dtype=np.float64, rng=4)
    X, T = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    report = check_gradients(layer, X, loss=MeanSquaredError(), target=T)
    assert report.ok, str(report)
    assert [c.quantity for c in report.checks] == ["dX", "dW", "db"]
    # ∂J/∂W through the loss, built from the two expanded Jacobians.
    Z = X @ layer.params["W"]
    dW = X.T @ (-2 / 5 * (T - Z))
    JW = expanded_jacobian(layer, X, wrt="W", loss=MeanSquaredError(), target=T)
    np.testing.assert_allclose(JW, dW, rtol=1e-10, atol=1e-12)


def test_float32_module_is_checked_on_a_float64_copy(rng: np.random.Generator) -> None:
    layer = Affine(3, 2, rng=0)
    report = check_gradients(layer, rng.standard_normal((4, 3)))
    assert report.ok, str(report)
    assert report.dtype == "float64" and report.rtol == 1e-5 and report.eps == 1e-6
    assert "float64 copy of the float32 Affine" in str(report)
    assert layer.params["W"].dtype == np.float32  # the caller's layer is left as it was


# check_gradients and friends leave the caller's objects alone ---------------------------------


def test_nothing_the_caller_passed_is_modified(rng: np.random.Generator) -> None:
    layer = Affine(3, 2, dtype=np.float64, rng=0)
    X1, X2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    dZ, T = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    layer.forward(X1)
    layer.backward(dZ)
    params = {k: v.copy() for k, v in layer.params.items()}
    grads = {k: v.copy() for k, v in layer.grads.items()}
    X2_before = X2.copy()
    for wrt in ("X", "W", "b"):
        numerical_jacobian(layer, X2, wrt=wrt)
        expanded_jacobian(layer, X2, wrt=wrt)
        expanded_jacobian(layer, X2, wrt=wrt, loss=MeanSquaredError(), target=T)
    check_gradients(layer, X2)
    check_gradients(layer, X2, loss=MeanSquaredError(), target=T)
    np.testing.assert_array_equal(X2, X2_before)
    for k in params:
        assert layer.params[k].tobytes() == params[k].tobytes()
        assert layer.grads[k].tobytes() == grads[k].tobytes()
    # The forward cache still holds X1: backward gives the same gradients as before.
    layer.backward(dZ)
    for k in grads:
        np.testing.assert_array_equal(layer.grads[k], grads[k])


def test_loss_cache_is_left_alone(rng: np.random.Generator) -> None:
    loss = SoftmaxCrossEntropy()
    L1, L2 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    loss.forward(L1, [0, 1, 2])
    before = loss.backward()
    numerical_jacobian(loss, L2, target=[3, 3, 3])
    expanded_jacobian(loss, L2, target=[3, 3, 3])
    check_gradients(loss, L2, target=[3, 3, 3])
    np.testing.assert_array_equal(loss.backward(), before)


def test_check_gradients_is_reproducible(rng: np.random.Generator) -> None:
    X = rng.standard_normal((4, 3))
    layer = Affine(3, 2, dtype=np.float64, rng=0)
    first, second = check_gradients(layer, X), check_gradients(layer, X)  # rng=None: seed 0
    assert [c.max_abs_error for c in first.checks] == [c.max_abs_error for c in second.checks]
    assert str(first) == str(second)
    seeded = [check_gradients(layer, X, rng=9) for _ in range(2)]
    assert str(seeded[0]) == str(seeded[1])


def test_exact_agreement_passes_with_zero_atol() -> None:
    # ReLU's gradient is exactly 0 for negative inputs in all three computations.
    X = np.array([[-1.0, 2.0], [3.0, -0.5]])
    report = check_gradients(ReLU(), X, atol=0)
    assert report.ok, str(report)


def test_float32_finite_differences_are_measured_in_float64(rng: np.random.Generator) -> None:
    layer = Affine(3, 2, rng=0)  # float32
    X = rng.standard_normal((2, 3))
    N = numerical_jacobian(layer, X, wrt="W", eps=1e-2)
    assert N.dtype == np.float64
    np.testing.assert_allclose(N, expanded_jacobian(layer, X, wrt="W"), rtol=1e-3, atol=1e-3)


# Size limit and bad arguments ----------------------------------------------------------------------


def test_jacobian_over_the_size_limit_is_refused() -> None:
    layer = Affine(1000, 1000, init="zeros")
    X = np.zeros((4, 1000))
    # (4·1000) · (4·1000) = 16,000,000 entries > the default limit of 10,000,000
    for function in (expanded_jacobian, numerical_jacobian):
        with pytest.raises(JacobianTooLargeError) as info:
            function(layer, X)
        assert isinstance(info.value, ValueError)
        message = str(info.value)
        assert "16,000,000" in message and "MiB" in message and "max_entries" in message


def test_max_entries_is_honoured(rng: np.random.Generator) -> None:
    layer = Affine(2, 3, dtype=np.float64, rng=0)
    X = rng.standard_normal((2, 2))  # wrt X: 6 outputs x 4 inputs = 24 entries
    with pytest.raises(JacobianTooLargeError, match="24"):
        expanded_jacobian(layer, X, max_entries=23)
    with pytest.raises(JacobianTooLargeError, match="24"):
        numerical_jacobian(layer, X, max_entries=23)
    with pytest.raises(JacobianTooLargeError, match="24"):
        check_gradients(layer, X, max_entries=23)
    assert expanded_jacobian(layer, X, max_entries=24).shape == (2, 3, 2, 2)


X22 = np.ones((2, 2))

BAD_ARGUMENTS: list[Case] = [
    ("wrt-unknown", lambda: expanded_jacobian(Affine(2, 2), X22, wrt="V"), JacnetValueError,
     ValueError, "'V'"),
    ("wrt-unknown-numerical", lambda: numerical_jacobian(Affine(2, 2), X22, wrt="bias"),
     JacnetValueError, ValueError, "wrt"),
    ("wrt-param-of-parameterless", lambda: expanded_jacobian(Sigmoid(), X22, wrt="W"),
     JacnetValueError, ValueError, "wrt"),
    ("wrt-layer-method", lambda: Affine(2, 2).jacobian(X22, wrt="V"), JacnetValueError,
     ValueError, "wrt"),
    ("wrt-on-a-loss", lambda: expanded_jacobian(MeanSquaredError(), X22, wrt="W", target=X22),
     JacnetValueError, ValueError, "wrt"),
    ("loss-without-target", lambda: expanded_jacobian(MeanSquaredError(), X22), JacnetValueError,
     ValueError, "target"),
    ("check-loss-without-target", lambda: check_gradients(CategoricalCrossEntropy(), X22 / 2),
     JacnetValueError, ValueError, "target"),
    ("not-a-module", lambda: check_gradients(lambda x: x, X22), JacnetTypeError, TypeError,
     "module"),
    ("not-a-module-jacobian", lambda: expanded_jacobian(np.tanh, X22), JacnetTypeError, TypeError,
     "module"),
    ("eps-zero", lambda: numerical_jacobian(Sigmoid(), X22, eps=0.0), JacnetValueError,
     ValueError, "eps"),
    ("dY-shape", lambda: check_gradients(Affine(2, 3), X22, dY=np.ones((2, 2))), ShapeError,
     ValueError, "dY"),
    ("rtol-negative", lambda: check_gradients(Sigmoid(), X22, rtol=-1.0), JacnetValueError,
     ValueError, "rtol"),
    ("X-strings", lambda: check_gradients(Sigmoid(), np.array([["a"]])), JacnetTypeError,
     TypeError, "X"),
    ("X-nan", lambda: numerical_jacobian(Sigmoid(), [[np.nan]]), JacnetValueError, ValueError,
     "X"),
]


test_bad_arguments_raise_a_named_error = named_error_test(BAD_ARGUMENTS)
