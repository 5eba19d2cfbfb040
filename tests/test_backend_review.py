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
