"""Costs of extreme magnitude (issue 11): solved exactly where the answer is representable,
a ValueError naming ``cost`` where it is not, never a silent NaN/Inf plan."""

from __future__ import annotations

import math

import pytest
import torch

from minmaxfuse.ot import partial_uot, sinkhorn_uot

HARD_ROWS = (math.inf, 1.0)


@pytest.mark.parametrize("value", [3e38, 1e30, -1e30, -3e38])
@pytest.mark.parametrize("grad", ["implicit", "unroll", "detach"])
def test_hard_rows_with_huge_row_constant_costs_are_solved(value, grad):
    # a per-row constant cost does not change a hard-row plan: it equals the zero-cost plan
    cost = torch.full((2, 4, 3), value)
    res = sinkhorn_uot(cost, reg_m=HARD_ROWS, grad=grad, max_iter=200)
    ref = sinkhorn_uot(torch.zeros(2, 4, 3), reg_m=HARD_ROWS, grad=grad, max_iter=200)
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.value).all()
    torch.testing.assert_close(res.plan, ref.plan)
    torch.testing.assert_close(res.f, ref.f + value, rtol=1e-6, atol=0)


@pytest.mark.parametrize("value", [3e38, -1e30])
def test_soft_rows_with_unrepresentable_answer_raise(value):
    with pytest.raises(ValueError, match="`cost` must give a transport plan representable"):
        sinkhorn_uot(torch.full((1, 3, 2), value), max_iter=200)


@pytest.mark.parametrize("value", [1e4, 200.0])
def test_soft_rows_with_large_costs_transport_nothing(value):
    # the optimum sends (almost) no mass: value = rho (sum a + sum b) = 2 rho (+ 0.1 eps)
    res = sinkhorn_uot(torch.full((1, 3, 2), value), max_iter=500)
    assert torch.isfinite(res.plan).all() and float(res.plan.sum()) < 1e-30
    torch.testing.assert_close(res.value, torch.tensor([2.1]))


def test_row_shift_is_exact_for_soft_rows_in_float64():
    # shifting rows by constants moves them into the masses: plan and value unchanged against
    # solving the same problem written with explicitly rescaled masses
    g = torch.Generator().manual_seed(0)
    C = torch.rand(2, 5, 3, generator=g, dtype=torch.float64)
    a = torch.rand(2, 5, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(2, 3, generator=g, dtype=torch.float64) + 0.1
    off = torch.rand(2, 5, 1, generator=g, dtype=torch.float64) * 20
    reg, rho = 0.2, 1.0
    kw = dict(reg=reg, reg_m=rho, tol=1e-14, max_iter=100000)
    shifted = sinkhorn_uot(C + off, a, b, **kw)
    rescaled = sinkhorn_uot(C, a * torch.exp(-off[..., 0] / (rho + reg)), b, **kw)
    torch.testing.assert_close(shifted.plan, rescaled.plan, rtol=1e-9, atol=1e-12)
    t1 = rho / (rho + reg)
    torch.testing.assert_close(shifted.f, rescaled.f + t1 * off[..., 0], rtol=1e-9, atol=1e-9)


def test_partial_uot_with_huge_costs_is_finite_or_raises():
    # everything goes to the (zero-cost) sink; representable while cost / reg is
    res = partial_uot(torch.full((2, 4, 3), 1e30), 0.5, max_iter=200)
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.value).all()
    torch.testing.assert_close(res.sink.sum(-1), torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="`cost` must give a transport plan representable"):
        partial_uot(torch.full((2, 4, 3), 3e38), 0.5, max_iter=200)  # 3e38 / 0.1 overflows
