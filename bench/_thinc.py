"""thinc's side: the same MLP as ``chain(Relu, Relu, Softmax)`` on ``NumpyOps``, plain SGD.

thinc is jacnet's nearest peer by design: closed-form backprop callbacks, no autograd. Its
``SGD`` runs with no L2, no gradient clipping and no weight averaging; the loop is thinc's own
idiom (``begin_update``, ``backprop``, ``finish_update``) with the fused softmax
cross-entropy gradient ``(Ŷ - Y) / N`` handed to the ``Softmax`` layer, as its examples do (no
loss value is computed). The weights start at jacnet's initial values (thinc stores ``W`` as
``(out, in)``) and the batches follow jacnet's data order. thinc's layers always return
``dX``, so it also computes the first layer's (a product the other systems skip).

``NumpyOps()`` as shipped multiplies float32 with its bundled BLIS, single-threaded whatever
the thread settings; ``use_blis=False`` makes it use NumPy's ``matmul`` (NumPy's BLAS, with
the suite's threads). The suite runs both.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import thinc
from numpy.typing import NDArray
from thinc.api import SGD, Model, Optimizer, Relu, Softmax, chain, use_ops

from bench._common import Config, he_init, make_data


def build(params: list[tuple[NDArray[Any], NDArray[Any]]], use_blis: bool = True) -> Model[Any, Any]:
    """``chain(Relu, ..., Relu, Softmax)`` holding copies of ``params`` (``W (in, out)``, ``b``)."""
    dims = [W.shape for W, _ in params]
    with use_ops("numpy", use_blis=use_blis):  # every layer takes these ops when it is made
        layers = [Relu(nO=b, nI=a) for a, b in dims[:-1]] + [Softmax(nO=dims[-1][1], nI=dims[-1][0])]
        model = chain(*layers)
    model.initialize()
    for layer, (W, b) in zip(model.layers, params, strict=True):
        layer.set_param("W", np.ascontiguousarray(W.T))
        layer.set_param("b", b.copy())
    return model


def optimizer(lr: float) -> Optimizer:
    """Plain SGD: no L2, no gradient clipping, no weight averages."""
    return SGD(lr, L2=0.0, grad_clip=0.0, use_averages=False)


def sgd_epoch(model: Model[Any, Any], opt: Optimizer, X: NDArray[Any], Y: NDArray[Any],
              order: NDArray[Any], batch: int) -> None:
    """One epoch over the rows ``order``; ``Y`` is one-hot ``(N, classes)``."""
    for s in range(0, order.shape[0], batch):
        rows = order[s:s + batch]
        Xb, Yb = X[rows], Y[rows]
        Yh, backprop = model.begin_update(Xb)
        backprop((Yh - Yb) / Yb.shape[0])
        model.finish_update(opt)


def weights(model: Model[Any, Any]) -> list[tuple[NDArray[Any], NDArray[Any]]]:
    """The layers' ``(W, b)`` as the other systems hold them (``W (in, out)``)."""
    return [(layer.get_param("W").T, layer.get_param("b")) for layer in model.layers]


def train(cfg: Config, batch: int, dtype: Any, use_blis: bool = True) -> dict[str, Any]:
    X, y = make_data(cfg, dtype)
    Y = np.eye(cfg.n_classes, dtype=dtype)[y]
    model = build(he_init(cfg, dtype), use_blis=use_blis)
    opt = optimizer(cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    seconds = []
    for epoch in range(cfg.warmup + cfg.epochs):
        start = time.perf_counter()
        sgd_epoch(model, opt, X, Y, rng.permutation(X.shape[0]), batch)
        if epoch >= cfg.warmup:
            seconds.append(time.perf_counter() - start)
    rows = min(X.shape[0], 10_000)
    accuracy = float(np.mean(np.argmax(model.predict(X[:rows]), axis=1) == y[:rows]))
    return {"seconds": seconds, "accuracy": accuracy}


def train_numpy_matmul(cfg: Config, batch: int, dtype: Any) -> dict[str, Any]:
    """:func:`train` with ``NumpyOps(use_blis=False)``: NumPy's BLAS, the suite's threads."""
    return train(cfg, batch, dtype, use_blis=False)


def info() -> dict[str, Any]:
    from importlib.metadata import version

    return {"thinc": thinc.__version__, "blis": version("blis")}
