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
    assert {"jacnet step loop", "jacnet `fit`", "NumPy loop", "scikit-learn float32",
            "jacnet step loop float64", "scikit-learn float64"} <= systems
    if run.available("torch"):
        assert {"PyTorch eager", "torch closed forms"} <= systems
    else:
        assert "skipping PyTorch" in proc.stdout
    if run.available("thinc"):
        assert {"thinc (BLIS)", "thinc (NumPy matmul)"} <= systems
    else:
        assert "skipping thinc" in proc.stdout
    assert "Device: the CPU, for every system." in text
    targets = next(t for t in tables if t[0][0] == "target")
    assert all(row[3].strip("*") in ("PASS", "FAIL", "n/a") for row in targets[2:])
    issue14 = {row[0]: row for row in targets[2:] if row[5] == "14"}
    assert set(issue14) == {"batch 64: `fit` epoch / NumPy loop",
                            "batch 64: step-loop epoch (as the docs teach it) / `fit` epoch"}
    assert all(row[3] != "**n/a**" for row in issue14.values())  # both sides ran
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


def test_cuda_without_a_gpu_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    if run.cuda_problem("cuda") is None:
        pytest.skip("a CUDA GPU is present")
    assert run.main(["--tiny", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m bench.run: --device cuda expects ") and err.count("\n") == 1
    with pytest.raises(SystemExit):  # only the PyTorch systems have a GPU path
        run.main(["--tiny", "--device", "cuda", "--systems", "jacnet"])


def test_device_path_on_the_cpu_with_two_networks(tmp_path: Path) -> None:
    # The code that --device cuda runs, on --device cpu; --hidden twice measures two networks.
    pytest.importorskip("torch")
    out = tmp_path / "r.md"
    code = run.main(["--tiny", "--device", "cpu", "--systems", "torch,torch-closed", "--hidden", "32,16",
                     "--hidden", "24,24", "--out", str(out)])
    assert code == 0
    text = out.read_text()
    assert "## The 64-32-16-10 network" in text and "## The 64-24-24-10 network" in text
    trains = [t for t in _check_well_formed(text) if t[0][:2] == ["batch", "system"]]
    assert [[row[1] for row in t[2:]] for t in trains] == [["PyTorch eager", "torch closed forms"]] * 2
    assert all(t[0][5] == "× PyTorch eager" for t in trains)  # no jacnet: ratios to the first system
    raw = json.loads(out.with_suffix(".json").read_text())
    assert [w["config"]["hidden"] for w in raw["workloads"]] == [[32, 16], [24, 24]]
    assert {w["config"]["device"] for w in raw["workloads"]} == {"cpu"}


def _jacnet_after_one_epoch(batch: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], ...]:
    """jacnet's initial weights and its weights after one epoch of the step loop on TINY's data."""
    import jacnet
    from bench._jacnet import _step_epoch

    X, y = make_data(TINY)
    model = jacnet.build_mlp(TINY.n_features, list(TINY.hidden), TINY.n_classes, rng=TINY.seed)
    pairs = [(layer.params["W"], layer.params["b"]) for layer in model.layers if layer.params]
    start = [(W.copy(), b.copy()) for W, b in pairs]
    _step_epoch(model, jacnet.SoftmaxCrossEntropy(), jacnet.SGD(lr=TINY.lr), X, y, batch,
                np.random.default_rng(TINY.seed))
    return start, pairs


def _assert_same_weights(mine: list[tuple[np.ndarray, np.ndarray]],
                         jacnets: list[tuple[np.ndarray, np.ndarray]], atol: float) -> None:
    assert len(mine) == len(jacnets)
    for (W, b), (Wj, bj) in zip(mine, jacnets, strict=True):
        np.testing.assert_allclose(W, Wj, rtol=0, atol=atol)
        np.testing.assert_allclose(b, bj, rtol=0, atol=atol)


def test_the_closed_form_systems_train_to_jacnets_weights() -> None:
    """Same initial weights, data order, formulas and float32: one epoch ends at jacnet's weights
    (to float32 rounding: the libraries sum ``db`` in their own order)."""
    from bench import _numpy
    from bench._common import he_init

    batch = 48  # 512 = 10 full batches and a remainder
    start, after = _jacnet_after_one_epoch(batch)
    _assert_same_weights(he_init(TINY), start, atol=0)
    assert max(float(np.max(np.abs(W - W0))) for (W, _), (W0, _) in zip(after, start, strict=True)) > 0.05
    X, y = make_data(TINY)
    order = np.random.default_rng(TINY.seed).permutation(X.shape[0])
    params = he_init(TINY)
    loss = _numpy.sgd_epoch(params, X, y, order, batch, TINY.lr)
    _assert_same_weights(params, after, atol=1e-6)
    assert 0 < loss < 10


def test_torch_closed_forms_train_to_jacnets_weights() -> None:
    torch = pytest.importorskip("torch")
    from bench import _torch
    from bench._common import he_init

    batch = 48
    _, after = _jacnet_after_one_epoch(batch)
    X, y = make_data(TINY)
    order = np.random.default_rng(TINY.seed).permutation(X.shape[0])
    params = _torch.as_tensors(he_init(TINY), torch.device("cpu"))
    loss = _torch.sgd_epoch(params, torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(order),
                            batch, TINY.lr)
    _assert_same_weights([(W.numpy(), b.numpy()) for W, b in params], after, atol=1e-6)
    assert 0 < float(loss) < 10


@pytest.mark.parametrize("use_blis", [True, False])
def test_thinc_trains_to_jacnets_weights(use_blis: bool) -> None:
    # No L2, clipping or averaging slipped in: plain SGD on the same gradients.
    pytest.importorskip("thinc")
    from bench import _thinc
    from bench._common import he_init

    batch = 48
    _, after = _jacnet_after_one_epoch(batch)
    X, y = make_data(TINY)
    order = np.random.default_rng(TINY.seed).permutation(X.shape[0])
    model = _thinc.build(he_init(TINY), use_blis=use_blis)
    _thinc.sgd_epoch(model, _thinc.optimizer(TINY.lr), X, np.eye(TINY.n_classes, dtype=np.float32)[y],
                     order, batch)
    _assert_same_weights(_thinc.weights(model), after, atol=1e-6)


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


def test_the_conv_systems_train_to_the_same_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench.conv compares like with like: the same weights after the same batches in jacnet
    on NumPy (one thread or split over three, bitwise the same), on the torch backend, and in
    PyTorch eager."""
    torch = pytest.importorskip("torch")
    import jacnet
    from bench import conv

    monkeypatch.setattr(conv, "N_SAMPLES", 384)
    monkeypatch.setattr(jacnet.threads, "MIN_BLOCK_ENTRIES", 1)
    start = conv._weights(conv._jacnet_model(0))
    _, numpy_weights = conv._run_jacnet(128, 1, 0)
    jacnet.set_num_threads(3)
    try:
        _, threaded = conv._run_jacnet(128, 1, 0)
    finally:
        jacnet.set_num_threads(None)
    _, on_torch = conv._run_jacnet(128, 1, 0, on_torch=True)
    threads = torch.get_num_threads()
    try:
        _, eager = conv._run_torch(128, 1, 0, threads)
    finally:
        torch.set_num_threads(threads)
    for i, want in enumerate(numpy_weights):
        assert not np.allclose(want, start[i], rtol=1e-4, atol=1e-6)  # three steps moved it
        np.testing.assert_array_equal(threaded[i], want)
        np.testing.assert_allclose(on_torch[i], want, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(eager[i], want, rtol=1e-4, atol=1e-6)
