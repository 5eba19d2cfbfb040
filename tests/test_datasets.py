"""jacnet.datasets: loaders, splits, standardisation, generators and helpers."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jacnet.datasets as jd
from jacnet.errors import JacnetError, JacnetTypeError, JacnetValueError, NonFiniteError, ShapeError

SIZES = {
    # name: (n_train, n_test, n_features, n_classes)
    "digits": (1437, 360, 64, 10),
    "iris": (120, 30, 4, 3),
    "breast_cancer": (455, 114, 30, 2),
    "wine": (142, 36, 13, 3),
    "mnist1d": (4000, 1000, 40, 10),
    "blobs": (480, 120, 2, 3),
    "moons": (480, 120, 2, 2),
    "spirals": (480, 120, 2, 3),
    "diabetes": (353, 89, 10, 0),
    "friedman": (800, 200, 10, 0),
}
SPLIT_BY_SEED = [n for n in jd.DATASETS if n != "mnist1d"]


def _any(value: Any) -> Any:
    """Pass a deliberately wrong value past the type checker."""
    return value


def _global_state() -> tuple[Any, ...]:
    state: Any = np.random.get_state()
    kind, keys, pos, has_gauss, cached = state
    return kind, keys.copy(), pos, has_gauss, cached, random.getstate()


def _same_state(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return (
        a[0] == b[0]
        and np.array_equal(a[1], b[1])
        and a[2:5] == b[2:5]
        and a[5] == b[5]
    )


@pytest.fixture(scope="module")
def mnist1d() -> Iterator[jd.Dataset]:
    """MNIST-1D generated once for the module, with the global state checked around it."""
    jd._mnist1d_arrays.cache_clear()
    jd._raw.cache_clear()
    np.random.seed(123)
    random.seed(123)
    before = _global_state()
    backend_env = os.environ.get("MPLBACKEND")
    data = jd.load("mnist1d")  # generated here, uncached
    assert _same_state(before, _global_state())
    assert os.environ.get("MPLBACKEND") == backend_env
    yield data


@pytest.fixture(scope="module")
def loaded(mnist1d: jd.Dataset) -> dict[str, jd.Dataset]:
    return {name: mnist1d if name == "mnist1d" else jd.load(name) for name in jd.DATASETS}


# --------------------------------------------------------------------------- registry


def test_registry_names_and_order() -> None:
    assert list(jd.DATASETS) == list(SIZES)
    assert tuple(jd.DATASETS) == jd.CLASSIFICATION + jd.REGRESSION
    assert jd.REGRESSION == ("diabetes", "friedman")
    assert all(isinstance(v, str) and v for v in jd.DATASETS.values())


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(JacnetValueError, match=r"expects one of 'digits'.*'friedman', got 'mnist'"):
        jd.load("mnist")
    with pytest.raises(JacnetTypeError, match="load name expects one of"):
        jd.load(3)  # type: ignore[arg-type]


def test_name_spelling_is_forgiving() -> None:
    assert jd.load("Breast-Cancer").name == "breast_cancer"


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", list(SIZES))
def test_shapes_dtypes_and_labels(loaded: dict[str, jd.Dataset], name: str) -> None:
    d = loaded[name]
    n_train, n_test, n_features, n_classes = SIZES[name]
    assert d.name == name
    assert d.X_train.shape == (n_train, n_features)
    assert d.X_test.shape == (n_test, n_features)
    assert d.y_train.shape == (n_train,)
    assert d.y_test.shape == (n_test,)
    assert d.X_train.dtype == d.X_test.dtype == np.float32
    assert d.n_features == n_features == len(d.feature_names)
    assert d.n_classes == n_classes
    assert d.description == jd.DATASETS[name]
    assert np.isfinite(d.X_train).all() and np.isfinite(d.X_test).all()
    if name in jd.CLASSIFICATION:
        assert d.task == "classification"
        assert len(d.classes) == n_classes
        assert d.y_train.dtype == d.y_test.dtype == np.int64
        assert set(np.unique(d.y_train)) == set(range(n_classes))
        assert d.y_test.min() >= 0 and d.y_test.max() < n_classes
    else:
        assert d.task == "regression"
        assert d.classes == ()
        assert d.y_train.dtype == np.float32
    assert name in repr(d)


def test_class_names_are_the_original_ones(loaded: dict[str, jd.Dataset]) -> None:
    assert loaded["iris"].classes == ("setosa", "versicolor", "virginica")
    assert loaded["breast_cancer"].classes == ("malignant", "benign")
    assert loaded["digits"].classes == tuple(range(10))
    assert loaded["mnist1d"].classes == tuple(range(10))


def test_mnist1d_is_its_own_standard_split(mnist1d: jd.Dataset) -> None:
    import mnist1d.data as m

    state = _global_state()
    reference = m.make_dataset(m.get_dataset_args())
    np.random.set_state(state[:5])
    random.setstate(state[5])
    raw = jd.load("mnist1d", standardize=False, dtype=np.float64)
    np.testing.assert_array_equal(raw.X_train, reference["x"])
    np.testing.assert_array_equal(raw.X_test, reference["x_test"])
    np.testing.assert_array_equal(raw.y_train, reference["y"])
    np.testing.assert_array_equal(raw.y_test, reference["y_test"])
    # The split is MNIST-1D's own: seed does not move it, another test_size is refused.
    np.testing.assert_array_equal(jd.load("mnist1d", seed=5).X_train, mnist1d.X_train)
    with pytest.raises(JacnetValueError, match=r"test_size expects 0\.2"):
        jd.load("mnist1d", test_size=0.3)


# --------------------------------------------------------------------------- standardisation


@pytest.mark.parametrize("name", list(SIZES))
def test_train_standardised_test_uses_train_statistics(
    loaded: dict[str, jd.Dataset], name: str
) -> None:
    d = loaded[name]
    raw = jd.load(name, standardize=False, dtype=np.float64)
    mean = raw.X_train.mean(axis=0)
    std = raw.X_train.std(axis=0)
    std[std == 0] = 1.0
    np.testing.assert_allclose(d.X_train, (raw.X_train - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.X_test, (raw.X_test - mean) / std, rtol=1e-5, atol=1e-5)
    X = d.X_train.astype(np.float64)
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-5)
    varying = raw.X_train.std(axis=0) > 0
    np.testing.assert_allclose(X.std(axis=0)[varying], 1.0, atol=1e-4)
    np.testing.assert_array_equal(d.y_train, raw.y_train.astype(d.y_train.dtype))


def test_standardize_function() -> None:
    rng = np.random.default_rng(0)
    A = rng.normal(3.0, 2.0, size=(50, 3))
    A[:, 1] = 7.0  # constant column: std 1, maps to 0
    B = rng.normal(size=(10, 3))
    As, Bs, mean, std = jd.standardize(A, B)
    np.testing.assert_allclose(mean, A.mean(axis=0))
    np.testing.assert_allclose(std, [A[:, 0].std(), 1.0, A[:, 2].std()])
    np.testing.assert_allclose(Bs, (B - mean) / std)
    np.testing.assert_array_equal(As[:, 1], 0.0)
    assert As.dtype == np.float64
    As32, _, m32, _ = jd.standardize(A.astype(np.float32), B)
    assert As32.dtype == m32.dtype == np.float32
    with pytest.raises(ShapeError, match="standardize X_test expects 3 columns"):
        jd.standardize(A, B[:, :2])
    with pytest.raises(ShapeError):
        jd.standardize(A[:, 0], B)
    with pytest.raises(NonFiniteError):
        jd.standardize(A, np.full((2, 3), np.nan))


# --------------------------------------------------------------------------- splits


@pytest.mark.parametrize("name", ["digits", "iris", "breast_cancer", "wine", "moons"])
def test_stratification_keeps_class_proportions(loaded: dict[str, jd.Dataset], name: str) -> None:
    d = loaded[name]
    K = d.n_classes
    counts = np.bincount(d.y_train, minlength=K) + np.bincount(d.y_test, minlength=K)
    expected_test = counts * d.y_test.shape[0] / counts.sum()
    assert np.all(np.abs(np.bincount(d.y_test, minlength=K) - expected_test) < 1.0)


@pytest.mark.parametrize("name", SPLIT_BY_SEED)
def test_seed_fixes_the_split(loaded: dict[str, jd.Dataset], name: str) -> None:
    again = jd.load(name, seed=0)
    other = jd.load(name, seed=1)
    d = loaded[name]
    for field in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, field), getattr(d, field))
    assert not np.array_equal(other.X_test, d.X_test)
    # Only the split moves: the pooled samples are the same for every seed.
    raw0 = jd.load(name, seed=0, standardize=False)
    raw1 = jd.load(name, seed=1, standardize=False)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([raw0.X_train, raw0.X_test]), axis=0),
        np.sort(np.concatenate([raw1.X_train, raw1.X_test]), axis=0),
    )


def test_test_size_changes_the_sizes() -> None:
    d = jd.load("iris", test_size=0.5)
    assert d.X_train.shape[0] == d.X_test.shape[0] == 75
    with pytest.raises(JacnetValueError, match="load test_size expects"):
        jd.load("iris", test_size=1.0)
    with pytest.raises(JacnetValueError, match="non-empty"):
        jd.load("iris", test_size=0.999)


def test_dtype_float64_on_request() -> None:
    d = jd.load("diabetes", dtype=np.float64)
    assert d.X_train.dtype == d.X_test.dtype == d.y_train.dtype == np.float64
    c = jd.load("wine", dtype="float64")
    assert c.X_train.dtype == np.float64 and c.y_train.dtype == np.int64
    with pytest.raises(JacnetTypeError, match=r"load dtype expects numpy\.float32 or numpy\.float64"):
        jd.load("wine", dtype=np.int32)
    with pytest.raises(JacnetTypeError, match="load dtype"):
        jd.load("wine", dtype="no-such-dtype")
    with pytest.raises(JacnetTypeError, match="load standardize expects True or False"):
        jd.load("wine", standardize="yes")  # type: ignore[arg-type]


def test_loaded_arrays_are_the_callers_own() -> None:
    d = jd.load("iris", standardize=False, dtype=np.float64)
    d.X_train[:] = 0.0
    assert jd.load("iris", standardize=False, dtype=np.float64).X_train.any()


def test_dataset_is_frozen(loaded: dict[str, jd.Dataset]) -> None:
    with pytest.raises(AttributeError):
        loaded["iris"].name = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------- global state


@pytest.mark.parametrize("name", list(SIZES))
def test_loaders_leave_global_random_state_alone(mnist1d: jd.Dataset, name: str) -> None:
    np.random.seed(7)
    random.seed(7)
    before = _global_state()
    jd.load(name, seed=3)
    assert _same_state(before, _global_state())


@pytest.mark.parametrize(
    "make",
    [jd.make_blobs, jd.make_moons, jd.make_spirals, jd.make_friedman],
)
def test_generators_are_seeded_and_leave_global_state_alone(make: Any) -> None:
    np.random.seed(5)
    random.seed(5)
    before = _global_state()
    X1, y1 = make(rng=42)
    X2, y2 = make(rng=np.random.default_rng(42))
    assert _same_state(before, _global_state())
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, _ = make(rng=43)
    assert not np.array_equal(X1, X3)
    assert X1.dtype == np.float64 and X1.shape[0] == y1.shape[0]


def test_generator_shapes_and_balance() -> None:
    X, y = jd.make_blobs(n_samples=101, n_classes=4, n_features=5, rng=0)
    assert X.shape == (101, 5) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [26, 25, 25, 25]
    X, y = jd.make_moons(n_samples=11, noise=0.0, rng=0)
    assert X.shape == (11, 2) and np.bincount(y).tolist() == [6, 5]
    upper = X[y == 0]
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0)
    X, y = jd.make_spirals(n_samples=90, n_classes=3, noise=0.0, rng=0)
    assert X.shape == (90, 2) and np.bincount(y).tolist() == [30, 30, 30]
    assert np.hypot(X[:, 0], X[:, 1]).max() == pytest.approx(1.0)
    Xf, yf = jd.make_friedman(n_samples=200, noise=0.0, rng=0)
    assert Xf.shape == (200, 10) and yf.shape == (200,)
    expected = (
        10 * np.sin(np.pi * Xf[:, 0] * Xf[:, 1])
        + 20 * (Xf[:, 2] - 0.5) ** 2
        + 10 * Xf[:, 3]
        + 5 * Xf[:, 4]
    )
    np.testing.assert_allclose(yf, expected)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: jd.make_blobs(n_classes=1), JacnetValueError, "make_blobs n_classes expects"),
        (lambda: jd.make_blobs(n_samples=2, n_classes=3), JacnetValueError, "n_samples"),
        (lambda: jd.make_moons(noise=-0.1), JacnetValueError, "make_moons noise expects"),
        (lambda: jd.make_spirals(noise=float("nan")), JacnetValueError, "noise"),
        (lambda: jd.make_friedman(n_samples=0), JacnetValueError, "make_friedman n_samples"),
        (lambda: jd.make_friedman(n_samples=_any(2.5)), JacnetTypeError, "n_samples"),
        (lambda: jd.make_moons(rng=_any("seed")), JacnetTypeError, "make_moons rng"),
    ],
)
def test_generator_bad_arguments(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------- one_hot


def test_one_hot() -> None:
    out = jd.one_hot([2, 0, 1, 2])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(
        out, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    )
    wide = jd.one_hot(np.array([0, 1], dtype=np.uint8), n_classes=4, dtype=np.float64)
    assert wide.shape == (2, 4) and wide.dtype == np.float64
    assert jd.one_hot(np.array([], dtype=np.int64), n_classes=3).shape == (0, 3)


@given(st.lists(st.integers(0, 9), min_size=1, max_size=30))
def test_one_hot_inverts_argmax(labels: list[int]) -> None:
    out = jd.one_hot(labels, n_classes=10)
    np.testing.assert_array_equal(out.argmax(axis=1), labels)
    np.testing.assert_array_equal(out.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("labels", "kwargs", "error", "match"),
    [
        ([0.0, 1.0], {}, JacnetTypeError, "integers, got dtype float64; cast it"),
        ([True, False], {}, JacnetTypeError, "integers"),
        ("abc", {}, JacnetTypeError, "integers"),
        ([[0, 1]], {}, ShapeError, "1-D array, got shape"),
        ([0, -1], {}, JacnetValueError, "labels >= 0, got -1"),
        ([0, 3], {"n_classes": 3}, JacnetValueError, "labels < n_classes=3, got 3"),
        ([0], {"n_classes": 0}, JacnetValueError, "n_classes expects an integer >= 1"),
        ([], {}, JacnetValueError, "at least one label"),
        ([0], {"dtype": np.complex64}, JacnetTypeError, "one_hot dtype"),
    ],
)
def test_one_hot_bad_input(
    labels: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        jd.one_hot(labels, **kwargs)


# --------------------------------------------------------------------------- train_test_split


def test_train_test_split_partitions_and_keeps_pairs() -> None:
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10) * 10
    X_tr, X_te, y_tr, y_te = jd.train_test_split(X, y, test_size=0.3, seed=1)
    assert X_tr.shape == (7, 2) and X_te.shape == (3, 2)
    assert X_tr.dtype == X.dtype
    np.testing.assert_array_equal(X_tr[:, 0] * 5, y_tr)
    np.testing.assert_array_equal(X_te[:, 0] * 5, y_te)
    assert sorted(np.concatenate([y_tr, y_te]).tolist()) == y.tolist()
    again = jd.train_test_split(X, y, test_size=0.3, seed=1)
    for a, b in zip(again, (X_tr, X_te, y_tr, y_te), strict=True):
        np.testing.assert_array_equal(a, b)
    other = jd.train_test_split(X, y, test_size=0.3, seed=2)
    assert not np.array_equal(other[3], y_te)


@given(
    n=st.integers(4, 60),
    k=st.integers(2, 4),
    test_size=st.floats(0.1, 0.6),
    seed=st.integers(0, 1000),
)
def test_stratified_split_property(n: int, k: int, test_size: float, seed: int) -> None:
    y = np.arange(n) % k
    X = np.arange(n, dtype=np.float64)[:, None]
    X_tr, X_te, _, y_te = jd.train_test_split(X, y, test_size=test_size, seed=seed,
                                                stratify=True)
    assert X_tr.shape[0] + X_te.shape[0] == n and X_tr.shape[0] > 0 and X_te.shape[0] > 0
    np.testing.assert_array_equal(np.sort(np.concatenate([X_tr, X_te])[:, 0]), np.arange(n))
    np.testing.assert_array_equal(X_te[:, 0].astype(int) % k, y_te)
    counts = np.bincount(y, minlength=k)
    expected = counts * y_te.shape[0] / n
    assert np.all(np.abs(np.bincount(y_te, minlength=k) - expected) < 1.0)


def test_stratified_split_with_string_labels() -> None:
    y = np.array(["a"] * 8 + ["b"] * 2)
    _, _, y_tr, y_te = jd.train_test_split(np.zeros((10, 1)), y, test_size=0.5, stratify=True)
    assert sorted(y_te.tolist()) == ["a"] * 4 + ["b"]
    assert sorted(y_tr.tolist()) == ["a"] * 4 + ["b"]


@pytest.mark.parametrize(
    ("X", "y", "kwargs", "error", "match"),
    [
        (np.zeros((5, 2)), np.zeros(4), {}, ShapeError, "same number of samples, got 5 and 4"),
        (np.float64(1.0), np.zeros(1), {}, ShapeError, "sample axis"),
        (np.zeros((5, 2)), np.zeros(5), {"test_size": 0.0}, JacnetValueError, "test_size"),
        (np.zeros((5, 2)), np.zeros(5), {"test_size": 1.5}, JacnetValueError, "test_size"),
        (np.zeros((5, 2)), np.zeros(5), {"test_size": "0.2"}, JacnetTypeError, "test_size"),
        (np.zeros((1, 2)), np.zeros(1), {}, JacnetValueError, "both parts non-empty"),
        (np.zeros((5, 2)), np.zeros(5), {"test_size": 0.9}, JacnetValueError, "non-empty"),
        (np.zeros((5, 2)), np.zeros((5, 2)), {"stratify": True}, ShapeError, "1-D"),
        (np.zeros((5, 2)), np.zeros(5), {"stratify": "y"}, JacnetTypeError, "stratify"),
        (np.zeros((5, 2)), np.zeros(5), {"seed": -1}, JacnetValueError, "seed"),
    ],
)
def test_train_test_split_bad_input(
    X: Any, y: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        jd.train_test_split(X, y, **kwargs)
    assert isinstance(info.value, JacnetError)


def test_small_test_size_is_counted_exactly() -> None:
    # 0.3 * 10 is 3.0000000000000004 in floating point; the test part still has 3 samples.
    _, X_te, _, _ = jd.train_test_split(np.zeros((10, 1)), np.zeros(10), test_size=0.3)
    assert X_te.shape[0] == 3


# --------------------------------------------------------------------------- missing extras


def test_missing_sklearn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "sklearn" or name.startswith("sklearn."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'jacnet\[sklearn\]'"):
        jd._from_sklearn("wine")  # what load("wine") calls once per process


def test_missing_mnist1d_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "mnist1d" or name.startswith("mnist1d."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'jacnet\[mnist1d\]'"):
        jd._mnist1d_arrays.__wrapped__()  # the generator behind the per-process cache
