"""Run the benchmark suite: ``python -m bench.run`` from the repository root.

Every measurement runs in its own fresh process (``bench.worker``) with the thread counts
pinned the same for all systems; the systems are alternated within each of ``--rounds``
rounds, every training process discards a warm-up epoch, and the report gives medians over
the rounds with their spread (min–max). The report is printed and written as Markdown
(``bench/results.md`` by default; the README's results block is refreshed from a full run).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import FULL, TINY, Config, child_env, forward_flops, layer_shapes, train_flops

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results.md"
README = ROOT / "README.md"
README_START, README_END = "<!-- bench-results:start -->", "<!-- bench-results:end -->"

#: float32 training systems, in the order the tables list them.
TRAIN = ("jacnet", "jacnet-fit", "numpy", "jacnet-torch", "torch", "torch-closed", "thinc", "thinc-numpy",
         "sklearn")
#: float64 training systems (run at batch 128).
F64 = ("jacnet-f64", "sklearn-f64")
SYSTEMS = TRAIN + F64
#: The systems that run on ``--device`` (the others always run on the CPU).
DEVICE_SYSTEMS = ("jacnet-torch", "torch", "torch-closed")
#: The wider network a ``--device cuda`` run adds, where a GPU is busy (tiny: a small stand-in).
WIDE, TINY_WIDE = (4096, 4096), (64, 64)
LABELS = {
    "jacnet": "jacnet step loop",
    "jacnet-fit": "jacnet `fit`",
    "numpy": "NumPy loop",
    "jacnet-torch": "jacnet `fit`, torch backend",
    "torch": "PyTorch eager",
    "torch-closed": "torch closed forms",
    "thinc": "thinc (BLIS)",
    "thinc-numpy": "thinc (NumPy matmul)",
    "sklearn": "scikit-learn float32",
    "jacnet-f64": "jacnet step loop float64",
    "sklearn-f64": "scikit-learn float64",
    "jacnet-predict": "jacnet `model.predict`",
    "jacnet-forward": "jacnet `model.forward`",
    "jacnet-torch-predict": "jacnet `model.predict`, torch backend",
}
#: Which package each system needs besides NumPy.
NEEDS = {"torch": "torch", "torch-closed": "torch", "jacnet-torch": "torch", "thinc": "thinc",
         "thinc-numpy": "thinc",
         "sklearn": "sklearn", "sklearn-f64": "sklearn"}
#: How to install each of them (the pins are the bench extra's).
INSTALL = {"torch": "pip install torch==2.13.0", "thinc": "pip install thinc==9.1.1",
           "sklearn": "pip install scikit-learn"}
F64_BATCH = 128
MB = 1e6


@dataclass(frozen=True)
class Job:
    task: str  # train, infer, peak, memory
    system: str = ""
    batch: int = 0

    def describe(self) -> str:
        parts = [self.task, self.system, f"batch {self.batch}" if self.batch else ""]
        return " ".join(p for p in parts if p)


@dataclass
class Results:
    cfg: Config
    rounds: int
    batches: list[int]
    systems: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    runs: dict[Job, list[dict[str, Any]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)  # 1-minute load average before each job
    wall_seconds: float = 0.0

    def per_round(self, job: Job, key: str = "seconds") -> list[float | None]:
        """One value per round (the median of that process's timings); None where it failed."""
        values: list[float | None] = []
        for run in self.runs.get(job, []):
            value = run.get(key)
            if isinstance(value, list):
                values.append(statistics.median(value) if value else None)
            else:
                values.append(None if value is None else float(value))
        return values


# Running -----------------------------------------------------------------------------------


def available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def run_worker(job: Job, cfg: Config, timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, "-m", "bench.worker", "--task", job.task, "--config", cfg.to_json()]
    if job.system:
        cmd += ["--system", job.system]
    if job.batch:
        cmd += ["--batch", str(job.batch)]
    env = child_env(cfg.threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH"))
                                        if p)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{job.describe()} failed (exit {proc.returncode}): " + " | ".join(tail))
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def rotate(items: Sequence[str], k: int) -> list[str]:
    if not items:
        return []
    k %= len(items)
    return [*items[k:], *items[:k]]


def plan(res: Results) -> list[list[Job]]:
    """The jobs of each round, systems alternated (rotated by one each round)."""
    train = [s for s in TRAIN if s in res.systems]
    f64 = [s for s in F64 if s in res.systems]
    infer = []
    if "jacnet" in res.systems or "jacnet-fit" in res.systems:
        infer += ["jacnet-predict", "jacnet-forward"]
    if "jacnet-torch" in res.systems:
        infer.append("jacnet-torch-predict")
    if "torch" in res.systems:
        infer.append("torch")
    rounds = []
    for r in range(res.rounds):
        jobs = []
        if any(s.startswith("jacnet") for s in res.systems):
            jobs.append(Job("peak"))
        for batch in res.batches:
            jobs += [Job("train", s, batch) for s in rotate(train, r)]
        jobs += [Job("train", s, f64_batch(res.batches)) for s in rotate(f64, r)]
        jobs += [Job("infer", s) for s in rotate(infer, r)]
        rounds.append(jobs)
    if "jacnet-fit" in res.systems:
        rounds[-1].append(Job("memory"))  # once: a fresh process's peak needs no rounds
    return rounds


def f64_batch(batches: Sequence[int]) -> int:
    return F64_BATCH if F64_BATCH in batches else batches[0]


def execute(res: Results, timeout: float) -> None:
    start = time.perf_counter()
    schedule = plan(res)
    total = sum(len(jobs) for jobs in schedule)
    done = 0
    for r, jobs in enumerate(schedule):
        for job in jobs:
            done += 1
            t0 = time.perf_counter()
            if hasattr(os, "getloadavg"):
                res.loads.append(os.getloadavg()[0])
            try:
                result = run_worker(job, res.cfg, timeout)
            except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
                res.failures.append(str(exc))
                result = {"error": str(exc)}
            res.runs.setdefault(job, []).append(result)
            note = result.get("error") or _brief(result)
            print(f"[{done}/{total}] round {r + 1}: {job.describe()}: {note} "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    res.wall_seconds = time.perf_counter() - start


def _brief(result: dict[str, Any]) -> str:
    if "seconds" in result:
        return f"{statistics.median(result['seconds']):.4g} s"
    if "workload" in result:
        return f"{result['workload']['gflops']:.1f} GFLOP/s"
    if "rss_above_data" in result:
        return f"{result['rss_above_data'] / MB:.1f} MB above data"
    return "done"


# Statistics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat | None:
        vals = [v for v in values if v is not None]
        return cls(statistics.median(vals), min(vals), max(vals)) if vals else None


def med(stat: Stat | None) -> float | None:
    return None if stat is None else stat.median


def per_second(amount: float, seconds: Stat | None) -> float | None:
    """``amount`` per second of the median time."""
    return None if seconds is None else amount / seconds.median


def paired(a: Sequence[float | None], b: Sequence[float | None]) -> Stat | None:
    """Median and spread of the per-round ratios ``a / b`` (rounds where both ran)."""
    return Stat.of([x / y for x, y in zip(a, b, strict=False) if x is not None and y is not None and y > 0])


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:,.0f}"


def fmt_stat(s: Stat | None, digits: int = 3) -> tuple[str, str]:
    if s is None:
        return "–", "–"
    return fmt(s.median, digits), f"{fmt(s.low, digits)}–{fmt(s.high, digits)}"


# Report ------------------------------------------------------------------------------------


@dataclass
class Timing:
    """One job's per-round times as a table row shows them."""

    stat: Stat | None  # median and spread of the rounds
    median: str  # the two formatted, in ``scale`` units
    spread: str
    ratio: Stat | None  # per-round ratio to the table's baseline job


def timing(res: Results, job: Job, base: list[float | None], scale: float = 1.0) -> Timing | None:
    """The timing of ``job`` against the per-round times ``base``; None when it did not run."""
    if job not in res.runs:
        return None
    times = res.per_round(job)
    stat = Stat.of(times)
    shown = Stat(stat.median * scale, stat.low * scale, stat.high * scale) if stat else None
    return Timing(stat, *fmt_stat(shown), paired(times, base))


def peak_gflops(res: Results) -> Stat | None:
    values = [r["workload"]["gflops"] if "workload" in r else None for r in res.runs.get(Job("peak"), [])]
    return Stat.of(values)


def train_baseline(res: Results) -> str:
    """The system the training table's ratios are to: jacnet's step loop, else the first run."""
    ran = [s for s in TRAIN if s in res.systems]
    return "jacnet" if "jacnet" in ran or not ran else ran[0]


def train_table(res: Results, peak: Stat | None) -> list[str]:
    cfg = res.cfg
    baseline = train_baseline(res)
    short = "jacnet" if baseline == "jacnet" else LABELS[baseline]
    rows = [f"| batch | system | s/epoch (median) | spread (min–max) | samples/s | × {short} "
            "| GFLOP/s | % of matmul peak | accuracy |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    flops = train_flops(cfg)
    for batch in res.batches:
        base = res.per_round(Job("train", baseline, batch))
        for system in TRAIN:
            job = Job("train", system, batch)
            t = timing(res, job, base)
            if t is None:
                continue
            gflops = flops / t.stat.median / 1e9 if t.stat else None
            share = gflops / peak.median * 100 if gflops and peak else None
            acc = Stat.of(res.per_round(job, "accuracy"))
            rows.append(f"| {batch} | {LABELS[system]} | {t.median} | {t.spread} | "
                        f"{fmt(per_second(cfg.n_samples, t.stat))} | "
                        f"{fmt(med(t.ratio))} | {fmt(gflops)} | {_share(share)} | "
                        f"{fmt(med(acc), 3)} |")
    return rows


def matmul_table(res: Results) -> list[str]:
    rows = ["| batch | matmuls alone, s/epoch | outside matmuls: step loop | outside matmuls: `fit` "
            "| `fit` / step loop | `fit` / NumPy loop | `fit` call overhead (s) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for batch in res.batches:
        step = Job("train", "jacnet", batch)
        if step not in res.runs:
            continue
        mm = res.per_round(step, "matmul_seconds")
        fit = res.per_round(Job("train", "jacnet-fit", batch))
        step_share = paired(mm, res.per_round(step))
        fit_share = paired(mm, fit)
        fit_ratio = paired(fit, res.per_round(step))
        fit_numpy = paired(fit, res.per_round(Job("train", "numpy", batch)))
        overhead = Stat.of([None if t is None or e is None else t - e for t, e in
                            zip(fit, res.per_round(Job("train", "jacnet-fit", batch), "epoch_seconds"),
                                strict=False)])
        rows.append(
            f"| {batch} | {fmt(med(Stat.of(mm)))} | "
            f"{_pct(None if step_share is None else 1 - step_share.median)} | "
            f"{_pct(None if fit_share is None else 1 - fit_share.median)} | "
            f"{fmt(med(fit_ratio))} | {fmt(med(fit_numpy))} | "
            f"{fmt(med(overhead))} |")
    return rows


def _share(percent: float | None) -> str:
    return "–" if percent is None else f"{fmt(percent, 2)}%"


def thinc_note(res: Results) -> list[str]:
    """What thinc computes beyond the FLOPs counted: its first layer's ``dX``."""
    if not any(s.startswith("thinc") for s in res.systems):
        return []
    a, b = layer_shapes(res.cfg)[0]
    extra = 2 * res.cfg.n_samples * a * b
    return [f"thinc's layers always return their input gradient, so it also computes the first "
            f"layer's `dX`: {extra / 1e9:.1f} GFLOP more per epoch (+{extra / train_flops(res.cfg):.0%}) "
            "than the products its GFLOP/s counts. thinc (BLIS) multiplies with the BLIS that "
            "`NumpyOps` uses by default, single-threaded whatever the thread settings; thinc "
            "(NumPy matmul) is `NumpyOps(use_blis=False)`, NumPy's BLAS with the suite's threads."]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def f64_table(res: Results) -> list[str]:
    batch = f64_batch(res.batches)
    rows = ["| batch | system | s/epoch (median) | spread (min–max) | samples/s | × jacnet float64 "
            "| accuracy | its matmuls alone, s/epoch |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    base = res.per_round(Job("train", "jacnet-f64", batch))
    for system in F64:
        job = Job("train", system, batch)
        t = timing(res, job, base)
        if t is None:
            continue
        acc = Stat.of(res.per_round(job, "accuracy"))
        matmuls = Stat.of(res.per_round(job, "matmul_seconds"))
        rows.append(f"| {batch} | {LABELS[system]} | {t.median} | {t.spread} | "
                    f"{fmt(per_second(res.cfg.n_samples, t.stat))} | "
                    f"{fmt(med(t.ratio))} | {fmt(med(acc))} | {fmt(med(matmuls))} |")
    return rows


def infer_table(res: Results) -> list[str]:
    cfg = res.cfg
    rows = [f"| system (batch {cfg.infer_batch:,}) | ms per batch (median) | spread (min–max) "
            "| samples/s | × jacnet `predict` | GFLOP/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    base = res.per_round(Job("infer", "jacnet-predict"))
    for system in ("jacnet-predict", "jacnet-forward", "jacnet-torch-predict", "torch"):
        t = timing(res, Job("infer", system), base, scale=1e3)  # shown in ms
        if t is None:
            continue
        label = LABELS.get(system, "PyTorch `inference_mode`")
        gflops = forward_flops(cfg, cfg.infer_batch) / t.stat.median / 1e9 if t.stat else None
        rows.append(f"| {label} | {t.median} | {t.spread} | "
                    f"{fmt(per_second(cfg.infer_batch, t.stat))} | "
                    f"{fmt(med(t.ratio))} | {fmt(gflops)} |")
    return rows


def memory_lines(res: Results) -> list[str]:
    runs = [r for r in res.runs.get(Job("memory"), []) if "data_bytes" in r]
    if not runs:
        return []
    m = runs[-1]
    return [
        "| data (X float32 + y int64) | peak RSS above data | traced NumPy peak during `fit` "
        "| process peak RSS | batch |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {m['data_bytes'] / MB:.1f} MB | {m['rss_above_data'] / MB:.1f} MB | "
        f"{m['traced_above_start'] / MB:.1f} MB | {m['rss_peak_fit'] / MB:.1f} MB | {m['batch_size']} |",
    ]


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None
    limit: float
    unit: str = "×"
    #: For a ratio to another system: the ratio if jacnet's epoch were its matrix products
    #: alone (nothing else at all), the floor no change outside the matmuls can go below.
    floor: float | None = None
    issue: int = 5  # the issue that set it

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "n/a"
        return "PASS" if self.value <= self.limit else "FAIL"

    def row(self) -> str:
        if self.unit == "×":
            shown, limit = fmt(self.value), f"≤ {self.limit:g}"
        elif self.unit == "%":
            shown, limit = _pct(self.value), f"≤ {100 * self.limit:.0f}%"
        else:
            shown = "–" if self.value is None else f"{self.value:.1f} {self.unit}"
            limit = f"≤ {self.limit:g} {self.unit}"
        floor = "" if self.floor is None else fmt(self.floor)
        return f"| {self.name} | {shown} | {limit} | **{self.verdict}** | {floor} | {self.issue} |"


def targets(res: Results) -> list[Target]:
    """Issues 5's and 14's targets, as ratios of this run's measurements (medians of per-round
    ratios)."""
    def ratio(a: Job, b: Job) -> float | None:
        s = paired(res.per_round(a), res.per_round(b))
        return med(s)

    def jac(batch: int) -> Job:
        return Job("train", "jacnet", batch)

    def floor(mine: Job, b: Job) -> float | None:
        return med(paired(res.per_round(mine, "matmul_seconds"), res.per_round(b)))

    out = []
    for batch, other, limit in ((128, "torch", 0.80), (128, "sklearn", 0.50), (32, "torch", 0.80),
                                (512, "torch", 1.0)):
        if batch in res.batches:
            theirs = Job("train", other, batch)
            out.append(Target(f"batch {batch}: jacnet epoch / {LABELS[other]}",
                              ratio(jac(batch), theirs), limit, floor=floor(jac(batch), theirs)))
    for batch in res.batches:
        out.append(Target(f"batch {batch}: `fit` epoch / step-loop epoch",
                          ratio(Job("train", "jacnet-fit", batch), jac(batch)), 1.10))
    for batch in res.batches:
        fit, loop = Job("train", "jacnet-fit", batch), Job("train", "numpy", batch)
        out.append(Target(f"batch {batch}: `fit` epoch / NumPy loop", ratio(fit, loop), 0.95,
                          floor=floor(jac(batch), loop), issue=14))
    # On the CPU the closed forms must beat autograd by a margin; on a GPU, match it.
    on_cpu = res.cfg.device == "cpu"
    for batch, limit in ((128, 0.85), (32, 0.60), (512, 0.95)) if on_cpu else (
            (b, 1.0) for b in res.batches):
        mine, theirs = Job("train", "jacnet-torch", batch), Job("train", "torch", batch)
        if batch in res.batches and mine in res.runs:
            out.append(Target(f"batch {batch}: `fit` on the torch backend / {LABELS['torch']}",
                              ratio(mine, theirs), limit, issue=14))
    for batch in res.batches:
        out.append(Target(f"batch {batch}: step-loop epoch (as the docs teach it) / `fit` epoch",
                          ratio(jac(batch), Job("train", "jacnet-fit", batch)), 1.05, issue=14))
    for batch in res.batches:
        epoch = Job("train", "jacnet-fit", batch)
        if epoch not in res.runs:
            epoch = jac(batch)
        share = paired(res.per_round(jac(batch), "matmul_seconds"), res.per_round(epoch))
        label = "`fit`" if epoch.system == "jacnet-fit" else "step-loop"
        out.append(Target(f"batch {batch}: time outside matrix products, share of a {label} epoch",
                          None if share is None else 1 - share.median, 0.25, "%"))
    out.append(Target(f"inference, batch {res.cfg.infer_batch:,}: jacnet `predict` / "
                      "PyTorch `inference_mode`",
                      ratio(Job("infer", "jacnet-predict"), Job("infer", "torch")), 1.0))
    mem = [r for r in res.runs.get(Job("memory"), []) if "rss_above_data" in r]
    out.append(Target("`fit` peak memory above the data's size (RSS)",
                      mem[-1]["rss_above_data"] / MB if mem else None, 150, "MB"))
    b = f64_batch(res.batches)
    mine, theirs = Job("train", "jacnet-f64", b), Job("train", "sklearn-f64", b)
    out.append(Target(f"batch {b}: jacnet float64 epoch / scikit-learn float64",
                      ratio(mine, theirs), 0.60, floor=floor(mine, theirs)))
    return out


def environment(runs: Sequence[Results]) -> dict[str, Any]:
    """Versions, thread pools and GPUs, as the workers reported them."""
    versions: dict[str, Any] = {}
    pools: dict[str, str] = {}
    gpus: dict[str, dict[str, Any]] = {}
    for res in runs:
        for results in res.runs.values():
            for run in results:
                versions.update(run.get("versions", {}))
                for pool in run.get("blas", []):
                    words = (pool.get("internal_api"), pool.get("version"), pool.get("architecture"))
                    desc = " ".join(str(w) for w in words if w) + f", {pool.get('num_threads')} threads"
                    pools[str(pool.get("filepath"))] = desc
                if run.get("gpu"):
                    gpus[run["gpu"]["name"]] = run["gpu"]
    return {"versions": versions, "pools": pools, "gpus": gpus}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _widths(cfg: Config) -> str:
    return "-".join(str(w) for w in cfg.widths)


def device_line(cfg: Config, gpus: dict[str, dict[str, Any]]) -> str:
    """Where the PyTorch systems ran (the others always run on the CPU)."""
    if cfg.device == "cpu":
        return "Device: the CPU, for every system."
    names = ", ".join(f"{name} (CUDA {g.get('cuda')}, float32 matmul precision "
                      f"`{g.get('float32_matmul_precision')}`)" for name, g in gpus.items())
    names = names or f"`{cfg.device}` (no measurement reported its name)"
    return (f"Device: PyTorch eager and the torch closed forms ran on {names}; the data was moved to "
            "the GPU before the clock started, and every timing starts and stops after "
            "`torch.cuda.synchronize()`. The systems without a GPU path were not run.")


def sections(res: Results) -> list[str]:
    """The tables of one network's measurements."""
    cfg = res.cfg
    peak = peak_gflops(res)
    lines: list[str] = []
    if peak:
        lines += [f"Matrix-multiply peak (float32 `np.matmul`, {'×'.join(map(str, _peak_shape(res)))}, "
                  f"best of 5 blocks, median over rounds): **{peak.median:.1f} GFLOP/s** "
                  f"(spread {peak.low:.1f}–{peak.high:.1f}; {cfg.peak_square}² for reference: "
                  f"{fmt(_square_peak(res))} GFLOP/s). One epoch's matrix products are "
                  f"{train_flops(cfg) / 1e9:.1f} GFLOP.", ""]
    else:
        lines += [f"One epoch's matrix products are {train_flops(cfg) / 1e9:.1f} GFLOP.", ""]
    lines += ["### Training, float32", "", *train_table(res, peak), ""]
    lines += [*(n for note in thinc_note(res) for n in (note, ""))]
    mm = matmul_table(res)
    if len(mm) > 2:
        lines += ["### Where jacnet's epoch goes", "",
                  "The matrix products of one epoch replayed alone (same shapes and layouts, "
                  "preallocated outputs, in the step loop's process) against the whole epoch:", "", *mm, ""]
    f64 = f64_table(res)
    if len(f64) > 2:
        lines += ["### Training, float64", "", *f64, ""]
    inf = infer_table(res)
    if len(inf) > 2:
        lines += ["### Inference", "", *inf, ""]
    mem = memory_lines(res)
    if mem:
        lines += ["### Peak memory of `fit`", "",
                  f"A fresh process, `fit` for one epoch on the {cfg.n_samples:,} × {cfg.n_features} "
                  "float32 set; RSS measured with `ru_maxrss` above the process's peak once the data "
                  "exists, NumPy allocations with `tracemalloc` (a second `fit`).", "", *mem, ""]
    if any(s.startswith("jacnet") for s in res.systems):
        lines += ["### Targets (issues 5 and 14)", "",
                  "*Floor*: for a ratio to another system, the ratio jacnet would reach if its epoch "
                  "were its matrix products alone (replayed as above); a limit below the floor cannot "
                  "be met by any change outside the matrix products.", "",
                  "| target | measured | limit | verdict | floor | issue |",
                  "| --- | ---: | ---: | --- | ---: | ---: |", *(t.row() for t in targets(res)), ""]
    return lines


def report(runs: Sequence[Results], command: str) -> str:
    """The Markdown report of one run: one part per network measured."""
    first = runs[0]
    cfg = first.cfg
    env = environment(runs)
    loads = [x for res in runs for x in res.loads]
    nets = " and ".join(f"a {_widths(res.cfg)}" for res in runs)
    lines = [
        "# jacnet benchmark results",
        "",
        f"Reproduce with `{command}` (it took {_duration(sum(r.wall_seconds for r in runs))} here). "
        f"Workload: {nets} ReLU MLP, softmax cross-entropy, plain SGD (lr {cfg.lr:g}), "
        f"one epoch over {cfg.n_samples:,} synthetic samples; {cfg.threads} threads for every system; "
        f"{first.rounds} round(s), systems alternated, each measurement in its own process after "
        f"{cfg.warmup} discarded warm-up epoch(s); medians over the rounds with their spread (min–max). "
        "× jacnet is the median of the per-round ratios of a system's time to jacnet's step loop "
        "(above 1: slower than jacnet; without jacnet, to the table's first system).",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs. "
        + ", ".join(f"{k} {v}" for k, v in sorted(env["versions"].items())) + ".",
        "",
        device_line(cfg, env["gpus"]),
        "",
        "Thread pools (threadpoolctl): " + "; ".join(f"`{k}`: {v}" for k, v in sorted(env["pools"].items()))
        + ". OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset in the workers.",
        "",
    ]
    if loads:
        cpus = os.cpu_count() or 1
        lines += [f"Load average (1 min) before each measurement: {min(loads):.1f}–{max(loads):.1f} "
                  f"on {cpus} CPUs (a measurement's own threads add up to {cfg.threads}).", ""]
        if max(loads) > cpus + 1:
            lines += ["**Warning: other processes competed for the CPUs during this run; its timings "
                      "and ratios are unreliable. Rerun on a quiet machine.**", ""]
    if first.skipped:
        lines += [f"Skipped: {', '.join(f'{LABELS.get(k, k)} ({v})' for k, v in first.skipped.items())}.", ""]
    for res in runs:
        if len(runs) > 1:
            lines += [f"## The {_widths(res.cfg)} network", ""]
        lines += sections(res)
    failures = [f for res in runs for f in res.failures]
    if failures:
        lines += ["### Failures", "", *(f"- {f}" for f in failures), ""]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _peak_shape(res: Results) -> list[int]:
    for r in res.runs.get(Job("peak"), []):
        if "workload" in r:
            return list(r["workload"]["shape"])
    return []


def _square_peak(res: Results) -> float | None:
    stat = Stat.of([r["square"]["gflops"] if "square" in r else None
                    for r in res.runs.get(Job("peak"), [])])
    return med(stat)


def update_readme(body: str) -> bool:
    """Replace the README's results block (between the markers) with ``body``; False if absent."""
    if not README.exists():
        return False
    text = README.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    README.write_text(f"{head}{README_START}\n{body.strip()}\n{README_END}{tail}")
    return True


# Command line ------------------------------------------------------------------------------


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in _csv(text)]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expects comma-separated positive integers, got {text!r}")
    return values


def cuda_problem(device: str) -> str | None:
    """Why ``--device`` cannot run here (one line), or None when it can."""
    if device == "cpu":
        return None
    if not available("torch"):
        return f"--device {device} expects PyTorch built with CUDA, got no importable torch"
    import torch  # only here: the parent measures nothing, and a CPU run never needs it

    if not torch.cuda.is_available():
        return (f"--device {device} expects a CUDA GPU that PyTorch can use, got none "
                f"(torch {torch.__version__}: torch.cuda.is_available() is False)")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true",
                        help="a seconds-long configuration (512 samples, small layers, 1 round, no "
                             "warm-up) that checks the suite works; its times mean nothing")
    parser.add_argument("--rounds", type=int, help="rounds of alternated measurements (default 5; tiny 1)")
    parser.add_argument("--systems", type=_csv,
                        help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all; with "
                             f"--device cuda: {','.join(DEVICE_SYSTEMS)})")
    parser.add_argument("--batch-sizes", type=_positive_ints,
                        help="comma-separated batch sizes (default 32,128,512; tiny 64)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help=f"where {' and '.join(LABELS[s] for s in DEVICE_SYSTEMS)} run (default cpu); "
                             "cuda runs only them, on the reference network and a wider one")
    parser.add_argument("--hidden", type=_positive_ints, action="append",
                        help="hidden layer widths of the network, e.g. 4096,4096; repeat the option to "
                             "measure several networks (default 256,128, and with --device cuda also "
                             f"{','.join(map(str, WIDE))}; tiny {','.join(map(str, TINY.hidden))})")
    parser.add_argument("--threads", type=int, default=2, help="threads for every system (default 2)")
    parser.add_argument("--out", type=Path,
                        help=f"Markdown report path (default {DEFAULT_OUT.relative_to(ROOT)}, with raw "
                             "results beside it as .json; a tiny run writes none unless given)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per measurement")
    args = parser.parse_args(argv)

    on_device = args.device != "cpu"
    requested = args.systems if args.systems is not None else list(DEVICE_SYSTEMS if on_device else SYSTEMS)
    unknown = [s for s in requested if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {unknown}; choose from {','.join(SYSTEMS)}")
    if on_device and any(s not in DEVICE_SYSTEMS for s in requested):
        parser.error(f"--device {args.device} runs only {','.join(DEVICE_SYSTEMS)}, got "
                     f"{[s for s in requested if s not in DEVICE_SYSTEMS]}")
    problem = cuda_problem(args.device)
    if problem:
        print(f"python -m bench.run: {problem}", file=sys.stderr)
        return 2
    base = TINY if args.tiny else FULL
    rounds = args.rounds if args.rounds is not None else (1 if args.tiny else 5)
    batches = args.batch_sizes or ([64] if args.tiny else [32, 128, 512])
    if rounds < 1:
        parser.error(f"--rounds expects a positive integer, got {rounds}")
    hiddens = [tuple(h) for h in args.hidden] if args.hidden else (
        [base.hidden, TINY_WIDE if args.tiny else WIDE] if on_device else [base.hidden])
    systems = [s for s in SYSTEMS if s in requested]
    skipped: dict[str, str] = {}
    for system in list(systems):
        module = NEEDS.get(system)
        if module and not available(module):
            skipped[system] = f"{module} is not importable; {INSTALL[module]}"
            systems.remove(system)
    for system, why in skipped.items():
        print(f"note: skipping {LABELS[system]}: {why}", flush=True)

    runs = []
    for hidden in hiddens:
        cfg = dataclasses.replace(base, threads=args.threads, device=args.device, hidden=hidden)
        res = Results(cfg, rounds, batches, list(systems), dict(skipped))
        if len(hiddens) > 1:
            print(f"network {_widths(cfg)}:", file=sys.stderr, flush=True)
        execute(res, args.timeout)
        runs.append(res)

    command = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
    text = report(runs, command)
    print(text, flush=True)
    failed = any(res.failures for res in runs)
    out = args.out if args.out is not None else (None if args.tiny else DEFAULT_OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        raw = {"config": dataclasses.asdict(runs[0].cfg), "rounds": rounds, "batches": batches,
               "skipped": skipped, "wall_seconds": sum(res.wall_seconds for res in runs),
               "workloads": [{"config": dataclasses.asdict(res.cfg), "wall_seconds": res.wall_seconds,
                              "runs": [{"job": dataclasses.asdict(job), "results": results}
                                       for job, results in res.runs.items()]} for res in runs]}
        out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
        print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
        reference = [res.cfg for res in runs] == [dataclasses.replace(FULL, threads=args.threads)]
        complete = (not args.tiny and out.resolve() == DEFAULT_OUT and systems == list(SYSTEMS)
                    and reference and batches == [32, 128, 512] and not failed)
        if complete:
            body = text.split("\n", 1)[1]  # without the title: the README gives its own
            if update_readme(body):
                print(f"updated the results block in {README.relative_to(ROOT)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
