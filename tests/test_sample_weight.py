"""Sample weights in ``fit``, ``evaluate`` and ``Loss.forward``; pandas inputs.

The weighted loss of a batch is ``Σ wᵢ lᵢ / Σ wᵢ``: its gradient is checked against finite
differences, and full-batch training with integer weights against training on repeated rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from jacnet import (
    SGD,
    Adam,
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    JacnetTypeError,
    JacnetValueError,
    Loss,
    MeanSquaredError,
    NonFiniteError,
    ShapeError,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
    build_mlp,
    evaluate,
    fit,
)
from jacnet.losses import supports_sample_weight

BUILT_INS = [MeanSquaredError, BinaryCrossEntropy, CategoricalCrossEntropy, SoftmaxCrossEntropy,
             SigmoidBinaryCrossEntropy]


def blobs(n: int = 60, k: int = 3, d: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    centres = g.standard_normal((k, d)) * 3
    y = np.arange(n) % k
    return centres[y] + 0.8 * g.standard_normal((n, d)), y


def problem(kind: str, n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray, Loss, int]:
    """Inputs, targets, loss and output width for a multiclass, binary or regression fit."""
    X, y = blobs(n=n, seed=seed)
    if kind == "multiclass":
        return X, y, SoftmaxCrossEntropy(), 3
    if kind == "binary":
        return X, (y == 1).astype(np.float64), SigmoidBinaryCrossEntropy(), 1
    Y = np.stack([X[:, 0] - X[:, 1], X[:, 0] * 0.5], axis=1)
    return X, Y, MeanSquaredError(), 2


# The loss: per-row values, weighted value and its gradient -----------------------------------


@pytest.mark.parametrize("loss_class", BUILT_INS)
def test_rows_are_the_per_row_losses(loss_class: type[Loss]) -> None:
    rng = np.random.default_rng(1)
    loss, P, T = loss_class.example(rng)
    rows = loss._rows(*loss._checked(P, T))
    assert rows.shape == (P.shape[0],)
    single = [loss_class().forward(P[i:i + 1], np.asarray(T)[i:i + 1]) for i in range(P.shape[0])]
    np.testing.assert_allclose(rows, single, rtol=1e-12)
    assert abs(loss_class().forward(P, T) - rows.mean()) <= 4 * np.finfo(np.float64).eps * abs(rows.mean())


@pytest.mark.parametrize("loss_class", BUILT_INS)
def test_weighted_value_is_the_weighted_mean_of_rows(loss_class: type[Loss]) -> None:
    rng = np.random.default_rng(2)
    _, P, T = loss_class.example(rng)
    w = rng.uniform(0, 3, P.shape[0])
    w[0] = 0.0
    single = np.array([loss_class().forward(P[i:i + 1], np.asarray(T)[i:i + 1])
                       for i in range(P.shape[0])])
    value = loss_class().forward(P, T, sample_weight=w)
    np.testing.assert_allclose(value, np.sum(w * single) / np.sum(w), rtol=1e-12)
    # Weights of ones give the plain mean; a common factor changes nothing.
    np.testing.assert_allclose(loss_class().forward(P, T, sample_weight=np.ones(len(w))),
                               loss_class().forward(P, T), rtol=1e-14)
    np.testing.assert_allclose(loss_class().forward(P, T, sample_weight=7 * w), value, rtol=1e-14)


@pytest.mark.parametrize("loss_class", BUILT_INS)
def test_weighted_gradient_matches_finite_differences(loss_class: type[Loss]) -> None:
    rng = np.random.default_rng(3)
    _, P, T = loss_class.example(rng)
    w = rng.uniform(0, 3, P.shape[0])
    w[1] = 0.0
    loss = loss_class()
    loss.forward(P, T, sample_weight=w)
    grad = loss.backward()
    assert grad.shape == P.shape and grad.dtype == P.dtype
    h = 1e-6
    numeric = np.zeros_like(P)
    for idx in np.ndindex(P.shape):
        up, down = P.copy(), P.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (loss_class().forward(up, T, sample_weight=w)
                        - loss_class().forward(down, T, sample_weight=w)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    assert np.all(grad[1] == 0)  # a zero weight: no gradient for that row
    # The row scaling N wᵢ / Σ w of the unweighted gradient, exactly.
    plain = loss_class()
    plain.forward(P, T)
    np.testing.assert_allclose(grad, plain.backward() * (len(w) * w / w.sum())[:, None], rtol=1e-12)


def test_an_unweighted_forward_after_a_weighted_one_forgets_the_weights() -> None:
    rng = np.random.default_rng(4)
    loss, P, T = SoftmaxCrossEntropy.example(rng)
    loss.forward(P, T, sample_weight=rng.uniform(0, 1, P.shape[0]))
    loss.forward(P, T)
    plain = SoftmaxCrossEntropy()
    plain.forward(P, T)
    np.testing.assert_array_equal(loss.backward(), plain.backward())


class _NoRows(Loss):
    """A user's loss with a value and a gradient but no per-row values."""

    def _value(self, P: Any, T: Any) -> float:
        return float(np.sum((P - T) ** 2)) / P.shape[0]

    def _gradient(self, P: Any, T: Any) -> Any:
        return 2 * (P - T) / P.shape[0]


class _OwnValueMeanSquaredError(MeanSquaredError):
    """Overrides the value but inherits MeanSquaredError's rows: they no longer belong to it."""

    def _value(self, P: Any, T: Any) -> float:
        return 2 * super()._value(P, T)


class _WithRows(_NoRows):
    def _rows(self, P: Any, T: Any) -> Any:
        return np.sum((P - T) ** 2, axis=1)


def test_which_losses_take_weights() -> None:
    assert all(supports_sample_weight(c()) for c in BUILT_INS)
    assert not supports_sample_weight(_NoRows())
    assert not supports_sample_weight(_OwnValueMeanSquaredError())
    assert supports_sample_weight(_WithRows())


@pytest.mark.parametrize("loss_class", [_NoRows, _OwnValueMeanSquaredError])
def test_a_loss_without_rows_refuses_weights(loss_class: type[Loss]) -> None:
    X, Y, _, k = problem("regression")
    model = build_mlp(2, [4], k, rng=0, dtype=np.float64)
    w = np.ones(len(X))
    with pytest.raises(JacnetTypeError, match=r"fit sample_weight expects a loss with per-row values, "
                                              rf"got {loss_class.__name__}"):
        fit(model, X, Y, loss=loss_class(), sample_weight=w, epochs=1, verbose=0)
    with pytest.raises(JacnetTypeError, match="evaluate sample_weight expects a loss with per-row"):
        evaluate(model, X, Y, loss=loss_class(), sample_weight=w)
    with pytest.raises(JacnetTypeError, match="forward sample_weight expects a loss with per-row"):
        loss_class().forward(np.zeros((3, 2)), np.zeros((3, 2)), sample_weight=np.ones(3))
    # Without weights it trains as before; with _rows it takes them.
    fit(model, X, Y, loss=loss_class(), epochs=1, verbose=0)
    fit(model, X, Y, loss=_WithRows(), sample_weight=w, epochs=1, verbose=0)


@pytest.mark.parametrize(("weights", "error", "match"), [
    (-np.ones(30), JacnetValueError, r"fit sample_weight expects weights >= 0, got a minimum of -1\.0"),
    (np.zeros(30), JacnetValueError, "fit sample_weight expects weights that are not all zero"),
    (np.ones(29), ShapeError, r"fit sample_weight expects shape \(30,\) \(one weight per sample\), "
                              r"got \(29,\)"),
    (np.ones((30, 1)), ShapeError, "fit sample_weight expects a 1-D array"),
    (np.full(30, np.nan), NonFiniteError, "fit sample_weight expects finite values"),
    (np.full(30, np.inf), NonFiniteError, "fit sample_weight expects finite values"),
    (np.array(["a"] * 30), JacnetTypeError, "fit sample_weight expects a numeric array"),
    ("heavy", JacnetTypeError, "fit sample_weight expects a numeric array"),
])
def test_bad_weights_are_refused_by_name(weights: Any, error: type[Exception], match: str) -> None:
    X, y, loss, k = problem("multiclass")
    model = build_mlp(2, [4], k, rng=0)
    before = {name: p.copy() for name, p in model.params.items()}
    with pytest.raises(error, match=match):
        fit(model, X, y, loss=loss, sample_weight=weights, verbose=0)
    for name, p in model.params.items():
        np.testing.assert_array_equal(p, before[name])
    with pytest.raises(error, match=match.replace("fit", "evaluate")):
        evaluate(model, X, y, loss=loss, sample_weight=weights)


def test_validation_split_without_training_weight_is_refused() -> None:
    X, y, loss, k = problem("multiclass", n=20)
    # seed 0's split of 20 rows at 0.5: give weight only to the validation half.
    from jacnet.train import _split
    train_rows, val_rows = _split(20, 0.5, 0)
    w = np.zeros(20)
    w[val_rows] = 1
    with pytest.raises(JacnetValueError, match="positive weight on at least one training row"):
        fit(build_mlp(2, [4], k, rng=0), X, y, loss=loss, sample_weight=w, validation_split=0.5,
            seed=0, verbose=0)
    w = np.zeros(20)
    w[train_rows] = 1
    with pytest.raises(JacnetValueError, match="positive weight on at least one validation row"):
        fit(build_mlp(2, [4], k, rng=0), X, y, loss=loss, sample_weight=w, validation_split=0.5,
            seed=0, verbose=0)


# Training ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_weights_of_one_train_bitwise_like_no_weights(kind: str) -> None:
    # The gradient's rows are scaled by N·1/N = 1.0 exactly.
    X, y, loss, k = problem(kind, n=50)
    a, b = (build_mlp(2, [6], k, rng=0) for _ in range(2))
    ha = fit(a, X, y, loss=loss, epochs=3, batch_size=8, seed=1, verbose=0)
    hb = fit(b, X, y, loss=type(loss)(), epochs=3, batch_size=8, seed=1, verbose=0,
             sample_weight=np.ones(len(X)))
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-6)
    if "accuracy" in ha.history:
        np.testing.assert_allclose(ha["accuracy"], hb["accuracy"], rtol=1e-12)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
@pytest.mark.parametrize("make_optimizer", [lambda: SGD(0.1), lambda: Adam(0.01)], ids=["sgd", "adam"])
def test_integer_weights_equal_repeated_rows_in_full_batch_training(kind: str, make_optimizer: Any) -> None:
    # Full-batch deterministic steps: Σ wᵢ lᵢ / Σ wᵢ is the mean over the repeated rows.
    X, y, loss, k = problem(kind, n=30)
    w = np.random.default_rng(5).integers(0, 4, len(X))
    w[:2] = (0, 3)
    weighted, repeated = (build_mlp(2, [6], k, rng=0, dtype=np.float64) for _ in range(2))
    hw = fit(weighted, X, y, loss=loss, optimizer=make_optimizer(), epochs=25, batch_size=len(X),
             shuffle=False, seed=0, verbose=0, sample_weight=w)
    hr = fit(repeated, np.repeat(X, w, axis=0), np.repeat(y, w, axis=0), loss=type(loss)(),
             optimizer=make_optimizer(), epochs=25, batch_size=int(w.sum()), shuffle=False, seed=0,
             verbose=0)
    for name in weighted.params:
        np.testing.assert_allclose(weighted.params[name], repeated.params[name], rtol=1e-6, atol=1e-9)
    assert hr["loss"][-1] < hr["loss"][0]  # it trained
    for key in hr.history:
        if key not in ("seconds", "lr"):
            np.testing.assert_allclose(hw[key], hr[key], rtol=1e-6, err_msg=key)


def test_a_batch_of_zero_weights_takes_no_step() -> None:
    # shuffle=False: zero weights on the first batch equal dropping its rows.
    X, y, loss, k = problem("multiclass", n=40)
    w = np.ones(40)
    w[:10] = 0
    weighted, dropped = (build_mlp(2, [6], k, rng=0, dtype=np.float64) for _ in range(2))
    hw = fit(weighted, X, y, loss=loss, optimizer=SGD(0.1, momentum=0.9), epochs=4, batch_size=10,
             shuffle=False, seed=0, verbose=0, sample_weight=w)
    hd = fit(dropped, X[10:], y[10:], loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1, momentum=0.9),
             epochs=4, batch_size=10, shuffle=False, seed=0, verbose=0)
    for name in weighted.params:
        np.testing.assert_allclose(weighted.params[name], dropped.params[name], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hw["loss"], hd["loss"], rtol=1e-12)
    np.testing.assert_allclose(hw["accuracy"], hd["accuracy"], rtol=1e-12)


def test_weights_change_what_is_learned() -> None:
    # Two classes on the same inputs: the heavier one wins.
    X = np.zeros((40, 1))
    y = np.arange(40) % 2
    w = np.where(y == 1, 9.0, 1.0)
    model = build_mlp(1, [], 2, rng=0, dtype=np.float64)
    fit(model, X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.5), epochs=200, batch_size=40,
        verbose=0, seed=0, sample_weight=w)
    p = model.predict_proba(X[:1])[0]
    np.testing.assert_allclose(p, [0.1, 0.9], atol=1e-3)  # the weighted class frequencies


# Scores ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_weighted_evaluate_equals_evaluate_on_repeated_rows(kind: str) -> None:
    X, y, loss, k = problem(kind, n=45)
    model = build_mlp(2, [6], k, rng=0, dtype=np.float64)
    fit(model, X, y, loss=loss, epochs=2, seed=0, verbose=0)
    w = np.random.default_rng(6).integers(0, 4, len(X))
    w[0] = 2
    weighted = evaluate(model, X, y, sample_weight=w)
    repeated = evaluate(model, np.repeat(X, w, axis=0), np.repeat(y, w, axis=0))
    assert weighted.keys() == repeated.keys()
    for key in repeated:
        np.testing.assert_allclose(weighted[key], repeated[key], rtol=1e-12, err_msg=key)
    assert evaluate(model, X, y) != weighted  # the weights mattered


def test_validation_scores_are_weighted() -> None:
    X, y, loss, k = problem("multiclass", n=60)
    w = np.random.default_rng(7).uniform(0, 2, 60)
    X_val, y_val, w_val = X[:20], y[:20], w[:20]
    model = build_mlp(2, [6], k, rng=0, dtype=np.float64)
    history = fit(model, X[20:], y[20:], loss=loss, epochs=2, seed=0, verbose=0,
                  sample_weight=w[20:], validation=(X_val, y_val, w_val))
    scores = evaluate(model, X_val, y_val, sample_weight=w_val)
    assert history["val_loss"][-1] == pytest.approx(scores["loss"], rel=1e-12)
    assert history["val_accuracy"][-1] == pytest.approx(scores["accuracy"], rel=1e-12)
    # validation_split takes the held-out rows' weights with them.
    model = build_mlp(2, [6], k, rng=0, dtype=np.float64)
    history = fit(model, X, y, loss=loss, epochs=2, seed=0, verbose=0, sample_weight=w,
                  validation_split=0.25)
    from jacnet.train import _split
    seed = 0
    _, val_rows = _split(60, 0.25, seed)
    scores = evaluate(model, X[val_rows], y[val_rows], sample_weight=w[val_rows])
    assert history["val_loss"][-1] == pytest.approx(scores["loss"], rel=1e-12)
    with pytest.raises(JacnetTypeError, match=r"fit validation expects a pair \(X_val, y_val\) or a triple"):
        fit(model, X, y, validation=(X_val,), verbose=0)
    with pytest.raises(ShapeError, match="fit validation sample_weight expects shape"):
        fit(model, X, y, validation=(X_val, y_val, w_val[:3]), verbose=0)


def test_weighted_regression_scores() -> None:
    from sklearn.metrics import mean_squared_error, r2_score

    X, Y, loss, k = problem("regression", n=40)
    model = build_mlp(2, [6], k, rng=0, dtype=np.float64)
    fit(model, X, Y, loss=loss, epochs=3, seed=0, verbose=0)
    w = np.random.default_rng(8).uniform(0, 2, 40)
    scores = evaluate(model, X, Y, sample_weight=w)
    pred = model.predict(X)
    assert scores["mse"] == pytest.approx(mean_squared_error(Y, pred, sample_weight=w), rel=1e-12)
    assert scores["r2"] == pytest.approx(r2_score(Y, pred, sample_weight=w), rel=1e-12)


# pandas --------------------------------------------------------------------------------------


def test_dataframes_and_series_train_like_arrays() -> None:
    pd = pytest.importorskip("pandas")
    X, y, loss, k = problem("multiclass", n=40)
    w = np.random.default_rng(9).uniform(0.5, 2, 40)
    frame = pd.DataFrame(X, columns=["a", "b"])
    a, b = (build_mlp(2, [6], k, rng=0) for _ in range(2))
    ha = fit(a, X, y, loss=loss, epochs=2, seed=0, verbose=0, sample_weight=w, validation_split=0.2)
    hb = fit(b, frame, pd.Series(y), loss=SoftmaxCrossEntropy(), epochs=2, seed=0, verbose=0,
             sample_weight=pd.Series(w), validation_split=0.2)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert history_values(ha) == history_values(hb)
    assert evaluate(b, frame, pd.Series(y), sample_weight=pd.Series(w)) == evaluate(a, X, y, sample_weight=w)
    np.testing.assert_array_equal(b.predict(frame), a.predict(X))
    # Integer and nullable integer columns are numbers too.
    mixed = pd.DataFrame({"a": X[:, 0], "b": pd.array(np.arange(40), dtype="Int64")})
    np.testing.assert_array_equal(b.predict(mixed), b.predict(np.stack([X[:, 0], np.arange(40)], 1)))


def history_values(history: Any) -> dict[str, list[float]]:
    return {k: v for k, v in history.history.items() if k != "seconds"}


def test_non_numeric_columns_are_named() -> None:
    pd = pytest.importorskip("pandas")
    X, y, loss, k = problem("multiclass", n=10)
    model = build_mlp(3, [4], k, rng=0)
    frame = pd.DataFrame({"a": X[:, 0], "city": ["x"] * 10, "b": X[:, 1]})
    with pytest.raises(JacnetTypeError, match="fit X expects numeric columns, got column 'city' of dtype"):
        fit(model, frame, y, loss=loss, verbose=0)
    with pytest.raises(JacnetTypeError,
                       match=r"Sequential\.predict X expects numeric columns, got column 'city'"):
        model.predict(frame)
    flags = frame.assign(city=[True, False] * 5)
    with pytest.raises(JacnetTypeError,
                       match="evaluate X expects numeric columns, got column 'city' of dtype bool"):
        evaluate(model, flags, y, loss=loss)
    with pytest.raises(JacnetTypeError, match="fit sample_weight expects numeric columns, got column 'w'"):
        fit(model, frame.drop(columns="city").assign(c=1.0), y, loss=loss, verbose=0,
            sample_weight=pd.Series(["1"] * 10, name="w"))
    with_missing = pd.DataFrame({"a": X[:, 0], "b": pd.array([1] * 9 + [None], dtype="Int64"),
                                 "c": X[:, 1]})
    with pytest.raises(NonFiniteError, match=r"Sequential\.predict X expects finite values"):
        model.predict(with_missing)
