"""A plain hand-written NumPy loop of jacnet's closed forms: the honest floor of a NumPy design.

Written the way a competent user writes it: fresh arrays every step, no preallocated buffers,
no jacnet. The formulas, initial weights (:func:`bench._common.he_init`), data order (one
``default_rng(seed).permutation`` per epoch, as the jacnet step loop draws it), float32 and the
skipped first-layer ``dX`` are jacnet's, so the two train to the same weights.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench._common import Config, he_init, make_data

Params = list[tuple[NDArray[Any], NDArray[Any]]]


def sgd_epoch(params: Params, X: NDArray[Any], y: NDArray[Any], order: NDArray[Any], batch: int,
              lr: float) -> float:
    """One epoch of SGD over the rows ``order``, in batches of ``batch``; ``params`` move in place.

    Per affine layer ``Z = X W + b`` with ReLU between them; softmax cross-entropy on the last
    ``Z`` (its value, and its gradient ``(softmax(Z) - Y) / N``); ``dW = Xᵀ dZ``,
    ``db = sum(dZ, 0)``, ``dX = dZ Wᵀ`` (not for the first layer), ``p -= lr g``. Returns the
    epoch's mean loss (each batch's value computed as jacnet's ``loss.forward`` computes it).
    """
    last, total = len(params) - 1, 0.0
    for s in range(0, order.shape[0], batch):
        rows = order[s:s + batch]
        Xb, yb = X[rows], y[rows]
        m = Xb.shape[0]
        inputs, Z = [Xb], Xb
        for i, (W, b) in enumerate(params):
            Z = inputs[-1] @ W + b
            if i < last:
                inputs.append(np.maximum(Z, 0))
        S = Z - Z.max(axis=1, keepdims=True)
        E = np.exp(S)
        sums = E.sum(axis=1, keepdims=True)
        picked = np.arange(m), yb
        total += float(np.sum(np.log(sums[:, 0]) - S[picked]))
        dZ = E / sums
        dZ[picked] -= 1
        dZ /= m
        for i in range(last, -1, -1):
            W, b = params[i]
            dW = inputs[i].T @ dZ
            db = dZ.sum(axis=0)
            if i:
                dZ = (dZ @ W.T) * (inputs[i] > 0)  # through the ReLU: its output is this layer's input
            W -= lr * dW
            b -= lr * db
    return total / order.shape[0]


def predict(params: Params, X: NDArray[Any]) -> NDArray[Any]:
    """The logits ``(N, classes)``."""
    A = X
    for i, (W, b) in enumerate(params):
        A = A @ W + b
        if i < len(params) - 1:
            A = np.maximum(A, 0)
    return A


def train(cfg: Config, batch: int, dtype: Any) -> dict[str, Any]:
    X, y = make_data(cfg, dtype)
    params = he_init(cfg, dtype)
    rng = np.random.default_rng(cfg.seed)
    seconds = []
    for epoch in range(cfg.warmup + cfg.epochs):
        start = time.perf_counter()
        sgd_epoch(params, X, y, rng.permutation(X.shape[0]), batch, cfg.lr)
        if epoch >= cfg.warmup:
            seconds.append(time.perf_counter() - start)
    rows = min(X.shape[0], 10_000)
    accuracy = float(np.mean(np.argmax(predict(params, X[:rows]), axis=1) == y[:rows]))
    return {"seconds": seconds, "accuracy": accuracy}
