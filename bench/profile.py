"""Profile one jacnet ``fit`` epoch on the benchmark's data: ``python -m bench.profile``.

Runs a warm-up epoch, then one epoch under cProfile with the threads pinned as the suite pins
them, and prints the functions with the most time of their own. cProfile's per-call cost
inflates Python-heavy code, so read it for where time goes, not for absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import pstats
import sys

from bench._common import FULL, OPENBLAS_OVERRIDES, THREAD_VARS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--samples", type=int, default=FULL.n_samples)
    parser.add_argument("--threads", type=int, default=FULL.threads)
    parser.add_argument("--top", type=int, default=25, help="rows to print")
    parser.add_argument("--loop", action="store_true", help="profile the hand-written step loop, not fit")
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
    X, y = make_data(cfg)
    model = jacnet.build_mlp(cfg.n_features, list(cfg.hidden), cfg.n_classes, rng=0, dtype=np.float32)
    loss, opt = jacnet.SoftmaxCrossEntropy(), jacnet.SGD(lr=cfg.lr)
    rng = np.random.default_rng(0)

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


if __name__ == "__main__":
    sys.exit(main())
