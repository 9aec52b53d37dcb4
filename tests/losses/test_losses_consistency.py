"""``sinkhorn_consistency_loss`` / ``SinkhornConsistency``: naive reference, properties, grads."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minmaxfuse.losses import SinkhornConsistency, sinkhorn_consistency_loss
from tests.ot.test_semantic import _naive_mm, _naive_partial

F64 = torch.float64


def _logits(seed=0, V=2, H=3, B=4, K=5, D=3):
    g = torch.Generator().manual_seed(seed)
    lg = 2.0 * torch.randn(V, H, B, K, generator=g, dtype=F64)
    fe = torch.randn(V, H, B, D, generator=g, dtype=F64)
    return lg, fe


def _naive_loss(lg, fe, mask, rho, lam):
    """Per-head loss by explicit loops over heads, view pairs and bags."""
    V, H, B, K = lg.shape
    idx = [n for n in range(B) if mask[n]]
    out = []
    for h in range(H):
        q = []
        for v in range(V):
            C = -torch.log_softmax(lg[v, h, idx], -1)
            if lam > 0:
                Q, _ = _naive_mm(C, fe[v, h, idx], rho, lam)
            else:
                Q, _ = _naive_partial(C, rho, 0.1, 1.0)
            q.append(Q / Q.sum(-1, keepdim=True))
        total, pairs = 0.0, 0
        for a in range(V):
            for b in range(V):
                if a == b:
                    continue
                ce = 0.0
                for i, n in enumerate(idx):
                    logp = torch.log_softmax(lg[a, h, n], -1)
                    ce += float(-(q[b][i] * logp).sum())
                total += ce / len(idx)
                pairs += 1
        out.append(total / pairs)
    return torch.tensor(out, dtype=F64)


@pytest.mark.parametrize("lam", [0.0, 0.5])
@pytest.mark.parametrize("rho", [0.5, 1.0])
@pytest.mark.parametrize("V", [2, 3])
def test_matches_naive_loop(lam, rho, V):
    lg, fe = _logits(seed=V, V=V)
    mask = torch.tensor([True, True, False, True])
    got = sinkhorn_consistency_loss(
        lg, features=fe, mask=mask, rho=rho, semantic=lam, reduction="none"
    )
    want = _naive_loss(lg, fe, mask, rho, lam)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    mean = sinkhorn_consistency_loss(lg, features=fe, mask=mask, rho=rho, semantic=lam)
    torch.testing.assert_close(mean, want.mean(), rtol=1e-5, atol=1e-6)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), V=st.integers(2, 3), rho=st.sampled_from([0.3, 1.0]))
def test_symmetric_under_view_permutation_and_head_equivariant(seed, V, rho):
    lg, fe = _logits(seed, V=V)
    g = torch.Generator().manual_seed(seed)
    pv, ph = torch.randperm(V, generator=g), torch.randperm(3, generator=g)
    kw = dict(rho=rho, semantic=0.2, reduction="none")
    ref = sinkhorn_consistency_loss(lg, features=fe, **kw)
    got = sinkhorn_consistency_loss(lg[pv][:, ph], features=fe[pv][:, ph], **kw)
    torch.testing.assert_close(got, ref[ph], rtol=1e-9, atol=1e-12)
    assert torch.isfinite(ref).all() and (ref >= 0).all()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), pad=st.integers(1, 3))
def test_masked_bags_are_ignored(seed, pad):
    lg, fe = _logits(seed)
    V, H, B, K = lg.shape
    nan = float("nan")
    lgp = torch.cat([lg, torch.full((V, H, pad, K), nan, dtype=F64)], 2)
    fep = torch.cat([fe, torch.full((V, H, pad, 3), nan, dtype=F64)], 2)
    mask = torch.cat([torch.ones(B, dtype=torch.bool), torch.zeros(pad, dtype=torch.bool)])
    kw = dict(rho=0.6, semantic=0.3, reduction="none")
    ref = sinkhorn_consistency_loss(lg, features=fe, **kw)
    got = sinkhorn_consistency_loss(lgp, features=fep, mask=mask, **kw)
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
    x = lgp.clone().requires_grad_()
    sinkhorn_consistency_loss(x, features=fep, mask=mask, **kw).sum().backward()
    assert torch.all(x.grad[:, :, B:] == 0) and torch.isfinite(x.grad).all()


def test_identical_views_confident_logits_reach_low_loss():
    # views that agree and are confident: pseudo-labels match the argmax, so the loss is small;
    # scrambling one view's prototypes makes it large
    B, K = 8, 8
    one = torch.full((1, 1, B, K), -10.0, dtype=F64)
    one[0, 0, torch.arange(B), torch.arange(B)] = 10.0
    agree = torch.cat([one, one])
    disagree = torch.cat([one, one.roll(1, dims=-1)])
    low = sinkhorn_consistency_loss(agree)
    high = sinkhorn_consistency_loss(disagree)
    assert low < 0.05 and high > 10.0


def test_gradcheck_detached_targets_match_constant_target_ce():
    lg, fe = _logits(seed=7, V=2, H=2, B=3, K=3)
    x = lg.clone().requires_grad_()
    loss = sinkhorn_consistency_loss(x, rho=0.7, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    # reference: the same CE with the pseudo-labels frozen
    with torch.no_grad():
        q = torch.stack(
            [
                torch.stack(
                    [
                        _naive_partial(-torch.log_softmax(lg[v, h], -1), 0.7, 0.1, 1.0)[0]
                        for h in (0, 1)
                    ]
                )
                for v in (0, 1)
            ]
        )
        q = q / q.sum(-1, keepdim=True)
    y = lg.clone().requires_grad_()
    ref = sum(
        -(q[b] * torch.log_softmax(y[a], -1)).sum(-1).mean(-1).sum() / 2
        for a, b in ((0, 1), (1, 0))
    )
    (gr,) = torch.autograd.grad(ref, y)
    # the pseudo-labels come from a solve to tol=1e-6
    torch.testing.assert_close(g, gr, rtol=1e-4, atol=1e-6)
    assert (g - gr).abs().max() < 1e-3 * gr.abs().max()


def test_gradcheck_through_targets():
    lg, _ = _logits(seed=8, V=2, H=1, B=3, K=2)
    x = lg.clone().requires_grad_()
    fn = lambda z: sinkhorn_consistency_loss(z, rho=0.6, target_grad="implicit")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), atol=1e-5, rtol=1e-4)


def test_module_matches_functional_and_rho_override():
    lg, fe = _logits(seed=9)
    mod = SinkhornConsistency(0.4, semantic=0.1, reduction="none")
    f = sinkhorn_consistency_loss(lg, features=fe, rho=0.4, semantic=0.1, reduction="none")
    torch.testing.assert_close(mod(lg, fe), f, rtol=0, atol=0)
    f2 = sinkhorn_consistency_loss(lg, features=fe, rho=0.9, semantic=0.1, reduction="none")
    torch.testing.assert_close(mod(lg, fe, rho=0.9), f2, rtol=0, atol=0)
    assert "rho=0.4" in repr(mod)
    assert not math.isclose(float(f.sum()), float(f2.sum()))


def test_float32_and_requires_features_for_semantic():
    lg, fe = _logits(seed=1)
    out = sinkhorn_consistency_loss(lg.float(), features=fe.float(), semantic=0.1)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    with pytest.raises(ValueError, match="`features`"):
        sinkhorn_consistency_loss(lg, semantic=0.1)
