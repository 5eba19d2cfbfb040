"""Argument types shared by the subcommands: each rejects a bad value with one clear line."""

from __future__ import annotations

import argparse
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


count = int_at_least(1)
seed = int_at_least(0)
