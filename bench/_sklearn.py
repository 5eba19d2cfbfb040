"""scikit-learn's side: ``MLPClassifier`` with plain SGD, one epoch per ``fit`` call.

``warm_start=True`` and ``max_iter=1`` make each ``fit`` call one more epoch on the same
network, so the first call is the warm-up and the following ones are timed. scikit-learn keeps
float32 input in float32 (its weights follow the input's dtype).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from bench._common import Config, make_data


def train(cfg: Config, batch: int, dtype: Any) -> dict[str, Any]:
    X, y = make_data(cfg, dtype)
    clf = MLPClassifier(hidden_layer_sizes=cfg.hidden, activation="relu", solver="sgd",
                        learning_rate="constant", learning_rate_init=cfg.lr, momentum=0.0,
                        nesterovs_momentum=False, alpha=0.0, batch_size=min(batch, X.shape[0]),
                        max_iter=1, shuffle=True, random_state=cfg.seed, warm_start=True,
                        early_stopping=False, verbose=False)
    seconds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(cfg.warmup + cfg.epochs):
            start = time.perf_counter()
            clf.fit(X, y)
            if epoch >= cfg.warmup:
                seconds.append(time.perf_counter() - start)
    rows = min(X.shape[0], 10_000)
    return {"seconds": seconds, "accuracy": float(clf.score(X[:rows], y[:rows])),
            "weights_dtype": str(clf.coefs_[0].dtype)}


def info() -> dict[str, Any]:
    return {"sklearn": sklearn.__version__}
