"""Optimizers and schedules: steps checked by hand, state that round-trips bitwise, clear errors
for bad hyper-parameters and mismatched dicts, and grads left alone."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jacnet import (
    SGD,
    Adam,
    CosineDecay,
    JacnetError,
    JacnetTypeError,
    JacnetValueError,
    Optimizer,
    ShapeError,
    StepDecay,
    build_mlp,
)

P0 = [1.0, -2.0, 0.5]
G1 = [0.5, 0.25, -1.0]
G2 = [-0.25, 0.75, 0.0]


def params(values: list[float] = P0, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    return {"w": np.array(values, dtype=dtype)}


def grads(values: list[float], dtype: Any = np.float64) -> dict[str, np.ndarray]:
    return {"w": np.array(values, dtype=dtype)}


# SGD by hand ------------------------------------------------------------------------------


def test_sgd_one_step_by_hand() -> None:
    p = params()
    target = p["w"]
    SGD(lr=0.1).step(p, grads(G1))
    assert p["w"] is target  # in place
    np.testing.assert_allclose(p["w"], [1.0 - 0.05, -2.0 - 0.025, 0.5 + 0.1], rtol=1e-15)


_finite = st.floats(-1e3, 1e3, allow_nan=False, width=64)


@given(data=st.data(), shape=hnp.array_shapes(max_dims=3, max_side=4),
       lr=st.floats(1e-4, 10.0))
def test_sgd_step_is_p_minus_lr_g_for_any_array(data: st.DataObject, shape: tuple[int, ...],
                                               lr: float) -> None:
    p0 = data.draw(hnp.arrays(np.float64, shape, elements=_finite))
    g = data.draw(hnp.arrays(np.float64, shape, elements=_finite))
    p = {"p": p0.copy()}
    SGD(lr=lr).step(p, {"p": g})
    np.testing.assert_allclose(p["p"], p0 - lr * g, rtol=1e-12, atol=1e-12)


def test_sgd_updates_every_array_of_a_model_in_place() -> None:
    model = build_mlp(3, [4], 2, rng=0)
    before = {k: v.copy() for k, v in model.params.items()}
    for g in model.grads.values():
        g[...] = 1.0
    SGD(lr=0.5).step(model.params, model.grads)
    for k, p in model.params.items():
        np.testing.assert_allclose(p, before[k] - np.float32(0.5), rtol=1e-6)
        assert p.dtype == np.float32


def test_sgd_momentum_two_steps_by_hand() -> None:
    lr, mu = 0.1, 0.9
    p = params()
    opt = SGD(lr=lr, momentum=mu)
    opt.step(p, grads(G1))
    # v1 = g1; p1 = p0 - lr v1
    p1 = [p0 - lr * g1 for p0, g1 in zip(P0, G1, strict=True)]
    np.testing.assert_allclose(p["w"], p1, rtol=1e-14)
    opt.step(p, grads(G2))
    # v2 = mu v1 + g2; p2 = p1 - lr v2
    v2 = [mu * g1 + g2 for g1, g2 in zip(G1, G2, strict=True)]
    p2 = [a - lr * v for a, v in zip(p1, v2, strict=True)]
    np.testing.assert_allclose(p["w"], p2, rtol=1e-14)
    assert p["w"][0] == pytest.approx(0.93)  # 0.95 - 0.1 * (0.45 - 0.25)


def test_sgd_nesterov_two_steps_by_hand() -> None:
    lr, mu = 0.1, 0.9
    p = params()
    opt = SGD(lr=lr, momentum=mu, nesterov=True)
    opt.step(p, grads(G1))
    # v1 = g1; p1 = p0 - lr (g1 + mu v1)
    p1 = [p0 - lr * (g1 + mu * g1) for p0, g1 in zip(P0, G1, strict=True)]
    np.testing.assert_allclose(p["w"], p1, rtol=1e-14)
    opt.step(p, grads(G2))
    # v2 = mu v1 + g2; p2 = p1 - lr (g2 + mu v2)
    v2 = [mu * g1 + g2 for g1, g2 in zip(G1, G2, strict=True)]
    p2 = [a - lr * (g2 + mu * v) for a, g2, v in zip(p1, G2, v2, strict=True)]
    np.testing.assert_allclose(p["w"], p2, rtol=1e-14)
    assert p["w"][0] == pytest.approx(0.912)  # 0.905 - 0.1 * (-0.25 + 0.9 * 0.2)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_coupled_weight_decay(momentum: float) -> None:
    lr, wd = 0.1, 0.01
    p = params()
    opt = SGD(lr=lr, momentum=momentum, weight_decay=wd)
    opt.step(p, grads(G1))
    # The decay is added to the gradient (L2): g' = g + wd p
    p1 = [p0 - lr * (g1 + wd * p0) for p0, g1 in zip(P0, G1, strict=True)]
    np.testing.assert_allclose(p["w"], p1, rtol=1e-14)
    opt.step(p, grads(G2))
    g2 = [g + wd * a for g, a in zip(G2, p1, strict=True)]
    v = [momentum * (g1 + wd * p0) + g for g1, p0, g in zip(G1, P0, g2, strict=True)]
    p2 = [a - lr * vi for a, vi in zip(p1, v, strict=True)]
    np.testing.assert_allclose(p["w"], p2, rtol=1e-14)


def test_sgd_weight_decay_with_zero_gradient_shrinks_weights() -> None:
    p = params()
    SGD(lr=0.5, weight_decay=0.2).step(p, grads([0.0, 0.0, 0.0]))
    np.testing.assert_allclose(p["w"], np.array(P0) * 0.9, rtol=1e-15)


# Adam by hand -----------------------------------------------------------------------------


def adam_reference(p0: list[float], gs: list[list[float]], lr: float, b1: float, b2: float,
                   eps: float, wd: float = 0.0) -> list[float]:
    """Adam / AdamW written out with Python floats, one entry at a time."""
    out = []
    for i, p in enumerate(p0):
        m = v = 0.0
        for t, g_all in enumerate(gs, start=1):
            g = g_all[i]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p = p - lr * wd * p
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            p = p - lr * m_hat / (math.sqrt(v_hat) + eps)
        out.append(p)
    return out


def test_adam_first_two_steps_by_hand() -> None:
    lr = 0.1
    p = params()
    opt = Adam(lr=lr)
    opt.step(p, grads(G1))
    # Bias correction: the first step moves each entry by lr * sign(g) (up to eps).
    np.testing.assert_allclose(p["w"], [0.9, -2.1, 0.6], rtol=1e-7)
    np.testing.assert_allclose(p["w"], adam_reference(P0, [G1], lr, 0.9, 0.999, 1e-8), rtol=1e-13)
    opt.step(p, grads(G2))
    np.testing.assert_allclose(p["w"], adam_reference(P0, [G1, G2], lr, 0.9, 0.999, 1e-8),
                               rtol=1e-13)
    # Entry 0 worked out on paper: m1 = 0.05, v1 = 0.00025 (corrected: 0.5 and 0.25), then
    # m2 = 0.02, v2 = 0.00031225.
    p1 = 1.0 - lr * 0.5 / (math.sqrt(0.25) + 1e-8)
    m_hat, v_hat = 0.02 / (1 - 0.9**2), 0.00031225 / (1 - 0.999**2)
    assert p["w"][0] == pytest.approx(p1 - lr * m_hat / (math.sqrt(v_hat) + 1e-8), rel=1e-12)
    assert p["w"][0] == pytest.approx(0.873366, abs=1e-6)
    assert opt.iterations == 2


def test_adam_custom_betas_and_eps() -> None:
    p = params()
    opt = Adam(lr=0.01, betas=(0.5, 0.75), eps=1e-3)
    for g in (G1, G2, G1):
        opt.step(p, grads(g))
    np.testing.assert_allclose(p["w"], adam_reference(P0, [G1, G2, G1], 0.01, 0.5, 0.75, 1e-3),
                               rtol=1e-13)


def test_adamw_decoupled_weight_decay() -> None:
    lr, wd = 0.1, 0.5
    p = params()
    opt = Adam(lr=lr, weight_decay=wd)
    opt.step(p, grads(G1))
    opt.step(p, grads(G2))
    np.testing.assert_allclose(p["w"], adam_reference(P0, [G1, G2], lr, 0.9, 0.999, 1e-8, wd),
                               rtol=1e-13)


def test_adamw_decay_does_not_go_through_the_moments() -> None:
    # With a zero gradient the moments stay zero: AdamW shrinks p by exactly (1 - lr wd), whereas
    # L2 decay added to the gradient would move every entry by about lr.
    p = params()
    Adam(lr=0.1, weight_decay=0.5).step(p, grads([0.0, 0.0, 0.0]))
    np.testing.assert_allclose(p["w"], np.array(P0) * 0.95, rtol=1e-15)


def test_float32_params_stay_float32() -> None:
    for opt in (SGD(lr=0.1, momentum=0.9, weight_decay=0.1), Adam(weight_decay=0.1)):
        p = params(dtype=np.float32)
        opt.step(p, grads(G1, np.float32))
        opt.step(p, grads(G2, np.float32))
        assert p["w"].dtype == np.float32
        assert all(a.dtype == np.float32 for a in opt.state_dict()["state"].values())


# Optimizer hygiene ------------------------------------------------------------------------


OPTIMIZERS = [
    lambda: SGD(lr=0.1),
    lambda: SGD(lr=0.1, weight_decay=0.1),
    lambda: SGD(lr=0.1, momentum=0.9, weight_decay=0.1),
    lambda: SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
    lambda: Adam(lr=0.1),
    lambda: Adam(lr=0.1, weight_decay=0.1),
]


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_step_does_not_mutate_grads(make: Any, rng: np.random.Generator) -> None:
    opt = make()
    p = {"a": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    g = {"a": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    frozen = {k: v.copy() for k, v in g.items()}
    for _ in range(3):
        opt.step(p, g)
    for k in g:
        np.testing.assert_array_equal(g[k], frozen[k])


def test_state_is_kept_per_name(rng: np.random.Generator) -> None:
    # Two parameters with the same values but different names keep separate moments.
    opt = Adam(lr=0.1)
    p = {"x": np.zeros(2), "y": np.zeros(2)}
    opt.step(p, {"x": np.array([1.0, 1.0]), "y": np.array([-1.0, -1.0])})
    np.testing.assert_allclose(p["x"], -p["y"])
    state = opt.state_dict()["state"]
    assert set(state) == {"m/x", "v/x", "m/y", "v/y"}


def test_keys_mismatch() -> None:
    with pytest.raises(JacnetValueError, match="keys"):
        SGD(lr=0.1).step({"a": np.zeros(2)}, {"b": np.zeros(2)})
    with pytest.raises(JacnetValueError, match="keys"):
        Adam().step({"a": np.zeros(2), "b": np.zeros(1)}, {"a": np.zeros(2)})


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_shape_mismatch_changes_nothing(make: Any) -> None:
    opt = make()
    p = {"a": np.ones(3), "b": np.ones((2, 2))}
    with pytest.raises(ShapeError, match=r"grads\['b'\].*\(2, 2\)"):
        opt.step(p, {"a": np.ones(3), "b": np.ones(4)})
    # A refused step leaves the parameters and the step count as they were.
    np.testing.assert_array_equal(p["a"], np.ones(3))
    assert opt.iterations == 0


def test_non_array_entries() -> None:
    with pytest.raises(JacnetTypeError, match="'a'"):
        SGD(lr=0.1).step({"a": np.zeros(2)}, {"a": [1.0, 2.0]})


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: SGD(lr=0), JacnetValueError, "lr"),
        (lambda: SGD(lr=-0.1), JacnetValueError, "lr"),
        (lambda: SGD(lr=float("nan")), JacnetValueError, "lr"),
        (lambda: SGD(lr=float("inf")), JacnetValueError, "lr"),
        (lambda: SGD(lr="0.1"), JacnetTypeError, "lr"),
        (lambda: SGD(lr=0.1, momentum=-0.1), JacnetValueError, "momentum"),
        (lambda: SGD(lr=0.1, momentum=1.0), JacnetValueError, "momentum"),
        (lambda: SGD(lr=0.1, nesterov=True), JacnetValueError, "nesterov"),
        (lambda: SGD(lr=0.1, momentum=0.9, nesterov=1), JacnetTypeError, "nesterov"),
        (lambda: SGD(lr=0.1, weight_decay=-1e-4), JacnetValueError, "weight_decay"),
        (lambda: SGD(lr=0.1, weight_decay=float("nan")), JacnetValueError, "weight_decay"),
        (lambda: Adam(lr=0), JacnetValueError, "lr"),
        (lambda: Adam(lr=float("nan")), JacnetValueError, "lr"),
        (lambda: Adam(lr=float("inf")), JacnetValueError, "lr"),
        (lambda: Adam(betas=(1.0, 0.999)), JacnetValueError, r"betas\[0\]"),
        (lambda: Adam(betas=(-0.1, 0.999)), JacnetValueError, r"betas\[0\]"),
        (lambda: Adam(betas=(0.9, 1.0)), JacnetValueError, r"betas\[1\]"),
        (lambda: Adam(betas=(0.9, 1.5)), JacnetValueError, r"betas\[1\]"),
        (lambda: Adam(betas=(0.9, float("nan"))), JacnetValueError, r"betas\[1\]"),
        (lambda: Adam(betas=0.9), JacnetTypeError, "betas"),
        (lambda: Adam(eps=0), JacnetValueError, "eps"),
        (lambda: Adam(weight_decay=-1), JacnetValueError, "weight_decay"),
        (lambda: StepDecay(step_size=0), JacnetValueError, "step_size"),
        (lambda: StepDecay(step_size=2, gamma=0), JacnetValueError, "gamma"),
        (lambda: StepDecay(step_size=2, gamma=1.5), JacnetValueError, "gamma"),
        (lambda: CosineDecay(total_epochs=0), JacnetValueError, "total_epochs"),
        (lambda: CosineDecay(total_epochs=5, min_lr=-1), JacnetValueError, "min_lr"),
    ],
)
def test_invalid_hyperparameters(make: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        make()
    assert isinstance(info.value, JacnetError)


def test_lr_setter_validates() -> None:
    opt = Adam(lr=0.1)
    opt.lr = 0.05
    assert opt.lr == 0.05
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(JacnetValueError, match="lr"):
            opt.lr = bad
    assert opt.lr == 0.05


def test_zero_betas_are_allowed() -> None:
    p = params()
    Adam(lr=0.1, betas=(0.0, 0.0)).step(p, grads(G1))
    np.testing.assert_allclose(p["w"], adam_reference(P0, [G1], 0.1, 0.0, 0.0, 1e-8), rtol=1e-13)


def test_repr_and_hyperparameters() -> None:
    assert SGD(lr=0.1, momentum=0.9).hyperparameters() == {
        "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}
    assert "Adam(lr=0.001" in repr(Adam())


# State ------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_state_dict_round_trip_gives_bitwise_identical_steps(make: Any, rng: np.random.Generator) -> None:
    shapes = {"0.W": (4, 3), "0.b": (3,)}
    p = {k: rng.standard_normal(s) for k, s in shapes.items()}
    g_seq = [{k: rng.standard_normal(s) for k, s in shapes.items()} for _ in range(5)]
    original = make()
    for g in g_seq[:3]:
        original.step(p, g)
    state = original.state_dict()
    restored = make()
    restored.load_state_dict(state)
    assert restored.iterations == original.iterations == 3
    # The restored optimizer owns copies: changing the saved dict afterwards does nothing.
    for arr in state["state"].values():
        arr[...] = 123.0
    # The original keeps updating its own arrays (its state is bound to them); the restored
    # one binds to the arrays of its first step.
    p_a = p
    p_b = {k: v.copy() for k, v in p.items()}
    p_c = {k: v.copy() for k, v in p.items()}
    for g in g_seq[3:]:
        original.step(p_a, g)
        restored.step(p_b, g)
    for k in p:
        np.testing.assert_array_equal(p_a[k], p_b[k])
    # And a fresh optimizer (no state) would have moved elsewhere, when there is state to lose.
    fresh = make()
    for g in g_seq[3:]:
        fresh.step(p_c, g)
    stateful = isinstance(fresh, Adam) or fresh.momentum > 0
    assert stateful == (not all(np.array_equal(p_a[k], p_c[k]) for k in p))


def test_state_dict_contents() -> None:
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step(params(), grads(G1))
    state = opt.state_dict()
    assert state["type"] == "SGD"
    assert state["iterations"] == 1
    assert state["hyperparameters"]["momentum"] == 0.9
    np.testing.assert_array_equal(state["state"]["velocity/w"], G1)
    state["state"]["velocity/w"][...] = 0  # a copy, not the live buffer
    assert opt.state_dict()["state"]["velocity/w"][0] == 0.5


def test_load_state_dict_rejects_other_optimizers_and_bad_state() -> None:
    adam = Adam()
    adam.step(params(), grads(G1))
    with pytest.raises(JacnetValueError, match="SGD"):
        SGD(lr=0.1).load_state_dict(adam.state_dict())
    bad = adam.state_dict()
    bad["state"] = {"no_slash": np.zeros(3)}
    with pytest.raises(JacnetValueError, match="no_slash"):
        Adam().load_state_dict(bad)
    bad = adam.state_dict()
    bad["iterations"] = -1
    with pytest.raises(JacnetValueError, match="iterations"):
        Adam().load_state_dict(bad)


def test_base_optimizer_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        Optimizer(lr=0.1).step(params(), grads(G1))


# Schedules --------------------------------------------------------------------------------


def test_step_decay_values() -> None:
    schedule = StepDecay(step_size=3, gamma=0.5)
    assert [schedule(e, 0.8) for e in range(8)] == pytest.approx(
        [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2, 0.2])
    assert StepDecay(1)(2, 1.0) == pytest.approx(0.01)  # default gamma 0.1
    assert "step_size=3" in repr(schedule)


def test_cosine_decay_values() -> None:
    schedule = CosineDecay(total_epochs=10, min_lr=0.1)
    base = 1.1
    assert schedule(0, base) == pytest.approx(1.1)
    assert schedule(5, base) == pytest.approx(0.6)  # half-way: the mean of base and min
    assert schedule(10, base) == pytest.approx(0.1)
    assert schedule(25, base) == pytest.approx(0.1)  # stays at min_lr after the end
    quarter = 0.1 + 1.0 * (1 + math.cos(math.pi / 4)) / 2
    assert CosineDecay(8, 0.1)(2, base) == pytest.approx(quarter)
    values = [schedule(e, base) for e in range(11)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert CosineDecay(4)(4, 0.3) == pytest.approx(0.0, abs=1e-15)
