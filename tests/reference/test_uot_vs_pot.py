"""``sinkhorn_uot`` against POT's ``sinkhorn_knopp_unbalanced`` (float64, ``reg_type="kl"``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minmaxfuse.ot import sinkhorn_uot
from tests.strategies import REG_M_CHOICES, uot_problems

ot = pytest.importorskip("ot")

TIGHT = dict(max_iter=60000, tol=1e-12)


def pot_plan(cost, a, b, reg, reg_m):
    return ot.unbalanced.sinkhorn_knopp_unbalanced(
        a, b, cost, reg, reg_m, reg_type="kl", numItermax=60000, stopThr=1e-13
    )


def gen_kl(x, y):
    x, y = np.asarray(x), np.asarray(y)
    pos = x > 0
    return float(np.sum(x[pos] * np.log(x[pos] / y[pos])) - x.sum() + y.sum())


def pot_value(P, cost, a, b, reg, reg_m):
    r1, r2 = (reg_m, reg_m) if not isinstance(reg_m, tuple) else reg_m
    v = float(np.sum(P * cost)) + reg * gen_kl(P.ravel(), np.outer(a, b).ravel())
    if not math.isinf(r1):
        v += r1 * gen_kl(P.sum(1), a)
    if not math.isinf(r2):
        v += r2 * gen_kl(P.sum(0), b)
    return v


@settings(max_examples=25)
@given(
    prob=uot_problems(),
    reg=st.sampled_from([0.02, 0.05, 0.1, 0.5]),
    reg_m=st.sampled_from(REG_M_CHOICES),
    grad=st.sampled_from(["implicit", "unroll", "detach"]),
)
def test_plan_and_value_match_pot_float64(prob, reg, reg_m, grad):
    cost, a, b, mask = prob
    res = sinkhorn_uot(cost, a, b, reg=reg, reg_m=reg_m, mask=mask, grad=grad, **TIGHT)
    assert bool(res.converged.all())
    for i in range(cost.shape[0]):
        n = int(mask[i].sum())
        ai = a[i, :n].numpy()
        P = pot_plan(cost[i, :n].numpy(), ai, b[i].numpy(), reg, reg_m)
        ours = res.plan[i].detach().numpy()
        scale = np.abs(P).max()
        np.testing.assert_allclose(ours[:n], P, rtol=0, atol=1e-8 * scale)
        assert np.all(ours[n:] == 0.0)
        v = pot_value(P, cost[i, :n].numpy(), ai, b[i].numpy(), reg, reg_m)
        assert abs(float(res.value[i]) - v) <= 1e-8 * max(1.0, abs(v))


@settings(max_examples=15)
@given(prob=uot_problems(), reg=st.sampled_from([0.05, 0.1]), reg_m=st.sampled_from(REG_M_CHOICES))
def test_float32_matches_pot_float64(prob, reg, reg_m):
    cost, a, b, mask = prob
    res = sinkhorn_uot(
        cost.float(), a.float(), b.float(), reg=reg, reg_m=reg_m, mask=mask, tol=1e-7
    )
    assert res.plan.dtype == torch.float32
    for i in range(cost.shape[0]):
        n = int(mask[i].sum())
        P = pot_plan(cost[i, :n].numpy(), a[i, :n].numpy(), b[i].numpy(), reg, reg_m)
        np.testing.assert_allclose(
            res.plan[i, :n].double().numpy(), P, rtol=0, atol=1e-5 * np.abs(P).max()
        )


def test_default_masses_match_pot_defaults():
    g = torch.Generator().manual_seed(3)
    cost = torch.rand(2, 9, 5, generator=g, dtype=torch.float64) * 2
    res = sinkhorn_uot(cost, reg=0.05, reg_m=0.5, grad="detach", **TIGHT)
    for i in range(2):
        P = pot_plan(cost[i].numpy(), np.ones(9) / 9, np.ones(5) / 5, 0.05, 0.5)
        np.testing.assert_allclose(res.plan[i].numpy(), P, rtol=0, atol=1e-8 * P.max())


def test_sink_with_hard_columns_equals_pot_on_extended_problem():
    # With hard columns everywhere, the sink layout is POT's problem with one extra column.
    g = torch.Generator().manual_seed(4)
    cost = torch.rand(2, 7, 3, generator=g, dtype=torch.float64) * 2
    s = 0.4
    b = torch.full((2, 3), (1 - s) / 3, dtype=torch.float64)
    res = sinkhorn_uot(cost, None, b, reg=0.1, reg_m=(1.0, math.inf), sink_mass=s, **TIGHT)
    for i in range(2):
        ext = np.concatenate([cost[i].numpy(), np.zeros((7, 1))], axis=1)
        be = np.array([(1 - s) / 3] * 3 + [s])
        P = pot_plan(ext, np.ones(7) / 7, be, 0.1, (1.0, math.inf))
        np.testing.assert_allclose(res.plan[i].numpy(), P[:, :3], rtol=0, atol=1e-9)
        np.testing.assert_allclose(res.sink[i].numpy(), P[:, 3], rtol=0, atol=1e-9)


@pytest.mark.parametrize("reg", [1e-3, 3e-3, 1e-2])
def test_float32_small_reg_is_stable(reg):
    # POT's Knopp returns zeros/NaN here in float32. Reference: our float64 solution, certified
    # by its fixed-point residuals (hard rows: r = a; relaxed columns: g / rho + log(c / b) = 0).
    # (a strong column relaxation rho2 = 0.05 keeps the iteration count small)
    g = torch.Generator().manual_seed(5)
    cost = torch.rand(3, 40, 6, generator=g) * 2
    kw = dict(reg=reg, reg_m=(math.inf, 0.05), grad="detach")
    res32 = sinkhorn_uot(cost, max_iter=20000, tol=1e-6, **kw)
    ref = sinkhorn_uot(cost.double(), max_iter=50000, tol=1e-11, **kw)
    r, c = ref.plan.sum(-1), ref.plan.sum(-2)
    assert bool(ref.converged.all())
    assert (r * 40 - 1).abs().max() < 1e-9
    assert (ref.g / 0.05 + torch.log(c * 6)).abs().max() < 1e-7
    assert torch.isfinite(res32.plan).all()
    assert bool(res32.converged.all())
    err = (res32.plan.double() - ref.plan).abs().max()
    assert err <= 1e-4 * ref.plan.abs().max()
