"""jacnet's side of the benchmark: training (step loop and ``fit``), inference, the matmul
peak and replay, and peak memory. Only the public API is used."""

from __future__ import annotations

import dataclasses
import resource
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import jacnet
from bench._common import Config, batch_sizes, layer_shapes, make_data, repeat_timing


def _model(cfg: Config, dtype: Any) -> jacnet.Sequential:
    return jacnet.build_mlp(cfg.n_features, list(cfg.hidden), cfg.n_classes, rng=cfg.seed, dtype=dtype)


def _accuracy(model: jacnet.Sequential, X: NDArray[Any], y: NDArray[Any]) -> float:
    rows = min(X.shape[0], 10_000)
    pred = np.argmax(jacnet.backend.to_numpy(model.predict(X[:rows], batch_size=rows)), axis=1)
    return float(np.mean(pred == y[:rows]))


def _step_epoch(model: jacnet.Sequential, loss: jacnet.Loss, opt: jacnet.Optimizer,
                X: NDArray[Any], y: NDArray[Any], batch: int, rng: np.random.Generator) -> None:
    """One epoch of the hand-written step loop exactly as the docs teach it (``model.params``
    and ``model.grads`` fetched at every step, as a reader copies the loop)."""
    order = rng.permutation(X.shape[0])
    for s in range(0, X.shape[0], batch):
        rows = order[s:s + batch]
        Xb, yb = X[rows], y[rows]
        out = model.forward(Xb)
        loss.forward(out, yb)
        model.backward(loss.backward(), input_grad=False)
        opt.step(model.params, model.grads)


def train_step(cfg: Config, batch: int, dtype: Any) -> dict[str, Any]:
    X, y = make_data(cfg, dtype)
    model = _model(cfg, dtype)
    loss, opt = jacnet.SoftmaxCrossEntropy(), jacnet.SGD(lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    seconds = []
    for epoch in range(cfg.warmup + cfg.epochs):
        start = time.perf_counter()
        _step_epoch(model, loss, opt, X, y, batch, rng)
        if epoch >= cfg.warmup:
            seconds.append(time.perf_counter() - start)
    result: dict[str, Any] = {"seconds": seconds, "accuracy": _accuracy(model, X, y)}
    result["matmul_seconds"] = matmul_replay(cfg, batch, dtype)
    return result


def train_fit(cfg: Config, batch: int, dtype: Any) -> dict[str, Any]:
    """``fit(epochs=1)`` per epoch: the wall time of the call (what a user waits for), and the
    epoch alone as ``fit`` itself reports it (``history['seconds']``)."""
    X, y = make_data(cfg, dtype)
    return _fit_epochs(cfg, _model(cfg, dtype), X, y, batch, lambda: None)


def train_fit_torch(cfg: Config, batch: int, dtype: Any) -> dict[str, Any]:
    """:func:`train_fit` on the torch backend, on ``cfg.device``: the data is moved there once,
    before the clock starts (as PyTorch eager's is), and on CUDA the clock waits for the
    device (``torch.cuda.synchronize``) before it starts and stops."""
    import torch

    X, y = make_data(cfg, dtype)
    model = _model(cfg, dtype).to("torch", cfg.device)
    X_here = torch.from_numpy(X).to(cfg.device)
    sync = torch.cuda.synchronize if X_here.device.type == "cuda" else (lambda: None)
    return _fit_epochs(cfg, model, X_here, y, batch, sync)


def _fit_epochs(cfg: Config, model: jacnet.Sequential, X: Any, y: NDArray[Any], batch: int,
                sync: Any) -> dict[str, Any]:
    loss, opt = jacnet.SoftmaxCrossEntropy(), jacnet.SGD(lr=cfg.lr)
    seconds, inner = [], []
    for epoch in range(cfg.warmup + cfg.epochs):
        sync()
        start = time.perf_counter()
        history = jacnet.fit(model, X, y, loss=loss, optimizer=opt, epochs=1, batch_size=batch,
                             shuffle=True, seed=cfg.seed + epoch, verbose=0)
        sync()
        if epoch >= cfg.warmup:
            seconds.append(time.perf_counter() - start)
            inner.append(float(history.history["seconds"][0]))
    return {"seconds": seconds, "epoch_seconds": inner,
            "accuracy": _accuracy(model, jacnet.backend.to_numpy(X), y)}


def matmul_replay(cfg: Config, batch: int, dtype: Any) -> float:
    """Seconds that the matrix products of one epoch take alone.

    Replays, with the training loop's shapes and memory layouts (``W.T`` and ``X.T`` are
    transposed views, as in ``Affine``) and into preallocated outputs, every ``X W``,
    ``dZ Wᵀ`` (not for the first layer) and ``Xᵀ dZ`` of an epoch at batch size ``batch``.
    Everything else in an epoch is time outside the matrix products.
    """
    rng = np.random.default_rng(1)
    shapes = layer_shapes(cfg)
    W = [rng.standard_normal((a, b)).astype(dtype) for a, b in shapes]
    dW = [np.empty_like(w) for w in W]
    total = 0.0
    for m, count in sorted({m: batch_sizes(cfg.n_samples, batch).count(m)
                            for m in batch_sizes(cfg.n_samples, batch)}.items()):
        acts = [rng.standard_normal((m, a)).astype(dtype) for a, _ in shapes]
        Z = [np.empty((m, b), dtype) for _, b in shapes]
        dZ = [rng.standard_normal((m, b)).astype(dtype) for _, b in shapes]
        dX = [np.empty((m, a), dtype) for a, _ in shapes]

        def step(acts: list[NDArray[Any]] = acts, Z: list[NDArray[Any]] = Z,
                 dZ: list[NDArray[Any]] = dZ, dX: list[NDArray[Any]] = dX) -> None:
            for i in range(len(W)):
                np.matmul(acts[i], W[i], out=Z[i])
            for i in reversed(range(len(W))):
                np.matmul(acts[i].T, dZ[i], out=dW[i])
                if i:
                    np.matmul(dZ[i], W[i].T, out=dX[i])

        step()  # warm
        start = time.perf_counter()
        for _ in range(count):
            step()
        total += time.perf_counter() - start
    return total


def infer(cfg: Config, how: str) -> dict[str, Any]:
    """Forward pass over ``infer_batch`` rows: ``model.predict`` (one batch) or ``model.forward``;
    ``torch-predict``: ``model.predict`` on the torch backend, on ``cfg.device``, the rows
    already there (as PyTorch's are), the clock waiting for the device."""
    X, _ = make_data(dataclasses.replace(cfg, n_samples=cfg.infer_batch))
    model = _model(cfg, np.float32)
    if how == "torch-predict":
        import torch

        model.to("torch", cfg.device)
        X_here = torch.from_numpy(X).to(cfg.device)
        sync = torch.cuda.synchronize if X_here.device.type == "cuda" else (lambda: None)

        def run() -> None:
            model.predict(X_here, batch_size=X_here.shape[0])
            sync()

        return {"seconds": repeat_timing(run, cfg.infer_repeats)}
    if how == "predict":
        seconds = repeat_timing(lambda: model.predict(X, batch_size=X.shape[0]), cfg.infer_repeats)
    else:
        seconds = repeat_timing(lambda: model.forward(X), cfg.infer_repeats)
    return {"seconds": seconds}


def matmul_peak(cfg: Config) -> dict[str, Any]:
    """Best float32 ``np.matmul`` rate (GFLOP/s) over blocks of ``peak_seconds``, at the
    workload's largest product (512 × in @ in × hidden[0]) and, for reference, at a square
    size (2048² in the full configuration)."""
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    shapes = {"workload": (512, cfg.n_features, cfg.hidden[0] if cfg.hidden else cfg.n_classes),
              "square": (cfg.peak_square,) * 3}
    for name, (m, k, n) in shapes.items():
        A = rng.standard_normal((m, k), dtype=np.float32)
        B = rng.standard_normal((k, n), dtype=np.float32)
        C = np.empty((m, n), np.float32)
        np.matmul(A, B, out=C)
        rates = []
        for _ in range(5):
            reps, start = 0, time.perf_counter()
            while True:
                np.matmul(A, B, out=C)
                reps += 1
                elapsed = time.perf_counter() - start
                if elapsed >= cfg.peak_seconds:
                    break
            rates.append(2.0 * m * k * n * reps / elapsed / 1e9)
        out[name] = {"shape": [m, k, n], "gflops": max(rates), "blocks": rates}
    return out


def _status_bytes(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status`` (Linux), in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory(cfg: Config) -> dict[str, Any]:
    """Peak memory of ``fit`` on the float32 set, measured two ways in this fresh process.

    - RSS: once the data exists, the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``;
      elsewhere ``ru_maxrss``, whose baseline then includes making the data); after ``fit`` the
      peak resident set minus the resident set at that point (interpreter, libraries, data) is
      what training added on top of the data.
    - ``tracemalloc``: the peak of NumPy's (and Python's) traced allocations during a second
      ``fit``, above what was allocated when it started.
    """
    X, y = make_data(cfg, np.float32)
    kwargs: dict[str, Any] = {"loss": jacnet.SoftmaxCrossEntropy(), "optimizer": jacnet.SGD(lr=cfg.lr),
                              "epochs": 1, "batch_size": cfg.memory_batch, "seed": cfg.seed, "verbose": 0}
    reset = _reset_peak_rss()
    rss_data = _status_bytes("VmRSS") if reset else None
    if rss_data is None:
        reset, rss_data = False, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model = _model(cfg, np.float32)
    jacnet.fit(model, X, y, **kwargs)
    peak = _status_bytes("VmHWM") if reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    jacnet.fit(model, X, y, **kwargs)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "data_bytes": int(X.nbytes + y.nbytes),
        "rss_after_data": rss_data,
        "rss_peak_fit": peak,
        "rss_above_data": peak - rss_data,
        "rss_method": "VmHWM reset" if reset else "ru_maxrss",
        "traced_above_start": traced_peak - base,
        "batch_size": cfg.memory_batch,
    }
