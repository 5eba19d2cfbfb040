"""Training: ``fit`` runs mini-batch gradient descent, ``evaluate`` scores a model.

One step of ``fit`` is the lecture's chain, once per mini-batch::

    Ŷ = model.forward(X_b);  J = loss.forward(Ŷ, y_b)
    dŶ = loss.backward();    model.backward(dŶ)   # fills model.grads
    optimizer.step(model.params, model.grads)

The batch is gathered once per step (one fancy-indexing copy), and the first layer skips
its ``dX``, which nobody reads.

With ``sample_weight`` each batch's loss is the weighted mean ``Σ wᵢ lᵢ / Σ wᵢ`` over its rows
(``loss.forward(..., sample_weight=...)``), so an integer weight counts a row that many times
within its batch; the epoch's loss and accuracy are weighted means over all training rows.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from jacnet import backend
from jacnet._validation import (
    FloatArray,
    all_finite,
    as_float_array,
    as_ndarray,
    check_positive_int,
    check_real,
    check_sample_weight,
    describe,
    overflow_message,
)
from jacnet.callbacks import Callback, NonFiniteGuard
from jacnet.errors import (
    JacnetError,
    JacnetTypeError,
    JacnetValueError,
    JacnetWarning,
    NonFiniteError,
    ShapeError,
)
from jacnet.layers import Sigmoid, Softmax, _handed
from jacnet.losses import (
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Loss,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
    check_weighted,
)
from jacnet.metrics import (
    accuracy,
    is_classification,
    mean_squared_error,
    predicted_labels,
    r2_score,
    true_labels,
)
from jacnet.model import Sequential, _jacnet_code
from jacnet.optim import Adam, Optimizer
from jacnet.progress import Progress

__all__ = ["History", "Run", "evaluate", "fit"]


@dataclass
class History:
    """Per-epoch metrics of a ``fit`` call: ``history["loss"][e]`` is epoch ``e``'s loss.

    Keys: ``loss`` and, for classifiers, ``accuracy``; with validation data ``val_loss``
    and ``val_accuracy`` (classifiers) or ``val_mse`` and ``val_r2`` (regression); ``lr``
    and ``seconds`` for each epoch.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: list[int] = field(default_factory=list)

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epochs.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __len__(self) -> int:
        return len(self.epochs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"epochs": list(self.epochs), "history": {k: list(v) for k, v in self.history.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(history={k: [float(x) for x in v] for k, v in data["history"].items()},
                   epochs=[int(e) for e in data["epochs"]])


@dataclass
class Run:
    """The state of one ``fit`` call, as callbacks see it."""

    model: Sequential
    loss: Loss
    optimizer: Optimizer
    history: History
    epochs: int
    seed: int
    shuffle_rng: np.random.Generator
    progress: Progress
    callbacks: list[Callback] = field(default_factory=list)
    epoch: int = 0
    batch: int = 0
    stop_training: bool = False

    def training_state(self) -> dict[str, Any]:
        """What a checkpoint needs to resume bitwise: epoch, seed, RNG state, history, and
        each callback's own state."""
        return {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "seed": self.seed,
            "shuffle_rng": self.shuffle_rng.bit_generator.state,
            # A layer's own random stream (a dropout's masks) resumes where it was.
            "layer_rngs": {str(i): rng.bit_generator.state for i, rng in _layer_rngs(self.model)},
            "history": self.history.to_dict(),
            "callbacks": [{"type": type(c).__name__, "state": c.state()} for c in self.callbacks],
        }

    def message(self, text: str) -> None:
        self.progress.message(text)


def _layer_rngs(model: Sequential) -> list[tuple[int, np.random.Generator]]:
    """The layers' own generators (``layer.rng``), by position."""
    found = ((i, getattr(layer, "rng", None)) for i, layer in enumerate(model.layers))
    return [(i, rng) for i, rng in found if isinstance(rng, np.random.Generator)]


def _resolve_loss(model: Sequential, loss: Loss | None, where: str) -> Loss:
    if not isinstance(model, Sequential):
        raise JacnetTypeError(f"{where} model expects a jacnet Sequential, got {describe(model)}")
    chosen = loss if loss is not None else model.loss
    if chosen is None:
        raise JacnetValueError(f"{where} loss expects a jacnet Loss (the model has none), got None")
    if not isinstance(chosen, Loss):
        raise JacnetTypeError(f"{where} loss expects a jacnet Loss, got {describe(chosen)}")
    return chosen


def _check_data(model: Sequential, X: Any, y: Any, loss: Loss, name: str
                ) -> tuple[FloatArray, Any, Any]:
    """Validate a data set against the model and the loss (the loss's own target rules).

    Returns ``X`` cast to the model's dtype, ``y``, and the targets as the loss uses them
    (``None`` for a network whose output width is unknown): one-hot rows for labels, ``(N, 1)``
    for a binary ``(N,)``, cast to the model's dtype.
    """
    if not isinstance(model, Sequential):
        raise JacnetTypeError(f"{name} model expects a jacnet Sequential, got {describe(model)}")
    # The ranks the first layer declares: (N, in) for an MLP, (N, C, L) for a Conv1D...
    X = as_float_array(X, f"{name} X", ndim=model.layers[0].input_ndim, dtype=model.dtype,
                       like=model._reference(name))  # moved to the model's device once
    n_in = model.in_features
    if n_in is not None and X.shape[1] != n_in:
        raise ShapeError(f"{name} X expects {n_in} features (the model's input width), "
                         f"got shape {tuple(X.shape)}")
    if y is None:
        raise JacnetValueError(f"{name} y expects targets, got None")
    y = as_ndarray(y, f"{name} y", "an array of targets")
    if y.ndim == 0 or y.shape[0] != X.shape[0]:
        raise ShapeError(f"{name} y expects {X.shape[0]} targets (one per row of X), "
                         f"got shape {y.shape}")
    n_out = model.out_features
    if n_out is None:
        return X, y, None
    # Check every target once, up front, with the loss's own rules on a valid prediction.
    fill = 0.5 if isinstance(loss, (BinaryCrossEntropy, CategoricalCrossEntropy)) else 0.0
    probe = np.full((X.shape[0], n_out), fill, dtype=model.dtype)
    try:
        _, targets = copy.copy(loss)._checked(probe, y)
    except JacnetError as exc:  # say which argument of the caller is wrong
        raise type(exc)(f"{name} y: {exc}") from exc
    if isinstance(targets, np.ndarray) and backend.is_torch(X):
        targets = backend.like(targets, X)
    return X, y, targets


def _handing(A: Any, ours: bool, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``method(*args, **kwargs)`` with ``A`` handed over (see
    :func:`~jacnet.layers.is_handed_over`) when ``ours``: jacnet made it for this call and nobody
    else holds it."""
    token = _handed.set(id(A) if ours else 0)
    try:
        return method(*args, **kwargs)
    finally:
        _handed.reset(token)


def _int_seed(seed: np.random.Generator | int | None) -> int:
    """One integer seed from which every random stream of a run derives (stored in checkpoints)."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**63))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise JacnetTypeError(
            f"fit seed expects None, an int >= 0 or a numpy Generator, got {describe(seed)}")
    return int(seed)


def _split(n: int, validation_split: float, seed: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Training and validation row indices; a seeded random split (stream 0 of ``seed``)."""
    if not validation_split:
        return np.arange(n), np.arange(0)
    split_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    order = split_rng.permutation(n)
    n_val = round(n * validation_split)
    if n_val < 1 or n_val >= n:
        raise JacnetValueError(f"fit validation_split expects to leave at least one sample on each "
                               f"side, got {validation_split} of {n} samples")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _batched_outputs(model: Sequential, X: FloatArray, rows: NDArray[np.intp] | None,
                     batch_size: int) -> FloatArray:
    """The model's outputs in inference mode (see ``Sequential.predict``), batch by batch."""
    n = X.shape[0] if rows is None else rows.shape[0]
    parts = []
    with model.inference() as layers:
        for s in range(0, n, batch_size):
            Xb = X[s:s + batch_size] if rows is None else backend.take_rows(
                X, backend.like(rows[s:s + batch_size], X))
            parts.append(model._run(layers, Xb))
    return backend.namespace(X).concat(parts, axis=0) if len(parts) > 1 else parts[0]


def _warn_if_unfused(model: Sequential, loss: Loss) -> None:
    """Say once, as training starts, that an unfused float32 output and loss lose the gradient
    where the output saturates; the fused loss on logits is exact."""
    pairs = {Sigmoid: (BinaryCrossEntropy, SigmoidBinaryCrossEntropy),
             Softmax: (CategoricalCrossEntropy, SoftmaxCrossEntropy)}
    last = model.layers[-1]
    for head, (unfused, fused) in pairs.items():
        if isinstance(last, head) and isinstance(loss, unfused) and model.dtype == np.float32:
            warnings.warn(
                f"{head.__name__} followed by {unfused.__name__} in float32: the gradient vanishes "
                f"where the {head.__name__.lower()} saturates (its output rounds to 0 or 1 and the "
                f"clipped loss is flat there); {fused.__name__} on the logits is exact for every "
                f"logit. Drop the final {head.__name__} and train with {fused.__name__}.",
                JacnetWarning, stacklevel=3)


def _weights(value: Any, loss: Loss, n: int, name: str) -> FloatArray | None:
    """Checked sample weights ``(n,)``, or None; a loss without per-row values refuses them."""
    if value is None:
        return None
    weights = check_sample_weight(value, n, name)
    check_weighted(loss, name)
    return weights


def _scores(model: Sequential, loss: Loss, outputs: FloatArray, y: Any, prefix: str = "",
            weights: FloatArray | None = None) -> dict[str, float]:
    outputs = backend.to_numpy(outputs)  # scored once per call, in NumPy
    if weights is None:
        scores = {f"{prefix}loss": copy.copy(loss).forward(outputs, y)}
    else:
        scores = {f"{prefix}loss": copy.copy(loss).forward(outputs, y, sample_weight=weights)}
    if is_classification(loss):
        scores[f"{prefix}accuracy"] = accuracy(true_labels(np.asarray(y), loss),
                                               predicted_labels(outputs, loss), weights)
    elif outputs.shape[1] >= 1 and np.asarray(y).dtype.kind in "fiu":
        scores[f"{prefix}mse"] = mean_squared_error(np.asarray(y), outputs, weights)
        scores[f"{prefix}r2"] = r2_score(np.asarray(y), outputs, weights)
    return scores


def evaluate(model: Sequential, X: Any, y: Any, *, loss: Loss | None = None,
             batch_size: int = 4096, sample_weight: Any = None) -> dict[str, float]:
    """Score ``model`` on ``(X, y)``.

    Parameters
    ----------
    model : Sequential
        Scored in inference mode.
    X : array_like or DataFrame, (N, in)
        Inputs (numeric columns only).
    y : array_like or Series / DataFrame
        Targets in a layout the loss accepts (see :func:`fit`).
    loss : Loss, optional
        Defaults to ``model.loss``.
    batch_size : int
        Rows per forward pass (memory only; the scores do not depend on it).
    sample_weight : array_like or Series, (N,), optional
        Finite weights >= 0, not all zero. Every score becomes a weighted mean over the
        rows: the loss ``Σᵢ wᵢ lᵢ / Σᵢ wᵢ`` (``lᵢ`` row ``i``'s loss), the accuracy
        ``Σᵢ wᵢ [row i right] / Σᵢ wᵢ``, the MSE and R² as scikit-learn's ``sample_weight``.

    Returns
    -------
    dict
        ``loss`` (the mean over all N samples, or the weighted mean) and ``accuracy`` for a
        classification loss, or ``mse`` and ``r2`` for regression.
    """
    chosen = _resolve_loss(model, loss, "evaluate")
    batch_size = check_positive_int(batch_size, "evaluate batch_size")
    X, y, _ = _check_data(model, X, y, chosen, "evaluate")
    weights = _weights(sample_weight, chosen, X.shape[0], "evaluate")
    try:  # overflow inside is reported below, not as NumPy RuntimeWarnings
        with np.errstate(over="ignore", invalid="ignore"):
            outputs = _batched_outputs(model, X, None, batch_size)
    except NonFiniteError as exc:  # a layer saw an overflowed value: say which input did it
        raise NonFiniteError(overflow_message("evaluate X", X)) from exc
    if not all_finite(outputs):
        raise NonFiniteError(overflow_message("evaluate X", X))
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowed loss is reported below
        scores = _scores(model, chosen, outputs, y, weights=weights)
    if not math.isfinite(scores["loss"]):
        raise NonFiniteError(f"evaluate X expects inputs (and y targets) for which the loss is "
                             f"finite, got loss {scores['loss']} (|X| up to "
                             f"{float(np.max(np.abs(backend.to_numpy(X)))):.3g}; standardise X "
                             "and y?)")
    return scores


def _restore_checkpoint(model: Sequential, optimizer: Optimizer | None, path: str | Path
                        ) -> tuple[Optimizer, dict[str, Any]]:
    from jacnet.io import load_checkpoint

    checkpoint = load_checkpoint(path)
    saved = checkpoint.model.params
    params = model.params
    if saved.keys() != params.keys() or any(saved[k].shape != params[k].shape for k in params):
        raise JacnetValueError(f"fit resume expects a checkpoint of this model's architecture, "
                               f"got one with parameters {sorted(saved)} from {path}")
    # The file's NumPy arrays are copied into the model's own, on its backend and device: a
    # torch run resumes on torch, and its optimizer's state follows its parameters there.
    for k, p in params.items():
        p[...] = backend.like(saved[k], p)
    saved_buffers = checkpoint.model.buffers
    for k, b in model.buffers.items():  # running statistics: part of what the model computes
        if k in saved_buffers and saved_buffers[k].shape == b.shape:
            b[...] = backend.like(saved_buffers[k], b)
    if checkpoint.optimizer is None:
        raise JacnetValueError(f"fit resume expects a checkpoint with optimizer state, got none in {path}")
    if optimizer is None:
        optimizer = checkpoint.optimizer
    else:
        optimizer.load_state_dict(checkpoint.optimizer.state_dict())
    return optimizer, checkpoint.training_state


def fit(
    model: Sequential,
    X: Any,
    y: Any,
    *,
    loss: Loss | None = None,
    optimizer: Optimizer | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    validation: tuple[Any, ...] | None = None,
    validation_split: float = 0.0,
    shuffle: bool = True,
    seed: np.random.Generator | int | None = None,
    callbacks: Iterable[Callback] = (),
    verbose: int | str = "auto",
    resume: str | Path | None = None,
    sample_weight: Any = None,
) -> History:
    """Train ``model`` on ``(X, y)`` with mini-batch gradient descent.

    Parameters
    ----------
    model : Sequential
        Trained in place.
    X : array_like or DataFrame, (N, in)
        Inputs; cast once to the model's dtype (float32 by default), never copied otherwise.
        A DataFrame must have numeric columns only.
    y : array_like or Series / DataFrame
        Targets in a layout ``loss`` accepts: labels ``(N,)`` or one-hot ``(N, K)`` for the
        categorical losses, ``(N, 1)`` / ``(N,)`` / ``(N, K)`` for the binary ones, ``(N, K)``
        (or ``(N,)`` for one output) for mean squared error.
    loss : Loss, optional
        Defaults to ``model.loss``; the model remembers the loss it was trained with.
    optimizer : Optimizer, optional
        Defaults to ``Adam()``.
    epochs, batch_size : int
        Passes over the data, and samples per step (the last batch may be smaller).
    validation : (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
        Scored after every epoch (``val_loss``, ``val_accuracy`` / ``val_mse``, ``val_r2``),
        weighted by ``sample_weight_val`` when given.
    validation_split : float
        Or hold out this fraction of ``(X, y)`` (and of ``sample_weight``, which then weights
        the validation scores), chosen at random from ``seed``.
    shuffle : bool
        Visit the samples in a new random order every epoch.
    seed : int or Generator, optional
        The only source of randomness (split and shuffling); the same seed gives bitwise the
        same weights and history. The global NumPy random state is never touched.
    callbacks : iterable of Callback
        E.g. ``EarlyStopping``, ``ModelCheckpoint``, ``LearningRateScheduler``. A
        ``NonFiniteGuard`` is always added unless one is given.
    verbose : {"auto", 0, 1, 2}
        0 silent; 1 a live bar (on a terminal) and a line per epoch; 2 a line per epoch;
        "auto" is 1 on a terminal and silent otherwise.
    resume : path, optional
        A ``ModelCheckpoint`` file: restore weights, optimizer, RNG state and history, and
        continue after its epoch.
    sample_weight : array_like or Series, (N,), optional
        Finite weights >= 0, not all zero, one per row of ``X``. Each step minimises the
        weighted mean of its batch's per-row losses, ``Σᵢ wᵢ lᵢ / Σᵢ wᵢ`` (scikit-learn's
        ``MLPClassifier`` does the same), so its gradient is row ``i``'s gradient of the plain
        mean times ``N_b wᵢ / Σ w``; a batch whose weights are all zero takes no step. With
        full-batch steps an integer weight ``k`` equals repeating the row ``k`` times; with
        mini-batches it does in expectation. History's ``loss`` and ``accuracy`` (and the
        validation scores) are weighted means over the rows. The loss must provide per-row
        values (``Loss._rows``; every built-in does).

    Returns
    -------
    History
    """
    loss = _resolve_loss(model, loss, "fit")
    epochs = check_positive_int(epochs, "fit epochs")
    batch_size = check_positive_int(batch_size, "fit batch_size")
    validation_split = check_real(validation_split, "fit validation_split", low=0, high=1, high_open=True)
    if validation is not None and validation_split:
        raise JacnetValueError("fit expects either validation or validation_split, got both")
    if verbose not in (0, 1, 2, "auto"):
        raise JacnetValueError(f"fit verbose expects 0, 1, 2 or 'auto', got {verbose!r}")
    X, y, targets = _check_data(model, X, y, loss, "fit")
    weights = _weights(sample_weight, loss, X.shape[0], "fit")
    w_val = None
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
            raise JacnetTypeError(f"fit validation expects a pair (X_val, y_val) or a triple "
                                  f"(X_val, y_val, sample_weight_val), got {describe(validation)}")
        X_val, y_val, _ = _check_data(model, validation[0], validation[1], loss, "fit validation")
        if len(validation) == 3:
            w_val = _weights(validation[2], loss, X_val.shape[0], "fit validation")
    if isinstance(callbacks, Callback):
        raise JacnetTypeError(f"fit callbacks expects a list of Callback objects, got a single "
                              f"{type(callbacks).__name__}; wrap it in a list")
    callbacks = list(callbacks)
    for c in callbacks:
        if not isinstance(c, Callback):
            raise JacnetTypeError(f"fit callbacks expects Callback objects, got {describe(c)}")
    guard = next((c for c in callbacks if isinstance(c, NonFiniteGuard)), None)
    if guard is None:
        guard = NonFiniteGuard()
        callbacks.insert(0, guard)

    history = History()
    start_epoch = 0
    if resume is not None:
        optimizer, state = _restore_checkpoint(model, optimizer, resume)
        seed = int(state["seed"])
        start_epoch = int(state["epoch"]) + 1
        history = History.from_dict(state["history"])
        # The k-th callback of a type takes the state of the checkpointed run's k-th callback of
        # that type: two ModelCheckpoints keep their own, whatever the order of the list.
        saved: dict[str, list[Any]] = {}
        for entry in state.get("callbacks", []):
            saved.setdefault(str(entry.get("type")), []).append(entry.get("state"))
        for c in callbacks:
            states = saved.get(type(c).__name__)
            if states:
                c.load_state(states.pop(0))
    if optimizer is None:
        optimizer = Adam()
    elif not isinstance(optimizer, Optimizer):
        raise JacnetTypeError(f"fit optimizer expects a jacnet Optimizer, got {describe(optimizer)}")
    base_seed = _int_seed(seed)
    train_rows, val_rows = _split(X.shape[0], validation_split, base_seed)
    train_weight = 0.0
    if weights is not None:
        train_weight = float(weights[train_rows].sum())
        if not train_weight:
            raise JacnetValueError("fit sample_weight expects a positive weight on at least one "
                                   "training row, got all zero outside the validation split")
        if val_rows.size:
            w_val = weights[val_rows]
            if not w_val.any():
                raise JacnetValueError("fit sample_weight expects a positive weight on at least "
                                       "one validation row, got all zero in the validation split")
    shuffle_rng = np.random.default_rng(np.random.SeedSequence(base_seed).spawn(2)[1])
    if resume is not None:
        shuffle_rng.bit_generator.state = state["shuffle_rng"]
        saved_rngs = state.get("layer_rngs", {})
        for i, rng in _layer_rngs(model):
            if str(i) in saved_rngs:
                rng.bit_generator.state = saved_rngs[str(i)]

    model.loss = loss
    n = train_rows.shape[0]
    n_batches = -(-n // batch_size)
    progress = Progress(epochs, n_batches, verbose)
    run = Run(model, loss, optimizer, history, epochs, base_seed, shuffle_rng, progress, callbacks,
              epoch=start_epoch)
    classify = is_classification(loss)
    labels = true_labels(y, loss) if classify else None
    # Labels per sample: 1, or K for a multi-label (binary, K outputs) problem.
    label_width = 1 if labels is None or labels.ndim == 1 else labels.shape[1]
    # The targets were checked and converted once, above; a loss that keeps the Loss contract
    # (its own _value, not its own forward) takes each batch's rows of them as they are.
    prepared = targets is not None and type(loss).forward is Loss.forward
    # Every batch is gathered into this one array: a fresh (batch, ...) array per step costs
    # page faults once it is large. It is handed to the network as jacnet's own array (no copy,
    # no second check): nothing else reads or writes it until the next step's gather.
    batch_buffer = backend.namespace(X).empty((min(batch_size, n), *X.shape[1:]), dtype=X.dtype,
                                              device=X.device)
    _warn_if_unfused(model, loss)
    # Hand-overs go to jacnet's own code only: a Sequential subclass's forward or backward (or
    # a user's last layer or loss) may keep the array it is given, or return one it keeps.
    own_input = _jacnet_code(model, "forward")
    own_output = own_input and _jacnet_code(model.layers[-1], "forward")
    own_gradient = _jacnet_code(model, "backward") and all(
        _jacnet_code(loss, m) for m in ("backward", "_gradient"))
    modes = [layer.training for layer in model.layers]
    model.train()

    for c in callbacks:
        c.on_train_begin(run)
    try:
        for epoch in range(start_epoch, epochs):
            if run.stop_training:  # a resumed callback may say the run had already stopped
                break
            run.epoch = epoch
            for c in callbacks:
                c.on_epoch_begin(epoch, run)
            progress.epoch_begin(epoch)
            started = time.perf_counter()
            order = train_rows[shuffle_rng.permutation(n)] if shuffle else train_rows
            order_here = backend.like(order, X)  # the indices on X's device, once per epoch
            total, correct = 0.0, 0.0
            for b, s in enumerate(range(0, n, batch_size)):
                run.batch = b
                rows = order[s:s + batch_size]
                wb = None if weights is None else weights[rows]
                rows_here = order_here[s:s + batch_size]
                # The step's one gather.
                Xb = backend.take_rows(X, rows_here, out=batch_buffer[:rows.shape[0]])
                # A non-finite output or loss stops training before the optimizer moves the
                # weights, so the guard keeps the (finite) weights that produced it. (An overflow
                # that a saturating activation hides from the output can still reach the
                # gradients; the next step's loss is then NaN and the guard puts back the last
                # finite weights.) The guard reports overflow itself: NumPy's RuntimeWarnings
                # would only repeat it.
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    # A batch of zero weights holds no data: no step, as if its rows were not there.
                    skipped = wb is not None and not wb.any()
                    if skipped:
                        value = 0.0
                    else:
                        try:
                            # Xb is fit's own array (see is_handed_over), and so are the output
                            # of a built-in last layer and the gradient of a built-in loss: each
                            # is handed on without a copy or a second check.
                            out = _handing(Xb, own_input, model.forward, Xb)
                            if prepared:
                                value = _handing(out, own_output, loss._forward_prepared, out,
                                                 targets[rows_here], wb)
                            elif wb is None:  # a user's forward need not take sample_weight
                                value = loss.forward(out, y[rows])
                            else:
                                value = loss.forward(out, y[rows], sample_weight=wb)
                            finite = math.isfinite(value)
                            if finite:
                                dY = loss.backward()
                                _handing(dY, own_gradient, model.backward, dY, input_grad=False)
                        except NonFiniteError as exc:
                            guard.fail(run, f"a value became non-finite ({exc})")
                        if not finite:
                            guard.fail(run, f"the loss became {value}")
                        # Read every step: a layer may write its grads in place or assign new
                        # arrays.
                        optimizer.step(model.params, model.grads)
                batch_accuracy = None
                if wb is None:
                    total += value * rows.shape[0]
                    if labels is not None:
                        hits = int(np.count_nonzero(predicted_labels(out, loss) == labels[rows]))
                        correct += hits
                        batch_accuracy = hits / (rows.shape[0] * label_width)
                elif not skipped:
                    batch_weight = float(wb.sum())
                    total += value * batch_weight
                    if labels is not None:
                        right = predicted_labels(out, loss) == labels[rows]
                        hits_w = float(wb @ (right if right.ndim == 1 else right.sum(axis=1)))
                        correct += hits_w
                        batch_accuracy = hits_w / (batch_weight * label_width)
                for c in callbacks:
                    c.on_batch_end(b, value, run)
                progress.batch_end(b, value, batch_accuracy)
            seen = n if weights is None else train_weight
            logs = {"loss": total / seen}
            if labels is not None:
                logs["accuracy"] = correct / (seen * label_width)
            if validation is not None:
                logs.update(_scores(model, loss, _batched_outputs(model, X_val, None, 4096), y_val,
                                    "val_", w_val))
            elif val_rows.size:
                logs.update(_scores(model, loss, _batched_outputs(model, X, val_rows, 4096),
                                    y[val_rows], "val_", w_val))
            logs["lr"] = optimizer.lr
            logs["seconds"] = time.perf_counter() - started
            history.append(epoch, logs)  # before the callbacks, so a checkpoint holds this epoch
            for c in callbacks:
                c.on_epoch_end(epoch, logs, run)
            # Every callback's state for this epoch is final: checkpoints are written now.
            for c in callbacks:
                c.after_epoch(epoch, logs, run)
            progress.epoch_end(epoch, logs)
            if run.stop_training:
                break
        for c in callbacks:
            c.on_train_end(run)
    finally:
        progress.close()
        # What the last step kept for backward is training data: a trained model (or a
        # pickled estimator) must not carry it.
        model.clear()
        loss.clear()
        for layer, mode in zip(model.layers, modes, strict=True):
            layer.train(mode)
    return history

