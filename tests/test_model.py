"""Sequential and build_mlp: the chain equals the layers called by hand, flat params/grads that
are the layers' own arrays, summary numbers, prediction helpers, whole-network gradient checks
and composed Jacobians, and clear errors for bad construction."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jacnet import (
    ACTIVATIONS,
    Affine,
    JacnetError,
    JacnetTypeError,
    JacnetValueError,
    Layer,
    LeakyReLU,
    ReLU,
    Sequential,
    ShapeError,
    Sigmoid,
    SigmoidBinaryCrossEntropy,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
    build_mlp,
    check_gradients,
    numerical_jacobian,
)
from jacnet.layers import sigmoid, softmax


def small_mlp(dtype: Any = np.float64, activation: str = "relu") -> Sequential:
    return build_mlp(4, [5, 3], 3, activation=activation, rng=0, dtype=dtype)


# The chain --------------------------------------------------------------------------------


def test_forward_backward_equal_manual_layer_calls(rng: np.random.Generator) -> None:
    layers = [Affine(4, 6, rng=1, dtype=np.float64), Tanh(), Affine(6, 5, rng=2, dtype=np.float64),
              LeakyReLU(0.1), Affine(5, 3, rng=3, dtype=np.float64)]
    X = rng.standard_normal((7, 4))
    dY = rng.standard_normal((7, 3))

    # By hand, layer after layer, then backwards.
    A = X
    for layer in layers:
        A = layer.forward(A)
    Y_manual = A
    G = dY
    for layer in reversed(layers):
        G = layer.backward(G)
    dX_manual = G
    grads_manual = [{k: v.copy() for k, v in layer.grads.items()} for layer in layers]

    model = Sequential(layers)
    Y = model.forward(X)
    dX = model.backward(dY)
    np.testing.assert_array_equal(Y, Y_manual)
    assert dX is not None
    np.testing.assert_array_equal(dX, dX_manual)
    for i, layer in enumerate(layers):
        for k, g in grads_manual[i].items():
            np.testing.assert_array_equal(model.grads[f"{i}.{k}"], g)
            np.testing.assert_array_equal(layer.grads[k], g)
    np.testing.assert_array_equal(model(X), Y)


def test_params_and_grads_are_flat_dicts_of_the_layers_own_arrays() -> None:
    model = build_mlp(3, [4, 5], 2, rng=0)
    assert list(model.params) == ["0.W", "0.b", "2.W", "2.b", "4.W", "4.b"]
    assert list(model.grads) == list(model.params)
    for key, p in model.params.items():
        index, name = key.split(".")
        layer = model.layers[int(index)]
        assert p is layer.params[name]
        assert model.grads[key] is layer.grads[name]
        assert model.grads[key].shape == p.shape
    # The names are stable: asking again gives the same keys and the same arrays.
    again = model.params
    assert all(again[k] is v for k, v in model.params.items())
    assert model.n_params == 3 * 4 + 4 + 4 * 5 + 5 + 5 * 2 + 2


def test_in_place_update_reaches_the_layer() -> None:
    model = build_mlp(3, [4], 2, rng=0)
    params = model.params
    before = model.layers[0].params["W"].copy()
    params["0.W"] -= 1.0
    params["2.b"][...] = 7.0
    assert np.shares_memory(params["0.W"], model.layers[0].params["W"])
    np.testing.assert_array_equal(model.layers[0].params["W"], before - 1.0)
    np.testing.assert_array_equal(model.layers[2].params["b"], np.full(2, 7.0, dtype=np.float32))


@pytest.mark.parametrize("first", ["affine", "activation"])
def test_backward_without_input_grad_gives_same_grads_and_none(
    rng: np.random.Generator, first: str
) -> None:
    layers: list[Layer] = [Affine(4, 5, rng=0, dtype=np.float64), ReLU(),
                           Affine(5, 3, rng=1, dtype=np.float64)]
    if first == "activation":
        layers.insert(0, Tanh())
    model = Sequential(layers)
    X = rng.standard_normal((6, 4))
    dY = rng.standard_normal((6, 3))
    model.forward(X)
    assert model.backward(dY) is not None
    full = {k: v.copy() for k, v in model.grads.items()}
    for g in model.grads.values():
        g[...] = np.nan  # prove they are rewritten
    model.forward(X)
    assert model.backward(dY, input_grad=False) is None
    for k, g in full.items():
        np.testing.assert_array_equal(model.grads[k], g)


def test_parameterless_network_backward_without_input_grad() -> None:
    model = Sequential([Tanh(), Sigmoid()])
    model.forward(np.ones((2, 3)))
    assert model.backward(np.ones((2, 3)), input_grad=False) is None
    assert model.params == {} and model.grads == {}
    assert model.dtype == np.float64


# Presentation -----------------------------------------------------------------------------


def test_summary_lists_output_shapes_and_parameter_counts() -> None:
    model = build_mlp(64, [128, 64], 10, rng=0)
    text = model.summary()
    lines = text.splitlines()
    rows = [line for line in lines if line[:1].isdigit()]
    assert len(rows) == 5  # Affine, ReLU, Affine, ReLU, Affine
    assert "Affine(64, 128" in rows[0] and "(N, 128)" in rows[0] and rows[0].endswith("8,320")
    assert "ReLU" in rows[1] and "(N, 128)" in rows[1] and rows[1].endswith("0")
    assert "Affine(128, 64" in rows[2] and "(N, 64)" in rows[2] and rows[2].endswith("8,256")
    assert "(N, 64)" in rows[3]
    assert "Affine(64, 10" in rows[4] and "(N, 10)" in rows[4] and rows[4].endswith("650")
    assert model.n_params == 8320 + 8256 + 650 == 17226
    assert "total parameters: 17,226 (float32)" in text
    r = repr(model)
    assert r.startswith("Sequential(") and "17,226" in r and "(N, 10)" in r


def test_repr_names_the_loss() -> None:
    model = Sequential([Affine(2, 2, rng=0)], loss=SoftmaxCrossEntropy())
    assert "SoftmaxCrossEntropy" in repr(model)


# Prediction -------------------------------------------------------------------------------


def test_predict_in_batches_equals_forward(rng: np.random.Generator) -> None:
    model = small_mlp()
    X = rng.standard_normal((23, 4))
    expected = model.forward(X)
    for batch_size in (1, 5, 7, 23, 100):
        np.testing.assert_allclose(model.predict(X, batch_size=batch_size), expected,
                                   rtol=1e-12, atol=1e-14)
    assert model.predict(X, batch_size=5).shape == (23, 3)


@given(hidden=st.lists(st.integers(1, 6), max_size=3), n=st.integers(1, 12),
       batch_size=st.integers(1, 13), seed=st.integers(0, 2**16))
def test_any_mlp_predicts_in_batches_and_counts_its_parameters(
    hidden: list[int], n: int, batch_size: int, seed: int
) -> None:
    model = build_mlp(3, hidden, 2, rng=seed, dtype=np.float64)
    widths = [3, *hidden, 2]
    assert model.n_params == sum(a * b + b for a, b in itertools.pairwise(widths))
    assert list(model.params) == [f"{2 * i}.{k}" for i in range(len(widths) - 1) for k in "Wb"]
    X = np.random.default_rng(seed).standard_normal((n, 3))
    np.testing.assert_allclose(model.predict(X, batch_size=batch_size), model.forward(X),
                               rtol=1e-12, atol=1e-14)


def test_predict_casts_to_the_model_dtype(rng: np.random.Generator) -> None:
    model = build_mlp(4, [5], 3, rng=0)
    assert model.predict(rng.standard_normal((3, 4))).dtype == np.float32


def test_predict_proba_and_classes_multiclass(rng: np.random.Generator) -> None:
    model = small_mlp()
    X = rng.standard_normal((9, 4))
    P = model.predict_proba(X, batch_size=4)
    assert P.shape == (9, 3)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-12)
    assert (P >= 0).all()
    np.testing.assert_allclose(P, softmax(model.forward(X)), rtol=1e-12)
    np.testing.assert_array_equal(model.predict_classes(X), np.argmax(model.forward(X), axis=1))


def test_predict_proba_one_output_gives_two_columns(rng: np.random.Generator) -> None:
    model = build_mlp(4, [5], 1, rng=0, dtype=np.float64)
    X = rng.standard_normal((8, 4))
    P = model.predict_proba(X)
    assert P.shape == (8, 2)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-12)
    p = sigmoid(model.forward(X))[:, 0]
    np.testing.assert_allclose(P[:, 1], p, rtol=1e-12)
    np.testing.assert_array_equal(model.predict_classes(X), (model.forward(X)[:, 0] > 0).astype(int))


def test_predict_proba_does_not_squash_probabilities_twice(rng: np.random.Generator) -> None:
    model = build_mlp(4, [5], 3, output="softmax", rng=0, dtype=np.float64)
    X = rng.standard_normal((5, 4))
    np.testing.assert_array_equal(model.predict_proba(X), model.predict(X))
    binary = build_mlp(4, [5], 1, output="sigmoid", rng=0, dtype=np.float64)
    p = binary.predict(X)[:, 0]
    np.testing.assert_allclose(binary.predict_proba(X)[:, 1], p)


# Gradients and Jacobians of the whole network ---------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu"])
def test_check_gradients_on_whole_network_under_a_loss(rng: np.random.Generator, activation: str) -> None:
    model = small_mlp(activation=activation)
    X = rng.standard_normal((6, 4))
    y = rng.integers(0, 3, size=6)
    report = check_gradients(model, X, target=y, loss=SoftmaxCrossEntropy())
    assert report.ok, str(report)
    quantities = {c.quantity for c in report.checks}
    assert quantities == {"dX"} | {f"d{k}" for k in model.params}


def test_check_gradients_on_network_with_binary_loss(rng: np.random.Generator) -> None:
    model = build_mlp(3, [4], 1, activation="tanh", rng=0, dtype=np.float64)
    X = rng.standard_normal((5, 3))
    y = rng.integers(0, 2, size=5).astype(float)
    report = check_gradients(model, X, target=y, loss=SigmoidBinaryCrossEntropy())
    assert report.ok, str(report)


class _WrongBackward(Layer):
    """Identity forward whose backward doubles the gradient: a bug the check must catch."""

    def forward(self, X: Any) -> Any:
        self._n = np.asarray(X).shape
        return np.asarray(X, dtype=np.float64)

    def backward(self, dY: Any) -> Any:
        return 2 * np.asarray(dY)


def test_check_gradients_on_network_catches_a_wrong_backward(rng: np.random.Generator) -> None:
    model = Sequential([Affine(3, 4, rng=0, dtype=np.float64), _WrongBackward(),
                        Affine(4, 2, rng=1, dtype=np.float64)])
    X = rng.standard_normal((4, 3))
    y = rng.integers(0, 2, size=4)
    report = check_gradients(model, X, target=y, loss=SoftmaxCrossEntropy())
    assert not report.ok
    failed = {c.quantity for c in report.failures}
    assert "d0.W" in failed and "dX" in failed
    assert "d2.W" not in failed  # the layer after the bug still gets the right gradient


@pytest.mark.parametrize("wrt", ["X", "0.W", "0.b", "2.W", "4.b"])
def test_jacobian_composes_over_the_chain(rng: np.random.Generator, wrt: str) -> None:
    model = small_mlp(activation="tanh")
    X = rng.standard_normal((3, 4))
    J = model.jacobian(X, wrt)
    A_shape = X.shape if wrt == "X" else model.params[wrt].shape
    assert J.shape == (3, 3, *A_shape)
    numeric = numerical_jacobian(model, X, wrt=wrt)
    np.testing.assert_allclose(J, numeric, rtol=1e-5, atol=1e-7)


def test_jacobian_with_softmax_head_and_leaves_caches_alone(rng: np.random.Generator) -> None:
    model = build_mlp(3, [4], 3, activation="sigmoid", output="softmax", rng=0, dtype=np.float64)
    X = rng.standard_normal((2, 3))
    Y = model.forward(X)
    dX = model.backward(np.ones_like(Y))
    J = model.jacobian(rng.standard_normal((5, 3)), "0.W")  # another batch
    assert J.shape == (5, 3, 3, 4)
    # The caller's forward cache is untouched: backward again gives the same dX.
    np.testing.assert_array_equal(model.backward(np.ones_like(Y)), dX)
    np.testing.assert_allclose(model.jacobian(X, "X"), numerical_jacobian(model, X),
                               rtol=1e-5, atol=1e-8)


def test_jacobian_unknown_wrt() -> None:
    model = small_mlp()
    with pytest.raises(JacnetValueError, match="wrt"):
        model.jacobian(np.ones((2, 4)), "1.W")  # layer 1 is ReLU: no W
    with pytest.raises(JacnetValueError, match="wrt"):
        model.jacobian(np.ones((2, 4)), "W")


# Bad construction -------------------------------------------------------------------------


def test_empty_layer_list() -> None:
    with pytest.raises(JacnetValueError, match="at least one Layer"):
        Sequential([])


def test_non_layer_entries() -> None:
    with pytest.raises(JacnetTypeError, match=r"layers\[1\]"):
        Sequential([Affine(2, 2), "relu"])  # type: ignore[list-item]
    with pytest.raises(JacnetTypeError, match="list"):
        Sequential(Affine(2, 2))  # type: ignore[arg-type]
    with pytest.raises(JacnetTypeError):
        Sequential([ReLU, Affine(2, 2)])  # type: ignore[list-item]  # the class, not an instance


def test_wrong_loss_type() -> None:
    with pytest.raises(JacnetTypeError, match="loss"):
        Sequential([Affine(2, 2)], loss="cross_entropy")  # type: ignore[arg-type]
    with pytest.raises(JacnetTypeError, match="loss"):
        Sequential([Affine(2, 2)], loss=SoftmaxCrossEntropy)  # type: ignore[arg-type]


def test_build_mlp_structure() -> None:
    model = build_mlp(6, [5, 4], 3, activation="tanh", output="softmax", rng=0)
    kinds = [type(layer) for layer in model.layers]
    assert kinds == [Affine, Tanh, Affine, Tanh, Affine, Softmax]
    assert (model.in_features, model.out_features) == (6, 3)
    linear = build_mlp(6, [], 2, rng=0)
    assert [type(layer) for layer in linear.layers] == [Affine]
    assert build_mlp(2, [3], 1, activation="leaky_relu", rng=0).layers[1].__class__ is LeakyReLU
    # Same seed, same weights; another seed, other weights.
    a, b, c = (build_mlp(6, [5], 3, rng=s) for s in (0, 0, 1))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["0.W"], c.params["0.W"])


def test_build_mlp_dtype() -> None:
    assert all(p.dtype == np.float32 for p in build_mlp(3, [4], 2, rng=0).params.values())
    model = build_mlp(3, [4], 2, rng=0, dtype=np.float64)
    assert all(p.dtype == np.float64 for p in model.params.values())
    assert model.dtype == np.float64


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"activation": "gelu"}, JacnetValueError, "activation"),
        ({"activation": "softmax"}, JacnetValueError, "activation"),
        ({"output": "relu"}, JacnetValueError, "output"),
        ({"hidden": [8, 0]}, JacnetValueError, r"hidden\[1\]"),
        ({"hidden": [-3]}, JacnetValueError, r"hidden\[0\]"),
        ({"hidden": [2.5]}, JacnetTypeError, r"hidden\[0\]"),
        ({"hidden": 16}, JacnetTypeError, "hidden"),
        ({"hidden": np.int64(16)}, JacnetTypeError, "hidden"),
        ({"in_features": 0}, JacnetValueError, "in_features"),
        ({"out_features": 0}, JacnetValueError, "out_features"),
        ({"rng": "seed"}, JacnetTypeError, "rng"),
    ],
)
def test_build_mlp_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"in_features": 4, "hidden": [8], "out_features": 3, **kwargs}
    with pytest.raises(error, match=match) as info:
        build_mlp(args.pop("in_features"), args.pop("hidden"), args.pop("out_features"), **args)
    assert isinstance(info.value, JacnetError)


def test_build_mlp_hidden_int_message_suggests_a_tuple() -> None:
    with pytest.raises(JacnetTypeError, match=r"\(16,\)"):
        build_mlp(4, 16, 3)  # type: ignore[arg-type]


def test_predict_bad_input() -> None:
    model = small_mlp()
    with pytest.raises(JacnetValueError, match="batch_size"):
        model.predict(np.ones((2, 4)), batch_size=0)
    with pytest.raises(JacnetValueError):
        model.predict(np.ones(4))  # one sample must still be 2-D
    with pytest.raises(JacnetValueError, match="finite"):
        model.predict(np.array([[np.nan, 0, 0, 0]]))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("output", [None, "softmax"])
def test_network_matches_its_layers_called_one_by_one(rng: np.random.Generator, activation: str,
                                                      output: str | None) -> None:
    # Inside a network the layers skip their input checks (the network checks what enters it);
    # the numbers must be bitwise those of the layers' checked public methods.
    model = build_mlp(4, [5, 3], 3, activation=activation, output=output, rng=0, dtype=np.float32)
    X = rng.standard_normal((6, 4)).astype(np.float32)
    dY = rng.standard_normal((6, 3)).astype(np.float32)
    A = X
    for layer in model.layers:
        A = layer.forward(A)
    d = dY
    for layer in reversed(model.layers):
        d = layer.backward(d)
    expected_grads = {k: g.copy() for k, g in model.grads.items()}
    np.testing.assert_array_equal(model.forward(X), A)
    np.testing.assert_array_equal(model.backward(dY), d)
    for k, g in model.grads.items():
        np.testing.assert_array_equal(g, expected_grads[k])


def test_network_of_layers_that_do_not_fit_names_the_layer() -> None:
    model = Sequential([Affine(3, 5, rng=0), ReLU(), Affine(4, 2, rng=1)])
    with pytest.raises(ShapeError, match=r"Affine\(4, 2\)\.forward X expects shape \(N, 4\), got \(2, 5\)"):
        model.forward(np.ones((2, 3)))


def test_a_network_of_mixed_precision_computes_each_layer_in_its_own_dtype(rng: np.random.Generator) -> None:
    model = Sequential([Affine(3, 4, rng=0, dtype=np.float64), ReLU(), Affine(4, 2, rng=1, dtype=np.float32)])
    X = rng.standard_normal((5, 3))
    Z = model.forward(X)
    assert Z.dtype == np.float32
    expected = model.layers[2].forward(model.layers[1].forward(model.layers[0].forward(X)))
    np.testing.assert_array_equal(Z, expected)
    model.backward(np.ones((5, 2), dtype=np.float32), input_grad=False)
    assert model.grads["2.W"].dtype == np.float32 and model.grads["0.W"].dtype == np.float64
