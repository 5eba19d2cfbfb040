"""How far PyTorch and ONNX Runtime are from jacnet on the networks that ``jacnet.export`` writes.

For each activation and dtype: 20 random 20-64-32-10 networks (the activation after every affine
layer, Glorot weights, normal biases), a batch of 256 normal inputs times 2; the largest
relative difference of ``to_torch(model)`` and of ``to_onnx(model)`` in ONNX Runtime from
``model.predict`` over every output, over outputs at least 1% of their row's largest, and
relative to the row's largest. Then the same for two convolutional networks, each trained 2
epochs with ``jacnet.fit`` (so BatchNorm's running statistics are not the initial ones), 5 seeds
each: ``conv1d`` (N, 2, 32): Conv1D, BatchNorm, ReLU, MaxPool1D, AvgPool1D, LayerNorm, Flatten,
Dropout, Affine; ``conv2d`` (N, 1, 12, 12): Conv2D, BatchNorm, Tanh, MaxPool2D, AvgPool2D, Conv2D,
LeakyReLU, GlobalAvgPool, LayerNorm, Affine. Run: ``python -m bench.export_agreement`` (about 20 s).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

import jacnet
from jacnet.conv import Conv1D, Conv2D
from jacnet.dropout import Dropout
from jacnet.export import to_onnx, to_torch
from jacnet.normalization import BatchNorm, LayerNorm
from jacnet.pooling import AvgPool1D, AvgPool2D, Flatten, GlobalAvgPool, MaxPool1D, MaxPool2D

ACTIVATIONS = {"ReLU": jacnet.ReLU, "LeakyReLU": lambda: jacnet.LeakyReLU(0.2), "Sigmoid": jacnet.Sigmoid,
               "Tanh": jacnet.Tanh, "Softmax": jacnet.Softmax}


def network(widths: list[int], activation: str, dtype: type, rng: np.random.Generator) -> jacnet.Sequential:
    layers: list[jacnet.Layer] = []
    for n_in, n_out in itertools.pairwise(widths):
        layer = jacnet.Affine(n_in, n_out, init="glorot", rng=rng, dtype=dtype)
        layer.params["b"][:] = rng.standard_normal(n_out).astype(dtype)
        layers += [layer, ACTIVATIONS[activation]()]
    return jacnet.Sequential(layers)


def conv1d(dtype: type, rng: np.random.Generator) -> jacnet.Sequential:
    return jacnet.Sequential([
        Conv1D(2, 8, 5, padding=2, rng=rng, dtype=dtype), BatchNorm(8, dtype=dtype), jacnet.ReLU(),
        MaxPool1D(2), AvgPool1D(3, stride=1, padding=1), LayerNorm((8, 16), dtype=dtype), Flatten(),
        Dropout(0.2, rng=rng), jacnet.Affine(128, 10, rng=rng, dtype=dtype)])


def conv2d(dtype: type, rng: np.random.Generator) -> jacnet.Sequential:
    return jacnet.Sequential([
        Conv2D(1, 6, 3, padding=1, rng=rng, dtype=dtype), BatchNorm(6, dtype=dtype), jacnet.Tanh(),
        MaxPool2D(2), AvgPool2D(2, stride=1, padding=1), Conv2D(6, 8, 3, stride=2, rng=rng, dtype=dtype),
        jacnet.LeakyReLU(0.2), GlobalAvgPool(), LayerNorm(8, dtype=dtype),
        jacnet.Affine(8, 10, rng=rng, dtype=dtype)])


CNNS: dict[str, tuple[Callable[[type, np.random.Generator], jacnet.Sequential], tuple[int, ...]]] = {
    "conv1d": (conv1d, (2, 32)), "conv2d": (conv2d, (1, 12, 12))}


def errors(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Relative difference: over all outputs, over those >= 1% of their row's largest, vs that largest."""
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    diff = np.abs(a - e)
    row = np.maximum(np.max(np.abs(e), axis=1, keepdims=True), 1e-300)  # ReLU may zero a whole row
    entry = diff / np.maximum(np.abs(e), 1e-300)
    return np.array([entry.max(), entry[np.abs(e) >= 1e-2 * row].max(), (diff / row).max()])


def compare(model: jacnet.Sequential, X: np.ndarray) -> np.ndarray:
    """The 6 errors: torch's then ONNX Runtime's (all, >= 1% row, vs row max)."""
    import onnxruntime as ort
    import torch

    expected = model.predict(X)
    with torch.no_grad():
        by_torch = to_torch(model)(torch.from_numpy(X)).numpy()
    session = ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    by_onnx = session.run(None, {"X": X})[0]
    return np.concatenate([errors(by_torch, expected), errors(by_onnx, expected)])


def main() -> None:

    rng = np.random.default_rng(0)
    print("dtype    activation  | torch: all  >=1% row  vs row max | onnxruntime: all  >=1% row  vs row max")
    for dtype in (np.float32, np.float64):
        for activation in ACTIVATIONS:
            worst = np.zeros(6)
            for _ in range(20):
                model = network([20, 64, 32, 10], activation, dtype, rng)
                X = (rng.standard_normal((256, 20)) * 2).astype(dtype)
                worst = np.maximum(worst, compare(model, X))
            cells = "  ".join(f"{w:.1e}" for w in worst)
            print(f"{np.dtype(dtype).name:8s} {activation:11s} | {cells}")
    for dtype in (np.float32, np.float64):
        for name, (build, shape) in CNNS.items():
            worst = np.zeros(6)
            for _ in range(5):
                model = build(dtype, rng)
                X = (rng.standard_normal((256, *shape)) * 2 + 0.5).astype(dtype)
                y = rng.integers(0, 10, 256)
                jacnet.fit(model, X, y, loss=jacnet.SoftmaxCrossEntropy(), epochs=2, batch_size=32,
                           seed=rng, verbose=0)
                X = (rng.standard_normal((256, *shape)) * 2 + 0.5).astype(dtype)
                worst = np.maximum(worst, compare(model, X))
            cells = "  ".join(f"{w:.1e}" for w in worst)
            print(f"{np.dtype(dtype).name:8s} {name:11s} | {cells}")


if __name__ == "__main__":
    main()
