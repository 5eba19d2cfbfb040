"""``jacnet train --data FILE``, ``jacnet predict`` on CSV files, run records and option checks.

Every malformed-CSV case of ``jacnet predict`` has its own test: each of them once silently
dropped or added a row.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jacnet
from jacnet.cli import main
from jacnet.datasets import train_test_split
from jacnet.io import load_metadata
from jacnet.tabular import prepare, read_table

# Small, fast runs: the point is the plumbing, not the score.
FAST = ["--hidden", "16", "--epochs", "3", "--lr", "0.01", "--quiet"]
FEATURES = ["a", "b", "c"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's own errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """Run, expect exit 2 with one line on stderr holding every fragment; return that line."""
    code, out, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def three_class_csv(path: Path, n: int = 90, seed: int = 0) -> Path:
    """Three separable classes with string labels, features a, b, c."""
    rng = np.random.default_rng(seed)
    labels = np.array(["red", "green", "blue"])[np.arange(n) % 3]
    centres = {"red": (3, 0, 0), "green": (0, 3, 0), "blue": (0, 0, 3)}
    X = np.array([centres[str(c)] for c in labels]) + 0.3 * rng.standard_normal((n, 3))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, "colour"])
        writer.writerows([*(f"{v:.4f}" for v in row), c] for row, c in zip(X, labels, strict=True))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data CSV, model file) of a classifier trained on three_class_csv."""
    root = tmp_path_factory.mktemp("data")
    data = three_class_csv(root / "colours.csv")
    code = main(["train", "--data", str(data), "--target", "colour", "--hidden", "16", "--epochs", "40",
                 "--lr", "0.01", "--quiet", "--out", str(root / "run")])
    assert code == 0
    return data, root / "run" / "model.jacnet"


def predict(model: Path, text: str | bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str],
            *options: str) -> tuple[int, str, str]:
    path = tmp_path / "input.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return run(["predict", model, path, *options], capsys)


ROWS = "3.1,0.1,0.0\n0.0,2.9,0.2\n0.1,0.0,3.2\n"
EXPECTED = ["red", "green", "blue"]


# Item 1: training on a file -------------------------------------------------------------------


def test_csv_round_trip_keeps_string_labels_and_scores_like_evaluate(
        trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = trained
    metrics = json.loads((model.parent / "metrics.json").read_text())
    assert metrics["task"] == "classification" and metrics["target"] == "colour"
    assert metrics["test_accuracy"] == 1.0
    code, out, _ = predict(model, ROWS, tmp_path, capsys)
    assert code == 0 and out.splitlines() == EXPECTED
    # evaluate on the same file scores the same test split the training run scored
    code, out, err = run(["evaluate", model, "--data", data, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["loss"] == pytest.approx(metrics["test_loss"], rel=1e-6)


def test_the_saved_model_takes_raw_features_exactly(trained: tuple[Path, Path]) -> None:
    """Standardisation is folded in: the model on raw X equals the network on standardised X."""
    data, model_path = trained
    checkpoint = jacnet.io.load_checkpoint(model_path)
    table = read_table(data)
    split = checkpoint.metadata["split"]
    prepared = prepare(table, "colour", seed=split["seed"], test_size=split["test_size"])
    accuracy = jacnet.evaluate(checkpoint.model, prepared.X_test, prepared.y_test)["accuracy"]
    metrics = json.loads((model_path.parent / "metrics.json").read_text())
    assert accuracy == metrics["test_accuracy"]


def test_the_split_is_the_seeded_stratified_split_of_the_bundled_sets(tmp_path: Path) -> None:
    table = read_table(three_class_csv(tmp_path / "c.csv", n=60))
    first = prepare(table, "colour", seed=3)
    again = prepare(table, "colour", seed=3)
    other = prepare(table, "colour", seed=4)
    np.testing.assert_array_equal(first.X_test, again.X_test)
    assert not np.array_equal(first.X_test, other.X_test)
    assert np.bincount(first.y_test).tolist() == [4, 4, 4]  # 20 % of each class
    rows = np.arange(60)
    X_all = np.array([[float(v) for v in col] for col in zip(*(c.values for c in table.columns[:3]),
                                                              strict=True)])
    # the same rows as datasets.train_test_split picks (classes sorted: blue, green, red)
    remap = {0: 2, 1: 1, 2: 0}  # row % 3 -> sorted class index of red, green, blue
    y_all = np.array([remap[r % 3] for r in rows])
    _, test_rows, _, _ = train_test_split(rows, y_all, seed=3, stratify=True)
    np.testing.assert_array_equal(first.X_test, X_all[test_rows])


@pytest.mark.parametrize(("values", "task"), [
    (["1", "2", "3", "1", "2", "3", "1", "2", "3", "1"], "classification"),
    (["1.5", "2.25", "3", "1", "2", "3", "1", "2", "3", "1"], "regression"),
    ([str(i) for i in range(30)], "regression"),
    (["yes", "no"] * 5, "classification"),
])
def test_the_task_follows_the_target(tmp_path: Path, values: list[str], task: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,y\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    assert prepare(read_table(path), "y").task == task


def test_task_can_be_overridden(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(40)))
    code, _, err = run(["train", "--data", path, "--target", "y", "--task", "regression", *FAST,
                        "--out", tmp_path / "r"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["task"] == "regression"
    refused(["train", "--data", three_class_csv(tmp_path / "c.csv"), "--target", "colour", "--task",
             "regression", *FAST, "--out", tmp_path / "s"], capsys, "--task regression", "numeric")


def test_integer_labels_come_back_as_integers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2 * 5 + 3  # labels 3 and 8
    X = y[:, None] + 0.1 * rng.standard_normal((60, 2))
    path.write_text("p,q,label\n" + "".join(f"{a:.3f},{b:.3f},{c}\n" for (a, b), c in zip(X, y, strict=True)))
    code, _, err = run(["train", "--data", path, "--target", "label", "--hidden", "8", "--epochs", "40",
                        "--quiet", "--out", tmp_path / "r"], capsys)
    assert code == 0, err
    meta = jacnet.io.load_metadata(tmp_path / "r" / "model.jacnet")
    assert meta["class_labels"] == [3, 8] and meta["feature_names"] == ["p", "q"]
    code, out, _ = predict(tmp_path / "r" / "model.jacnet", "3,3\n8,8\n", tmp_path, capsys)
    assert code == 0 and out.split() == ["3", "8"]


def test_npz_with_X_and_y_and_with_named_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "xy.npz", X=X, y=y)
    code, _, err = run(["train", "--data", tmp_path / "xy.npz", *FAST, "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    meta = jacnet.io.load_metadata(tmp_path / "a" / "model.jacnet")
    assert meta["feature_names"] == ["x0", "x1", "x2"] and meta["target"] == "y"
    np.savez(tmp_path / "cols.npz", height=X[:, 0], width=X[:, 1], kind=np.where(y, "big", "small"))
    code, _, err = run(["train", "--data", tmp_path / "cols.npz", "--target", "kind", *FAST,
                        "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    meta = jacnet.io.load_metadata(tmp_path / "b" / "model.jacnet")
    assert meta["feature_names"] == ["height", "width"] and meta["class_labels"] == ["big", "small"]


def test_npz_object_arrays_are_refused_without_unpickling(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "obj.npz", X=np.zeros((4, 2)), y=np.array([{"a": 1}] * 4, dtype=object))
    refused(["train", "--data", tmp_path / "obj.npz", *FAST, "--out", tmp_path / "o"], capsys, "--data")


def test_parquet_needs_the_pandas_extra(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(three_class_csv(tmp_path / "c.csv"))
    frame.to_parquet(tmp_path / "c.parquet")
    code, _, err = run(["train", "--data", tmp_path / "c.parquet", "--target", "colour", *FAST,
                        "--out", tmp_path / "p"], capsys)
    assert code == 0, err
    assert jacnet.io.load_metadata(tmp_path / "p" / "model.jacnet")["class_labels"] == EXPECTED[::-1]
    monkeypatch.setitem(sys.modules, "pandas", None)
    code, _, err = run(["train", "--data", tmp_path / "c.parquet", "--target", "colour", *FAST,
                        "--out", tmp_path / "q"], capsys)
    assert code != 0 and "pip install 'jacnet[pandas]'" in err


def test_text_feature_column_is_refused_by_name_or_one_hot_encoded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.csv"
    path.write_text("size,shape,y\n" + "".join(
        f"{i % 7},{'round' if i % 2 else 'square'},{i % 2}\n" for i in range(40)))
    refused(["train", "--data", path, "--target", "y", *FAST, "--out", tmp_path / "a"], capsys,
            "column 'shape'", "--one-hot", "data row 1")
    code, _, err = run(["train", "--data", path, "--target", "y", "--one-hot", *FAST,
                        "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    model = tmp_path / "b" / "model.jacnet"
    meta = jacnet.io.load_metadata(model)
    assert meta["feature_names"] == ["size", "shape=round", "shape=square"]
    assert meta["columns"] == ["size", "shape"]
    code, out, _ = predict(model, "size,shape\n3,round\n4,square\n", tmp_path, capsys)
    assert code == 0 and out.splitlines()[0] == "y" and len(out.splitlines()) == 3
    line = refused(["predict", model, _write(tmp_path / "u.csv", "size,shape\n3,oval\n")], capsys,
                   "column 'shape'", "data row 1")
    assert "'oval'" in line


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_missing_feature_is_refused_naming_row_and_column_or_imputed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f"{i},{i % 5},{i % 2}" for i in range(40)]
    rows[6] = "6,,0"  # data row 7, line 8
    path = _write(tmp_path / "t.csv", "a,b,y\n" + "\n".join(rows) + "\n")
    refused(["train", "--data", path, "--target", "y", *FAST, "--out", tmp_path / "x"], capsys,
            "column 'b'", "data row 7 (line 8)", "--impute")
    code, _, err = run(["train", "--data", path, "--target", "y", "--impute", "median", *FAST,
                        "--out", tmp_path / "m"], capsys)
    assert code == 0, err
    meta = jacnet.io.load_metadata(tmp_path / "m" / "model.jacnet")
    table = read_table(path)
    prepared = prepare(table, "y", impute="median")
    train_b = prepared.X_train[:, 1]
    assert meta["impute"]["strategy"] == "median"
    # the fill is the median of the training part's present values, and it is used there
    expected = float(np.median([v for v in train_b if v != meta["impute"]["values"]["b"]] or [0]))
    assert meta["impute"]["values"]["b"] in train_b
    assert abs(meta["impute"]["values"]["b"] - expected) <= 1.0
    # a model trained with --impute fills missing cells in predict too
    code, out, err = predict(tmp_path / "m" / "model.jacnet", "a,b\n1,\n", tmp_path, capsys)
    assert code == 0 and len(out.splitlines()) == 2, err


def test_missing_target_is_refused_naming_the_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "t.csv", "a,y\n1,0\n2,1\n3,NA\n4,0\n")
    refused(["train", "--data", path, "--target", "y", *FAST, "--out", tmp_path / "x"], capsys,
            "--target", "data row 3 (line 4)")


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--target", "nope"], "--target expects a column"),
    ([], "--target expects the name"),
])
def test_target_errors_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                     fragment: str) -> None:
    path = three_class_csv(tmp_path / "c.csv")
    refused(["train", "--data", path, *argv, *FAST, "--out", tmp_path / "x"], capsys, fragment)


@pytest.mark.parametrize(("content", "fragment"), [
    (b"a,y\n\xe9,1\n", "not UTF-8"),
    (b"a;y\n1;0\n", "another separator"),
    (b"a,y\n1,0\n\n2,1\n", "blank line at line 3"),
    (b"a,y\n1,0\n2,1,3\n", "expects 2 cells per row, got 3 at data row 2 (line 3)"),
    (b"a,a,y\n1,2,0\n", "distinct column names"),
    (b"a,y\n1,0.5\n", "enough rows"),
    (b"a,y\ninf,0\n" + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(20)), "finite numbers in column 'a'"),
])
def test_malformed_training_csv_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   content: bytes, fragment: str) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    refused(["train", "--data", path, "--target", "y", *FAST, "--out", tmp_path / "x"], capsys, fragment)


def test_file_options_are_refused_with_a_bundled_data_set(capsys: pytest.CaptureFixture[str]) -> None:
    refused(["train", "--data", "iris", "--target", "x", *FAST], capsys,
            "--target expects --data to be a file")


# Item 2: metadata in the model file -----------------------------------------------------------


def test_metadata_round_trips_and_old_files_have_none(tmp_path: Path) -> None:
    model = jacnet.build_mlp(2, [3], 3, rng=0)
    meta = {"feature_names": ["u", "v"], "class_labels": ["a", 2, 3.5], "task": "classification",
            "target": "t", "split": {"seed": 1, "test_size": 0.25, "stratified": True},
            "data": {"source": "f.csv", "sha256": "0" * 64}}
    jacnet.io.save(model, tmp_path / "m.jacnet", metadata=meta)
    assert jacnet.io.load_checkpoint(tmp_path / "m.jacnet").metadata == meta
    assert jacnet.io.load_metadata(tmp_path / "m.jacnet") == meta
    jacnet.io.save(model, tmp_path / "old.jacnet")
    assert b"metadata" not in (tmp_path / "old.jacnet").read_bytes()  # files without it are as before
    assert jacnet.io.load_checkpoint(tmp_path / "old.jacnet").metadata == {}


@pytest.mark.parametrize("bad", [
    {"feature_names": ["u"]},  # one name for two inputs
    {"feature_names": ["u", "u"]},
    {"class_labels": ["a", "b"]},  # two labels for three classes
    {"class_labels": [True, 1, 2]},
    {"class_labels": ["a", "a", "b"]},
    {"task": "clustering"},
    {"unknown": 1},
    {"split": {"seed": -1, "test_size": 0.2, "stratified": True}},
    {"data": {"source": "x", "sha256": "zz"}},
])
def test_bad_metadata_is_refused_on_save_and_on_load(tmp_path: Path, bad: dict[str, Any]) -> None:
    model = jacnet.build_mlp(2, [3], 3, rng=0)
    with pytest.raises(jacnet.JacnetValueError, match="metadata"):
        jacnet.io.save(model, tmp_path / "m.jacnet", metadata=bad)
    # the same metadata forged into a valid file's header: a ModelFileError
    path = jacnet.io.save(model, tmp_path / "m.jacnet", metadata={"task": "classification"})
    raw = path.read_bytes()
    length = int.from_bytes(raw[8:16], "little")
    header = json.loads(raw[16:16 + length])
    header["metadata"] = bad
    text = json.dumps(header, separators=(",", ":")).encode()
    import hashlib

    body = raw[:8] + len(text).to_bytes(8, "little") + text + raw[16 + length:-32]
    path.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(jacnet.ModelFileError, match="metadata"):
        jacnet.io.load(path)


# Item 3: predict gives one row per row, or refuses by name ------------------------------------


def test_predict_utf8_bom_keeps_the_first_row(trained: tuple[Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _, model = trained
    code, out, err = predict(model, b"\xef\xbb\xbf" + ROWS.encode(), tmp_path, capsys)
    assert code == 0, err
    assert out.splitlines() == EXPECTED  # the BOM once made row 1 look like a header
    code, out, err = predict(model, b"\xef\xbb\xbf" + b"a,b,c\n" + ROWS.encode(), tmp_path, capsys)
    assert code == 0 and out.splitlines() == ["colour", *EXPECTED], err


def test_predict_numeric_pandas_header_is_refused_unless_said(
        trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pd = pytest.importorskip("pandas")
    _, model = trained
    frame = pd.DataFrame(np.array([[3.1, 0.1, 0.0], [0.0, 2.9, 0.2]]))  # integer column names
    text = frame.to_csv(index=False)
    assert text.splitlines()[0] == "0,1,2"
    code, out, err = predict(model, text, tmp_path, capsys)
    assert code == 2 and "--header or --no-header" in err and not out
    code, out, err = predict(model, text, tmp_path, capsys, "--header")
    # --header: the names differ from the model's, which a trained-on-names model refuses
    assert code == 2 and "header matching the model's columns" in err
    code, out, err = predict(model, text, tmp_path, capsys, "--no-header")
    assert code == 0 and len(out.splitlines()) == 3, err  # the user said the 0,1,2 line is data


def test_predict_numeric_header_equal_to_the_stored_names(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((40, 2)))
    frame["y"] = (frame[0] > 0).astype(int)
    frame.to_csv(tmp_path / "train.csv", index=False)
    code, _, err = run(["train", "--data", tmp_path / "train.csv", "--target", "y", *FAST,
                        "--out", tmp_path / "r"], capsys)
    assert code == 0, err
    model = tmp_path / "r" / "model.jacnet"
    text = frame[[0, 1]].head(4).to_csv(index=False)
    code, out, err = predict(model, text, tmp_path, capsys)
    assert code == 2 and "--header or --no-header" in err
    code, out, err = predict(model, text, tmp_path, capsys, "--header")
    assert code == 0 and len(out.splitlines()) == 5, err  # a header row in, a header row out


def test_predict_missing_value_in_the_first_row_is_refused_by_name(
        trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, model = trained
    for first in (",0.1,0.0", "NA,0.1,0.0", "3.1,nan,0.0"):
        code, _out, err = predict(model, first + "\n" + ROWS, tmp_path, capsys)
        assert code == 2 and "missing value" in err and "data row 1 (line 1)" in err, err
        assert "column 'a'" in err or "column 'b'" in err


def test_predict_whitespace_only_line_is_refused_by_line(
        trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, model = trained
    code, _, err = predict(model, "3.1,0.1,0.0\n   \n0.0,2.9,0.2\n", tmp_path, capsys)
    assert code == 2 and "blank line at line 2" in err


def test_predict_empty_line_is_refused_by_line(
        trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, model = trained
    code, _, err = predict(model, "3.1,0.1,0.0\n\n0.0,2.9,0.2\n", tmp_path, capsys)
    assert code == 2 and "blank line at line 2" in err  # once silently skipped


def test_predict_header_that_does_not_match_is_refused(
        trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, model = trained
    code, _, err = predict(model, "a,b,d\n" + ROWS, tmp_path, capsys)
    assert code == 2 and "missing ['c']" in err and "unexpected ['d']" in err
    code, _, err = predict(model, "b,a,c\n" + ROWS, tmp_path, capsys)
    assert code == 2 and "another order" in err


def test_predict_accepts_the_training_file_itself(
        trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data, model = trained
    code, out, err = run(["predict", model, data], capsys)
    assert code == 0, err
    lines = out.splitlines()
    truth = [row[-1] for row in csv.reader(io.StringIO(data.read_text()))]
    assert len(lines) == len(truth) and lines[0] == "colour"  # one output row per input row
    assert sum(a == b for a, b in zip(lines[1:], truth[1:], strict=True)) >= 0.9 * (len(truth) - 1)


def test_predict_mixed_first_line_is_refused(trained: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _, model = trained
    code, _, err = predict(model, "a,1,2\n" + ROWS, tmp_path, capsys)
    assert code == 2 and "mixes numbers and text" in err


@pytest.mark.parametrize(("text", "fragment"), [
    ("3.1,0.1,0.0,\n", "expects 3 cells per row, got 4 at data row 1"),  # trailing comma
    ("3.1,0.1\n", "expects 3 cells per row, got 2 at data row 1"),
    ("3.1,0.1,0.0\n3.1,x,0.0\n", "column 'b', got 'x' at data row 2 (line 2)"),
    ("3.1,0.1,inf\n", "finite numbers in column 'c'"),
    ("a,b,c\n", "at least one data row"),
    ("", "at least one row"),
    ("3.1;0.1;0.0\n", "another separator"),
    (",a,b,c\n0,3.1,0.1,0.0\n", "unnamed index column"),  # pandas' to_csv() with its index
    ("1e308,0,0\n", "fit in the model's float32"),
    ("3.1,0.1,\"" + "9" * 200_000 + "\"\n", "field larger than field limit"),
    (b"\xe9t\xe9,1,2\n", "not UTF-8"),  # Latin-1
])
def test_predict_other_malformed_rows_are_refused_by_name(
        trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | bytes,
        fragment: str) -> None:
    _, model = trained
    code, _out, err = predict(model, text, tmp_path, capsys)
    assert code == 2 and fragment in err, err


def test_predict_crlf_quotes_and_spaces_are_handled(
        trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, model = trained
    text = ' a , b,"c"\r\n"3.1", 0.1 ,0.0\r\n0.0,2.9,0.2\r\n0.1,0.0,"3.2"\r\n'
    code, out, err = predict(model, text, tmp_path, capsys)
    assert code == 0 and out.splitlines() == ["colour", *EXPECTED], err
    # a quoted field spanning two lines is one row: the message names the line it ends on
    code, _, err = predict(model, 'a,b,c\n3.1,"0.1\n",0.0\n0.0,x,0.2\n', tmp_path, capsys)
    assert code == 2 and "data row 2 (line 4)" in err


def test_predict_proba_keeps_labels_and_probabilities_sum_to_one(
        trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, model = trained
    code, out, err = predict(model, "a,b,c\n" + ROWS, tmp_path, capsys, "--proba")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["colour", "P(colour=blue)", "P(colour=green)", "P(colour=red)"]
    assert [r[0] for r in rows[1:]] == EXPECTED
    for r in rows[1:]:
        p = [float(v) for v in r[1:]]
        assert sum(p) == pytest.approx(1.0, abs=1e-5)
        assert rows[0][1 + int(np.argmax(p))] == f"P(colour={r[0]})"


def test_predict_in_chunks_gives_the_same_rows(trained: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data, model = trained
    whole = run(["predict", model, data, "--proba"], capsys)
    chunked = run(["predict", model, data, "--proba", "--chunk-rows", "7", "--output", tmp_path / "o.csv"],
                  capsys)
    assert whole[0] == chunked[0] == 0
    assert (tmp_path / "o.csv").read_text() == whole[1]
    # an error in a later chunk names its own row and leaves no partial --output file
    lines = data.read_text().splitlines()
    lines[40] = lines[40].replace(lines[40].split(",")[1], "oops", 1)
    bad = _write(tmp_path / "bad.csv", "\n".join(lines) + "\n")
    err = refused(["predict", model, bad, "--chunk-rows", "7", "--output", tmp_path / "p.csv"], capsys,
                  "data row 40 (line 41)")
    assert "'oops'" in err and not (tmp_path / "p.csv").exists()


def test_predict_labels_with_commas_are_quoted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quoted = '"a, b"'
    path = _write(tmp_path / "t.csv", "x,y\n" + "".join(
        f"{i},{quoted if i % 2 else 'c'}\n" for i in range(30)))
    code, _, err = run(["train", "--data", path, "--target", "y", *FAST, "--out", tmp_path / "r"], capsys)
    assert code == 0, err
    code, out, _ = predict(tmp_path / "r" / "model.jacnet", "x\n1\n2\n", tmp_path, capsys)
    rows = list(csv.reader(io.StringIO(out)))
    assert len(rows) == 3 and all(r[0] in ("a, b", "c") for r in rows[1:])


def test_predict_with_a_model_without_metadata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = jacnet.build_mlp(2, [3], 3, rng=0)
    model.loss = jacnet.SoftmaxCrossEntropy()
    path = jacnet.io.save(model, tmp_path / "m.jacnet")
    code, out, err = predict(path, "u,v\n1,2\n3,4\n", tmp_path, capsys)
    assert code == 0 and len(out.splitlines()) == 3, err  # an all-text first line is a header
    assert set(out.splitlines()[1:]) <= {"0", "1", "2"}
    code, out, err = predict(path, "1,2\n3,4\n", tmp_path, capsys)
    assert code == 0 and len(out.splitlines()) == 2, err


def test_predict_regression_names_the_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (60, 2))
    path = _write(tmp_path / "t.csv", "u,v,price\n" + "".join(
        f"{a:.4f},{b:.4f},{10 * a + b + 0.5:.4f}\n" for a, b in X))
    code, _, err = run(["train", "--data", path, "--target", "price", *FAST, "--out", tmp_path / "r"], capsys)
    assert code == 0, err
    code, out, _ = predict(tmp_path / "r" / "model.jacnet", "u,v\n0.5,0.5\n", tmp_path, capsys)
    assert code == 0 and out.splitlines()[0] == "price" and len(out.splitlines()) == 2
    float(out.splitlines()[1])


# Item 4: run records --------------------------------------------------------------------------


def test_run_records_hold_every_option_and_count_epochs_from_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = three_class_csv(tmp_path / "c.csv")
    code, out, err = run(["train", "--data", data, "--target", "colour", "--hidden", "8", "--epochs", "3",
                          "--optimizer", "sgd", "--momentum", "0.5", "--weight-decay", "0.01",
                          "--validation-split", "0.2", "--patience", "2", "--seed", "4",
                          "--out", tmp_path / "r"], capsys)
    assert code == 0, err
    assert "SGD(lr=0.05, momentum=0.5, weight_decay=0.01)" in out.splitlines()[0]
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["optimizer"] == {"type": "SGD", "lr": 0.05, "momentum": 0.5, "nesterov": False,
                                    "weight_decay": 0.01}
    assert (metrics["validation_split"], metrics["patience"], metrics["seed"]) == (0.2, 2, 4)
    import hashlib

    assert metrics["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert metrics["split"] == {"seed": 4, "test_size": 0.2, "stratified": True}
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    printed = [int(m[1]) for m in re.finditer(r"^epoch (\d+)/3", out, re.M)]
    assert history["epochs"] == printed == list(range(1, metrics["epochs"] + 1))


def test_the_header_names_adamw_with_its_weight_decay(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    code, out, _ = run(["train", "--data", "iris", "--hidden", "4", "--epochs", "1", "--out", tmp_path],
                       capsys)
    assert code == 0
    assert "AdamW(lr=0.001, weight_decay=0.1)" in out.splitlines()[0]
    assert "weight_decay=0.1" in repr(jacnet.Adam(weight_decay=0.1))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["optimizer"]["type"] == "AdamW" and metrics["optimizer"]["weight_decay"] == 0.1
    assert len(metrics["data_sha256"]) == 64


def test_curves_plot_counts_epochs_from_one() -> None:
    pytest.importorskip("matplotlib")
    from jacnet.plots import plot_history

    history = jacnet.History()
    for epoch in range(3):
        history.append(epoch, {"loss": 1.0 / (epoch + 1)})
    fig = plot_history(history)
    assert list(fig.axes[0].lines[0].get_xdata()) == [1, 2, 3]


def test_evaluate_refuses_another_split_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(["train", "--data", "iris", "--hidden", "4", "--epochs", "1", "--seed", "2",
                      "--quiet", "--out", tmp_path], capsys)
    assert code == 0
    refused(["evaluate", tmp_path / "model.jacnet", "--data", "iris", "--seed", "0"], capsys,
            "--seed", "split seed the model was trained with (2")
    code, out, err = run(["evaluate", tmp_path / "model.jacnet", "--data", "iris", "--json"], capsys)
    assert code == 0 and "split seed 2" in err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert json.loads(out)["accuracy"] == metrics["test_accuracy"]
    code, _, _ = run(["evaluate", tmp_path / "model.jacnet", "--data", "iris", "--seed", "2"], capsys)
    assert code == 0


# Item 5: errors name flags; pipes; divergence -------------------------------------------------


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--patience", "-3"], "--patience"),
    (["--patience", "3", "--validation-split", "0"], "--patience expects validation data"),
    (["--validation-split", "1.5"], "--validation-split"),
    (["--validation-split", "-0.1"], "--validation-split"),
    (["--momentum", "1", "--optimizer", "sgd"], "--momentum"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--test-size", "0.3"], "--test-size"),
])
def test_option_errors_name_the_flag_before_training(argv: list[str], fragment: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(["train", "--data", "iris", *argv, "--quiet", "--out", tmp_path / "x"], capsys, fragment)
    assert "fit " not in line and "validation_split" not in line
    assert not (tmp_path / "x").exists()  # refused before anything was trained or written


def test_validation_split_of_a_tiny_file_names_the_flag(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "t.csv", "x,y\n1,0\n2,1\n3,0\n4,1\n5,0\n6,1\n")
    refused(["train", "--data", path, "--target", "y", "--validation-split", "0.05", *FAST,
             "--out", tmp_path / "x"], capsys, "--validation-split")


@pytest.mark.parametrize("argv", [
    ["--optimizer", "sgd", "--lr", "1e300", "--epochs", "1"],
    ["--optimizer", "sgd", "--lr", "10", "--epochs", "3"],
    ["--lr", "1e30", "--epochs", "2"],
    ["--lr", "1e6", "--epochs", "2"],
])
def test_divergence_says_so_however_it_diverges(argv: list[str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["train", "--data", "iris", "--hidden", "16", *argv, "--quiet", "--out", tmp_path],
                         capsys)
    assert code == 2 and "training diverged, try a smaller learning rate" in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_closed_pipe_ends_quietly() -> None:
    # A large output, with the reader gone after one line.
    proc = subprocess.Popen([sys.executable, "-m", "jacnet.cli", "jacobian", "relu", "--batch", "40",
                             "--features", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert code in (0, 141) and "Traceback" not in err and "Broken pipe" not in err, (code, err)


def test_a_closed_pipe_in_process_returns_141(monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["jacobian", "softmax"]) == 141


# The README's CSV round trip ------------------------------------------------------------------


def test_the_readme_csv_round_trip_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- csv-round-trip:start -->")[1].split("<!-- csv-round-trip:end -->")[0]
    commands = [shlex.split(line) for line in block.splitlines() if line.startswith("jacnet ")]
    assert [c[1] for c in commands] == ["train", "predict", "evaluate", "export"]
    python = [shlex.split(line) for line in block.splitlines() if line.startswith("python ")]
    assert len(python) == 1
    header = next(line for line in block.splitlines() if "species" in line).lstrip("# ").strip()
    assert header == "sepal_length,sepal_width,petal_length,petal_width,species"
    rng = np.random.default_rng(0)
    species = np.array(["setosa", "versicolor", "virginica"])[np.arange(120) % 3]
    X = (np.arange(120) % 3)[:, None] * 1.5 + 4 + 0.3 * rng.standard_normal((120, 4))
    rows = [",".join(f"{v:.2f}" for v in x) + f",{s}" for x, s in zip(X, species, strict=True)]
    monkeypatch.chdir(tmp_path)
    Path("flowers.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    Path("new_flowers.csv").write_text(header.rsplit(",", 1)[0] + "\n" +
                                       "\n".join(r.rsplit(",", 1)[0] for r in rows[:10]) + "\n")
    for argv in commands:
        extra = ["--epochs", "5", "--hidden", "16", "--quiet"] if argv[1] == "train" else []
        code, _, err = run([*argv[1:], *extra], capsys)
        assert code == 0, (argv, err)
    out = list(csv.reader(io.StringIO(Path("predictions.csv").read_text())))
    assert len(out) == 11 and out[0][0] == "species" and len(out[0]) == 4
    assert {r[0] for r in out[1:]} <= set(species)
    # The exported model runs in ONNX Runtime and predicts what jacnet predicts.
    pytest.importorskip("onnxruntime")
    done = subprocess.run([sys.executable, *python[0][1:]], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    indices = [int(i) for i in done.stdout.strip().strip("[]").split()]
    labels = load_metadata("runs/flowers/model.jacnet")["class_labels"]
    assert [labels[i] for i in indices] == [r[0] for r in out[1:]]


def test_predict_input_is_read_in_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    from jacnet.tabular import Encoder, iter_csv_chunks

    rng = np.random.default_rng(0)
    path = tmp_path / "big.csv"
    np.savetxt(path, rng.standard_normal((40_000, 4)), fmt="%.4f", delimiter=",")
    encoder = Encoder(columns=["a", "b", "c", "d"], feature_names=["a", "b", "c", "d"])
    tracemalloc.start()
    try:
        rows = sum(X.shape[0] for _, X in iter_csv_chunks(path, encoder, chunk_rows=500))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 40_000
    assert peak < 1_000_000, peak  # the whole file as float64 alone would be 1.28 MB
