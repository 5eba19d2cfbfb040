"""The one place that knows jacnet's built-in layers, losses and optimizers.

A built-in class registers itself where it is defined, with the short name the command line
uses::

    @register_layer("affine")
    class Affine(Layer): ...

Model files (:mod:`jacnet.io`), ``jacnet check``, ``jacnet jacobian``, the plots, the
scikit-learn wrappers and the exporters read these tables, so a new layer is its class (its
formula, backward, Jacobian, ``config()``, ``param_shapes()`` and ``example()``) plus its tests.
Only jacnet's own classes belong here: a model file names a type from these tables and nothing
else, which is what makes loading a hostile file safe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["LAYERS", "LOSSES", "OPTIMIZERS", "kind_of", "register_layer", "register_loss",
           "register_optimizer"]

T = TypeVar("T", bound=type)

#: Short name (``"affine"``, ``"conv1d"``...) → built-in layer class.
LAYERS: dict[str, type[Any]] = {}
#: Short name (``"mse"``, ``"softmax_ce"``...) → built-in loss class.
LOSSES: dict[str, type[Any]] = {}
#: Short name (``"sgd"``, ``"adam"``) → built-in optimizer class.
OPTIMIZERS: dict[str, type[Any]] = {}


def _register(table: dict[str, type[Any]], kind: str) -> Callable[[T], T]:
    def decorate(cls: T) -> T:
        if kind in table and table[kind] is not cls:
            raise ValueError(f"register expects a new name, got {kind!r} twice")
        table[kind] = cls
        cls.kind = kind  # type: ignore[attr-defined]
        return cls
    return decorate


def register_layer(kind: str) -> Callable[[T], T]:
    """Class decorator: a built-in layer, known as ``kind`` on the command line."""
    return _register(LAYERS, kind)


def register_loss(kind: str) -> Callable[[T], T]:
    """Class decorator: a built-in loss, known as ``kind`` on the command line."""
    return _register(LOSSES, kind)


def register_optimizer(kind: str) -> Callable[[T], T]:
    """Class decorator: a built-in optimizer."""
    return _register(OPTIMIZERS, kind)


def kind_of(obj: Any, table: dict[str, type[Any]]) -> str | None:
    """The registered name of ``obj``'s exact class (a user's subclass is not a built-in)."""
    for kind, cls in table.items():
        if type(obj) is cls:
            return kind
    return None
