"""Model files: bitwise round trips, optimizer and training state, every kind of bad file
(each raising ModelFileError that names the file), and atomic, crash-safe saving."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jacnet
from jacnet import (
    SGD,
    Adam,
    Affine,
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    JacnetTypeError,
    JacnetValueError,
    Layer,
    LeakyReLU,
    Loss,
    MeanSquaredError,
    ModelFileError,
    NonFiniteError,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
    build_mlp,
)
from jacnet.io import MAGIC, MAX_HEADER_BYTES, Checkpoint, load, load_checkpoint, save

PREFIX = struct.Struct("<8sQ")

# Helpers ------------------------------------------------------------------------------------


def small_model(dtype: Any = np.float32) -> Sequential:
    model = Sequential([Affine(3, 4, rng=0, dtype=dtype), ReLU(), Affine(4, 2, rng=1, dtype=dtype)],
                       loss=SoftmaxCrossEntropy())
    for p in model.params.values():  # non-zero biases, so a lost bias shows
        p += np.linspace(-0.5, 0.5, p.size, dtype=dtype).reshape(p.shape)
    return model


def trained(model: Sequential, optimizer: jacnet.Optimizer, steps: int = 3, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        X = rng.standard_normal((5, model.in_features or 1)).astype(model.dtype)
        Y = model.forward(X)
        model.backward(np.ones_like(Y) / Y.size)
        optimizer.step(model.params, model.grads)


def put(path: Path, content: bytes) -> None:
    """Write a fresh file (unlink first: rewriting a file in place is slow on ext4)."""
    path.unlink(missing_ok=True)
    path.write_bytes(content)


def split(path: Path) -> tuple[dict[str, Any], bytes]:
    """Read a file by the documented layout: the header as a dict and the data section."""
    raw = path.read_bytes()
    magic, n = PREFIX.unpack_from(raw)
    assert magic == MAGIC
    assert hashlib.sha256(raw[:-32]).digest() == raw[-32:]
    return json.loads(raw[16:16 + n]), raw[16 + n:-32]


def signed(path: Path, header: dict[str, Any] | bytes, data: bytes,
           length: int | None = None) -> Path:
    """Write a file with a *valid* checksum, so only the semantic checks can catch an edit."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = PREFIX.pack(MAGIC, len(text) if length is None else length) + text + data
    put(path, body + hashlib.sha256(body).digest())
    return path


def entry(header: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in header["arrays"] if e["name"] == name)


def repack(header: dict[str, Any], arrays: dict[str, bytes]) -> bytes:
    """Recompute offsets and nbytes for the table order and return the new data section."""
    offset = 0
    for e in header["arrays"]:
        e["offset"] = offset
        e["nbytes"] = len(arrays[e["name"]])
        offset += e["nbytes"]
    return b"".join(arrays[e["name"]] for e in header["arrays"])


def array_bytes(header: dict[str, Any], data: bytes) -> dict[str, bytes]:
    return {e["name"]: data[e["offset"]:e["offset"] + e["nbytes"]] for e in header["arrays"]}


def rejects(path: Path, *fragments: str) -> str:
    """Assert loading fails with ModelFileError naming the file (and the given fragments)."""
    with pytest.raises(ModelFileError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    assert isinstance(info.value, ValueError)
    return message


def rejects_measured(path: Path, *fragments: str) -> tuple[float, int]:
    """``rejects``, returning the seconds it took and the peak of traced allocations (bytes)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        rejects(path, *fragments)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return time.perf_counter() - started, peak


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model = small_model()
    optimizer = Adam(0.01)
    trained(model, optimizer)
    return save(model, tmp_path / "model.jacnet", optimizer, training_state={"epoch": 3})


# Round trips --------------------------------------------------------------------------------


def architectures(dtype: Any) -> dict[str, Sequential]:
    return {
        "relu-logits": build_mlp(5, [7, 6], 3, rng=0, dtype=dtype),
        "leaky-softmax": Sequential([Affine(5, 8, rng=1, dtype=dtype), LeakyReLU(0.2),
                                     Affine(8, 3, rng=2, dtype=dtype), Softmax()],
                                    loss=CategoricalCrossEntropy()),
        "tanh-sigmoid": Sequential([Affine(5, 4, init="glorot", rng=3, dtype=dtype), Tanh(),
                                    Affine(4, 1, rng=4, dtype=dtype), Sigmoid()],
                                   loss=BinaryCrossEntropy()),
        "linear-mse": Sequential([Affine(5, 2, rng=5, dtype=dtype)], loss=MeanSquaredError()),
        "sigmoid-hidden": build_mlp(5, [3], 4, activation="sigmoid", rng=6, dtype=dtype),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(architectures(np.float32)))
def test_round_trip_predicts_bitwise_the_same(tmp_path: Path, dtype: Any, name: str) -> None:
    model = architectures(dtype)[name]
    X = np.random.default_rng(0).standard_normal((9, 5)).astype(dtype) * 3
    path = save(model, tmp_path / "m.jacnet")
    assert isinstance(path, Path) and path == tmp_path / "m.jacnet"
    loaded = load(path)
    assert isinstance(loaded, Sequential)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert [layer.config() for layer in loaded.layers] == [layer.config() for layer in model.layers]
    assert type(loaded.loss) is type(model.loss)
    assert loaded.params.keys() == model.params.keys()
    for k, p in model.params.items():
        assert loaded.params[k].dtype == p.dtype
        assert loaded.params[k].tobytes() == p.tobytes()
        assert loaded.params[k] is not p and loaded.params[k].flags.writeable
    before, after = model.predict(X), loaded.predict(X)
    assert after.dtype == before.dtype == np.dtype(dtype)
    assert after.tobytes() == before.tobytes()
    assert temp_files(tmp_path) == []


def test_loaded_model_trains_like_the_original(tmp_path: Path) -> None:
    model = small_model()
    loaded = load(save(model, tmp_path / "m.jacnet"))
    trained(model, SGD(0.1))
    trained(loaded, SGD(0.1))
    for k, p in model.params.items():
        assert loaded.params[k].tobytes() == p.tobytes()


def test_leaky_relu_slope_survives(tmp_path: Path) -> None:
    model = Sequential([Affine(2, 2, rng=0), LeakyReLU(negative_slope=0.123456789)])
    loaded = load(save(model, tmp_path / "m.jacnet"))
    layer = loaded.layers[1]
    assert isinstance(layer, LeakyReLU) and layer.negative_slope == 0.123456789


def test_the_file_follows_the_documented_layout(saved: Path) -> None:
    header, data = split(saved)
    assert header["format"] == "jacnet-model" and header["format_version"] == 1
    assert [layer["type"] for layer in header["layers"]] == ["Affine", "ReLU", "Affine"]
    assert header["loss"] == "SoftmaxCrossEntropy"
    assert header["optimizer"]["type"] == "Adam" and header["optimizer"]["iterations"] == 3
    assert header["training_state"] == {"epoch": 3}
    W = load(saved).params["0.W"]
    e = entry(header, "model/0.W")
    assert e == {"name": "model/0.W", "dtype": "float32", "shape": [3, 4], "offset": 0, "nbytes": 48}
    assert data[:48] == W.astype("<f4").tobytes()
    assert sum(e["nbytes"] for e in header["arrays"]) == len(data)


def test_optimizer_free_file_has_no_optimizer(tmp_path: Path) -> None:
    checkpoint = load_checkpoint(save(small_model(), tmp_path / "m.jacnet"))
    assert isinstance(checkpoint, Checkpoint)
    assert checkpoint.optimizer is None and checkpoint.training_state == {}
    with pytest.raises(AttributeError):
        checkpoint.model = small_model()  # type: ignore[misc]  # frozen


def test_save_accepts_str_paths_and_overwrites(tmp_path: Path) -> None:
    first, second = small_model(), build_mlp(3, [2], 2, rng=9)
    path = str(tmp_path / "m.jacnet")
    save(first, path)
    save(second, path)
    assert load(path).params["0.W"].shape == (3, 2)
    assert temp_files(tmp_path) == []


def test_new_files_respect_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        path = save(small_model(), tmp_path / "m.jacnet")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


# Optimizer and training state ---------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: Adam(0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01),
    lambda: SGD(0.05, momentum=0.9),
    lambda: SGD(0.05, momentum=0.5, nesterov=True, weight_decay=1e-3),
    lambda: SGD(0.05),
], ids=["adam", "sgd-momentum", "sgd-nesterov", "sgd-plain"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_state_round_trips_to_the_same_next_step(
        tmp_path: Path, make: Callable[[], jacnet.Optimizer], dtype: Any) -> None:
    model, optimizer = small_model(dtype), make()
    trained(model, optimizer, steps=4)
    checkpoint = load_checkpoint(save(model, tmp_path / "ckpt.jacnet", optimizer))
    restored = checkpoint.optimizer
    assert type(restored) is type(optimizer)
    assert restored is not None
    assert restored.hyperparameters() == optimizer.hyperparameters()
    assert restored.iterations == optimizer.iterations == 4
    original_state = optimizer.state_dict()["state"]
    restored_state = restored.state_dict()["state"]
    assert restored_state.keys() == original_state.keys()
    for k, v in original_state.items():
        assert restored_state[k].dtype == v.dtype and restored_state[k].tobytes() == v.tobytes()
    # The next steps, from the same gradients, give bitwise the same parameters.
    trained(model, optimizer, steps=2, seed=5)
    trained(checkpoint.model, restored, steps=2, seed=5)
    for k, p in model.params.items():
        assert checkpoint.model.params[k].tobytes() == p.tobytes()


def test_adam_betas_come_back_as_a_tuple(tmp_path: Path) -> None:
    model = small_model()
    optimizer = Adam(betas=(0.5, 0.75))
    restored = load_checkpoint(save(model, tmp_path / "m.jacnet", optimizer)).optimizer
    assert isinstance(restored, Adam) and restored.betas == (0.5, 0.75)


def test_training_state_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(42)
    rng.standard_normal(7)
    state = {"epoch": 12, "seed": 2**63 - 1, "rng": rng.bit_generator.state,
             "history": {"loss": [1.5, 0.25, 1e-300], "epochs": [0, 1, 2]},
             "name": "run é ☃", "flags": [True, False, None], "nested": {"a": {"b": [[]]}}}
    checkpoint = load_checkpoint(save(small_model(), tmp_path / "m.jacnet", training_state=state))
    assert checkpoint.training_state == state
    resumed = np.random.default_rng()
    resumed.bit_generator.state = checkpoint.training_state["rng"]
    assert resumed.standard_normal(5).tobytes() == rng.standard_normal(5).tobytes()


def test_tuples_in_training_state_come_back_as_lists(tmp_path: Path) -> None:
    path = save(small_model(), tmp_path / "m.jacnet", training_state={"pair": (1, 2)})
    assert load_checkpoint(path).training_state == {"pair": [1, 2]}


@pytest.mark.parametrize(("state", "error", "fragment"), [
    ({"x": np.float32(1.0)}, JacnetTypeError, "float32"),
    ({"x": np.arange(3)}, JacnetTypeError, "tolist"),
    ({"x": object()}, JacnetTypeError, "object"),
    ({1: "a"}, JacnetTypeError, "string keys"),
    ({"x": {"y": [float("nan")]}}, JacnetValueError, "['x']['y'][0]"),
    ({"x": float("inf")}, JacnetValueError, "finite"),
    ({"x": {1, 2}}, JacnetTypeError, "set"),
    ([1, 2], JacnetTypeError, "dict"),
], ids=["np-float32", "array", "object", "int-key", "nan", "inf", "set", "list"])
def test_training_state_must_be_json(tmp_path: Path, state: Any, error: type[Exception],
                                     fragment: str) -> None:
    path = tmp_path / "m.jacnet"
    with pytest.raises(error, match="training_state") as info:
        save(small_model(), path, training_state=state)
    assert fragment in str(info.value)
    assert not path.exists() and temp_files(tmp_path) == []


def test_training_state_nesting_is_bounded(tmp_path: Path) -> None:
    deep: Any = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(JacnetValueError, match="nested"):
        save(small_model(), tmp_path / "m.jacnet", training_state={"deep": deep})


# What cannot be saved -----------------------------------------------------------------------


class Doubler(Layer):
    def forward(self, X: Any) -> Any:
        return 2 * np.asarray(X)


class MyReLU(ReLU):
    pass


def test_user_defined_layer_is_refused_at_save(tmp_path: Path) -> None:
    path = tmp_path / "m.jacnet"
    for layer in (Doubler(), MyReLU()):
        with pytest.raises(JacnetTypeError, match=r"layers\[1\].*built-in layers") as info:
            save(Sequential([Affine(2, 2, rng=0), layer]), path)
        assert type(layer).__name__ in str(info.value)
    assert not path.exists() and temp_files(tmp_path) == []


def test_user_defined_loss_and_optimizer_are_refused(tmp_path: Path) -> None:
    class MyLoss(Loss):
        pass

    class MyAdam(Adam):
        pass

    with pytest.raises(JacnetTypeError, match="loss"):
        save(Sequential([Affine(2, 2, rng=0)], loss=MyLoss()), tmp_path / "a")
    with pytest.raises(JacnetTypeError, match="optimizer"):
        save(small_model(), tmp_path / "b", MyAdam())
    with pytest.raises(JacnetTypeError, match="Sequential"):
        save(Affine(2, 2), tmp_path / "c")  # type: ignore[arg-type]
    with pytest.raises(JacnetTypeError, match="path"):
        save(small_model(), 3)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_unsaveable_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(JacnetTypeError, match="Affine dtype expects float32 or float64, got float16"):
        Affine(2, 2, rng=0, dtype=np.float16)
    half = Sequential([Affine(2, 2, rng=0)])
    half.layers[0].params["W"] = half.layers[0].params["W"].astype(np.float16)
    with pytest.raises(JacnetTypeError, match="float32 or float64"):
        save(half, tmp_path / "m")
    broken = small_model()
    broken.params["2.b"][0] = np.nan
    with pytest.raises(NonFiniteError, match=r"params\['b'\]"):
        save(broken, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_optimizer_state_of_another_model_is_refused(tmp_path: Path) -> None:
    optimizer = Adam()
    trained(build_mlp(3, [9], 2, rng=0), optimizer)
    with pytest.raises(JacnetValueError, match="optimizer"):
        save(small_model(), tmp_path / "m", optimizer)


# Bad files: the container -------------------------------------------------------------------


def test_missing_file_says_so(tmp_path: Path) -> None:
    rejects(tmp_path / "nope.jacnet", "no such file")


def test_directory_is_refused(tmp_path: Path) -> None:
    rejects(tmp_path, "directory")
    with pytest.raises(ModelFileError, match="directory"):
        save(small_model(), tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jacnet"
    path.write_bytes(b"")
    rejects(path, "empty")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe.jacnet"
    os.mkfifo(path)
    rejects(path, "not a regular file")


def test_truncated_at_every_offset(saved: Path, tmp_path: Path) -> None:
    raw = saved.read_bytes()
    bad = tmp_path / "cut.jacnet"
    for n in range(len(raw)):
        put(bad, raw[:n])
        rejects(bad)


def test_single_bit_flips_are_detected(saved: Path, tmp_path: Path) -> None:
    raw = bytearray(saved.read_bytes())
    bad = tmp_path / "flip.jacnet"
    rng = np.random.default_rng(1)
    positions = list(range(64)) + list(rng.integers(0, len(raw), 400)) + list(range(len(raw) - 40, len(raw)))
    for position in positions:
        flipped = bytearray(raw)
        flipped[position] ^= 1 << int(rng.integers(8))
        put(bad, bytes(flipped))
        rejects(bad)


def test_inserted_and_deleted_bytes_are_detected(saved: Path, tmp_path: Path) -> None:
    raw = saved.read_bytes()
    bad = tmp_path / "edit.jacnet"
    for position in [0, 7, 8, 16, 17, 100, len(raw) // 2, len(raw) - 33, len(raw) - 1, len(raw)]:
        for extra in (b"\x00", b"junk", b"\xff" * 1000):
            put(bad, raw[:position] + extra + raw[position:])
            rejects(bad)
        if position < len(raw):
            put(bad, raw[:position] + raw[position + 1:])
            rejects(bad)


def test_changed_checksum_is_detected(saved: Path, tmp_path: Path) -> None:
    raw = saved.read_bytes()
    bad = tmp_path / "sum.jacnet"
    put(bad, raw[:-32] + bytes(32))
    rejects(bad, "checksum")


def test_wrong_magic_and_revision(saved: Path, tmp_path: Path) -> None:
    header, data = split(saved)
    text = json.dumps(header).encode()
    bad = tmp_path / "magic.jacnet"
    body = b"JACNET\x00\x02" + struct.pack("<Q", len(text)) + text + data
    put(bad, body + hashlib.sha256(body).digest())
    rejects(bad, "container revision")
    put(bad, b"hello world, this is plainly not a model file at all" * 3)
    rejects(bad, "magic")
    put(bad, MAGIC[:5])
    rejects(bad, "truncated")


def test_huge_header_length_fails_fast(saved: Path, tmp_path: Path) -> None:
    header, data = split(saved)
    for length in (MAX_HEADER_BYTES + 1, 2**63, 2**64 - 1):
        rejects(signed(tmp_path / "h.jacnet", header, data, length=length), "header")
    # A length within the limit but past the end of the file.
    rejects(signed(tmp_path / "h.jacnet", header, data, length=10**6), "truncated")


# Bad files: hostile formats -----------------------------------------------------------------


class Payload:
    """Unpickling this would create a directory: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_pickle_payload_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(Payload(marker))
    for name, content in [("model.jacnet", payload), ("model.pkl", payload),
                          ("prefixed.jacnet", MAGIC + payload),
                          ("proto0.jacnet", pickle.dumps(Payload(marker), protocol=0))]:
        path = tmp_path / name
        path.write_bytes(content)
        message = rejects(path)
        if name in ("model.jacnet", "model.pkl"):
            assert "pickle" in message
    assert not marker.exists()
    # Wrapped in a valid container, as an "array", it is just bytes that fail the checks.
    header, data = split(save(small_model(), tmp_path / "valid.jacnet"))
    header["arrays"].append({"name": "model/0.__reduce__", "dtype": "float32", "shape": [],
                             "offset": 0, "nbytes": 4})
    arrays = array_bytes(header, data + b"\x00" * 4)
    arrays["model/0.__reduce__"] = payload[:4]
    path = signed(tmp_path / "wrapped.jacnet", header, repack(header, arrays))
    rejects(path, "not used")
    assert not marker.exists()


def test_npz_and_zip_bombs_are_refused_without_inflating(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.jacnet"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            archive.writestr(f"arr_{i}.npy", b"\x00" * (16 << 20))  # 48 MiB inflated
    bomb.write_bytes(buffer.getvalue())
    assert bomb.stat().st_size < 1 << 20
    seconds, peak = rejects_measured(bomb, "zip")
    assert seconds < 1.0
    assert peak < 4 << 20
    npz = tmp_path / "weights.npz"
    np.savez(npz, W=np.ones((3, 3)))
    rejects(npz, "zip")
    npy = tmp_path / "weights.npy"
    np.save(npy, np.ones(3))
    rejects(npy, "npy")


# Bad files: header edits with a valid checksum ----------------------------------------------

Edit = Callable[[dict[str, Any], dict[str, bytes]], None]


def _set(path: list[Any], value: Any) -> Edit:
    def edit(header: dict[str, Any], arrays: dict[str, bytes]) -> None:
        target: Any = header
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _drop_key(key: str) -> Edit:
    def edit(header: dict[str, Any], arrays: dict[str, bytes]) -> None:
        del header[key]
    return edit


def _drop_array(name: str) -> Edit:
    def edit(header: dict[str, Any], arrays: dict[str, bytes]) -> None:
        header["arrays"] = [e for e in header["arrays"] if e["name"] != name]
    return edit


def _extra_array(name: str, shape: list[int]) -> Edit:
    def edit(header: dict[str, Any], arrays: dict[str, bytes]) -> None:
        header["arrays"].append({"name": name, "dtype": "float32", "shape": shape,
                                 "offset": 0, "nbytes": 0})
        arrays[name] = np.ones(shape, dtype="<f4").tobytes()
    return edit


def _transpose_w(header: dict[str, Any], arrays: dict[str, bytes]) -> None:
    entry(header, "model/0.W")["shape"] = [4, 3]


def _float64_w(header: dict[str, Any], arrays: dict[str, bytes]) -> None:
    entry(header, "model/0.W")["dtype"] = "float64"
    arrays["model/0.W"] = np.frombuffer(arrays["model/0.W"], "<f4").astype("<f8").tobytes()


def _poison(name: str, value: float) -> Edit:
    def edit(header: dict[str, Any], arrays: dict[str, bytes]) -> None:
        dtype = "<f4" if entry(header, name)["dtype"] == "float32" else "<f8"
        A = np.frombuffer(arrays[name], dtype).copy()
        A[-1] = value
        arrays[name] = A.tobytes()
    return edit


def _dtype(value: str) -> Edit:
    def edit(header: dict[str, Any], arrays: dict[str, bytes]) -> None:
        entry(header, "model/2.b")["dtype"] = value
    return edit


def _both_layer_configs(in_features: int) -> Edit:
    def edit(header: dict[str, Any], arrays: dict[str, bytes]) -> None:
        header["layers"][0]["config"]["in_features"] = in_features
    return edit


HEADER_EDITS: dict[str, tuple[Edit, str]] = {
    "unknown-version": (_set(["format_version"], 2), "unsupported format version 2"),
    "version-as-string": (_set(["format_version"], "1"), "format version"),
    "wrong-format-name": (_set(["format"], "keras"), "format"),
    "unknown-top-key": (_set(["exec"], "import os"), "unknown keys"),
    "missing-top-key": (_drop_key("loss"), "missing keys"),
    "unknown-layer": (_set(["layers", 1, "type"], "Conv3D"), "unknown layer type"),
    "importable-layer": (_set(["layers", 1, "type"], "os.system"), "unknown layer type"),
    "dunder-layer": (_set(["layers", 1, "type"], "__class__"), "unknown layer type"),
    "layer-extra-config": (_set(["layers", 1, "config"], {"inplace": True}), "unknown keys"),
    "layer-missing-config": (_set(["layers", 0, "config"], {"in_features": 3}), "missing keys"),
    "layer-bad-width": (_set(["layers", 0, "config", "in_features"], 0), "in_features"),
    "layer-bool-width": (_set(["layers", 0, "config", "in_features"], True), "in_features"),
    "layer-bad-dtype": (_set(["layers", 0, "config", "dtype"], "object"), "dtype"),
    "no-layers": (_set(["layers"], []), "non-empty"),
    "layers-not-list": (_set(["layers"], {"0": "Affine"}), "layers"),
    "unknown-loss": (_set(["loss"], "builtins.eval"), "unknown loss"),
    "unknown-optimizer": (_set(["optimizer", "type"], "RMSprop"), "unknown optimizer"),
    "bad-lr": (_set(["optimizer", "hyperparameters", "lr"], -1.0), "lr"),
    "huge-int-lr": (_set(["optimizer", "hyperparameters", "lr"], 10**400), "hyperparameters"),
    "extra-hyperparameter": (_set(["optimizer", "hyperparameters", "amsgrad"], True), "unknown keys"),
    "bad-iterations": (_set(["optimizer", "iterations"], -3), "iterations"),
    "float-iterations": (_set(["optimizer", "iterations"], 2.5), "iterations"),
    "training-state-list": (_set(["training_state"], [1, 2]), "training_state"),
    "missing-array": (_drop_array("model/2.b"), "'model/2.b' is missing"),
    "missing-optimizer-array": (_drop_array("optimizer/m/0.W"), "'optimizer/m/0.W' is missing"),
    "extra-array": (_extra_array("model/1.W", [2]), "not used"),
    "extra-optimizer-array": (_extra_array("optimizer/m/9.W", [2]), "not state"),
    "unknown-optimizer-slot": (_extra_array("optimizer/velocity/0.b", [4]), "not state"),
    "wrong-shape": (_transpose_w, "expects shape (3, 4), got (4, 3)"),
    "wrong-dtype": (_float64_w, "expects dtype float32, got float64"),
    "config-disagrees-with-array": (_both_layer_configs(5), "expects shape (5, 4)"),
    "unsupported-dtype": (_dtype("float16"), "dtype"),
    "object-dtype": (_dtype("object"), "dtype"),
    "pickle-dtype": (_dtype("|O"), "dtype"),
    "nan-weight": (_poison("model/0.W", np.nan), "nan or infinite"),
    "inf-bias": (_poison("model/2.b", -np.inf), "nan or infinite"),
    "nan-optimizer-state": (_poison("optimizer/v/2.W", np.nan), "nan or infinite"),
}


@pytest.mark.parametrize("name", list(HEADER_EDITS))
def test_header_edits_with_a_valid_checksum(saved: Path, tmp_path: Path, name: str) -> None:
    edit, fragment = HEADER_EDITS[name]
    header, data = split(saved)
    arrays = array_bytes(header, data)
    edit(header, arrays)
    path = signed(tmp_path / "edited.jacnet", header, repack(header, arrays))
    rejects(path, fragment)


def test_table_edits_with_a_valid_checksum(saved: Path, tmp_path: Path) -> None:
    header, data = split(saved)
    path = tmp_path / "table.jacnet"

    def variant(change: Callable[[dict[str, Any]], None], fragment: str,
                body: bytes | None = None) -> None:
        edited = json.loads(json.dumps(header))
        change(edited)
        rejects(signed(path, edited, data if body is None else body), fragment)

    variant(lambda h: entry(h, "model/2.b").update(offset=0), "overlaps")
    variant(lambda h: entry(h, "model/0.b").update(offset=entry(h, "model/0.b")["offset"] + 4), "gap")
    variant(lambda h: entry(h, "model/0.W").update(offset=-48), "offset")
    variant(lambda h: entry(h, "model/0.W").update(nbytes=4), "nbytes")
    variant(lambda h: entry(h, "model/0.W").update(shape=[3, -4]), "shape")
    variant(lambda h: entry(h, "model/0.W").update(shape=[1] * 9), "shape")
    variant(lambda h: entry(h, "model/0.W").update(shape="3x4"), "shape")
    variant(lambda h: entry(h, "model/0.W").update(extra=1), "unknown keys")
    variant(lambda h: entry(h, "model/0.W").pop("nbytes"), "missing keys")
    variant(lambda h: entry(h, "model/0.W").update(name=7), "name")
    variant(lambda h: h["arrays"].append(dict(entry(h, "model/0.W"))), "twice")
    variant(lambda h: h.update(arrays={}), "arrays")
    variant(lambda h: None, "trailing", data + b"\x00" * 8)
    variant(lambda h: None, "truncated", data[:-8])


def test_raw_header_json_edits(saved: Path, tmp_path: Path) -> None:
    header, data = split(saved)
    text = json.dumps(header)
    path = tmp_path / "raw.jacnet"
    cases = {
        "not json": b"{not json",
        "not an object": b"[1, 2, 3]",
        "NaN constant": text.replace('"training_state": {"epoch": 3}',
                                     '"training_state": {"epoch": NaN}').encode(),
        "Infinity constant": text.replace('"epoch": 3', '"epoch": -Infinity').encode(),
        "overflowing float": text.replace('"epoch": 3', '"epoch": 1e999').encode(),
        "huge int": text.replace('"epoch": 3', '"epoch": ' + "9" * 5000).encode(),
        "duplicate key": text.replace('{"format"', '{"loss": null, "format"', 1).encode(),
        "bad utf-8": text.encode()[:-1] + b"\xff}",
        "deep nesting": b"[" * 200_000 + b"]" * 200_000,
    }
    assert cases["NaN constant"] != text.encode()
    for name, raw in cases.items():
        message = rejects(signed(path, raw, data))
        assert "header" in message or "JSON" in message, (name, message)


@pytest.mark.parametrize("shape", [[2**40, 2**40], [2**62], [2**31, 2**31, 2**31, 2**31]])
def test_huge_declared_shape_fails_fast_without_allocating(saved: Path, tmp_path: Path,
                                                            shape: list[int]) -> None:
    header, data = split(saved)
    e = entry(header, "model/0.W")
    e["shape"] = shape
    e["nbytes"] = int(np.prod(shape, dtype=object)) * 4
    path = signed(tmp_path / "huge.jacnet", header, data)
    seconds, peak = rejects_measured(path, "far larger than the file")
    assert seconds < 0.5
    assert peak < 1 << 20


def test_huge_layer_config_cannot_make_the_loader_allocate(saved: Path, tmp_path: Path) -> None:
    header, data = split(saved)
    header["layers"][0]["config"].update(in_features=2**30, out_features=2**30)
    _, peak = rejects_measured(signed(tmp_path / "wide.jacnet", header, data), "expects shape")
    assert peak < 1 << 20


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "random.jacnet"
    path.write_bytes(raw)
    rejects(path)


@given(st.data())
def test_random_mutations_of_a_valid_file_are_refused(tmp_path_factory: pytest.TempPathFactory,
                                                       data: st.DataObject) -> None:
    directory = tmp_path_factory.mktemp("mutate")
    raw = bytearray(save(small_model(), directory / "valid.jacnet").read_bytes())
    position = data.draw(st.integers(0, len(raw) - 1))
    replacement = data.draw(st.binary(min_size=1, max_size=8))
    mutated = bytes(raw[:position] + replacement + raw[position + len(replacement):])
    path = directory / "mutated.jacnet"
    path.write_bytes(mutated)
    if mutated == bytes(raw):
        load(path)
    else:
        rejects(path)


# Atomic saving and faults ------------------------------------------------------------------


def _previous(tmp_path: Path) -> tuple[Path, bytes, Sequential]:
    model = small_model()
    path = save(model, tmp_path / "model.jacnet")
    return path, path.read_bytes(), model


def _assert_previous_intact(path: Path, raw: bytes, model: Sequential) -> None:
    assert path.read_bytes() == raw
    X = np.ones((2, 3), dtype=np.float32)
    assert load(path).predict(X).tobytes() == model.predict(X).tobytes()
    assert temp_files(path.parent) == []


def test_failed_rename_leaves_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, raw, model = _previous(tmp_path)

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ModelFileError, match="Input/output error") as info:
        save(build_mlp(3, [5], 2, rng=3), path)
    assert str(path) in str(info.value)
    monkeypatch.undo()
    _assert_previous_intact(path, raw, model)


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_leaves_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           where: str) -> None:
    path, raw, model = _previous(tmp_path)
    real_write = os.write
    written = [0]

    def full_write(fd: int, data: Any) -> int:
        if written[0] > 40:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, bytes(data[:40]))
        written[0] += n
        return n

    def full_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "write":
        monkeypatch.setattr(os, "write", full_write)
    else:
        monkeypatch.setattr(os, "fsync", full_fsync)
    with pytest.raises(ModelFileError, match="No space left on device") as info:
        save(build_mlp(3, [50], 2, rng=3), path)
    assert str(path) in str(info.value) and "unchanged" in str(info.value)
    monkeypatch.undo()
    _assert_previous_intact(path, raw, model)


def test_interrupt_mid_write_removes_the_temporary_file(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path, raw, model = _previous(tmp_path)

    def interrupted(fd: int, data: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save(build_mlp(3, [5], 2, rng=3), path)
    monkeypatch.undo()
    _assert_previous_intact(path, raw, model)


def test_parent_that_is_a_file_or_missing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(ModelFileError, match="Not a directory") as info:
        save(small_model(), blocker / "model.jacnet")
    assert str(blocker / "model.jacnet") in str(info.value)
    with pytest.raises(ModelFileError, match="No such file"):
        save(small_model(), tmp_path / "missing" / "model.jacnet")
    assert blocker.read_text() == "x"


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_unwritable_directory(tmp_path: Path) -> None:
    path, raw, model = _previous(tmp_path)
    tmp_path.chmod(0o555)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running with privileges that ignore directory permissions")
        with pytest.raises(ModelFileError, match="Permission denied"):
            save(build_mlp(3, [5], 2, rng=3), path)
    finally:
        tmp_path.chmod(0o755)
    _assert_previous_intact(path, raw, model)


def test_permission_denied_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an unwritable directory gives, simulated so it runs as root too."""
    path, raw, model = _previous(tmp_path)
    real_open = os.open

    def denied(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", file)
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(ModelFileError, match="Permission denied") as info:
        save(build_mlp(3, [5], 2, rng=3), path)
    assert str(path) in str(info.value)
    monkeypatch.undo()
    _assert_previous_intact(path, raw, model)


CHILD = textwrap.dedent("""
    import os, sys, time
    import jacnet
    from jacnet.io import save

    model = jacnet.build_mlp(64, [512, 512], 10, rng=1)  # about 1.3 MB of float32
    real_write = os.write
    written = [0]

    def slow_write(fd, data):
        n = real_write(fd, bytes(data[:65536]))
        written[0] += n
        if written[0] >= 1 << 19:
            print("writing", flush=True)
            time.sleep(60)
        return n

    os.write = slow_write
    save(model, sys.argv[1])
    print("finished", flush=True)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_save_killed_mid_write_leaves_the_previous_file(tmp_path: Path) -> None:
    path, raw, model = _previous(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 30)
        line = child.stdout.readline() if ready else b""
        assert line.strip() == b"writing", child.stderr.read() if child.stderr else line
        partial = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(partial) == 1 and partial[0].stat().st_size >= 1 << 19  # genuinely mid-write
        assert path.read_bytes() == raw
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == raw
    X = np.ones((2, 3), dtype=np.float32)
    assert load(path).predict(X).tobytes() == model.predict(X).tobytes()
    # The killed writer's partial temporary file is left behind (nothing can remove it), under
    # a hidden name that never replaces the model, and is itself refused as a model file.
    (leftover,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftover.name.startswith(".model.jacnet.")
    rejects(leftover)
