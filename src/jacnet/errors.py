"""The one family of errors that jacnet raises for bad input, bad state and bad files.

Every class subclasses :class:`JacnetError` and also ``ValueError`` or ``TypeError``, so
code that already catches those keeps working. Messages follow one shape::

    "<what> expects <expected>, got <received>"
"""

from __future__ import annotations

__all__ = [
    "ForwardNotCalledError",
    "JacnetError",
    "JacnetTypeError",
    "JacnetValueError",
    "JacnetWarning",
    "JacobianTooLargeError",
    "ModelFileError",
    "NonFiniteError",
    "ShapeError",
]


class JacnetError(Exception):
    """Base class of every error jacnet raises on purpose."""


class JacnetValueError(JacnetError, ValueError):
    """A value is outside what the argument accepts (range, finiteness, option name)."""


class JacnetTypeError(JacnetError, TypeError):
    """An argument has the wrong type or dtype (strings, objects, complex, booleans)."""


class ShapeError(JacnetValueError):
    """An array has the wrong rank or shape for the argument it was passed as."""


class ForwardNotCalledError(JacnetValueError):
    """``backward`` was called before ``forward`` filled the cache it reads."""


class NonFiniteError(JacnetValueError):
    """A NaN or infinity appeared where only finite numbers make sense."""


class JacobianTooLargeError(JacnetValueError):
    """A materialised expanded Jacobian would exceed the size limit."""


class ModelFileError(JacnetValueError):
    """A model file is missing, truncated, corrupted, hostile or of an unknown format."""


class JacnetWarning(UserWarning):
    """Something jacnet will do, but that is likely not what you meant (e.g. an unfused float32
    sigmoid + binary cross-entropy, whose gradient vanishes at saturation)."""
