"""The CNN of ``jacnet train --model cnn`` against the same network trained by PyTorch.

Run it from the repository root with ``.venv/bin/python -m bench.cnn_torch`` (``--help`` lists
the options). For every seed it runs ``jacnet train --data NAME --model cnn --seed SEED`` as the
command line does (the data set's preset: :data:`jacnet.presets.PRESETS`), then trains the same
architecture in PyTorch CPU eager with the same settings: the same initial weights (jacnet's He
normal convolutions and affine layer, copied), the same scalar standardisation of the same
training rows, Adam with the preset's learning rate and batch size, the same number of epochs
and dropout rate (PyTorch draws its own dropout masks and batch order from ``torch.manual_seed``),
and the same thread count. It prints both systems' test accuracy and training seconds per seed,
their means and the ratio of the training times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench._common import pinned_threads

DEFAULT_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Pair:
    """One seed: test accuracy and training seconds of jacnet and of PyTorch."""

    seed: int
    jacnet: float
    jacnet_seconds: float
    torch: float
    torch_seconds: float


def torch_cnn(name: str, seed: int, threads: int = 2) -> tuple[float, float]:
    """Train the CNN preset of ``name`` in PyTorch; return (test accuracy, training seconds)."""
    import torch
    from torch import nn

    import jacnet
    from jacnet.conv import Conv1D, Conv2D
    from jacnet.datasets import load
    from jacnet.presets import INPUT_SHAPES, settings

    torch.set_num_threads(threads)
    _, opts = settings(name, "cnn", {})
    if opts["validation_split"]:
        raise ValueError(f"{name}'s CNN preset holds out validation rows; this comparison trains "
                         "on the whole training part")
    data = load(name, seed=seed, standardize=False, dtype=np.float32)
    mean = float(data.X_train.astype(np.float64).mean())
    std = float(data.X_train.astype(np.float64).std()) or 1.0
    shape = INPUT_SHAPES[name]
    X_train = torch.from_numpy(((data.X_train - mean) / std).astype(np.float32).reshape(-1, *shape))
    X_test = torch.from_numpy(((data.X_test - mean) / std).astype(np.float32).reshape(-1, *shape))
    y_train, y_test = torch.from_numpy(data.y_train), torch.from_numpy(data.y_test)
    reference = jacnet.build_cnn(shape, opts["channels"], data.n_classes,
                                 kernel_size=opts["kernel_size"], dropout=opts["dropout"], rng=seed)
    layers: list[nn.Module] = []
    for layer in reference.layers:
        kind = type(layer).__name__
        if isinstance(layer, (Conv1D, Conv2D)):
            conv = (nn.Conv1d if isinstance(layer, Conv1D) else nn.Conv2d)(
                layer.in_channels, layer.out_channels, layer.kernel_size[0])
            conv.weight.data = torch.from_numpy(layer.params["W"].copy())
            conv.bias.data = torch.from_numpy(layer.params["b"].copy())
            layers.append(conv)
        elif kind == "Affine":
            linear = nn.Linear(layer.in_features, layer.out_features)
            linear.weight.data = torch.from_numpy(layer.params["W"].T.copy())
            linear.bias.data = torch.from_numpy(layer.params["b"].copy())
            layers.append(linear)
        elif kind == "ReLU":
            layers.append(nn.ReLU())
        elif kind in ("MaxPool1D", "MaxPool2D"):
            layers.append((nn.MaxPool1d if kind == "MaxPool1D" else nn.MaxPool2d)(2))
        elif kind == "Flatten":
            layers.append(nn.Flatten())
        elif kind == "Dropout":
            layers.append(nn.Dropout(opts["dropout"]))
        elif kind != "Unflatten":
            raise ValueError(f"no PyTorch twin for {kind}")
    model = nn.Sequential(*layers)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=opts["lr"], weight_decay=0.0)
    criterion = nn.CrossEntropyLoss()
    batch, n = opts["batch_size"], X_train.shape[0]
    start = time.perf_counter()
    model.train()
    for _ in range(opts["epochs"]):
        order = torch.randperm(n)
        for s in range(0, n, batch):
            rows = order[s:s + batch]
            optimizer.zero_grad(set_to_none=True)
            criterion(model(X_train[rows]), y_train[rows]).backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.inference_mode():
        accuracy = float((model(X_test).argmax(dim=1) == y_test).float().mean())
    return accuracy, seconds


def compare(name: str, seeds: Sequence[int], threads: int = 2) -> list[Pair]:
    """jacnet and PyTorch, alternated seed by seed (so that load on the machine hits both)."""
    from bench.scores import run_jacnet

    pairs = []
    with pinned_threads(threads):
        for seed in seeds:
            ours, ours_s = run_jacnet(name, ("--model", "cnn"), seed)
            theirs, theirs_s = torch_cnn(name, seed, threads)
            pairs.append(Pair(seed, ours, ours_s, theirs, theirs_s))
            print(f"{name} seed {seed}: jacnet {ours:.3f} in {ours_s:.1f} s, PyTorch {theirs:.3f} in "
                  f"{theirs_s:.1f} s (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return pairs


def _spread(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def summary(name: str, pairs: Sequence[Pair]) -> list[str]:
    """Markdown lines: per seed, then means (± sample sd) and the ratio of the mean times."""
    lines = [f"| {name} seed | jacnet accuracy | jacnet s | PyTorch accuracy | PyTorch s |",
             "|---|---|---|---|---|"]
    lines += [f"| {p.seed} | {p.jacnet:.3f} | {p.jacnet_seconds:.1f} | {p.torch:.3f} | "
              f"{p.torch_seconds:.1f} |" for p in pairs]
    ours_s = statistics.fmean(p.jacnet_seconds for p in pairs)
    theirs_s = statistics.fmean(p.torch_seconds for p in pairs)
    lines.append(f"| mean | {_spread([p.jacnet for p in pairs])} | {ours_s:.1f} | "
                 f"{_spread([p.torch for p in pairs])} | {theirs_s:.1f} |")
    lines += ["", f"jacnet / PyTorch training time: {ours_s / theirs_s:.2f}"]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cnn_torch",
                                     description="jacnet's CNN preset against the same CNN in PyTorch.")
    parser.add_argument("--data", choices=("mnist1d", "digits"), default="mnist1d")
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), metavar="S[,S]")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    load_start = os.getloadavg()[0]
    pairs = compare(args.data, seeds, args.threads)
    print("\n".join(summary(args.data, pairs)))
    print(f"{args.threads} threads each; load average (1 min) {load_start:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
