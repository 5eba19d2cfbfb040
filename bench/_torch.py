"""PyTorch's side, on the CPU or a CUDA GPU (``Config.device``).

- **Eager**: the same MLP, loss and optimizer in a plain loop. No DataLoader: the data is made
  once as tensors on the device, and each step indexes a shuffled permutation (one gather per
  step, as jacnet does). The input needs no gradient, so autograd skips the first layer's
  ``dX`` as jacnet does.
- **Closed forms**: jacnet's formulas (those of :mod:`bench._numpy`) written on plain tensors
  with autograd off, from jacnet's initial weights in jacnet's data order: a reference for a
  torch backend of jacnet.

On CUDA the data moves to the GPU before the clock starts, and ``torch.cuda.synchronize()``
runs before each timing starts and before it stops (kernels run asynchronously).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from bench._common import Config, he_init, make_data, repeat_timing

Params = list[tuple[torch.Tensor, torch.Tensor]]


def _dtype(dtype: Any) -> torch.dtype:
    return torch.float32 if np.dtype(dtype) == np.float32 else torch.float64


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_epochs(cfg: Config, device: torch.device, epoch: Callable[[], object]) -> list[float]:
    """Run ``warmup + epochs`` epochs; the seconds of the timed ones, device work included."""
    seconds = []
    for e in range(cfg.warmup + cfg.epochs):
        _sync(device)
        start = time.perf_counter()
        epoch()
        _sync(device)
        if e >= cfg.warmup:
            seconds.append(time.perf_counter() - start)
    return seconds


def _data(cfg: Config, dtype: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    Xn, yn = make_data(cfg, dtype)
    return torch.from_numpy(Xn).to(device), torch.from_numpy(yn).to(device)


def _accuracy(logits: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, y: torch.Tensor) -> float:
    head = min(X.shape[0], 10_000)
    with torch.inference_mode():
        return float((logits(X[:head]).argmax(dim=1) == y[:head]).float().mean())


# Eager (autograd) ---------------------------------------------------------------------------


def _model(cfg: Config, dtype: torch.dtype) -> nn.Sequential:
    torch.manual_seed(cfg.seed)
    layers: list[nn.Module] = []
    widths = cfg.widths
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b, dtype=dtype))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def train(cfg: Config, batch: int, dtype: Any) -> dict[str, Any]:
    device = torch.device(cfg.device)
    X, y = _data(cfg, dtype, device)
    model = _model(cfg, _dtype(dtype)).to(device)
    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = X.shape[0]

    def epoch() -> None:
        order = torch.randperm(n, generator=gen).to(device)
        for s in range(0, n, batch):
            rows = order[s:s + batch]
            xb, yb = X[rows], y[rows]
            opt.zero_grad(set_to_none=True)
            loss = criterion(model(xb), yb)
            loss.backward()
            opt.step()

    seconds = _timed_epochs(cfg, device, epoch)
    return {"seconds": seconds, "accuracy": _accuracy(model, X, y)}


# Closed forms, no autograd ------------------------------------------------------------------


def sgd_epoch(params: Params, X: torch.Tensor, y: torch.Tensor, order: torch.Tensor, batch: int,
              lr: float) -> torch.Tensor:
    """:func:`bench._numpy.sgd_epoch` on tensors; returns the epoch's mean loss as a 0-d tensor
    (read it and a GPU would wait at every step)."""
    last = len(params) - 1
    total = torch.zeros((), dtype=X.dtype, device=X.device)
    with torch.no_grad():
        for s in range(0, order.shape[0], batch):
            rows = order[s:s + batch]
            Xb, yb = X[rows], y[rows]
            m = Xb.shape[0]
            inputs, Z = [Xb], Xb
            for i, (W, b) in enumerate(params):
                Z = inputs[-1] @ W + b
                if i < last:
                    inputs.append(torch.relu(Z))
            S = Z - Z.amax(dim=1, keepdim=True)
            E = torch.exp(S)
            sums = E.sum(dim=1, keepdim=True)
            picked = torch.arange(m, device=X.device), yb
            total += torch.sum(torch.log(sums[:, 0]) - S[picked])
            dZ = E / sums
            dZ[picked] -= 1
            dZ /= m
            for i in range(last, -1, -1):
                W, b = params[i]
                dW = inputs[i].T @ dZ
                db = dZ.sum(dim=0)
                if i:
                    dZ = (dZ @ W.T) * (inputs[i] > 0)
                W -= lr * dW
                b -= lr * db
    return total / order.shape[0]


def predict(params: Params, X: torch.Tensor) -> torch.Tensor:
    """The logits ``(N, classes)``."""
    A = X
    for i, (W, b) in enumerate(params):
        A = A @ W + b
        if i < len(params) - 1:
            A = torch.relu(A)
    return A


def as_tensors(params: list[tuple[NDArray[Any], NDArray[Any]]], device: torch.device) -> Params:
    """NumPy ``(W, b)`` pairs as tensors on ``device`` (copies: the arrays stay as they are)."""
    return [(torch.tensor(W, device=device), torch.tensor(b, device=device)) for W, b in params]


def train_closed(cfg: Config, batch: int, dtype: Any) -> dict[str, Any]:
    device = torch.device(cfg.device)
    X, y = _data(cfg, dtype, device)
    params = as_tensors(he_init(cfg, dtype), device)
    rng = np.random.default_rng(cfg.seed)  # jacnet's data order, drawn as its step loop draws it

    def epoch() -> None:
        order = torch.from_numpy(rng.permutation(X.shape[0])).to(device)
        sgd_epoch(params, X, y, order, batch, cfg.lr)

    seconds = _timed_epochs(cfg, device, epoch)
    return {"seconds": seconds, "accuracy": _accuracy(lambda A: predict(params, A), X, y)}


# Inference and environment ------------------------------------------------------------------


def infer(cfg: Config) -> dict[str, Any]:
    device = torch.device(cfg.device)
    Xn, _ = make_data(dataclasses.replace(cfg, n_samples=cfg.infer_batch))
    X = torch.from_numpy(Xn).to(device)
    model = _model(cfg, torch.float32).to(device).eval()

    def run() -> None:
        with torch.inference_mode():
            model(X)
        _sync(device)

    _sync(device)  # the copy to the device is done before the first call (each call syncs itself)
    return {"seconds": repeat_timing(run, cfg.infer_repeats)}


def info() -> dict[str, Any]:
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads()}


def gpu(device: str) -> dict[str, Any] | None:
    """The CUDA device that ran the measurement, or None on the CPU."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    # "highest": float32 products in full float32 (no TF32), PyTorch's default.
    return {"name": torch.cuda.get_device_name(dev), "cuda": torch.version.cuda,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}
