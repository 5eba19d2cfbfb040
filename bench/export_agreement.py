"""How far PyTorch and ONNX Runtime are from jacnet on the networks that ``jacnet.export`` writes.

For each activation and dtype: 20 random 20-64-32-10 networks (the activation after every affine
layer, Glorot weights, normal biases), a batch of 256 normal inputs times 2; the largest
relative difference of ``to_torch(model)`` and of ``to_onnx(model)`` in ONNX Runtime from
``model.predict`` over every output, over outputs at least 1% of their row's largest, and
relative to the row's largest. Run: ``python -m bench.export_agreement`` (about 10 s).
"""

from __future__ import annotations

import itertools

import numpy as np

import jacnet
from jacnet.export import to_onnx, to_torch

ACTIVATIONS = {"ReLU": jacnet.ReLU, "LeakyReLU": lambda: jacnet.LeakyReLU(0.2), "Sigmoid": jacnet.Sigmoid,
               "Tanh": jacnet.Tanh, "Softmax": jacnet.Softmax}


def network(widths: list[int], activation: str, dtype: type, rng: np.random.Generator) -> jacnet.Sequential:
    layers: list[jacnet.Layer] = []
    for n_in, n_out in itertools.pairwise(widths):
        layer = jacnet.Affine(n_in, n_out, init="glorot", rng=rng, dtype=dtype)
        layer.params["b"][:] = rng.standard_normal(n_out).astype(dtype)
        layers += [layer, ACTIVATIONS[activation]()]
    return jacnet.Sequential(layers)


def errors(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Relative difference: over all outputs, over those >= 1% of their row's largest, vs that largest."""
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    diff = np.abs(a - e)
    row = np.maximum(np.max(np.abs(e), axis=1, keepdims=True), 1e-300)  # ReLU may zero a whole row
    entry = diff / np.maximum(np.abs(e), 1e-300)
    return np.array([entry.max(), entry[np.abs(e) >= 1e-2 * row].max(), (diff / row).max()])


def main() -> None:
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    print("dtype    activation  | torch: all  >=1% row  vs row max | onnxruntime: all  >=1% row  vs row max")
    for dtype in (np.float32, np.float64):
        for activation in ACTIVATIONS:
            worst = np.zeros(6)
            for _ in range(20):
                model = network([20, 64, 32, 10], activation, dtype, rng)
                X = (rng.standard_normal((256, 20)) * 2).astype(dtype)
                expected = model.predict(X)
                with torch.no_grad():
                    by_torch = to_torch(model)(torch.from_numpy(X)).numpy()
                session = ort.InferenceSession(to_onnx(model).SerializeToString(),
                                               providers=["CPUExecutionProvider"])
                by_onnx = session.run(None, {"X": X})[0]
                worst = np.maximum(worst, np.concatenate([errors(by_torch, expected),
                                                          errors(by_onnx, expected)]))
            cells = "  ".join(f"{w:.1e}" for w in worst)
            print(f"{np.dtype(dtype).name:8s} {activation:11s} | {cells}")


if __name__ == "__main__":
    main()
