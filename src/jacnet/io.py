"""Safe model files: save a network (and optionally its optimizer and training state) to one
file, and load it back without ever executing anything the file contains.

File format (``.jacnet``, format version 1)
-------------------------------------------
All integers are little-endian. A file is, byte for byte::

    offset 0        8 bytes   magic  b"JACNET\\x00\\x01"  (container revision 1)
    offset 8        8 bytes   H, the length of the header, unsigned 64-bit (at most 16 MiB)
    offset 16       H bytes   the header: a JSON object, UTF-8 (ASCII in practice)
    offset 16 + H   D bytes   the data section: the raw arrays, one after another
    offset 16+H+D  32 bytes   SHA-256 of every byte before it (magic, length, header, data)

The header is an object with exactly these keys::

    {"format": "jacnet-model", "format_version": 1,
     "layers": [{"type": "Affine", "config": {"in_features": 4, "out_features": 8,
                                              "dtype": "float32"}},
                {"type": "ReLU", "config": {}}, ...],
     "loss": "SoftmaxCrossEntropy" or null,
     "optimizer": null or {"type": "Adam", "hyperparameters": {...}, "iterations": 12},
     "training_state": {...},
     "arrays": [{"name": "model/0.W", "dtype": "float32", "shape": [4, 8],
                 "offset": 0, "nbytes": 128}, ...]}

and, optionally, ``"metadata"``: what the network was trained on (feature names, class
labels, task, target, split, data fingerprint), checked by :func:`jacnet.metadata.check_metadata`.
A file without it loads with empty metadata.

Layer types come from a fixed registry of jacnet's built-in layers (``Affine``, ``ReLU``,
``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``Softmax``), each with its ``Layer.config()``; the loss
from the built-in losses; the optimizer from ``{"SGD", "Adam"}`` with its
``hyperparameters()``. Arrays are named ``model/<i>.<param>`` (the keys of
``Sequential.params``) and ``optimizer/<slot>/<i>.<param>`` (the keys of
``Optimizer.state_dict()["state"]``). Each is stored C-ordered, little-endian, as
``float32`` or ``float64``; ``offset`` counts from the start of the data section, and the
arrays are packed in table order with no gap and no overlap, so ``D`` is the sum of their
``nbytes``.

What ``load`` does with an untrusted file
-----------------------------------------
It reads the bytes, checks the size, the magic, the header length and the checksum, parses
the header with :func:`json.loads` (no NaN or infinity, no duplicate keys), checks every key,
type, layer, loss, optimizer, dtype, shape and offset against the fixed registries and the
file's actual size *before* allocating any array, then copies each array out of the bytes
with :func:`numpy.frombuffer` and rejects non-finite values. It never unpickles, never
imports or evaluates a name from the file, and allocates no more than about twice the file's
size. Every problem raises :class:`~jacnet.errors.ModelFileError` naming the file and the
problem. The checksum detects corruption, not forgery: anyone who can write the file can
write any weights (a valid model that predicts what they like), but nothing more.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import secrets
import stat
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from jacnet import backend as _backend
from jacnet._validation import FloatArray, all_finite, describe
from jacnet.errors import JacnetError, JacnetTypeError, JacnetValueError, ModelFileError, NonFiniteError
from jacnet.layers import Layer
from jacnet.metadata import check_metadata
from jacnet.model import Sequential
from jacnet.optim import Optimizer
from jacnet.registry import LAYERS, LOSSES, OPTIMIZERS

__all__ = ["FORMAT_VERSION", "MAGIC", "MAX_HEADER_BYTES", "Checkpoint", "load", "load_checkpoint",
           "load_metadata", "save"]

#: The first eight bytes of every model file.
MAGIC = b"JACNET\x00\x01"
#: The version of the JSON header's layout; ``load`` refuses any other.
FORMAT_VERSION = 1
#: The largest header ``load`` reads (and ``save`` writes).
MAX_HEADER_BYTES = 16 * 1024 * 1024
#: Deepest nesting accepted in ``training_state``.
MAX_NESTING = 64

_FORMAT_NAME = "jacnet-model"
_PREFIX = struct.Struct("<8sQ")  # magic, header length
_DIGEST_BYTES = 32
_CHUNK = 1 << 20
_MAX_NDIM = 8

# Types a file may name: jacnet's built-ins only (jacnet.registry), by class name.
class _ByClassName(Mapping[str, type[Any]]):
    """A table of jacnet.registry keyed by class name, read when used (so the layers of modules
    imported after this one are known too)."""

    def __init__(self, table: dict[str, type[Any]]) -> None:
        self._table = table

    def _names(self) -> dict[str, type[Any]]:
        return {cls.__name__: cls for cls in self._table.values()}

    def __getitem__(self, name: str) -> type[Any]:
        return self._names()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._table)


_LAYERS = _ByClassName(LAYERS)
_LOSSES = _ByClassName(LOSSES)
_OPTIMIZERS = _ByClassName(OPTIMIZERS)
#: Keys of each optimizer's ``hyperparameters()`` and the state slots it keeps per parameter.
_OPTIMIZER_KEYS: dict[str, frozenset[str]] = {
    "SGD": frozenset({"lr", "momentum", "nesterov", "weight_decay"}),
    "Adam": frozenset({"lr", "betas", "eps", "weight_decay"}),
}
_OPTIMIZER_SLOTS: dict[str, frozenset[str]] = {"SGD": frozenset({"velocity"}),
                                               "Adam": frozenset({"m", "v"})}
_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
_HEADER_KEYS = frozenset({"format", "format_version", "layers", "loss", "optimizer",
                          "training_state", "arrays"})
_ARRAY_KEYS = frozenset({"name", "dtype", "shape", "offset", "nbytes"})
#: In training_state, ``{"__array__": "state/<i>"}`` stands for that array of the file.
_ARRAY_REF = "__array__"


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    Attributes
    ----------
    model : Sequential
        The network, with its loss (or ``None``) set.
    optimizer : Optimizer or None
        The optimizer with its hyper-parameters, step count and state, when one was saved.
    training_state : dict
        The ``training_state`` passed to :func:`save` (``{}`` when none was).
    metadata : dict
        The ``metadata`` passed to :func:`save` (``{}`` when none was).
    """

    model: Sequential
    optimizer: Optimizer | None
    training_state: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


# Saving ------------------------------------------------------------------------------------


def save(
    model: Sequential,
    path: str | os.PathLike[str],
    optimizer: Optimizer | None = None,
    *,
    training_state: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (and optionally ``optimizer`` and ``training_state``) to ``path``.

    A model on any backend is written the same way, from NumPy copies of its arrays
    (:func:`jacnet.backend.to_numpy`): the file does not record where the model ran.

    The write is atomic: the file is written to a temporary file in the same directory,
    flushed and ``fsync``-ed, then renamed over ``path``. A failure or a crash at any point
    leaves any previous file at ``path`` as it was.

    Parameters
    ----------
    model : Sequential
        Built from jacnet's own layers (a user-defined ``Layer`` subclass cannot be saved),
        with float32 or float64 parameters, all finite, on the NumPy or torch backend.
    path : str or os.PathLike
        The file to write; its directory must exist.
    optimizer : SGD or Adam, optional
        Saved with its hyper-parameters, step count and per-parameter state, which must be
        keyed by the model's parameter names.
    training_state : dict, optional
        Anything else a training loop needs to resume (epoch, RNG state, history...). It must
        be JSON-serialisable: dicts with string keys, lists or tuples (loaded back as lists),
        strings, finite floats, ints, booleans and ``None``.
    metadata : dict, optional
        What the network was trained on (see :mod:`jacnet.metadata` for the keys).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    JacnetTypeError
        A layer, loss or optimizer that is not one of jacnet's built-ins, a parameter of an
        unsupported dtype, or a ``training_state`` that is not JSON-serialisable.
    JacnetValueError
        Non-finite weights or optimizer state, or state that does not match the model.
    ModelFileError
        The file could not be written (missing or unwritable directory, disk full...).
    """
    target = _as_path(path, "save path")
    header, arrays = _encode(model, optimizer, training_state, metadata)
    _atomic_write(target, header, arrays)
    return target


def _as_path(path: Any, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise JacnetTypeError(f"{name} expects a str or os.PathLike, got {describe(path)}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise JacnetTypeError(f"{name} expects a str path, got {describe(text)}")
    if not text or "\x00" in text:
        raise JacnetValueError(f"{name} expects a file name, got {text!r}")
    return Path(text)


def _registered(registry: Mapping[str, type[Any]], obj: Any) -> str | None:
    """The registry name of ``obj``'s exact class (a subclass is not the same thing)."""
    for name, cls in registry.items():
        if type(obj) is cls:
            return name
    return None


def _encode(model: Any, optimizer: Any, training_state: Any, metadata: Any = None
            ) -> tuple[bytes, list[tuple[str, FloatArray]]]:
    """Check everything and build the header bytes and the ``(name, array)`` list."""
    if not isinstance(model, Sequential):
        raise JacnetTypeError(f"save model expects a jacnet Sequential, got {describe(model)}")
    arrays: list[tuple[str, FloatArray]] = []
    layers = []
    for i, layer in enumerate(model.layers):
        kind = _registered(_LAYERS, layer)
        if kind is None:
            builtin = ", ".join(_LAYERS)
            raise JacnetTypeError(
                f"save model.layers[{i}] expects one of jacnet's built-in layers ({builtin}), "
                f"got {type(layer).__module__}.{type(layer).__qualname__}; a user-defined layer "
                "cannot be saved to a model file")
        config = layer.config()
        for group, stored, expected in _layer_arrays(layer, config):
            if stored.keys() != expected.keys():
                raise JacnetValueError(f"save model.layers[{i}] ({kind}) expects {group} "
                                       f"{sorted(expected)}, got {sorted(stored)}")
            for key, (shape, dtype_name) in expected.items():
                A = _backend.to_numpy(stored[key])  # a model on torch is written from host copies
                _check_saved_array(A, f"model.layers[{i}].{group}[{key!r}]", shape, dtype_name)
                arrays.append((_array_name(group, i, key), A))
        layers.append({"type": kind, "config": config})

    loss_name = None
    if model.loss is not None:
        loss_name = _registered(_LOSSES, model.loss)
        if loss_name is None:
            raise JacnetTypeError(f"save model.loss expects one of jacnet's built-in losses "
                                  f"({', '.join(_LOSSES)}) or None, got {type(model.loss).__qualname__}")

    optimizer_meta = None
    if optimizer is not None:
        optimizer_meta, state = _encode_optimizer(optimizer, model)
        arrays.extend(state)

    state_dict = {} if training_state is None else training_state
    if not isinstance(state_dict, dict):
        raise JacnetTypeError(f"save training_state expects a dict or None, got {describe(state_dict)}")
    state_dict = _split_state_arrays(state_dict, "training_state", arrays)
    _check_json(state_dict, "training_state", 0)

    table = []
    offset = 0
    for name, A in arrays:
        table.append({"name": name, "dtype": A.dtype.name, "shape": list(A.shape),
                      "offset": offset, "nbytes": int(A.nbytes)})
        offset += int(A.nbytes)
    header = {"format": _FORMAT_NAME, "format_version": FORMAT_VERSION, "layers": layers,
              "loss": loss_name, "optimizer": optimizer_meta, "training_state": state_dict,
              "arrays": table}
    if metadata:  # written only when given: files without it stay as they were
        _check_json(metadata, "metadata", 0)
        header["metadata"] = check_metadata(metadata, model.in_features, model.out_features)
    try:
        text = json.dumps(header, allow_nan=False, ensure_ascii=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:  # a layer's config() that is not JSON
        raise JacnetTypeError(f"save expects a JSON-serialisable description, got: {exc}") from exc
    raw = text.encode("ascii")
    if len(raw) > MAX_HEADER_BYTES:
        raise JacnetValueError(f"save expects a header of at most {MAX_HEADER_BYTES} bytes, got "
                               f"{len(raw)} (is training_state very large?)")
    return raw, arrays


def _split_state_arrays(value: Any, where: str, arrays: list[tuple[str, FloatArray]]) -> Any:
    """``value`` with every NumPy array in it replaced by ``{"__array__": "state/<i>"}``, the
    arrays appended to ``arrays`` (a callback's best weights travel in a checkpoint this way; a
    tensor is written as the NumPy array it holds)."""
    if _backend.is_torch(value):
        value = _backend.to_numpy(value)
    if isinstance(value, np.ndarray) and value.dtype.name in _DTYPES:
        name = f"state/{sum(1 for n, _ in arrays if n.startswith('state/'))}"
        _check_saved_array(value, where, value.shape, value.dtype.name)
        arrays.append((name, value))
        return {_ARRAY_REF: name}
    if isinstance(value, dict):
        if _ARRAY_REF in value:
            raise JacnetValueError(f"save {where} expects no key {_ARRAY_REF!r} (reserved for "
                                   "arrays), got one")
        return {k: _split_state_arrays(v, f"{where}[{k!r}]", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split_state_arrays(v, f"{where}[{i}]", arrays) for i, v in enumerate(value)]
    return value


def _check_saved_array(A: Any, name: str, shape: tuple[int, ...], dtype_name: str) -> None:
    if not isinstance(A, np.ndarray) or A.dtype.name not in _DTYPES:
        raise JacnetTypeError(f"save {name} expects a float32 or float64 array, got {describe(A)}")
    if A.shape != shape or A.dtype.name != dtype_name:
        raise JacnetValueError(f"save {name} expects shape {shape} and dtype {dtype_name}, "
                               f"got {describe(A)}")
    if not all_finite(A):
        raise NonFiniteError(f"save {name} expects finite values, got NaN or infinity")


def _encode_optimizer(optimizer: Any, model: Sequential
                      ) -> tuple[dict[str, Any], list[tuple[str, FloatArray]]]:
    kind = _registered(_OPTIMIZERS, optimizer)
    if kind is None:
        raise JacnetTypeError(f"save optimizer expects a jacnet SGD or Adam (or None), "
                              f"got {describe(optimizer)}")
    state = optimizer.state_dict()
    params = model.params
    slots = _OPTIMIZER_SLOTS[kind]
    arrays = []
    for key, A in state["state"].items():
        slot, _, name = key.partition("/")
        if slot not in slots or name not in params:
            raise JacnetValueError(
                f"save optimizer expects state keyed by the model's parameters "
                f"{sorted(params)} (slots {sorted(slots)}), got {key!r}; was it used on another model?")
        p = params[name]
        _check_saved_array(A, f"optimizer state {key!r}", tuple(p.shape), _backend.numpy_dtype(p).name)
        arrays.append((f"optimizer/{key}", A))
    meta = {"type": kind, "hyperparameters": state["hyperparameters"],
            "iterations": int(state["iterations"])}
    return meta, arrays


def _check_json(value: Any, where: str, depth: int) -> None:
    """Raise unless ``value`` is plain JSON data (what loads back equal, tuples aside)."""
    if depth > MAX_NESTING:
        raise JacnetValueError(f"save {where} expects JSON data nested at most {MAX_NESTING} deep, "
                               "got deeper nesting")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise JacnetValueError(f"save {where} expects finite numbers (JSON has no NaN or "
                                   f"infinity), got {value!r}")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise JacnetTypeError(f"save {where} expects string keys (JSON objects), "
                                      f"got key {key!r}")
            _check_json(item, f"{where}[{key!r}]", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]", depth + 1)
        return
    hint = "; convert NumPy values with .tolist() or int()/float()" if isinstance(
        value, (np.generic, np.ndarray)) else ""
    raise JacnetTypeError(f"save {where} expects JSON-serialisable data (dict, list, str, int, "
                          f"float, bool, None), got {type(value).__name__}{hint}")


def _atomic_write(target: Path, header: bytes, arrays: list[tuple[str, FloatArray]]) -> None:
    """Write the container: its chunks, then the SHA-256 of all of them."""
    def chunks() -> Iterator[bytes | memoryview]:
        digest = hashlib.sha256()
        for chunk in _file_chunks(header, arrays):
            digest.update(chunk)
            yield chunk
        yield digest.digest()

    write_atomically(target, chunks(), "save")


def write_atomically(target: Path, chunks: Iterable[bytes | memoryview], what: str) -> None:
    """Write ``chunks`` to a fresh temporary file beside ``target``, fsync it, rename it.

    Any failure raises :class:`ModelFileError` (``"<what> could not write <target>: ..."``) and
    leaves a previous file at ``target`` as it was.
    """
    parent = target.parent
    if target.is_dir():
        raise ModelFileError(f"{what} could not write {target}: it is a directory")
    try:
        fd, tmp = _create_temp(parent, target.name)
    except OSError as exc:
        raise ModelFileError(f"{what} could not write {target}: cannot create a file in "
                             f"{str(parent)!r}: {_reason(exc)}") from exc
    try:
        try:
            for chunk in chunks:
                _write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ModelFileError(f"{what} could not write {target}: {_reason(exc)}; any previous "
                                 "file there is unchanged") from exc
        raise
    _fsync_directory(parent)


def _create_temp(parent: Path, name: str) -> tuple[int, str]:
    """``mkstemp`` in ``parent``, but created with mode 0o666 so the umask applies as usual."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(parent, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {str(parent)!r}")


def _file_chunks(header: bytes, arrays: list[tuple[str, FloatArray]]) -> Iterator[bytes | memoryview]:
    yield _PREFIX.pack(MAGIC, len(header)) + header
    for _, A in arrays:
        little = np.ascontiguousarray(A, dtype=A.dtype.newbyteorder("<"))
        view = little.reshape(-1).view(np.uint8).data
        for start in range(0, len(view), _CHUNK):
            yield view[start:start + _CHUNK]


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(f"write returned {n}")
        view = view[n:]


def _fsync_directory(parent: Path) -> None:
    """Make the rename itself durable, where the platform allows it (best effort)."""
    try:
        fd = os.open(parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


# Loading -----------------------------------------------------------------------------------


def load(path: str | os.PathLike[str], backend: str = "numpy", device: str | None = None
         ) -> Sequential:
    """Read a model file written by :func:`save`; return the network with its loss set.

    The weights are bitwise those of the saved model, whichever backend saved it and
    whichever loads it: the same dtypes and the same values. Any optimizer state and training
    state in the file are checked and then ignored; use :func:`load_checkpoint` for them.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    backend : {"numpy", "torch"}, default "numpy"
        Where the loaded network's arrays live (see :mod:`jacnet.backend`).
    device : str, optional
        The torch device (``"cpu"``, ``"cuda"``...); ``None`` means ``"cpu"``, the only
        device of the NumPy backend.

    Returns
    -------
    Sequential

    Raises
    ------
    ModelFileError
        The file is missing, unreadable, truncated, corrupted, of another format or
        version, or describes anything but a valid jacnet network (see the module
        docstring for every check).
    JacnetValueError
        An unknown ``backend`` or a ``device`` it does not have.
    ImportError
        ``backend="torch"`` without PyTorch (``pip install 'jacnet[torch]'``).
    """
    return load_checkpoint(path, backend, device).model


def load_checkpoint(path: str | os.PathLike[str], backend: str = "numpy", device: str | None = None
                    ) -> Checkpoint:
    """Read a model file with its optimizer and training state.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.
    backend : {"numpy", "torch"}, default "numpy"
        Where the model's arrays are put (as for :func:`load`). The optimizer's state and the
        training state stay NumPy arrays; the optimizer moves its state to its parameters'
        backend at its first step.
    device : str, optional
        The torch device; ``None`` means ``"cpu"``.

    Returns
    -------
    Checkpoint
        ``model``, ``optimizer`` (``None`` when none was saved) and ``training_state``
        (``{}`` when none was saved).

    Raises
    ------
    ModelFileError, JacnetValueError, ImportError
        As for :func:`load`.
    """
    target = _as_path(path, "load path")
    name, where = _backend.check_backend(backend, device, "load")  # before reading anything
    checkpoint = _Reader(target).read()
    if name != "numpy":
        checkpoint.model.to(name, where)
    return checkpoint


def load_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata`` of a model file (``{}`` when it has none), after the full checks of
    :func:`load`."""
    return load_checkpoint(path).metadata


class _Reader:
    """One load: every check raises :class:`ModelFileError` naming ``self.path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._used: set[str] = set()  # the arrays the model and optimizer took

    def fail(self, problem: str) -> NoReturn:
        raise ModelFileError(f"load expects a valid jacnet model file, got {str(self.path)!r}: {problem}")

    def read(self) -> Checkpoint:
        data = self._read_bytes()
        header, data_start = self._parse_container(data)
        arrays = self._array_table(header, data_start, len(data))
        model = self._build_model(header, arrays, data)
        optimizer = self._build_optimizer(header, arrays, data, model)
        state = header["training_state"]
        if not isinstance(state, dict):
            self.fail(f"header 'training_state' expects an object, got {_short(state)}")
        state = self._state_arrays(state, arrays, data, 0)
        extra = sorted(set(arrays) - self._used)
        if extra:
            self.fail(f"arrays {extra} are not used by the model, optimizer or training state "
                      "described in the header")
        metadata = header.get("metadata", {})
        try:
            check_metadata(metadata, model.in_features, model.out_features)
        except JacnetValueError as exc:
            self.fail(f"header {exc}")
        return Checkpoint(model=model, optimizer=optimizer, training_state=state, metadata=metadata)

    # Bytes and container ---------------------------------------------------------------------

    def _read_bytes(self) -> bytes:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        flags |= getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            self.fail("no such file")
        except IsADirectoryError:
            self.fail("it is a directory, not a file")
        except OSError as exc:
            self.fail(f"cannot open it: {_reason(exc)}")
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                self.fail("it is a directory, not a file")
            if not stat.S_ISREG(info.st_mode):
                self.fail("it is not a regular file")
            size = info.st_size
            if size == 0:
                self.fail("the file is empty")
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read(size + 1)
        except OSError as exc:
            self.fail(f"cannot read it: {_reason(exc)}")
        finally:
            os.close(fd)
        if len(data) != size:
            self.fail(f"its size changed while reading ({size} bytes, then {len(data)})")
        return data

    def _parse_container(self, data: bytes) -> tuple[dict[str, Any], int]:
        if not data.startswith(MAGIC):
            self.fail(_sniff(data))
        minimum = _PREFIX.size + 2 + _DIGEST_BYTES
        if len(data) < minimum:
            self.fail(f"the file is only {len(data)} bytes long; a model file has at least "
                      f"{minimum} (truncated?)")
        _, header_len = _PREFIX.unpack_from(data, 0)
        if header_len > MAX_HEADER_BYTES:
            self.fail(f"its header claims {header_len} bytes, more than the limit of "
                      f"{MAX_HEADER_BYTES}")
        data_start = _PREFIX.size + header_len
        if data_start + _DIGEST_BYTES > len(data):
            self.fail(f"its header claims {header_len} bytes but the file has only {len(data)} "
                      "bytes (truncated?)")
        body = memoryview(data)[:-_DIGEST_BYTES]
        if hashlib.sha256(body).digest() != data[-_DIGEST_BYTES:]:
            self.fail("its SHA-256 checksum does not match: the file is truncated, corrupted "
                      "or was modified")
        try:
            text = data[_PREFIX.size:data_start].decode("utf-8")
            header = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                                object_pairs_hook=_unique_keys)
        except RecursionError:
            self.fail("its JSON header is nested too deeply")
        except (UnicodeDecodeError, ValueError) as exc:
            self.fail(f"its header is not valid JSON: {exc}")
        if not isinstance(header, dict):
            self.fail(f"its header expects a JSON object, got {_short(header)}")
        if header.get("format") != _FORMAT_NAME:
            self.fail(f"header 'format' expects {_FORMAT_NAME!r}, got {_short(header.get('format'))}")
        version = header.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:
            self.fail(f"unsupported format version {_short(version)}; this jacnet reads version "
                      f"{FORMAT_VERSION} (a newer jacnet may read it)")
        self._check_keys(header, _HEADER_KEYS | ({"metadata"} & header.keys()), "header")
        return header, data_start

    def _check_keys(self, obj: Any, keys: frozenset[str], where: str) -> None:
        if not isinstance(obj, dict):
            self.fail(f"{where} expects a JSON object, got {_short(obj)}")
        missing = sorted(keys - obj.keys())
        unknown = sorted(obj.keys() - keys)
        if missing:
            self.fail(f"{where} is missing keys {missing}")
        if unknown:
            self.fail(f"{where} has unknown keys {[_short(k) for k in unknown]}")

    def _array_table(self, header: dict[str, Any], data_start: int, size: int
                     ) -> dict[str, tuple[np.dtype[Any], tuple[int, ...], int, int]]:
        """Check the table against the file's real size; nothing is allocated here."""
        table = header["arrays"]
        if not isinstance(table, list):
            self.fail(f"header 'arrays' expects a list, got {_short(table)}")
        arrays: dict[str, tuple[np.dtype[Any], tuple[int, ...], int, int]] = {}
        available = size - data_start - _DIGEST_BYTES
        position = 0
        for i, entry in enumerate(table):
            where = f"header arrays[{i}]"
            self._check_keys(entry, _ARRAY_KEYS, where)
            name = entry["name"]
            if not isinstance(name, str):
                self.fail(f"{where} 'name' expects a string, got {_short(name)}")
            if name in arrays:
                self.fail(f"{where}: array {name!r} is listed twice")
            where = f"array {name!r}"
            dtype_name = entry["dtype"]
            if not isinstance(dtype_name, str) or dtype_name not in _DTYPES:
                self.fail(f"{where} dtype expects one of {sorted(_DTYPES)}, got {_short(dtype_name)}")
            dtype = _DTYPES[dtype_name]
            shape = entry["shape"]
            if (not isinstance(shape, list) or len(shape) > _MAX_NDIM
                    or not all(type(d) is int and d >= 0 for d in shape)):
                self.fail(f"{where} shape expects a list of at most {_MAX_NDIM} integers >= 0, "
                          f"got {_short(shape)}")
            count = math.prod(shape)
            nbytes, offset = entry["nbytes"], entry["offset"]
            if type(nbytes) is not int or nbytes != count * dtype.itemsize:
                self.fail(f"{where} nbytes expects {count * dtype.itemsize} for shape {tuple(shape)} "
                          f"of {dtype_name}, got {_short(nbytes)}")
            if type(offset) is not int or offset != position:
                relation = ("overlaps the previous array" if type(offset) is int and offset < position
                            else "leaves a gap after the previous array")
                if type(offset) is not int or offset < 0:
                    relation = "is not a valid offset"
                self.fail(f"{where} offset expects {position} (arrays are packed in table order), "
                          f"got {_short(offset)}, which {relation}")
            if position + nbytes > available:
                self.fail(f"{where} ends at byte {position + nbytes} of the data section, but the "
                          f"file holds only {available} bytes of data (truncated, or a declared "
                          "shape far larger than the file)")
            position += nbytes
            arrays[name] = (dtype, tuple(shape), data_start + offset, count)
        if position != available:
            self.fail(f"the arrays take {position} bytes but the data section holds {available} "
                      "(trailing or missing bytes)")
        return arrays

    def _array(self, arrays: dict[str, tuple[np.dtype[Any], tuple[int, ...], int, int]], data: bytes,
               name: str, shape: tuple[int, ...], dtype_name: str) -> FloatArray:
        """Copy array ``name`` out of ``data`` after checking it has the expected shape and dtype."""
        if name not in arrays:
            self.fail(f"array {name!r} is missing")
        dtype, declared, start, count = arrays[name]
        if declared != shape:
            self.fail(f"array {name!r} expects shape {shape}, got {declared}")
        if dtype.name != dtype_name:
            self.fail(f"array {name!r} expects dtype {dtype_name}, got {dtype.name}")
        A = np.frombuffer(data, dtype=dtype, count=count, offset=start).reshape(shape)
        A = A.astype(dtype.newbyteorder("="), copy=True)
        if not all_finite(A):
            self.fail(f"array {name!r} holds NaN or infinite values")
        self._used.add(name)
        return A

    def _state_arrays(self, value: Any, arrays: dict[str, tuple[np.dtype[Any], tuple[int, ...], int, int]],
                      data: bytes, depth: int) -> Any:
        """``value`` with each ``{"__array__": name}`` replaced by that ``state/`` array."""
        if depth > MAX_NESTING:
            self.fail("its training_state is nested too deeply")
        if isinstance(value, dict):
            if _ARRAY_REF in value:
                name = value[_ARRAY_REF]
                if len(value) != 1 or not isinstance(name, str) or not name.startswith("state/"):
                    self.fail(f"training_state holds a malformed array reference {_short(value)}")
                if name in self._used:
                    self.fail(f"training_state refers to array {name!r} twice")
                if name not in arrays:
                    self.fail(f"array {name!r} is missing")
                dtype, shape, _, _ = arrays[name]
                return self._array(arrays, data, name, shape, dtype.name)
            return {k: self._state_arrays(v, arrays, data, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self._state_arrays(v, arrays, data, depth + 1) for v in value]
        return value

    # Model -----------------------------------------------------------------------------------

    def _build_model(self, header: dict[str, Any],
                     arrays: dict[str, tuple[np.dtype[Any], tuple[int, ...], int, int]],
                     data: bytes) -> Sequential:
        specs = header["layers"]
        if not isinstance(specs, list) or not specs:
            self.fail(f"header 'layers' expects a non-empty list, got {_short(specs)}")
        layers: list[Layer] = []
        for i, spec in enumerate(specs):
            where = f"header layers[{i}]"
            self._check_keys(spec, frozenset({"type", "config"}), where)
            kind = spec["type"]
            if not isinstance(kind, str) or kind not in _LAYERS:
                self.fail(f"{where} has unknown layer type {_short(kind)}; known types are "
                          f"{sorted(_LAYERS)}")
            config = spec["config"]
            if not isinstance(config, dict):
                self.fail(f"{where} ({kind}) config expects a JSON object, got {_short(config)}")
            cls = _LAYERS[kind]
            parameters = inspect.signature(cls).parameters
            unknown = sorted(set(config) - set(parameters))
            if unknown:
                self.fail(f"{where} ({kind}) config has unknown keys {[_short(k) for k in unknown]}")
            missing = sorted(name for name, p in parameters.items()
                             if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                             and name not in config)
            if missing:
                self.fail(f"{where} ({kind}) config is missing keys {missing}")
            try:  # shapes from the config alone: checked against the table before any allocation
                cls.check_config(config)
                groups = {"params": cls.param_shapes(config), "buffers": cls.buffer_shapes(config)}
            except (JacnetError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
                self.fail(f"{where} ({kind}) config is invalid: {_describe(exc)}")
            loaded = {group: {key: self._array(arrays, data, _array_name(group, i, key),
                                               _shape(shape), dtype_name)
                              for key, (shape, dtype_name) in expected.items()}
                      for group, expected in groups.items()}
            try:
                layer = cls.from_config(config)
            except (JacnetError, TypeError, ValueError, ArithmeticError) as exc:
                self.fail(f"{where} ({kind}) config is invalid: {_describe(exc)}")
            for key, A in loaded["params"].items():
                layer.params[key] = A
                layer.grads[key] = np.zeros_like(A)
            layer.buffers.update(loaded["buffers"])
            layers.append(layer)
        loss_name = header["loss"]
        loss = None
        if loss_name is not None:
            if not isinstance(loss_name, str) or loss_name not in _LOSSES:
                self.fail(f"header 'loss' has unknown loss {_short(loss_name)}; known losses are "
                          f"{sorted(_LOSSES)} or null")
            loss = _LOSSES[loss_name]()
        return Sequential(layers, loss=loss)

    # Optimizer -------------------------------------------------------------------------------

    def _build_optimizer(self, header: dict[str, Any],
                         arrays: dict[str, tuple[np.dtype[Any], tuple[int, ...], int, int]],
                         data: bytes, model: Sequential) -> Optimizer | None:
        meta = header["optimizer"]
        if meta is None:
            return None
        where = "header optimizer"
        self._check_keys(meta, frozenset({"type", "hyperparameters", "iterations"}), where)
        kind = meta["type"]
        if not isinstance(kind, str) or kind not in _OPTIMIZERS:
            self.fail(f"{where} has unknown optimizer type {_short(kind)}; known types are "
                      f"{sorted(_OPTIMIZERS)}")
        hyper = meta["hyperparameters"]
        self._check_keys(hyper, _OPTIMIZER_KEYS[kind], f"{where} ({kind}) hyperparameters")
        kwargs = dict(hyper)
        if kind == "Adam" and isinstance(kwargs["betas"], list):
            kwargs["betas"] = tuple(kwargs["betas"])
        try:
            optimizer = _OPTIMIZERS[kind](**kwargs)
        except (JacnetError, TypeError, ValueError, ArithmeticError) as exc:
            self.fail(f"{where} ({kind}) hyperparameters are invalid: {exc}")
        iterations = meta["iterations"]
        if type(iterations) is not int or not 0 <= iterations < 2**63:
            self.fail(f"{where} 'iterations' expects an integer >= 0, got {_short(iterations)}")
        params = model.params
        slots = _OPTIMIZER_SLOTS[kind]
        state: dict[str, FloatArray] = {}
        for name in arrays:
            if not name.startswith("optimizer/"):
                continue
            key = name[len("optimizer/"):]
            slot, _, param = key.partition("/")
            if slot not in slots or param not in params:
                self.fail(f"array {name!r} is not state of a {kind} optimizer for this model "
                          f"(slots {sorted(slots)}, parameters {sorted(params)})")
            p = params[param]
            state[key] = self._array(arrays, data, name, p.shape, p.dtype.name)
        # A parameter the optimizer never stepped has no state; one it did has every slot.
        for param in sorted({key.partition("/")[2] for key in state}):
            for slot in sorted(slots):
                if f"{slot}/{param}" not in state:
                    self.fail(f"array 'optimizer/{slot}/{param}' is missing (the {kind} state of "
                              f"parameter {param!r} needs slots {sorted(slots)})")
        try:
            optimizer.load_state_dict({"type": kind, "hyperparameters": hyper,
                                       "iterations": iterations, "state": state})
        except (JacnetError, TypeError, ValueError) as exc:
            self.fail(f"{where} state is invalid: {exc}")
        return optimizer


# Helpers -----------------------------------------------------------------------------------


def _array_name(group: str, i: int, key: str) -> str:
    """``model/<i>.<param>`` (the keys of ``Sequential.params``) or ``buffer/<i>.<name>``."""
    return f"model/{i}.{key}" if group == "params" else f"buffer/{i}.{key}"


def _layer_arrays(layer: Layer, config: dict[str, Any]
                  ) -> list[tuple[str, dict[str, FloatArray], dict[str, tuple[tuple[int, ...], str]]]]:
    """Each array group of ``layer`` with what its class says it holds for ``config``."""
    cls = type(layer)
    return [("params", layer.params, cls.param_shapes(config)),
            ("buffers", layer.buffers, cls.buffer_shapes(config))]


def _shape(shape: Any) -> tuple[int, ...]:
    """A declared shape as a tuple (a config may hold anything: the table check refuses it)."""
    return tuple(shape) if isinstance(shape, (list, tuple)) else (shape,)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _sniff(data: bytes) -> str:
    """Say what a file that lacks the magic bytes looks like."""
    if MAGIC.startswith(data):
        return f"the file is only {len(data)} bytes long (truncated?)"
    if data.startswith(MAGIC[:6]):
        return (f"unsupported container revision {data[6:8]!r}; this jacnet reads {MAGIC[6:8]!r}")
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "it is a zip archive (an .npz?), not a jacnet model file; jacnet does not open archives"
    if data[:1] == b"\x80":
        return "it looks like a Python pickle, not a jacnet model file; jacnet never unpickles"
    if data.startswith(b"\x93NUMPY"):
        return "it is a NumPy .npy file, not a jacnet model file"
    return f"it does not start with the jacnet magic bytes {MAGIC!r} (got {data[:8]!r})"


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed (JSON has no NaN or infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows to infinity")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
