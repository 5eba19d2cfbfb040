"""A model on the torch backend saves, loads, resumes, is checked, sits in a scikit-learn
estimator and trains from the command line exactly as one on NumPy does."""

from __future__ import annotations

import copy
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jacnet
from jacnet.callbacks import EarlyStopping, ModelCheckpoint
from jacnet.cli import main
from jacnet.errors import JacnetValueError
from jacnet.jacobian import expanded_jacobian, numerical_jacobian

torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")


def network(dtype: Any = np.float32) -> jacnet.Sequential:
    """A small MLP (the layers that run on torch at the time of writing)."""
    return jacnet.Sequential([jacnet.Affine(4, 6, rng=1, dtype=dtype), jacnet.Tanh(),
                              jacnet.Affine(6, 3, rng=2, dtype=dtype)], loss=jacnet.SoftmaxCrossEntropy())


def data(n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.intp) + (X[:, 2] > 1)


def host(A: Any) -> np.ndarray:
    return A.detach().cpu().numpy() if torch.is_tensor(A) else np.asarray(A)


def assert_same_arrays(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert host(a[k]).dtype == host(b[k]).dtype, k
        np.testing.assert_array_equal(host(a[k]), host(b[k]), err_msg=k)


# Files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("saved_on", "loaded_on"), [("torch", "numpy"), ("numpy", "torch"),
                                                     ("torch", "torch")])
def test_a_file_loads_bitwise_on_either_backend(tmp_path: Path, dtype: Any, saved_on: str,
                                                loaded_on: str) -> None:
    model = network(dtype).to(saved_on)
    optimizer = jacnet.Adam(1e-2)
    X, y = data()
    jacnet.fit(model, X, y, optimizer=optimizer, epochs=2, batch_size=8, seed=0, verbose=0)
    path = jacnet.save(model, tmp_path / "m.jacnet", optimizer, training_state={"epoch": 1})
    checkpoint = jacnet.load_checkpoint(path, backend=loaded_on)
    loaded = checkpoint.model
    assert loaded.backend == loaded_on and loaded.device == "cpu"
    assert all(type(p) is (np.ndarray if loaded_on == "numpy" else torch.Tensor)
               for p in (*loaded.params.values(), *loaded.buffers.values()))
    assert_same_arrays(loaded.params, model.params)
    assert_same_arrays(loaded.buffers, model.buffers)
    assert_same_arrays(checkpoint.optimizer.state_dict()["state"], optimizer.state_dict()["state"])
    assert checkpoint.optimizer.iterations == optimizer.iterations
    assert model.backend == saved_on  # saving left the model where it was
    # The same file from either backend: the bytes do not say where the model ran.
    other = jacnet.save(copy.deepcopy(model).to("numpy"), tmp_path / "n.jacnet", optimizer,
                        training_state={"epoch": 1})
    assert path.read_bytes() == other.read_bytes()
    # Predictions agree to rounding (torch and NumPy sum matrix products in their own order).
    np.testing.assert_allclose(host(jacnet.load(path, "torch", "cpu").predict(X)),
                               host(jacnet.load(path).predict(X)),
                               rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"backend": "jax"}, "load backend expects one of"),
    ({"device": "cuda"}, "load device expects 'cpu' for the numpy backend"),
    ({"backend": "torch", "device": "tpu:0"}, "load device expects a torch device"),
])
def test_load_names_a_bad_backend_before_reading(tmp_path: Path, kwargs: dict[str, Any],
                                                 match: str) -> None:
    with pytest.raises(JacnetValueError, match=match):
        jacnet.load(tmp_path / "missing.jacnet", **kwargs)


def run_torch(X: np.ndarray, y: np.ndarray, epochs: int, callbacks: list[Any],
              resume: Path | None = None) -> tuple[jacnet.Sequential, jacnet.History]:
    model = network(np.float64).to("torch")
    history = jacnet.fit(model, X, y, optimizer=jacnet.Adam(1e-2), epochs=epochs, batch_size=8,
                         validation_split=0.25, seed=3, verbose=0, callbacks=callbacks, resume=resume)
    return model, history


def test_a_resumed_torch_run_gives_the_uninterrupted_runs_weights(tmp_path: Path) -> None:
    X, y = data(40)
    path = tmp_path / "run.jacnet"
    full, full_history = run_torch(X, y, 6, [EarlyStopping(patience=10)])
    run_torch(X, y, 3, [ModelCheckpoint(path), EarlyStopping(patience=10)])
    # EarlyStopping's best weights (tensors) travel in the checkpoint as NumPy arrays.
    states = {c["type"]: c["state"] for c in jacnet.load_checkpoint(path).training_state["callbacks"]}
    best = states["EarlyStopping"]["best_weights"]
    assert best.keys() == full.params.keys()
    assert all(type(v) is np.ndarray for v in best.values())
    resumed, history = run_torch(X, y, 6, [ModelCheckpoint(path), EarlyStopping(patience=10)],
                                 resume=path)
    assert resumed.backend == "torch"
    assert_same_arrays(resumed.params, full.params)
    assert_same_arrays(resumed.buffers, full.buffers)
    for key in ("loss", "val_loss", "val_accuracy"):  # (the timings differ, of course)
        assert history[key] == full_history[key], key
    assert jacnet.load_checkpoint(path).training_state["epoch"] == 5  # it went on saving


# Checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_check_gradients_on_a_torch_model_is_the_numpy_report(dtype: Any) -> None:
    X, y = data(5)
    model = network(dtype)
    on_torch = copy.deepcopy(model).to("torch")
    before = {k: v.clone() for k, v in on_torch.params.items()}
    report = jacnet.check_gradients(on_torch, torch.from_numpy(X), target=torch.from_numpy(y),
                                    loss=jacnet.SoftmaxCrossEntropy())
    expected = jacnet.check_gradients(model, X, target=y, loss=jacnet.SoftmaxCrossEntropy())
    assert report.ok and report.checks == expected.checks and report.notes == expected.notes
    assert on_torch.backend == "torch"
    for k, p in on_torch.params.items():
        assert torch.equal(p, before[k])


@pytest.mark.parametrize("wrt", ["X", "W"])
def test_layer_jacobians_of_a_torch_layer_are_the_numpy_ones(wrt: str) -> None:
    X = data(3)[0]
    layer = jacnet.Affine(4, 2, rng=0, dtype=np.float64)
    on_torch = copy.deepcopy(layer).to("torch")
    for build in (expanded_jacobian, numerical_jacobian):
        J = build(on_torch, torch.from_numpy(X), wrt=wrt)
        assert isinstance(J, np.ndarray)
        np.testing.assert_array_equal(J, build(layer, X, wrt=wrt))
    assert torch.is_tensor(on_torch.params["W"])  # the caller's layer stays on torch, unchanged
    np.testing.assert_array_equal(on_torch.params["W"].numpy(), layer.params["W"])


# scikit-learn --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def estimators() -> dict[str, Any]:
    from jacnet.sklearn import JacnetClassifier, JacnetRegressor

    X, y = data(60)
    common = {"hidden_layer_sizes": (8,), "epochs": 8, "batch_size": 16, "dtype": "float64",
              "random_state": 0, "n_iter_no_change": 100}
    fitted: dict[str, Any] = {"X": X, "y": y}
    with pytest.warns(Warning):  # the maximum number of epochs is reached
        for name in ("numpy", "torch"):
            fitted[f"clf_{name}"] = JacnetClassifier(backend=name, **common).fit(
                torch.from_numpy(X) if name == "torch" else X, y)
            fitted[f"reg_{name}"] = JacnetRegressor(backend=name, **common).fit(X, X[:, :2] @ [1.0, -2.0])
    return fitted


def test_estimators_on_torch_predict_like_numpy(estimators: dict[str, Any]) -> None:
    X, y = estimators["X"], estimators["y"]
    clf, reg = estimators["clf_torch"], estimators["reg_torch"]
    assert clf.model_.backend == "torch" and reg.model_.backend == "torch"
    assert estimators["clf_numpy"].model_.backend == "numpy"
    for name, inputs in (("array", X), ("tensor", torch.from_numpy(X))):
        P = clf.predict_proba(inputs)
        assert type(P) is np.ndarray and P.dtype == np.float64, name
        np.testing.assert_allclose(P, estimators["clf_numpy"].predict_proba(X), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(clf.predict(inputs), estimators["clf_numpy"].predict(X))
        Y = reg.predict(inputs)
        assert type(Y) is np.ndarray and Y.shape == (X.shape[0],), name
        np.testing.assert_allclose(Y, estimators["reg_numpy"].predict(X), rtol=0, atol=1e-6)
    assert clf.score(X, y) == estimators["clf_numpy"].score(X, y)


def test_a_torch_estimator_pickles_and_clones(estimators: dict[str, Any]) -> None:
    from sklearn.base import clone

    X, clf = estimators["X"], estimators["clf_torch"]
    back = pickle.loads(pickle.dumps(clf))
    assert back.model_.backend == "torch"
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    fresh = clone(clf)
    assert fresh.get_params()["backend"] == "torch" and fresh.get_params()["device"] is None
    assert not hasattr(fresh, "model_")


def test_an_estimators_backend_is_checked_by_fit() -> None:
    from jacnet.sklearn import JacnetRegressor

    X, _ = data(10)
    est = JacnetRegressor(backend="jax", device="cuda")  # stored as given
    assert est.get_params()["backend"] == "jax"
    with pytest.raises(ValueError, match="JacnetRegressor backend expects one of"):
        est.fit(X, X[:, 0])
    with pytest.raises(ValueError, match="JacnetRegressor device expects 'cpu'"):
        JacnetRegressor(device="cuda").fit(X, X[:, 0])


# Command line --------------------------------------------------------------------------------

TRAIN = ["train", "--data", "iris", "--hidden", "8", "--epochs", "3", "--dtype", "float64",
         "--seed", "1", "--quiet"]


def test_jacnet_train_on_torch_records_it_and_matches_numpy(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TRAIN, "--backend", "torch", "--device", "cpu", "--out", str(tmp_path / "t")]) == 0
    assert main([*TRAIN, "--out", str(tmp_path / "n")]) == 0
    capsys.readouterr()
    on_torch = json.loads((tmp_path / "t" / "metrics.json").read_text())
    on_numpy = json.loads((tmp_path / "n" / "metrics.json").read_text())
    assert (on_torch["backend"], on_torch["device"]) == ("torch", "cpu")
    assert (on_numpy["backend"], on_numpy["device"]) == ("numpy", "cpu")
    assert on_torch["test_loss"] == pytest.approx(on_numpy["test_loss"], abs=1e-6)
    a, b = jacnet.load(tmp_path / "t" / "model.jacnet"), jacnet.load(tmp_path / "n" / "model.jacnet")
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=0, atol=1e-6)


@pytest.mark.parametrize(("flags", "message"), [
    (["--backend", "jax"], "argument --backend: invalid choice: 'jax'"),
    (["--device", "cuda"], "train --device expects 'cpu' for the numpy backend, got 'cuda'; "
                           "use --backend torch"),
    (["--backend", "torch", "--device", "tpu:0"], "train --device expects a torch device"),
])
def test_jacnet_train_refuses_a_bad_backend_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        flags: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse exits itself
        code = main([*TRAIN, *flags, "--out", str(tmp_path)])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "metrics.json").exists()


def test_jacnet_train_names_the_extra_when_torch_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main([*TRAIN, "--backend", "torch", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'jacnet[torch]'" in err and err.count("\n") == 1


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("check", ["check_estimators_pickle", "check_fit_idempotent",
                                   "check_methods_subset_invariance", "check_estimators_dtypes"])
@pytest.mark.parametrize("kind", ["JacnetClassifier", "JacnetRegressor"])
def test_scikit_learns_checks_hold_on_torch(kind: str, check: str) -> None:
    """A few of scikit-learn's estimator checks (the whole set passes on torch too, but takes
    seconds): pickling, refitting, batch-independent predictions, input dtypes."""
    from sklearn.utils import estimator_checks

    import jacnet.sklearn

    estimator = getattr(jacnet.sklearn, kind)((8,), epochs=5, batch_size=16, backend="torch",
                                              random_state=0)
    getattr(estimator_checks, check)(kind, estimator)
