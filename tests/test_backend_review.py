"""Review of the torch backend's convolution kernels and 2-wide max pooling: what a caller may
do with its tensors, inference, and agreement with NumPy (float64, 1e-6 relative)."""

from __future__ import annotations

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
