"""``build_cnn``, ``Unflatten``, the exact standardisation fold, ``jacnet train --model cnn`` and
the per-data-set presets. Tiny configurations only: no test here trains to a score level."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jacnet
from jacnet.cli import main
from jacnet.cnn import fold_scalar_standardization
from jacnet.errors import JacnetValueError, ShapeError
from jacnet.presets import DEFAULTS, MODELS, PRESETS, settings


def _layer_names(model: jacnet.Sequential) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def test_mnist1d_cnn_pools_every_block_and_ends_in_one_position() -> None:
    net = jacnet.build_cnn((1, 40), (32, 32, 32), 10, rng=0)
    assert _layer_names(net) == ["Unflatten", *["Conv1D", "ReLU", "MaxPool1D"] * 3, "Flatten",
                                 "Dropout", "Affine"]
    assert net.layers[-1].params["W"].shape == (32, 10)  # 40 -> 36 -> 18 -> 14 -> 7 -> 3 -> 1
    assert net.in_features == 40 and net.forward(np.zeros((3, 40), np.float32)).shape == (3, 10)


def test_digits_cnn_drops_the_pools_that_do_not_fit_from_the_front() -> None:
    net = jacnet.build_cnn((1, 8, 8), (32, 64), 10, kernel_size=3, dropout=0.0, rng=0)
    assert _layer_names(net) == ["Unflatten", "Conv2D", "ReLU", "Conv2D", "ReLU", "MaxPool2D",
                                 "Flatten", "Affine"]  # 8 -> 6 -> 4 -> 2: 64 * 2 * 2 features
    assert net.layers[-1].params["W"].shape == (256, 10)


@pytest.mark.parametrize(("kwargs", "error", "fragment"), [
    ({"input_shape": (40,)}, JacnetValueError, "build_cnn input_shape"),
    ({"channels": ()}, JacnetValueError, "build_cnn channels"),
    ({"kernel_size": 30}, JacnetValueError, "build_cnn kernel_size"),
    ({"dropout": 1.0}, JacnetValueError, "build_cnn dropout"),
    ({"output": "tanh"}, JacnetValueError, "build_cnn output"),
])
def test_bad_cnn_arguments_are_named(kwargs: dict[str, object], error: type[Exception],
                                     fragment: str) -> None:
    args: dict[str, object] = {"input_shape": (1, 40), "channels": (4, 4, 4), "out_features": 10}
    args.update(kwargs)
    with pytest.raises(error, match=fragment):
        jacnet.build_cnn(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(1, 12), (2, 7, 7)])
def test_the_folded_scalar_standardisation_is_exact(shape: tuple[int, ...]) -> None:
    net = jacnet.build_cnn(shape, (3, 4), 5, kernel_size=3, rng=1, dtype=np.float64)
    for layer in net.layers:
        if "b" in layer.params:
            layer.params["b"][:] = np.random.default_rng(2).standard_normal(layer.params["b"].shape)
    X = np.random.default_rng(3).normal(4.0, 2.5, (6, int(np.prod(shape))))
    expected = net.predict((X - 4.0) / 2.5)
    fold_scalar_standardization(net, 4.0, 2.5)
    np.testing.assert_allclose(net.predict(X), expected, rtol=1e-12, atol=1e-12)


def test_fold_refuses_a_padded_or_affine_first_layer() -> None:
    padded = jacnet.Sequential([jacnet.Conv1D(1, 2, 3, padding=1), jacnet.Flatten()])
    with pytest.raises(JacnetValueError, match="unpadded convolution"):
        fold_scalar_standardization(padded, 1.0, 2.0)
    with pytest.raises(JacnetValueError, match="unpadded convolution"):
        fold_scalar_standardization(jacnet.build_mlp(3, [2], 1), 1.0, 2.0)


def test_unflatten_is_flatten_inverted_with_an_identity_jacobian() -> None:
    layer = jacnet.Unflatten((2, 3))
    X = np.arange(12.0).reshape(2, 6)
    Y = layer.forward(X)
    assert Y.shape == (2, 2, 3) and np.array_equal(jacnet.Flatten().forward(Y), X)
    dY = np.random.default_rng(0).standard_normal(Y.shape)
    np.testing.assert_array_equal(layer.backward(dY), dY.reshape(2, 6))
    J = layer.jacobian(X)
    assert J.shape == (2, 2, 3, 2, 6)
    np.testing.assert_array_equal(J.reshape(12, 12), np.eye(12))
    with pytest.raises(ShapeError, match=r"Unflatten\(\(2, 3\)\).forward X expects shape \(N, 6\)"):
        layer.forward(np.zeros((2, 5)))
    with pytest.raises(JacnetValueError, match="Unflatten shape"):
        jacnet.Unflatten((0, 3))


# Presets ---------------------------------------------------------------------------------------


def test_presets_fill_only_what_the_command_line_leaves_out() -> None:
    model, values = settings("diabetes", None, {"epochs": 7, "hidden": None})
    assert model == "mlp" and values["epochs"] == 7 and values["hidden"] == (16,)
    assert values["weight_decay"] == 1.0 and values["batch_size"] == DEFAULTS["batch_size"]
    assert settings("mnist1d", None, {})[0] == MODELS["mnist1d"] == "cnn"
    assert settings("mnist1d", "mlp", {})[1]["patience"] == 40
    assert settings("wine", None, {})[1] == DEFAULTS
    assert settings(None, None, {})[1] == DEFAULTS  # a file: no preset
    for (_name, model_name), preset in PRESETS.items():
        assert model_name in ("mlp", "cnn") and set(preset) <= set(DEFAULTS)


def _train(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["train", *argv, "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    return json.loads((out / "metrics.json").read_text())  # type: ignore[no-any-return]


def test_train_uses_the_data_sets_preset_and_options_override_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = _train(["--data", "diabetes", "--epochs", "2"], tmp_path / "a", capsys)
    assert (metrics["hidden"], metrics["epochs_requested"], metrics["weight_decay"]) == ([16], 2, 1.0)
    assert metrics["preset"] == "diabetes/mlp" and metrics["model"] == "mlp"
    metrics = _train(["--data", "digits", "--model", "cnn", "--channels", "2", "--epochs", "1",
                      "--optimizer", "sgd", "--validation-split", "0.1"], tmp_path / "c", capsys)
    assert (metrics["lr"], metrics["patience"], metrics["validation_split"]) == (0.05, 0, 0.1)
    metrics = _train(["--data", "wine", "--epochs", "1"], tmp_path / "b", capsys)
    assert (metrics["hidden"], metrics["weight_decay"], metrics["preset"]) == ([256, 128], 0.1, None)


# jacnet train --model cnn -------------------------------------------------------------------------


def test_cnn_model_file_predicts_bitwise_alike_in_a_fresh_process(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cnn"
    metrics = _train(["--data", "digits", "--model", "cnn", "--channels", "4,8", "--epochs", "1"],
                     out, capsys)
    assert (metrics["model"], metrics["channels"], metrics["kernel_size"]) == ("cnn", [4, 8], 3)
    assert metrics["preset"] == "digits/cnn" and metrics["batch_size"] == 100
    model = jacnet.load(out / "model.jacnet")
    assert "Conv2D" in _layer_names(model) and "Dropout" in _layer_names(model)
    from jacnet.datasets import load

    X = load("digits", standardize=False).X_test  # raw features: the standardisation is folded in
    np.save(tmp_path / "X.npy", X)
    here = model.predict(X)
    script = ("import sys, numpy as np, jacnet; m = jacnet.load(sys.argv[1]); "
              "np.save(sys.argv[3], m.predict(np.load(sys.argv[2])))")
    subprocess.run([sys.executable, "-c", script, str(out / "model.jacnet"), str(tmp_path / "X.npy"),
                    str(tmp_path / "Y.npy")], check=True)
    there = np.load(tmp_path / "Y.npy")
    assert there.dtype == here.dtype and np.array_equal(there, here)
    accuracy = float(np.mean(np.argmax(here, axis=1) == load("digits").y_test))
    assert accuracy == pytest.approx(metrics["test_accuracy"])  # folded model scores as trained
    assert main(["evaluate", str(out / "model.jacnet"), "--data", "digits", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(accuracy)


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--data", "iris", "--model", "cnn"], "train --model cnn expects sequence or image data"),
    (["--data", "digits", "--model", "cnn", "--hidden", "8"], "train --hidden expects --model mlp"),
    (["--data", "digits", "--channels", "8"], "train --channels expects --model cnn"),
    (["--data", "digits", "--model", "cnn", "--activation", "tanh"], "train --activation expects"),
    (["--data", "digits", "--model", "cnn", "--kernel-size", "9"], "--kernel-size expects"),
])
def test_bad_model_options_are_one_line_errors(argv: list[str], fragment: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", *argv, "--quiet", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
