"""``PrototypeUOTAlign(semantic=...)``: the SP²OT option of the Together layer."""

from __future__ import annotations

import pytest
import torch

from minmaxfuse._numerics import l2_normalize
from minmaxfuse.layers import PrototypeUOTAlign
from minmaxfuse.ot import semantic_uot

F64 = torch.float64


def _inputs(seed=0, B=2, ns=(6, 4), D=4):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(B, n, D, generator=g, dtype=F64) for n in ns]
    masks = [torch.ones(B, n, dtype=torch.bool) for n in ns]
    masks[0][1, -2:] = False
    return xs, masks


def _layer(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("tol", 1e-10)
    kw.setdefault("max_iter", 5000)
    return PrototypeUOTAlign(4, 3, **kw).double()


def test_default_is_off_and_unchanged():
    xs, masks = _inputs()
    base = _layer()
    assert base.semantic == 0.0
    off = _layer(semantic=0.0)
    on = _layer(semantic=0.5)
    o0, o1, o2 = base(xs, masks, rho=0.5), off(xs, masks, rho=0.5), on(xs, masks, rho=0.5)
    for p0, p1, p2 in zip(o0.plans, o1.plans, o2.plans):
        torch.testing.assert_close(p0, p1, rtol=0, atol=0)
        assert (p0 - p2).abs().max() > 1e-3  # the option changes the plan
    assert "semantic=0.5" in repr(on) and "semantic" not in repr(base)


@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("rho", [0.4, 1.0])
def test_plan_is_semantic_uot_of_the_layers_costs(joint, rho):
    xs, masks = _inputs(seed=1)
    layer = _layer(semantic=0.8, joint=joint)
    out = layer(xs, masks, rho=rho)
    with torch.no_grad():
        p = l2_normalize(layer.prototypes)
        hs = [l2_normalize(layer.projections[m](x)) for m, x in enumerate(xs)]
        costs = [
            -torch.log_softmax((h @ p.T / 0.5).masked_fill(~mk.unsqueeze(-1), 0.0), -1)
            for h, mk in zip(hs, masks)
        ]
    kw = dict(semantic=0.8, tol=1e-10, max_iter=5000)
    if joint:
        mk = torch.cat(masks, 1)
        ref = semantic_uot(torch.cat(costs, 1), torch.cat(hs, 1), rho, mask=mk, **kw)
        nq = ref.plan * mk.sum(-1).double()[:, None, None]
        refs = list(torch.split(nq, [x.shape[1] for x in xs], 1))
    else:
        refs = []
        for c, h, mk in zip(costs, hs, masks):
            r = semantic_uot(c, h, rho, mask=mk, **kw)
            refs.append(r.plan * mk.sum(-1).double()[:, None, None])
    for got, want, mk in zip(out.plans, refs, masks):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-11)
        assert torch.all(got[~mk] == 0)
    assert torch.isfinite(out.loss)


def test_gradients_follow_plan_grad():
    xs, masks = _inputs(seed=2)
    det = _layer(semantic=0.5)(xs, masks, rho=0.5)
    assert not det.plans[0].requires_grad
    layer = _layer(semantic=0.5, plan_grad="implicit")
    out = layer(xs, masks, rho=0.5)
    assert out.plans[0].requires_grad
    W = torch.randn_like(out.plans[0])
    (g,) = torch.autograd.grad((out.plans[0] * W).sum(), layer.projections[1].weight)
    # the token modality 1 reaches modality 0's plan only through the joint problem
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_missing_modality_with_semantic():
    xs, masks = _inputs(seed=3)
    masks[1][0] = False  # patient 0 has no second modality
    for joint in (True, False):
        out = _layer(semantic=0.3, allow_missing=True, joint=joint)(xs, masks, rho=0.5)
        assert torch.all(out.plans[1][0] == 0) and torch.isfinite(out.loss)
        assert out.losses[0, 1] == 0
