"""Ready-to-train data sets: fixed train/test splits, standardised on the training part.

Nothing downloads at run time. ``load(name)`` returns a :class:`Dataset` with train and test
arrays for one of the names in :data:`DATASETS` (the names ``jacnet train --data`` takes):

* classification: ``digits``, ``iris``, ``breast_cancer``, ``wine`` (the copies scikit-learn
  ships, ``pip install 'jacnet[sklearn]'``), ``mnist1d`` (generated locally by the ``mnist1d``
  package's own generator with its standard, seeded arguments, ``pip install
  'jacnet[mnist1d]'``), and the synthetic ``blobs``, ``moons`` and ``spirals``;
* regression: ``diabetes`` (scikit-learn's copy) and the synthetic ``friedman`` (Friedman #1).

The split is stratified for classification and fixed by ``seed``; standardisation uses the mean
and standard deviation of the training part only and applies them to both parts. The synthetic
data sets are always drawn from the same fixed seed, so ``seed`` changes only the split.

No loader reads or changes the global NumPy or ``random`` state: the synthetic generators take
a ``numpy.random.Generator``, and the global state that ``mnist1d``'s generator seeds is saved
before and restored after it runs.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike, NDArray

from jacnet._validation import (
    FloatArray,
    as_float_array,
    as_ndarray,
    as_rng,
    check_positive_int,
    check_real,
    describe,
)
from jacnet.errors import JacnetTypeError, JacnetValueError, ShapeError

__all__ = [
    "CLASSIFICATION",
    "DATASETS",
    "REGRESSION",
    "Dataset",
    "load",
    "make_blobs",
    "make_friedman",
    "make_moons",
    "make_spirals",
    "one_hot",
    "standardize",
    "train_test_split",
]

Task = Literal["classification", "regression"]

#: Every name :func:`load` accepts, with a one-line description, in a stable order.
DATASETS: dict[str, str] = {
    "digits": "8x8 handwritten digits (scikit-learn): 1797 samples, 64 features, 10 classes",
    "iris": "Iris flowers (scikit-learn): 150 samples, 4 features, 3 classes",
    "breast_cancer": (
        "Wisconsin diagnostic breast cancer (scikit-learn): 569 samples, 30 features, 2 classes"
    ),
    "wine": "Wine cultivars (scikit-learn): 178 samples, 13 features, 3 classes",
    "mnist1d": (
        "MNIST-1D (generated locally by mnist1d): 4000 train / 1000 test signals of length 40, "
        "10 classes"
    ),
    "blobs": "Gaussian blobs (synthetic): 600 samples, 2 features, 3 classes",
    "moons": "Two interleaving half-moons (synthetic): 600 samples, 2 features, 2 classes",
    "spirals": "Three interleaved spiral arms (synthetic): 600 samples, 2 features, 3 classes",
    "diabetes": "Diabetes progression (scikit-learn): 442 samples, 10 features, regression",
    "friedman": (
        "Friedman #1 (synthetic): 1000 samples, 10 features (5 informative), regression"
    ),
}

#: Names of the classification data sets, in :data:`DATASETS` order.
CLASSIFICATION: tuple[str, ...] = (
    "digits",
    "iris",
    "breast_cancer",
    "wine",
    "mnist1d",
    "blobs",
    "moons",
    "spirals",
)

#: Names of the regression data sets, in :data:`DATASETS` order.
REGRESSION: tuple[str, ...] = ("diabetes", "friedman")

#: Seed of the fixed draw behind each synthetic data set (``load``'s ``seed`` moves the split).
_SYNTHETIC_SEED = 0

#: MNIST-1D's own split: its generator keeps the first 80 % of 5000 samples for training.
_MNIST1D_TEST_SIZE = 0.2


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train and test arrays of one data set.

    Attributes
    ----------
    name : str
        The name :func:`load` was given (canonical spelling).
    task : {"classification", "regression"}
        What the targets are.
    X_train : ndarray of shape (N_train, D)
        Training features, float32 by default (the ``dtype`` passed to :func:`load`).
    y_train : ndarray of shape (N_train,)
        Training targets: int64 labels ``0 .. K-1`` for classification, floats of the
        features' dtype for regression.
    X_test : ndarray of shape (N_test, D)
        Test features, standardised with the training statistics.
    y_test : ndarray of shape (N_test,)
        Test targets, as ``y_train``.
    classes : tuple
        Original class names, ``classes[k]`` for label ``k``; empty for regression.
    feature_names : tuple of str
        One name per feature column.
    description : str
        A one-line description.

    Notes
    -----
    Equality and hashing are by identity (arrays have no single truth value).
    """

    name: str
    task: Task
    X_train: FloatArray
    y_train: NDArray[Any]
    X_test: FloatArray
    y_test: NDArray[Any]
    classes: tuple[int | str, ...]
    feature_names: tuple[str, ...]
    description: str

    @property
    def n_features(self) -> int:
        """Number of feature columns ``D``."""
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes ``K``; 0 for regression."""
        return len(self.classes) if self.task == "classification" else 0

    def __repr__(self) -> str:
        extra = f", n_classes={self.n_classes}" if self.task == "classification" else ""
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, "
            f"train={self.X_train.shape}, test={self.X_test.shape}, "
            f"dtype={self.X_train.dtype}{extra})"
        )


# --------------------------------------------------------------------------- helpers


#: Largest ``N * K`` that ``one_hot`` allocates (1 GiB of float32); a larger one is almost
#: surely labels that are not class indices.
MAX_ONE_HOT_ENTRIES = 2**28


def one_hot(labels: Any, n_classes: int | None = None, dtype: DTypeLike = np.float32) -> NDArray[Any]:
    """Turn integer class labels into one-hot rows.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Class labels, each in ``0 .. n_classes - 1``.
    n_classes : int or None
        Number of classes ``K``; ``None`` uses ``labels.max() + 1``.
    dtype : dtype
        Numeric dtype of the result.

    Returns
    -------
    ndarray of shape (N, K)
        ``out[i, labels[i]] == 1`` and every other entry 0.

    Raises
    ------
    JacnetTypeError
        ``labels`` are not integers, or ``dtype`` is not a real numeric dtype.
    ShapeError
        ``labels`` is not 1-D.
    JacnetValueError
        A label is negative or not below ``n_classes``, or ``labels`` is empty and
        ``n_classes`` is not given.
    """
    what = "one_hot labels"
    y = as_ndarray(labels, what, "a 1-D array of integers")
    if y.size == 0 and y.dtype.kind == "f":  # np.asarray([]) is float64
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        hint = "; cast it with .astype(int)" if y.dtype.kind == "f" else ""
        raise JacnetTypeError(
            f"{what} expects a 1-D array of integers, got dtype {y.dtype}{hint}"
        )
    if y.ndim != 1:
        raise ShapeError(f"{what} expects a 1-D array, got shape {y.shape}")
    out_dtype = _numeric_dtype(dtype, "one_hot dtype")
    if n_classes is None:
        if y.size == 0:
            raise JacnetValueError(
                f"{what} expects at least one label when n_classes is not given, got 0"
            )
        K = int(y.max()) + 1
    else:
        K = check_positive_int(n_classes, "one_hot n_classes")
    if y.size:
        low, high = int(y.min()), int(y.max())
        if low < 0:
            raise JacnetValueError(f"{what} expects labels >= 0, got {low}")
        if high >= K:
            raise JacnetValueError(
                f"{what} expects labels < n_classes={K}, got {high}"
            )
    if y.shape[0] * K > MAX_ONE_HOT_ENTRIES:
        source = "labels.max() + 1" if n_classes is None else "n_classes"
        raise JacnetValueError(
            f"{what} expects at most {MAX_ONE_HOT_ENTRIES:,} entries in the (N, K) result, got "
            f"N={y.shape[0]:,} x K={K:,} ({source}); check the labels are class indices"
        )
    out = np.zeros((y.shape[0], K), dtype=out_dtype)
    out[np.arange(y.shape[0]), y] = 1
    return out


def train_test_split(
    X: Any,
    y: Any,
    *,
    test_size: float = 0.2,
    seed: int | np.random.Generator | None = 0,
    stratify: bool = False,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Split samples into a shuffled training and test part.

    The test part holds ``ceil(test_size * N)`` samples, the training part the rest; both
    must be non-empty. With ``stratify=True`` each distinct value of ``y`` is split in (as
    nearly as possible) the same proportion, so the class proportions are kept.

    Parameters
    ----------
    X : array_like of shape (N, ...)
        Features; any dtype, kept as it is.
    y : array_like of shape (N, ...)
        Targets; 1-D when ``stratify`` is true.
    test_size : float
        Fraction of the samples in the test part, in ``(0, 1)``.
    seed : int, numpy.random.Generator or None
        Fixes the split: the same seed gives the same split. ``None`` draws a fresh one.
        The global NumPy state is never used.
    stratify : bool
        Keep the proportions of the values of ``y`` in both parts.

    Returns
    -------
    X_train : ndarray of shape (N - n_test, ...)
    X_test : ndarray of shape (n_test, ...)
    y_train : ndarray of shape (N - n_test, ...)
    y_test : ndarray of shape (n_test, ...)
        Copies, in scikit-learn's order.

    Raises
    ------
    ShapeError
        ``X`` or ``y`` has no sample axis, their lengths differ, or ``stratify`` is true and
        ``y`` is not 1-D.
    JacnetValueError
        ``test_size`` is outside ``(0, 1)`` or leaves one part empty.
    """
    Xa = _as_samples(X, "train_test_split X")
    ya = _as_samples(y, "train_test_split y")
    if Xa.shape[0] != ya.shape[0]:
        raise ShapeError(
            "train_test_split expects X and y with the same number of samples, "
            f"got {Xa.shape[0]} and {ya.shape[0]}"
        )
    if not isinstance(stratify, (bool, np.bool_)):
        raise JacnetTypeError(
            f"train_test_split stratify expects True or False, got {describe(stratify)}"
        )
    if stratify and ya.ndim != 1:
        raise ShapeError(
            f"train_test_split y expects a 1-D array when stratify=True, got shape {ya.shape}"
        )
    size = check_real(test_size, "train_test_split test_size", low=0.0, high=1.0,
                      low_open=True, high_open=True)
    rng = as_rng(seed, "train_test_split seed")
    train_idx, test_idx = _split_indices(
        ya if stratify else None, Xa.shape[0], size, rng, "train_test_split"
    )
    return Xa[train_idx], Xa[test_idx], ya[train_idx], ya[test_idx]


def standardize(
    X_train: Any, X_test: Any
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Centre and scale features with the statistics of the training part only.

    ``mean`` and ``std`` are the per-column mean and (population) standard deviation of
    ``X_train``, computed in float64; a column that is constant on the training part gets
    ``std = 1`` so it maps to 0 instead of dividing by zero.

    Parameters
    ----------
    X_train : array_like of shape (N_train, D)
        Training features (finite).
    X_test : array_like of shape (N_test, D)
        Test features (finite), scaled with the training statistics.

    Returns
    -------
    X_train_s : ndarray of shape (N_train, D)
        ``(X_train - mean) / std``, in ``X_train``'s floating dtype (float64 for integers).
    X_test_s : ndarray of shape (N_test, D)
        ``(X_test - mean) / std``, same dtype.
    mean : ndarray of shape (D,)
    std : ndarray of shape (D,)
        The statistics used, same dtype.

    Raises
    ------
    ShapeError
        An input is not 2-D, ``X_train`` is empty, or the column counts differ.
    NonFiniteError
        An input holds NaN or infinity.
    """
    A = as_float_array(X_train, "standardize X_train", ndim=2)
    B = as_float_array(X_test, "standardize X_test", ndim=2, dtype=A.dtype, min_samples=0)
    if B.shape[1] != A.shape[1]:
        raise ShapeError(
            f"standardize X_test expects {A.shape[1]} columns like X_train, got shape {B.shape}"
        )
    # Statistics of X / scale, scale a power of two at most max |X| per column (exact, so the
    # results match plain statistics): a sum of values near 1e308 overflows, of values in
    # [-2, 2] it cannot.
    peak = np.abs(A).max(axis=0).astype(np.float64) if A.shape[0] else np.zeros(A.shape[1])
    scale = np.ldexp(1.0, np.frexp(peak)[1] - 1)
    A_scaled = A.astype(np.float64) / scale
    mean_scaled = A_scaled.mean(axis=0)
    std_scaled = A_scaled.std(axis=0)
    # A constant column can come out with a rounding-sized std instead of exactly 0.
    constant = std_scaled <= 64 * np.finfo(np.float64).eps * np.abs(mean_scaled)
    std_scaled[constant] = 1.0 / scale[constant]
    X_train_s = ((A_scaled - mean_scaled) / std_scaled).astype(A.dtype, copy=False)
    X_test_s = ((B.astype(np.float64) / scale - mean_scaled) / std_scaled).astype(A.dtype, copy=False)
    mean, std = mean_scaled * scale, np.where(constant, 1.0, std_scaled * scale)
    return X_train_s, X_test_s, mean.astype(A.dtype), std.astype(A.dtype)


# ``load`` has a keyword argument named ``standardize`` that hides the function.
_standardize = standardize


# --------------------------------------------------------------------------- generators


def make_blobs(
    n_samples: int = 600,
    n_classes: int = 3,
    n_features: int = 2,
    rng: int | np.random.Generator | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Isotropic Gaussian blobs, one per class.

    Centres are drawn uniformly from ``[-5, 5]^D``; each blob has unit standard deviation.
    Classes get ``n_samples // n_classes`` samples each (the first ones one more when it
    does not divide), and the rows are shuffled.

    Parameters
    ----------
    n_samples : int
        Number of samples ``N`` (at least ``n_classes``).
    n_classes : int
        Number of blobs ``K`` (at least 2).
    n_features : int
        Dimension ``D`` (at least 1).
    rng : int, numpy.random.Generator or None
        Seed or generator; the global NumPy state is never used.

    Returns
    -------
    X : ndarray of shape (N, D), float64
    y : ndarray of shape (N,), int64 labels ``0 .. K-1``
    """
    K = check_positive_int(n_classes, "make_blobs n_classes", minimum=2)
    N = check_positive_int(n_samples, "make_blobs n_samples", minimum=K)
    D = check_positive_int(n_features, "make_blobs n_features")
    gen = as_rng(rng, "make_blobs rng")
    centres = gen.uniform(-5.0, 5.0, size=(K, D))
    y = _balanced_labels(N, K)
    X = centres[y] + gen.standard_normal((N, D))
    return _shuffled(X, y, gen)


def make_moons(
    n_samples: int = 600,
    noise: float = 0.1,
    rng: int | np.random.Generator | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Two interleaving half circles, labels 0 (upper) and 1 (lower).

    Parameters
    ----------
    n_samples : int
        Number of samples ``N`` (at least 2), split as evenly as possible.
    noise : float
        Standard deviation of the Gaussian noise added to each coordinate (>= 0).
    rng : int, numpy.random.Generator or None
        Seed or generator; the global NumPy state is never used.

    Returns
    -------
    X : ndarray of shape (N, 2), float64
    y : ndarray of shape (N,), int64 labels in ``{0, 1}``
    """
    N = check_positive_int(n_samples, "make_moons n_samples", minimum=2)
    sigma = check_real(noise, "make_moons noise", low=0.0)
    gen = as_rng(rng, "make_moons rng")
    n_upper = N - N // 2
    n_lower = N // 2
    t_upper = np.linspace(0.0, np.pi, n_upper)
    t_lower = np.linspace(0.0, np.pi, n_lower)
    X = np.concatenate(
        [
            np.column_stack([np.cos(t_upper), np.sin(t_upper)]),
            np.column_stack([1.0 - np.cos(t_lower), 0.5 - np.sin(t_lower)]),
        ]
    )
    y = np.concatenate([np.zeros(n_upper, np.int64), np.ones(n_lower, np.int64)])
    X = X + sigma * gen.standard_normal(X.shape)
    return _shuffled(X, y, gen)


def make_spirals(
    n_samples: int = 600,
    n_classes: int = 3,
    noise: float = 0.2,
    rng: int | np.random.Generator | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Interleaved spiral arms, one per class, in the plane.

    Arm ``k`` runs from the origin to radius 1 through one full turn, starting at angle
    ``2πk/K``; Gaussian noise of standard deviation ``noise`` is added to each angle.

    Parameters
    ----------
    n_samples : int
        Number of samples ``N`` (at least ``n_classes``), split as evenly as possible.
    n_classes : int
        Number of arms ``K`` (at least 2).
    noise : float
        Standard deviation of the angular noise in radians (>= 0).
    rng : int, numpy.random.Generator or None
        Seed or generator; the global NumPy state is never used.

    Returns
    -------
    X : ndarray of shape (N, 2), float64
    y : ndarray of shape (N,), int64 labels ``0 .. K-1``
    """
    K = check_positive_int(n_classes, "make_spirals n_classes", minimum=2)
    N = check_positive_int(n_samples, "make_spirals n_samples", minimum=K)
    sigma = check_real(noise, "make_spirals noise", low=0.0)
    gen = as_rng(rng, "make_spirals rng")
    y = _balanced_labels(N, K)
    counts = np.bincount(y, minlength=K)
    radius = np.concatenate([np.linspace(0.0, 1.0, int(c)) for c in counts])
    angle = 2.0 * np.pi * (y / K + radius) + sigma * gen.standard_normal(N)
    X = np.column_stack([radius * np.sin(angle), radius * np.cos(angle)])
    return _shuffled(X, y, gen)


def make_friedman(
    n_samples: int = 1000,
    noise: float = 1.0,
    rng: int | np.random.Generator | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Friedman #1 regression problem (Friedman 1991).

    ``X`` is uniform on ``[0, 1]^10``; only the first five columns matter::

        y = 10 sin(π x0 x1) + 20 (x2 - 0.5)² + 10 x3 + 5 x4 + noise · ε,   ε ~ N(0, 1)

    Parameters
    ----------
    n_samples : int
        Number of samples ``N`` (at least 1).
    noise : float
        Standard deviation of the Gaussian noise on ``y`` (>= 0).
    rng : int, numpy.random.Generator or None
        Seed or generator; the global NumPy state is never used.

    Returns
    -------
    X : ndarray of shape (N, 10), float64
    y : ndarray of shape (N,), float64
    """
    N = check_positive_int(n_samples, "make_friedman n_samples")
    sigma = check_real(noise, "make_friedman noise", low=0.0)
    gen = as_rng(rng, "make_friedman rng")
    X = gen.uniform(0.0, 1.0, size=(N, 10))
    y = (
        10.0 * np.sin(np.pi * X[:, 0] * X[:, 1])
        + 20.0 * (X[:, 2] - 0.5) ** 2
        + 10.0 * X[:, 3]
        + 5.0 * X[:, 4]
        + sigma * gen.standard_normal(N)
    )
    return X, y


# --------------------------------------------------------------------------- load


def load(
    name: str,
    *,
    test_size: float = 0.2,
    seed: int | np.random.Generator | None = 0,
    standardize: bool = True,
    dtype: DTypeLike = np.float32,
) -> Dataset:
    """Load one of the data sets in :data:`DATASETS` as train and test arrays.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS` (case and ``-``/``_`` do not matter).
    test_size : float
        Fraction of the samples held out for testing, in ``(0, 1)``. ``mnist1d`` has its own
        fixed split (4000 / 1000) and accepts only the default 0.2.
    seed : int, numpy.random.Generator or None
        Fixes the split (stratified for classification); the same seed gives identical
        arrays. Ignored by ``mnist1d``, whose split and samples are fixed by its own
        standard seed.
    standardize : bool
        Centre and scale every feature with the training part's mean and standard deviation
        (a constant column gets std 1), applied to both parts. Targets are never scaled.
    dtype : {numpy.float32, numpy.float64}
        Dtype of the features (and of regression targets).

    Returns
    -------
    Dataset
        ``X_train (N_train, D)``, ``y_train (N_train,)``, ``X_test (N_test, D)``,
        ``y_test (N_test,)``, plus names and a description.

    Raises
    ------
    JacnetValueError
        Unknown name (the message lists the valid ones), or a bad ``test_size``/``seed``.
    JacnetTypeError
        ``name`` is not a string, ``standardize`` not a bool, or ``dtype`` not float32/64.
    ImportError
        The optional package the data set needs is missing; the message names the extra to
        install (``jacnet[sklearn]`` or ``jacnet[mnist1d]``).
    """
    key = _canonical_name(name)
    if not isinstance(standardize, (bool, np.bool_)):
        raise JacnetTypeError(
            f"load standardize expects True or False, got {describe(standardize)}"
        )
    out_dtype = _float_dtype(dtype)
    size = check_real(test_size, "load test_size", low=0.0, high=1.0,
                      low_open=True, high_open=True)
    task: Task = "classification" if key in CLASSIFICATION else "regression"
    raw = _raw(key)
    X_tr: FloatArray
    X_te: FloatArray
    if raw.train is not None and raw.test is not None:  # mnist1d
        if not math.isclose(size, _MNIST1D_TEST_SIZE):
            raise JacnetValueError(
                "load('mnist1d') test_size expects 0.2 (MNIST-1D's fixed 4000/1000 split), "
                f"got {test_size!r}"
            )
        X_tr, y_tr = raw.X[raw.train], raw.y[raw.train]
        X_te, y_te = raw.X[raw.test], raw.y[raw.test]
    else:
        rng = as_rng(seed, "load seed")
        train_idx, test_idx = _split_indices(
            raw.y if task == "classification" else None, raw.X.shape[0], size, rng,
            f"load({key!r})",
        )
        X_tr, y_tr = raw.X[train_idx], raw.y[train_idx]
        X_te, y_te = raw.X[test_idx], raw.y[test_idx]
    if standardize:
        X_tr, X_te, _, _ = _standardize(X_tr, X_te)
    y_dtype = np.dtype(np.int64) if task == "classification" else out_dtype
    return Dataset(
        name=key,
        task=task,
        X_train=np.array(X_tr, dtype=out_dtype),
        y_train=np.array(y_tr, dtype=y_dtype),
        X_test=np.array(X_te, dtype=out_dtype),
        y_test=np.array(y_te, dtype=y_dtype),
        classes=raw.classes,
        feature_names=raw.feature_names,
        description=DATASETS[key],
    )


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True, eq=False)
class _Raw:
    """One data set's full pool before splitting (read-only arrays, cached per process)."""

    X: NDArray[np.float64]
    y: NDArray[Any]
    classes: tuple[int | str, ...]
    feature_names: tuple[str, ...]
    #: MNIST-1D only: its own fixed train and test rows.
    train: slice | None = None
    test: slice | None = None


def _canonical_name(name: Any) -> str:
    valid = ", ".join(repr(n) for n in DATASETS)
    if not isinstance(name, str):
        raise JacnetTypeError(f"load name expects one of {valid}, got {describe(name)}")
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise JacnetValueError(f"load name expects one of {valid}, got {name!r}")
    return key


def _float_dtype(dtype: Any) -> np.dtype[Any]:
    try:
        dt: np.dtype[Any] = np.dtype(dtype)
    except TypeError as exc:
        raise JacnetTypeError(
            f"load dtype expects numpy.float32 or numpy.float64, got {describe(dtype)}"
        ) from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise JacnetTypeError(f"load dtype expects numpy.float32 or numpy.float64, got {dt}")
    return dt


def _numeric_dtype(dtype: Any, what: str) -> np.dtype[Any]:
    try:
        dt: np.dtype[Any] = np.dtype(dtype)
    except TypeError as exc:
        raise JacnetTypeError(f"{what} expects a real numeric dtype, got {describe(dtype)}") from exc
    if dt.kind not in "fiu":
        raise JacnetTypeError(f"{what} expects a real numeric dtype, got {dt}")
    return dt


def _as_samples(value: Any, what: str) -> NDArray[Any]:
    try:
        A = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise JacnetTypeError(f"{what} expects an array, got {describe(value)}") from exc
    if A.ndim == 0:
        raise ShapeError(f"{what} expects an array with a sample axis, got shape {A.shape}")
    return A


def _n_test(n: int, test_size: float, what: str) -> int:
    # round() first so that e.g. 0.3 * 10 = 3.0000000000000004 gives 3, not 4.
    n_test = math.ceil(round(test_size * n, 9))
    if n_test < 1 or n - n_test < 1:
        raise JacnetValueError(
            f"{what} expects a test_size that leaves both parts non-empty, got "
            f"test_size={test_size!r} with {n} samples ({n - n_test} train, {n_test} test)"
        )
    return n_test


def _split_indices(
    y: NDArray[Any] | None,
    n: int,
    test_size: float,
    rng: np.random.Generator,
    what: str,
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Shuffled train and test indices; stratified on ``y`` when it is given."""
    n_test = _n_test(n, test_size, what)
    if y is None:
        perm = rng.permutation(n)
        return perm[n_test:], perm[:n_test]
    _, inverse = np.unique(y, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse)
    # Largest-remainder allocation of the n_test test samples over the classes.
    exact = counts * (n_test / n)
    alloc = np.floor(exact).astype(np.intp)
    short = n_test - int(alloc.sum())
    if short > 0:
        order = np.argsort(-(exact - alloc), kind="stable")
        alloc[order[:short]] += 1
    train_parts: list[NDArray[np.intp]] = []
    test_parts: list[NDArray[np.intp]] = []
    for k, k_test in enumerate(alloc):
        members = rng.permutation(np.flatnonzero(inverse == k))
        test_parts.append(members[:k_test])
        train_parts.append(members[k_test:])
    train_idx = rng.permutation(np.concatenate(train_parts))
    test_idx = rng.permutation(np.concatenate(test_parts))
    return train_idx, test_idx


def _balanced_labels(n: int, k: int) -> NDArray[np.int64]:
    """Labels ``0 .. k-1`` in blocks, sizes differing by at most one (first ones larger)."""
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    return np.repeat(np.arange(k, dtype=np.int64), sizes)


def _shuffled(
    X: NDArray[np.float64], y: NDArray[np.int64], rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    perm = rng.permutation(X.shape[0])
    return X[perm], y[perm]


def _frozen(
    X: Any,
    y: Any,
    classes: tuple[int | str, ...],
    feature_names: tuple[str, ...],
    **split: slice,
) -> _Raw:
    Xa = np.array(X, dtype=np.float64)
    ya = np.array(y)
    Xa.setflags(write=False)
    ya.setflags(write=False)
    return _Raw(Xa, ya, classes, feature_names, **split)


def _plain(value: Any) -> int | str:
    """A NumPy scalar class name as a plain Python int or str."""
    item = value.item() if isinstance(value, np.generic) else value
    return item if isinstance(item, (int, str)) else str(item)


def _sklearn_loader(name: str) -> Any:
    try:
        from sklearn import datasets as sk_datasets
    except ImportError as exc:
        raise ImportError(
            f"load({name!r}) expects scikit-learn, which ships this data set, got "
            f"{type(exc).__name__}: {exc}; install it with pip install 'jacnet[sklearn]'"
        ) from exc
    return getattr(sk_datasets, f"load_{name}")


def _from_sklearn(name: str) -> _Raw:
    loader = _sklearn_loader(name)
    bunch = loader(scaled=False) if name == "diabetes" else loader()
    features = tuple(str(f) for f in bunch.feature_names)
    if name == "diabetes":
        return _frozen(bunch.data, np.asarray(bunch.target, dtype=np.float64), (), features)
    classes = tuple(_plain(c) for c in bunch.target_names)
    return _frozen(bunch.data, np.asarray(bunch.target, dtype=np.int64), classes, features)


def _from_mnist1d() -> _Raw:
    X_train, y_train, X_test, y_test = _mnist1d_arrays()
    X = np.concatenate([X_train, X_test])
    y = np.concatenate([y_train, y_test]).astype(np.int64)
    n_train = X_train.shape[0]
    return _frozen(
        X,
        y,
        tuple(range(10)),
        tuple(f"x{i}" for i in range(X.shape[1])),
        train=slice(0, n_train),
        test=slice(n_train, None),
    )


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """MNIST-1D from its own generator and standard arguments; global RNG state restored.

    ``mnist1d.data.make_dataset`` seeds and draws from the global ``numpy.random`` and
    ``random`` states, so both are saved before and restored after. Its download path
    (``get_dataset``) is never called. ``mnist1d`` imports ``matplotlib.pyplot``; since
    matplotlib 3.8 that import selects no backend (it is resolved on first use), so the
    user's backend choice is left alone.
    """
    try:
        import mnist1d.data as mnist1d_data
    except ImportError as exc:
        raise ImportError(
            "load('mnist1d') expects the mnist1d package, which generates the data set, got "
            f"{type(exc).__name__}: {exc}; install it with pip install 'jacnet[mnist1d]'"
        ) from exc
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        data = mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (data["x"], data["y"], data["x_test"], data["y_test"])
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _from_synthetic(name: str) -> _Raw:
    gen = np.random.default_rng(_SYNTHETIC_SEED)
    makers: dict[str, Callable[[np.random.Generator], tuple[NDArray[Any], NDArray[Any]]]] = {
        "blobs": lambda g: make_blobs(rng=g),
        "moons": lambda g: make_moons(rng=g),
        "spirals": lambda g: make_spirals(rng=g),
        "friedman": lambda g: make_friedman(rng=g),
    }
    X, y = makers[name](gen)
    classes: tuple[int | str, ...] = (
        () if name in REGRESSION else tuple(range(int(y.max()) + 1))
    )
    return _frozen(X, y, classes, tuple(f"x{i}" for i in range(X.shape[1])))


@functools.cache
def _raw(name: str) -> _Raw:
    """The whole pool of ``name``, built once per process."""
    if name in ("digits", "iris", "breast_cancer", "wine", "diabetes"):
        return _from_sklearn(name)
    if name == "mnist1d":
        return _from_mnist1d()
    return _from_synthetic(name)
