"""Callbacks that ``fit`` calls around epochs and batches.

A callback overrides any of ``on_train_begin``, ``on_epoch_begin``, ``on_batch_end``,
``on_epoch_end`` and ``on_train_end``; each receives the :class:`~jacnet.train.Run` in
progress, whose ``stop_training`` it may set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jacnet import backend
from jacnet._validation import FloatArray, all_finite, check_positive_int, check_real, describe
from jacnet.errors import JacnetTypeError, JacnetValueError, NonFiniteError

if TYPE_CHECKING:
    from jacnet.train import Run

__all__ = ["Callback", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint", "NonFiniteGuard"]


class Callback:
    """Base class; every hook does nothing by default."""

    def on_train_begin(self, run: Run) -> None:
        """Before the first epoch."""

    def on_epoch_begin(self, epoch: int, run: Run) -> None:
        """Before epoch ``epoch`` (counted from 0)."""

    def on_batch_end(self, batch: int, loss: float, run: Run) -> None:
        """After each optimizer step, with that batch's loss."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float], run: Run) -> None:
        """After the epoch's metrics are in ``logs``."""

    def after_epoch(self, epoch: int, logs: dict[str, float], run: Run) -> None:
        """After every callback's ``on_epoch_end``: the epoch's state is final (checkpoints are
        written here, so they hold every callback's state of this epoch, whatever the order)."""

    def on_train_end(self, run: Run) -> None:
        """After the last epoch, or after a callback stopped training."""

    def state(self) -> dict[str, Any]:
        """State that a checkpoint keeps, so a resumed run continues it: JSON data, with NumPy
        float arrays allowed as dict values (``jacnet.save`` stores them as arrays)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state` returned; the next ``on_train_begin`` keeps it."""


def _model_arrays(model: Any) -> dict[str, FloatArray]:
    """What a model's predictions depend on: its parameters and its buffers (running
    statistics), the layers' own arrays, by name."""
    return {**model.params, **{f"buffer:{k}": v for k, v in model.buffers.items()}}


def _copy_params(params: dict[str, FloatArray]) -> dict[str, FloatArray]:
    return {k: backend.copy(v) for k, v in params.items()}


def _restore_params(params: dict[str, FloatArray], saved: dict[str, FloatArray]) -> None:
    for k, v in params.items():
        if k in saved:  # saved weights may come from a checkpoint (NumPy) for a torch model
            v[...] = backend.like(saved[k], v)


def _json_number(value: float) -> float | None:
    """JSON has no infinity: "no best yet" is stored as null."""
    return value if math.isfinite(value) else None


def _number(value: float | None) -> float:
    return math.inf if value is None else float(value)


def _monitored(logs: dict[str, float], monitor: str, who: str) -> float:
    if monitor not in logs:
        raise JacnetValueError(f"{who} monitor expects one of {sorted(logs)}, got {monitor!r} "
                               "(val_* metrics need validation data)")
    return logs[monitor]


def _mode(monitor: str, mode: str, who: str) -> str:
    if not isinstance(monitor, str):
        raise JacnetTypeError(f"{who} monitor expects the name of a metric (a str), "
                              f"got {describe(monitor)}")
    if mode not in ("auto", "min", "max"):
        raise JacnetValueError(f"{who} mode expects 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if monitor.endswith(("accuracy", "r2")) else "min"
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; restore the best weights.

    Parameters
    ----------
    monitor : str
        A key of the epoch logs, e.g. ``"val_loss"`` or ``"val_accuracy"``.
    patience : int
        Epochs without improvement before stopping.
    min_delta : float
        Smallest change that counts as an improvement.
    mode : {"auto", "min", "max"}
        Whether smaller or larger is better; "auto" picks max for accuracy and R².
    restore_best_weights : bool
        Put the weights of the best epoch back when training ends.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = True) -> None:
        self.monitor = monitor
        self.patience = check_positive_int(patience, "EarlyStopping patience", minimum=0)
        self.min_delta = check_real(min_delta, "EarlyStopping min_delta", low=0)
        self.mode = _mode(monitor, mode, "EarlyStopping")
        self.restore_best_weights = restore_best_weights
        self.best = math.inf
        self.best_epoch = -1
        self.stopped_epoch: int | None = None
        self._wait = 0
        self._best_weights: dict[str, FloatArray] | None = None
        self._resumed = False

    def on_train_begin(self, run: Run) -> None:
        if self._resumed:  # continue the patience count of the checkpointed run
            self._resumed = False
            if self.stopped_epoch is not None:  # it had stopped: so does the resumed run
                run.stop_training = True
            return
        self.best, self.best_epoch, self.stopped_epoch = math.inf, -1, None
        self._wait, self._best_weights = 0, None

    def state(self) -> dict[str, Any]:
        # The best weights too: a resumed run restores the same epoch's weights.
        return {"best": _json_number(self.best), "best_epoch": self.best_epoch, "wait": self._wait,
                "stopped_epoch": self.stopped_epoch,
                "best_weights": None if self._best_weights is None else dict(self._best_weights)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = _number(state["best"]), int(state["best_epoch"])
        self._wait = int(state["wait"])
        stopped = state.get("stopped_epoch")
        self.stopped_epoch = None if stopped is None else int(stopped)
        weights = state.get("best_weights")
        self._best_weights = None if weights is None else _copy_params(weights)
        self._resumed = True

    def on_epoch_end(self, epoch: int, logs: dict[str, float], run: Run) -> None:
        value = _monitored(logs, self.monitor, "EarlyStopping")
        score = -value if self.mode == "max" else value  # smaller is better from here on
        if score < self.best - self.min_delta:
            self.best, self.best_epoch, self._wait = score, epoch, 0
            if self.restore_best_weights:
                self._best_weights = _copy_params(_model_arrays(run.model))
            return
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch = epoch
            run.stop_training = True

    def on_train_end(self, run: Run) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            _restore_params(_model_arrays(run.model), self._best_weights)
            run.message(f"early stopping: restored the weights of epoch {self.best_epoch + 1} "
                        f"({self.monitor} {abs(self.best):.4f})")


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate before each epoch to ``schedule(epoch, base_lr)``.

    ``schedule`` is any callable such as :class:`~jacnet.optim.StepDecay` or
    :class:`~jacnet.optim.CosineDecay`; ``base_lr`` is the rate when training began.
    """

    def __init__(self, schedule: Callable[[int, float], float]) -> None:
        if not callable(schedule):
            raise JacnetValueError(f"LearningRateScheduler schedule expects a callable, got {schedule!r}")
        self.schedule = schedule
        self.base_lr: float | None = None
        self._resumed_base_lr: float | None = None

    def on_train_begin(self, run: Run) -> None:
        if self._resumed_base_lr is not None:
            self.base_lr, self._resumed_base_lr = self._resumed_base_lr, None
        else:
            self.base_lr = run.optimizer.lr

    def state(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr}

    def load_state(self, state: dict[str, Any]) -> None:
        self._resumed_base_lr = float(state["base_lr"])

    def on_epoch_begin(self, epoch: int, run: Run) -> None:
        base = run.optimizer.lr if self.base_lr is None else self.base_lr
        run.optimizer.lr = self.schedule(epoch, base)


class ModelCheckpoint(Callback):
    """Save the model, optimizer state, epoch and RNG state at the end of epochs.

    ``fit(..., resume=path)`` continues from such a file to bitwise the same result as an
    uninterrupted run.

    Parameters
    ----------
    path : str or Path
        The file to write (atomically; see :func:`jacnet.io.save`).
    monitor : str or None
        With ``save_best_only``, the log key deciding which epoch is best.
    save_best_only : bool
        Save only when ``monitor`` improves; otherwise save every epoch.
    """

    def __init__(self, path: str | Path, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto") -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise JacnetTypeError(f"ModelCheckpoint path expects a str or os.PathLike, got {describe(path)}")
        self.path = Path(path)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.mode = _mode(monitor, mode, "ModelCheckpoint")
        self.best = math.inf
        self.saved_epochs: list[int] = []
        self._due = False
        self._resumed = False

    def on_epoch_end(self, epoch: int, logs: dict[str, float], run: Run) -> None:
        self._due = True
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            score = -value if self.mode == "max" else value
            if score >= self.best:
                self._due = False
                return
            self.best = score

    def on_train_begin(self, run: Run) -> None:
        from jacnet.io import _encode

        _encode(run.model, run.optimizer, None)  # a model that cannot be saved: say so now
        if self._resumed:  # keep the best score of the checkpointed run
            self._resumed = False
            return
        self.best, self._due = math.inf, False

    def after_epoch(self, epoch: int, logs: dict[str, float], run: Run) -> None:
        if not self._due:
            return
        self._due = False
        from jacnet.io import save

        save(run.model, self.path, run.optimizer, training_state=run.training_state())
        self.saved_epochs.append(epoch)

    def state(self) -> dict[str, Any]:
        return {"best": _json_number(self.best)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.best = _number(state["best"])
        self._resumed = True


class NonFiniteGuard(Callback):
    """Stop training with :class:`~jacnet.errors.NonFiniteError` on a non-finite loss or weight.

    ``fit`` always installs one, and calls its :meth:`fail` itself, before the optimizer
    step, when the loss of a batch is NaN or infinite. Then the weights that produced it are
    kept if they are finite; if they are not, the weights of the last epoch end whose weights
    were all finite (or of the start of training) are put back.
    """

    def __init__(self) -> None:
        self._snapshot: dict[str, FloatArray] | None = None
        self._snapshot_epoch = -1

    def on_train_begin(self, run: Run) -> None:
        params = run.model.params
        if not all(all_finite(p) for p in params.values()):
            raise NonFiniteError("fit model expects finite weights, got NaN or infinity")
        self._snapshot, self._snapshot_epoch = _copy_params(_model_arrays(run.model)), run.epoch - 1

    def on_epoch_end(self, epoch: int, logs: dict[str, float], run: Run) -> None:
        params = run.model.params
        if not all(all_finite(p) for p in params.values()):
            self.fail(run, "a weight became non-finite")
        # Adam's second moment g² can overflow while g, the loss and the weights stay finite;
        # the weights it touches would then silently stop moving.
        state = getattr(run.optimizer, "_state", {})
        if not all(all_finite(a) for slots in state.values() for a in slots.values()):
            self.fail(run, "the optimizer's state overflowed (gradients too large: standardise X?)")
        self._snapshot, self._snapshot_epoch = _copy_params(_model_arrays(run.model)), epoch

    def fail(self, run: Run, what: str) -> None:
        """Keep or restore the last finite weights, then raise NonFiniteError."""
        params = run.model.params
        if all(all_finite(p) for p in params.values()):
            kept = "the model keeps the (finite) weights that produced it"
        else:
            if self._snapshot is not None:
                _restore_params(_model_arrays(run.model), self._snapshot)
            when = ("the start of training" if self._snapshot_epoch < 0
                    else f"the end of epoch {self._snapshot_epoch + 1}")
            kept = f"the model was reset to the last finite weights, from {when}"
        raise NonFiniteError(
            f"training diverged at epoch {run.epoch + 1}, batch {run.batch + 1}: {what}; {kept}. "
            f"Try a smaller learning rate (now {run.optimizer.lr:g}) or standardised inputs."
        )

