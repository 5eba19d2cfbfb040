"""The per-sample passes split over threads (jacnet.threads): the same bits on any number of
threads, every sample covered once, errors raised where they enter."""

from __future__ import annotations

import copy
import multiprocessing
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jacnet
from jacnet import threads
from jacnet.errors import JacnetTypeError, JacnetValueError


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JACNET_NUM_THREADS", raising=False)
    yield
    threads.set_num_threads(None)


@pytest.fixture
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split even a few entries, and take ReLU's large-input path on small arrays, so small
    examples exercise every split pass."""
    monkeypatch.setattr(threads, "MIN_BLOCK_ENTRIES", 1)
    monkeypatch.setattr(jacnet.layers, "_BOOL_MASK_MIN", 1)


# The thread count ---------------------------------------------------------------------------

def test_one_thread_unless_asked() -> None:
    assert jacnet.get_num_threads() == 1
    jacnet.set_num_threads(3)
    assert jacnet.get_num_threads() == 3
    jacnet.set_num_threads(None)
    assert jacnet.get_num_threads() == 1


def test_the_environment_sets_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACNET_NUM_THREADS", "4")
    assert jacnet.get_num_threads() == 4
    jacnet.set_num_threads(2)  # the call wins over the environment
    assert jacnet.get_num_threads() == 2


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", "²"])
def test_a_bad_environment_value_is_named(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("JACNET_NUM_THREADS", value)
    with pytest.raises(JacnetValueError, match=r"JACNET_NUM_THREADS expects a positive integer"):
        jacnet.get_num_threads()


@pytest.mark.parametrize(("n", "error"), [(0, JacnetValueError), (-1, JacnetValueError),
                                          (2.0, JacnetTypeError), ("2", JacnetTypeError),
                                          (True, JacnetTypeError)])
def test_a_bad_count_is_refused(n: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"set_num_threads n expects an integer >= 1"):
        jacnet.set_num_threads(n)
    assert jacnet.get_num_threads() == 1


# over_batch ----------------------------------------------------------------------------------

def _blocks(n: int, entries: int) -> list[tuple[int, int, str]]:
    seen: list[tuple[int, int, str]] = []
    lock = threading.Lock()

    def record(a: int, b: int) -> None:
        with lock:
            seen.append((a, b, threading.current_thread().name))

    threads.over_batch(record, n, entries)
    return sorted(seen)


def test_blocks_cover_the_batch_once_on_several_threads() -> None:
    jacnet.set_num_threads(3)
    seen = _blocks(10, 3 * threads.MIN_BLOCK_ENTRIES)
    assert [(a, b) for a, b, _ in seen] == [(0, 3), (3, 6), (6, 10)]
    assert seen[-1][2] == threading.current_thread().name  # the caller runs the last block


def test_the_blocks_run_at_once() -> None:
    jacnet.set_num_threads(3)
    together = threading.Barrier(3, timeout=10)  # broken unless three blocks run at once
    threads.over_batch(lambda a, b: together.wait(), 9, 1 << 30)


@pytest.mark.parametrize(("count", "n", "entries", "expected"), [
    (1, 10, 1 << 30, [(0, 10)]),            # one thread: one block
    (4, 10, (1 << 17) - 1, [(0, 10)]),      # too few entries to be worth a thread
    (4, 2, 1 << 30, [(0, 1), (1, 2)]),      # never more blocks than samples
    (4, 0, 1 << 30, [(0, 0)]),              # an empty batch: one empty call
])
def test_small_work_is_not_split(count: int, n: int, entries: int,
                                 expected: list[tuple[int, int]]) -> None:
    jacnet.set_num_threads(count)
    assert [(a, b) for a, b, _ in _blocks(n, entries)] == expected


def test_a_call_inside_a_block_runs_whole_on_its_thread() -> None:
    jacnet.set_num_threads(2)
    inner: list[list[tuple[int, int, str]]] = []
    lock = threading.Lock()

    def outer(a: int, b: int) -> None:
        found = _blocks(8, 1 << 30)
        with lock:
            inner.append(found)

    threads.over_batch(outer, 4, 1 << 30)
    assert len(inner) == 2
    for found in inner:
        assert [(a, b) for a, b, _ in found] == [(0, 8)]


def test_an_error_in_any_block_is_raised_after_all_blocks_finish() -> None:
    jacnet.set_num_threads(4)
    finished: list[int] = []
    lock = threading.Lock()

    def work(a: int, b: int) -> None:
        if a == 0:
            raise ValueError("block 0 failed")
        threading.Event().wait(0.05)
        with lock:
            finished.append(a)

    with pytest.raises(ValueError, match="block 0 failed"):
        threads.over_batch(work, 8, 1 << 30)
    assert sorted(finished) == [2, 4, 6]


def _split_in_child(queue: Any) -> None:
    jacnet.set_num_threads(2)
    queue.put(len(_blocks(4, 1 << 30)))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_a_forked_child_starts_its_own_threads() -> None:
    jacnet.set_num_threads(2)
    _blocks(4, 1 << 30)  # the parent's pool exists before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_split_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == 2


def test_contiguous_copies_a_view_and_returns_an_array_itself() -> None:
    jacnet.set_num_threads(3)
    A = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    assert threads.contiguous(A) is A
    for axis, view in ((0, A.transpose(1, 0, 2)), (1, A.transpose(2, 1, 0))):
        out = threads.contiguous(view, axis=axis)
        assert out.flags.c_contiguous
        np.testing.assert_array_equal(out, view)


# The same bits on any number of threads ------------------------------------------------------

def _network(dtype: Any) -> jacnet.Sequential:
    return jacnet.Sequential([
        jacnet.Conv2D(1, 4, 3, rng=0, dtype=dtype),   # one channel: products per sample
        jacnet.ReLU(), jacnet.MaxPool2D(2),           # tiling windows, axis by axis
        jacnet.Conv2D(4, 8, 3, padding=1, rng=1, dtype=dtype),  # one product, col2im
        jacnet.Tanh(), jacnet.MaxPool2D(2),           # short rows: the K slices
        jacnet.Flatten(), jacnet.Affine(8 * 4 * 4, 3, rng=2, dtype=dtype)])


def _step(model: jacnet.Sequential, X: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
    Y = model.forward(X)
    dX = model.backward(np.cos(Y))
    return [Y, dX, *(g.copy() for g in model.grads.values())]


@pytest.mark.usefixtures("tiny_blocks")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_cnn_step_is_bitwise_the_same_on_one_and_three_threads(dtype: Any) -> None:
    X = np.random.default_rng(0).standard_normal((7, 1, 18, 18)).astype(dtype)
    model = _network(dtype)
    jacnet.set_num_threads(1)
    expected = _step(copy.deepcopy(model), X)
    jacnet.set_num_threads(3)
    for got, want in zip(_step(model, X), expected, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.usefixtures("tiny_blocks")
@given(n=st.integers(1, 9), c=st.integers(1, 3), h=st.integers(2, 21), w=st.integers(2, 21),
       k=st.sampled_from([1, 2, 3]), ties=st.booleans())
def test_pooling_and_relu_are_bitwise_the_same_on_any_split(n: int, c: int, h: int, w: int,
                                                             k: int, ties: bool) -> None:
    rng = np.random.default_rng(n * 1000 + h * 31 + w)
    X = rng.standard_normal((n, c, h, w)).astype(np.float32)
    if ties:
        X = np.round(X)  # many equal maxima: the first one must win on every split
    layers = [jacnet.ReLU(), jacnet.MaxPool2D(min(k, h, w)), jacnet.Sigmoid()]
    results = []
    for count in (1, 2, 4):
        jacnet.set_num_threads(count)
        outs = []
        for layer in layers:
            layer = copy.deepcopy(layer)
            Y = layer.forward(X)
            outs += [Y, layer.backward(np.sin(Y) - 0.5)]
        results.append(outs)
    for outs in results[1:]:
        for got, want in zip(outs, results[0], strict=True):
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_fit_trains_the_same_weights_on_two_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "MIN_BLOCK_ENTRIES", 64)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    weights = []
    for count in (1, 2):
        jacnet.set_num_threads(count)
        model = jacnet.Sequential([
            jacnet.Conv2D(1, 4, 3, rng=0), jacnet.ReLU(), jacnet.MaxPool2D(2),
            jacnet.Conv2D(4, 8, 3, rng=1), jacnet.ReLU(), jacnet.Flatten(),
            jacnet.Affine(8 * 3 * 3, 3, rng=2)])
        jacnet.fit(model, X, y, loss=jacnet.SoftmaxCrossEntropy(), optimizer=jacnet.Adam(0.01),
                   epochs=2, batch_size=16, seed=0, verbose=0)
        weights.append([p.copy() for p in model.params.values()])
    for got, want in zip(*weights, strict=True):
        np.testing.assert_array_equal(got, want)


# Several callers at once ------------------------------------------------------------------------

def test_a_pool_grown_by_another_caller_still_takes_this_callers_blocks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two user threads: one splits in two and is about to hand its block to the pool when
    the other, splitting in four, grows the pool. The first caller's block must still run."""
    jacnet.set_num_threads(4)
    threads._forget_pool()
    entered, grown = threading.Event(), threading.Event()
    original = threads._executor

    def slow_executor(workers: int) -> Any:
        pool = original(workers)
        if workers == 1:  # the first caller: let the second one grow the pool in between
            entered.set()
            grown.wait(timeout=5)
        return pool

    monkeypatch.setattr(threads, "_executor", slow_executor)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            assert [(a, b) for a, b, _ in _blocks(2, 1 << 30)] == [(0, 1), (1, 2)]
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=first)
    caller.start()
    try:
        assert entered.wait(timeout=10)
        assert [(a, b) for a, b, _ in _blocks(4, 1 << 30)] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    finally:
        grown.set()
        caller.join(timeout=30)
    assert not errors, errors


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_a_child_forked_while_another_thread_holds_the_pool_lock_can_split() -> None:
    jacnet.set_num_threads(2)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with threads._lock:  # as another thread starting the pool at the moment of the fork
        child = context.Process(target=_split_in_child, args=(queue,))
        child.start()
    child.join(timeout=20)
    if child.exitcode is None:
        child.kill()
        child.join()
    assert child.exitcode == 0
    assert queue.get(timeout=5) == 2


def test_of_several_failing_blocks_the_first_one_s_error_is_raised() -> None:
    """As on one thread, where the pass stops at the first failing sample."""
    jacnet.set_num_threads(3)

    def work(a: int, b: int) -> None:
        raise ValueError(f"block at {a} failed")

    for _ in range(5):
        with pytest.raises(ValueError, match="block at 0 failed"):
            threads.over_batch(work, 9, 1 << 30)


def test_two_models_trained_at_once_in_two_threads_get_their_serial_weights(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "MIN_BLOCK_ENTRIES", 64)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 3, 30)

    def train(seed: int, batch_size: int) -> list[np.ndarray[Any, Any]]:
        model = jacnet.Sequential([
            jacnet.Conv2D(1, 4, 3, rng=seed), jacnet.ReLU(), jacnet.MaxPool2D(2),
            jacnet.Conv2D(4, 8, 3, padding=1, rng=seed + 1), jacnet.Sigmoid(),
            jacnet.MaxPool2D(5), jacnet.Flatten(), jacnet.Affine(8, 3, rng=2)])
        jacnet.fit(model, X, y, loss=jacnet.SoftmaxCrossEntropy(), optimizer=jacnet.Adam(0.01),
                   epochs=2, batch_size=batch_size, seed=0, verbose=0)
        return [*(p.copy() for p in model.params.values()), model.predict(X)]

    runs = [(0, 16), (5, 7)]
    jacnet.set_num_threads(1)
    expected = [train(*run) for run in runs]
    jacnet.set_num_threads(2)
    got: list[Any] = [None] * len(runs)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            got[i] = train(*runs[i])
        except BaseException as exc:
            errors.append(exc)

    users = [threading.Thread(target=worker, args=(i,)) for i in range(len(runs))]
    for user in users:
        user.start()
    for user in users:
        user.join(timeout=60)
    assert not errors, errors
    for arrays, wanted in zip(got, expected, strict=True):
        for a, b in zip(arrays, wanted, strict=True):
            np.testing.assert_array_equal(a, b)
