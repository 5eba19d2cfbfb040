"""Review of the torch backend's convolution kernels and 2-wide max pooling: what a caller may
do with its tensors, inference, and agreement with NumPy (float64, 1e-6 relative)."""

from __future__ import annotations

import copy
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


@pytest.mark.parametrize(("precision", "dtype", "expected"), [
    ("tf32", torch.float32, False),   # cuDNN would round float32 products to TF32
    ("ieee", torch.float32, True),
    ("tf32", torch.float64, True),    # no TF32 for float64
])
def test_cuda_float32_convolutions_avoid_cudnn_tf32(precision: str, dtype: Any,
                                                     expected: bool) -> None:
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = precision
    try:
        layer = jacnet.Conv2D(16, 2, 3, rng=0)
        fake = torch.zeros((2, 16, 5, 5), dtype=dtype).as_subclass(_FakeCuda)
        assert layer._torch_kernel(fake) is expected
        assert layer._torch_kernel(torch.zeros((2, 16, 5, 5), dtype=dtype))  # CPU: oneDNN
    finally:
        conv.fp32_precision = before


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
