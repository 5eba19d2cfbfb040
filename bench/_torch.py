"""PyTorch CPU eager's side: the same MLP, loss and optimizer, in a plain loop.

No DataLoader: the data is made once as tensors, and each step indexes a shuffled permutation
(one gather per step, as jacnet does). The input needs no gradient, so autograd skips the
first layer's ``dX`` as jacnet does.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from bench._common import Config, make_data, repeat_timing


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
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    Xn, yn = make_data(cfg, dtype)
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn)
    model = _model(cfg, tdtype)
    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = X.shape[0]
    seconds = []
    for epoch in range(cfg.warmup + cfg.epochs):
        start = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, batch):
            rows = order[s:s + batch]
            xb, yb = X[rows], y[rows]
            opt.zero_grad(set_to_none=True)
            loss = criterion(model(xb), yb)
            loss.backward()
            opt.step()
        if epoch >= cfg.warmup:
            seconds.append(time.perf_counter() - start)
    with torch.inference_mode():
        head = min(n, 10_000)
        accuracy = float((model(X[:head]).argmax(dim=1) == y[:head]).float().mean())
    return {"seconds": seconds, "accuracy": accuracy}


def infer(cfg: Config) -> dict[str, Any]:
    Xn, _ = make_data(dataclasses.replace(cfg, n_samples=cfg.infer_batch))
    X = torch.from_numpy(Xn)
    model = _model(cfg, torch.float32).eval()

    def run() -> None:
        with torch.inference_mode():
            model(X)

    return {"seconds": repeat_timing(run, cfg.infer_repeats)}


def info() -> dict[str, Any]:
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads()}
