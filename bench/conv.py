"""A convolutional training workload: jacnet (on NumPy, and on its torch backend) against PyTorch
CPU eager, epoch time at one batch size.

Run it from the repository root with ``.venv/bin/python -m bench.conv`` (``--help`` lists the
options). The method is ``bench.run``'s: every measurement runs in its own process with the
thread pools pinned to the same count, one warm-up epoch is run and discarded, the systems
alternate round by round, and the report gives medians over the rounds with their spread and
the median of the per-round ratios jacnet / PyTorch (below 1: jacnet is faster).

Workload: a small LeNet-style CNN on synthetic 1×28×28 images in ten classes,
``Conv2D(1, 16, 3) → ReLU → MaxPool2D(2) → Conv2D(16, 32, 3) → ReLU → MaxPool2D(2) → Flatten →
Affine(800, 10)``, softmax cross-entropy, plain SGD (lr 0.05), one epoch over 10,000 samples,
float32. Both systems start from the same weights (jacnet's, copied) and take the same batches
in the same order (each step indexes a shuffled permutation: one gather per step).

``jacnet-threads`` is the NumPy step loop with ``jacnet.set_num_threads(threads)`` and
:data:`THREADS_ENV` in its environment (see :mod:`jacnet.threads` for why both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench._common import child_env, pinned_threads

N_SAMPLES, SIDE, N_CLASSES, LR = 10_000, 28, 10, 0.05
LABELS = {"jacnet": "jacnet step loop (NumPy)", "jacnet-fit": "jacnet `fit` (NumPy)",
          "jacnet-threads": "jacnet step loop (NumPy, jacnet threads, OpenBLAS timeout 2^16)",
          "jacnet-torch": "jacnet step loop (torch backend)",
          "jacnet-torch-fit": "jacnet `fit` (torch backend)", "torch": "PyTorch eager"}
#: The environment ``jacnet-threads`` adds: OpenBLAS's idle threads stop spinning after 2^16
#: cycles rather than 2^28, so that jacnet's own threads get the cores between products
#: (``jacnet.threads``). OpenBLAS reads it when NumPy loads.
THREADS_ENV = {"OPENBLAS_THREAD_TIMEOUT": "16"}


def _data(seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Images with a class-dependent blob on noise, so the loss actually falls."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, N_SAMPLES)
    X = rng.standard_normal((N_SAMPLES, 1, SIDE, SIDE)).astype(np.float32)
    for k in range(N_CLASSES):
        top, left = (4 + 4 * i for i in divmod(2 * k, 5))  # a 6x6 blob per class
        X[y == k, 0, top:top + 6, left:left + 6] += 2
    return X, y.astype(np.int64)


def _jacnet_model(seed: int) -> Any:
    import jacnet

    rng = np.random.default_rng(seed)
    return jacnet.Sequential([
        jacnet.Conv2D(1, 16, 3, rng=rng), jacnet.ReLU(), jacnet.MaxPool2D(2),
        jacnet.Conv2D(16, 32, 3, rng=rng), jacnet.ReLU(), jacnet.MaxPool2D(2),
        jacnet.Flatten(), jacnet.Affine(32 * 5 * 5, N_CLASSES, rng=rng)])


def _weights(model: Any) -> list[np.ndarray[Any, Any]]:
    """A jacnet model's parameters as NumPy arrays, in the order of :func:`_torch_weights`."""
    from jacnet.backend import to_numpy

    return [to_numpy(model.layers[i].params[k]) for i in (0, 3, 7) for k in ("W", "b")]


def _torch_weights(modules: Sequence[Any]) -> list[np.ndarray[Any, Any]]:
    """PyTorch's parameters in jacnet's layout (a linear layer's weight transposed)."""
    out = []
    for module in modules:
        W = module.weight.detach().numpy()
        out += [W.T if W.ndim == 2 else W, module.bias.detach().numpy()]
    return out


def _setup(seed: int, on_torch: bool) -> tuple[Any, Any, np.ndarray[Any, Any], Any, Any]:
    """jacnet's model, the data, the loss and the optimizer; ``on_torch``: the model on jacnet's
    torch backend and the images a tensor (made once, as PyTorch's are)."""
    import jacnet

    X: Any
    X, y = _data(seed)
    model = _jacnet_model(seed)
    if on_torch:
        import torch

        model.to("torch")
        X = torch.from_numpy(X)
    return model, X, y, jacnet.SoftmaxCrossEntropy(), jacnet.SGD(lr=LR)


def _run_jacnet(batch: int, epochs: int, seed: int, on_torch: bool = False
                ) -> tuple[list[float], list[np.ndarray[Any, Any]]]:
    """The step loop as the docs teach it; ``on_torch``: the same on jacnet's torch backend
    (see :func:`_setup`). Returns the seconds of each epoch and the final weights."""
    model, X, y, loss, opt = _setup(seed, on_torch)
    params, grads = model.params, model.grads
    rng = np.random.default_rng(seed)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(N_SAMPLES)
        for s in range(0, N_SAMPLES, batch):
            rows = order[s:s + batch]
            out = model.forward(X[rows])
            loss.forward(out, y[rows])
            model.backward(loss.backward(), input_grad=False)
            opt.step(params, grads)
        seconds.append(time.perf_counter() - start)
    return seconds, _weights(model)


def _run_jacnet_fit(batch: int, epochs: int, seed: int, on_torch: bool = False) -> list[float]:
    """``fit(epochs=1)`` per epoch, each with its own shuffling seed (what ``jacnet train``
    runs; it also computes each step's loss and accuracy, which the loops do not);
    ``on_torch``: on jacnet's torch backend (see :func:`_setup`)."""
    import jacnet

    model, X, y, loss, opt = _setup(seed, on_torch)
    seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        jacnet.fit(model, X, y, loss=loss, optimizer=opt, epochs=1, batch_size=batch,
                   seed=seed + epoch, verbose=0)
        seconds.append(time.perf_counter() - start)
    return seconds


def _run_torch(batch: int, epochs: int, seed: int, threads: int
               ) -> tuple[list[float], list[np.ndarray[Any, Any]]]:
    """PyTorch eager, the same network, weights and batches; the seconds of each epoch and the
    final weights (in jacnet's layout)."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    X_np, y_np = _data(seed)
    X, y = torch.from_numpy(X_np), torch.from_numpy(y_np)
    reference = _jacnet_model(seed)
    convs = [nn.Conv2d(1, 16, 3), nn.Conv2d(16, 32, 3)]
    linear = nn.Linear(32 * 5 * 5, N_CLASSES)
    for module, layer in zip([*convs, linear], [reference.layers[i] for i in (0, 3, 7)], strict=True):
        W = layer.params["W"]
        module.weight.data = torch.from_numpy((W.T if W.ndim == 2 else W).copy())
        module.bias.data = torch.from_numpy(layer.params["b"].copy())
    model = nn.Sequential(convs[0], nn.ReLU(), nn.MaxPool2d(2), convs[1], nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), linear)
    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    rng = np.random.default_rng(seed)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.from_numpy(rng.permutation(N_SAMPLES))
        for s in range(0, N_SAMPLES, batch):
            rows = order[s:s + batch]
            opt.zero_grad(set_to_none=True)
            criterion(model(X[rows]), y[rows]).backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
    return seconds, _torch_weights([*convs, linear])


def _worker(system: str, batch: int, threads: int, seed: int) -> None:
    with pinned_threads(threads):
        if system.startswith("jacnet-torch"):
            import torch

            torch.set_num_threads(threads)
        if system == "jacnet-threads":
            import jacnet

            jacnet.set_num_threads(threads)
        on_torch = system.startswith("jacnet-torch")
        if system == "torch":
            runs, _ = _run_torch(batch, 2, seed, threads)
        elif system.endswith("fit"):
            runs = _run_jacnet_fit(batch, 2, seed, on_torch=on_torch)
        else:
            runs, _ = _run_jacnet(batch, 2, seed, on_torch=on_torch)
    print(json.dumps({"seconds": runs[1:]}))  # the first epoch is the warm-up


def measure(system: str, batch: int, threads: int, seed: int) -> float:
    """One timed epoch of ``system`` in a fresh process (after its warm-up epoch)."""
    env = {**child_env(threads), **(THREADS_ENV if system == "jacnet-threads" else {})}
    out = subprocess.run([sys.executable, "-m", "bench.conv", "--worker", system, "--batch", str(batch),
                          "--threads", str(threads), "--seed", str(seed)],
                         env=env, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"][0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.conv",
                                     description="jacnet vs PyTorch eager on a small CNN, s/epoch.")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=tuple(LABELS), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.batch, args.threads, args.seed)
        return 0
    times: dict[str, list[float]] = {system: [] for system in LABELS}
    loads = []
    for r in range(args.rounds):
        k = r % len(LABELS)
        for system in list(LABELS)[k:] + list(LABELS)[:k]:  # rotated each round
            loads.append(os.getloadavg()[0])
            times[system].append(measure(system, args.batch, args.threads, args.seed))
        print(f"round {r + 1}: " + ", ".join(f"{s} {times[s][-1]:.3f} s" for s in LABELS)
              + f" (load {loads[-1]:.1f})", file=sys.stderr, flush=True)
    print(f"Conv workload (2 conv blocks + affine on {N_SAMPLES} 1x{SIDE}x{SIDE} images, SGD, float32), "
          f"batch {args.batch}, {args.threads} threads each, {args.rounds} rounds, 1 warm-up epoch:")
    for system, label in LABELS.items():
        t = times[system]
        print(f"  {label}: {statistics.median(t):.3f} s/epoch (spread {min(t):.3f}-{max(t):.3f})")
    for system in [name for name in LABELS if name != "torch"]:
        ratios = [a / b for a, b in zip(times[system], times["torch"], strict=True)]
        print(f"  {LABELS[system]} / PyTorch eager: {statistics.median(ratios):.2f} (median of "
              f"per-round ratios; spread {min(ratios):.2f}-{max(ratios):.2f})")
    print(f"  load average (1 min) before each measurement: {min(loads):.1f}-{max(loads):.1f} on "
          f"{os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
