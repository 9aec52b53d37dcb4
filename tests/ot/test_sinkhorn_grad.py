"""Gradients of ``sinkhorn_uot``: gradcheck per mode, implicit vs unroll, envelope theorem."""

from __future__ import annotations

import math

import pytest
import torch

from minmaxfuse.ot import partial_uot, sinkhorn_uot

CONVERGED = dict(tol=1e-15, max_iter=100000)
REG_MS = [(0.5, 2.0), (math.inf, 1.0), (1.0, math.inf), math.inf]


def _problem(seed=0, B=2, N=5, K=3):
    g = torch.Generator().manual_seed(seed)
    C = torch.rand(B, N, K, generator=g, dtype=torch.float64) * 2
    W = torch.randn(B, N, K, generator=g, dtype=torch.float64)
    a = torch.rand(B, N, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(B, K, generator=g, dtype=torch.float64) + 0.1
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[-1, N - 2 :] = False
    return C, W, a, b, mask


def _balanced(reg_m):
    return not isinstance(reg_m, tuple) and math.isinf(reg_m)


@pytest.mark.parametrize("sink", [None, 0.3])
@pytest.mark.parametrize("reg_m", REG_MS, ids=str)
@pytest.mark.parametrize("grad", ["implicit", "unroll", "envelope"])
def test_gradcheck(grad, reg_m, sink):
    C, W, a, b, mask = _problem()
    # balanced OT needs equal masses, so only the cost is perturbed there
    masses = () if _balanced(reg_m) or (reg_m == (1.0, math.inf) and sink) else (a, b)
    kw = dict(tol=0.0, max_iter=30) if grad == "unroll" else CONVERGED

    def fn(C, *ab):
        r = sinkhorn_uot(C, *ab, reg=0.2, reg_m=reg_m, sink_mass=sink, mask=mask, grad=grad, **kw)
        if grad == "envelope":
            return r.value
        return (r.plan * W).sum((-1, -2)), r.value, r.f, r.g, r.sink

    inputs = (C.requires_grad_(),) + tuple(t.requires_grad_() for t in masses)
    assert torch.autograd.gradcheck(fn, inputs, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("sink", [None, 0.25])
@pytest.mark.parametrize("reg_m", REG_MS + [0.1, 10.0], ids=str)
def test_implicit_matches_unroll_at_convergence(reg_m, sink):
    C, W, a, b, mask = _problem(1, B=3, N=8, K=4)
    grads = {}
    for grad in ("implicit", "unroll"):
        Cg = C.clone().requires_grad_()
        kw = dict(tol=1e-13, max_iter=100000)
        reg = 0.5 if reg_m == 10.0 else 0.2  # keeps the slowest case short
        r = sinkhorn_uot(Cg, reg=reg, reg_m=reg_m, sink_mass=sink, mask=mask, grad=grad, **kw)
        assert bool(r.converged.all())
        loss = (r.plan * W).sum() + (r.sink * W[..., 0]).sum()
        grads[grad] = torch.autograd.grad(loss, Cg)[0]
    rel = (grads["implicit"] - grads["unroll"]).norm() / grads["unroll"].norm()
    assert rel < 1e-6
    assert torch.all(grads["implicit"][~mask] == 0)


@pytest.mark.parametrize("reg_m", REG_MS, ids=str)
def test_value_gradient_is_plan(reg_m):
    C, W, a, b, mask = _problem(2)
    for grad in ("implicit", "envelope", "unroll"):
        Cg = C.clone().requires_grad_()
        r = sinkhorn_uot(Cg, reg=0.2, reg_m=reg_m, mask=mask, grad=grad, tol=1e-13, max_iter=10**5)
        (gv,) = torch.autograd.grad(r.value.sum(), Cg)
        torch.testing.assert_close(gv, r.plan.detach(), atol=1e-10, rtol=0)


def test_envelope_plan_is_detached_and_detach_has_no_graph():
    C, *_ = _problem(3)
    C.requires_grad_()
    r = sinkhorn_uot(C, grad="envelope")
    assert not r.plan.requires_grad and r.value.requires_grad
    r = sinkhorn_uot(C, grad="detach")
    assert not r.plan.requires_grad and not r.value.requires_grad


def test_implicit_memory_does_not_keep_iterations():
    # the graph of the implicit mode holds only the plan-sized saved tensors (no per-iteration
    # state): the saved tensors of the custom node are the same for 10 and 1000 iterations
    C, *_ = _problem(4, B=2, N=64, K=8)
    sizes = []
    for it in (10, 1000):
        r = sinkhorn_uot(C.clone().requires_grad_(), reg=0.01, max_iter=it, tol=0.0)
        node = r.plan.grad_fn
        while node is not None and "Implicit" not in type(node).__name__:
            node = node.next_functions[0][0]
        assert node is not None
        sizes.append(sum(t.numel() for t in node.saved_tensors))
    assert sizes[0] == sizes[1]


def test_partial_uot_gradients_flow_and_match_unroll():
    C, W, _, _, mask = _problem(5, B=2, N=6, K=3)
    grads = []
    for grad in ("implicit", "unroll"):
        Cg = C.clone().requires_grad_()
        r = partial_uot(Cg, 0.4, reg=0.1, reg_m_cols=1.0, mask=mask, grad=grad, **CONVERGED)
        grads.append(torch.autograd.grad((r.plan * W).sum(), Cg)[0])
    assert (grads[0] - grads[1]).norm() / grads[1].norm() < 1e-6


def test_half_precision_gradients():
    C, W, *_ = _problem(6)
    for dt in (torch.bfloat16, torch.float16):
        Cg = C.to(dt).requires_grad_()
        r = sinkhorn_uot(Cg, reg=0.1)
        assert r.plan.dtype == dt
        (r.plan.float() * W.float()).sum().backward()
        assert Cg.grad.dtype == dt and torch.isfinite(Cg.grad.float()).all()


@pytest.mark.parametrize("reg_m", [1.0, (math.inf, 1.0), (1.0, math.inf), (0.5, 2.0)], ids=str)
def test_implicit_potential_gradients_on_zero_mass_rows_and_columns(reg_m):
    # a valid row with a_i = 0 (column with b_j = 0) still has a potential f_i (g_j), fixed by a
    # half-step from the other side; its gradient must match unroll and finite differences
    g = torch.Generator().manual_seed(3)
    C = torch.rand(2, 5, 3, generator=g, dtype=torch.float64)
    a = torch.rand(2, 5, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(2, 3, generator=g, dtype=torch.float64) + 0.1
    a[:, 1] = 0.0
    b[:, 2] = 0.0
    if reg_m == (1.0, math.inf):  # hard columns: b must carry the mass of a
        b = b / b.sum(-1, keepdim=True) * a.sum(-1, keepdim=True)
    w1 = torch.randn(2, 5, generator=g, dtype=torch.float64)
    w2 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    grads = {}
    for grad in ("implicit", "unroll"):
        Cg, ag, bg = (t.clone().requires_grad_() for t in (C, a, b))
        r = sinkhorn_uot(Cg, ag, bg, reg=0.3, reg_m=reg_m, grad=grad, **CONVERGED)
        ((r.f * w1).sum() + (r.g * w2).sum()).backward()
        grads[grad] = (Cg.grad, ag.grad, bg.grad)
    assert grads["implicit"][0][:, 1].abs().max() > 0.1  # the row without mass is not cut off
    for got, want in zip(grads["implicit"], grads["unroll"]):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)

    def fn(Cv):
        r = sinkhorn_uot(Cv, a, b, reg=0.3, reg_m=reg_m, **CONVERGED)
        return r.f, r.g

    assert torch.autograd.gradcheck(fn, (C.clone().requires_grad_(),), atol=1e-6, rtol=1e-5)


def test_implicit_f_gradient_issue_reproducer():
    a = torch.rand(1, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a[:, 1] = 0
    c = torch.rand(1, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = []
    for grad in ("implicit", "unroll"):
        cg = c.clone().requires_grad_()
        sinkhorn_uot(cg, a, tol=1e-14, max_iter=10**5, grad=grad).f.sum().backward()
        grads.append(cg.grad)
    # f_1 = -t1 eps log sum_j b_j exp(-C_1j / eps) (+ g): its C-gradients sum to t1 = 1 / 1.1
    torch.testing.assert_close(grads[0][0, 1].sum(), torch.tensor(1 / 1.1, dtype=torch.float64))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-9, rtol=1e-7)
