"""One parametrised test for a table of bad inputs, shared by the layer, loss and Jacobian tests.

Each case is ``(id, call, error, base, text)``: ``call()`` must raise the jacnet ``error``, which
is also the built-in ``base`` (ValueError or TypeError), with ``text`` (the argument's name) in
its message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from jacnet import JacnetError

Case = tuple[str, Callable[[], Any], type[JacnetError], type[Exception], str]


def named_error_test(cases: Sequence[Case]) -> Callable[..., None]:
    """A test function over ``cases``; assign it to a ``test_...`` name in the test module."""

    @pytest.mark.parametrize(("call", "error", "base", "text"), [case[1:] for case in cases],
                             ids=[case[0] for case in cases])
    def test(call: Callable[[], Any], error: type[JacnetError], base: type[Exception], text: str) -> None:
        with pytest.raises(error) as info:
            call()
        assert isinstance(info.value, base)
        assert text in str(info.value)

    return test
