"""Hypothesis properties of ``sinkhorn_uot`` / ``partial_uot``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minmaxfuse.ot import partial_uot, sinkhorn_uot
from tests.strategies import REG_M_CHOICES, uot_problems

KW = dict(max_iter=20000, tol=1e-12, grad="detach")
regs = st.sampled_from([0.05, 0.1, 0.5])
reg_ms = st.sampled_from(REG_M_CHOICES)


@given(prob=uot_problems(), reg=regs, reg_m=reg_ms)
def test_nonnegative_finite_and_masked_rows_zero(prob, reg, reg_m):
    cost, a, b, mask = prob
    r = sinkhorn_uot(cost, a, b, reg=reg, reg_m=reg_m, mask=mask, **KW)
    for t in (r.plan, r.value, r.f, r.g):
        assert torch.isfinite(t).all()
    assert (r.plan >= 0).all()
    assert torch.all(r.plan[~mask] == 0) and torch.all(r.f[~mask] == 0)
    assert r.n_iter.dtype == torch.long and r.converged.dtype == torch.bool


@given(prob=uot_problems(masks=False), reg=regs, reg_m=reg_ms, pad=st.integers(1, 3))
def test_padding_changes_nothing(prob, reg, reg_m, pad):
    cost, a, b, _ = prob
    B, N, K = cost.shape
    ref = sinkhorn_uot(cost, a, b, reg=reg, reg_m=reg_m, **KW)
    junk = torch.full((B, pad, K), float("nan"), dtype=cost.dtype)  # padded costs are ignored
    cp = torch.cat([cost, junk], 1)
    ap = torch.cat([a, torch.full((B, pad), float("nan"), dtype=a.dtype)], 1)  # ignored too
    mp = torch.cat([torch.ones(B, N, dtype=torch.bool), torch.zeros(B, pad, dtype=torch.bool)], 1)
    r = sinkhorn_uot(cp, ap, b, reg=reg, reg_m=reg_m, mask=mp, **KW)
    torch.testing.assert_close(r.plan[:, :N], ref.plan, rtol=1e-9, atol=1e-14)
    assert torch.all(r.plan[:, N:] == 0)
    torch.testing.assert_close(r.value, ref.value, rtol=1e-9, atol=1e-12)


@given(prob=uot_problems(), reg=regs, reg_m=reg_ms, seed=st.integers(0, 1000))
def test_permutation_equivariance(prob, reg, reg_m, seed):
    cost, a, b, mask = prob
    B, N, K = cost.shape
    g = torch.Generator().manual_seed(seed)
    pr, pc = torch.randperm(N, generator=g), torch.randperm(K, generator=g)
    r = sinkhorn_uot(cost, a, b, reg=reg, reg_m=reg_m, mask=mask, **KW)
    rp = sinkhorn_uot(
        cost[:, pr][:, :, pc], a[:, pr], b[:, pc], reg=reg, reg_m=reg_m, mask=mask[:, pr], **KW
    )
    torch.testing.assert_close(rp.plan, r.plan[:, pr][:, :, pc], rtol=1e-8, atol=1e-13)
    torch.testing.assert_close(rp.value, r.value, rtol=1e-8, atol=1e-12)


@given(
    prob=uot_problems(max_b=4), reg=regs, reg_m=reg_ms, grad=st.sampled_from(["detach", "unroll"])
)
def test_batched_equals_looped(prob, reg, reg_m, grad):
    cost, a, b, mask = prob
    kw = {**KW, "grad": grad, "max_iter": 200, "tol": 1e-10}
    r = sinkhorn_uot(cost, a, b, reg=reg, reg_m=reg_m, mask=mask, **kw)
    for i in range(cost.shape[0]):
        s = slice(i, i + 1)
        ri = sinkhorn_uot(cost[s], a[s], b[s], reg=reg, reg_m=reg_m, mask=mask[s], **kw)
        torch.testing.assert_close(r.plan[s], ri.plan, rtol=1e-12, atol=1e-15)
        assert int(r.n_iter[i]) == int(ri.n_iter[0])
        assert bool(r.converged[i]) == bool(ri.converged[0])


@given(prob=uot_problems(), reg=regs)
def test_hard_marginals_are_reproduced(prob, reg):
    cost, a, b, mask = prob
    r = sinkhorn_uot(cost, a, b, reg=reg, reg_m=(math.inf, 1.0), mask=mask, **KW)
    torch.testing.assert_close(r.plan.sum(-1), a, rtol=0, atol=1e-10)
    r = sinkhorn_uot(cost, a, b, reg=reg, reg_m=(1.0, math.inf), mask=mask, **KW)
    torch.testing.assert_close(r.plan.sum(-2), b, rtol=0, atol=1e-10)
    r = sinkhorn_uot(cost, a, b, reg=reg, reg_m=math.inf, mask=mask, **KW)
    torch.testing.assert_close(r.plan.sum(-1), a, rtol=0, atol=1e-9)
    torch.testing.assert_close(r.plan.sum(-2), b, rtol=0, atol=1e-9)


@settings(max_examples=10)
@given(prob=uot_problems(), reg=st.sampled_from([0.1, 0.5]))
def test_large_reg_m_approaches_hard_marginals(prob, reg):
    # at the optimum log(r / a) = -f / rho_1, so the row-marginal violation shrinks like 1 / rho_1
    cost, a, b, mask = prob
    errs = []
    for rho in (1.0, 10.0, 100.0):
        kw = {**KW, "tol": 1e-8}
        r = sinkhorn_uot(cost, a, b, reg=reg, reg_m=(rho, math.inf), mask=mask, **kw)
        errs.append(float((r.plan.sum(-1) - a).abs().max()))
        bound = float((a * torch.expm1(r.f.abs() / rho)).max())
        assert errs[-1] <= bound * (1 + 1e-4) + 1e-9
    assert errs[2] <= 0.2 * errs[0] + 1e-12


@given(
    prob=uot_problems(),
    reg=regs,
    s=st.floats(0.0, 0.95),
    gamma=st.sampled_from([0.5, 1.0, math.inf]),
)
def test_sink_takes_exactly_sink_mass(prob, reg, s, gamma):
    cost, _, _, mask = prob
    rho = 1.0 - s
    r = partial_uot(cost, rho, reg=reg, reg_m_cols=gamma, mask=mask, **KW)
    torch.testing.assert_close(r.sink.sum(-1), torch.full_like(r.value, s), rtol=0, atol=1e-10)
    n = mask.sum(-1, keepdim=True).to(cost.dtype)
    rows = r.plan.sum(-1) + r.sink
    torch.testing.assert_close(rows, mask / n, rtol=0, atol=1e-10)  # hard uniform rows
    assert torch.all(r.sink[~mask] == 0) and (r.sink >= 0).all()
    if math.isinf(gamma):  # hard real columns: rho / K each
        K = cost.shape[-1]
        torch.testing.assert_close(r.plan.sum(-2), torch.full_like(r.g, rho / K), rtol=0, atol=1e-9)


@settings(max_examples=10)
@given(prob=uot_problems(dtype=torch.float32), reg=st.sampled_from([1e-3, 1e-2]))
def test_float32_small_reg_finite(prob, reg):
    cost, a, b, mask = prob
    r = sinkhorn_uot(cost, a, b, reg=reg, reg_m=(math.inf, 1.0), mask=mask, max_iter=300)
    for t in (r.plan, r.value, r.f, r.g):
        assert torch.isfinite(t).all()
    assert (r.plan >= 0).all()
    # rows are hard: once converged, their marginal holds (float32 accuracy)
    ok = r.converged
    torch.testing.assert_close(r.plan.sum(-1)[ok], a[ok], rtol=0, atol=1e-5)


def test_sink_mass_tensor_per_problem():
    cost = torch.rand(3, 5, 2, dtype=torch.float64)
    s = torch.tensor([0.0, 0.5, 0.9], dtype=torch.float64)
    r = sinkhorn_uot(cost, reg=0.1, reg_m=(math.inf, 1.0), sink_mass=s, **KW)
    torch.testing.assert_close(r.sink.sum(-1), s, rtol=0, atol=1e-10)
    r0 = sinkhorn_uot(cost, reg=0.1, reg_m=(math.inf, 1.0), **KW)
    assert torch.all(r0.sink == 0)


def test_converged_and_n_iter_are_honest():
    cost = torch.rand(2, 30, 4, dtype=torch.float64) * 2
    r = sinkhorn_uot(cost, reg=0.01, reg_m=10.0, max_iter=7, tol=1e-12)
    assert not bool(r.converged.any()) and r.n_iter.tolist() == [7, 7]
    r = sinkhorn_uot(cost, reg=0.5, reg_m=0.5, max_iter=5000, tol=1e-9, check_every=1)
    assert bool(r.converged.all()) and int(r.n_iter.max()) < 5000
    # one more iteration moves the potentials by less than tol * reg
    r2 = sinkhorn_uot(cost, reg=0.5, reg_m=0.5, max_iter=int(r.n_iter[0]) + 1, tol=0.0)
    assert float((r2.f[0] - r.f[0]).abs().max()) < 1e-9 * 0.5 * 1.01


def test_log_domain_rollback_recovers(monkeypatch):
    # Inject an overflow into one block of scaling iterations: the engine must roll back to its
    # checkpoint, redo the block in the log domain and end at the same plan.
    from minmaxfuse.ot import _solver

    cost = torch.rand(2, 12, 4, dtype=torch.float64) * 2
    kw = dict(reg=0.05, reg_m=(math.inf, 1.0), max_iter=60, tol=0.0, grad="detach")
    ref = sinkhorn_uot(cost, **kw)
    original = _solver._Chunk.iterate
    calls = {"n": 0}

    def faulty(self, n):
        original(self, n)
        calls["n"] += 1
        if calls["n"] == 3:
            self.v.fill_(math.inf)

    monkeypatch.setattr(_solver._Chunk, "iterate", faulty)
    res = sinkhorn_uot(cost, **kw)
    assert calls["n"] > 3
    torch.testing.assert_close(res.plan, ref.plan, rtol=1e-10, atol=1e-15)
    assert res.n_iter.tolist() == ref.n_iter.tolist()


def test_warn_when_not_converged():
    cost = torch.rand(2, 10, 3, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        sinkhorn_uot(cost, reg=0.01, reg_m=10.0, max_iter=3, warn=True)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    cost = torch.rand(3, 50, 5) * 2
    mask = torch.ones(3, 50, dtype=torch.bool)
    mask[1, 30:] = False
    kw = dict(reg=0.05, reg_m=(math.inf, 1.0), mask=mask, sink_mass=0.2, tol=1e-7)
    ref = sinkhorn_uot(cost, **kw)
    kw["mask"] = mask.cuda()
    res = sinkhorn_uot(cost.cuda().requires_grad_(), **kw)
    assert res.plan.device.type == "cuda"
    torch.testing.assert_close(res.plan.cpu(), ref.plan, rtol=1e-4, atol=1e-7)
    res.plan.sum().backward()
