"""What ``fit`` shows while it trains: a live bar per epoch on a terminal, a line per epoch.

The bar uses tqdm when it is installed (``pip install 'jacnet[progress]'``) and the output
is a terminal; otherwise only the per-epoch lines are printed. ``verbose=0`` prints nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress", "format_logs"]


def format_logs(logs: dict[str, float]) -> str:
    """``"loss 0.1234  accuracy 0.9650  val_loss ..."`` in a fixed order."""
    parts = []
    for key, value in logs.items():
        if key in ("epoch", "lr", "seconds"):
            continue
        parts.append(f"{key} {value:.4f}")
    return "  ".join(parts)


class Progress:
    """Progress display for one ``fit`` call.

    Parameters
    ----------
    epochs : int
        Total number of epochs (for ``epoch 3/20``).
    batches : int
        Batches per epoch (the bar's length).
    verbose : {0, 1, 2, "auto"}
        0: silent. 1: bar (on a terminal) and a line per epoch. 2: a line per epoch only.
        "auto": 1 on a terminal, silent otherwise (as ``fit`` documents).
    stream : text stream
        Where to write; standard output by default.
    """

    #: Refresh the bar's loss/accuracy every this many batches (formatting costs time).
    POSTFIX_EVERY = 25

    def __init__(self, epochs: int, batches: int, verbose: int | str = "auto",
                 stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if verbose == "auto":
            verbose = 1 if tty else 0
        self.verbose = verbose
        self.epochs = epochs
        self.batches = batches
        self._bar: Any = None
        self._tqdm: Any = None
        if verbose == 1 and tty:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # the bar is optional; the lines still print
                tqdm = None
            self._tqdm = tqdm
        self._start = 0.0

    def epoch_begin(self, epoch: int) -> None:
        self._start = time.perf_counter()
        if self._tqdm is not None:
            self._bar = self._tqdm(total=self.batches, desc=f"epoch {epoch + 1}/{self.epochs}",
                                   leave=False, file=self.stream, unit="batch", dynamic_ncols=True)

    def batch_end(self, batch: int, loss: float, accuracy: float | None) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        if batch % self.POSTFIX_EVERY == 0:
            postfix = {"loss": f"{loss:.4f}"}
            if accuracy is not None:
                postfix["acc"] = f"{accuracy:.4f}"
            self._bar.set_postfix(postfix, refresh=False)

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.verbose:
            seconds = time.perf_counter() - self._start
            width = len(str(self.epochs))
            print(f"epoch {epoch + 1:>{width}}/{self.epochs}  {format_logs(logs)}  ({seconds:.2f}s)",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def message(self, text: str) -> None:
        if self.verbose:
            print(text, file=self.stream, flush=True)
