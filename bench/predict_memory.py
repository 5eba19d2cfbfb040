"""Peak memory of ``jacnet predict`` on a large CSV: bounded by the chunk, not by the file.

Writes a CSV of ``--rows`` rows of 4 features, trains nothing (a fresh 4-256-128-3 network
with class labels in its metadata), then runs ``jacnet predict`` in a fresh process per file
size and reports its peak RSS (``ru_maxrss``) and the ``tracemalloc`` peak of the same
predict run in-process::

    python -m bench.predict_memory --rows 1000000
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def _csv(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    with path.open("w") as handle:
        handle.write("a,b,c,d\n")
        for start in range(0, rows, 100_000):
            block = rng.normal(5.0, 2.0, (min(100_000, rows - start), 4))
            np.savetxt(handle, block, fmt="%.4f", delimiter=",")


def _rss_of(argv: list[str]) -> tuple[float, float]:
    """Peak RSS in MB and seconds of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(after, before) / 1024, seconds


def main(argv: list[str] | None = None) -> int:
    import jacnet
    from jacnet.io import load_checkpoint, save
    from jacnet.tabular import Encoder, iter_csv_chunks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = jacnet.build_mlp(4, [256, 128], 3, rng=0)
        model.loss = jacnet.SoftmaxCrossEntropy()
        save(model, root / "m.jacnet", metadata={"feature_names": ["a", "b", "c", "d"],
                                                  "class_labels": ["x", "y", "z"]})
        cli = [sys.executable, "-m", "jacnet.cli", "predict", str(root / "m.jacnet")]
        for rows in (1, args.rows // 10, args.rows):  # each in a fresh process, smallest first
            _csv(root / "in.csv", rows)
            rss, seconds = _rss_of([*cli, str(root / "in.csv"), "--output", str(root / "out.csv")])
            lines = sum(1 for _ in (root / "out.csv").open())
            print(f"{rows:>9,} rows: peak RSS {rss:6.1f} MB, {seconds:5.1f} s, {lines - 1:,} output rows")
        checkpoint = load_checkpoint(root / "m.jacnet")
        encoder = Encoder.from_metadata(checkpoint.metadata, 4)
        tracemalloc.start()
        for _, X in iter_csv_chunks(root / "in.csv", encoder, chunk_rows=16384):
            checkpoint.model.predict_proba(X, batch_size=4096)
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        print(f"tracemalloc peak of reading and predicting {args.rows:,} rows in chunks of 16,384: "
              f"{peak:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
