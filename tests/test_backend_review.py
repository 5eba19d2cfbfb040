"""A new user's use of the torch backend: every entry point given tensors, compared with NumPy;
the convolution kernels and 2-wide max pooling: what a caller may do with its tensors,
inference, and agreement with NumPy (float64, 1e-6 relative)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jacnet
from jacnet import backend
from jacnet.backend import to_numpy
from jacnet.layers import inference_mode

torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((40, 5)), rng.integers(0, 3, 40)


def _pair() -> tuple[jacnet.Sequential, jacnet.Sequential]:
    numpy_model = jacnet.build_mlp(5, [8], 3, rng=0, dtype=np.float64)
    torch_model = jacnet.build_mlp(5, [8], 3, rng=0, dtype=np.float64).to("torch", device="cpu")
    return numpy_model, torch_model


def _same_params(a: jacnet.Sequential, b: jacnet.Sequential) -> None:
    for la, lb in zip(a.layers, b.layers, strict=True):
        for key in la.params:
            np.testing.assert_allclose(backend.to_numpy(lb.params[key]), la.params[key], rtol=1e-6)


def test_fit_takes_sample_weights_as_tensors() -> None:
    X, y = _data()
    w = np.random.default_rng(1).random(40)
    a, b = _pair()
    ha = jacnet.fit(a, X, y, loss=jacnet.SoftmaxCrossEntropy(), epochs=2, batch_size=8, seed=0,
                    verbose=0, sample_weight=w, validation=(X[:10], y[:10], w[:10]))
    hb = jacnet.fit(b, torch.from_numpy(X), torch.from_numpy(y), loss=jacnet.SoftmaxCrossEntropy(),
                    epochs=2, batch_size=8, seed=0, verbose=0, sample_weight=torch.from_numpy(w),
                    validation=(torch.from_numpy(X[:10]), torch.from_numpy(y[:10]),
                                torch.from_numpy(w[:10])))
    _same_params(a, b)
    np.testing.assert_allclose(hb.history["val_loss"], ha.history["val_loss"], rtol=1e-6)
    expected = jacnet.evaluate(a, X, y, sample_weight=w)
    got = jacnet.evaluate(b, torch.from_numpy(X), torch.from_numpy(y),
                          sample_weight=torch.from_numpy(w))
    assert got == pytest.approx(expected, rel=1e-6)


def test_loss_forward_takes_sample_weights_as_tensors() -> None:
    rng = np.random.default_rng(2)
    P, T, w = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)), rng.random(6)
    loss_np, loss_t = jacnet.MeanSquaredError(), jacnet.MeanSquaredError()
    expected = loss_np.forward(P, T, sample_weight=w)
    got = loss_t.forward(torch.from_numpy(P), torch.from_numpy(T), sample_weight=torch.from_numpy(w))
    assert got == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(backend.to_numpy(loss_t.backward()), loss_np.backward(), rtol=1e-6)


@pytest.mark.parametrize("name", ["maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d",
                                  "globalavgpool", "flatten", "unflatten", "relu", "dropout"])
def test_a_parameterless_layer_builds_its_jacobian_from_a_tensor(name: str) -> None:
    from jacnet.registry import LAYERS

    layer, X = LAYERS[name].example(np.random.default_rng(0), np.float64)
    layer.fix_randomness()  # dropout: one mask for both
    layer.forward(X)
    expected = layer.jacobian(X)
    got = layer.jacobian(torch.from_numpy(X))
    assert type(got) is np.ndarray
    np.testing.assert_allclose(got, expected, rtol=1e-6)


_LOSSES = {
    "mse": (jacnet.MeanSquaredError, lambda P: np.tanh(P)),
    "bce": (jacnet.BinaryCrossEntropy, lambda P: (P > 0.5).astype(np.float64)),
    "sigmoid_bce": (jacnet.SigmoidBinaryCrossEntropy, lambda P: (P > 0.5).astype(np.float64)),
    "cce": (jacnet.CategoricalCrossEntropy, lambda P: np.argmax(P, axis=1)),
    "softmax_ce": (jacnet.SoftmaxCrossEntropy, lambda P: np.argmax(P, axis=1)),
}


@pytest.mark.parametrize("name", sorted(_LOSSES))
@pytest.mark.parametrize("pred_on_torch", [False, True])
def test_a_loss_takes_pred_and_target_on_different_backends(name: str, pred_on_torch: bool) -> None:
    cls, target_of = _LOSSES[name]
    P = np.random.default_rng(3).uniform(0.2, 0.8, (6, 3))
    if name == "cce":
        P = P / P.sum(axis=1, keepdims=True)
    T = target_of(P)
    reference = cls()
    expected = reference.forward(P, T)
    loss = cls()
    T_given = T.copy() if pred_on_torch else torch.from_numpy(T.copy())
    got = loss.forward(torch.from_numpy(P) if pred_on_torch else P, T_given)
    assert got == pytest.approx(expected, rel=1e-6)
    gradient = loss.backward()
    assert backend.is_torch(gradient) == pred_on_torch  # on the prediction's backend
    T_given += 1  # the caller changes its target: the gradient must not follow
    np.testing.assert_allclose(backend.to_numpy(loss.backward()), reference.backward(), rtol=1e-6)


def test_a_numpy_model_given_tensors_computes_in_numpy() -> None:
    X, y = _data()
    a, _ = _pair()
    b, _ = _pair()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    out = b.layers[0].forward(Xt)
    assert type(out) is np.ndarray  # the layer's backend, as for a NumPy input to a torch layer
    np.testing.assert_allclose(out, a.layers[0].forward(X), rtol=1e-6)
    assert type(b.predict(Xt)) is np.ndarray
    ha = jacnet.fit(a, X, y, loss=jacnet.SoftmaxCrossEntropy(), epochs=2, batch_size=8, seed=0,
                    verbose=0)
    hb = jacnet.fit(b, Xt, yt, loss=jacnet.SoftmaxCrossEntropy(), epochs=2, batch_size=8, seed=0,
                    verbose=0)
    assert all(type(p) is np.ndarray for p in b.params.values())
    _same_params(a, b)
    np.testing.assert_allclose(hb.history["loss"], ha.history["loss"], rtol=1e-6)


def _message(call: object) -> str:
    with pytest.raises(jacnet.JacnetError) as info:
        call()  # type: ignore[operator]
    return str(info.value)


def test_errors_on_tensors_read_as_on_arrays() -> None:
    """A tensor's shape is said as a tuple, and a cast is suggested in torch's words."""
    model = jacnet.build_mlp(5, [8], 3, rng=0, dtype=np.float64).to("torch")
    wide = torch.zeros((4, 6), dtype=torch.float64)
    messages = [
        _message(lambda: model.forward(wide)),
        _message(lambda: model.predict(wide)),
        _message(lambda: (model.forward(torch.zeros((4, 5), dtype=torch.float64)),
                          model.backward(torch.zeros((4, 2), dtype=torch.float64)))),
        _message(lambda: jacnet.MeanSquaredError().forward(torch.zeros((4, 3)), torch.zeros((4, 2)))),
        _message(lambda: jacnet.BatchNorm(3).to("torch").forward(torch.zeros((4, 2)))),
        _message(lambda: jacnet.Conv1D(2, 3, 3).to("torch").forward(torch.zeros((4, 1, 8)))),
    ]
    for text in messages:
        assert "torch.Size" not in text, text
    assert "got (4, 6)" in messages[0]
    cast = _message(lambda: jacnet.Conv1D(1, 2, 3).to("torch").forward(
        torch.zeros((2, 1, 8), dtype=torch.float64)))
    assert ".to(torch.float32)" in cast and ".astype" not in cast


def test_a_value_that_overflows_float32_is_named_on_torch_too() -> None:
    model = jacnet.build_mlp(5, [8], 3, rng=0).to("torch")  # float32
    text = _message(lambda: model.predict(torch.full((2, 5), 1e300, dtype=torch.float64)))
    assert "fit in float32" in text and "1e+300" in text


def test_astype_takes_a_torch_dtype() -> None:
    layer = jacnet.Affine(2, 3, rng=0).to("torch")
    layer.astype(torch.float64)
    assert layer.params["W"].dtype == torch.float64
    assert layer.dtype == np.float64  # the layer's own record follows
    Y = layer.forward(torch.ones((4, 2), dtype=torch.float32))
    assert Y.dtype == torch.float64


def test_a_missing_torch_is_named_and_leaves_the_model_as_it_was(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = jacnet.build_mlp(5, [8], 3, rng=0, dtype=np.float64)
    X, y = _data()
    before = model.predict(X)
    monkeypatch.setitem(sys.modules, "torch", None)
    for call in (lambda: model.to("torch"), lambda: jacnet.Affine(2, 3).to("torch"),
                 lambda: jacnet.load("unused.jacnet", backend="torch")):
        with pytest.raises(ImportError, match=r"got torch missing; run: pip install 'jacnet\[torch\]'"):
            call()
    assert all(type(p) is np.ndarray for p in model.params.values())
    np.testing.assert_array_equal(model.predict(X), before)
    jacnet.fit(model, X, y, loss=jacnet.SoftmaxCrossEntropy(), epochs=1, verbose=0)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "softmax", "maxpool1d", "flatten", "dropout"])
def test_a_bfloat16_tensor_is_taken_as_float32(name: str) -> None:
    """bfloat16 has no NumPy twin: it is read as float32 (exactly), as everywhere else."""
    from jacnet.registry import LAYERS

    layer, X = LAYERS[name].example(np.random.default_rng(0), np.float32)
    X = backend.to_numpy(torch.from_numpy(X).to(torch.bfloat16).float())  # representable
    layer.fix_randomness()
    expected = layer.forward(X)
    got = layer.forward(torch.from_numpy(X).to(torch.bfloat16))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(backend.to_numpy(got), expected, rtol=1e-6)
    dY = torch.ones(tuple(got.shape), dtype=torch.bfloat16)
    np.testing.assert_allclose(backend.to_numpy(layer.backward(dY)),
                               layer.backward(np.ones(expected.shape, np.float32)), rtol=1e-6)
    np.testing.assert_array_equal(layer.jacobian(torch.from_numpy(X).to(torch.bfloat16)),
                                  layer.jacobian(X))


def test_a_model_with_one_layer_moved_alone_is_refused_by_name() -> None:
    X, y = _data()
    model = jacnet.build_mlp(5, [8], 3, rng=0, dtype=np.float64)
    model.layers[2].to("torch")  # not model.to(...)
    for call in (lambda: model.predict(X),
                 lambda: jacnet.evaluate(model, X, y, loss=jacnet.SoftmaxCrossEntropy()),
                 lambda: jacnet.fit(model, X, y, loss=jacnet.SoftmaxCrossEntropy(), epochs=1,
                                    verbose=0)):
        text = _message(call)
        assert "one backend" in text and "2.W on torch" in text and "model.to(" in text, text


def test_inference_keeps_and_copies_nothing_in_torch_kernel_convolutions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    layer = jacnet.Conv2D(16, 2, 3, rng=0, dtype=np.float64).to("torch")
    X = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 16, 5, 5)))
    copies: list[Any] = []
    original = backend.copy

    def counting_copy(A: Any) -> Any:
        copies.append(A.shape)
        return original(A)

    monkeypatch.setattr(backend, "copy", counting_copy)
    with inference_mode():
        Y = layer.forward(X)
    assert copies == []  # the caller's tensor is only read
    assert layer._saved is None
    expected = jacnet.Conv2D(16, 2, 3, rng=0, dtype=np.float64).forward(X.numpy())
    np.testing.assert_allclose(to_numpy(Y), expected, rtol=1e-6, atol=1e-12)


class _FakeCuda(torch.Tensor):
    """A CPU tensor that says it lives on CUDA: the kernel rule reads only its device and
    dtype."""

    @property
    def device(self) -> Any:
        return torch.device("cuda")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_kernels_run_on_the_cpu_only(dtype: Any) -> None:
    """Measured on the CPU only; on CUDA, cuDNN may round float32 to TF32 and its backward
    need not repeat bitwise, so the products stay jacnet's there."""
    layer = jacnet.Conv2D(16, 2, 3, rng=0)
    assert layer._torch_kernel(torch.zeros((2, 16, 5, 5), dtype=dtype))
    fake = torch.zeros((2, 16, 5, 5), dtype=dtype).as_subclass(_FakeCuda)
    assert not layer._torch_kernel(fake)
    assert not jacnet.Conv2D(1, 2, 3, rng=0)._torch_kernel(torch.zeros((2, 1, 5, 5)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_float32_convolutions_on_cuda_agree_with_numpy_in_float32() -> None:
    """PyTorch lets cuDNN run float32 convolutions in TF32 by default (1e-3 relative)."""
    rng = np.random.default_rng(5)
    layer = jacnet.Conv2D(16, 8, 3, padding=1, rng=0)
    twin = jacnet.Conv2D(16, 8, 3, padding=1, rng=0).to("torch", "cuda")
    X = rng.standard_normal((4, 16, 9, 9)).astype(np.float32)
    Y = layer.forward(X)
    dY = rng.standard_normal(Y.shape).astype(np.float32)
    np.testing.assert_allclose(to_numpy(twin.forward(torch.from_numpy(X).cuda())), Y,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(twin.backward(torch.from_numpy(dY).cuda())),
                               layer.backward(dY), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(twin.grads["W"]), layer.grads["W"], rtol=1e-4,
                               atol=1e-4)


def _cnn() -> jacnet.Sequential:
    """Both convolutions on torch's kernels (C·K >= 32), one strided, one padded; windows of 2."""
    return jacnet.Sequential([
        jacnet.Conv2D(4, 6, 3, padding=1, rng=0, dtype=np.float64), jacnet.ReLU(),
        jacnet.MaxPool2D(2),
        jacnet.Conv2D(6, 4, 3, stride=2, rng=1, dtype=np.float64), jacnet.Tanh(),
        jacnet.Flatten(), jacnet.Affine(4, 3, rng=2, dtype=np.float64)])


def test_a_cnn_on_torchs_kernels_trains_checks_and_saves_like_numpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    X, y = rng.standard_normal((10, 4, 7, 7)), rng.integers(0, 3, 10)
    model = _cnn()
    twin = copy.deepcopy(model).to("torch")
    kwargs = {"loss": jacnet.SoftmaxCrossEntropy(), "epochs": 2, "batch_size": 4, "seed": 1,
              "verbose": 0}
    history = jacnet.fit(model, X, y, optimizer=jacnet.Adam(0.01), **kwargs)
    history_t = jacnet.fit(twin, X, y, optimizer=jacnet.Adam(0.01), **kwargs)
    np.testing.assert_allclose(history_t["loss"], history["loss"], rtol=1e-6)
    for k in model.params:
        np.testing.assert_allclose(to_numpy(twin.params[k]), model.params[k], rtol=1e-6,
                                   atol=1e-12, err_msg=k)
    report = jacnet.check_gradients(twin, torch.from_numpy(X[:3]), target=y[:3],
                                    loss=jacnet.SoftmaxCrossEntropy())
    assert report.ok, report
    np.testing.assert_allclose(jacnet.expanded_jacobian(twin, torch.from_numpy(X[:2])),
                               jacnet.expanded_jacobian(model, X[:2]), rtol=1e-6, atol=1e-12)
    path = jacnet.save(twin, tmp_path / "cnn.jacnet")
    loaded = jacnet.load(path)
    np.testing.assert_allclose(loaded.predict(X), to_numpy(twin.predict(torch.from_numpy(X))),
                               rtol=1e-6, atol=1e-12)
