"""Property-based tests: random shapes, dtypes and values through forward, backward, fit, save
and load, checking what must always hold.

- shapes: outputs, gradients and parameter gradients have the documented shapes and dtypes;
- finiteness: finite inputs of bounded magnitude give finite outputs, losses and gradients;
- determinism: the same seed gives bitwise the same weights, history and predictions;
- round trip: ``load(save(m))`` predicts bitwise the same, and saving it again gives the same
  bytes;
- nothing is mutated: backward never writes into ``dY``, forward and fit never into ``X``/``y``;
- no global random state: NumPy's global generator is never read nor advanced.

Hypothesis runs under the profile that ``conftest.py`` loads (small and derandomized in CI).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jacnet import (
    SGD,
    Adam,
    Affine,
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    LeakyReLU,
    MeanSquaredError,
    NonFiniteError,
    ReLU,
    Sequential,
    Sigmoid,
    SigmoidBinaryCrossEntropy,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
    build_mlp,
    fit,
    load,
    load_checkpoint,
    save,
)

FLOATS = (np.float32, np.float64)
INPUT_DTYPES = (np.float32, np.float64, np.int64, np.int32)


@contextlib.contextmanager
def global_rng_untouched() -> Iterator[None]:
    """Fail if anything inside reads or advances NumPy's global RandomState."""
    before = np.random.get_state()
    yield
    after = np.random.get_state()
    assert before[0] == after[0] and before[2:] == after[2:]
    assert np.array_equal(before[1], after[1])


def arrays(draw: st.DrawFn, dtype: Any, shape: tuple[int, ...], bound: float) -> np.ndarray:
    """An array of ``dtype`` and ``shape`` with entries in ``[-bound, bound]``."""
    if np.dtype(dtype).kind in "iu":
        elements = st.integers(-int(bound), int(bound))
    else:
        elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=32)
    return draw(hnp.arrays(dtype, shape, elements=elements))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# Layers -------------------------------------------------------------------------------------

LAYER_NAMES = ("Affine", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax")


def make_layer(name: str, n_in: int, n_out: int, dtype: Any, seed: int) -> Any:
    if name == "Affine":
        return Affine(n_in, n_out, rng=seed, dtype=dtype)
    if name == "LeakyReLU":
        return LeakyReLU(0.1)
    return {"ReLU": ReLU, "Sigmoid": Sigmoid, "Tanh": Tanh, "Softmax": Softmax}[name]()


@given(st.data())
def test_layer_forward_backward_invariants(data: st.DataObject) -> None:
    draw = data.draw
    name = draw(st.sampled_from(LAYER_NAMES))
    n, d, m = draw(st.integers(1, 6)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    x_dtype = draw(st.sampled_from(INPUT_DTYPES))
    param_dtype = draw(st.sampled_from(FLOATS))
    seed = draw(st.integers(0, 2**32 - 1))
    X = arrays(draw, x_dtype, (n, d), 100)
    X_before = X.copy()

    with global_rng_untouched():
        layer = make_layer(name, d, m, param_dtype, seed)
        Y = layer.forward(X)
        Y_again = make_layer(name, d, m, param_dtype, seed).forward(X)
    width = m if name == "Affine" else d
    compute = (np.dtype(param_dtype) if name == "Affine"
               else X.dtype if X.dtype.kind == "f" else np.dtype(np.float64))
    assert Y.shape == (n, width) and Y.dtype == compute
    assert np.isfinite(Y).all()
    assert same_bits(Y, Y_again)  # deterministic: same seed, same input, same bits
    assert same_bits(X, X_before)  # forward never writes into its input

    dY = arrays(draw, draw(st.sampled_from(FLOATS)), Y.shape, 100)
    dY_before = dY.copy()
    dX = layer.backward(dY)
    grads = {k: g.copy() for k, g in layer.grads.items()}
    assert same_bits(dY, dY_before)  # backward never writes into dY
    assert dX.shape == X.shape and dX.dtype == compute and np.isfinite(dX).all()
    assert grads.keys() == layer.params.keys()
    for k, g in grads.items():
        assert g.shape == layer.params[k].shape and g.dtype == layer.params[k].dtype
        assert np.isfinite(g).all()
    dX_again = layer.backward(dY)  # nothing accumulates
    assert same_bits(dX, dX_again)
    assert all(same_bits(g, layer.grads[k]) for k, g in grads.items())


# Losses -------------------------------------------------------------------------------------

LOSS_NAMES = ("mse", "bce", "cce", "softmax_ce", "sigmoid_bce")
LOSS_CLASSES = {"mse": MeanSquaredError, "bce": BinaryCrossEntropy, "cce": CategoricalCrossEntropy,
                "softmax_ce": SoftmaxCrossEntropy, "sigmoid_bce": SigmoidBinaryCrossEntropy}


def draw_target(draw: st.DrawFn, name: str, n: int, k: int) -> np.ndarray:
    """A valid target for loss ``name`` and an ``(n, k)`` prediction, in one of its layouts."""
    if name == "mse":
        return arrays(draw, draw(st.sampled_from(INPUT_DTYPES)), (n, k), 50)
    if name in ("bce", "sigmoid_bce"):
        shape = draw(st.sampled_from([(n, k), (n,)] if k == 1 else [(n, k)]))
        if draw(st.booleans()):  # hard labels, as integers
            return draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 1)))
        return draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1)))
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    return labels if draw(st.booleans()) else np.eye(k)[labels]


@given(st.data())
def test_loss_invariants(data: st.DataObject) -> None:
    draw = data.draw
    name = draw(st.sampled_from(LOSS_NAMES))
    n, k = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(FLOATS))
    if name in ("bce", "cce"):  # probabilities, 0 and 1 included
        pred = draw(hnp.arrays(dtype, (n, k), elements=st.floats(0, 1, width=32)))
    else:  # logits or regression outputs
        pred = arrays(draw, dtype, (n, k), 60)
    target = draw_target(draw, name, n, k)
    pred_before, target_before = pred.copy(), target.copy()

    with global_rng_untouched():
        loss = LOSS_CLASSES[name]()
        value = loss.forward(pred, target)
        grad = loss.backward()
    assert isinstance(value, float) and np.isfinite(value) and value >= 0
    assert grad.shape == pred.shape and grad.dtype == pred.dtype and np.isfinite(grad).all()
    assert same_bits(pred, pred_before) and same_bits(target, target_before)
    again = LOSS_CLASSES[name]()
    assert again.forward(pred, target) == value
    assert same_bits(again.backward(), grad)
    assert same_bits(loss.backward(), grad)  # backward twice: the same, nothing accumulates
    assert loss.jacobian(pred, target).shape == pred.shape


# Networks, fit and determinism -----------------------------------------------------------------


@st.composite
def networks(draw: st.DrawFn, trainable_output: bool = True) -> dict[str, Any]:
    """A random small MLP description, a loss that suits it, and data for it."""
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    loss = draw(st.sampled_from(["mse", "softmax_ce", "sigmoid_bce"] if trainable_output else LOSS_NAMES))
    output = None
    if loss == "cce":
        output = "softmax"
    elif loss == "bce":
        output = "sigmoid"
    spec = {
        "n_in": n_in,
        "hidden": draw(st.lists(st.integers(1, 5), max_size=2)),
        "n_out": n_out,
        "activation": draw(st.sampled_from(["relu", "leaky_relu", "sigmoid", "tanh"])),
        "output": output,
        "dtype": draw(st.sampled_from(FLOATS)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "loss": loss,
    }
    n = draw(st.integers(1, 12))
    spec["X"] = arrays(draw, draw(st.sampled_from(INPUT_DTYPES)), (n, n_in), 3)
    spec["y"] = draw_target(draw, loss, n, n_out)
    return spec


def build(spec: dict[str, Any]) -> Sequential:
    return build_mlp(spec["n_in"], spec["hidden"], spec["n_out"], activation=spec["activation"],
                     output=spec["output"], rng=spec["seed"], dtype=spec["dtype"])


def without_time(history: Any) -> dict[str, list[float]]:
    return {k: v for k, v in history.history.items() if k != "seconds"}


@given(networks(), st.integers(1, 2), st.integers(1, 16), st.sampled_from(["sgd", "adam"]),
       st.integers(0, 2**32 - 1))
def test_fit_is_finite_deterministic_and_leaves_its_inputs(spec: dict[str, Any], epochs: int,
                                                            batch_size: int, optimizer: str,
                                                            seed: int) -> None:
    X, y = spec["X"], spec["y"]
    X_before, y_before = X.copy(), y.copy()
    runs = []
    with global_rng_untouched():
        for _ in range(2):
            model = build(spec)
            opt = SGD(1e-3, momentum=0.9) if optimizer == "sgd" else Adam(1e-3)
            history = fit(model, X, y, loss=LOSS_CLASSES[spec["loss"]](), optimizer=opt,
                          epochs=epochs, batch_size=batch_size, seed=seed, verbose=0)
            runs.append((model, history, model.predict(X)))
    (a, history_a, pred_a), (b, history_b, pred_b) = runs
    assert len(history_a) == epochs and np.isfinite(history_a["loss"]).all()
    assert without_time(history_a) == without_time(history_b)
    for k, p in a.params.items():
        assert p.dtype == np.dtype(spec["dtype"]) and np.isfinite(p).all()
        assert same_bits(p, b.params[k])
    assert pred_a.shape == (X.shape[0], spec["n_out"]) and pred_a.dtype == np.dtype(spec["dtype"])
    assert np.isfinite(pred_a).all() and same_bits(pred_a, pred_b)
    assert same_bits(X, X_before) and same_bits(y, y_before)


@given(networks(trainable_output=False), st.data())
def test_network_backward_invariants(spec: dict[str, Any], data: st.DataObject) -> None:
    model = build(spec)
    X = spec["X"]
    with global_rng_untouched():
        Y = model.forward(X)
    assert Y.shape == (X.shape[0], spec["n_out"]) and np.isfinite(Y).all()
    dY = arrays(data.draw, data.draw(st.sampled_from(FLOATS)), Y.shape, 10)
    dY_before = dY.copy()
    dX = model.backward(dY)
    full = {k: g.copy() for k, g in model.grads.items()}
    assert dX is not None and dX.shape == X.shape and np.isfinite(dX).all()
    assert same_bits(dY, dY_before)
    # The shortcut that skips the first layer's dX gives bitwise the same parameter gradients.
    assert model.backward(dY, input_grad=False) is None
    for k, g in model.grads.items():
        assert g.shape == model.params[k].shape and np.isfinite(g).all()
        assert same_bits(g, full[k])
    assert same_bits(dY, dY_before)


# Save and load ----------------------------------------------------------------------------------


@given(networks(trainable_output=False), st.booleans(), st.sampled_from(["none", "sgd", "adam"]),
       st.data())
def test_save_load_round_trip_is_bitwise(spec: dict[str, Any], with_loss: bool, optimizer: str,
                                         data: st.DataObject) -> None:
    model = build(spec)
    if with_loss:
        model.loss = LOSS_CLASSES[spec["loss"]]()
    opt: Any = None
    if optimizer != "none":
        opt = SGD(0.01, momentum=0.5) if optimizer == "sgd" else Adam(0.01)
        with np.errstate(all="ignore"):
            for _ in range(data.draw(st.integers(1, 3))):  # move the weights, fill the state
                Y = model.forward(spec["X"])
                model.backward(np.ones_like(Y) / Y.size, input_grad=False)
                opt.step(model.params, model.grads)
    X = arrays(data.draw, data.draw(st.sampled_from(INPUT_DTYPES)), (data.draw(st.integers(1, 9)),
                                                                   spec["n_in"]), 50)
    with tempfile.TemporaryDirectory() as tmp, global_rng_untouched():
        path = save(model, Path(tmp) / "model.jacnet", opt)
        loaded = load(path)
        checkpoint = load_checkpoint(path)
        resaved = save(checkpoint.model, Path(tmp) / "again.jacnet", checkpoint.optimizer)
        assert resaved.read_bytes() == path.read_bytes()  # the round trip loses nothing
    assert [type(x) for x in loaded.layers] == [type(x) for x in model.layers]
    assert repr(loaded) == repr(model)
    assert type(loaded.loss) is type(model.loss)
    assert loaded.params.keys() == model.params.keys()
    assert all(same_bits(loaded.params[k], p) for k, p in model.params.items())
    assert same_bits(loaded.predict(X), model.predict(X))
    if opt is None:
        assert checkpoint.optimizer is None
    else:
        restored = checkpoint.optimizer
        assert restored is not None and type(restored) is type(opt)
        assert restored.hyperparameters() == opt.hyperparameters()
        assert restored.iterations == opt.iterations
        state, restored_state = opt.state_dict()["state"], restored.state_dict()["state"]
        assert state.keys() == restored_state.keys()
        assert all(same_bits(state[k], restored_state[k]) for k in state)


@given(networks(), st.data())
def test_fit_never_leaves_a_non_finite_model(spec: dict[str, Any], data: st.DataObject) -> None:
    """Any finite X, however large, and any learning rate: fit either trains to finite weights
    or stops with NonFiniteError, and in both cases the weights it leaves are finite."""
    draw = data.draw
    X = draw(hnp.arrays(np.float64, spec["X"].shape,
                        elements=st.floats(allow_nan=False, allow_infinity=False)))
    lr = draw(st.sampled_from([1e-3, 1.0, 1e6, 1e30]))
    optimizer = SGD(lr) if draw(st.booleans()) else Adam(lr)
    model = build(spec)
    try:
        fit(model, X, spec["y"], loss=LOSS_CLASSES[spec["loss"]](), optimizer=optimizer,
            epochs=draw(st.integers(1, 3)), batch_size=draw(st.integers(1, 8)), seed=0, verbose=0)
    except NonFiniteError as exc:
        assert "fit X" in str(exc) or "diverged" in str(exc), str(exc)
    for p in model.params.values():
        assert np.isfinite(p).all()
