"""A user's own table: read it (CSV, ``.npz``, ``.parquet``), turn it into features and
targets for training, and turn new rows into the same features for prediction.

CSV is read with the standard library's :mod:`csv` and NumPy alone (no pandas): UTF-8, with
or without a byte-order mark, comma-separated, a header row naming the columns for training.
``.npz`` is read with ``numpy.load(allow_pickle=False)``: arrays ``X`` (2-D) and ``y``, or
one 1-D array per column. ``.parquet`` needs pandas and pyarrow (``pip install
'jacnet[pandas]'``).

A cell is *missing* when it is empty or one of ``NA``, ``NaN``, ``N/A``, ``null``, ``None``
(any case, surrounding spaces ignored); a NaN in a numeric ``.npz`` or parquet column is
missing too. Rows are counted from 1 without the header: *data row 3* is the third row of
values (for a CSV, its line in the file is given too).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from jacnet.errors import JacnetValueError

__all__ = ["MAX_CLASSES", "MISSING", "SUFFIXES", "Column", "Encoder", "Table", "TabularData",
           "infer_task", "iter_csv_chunks", "prepare", "read_table", "sha256_file"]

#: Spellings of a missing cell (compared after ``strip().lower()``).
MISSING = frozenset({"", "na", "nan", "n/a", "null", "none"})
#: File types ``read_table`` reads.
SUFFIXES = (".csv", ".npz", ".parquet")
#: A whole-number target with at most this many distinct values is classified by default.
MAX_CLASSES = 20
#: Most categories one ``--one-hot`` column may have.
MAX_CATEGORIES = 1000

Task = Literal["classification", "regression"]


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Column:
    """One column: numbers (float64, NaN where missing) or text (str, None where missing)."""

    name: str
    values: NDArray[Any]
    numeric: bool


@dataclass
class Table:
    """A whole table as read from a file."""

    columns: list[Column]
    source: str
    sha256: str
    #: For a CSV, the file line of each data row (for messages); ``None`` otherwise.
    lines: list[int] | None = None

    @property
    def n_rows(self) -> int:
        return int(self.columns[0].values.shape[0]) if self.columns else 0

    def where(self, row: int) -> str:
        """``"data row 3 (line 4)"`` for the 0-based ``row``."""
        line = f" (line {self.lines[row]})" if self.lines is not None else ""
        return f"data row {row + 1}{line}"


def _is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def _column_from_text(name: str, cells: Sequence[str]) -> Column:
    """Numbers when every present cell parses as one, text otherwise."""
    stripped = [c.strip() for c in cells]
    present = ["nan" if s.lower() in MISSING else s for s in stripped]
    try:
        return Column(name, np.array(present, dtype=np.float64), True)
    except ValueError:
        text = np.array([None if s.lower() in MISSING else s for s in stripped], dtype=object)
        return Column(name, text, False)


def _column_from_array(name: str, A: NDArray[Any], source: str) -> Column:
    if A.ndim != 1:
        raise JacnetValueError(f"train --data expects 1-D columns in {source}, got {name!r} of shape "
                               f"{A.shape}")
    if A.dtype.kind in "fiub":
        return Column(name, A.astype(np.float64), True)
    if A.dtype.kind in "US":
        cells = [c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in A.tolist()]
        return _column_from_text(name, cells)
    raise JacnetValueError(f"train --data expects numeric or string columns in {source}, got {name!r} "
                           f"of dtype {A.dtype}")


def _check_header(header: list[str], source: str) -> list[str]:
    names = [h.strip() for h in header]
    if not names or all(not n for n in names):
        raise JacnetValueError(f"train --data expects a header row naming the columns in {source}, "
                               "got an empty first line")
    for i, n in enumerate(names):
        if not n:
            raise JacnetValueError(f"train --data expects a name for every column in {source}'s header, "
                                   f"got an empty name for column {i + 1}")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise JacnetValueError(f"train --data expects distinct column names in {source}, "
                                   f"got {n!r} twice")
        seen.add(n)
    return names


def _blank(row: list[str], width: int) -> bool:
    """An empty or whitespace-only line (one whitespace cell is a missing value when the
    table has a single column)."""
    return not row or (width > 1 and len(row) == 1 and not row[0].strip())


def _csv_rows(handle: Any, path: Path, flag: str) -> Iterator[tuple[list[str], int]]:
    """Each row with the line it ends on; the csv module's own errors named as ``flag``'s."""
    reader = csv.reader(handle)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a NUL byte, a field over the size limit
            raise JacnetValueError(f"{flag} expects CSV text, got {exc} at line "
                                   f"{max(reader.line_num, 1)} of {path}") from None
        yield row, reader.line_num


def _ragged(flag: str, expected: int, row: list[str], where: str, path: Path) -> JacnetValueError:
    hint = ""
    if len(row) == 1 and any(sep in row[0] for sep in ";\t|"):
        hint = " (another separator? jacnet reads comma-separated values)"
    return JacnetValueError(f"{flag} expects {expected} cells per row, got {len(row)} at {where} of "
                            f"{path}{hint}")


def _read_csv(path: Path) -> Table:
    source = str(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = _csv_rows(handle, path, "train --data")
        header, _ = next(reader, (None, 0))
        if header is None:
            raise JacnetValueError(f"train --data expects a CSV with a header row and data, got an "
                                   f"empty file {source}")
        names = _check_header(header, source)
        width = len(names)
        rows: list[list[str]] = []
        lines: list[int] = []
        for row, line in reader:
            if _blank(row, width):
                raise JacnetValueError(f"train --data expects one row of values per line, got a blank "
                                       f"line at line {line} of {source}")
            if len(row) != width:
                raise _ragged("train --data", width, row, f"data row {len(rows) + 1} (line {line})", path)
            rows.append(row)
            lines.append(line)
    if not rows:
        raise JacnetValueError(f"train --data expects at least one data row after the header, got none "
                               f"in {source}")
    columns = [_column_from_text(n, cells) for n, cells in zip(names, zip(*rows, strict=True), strict=True)]
    return Table(columns, source, sha256_file(path), lines)


def _read_npz(path: Path, target: str | None) -> Table:
    source = str(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise JacnetValueError(f"train --data expects a NumPy .npz archive, got {source}: {exc}") from None
    try:
        arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:  # object arrays need pickle, which jacnet never uses
        raise JacnetValueError(f"train --data expects numeric or string arrays in {source}, got {exc}"
                               ) from None
    finally:
        archive.close()
    if "X" in arrays and "y" in arrays:
        X, y = arrays["X"], arrays["y"]
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise JacnetValueError(f"train --data expects X of shape (N, D) and y of shape (N,) in "
                                   f"{source}, got {X.shape} and {y.shape}")
        names = [f"x{j}" for j in range(X.shape[1])]
        if "feature_names" in arrays:
            given = [str(n) for n in arrays["feature_names"].tolist()]
            if len(given) != X.shape[1]:
                raise JacnetValueError(f"train --data expects {X.shape[1]} feature_names in {source}, "
                                       f"got {len(given)}")
            names = given
        target_name = target if target is not None else "y"
        columns = [_column_from_array(n, X[:, j], source) for j, n in enumerate(names)]
        columns.append(_column_from_array(target_name, y, source))
    else:
        lengths = {name: A.shape[:1] for name, A in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise JacnetValueError(f"train --data expects columns of one length in {source}, got "
                                   f"{ {k: v[0] if v else None for k, v in lengths.items()} }")
        columns = [_column_from_array(name, A, source) for name, A in arrays.items()]
    if not columns or columns[0].values.shape[0] == 0:
        raise JacnetValueError(f"train --data expects at least one row in {source}, got none")
    return Table(columns, source, sha256_file(path))


def _read_parquet(path: Path) -> Table:
    source = str(path)
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError("reading .parquet files needs pandas and pyarrow; install them with "
                          "pip install 'jacnet[pandas]'") from exc
    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise ImportError(f"reading .parquet files needs pyarrow ({exc}); install it with "
                          "pip install 'jacnet[pandas]'") from exc
    except Exception as exc:  # pyarrow's own errors name the problem
        raise JacnetValueError(f"train --data expects a Parquet file, got {source}: {exc}") from None
    columns = []
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_bool_dtype(series) or (pd.api.types.is_numeric_dtype(series)
                                                  and not pd.api.types.is_complex_dtype(series)):
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            columns.append(Column(str(name), values, True))
        else:
            cells = ["" if pd.isna(v) else str(v) for v in series.tolist()]
            columns.append(_column_from_text(str(name), cells))
    if not columns or frame.shape[0] == 0:
        raise JacnetValueError(f"train --data expects at least one row and column in {source}, got "
                               f"shape {frame.shape}")
    return Table(columns, source, sha256_file(path))


def read_table(path: str | os.PathLike[str], target: str | None = None) -> Table:
    """Read a CSV, ``.npz`` or ``.parquet`` file into a :class:`Table`.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its suffix picks the reader.
    target : str, optional
        For an ``.npz`` with arrays ``X`` and ``y``: the name given to ``y`` (default ``"y"``).

    Raises
    ------
    JacnetValueError
        An unknown suffix, or a malformed file (the message names the line, row or column).
    ImportError
        A ``.parquet`` file without pandas/pyarrow installed.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise JacnetValueError(f"train --data expects a file ending in {', '.join(SUFFIXES)}, "
                               f"got {str(file)!r}")
    if not file.is_file():
        raise JacnetValueError(f"train --data expects an existing file, got {str(file)!r}")
    if suffix == ".csv":
        try:
            return _read_csv(file)
        except UnicodeDecodeError:
            raise JacnetValueError(f"train --data expects a UTF-8 CSV text file, got bytes that are not "
                                   f"UTF-8 in {file} (another encoding such as Latin-1?)") from None
    if suffix == ".npz":
        return _read_npz(file, target)
    return _read_parquet(file)


# Training data ---------------------------------------------------------------------------------


def infer_task(column: Column) -> tuple[Task, str]:
    """Classification or regression from a target column, with the reason in words."""
    if not column.numeric:
        return "classification", "the target holds text labels"
    values = column.values[~np.isnan(column.values)]
    distinct = np.unique(values)
    if np.all(distinct == np.round(distinct)) and distinct.size <= MAX_CLASSES:
        return "classification", (f"the target holds {distinct.size} distinct whole numbers "
                                  f"(at most {MAX_CLASSES})")
    if np.all(distinct == np.round(distinct)):
        return "regression", (f"the target holds {distinct.size} distinct whole numbers "
                              f"(more than {MAX_CLASSES})")
    return "regression", "the target holds fractional numbers"


def _label(value: Any) -> int | float | str:
    """A plain JSON label: whole floats become ints."""
    if isinstance(value, str):
        return value
    number = float(value)
    return int(number) if number == round(number) and abs(number) < 2**53 else number


@dataclass
class Encoder:
    """Turns raw columns into the model's features: one-hot for text, fill for missing."""

    columns: list[str]
    feature_names: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    impute: dict[str, float] = field(default_factory=dict)
    strategy: str | None = None

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], n_in: int) -> Encoder:
        """The encoder a model file describes; plain numeric columns when it says nothing."""
        names = list(metadata.get("feature_names") or [f"x{j}" for j in range(n_in)])
        impute = metadata.get("impute") or {}
        return cls(columns=list(metadata.get("columns") or names), feature_names=names,
                   categories={k: list(v) for k, v in (metadata.get("categories") or {}).items()},
                   impute={k: float(v) for k, v in (impute.get("values") or {}).items()},
                   strategy=impute.get("strategy"))

    def encode(self, cells: list[list[str]], where: Any, flag: str) -> NDArray[np.float64]:
        """Features ``(n, D)`` of raw text rows (each of ``len(columns)`` cells).

        ``where(i)`` names row ``i`` of ``cells`` in a message; ``flag`` names the input.
        """
        n = len(cells)
        if not self.categories:  # the common case: every column is numeric, in order
            try:
                X = np.array(cells, dtype=np.float64).reshape(n, len(self.columns))
            except ValueError:
                X = None
            if X is not None and bool(np.isfinite(X).all()):
                return X  # every cell a finite number (a "nan" cell would show as NaN)
        parts: list[NDArray[np.float64]] = []
        for j, name in enumerate(self.columns):
            column = [row[j] for row in cells]
            if name in self.categories:
                parts.append(self._one_hot(name, column, where, flag))
            else:
                parts.append(self._numbers(name, column, where, flag)[:, None])
        return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))

    def _numbers(self, name: str, column: list[str], where: Any, flag: str) -> NDArray[np.float64]:
        out = np.empty(len(column))
        for i, cell in enumerate(column):
            text = cell.strip()
            if text.lower() in MISSING:
                if name not in self.impute:
                    raise JacnetValueError(
                        f"{flag} expects a number in every cell, got a missing value ({cell!r}) in "
                        f"column {name!r} at {where(i)}" + (
                            "; pass --impute mean|median to fill it" if flag.startswith("train") else
                            " (the model was trained without --impute)"))
                out[i] = self.impute[name]
                continue
            try:
                value = float(text)
            except ValueError:
                hint = "; pass --one-hot to encode it" if flag.startswith("train") else ""
                raise JacnetValueError(f"{flag} expects numbers in column {name!r}, got {cell!r} at "
                                       f"{where(i)}{hint}") from None
            if not math.isfinite(value):
                raise JacnetValueError(f"{flag} expects finite numbers in column {name!r}, got {cell!r} "
                                       f"at {where(i)}")
            out[i] = value
        return out

    def _one_hot(self, name: str, column: list[str], where: Any, flag: str) -> NDArray[np.float64]:
        categories = self.categories[name]
        index = {c: k for k, c in enumerate(categories)}
        out = np.zeros((len(column), len(categories)))
        for i, cell in enumerate(column):
            k = index.get(cell.strip())
            if k is None:
                what = "a missing value" if _is_missing(cell) else f"{cell.strip()!r}"
                raise JacnetValueError(f"{flag} expects one of the categories {categories[:10]} in "
                                       f"column {name!r}, got {what} at {where(i)}")
            out[i, k] = 1.0
        return out


@dataclass
class TabularData:
    """A table split into training and test features and targets, ready for ``fit``."""

    X_train: NDArray[np.float64]
    X_test: NDArray[np.float64]
    y_train: NDArray[Any]
    y_test: NDArray[Any]
    task: Task
    task_reason: str
    classes: tuple[int | float | str, ...]
    encoder: Encoder
    target: str
    source: str
    sha256: str

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.task == "classification" else 0

    def metadata(self) -> dict[str, Any]:
        """The model file's metadata for this data (the split is added by the caller)."""
        meta: dict[str, Any] = {"feature_names": self.encoder.feature_names, "task": self.task,
                                "target": self.target, "columns": self.encoder.columns,
                                "data": {"source": self.source, "sha256": self.sha256}}
        if self.task == "classification":
            meta["class_labels"] = list(self.classes)
        if self.encoder.categories:
            meta["categories"] = self.encoder.categories
        if self.encoder.impute:
            meta["impute"] = {"strategy": self.encoder.strategy, "values": self.encoder.impute}
        return meta


def _text_cells(column: Column) -> list[str]:
    if column.numeric:
        return ["" if math.isnan(v) else repr(float(v)) for v in column.values.tolist()]
    return ["" if v is None else str(v) for v in column.values.tolist()]


def prepare(
    table: Table,
    target: str,
    *,
    task: Task | None = None,
    one_hot: bool = False,
    impute: str | None = None,
    test_size: float = 0.2,
    seed: int = 0,
) -> TabularData:
    """Split a table into features and targets, training and test parts.

    The split is seeded and, for classification, stratified (the split the bundled data sets
    use, :func:`jacnet.datasets.train_test_split`). Missing feature values are refused, or
    filled with the training part's mean or median (``impute``); text feature columns are
    refused, or one-hot encoded over the categories found in the whole table (``one_hot``).

    Raises
    ------
    JacnetValueError
        Naming the flag, the column and the data row of the first problem.
    """
    from jacnet.datasets import train_test_split

    by_name = {c.name: c for c in table.columns}
    if target not in by_name:
        shown = [c.name for c in table.columns][:20]
        hint = (" (another separator? jacnet reads comma-separated values)" if len(shown) == 1
                and any(sep in shown[0] for sep in ";\t|") else "")
        raise JacnetValueError(f"train --target expects a column of {table.source}, one of {shown}, "
                               f"got {target!r}{hint}")
    y_column = by_name[target]
    missing = (np.isnan(y_column.values) if y_column.numeric
               else np.array([v is None for v in y_column.values], dtype=bool))
    if missing.any():
        raise JacnetValueError(f"train --target expects a value in every row, got a missing value in "
                               f"column {target!r} at {table.where(int(np.argmax(missing)))}")
    inferred, reason = infer_task(y_column)
    chosen: Task = task if task is not None else inferred
    if task is not None:
        reason = "--task"
    if chosen == "regression":
        if not y_column.numeric:
            first = y_column.values[0]
            raise JacnetValueError(f"train --task regression expects a numeric --target column, got "
                                   f"text such as {first!r} in column {target!r}")
        if not np.isfinite(y_column.values).all():
            bad = int(np.argmax(~np.isfinite(y_column.values)))
            raise JacnetValueError(f"train --target expects finite numbers, got {y_column.values[bad]} "
                                   f"in column {target!r} at {table.where(bad)}")
        y: NDArray[Any] = y_column.values.astype(np.float64)
        classes: tuple[int | float | str, ...] = ()
    else:
        raw = y_column.values if y_column.numeric else np.array([str(v) for v in y_column.values])
        distinct, inverse = np.unique(raw, return_inverse=True)
        y = inverse.reshape(-1).astype(np.int64)
        classes = tuple(_label(v) if y_column.numeric else str(v) for v in distinct.tolist())
        if len(set(classes)) != len(classes):  # 1.0 and 1 are one label
            raise JacnetValueError(f"train --target expects distinct class labels, got {list(distinct)}")
        if len(classes) < 2:
            raise JacnetValueError(f"train --target expects at least 2 classes, got only {classes!r} "
                                   f"in column {target!r}")
    try:
        rows = np.arange(table.n_rows)
        train_rows, test_rows, _, _ = train_test_split(
            rows, y, test_size=test_size, seed=seed, stratify=chosen == "classification")
    except JacnetValueError as exc:
        raise JacnetValueError(f"train --data expects enough rows for a train/test split, got "
                               f"{table.n_rows} rows in {table.source} ({exc})") from None
    feature_columns = [c for c in table.columns if c.name != target]
    if not feature_columns:
        raise JacnetValueError(f"train --data expects at least one feature column besides --target "
                               f"{target!r}, got none in {table.source}")
    names: list[str] = []
    categories: dict[str, list[str]] = {}
    fill: dict[str, float] = {}
    for column in feature_columns:
        if column.numeric:
            values = column.values
            absent = np.isnan(values)
            if absent.any() and impute is not None:
                present = values[train_rows][~absent[train_rows]]
                if present.size == 0:
                    raise JacnetValueError(f"train --impute expects some values in column {column.name!r} "
                                           "in the training part, got none")
                fill[column.name] = float(np.mean(present) if impute == "mean" else np.median(present))
            names.append(column.name)
            continue
        if not one_hot:
            first = int(np.argmax([v is not None for v in column.values]))
            raise JacnetValueError(
                f"train --data expects numeric feature columns, got text in column {column.name!r} "
                f"({column.values[first]!r} at {table.where(first)}); pass --one-hot to encode it, "
                "or drop the column")
        found = sorted({str(v) for v in column.values if v is not None})
        if len(found) > MAX_CATEGORIES:
            raise JacnetValueError(f"train --one-hot expects at most {MAX_CATEGORIES} categories per "
                                   f"column, got {len(found)} in column {column.name!r}")
        categories[column.name] = found
        names.extend(f"{column.name}={c}" for c in found)
    encoder = Encoder(columns=[c.name for c in feature_columns], feature_names=names,
                      categories=categories, impute=fill, strategy=impute if fill else None)
    cells = [list(row) for row in zip(*(_text_cells(c) for c in feature_columns), strict=True)]
    X = encoder.encode(cells, table.where, "train --data")
    return TabularData(X[train_rows], X[test_rows], y[train_rows], y[test_rows], chosen, reason,
                       classes, encoder, target, table.source, table.sha256)


# Prediction input ------------------------------------------------------------------------------


def _numberlike(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _decide_header(first: list[str], names: list[str] | None, mode: str | None, stored: bool) -> bool:
    """Whether the first row of a prediction input is a header (see ``jacnet predict --help``)."""
    if mode is not None:
        return mode == "header"
    cells = [c.strip() for c in first]
    if names is not None and cells == names and stored:
        if all(_numberlike(c) for c in cells):
            raise JacnetValueError(
                "predict INPUT's first line is both the model's column names and a row of numbers "
                f"({','.join(cells[:8])}); pass --header or --no-header to say which")
        return True
    if cells == [str(j) for j in range(len(cells))] and len(cells) > 1:
        raise JacnetValueError(
            f"predict INPUT's first line ({','.join(cells[:8])}) looks like the numeric header "
            "pandas writes for integer column names, but could be data; pass --header or --no-header")
    kinds = {"number" if _numberlike(c) and c.lower() not in MISSING else
             "missing" if c.lower() in MISSING else "text" for c in cells}
    if "text" not in kinds:
        return False  # numbers (some missing): a data row
    if kinds == {"text"}:
        return True  # names only: a header, checked against the model's below
    if kinds == {"text", "missing"}:
        raise JacnetValueError(
            f"predict INPUT's first line holds names and empty cells ({','.join(cells[:8])}): an "
            "unnamed index column, as pandas' to_csv writes without index=False? Pass --header or "
            "--no-header")
    raise JacnetValueError(
        f"predict INPUT's first line mixes numbers and text ({','.join(cells[:8])}): cannot tell a "
        "header from a data row; pass --header or --no-header")


def iter_csv_chunks(
    path: Path,
    encoder: Encoder,
    *,
    header: str | None = None,
    stored_names: bool = True,
    target: str | None = None,
    chunk_rows: int = 65536,
) -> Iterator[tuple[list[str] | None, NDArray[np.float64]]]:
    """Yield the features of a CSV's rows, ``chunk_rows`` at a time (bounded memory).

    Every line is one row: blank lines, ragged rows, missing and non-numeric cells are
    refused naming the data row and line (missing cells are filled when the model was
    trained with ``--impute``). The first item's header is the input's header row (or
    ``None`` when it has none); later items carry ``None``.

    Parameters
    ----------
    path : pathlib.Path
        The CSV (UTF-8, a byte-order mark is skipped).
    encoder : Encoder
        The model's columns and encoding.
    header : {"header", "no-header"} or None
        Whether the first line is a header; ``None`` decides only when unambiguous.
    stored_names : bool
        Whether the column names came from the model file (not made up as ``x0, x1 ...``).
    target : str, optional
        The model's target column: a header holding the columns plus it is accepted and the
        target column ignored.
    """
    columns = encoder.columns
    width = len(columns)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = _csv_rows(handle, path, "predict INPUT")
        first, first_line = next(reader, (None, 0))
        if first is None:
            raise JacnetValueError(f"predict INPUT expects at least one row, got an empty file {path}")
        if len(first) == 1 and width > 1 and not _blank(first, width):
            ragged = _ragged("predict INPUT", width, first, f"line {first_line}", path)
            if "another separator" in str(ragged):
                raise ragged
        pick: list[int] | None = None
        names: list[str] | None = None
        if not _blank(first, width) and _decide_header(first, columns, header, stored_names):
            names = [c.strip() for c in first]
            if names != columns:
                if stored_names and target in names and [n for n in names if n != target] == columns:
                    pick = [j for j, n in enumerate(names) if n != target]
                elif stored_names or len(names) != width:
                    missing = [c for c in columns if c not in names]
                    extra = [n for n in names if n not in columns]
                    detail = (f"missing {missing[:10]}" if missing else "") + (
                        f"{'; ' if missing else ''}unexpected {extra[:10]}" if extra else "")
                    raise JacnetValueError(
                        f"predict INPUT expects a header matching the model's columns {columns[:12]}, "
                        f"got {names[:12]} ({detail or 'same names in another order'})")
            pending: list[tuple[list[str], int]] = []
        else:
            pending = [(first, first_line)]
        expected = width if pick is None else len(names or [])

        def numbered() -> Iterator[tuple[list[str], int]]:
            yield from pending
            yield from reader

        rows: list[list[str]] = []
        lines: list[int] = []
        data_row = 0
        yielded = False
        for row, line in numbered():
            if _blank(row, expected):
                raise JacnetValueError(f"predict INPUT expects one row of values per line, got a blank "
                                       f"line at line {line} of {path}; remove it")
            if len(row) != expected:
                raise _ragged("predict INPUT", expected, row, f"data row {data_row + 1} (line {line})", path)
            data_row += 1
            rows.append(row if pick is None else [row[j] for j in pick])
            lines.append(line)
            if len(rows) >= chunk_rows:
                yield (None if yielded else names), _encode_chunk(encoder, rows, lines, data_row)
                yielded = True
                rows, lines = [], []
        if data_row == 0:
            raise JacnetValueError(f"predict INPUT expects at least one data row, got none in {path}"
                                   + (" (only a header)" if names is not None else ""))
        if rows:
            yield (None if yielded else names), _encode_chunk(encoder, rows, lines, data_row)


def _encode_chunk(encoder: Encoder, rows: list[list[str]], lines: list[int], last: int
                  ) -> NDArray[np.float64]:
    """Features of one chunk; ``last`` is the 1-based data row of its final row."""
    first = last - len(rows) + 1

    def where(i: int) -> str:
        return f"data row {first + i} (line {lines[i]})"

    return encoder.encode(rows, where, "predict INPUT")
