"""What a model file may say about the data its network was trained on (its ``metadata``).

:func:`jacnet.io.save` stores a metadata dict under the optional header key ``"metadata"``
and :func:`jacnet.io.load_checkpoint` returns it (``{}`` for a file without one). It is plain
JSON with a fixed set of optional keys, each checked by :func:`check_metadata` on save and on
load (a hostile file gets :class:`~jacnet.errors.ModelFileError`)::

    feature_names   list of str, one per model input (after any one-hot encoding)
    class_labels    list of str / int / float, distinct: the original label of class k
    task            "classification" or "regression"
    target          str, the name of the target column
    columns         list of str, the raw input columns (differs from feature_names when
                    a text column was one-hot encoded)
    categories      {column: [category, ...]}: the one-hot encoded columns
    impute          {"strategy": "mean" | "median", "values": {column: number}}
    split           {"seed": int >= 0, "test_size": number in (0, 1), "stratified": bool}
    data            {"source": str, "sha256": 64 hex digits}: where the data came from
"""

from __future__ import annotations

import math
import re
from typing import Any

from jacnet.errors import JacnetValueError

__all__ = ["KEYS", "check_metadata"]

#: The keys a metadata dict may hold.
KEYS = frozenset({"feature_names", "class_labels", "task", "target", "columns", "categories",
                  "impute", "split", "data"})

#: Longest list (feature names, labels, categories) accepted.
MAX_ITEMS = 1_000_000

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _fail(where: str, expected: str, got: Any) -> None:
    text = repr(got)
    raise JacnetValueError(f"metadata{' ' + where if where else ''} expects {expected}, got "
                           f"{text if len(text) <= 60 else text[:57] + '...'}")


def _strings(value: Any, where: str, *, unique: bool = False) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_ITEMS or not all(isinstance(v, str) for v in value):
        _fail(where, "a list of strings", value)
    if unique and len(set(value)) != len(value):
        _fail(where, "distinct strings", value)
    return list(value)


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _object(value: Any, keys: frozenset[str], where: str, required: bool = True) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(where, "an object", value)
    unknown = sorted(set(value) - keys)
    missing = sorted(keys - set(value)) if required else []
    if unknown or missing:
        _fail(where, f"the keys {sorted(keys)}", sorted(value))
    return value


def check_metadata(metadata: Any, n_in: int | None = None, n_out: int | None = None) -> dict[str, Any]:
    """Check a metadata dict against the schema above (and the model's widths, when given).

    Parameters
    ----------
    metadata : dict
        The metadata.
    n_in : int, optional
        The model's input width: ``feature_names`` must have this many entries.
    n_out : int, optional
        The model's output width: ``class_labels`` must have this many entries (two when it
        is 1, a binary classifier).

    Returns
    -------
    dict
        ``metadata`` itself.

    Raises
    ------
    JacnetValueError
        The first key or value that does not fit, named.
    """
    meta = _object(metadata, KEYS, "", required=False)
    if "feature_names" in meta:
        names = _strings(meta["feature_names"], "feature_names", unique=True)
        if n_in is not None and len(names) != n_in:
            _fail("feature_names", f"{n_in} names (the model's input width)", f"{len(names)} names")
    if "columns" in meta:
        _strings(meta["columns"], "columns", unique=True)
    if "class_labels" in meta:
        labels = meta["class_labels"]
        if (not isinstance(labels, list) or len(labels) > MAX_ITEMS
                or not all(isinstance(v, str) or _number(v) for v in labels)):
            _fail("class_labels", "a list of strings or numbers", labels)
        if len({(type(v) is str, v) for v in labels}) != len(labels):
            _fail("class_labels", "distinct labels", labels)
        if n_out is not None and len(labels) != (2 if n_out == 1 else n_out):
            _fail("class_labels", f"{2 if n_out == 1 else n_out} labels (the model's classes)",
                  f"{len(labels)} labels")
    if "task" in meta and meta["task"] not in ("classification", "regression"):
        _fail("task", "'classification' or 'regression'", meta["task"])
    if "target" in meta and not isinstance(meta["target"], str):
        _fail("target", "a string", meta["target"])
    if "categories" in meta:
        categories = meta["categories"]
        if not isinstance(categories, dict):
            _fail("categories", "an object", categories)
        for column, values in categories.items():
            _strings(values, f"categories[{column!r}]", unique=True)
    if "impute" in meta:
        impute = _object(meta["impute"], frozenset({"strategy", "values"}), "impute")
        if impute["strategy"] not in ("mean", "median"):
            _fail("impute strategy", "'mean' or 'median'", impute["strategy"])
        values = impute["values"]
        if not isinstance(values, dict) or not all(_number(v) for v in values.values()):
            _fail("impute values", "an object of finite numbers", values)
    if "split" in meta:
        split = _object(meta["split"], frozenset({"seed", "test_size", "stratified"}), "split")
        if type(split["seed"]) is not int or split["seed"] < 0:
            _fail("split seed", "an integer >= 0", split["seed"])
        if not _number(split["test_size"]) or not 0 < split["test_size"] < 1:
            _fail("split test_size", "a number in (0, 1)", split["test_size"])
        if type(split["stratified"]) is not bool:
            _fail("split stratified", "true or false", split["stratified"])
    if "data" in meta:
        data = _object(meta["data"], frozenset({"source", "sha256"}), "data")
        if not isinstance(data["source"], str):
            _fail("data source", "a string", data["source"])
        if not isinstance(data["sha256"], str) or not _SHA256.match(data["sha256"]):
            _fail("data sha256", "64 lowercase hex digits", data["sha256"])
    return meta
