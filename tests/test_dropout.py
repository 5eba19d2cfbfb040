"""Dropout: inverted scaling in training, identity in inference, seeded masks, a fixed mask
for the checks, and p outside [0, 1) refused."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from layer_checks import contract, three_way
from named_errors import Case, named_error_test

from jacnet import (
    Dropout,
    JacnetTypeError,
    JacnetValueError,
    Sequential,
    ShapeError,
    check_gradients,
    expanded_jacobian,
)


@given(data=st.data())
def test_dropout_three_way_with_a_fixed_mask(data: st.DataObject) -> None:
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=2, max_size=4)))
    p = data.draw(st.sampled_from([0.0, 0.2, 0.5, 0.9]))
    seed = data.draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    layer = Dropout(p, rng=seed)
    layer.fix_randomness()
    X = rng.standard_normal(shape)
    three_way(layer, X, rng.standard_normal(shape))
    layer.eval()
    three_way(layer, X, rng.standard_normal(shape))


def test_dropout_worked_example() -> None:
    """p = 0.5: each kept entry is doubled, the others are 0; the Jacobian is diag(m) and
    backward multiplies by the same mask."""
    layer = Dropout(0.5, rng=0)
    X = np.array([[1.0, 2.0, 3.0, 4.0]])
    kept = np.random.default_rng(0).random((1, 4)) >= 0.5  # the same draw as the layer's
    Y = layer.forward(X)
    np.testing.assert_array_equal(Y, np.where(kept, 2 * X, 0.0))
    np.testing.assert_array_equal(layer.backward(np.ones((1, 4))), np.where(kept, 2.0, 0.0))
    layer.fix_randomness()
    np.testing.assert_array_equal(layer.forward(X), Y)  # the mask is reused
    np.testing.assert_array_equal(expanded_jacobian(layer, X).reshape(4, 4),
                                  np.diag(np.where(kept[0], 2.0, 0.0)))


def test_training_statistics_and_fresh_masks() -> None:
    layer = Dropout(0.3, rng=1)
    X = np.ones((200, 100))
    Y1, Y2 = layer.forward(X), layer.forward(X)
    assert not np.array_equal(Y1, Y2)  # a new mask each forward
    assert set(np.unique(Y1)) == {0.0, 1 / 0.7}
    assert abs(np.mean(Y1 == 0) - 0.3) < 0.01
    assert abs(Y1.mean() - 1.0) < 0.02  # inverted dropout keeps the expectation


def test_eval_is_the_identity_and_train_restores_dropout() -> None:
    layer = Dropout(0.5, rng=0)
    X = np.arange(12.0).reshape(3, 4)
    layer.eval()
    np.testing.assert_array_equal(layer.forward(X), X)
    np.testing.assert_array_equal(layer.backward(np.ones((3, 4))), np.ones((3, 4)))
    np.testing.assert_array_equal(expanded_jacobian(layer, X).reshape(12, 12), np.eye(12))
    layer.train()
    assert np.any(layer.forward(X + 1) == 0)


def test_seeded_masks_repeat_and_predict_is_deterministic() -> None:
    X = np.ones((4, 6))
    np.testing.assert_array_equal(Dropout(0.5, rng=7).forward(X), Dropout(0.5, rng=7).forward(X))
    model = Sequential([Dropout(0.5, rng=0)])
    np.testing.assert_array_equal(model.predict(X), X)  # predict runs in inference mode


def test_p_zero_is_the_identity_in_training() -> None:
    X = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(Dropout(0.0).forward(X), X)


def test_check_gradients_after_fix_randomness() -> None:
    layer = Dropout(0.4, rng=3)
    layer.fix_randomness()
    report = check_gradients(layer, np.random.default_rng(0).standard_normal((3, 5)))
    assert report.ok, str(report)


def test_dropout_layer_contract(rng: np.random.Generator) -> None:
    layer = Dropout(0.5, rng=0)
    layer.fix_randomness()  # contract() runs backward twice and compares
    contract(layer, rng.standard_normal((4, 3, 5)), rng)
    assert layer.config() == {"p": 0.5}


CASES: list[Case] = [
    ("p = 1", lambda: Dropout(1.0), JacnetValueError, ValueError, "Dropout p"),
    ("p < 0", lambda: Dropout(-0.1), JacnetValueError, ValueError, "Dropout p"),
    ("p nan", lambda: Dropout(float("nan")), JacnetValueError, ValueError, "Dropout p"),
    ("p string", lambda: Dropout("0.5"), JacnetTypeError, TypeError, "Dropout p"),
    ("rng", lambda: Dropout(0.5, rng="seed"), JacnetTypeError, TypeError, "Dropout rng"),
    ("rank", lambda: Dropout(0.5).forward(np.zeros(3)), ShapeError, ValueError,
     "Dropout.forward X"),
]

test_bad_input = named_error_test(CASES)
