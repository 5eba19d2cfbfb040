"""Losses: value and gradient against the lecture's formulas, the per-entry expanded Jacobian and
finite differences; worked examples; fused losses against their unfused chains; stability at
saturation; the clipping policy; bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from named_errors import Case, named_error_test

from jacnet import (
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    ForwardNotCalledError,
    JacnetTypeError,
    JacnetValueError,
    Loss,
    MeanSquaredError,
    NonFiniteError,
    ShapeError,
    Sigmoid,
    SigmoidBinaryCrossEntropy,
    Softmax,
    SoftmaxCrossEntropy,
    check_gradients,
    expanded_jacobian,
    numerical_jacobian,
)

# The lecture's closed form and the per-entry Jacobian against backward: rounding only.
EXACT = {"rtol": 1e-10, "atol": 1e-12}
# Against central finite differences (step 1e-6, float64): a few 1e-9 here.
FD = {"rtol": 1e-5, "atol": 1e-7}

sizes = st.integers(min_value=1, max_value=5)


def values(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def arrays(shape: tuple[int, ...], lo: float, hi: float) -> st.SearchStrategy[Any]:
    return hnp.arrays(np.float64, shape, elements=values(lo, hi))


def labels(n: int, k: int) -> st.SearchStrategy[Any]:
    return hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1))


def one_hot(y: Any, k: int) -> Any:
    return np.eye(k)[y]


def sigmoid(Z: Any) -> Any:
    return 1 / (1 + np.exp(-Z))


def softmax(L: Any) -> Any:
    E = np.exp(L - L.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def assert_loss_three_way(
    loss: Loss, pred: Any, target: Any, value: float, gradient: Any
) -> None:
    """forward == the written-out value; backward == the lecture's gradient == the per-entry
    expanded Jacobian == finite differences; check_gradients agrees."""
    got = loss.forward(pred, target)
    assert isinstance(got, float)
    assert got == pytest.approx(value, rel=1e-10, abs=1e-12)
    dpred = loss.backward()
    assert dpred.shape == pred.shape
    np.testing.assert_allclose(dpred, gradient, **EXACT, err_msg="backward vs lecture formula")
    jac = expanded_jacobian(loss, pred, target=target)
    assert jac.shape == pred.shape
    np.testing.assert_allclose(dpred, jac, **EXACT, err_msg="backward vs expanded Jacobian")
    numeric = numerical_jacobian(loss, pred, target=target)
    assert numeric.shape == pred.shape
    np.testing.assert_allclose(dpred, numeric, **FD, err_msg="backward vs finite differences")
    report = check_gradients(loss, pred, target=target)
    assert report.ok, str(report)
    assert [c.quantity for c in report.checks] == ["dŶ"]
    assert report.checks[0].jacobian_ok is True


# Three-way agreement over hypothesis-drawn shapes (float64) ---------------------------------


@given(data=st.data())
def test_mse(data: st.DataObject) -> None:
    n, k = data.draw(sizes, label="N"), data.draw(sizes, label="K")
    P = data.draw(arrays((n, k), -3, 3), label="pred")
    Y = data.draw(arrays((n, k), -3, 3), label="target")
    value = np.sum((Y - P) ** 2) / n  # 1/N Σᵢ Σₖ
    assert_loss_three_way(MeanSquaredError(), P, Y, value, -2 / n * (Y - P))


@pytest.mark.parametrize("layout", ["(N,K)", "(N,1)", "(N,)"])
@given(data=st.data())
def test_bce(layout: str, data: st.DataObject) -> None:
    n = data.draw(sizes, label="N")
    k = data.draw(sizes, label="K") if layout == "(N,K)" else 1
    P = data.draw(arrays((n, k), 0.02, 0.98), label="pred")
    Y = data.draw(arrays((n, k), 0.0, 1.0), label="target")
    value = -np.sum(Y * np.log(P) + (1 - Y) * np.log(1 - P)) / n
    gradient = (P - Y) / (P * (1 - P)) / n
    target = Y.ravel() if layout == "(N,)" else Y
    assert_loss_three_way(BinaryCrossEntropy(), P, target, value, gradient)


@pytest.mark.parametrize("layout", ["one-hot", "labels"])
@given(data=st.data())
def test_cce(layout: str, data: st.DataObject) -> None:
    n, k = data.draw(sizes, label="N"), data.draw(sizes, label="K")
    P = data.draw(arrays((n, k), 0.02, 0.98), label="pred")
    y = data.draw(labels(n, k), label="labels")
    Y = one_hot(y, k)
    value = -np.sum(Y * np.log(P)) / n
    target = Y if layout == "one-hot" else y
    assert_loss_three_way(CategoricalCrossEntropy(), P, target, value, -1 / n * Y / P)


@pytest.mark.parametrize("layout", ["one-hot", "labels"])
@given(data=st.data())
def test_softmax_cross_entropy(layout: str, data: st.DataObject) -> None:
    n, k = data.draw(sizes, label="N"), data.draw(sizes, label="K")
    L = data.draw(arrays((n, k), -4, 4), label="logits")
    y = data.draw(labels(n, k), label="labels")
    Y = one_hot(y, k)
    Y_hat = np.exp(L) / np.exp(L).sum(axis=1, keepdims=True)
    value = -np.sum(Y * np.log(Y_hat)) / n
    target = Y if layout == "one-hot" else y
    assert_loss_three_way(SoftmaxCrossEntropy(), L, target, value, -1 / n * (Y - Y_hat))


@pytest.mark.parametrize("layout", ["(N,K)", "(N,1)", "(N,)"])
@given(data=st.data())
def test_sigmoid_binary_cross_entropy(layout: str, data: st.DataObject) -> None:
    n = data.draw(sizes, label="N")
    k = data.draw(sizes, label="K") if layout == "(N,K)" else 1
    Z = data.draw(arrays((n, k), -4, 4), label="logits")
    Y = data.draw(arrays((n, k), 0.0, 1.0), label="target")
    S = sigmoid(Z)
    value = -np.sum(Y * np.log(S) + (1 - Y) * np.log(1 - S)) / n
    target = Y.ravel() if layout == "(N,)" else Y
    assert_loss_three_way(SigmoidBinaryCrossEntropy(), Z, target, value, (S - Y) / n)


# Fused losses = their unfused chains away from saturation ------------------------------------


@given(data=st.data())
def test_softmax_then_cce_equals_softmax_cross_entropy(data: st.DataObject) -> None:
    n, k = data.draw(sizes, label="N"), data.draw(sizes, label="K")
    L = data.draw(arrays((n, k), -4, 4), label="logits")
    y = data.draw(labels(n, k), label="labels")
    for target in (y, one_hot(y, k)):
        softmax_layer, cce = Softmax(), CategoricalCrossEntropy()
        unfused_value = cce.forward(softmax_layer.forward(L), target)
        # The lecture's total derivative: softmax backward applied to -1/N Y/Ŷ.
        unfused_dL = softmax_layer.backward(cce.backward())
        fused = SoftmaxCrossEntropy()
        fused_value = fused.forward(L, target)
        fused_dL = fused.backward()
        assert fused_value == pytest.approx(unfused_value, rel=1e-10, abs=1e-12)
        np.testing.assert_allclose(fused_dL, unfused_dL, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k_is_one", [True, False])
@given(data=st.data())
def test_sigmoid_then_bce_equals_sigmoid_binary_cross_entropy(
    k_is_one: bool, data: st.DataObject
) -> None:
    n = data.draw(sizes, label="N")
    k = 1 if k_is_one else data.draw(sizes, label="K")
    Z = data.draw(arrays((n, k), -4, 4), label="logits")
    Y = data.draw(arrays((n, k), 0.0, 1.0), label="target")
    sigmoid_layer, bce = Sigmoid(), BinaryCrossEntropy()
    unfused_value = bce.forward(sigmoid_layer.forward(Z), Y)
    unfused_dZ = sigmoid_layer.backward(bce.backward())
    fused = SigmoidBinaryCrossEntropy()
    fused_value = fused.forward(Z, Y)
    fused_dZ = fused.backward()
    assert fused_value == pytest.approx(unfused_value, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(fused_dZ, unfused_dZ, rtol=1e-9, atol=1e-12)


# Worked examples, computed by hand -------------------------------------------------------------


def test_mse_worked_example() -> None:
    loss = MeanSquaredError()
    # J = 1/3 [(0 - 1)² + (2 - 2)² + (2 - 4)²] = 5/3; dŶ = -2/3 (Y - Ŷ) = -2/3 [-1, 0, -2]
    assert loss.forward([[1.0], [2.0], [4.0]], [[0.0], [2.0], [2.0]]) == pytest.approx(5 / 3)
    np.testing.assert_allclose(loss.backward(), [[2 / 3], [0.0], [4 / 3]], rtol=1e-15)
    # Summed over K, averaged over N (not over N·K): J = (1 + 4 + 1 + 1)/2 = 3.5, dŶ = Ŷ - Y
    assert loss.forward([[1.0, 2.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]) == pytest.approx(3.5)
    np.testing.assert_allclose(loss.backward(), [[1.0, 2.0], [-1.0, -1.0]], rtol=1e-15)


@pytest.mark.parametrize("target", [[[1.0], [0.0]], [1.0, 0.0], [1, 0]])
def test_bce_worked_example(target: Any) -> None:
    loss = BinaryCrossEntropy()
    # J = -1/2 [log 0.8 + log(1 - 0.25)] = -1/2 log 0.6
    assert loss.forward([[0.8], [0.25]], target) == pytest.approx(-0.5 * math.log(0.6), rel=1e-14)
    # dŷ = 1/N (ŷ - y)/(ŷ(1 - ŷ)): (-0.2)/(0.16)/2 = -0.625; 0.25/(0.1875)/2 = 2/3
    np.testing.assert_allclose(loss.backward(), [[-0.625], [2 / 3]], rtol=1e-14)


@pytest.mark.parametrize("target", [[[1, 0, 0], [0, 1, 0]], [0, 1]], ids=["one-hot", "labels"])
def test_cce_worked_example(target: Any) -> None:
    loss = CategoricalCrossEntropy()
    P = [[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]
    # J = -1/2 (log 0.5 + log 0.8) = -1/2 log 0.4; dŶ = -1/2 Y/Ŷ
    assert loss.forward(P, target) == pytest.approx(-0.5 * math.log(0.4), rel=1e-14)
    np.testing.assert_allclose(loss.backward(), [[-1.0, 0.0, 0.0], [0.0, -0.625, 0.0]],
                               rtol=1e-14)


@pytest.mark.parametrize("target", [[[0, 1, 0], [1, 0, 0]], [1, 0]], ids=["one-hot", "labels"])
def test_softmax_cross_entropy_worked_example(target: Any) -> None:
    loss = SoftmaxCrossEntropy()
    # softmax(log[1, 2, 1]) = [1/4, 1/2, 1/4]; softmax([0, 0, 0]) = [1/3, 1/3, 1/3]
    L = [[0.0, math.log(2), 0.0], [0.0, 0.0, 0.0]]
    # J = -1/2 (log 1/2 + log 1/3) = 1/2 log 6
    assert loss.forward(L, target) == pytest.approx(0.5 * math.log(6), rel=1e-14)
    # dL = -1/2 (Y - Ŷ): [1/8, -1/4, 1/8]; [-1/3, 1/6, 1/6]
    np.testing.assert_allclose(loss.backward(), [[1 / 8, -1 / 4, 1 / 8], [-1 / 3, 1 / 6, 1 / 6]],
                               rtol=1e-14)


@pytest.mark.parametrize("target", [[[1.0], [0.0]], [1.0, 0.0]])
def test_sigmoid_binary_cross_entropy_worked_example(target: Any) -> None:
    loss = SigmoidBinaryCrossEntropy()
    # σ(0) = 1/2, σ(ln 3) = 3/4; J = 1/2 [-log 1/2 - log(1 - 3/4)] = 1/2 log 8
    assert loss.forward([[0.0], [math.log(3)]], target) == pytest.approx(0.5 * math.log(8),
                                                                          rel=1e-14)
    # dZ = 1/2 (σ(Z) - Y) = [-1/4, 3/8]
    np.testing.assert_allclose(loss.backward(), [[-0.25], [0.375]], rtol=1e-14)


def test_multilabel_targets() -> None:
    # BCE sums over the K outputs of each sample and averages over N: -1/1 [log 0.5 + log 0.5]
    assert BinaryCrossEntropy().forward([[0.5, 0.5]], [[1.0, 0.0]]) == pytest.approx(
        2 * math.log(2))
    loss = SigmoidBinaryCrossEntropy()
    assert loss.forward([[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 1.0]]) == pytest.approx(
        2 * math.log(2))
    np.testing.assert_allclose(loss.backward(), [[-0.25, 0.25], [-0.25, -0.25]], rtol=1e-15)


# Contract ----------------------------------------------------------------------------------------

CASES: dict[str, tuple[Callable[[], Loss], Any, Any]] = {
    "MSE": (MeanSquaredError, [[0.3, -1.0], [2.0, 0.5]], [[0.0, 1.0], [1.5, 0.5]]),
    "BCE": (BinaryCrossEntropy, [[0.3, 0.9], [0.2, 0.5]], [[0.0, 1.0], [1.0, 0.5]]),
    "CCE": (CategoricalCrossEntropy, [[0.3, 0.7], [0.6, 0.4]], [1, 0]),
    "SoftmaxCE": (SoftmaxCrossEntropy, [[0.3, -1.0], [2.0, 0.5]], [[0.0, 1.0], [1.0, 0.0]]),
    "SigmoidBCE": (SigmoidBinaryCrossEntropy, [[0.3, -1.0], [2.0, 0.5]], [[0.0, 1.0], [1.0, 0.5]]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_loss_contract(name: str) -> None:
    factory, pred_list, target_list = CASES[name]
    pred, target = np.array(pred_list), np.array(target_list)
    pred_before, target_before = pred.copy(), target.copy()
    loss = factory()
    value = loss(pred, target)
    assert isinstance(value, float) and math.isfinite(value)
    assert loss.forward(pred, target) == value
    g1 = loss.backward()
    g2 = loss.backward()
    assert g1.shape == pred.shape and g1.tobytes() == g2.tobytes()
    np.testing.assert_array_equal(pred, pred_before)
    np.testing.assert_array_equal(target, target_before)
    # Another forward replaces the cache: backward follows the latest call.
    loss.forward(pred * 0.5, target)
    np.testing.assert_allclose(loss.backward(), expanded_jacobian(factory(), pred * 0.5,
                                                                  target=target), **EXACT)


@pytest.mark.parametrize("name", list(CASES))
def test_backward_before_forward(name: str) -> None:
    loss = CASES[name][0]()
    with pytest.raises(ForwardNotCalledError, match="forward") as info:
        loss.backward()
    assert isinstance(info.value, ValueError)
    assert type(loss).__name__ + ".backward" in str(info.value)


# Stability and the clipping policy ---------------------------------------------------------------

RAISE = {"over": "raise", "invalid": "raise", "divide": "raise"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", [[0], [1], [2], [[0.0, 0.0, 1.0]]])
def test_softmax_cross_entropy_at_extreme_logits(dtype: Any, target: Any) -> None:
    L = np.array([[1000.0, 0.0, -1000.0]], dtype=dtype)
    loss = SoftmaxCrossEntropy()
    with np.errstate(**RAISE):
        value = loss.forward(L, target)
        dL = loss.backward()
        jac = expanded_jacobian(SoftmaxCrossEntropy(), L, target=target)
    assert math.isfinite(value) and np.all(np.isfinite(dL)) and np.all(np.isfinite(jac))
    label = int(np.argmax(target)) if np.ndim(target) == 2 else target[0]
    # J = logsumexp(L) - l_label = 1000 - l_label; dL = ŷ - y with ŷ = [1, 0, 0]
    assert value == pytest.approx(1000.0 - [1000.0, 0.0, -1000.0][label])
    np.testing.assert_allclose(dL, [np.eye(3)[0] - np.eye(3)[label]], atol=1e-6)
    np.testing.assert_allclose(jac, dL, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_binary_cross_entropy_at_plus_minus_800(dtype: Any) -> None:
    Z = np.array([[800.0], [-800.0], [800.0], [-800.0]], dtype=dtype)
    Y = np.array([[1.0], [0.0], [0.0], [1.0]])
    loss = SigmoidBinaryCrossEntropy()
    with np.errstate(**RAISE):
        value = loss.forward(Z, Y)
        dZ = loss.backward()
        jac = expanded_jacobian(SigmoidBinaryCrossEntropy(), Z, target=Y)
    # Right answers cost ~0, the two confident wrong ones 800 each: (800 + 800) / 4
    assert value == pytest.approx(400.0)
    np.testing.assert_allclose(dZ, [[0.0], [0.0], [0.25], [-0.25]], atol=1e-7)
    np.testing.assert_allclose(jac, dZ, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_at_exact_zero_and_one_is_clipped(dtype: Any) -> None:
    P = np.array([[0.0], [1.0], [0.0], [1.0]], dtype=dtype)
    Y = np.array([[0.0], [1.0], [1.0], [0.0]])
    loss = BinaryCrossEntropy()
    with np.errstate(**RAISE):
        value = loss.forward(P, Y)
        dP = loss.backward()
    eps = np.finfo(dtype).eps
    # The documented policy: evaluate at clip(Ŷ, ε, 1 - ε). Right answers cost ~ε, the two
    # wrong ones -log ε each.
    assert math.isfinite(value) and np.all(np.isfinite(dP))
    assert value == pytest.approx(-2 * math.log(eps) / 4, rel=1e-3)
    assert dP[2, 0] < -1 / (8 * eps) and dP[3, 0] > 1 / (8 * eps)  # huge, finite, right sign


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cce_at_exact_zero_is_clipped(dtype: Any) -> None:
    P = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    loss = CategoricalCrossEntropy()
    with np.errstate(**RAISE):
        value = loss.forward(P, [0, 0])
        dP = loss.backward()
    eps = np.finfo(dtype).eps
    assert math.isfinite(value) and np.all(np.isfinite(dP))
    assert value == pytest.approx(-math.log(eps) / 2, rel=1e-3)  # one sample scores 0 for its class
    assert dP[1, 0] == pytest.approx(-1 / (2 * eps), rel=1e-3)
    assert dP[0, 1] == 0 and dP[1, 1] == 0


# Bad input ---------------------------------------------------------------------------------------

P23 = np.full((2, 3), 1 / 3)

BAD_LOSS_INPUT: list[Case] = [
    ("mse-N-vs-N2", lambda: MeanSquaredError().forward(np.ones((3, 2)), np.ones(3)), ShapeError,
     ValueError, "target"),
    ("mse-transposed", lambda: MeanSquaredError().forward(np.ones((2, 3)), np.ones((3, 2))),
     ShapeError, ValueError, "target"),
    ("mse-pred-1d", lambda: MeanSquaredError().forward(np.ones(3), np.ones(3)), ShapeError,
     ValueError, "pred"),
    ("bce-target-shape", lambda: BinaryCrossEntropy().forward(P23, np.ones(2)), ShapeError,
     ValueError, "target"),
    ("sbce-target-shape", lambda: SigmoidBinaryCrossEntropy().forward(np.ones((3, 1)),
     np.ones(2)), ShapeError, ValueError, "target"),
    ("cce-label-count", lambda: CategoricalCrossEntropy().forward(P23, [0, 1, 2]), ShapeError,
     ValueError, "target"),
    ("cce-one-hot-shape", lambda: CategoricalCrossEntropy().forward(P23, np.eye(3)), ShapeError,
     ValueError, "target"),
    ("cce-label-too-big", lambda: CategoricalCrossEntropy().forward(P23, [0, 3]),
     JacnetValueError, ValueError, "target"),
    ("sce-label-negative", lambda: SoftmaxCrossEntropy().forward(P23, [-1, 0]), JacnetValueError,
     ValueError, "target"),
    ("sce-label-non-integer", lambda: SoftmaxCrossEntropy().forward(P23, [0.5, 1.0]),
     JacnetValueError, ValueError, "target"),
    ("cce-label-nan", lambda: CategoricalCrossEntropy().forward(P23, [np.nan, 1.0]),
     JacnetValueError, ValueError, "target"),
    ("cce-label-strings", lambda: CategoricalCrossEntropy().forward(P23, ["a", "b"]),
     JacnetTypeError, TypeError, "target"),
    ("sce-label-bool", lambda: SoftmaxCrossEntropy().forward(P23, [True, False]),
     JacnetTypeError, TypeError, "target"),
    ("cce-rows-not-one-hot", lambda: CategoricalCrossEntropy().forward(P23, np.ones((2, 3))),
     JacnetValueError, ValueError, "target"),
    ("bce-target-above-1", lambda: BinaryCrossEntropy().forward([[0.5]], [[1.5]]),
     JacnetValueError, ValueError, "target"),
    ("sbce-target-negative", lambda: SigmoidBinaryCrossEntropy().forward([[0.5]], [[-0.1]]),
     JacnetValueError, ValueError, "target"),
    ("bce-pred-above-1", lambda: BinaryCrossEntropy().forward([[1.2]], [[1.0]]), JacnetValueError,
     ValueError, "pred"),
    ("bce-pred-negative", lambda: BinaryCrossEntropy().forward([[-0.2]], [[1.0]]),
     JacnetValueError, ValueError, "pred"),
    ("cce-pred-above-1", lambda: CategoricalCrossEntropy().forward([[1.5, -0.5]], [0]),
     JacnetValueError, ValueError, "pred"),
    ("mse-pred-nan", lambda: MeanSquaredError().forward([[np.nan]], [[0.0]]), NonFiniteError,
     ValueError, "pred"),
    ("mse-target-inf", lambda: MeanSquaredError().forward([[0.0]], [[np.inf]]), NonFiniteError,
     ValueError, "target"),
    ("sce-logits-inf", lambda: SoftmaxCrossEntropy().forward([[np.inf, 0.0]], [0]),
     NonFiniteError, ValueError, "pred"),
    ("sbce-logits-nan", lambda: SigmoidBinaryCrossEntropy().forward([[np.nan]], [1.0]),
     NonFiniteError, ValueError, "pred"),
    ("mse-pred-strings", lambda: MeanSquaredError().forward(np.array([["a"]]), [[0.0]]),
     JacnetTypeError, TypeError, "pred"),
    ("mse-pred-object", lambda: MeanSquaredError().forward(np.array([[None]]), [[0.0]]),
     JacnetTypeError, TypeError, "pred"),
    ("bce-pred-complex", lambda: BinaryCrossEntropy().forward(np.ones((1, 1), complex), [[1.0]]),
     JacnetTypeError, TypeError, "pred"),
    ("sbce-pred-bool", lambda: SigmoidBinaryCrossEntropy().forward(np.ones((1, 1), bool), [1.0]),
     JacnetTypeError, TypeError, "pred"),
    ("mse-target-str", lambda: MeanSquaredError().forward([[0.0]], "0"), JacnetTypeError,
     TypeError, "target"),
    ("sce-target-str", lambda: SoftmaxCrossEntropy().forward([[0.0]], "0"), JacnetTypeError,
     TypeError, "target"),
]


test_bad_loss_input_raises_a_named_error = named_error_test(BAD_LOSS_INPUT)


def test_label_errors_say_what_was_expected_and_received() -> None:
    with pytest.raises(JacnetValueError) as info:
        CategoricalCrossEntropy().forward(P23, [0, 3])
    message = str(info.value)
    assert "CategoricalCrossEntropy target" in message
    assert "[0, 2]" in message and "3" in message
    with pytest.raises(ShapeError) as shape_info:
        MeanSquaredError().forward(np.ones((3, 2)), np.ones(3))
    assert "(3, 2)" in str(shape_info.value) and "(3,)" in str(shape_info.value)
