"""``jacnet train``, ``jacnet evaluate`` and ``jacnet predict``."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from jacnet.cli._args import count, positive_real, seed
from jacnet.errors import JacnetValueError

#: ``--loss`` names: the loss and the output layer it needs (None: the network outputs logits).
LOSSES = {
    "softmax_ce": ("SoftmaxCrossEntropy", None),
    "cce": ("CategoricalCrossEntropy", "softmax"),
    "sigmoid_bce": ("SigmoidBinaryCrossEntropy", None),
    "bce": ("BinaryCrossEntropy", "sigmoid"),
    "mse": ("MeanSquaredError", None),
}

MODEL_FILE = "model.jacnet"


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip() != "")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expects comma-separated integers like 128,64, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"expects sizes >= 1, got {text!r}")
    return sizes


def add_parsers(sub: Any) -> None:
    from jacnet.datasets import DATASETS
    from jacnet.model import ACTIVATIONS

    train = sub.add_parser("train", help="train an MLP on a bundled dataset",
                           description="Train an MLP on a bundled dataset and report its test score.")
    train.add_argument("--data", default="digits", choices=list(DATASETS), help="dataset (default: digits)")
    train.add_argument("--hidden", type=_hidden, default=(256, 128), metavar="SIZES",
                       help="hidden layer widths, comma-separated (default: 256,128)")
    train.add_argument("--activation", default="relu", choices=list(ACTIVATIONS))
    train.add_argument("--loss", choices=list(LOSSES), default=None,
                       help="default: softmax_ce (multiclass), sigmoid_bce (binary), mse (regression)")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    train.add_argument("--lr", type=positive_real, default=None,
                       help="learning rate (default: 1e-3 for adam, 0.05 for sgd)")
    train.add_argument("--momentum", type=float, default=0.9, help="sgd momentum (default: 0.9)")
    train.add_argument("--weight-decay", type=float, default=0.1,
                       help="decoupled weight decay for adam, L2 for sgd (default: 0.1)")
    train.add_argument("--epochs", type=count, default=40)
    train.add_argument("--batch-size", type=count, default=32)
    train.add_argument("--patience", type=int, default=0,
                       help="stop after this many epochs without validation improvement (0: off)")
    train.add_argument("--validation-split", type=float, default=0.1)
    train.add_argument("--seed", type=seed, default=0)
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="output directory (default: runs/<data>)")
    train.add_argument("--quiet", action="store_true", help="print only the result")
    train.set_defaults(run=run_train)

    evaluate = sub.add_parser("evaluate", help="score a saved model on a dataset's test split")
    evaluate.add_argument("model", type=Path, help="a model file written by jacnet train")
    evaluate.add_argument("--data", required=True, choices=list(DATASETS))
    evaluate.add_argument("--seed", type=int, default=0, help="the split seed used in training")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(run=run_evaluate)

    predict = sub.add_parser("predict", help="predict the rows of a CSV file")
    predict.add_argument("model", type=Path, help="a model file written by jacnet train")
    predict.add_argument("input", type=Path, help="CSV of raw features, one sample per row")
    predict.add_argument("--output", type=Path, default=None, help="write CSV here (default: stdout)")
    predict.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    predict.set_defaults(run=run_predict)


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


def _load_raw(name: str, seed: int, dtype: Any) -> Any:
    from jacnet.datasets import load

    return load(name, seed=seed, standardize=False, dtype=dtype)


def run_train(args: argparse.Namespace) -> int:
    import jacnet
    from jacnet.callbacks import EarlyStopping
    from jacnet.datasets import standardize
    from jacnet.io import save

    dtype = np.dtype(args.dtype)
    data = _load_raw(args.data, args.seed, dtype)
    X_train, X_test, mean, std = standardize(data.X_train, data.X_test)
    X_train, X_test = X_train.astype(dtype), X_test.astype(dtype)
    classification = data.task == "classification"
    n_classes = data.n_classes
    loss_name = args.loss or ("mse" if not classification else "sigmoid_bce" if n_classes == 2
                              else "softmax_ce")
    if classification == (loss_name == "mse"):
        task = "classification" if classification else "regression"
        raise JacnetValueError(f"train --loss expects a {task} loss for {args.data}, got {loss_name}")
    loss_class, output = LOSSES[loss_name]
    loss = getattr(jacnet, loss_class)()
    binary = loss_name in ("sigmoid_bce", "bce")
    if binary and n_classes != 2:
        raise JacnetValueError(f"train --loss {loss_name} expects a two-class dataset, "
                               f"got {args.data} with {n_classes} classes")
    n_out = 1 if binary or not classification else n_classes
    y_train = data.y_train
    y_test = data.y_test
    if not classification:
        y_train, y_test = y_train.reshape(-1, 1), y_test.reshape(-1, 1)
        # Train on standardised targets; the inverse is folded into the last layer afterwards.
        y_mean, y_std = float(y_train.mean()), float(y_train.std()) or 1.0
        y_train = ((y_train - y_mean) / y_std).astype(dtype)
    model = jacnet.build_mlp(data.n_features, args.hidden, n_out, activation=args.activation,
                             output=output, rng=args.seed, dtype=dtype)
    lr = args.lr if args.lr is not None else (1e-3 if args.optimizer == "adam" else 0.05)
    optimizer = (jacnet.Adam(lr, weight_decay=args.weight_decay) if args.optimizer == "adam"
                 else jacnet.SGD(lr, momentum=args.momentum, weight_decay=args.weight_decay))
    callbacks = [EarlyStopping(patience=args.patience)] if args.patience > 0 else []
    verbose = 0 if args.quiet else 1
    out_dir = args.out if args.out is not None else Path("runs") / args.data
    try:  # refuse an unusable --out before spending time on training
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JacnetValueError(f"train --out expects a writable directory, got {str(out_dir)!r} "
                               f"({exc.strerror or exc})") from None
    if not args.quiet:
        print(f"jacnet train: {args.data} ({data.X_train.shape[0]} train, {data.X_test.shape[0]} test, "
              f"{data.n_features} features), {loss_class}, {type(optimizer).__name__}(lr={lr:g})")
        print(model.summary(), flush=True)
    started = time.perf_counter()
    history = jacnet.fit(model, X_train, y_train, loss=loss, optimizer=optimizer, epochs=args.epochs,
                         batch_size=args.batch_size, validation_split=args.validation_split or 0.0,
                         seed=args.seed, callbacks=callbacks, verbose=verbose)
    seconds = time.perf_counter() - started
    if not classification:
        unscale_outputs(model, y_mean, y_std)  # predictions in the target's own units
    scores = jacnet.evaluate(model, X_test, y_test)
    fold_standardization(model, mean, std)  # the saved model takes raw features
    metrics: dict[str, Any] = {"data": args.data, "task": data.task,
                               "test_loss": scores["loss"], "epochs": len(history),
                               "train_seconds": round(seconds, 3), "hidden": list(args.hidden),
                               "activation": args.activation, "loss": loss_name,
                               "optimizer": args.optimizer, "lr": lr, "batch_size": args.batch_size,
                               "seed": args.seed, "dtype": args.dtype}
    if classification:
        metrics["test_accuracy"] = scores["accuracy"]
    else:
        metrics["test_r2"] = scores["r2"]
        metrics["test_mse"] = scores["mse"]
    save(model, out_dir / MODEL_FILE, optimizer)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "history.json").write_text(json.dumps(history.to_dict(), indent=2) + "\n")
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


def run_evaluate(args: argparse.Namespace) -> int:
    import jacnet
    from jacnet.io import load

    model = load(args.model)
    data = _load_raw(args.data, args.seed, model.dtype)
    y = data.y_test if data.task == "classification" else data.y_test.reshape(-1, 1)
    scores = jacnet.evaluate(model, data.X_test, y)
    if args.json:
        print(json.dumps(scores))
    else:
        print("  ".join(f"{key} {value:.4f}" for key, value in scores.items()))
    return 0


def _read_csv(path: Path) -> np.ndarray:
    if not path.is_file():
        raise JacnetValueError(f"predict INPUT expects a CSV file, got {str(path)!r}, which does not exist")
    try:
        with path.open(encoding="utf-8") as handle:
            first = handle.readline()
            handle.read()  # decode it all here, so binary input is named as INPUT
    except UnicodeDecodeError:
        raise JacnetValueError(f"predict INPUT expects a UTF-8 CSV text file, got binary data in {path}"
                               ) from None
    try:
        [float(cell) for cell in first.split(",")]
        skip = 0
    except ValueError:
        skip = 1  # a header row
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loadtxt warns on an empty file; we say so below
            X = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise JacnetValueError(f"predict INPUT expects a CSV of numbers, got {path}: {exc}") from None
    if X.shape[0] == 0:
        raise JacnetValueError(f"predict INPUT expects at least one row of numbers, got none in {path}")
    return X


def run_predict(args: argparse.Namespace) -> int:
    from jacnet.io import load
    from jacnet.metrics import is_classification, predicted_labels

    model = load(args.model)
    X = _read_csv(args.input)
    if is_classification(model.loss):
        if args.proba:
            values = model.predict_proba(X)
            fmt = "%.6g"
        else:
            values = predicted_labels(model.predict(X), model.loss).reshape(-1, 1)
            fmt = "%d"
    else:
        values = model.predict(X)
        fmt = "%.6g"
    try:
        target = args.output.open("w") if args.output is not None else sys.stdout
    except OSError as exc:
        raise JacnetValueError(f"predict --output expects a writable file, got {str(args.output)!r} "
                               f"({exc.strerror or exc})") from None
    try:
        np.savetxt(target, values, fmt=fmt, delimiter=",")
    finally:
        if args.output is not None:
            target.close()
    return 0
