"""Optimizers and learning-rate schedules.

``optimizer.step(params, grads)`` takes two dicts with the same keys (a model's ``params``
and ``grads``) and updates ``params`` in place. Per-parameter state (momentum, Adam moments)
is keyed by those names, and ``state_dict`` / ``load_state_dict`` save and restore it.
Updates reuse one scratch buffer per parameter: no allocation in the training loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from jacnet import backend
from jacnet._validation import FloatArray, check_positive_int, check_real, describe
from jacnet.errors import JacnetTypeError, JacnetValueError, ShapeError
from jacnet.registry import register_optimizer

__all__ = ["SGD", "Adam", "CosineDecay", "Optimizer", "StepDecay"]


class Optimizer:
    """Base class: validates ``step``'s arguments and keeps per-parameter state.

    Subclasses implement ``_update(name, p, g)`` for one array.
    """

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        self.lr = lr
        self.weight_decay = check_real(weight_decay, f"{type(self).__name__} weight_decay", low=0)
        self.iterations = 0
        self._state: dict[str, dict[str, FloatArray]] = {}
        self._scratch: dict[str, tuple[FloatArray, FloatArray]] = {}  # name: (param, buffer)
        # The parameter arrays the state was built on, by name (bound at the next step).
        self._bound: dict[str, FloatArray] = {}

    @property
    def lr(self) -> float:
        """The learning rate (a schedule may change it between epochs)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = check_real(value, f"{type(self).__name__} lr", low=0, low_open=True)

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable."""
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"

    def step(self, params: Mapping[str, FloatArray], grads: Mapping[str, FloatArray]) -> None:
        """Update every ``params[k]`` in place from ``grads[k]``."""
        if params.keys() != grads.keys():
            raise JacnetValueError(
                f"{type(self).__name__}.step grads expects the keys of params "
                f"{sorted(params)}, got {sorted(grads)}")
        if not self._as_last_step(params, grads):
            self._check(params, grads)
        self._bound = dict(params)
        self.iterations += 1
        for name, p in params.items():
            self._update(name, p, grads[name])

    def _as_last_step(self, params: Mapping[str, FloatArray], grads: Mapping[str, FloatArray]
                      ) -> bool:
        """True when every parameter is the array the last (checked) step updated and its
        gradient matches it in type, shape and dtype: nothing :meth:`_check` looks at changed."""
        bound = self._bound
        if len(bound) != len(params):
            return False
        for name, p in params.items():
            g = grads[name]
            if (bound.get(name) is not p or type(g) is not type(p) or g.shape != p.shape
                    or g.dtype != p.dtype):
                return False
        return True

    def _check(self, params: Mapping[str, FloatArray], grads: Mapping[str, FloatArray]) -> None:
        """Check every pair before touching any: a refused step changes nothing."""
        for name, p in params.items():
            g = grads[name]
            if not _is_array(p) or not _is_array(g) or type(p) is not type(g):
                raise JacnetTypeError(f"{type(self).__name__}.step expects arrays of one backend "
                                      f"for {name!r}, got {describe(p)} and {describe(g)}")
            if backend.numpy_dtype(p).kind != "f" or backend.numpy_dtype(g).kind not in "fiu":
                raise JacnetTypeError(f"{type(self).__name__}.step expects a floating params[{name!r}] "
                                      f"and a real grads[{name!r}], got dtypes {p.dtype} and {g.dtype}")
            if p.shape != g.shape:
                raise ShapeError(f"{type(self).__name__}.step grads[{name!r}] expects shape "
                                 f"{tuple(p.shape)}, got {tuple(g.shape)}")
            # State belongs to the arrays it was built on: another model's parameters (or a
            # parameter a layer replaced) would silently inherit moments and step counts.
            slots = self._state.get(name)
            if slots is None and self._state and self.iterations:
                raise JacnetValueError(
                    f"{type(self).__name__}.step params[{name!r}] expects a parameter this "
                    f"optimizer has been updating ({sorted(self._state)}), got a new one after "
                    f"{self.iterations} steps; use a new {type(self).__name__} for each model")
            for slot, arr in (slots or {}).items():
                if arr.shape != p.shape or backend.numpy_dtype(arr) != backend.numpy_dtype(p):
                    raise ShapeError(
                        f"{type(self).__name__}.step params[{name!r}] expects shape {tuple(arr.shape)} "
                        f"and dtype {arr.dtype} (its {slot} state), got {tuple(p.shape)} {p.dtype}; use "
                        f"a new {type(self).__name__} for each model")
            bound = self._bound.get(name)
            if bound is not None and bound is not p and name in self._state:
                raise JacnetValueError(
                    f"{type(self).__name__}.step params[{name!r}] expects the array this "
                    f"optimizer has been updating, got a different one (another model, a model "
                    f"moved by .to() since, or a layer that replaced its parameter instead of "
                    f"updating it in place); use a new {type(self).__name__} for each model, "
                    f"made after moving it (or carry the state over with state_dict)")

    def _update(self, name: str, p: FloatArray, g: FloatArray) -> None:
        raise NotImplementedError

    def _buffer(self, name: str, p: FloatArray) -> FloatArray:
        """A scratch array shaped like ``p``, reused every step."""
        made = self._scratch.get(name)
        if made is None or made[0] is not p:  # made for another array: a new one, like p
            made = self._scratch[name] = (p, backend.namespace(p).empty_like(p))
        return made[1]

    def _slot(self, name: str, slot: str, p: FloatArray) -> FloatArray:
        """Persistent state ``slot`` (zeros at first) of parameter ``name``."""
        slots = self._state.setdefault(name, {})
        if slot not in slots:
            slots[slot] = backend.namespace(p).zeros_like(p)
        elif type(slots[slot]) is not type(p) or slots[slot].device != p.device:
            slots[slot] = backend.like(slots[slot], p)  # state restored from a file (NumPy)
        return slots[slot]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: type, hyper-parameters, step count and state arrays."""
        return {
            "type": type(self).__name__,
            "hyperparameters": self.hyperparameters(),
            "iterations": self.iterations,
            "state": {f"{slot}/{name}": np.array(backend.to_numpy(arr)) for name, slots in self._state.items()
                      for slot, arr in slots.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (copies the arrays)."""
        kind = state.get("type")
        if kind != type(self).__name__:
            raise JacnetValueError(f"{type(self).__name__}.load_state_dict expects state of a "
                                   f"{type(self).__name__}, got {kind!r}")
        iterations = check_positive_int(state.get("iterations"), "optimizer state iterations",
                                        minimum=0)
        restored: dict[str, dict[str, FloatArray]] = {}
        for key, arr in dict(state.get("state", {})).items():
            slot, _, name = str(key).partition("/")
            if not name or not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
                raise JacnetValueError(
                    f"optimizer state expects '<slot>/<param>' float arrays, got {key!r}")
            restored.setdefault(name, {})[slot] = np.array(arr)
        self.iterations = iterations
        self._state = restored
        self._bound = {}


@register_optimizer("sgd")
class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    With ``g ← g + weight_decay·p`` and velocity ``v``::

        v ← momentum·v + g
        p ← p - lr·(g + momentum·v)   if nesterov
        p ← p - lr·v                  otherwise (plain SGD when momentum = 0)
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = check_real(momentum, "SGD momentum", low=0, high=1, high_open=True)
        if not isinstance(nesterov, bool):
            raise JacnetTypeError(f"SGD nesterov expects a bool, got {describe(nesterov)}")
        if nesterov and self.momentum == 0:
            raise JacnetValueError("SGD nesterov expects momentum > 0, got momentum=0")
        self.nesterov = nesterov

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}

    def _update(self, name: str, p: FloatArray, g: FloatArray) -> None:
        xp = backend.namespace(p)
        buf = self._buffer(name, p)
        if self.weight_decay:  # g ← g + weight_decay·p, in the scratch buffer
            xp.multiply(p, self.weight_decay, out=buf)
            buf += g
            g = buf
        if not self.momentum:
            backend.subtract_scaled(p, g, self.lr, buf)
            return
        v = self._slot(name, "velocity", p)
        v *= self.momentum
        v += g
        if self.nesterov:  # p ← p - lr·(g + momentum·v), as two in-place steps
            backend.subtract_scaled(p, g, self.lr, buf)
            backend.subtract_scaled(p, v, self.lr * self.momentum, buf)
        else:
            backend.subtract_scaled(p, v, self.lr, buf)


@register_optimizer("adam")
class Adam(Optimizer):
    """Adam with decoupled weight decay (AdamW when ``weight_decay > 0``).

    With ``t`` the step count::

        m ← β₁ m + (1 - β₁) g          v ← β₂ v + (1 - β₂) g²
        p ← p - lr·weight_decay·p
        p ← p - lr · (m / (1 - β₁ᵗ)) / (sqrt(v / (1 - β₂ᵗ)) + eps)
    """

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise JacnetTypeError(f"Adam betas expects a pair (beta1, beta2), got {describe(betas)}")
        self.betas = (check_real(betas[0], "Adam betas[0]", low=0, high=1, high_open=True),
                      check_real(betas[1], "Adam betas[1]", low=0, high=1, high_open=True))
        self.eps = check_real(eps, "Adam eps", low=0, low_open=True)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self, name: str, p: FloatArray, g: FloatArray) -> None:
        xp = backend.namespace(p)
        beta1, beta2 = self.betas
        t = self.iterations
        m = self._slot(name, "m", p)
        v = self._slot(name, "v", p)
        buf = self._buffer(name, p)
        m *= beta1
        xp.multiply(g, 1 - beta1, out=buf)
        m += buf
        v *= beta2
        xp.multiply(g, g, out=buf)
        buf *= 1 - beta2
        v += buf
        if self.weight_decay:
            p *= 1 - self.lr * self.weight_decay
        # buf ← lr/(1-β₁ᵗ) · m / (sqrt(v/(1-β₂ᵗ)) + eps), all in place.
        xp.divide(v, 1 - beta2**t, out=buf)
        xp.sqrt(buf, out=buf)
        buf += self.eps
        xp.divide(m, buf, out=buf)
        buf *= self.lr / (1 - beta1**t)
        p -= buf


def _is_array(A: Any) -> bool:
    return isinstance(A, np.ndarray) or backend.is_torch(A)


class StepDecay:
    """``lr(epoch) = base_lr · gamma^(epoch // step_size)`` (epochs counted from 0)."""

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = check_positive_int(step_size, "StepDecay step_size")
        self.gamma = check_real(gamma, "StepDecay gamma", low=0, high=1, low_open=True)

    def __call__(self, epoch: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)

    def __repr__(self) -> str:
        return f"StepDecay(step_size={self.step_size}, gamma={self.gamma})"


class CosineDecay:
    """``lr(epoch) = min_lr + (base_lr - min_lr)(1 + cos(π·epoch/total_epochs))/2``."""

    def __init__(self, total_epochs: int, min_lr: float = 0.0) -> None:
        self.total_epochs = check_positive_int(total_epochs, "CosineDecay total_epochs")
        self.min_lr = check_real(min_lr, "CosineDecay min_lr", low=0)

    def __call__(self, epoch: int, base_lr: float) -> float:
        progress = min(epoch, self.total_epochs) / self.total_epochs
        return self.min_lr + (base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2

    def __repr__(self) -> str:
        return f"CosineDecay(total_epochs={self.total_epochs}, min_lr={self.min_lr})"
