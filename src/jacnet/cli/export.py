"""``jacnet export MODEL --to onnx OUT.onnx``: a saved network as an ONNX model (opset 17).

The graph comes from :func:`jacnet.export.save_onnx`: input ``"X"`` of shape ``(N, in)`` (``(N,
C, L)`` or ``(N, C, H, W)`` for a convolutional network, the spatial sizes free),
output ``"Y"`` (what ``Sequential.predict`` returns), ``N`` dynamic, the model's float32 or
float64 kept, written atomically. Needs the ``onnx`` extra (``pip install 'jacnet[onnx]'``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jacnet.errors import JacnetValueError, ModelFileError
from jacnet.export import OPSET, input_dims, save_onnx
from jacnet.io import load

__all__ = ["FORMATS", "add_parsers", "run"]

#: ``--to`` targets. (No ``torch``: a ``.pt`` file is a pickle; use jacnet.export.to_torch.)
FORMATS = ("onnx",)


def add_parsers(sub: Any) -> None:
    """Add ``jacnet export`` to the ``jacnet`` subcommands."""
    parser = sub.add_parser(
        "export",
        help=f"write a saved model as ONNX (opset {OPSET})",
        description=(
            f"Write a jacnet model file as an ONNX model (opset {OPSET}) that ONNX Runtime runs: input\n"
            "\"X\" of shape (N, in), or (N, C, L) / (N, C, H, W) for a convolutional network, output\n"
            "\"Y\" (what jacnet predict computes before labels or probabilities: the logits of a model\n"
            "trained with a fused loss), N and the spatial sizes dynamic, float32 or float64 as the\n"
            "model. Needs pip install 'jacnet[onnx]'. From Python, jacnet.export\n"
            "also converts to and from PyTorch (to_torch, from_torch)."
        ),
        epilog="example:\n  jacnet export runs/digits/model.jacnet --to onnx digits.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help="a model file written by jacnet train "
                        "or jacnet.save")
    parser.add_argument("--to", required=True, choices=FORMATS, help=f"the format: onnx (opset {OPSET})")
    parser.add_argument("out", type=Path, metavar="OUT", help="the file to write, e.g. model.onnx")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``jacnet export``; return 0."""
    model = load(args.model)
    try:
        save_onnx(model, args.out)
    except ImportError as exc:
        raise JacnetValueError(f"export --to onnx: {exc}") from None
    except ModelFileError as exc:
        raise JacnetValueError(f"export OUT expects a writable file: {exc}") from None
    shape = ", ".join(map(str, ("N", *input_dims(model))))
    print(f"wrote {args.out} (ONNX opset {OPSET}, {model.dtype.name}, input X of shape ({shape}))")
    return 0
