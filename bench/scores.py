"""The README's "Results of ``jacnet train``" table, over several split seeds, with references.

Run it from the repository root with ``.venv/bin/python -m bench.scores`` (``--help`` lists the
options). For every row of :data:`ROWS` and every split seed it runs ``jacnet train --data NAME``
exactly as the command line does, with no option but the model where a row names one: the
data set's preset (:mod:`jacnet.presets`) supplies the rest. It then fits scikit-learn
references on the same split with the features standardised the same way (training-part
statistics), and for the CNN rows trains the same CNN in PyTorch (:mod:`bench.cnn_torch`). It
prints a Markdown report and writes it to ``docs/scores.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The rows of the table: ``--data`` name and the ``jacnet train`` options (only ``--model``:
#: every other setting is the data set's preset or the general default).
ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("digits", ()),
    ("breast_cancer", ()),  # two classes: the default loss is sigmoid-BCE
    ("wine", ()),
    ("iris", ()),
    ("diabetes", ()),
    ("friedman", ()),
    ("mnist1d", ("--model", "mlp")),
    ("mnist1d", ()),  # the default model for mnist1d: the CNN
    ("digits", ("--model", "cnn")),
)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
#: mnist1d has one fixed split (a seed moves only the initialisation and the shuffling): its
#: rows use the first three seeds, as the published figures' comparison does.
SEEDS_PER_DATA = {"mnist1d": 3}
DEFAULT_OUTPUT = Path("docs/scores.md")


@dataclass(frozen=True)
class Score:
    """The test scores of one dataset on one split seed (accuracy or R²)."""

    data: str
    seed: int
    task: str
    jacnet: float
    linear: float
    mlp: float
    seconds: float  # jacnet's training time, from metrics.json
    options: tuple[str, ...] = ()
    model: str = "mlp"  # what jacnet trained (metrics.json's "model")
    torch: float | None = None  # PyTorch on the same CNN (CNN rows only)
    torch_seconds: float | None = None


def run_jacnet(name: str, options: Sequence[str], seed: int) -> tuple[float, float]:
    """Run ``jacnet train`` in-process as the command line would; return (score, train seconds)."""
    score, seconds, _ = run_jacnet_metrics(name, options, seed)
    return score, seconds


def run_jacnet_metrics(name: str, options: Sequence[str], seed: int) -> tuple[float, float, dict[str, Any]]:
    """As :func:`run_jacnet`, with the whole ``metrics.json`` too."""
    from jacnet.cli import main as cli

    with tempfile.TemporaryDirectory() as out:
        argv = ["train", "--data", name, *options, "--seed", str(seed), "--quiet", "--out", out]
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            code = cli(argv)
        if code != 0:
            raise RuntimeError(f"jacnet {' '.join(argv)} exited with {code}:\n{captured.getvalue()}")
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    key = "test_accuracy" if metrics["task"] == "classification" else "test_r2"
    return float(metrics[key]), float(metrics["train_seconds"]), metrics


def run_references(name: str, seed: int) -> tuple[str, float, float]:
    """Fit the linear model and scikit-learn's MLP on the split of ``seed``.

    Returns
    -------
    task : str
        ``"classification"`` or ``"regression"``.
    linear, mlp : float
        Test accuracy (classification) or R² (regression) of ``LogisticRegression`` /
        ``LinearRegression`` and of ``MLPClassifier((256, 128))`` / ``MLPRegressor()``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    from jacnet.datasets import load, standardize

    data = load(name, seed=seed, standardize=False, dtype=np.float64)
    X_train, X_test, _, _ = standardize(data.X_train, data.X_test)
    models: tuple[Any, Any]
    if data.task == "classification":
        models = (LogisticRegression(max_iter=5000),
                  MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=500, random_state=seed))
    else:
        models = (LinearRegression(), MLPRegressor(max_iter=2000, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        linear, mlp = (float(m.fit(X_train, data.y_train).score(X_test, data.y_test)) for m in models)
    return data.task, linear, mlp


def _mean(values: Sequence[float]) -> str:
    return f"{statistics.fmean(values):.3f}"


def preset_text(name: str, model: str) -> str:
    """The preset ``jacnet train --data NAME --model MODEL`` applies, e.g. ``epochs 200``."""
    from jacnet.presets import PRESETS

    preset = PRESETS.get((name, model))
    if not preset:
        return "(defaults)"

    def value_text(value: Any) -> str:
        return ",".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}"

    return ", ".join(f"{key.replace('_', ' ')} {value_text(value)}" for key, value in preset.items())


def _label(name: str, options: Sequence[str]) -> str:
    return " ".join([name, *options])


def summary_table(scores: Sequence[Score]) -> list[str]:
    """One Markdown row per row of :data:`ROWS`: the first seed's scores, then mean ± sd and min
    over seeds; the PyTorch column only for the CNN rows."""
    first_seed = scores[0].seed if scores else 0
    lines = [f"| `--data` | metric | jacnet, seed {first_seed} | jacnet mean ± sd | jacnet min "
             f"| linear, seed {first_seed} | linear mean | sklearn MLP, seed {first_seed} "
             "| sklearn MLP mean | PyTorch, same CNN: mean ± sd | jacnet s | PyTorch s | model "
             "| preset |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, options in ROWS:
        rows = [s for s in scores if s.data == name and s.options == tuple(options)]
        if not rows:
            continue
        first, ours = rows[0], [s.jacnet for s in rows]
        sd = statistics.stdev(ours) if len(ours) > 1 else 0.0
        metric = "accuracy" if first.task == "classification" else "R²"
        theirs = [s.torch for s in rows if s.torch is not None]
        torch_text = torch_s = "—"
        if theirs:
            torch_sd = statistics.stdev(theirs) if len(theirs) > 1 else 0.0
            torch_text = f"{_mean(theirs)} ± {torch_sd:.3f}"
            torch_s = f"{statistics.median(s.torch_seconds or 0.0 for s in rows):.1f}"
        lines.append(f"| {_label(name, options)} | {metric} | {first.jacnet:.3f} | {_mean(ours)} ± "
                     f"{sd:.3f} | {min(ours):.3f} | {first.linear:.3f} | "
                     f"{_mean([s.linear for s in rows])} | {first.mlp:.3f} | "
                     f"{_mean([s.mlp for s in rows])} | {torch_text} | "
                     f"{statistics.median(s.seconds for s in rows):.1f} | {torch_s} | {first.model} | "
                     f"{preset_text(name, first.model)} |")
    return lines


def detail_table(scores: Sequence[Score]) -> list[str]:
    """One Markdown row per row of :data:`ROWS` and seed."""
    lines = ["| `--data` | seed | jacnet | linear | sklearn MLP | PyTorch | jacnet s | PyTorch s |",
             "|---|---|---|---|---|---|---|---|"]
    for s in scores:
        torch_text = "—" if s.torch is None else f"{s.torch:.3f}"
        torch_s = "—" if s.torch_seconds is None else f"{s.torch_seconds:.1f}"
        lines.append(f"| {_label(s.data, s.options)} | {s.seed} | {s.jacnet:.3f} | {s.linear:.3f} | "
                     f"{s.mlp:.3f} | {torch_text} | {s.seconds:.1f} | {torch_s} |")
    return lines


def report(scores: Sequence[Score], command: str, seeds: Sequence[int], seconds: float,
           load: tuple[float, float]) -> str:
    """The whole Markdown report: header paragraph, summary table, per-seed table.

    ``seconds`` is the run's wall time, ``load`` the 1-minute load average at its start and end.
    """
    import sklearn

    seed_list = ", ".join(map(str, seeds))
    header = f"""# Results of `jacnet train`, over split seeds, with scikit-learn references

Generated by `{command}` on {datetime.date.today().isoformat()} ({os.cpu_count()} cores,
NumPy {np.__version__}, scikit-learn {sklearn.__version__}; the whole run took {seconds:.0f} s, load
average {load[0]:.1f} at its start and {load[1]:.1f} at its end: other jobs on shared cores slow the
training times, never the scores, which are deterministic).
Split seeds: {seed_list}. For each seed, `jacnet train --data NAME [--model MODEL] --seed SEED` runs
as on the command line, with no other option: the data set's preset (`jacnet.presets`, shown in
the *preset* column) or the general defaults supply every setting. The seed fixes the 80/20
split (stratified for classification), the initial weights and the shuffling. The references
are fitted on the same split, with the features standardised by the training part's mean and
standard deviation as `jacnet train` does for an MLP (in float64; jacnet trains in float32).
Scores are test accuracy (classification) or test R² (regression). mnist1d has one fixed
4000/1000 split: there the seed changes only the initialisation and shuffling, and its rows use
the first {SEEDS_PER_DATA["mnist1d"]} seeds. mnist1d's default model is the CNN (`--model cnn`).

Columns: *seed 0* is the default split (the first seed listed); *mean ± sd* and *min* are over
the seeds (sd: sample standard deviation); *linear* is `LogisticRegression(max_iter=5000)` or
`LinearRegression()`; *sklearn MLP* is `MLPClassifier(hidden_layer_sizes=(256, 128),
max_iter=500, random_state=SEED)` or `MLPRegressor(max_iter=2000, random_state=SEED)`, defaults
otherwise; *PyTorch, same CNN* (CNN rows only) is `bench.cnn_torch`: the same architecture,
initial weights, standardisation, training rows, optimizer settings, epochs and threads in
PyTorch CPU eager; *jacnet s* and *PyTorch s* are training times in seconds (`train_seconds` of
`metrics.json`; the median over the seeds in the first table) on this shared machine.
"""
    return "\n".join([header, *summary_table(scores), "", "## Per seed", "",
                      *detail_table(scores), ""])


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expects comma-separated integers >= 0, got {text!r}")
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected rows over the seeds, print the report and (unless --no-write) write it."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.scores",
        description="jacnet train scores over split seeds, with scikit-learn references.")
    parser.add_argument("--seeds", type=_seeds, default=DEFAULT_SEEDS, metavar="S[,S]",
                        help="split seeds (default: 0,1,2,3,4)")
    parser.add_argument("--only", default=None, metavar="NAME[,NAME]", help="only these datasets")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default: {DEFAULT_OUTPUT}")
    parser.add_argument("--no-write", action="store_true", help="only print the report")
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(name for name, _ in ROWS))
    only = names if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    if not only or set(only) - set(names):
        parser.error(f"--only expects names among {','.join(names)}, got {args.only!r}")
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    scores: list[Score] = []
    references: dict[tuple[str, int], tuple[str, float, float]] = {}
    for name, options in ROWS:
        if name not in only:
            continue
        for seed in args.seeds[:SEEDS_PER_DATA.get(name, len(args.seeds))]:
            ours, seconds, metrics = run_jacnet_metrics(name, options, seed)
            if (name, seed) not in references:  # the same split for every row of a data set
                references[name, seed] = run_references(name, seed)
            task, linear, mlp = references[name, seed]
            theirs = theirs_s = None
            if metrics["model"] == "cnn":
                from bench.cnn_torch import torch_cnn

                theirs, theirs_s = torch_cnn(name, seed)
            scores.append(Score(name, seed, task, ours, linear, mlp, seconds, tuple(options),
                                metrics["model"], theirs, theirs_s))
            print(f"{_label(name, options)} seed {seed}: jacnet {ours:.3f}, linear {linear:.3f}, "
                  f"sklearn MLP {mlp:.3f}" + ("" if theirs is None else f", PyTorch {theirs:.3f}")
                  + f" ({time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f})",
                  file=sys.stderr, flush=True)
    command = " ".join([".venv/bin/python -m bench.scores", *(argv if argv is not None else sys.argv[1:])])
    text = report(scores, command, args.seeds, time.perf_counter() - started,
                  (load_start, os.getloadavg()[0]))
    print(text, end="")
    if not args.no_write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
