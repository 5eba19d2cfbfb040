"""One measurement in a fresh process: ``python -m bench.worker --task T [--system S] ...``.

The parent (``bench.run``) starts one worker per measurement with the thread counts pinned in
its environment; the worker pins them again with threadpoolctl (and ``torch.set_num_threads``),
imports only the system it measures, and prints one JSON object as its last line of output.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from bench._common import Config, blas_info, pinned_threads

#: Training systems: name -> (module, function, dtype).
TRAIN_SYSTEMS: dict[str, tuple[str, str, Any]] = {
    "jacnet": ("bench._jacnet", "train_step", np.float32),
    "jacnet-fit": ("bench._jacnet", "train_fit", np.float32),
    "jacnet-torch": ("bench._jacnet", "train_fit_torch", np.float32),
    "numpy": ("bench._numpy", "train", np.float32),
    "torch": ("bench._torch", "train", np.float32),
    "torch-closed": ("bench._torch", "train_closed", np.float32),
    "thinc": ("bench._thinc", "train", np.float32),
    "thinc-numpy": ("bench._thinc", "train_numpy_matmul", np.float32),
    "sklearn": ("bench._sklearn", "train", np.float32),
    "jacnet-f64": ("bench._jacnet", "train_step", np.float64),
    "sklearn-f64": ("bench._sklearn", "train", np.float64),
}


def _load(task: str, system: str | None, batch: int | None, cfg: Config) -> Callable[[], dict[str, Any]]:
    """Import what the measurement needs and return it, ready to call."""
    if task == "train":
        if system not in TRAIN_SYSTEMS or batch is None:
            raise SystemExit(f"--task train needs --system (one of {sorted(TRAIN_SYSTEMS)}) and --batch")
        module, func, dtype = TRAIN_SYSTEMS[system]
        if module == "bench._thinc":
            # thinc imports PyTorch when it can (for its wrappers, unused here): keep it, its
            # libraries and thread pools out of this process.
            sys.modules.setdefault("torch", None)  # type: ignore[arg-type]
        fn = getattr(importlib.import_module(module), func)
        return lambda: fn(cfg, batch, dtype)
    if task == "infer":
        if system == "torch":
            from bench import _torch

            return lambda: _torch.infer(cfg)
        if system in ("jacnet-predict", "jacnet-forward", "jacnet-torch-predict"):
            from bench import _jacnet

            return lambda: _jacnet.infer(cfg, system.removeprefix("jacnet-"))
        raise SystemExit(f"--task infer: unknown system {system!r}")
    from bench import _jacnet

    if task == "peak":
        return lambda: _jacnet.matmul_peak(cfg)
    return lambda: _jacnet.memory(cfg)


def _versions() -> dict[str, Any]:
    versions: dict[str, Any] = {"python": platform.python_version(), "numpy": np.__version__}
    if sys.modules.get("torch") is not None:
        from bench import _torch

        versions.update(_torch.info())
    if "thinc" in sys.modules:
        from bench import _thinc

        versions.update(_thinc.info())
    if "sklearn" in sys.modules:
        from bench import _sklearn

        versions.update(_sklearn.info())
    if "jacnet" in sys.modules:
        import jacnet

        versions["jacnet"] = jacnet.__version__
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True, choices=("train", "infer", "peak", "memory"))
    parser.add_argument("--system")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--config", required=True, help="the Config as JSON")
    args = parser.parse_args(argv)
    cfg = Config.from_json(args.config)
    measure = _load(args.task, args.system, args.batch, cfg)
    if sys.modules.get("torch") is not None:
        import torch

        torch.set_num_threads(cfg.threads)
    # After the imports, so that every library's pool is loaded and gets limited.
    with pinned_threads(cfg.threads):
        result = measure()
        result["blas"] = blas_info()
    result["versions"] = _versions()
    if sys.modules.get("torch") is not None:
        from bench import _torch

        result["gpu"] = _torch.gpu(cfg.device)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
