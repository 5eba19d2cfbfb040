"""Argument types shared by the subcommands: each rejects a bad value with one clear line."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expects an integer >= {minimum}, got {text!r}")
        return value

    return parse


def real(text: str) -> float:
    """An argparse ``type`` accepting any finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expects a finite number, got {text!r}")
    return value


def positive_real(text: str) -> float:
    """An argparse ``type`` accepting finite numbers ``> 0``."""
    value = real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expects a finite number > 0, got {text!r}")
    return value


count = int_at_least(1)
seed = int_at_least(0)
