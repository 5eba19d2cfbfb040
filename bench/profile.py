"""Profile one jacnet ``fit`` epoch on the benchmark's data: ``python -m bench.profile``.

Runs a warm-up epoch, then one epoch under cProfile with the threads pinned as the suite pins
them, and prints the functions with the most time of their own. cProfile's per-call cost
inflates Python-heavy code, so read it for where time goes, not for absolute times.

``--phases`` instead times the hand-written step loop's phases with ``time.perf_counter``
(gather, forward, loss, backward, optimizer step; no profiler overhead) next to the epoch's
matrix products replayed alone, the split behind the suite's "time outside matmuls".
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import pstats
import sys
from typing import Any

from bench._common import FULL, OPENBLAS_OVERRIDES, THREAD_VARS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--samples", type=int, default=FULL.n_samples)
    parser.add_argument("--threads", type=int, default=FULL.threads)
    parser.add_argument("--top", type=int, default=25, help="rows to print")
    parser.add_argument("--loop", action="store_true", help="profile the hand-written step loop, not fit")
    parser.add_argument("--phases", action="store_true",
                        help="time the step loop's phases (no profiler) against the matmuls alone")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args(argv)
    pinned = all(os.environ.get(var) == str(args.threads) for var in THREAD_VARS)
    if not pinned or any(var in os.environ for var in OPENBLAS_OVERRIDES):
        # The thread variables must be set before NumPy loads: start again with them.
        env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_OVERRIDES}
        env.update({var: str(args.threads) for var in THREAD_VARS})
        os.execve(sys.executable, [sys.executable, "-m", "bench.profile", *sys.argv[1:]], env)

    import numpy as np

    import jacnet
    from bench._common import make_data, pinned_threads
    from bench._jacnet import _step_epoch

    cfg = dataclasses.replace(FULL, n_samples=args.samples, threads=args.threads)
    dtype = np.dtype(args.dtype)
    X, y = make_data(cfg, dtype)
    model = jacnet.build_mlp(cfg.n_features, list(cfg.hidden), cfg.n_classes, rng=0, dtype=dtype)
    loss, opt = jacnet.SoftmaxCrossEntropy(), jacnet.SGD(lr=cfg.lr)
    rng = np.random.default_rng(0)
    if args.phases:
        with pinned_threads(args.threads):
            print_phases(model, loss, opt, X, y, args.batch, rng, cfg)
        return 0

    def epoch() -> None:
        if args.loop:
            _step_epoch(model, loss, opt, X, y, args.batch, rng)
        else:
            jacnet.fit(model, X, y, loss=loss, optimizer=opt, epochs=1, batch_size=args.batch, verbose=0)

    with pinned_threads(args.threads):
        epoch()  # warm-up
        profiler = cProfile.Profile()
        profiler.runcall(epoch)
    what = "step loop" if args.loop else "fit"
    print(f"jacnet {what}, one epoch of {args.samples:,} samples at batch {args.batch}, "
          f"{args.threads} threads (cProfile, sorted by own time):")
    pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats("tottime").print_stats(args.top)
    return 0


def print_phases(model: Any, loss: Any, opt: Any, X: Any, y: Any, batch: int, rng: Any, cfg: Any) -> None:
    """One step-loop epoch (after a warm-up), each phase timed with perf_counter."""
    import time

    from bench._jacnet import matmul_replay

    clock = time.perf_counter
    names = ("gather X[rows]", "model.forward", "loss.forward", "loss.backward",
             "model.backward", "optimizer.step")
    totals = dict.fromkeys(names, 0.0)
    for timed in (False, True):
        order = rng.permutation(X.shape[0])
        started = clock()
        for s in range(0, X.shape[0], batch):
            t0 = clock()
            rows = order[s:s + batch]
            Xb, yb = X[rows], y[rows]
            t1 = clock()
            out = model.forward(Xb)
            t2 = clock()
            loss.forward(out, yb)
            t3 = clock()
            dY = loss.backward()
            t4 = clock()
            model.backward(dY, input_grad=False)
            t5 = clock()
            opt.step(model.params, model.grads)  # as the docs' loop (and _step_epoch) write it
            t6 = clock()
            if timed:
                for name, a, b in zip(names, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6),
                                      strict=True):
                    totals[name] += b - a
        epoch = clock() - started
    matmuls = matmul_replay(cfg, batch, X.dtype)
    steps = -(-X.shape[0] // batch)
    print(f"jacnet step loop, one epoch of {X.shape[0]:,} samples at batch {batch}, {X.dtype}, "
          f"{cfg.threads} threads: {epoch:.3f} s ({steps} steps)")
    print(f"{'phase':<18}{'s/epoch':>9}{'µs/step':>9}{'share':>7}")
    for name, seconds in totals.items():
        print(f"{name:<18}{seconds:>9.3f}{seconds / steps * 1e6:>9.0f}{seconds / epoch:>7.0%}")
    print(f"{'matmuls alone':<18}{matmuls:>9.3f}{matmuls / steps * 1e6:>9.0f}{matmuls / epoch:>7.0%}"
          "  (replayed: part of forward and backward)")
    print(f"{'outside matmuls':<18}{epoch - matmuls:>9.3f}{(epoch - matmuls) / steps * 1e6:>9.0f}"
          f"{(epoch - matmuls) / epoch:>7.0%}")


if __name__ == "__main__":
    sys.exit(main())
