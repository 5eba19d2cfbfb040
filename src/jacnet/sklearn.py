"""scikit-learn estimators backed by jacnet networks: ``JacnetClassifier`` and ``JacnetRegressor``.

Both follow scikit-learn's estimator contract and pass its own estimator checks
(``sklearn.utils.estimator_checks``; the few that a configuration cannot pass are listed, with
the reason, by ``_expected_failed_checks``), so they drop into ``Pipeline``, ``GridSearchCV``,
``cross_val_score`` and the rest of scikit-learn. ``__init__`` only stores its arguments;
``fit`` validates them and the data with scikit-learn's validation utilities, builds a
:func:`jacnet.build_mlp` network and trains it with :func:`jacnet.fit`. The trained network
is kept as ``model_``, a :class:`jacnet.Sequential`, so its expanded Jacobians stay one call
away (``est.model_.jacobian(X[:2])``).

Requires scikit-learn 1.6 or newer (``pip install 'jacnet[sklearn]'``).

Differences from ``MLPClassifier`` / ``MLPRegressor`` worth knowing:

* ``epochs`` plays the role of ``max_iter``; ``weight_decay`` replaces ``alpha`` (decoupled,
  AdamW-style, with ``optimizer="adam"``; an L2 term in the gradient with ``"sgd"``; it
  applies to the biases too);
* weights are initialised He-style for ReLU-like activations and Glorot-style otherwise
  (``init="glorot"`` is scikit-learn's scheme for every activation but the logistic), and
  biases start at 0;
* ``random_state=None`` draws fresh OS entropy instead of using NumPy's global RandomState,
  which jacnet never reads nor advances;
* ``loss_curve_`` holds jacnet's loss: the mean cross-entropy, or for regression the mean
  over samples of the *summed* squared error (not half of it, as scikit-learn's MLP reports);
* ``sample_weight`` (and the classifier's ``class_weight``) make each step minimise the
  weighted mean of its batch's per-row losses, as scikit-learn's MLP does; with mini-batches
  an integer weight equals repeating the row only in expectation (see ``fit``);
* predictions and probabilities are float64: a float32 network trains in float32 and is
  evaluated on float64 copies of its weights, so that a sample's prediction does not depend
  on the batch it comes in (``model_.predict`` stays in the network's dtype).
"""

from __future__ import annotations

import copy
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import sklearn
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state, check_scalar
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from jacnet import backend as _backend
from jacnet.callbacks import EarlyStopping
from jacnet.losses import Loss, MeanSquaredError, SigmoidBinaryCrossEntropy, SoftmaxCrossEntropy
from jacnet.model import Sequential, build_mlp
from jacnet.optim import SGD, Adam, Optimizer
from jacnet.train import History, fit

try:
    from sklearn.utils.validation import validate_data
except ImportError as exc:  # pragma: no cover - depends on the installed version
    raise ImportError(
        "jacnet.sklearn needs scikit-learn 1.6 or newer (validate_data and __sklearn_tags__), "
        f"found {sklearn.__version__}; run: pip install -U 'jacnet[sklearn]'") from exc

__all__ = ["JacnetClassifier", "JacnetRegressor"]

#: Hidden activations by name; ``"logistic"`` is scikit-learn's name for the sigmoid.
_ACTIVATIONS = {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid",
                "logistic": "sigmoid"}
_OPTIMIZERS = ("adam", "sgd")
_INITS = ("auto", "he", "glorot")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_SEED_HIGH = 2**31 - 1


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(check_scalar(value, name, numbers.Integral, min_val=minimum))


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _check_float(value: Any, name: str, low: float, high: float | None = None,
                 bounds: str = "left") -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    checked = float(check_scalar(value, name, numbers.Real, min_val=low, max_val=high,
                                 include_boundaries=bounds))
    if not np.isfinite(checked):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return checked



def _float64_copy(model: Sequential) -> Sequential:
    """``model`` with float64 copies of its parameters (``Layer.astype``, every layer type)."""
    twin = copy.deepcopy(model)
    for layer in twin.layers:
        layer.astype(np.float64)
    return twin


class _BaseJacnet(BaseEstimator):  # type: ignore[misc]
    """Parameters, validation and training shared by the classifier and the regressor."""

    # Set by fit (annotations only: an unfitted estimator has none of them).
    model_: Sequential
    n_features_in_: int
    n_iter_: int
    loss_curve_: list[float]
    best_loss_: float
    validation_scores_: list[float] | None
    best_validation_score_: float | None
    _hidden: tuple[int, ...]
    _optimizer: Optimizer
    _place: tuple[str, str]
    _rng: np.random.RandomState

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "relu",
        *,
        init: str = "auto",
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        momentum: float = 0.9,
        batch_size: int | str = "auto",
        epochs: int = 200,
        shuffle: bool = True,
        tol: float = 1e-4,
        n_iter_no_change: int = 10,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        weight_decay: float = 0.0,
        dtype: str | type[np.floating[Any]] = "float32",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        backend: str = "numpy",
        device: str | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.init = init
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.batch_size = batch_size
        self.epochs = epochs
        self.shuffle = shuffle
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.weight_decay = weight_decay
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.backend = backend
        self.device = device

    # Hooks the subclasses fill in --------------------------------------------------------

    def _validate_xy(self, X: Any, y: Any, reset: bool) -> tuple[NDArray[Any], NDArray[Any]]:
        raise NotImplementedError

    def _set_targets(self, y: NDArray[Any], classes: Any = None) -> None:
        """First call: remember what the targets look like (classes, output shape)."""
        raise NotImplementedError

    def _encode(self, y: NDArray[Any]) -> NDArray[Any]:
        """Targets in the layout the loss trains on."""
        raise NotImplementedError

    def _n_outputs(self) -> int:
        raise NotImplementedError

    def _loss(self) -> Loss:
        raise NotImplementedError

    def _validation_metric(self) -> str:
        raise NotImplementedError

    def _weights(self, X: NDArray[Any], y: NDArray[Any], sample_weight: Any, partial: bool
                 ) -> NDArray[np.float64] | None:
        """Checked sample weights ``(n_samples,)`` (finite, >= 0, not all zero), or None."""
        if sample_weight is None:
            return None
        checked: NDArray[np.float64] = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                            ensure_non_negative=True)
        return checked

    def _expected_failed_checks(self) -> dict[str, str]:
        """scikit-learn estimator checks that this configuration cannot pass, with the reason
        (for ``parametrize_with_checks(..., expected_failed_checks=...)``).

        ``check_sample_weight_equivalence_on_dense_data`` asks that integer weights give
        *the same* model as repeated rows. That holds (to rounding) only when every epoch is
        one full-batch step on data in a fixed order: ``batch_size="auto"`` (the check's data
        has fewer than 200 rows), no ``early_stopping`` (its random split holds out other
        rows), and float64 (float32 rounding grows over the epochs past the check's 1e-7).
        With mini-batches a repeated row is a separate sample, so the batches and the number
        of steps differ; weights equal repetitions only in expectation, as in scikit-learn's
        own ``MLPClassifier`` with ``"sgd"`` / ``"adam"``.
        """
        if self.batch_size == "auto" and not self.early_stopping and self._dtype() == np.float64:
            return {}
        return {"check_sample_weight_equivalence_on_dense_data":
                "mini-batch steps (or early stopping's random split, or float32): integer "
                "weights equal repeated rows only in expectation"}

    # Checks --------------------------------------------------------------------------------

    def _dtype(self) -> np.dtype[Any]:
        try:
            dtype = np.dtype(self.dtype)
        except TypeError as exc:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}") from exc
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        return dtype

    def _check_params(self) -> None:
        """Validate every constructor argument; raise ``TypeError`` / ``ValueError``."""
        sizes: Any = self.hidden_layer_sizes
        if isinstance(sizes, (numbers.Integral, np.integer)) and not isinstance(sizes, bool):
            sizes = (sizes,)
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (Sequence, np.ndarray)):
            raise TypeError("hidden_layer_sizes must be an int or a sequence of ints, "
                            f"got {self.hidden_layer_sizes!r}")
        self._hidden = tuple(_check_int(h, f"hidden_layer_sizes[{i}]", 1)
                             for i, h in enumerate(sizes))
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if self.init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {self.init!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        _check_float(self.learning_rate, "learning_rate", 0.0, bounds="neither")
        _check_float(self.momentum, "momentum", 0.0, 1.0, bounds="left")
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            if isinstance(self.batch_size, str):
                raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}")
            _check_int(self.batch_size, "batch_size", 1)
        _check_int(self.epochs, "epochs", 1)
        _check_bool(self.shuffle, "shuffle")
        _check_float(self.tol, "tol", 0.0)
        _check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        _check_bool(self.early_stopping, "early_stopping")
        _check_float(self.validation_fraction, "validation_fraction", 0.0, 1.0, bounds="neither")
        _check_float(self.weight_decay, "weight_decay", 0.0)
        self._dtype()
        if not isinstance(self.verbose, bool):
            _check_int(self.verbose, "verbose", 0)
        self._place = _backend.check_backend(self.backend, self.device, type(self).__name__)

    # Building blocks -----------------------------------------------------------------------

    def _random_state(self) -> np.random.RandomState:
        """scikit-learn's ``check_random_state``, except that ``None`` means fresh OS entropy
        rather than NumPy's global RandomState, which jacnet never reads nor advances."""
        if self.random_state is None:
            return np.random.RandomState(int(np.random.SeedSequence().generate_state(1)[0]))
        state: np.random.RandomState = check_random_state(self.random_state)
        return state

    def _batch(self, n_samples: int) -> int:
        return min(200, n_samples) if self.batch_size == "auto" else int(self.batch_size)

    def _verbosity(self) -> int:
        return min(int(self.verbose), 2)

    def _new_optimizer(self) -> Optimizer:
        if self.optimizer == "sgd":
            return SGD(lr=float(self.learning_rate), momentum=float(self.momentum),
                       weight_decay=float(self.weight_decay))
        return Adam(lr=float(self.learning_rate), weight_decay=float(self.weight_decay))

    def _new_model(self, n_features: int, seed: int) -> Sequential:
        model = build_mlp(n_features, self._hidden, self._n_outputs(),
                          activation=_ACTIVATIONS[self.activation],
                          init=None if self.init == "auto" else self.init, rng=seed, dtype=self._dtype())
        model.loss = self._loss()
        return model.to(*self._place)  # initialised in NumPy: the same weights on every backend

    def _record(self, history: History, append: bool) -> None:
        losses = [float(v) for v in history["loss"]]
        self.loss_curve_ = [*self.loss_curve_, *losses] if append else losses
        self.n_iter_ = len(self.loss_curve_)
        self.best_loss_ = float(min(self.loss_curve_))

    def _outputs(self, X: Any) -> NDArray[np.float64]:
        """The network's raw outputs for ``X`` (validated like the training data), in float64.

        A float32 network is evaluated on a float64 copy of its weights: in float32 a
        sample's output would change in the last bits with the batch it comes in (a matrix
        product sums in another order than a matrix-vector one), and scikit-learn expects
        predictions that do not depend on the other rows.
        """
        check_is_fitted(self)
        X = validate_data(self, _backend.to_numpy(X), dtype=np.float64, reset=False)
        model = self.model_
        if model.dtype != np.float64:
            model = _float64_copy(model)
        # Computed on the model's backend and device; scikit-learn gets NumPy back.
        return np.asarray(_backend.to_numpy(model.predict(X)), dtype=np.float64)

    # Training ------------------------------------------------------------------------------

    def _fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        self._check_params()
        X, y, sample_weight = _backend.to_numpy(X), _backend.to_numpy(y), _backend.to_numpy(sample_weight)
        X, y = self._validate_xy(X, y, reset=True)
        self._set_targets(y)
        weights = self._weights(X, y, sample_weight, partial=False)
        Y = self._encode(y)
        rng = self._random_state()
        init_seed, fit_seed = (int(s) for s in rng.randint(0, _SEED_HIGH, size=2))
        self.model_ = self._new_model(X.shape[1], init_seed)
        self._optimizer = self._new_optimizer()
        self._rng = rng
        patience = int(self.n_iter_no_change)
        if self.early_stopping:
            stopper = EarlyStopping(monitor=self._validation_metric(), patience=patience,
                                    min_delta=float(self.tol), mode="max",
                                    restore_best_weights=True)
        else:
            stopper = EarlyStopping(monitor="loss", patience=patience, min_delta=float(self.tol),
                                    mode="min", restore_best_weights=False)
        history = fit(self.model_, X, Y, loss=self.model_.loss, optimizer=self._optimizer,
                      epochs=int(self.epochs), batch_size=self._batch(X.shape[0]),
                      validation_split=float(self.validation_fraction) if self.early_stopping
                      else 0.0,
                      shuffle=bool(self.shuffle), seed=fit_seed, callbacks=[stopper],
                      verbose=self._verbosity(), sample_weight=weights)
        self._record(history, append=False)
        if self.early_stopping:
            self.validation_scores_ = [float(v) for v in history[self._validation_metric()]]
            self.best_validation_score_ = float(max(self.validation_scores_))
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        if stopper.stopped_epoch is None:
            warnings.warn(f"{type(self).__name__}: the maximum number of epochs ({self.epochs}) was "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=3)
        return self

    def _partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> Any:
        first = not hasattr(self, "model_")
        if first:
            self._check_params()
        X, y, sample_weight = _backend.to_numpy(X), _backend.to_numpy(y), _backend.to_numpy(sample_weight)
        X, y = self._validate_xy(X, y, reset=first)
        if first:
            self._set_targets(y, classes)
            self._rng = self._random_state()
            self.model_ = self._new_model(X.shape[1], int(self._rng.randint(0, _SEED_HIGH)))
            self._optimizer = self._new_optimizer()
            self.loss_curve_ = []
            self.validation_scores_ = None
            self.best_validation_score_ = None
        Y = self._encode(y)
        weights = self._weights(X, y, sample_weight, partial=True)
        history = fit(self.model_, X, Y, loss=self.model_.loss, optimizer=self._optimizer, epochs=1,
                      batch_size=self._batch(X.shape[0]), shuffle=bool(self.shuffle),
                      seed=int(self._rng.randint(0, _SEED_HIGH)), verbose=self._verbosity(),
                      sample_weight=weights)
        self._record(history, append=True)
        return self


_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer; ``()`` gives a linear model.
    activation : {"relu", "leaky_relu", "tanh", "sigmoid", "logistic"}, default="relu"
        Hidden activation (``"logistic"`` is scikit-learn's name for ``"sigmoid"``).
    init : {"auto", "he", "glorot"}, default="auto"
        Initial weights: ``"he"`` (normal, variance ``2/fan_in``), ``"glorot"`` (uniform,
        variance ``2/(fan_in + fan_out)``, the scheme of scikit-learn's MLP) or ``"auto"``,
        He for ReLU-like activations and Glorot otherwise. Biases start at zero.
    optimizer : {"adam", "sgd"}, default="adam"
        :class:`jacnet.Adam` or :class:`jacnet.SGD` (with ``momentum``).
    learning_rate : float, default=1e-3
        Step size, > 0.
    momentum : float, default=0.9
        Momentum of ``"sgd"``, in [0, 1); ignored by ``"adam"``.
    batch_size : int or "auto", default="auto"
        Samples per step; ``"auto"`` is ``min(200, n_samples)``, as in scikit-learn's MLP.
    epochs : int, default=200
        Maximum number of passes over the training data (scikit-learn's ``max_iter``).
    shuffle : bool, default=True
        Visit the samples in a new random order every epoch.
    tol : float, default=1e-4
        Smallest improvement that counts: of the training loss, or with ``early_stopping`` of
        the validation score.
    n_iter_no_change : int, default=10
        Stop after this many epochs without an improvement of at least ``tol``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data, stop when the validation score
        stops improving, and keep the weights of the best epoch.
    validation_fraction : float, default=0.1
        Fraction held out with ``early_stopping``, in (0, 1).
    weight_decay : float, default=0.0
        Weight decay (decoupled with ``"adam"``, L2 in the gradient with ``"sgd"``).
    dtype : {"float32", "float64"}, default="float32"
        The network's floating dtype, end to end.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights and the shuffling (and split) of each fit: an int gives
        reproducible fits, a RandomState is drawn from (and advanced), and None draws fresh
        OS entropy. Unlike scikit-learn's own estimators, None does not use NumPy's global
        RandomState: jacnet never reads nor advances the global state.
    verbose : int, default=0
        0 silent; 1 a live progress bar and a line per epoch; 2 a line per epoch.
    backend : {"numpy", "torch"}, default="numpy"
        Where the network trains and predicts (see :mod:`jacnet.backend`); ``"torch"`` needs
        ``pip install 'jacnet[torch]'``. The same ``random_state`` gives the same initial
        weights and batches on either. Inputs may be NumPy arrays (or anything scikit-learn
        accepts) or tensors; predictions are always NumPy arrays.
    device : str or None, default=None
        The torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``); None means ``"cpu"``, the only
        device of the NumPy backend. Checked by ``fit``.
"""

_ATTRIBUTES_DOC = """
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen during ``fit``, only when ``X`` had string column names.
    model_ : jacnet.Sequential
        The trained network (``model_.jacobian(X)``, ``model_.summary()``).
    n_iter_ : int
        Number of epochs run (summed over ``partial_fit`` calls).
    loss_curve_ : list of float
        The training loss after each epoch.
    best_loss_ : float
        The smallest value in ``loss_curve_``.
    validation_scores_ : list of float or None
        With ``early_stopping``, the validation score after each epoch; otherwise None.
    best_validation_score_ : float or None
        The best value in ``validation_scores_`` (the weights kept); otherwise None.
"""


class JacnetClassifier(ClassifierMixin, _BaseJacnet):  # type: ignore[misc]
    __doc__ = (
        """A multilayer-perceptron classifier, trained by jacnet, as a scikit-learn estimator.

    Two classes train one logit with :class:`jacnet.SigmoidBinaryCrossEntropy`; more train one
    logit per class with :class:`jacnet.SoftmaxCrossEntropy`. Class labels may be any labels
    scikit-learn accepts (integers, strings, ...); ``classes_`` holds them sorted.
"""
        + _PARAMETERS_DOC
        + """
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, ``{label: weight}`` (a class not in it weighs 1), or
        ``"balanced"``: ``n_samples / (n_classes * np.bincount(y))``, as in scikit-learn. Each
        sample's weight is its class's weight times its ``sample_weight``. ``"balanced"`` is
        refused by ``partial_fit``, which sees one batch, not the class frequencies.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels."""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    JacnetRegressor : The regression counterpart.
    sklearn.neural_network.MLPClassifier : scikit-learn's own multilayer perceptron.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from jacnet.sklearn import JacnetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), JacnetClassifier((16,), batch_size=16, epochs=100,
    ...                                                        learning_rate=1e-2, random_state=0))
    >>> clf.fit(X, y).score(X, y) > 0.9
    True
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    >>> clf[-1].model_.jacobian(X[:1]).shape  # d logits / d inputs, (1, 3, 1, 4)
    (1, 3, 1, 4)
"""
    )

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "relu",
        *,
        init: str = "auto",
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        momentum: float = 0.9,
        batch_size: int | str = "auto",
        epochs: int = 200,
        shuffle: bool = True,
        tol: float = 1e-4,
        n_iter_no_change: int = 10,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        weight_decay: float = 0.0,
        dtype: str | type[np.floating[Any]] = "float32",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        backend: str = "numpy",
        device: str | None = None,
        class_weight: dict[Any, float] | str | None = None,
    ) -> None:
        # scikit-learn reads the parameters from this signature: each one is listed again.
        super().__init__(
            hidden_layer_sizes, activation, init=init, optimizer=optimizer,
            learning_rate=learning_rate, momentum=momentum, batch_size=batch_size, epochs=epochs,
            shuffle=shuffle, tol=tol, n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            weight_decay=weight_decay, dtype=dtype, random_state=random_state, verbose=verbose,
            backend=backend, device=device)
        self.class_weight = class_weight

    def _validate_xy(self, X: Any, y: Any, reset: bool) -> tuple[NDArray[Any], NDArray[Any]]:
        X, y = validate_data(self, X, y, dtype=self._dtype() if reset else self.model_.dtype,
                             reset=reset)
        check_classification_targets(y)
        return X, y

    def _weights(self, X: NDArray[Any], y: NDArray[Any], sample_weight: Any, partial: bool
                 ) -> NDArray[np.float64] | None:
        """``sample_weight`` times each sample's class weight; fit refuses weights that leave
        fewer than 2 classes (a one-class problem, as without weights)."""
        weights = super()._weights(X, y, sample_weight, partial)
        class_weight = self.class_weight
        if class_weight is not None:
            if isinstance(class_weight, str) and class_weight == "balanced":
                if partial:
                    raise ValueError(
                        "class_weight='balanced' is not supported by partial_fit (one batch does "
                        "not give the class frequencies); pass compute_class_weight('balanced', "
                        "classes=classes, y=y_sample) as a dict instead")
                present = np.unique(y)
                per_class = compute_class_weight("balanced", classes=present, y=y)
            elif isinstance(class_weight, dict):
                present = self.classes_
                unknown = [k for k in class_weight if k not in set(present.tolist())]
                if unknown:
                    raise ValueError(f"class_weight has labels not in classes_ "
                                     f"{present.tolist()}: {unknown}")
                per_class = [class_weight.get(c, 1.0) for c in present.tolist()]
            else:
                raise ValueError(f"class_weight must be None, 'balanced' or a dict, "
                                 f"got {class_weight!r}")
            class_rows = np.asarray(per_class, dtype=np.float64)[np.searchsorted(present, y)]
            weights = class_rows if weights is None else weights * class_rows
            if not np.isfinite(weights).all() or weights.min() < 0 or not weights.any():
                raise ValueError(f"class_weight expects finite weights >= 0 that are not all "
                                 f"zero for the classes present, got {class_weight!r}")
        if weights is not None and not partial:
            kept = np.unique(y[weights > 0])
            if kept.shape[0] < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 classes with a positive "
                                 f"sample weight, got {kept.shape[0]} class: {kept.tolist()}")
        return weights

    def _expected_failed_checks(self) -> dict[str, str]:
        """The base class's, and with ``early_stopping`` ``check_class_weight_classifiers``:
        its 100 noisy samples leave a validation split of 5 rows, whose weighted accuracy
        (weights 1000 : 0.0001, or no class-0 row at all) is at its best after the first
        epoch, so early stopping keeps a barely trained network (scikit-learn's MLP scores
        its validation split with the weights too). Without early stopping the same settings
        pass."""
        failing = super()._expected_failed_checks()
        if self.early_stopping:
            failing["check_class_weight_classifiers"] = (
                "early stopping on a 5-row validation split keeps the first epoch's weights")
        return failing

    def _set_targets(self, y: NDArray[Any], classes: Any = None) -> None:
        if classes is None:
            labels = y
        else:
            labels = np.asarray(classes)
            if labels.ndim != 1:
                raise ValueError(f"classes must be a 1-D array of labels, got shape {labels.shape}")
            if labels.size and type_of_target(labels) not in ("binary", "multiclass"):
                raise ValueError(f"classes must hold class labels, got {labels!r}")
        encoder = LabelEncoder().fit(labels)
        if encoder.classes_.shape[0] < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes, got "
                             f"{encoder.classes_.shape[0]} class: {encoder.classes_.tolist()}")
        self._encoder = encoder
        self.classes_ = encoder.classes_

    def _encode(self, y: NDArray[Any]) -> NDArray[Any]:
        unseen = np.setdiff1d(unique_labels(y), self.classes_)
        if unseen.size:
            raise ValueError(f"y has labels not in classes_ {self.classes_.tolist()}: "
                             f"{unseen.tolist()}")
        codes = self._encoder.transform(y)
        if self._n_outputs() == 1:
            return codes.astype(self._dtype())
        return codes.astype(np.intp)

    def _n_outputs(self) -> int:
        n = self.classes_.shape[0]
        return 1 if n == 2 else n

    def _loss(self) -> Loss:
        return SigmoidBinaryCrossEntropy() if self.classes_.shape[0] == 2 else SoftmaxCrossEntropy()

    def _validation_metric(self) -> str:
        return "val_accuracy"

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> JacnetClassifier:
        """Train a new network on ``(X, y)``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Training data (dense, finite). A DataFrame with string column names sets
            ``feature_names_in_``.
        y : array-like or Series of shape (n_samples,)
            Class labels; at least two distinct ones.
        sample_weight : array-like or Series of shape (n_samples,), optional
            Finite weights >= 0, not all zero, multiplied by the ``class_weight`` of each
            sample's class. Each step minimises the weighted mean of its batch's per-sample
            losses, ``Σᵢ wᵢ lᵢ / Σᵢ wᵢ`` (as ``MLPClassifier``); ``loss_curve_`` and the
            validation accuracy of ``early_stopping`` are weighted means too.

        Returns
        -------
        self : JacnetClassifier
            The fitted estimator.
        """
        result: JacnetClassifier = self._fit(X, y, sample_weight)
        return result

    def partial_fit(self, X: Any, y: Any, classes: Any = None,
                    sample_weight: Any = None) -> JacnetClassifier:
        """Train for one epoch over ``(X, y)``, continuing from the current weights.

        The first call (on an unfitted estimator) builds the network; later calls keep the
        optimizer's state (Adam's moments, SGD's velocity). ``early_stopping`` and the
        ``tol`` / ``n_iter_no_change`` test do not apply.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of training data.
        y : array-like of shape (n_samples,)
            Its class labels, all among ``classes``.
        classes : array-like of shape (n_classes,), optional
            Every class of the whole problem; required on the first call (it fixes the
            network's outputs), optional later and then equal to ``classes_``.
        sample_weight : array-like or Series of shape (n_samples,), optional
            Weights of this batch's samples, as in ``fit`` (a dict ``class_weight`` applies
            too).

        Returns
        -------
        self : JacnetClassifier
            The updated estimator.
        """
        if not hasattr(self, "model_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)),
                                                        self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call to "
                             f"partial_fit, {self.classes_.tolist()}")
        result: JacnetClassifier = self._partial_fit(X, y, classes, sample_weight)
        return result

    def predict_log_proba(self, X: Any) -> NDArray[np.float64]:
        """Log-probability of each class, computed stably from the logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            ``log P(class | x)``, columns in the order of ``classes_``.
        """
        Z = self._outputs(X)
        if Z.shape[1] == 1:  # log σ(-z), log σ(z)
            return -np.logaddexp(0.0, np.concatenate([Z, -Z], axis=1))
        shifted = Z - Z.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        """Probability of each class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Rows sum to 1; columns in the order of ``classes_``.
        """
        P = np.exp(self.predict_log_proba(X))
        P /= P.sum(axis=1, keepdims=True)
        return P

    def predict(self, X: Any) -> NDArray[Any]:
        """The most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        best = np.argmax(self.predict_log_proba(X), axis=1)  # checks that the estimator is fitted
        return self.classes_[best]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = False
        tags.target_tags.multi_output = False
        return tags


class JacnetRegressor(RegressorMixin, _BaseJacnet):  # type: ignore[misc]
    __doc__ = (
        """A multilayer-perceptron regressor, trained by jacnet, as a scikit-learn estimator.

    Trains with :class:`jacnet.MeanSquaredError` on the targets as given: nothing is
    standardised implicitly (put a ``StandardScaler`` in a pipeline, or wrap the estimator in
    ``TransformedTargetRegressor`` for the targets). ``y`` of shape ``(n_samples,)`` gives one
    output and 1-D predictions; ``(n_samples, n_outputs)`` gives that many outputs.
"""
        + _PARAMETERS_DOC
        + """
    Attributes
    ----------"""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    JacnetClassifier : The classification counterpart.
    sklearn.neural_network.MLPRegressor : scikit-learn's own multilayer perceptron.

    Examples
    --------
    >>> import numpy as np
    >>> from jacnet.sklearn import JacnetRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=200)
    >>> reg = JacnetRegressor((32,), batch_size=16, epochs=100, learning_rate=1e-2,
    ...                       random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.95
    True
    >>> reg.predict(X[:3]).shape
    (3,)
"""
    )

    def _validate_xy(self, X: Any, y: Any, reset: bool) -> tuple[NDArray[Any], NDArray[Any]]:
        X, y = validate_data(self, X, y, dtype=self._dtype() if reset else self.model_.dtype,
                             multi_output=True, y_numeric=True, reset=reset)
        if not reset:
            n_outputs = 1 if y.ndim == 1 else y.shape[1]
            if y.ndim != self._y_ndim or n_outputs != self._n_outputs_fit:
                wanted = "(n_samples,)" if self._y_ndim == 1 else f"(n_samples, {self._n_outputs_fit})"
                raise ValueError(f"y must have the shape of the targets of the first call, {wanted}, "
                                 f"got {y.shape}")
        return X, y

    def _set_targets(self, y: NDArray[Any], classes: Any = None) -> None:
        self._y_ndim = y.ndim
        self._n_outputs_fit = 1 if y.ndim == 1 else y.shape[1]

    def _encode(self, y: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(y, dtype=self._dtype()).reshape(y.shape[0], -1)

    def _n_outputs(self) -> int:
        return self._n_outputs_fit

    def _loss(self) -> Loss:
        return MeanSquaredError()

    def _validation_metric(self) -> str:
        return "val_r2"

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> JacnetRegressor:
        """Train a new network on ``(X, y)``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Training data (dense, finite). A DataFrame with string column names sets
            ``feature_names_in_``.
        y : array-like, Series or DataFrame of shape (n_samples,) or (n_samples, n_outputs)
            Numeric targets.
        sample_weight : array-like or Series of shape (n_samples,), optional
            Finite weights >= 0, not all zero. Each step minimises the weighted mean of its
            batch's per-sample losses, ``Σᵢ wᵢ lᵢ / Σᵢ wᵢ`` (as ``MLPRegressor``);
            ``loss_curve_`` and the validation R² of ``early_stopping`` are weighted too.

        Returns
        -------
        self : JacnetRegressor
            The fitted estimator.
        """
        result: JacnetRegressor = self._fit(X, y, sample_weight)
        return result

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> JacnetRegressor:
        """Train for one epoch over ``(X, y)``, continuing from the current weights.

        The first call (on an unfitted estimator) builds the network; later calls keep the
        optimizer's state (Adam's moments, SGD's velocity). ``early_stopping`` and the
        ``tol`` / ``n_iter_no_change`` test do not apply.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Its targets, shaped like those of the first call.
        sample_weight : array-like or Series of shape (n_samples,), optional
            Weights of this batch's samples, as in ``fit``.

        Returns
        -------
        self : JacnetRegressor
            The updated estimator.
        """
        result: JacnetRegressor = self._partial_fit(X, y, sample_weight=sample_weight)
        return result

    def predict(self, X: Any) -> NDArray[np.float64]:
        """The network's prediction for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            float64; 1-D when the targets of ``fit`` were 1-D.
        """
        out = self._outputs(X)
        return out[:, 0] if self._y_ndim == 1 else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
