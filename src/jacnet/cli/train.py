"""``jacnet train``, ``jacnet evaluate`` and ``jacnet predict``."""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jacnet.backend import BACKENDS, check_backend
from jacnet.cli._args import count, int_at_least, positive_real, real, seed
from jacnet.errors import JacnetError, JacnetValueError, NonFiniteError
from jacnet.optim import Adam

#: ``--loss`` names: the loss and the output layer it needs (None: the network outputs logits).
LOSSES = {
    "softmax_ce": ("SoftmaxCrossEntropy", None),
    "cce": ("CategoricalCrossEntropy", "softmax"),
    "sigmoid_bce": ("SigmoidBinaryCrossEntropy", None),
    "bce": ("BinaryCrossEntropy", "sigmoid"),
    "mse": ("MeanSquaredError", None),
}

MODEL_FILE = "model.jacnet"

#: A run whose last training loss is this many times its first one has diverged.
DIVERGED = 100.0


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip() != "")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expects comma-separated integers like 128,64, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"expects sizes >= 1, got {text!r}")
    return sizes


def _data_spec(text: str) -> str:
    """``--data``: a bundled data set's name or a table file (checked when it is read)."""
    from jacnet.datasets import DATASETS
    from jacnet.tabular import SUFFIXES

    key = text.strip().lower().replace("-", "_")
    if key in DATASETS:
        return key
    if Path(text).suffix.lower() in SUFFIXES:
        return text
    raise argparse.ArgumentTypeError(
        f"expects a bundled data set ({', '.join(DATASETS)}) or a {'/'.join(SUFFIXES)} file, got {text!r}")


def _fraction(text: str) -> float:
    value = real(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expects a number in [0, 1), got {text!r}")
    return value


def _open_fraction(text: str) -> float:
    value = real(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expects a number in (0, 1), got {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = real(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expects a finite number >= 0, got {text!r}")
    return value


def add_parsers(sub: Any) -> None:
    from jacnet.model import ACTIVATIONS

    train = sub.add_parser(
        "train", help="train an MLP or a CNN on a bundled dataset or your own table",
        description="Train an MLP (or, on sequences and images, a CNN) on a bundled dataset or a "
                    "CSV/.npz/.parquet file and report its test score. Options left out take the "
                    "data set's preset where it has one (iris, diabetes, mnist1d, digits with "
                    "--model cnn; see jacnet.presets), else the general default shown.")
    train.add_argument("--data", default="digits", type=_data_spec, metavar="NAME|FILE",
                       help="a bundled dataset (default: digits) or a .csv/.npz/.parquet file")
    train.add_argument("--target", default=None, metavar="COLUMN",
                       help="with a file: the column to predict (an .npz with X and y: y)")
    train.add_argument("--task", choices=("classification", "regression"), default=None,
                       help="with a file: override the task inferred from the target")
    train.add_argument("--one-hot", action="store_true",
                       help="with a file: one-hot encode text feature columns (default: refuse them)")
    train.add_argument("--impute", choices=("mean", "median"), default=None,
                       help="with a file: fill missing feature values with the training part's mean "
                            "or median (default: refuse them)")
    train.add_argument("--test-size", type=_open_fraction, default=0.2,
                       help="with a file: the held-out test fraction (default: 0.2)")
    train.add_argument("--model", choices=("mlp", "cnn"), default=None,
                       help="mlp, or cnn for sequence/image data: mnist1d as (1, 40), digits as "
                            "(1, 8, 8) (default: cnn for mnist1d, else mlp)")
    train.add_argument("--hidden", type=_hidden, default=None, metavar="SIZES",
                       help="mlp: hidden layer widths, comma-separated (default: 256,128)")
    train.add_argument("--channels", type=_hidden, default=None, metavar="SIZES",
                       help="cnn: output channels of each Conv-ReLU-MaxPool block (default: 32,32,32)")
    train.add_argument("--kernel-size", type=count, default=None,
                       help="cnn: convolution window, unpadded (default: 5)")
    train.add_argument("--dropout", type=_fraction, default=None,
                       help="cnn: dropout before the last layer, in [0, 1) (default: 0.3)")
    train.add_argument("--activation", default="relu", choices=list(ACTIVATIONS))
    train.add_argument("--loss", choices=list(LOSSES), default=None,
                       help="default: softmax_ce (multiclass), sigmoid_bce (binary), mse (regression)")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    train.add_argument("--lr", type=positive_real, default=None,
                       help="learning rate (default: 1e-3 for adam, 0.05 for sgd)")
    train.add_argument("--momentum", type=_fraction, default=0.9,
                       help="sgd momentum, in [0, 1) (default: 0.9)")
    train.add_argument("--weight-decay", type=_non_negative, default=None,
                       help="decoupled weight decay for adam (AdamW), L2 for sgd (default: 0.1)")
    train.add_argument("--epochs", type=count, default=None, help="(default: 40)")
    train.add_argument("--batch-size", type=count, default=None, help="(default: 32)")
    train.add_argument("--patience", type=int_at_least(0), default=None,
                       help="stop after this many epochs without validation improvement (0: off; "
                            "needs --validation-split > 0)")
    train.add_argument("--validation-split", type=_fraction, default=None,
                       help="fraction of the training part held out for validation, in [0, 1) "
                            "(default: 0.1)")
    train.add_argument("--seed", type=seed, default=0, help="split, initialisation and shuffling seed")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument("--backend", choices=BACKENDS, default="numpy",
                       help="array library that trains the network (torch needs "
                            "pip install 'jacnet[torch]'; default: numpy)")
    train.add_argument("--device", default=None, metavar="DEV",
                       help="torch device: cpu, cuda, cuda:1 ... (default: cpu)")
    train.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="output directory (default: runs/<data>)")
    train.add_argument("--quiet", action="store_true", help="print only the result")
    train.set_defaults(run=run_train)

    evaluate = sub.add_parser("evaluate", help="score a saved model on a dataset's test split")
    evaluate.add_argument("model", type=Path, help="a model file written by jacnet train")
    evaluate.add_argument("--data", required=True, type=_data_spec, metavar="NAME|FILE",
                          help="a bundled dataset or the file the model was trained on")
    evaluate.add_argument("--seed", type=seed, default=None,
                          help="the split seed (default: the one stored in the model, else 0)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(run=run_evaluate)

    predict = sub.add_parser(
        "predict", help="predict the rows of a CSV file",
        description="Predict every row of a CSV file: exactly one output row per input row (a header "
                    "row in, a header row out). Without --header/--no-header the first line is a "
                    "header only when that is unambiguous: it equals the model's column names, or "
                    "it is all text; a row of numbers is data; anything else (numbers mixed with "
                    "text, a pandas-style 0,1,2,... line, names that are also numbers) is refused.")
    predict.add_argument("model", type=Path, help="a model file written by jacnet train")
    predict.add_argument("input", type=Path, help="CSV of raw features, one sample per row")
    predict.add_argument("--output", type=Path, default=None, help="write CSV here (default: stdout)")
    predict.add_argument("--proba", action="store_true",
                         help="also write each class's probability after the label")
    header = predict.add_mutually_exclusive_group()
    header.add_argument("--header", dest="header", action="store_const", const="header",
                        help="the first line names the columns")
    header.add_argument("--no-header", dest="header", action="store_const", const="no-header",
                        help="the first line is data")
    predict.add_argument("--chunk-rows", type=count, default=16384,
                         help="rows read and predicted at a time (bounds memory; default: 16384)")
    predict.set_defaults(run=run_predict, header=None)


def fold_standardization(model: Any, mean: np.ndarray, std: np.ndarray) -> None:
    """Make a network trained on ``(x - mean)/std`` take raw ``x``, exactly.

    The first affine layer absorbs the scaling: ``W ← W / std[:, None]`` and
    ``b ← b - (mean / std) W``, since ``((x - mean)/std) W + b = x (W/std) + (b - (mean/std) W)``.
    """
    first = model.layers[0]
    W, b = first.params["W"], first.params["b"]
    scaled = (mean / std) @ W.astype(np.float64)
    W /= std[:, None].astype(W.dtype)
    b -= scaled.astype(b.dtype)


def unscale_outputs(model: Any, mean: float, std: float) -> None:
    """Make a network trained on ``(y - mean)/std`` predict ``y``: the last affine layer
    absorbs ``ŷ = z·std + mean`` (``W ← W·std``, ``b ← b·std + mean``)."""
    last = next(layer for layer in reversed(model.layers) if "W" in layer.params)
    last.params["W"] *= last.params["W"].dtype.type(std)
    last.params["b"] *= last.params["b"].dtype.type(std)
    last.params["b"] += last.params["b"].dtype.type(mean)


@dataclass
class TrainingData:
    """What ``jacnet train`` trains on, from a bundled data set or a file: raw features."""

    name: str
    task: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    n_classes: int
    metadata: dict[str, Any]
    note: str = ""


def _fingerprint(*arrays: np.ndarray) -> str:
    """SHA-256 of arrays' bytes (C order), for a run record."""
    digest = hashlib.sha256()
    for A in arrays:
        digest.update(np.ascontiguousarray(A).tobytes())
    return digest.hexdigest()


def _bundled(name: str, seed: int, dtype: Any) -> TrainingData:
    from jacnet.datasets import load

    data = load(name, seed=seed, standardize=False, dtype=dtype)
    meta: dict[str, Any] = {
        "feature_names": [str(n) for n in data.feature_names], "task": data.task, "target": "target",
        "data": {"source": name,
                 "sha256": _fingerprint(data.X_train, data.y_train, data.X_test, data.y_test)}}
    if data.task == "classification":
        meta["class_labels"] = list(data.classes)
    if name != "mnist1d":  # MNIST-1D's split is fixed: no seed moves it
        meta["split"] = {"seed": seed, "test_size": 0.2, "stratified": data.task == "classification"}
    return TrainingData(name, data.task, data.X_train, data.X_test, data.y_train, data.y_test,
                        data.n_classes, meta)


def _from_file(path: str, args: argparse.Namespace, *, flag: str = "train") -> TrainingData:
    from jacnet.tabular import prepare, read_table

    try:
        table = read_table(path, args.target)
    except JacnetValueError as exc:  # the reader names train's flags
        raise JacnetValueError(str(exc).replace("train --", f"{flag} --", 1)) from None
    target = args.target
    if target is None:
        if path.lower().endswith(".npz") and any(c.name == "y" for c in table.columns):
            target = "y"
        else:
            raise JacnetValueError(f"{flag} --target expects the name of the column to predict, got "
                                   f"none (columns: {[c.name for c in table.columns][:20]})")
    try:
        prepared = prepare(table, target, task=args.task, one_hot=args.one_hot, impute=args.impute,
                           test_size=args.test_size, seed=args.seed)
    except JacnetValueError as exc:
        raise JacnetValueError(str(exc).replace("train --", f"{flag} --", 1)) from None
    meta = prepared.metadata()
    meta["split"] = {"seed": args.seed, "test_size": args.test_size,
                     "stratified": prepared.task == "classification"}
    dtype = np.dtype(args.dtype)
    y_dtype = np.int64 if prepared.task == "classification" else dtype
    note = f"{prepared.task} ({prepared.task_reason})"
    return TrainingData(path, prepared.task, prepared.X_train.astype(dtype), prepared.X_test.astype(dtype),
                        prepared.y_train.astype(y_dtype), prepared.y_test.astype(y_dtype),
                        prepared.n_classes, meta, note)


#: fit's and build_mlp's argument names and the flags that set them.
FLAGS = {"validation_split": "--validation-split", "batch_size": "--batch-size", "epochs": "--epochs",
         "seed": "--seed", "lr": "--lr", "momentum": "--momentum", "weight_decay": "--weight-decay",
         "hidden": "--hidden", "activation": "--activation", "patience": "--patience",
         "channels": "--channels", "kernel_size": "--kernel-size", "dropout": "--dropout"}


def _as_flags(exc: JacnetError) -> JacnetError:
    """The same error, with ``fit validation_split`` (and the like) written as its flag."""
    text = str(exc)
    new = re.sub(r"\b(?:fit|build_mlp|build_cnn|SGD|Adam|EarlyStopping) (\w+)\b",
                 lambda m: FLAGS.get(m[1], m[0]), text)
    return type(exc)(new) if new != text else exc


#: Options that only one ``--model`` takes.
_MODEL_OPTIONS = {"hidden": "mlp", "activation": "mlp", "channels": "cnn", "kernel_size": "cnn",
                  "dropout": "cnn"}


def _apply_presets(args: argparse.Namespace) -> str | None:
    """Fill the options left out from the data set's preset, else the general defaults
    (:mod:`jacnet.presets`); return the preset's name (``"mnist1d/cnn"``) or None."""
    from jacnet.datasets import DATASETS
    from jacnet.presets import DEFAULTS, INPUT_SHAPES, PRESETS, settings

    bundled = args.data if args.data in DATASETS else None
    given = {key: getattr(args, key) for key in DEFAULTS}
    args.model, values = settings(bundled, args.model, given)
    for key, value in values.items():
        setattr(args, key, value)
    if given["lr"] is None and args.optimizer != "adam":  # presets' rates are Adam's
        args.lr = None
    if given["patience"] is None and not args.validation_split:  # no validation: a preset's
        args.patience = 0  # early stopping has nothing to watch
    for key, model in _MODEL_OPTIONS.items():
        if key in given and given[key] is not None and args.model != model:
            raise JacnetValueError(f"train {FLAGS[key]} expects --model {model}, got --model {args.model}")
    if args.activation != "relu" and args.model != "mlp":
        raise JacnetValueError(f"train --activation expects --model mlp (the CNN uses relu), got "
                               f"--model {args.model}")
    if args.model == "cnn" and bundled not in INPUT_SHAPES:
        raise JacnetValueError(f"train --model cnn expects sequence or image data "
                               f"({', '.join(INPUT_SHAPES)}), got {args.data!r}")
    return f"{bundled}/{args.model}" if (bundled or "", args.model) in PRESETS else None


def _check_options(args: argparse.Namespace) -> None:
    """Refuse option combinations before any data is read or any training starts."""
    if args.patience and not args.validation_split:
        raise JacnetValueError(f"train --patience expects validation data to watch (--validation-split "
                               f"> 0), got --patience {args.patience} with --validation-split 0")
    is_file = Path(args.data).suffix.lower() in (".csv", ".npz", ".parquet")
    if not is_file:
        for flag, value in (("--target", args.target), ("--task", args.task),
                            ("--impute", args.impute)):
            if value is not None:
                raise JacnetValueError(f"train {flag} expects --data to be a file, got the bundled "
                                       f"data set {args.data!r}")
        if args.one_hot:
            raise JacnetValueError(f"train --one-hot expects --data to be a file, got the bundled "
                                   f"data set {args.data!r}")
        if args.test_size != 0.2:
            raise JacnetValueError(f"train --test-size expects --data to be a file (bundled data sets "
                                   f"use their 0.2 split), got {args.data!r}")


def _placement(args: argparse.Namespace) -> tuple[str, str]:
    """``(backend, device)`` of ``--backend`` and ``--device``, checked before any data is read
    (a missing torch raises ImportError naming the extra)."""
    try:
        return check_backend(args.backend, args.device, "train")
    except JacnetError as exc:
        text = (str(exc).replace("train device", "train --device")
                .replace("train backend", "train --backend").replace("backend='torch'", "--backend torch"))
        raise type(exc)(text) from None


def _optimizer_text(optimizer: Any) -> str:
    """``AdamW(lr=0.001, weight_decay=0.1)``: the optimizer as it runs, decay included."""
    hyper = optimizer.hyperparameters()
    if isinstance(optimizer, Adam):
        name = "AdamW" if optimizer.weight_decay else "Adam"
        return f"{name}(lr={hyper['lr']:g}, weight_decay={hyper['weight_decay']:g})"
    return (f"SGD(lr={hyper['lr']:g}, momentum={hyper['momentum']:g}, "
            f"weight_decay={hyper['weight_decay']:g})")


def run_train(args: argparse.Namespace) -> int:
    import jacnet
    from jacnet.callbacks import EarlyStopping
    from jacnet.cnn import fold_scalar_standardization
    from jacnet.datasets import DATASETS, standardize
    from jacnet.io import save
    from jacnet.presets import INPUT_SHAPES

    preset = _apply_presets(args)
    _check_options(args)
    backend, device = _placement(args)
    lr = args.lr if args.lr is not None else (1e-3 if args.optimizer == "adam" else 0.05)
    try:
        optimizer = (jacnet.Adam(lr, weight_decay=args.weight_decay) if args.optimizer == "adam"
                     else jacnet.SGD(lr, momentum=args.momentum, weight_decay=args.weight_decay))
    except JacnetError as exc:
        raise _as_flags(exc) from None
    dtype = np.dtype(args.dtype)
    data = (_bundled(args.data, args.seed, dtype) if args.data in DATASETS
            else _from_file(args.data, args))
    label = args.data if args.data in DATASETS else Path(args.data).name
    cnn = args.model == "cnn"
    X_train: np.ndarray[Any, Any]
    X_test: np.ndarray[Any, Any]
    if cnn:  # one scalar for all inputs: a convolution shares its weights over positions
        scalar_mean = float(data.X_train.astype(np.float64).mean())
        scalar_std = float(data.X_train.astype(np.float64).std()) or 1.0
        X_train = (data.X_train - scalar_mean) / scalar_std
        X_test = (data.X_test - scalar_mean) / scalar_std
    else:
        X_train, X_test, mean, std = standardize(data.X_train, data.X_test)
    X_train, X_test = X_train.astype(dtype), X_test.astype(dtype)
    classification = data.task == "classification"
    n_classes = data.n_classes
    loss_name = args.loss or ("mse" if not classification else "sigmoid_bce" if n_classes == 2
                              else "softmax_ce")
    if classification == (loss_name == "mse"):
        raise JacnetValueError(f"train --loss expects a {data.task} loss for {label}, got {loss_name}")
    loss_class, output = LOSSES[loss_name]
    loss = getattr(jacnet, loss_class)()
    binary = loss_name in ("sigmoid_bce", "bce")
    if binary and n_classes != 2:
        raise JacnetValueError(f"train --loss {loss_name} expects a two-class dataset, "
                               f"got {label} with {n_classes} classes")
    n_out = 1 if binary or not classification else n_classes
    y_train = data.y_train
    y_test = data.y_test
    if not classification:
        y_train, y_test = y_train.reshape(-1, 1), y_test.reshape(-1, 1)
        # Train on standardised targets; the inverse is folded into the last layer afterwards.
        y_mean, y_std = float(y_train.mean()), float(y_train.std()) or 1.0
        y_train = ((y_train - y_mean) / y_std).astype(dtype)
    if args.validation_split and round(X_train.shape[0] * args.validation_split) < 1:
        raise JacnetValueError(f"train --validation-split expects to hold out at least one of the "
                               f"{X_train.shape[0]} training rows, got {args.validation_split}")
    try:
        if cnn:
            model = jacnet.build_cnn(INPUT_SHAPES[args.data], args.channels, n_out,
                                     kernel_size=args.kernel_size, dropout=args.dropout,
                                     output=output, rng=args.seed, dtype=dtype)
        else:
            model = jacnet.build_mlp(X_train.shape[1], args.hidden, n_out, activation=args.activation,
                                     output=output, rng=args.seed, dtype=dtype)
    except JacnetError as exc:
        raise _as_flags(exc) from None
    model.to(backend, device)  # initialised in NumPy: the same weights on every backend
    callbacks = [EarlyStopping(patience=args.patience)] if args.patience > 0 else []
    verbose = 0 if args.quiet else 1
    out_dir = args.out if args.out is not None else Path("runs") / (
        args.data if args.data in DATASETS else Path(args.data).stem)
    try:  # refuse an unusable --out before spending time on training
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JacnetValueError(f"train --out expects a writable directory, got {str(out_dir)!r} "
                               f"({exc.strerror or exc})") from None
    if not args.quiet:
        where = "" if backend == "numpy" else f", on {backend} ({device})"
        print(f"jacnet train: {label} ({X_train.shape[0]} train, {X_test.shape[0]} test, "
              f"{X_train.shape[1]} features), {loss_class}, {_optimizer_text(optimizer)}{where}")
        if data.note:
            print(f"task: {data.note}")
        print(model.summary(), flush=True)
    started = time.perf_counter()

    def diverged(detail: str) -> JacnetValueError:
        return JacnetValueError(f"training diverged, try a smaller learning rate than --lr {lr:g} (or "
                                f"standardised inputs): {detail}")

    try:
        # Overflow is reported as divergence below, not as NumPy RuntimeWarnings on the way.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            history = jacnet.fit(model, X_train, y_train, loss=loss, optimizer=optimizer,
                                 epochs=args.epochs, batch_size=args.batch_size,
                                 validation_split=args.validation_split, seed=args.seed,
                                 callbacks=callbacks, verbose=verbose)
            seconds = time.perf_counter() - started
            model.to("numpy")  # the folding below is NumPy arithmetic; the file is the same
            losses = history["loss"]
            if len(losses) > 1 and losses[-1] > DIVERGED * max(losses[0], 1e-12):
                raise diverged(f"the training loss grew from {losses[0]:.4g} in epoch 1 to "
                               f"{losses[-1]:.4g} in epoch {len(losses)}")
            if not classification:
                unscale_outputs(model, y_mean, y_std)  # predictions in the target's own units
            scores = jacnet.evaluate(model, X_test, y_test)
            # The saved model takes raw features.
            if cnn:
                fold_scalar_standardization(model, scalar_mean, scalar_std)
            else:
                fold_standardization(model, mean, std)
        if not all(np.isfinite(p).all() for p in model.params.values()):
            raise NonFiniteError("the weights overflowed when the standardisation was folded in")
    except NonFiniteError as exc:
        raise diverged(str(exc).split(". Try a smaller")[0]) from None
    except JacnetError as exc:
        raise _as_flags(exc) from None
    best = callbacks[0].best_epoch + 1 if callbacks and callbacks[0].best_epoch >= 0 else None
    metrics: dict[str, Any] = {
        "data": args.data, "task": data.task, "target": data.metadata.get("target"),
        "test_loss": scores["loss"], "epochs": len(history), "epochs_requested": args.epochs,
        "best_epoch": best, "train_seconds": round(seconds, 3), "model": args.model,
        "preset": preset, "hidden": None if cnn else list(args.hidden),
        "channels": list(args.channels) if cnn else None,
        "kernel_size": args.kernel_size if cnn else None, "dropout": args.dropout if cnn else None,
        "activation": args.activation, "loss": loss_name,
        "optimizer": {"type": _optimizer_text(optimizer).split("(")[0], **optimizer.hyperparameters()},
        "lr": lr, "weight_decay": args.weight_decay,
        "momentum": args.momentum if args.optimizer == "sgd" else None,
        "batch_size": args.batch_size, "validation_split": args.validation_split,
        "patience": args.patience, "seed": args.seed, "dtype": args.dtype,
        "backend": backend, "device": device,
        "split": data.metadata.get("split"), "data_sha256": data.metadata["data"]["sha256"],
        "n_train": int(X_train.shape[0]), "n_test": int(X_test.shape[0]),
        "n_features": int(X_train.shape[1]), "epochs_counted_from": 1}
    if classification:
        metrics["test_accuracy"] = scores["accuracy"]
    else:
        metrics["test_r2"] = scores["r2"]
        metrics["test_mse"] = scores["mse"]
    save(model, out_dir / MODEL_FILE, optimizer, metadata=data.metadata)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    record = history.to_dict()
    record["epochs"] = [e + 1 for e in record["epochs"]]  # 1-based, as printed and plotted
    (out_dir / "history.json").write_text(json.dumps(record, indent=2) + "\n")
    written = [MODEL_FILE, "metrics.json", "history.json"]
    try:
        from jacnet.plots import plot_history

        plot_history(history, out_dir / "curves.png")
        written.append("curves.png")
    except ImportError as exc:
        print(f"jacnet train: no curves plot ({exc})", file=sys.stderr)
    headline = (f"test accuracy {scores['accuracy']:.4f}" if classification
                else f"test R² {scores['r2']:.4f}")
    print(f"{headline}  test loss {scores['loss']:.4f}  ({len(history)} epochs in {seconds:.1f}s)")
    if not args.quiet:
        print(f"wrote {', '.join(written)} to {out_dir}/")
    return 0


def _evaluation_seed(args: argparse.Namespace, metadata: dict[str, Any], name: str) -> int:
    """The split seed to score with: the model's own, and never another one on its data."""
    split = metadata.get("split")
    source = (metadata.get("data") or {}).get("source")
    if split is None or source is None or Path(source).name != Path(name).name:
        return 0 if args.seed is None else int(args.seed)
    if args.seed is not None and args.seed != split["seed"]:
        raise JacnetValueError(
            f"evaluate --seed expects the split seed the model was trained with ({split['seed']}, "
            f"stored in {args.model}), got {args.seed}: that split's test rows include rows the "
            f"model trained on; omit --seed to score on the model's own test split")
    if args.seed is None:
        print(f"jacnet evaluate: the split seed {split['seed']} stored in the model", file=sys.stderr)
    return int(split["seed"])


def run_evaluate(args: argparse.Namespace) -> int:
    import jacnet
    from jacnet.datasets import DATASETS
    from jacnet.io import load_checkpoint

    checkpoint = load_checkpoint(args.model)
    model, metadata = checkpoint.model, checkpoint.metadata
    split_seed = _evaluation_seed(args, metadata, args.data)
    if args.data in DATASETS:
        data = _bundled(args.data, split_seed, model.dtype)
    else:
        if not metadata.get("target"):
            raise JacnetValueError(f"evaluate --data expects a model trained on a file (its target "
                                   f"and split are stored in it), got {args.model} with none")
        split = metadata.get("split") or {}
        options = argparse.Namespace(
            target=metadata["target"], task=metadata.get("task"), one_hot=bool(metadata.get("categories")),
            impute=(metadata.get("impute") or {}).get("strategy"), seed=split_seed,
            test_size=split.get("test_size", 0.2), dtype=model.dtype.name)
        data = _from_file(args.data, options, flag="evaluate")
        if data.metadata["feature_names"] != metadata.get("feature_names"):
            raise JacnetValueError("evaluate --data expects the columns the model was trained on, got "
                                   f"{data.metadata['feature_names'][:10]}")
        stored = (metadata.get("data") or {}).get("sha256")
        if stored and stored != data.metadata["data"]["sha256"]:
            print(f"jacnet evaluate: {args.data} differs from the data the model was trained on "
                  "(another SHA-256): its test split may hold rows the model trained on",
                  file=sys.stderr)
    y = data.y_test if data.task == "classification" else data.y_test.reshape(-1, 1)
    scores = jacnet.evaluate(model, data.X_test, y)
    if args.json:
        print(json.dumps(scores))
    else:
        print("  ".join(f"{key} {value:.4f}" for key, value in scores.items()))
    return 0


def _label_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)


def _check_range(X: np.ndarray, dtype: np.dtype[Any], done: int, names: list[str]) -> None:
    """Refuse, by row and column, a value the model's dtype cannot hold (1e308 in float32)."""
    limit = np.finfo(dtype).max
    too_large = np.abs(X) > limit
    if too_large.any():
        row, column = np.argwhere(too_large)[0]
        raise JacnetValueError(f"predict INPUT expects values that fit in the model's {dtype} "
                               f"(|x| <= {limit:.3g}), got {X[row, column]:.3g} at data row "
                               f"{done + row + 1}, feature {names[column]!r}")


def run_predict(args: argparse.Namespace) -> int:
    from jacnet.io import load_checkpoint
    from jacnet.metrics import is_classification, predicted_labels
    from jacnet.tabular import Encoder, iter_csv_chunks

    checkpoint = load_checkpoint(args.model)
    model, metadata = checkpoint.model, checkpoint.metadata
    if not args.input.is_file():
        raise JacnetValueError(f"predict INPUT expects a CSV file, got {str(args.input)!r}, which does "
                               "not exist")
    n_in = model.in_features or 0
    encoder = Encoder.from_metadata(metadata, n_in)
    classification = is_classification(model.loss)
    n_out = model.out_features or 1
    labels = list(metadata.get("class_labels") or range(2 if n_out == 1 else n_out))
    target = str(metadata.get("target") or "prediction")
    if classification:
        out_header = [target] + ([f"P({target}={_label_text(c)})" for c in labels] if args.proba else [])
    else:
        out_header = [target] if n_out == 1 else [f"{target}[{k}]" for k in range(n_out)]
    chunks = iter_csv_chunks(args.input, encoder, header=args.header,
                             stored_names="feature_names" in metadata, target=metadata.get("target"),
                             chunk_rows=args.chunk_rows)
    temporary = None
    try:
        if args.output is not None:
            temporary = args.output.with_name(f".{args.output.name}.partial")
            target_file = temporary.open("w", encoding="utf-8", newline="")
        else:
            target_file = sys.stdout
    except OSError as exc:
        raise JacnetValueError(f"predict --output expects a writable file, got {str(args.output)!r} "
                               f"({exc.strerror or exc})") from None
    try:
        writer = csv.writer(target_file, lineterminator="\n")
        done = 0  # data rows written so far
        for names, X in chunks:
            if names is not None:
                writer.writerow(out_header)
            _check_range(X, model.dtype, done, encoder.feature_names)
            done += X.shape[0]
            if classification:
                outputs = model.predict(X, batch_size=4096)
                chosen = predicted_labels(outputs, model.loss)
                rows: list[list[str]] = [[_label_text(labels[k])] for k in chosen.tolist()]
                if args.proba:
                    proba = model.predict_proba(X, batch_size=4096)
                    for row, p in zip(rows, proba.tolist(), strict=True):
                        row.extend(f"{v:.6g}" for v in p)
            else:
                rows = [[f"{v:.6g}" for v in r] for r in model.predict(X, batch_size=4096).tolist()]
            writer.writerows(rows)
        if temporary is not None:
            target_file.close()
            os.replace(temporary, args.output)
            temporary = None
    except UnicodeDecodeError:
        raise JacnetValueError(f"predict INPUT expects a UTF-8 CSV text file, got bytes that are not "
                               f"UTF-8 in {args.input} (binary data, or another encoding such as "
                               "Latin-1?)") from None
    except IsADirectoryError:
        raise JacnetValueError(f"predict --output expects a writable file, got {str(args.output)!r} "
                               "(a directory)") from None
    finally:
        if temporary is not None:
            target_file.close()
            with contextlib.suppress(OSError):
                temporary.unlink()
    return 0
