"""``jacnet train``'s settings: the general defaults and the per-data-set presets, in one table.

``jacnet train --data NAME`` alone reaches the README's results: where the general defaults
(:data:`DEFAULTS`) do not fit a bundled data set, its preset (:data:`PRESETS`) does. An option
given on the command line always wins over the preset, and the preset over the default. A
preset's learning rate is tuned for Adam: with ``--optimizer sgd`` SGD's default (0.05) applies
unless ``--lr`` is given; with ``--validation-split 0`` a preset's early stopping is off.

=========================  ========================================================================
``--data`` / ``--model``   preset (on top of :data:`DEFAULTS`)
=========================  ========================================================================
iris / mlp                 200 epochs (150 samples: 40 epochs are too few steps)
diabetes / mlp             one hidden layer of 16, 200 epochs, weight decay 1 (442 samples, noisy)
mnist1d / mlp              256-256-256, weight decay 1, 300 epochs, early stopping (patience 40,
                           best validation weights restored)
mnist1d / cnn (default)    3 blocks of Conv1D(32, k=5) → ReLU → MaxPool1D(2), Dropout 0.3,
                           Adam lr 3e-3 without weight decay, batch 100, 60 epochs, no validation
digits / cnn               Conv2D(32, 3×3) → ReLU → Conv2D(64, 3×3) → ReLU → MaxPool2D(2),
                           Dropout 0.3, the mnist1d CNN's optimizer settings
=========================  ========================================================================

mnist1d defaults to the CNN (:data:`MODELS`): the 40-sample signals are translated and
scaled copies of ten templates, which convolutions share weights over; the CNN reaches about
0.96 where the best MLP preset reaches about 0.70 (the published figures are 0.94 and 0.68).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULTS", "INPUT_SHAPES", "MODELS", "PRESETS", "settings"]

#: The general defaults (``lr`` None: 1e-3 for adam, 0.05 for sgd).
DEFAULTS: dict[str, Any] = {
    "hidden": (256, 128), "channels": (32, 32, 32), "kernel_size": 5, "dropout": 0.3,
    "lr": None, "weight_decay": 0.1, "epochs": 40, "batch_size": 32, "patience": 0,
    "validation_split": 0.1}

#: The model ``jacnet train --data NAME`` builds without ``--model`` (otherwise ``"mlp"``).
MODELS: dict[str, str] = {"mnist1d": "cnn"}

#: One sample's shape for ``--model cnn``: (channels, length) or (channels, height, width).
INPUT_SHAPES: dict[str, tuple[int, ...]] = {"mnist1d": (1, 40), "digits": (1, 8, 8)}

_CNN_TRAINING: dict[str, Any] = {"lr": 3e-3, "weight_decay": 0.0, "epochs": 60, "batch_size": 100,
                                 "validation_split": 0.0}

#: ``(data set, model)`` → the settings that differ from :data:`DEFAULTS`.
PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("iris", "mlp"): {"epochs": 200},
    ("diabetes", "mlp"): {"hidden": (16,), "epochs": 200, "weight_decay": 1.0},
    ("mnist1d", "mlp"): {"hidden": (256, 256, 256), "weight_decay": 1.0, "epochs": 300,
                         "patience": 40},
    ("mnist1d", "cnn"): {"channels": (32, 32, 32), "kernel_size": 5, **_CNN_TRAINING},
    ("digits", "cnn"): {"channels": (32, 64), "kernel_size": 3, **_CNN_TRAINING},
}


def settings(data: str | None, model: str | None, given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The model and the settings a run uses: ``given`` (the options on the command line; None
    where not given), else the preset of ``(data, model)``, else :data:`DEFAULTS`.

    Parameters
    ----------
    data : str or None
        A bundled data set's name (None for a file: no preset).
    model : {"mlp", "cnn"} or None
        ``--model`` (None: the data set's default in :data:`MODELS`, else ``"mlp"``).
    given : dict
        Option name → value, with None for an option not given.

    Returns
    -------
    model : str
    values : dict
        Every key of :data:`DEFAULTS` (and of ``given``) with its value.

    Examples
    --------
    >>> settings("diabetes", None, {"epochs": 50})[1]["hidden"]
    (16,)
    >>> settings("diabetes", None, {"epochs": 50})[1]["epochs"]
    50
    """
    chosen = model or MODELS.get(data or "", "mlp")
    preset = PRESETS.get((data or "", chosen), {})
    values = {key: preset.get(key, default) for key, default in DEFAULTS.items()}
    values.update({key: value for key, value in given.items() if value is not None})
    return chosen, values
