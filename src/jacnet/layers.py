"""Layers: the affine map and the activations, each with its closed-form backward and its
expanded Jacobian built from the lecture's per-entry derivatives.

The contract every layer follows (and a user's own layer can follow too):

- ``Y = layer.forward(X)`` (or ``layer(X)``) computes ``Y`` and keeps what ``backward`` needs.
- ``dX = layer.backward(dY)`` reads what forward kept, writes ``layer.grads[k]`` for every
  ``layer.params[k]`` (same keys, same shapes; in place or by assigning a new array) and returns
  ``dX``. It never writes into ``dY`` and never accumulates: a second call gives the same result.
- ``layer.backward_params(dY)`` (optional) fills ``grads`` without computing ``dX``; a network
  calls it on its first layer, whose ``dX`` nobody reads, unless the layer overrides ``backward``
  below the class that defines ``backward_params`` (then ``backward`` runs: what you wrote runs).
- ``layer.jacobian(X, wrt)`` returns the expanded Jacobian ``∂Y/∂A`` of shape
  ``Y.shape + A.shape``, built from per-entry formulas, independently of ``backward``.
- ``layer.training`` (set by ``train()`` / ``eval()``) selects training or inference behaviour
  (dropout, batch statistics); ``config()`` returns the constructor arguments.

A network (:class:`~jacnet.Sequential`), ``fit``, ``predict``, ``evaluate`` and the checks call
exactly these public methods, so a subclass's override runs everywhere. Nothing a caller can
reach is kept by reference: a built-in layer copies an input it must keep, unless the array is
one jacnet made itself for this call (see :func:`is_handed_over`), and keeps only arrays of its
own otherwise. Under :func:`inference_mode` (how ``predict`` and ``evaluate`` run) built-in
layers keep nothing at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike

from jacnet import backend
from jacnet._validation import (
    FloatArray,
    all_finite,
    as_float_array,
    as_rng,
    check_jacobian_size,
    check_positive_int,
    check_real,
    check_same_shape,
)
from jacnet.errors import ForwardNotCalledError, JacnetTypeError, JacnetValueError, ShapeError
from jacnet.registry import register_layer
from jacnet.structure import Structure
from jacnet.threads import over_batch

__all__ = ["Affine", "Layer", "LeakyReLU", "ReLU", "Sigmoid", "Softmax", "Tanh",
           "inference_mode", "is_recording"]

INITS = ("he", "glorot", "zeros")

#: Batch size of the built-in layers' examples.
BATCH = 4

# The id of the one array jacnet itself made for the layer call in progress (0: none). A
# network hands each layer the previous layer's fresh output this way, and fit its own batch
# buffer: nobody else holds such an array, so a layer may keep it without a copy and skip the
# checks of what a caller passes (the network checks its own output instead).
_handed: ContextVar[int] = ContextVar("jacnet_handed_over", default=0)
# False inside inference_mode(): layers keep nothing for backward.
_recording: ContextVar[bool] = ContextVar("jacnet_recording", default=True)


def is_handed_over(A: Any) -> bool:
    """True when ``A`` is the array jacnet handed over for this call: a network's fresh
    intermediate output, or ``fit``'s batch buffer, given to a built-in method only. Nobody
    else holds or changes such an array until backward, so the layer may keep it without a
    copy, skip its checks (the network checks its output) and write into it."""
    return id(A) == _handed.get()


@contextmanager
def inference_mode() -> Iterator[None]:
    """Within the block, built-in layers and losses keep nothing for ``backward``.

    ``predict`` and ``evaluate`` run in it (on shallow copies of the layers), so inference
    between a ``forward`` and its ``backward`` leaves the training state as it was.
    """
    token = _recording.set(False)
    try:
        yield
    finally:
        _recording.reset(token)


def is_recording() -> bool:
    """False inside :func:`inference_mode`."""
    return _recording.get()


def private(A: FloatArray, original: Any) -> FloatArray:
    """``A`` if nobody but jacnet can change it, else a copy: what a layer keeps for backward.

    ``A`` is the checked form of ``original`` (the caller's argument). A conversion already
    made a new array; an array handed over by the network is jacnet's own.
    """
    if is_handed_over(original):
        return A
    if A is original or (isinstance(original, np.ndarray) and np.may_share_memory(A, original)):
        return backend.copy(A)
    if backend.shares_memory(A, original):  # a view of the caller's tensor (or NumPy view)
        return backend.copy(A)
    return A


def _place(backend_name: Any, device: Any, where: str) -> tuple[str, str]:
    """``(backend, device)`` checked (``to``'s argument is named ``backend``, hiding the
    module there)."""
    return backend.check_backend(backend_name, device, where)


def _move(layer: Layer, backend_name: str, device: str) -> None:
    """Every array ``layer`` holds onto ``backend_name`` and ``device`` (see ``Layer.to``)."""
    layer.clear()
    for table in (layer.params, layer.grads, getattr(layer, "buffers", {})):
        for key, value in list(table.items()):
            table[key] = backend.to_backend(value, backend_name, device)
    for attr, value in list(vars(layer).items()):
        if isinstance(value, np.ndarray) or backend.is_torch(value):
            setattr(layer, attr, backend.to_backend(value, backend_name, device))


_OWNERS: dict[tuple[type, str], type] = {}


def _owner(cls: type, name: str) -> type:
    """The class in ``cls``'s MRO that defines method ``name`` (cached: networks ask per step)."""
    found = _OWNERS.get((cls, name))
    if found is None:
        found = _OWNERS[cls, name] = next(c for c in cls.__mro__ if name in c.__dict__)
    return found


def uses_backward_params(layer: Layer) -> bool:
    """True when ``layer.backward_params`` is at least as specific as its ``backward``: a subclass
    that overrides only ``backward`` gets its ``backward`` called, never a parent's shortcut."""
    cls = type(layer)
    return issubclass(_owner(cls, "backward_params"), _owner(cls, "backward"))


class Layer:
    """Base class of every layer; subclass it to write your own.

    Attributes
    ----------
    params : dict[str, ndarray]
        Trainable arrays, by name. Optimizers update them in place.
    grads : dict[str, ndarray]
        ``∂J/∂params[k]`` after ``backward``, same keys and shapes as ``params``.
    training : bool
        Training (True, the default) or inference behaviour; see :meth:`train`, :meth:`eval`.
    """

    #: Ranks of ``X`` the layer accepts (the batch axis included).
    input_ndim: tuple[int, ...] = (2,)
    #: Training behaviour by default, also for a subclass whose ``__init__`` does not call ours.
    training: bool = True

    #: The per-entry formula of each expanded Jacobian, by ``wrt``: (plain text, matplotlib
    #: mathtext). The plots' titles and ``jacnet jacobian`` read it.
    formulas: ClassVar[dict[str, tuple[str, str]]] = {}

    #: The letters of the output and the input in labels (``z[0,1]``, ``x[1,2]``).
    symbols: ClassVar[tuple[str, str]] = ("y", "x")

    #: What the structure of each expanded Jacobian means, by ``wrt`` (``"X, inference"`` for
    #: the inference mode where it differs); ``jacnet jacobian`` prints it.
    jacobian_notes: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        self.params: dict[str, FloatArray] = {}
        self.grads: dict[str, FloatArray] = {}
        #: State that is saved with the model but not trained (running statistics).
        self.buffers: dict[str, FloatArray] = {}
        self.training = True

    def __call__(self, X: Any) -> FloatArray:
        return self.forward(X)

    def forward(self, X: Any) -> FloatArray:
        """Compute ``Y`` from ``X`` (batch first) and keep what backward needs."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(X)")

    def backward(self, dY: Any) -> FloatArray:
        """Return ``dX = ∂J/∂X`` from ``dY = ∂J/∂Y`` and fill ``grads``."""
        raise NotImplementedError(f"{type(self).__name__} must implement backward(dY)")

    def backward_params(self, dY: Any) -> None:
        """Fill ``grads`` only; a network calls this on its first layer, whose dX nobody reads.

        The default runs ``backward`` and drops dX; layers with parameters may skip the work.
        """
        self.backward(dY)

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """Expanded Jacobian ``∂Y/∂A`` of shape ``Y.shape + A.shape`` for ``A`` = X or a param."""
        raise NotImplementedError(
            f"{type(self).__name__} does not provide jacobian(X, wrt); "
            "check_gradients then compares backward with finite differences only"
        )

    def train(self, mode: bool = True) -> Layer:
        """Set training (``mode=True``) or inference behaviour; returns the layer."""
        if not isinstance(mode, (bool, np.bool_)):
            raise JacnetTypeError(f"{type(self).__name__}.train mode expects a bool, got {mode!r}")
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Inference behaviour (``training = False``); returns the layer."""
        return self.train(False)

    def clear(self) -> None:
        """Forget what forward kept for backward (``fit`` calls it when training ends).

        Built-in layers drop their saved arrays; a layer of your own that keeps arrays can
        override this to drop them too.
        """

    def fix_randomness(self) -> None:
        """Make forward deterministic from now on (reuse the last random draw, e.g. a dropout
        mask), so finite differences see one function. A no-op for deterministic layers."""

    def astype(self, dtype: DTypeLike) -> Layer:
        """Cast the parameters (and gradients) to ``dtype`` in place; returns the layer.

        ``check_gradients`` uses it on a copy to compare in float64. A layer with other
        dtype-bound state overrides it (and calls ``super().astype``). A torch dtype
        (``torch.float32``) is taken as its NumPy twin.
        """
        dtype = backend.numpy_dtype_of(dtype)
        for name, p in list(self.params.items()):
            self.params[name] = backend.astype(p, dtype)
        for name, g in list(self.grads.items()):
            self.grads[name] = backend.astype(g, dtype)
        for name, a in list(getattr(self, "buffers", {}).items()):
            self.buffers[name] = backend.astype(a, dtype)
        if isinstance(getattr(self, "dtype", None), np.dtype):
            self.dtype = dtype
        self.clear()
        return self

    def to(self, backend: str, device: str | None = None) -> Layer:
        """Move the layer to a backend (``"numpy"`` or ``"torch"``) and ``device`` in place;
        returns the layer.

        Every array the layer holds moves: ``params``, ``grads``, ``buffers`` and any other
        array attribute (a layer of your own keeps working); what forward kept is dropped.
        Values and dtypes are unchanged.
        """
        _move(self, *_place(backend, device, f"{type(self).__name__}.to"))
        return self

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this layer (JSON-serialisable); see ``jacnet.io``."""
        return {}

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{name: (shape, dtype name)}`` of the parameters a layer built from ``config`` has,
        computed without building it (``jacnet.load`` checks a file against it first)."""
        return {}

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> None:
        """Check a config read from a file without building anything (a hostile width must
        not allocate); raise a jacnet error naming the key. Constructors check the rest."""

    @classmethod
    def buffer_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
        """As :meth:`param_shapes`, for ``buffers``."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """A layer built from ``config()``'s output, ready for its parameters to be loaded."""
        return cls(**config)

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        """A small instance and a random input away from kinks (what ``jacnet check`` runs)."""
        raise NotImplementedError(f"{cls.__name__} does not provide example(rng, dtype)")

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        """Where ``jacobian(X, wrt)`` can be non-zero for an ``X`` of ``X_shape``, read off the
        deltas of the formula (see :mod:`jacnet.structure`); ``None`` when not known."""
        return None

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        """Operations of the closed-form backward for ``wrt`` on an ``X`` of ``X_shape``, and
        the formula counted (``jacnet jacobian`` compares it with the Jacobian's size)."""
        return None

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return sum(math.prod(p.shape) for p in self.params.values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # Helpers for subclasses -------------------------------------------------------------

    def _input(self, X: Any, dtype: Any = None) -> FloatArray:
        """``X`` checked (rank, numbers, finite), cast to ``dtype`` and moved to the backend and
        device of the layer's parameters; an array handed over by the network is jacnet's own
        and already fits."""
        if is_handed_over(X) and (dtype is None or X.dtype == dtype):
            return X
        return as_float_array(X, f"{type(self).__name__}.forward X", ndim=self.input_ndim,
                              dtype=dtype, min_features=1,
                              like=next(iter(self.params.values()), None))

    def _upstream(self, dY: Any, saved: Any, shape: tuple[int, ...]) -> FloatArray:
        """``dY`` checked against the output's ``shape``; ``saved`` is what forward kept
        (``None``: forward has not run in training, or ran under inference_mode)."""
        name = type(self).__name__
        if saved is None:
            raise ForwardNotCalledError(
                f"{name}.backward expects forward to have been called first (outside "
                "inference_mode), got nothing saved by forward")
        if is_handed_over(dY):
            return dY
        dtype = getattr(saved, "dtype", None)
        if (type(dY) is type(saved) and dY.dtype == dtype and dY.shape == shape
                and (type(dY) is np.ndarray or dY.device == saved.device) and all_finite(dY)):
            return dY  # already what the checks below would return
        dY = as_float_array(dY, f"{name}.backward dY", ndim=None, dtype=dtype, like=saved)
        check_same_shape(dY, f"{name}.backward dY", shape)
        return dY

    def _check_wrt(self, wrt: str) -> None:
        if any(backend.is_torch(p) for p in self.params.values()):
            raise JacnetTypeError(
                f"{type(self).__name__}.jacobian expects a layer on the numpy backend (expanded "
                "Jacobians are built in NumPy), got one on torch; use copy.deepcopy(layer)"
                ".to('numpy'), or jacnet.expanded_jacobian, which copies for you")
        names = ("X", *self.params)
        if wrt not in names:
            raise JacnetValueError(
                f"{type(self).__name__}.jacobian wrt expects one of {names}, got {wrt!r}"
            )


class _Builtin(Layer):
    """A built-in layer: keeps what backward needs in ``_saved`` (``None`` before forward)."""

    def __init__(self) -> None:
        super().__init__()
        self._saved: Any = None

    def clear(self) -> None:
        self._saved = None

    def _keep(self, saved: Any) -> None:
        """Keep ``saved`` for backward, unless under inference_mode (then touch nothing)."""
        if is_recording():
            self._saved = saved

    def _upstream_for(self, dY: Any) -> FloatArray:
        return self._upstream(dY, self._saved, () if self._saved is None else self._output_shape())

    def _output_shape(self) -> tuple[int, ...]:
        # The saved array has the output's shape for every built-in but Affine.
        return tuple(self._saved.shape)


def _float_dtype(dtype: Any, name: str) -> np.dtype[Any]:
    """float32 or float64: the dtypes jacnet computes, saves and checks in (a torch dtype
    names its NumPy twin)."""
    try:
        resolved = backend.numpy_dtype_of(dtype)
    except TypeError as exc:
        raise JacnetTypeError(f"{name} expects float32 or float64, got {dtype!r}") from exc
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise JacnetTypeError(f"{name} expects float32 or float64, got {resolved}")
    return resolved


@register_layer("affine")
class Affine(_Builtin):
    """The affine layer ``Z = X W + bᵀ``.

    Parameters
    ----------
    in_features, out_features : int
        ``W`` has shape ``(in_features, out_features)``, ``b`` shape ``(out_features,)``.
    init : {"he", "glorot", "zeros"}
        ``"he"``: ``W ~ N(0, 2/in)``; ``"glorot"``: ``W ~ U(±sqrt(6/(in+out)))``;
        ``"zeros"``: all zero. ``b`` starts at zero.
    rng : numpy.random.Generator or int or None
        Source of the initial weights; never the global NumPy state.
    dtype : {float32, float64}
        The dtype of ``W``, ``b`` and of everything the layer computes (float32 default). An
        input of another dtype is cast to it.

    Notes
    -----
    Shapes: ``X (N, in)``, ``W (in, out)``, ``b (out,)``, ``Z (N, out)``. Backward:

    - ``dX = dZ Wᵀ``           ``(N, in)``
    - ``dW = Xᵀ dZ``           ``(in, out)``
    - ``db = sum(dZ, axis=0)`` ``(out,)``
    """

    formulas: ClassVar[dict[str, tuple[str, str]]] = {
        "X": ("∂z_ij/∂x_kl = δ_ik w_lj", r"$\partial z_{ij}/\partial x_{kl} = \delta_{ik}\,w_{lj}$"),
        "W": ("∂z_ij/∂w_kl = x_ik δ_jl", r"$\partial z_{ij}/\partial w_{kl} = x_{ik}\,\delta_{jl}$"),
        "b": ("∂z_ij/∂b_l = δ_jl", r"$\partial z_{ij}/\partial b_{l} = \delta_{jl}$"),
    }
    symbols: ClassVar[tuple[str, str]] = ("z", "x")
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "block diagonal: sample i's outputs depend only on sample i's inputs (δ_ik), and every "
             "diagonal block is Wᵀ",
        "W": "the Kronecker pattern: sample i's row block is x_iᵀ ⊗ I (δ_jl: z_ij depends on column j "
             "of W only, through x_ik)",
        "b": "stacked identities, one per sample (δ_jl): contracting them with dZ sums over the batch, "
             "db = sum(dZ, axis=0)",
    }

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        # δ_ik (sample), δ_jl (output feature against W's column or b's entry)
        return Structure(ties=({"X": (0, 0), "W": (1, 1)}.get(wrt, (1, 0)),))

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        N, n_out = X_shape[0], self.out_features
        if wrt == "X":
            return N * n_out * self.in_features, "dX = dZ Wᵀ, N·out·in multiply-adds"
        if wrt == "W":
            return N * self.in_features * n_out, "dW = Xᵀ dZ, N·in·out multiply-adds"
        return N * n_out, "db = sum(dZ, axis=0), N·out additions"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init: str = "he",
        rng: np.random.Generator | int | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int(in_features, "Affine in_features")
        self.out_features = check_positive_int(out_features, "Affine out_features")
        if init not in INITS:
            raise JacnetValueError(f"Affine init expects one of {INITS}, got {init!r}")
        self.dtype = _float_dtype(dtype, "Affine dtype")
        self.init = init
        generator = as_rng(rng, "Affine rng")
        n_in, n_out = self.in_features, self.out_features
        if init == "he":
            W = generator.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        elif init == "glorot":
            limit = np.sqrt(6.0 / (n_in + n_out))
            W = generator.uniform(-limit, limit, (n_in, n_out))
        else:
            W = np.zeros((n_in, n_out))
        self.params = {"W": W.astype(self.dtype), "b": np.zeros(n_out, dtype=self.dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._ones = np.ones(0, dtype=self.dtype)  # the 1 of db = dZᵀ 1, grown as batches need

    def __repr__(self) -> str:
        return f"Affine({self.in_features}, {self.out_features}, dtype={self.dtype.name})"

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "dtype": self.dtype.name}

    @classmethod
    def param_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
        n_in, n_out, dtype = config["in_features"], config["out_features"], str(config["dtype"])
        return {"W": ((n_in, n_out), dtype), "b": ((n_out,), dtype)}

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> None:
        check_positive_int(config.get("in_features"), "Affine in_features")
        check_positive_int(config.get("out_features"), "Affine out_features")
        _float_dtype(config.get("dtype"), "Affine dtype")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config, init="zeros")

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        layer = cls(4, 3, rng=rng, dtype=dtype)
        layer.params["b"][:] = rng.standard_normal(3)
        return layer, rng.standard_normal((BATCH, 4)).astype(dtype)

    def _checked(self, X: Any) -> FloatArray:
        A = self._input(X, self.params["W"].dtype)
        if A.shape[1] != self.in_features:
            raise ShapeError(
                f"Affine({self.in_features}, {self.out_features}).forward X expects "
                f"shape (N, {self.in_features}), got {tuple(A.shape)}"
            )
        return A

    def forward(self, X: Any) -> FloatArray:
        """``Z = X W + bᵀ``: ``(N, in) @ (in, out) + (out,) -> (N, out)``."""
        A = self._checked(X)
        Z = A @ self.params["W"]
        Z += self.params["b"]
        if is_recording():  # (inference keeps nothing, and copies nothing)
            self._saved = private(A, X)
        return Z

    def _output_shape(self) -> tuple[int, ...]:
        return (self._saved.shape[0], self.out_features)

    def backward(self, dZ: Any) -> FloatArray:
        """``dX = dZ Wᵀ`` ``(N, in)``; fills ``grads["W"] = Xᵀ dZ`` and ``grads["b"]`` through
        :meth:`backward_params`."""
        checked = self._upstream_for(dZ)
        self.backward_params(checked)
        return checked @ self.params["W"].T

    def backward_params(self, dZ: Any) -> None:
        """``dW = Xᵀ dZ`` ``(in, out)`` and ``db = sum(dZ, axis=0)`` ``(out,)``, without dX."""
        dZ = self._upstream_for(dZ)
        X = self._saved
        N = dZ.shape[0]
        ones = self._ones
        if ones.shape[0] < N or ones.dtype != dZ.dtype or type(ones) is not type(dZ):
            self._ones = ones = backend.namespace(dZ).ones_like(dZ[:, 0])
        # Written into the existing buffers: no allocation per step, and no accumulation.
        backend.matmul_into(X.T, dZ, self.grads["W"])
        # db = sum(dZ, axis=0) written as the contraction it is, 1ᵀ dZ: one BLAS call, about
        # three times faster than np.sum over axis 0 on a (128, 256) float32 batch.
        backend.matmul_into(ones[:N], dZ, self.grads["b"])

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """Expanded Jacobian of ``Z`` from the per-entry partials.

        - ``wrt="X"``: ``∂z_ij/∂x_kl = δ_ik w_lj``, shape ``(N, out, N, in)``
        - ``wrt="W"``: ``∂z_ij/∂w_kl = x_ik δ_jl``, shape ``(N, out, in, out)``
        - ``wrt="b"``: ``∂z_ij/∂b_l = δ_jl``,       shape ``(N, out, out)``
        """
        self._check_wrt(wrt)
        A = self._checked(X)
        N = A.shape[0]
        W = self.params["W"]
        in_shape = A.shape if wrt == "X" else self.params[wrt].shape
        check_jacobian_size((N, self.out_features), in_shape, "Affine.jacobian")
        delta_N = np.eye(N, dtype=W.dtype)
        delta_out = np.eye(self.out_features, dtype=W.dtype)
        if wrt == "X":
            return np.einsum("ik,lj->ijkl", delta_N, W)
        if wrt == "W":
            return np.einsum("ik,jl->ijkl", A, delta_out)
        return np.broadcast_to(delta_out, (N, *delta_out.shape)).copy()


class _Elementwise(_Builtin):
    """A parameterless layer ``y = f(x)`` entry by entry, on inputs of any rank.

    Forward keeps the derivative ``D = f'(x)`` (an array of its own), so backward is one
    product, ``dX = dY ⊙ D``; the expanded Jacobian is diagonal, ``f'(x)`` on the diagonal.
    """

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        return Structure(diagonal=True)  # δ_ik δ_jl

    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "diagonal: y_ij depends on x_ij only, so the closed form is an element-wise product"}

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        return int(np.prod(X_shape)), "dX = dY ⊙ f'(X), one multiply per entry"

    input_ndim = (1, 2, 3, 4, 5)

    def _values(self, X: FloatArray, derivative: bool, in_place: bool = False
                ) -> tuple[FloatArray, FloatArray | None]:
        """``Y = f(X)`` and, when ``derivative``, ``D = f'(X)``; with ``in_place`` (``X`` is
        jacnet's own array, handed over by the network) ``Y`` may be written into ``X``."""
        raise NotImplementedError

    def _derivative(self, X: FloatArray) -> FloatArray:
        """``f'(x)`` entry by entry, from its own formula (the Jacobian's diagonal)."""
        raise NotImplementedError

    def forward(self, X: Any) -> FloatArray:
        A = self._input(X)
        Y, D = self._values(A, is_recording(), in_place=A is X and is_handed_over(X))
        self._keep(D)
        return Y

    def backward(self, dY: Any) -> FloatArray:
        checked, D = self._upstream_for(dY), self._saved
        own = checked is dY and is_handed_over(dY)  # jacnet's own array: no new one needed
        if type(checked) is np.ndarray and getattr(D, "shape", None) == checked.shape:
            dX = checked if own else np.empty(checked.shape, np.result_type(checked, D))
            over_batch(lambda a, b: np.multiply(checked[a:b], D[a:b], out=dX[a:b]),
                       len(checked), checked.size)
            return dX
        if own:
            checked *= D
            return checked
        return checked * D

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        # |x| >= 0.25: no finite-difference step comes near a kink at 0.
        X = rng.choice([-1.0, 1.0], (BATCH, 3)) * rng.uniform(0.25, 2.0, (BATCH, 3))
        return cls(), X.astype(dtype)

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """``∂y_a/∂x_b = δ_ab f'(x_a)`` over flat indices, shape ``X.shape + X.shape``."""
        self._check_wrt(wrt)
        A = backend.to_numpy(self._input(X))  # built in NumPy, whatever the backend
        check_jacobian_size(A.shape, A.shape, f"{type(self).__name__}.jacobian")
        J = np.zeros((A.size, A.size), dtype=A.dtype)
        J[np.arange(A.size), np.arange(A.size)] = self._derivative(A).reshape(-1)
        return J.reshape(A.shape + A.shape)


#: Entries from which ReLU keeps a bool mask and takes np.maximum (NumPy): below, up to
#: (256, 512) float32, the float mask and a multiply are faster (mixed-type products there
#: cost more than the bytes they save).
_BOOL_MASK_MIN = 1 << 18


@register_layer("relu")
class ReLU(_Elementwise):
    """``y = max(x, 0)``; backward ``dX = dY ⊙ [x > 0]`` (the subgradient 0 at ``x = 0``)."""

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂y_ij/∂x_kl = δ_ik δ_jl [x_ij > 0]",
        r"$\partial y_{ij}/\partial x_{kl} = \delta_{ik}\,\delta_{jl}\,[x_{ij} > 0]$")}

    def _values(self, X: FloatArray, derivative: bool, in_place: bool = False
                ) -> tuple[FloatArray, FloatArray | None]:
        if not derivative:  # inference keeps no mask: y = max(x, 0) in one pass
            return backend.positive_part(X, in_place), None
        if type(X) is np.ndarray and X.size >= _BOOL_MASK_MIN:
            # Large inputs: the mask as bools, a quarter of float32's bytes to write and read
            # back, and y = max(x, 0): fw + bw 0.86 against 1.30 ms at (128, 16, 26, 26).
            mask: Any = np.empty(X.shape, dtype=np.bool_)  # bools, not the declared floats
            Y = X if in_place else np.empty_like(X)
            self._float_dtype = X.dtype  # what backward checks dY against

            def block(a: int, b: int) -> None:
                np.greater(X[a:b], 0, out=mask[a:b])
                np.maximum(X[a:b], 0, out=Y[a:b])

            over_batch(block, len(X), X.size)
            return Y, mask
        if backend.is_torch(X):
            # y = max(x, 0), then the mask from y: sign(y) is 1 where y > 0, else 0 (1.6x
            # faster than the clamped mask and a product at (128, 16, 26, 26), two threads).
            Y = backend.positive_part(X, in_place)
            return Y, backend.namespace(X).sign(Y)
        # y = x ⊙ [x > 0] with the 0/1 mask in X's dtype, kept for backward: on float32 the
        # mask and a multiply cost less than np.maximum and backward's own comparison.
        mask = backend.positive_mask(X)
        if in_place:
            X *= mask
            return X, mask
        return X * mask, mask

    def _upstream_for(self, dY: Any) -> FloatArray:
        mask = self._saved
        if type(mask) is np.ndarray and mask.dtype == np.bool_:  # the large inputs' mask
            return self._upstream(dY, np.empty(0, dtype=self._float_dtype), mask.shape)
        return super()._upstream_for(dY)

    def _derivative(self, X: FloatArray) -> FloatArray:
        return np.astype(X > 0, X.dtype)


@register_layer("leaky_relu")
class LeakyReLU(_Elementwise):
    """``y = x`` for ``x > 0``, else ``negative_slope · x``; ``dX = dY ⊙ (1 or slope)``."""

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂y_ij/∂x_kl = δ_ik δ_jl (1 if x_ij > 0 else α)",
        r"$\partial y_{ij}/\partial x_{kl} = \delta_{ik}\,\delta_{jl}\,"
        r"(1 \;\mathrm{if}\; x_{ij} > 0 \;\mathrm{else}\; \alpha)$")}

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = check_real(negative_slope, "LeakyReLU negative_slope")

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self.negative_slope})"

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        _, X = super().example(rng, dtype)
        return cls(0.1), X

    def config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def _values(self, X: FloatArray, derivative: bool, in_place: bool = False
                ) -> tuple[FloatArray, FloatArray | None]:
        # D = 1 where x > 0, else the slope; y = x ⊙ D.
        slope = self.negative_slope
        D = backend.positive_mask(X)
        D *= 1 - slope
        D += slope
        if in_place:
            X *= D
            return X, D
        return X * D, D

    def _derivative(self, X: FloatArray) -> FloatArray:
        return np.where(X > 0, 1.0, self.negative_slope).astype(X.dtype)


def sigmoid(X: FloatArray) -> FloatArray:
    """``σ(x) = 1 / (1 + e^{-x})``, evaluated without overflow for any finite ``x``."""
    # e^{-|x|} never overflows; the two branches are the same function rearranged.
    xp = backend.namespace(X)
    E = xp.exp(-xp.abs(X))
    return xp.where(X >= 0, 1 / (1 + E), E / (1 + E))


@register_layer("sigmoid")
class Sigmoid(_Elementwise):
    """``y = σ(x)``; backward ``dX = dY ⊙ y(1 - y)``."""

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂y_ij/∂x_kl = δ_ik δ_jl y_ij (1 - y_ij)",
        r"$\partial y_{ij}/\partial x_{kl} = \delta_{ik}\,\delta_{jl}\,y_{ij}(1 - y_{ij})$")}

    def _values(self, X: FloatArray, derivative: bool, in_place: bool = False
                ) -> tuple[FloatArray, FloatArray | None]:
        Y = sigmoid(X)
        return Y, (Y * (1 - Y) if derivative else None)

    def _derivative(self, X: FloatArray) -> FloatArray:
        S = sigmoid(X)
        return S * (1 - S)


@register_layer("tanh")
class Tanh(_Elementwise):
    """``y = tanh(x)``; backward ``dX = dY ⊙ (1 - y²)``."""

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂y_ij/∂x_kl = δ_ik δ_jl (1 - y_ij²)",
        r"$\partial y_{ij}/\partial x_{kl} = \delta_{ik}\,\delta_{jl}\,(1 - y_{ij}^2)$")}

    def _values(self, X: FloatArray, derivative: bool, in_place: bool = False
                ) -> tuple[FloatArray, FloatArray | None]:
        Y = backend.namespace(X).tanh(X)
        return Y, (1 - Y * Y if derivative else None)

    def _derivative(self, X: FloatArray) -> FloatArray:
        return 1 - np.tanh(X) ** 2


def softmax(L: FloatArray) -> FloatArray:
    """Row-wise ``ŷ_j = e^{l_j} / Σ_k e^{l_k}`` over the last axis, after subtracting the row max."""
    xp = backend.namespace(L)
    E = L - xp.max(L, axis=-1, keepdims=True)
    xp.exp(E, out=E)
    E /= xp.sum(E, axis=-1, keepdims=True)
    return E


@register_layer("softmax")
class Softmax(_Builtin):
    """Softmax over the last axis: logits ``L (N, K)`` into probabilities ``Ŷ (N, K)``.

    Its Jacobian, per sample, is ``∂ŷ_a/∂l_b = ŷ_a(1 - ŷ_a)`` on the diagonal and
    ``-ŷ_a ŷ_b`` off it. Backward applies it without building it (the lecture's total
    derivative)::

        dL = Ŷ ⊙ (dŶ - sum(dŶ ⊙ Ŷ, axis=-1))
    """

    formulas: ClassVar[dict[str, tuple[str, str]]] = {"X": (
        "∂y_ij/∂x_kl = δ_ik y_ij (δ_jl - y_il)",
        r"$\partial y_{ij}/\partial x_{kl} = \delta_{ik}\,y_{ij}\,(\delta_{jl} - y_{il})$")}
    jacobian_notes: ClassVar[dict[str, str]] = {
        "X": "block diagonal with a dense K×K block diag(y_i) - y_i y_iᵀ per sample: within a sample "
             "every output depends on every input (the total derivative); across samples, on nothing"}

    def jacobian_structure(self, wrt: str, X_shape: tuple[int, ...]) -> Structure | None:
        # δ_ik over every axis but the last: a dense K×K block per row
        return Structure(ties=tuple((a, a) for a in range(len(X_shape) - 1)))

    def backward_cost(self, wrt: str, X_shape: tuple[int, ...]) -> tuple[int, str] | None:
        return (4 * int(np.prod(X_shape)),
                "dX = Y ⊙ (dY - sum(dY ⊙ Y, axis=1)), about 4·N·K operations")

    input_ndim = (2, 3, 4, 5)

    @classmethod
    def example(cls, rng: np.random.Generator, dtype: DTypeLike = np.float64
                ) -> tuple[Layer, FloatArray]:
        return cls(), rng.standard_normal((BATCH, 3)).astype(dtype)

    def forward(self, X: Any) -> FloatArray:
        Y = softmax(self._input(X))
        if is_recording():
            self._keep(backend.copy(Y))  # the caller gets Y; backward reads a copy of its own
        return Y

    def backward(self, dY: Any) -> FloatArray:
        dY = self._upstream_for(dY)
        Y = self._saved
        return Y * (dY - backend.namespace(Y).sum(dY * Y, axis=-1, keepdims=True))

    def jacobian(self, X: Any, wrt: str = "X") -> FloatArray:
        """``∂ŷ_ij/∂l_kl = δ_ik ŷ_ij (δ_jl - ŷ_il)`` (``i`` over every axis but the last),
        shape ``X.shape + X.shape``."""
        self._check_wrt(wrt)
        A = backend.to_numpy(self._input(X))  # built in NumPy, whatever the backend
        check_jacobian_size(A.shape, A.shape, "Softmax.jacobian")
        K = A.shape[-1]
        Y = softmax(A).reshape(-1, K)
        M = Y.shape[0]
        # ŷ_ij δ_jl - ŷ_ij ŷ_il for each row i: a dense K×K block on the diagonal.
        block = np.einsum("ij,jl->ijl", Y, np.eye(K, dtype=Y.dtype)) - np.einsum("ij,il->ijl", Y, Y)
        J = np.zeros((M, K, M, K), dtype=Y.dtype)
        J[np.arange(M), :, np.arange(M), :] = block
        return J.reshape(A.shape + A.shape)
