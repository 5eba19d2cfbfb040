"""Threads for the memory-bound passes: a layer's per-sample NumPy work split over the batch.

BLAS runs a matrix product on every core it is given; NumPy runs an element-wise pass or a
copy (ReLU, max pooling, im2col, col2im) on one. Those passes treat every sample on its own,
so :func:`over_batch` can cut the batch into contiguous blocks and run the blocks at once on a
small pool of threads (NumPy releases the GIL inside its loops). Every entry is computed by
the same operations in the same order whatever the split, so the results are the same, bit
for bit, on any number of threads; no sum across samples is ever split.

Off by default (one thread): turn it on with :func:`set_num_threads` or the environment
variable ``JACNET_NUM_THREADS``. It pays only where the cores are free between products.
NumPy's OpenBLAS keeps its idle threads spinning for 2^28 cycles (about 0.1 s) after every
product, and those spinning threads hold the cores these passes need: measured on two cores,
the benchmark CNN's step (``python -m bench.conv``) took 13.2 ms on one thread and 14.1 ms
on two. Started with ``OPENBLAS_THREAD_TIMEOUT=18`` (2^18 cycles; set before NumPy loads) it
took 12.6 ms on two, and 11.9 ms with 16; the MLP benchmark at batch 32 is about 10% slower
at 18 and 40% slower at 16, where its small products wait for the BLAS threads to wake.
Split on two threads, single passes ran 1.4-1.6x faster (ReLU forward at ``(128, 16, 26,
26)`` 0.63 ms against 0.47 ms; 2×2 max pooling forward 1.46 against 0.88 ms).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from jacnet import backend
from jacnet._validation import check_positive_int
from jacnet.errors import JacnetValueError

__all__ = ["contiguous", "entries", "get_num_threads", "over_batch", "set_num_threads"]

#: Entries a block must hold at least: below, starting a thread costs about what it saves
#: (measured: ReLU on 2^17 float32 entries, 60 µs on one thread, 45 µs split in two).
MIN_BLOCK_ENTRIES = 1 << 17

_state = threading.local()  # .inside: this thread already runs a block
_lock = threading.Lock()
_threads: int | None = None  # set_num_threads's value; None: the default
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _default_threads() -> int:
    """``JACNET_NUM_THREADS`` if set, else 1 (see the module docstring for why)."""
    value = os.environ.get("JACNET_NUM_THREADS", "").strip()
    if not value:
        return 1
    if not value.isdecimal() or int(value) < 1:  # (isdigit takes "²", which int refuses)
        raise JacnetValueError(f"the environment variable JACNET_NUM_THREADS expects a "
                               f"positive integer, got {value!r}")
    return int(value)


def get_num_threads() -> int:
    """How many threads :func:`over_batch` uses: what :func:`set_num_threads` set, else the
    environment variable ``JACNET_NUM_THREADS``, else 1."""
    return _threads if _threads is not None else _default_threads()


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads for the per-sample passes from now on; ``None``: back to the default.

    Results do not depend on the count (see the module docstring); only speed does. BLAS's
    own pool is not touched: size it with ``OMP_NUM_THREADS`` or ``threadpoolctl``.
    """
    global _threads
    _threads = None if n is None else check_positive_int(n, "set_num_threads n")


def _executor(workers: int) -> ThreadPoolExecutor:
    """The shared pool, grown to ``workers`` threads if it is smaller.

    A smaller pool is replaced, not shut down: another user thread may hold it and be about to
    submit its blocks (a shut-down pool refuses them). Its threads end once it is collected.
    """
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jacnet")
            _pool_size = workers
        return _pool


def _forget_pool() -> None:
    """In a forked child the parent's threads do not exist: start a new pool when needed, under
    a new lock (another thread of the parent may have held the old one at the fork)."""
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forget_pool)


def _block(fn: Callable[[int, int], object], start: int, stop: int) -> None:
    _state.inside = True
    try:
        fn(start, stop)
    finally:
        _state.inside = False


def entries(A: Any) -> int:
    """What :func:`over_batch` weighs for ``A``: its entries for a NumPy array; 0 for a tensor
    (PyTorch runs its own threads)."""
    return A.size if type(A) is np.ndarray else 0


def over_batch(fn: Callable[[int, int], object], n: int, size: int) -> None:
    """Run ``fn(start, stop)`` over contiguous blocks that cover ``range(n)``, at once.

    Parameters
    ----------
    fn : callable
        Does the pass for samples ``start:stop`` (reading and writing only those rows of its
        arrays); its return value is ignored.
    n : int
        The batch size: how many samples there are to split.
    size : int
        The entries the pass touches, all samples together (:func:`entries`): blocks of fewer
        than :data:`MIN_BLOCK_ENTRIES` are not worth a thread.

    One block per thread, at most; the calling thread runs the last one. A call made inside a
    block runs whole, on its thread. The exception of the first block (in batch order) that
    raised one is raised here, after every block has finished.
    """
    # Small work first, before the thread count is looked up: most calls in an MLP are small.
    blocks = 1 if size < 2 * MIN_BLOCK_ENTRIES else min(get_num_threads(), n,
                                                        size // MIN_BLOCK_ENTRIES)
    if blocks <= 1 or getattr(_state, "inside", False):
        fn(0, n)
        return
    bounds = [n * i // blocks for i in range(blocks + 1)]
    pool = _executor(blocks - 1)
    futures: list[Future[None]] = [pool.submit(_block, fn, bounds[i], bounds[i + 1])
                                   for i in range(blocks - 1)]
    last: BaseException | None = None
    try:
        _block(fn, bounds[-2], bounds[-1])
    except BaseException as exc:  # raised below, once the other blocks are done
        last = exc
    # The first block's error, as one thread would stop at the first failing sample.
    for error in [*(future.exception() for future in futures), last]:
        if error is not None:
            raise error


def contiguous(A: Any, axis: int = 0) -> Any:
    """``A`` as a C-contiguous array (itself if it is one); a NumPy copy is split over the
    samples on ``axis``. What a transposed view costs before a product or a layer's output."""
    if type(A) is not np.ndarray:
        return backend.contiguous(A)
    if A.flags.c_contiguous:
        return A
    out = np.empty(A.shape, dtype=A.dtype)
    lead = (slice(None),) * axis

    def block(a: int, b: int) -> None:
        rows = (*lead, slice(a, b))
        out[rows] = A[rows]

    over_batch(block, A.shape[axis], A.size)
    return out
