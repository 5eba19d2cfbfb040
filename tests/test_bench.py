"""The benchmark suite keeps working: its tiny configuration runs end to end.

No test here asserts a time: only that the suite completes and writes a well-formed report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import run
from bench._common import TINY, Config, batch_sizes, child_env, make_data, markdown_tables, train_flops

ROOT = Path(__file__).resolve().parent.parent


def _check_well_formed(text: str) -> list[list[list[str]]]:
    tables = markdown_tables(text)
    assert tables, "the report has no table"
    for table in tables:
        header, rule, *body = table
        assert all(set(cell) <= set("-: ") and "-" in cell for cell in rule), rule
        assert body, f"table {header} has no rows"
        for row in body:
            assert len(row) == len(header), (header, row)
    return tables


def test_tiny_suite_runs_and_writes_a_well_formed_report(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--tiny", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert text in proc.stdout  # printed and written alike
    tables = _check_well_formed(text)
    headers = [t[0][:2] for t in tables]
    assert ["batch", "system"] in headers
    systems = {row[1] for table in tables if table[0][:2] == ["batch", "system"] for row in table[2:]}
    assert {"jacnet step loop", "jacnet `fit`", "scikit-learn float32", "jacnet step loop float64",
            "scikit-learn float64"} <= systems
    if run.available("torch"):
        assert "PyTorch eager" in systems
    else:
        assert "skipping PyTorch" in proc.stdout
    targets = next(t for t in tables if t[0][0] == "target")
    assert all(row[3].strip("*") in ("PASS", "FAIL", "n/a") for row in targets[2:])
    raw = json.loads(out.with_suffix(".json").read_text())
    assert raw["config"]["n_samples"] == TINY.n_samples
    assert "Failures" not in text


def test_filters_select_systems_and_batch_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # As if PyTorch were missing: it is skipped with a note and the rest still runs.
    monkeypatch.setattr(run, "available", lambda module: module != "torch")
    out = tmp_path / "r.md"
    code = run.main(["--tiny", "--systems", "jacnet,torch", "--batch-sizes", "16,32", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "note: skipping PyTorch eager: torch is not importable" in printed
    tables = _check_well_formed(out.read_text())
    train = next(t for t in tables if t[0][:2] == ["batch", "system"])
    assert [(row[0], row[1]) for row in train[2:]] == [("16", "jacnet step loop"), ("32", "jacnet step loop")]


def test_unknown_system_is_refused() -> None:
    with pytest.raises(SystemExit):
        run.main(["--tiny", "--systems", "jax"])


def test_flop_count_follows_the_products_computed() -> None:
    cfg = Config(n_samples=10, n_features=4, hidden=(3,), n_classes=2)
    # Layer 4→3: X W and Xᵀ dZ (its dX is skipped); layer 3→2: all three. 2·N·in·out each.
    assert train_flops(cfg) == 2 * 10 * (2 * 4 * 3 + 3 * 3 * 2)
    assert batch_sizes(10, 4) == [4, 4, 2]
    assert batch_sizes(8, 4) == [4, 4]


def test_workers_get_pinned_threads_and_no_openblas_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1")
    env = child_env(2)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"  # the parent's own environment is untouched


def test_synthetic_data_is_seeded_and_the_same_in_both_dtypes() -> None:
    X32, y = make_data(TINY)
    X64, y2 = make_data(TINY, np.float64)
    assert X32.dtype == np.float32 and X64.dtype == np.float64
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(X32.astype(np.float64), X64)
    assert set(np.unique(y)) == set(range(TINY.n_classes))


@pytest.mark.parametrize("mode", [["--phases"], ["--loop", "--top", "5"]])
def test_profile_runs_on_a_small_sample(mode: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.profile", "--samples", "600", "--batch", "64",
                           *mode], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    if mode == ["--phases"]:
        lines = proc.stdout.splitlines()
        assert "10 steps" in lines[0]
        phases = {line[:18].strip(): float(line[18:27]) for line in lines[2:]}
        assert set(phases) == {"gather X[rows]", "model.forward", "loss.forward", "loss.backward",
                               "model.backward", "optimizer.step", "matmuls alone", "outside matmuls"}
        assert all(seconds >= 0 for name, seconds in phases.items() if name != "outside matmuls")
    else:
        assert "function calls" in proc.stdout
