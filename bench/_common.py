"""What every benchmark worker shares: the configuration, the data, FLOP counts, thread pinning.

This module imports NumPy only, so a worker that imports it has loaded no other system's
libraries (and no second BLAS) before it starts measuring.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Environment variables that pin every BLAS / OpenMP pool of a worker to the same thread count.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
#: Set on some machines for old OpenBLAS builds; they select slower kernels in a current NumPy,
#: so workers run without them (the parent's environment is left alone).
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass(frozen=True)
class Config:
    """One benchmark configuration; the workers receive it as JSON."""

    n_samples: int = 60_000
    n_features: int = 784
    hidden: tuple[int, ...] = (256, 128)
    n_classes: int = 10
    lr: float = 0.1
    threads: int = 2
    warmup: int = 1  # epochs run and discarded in each training process
    epochs: int = 1  # epochs timed in each training process
    seed: int = 0
    device: str = "cpu"  # where the PyTorch systems run ("cpu" or "cuda"); the others run on the CPU
    infer_batch: int = 10_000
    infer_repeats: int = 20
    memory_batch: int = 128
    peak_seconds: float = 0.4  # time spent per block when measuring the matmul peak
    peak_square: int = 2048  # the square matmul measured for reference

    @property
    def widths(self) -> list[int]:
        return [self.n_features, *self.hidden, self.n_classes]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Config:
        data = json.loads(text)
        data["hidden"] = tuple(data["hidden"])
        return cls(**data)


#: The reference workload of issue 5 and a configuration small enough for the test suite.
FULL = Config()
TINY = Config(n_samples=512, n_features=64, hidden=(32, 16), warmup=0, infer_batch=1000,
              infer_repeats=3, memory_batch=64, peak_seconds=0.02, peak_square=128)


def make_data(cfg: Config, dtype: Any = np.float32) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """A learnable synthetic classification set: Gaussian clouds around class means.

    ``X`` is ``(n_samples, n_features)`` in ``dtype``, ``y`` the int64 labels. It is filled in
    chunks of float32 so that creating it never needs much more memory than the result (the
    memory benchmark takes its baseline right after). The values are the same for float32 and
    float64 (float64 data is the float32 data, widened).
    """
    rng = np.random.default_rng(cfg.seed)
    means = rng.standard_normal((cfg.n_classes, cfg.n_features), dtype=np.float32)
    means *= np.float32(0.15)
    y = rng.integers(0, cfg.n_classes, cfg.n_samples).astype(np.int64)
    X = np.empty((cfg.n_samples, cfg.n_features), dtype=dtype)
    chunk = 4096
    for s in range(0, cfg.n_samples, chunk):
        block = rng.standard_normal((min(chunk, cfg.n_samples - s), cfg.n_features), dtype=np.float32)
        block += means[y[s:s + chunk]]
        X[s:s + chunk] = block
    return X, y


def he_init(cfg: Config, dtype: Any = np.float32) -> list[tuple[NDArray[Any], NDArray[Any]]]:
    """``(W, b)`` of each affine layer, ``W (in, out)`` and ``b (out,)``, as jacnet initialises them.

    The same values as ``jacnet.build_mlp(..., rng=cfg.seed)`` (He: ``W ~ N(0, 2/in)`` drawn in
    float64 from one generator, layer after layer, then cast; ``b = 0``), without importing
    jacnet: every system starts from the same weights.
    """
    rng = np.random.default_rng(cfg.seed)
    return [((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(dtype), np.zeros(b, dtype))
            for a, b in layer_shapes(cfg)]


def layer_shapes(cfg: Config) -> list[tuple[int, int]]:
    """``(in, out)`` of each affine layer."""
    w = cfg.widths
    return list(itertools.pairwise(w))


def train_flops(cfg: Config, n: int | None = None) -> float:
    """FLOPs of the matrix products of one epoch over ``n`` samples (default: all).

    Per affine layer ``(in, out)`` and batch of ``m`` rows: forward ``X W`` and backward
    ``Xᵀ dZ`` always, and ``dZ Wᵀ`` for every layer but the first (whose ``dX`` nobody reads,
    and none of the systems computes). Each product costs ``2·m·in·out``.
    """
    n = cfg.n_samples if n is None else n
    total = 0
    for i, (a, b) in enumerate(layer_shapes(cfg)):
        products = 2 if i == 0 else 3
        total += products * 2 * n * a * b
    return float(total)


def forward_flops(cfg: Config, n: int) -> float:
    """FLOPs of the forward matrix products for ``n`` samples."""
    return float(sum(2 * n * a * b for a, b in layer_shapes(cfg)))


def batch_sizes(n: int, batch: int) -> list[int]:
    """The batch lengths of one epoch: full batches, then the remainder (if any)."""
    sizes = [batch] * (n // batch)
    if n % batch:
        sizes.append(n % batch)
    return sizes


def child_env(threads: int) -> dict[str, str]:
    """The environment of a worker: thread counts pinned, OpenBLAS core overrides removed."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    for var in OPENBLAS_OVERRIDES:
        env.pop(var, None)
    return env


@contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Every thread pool threadpoolctl knows of, limited to ``threads`` (no-op without it)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables set by the parent still apply
        yield
        return
    with threadpool_limits(limits=threads):
        yield


def blas_info() -> list[dict[str, Any]]:
    """What threadpoolctl reports for the loaded thread pools (kernel/coretype, threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads",
            "threading_layer", "filepath")
    rows = []
    for pool in threadpool_info():
        row = {k: pool.get(k) for k in keep if pool.get(k) is not None}
        row["filepath"] = os.path.basename(str(row.get("filepath", "")))
        rows.append(row)
    return rows


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` takes (wall clock)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def repeat_timing(fn: Callable[[], object], repeats: int) -> list[float]:
    """``fn`` called once untimed, then timed ``repeats`` times."""
    fn()
    return [timed(fn) for _ in range(repeats)]


def markdown_tables(text: str) -> list[list[list[str]]]:
    """The Markdown tables of a report: lists of rows of stripped cells (for checking reports)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    return tables
