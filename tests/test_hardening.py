"""Hardening: the whole library tried as an attacker and a careless user would.

Three parts:

- A table of bad inputs across the public API (layers, losses, Sequential, fit, evaluate,
  the Jacobian tools, optimizers, schedules and callbacks; then ``jacnet.sklearn`` and the
  command line where they import). Each must raise a jacnet error that is also a
  ``ValueError``/``TypeError``, from jacnet's own code (never from deep inside NumPy), whose
  message names the argument and says what was expected; or, where the input is legal, give
  the correct result, which is asserted. Huge finite values (1e308) get an explicit decision
  per entry point.
- A bounded fuzz of the model loader: thousands of mutated copies of a valid file, each of
  which must raise ``ModelFileError`` within a time and memory bound.
- The fault tests that ``test_io.py`` and ``test_train.py`` do not already cover.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
import random
import re
import struct
import time
import traceback
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jacnet
from jacnet import (
    SGD,
    Adam,
    Affine,
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    CosineDecay,
    EarlyStopping,
    ForwardNotCalledError,
    JacnetError,
    JacnetTypeError,
    JacnetValueError,
    LeakyReLU,
    LearningRateScheduler,
    MeanSquaredError,
    ModelCheckpoint,
    ModelFileError,
    NonFiniteError,
    ReLU,
    Sequential,
    ShapeError,
    Sigmoid,
    SigmoidBinaryCrossEntropy,
    Softmax,
    SoftmaxCrossEntropy,
    StepDecay,
    Tanh,
    build_mlp,
    check_gradients,
    evaluate,
    expanded_jacobian,
    fit,
    load,
    load_checkpoint,
    numerical_jacobian,
    save,
)
from jacnet.io import MAGIC

N, D, K = 4, 3, 3  # samples, features, classes of the data every case starts from
X_GOOD = np.random.default_rng(0).standard_normal((N, D))
LABELS = np.array([0, 1, 2, 0])
SRC = os.path.dirname(jacnet.__file__) + os.sep  # where a clear error must come from


def raises_clearly(call: Callable[[], Any], error: type[JacnetError], name: str) -> str:
    """Assert ``call()`` raises ``error`` from jacnet's own code, with a message that matches the
    regular expression ``name`` (the argument) and says what was expected."""
    with pytest.raises(JacnetError) as info:
        call()
    exc = info.value
    message = str(exc)
    assert isinstance(exc, error), f"{type(exc).__name__} is not a {error.__name__}: {message}"
    assert isinstance(exc, (ValueError, TypeError))
    assert re.search(name, message), f"{name!r} not in {message!r}"
    assert "expects" in message or "diverged" in message, message
    frame = traceback.extract_tb(info.tb)[-1]
    assert frame.filename.startswith(SRC), frame
    return message


def mlp(dtype: Any = np.float32, loss: Any = None) -> Sequential:
    model = build_mlp(D, [5], K, rng=0, dtype=dtype)
    model.loss = loss
    return model


def quiet_fit(model: Sequential, X: Any, y: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("loss", SoftmaxCrossEntropy())
    kwargs.setdefault("epochs", 1)
    kwargs.setdefault("seed", 0)
    return fit(model, X, y, verbose=0, **kwargs)


def params_of(model: Sequential) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.params.items()}


def _fit_with(**kwargs: Any) -> Any:
    return quiet_fit(mlp(), X_GOOD, LABELS, **kwargs)


def _layer_forward(make: Callable[[], Any], X: Any) -> Any:
    return make().forward(X)


def _loss_forward(make: Callable[[], Any], target: Any, pred: Any) -> Any:
    return make().forward(pred, target)


def _layer_backward(make: Callable[[], Any]) -> Any:
    return make().backward(np.ones((N, 4)))


def _loss_backward(make: Callable[[], Any]) -> Any:
    return make().backward()


# Part 1: the table of bad inputs -----------------------------------------------------------

#: Bad values for an ``X``-like argument, shape ``(N, D)`` when it has one: (value, error).
BAD_X: dict[str, tuple[Any, type[JacnetError]]] = {
    "nan": (np.where(np.eye(N, D) > 0, np.nan, X_GOOD), NonFiniteError),
    "+inf": (np.where(np.eye(N, D) > 0, np.inf, X_GOOD), NonFiniteError),
    "-inf": (np.where(np.eye(N, D) > 0, -np.inf, X_GOOD), NonFiniteError),
    "zero-samples": (np.zeros((0, D)), ShapeError),
    "zero-features": (np.zeros((N, 0)), ShapeError),
    "0-D": (np.float64(1.5), ShapeError),
    "1-D": (X_GOOD[0], ShapeError),
    "3-D": (X_GOOD[:, :, None], ShapeError),
    "strings": (X_GOOD.astype(str), JacnetTypeError),
    "object": (np.array([[1.0, None, 2.0]] * N, dtype=object), JacnetTypeError),
    "complex": (X_GOOD.astype(complex), JacnetTypeError),
    "boolean": (X_GOOD > 0, JacnetTypeError),
    "None": (None, JacnetTypeError),
    "str": ("1, 2, 3", JacnetTypeError),
    "ragged": ([[1.0, 2.0, 3.0], [1.0]], JacnetTypeError),
}

LAYERS: dict[str, Callable[[], Any]] = {
    "Affine": lambda: Affine(D, 2, rng=0),
    "ReLU": ReLU,
    "LeakyReLU": LeakyReLU,
    "Sigmoid": Sigmoid,
    "Tanh": Tanh,
    "Softmax": Softmax,
}
UNIFORM = np.full((N, K), 1 / K)
#: Each loss with a valid (pred, target) pair of ``(N, K)`` predictions.
LOSSES: dict[str, tuple[Callable[[], Any], np.ndarray, Any]] = {
    "MeanSquaredError": (MeanSquaredError, X_GOOD, np.zeros((N, K))),
    "BinaryCrossEntropy": (BinaryCrossEntropy, UNIFORM, np.eye(N, K)),
    "CategoricalCrossEntropy": (CategoricalCrossEntropy, UNIFORM, LABELS),
    "SoftmaxCrossEntropy": (SoftmaxCrossEntropy, X_GOOD, LABELS),
    "SigmoidBinaryCrossEntropy": (SigmoidBinaryCrossEntropy, X_GOOD, np.eye(N, K)),
}

#: Every public entry point that takes an ``X``: (call with X, regex naming the argument).
X_ENTRIES: dict[str, tuple[Callable[[Any], Any], str]] = {
    **{f"{name}.forward": (partial(_layer_forward, make), r"\bX\b") for name, make in LAYERS.items()},
    "Sequential.forward": (lambda X: mlp().forward(X), r"\bX\b"),
    "Sequential.predict": (lambda X: mlp().predict(X), r"\bX\b"),
    "Sequential.predict_proba": (lambda X: mlp().predict_proba(X), r"\bX\b"),
    "Sequential.predict_classes": (lambda X: mlp().predict_classes(X), r"\bX\b"),
    "fit": (lambda X: quiet_fit(mlp(), X, LABELS), r"fit X"),
    "fit-validation": (lambda X: quiet_fit(mlp(), X_GOOD, LABELS, validation=(X, LABELS)),
                       r"fit validation X"),
    "evaluate": (lambda X: evaluate(mlp(), X, LABELS, loss=SoftmaxCrossEntropy()), r"evaluate X"),
    "expanded_jacobian": (lambda X: expanded_jacobian(Affine(K, 2, rng=0), X), r"\bX\b"),
    "numerical_jacobian": (lambda X: numerical_jacobian(Affine(K, 2, rng=0), X), r"\bX\b"),
    "check_gradients": (lambda X: check_gradients(Affine(K, 2, rng=0), X), r"\bX\b"),
    **{f"{name}.forward-pred": (partial(_loss_forward, make, t), r"\bpred\b")
       for name, (make, _, t) in LOSSES.items()},
}

#: Layers that take inputs of any rank (a ReLU after a convolution sees (N, C, L)), and those
#: that take any rank from 2 up (softmax over the last axis).
ANY_RANK = {"ReLU.forward", "LeakyReLU.forward", "Sigmoid.forward", "Tanh.forward"}
X_CASES = [pytest.param(entry, bad, id=f"{entry}[{bad}]") for entry in X_ENTRIES for bad in BAD_X
           if not ((entry in ANY_RANK and bad in ("1-D", "3-D"))
                   or (entry == "Softmax.forward" and bad == "3-D"))]


@pytest.mark.parametrize("entry", sorted(ANY_RANK))
def test_elementwise_layers_take_any_rank(entry: str) -> None:
    call, _ = X_ENTRIES[entry]
    for X in (X_GOOD[0], X_GOOD[:, :, None]):
        assert call(X).shape == X.shape


@pytest.mark.parametrize(("entry", "bad"), X_CASES)
def test_bad_x(entry: str, bad: str) -> None:
    call, name = X_ENTRIES[entry]
    value, error = BAD_X[bad]
    raises_clearly(lambda: call(value), error, name)


#: Bad upstream gradients, built from the layer's output shape ``(n, m)``.
BAD_DY: dict[str, tuple[Callable[[int, int], Any], type[JacnetError]]] = {
    "nan": (lambda n, m: np.full((n, m), np.nan), NonFiniteError),
    "inf": (lambda n, m: np.full((n, m), -np.inf), NonFiniteError),
    "1-D": (lambda n, m: np.ones(n), ShapeError),
    "wrong-width": (lambda n, m: np.ones((n, m + 1)), ShapeError),
    "wrong-batch": (lambda n, m: np.ones((n + 1, m)), ShapeError),
    "transposed": (lambda n, m: np.ones((m, n)), ShapeError),
    "3-D": (lambda n, m: np.ones((n, m, 1)), ShapeError),
    "(N,1)-broadcastable": (lambda n, m: np.ones((n, 1)), ShapeError),
    "zero-samples": (lambda n, m: np.ones((0, m)), ShapeError),
    "strings": (lambda n, m: np.full((n, m), "1"), JacnetTypeError),
    "object": (lambda n, m: np.full((n, m), None, dtype=object), JacnetTypeError),
    "complex": (lambda n, m: np.ones((n, m), dtype=complex), JacnetTypeError),
    "boolean": (lambda n, m: np.ones((n, m), dtype=bool), JacnetTypeError),
    "None": (lambda n, m: None, JacnetTypeError),
    "ragged": (lambda n, m: [[1.0] * m, [1.0]], JacnetTypeError),
}


def _forwarded(entry: str) -> tuple[Any, tuple[int, int]]:
    if entry == "Sequential":
        model = mlp(np.float64)
        return model, model.forward(X_GOOD).shape
    layer = LAYERS[entry]()
    return layer, layer.forward(X_GOOD).shape


DY_CASES = [pytest.param(entry, bad, id=f"{entry}.backward[{bad}]")
            for entry in [*LAYERS, "Sequential"] for bad in BAD_DY]


@pytest.mark.parametrize(("entry", "bad"), DY_CASES)
def test_bad_upstream_gradient(entry: str, bad: str) -> None:
    module, (n, m) = _forwarded(entry)
    make, error = BAD_DY[bad]
    if bad == "(N,1)-broadcastable" and m == 1:
        pytest.skip("(N, 1) is the right shape here")
    raises_clearly(lambda: module.backward(make(n, m)), error, r"backward dY")


BEFORE_FORWARD: dict[str, Callable[[], Any]] = {
    **{f"{name}.backward": partial(_layer_backward, make) for name, make in LAYERS.items()},
    "Affine.backward_params": lambda: Affine(D, 4).backward_params(np.ones((N, 4))),
    "Sequential.backward": lambda: mlp().backward(np.ones((N, K))),
    "Sequential.backward-input_grad=False": lambda: mlp().backward(np.ones((N, K)), input_grad=False),
    **{f"{name}.backward": partial(_loss_backward, make) for name, (make, _, _) in LOSSES.items()},
}


@pytest.mark.parametrize("entry", list(BEFORE_FORWARD))
def test_backward_before_forward(entry: str) -> None:
    message = raises_clearly(BEFORE_FORWARD[entry], ForwardNotCalledError, r"backward")
    assert "forward" in message


#: Bad targets for every loss (against its valid ``(N, K)`` prediction): (target, error).
BAD_TARGET_ALL: dict[str, tuple[Any, type[JacnetError]]] = {
    "None": (None, JacnetTypeError),
    "nan": (np.full((N, K), np.nan), NonFiniteError),
    "inf": (np.full((N, K), np.inf), NonFiniteError),
    "strings": (np.full((N, K), "0"), JacnetTypeError),
    "object": (np.full((N, K), None, dtype=object), JacnetTypeError),
    "complex": (np.eye(N, K, dtype=complex), JacnetTypeError),
    "boolean": (np.eye(N, K, dtype=bool), JacnetTypeError),
    "str": ("labels", JacnetTypeError),
    "ragged": ([[1.0, 0.0, 0.0], [1.0]], JacnetTypeError),
    "(1,K)-broadcastable": (np.eye(1, K), ShapeError),
    "(K,)-broadcastable": (np.zeros(K), ShapeError),
    "(N,1)-broadcastable": (np.ones((N, 1)), ShapeError),
    "(N,K,1)": (np.eye(N, K)[:, :, None], ShapeError),
    "(N+1,K)": (np.eye(N + 1, K), ShapeError),
    "zero-samples": (np.zeros((0, K)), ShapeError),
}
#: Only for the categorical losses (labels or one-hot rows).
BAD_TARGET_CLASSES: dict[str, tuple[Any, type[JacnetError]]] = {
    "label-out-of-range": (np.array([0, 1, K, 0]), JacnetValueError),
    "label-negative": (np.array([0, -1, 2, 0]), JacnetValueError),
    "label-huge": (np.array([0, 1, 1e20, 0]), JacnetValueError),
    "label-huge-uint64": (np.array([0, 1, 2**64 - 1, 0], dtype=np.uint64), JacnetValueError),
    "label-continuous": (np.array([0.0, 0.5, 1.0, 2.0]), JacnetValueError),
    "label-nan": (np.array([0.0, np.nan, 1.0, 2.0]), JacnetValueError),
    "label-inf": (np.array([0.0, np.inf, 1.0, 2.0]), JacnetValueError),
    "label-strings": (np.array(["a", "b", "c", "a"]), JacnetTypeError),
    "label-object": (np.array([0, None, 1, 2], dtype=object), JacnetTypeError),
    "label-boolean": (np.array([True, False, True, False]), JacnetTypeError),
    "label-complex": (LABELS.astype(complex), JacnetTypeError),
    "label-wrong-count": (LABELS[:-1], ShapeError),
    "rows-not-summing-to-1": (np.full((N, K), 0.5), JacnetValueError),
    "negative-probabilities": (np.tile([1.5, -0.5, 0.0], (N, 1)), JacnetValueError),
}
#: Only for the binary losses.
BAD_TARGET_BINARY: dict[str, tuple[Any, type[JacnetError]]] = {
    "above-1": (np.full((N, K), 1.5), JacnetValueError),
    "below-0": (np.full((N, K), -0.5), JacnetValueError),
    "(N,)-for-K-outputs": (np.zeros(N), ShapeError),
}
#: Only for mean squared error.
BAD_TARGET_MSE: dict[str, tuple[Any, type[JacnetError]]] = {
    "(N,)-for-K-outputs": (np.zeros(N), ShapeError),
}
CLASSES = {"CategoricalCrossEntropy", "SoftmaxCrossEntropy"}
BINARY = {"BinaryCrossEntropy", "SigmoidBinaryCrossEntropy"}


def _target_cases() -> Iterator[Any]:
    for loss in LOSSES:
        extra = (BAD_TARGET_CLASSES if loss in CLASSES else BAD_TARGET_BINARY if loss in BINARY
                 else BAD_TARGET_MSE)
        for bad, (value, error) in {**BAD_TARGET_ALL, **extra}.items():
            yield pytest.param(loss, value, error, id=f"{loss}[target-{bad}]")


TARGET_CASES = list(_target_cases())


@pytest.mark.parametrize(("loss", "target", "error"), TARGET_CASES)
def test_bad_target(loss: str, target: Any, error: type[JacnetError]) -> None:
    make, pred, _ = LOSSES[loss]
    raises_clearly(lambda: make().forward(pred, target), error, r"\btarget\b")
    # expanded_jacobian reads the target through the same checks
    raises_clearly(lambda: make().jacobian(pred, target), error, r"\btarget\b")


PRED_CASES = [
    *[pytest.param(loss, np.full((N, K), v), id=f"{loss}[pred-{v}]")
      for loss in ("BinaryCrossEntropy", "CategoricalCrossEntropy") for v in (1.5, -0.5)],
    # (N,) predictions against (N, 1) targets would broadcast to (N, N): refused for every loss.
    *[pytest.param(loss, np.full(N, 0.5), id=f"{loss}[pred-(N,)-vs-target-(N,1)]") for loss in LOSSES],
]


@pytest.mark.parametrize(("loss", "pred"), PRED_CASES)
def test_bad_pred(loss: str, pred: np.ndarray) -> None:
    make, _, _ = LOSSES[loss]
    target = np.ones((N, 1)) if pred.ndim == 1 else LOSSES[loss][2]
    raises_clearly(lambda: make().forward(pred, target), JacnetValueError, r"\bpred\b")


#: Bad targets for fit and evaluate: (model factory, loss, y, error).
def _sce() -> SoftmaxCrossEntropy:
    return SoftmaxCrossEntropy()


BAD_Y: dict[str, tuple[Callable[[], Sequential], Callable[[], Any], Any, type[JacnetError]]] = {
    "None": (mlp, _sce, None, JacnetValueError),
    "nan-labels": (mlp, _sce, np.array([0, np.nan, 1, 2]), JacnetValueError),
    "nan-regression": (mlp, MeanSquaredError, np.full((N, K), np.nan), NonFiniteError),
    "inf-regression": (mlp, MeanSquaredError, np.full((N, K), np.inf), NonFiniteError),
    "fewer-than-X": (mlp, _sce, LABELS[:-1], ShapeError),
    "more-than-X": (mlp, _sce, np.append(LABELS, 0), ShapeError),
    "scalar": (mlp, _sce, 1, ShapeError),
    "str": (mlp, _sce, "0120", JacnetTypeError),
    "ragged": (mlp, _sce, [[0], [1, 2], [0], [1]], JacnetTypeError),
    "continuous-for-classifier": (mlp, _sce, np.linspace(0, 2, N), JacnetValueError),
    "label-out-of-range": (mlp, _sce, np.array([0, 1, 3, 0]), JacnetValueError),
    "label-negative": (mlp, _sce, np.array([0, -1, 1, 0]), JacnetValueError),
    "label-strings": (mlp, _sce, np.array(["a", "b", "c", "a"]), JacnetTypeError),
    "label-object": (mlp, _sce, LABELS.astype(object), JacnetTypeError),
    "label-complex": (mlp, _sce, LABELS.astype(complex), JacnetTypeError),
    "label-boolean": (mlp, _sce, LABELS > 0, JacnetTypeError),
    "(N,1)-labels-for-K-outputs": (mlp, _sce, LABELS[:, None], ShapeError),
    "(N,)-for-K-regression-outputs": (mlp, MeanSquaredError, np.zeros(N), ShapeError),
    "binary-target-above-1": (lambda: build_mlp(D, [5], 1, rng=0), SigmoidBinaryCrossEntropy,
                              np.array([0.0, 1.7, 1.0, 0.0]), JacnetValueError),
}
Y_CASES = [pytest.param(where, bad, id=f"{where}[y-{bad}]") for where in ("fit", "evaluate")
           for bad in BAD_Y]


@pytest.mark.parametrize(("where", "bad"), Y_CASES)
def test_bad_y(where: str, bad: str) -> None:
    make_model, make_loss, y, error = BAD_Y[bad]
    model = make_model()
    before = params_of(model)
    if where == "fit":
        raises_clearly(lambda: quiet_fit(model, X_GOOD, y, loss=make_loss()), error, r"fit y\b")
    else:
        raises_clearly(lambda: evaluate(model, X_GOOD, y, loss=make_loss()), error, r"evaluate y\b")
    for k, p in model.params.items():  # a refused call changes nothing
        assert p.tobytes() == before[k].tobytes()


WRONG_WIDTH = np.ones((N, D + 1))
FEATURE_CASES: dict[str, Callable[[], Any]] = {
    "Sequential.forward": lambda: mlp().forward(WRONG_WIDTH),
    "Sequential.predict": lambda: mlp().predict(WRONG_WIDTH),
    "Sequential.predict_proba": lambda: mlp().predict_proba(WRONG_WIDTH),
    "Sequential.predict_classes": lambda: mlp().predict_classes(WRONG_WIDTH),
    "fit": lambda: quiet_fit(mlp(), WRONG_WIDTH, LABELS),
    "fit-validation": lambda: quiet_fit(mlp(), X_GOOD, LABELS, validation=(X_GOOD[:, :2], LABELS)),
    "evaluate": lambda: evaluate(mlp(), WRONG_WIDTH, LABELS, loss=SoftmaxCrossEntropy()),
    "Affine.forward": lambda: Affine(D, 2).forward(WRONG_WIDTH),
    "expanded_jacobian": lambda: expanded_jacobian(Affine(D, 2), WRONG_WIDTH),
    "check_gradients": lambda: check_gradients(mlp(np.float64), WRONG_WIDTH),
}


@pytest.mark.parametrize("entry", list(FEATURE_CASES))
def test_wrong_feature_count(entry: str) -> None:
    message = raises_clearly(FEATURE_CASES[entry], ShapeError, r"\bX\b")
    assert (str(D) in message and str(D + 1) in message) or "(4, 2)" in message


def _step(params: Any, grads: Any) -> None:
    SGD().step(params, grads)


def _fit_with_schedule(value: Any) -> Any:
    return quiet_fit(mlp(), X_GOOD, LABELS, epochs=2,
                     callbacks=[LearningRateScheduler(lambda epoch, lr: value)])


NAN, INF = float("nan"), float("inf")
#: Hyper-parameters and other arguments: (call, error, regex naming the argument).
ARGUMENTS: dict[str, tuple[Callable[[], Any], type[JacnetError], str]] = {
    **{f"SGD(lr={v!r})": (partial(SGD, lr=v), e, r"SGD lr")
       for v, e in [(0.0, JacnetValueError), (-0.1, JacnetValueError), (NAN, JacnetValueError),
                    (INF, JacnetValueError), ("0.1", JacnetTypeError), (None, JacnetTypeError),
                    (True, JacnetTypeError)]},
    **{f"Adam(lr={v!r})": (partial(Adam, lr=v), e, r"Adam lr")
       for v, e in [(0, JacnetValueError), (-1e-3, JacnetValueError), (NAN, JacnetValueError),
                    (-INF, JacnetValueError), ("fast", JacnetTypeError)]},
    "optimizer.lr=nan": (lambda: setattr(Adam(), "lr", NAN), JacnetValueError, r"lr"),
    "schedule->0": (lambda: _fit_with_schedule(0.0), JacnetValueError, r"\blr\b"),
    "schedule->nan": (lambda: _fit_with_schedule(NAN), JacnetValueError, r"\blr\b"),
    "schedule->str": (lambda: _fit_with_schedule("1e-3"), JacnetTypeError, r"\blr\b"),
    "SGD(momentum=1)": (lambda: SGD(momentum=1.0), JacnetValueError, r"momentum"),
    "SGD(momentum=-0.1)": (lambda: SGD(momentum=-0.1), JacnetValueError, r"momentum"),
    "SGD(momentum=nan)": (lambda: SGD(momentum=NAN), JacnetValueError, r"momentum"),
    "SGD(nesterov='yes')": (lambda: SGD(momentum=0.9, nesterov="yes"),  # type: ignore[arg-type]
                            JacnetTypeError, r"nesterov"),
    "SGD(nesterov, momentum=0)": (lambda: SGD(nesterov=True), JacnetValueError, r"nesterov"),
    "SGD(weight_decay=-1)": (lambda: SGD(weight_decay=-1.0), JacnetValueError, r"weight_decay"),
    "Adam(weight_decay=nan)": (lambda: Adam(weight_decay=NAN), JacnetValueError, r"weight_decay"),
    "Adam(betas=(1, .9))": (lambda: Adam(betas=(1.0, 0.9)), JacnetValueError, r"betas"),
    "Adam(betas=(.9, nan))": (lambda: Adam(betas=(0.9, NAN)), JacnetValueError, r"betas"),
    "Adam(betas=(.9,))": (lambda: Adam(betas=(0.9,)), JacnetTypeError, r"betas"),  # type: ignore[arg-type]
    "Adam(eps=0)": (lambda: Adam(eps=0.0), JacnetValueError, r"eps"),
    "Adam(eps=nan)": (lambda: Adam(eps=NAN), JacnetValueError, r"eps"),
    **{f"fit(epochs={v!r})": (partial(_fit_with, epochs=v), e, r"fit epochs")
       for v, e in [(0, JacnetValueError), (-1, JacnetValueError), (2.5, JacnetTypeError),
                    (NAN, JacnetTypeError), (None, JacnetTypeError), (True, JacnetTypeError)]},
    **{f"fit(batch_size={v!r})": (partial(_fit_with, batch_size=v), e, r"fit batch_size")
       for v, e in [(0, JacnetValueError), (-8, JacnetValueError), (2.5, JacnetTypeError),
                    (None, JacnetTypeError)]},
    "fit(validation_split=1)": (lambda: quiet_fit(mlp(), X_GOOD, LABELS, validation_split=1.0),
                                JacnetValueError, r"validation_split"),
    "fit(validation_split=nan)": (lambda: quiet_fit(mlp(), X_GOOD, LABELS, validation_split=NAN),
                                  JacnetValueError, r"validation_split"),
    "fit(validation_split, 1 sample)": (lambda: quiet_fit(mlp(), X_GOOD[:1], LABELS[:1],
                                                          validation_split=0.5),
                                        JacnetValueError, r"validation_split"),
    "fit(seed=-1)": (lambda: quiet_fit(mlp(), X_GOOD, LABELS, seed=-1), JacnetTypeError, r"seed"),
    "fit(seed='0')": (lambda: quiet_fit(mlp(), X_GOOD, LABELS, seed="0"), JacnetTypeError, r"seed"),
    "fit(verbose=3)": (lambda: fit(mlp(), X_GOOD, LABELS, loss=SoftmaxCrossEntropy(), verbose=3),
                       JacnetValueError, r"verbose"),
    "fit(model='mlp')": (lambda: quiet_fit("mlp", X_GOOD, LABELS),  # type: ignore[arg-type]
                         JacnetTypeError, r"fit model"),
    "fit(loss=None, untrained)": (lambda: fit(mlp(), X_GOOD, LABELS, verbose=0), JacnetValueError,
                                  r"fit loss"),
    "fit(optimizer='adam')": (lambda: quiet_fit(mlp(), X_GOOD, LABELS, optimizer="adam"),
                              JacnetTypeError, r"fit optimizer"),
    "fit(callbacks=['stop'])": (lambda: quiet_fit(mlp(), X_GOOD, LABELS, callbacks=["stop"]),
                                JacnetTypeError, r"fit callbacks"),
    "evaluate(batch_size=0)": (lambda: evaluate(mlp(), X_GOOD, LABELS, loss=SoftmaxCrossEntropy(),
                                                batch_size=0), JacnetValueError, r"batch_size"),
    "predict(batch_size=0)": (lambda: mlp().predict(X_GOOD, batch_size=0), JacnetValueError,
                              r"batch_size"),
    **{f"build_mlp(hidden={v!r})": (partial(build_mlp, D, v, K), e, r"hidden")
       for v, e in [([0], JacnetValueError), ([8, 0], JacnetValueError), ([-1], JacnetValueError),
                    ([2.5], JacnetTypeError), ([True], JacnetTypeError), (None, JacnetTypeError),
                    ("64", JacnetTypeError), (64, JacnetTypeError), (object(), JacnetTypeError)]},
    "build_mlp(in_features=0)": (lambda: build_mlp(0, [4], K), JacnetValueError, r"in_features"),
    "build_mlp(out_features=0)": (lambda: build_mlp(D, [4], 0), JacnetValueError, r"out_features"),
    "build_mlp(activation='gelu')": (lambda: build_mlp(D, [4], K, activation="gelu"),
                                     JacnetValueError, r"activation"),
    "build_mlp(output='tanh')": (lambda: build_mlp(D, [4], K, output="tanh"), JacnetValueError,
                                 r"output"),
    "build_mlp(dtype=int)": (lambda: build_mlp(D, [4], K, dtype=int), JacnetTypeError, r"dtype"),
    "build_mlp(rng='seed')": (lambda: build_mlp(D, [4], K, rng="seed"),  # type: ignore[arg-type]
                              JacnetTypeError, r"rng"),
    "build_mlp(rng=-1)": (lambda: build_mlp(D, [4], K, rng=-1), JacnetValueError, r"rng"),
    "Affine(3, 0)": (lambda: Affine(D, 0), JacnetValueError, r"out_features"),
    "Affine(0, 3)": (lambda: Affine(0, D), JacnetValueError, r"in_features"),
    "Affine(2.5, 3)": (lambda: Affine(2.5, D), JacnetTypeError, r"in_features"),  # type: ignore[arg-type]
    "Affine(init='normal')": (lambda: Affine(D, 2, init="normal"), JacnetValueError, r"init"),
    "Affine(dtype='int8')": (lambda: Affine(D, 2, dtype="int8"), JacnetTypeError, r"dtype"),
    "Affine(dtype='nope')": (lambda: Affine(D, 2, dtype="nope"), JacnetTypeError, r"dtype"),
    "LeakyReLU(nan)": (lambda: LeakyReLU(NAN), JacnetValueError, r"negative_slope"),
    "LeakyReLU('0.1')": (lambda: LeakyReLU("0.1"), JacnetTypeError, r"negative_slope"),  # type: ignore[arg-type]
    "Sequential([])": (lambda: Sequential([]), JacnetValueError, r"layers"),
    "Sequential([1])": (lambda: Sequential([1]), JacnetTypeError, r"layers"),  # type: ignore[list-item]
    "Sequential(ReLU())": (lambda: Sequential(ReLU()), JacnetTypeError, r"layers"),  # type: ignore[arg-type]
    "Sequential(loss='mse')": (lambda: Sequential([ReLU()], loss="mse"),  # type: ignore[arg-type]
                               JacnetTypeError, r"loss"),
    "StepDecay(0)": (lambda: StepDecay(0), JacnetValueError, r"step_size"),
    "StepDecay(gamma=0)": (lambda: StepDecay(1, gamma=0.0), JacnetValueError, r"gamma"),
    "CosineDecay(0)": (lambda: CosineDecay(0), JacnetValueError, r"total_epochs"),
    "CosineDecay(min_lr=-1)": (lambda: CosineDecay(5, min_lr=-1.0), JacnetValueError, r"min_lr"),
    "EarlyStopping(patience=-1)": (lambda: EarlyStopping(patience=-1), JacnetValueError, r"patience"),
    "EarlyStopping(min_delta=nan)": (lambda: EarlyStopping(min_delta=NAN), JacnetValueError,
                                     r"min_delta"),
    "EarlyStopping(mode='best')": (lambda: EarlyStopping(mode="best"), JacnetValueError, r"mode"),
    "EarlyStopping(monitor=3)": (lambda: EarlyStopping(monitor=3),  # type: ignore[arg-type]
                                 JacnetTypeError, r"monitor"),
    "EarlyStopping(monitor='val_loss'), no validation": (
        lambda: quiet_fit(mlp(), X_GOOD, LABELS, callbacks=[EarlyStopping()]), JacnetValueError,
        r"monitor"),
    "ModelCheckpoint(None)": (lambda: ModelCheckpoint(None), JacnetTypeError, r"path"),  # type: ignore[arg-type]
    "ModelCheckpoint(3)": (lambda: ModelCheckpoint(3), JacnetTypeError, r"path"),  # type: ignore[arg-type]
    "ModelCheckpoint(monitor=None)": (lambda: ModelCheckpoint("m.jacnet", monitor=None),  # type: ignore[arg-type]
                                      JacnetTypeError, r"monitor"),
    "LearningRateScheduler(0.1)": (lambda: LearningRateScheduler(0.1),  # type: ignore[arg-type]
                                   JacnetValueError, r"schedule"),
    "step(keys differ)": (lambda: _step({"a": np.ones(2)}, {"b": np.ones(2)}), JacnetValueError,
                          r"grads"),
    "step(shapes differ)": (lambda: _step({"a": np.ones(2)}, {"a": np.ones((2, 1))}), ShapeError,
                            r"grads"),
    "step(integer params)": (lambda: _step({"a": np.ones(2, int)}, {"a": np.ones(2)}),
                             JacnetTypeError, r"params"),
    "step(complex grads)": (lambda: _step({"a": np.ones(2)}, {"a": np.ones(2, complex)}),
                            JacnetTypeError, r"grads"),
    "step(lists)": (lambda: _step({"a": [1.0]}, {"a": [1.0]}), JacnetTypeError, r"arrays"),
    "numerical_jacobian(eps=0)": (lambda: numerical_jacobian(Tanh(), X_GOOD, eps=0.0),
                                  JacnetValueError, r"eps"),
    "numerical_jacobian(eps=nan)": (lambda: numerical_jacobian(Tanh(), X_GOOD, eps=NAN),
                                    JacnetValueError, r"eps"),
    "numerical_jacobian(1e308)": (lambda: numerical_jacobian(Tanh(), np.full((1, 2), 1e308)),
                                  JacnetValueError, r"eps"),
    "check_gradients(1e308)": (lambda: check_gradients(Tanh(), np.full((1, 2), 1e308)),
                               JacnetValueError, r"eps"),
    "check_gradients(rtol=nan)": (lambda: check_gradients(Tanh(), X_GOOD, rtol=NAN),
                                  JacnetValueError, r"rtol"),
    "check_gradients(dY wrong shape)": (lambda: check_gradients(Tanh(), X_GOOD, dY=np.ones((N, 1))),
                                        ShapeError, r"dY"),
    "expanded_jacobian(wrt='V')": (lambda: expanded_jacobian(Affine(D, 2), X_GOOD, wrt="V"),
                                   JacnetValueError, r"wrt"),
    "expanded_jacobian(loss, no target)": (lambda: expanded_jacobian(MeanSquaredError(), X_GOOD),
                                           JacnetValueError, r"target"),
    "expanded_jacobian('module')": (lambda: expanded_jacobian("Tanh", X_GOOD), JacnetTypeError,
                                    r"module"),
    "expanded_jacobian(too large)": (lambda: expanded_jacobian(Affine(1000, 1000), np.ones((50, 1000))),
                                     JacnetValueError, r"entries"),
    "save(path=None)": (lambda: save(mlp(), None), JacnetTypeError, r"path"),  # type: ignore[arg-type]
    "save(model='m')": (lambda: save("m", "m.jacnet"), JacnetTypeError, r"model"),  # type: ignore[arg-type]
    "load(path=3)": (lambda: load(3), JacnetTypeError, r"path"),  # type: ignore[arg-type]
    "load(path='')": (lambda: load(""), JacnetValueError, r"path"),
}


@pytest.mark.parametrize("entry", list(ARGUMENTS))
def test_bad_argument(entry: str) -> None:
    call, error, name = ARGUMENTS[entry]
    raises_clearly(call, error, name)


# Huge finite values (1e308): one decision per entry point --------------------------------


HUGE = np.full((N, D), 1e308)


def overflowing_model() -> Sequential:
    """A float64 network whose first layer sums three 1e308 inputs: it must overflow."""
    model = Sequential([Affine(D, 2, init="zeros", dtype=np.float64), ReLU(),
                        Affine(2, K, init="zeros", dtype=np.float64)])
    model.params["0.W"][...] = 1.0
    model.params["2.W"][...] = 1.0
    return model


def forwarded(model: Sequential) -> Sequential:
    model.forward(X_GOOD)
    return model


def test_huge_values_in_float32_entry_points_say_they_overflow_float32() -> None:
    # Casting to the network's float32 turns 1e308 into infinity: refused where X enters.
    for call, name in [(lambda: Affine(D, 2).forward(HUGE), r"forward X"),
                       (lambda: mlp().predict(HUGE), r"predict X"),
                       (lambda: evaluate(mlp(), HUGE, LABELS, loss=SoftmaxCrossEntropy()), r"evaluate X"),
                       (lambda: forwarded(mlp()).backward(np.ones((N, K)) * 1e308), r"dY")]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # and without a RuntimeWarning from NumPy
            message = raises_clearly(call, NonFiniteError, name)
        assert "float32" in message and "1e+308" in message


def test_huge_values_in_a_float64_layer_are_computed() -> None:
    # A layer is a function: in float64 it computes, and may overflow to ±inf, never to NaN.
    Z = Affine(D, 4, rng=0, dtype=np.float64).forward(HUGE)
    assert Z.shape == (N, 4) and not np.isnan(Z).any()
    assert ReLU().forward(HUGE).tobytes() == HUGE.tobytes()
    assert (LeakyReLU(0.5).forward(-HUGE) == -0.5e308).all()
    assert (Tanh().forward(HUGE) == 1).all() and (Tanh().forward(-HUGE) == -1).all()
    assert (Sigmoid().forward(HUGE) == 1).all() and (Sigmoid().forward(-HUGE) == 0).all()
    np.testing.assert_array_equal(Softmax().forward(HUGE), np.full((N, D), 1 / D))
    with np.errstate(over="ignore"):  # 0 - 1e308 - 1e308 = -inf, honestly; e^-inf = 0
        np.testing.assert_array_equal(Softmax().forward(np.array([[1e308, 0.0, -1e308]])),
                                      [[1.0, 0.0, 0.0]])
    # In a chain, the next layer refuses the overflowed value and names its input.
    with np.errstate(over="ignore"):
        raises_clearly(lambda: overflowing_model().forward(HUGE), NonFiniteError, r"ReLU.forward X")


def test_huge_logits_give_the_true_loss_never_nan() -> None:
    logits = np.array([[1e308, 0.0, -1e308], [0.0, 1e308, -1e308]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an honest overflow may warn
        sce = SoftmaxCrossEntropy()
        assert sce.forward(logits, np.array([0, 1])) == 0.0  # the right classes: no loss at all
        np.testing.assert_array_equal(sce.backward(), np.zeros((2, 3)))
        assert sce.forward(logits, np.array([2, 2])) == np.inf  # 2e308 nats: truly infinite
        assert np.isfinite(sce.backward()).all()
        sbce = SigmoidBinaryCrossEntropy()
        assert sbce.forward(logits, np.ones((2, 3))) == np.inf
        assert np.isfinite(sbce.backward()).all()
        assert MeanSquaredError().forward(logits, np.zeros((2, 3))) == np.inf


def test_huge_values_at_predict_and_evaluate_in_float64_say_the_outputs_overflow() -> None:
    model = overflowing_model()
    message = raises_clearly(lambda: model.predict(HUGE), NonFiniteError, r"predict X")
    assert "overflow" in message
    message = raises_clearly(lambda: evaluate(model, HUGE, LABELS, loss=SoftmaxCrossEntropy()),
                             NonFiniteError, r"evaluate X")
    assert "overflow" in message
    # Finite outputs, but a regression loss beyond the largest float64.
    regression = build_mlp(D, [], 1, init="zeros", dtype=np.float64)
    regression.params["0.b"][...] = 1e200
    message = raises_clearly(lambda: evaluate(regression, X_GOOD, np.zeros((N, 1)),
                                              loss=MeanSquaredError()), NonFiniteError, r"evaluate X")
    assert "loss" in message


def test_huge_values_at_fit_stop_with_non_finite_error_and_finite_weights() -> None:
    for dtype, name in [(np.float32, r"fit X"), (np.float64, r"diverged")]:
        model = mlp(dtype)
        before = params_of(model)
        raises_clearly(lambda: quiet_fit(model, HUGE, LABELS), NonFiniteError, name)  # noqa: B023
        for k, p in model.params.items():
            assert p.tobytes() == before[k].tobytes()


def test_gradients_that_overflow_adams_state_stop_training() -> None:
    # |g| ~ 1e30 is finite in float32 but g² is not: Adam's v becomes inf and the weights it
    # divides would silently freeze. The guard stops the run instead; the weights stay finite.
    X = np.random.default_rng(1).standard_normal((32, D)) * 1e30
    model = mlp()
    message = raises_clearly(lambda: quiet_fit(model, X, np.arange(32) % K, epochs=3),
                             NonFiniteError, r"diverged")
    assert "optimizer" in message
    assert all(np.isfinite(p).all() for p in model.params.values())


# Legal but unusual input: handled, with the correct result asserted -------------------------


def test_single_class_trains_to_predict_that_class() -> None:
    X = np.random.default_rng(2).standard_normal((20, D))
    model = mlp()
    quiet_fit(model, X, np.ones(20, dtype=int), optimizer=Adam(0.05), epochs=30)
    assert all(np.isfinite(p).all() for p in model.params.values())
    assert (model.predict_classes(X) == 1).all()
    assert evaluate(model, X, np.ones(20, dtype=int))["accuracy"] == 1.0


def test_single_sample_trains() -> None:
    model = mlp()
    history = quiet_fit(model, X_GOOD[:1], LABELS[:1], epochs=5, optimizer=Adam(0.05))
    assert len(history) == 5 and history["loss"][-1] < history["loss"][0]
    assert all(np.isfinite(p).all() for p in model.params.values())
    assert model.predict(X_GOOD[:1]).shape == (1, K)


def test_a_batch_larger_than_the_data_is_one_batch() -> None:
    a, b = mlp(), mlp()
    quiet_fit(a, X_GOOD, LABELS, batch_size=10**9, epochs=2)
    quiet_fit(b, X_GOOD, LABELS, batch_size=N, epochs=2)
    assert all(a.params[k].tobytes() == b.params[k].tobytes() for k in a.params)


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint8, np.float16, np.float32])
def test_integer_and_narrow_inputs_are_cast_like_an_explicit_cast(dtype: Any) -> None:
    X = (np.abs(X_GOOD) * 10).astype(dtype)
    a, b = mlp(), mlp()
    quiet_fit(a, X, LABELS, epochs=2)
    quiet_fit(b, X.astype(np.float32), LABELS, epochs=2)
    assert all(a.params[k].tobytes() == b.params[k].tobytes() for k in a.params)
    assert a.predict(X).tobytes() == a.predict(X.astype(np.float32)).tobytes()


def test_lists_are_arrays() -> None:
    a, b = mlp(), mlp()
    quiet_fit(a, X_GOOD.tolist(), LABELS.tolist(), epochs=2)
    quiet_fit(b, X_GOOD, LABELS, epochs=2)
    assert all(a.params[k].tobytes() == b.params[k].tobytes() for k in a.params)


@pytest.mark.parametrize("loss", [BinaryCrossEntropy, SigmoidBinaryCrossEntropy])
def test_binary_targets_of_shape_n_mean_n_by_1_not_a_broadcast(loss: Any) -> None:
    pred = np.array([[0.2], [0.7], [0.5], [0.9]])
    flat, column = loss(), loss()
    assert flat.forward(pred, np.array([0, 1, 1, 0])) == column.forward(pred, np.array([[0], [1], [1], [0]]))
    assert flat.backward().tobytes() == column.backward().tobytes()
    assert flat.backward().shape == (N, 1)


def test_labels_stored_as_whole_floats_are_labels() -> None:
    a, b = SoftmaxCrossEntropy(), SoftmaxCrossEntropy()
    assert a.forward(X_GOOD, LABELS.astype(float)) == b.forward(X_GOOD, LABELS)


def test_refused_input_leaves_the_layer_cache_alone() -> None:
    layer = Affine(D, 2, rng=0)
    Y = layer.forward(X_GOOD)
    dX = layer.backward(np.ones_like(Y))
    with pytest.raises(ShapeError):
        layer.forward(np.ones((N, D + 1)))
    assert layer.backward(np.ones_like(Y)).tobytes() == dX.tobytes()


# jacnet.sklearn ---------------------------------------------------------------------------


def _sk() -> Any:
    pytest.importorskip("sklearn")
    try:
        return pytest.importorskip("jacnet.sklearn")
    except Exception as exc:  # a module that is mid-edit and fails to import
        pytest.skip(f"jacnet.sklearn does not import: {exc}")


SK_X = np.random.default_rng(3).standard_normal((20, D))
SK_Y = np.arange(20) % K
#: (estimator, constructor kwargs, fit X, fit y, predict X or None, regex for the message).
SK_CASES: dict[str, tuple[str, dict[str, Any], Any, Any, Any, str]] = {
    "X-nan": ("C", {}, np.where(SK_X > 1, np.nan, SK_X), SK_Y, None, r"\bX\b"),
    "X-inf": ("C", {}, np.where(SK_X > 1, np.inf, SK_X), SK_Y, None, r"\bX\b"),
    "X-1e308-float32": ("C", {}, np.full((20, D), 1e308), SK_Y, None, r"\bX\b"),
    "X-zero-samples": ("C", {}, SK_X[:0], SK_Y[:0], None, r"sample"),
    "X-zero-features": ("C", {}, SK_X[:, :0], SK_Y, None, r"feature"),
    "X-1-D": ("C", {}, SK_X[:, 0], SK_Y, None, r"2D array"),
    "X-3-D": ("C", {}, SK_X[:, :, None], SK_Y, None, r"dim 3"),
    "X-complex": ("C", {}, SK_X.astype(complex), SK_Y, None, r"[Cc]omplex"),
    "X-y-lengths": ("C", {}, SK_X, SK_Y[:5], None, r"inconsistent numbers of samples"),
    "predict-wrong-features": ("C", {}, SK_X, SK_Y, SK_X[:, :2], r"\bX\b.*features"),
    "predict-nan": ("C", {}, SK_X, SK_Y, np.full((2, D), np.nan), r"\bX\b"),
    "predict-1e308-overflow": ("C", {}, SK_X, SK_Y, np.full((2, D), 1e308), r"\bX\b"),
    "regressor-predict-wrong-features": ("R", {}, SK_X, SK_X[:, 0], SK_X[:, :2], r"\bX\b.*features"),
    "y-None": ("C", {}, SK_X, None, None, r"\by\b"),
    "y-nan": ("C", {}, SK_X, np.full(20, np.nan), None, r"\by\b"),
    "regressor-y-nan": ("R", {}, SK_X, np.full(20, np.nan), None, r"\by\b"),
    "regressor-y-None": ("R", {}, SK_X, None, None, r"\by\b"),
    "y-continuous-for-classifier": ("C", {}, SK_X, np.linspace(0, 1, 20), None, r"continuous"),
    "y-complex": ("C", {}, SK_X, SK_Y.astype(complex), None, r"[Cc]omplex"),
    "single-class": ("C", {}, SK_X, np.zeros(20), None, r"2 classes"),
    "single-sample-classifier": ("C", {}, SK_X[:1], SK_Y[:1], None, r"2 classes"),
    "regressor-1e308-float64": ("R", {"dtype": "float64"}, np.full((20, D), 1e308), SK_X[:, 0], None,
                                r"diverged|\bX\b"),
    "regressor-y-1e308": ("R", {"dtype": "float64"}, SK_X, np.full(20, 1e308), None, r"diverged|\by\b"),
    "hidden-0": ("C", {"hidden_layer_sizes": (0,)}, SK_X, SK_Y, None, r"hidden_layer_sizes"),
    "hidden-None": ("C", {"hidden_layer_sizes": None}, SK_X, SK_Y, None, r"hidden_layer_sizes"),
    "learning_rate-0": ("C", {"learning_rate": 0.0}, SK_X, SK_Y, None, r"learning_rate"),
    "learning_rate-negative": ("C", {"learning_rate": -1.0}, SK_X, SK_Y, None, r"learning_rate"),
    "learning_rate-nan": ("C", {"learning_rate": NAN}, SK_X, SK_Y, None, r"learning_rate"),
    "epochs-0": ("C", {"epochs": 0}, SK_X, SK_Y, None, r"epochs"),
    "batch_size-0": ("C", {"batch_size": 0}, SK_X, SK_Y, None, r"batch_size"),
    "dtype-int": ("C", {"dtype": "int32"}, SK_X, SK_Y, None, r"dtype"),
}


@pytest.mark.parametrize("case", list(SK_CASES))
def test_sklearn_bad_input(case: str) -> None:
    sk = _sk()
    kind, kwargs, X, y, X_predict, name = SK_CASES[case]
    cls = sk.JacnetClassifier if kind == "C" else sk.JacnetRegressor
    estimator = cls(**{"hidden_layer_sizes": (4,), "epochs": 2, "random_state": 0, **kwargs})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after 2 epochs
        with pytest.raises((ValueError, TypeError)) as info:
            estimator.fit(X, y)
            if X_predict is not None:
                estimator.predict(X_predict)
    assert re.search(name, str(info.value)), str(info.value)
    frame = traceback.extract_tb(info.tb)[-1]
    assert f"{os.sep}numpy{os.sep}" not in frame.filename, frame


# jacnet.datasets ------------------------------------------------------------------------------


def _datasets() -> Any:
    try:
        import jacnet.datasets as datasets
    except Exception as exc:  # missing, or a module that is mid-edit and fails to import
        pytest.skip(f"jacnet.datasets does not import: {type(exc).__name__}: {exc}")
    return datasets


DS_X, DS_Y = np.zeros((10, 2)), np.arange(10) % 2
#: (function name, args, kwargs, error, regex naming the argument).
DATASET_CASES: dict[str, tuple[str, tuple[Any, ...], dict[str, Any], type[JacnetError], str]] = {
    "one_hot(-1)": ("one_hot", ([0, -1, 2],), {}, JacnetValueError, r"labels"),
    "one_hot(3 of 3)": ("one_hot", ([0, 3, 2], 3), {}, JacnetValueError, r"labels"),
    "one_hot(nan)": ("one_hot", ([0.0, np.nan],), {}, JacnetTypeError, r"labels"),
    "one_hot(0.5)": ("one_hot", ([0.0, 0.5],), {}, JacnetTypeError, r"labels"),
    "one_hot(strings)": ("one_hot", (["a", "b"],), {}, JacnetTypeError, r"labels"),
    "one_hot(object)": ("one_hot", (np.array([0, None], dtype=object),), {}, JacnetTypeError, r"labels"),
    "one_hot(boolean)": ("one_hot", (np.array([True, False]),), {}, JacnetTypeError, r"labels"),
    "one_hot(complex)": ("one_hot", (np.array([1 + 0j]),), {}, JacnetTypeError, r"labels"),
    "one_hot(2-D)": ("one_hot", (np.zeros((2, 2), int),), {}, ShapeError, r"labels"),
    "one_hot(ragged)": ("one_hot", ([[0], [1, 2]],), {}, JacnetTypeError, r"labels"),
    "one_hot(None)": ("one_hot", (None,), {}, JacnetTypeError, r"labels"),
    "one_hot(empty)": ("one_hot", (np.zeros(0, int),), {}, JacnetValueError, r"labels"),
    "one_hot(n_classes=0)": ("one_hot", ([0, 1], 0), {}, JacnetValueError, r"n_classes"),
    "one_hot(n_classes=2.5)": ("one_hot", ([0, 1], 2.5), {}, JacnetTypeError, r"n_classes"),
    "train_test_split(lengths)": ("train_test_split", (DS_X, DS_Y[:9]), {}, ShapeError, r"\by\b|samples"),
    "train_test_split(0 samples)": ("train_test_split", (DS_X[:0], DS_Y[:0]), {}, JacnetValueError,
                                    r"test_size"),
    "train_test_split(1 sample)": ("train_test_split", (DS_X[:1], DS_Y[:1]), {}, JacnetValueError,
                                   r"test_size"),
    "train_test_split(test_size=0)": ("train_test_split", (DS_X, DS_Y), {"test_size": 0.0},
                                      JacnetValueError, r"test_size"),
    "train_test_split(test_size=nan)": ("train_test_split", (DS_X, DS_Y), {"test_size": NAN},
                                        JacnetValueError, r"test_size"),
    "train_test_split(test_size='0.2')": ("train_test_split", (DS_X, DS_Y), {"test_size": "0.2"},
                                          JacnetTypeError, r"test_size"),
    "train_test_split(seed=-1)": ("train_test_split", (DS_X, DS_Y), {"seed": -1}, JacnetValueError,
                                  r"seed"),
    "train_test_split(stratify='yes')": ("train_test_split", (DS_X, DS_Y), {"stratify": "yes"},
                                         JacnetTypeError, r"stratify"),
    "train_test_split(ragged)": ("train_test_split", ([[1, 2], [3]], [0, 1]), {}, JacnetTypeError,
                                 r"\bX\b"),
    "standardize(nan)": ("standardize", (np.full((5, 2), np.nan), DS_X), {}, NonFiniteError, r"X_train"),
    "standardize(test inf)": ("standardize", (DS_X, np.full((1, 2), np.inf)), {}, NonFiniteError,
                              r"X_test"),
    "standardize(0 samples)": ("standardize", (DS_X[:0], DS_X), {}, ShapeError, r"X_train"),
    "standardize(1-D)": ("standardize", (np.zeros(5), DS_X), {}, ShapeError, r"X_train"),
    "standardize(3-D)": ("standardize", (np.zeros((5, 2, 2)), DS_X), {}, ShapeError, r"X_train"),
    "standardize(strings)": ("standardize", (np.full((5, 2), "a"), DS_X), {}, JacnetTypeError, r"X_train"),
    "standardize(complex)": ("standardize", (DS_X.astype(complex), DS_X), {}, JacnetTypeError, r"X_train"),
    "standardize(boolean)": ("standardize", (DS_X > 0, DS_X), {}, JacnetTypeError, r"X_train"),
    "standardize(features differ)": ("standardize", (DS_X, np.zeros((5, 3))), {}, ShapeError, r"X_test"),
    "load('nope')": ("load", ("nope",), {}, JacnetValueError, r"name"),
    "load(None)": ("load", (None,), {}, JacnetTypeError, r"name"),
    "load(seed=-1)": ("load", ("iris",), {"seed": -1}, JacnetValueError, r"seed"),
    "load(seed=nan)": ("load", ("iris",), {"seed": NAN}, JacnetTypeError, r"seed"),
    "load(dtype=int)": ("load", ("iris",), {"dtype": int}, JacnetTypeError, r"dtype"),
    "load(test_size=1)": ("load", ("iris",), {"test_size": 1.0}, JacnetValueError, r"test_size"),
    "load(standardize='no')": ("load", ("iris",), {"standardize": "no"}, JacnetTypeError, r"standardize"),
    "make_blobs(0)": ("make_blobs", (0,), {}, JacnetValueError, r"n_samples"),
    "make_blobs(2.5)": ("make_blobs", (2.5,), {}, JacnetTypeError, r"n_samples"),
    "make_blobs(n_classes=0)": ("make_blobs", (10,), {"n_classes": 0}, JacnetValueError, r"n_classes"),
    "make_blobs(n_features=0)": ("make_blobs", (10,), {"n_features": 0}, JacnetValueError, r"n_features"),
    "make_blobs(rng='x')": ("make_blobs", (10,), {"rng": "x"}, JacnetTypeError, r"rng"),
    "make_moons(noise=-1)": ("make_moons", (10,), {"noise": -1.0}, JacnetValueError, r"noise"),
    "make_moons(noise=nan)": ("make_moons", (10,), {"noise": NAN}, JacnetValueError, r"noise"),
    "make_spirals(n_classes=1)": ("make_spirals", (10,), {"n_classes": 1}, JacnetValueError, r"n_classes"),
    "make_friedman(0)": ("make_friedman", (0,), {}, JacnetValueError, r"n_samples"),
    "make_friedman(noise=inf)": ("make_friedman", (10,), {"noise": INF}, JacnetValueError, r"noise"),
}


@pytest.mark.parametrize("case", list(DATASET_CASES))
def test_datasets_bad_input(case: str) -> None:
    datasets = _datasets()
    function, args, kwargs, error, name = DATASET_CASES[case]
    raises_clearly(lambda: getattr(datasets, function)(*args, **kwargs), error, name)


@pytest.mark.parametrize("args", [([0, 2**50],), ([0, 1], 2**50)], ids=["huge-label", "huge-n_classes"])
def test_datasets_one_hot_refuses_an_impossible_allocation(args: tuple[Any, ...]) -> None:
    datasets = _datasets()
    raises_clearly(lambda: datasets.one_hot(*args), JacnetValueError, r"labels|n_classes")


def test_datasets_standardize_huge_values_is_finite_or_refused() -> None:
    datasets = _datasets()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            parts = datasets.standardize(np.full((10, 2), 1e308), np.zeros((1, 2)))
        except NonFiniteError as exc:
            assert "X_train" in str(exc)
            return
    assert all(np.isfinite(part).all() for part in parts)


# The command line ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_main() -> Callable[..., int]:
    try:
        from jacnet.cli import build_parser, main

        build_parser()  # imports every subcommand (and jacnet.datasets)
    except Exception as exc:
        pytest.skip(f"the jacnet command line does not start: {type(exc).__name__}: {exc}")
    return main


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier for iris's 4 features, saved the way ``jacnet train`` saves one."""
    model = build_mlp(4, [5], 3, rng=0)
    model.loss = SoftmaxCrossEntropy()
    return save(model, tmp_path_factory.mktemp("cli") / "model.jacnet")


CLI_CASES: list[Any] = [
    # (argv with {model}, {csv}, {tmp} placeholders, csv content, regex naming the argument)
    pytest.param(["train", "--lr", "0"], None, r"--lr", id="train--lr-0"),
    pytest.param(["train", "--lr", "-1"], None, r"--lr", id="train--lr-negative"),
    pytest.param(["train", "--lr", "nan"], None, r"--lr", id="train--lr-nan"),
    pytest.param(["train", "--lr", "inf"], None, r"--lr", id="train--lr-inf"),
    pytest.param(["train", "--epochs", "0"], None, r"--epochs", id="train--epochs-0"),
    pytest.param(["train", "--epochs", "1.5"], None, r"--epochs", id="train--epochs-float"),
    pytest.param(["train", "--batch-size", "0"], None, r"--batch-size", id="train--batch-size-0"),
    pytest.param(["train", "--hidden", "0"], None, r"--hidden", id="train--hidden-0"),
    pytest.param(["train", "--hidden", "64,0"], None, r"--hidden", id="train--hidden-64,0"),
    pytest.param(["train", "--hidden", "abc"], None, r"--hidden", id="train--hidden-abc"),
    pytest.param(["train", "--hidden", "-4"], None, r"--hidden", id="train--hidden-negative"),
    pytest.param(["train", "--data", "nope"], None, r"--data", id="train--data-unknown"),
    pytest.param(["train", "--dtype", "float16"], None, r"--dtype", id="train--dtype-float16"),
    pytest.param(["train", "--data", "iris", "--validation-split", "1.5", "--out", "{tmp}"], None,
                 r"validation[-_]split", id="train--validation-split-1.5"),
    pytest.param(["train", "--data", "iris", "--optimizer", "sgd", "--momentum", "1", "--out", "{tmp}"],
                 None, r"momentum", id="train--momentum-1"),
    pytest.param(["train", "--data", "iris", "--optimizer", "sgd", "--lr", "1e300", "--epochs", "1",
                  "--out", "{tmp}"], None, r"diverged", id="train-diverges"),
    pytest.param(["train", "--bogus"], None, r"--bogus", id="train-unknown-option"),
    pytest.param(["train", "--data", "iris", "--epochs", "1", "--out", "{tmp}/file"], None, r"--out|out",
                 id="train--out-is-a-file"),
    pytest.param(["predict", "{model}", "{csv}"], "nan,1,2,3\n", r"INPUT|\bX\b", id="predict-csv-nan"),
    pytest.param(["predict", "{model}", "{csv}"], "inf,1,2,3\n", r"INPUT|\bX\b", id="predict-csv-inf"),
    pytest.param(["predict", "{model}", "{csv}"], "1e308,1,2,3\n", r"INPUT|\bX\b",
                 id="predict-csv-1e308"),
    pytest.param(["predict", "{model}", "{csv}"], "a,b,c,d\nx,1,2,3\n", r"INPUT",
                 id="predict-csv-strings"),
    pytest.param(["predict", "{model}", "{csv}"], "1,2,3\n", r"INPUT|\bX\b",
                 id="predict-csv-3-of-4-features"),
    pytest.param(["predict", "{model}", "{csv}"], "1,2,3,4\n1,2\n", r"INPUT", id="predict-csv-ragged"),
    pytest.param(["predict", "{model}", "{csv}"], "", r"INPUT|\bX\b", id="predict-csv-empty"),
    pytest.param(["predict", "{model}", "{csv}"], "1+2j,1,2,3\n", r"INPUT|\bX\b",
                 id="predict-csv-complex"),
    pytest.param(["predict", "{model}", "{csv}"], b"\xff\xfe\x00\x81garbage\n", r"INPUT",
                 id="predict-csv-binary"),
    pytest.param(["predict", "{model}", "{tmp}/missing.csv"], None, r"INPUT", id="predict-csv-missing"),
    pytest.param(["predict", "{model}", "{csv}", "--output", "{tmp}"], "1,2,3,4\n", r"--output|output",
                 id="predict--output-is-a-directory"),
    pytest.param(["predict", "{tmp}/missing.jacnet", "{csv}"], "1,2,3,4\n", r"load",
                 id="predict-model-missing"),
    pytest.param(["predict", "{csv}", "{csv}"], "1,2,3,4\n", r"load", id="predict-model-is-a-csv"),
    pytest.param(["evaluate", "{model}", "--data", "digits"], None, r"\bX\b",
                 id="evaluate-wrong-feature-count"),
    pytest.param(["evaluate", "{model}", "--data", "nope"], None, r"--data", id="evaluate--data-unknown"),
    pytest.param(["evaluate", "{tmp}/missing.jacnet", "--data", "iris"], None, r"load",
                 id="evaluate-model-missing"),
]


@pytest.mark.parametrize(("argv", "csv", "name"), CLI_CASES)
def test_command_line_bad_input(cli_main: Callable[..., int], iris_model: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str], argv: list[str],
                                csv: str | bytes | None, name: str) -> None:
    (tmp_path / "file").write_text("in the way")
    path = tmp_path / "input.csv"
    if isinstance(csv, bytes):
        path.write_bytes(csv)
    elif csv is not None:
        path.write_text(csv)
    args = [a.format(model=iris_model, csv=path, tmp=tmp_path) for a in argv]
    if args[0] == "train":
        args.append("--quiet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = cli_main(args)
        except SystemExit as exit_:
            code = exit_.code  # argparse's own errors
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(name, lines[0]), lines[0]
    # A warning would be printed on stderr too, making the message more than one line.
    assert not [w for w in caught if not issubclass(w.category, DeprecationWarning)], \
        [str(w.message) for w in caught]


# Part 2: a bounded fuzz of the model loader --------------------------------------------------

PREFIX = struct.Struct("<8sQ")
FUZZ_COUNT = 2000
FUZZ_BUDGET_S = 30.0
#: JSON values that no field of the header (outside training_state) accepts.
POISON: list[Any] = ["\x00bogus", -1, [[[]]], {"\x00": [1]}, True]
HUGE_DIMS = [2**31, 2**40, 2**62, 10**18, 2**64 + 3]


def _seal(header: dict[str, Any] | bytes, data: bytes, length: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    body = PREFIX.pack(MAGIC, len(text) if length is None else length % 2**64) + text + data
    return body + hashlib.sha256(body).digest()


def _walk(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into the header, but not into training_state (free-form by design)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield (*prefix, key)
            if prefix or key != "training_state":
                yield from _walk(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield (*prefix, i)
            yield from _walk(value, (*prefix, i))


def _at(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


class Mutator:
    """Mutations of one valid file; each is invalid by construction (see ``POISON``)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        n = PREFIX.unpack_from(raw)[1]
        self.header = json.loads(raw[16:16 + n])
        self.data = raw[16 + n:-32]
        assert _seal(self.header, self.data) == raw
        self.paths = list(_walk(self.header))
        self.dicts = [p for p in [(), *self.paths] if isinstance(_at(self.header, p), dict) and
                      _at(self.header, p) and p[:1] != ("training_state",)]
        self.lists = [p for p in self.paths if isinstance(_at(self.header, p), list) and
                      _at(self.header, p) and p[:1] != ("training_state",)]

    KINDS = ("truncate", "bit-flip", "insert", "delete", "overwrite", "append", "header-value",
             "header-drop-key", "header-add-key", "header-drop-item", "huge-shape", "huge-config",
             "header-length", "non-finite-weight", "json-truncate", "json-bad-utf8",
             "json-duplicate-key", "pickle-payload", "zip-magic")

    def __call__(self, r: random.Random, kind: str) -> bytes:
        raw = bytearray(self.raw)
        if kind == "truncate":
            return bytes(raw[:r.randrange(len(raw))])
        if kind == "bit-flip":
            for _ in range(r.randint(1, 4)):
                raw[r.randrange(len(raw))] ^= 1 << r.randrange(8)
            return bytes(raw)
        if kind == "insert":
            i = r.randrange(len(raw) + 1)
            return bytes(raw[:i] + r.randbytes(r.randint(1, 64)) + raw[i:])
        if kind == "delete":
            i = r.randrange(len(raw))
            return bytes(raw[:i] + raw[i + r.randint(1, 64):])
        if kind == "overwrite":
            i, k = r.randrange(len(raw)), r.randint(1, 16)
            raw[i:i + k] = r.randbytes(k)
            return bytes(raw[:len(self.raw)])
        if kind == "append":
            return bytes(raw) + r.randbytes(r.randint(1, 64))
        if kind == "pickle-payload":
            return b"\x80\x04\x95" + r.randbytes(r.randint(0, 64))
        if kind == "zip-magic":
            return b"PK\x03\x04" + bytes(raw)
        # The rest keep a valid checksum, so only the semantic checks can catch them.
        h, data, length = copy.deepcopy(self.header), self.data, None
        if kind == "header-value":
            path = r.choice(self.paths)
            _at(h, path[:-1])[path[-1]] = copy.deepcopy(r.choice(POISON))
        elif kind == "header-drop-key":
            obj = _at(h, r.choice(self.dicts))
            del obj[r.choice(list(obj))]
        elif kind == "header-add-key":
            _at(h, r.choice(self.dicts))["\x00extra"] = 0
        elif kind == "header-drop-item":
            obj = _at(h, r.choice(self.lists))
            del obj[r.randrange(len(obj))]
        elif kind == "huge-shape":
            entry = r.choice(h["arrays"])
            entry["shape"] = [r.choice(HUGE_DIMS) for _ in range(r.randint(1, 3))]
            if r.random() < 0.5:  # a consistent nbytes, so the size check must catch it
                entry["nbytes"] = int(np.prod(entry["shape"], dtype=object)) * 4
        elif kind == "huge-config":
            layer = r.choice([x for x in h["layers"] if x["type"] == "Affine"])
            layer["config"][r.choice(["in_features", "out_features"])] = r.choice(HUGE_DIMS)
        elif kind == "header-length":
            true = len(json.dumps(h, separators=(",", ":")))
            length = r.choice([0, 1, true - 1, true + 1, 2**24 + 1, 2**63, r.randrange(2**64)])
        elif kind == "non-finite-weight":
            entry = r.choice(h["arrays"])
            size = np.dtype(entry["dtype"]).itemsize
            start = entry["offset"] + size * r.randrange(entry["nbytes"] // size)
            value = np.array([r.choice([np.nan, np.inf, -np.inf])], dtype=entry["dtype"]).tobytes()
            data = data[:start] + value + data[start + size:]
        elif kind == "json-truncate":
            text = json.dumps(h, separators=(",", ":")).encode()
            return _seal(text[:r.randrange(len(text))], data)
        elif kind == "json-bad-utf8":
            text = bytearray(json.dumps(h, separators=(",", ":")).encode())
            text.insert(r.randrange(len(text) + 1), r.choice([0x80, 0xC0, 0xFF]))
            return _seal(bytes(text), data)
        elif kind == "json-duplicate-key":
            key = r.choice(sorted(h))
            text = json.dumps(h, separators=(",", ":")).encode()
            return _seal(b'{"' + key.encode() + b'":0,' + text[1:], data)
        return _seal(h, data, length)


def _fuzz_base(directory: Path) -> bytes:
    """A trained network with optimizer state and training state: every section is present."""
    model = Sequential([Affine(3, 5, rng=0), ReLU(), Affine(5, 4, rng=1, dtype=np.float32), Tanh(),
                        Affine(4, 2, rng=2)], loss=SoftmaxCrossEntropy())
    optimizer = Adam()
    quiet_fit(model, np.random.default_rng(0).standard_normal((8, 3)), np.arange(8) % 2,
              optimizer=optimizer)
    path = save(model, directory / "valid.jacnet", optimizer, training_state={"epoch": 0, "note": "x"})
    return path.read_bytes()


def test_affine_dtype_of_the_wrong_json_type(tmp_path: Path) -> None:
    """An Affine config "dtype" that is a JSON list must be a ModelFileError.

    A gap found by the fuzz below: a list reached a set lookup and raised ``TypeError:
    unhashable type`` from inside the reader.
    """
    mutator = Mutator(_fuzz_base(tmp_path))
    h = copy.deepcopy(mutator.header)
    h["layers"][0]["config"]["dtype"] = ["float32"]
    path = tmp_path / "dtype-list.jacnet"
    path.write_bytes(_seal(h, mutator.data))
    with pytest.raises(ModelFileError, match="dtype"):
        load(path)


def test_fuzz_the_loader_with_mutated_files(tmp_path: Path) -> None:
    """Thousands of mutated files: each raises ModelFileError, fast and without big allocations."""
    raw = _fuzz_base(tmp_path)
    mutate = Mutator(raw)
    r = random.Random(20240917)
    path = tmp_path / "mutated.jacnet"
    counts: dict[str, int] = {}
    failures: list[str] = []
    slowest, peak_max = 0.0, 0
    started = time.perf_counter()
    tracemalloc.start()
    try:
        while sum(counts.values()) < FUZZ_COUNT and time.perf_counter() - started < FUZZ_BUDGET_S:
            kind = Mutator.KINDS[sum(counts.values()) % len(Mutator.KINDS)]
            mutated = mutate(r, kind)
            if mutated == raw:
                continue
            counts[kind] = counts.get(kind, 0) + 1
            path.write_bytes(mutated)
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            t0 = time.perf_counter()
            try:
                load_checkpoint(path)
                failures.append(f"{kind}: loaded")
            except ModelFileError as exc:
                assert str(path) in str(exc)
            except Exception as exc:  # anything else is a gap
                failures.append(f"{kind}: {type(exc).__name__}: {exc}")
            slowest = max(slowest, time.perf_counter() - t0)
            peak_max = max(peak_max, tracemalloc.get_traced_memory()[1] - before)
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    print(f"\nloader fuzz: {total} mutated files in {elapsed:.1f}s, slowest load {slowest * 1e3:.1f} ms, "
          f"peak allocation {peak_max / 1024:.0f} KiB (file {len(raw)} bytes); by kind {counts}")
    assert not failures, failures[:20]
    assert total >= min(FUZZ_COUNT, 500), f"only {total} mutations in {FUZZ_BUDGET_S}s"
    assert set(counts) == set(Mutator.KINDS)
    assert slowest < 1.0  # no mutation makes the loader work hard
    assert peak_max < 4 << 20  # nor allocate: a declared 2**62-element array would be exabytes


# Part 3: fault tests not already in test_io.py / test_train.py -------------------------------


def _blobs(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    return rng.standard_normal((n, D)) + 2.0 * y[:, None], y


def test_disk_full_during_checkpointing_keeps_the_last_checkpoint(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up at the second epoch's checkpoint: fit stops with ModelFileError, the
    first epoch's checkpoint is intact and loadable, and the model in memory is finite."""
    X, y = _blobs()
    path = tmp_path / "ckpt.jacnet"
    real_write = os.write
    epochs_saved: list[int] = []

    class Spy(jacnet.Callback):
        # Checkpoints are written in after_epoch; this one runs after ModelCheckpoint's.
        def after_epoch(self, epoch: int, logs: dict[str, float], run: Any) -> None:
            epochs_saved.append(epoch)
            if epoch == 0:
                snapshot.update(params_of(run.model))
                monkeypatch.setattr(os, "write", full)

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    snapshot: dict[str, np.ndarray] = {}
    model = mlp()
    with pytest.raises(ModelFileError, match="No space left on device") as info:
        quiet_fit(model, X, y, epochs=3, callbacks=[ModelCheckpoint(path), Spy()])
    monkeypatch.setattr(os, "write", real_write)
    assert str(path) in str(info.value)
    assert epochs_saved == [0]  # the run stopped at the failed save, not later
    checkpoint = load_checkpoint(path)
    assert checkpoint.training_state["epoch"] == 0
    for k, p in checkpoint.model.params.items():
        assert p.tobytes() == snapshot[k].tobytes()
    assert all(np.isfinite(p).all() for p in model.params.values())
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.jacnet"]


def test_divergence_after_a_checkpoint_keeps_finite_weights_everywhere(tmp_path: Path) -> None:
    """A run that diverges in its third epoch stops with NonFiniteError; the checkpoint on disk
    and the model in memory both hold finite weights, and the checkpoint resumes."""
    X, y = _blobs()
    path = tmp_path / "ckpt.jacnet"

    class Blowup(jacnet.Callback):
        def on_epoch_begin(self, epoch: int, run: Any) -> None:
            if epoch == 2:
                run.optimizer.lr = 1e30

    model = mlp()
    with np.errstate(all="ignore"), pytest.raises(NonFiniteError, match="diverged") as info:
        quiet_fit(model, X, y, epochs=5, optimizer=SGD(0.1), callbacks=[ModelCheckpoint(path), Blowup()])
    assert "epoch 3" in str(info.value)
    assert all(np.isfinite(p).all() for p in model.params.values())
    checkpoint = load_checkpoint(path)
    assert checkpoint.training_state["epoch"] == 1
    assert all(np.isfinite(p).all() for p in checkpoint.model.params.values())
    history = quiet_fit(checkpoint.model, X, y, epochs=3, resume=path)
    assert len(history) == 3


def test_optimizer_state_overflow_never_reaches_a_checkpoint(tmp_path: Path) -> None:
    """Adam's state overflowing is caught by the guard before ModelCheckpoint saves it."""
    X = np.random.default_rng(1).standard_normal((32, D)) * 1e30
    path = tmp_path / "ckpt.jacnet"
    with pytest.raises(NonFiniteError, match="optimizer"):
        quiet_fit(mlp(), X, np.arange(32) % K, epochs=2, callbacks=[ModelCheckpoint(path)])
    assert not path.exists()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_is_exact_when_the_sum_overflows(dtype: Any) -> None:
    from jacnet._validation import all_finite

    big = np.full((300, 300), np.finfo(dtype).max / 4, dtype=dtype)  # finite; the sum overflows
    assert all_finite(big)
    big[7, 7] = np.nan
    assert not all_finite(big)
    pair = np.ones((300, 300), dtype=dtype)
    pair[1, 1], pair[2, 2] = np.inf, -np.inf  # their sum is NaN, as it should be caught
    assert not all_finite(pair)
