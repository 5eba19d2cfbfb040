"""fit and evaluate end to end on small data: learning (classification, regression, binary),
the digits accuracy bar, determinism, dtype, history, validation, callbacks (early stopping,
schedules, the non-finite guard, checkpoint and resume), progress output and bad input."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from jacnet import (
    SGD,
    Adam,
    Affine,
    Callback,
    EarlyStopping,
    History,
    JacnetError,
    JacnetTypeError,
    JacnetValueError,
    LearningRateScheduler,
    Loss,
    MeanSquaredError,
    NonFiniteError,
    NonFiniteGuard,
    ReLU,
    Sequential,
    ShapeError,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
    StepDecay,
    Tanh,
    build_mlp,
    evaluate,
    fit,
)
from jacnet.train import Run

CE = SoftmaxCrossEntropy


# Data -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, ...]:
    X, y = load_digits(return_X_y=True)
    parts = train_test_split(X / 16.0, y, test_size=0.2, stratify=y, random_state=0)
    return tuple(parts)


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits scaled to [0, 1]; a stratified 80/20 split: X_train, X_test, y_train, y_test."""
    X_tr, X_te, y_tr, y_te = _digits()
    return X_tr.copy(), X_te.copy(), y_tr.copy(), y_te.copy()


def blobs(n: int = 120, k: int = 3, d: int = 2, seed: int = 0, spread: float = 0.5
          ) -> tuple[np.ndarray, np.ndarray]:
    """``k`` Gaussian blobs in ``d`` dimensions around well-separated centres."""
    g = np.random.default_rng(seed)
    centres = g.standard_normal((k, d)) * 4
    y = np.arange(n) % k
    X = centres[y] + spread * g.standard_normal((n, d))
    return X, y


def params_copy(model: Any) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.params.items()}


def history_without_time(history: History) -> dict[str, list[float]]:
    return {k: v for k, v in history.history.items() if k != "seconds"}


class Recorder(Callback):
    """Records the weights and the logs at the end of every epoch."""

    def __init__(self) -> None:
        self.weights: list[dict[str, np.ndarray]] = []
        self.logs: list[dict[str, float]] = []
        self.events: list[str] = []

    def on_train_begin(self, run: Run) -> None:
        self.events.append("train_begin")

    def on_epoch_begin(self, epoch: int, run: Run) -> None:
        self.events.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch: int, logs: dict[str, float], run: Run) -> None:
        self.weights.append(params_copy(run.model))
        self.logs.append(dict(logs))
        self.events.append(f"epoch_end {epoch}")

    def on_train_end(self, run: Run) -> None:
        self.events.append("train_end")


# Learning ---------------------------------------------------------------------------------


def test_loss_decreases_on_a_small_problem() -> None:
    X, y = blobs()
    model = build_mlp(2, [8], 3, rng=0)
    before = evaluate(model, X, y, loss=CE())
    history = fit(model, X, y, loss=CE(), optimizer=Adam(0.01), epochs=15, batch_size=16, seed=0,
                  verbose=0)
    losses = history["loss"]
    assert len(losses) == len(history) == 15
    assert losses[-1] < 0.5 * losses[0]
    after = evaluate(model, X, y)  # the model remembers its loss
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] >= 0.95


def test_digits_reaches_95_percent() -> None:
    X_tr, X_te, y_tr, y_te = digits()
    model = build_mlp(64, [128, 64], 10, rng=0)
    history = fit(model, X_tr, y_tr, loss=CE(), optimizer=Adam(1e-3), epochs=30, batch_size=32,
                  seed=0, verbose=0)
    scores = evaluate(model, X_te, y_te)
    assert scores["accuracy"] >= 0.95, scores
    assert set(scores) == {"loss", "accuracy"}
    assert history["accuracy"][-1] > 0.98
    # evaluate agrees with the model's own predictions, and its loss is the mean over all rows.
    np.testing.assert_allclose(scores["accuracy"], np.mean(model.predict_classes(X_te) == y_te))
    assert scores["loss"] == pytest.approx(CE().forward(model.predict(X_te), y_te), rel=1e-6)
    assert evaluate(model, X_te, y_te, batch_size=7)["loss"] == pytest.approx(scores["loss"], rel=1e-5)


def test_one_hot_targets_train_like_labels() -> None:
    X, y = blobs(n=60)
    Y = np.eye(3)[y]
    a, b = build_mlp(2, [6], 3, rng=0), build_mlp(2, [6], 3, rng=0)
    ha = fit(a, X, y, loss=CE(), epochs=3, seed=1, verbose=0)
    hb = fit(b, X, Y, loss=CE(), epochs=3, seed=1, verbose=0)
    assert ha["accuracy"] == hb["accuracy"]
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-6)


def test_regression_with_mean_squared_error() -> None:
    g = np.random.default_rng(1)
    X = g.standard_normal((400, 5))
    w = np.array([[1.5], [-2.0], [0.5], [0.0], [1.0]])
    y = X @ w + 0.1 * g.standard_normal((400, 1))
    model = build_mlp(5, [16], 1, rng=0)
    history = fit(model, X[:300], y[:300], loss=MeanSquaredError(), optimizer=Adam(1e-2), epochs=40,
                  batch_size=32, seed=0, verbose=0, validation=(X[300:], y[300:]))
    assert "accuracy" not in history.history
    assert {"val_mse", "val_r2"} <= set(history.history)
    scores = evaluate(model, X[300:], y[300:])
    assert set(scores) == {"loss", "mse", "r2"}
    assert scores["r2"] > 0.9, scores
    assert scores["mse"] == pytest.approx(history["val_mse"][-1], rel=1e-6)
    residual = y[300:] - model.predict(X[300:])
    expected_r2 = 1 - np.sum(residual**2) / np.sum((y[300:] - y[300:].mean()) ** 2)
    assert scores["r2"] == pytest.approx(expected_r2, rel=1e-5)


def test_binary_with_sigmoid_cross_entropy_and_flat_targets() -> None:
    X, y = blobs(n=160, k=2, d=3, seed=4)
    assert y.ndim == 1
    model = build_mlp(3, [8], 1, rng=0)
    history = fit(model, X, y, loss=SigmoidBinaryCrossEntropy(), optimizer=Adam(1e-2), epochs=20,
                  batch_size=16, seed=0, verbose=0)
    assert history["loss"][-1] < history["loss"][0]
    scores = evaluate(model, X, y)
    assert scores["accuracy"] >= 0.95
    P = model.predict_proba(X)
    assert P.shape == (160, 2)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-6)
    assert np.mean(model.predict_classes(X) == y) == pytest.approx(scores["accuracy"])


# Determinism and dtype --------------------------------------------------------------------


def _train(seed: int | None, model_seed: int = 0, **kwargs: Any) -> tuple[Any, History]:
    X, y = blobs(n=90)
    model = build_mlp(2, [8], 3, rng=model_seed)
    history = fit(model, X, y, loss=CE(), optimizer=SGD(0.05, momentum=0.9), epochs=4, batch_size=8,
                  seed=seed, verbose=0, validation_split=0.2, **kwargs)
    return model, history


def test_same_seed_gives_bitwise_identical_weights_and_history() -> None:
    m1, h1 = _train(seed=7)
    m2, h2 = _train(seed=7)
    for k in m1.params:
        np.testing.assert_array_equal(m1.params[k], m2.params[k])
    assert history_without_time(h1) == history_without_time(h2)
    assert h1.epochs == h2.epochs == [0, 1, 2, 3]


def test_seed_generator_is_accepted_and_reproducible() -> None:
    m1, h1 = _train(seed=np.random.default_rng(3))  # type: ignore[arg-type]
    m2, h2 = _train(seed=np.random.default_rng(3))  # type: ignore[arg-type]
    assert history_without_time(h1) == history_without_time(h2)
    assert all(np.array_equal(m1.params[k], m2.params[k]) for k in m1.params)


def test_different_seed_gives_different_result() -> None:
    m1, h1 = _train(seed=7)
    m2, h2 = _train(seed=8)
    assert not all(np.array_equal(m1.params[k], m2.params[k]) for k in m1.params)
    assert h1["loss"] != h2["loss"]


def test_global_numpy_random_state_is_untouched() -> None:
    np.random.seed(12345)
    state = np.random.get_state()
    _train(seed=7)
    _train(seed=None, callbacks=[EarlyStopping(patience=1)])
    fit(build_mlp(2, [3], 3), *blobs(n=30), loss=CE(), epochs=1, verbose=0)  # unseeded init too
    after = np.random.get_state()
    assert state[0] == after[0]
    np.testing.assert_array_equal(state[1], after[1])
    assert state[2:] == after[2:]


def test_float32_stays_float32_end_to_end() -> None:
    X, y = blobs(n=40)
    assert X.dtype == np.float64
    model = build_mlp(2, [4], 3, rng=0)
    fit(model, X, y, loss=CE(), epochs=2, seed=0, verbose=0)
    assert all(p.dtype == np.float32 for p in model.params.values())
    assert all(g.dtype == np.float32 for g in model.grads.values())
    assert model.predict(X).dtype == np.float32
    assert X.dtype == np.float64  # the caller's array is not converted in place


def test_float64_on_request() -> None:
    X, y = blobs(n=40)
    model = build_mlp(2, [4], 3, rng=0, dtype=np.float64)
    fit(model, X.astype(np.float32), y, loss=CE(), epochs=2, seed=0, verbose=0)
    assert all(p.dtype == np.float64 for p in model.params.values())
    assert model.predict(X).dtype == np.float64


def test_fit_does_not_modify_the_inputs() -> None:
    X, y = blobs(n=40)
    X0, y0 = X.copy(), y.copy()
    fit(build_mlp(2, [4], 3, rng=0, dtype=np.float64), X, y, loss=CE(), epochs=2, seed=0, verbose=0)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


# History and validation -------------------------------------------------------------------


def test_history_keys_with_validation_data() -> None:
    X, y = blobs(n=90)
    Xv, yv = blobs(n=30, seed=0)
    history = fit(build_mlp(2, [6], 3, rng=0), X, y, loss=CE(), epochs=3, seed=0, verbose=0,
                  validation=(Xv, yv))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert all(len(v) == 3 for v in history.history.values())
    assert all(0 <= a <= 1 for a in history["accuracy"] + history["val_accuracy"])
    assert all(s >= 0 for s in history["seconds"])
    assert history["lr"] == [0.001] * 3  # the default optimizer is Adam()
    again = History.from_dict(history.to_dict())
    assert again.history == history.history and again.epochs == history.epochs


def test_validation_metrics_match_evaluate_on_the_final_weights() -> None:
    X, y = blobs(n=90)
    Xv, yv = blobs(n=30, seed=5)
    model = build_mlp(2, [6], 3, rng=0)
    history = fit(model, X, y, loss=CE(), epochs=3, seed=0, verbose=0, validation=(Xv, yv))
    scores = evaluate(model, Xv, yv)
    assert history["val_loss"][-1] == pytest.approx(scores["loss"], rel=1e-6)
    assert history["val_accuracy"][-1] == scores["accuracy"]


def test_validation_split() -> None:
    X, y = blobs(n=100)
    recorder = Recorder()
    history = fit(build_mlp(2, [6], 3, rng=0), X, y, loss=CE(), epochs=2, seed=0, verbose=0,
                  validation_split=0.25, batch_size=1000, callbacks=[recorder])
    assert {"val_loss", "val_accuracy"} <= set(history.history)
    # 75 rows train: accuracy is a multiple of 1/75; 25 rows validate: a multiple of 1/25.
    assert all(round(a * 75) == pytest.approx(a * 75) for a in history["accuracy"])
    assert all(round(a * 25) == pytest.approx(a * 25) for a in history["val_accuracy"])


def test_validation_and_validation_split_together_is_an_error() -> None:
    X, y = blobs(n=40)
    with pytest.raises(JacnetValueError, match="validation"):
        fit(build_mlp(2, [4], 3, rng=0), X, y, loss=CE(), epochs=1, verbose=0,
            validation=(X, y), validation_split=0.2)


def test_no_validation_keys_without_validation() -> None:
    X, y = blobs(n=40)
    history = fit(build_mlp(2, [4], 3, rng=0), X, y, loss=CE(), epochs=1, verbose=0)
    assert not any(k.startswith("val_") for k in history.history)


# Callbacks --------------------------------------------------------------------------------


def _overfitting_problem() -> tuple[np.ndarray, ...]:
    """Random labels: the training loss falls while the validation loss soon rises."""
    g = np.random.default_rng(2)
    X, Xv = g.standard_normal((48, 10)), g.standard_normal((48, 10))
    y, yv = g.integers(0, 3, 48), g.integers(0, 3, 48)
    return X, y, Xv, yv


def test_early_stopping_stops_and_restores_the_best_weights() -> None:
    X, y, Xv, yv = _overfitting_problem()
    model = build_mlp(10, [64], 3, rng=0)
    stopper = EarlyStopping(monitor="val_loss", patience=3)
    recorder = Recorder()
    history = fit(model, X, y, loss=CE(), optimizer=Adam(1e-2), epochs=200, batch_size=16, seed=0,
                  verbose=0, validation=(Xv, yv), callbacks=[stopper, recorder])
    n = len(history)
    assert n < 200
    assert stopper.stopped_epoch == n - 1
    val = history["val_loss"]
    best = int(np.argmin(val))
    assert stopper.best_epoch == best
    assert n - 1 - best == 3  # patience epochs without improvement, then stop
    assert best < n - 1
    for k, p in model.params.items():
        np.testing.assert_array_equal(p, recorder.weights[best][k])
    assert not all(np.array_equal(model.params[k], recorder.weights[-1][k]) for k in model.params)
    assert evaluate(model, Xv, yv)["loss"] == pytest.approx(val[best], rel=1e-6)


def test_early_stopping_without_restore_keeps_the_last_weights() -> None:
    X, y, Xv, yv = _overfitting_problem()
    model = build_mlp(10, [64], 3, rng=0)
    recorder = Recorder()
    fit(model, X, y, loss=CE(), optimizer=Adam(1e-2), epochs=200, batch_size=16, seed=0, verbose=0,
        validation=(Xv, yv),
        callbacks=[EarlyStopping(patience=3, restore_best_weights=False), recorder])
    assert len(recorder.weights) < 200
    for k, p in model.params.items():
        np.testing.assert_array_equal(p, recorder.weights[-1][k])


def test_early_stopping_on_accuracy_uses_max_mode() -> None:
    X, y = blobs(n=60)
    stopper = EarlyStopping(monitor="accuracy", patience=2)
    assert stopper.mode == "max"
    history = fit(build_mlp(2, [8], 3, rng=0), X, y, loss=CE(), optimizer=Adam(0.05), epochs=100,
                  seed=0, verbose=0, callbacks=[stopper])
    assert len(history) < 100  # accuracy reaches 1.0 and cannot improve further
    assert max(history["accuracy"]) == pytest.approx(-stopper.best)


def test_early_stopping_on_a_missing_metric() -> None:
    X, y = blobs(n=30)
    with pytest.raises(JacnetValueError, match="val_loss"):
        fit(build_mlp(2, [4], 3, rng=0), X, y, loss=CE(), epochs=2, verbose=0,
            callbacks=[EarlyStopping(monitor="val_loss")])
    with pytest.raises(JacnetValueError, match="mode"):
        EarlyStopping(mode="up")


def test_learning_rate_scheduler_with_step_decay() -> None:
    X, y = blobs(n=40)
    optimizer = SGD(lr=0.1)
    seen: list[float] = []

    class LrSpy(Callback):
        def on_batch_end(self, batch: int, loss: float, run: Run) -> None:
            seen.append(run.optimizer.lr)

    history = fit(build_mlp(2, [4], 3, rng=0), X, y, loss=CE(), optimizer=optimizer, epochs=5,
                  batch_size=20, seed=0, verbose=0,
                  callbacks=[LearningRateScheduler(StepDecay(step_size=2, gamma=0.5)), LrSpy()])
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert seen == pytest.approx([0.1] * 4 + [0.05] * 4 + [0.025] * 2)  # two batches per epoch
    assert optimizer.lr == pytest.approx(0.025)
    with pytest.raises(JacnetValueError, match="schedule"):
        LearningRateScheduler(0.1)  # type: ignore[arg-type]


def test_callback_can_stop_training_and_hooks_run_in_order() -> None:
    class StopAfter(Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float], run: Run) -> None:
            if epoch == 2:
                run.stop_training = True

    X, y = blobs(n=30)
    recorder = Recorder()
    history = fit(build_mlp(2, [4], 3, rng=0), X, y, loss=CE(), epochs=10, seed=0, verbose=0,
                  callbacks=[StopAfter(), recorder])
    assert len(history) == 3 and history.epochs == [0, 1, 2]
    assert recorder.events == ["train_begin", "epoch_begin 0", "epoch_end 0", "epoch_begin 1",
                               "epoch_end 1", "epoch_begin 2", "epoch_end 2", "train_end"]
    assert recorder.logs[0]["loss"] == history["loss"][0]


def test_stop_training_from_a_batch_hook() -> None:
    class StopNow(Callback):
        def on_batch_end(self, batch: int, loss: float, run: Run) -> None:
            run.stop_training = True

    X, y = blobs(n=30)
    history = fit(build_mlp(2, [4], 3, rng=0), X, y, loss=CE(), epochs=10, seed=0, verbose=0,
                  callbacks=[StopNow()])
    assert len(history) == 1


def test_non_finite_guard_on_a_huge_learning_rate() -> None:
    X_tr, _, y_tr, _ = digits()
    X, y = X_tr[:256] * 16 * 1e3, y_tr[:256]  # unscaled pixels, times a thousand
    model = build_mlp(64, [32], 10, rng=0)
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(NonFiniteError) as info:
        fit(model, X, y, loss=CE(), optimizer=SGD(lr=1e6), epochs=5, batch_size=32, seed=0,
            verbose=0)
    message = str(info.value)
    assert "diverged" in message and "epoch 1" in message
    assert "learning rate" in message and "1e+06" in message
    assert all(np.isfinite(p).all() for p in model.params.values())


@pytest.mark.parametrize("loss", [MeanSquaredError(), CE()])
def test_non_finite_guard_message_wherever_it_overflows(loss: Any) -> None:
    # Whether the loss, the output or a gradient overflows first, the guard reports it and the
    # model is left with finite weights.
    X_tr, _, y_tr, _ = digits()
    X = X_tr[:256] * 16 * 1e3
    y = y_tr[:256] if isinstance(loss, CE) else y_tr[:256, None].astype(float)
    model = build_mlp(64, [32], 10 if isinstance(loss, CE) else 1, rng=0)
    diverged = pytest.raises(NonFiniteError, match="training diverged")
    with np.errstate(over="ignore", invalid="ignore"), diverged:
        fit(model, X, y, loss=loss, optimizer=SGD(lr=1e6), epochs=5, batch_size=32, seed=0,
            verbose=0)
    assert all(np.isfinite(p).all() for p in model.params.values())


def test_non_finite_guard_restores_the_last_finite_weights() -> None:
    class Poison(Callback):
        def on_batch_end(self, batch: int, loss: float, run: Run) -> None:
            if run.epoch == 1 and batch == 0:
                run.model.params["0.W"][0, 0] = np.nan

    X, y = blobs(n=64)
    model = build_mlp(2, [4], 3, rng=0)
    recorder = Recorder()
    with pytest.raises(NonFiniteError, match="end of epoch 1") as info:
        fit(model, X, y, loss=CE(), epochs=5, batch_size=16, seed=0, verbose=0,
            callbacks=[recorder, Poison()])
    assert "epoch 2" in str(info.value)
    assert len(recorder.weights) == 1
    for k, p in model.params.items():
        np.testing.assert_array_equal(p, recorder.weights[0][k])


def test_non_finite_weights_at_the_start_are_refused() -> None:
    X, y = blobs(n=20)
    model = build_mlp(2, [4], 3, rng=0)
    model.params["2.b"][0] = np.inf
    with pytest.raises(NonFiniteError, match="finite weights"):
        fit(model, X, y, loss=CE(), epochs=1, verbose=0)


def test_a_given_guard_is_used_instead_of_a_second_one() -> None:
    class CountingGuard(NonFiniteGuard):
        calls = 0

        def on_epoch_end(self, epoch: int, logs: dict[str, float], run: Run) -> None:
            CountingGuard.calls += 1
            super().on_epoch_end(epoch, logs, run)

    X, y = blobs(n=20)
    fit(build_mlp(2, [4], 3, rng=0), X, y, loss=CE(), epochs=2, verbose=0,
        callbacks=[CountingGuard()])
    assert CountingGuard.calls == 2


def test_checkpoint_and_resume_are_bitwise(tmp_path: Any) -> None:
    pytest.importorskip("jacnet.io")
    from jacnet import ModelCheckpoint

    X, y = blobs(n=80)
    Xv, yv = blobs(n=20, seed=3)

    def run(epochs: int, callbacks: list[Callback], resume: Any = None, model_seed: int = 0
            ) -> tuple[Any, History]:
        model = build_mlp(2, [8], 3, rng=model_seed)
        history = fit(model, X, y, loss=CE(), optimizer=Adam(1e-2), epochs=epochs, batch_size=16,
                      seed=11, verbose=0, validation=(Xv, yv), callbacks=callbacks, resume=resume)
        return model, history

    full_model, full_history = run(6, [])

    class StopAfter(Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float], run: Run) -> None:
            if epoch == 2:
                run.stop_training = True

    path = tmp_path / "ckpt.jacnet"
    checkpoint = ModelCheckpoint(path)
    run(6, [checkpoint, StopAfter()])
    assert checkpoint.saved_epochs == [0, 1, 2]
    assert path.exists()
    resumed_model, resumed_history = run(6, [], resume=path, model_seed=99)
    for k, p in full_model.params.items():
        np.testing.assert_array_equal(resumed_model.params[k], p)
    assert history_without_time(resumed_history) == history_without_time(full_history)
    assert resumed_history.epochs == list(range(6))


# Progress output --------------------------------------------------------------------------


def test_verbose_0_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    X, y, Xv, yv = _overfitting_problem()
    fit(build_mlp(10, [8], 3, rng=0), X, y, loss=CE(), optimizer=Adam(0.05), epochs=30, seed=0,
        verbose=0, validation=(Xv, yv), callbacks=[EarlyStopping(patience=1)])
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_verbose_auto_is_quiet_when_output_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    X, y = blobs(n=30)
    fit(build_mlp(2, [4], 3, rng=0), X, y, loss=CE(), epochs=2, seed=0)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("verbose", [1, 2])
def test_verbose_prints_one_line_per_epoch(capsys: pytest.CaptureFixture[str], verbose: int) -> None:
    X, y = blobs(n=30)
    Xv, yv = blobs(n=12, seed=1)
    fit(build_mlp(2, [4], 3, rng=0), X, y, loss=CE(), epochs=4, seed=0, verbose=verbose,
        validation=(Xv, yv))
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 4, out
    for i, line in enumerate(lines, start=1):
        assert line.startswith(f"epoch {i}/4")
        assert "loss" in line and "accuracy" in line and "val_loss" in line
    assert err == ""


# Bad input --------------------------------------------------------------------------------


def _bad_fit(**overrides: Any) -> None:
    X, y = blobs(n=40)
    args: dict[str, Any] = {"model": build_mlp(2, [4], 3, rng=0), "X": X, "y": y, "loss": CE(),
                            "epochs": 1, "verbose": 0}
    args.update(overrides)
    fit(args.pop("model"), args.pop("X"), args.pop("y"), **args)


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"y": np.zeros(39, dtype=int)}, ShapeError, "fit y"),
        ({"X": np.zeros((40, 3))}, ShapeError, "fit X.*2 features"),
        ({"X": np.zeros(40)}, ShapeError, "fit X"),
        ({"X": [["a", "b"]] * 40}, JacnetTypeError, "fit X"),
        ({"y": np.full(40, 3)}, JacnetValueError, r"fit y.*\[0, 2\]"),
        ({"y": np.full(40, -1)}, JacnetValueError, "fit y"),
        ({"y": np.full(40, 0.5)}, JacnetValueError, "fit y"),
        ({"y": None}, JacnetValueError, "fit y"),
        ({"X": np.full((40, 2), np.nan)}, NonFiniteError, "fit X.*finite"),
        ({"epochs": 0}, JacnetValueError, "fit epochs"),
        ({"epochs": 2.5}, JacnetTypeError, "fit epochs"),
        ({"batch_size": 0}, JacnetValueError, "fit batch_size"),
        ({"validation_split": 1.5}, JacnetValueError, "fit validation_split"),
        ({"validation_split": 1.0}, JacnetValueError, "fit validation_split"),
        ({"validation_split": -0.1}, JacnetValueError, "fit validation_split"),
        ({"validation_split": 0.001}, JacnetValueError, "fit validation_split"),
        ({"validation": (np.zeros((5, 2)),)}, JacnetTypeError, "fit validation"),
        ({"validation": (np.zeros((5, 3)), np.zeros(5, dtype=int))}, ShapeError,
         "fit validation X"),
        ({"validation": (np.zeros((5, 2)), np.full(5, 7))}, JacnetValueError, "fit validation y"),
        ({"callbacks": [EarlyStopping(), "stop"]}, JacnetTypeError, "fit callbacks"),
        ({"callbacks": [EarlyStopping]}, JacnetTypeError, "fit callbacks"),
        ({"loss": None}, JacnetValueError, "fit loss"),
        ({"loss": "cross_entropy"}, JacnetTypeError, "fit loss"),
        ({"optimizer": "adam"}, JacnetTypeError, "fit optimizer"),
        ({"seed": -1}, JacnetTypeError, "fit seed"),
        ({"seed": 1.5}, JacnetTypeError, "fit seed"),
        ({"verbose": 3}, JacnetValueError, "fit verbose"),
        ({"model": "mlp"}, JacnetTypeError, "fit model"),
        ({"model": object(), "loss": None}, JacnetTypeError, "fit model"),
    ],
)
def test_bad_fit_arguments(overrides: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        _bad_fit(**overrides)
    assert isinstance(info.value, JacnetError)
    assert isinstance(info.value, (ValueError, TypeError))


def test_bad_input_leaves_the_model_untouched() -> None:
    model = build_mlp(2, [4], 3, rng=0)
    before = params_copy(model)
    with pytest.raises(JacnetValueError):
        _bad_fit(model=model, y=np.full(40, 5))
    for k, p in model.params.items():
        np.testing.assert_array_equal(p, before[k])
    assert model.loss is None


def test_bad_evaluate_arguments() -> None:
    X, y = blobs(n=20)
    model = build_mlp(2, [4], 3, rng=0)
    with pytest.raises(JacnetValueError, match="evaluate loss"):
        evaluate(model, X, y)  # never trained, no loss given
    with pytest.raises(ShapeError, match="evaluate y"):
        evaluate(model, X, y[:5], loss=CE())
    with pytest.raises(JacnetValueError, match="evaluate batch_size"):
        evaluate(model, X, y, loss=CE(), batch_size=0)
    with pytest.raises(JacnetTypeError, match="evaluate model"):
        evaluate("model", X, y, loss=CE())  # type: ignore[arg-type]



class _HalfMSE(Loss):
    """A user's loss that keeps the Loss contract: ``J = 1/(2N) Σ (ŷ - y)²``."""

    def _value(self, P: Any, T: Any) -> float:
        return float(np.sum((P - T) ** 2)) / (2 * P.shape[0])

    def _gradient(self, P: Any, T: Any) -> Any:
        return (P - T) / P.shape[0]


class _OwnForwardMSE(_HalfMSE):
    """A user's loss that overrides ``forward`` itself: fit must call it, not ``_value``."""

    def forward(self, pred: Any, target: Any) -> float:
        self.calls = getattr(self, "calls", 0) + 1
        return super().forward(pred, target)


@pytest.mark.parametrize("loss_class", [_HalfMSE, _OwnForwardMSE])
def test_fit_with_a_users_loss(loss_class: type[Loss]) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]])
    model = build_mlp(3, [8], 1, rng=0, dtype=np.float64)
    loss = loss_class()
    history = fit(model, X, y, loss=loss, optimizer=SGD(0.1), epochs=20, batch_size=16, seed=0,
                  verbose=0)
    assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]
    if loss_class is _OwnForwardMSE:
        assert loss.calls == 20 * 4  # once per step, its own forward


def test_fit_gives_the_losses_that_the_public_loss_computes() -> None:
    # fit converts the targets once and takes each batch's rows: the batch losses must be
    # bitwise those of loss.forward on the same batches.
    X, y = blobs(n=50, k=3)
    model = build_mlp(2, [5], 3, rng=0, dtype=np.float64)
    seen: list[float] = []

    class Record(Callback):
        def on_batch_end(self, batch: int, loss: float, run: Run) -> None:
            seen.append(loss)

    reference = build_mlp(2, [5], 3, rng=0, dtype=np.float64)
    fit(model, X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), epochs=1, batch_size=16,
        shuffle=False, seed=0, callbacks=[Record()], verbose=0)
    loss, optimizer = SoftmaxCrossEntropy(), SGD(0.1)
    for i, s in enumerate(range(0, 50, 16)):
        value = loss.forward(reference.forward(X[s:s + 16]), y[s:s + 16])
        assert value == seen[i]
        reference.backward(loss.backward(), input_grad=False)
        optimizer.step(reference.params, reference.grads)


def test_an_overflow_hidden_by_a_saturated_tanh_still_stops_with_finite_weights() -> None:
    # x·1e30 overflows float32 to inf, the ReLU passes it, tanh(inf) = 1 hides it from the
    # output and the loss; its gradient, inf·0, is NaN. The next step sees a NaN output, and
    # the guard puts back the last finite weights (here: the initial ones).
    model = Sequential([Affine(1, 1, rng=0), ReLU(), Affine(1, 1, rng=1), Tanh(), Affine(1, 2, rng=2)])
    model.params["0.W"][...] = 1e30
    model.params["2.W"][...] = 1.0
    initial = {k: v.copy() for k, v in model.params.items()}
    X = np.full((4, 1), 1e10, dtype=np.float32)
    with pytest.raises(NonFiniteError, match="training diverged"):
        fit(model, X, np.array([0, 1, 0, 1]), loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1),
            epochs=2, batch_size=4, verbose=0)
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, initial[k])


def test_fit_hands_a_subclass_backward_nothing_it_may_keep() -> None:
    """A Sequential subclass's own backward receives the loss gradient as a caller's array: the
    built-in layers below it must not write into it (fit hands over only to jacnet's code)."""
    changed: list[bool] = []

    class Watching(Sequential):
        def backward(self, dY: Any, *, input_grad: bool = True) -> Any:
            kept = dY.copy()
            out = super().backward(dY, input_grad=input_grad)
            changed.append(not np.array_equal(dY, kept))
            return out

    rng = np.random.default_rng(0)
    model = Watching([Affine(3, 4, rng=0), Tanh()])
    fit(model, rng.standard_normal((16, 3)), rng.standard_normal((16, 4)),
               loss=MeanSquaredError(), epochs=1, batch_size=8, verbose=0)
    assert changed == [False, False]
