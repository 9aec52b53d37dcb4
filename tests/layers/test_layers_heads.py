"""``PrototypeUOTAlign(heads=...)``: multi-head prototypes, consistency loss, primary selection."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minmaxfuse._numerics import l2_normalize
from minmaxfuse.layers import PrototypeUOTAlign
from minmaxfuse.layers._prototype_align import _token_views
from minmaxfuse.losses import sinkhorn_consistency_loss

F64 = torch.float64


def _inputs(seed=0, B=5, ns=(12, 6), D=4):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(B, n, D, generator=g, dtype=F64) for n in ns]
    masks = [torch.ones(B, n, dtype=torch.bool) for n in ns]
    masks[0][1, -3:] = False
    return xs, masks


def _layer(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("tol", 1e-9)
    kw.setdefault("max_iter", 3000)
    return PrototypeUOTAlign(4, 3, **kw).double()


def test_default_single_head_adds_nothing():
    one, five = _layer(), _layer(heads=5)
    assert one.heads == 1 and one.head_projections is None
    keys = set(one.state_dict())
    assert not any(k.startswith(("primary", "head_projections")) for k in keys)
    assert keys < set(five.state_dict()) and "primary" in five.state_dict()
    # the extra heads are created last: head 0 and the bank start identical
    for k in keys:
        torch.testing.assert_close(one.state_dict()[k], five.state_dict()[k], rtol=0, atol=0)
    xs, masks = _inputs()
    o1, o5 = one(xs, masks, rho=0.5), five(xs, masks, rho=0.5)
    torch.testing.assert_close(o1.loss, o5.loss, rtol=0, atol=0)
    assert "heads=5" in repr(five) and "heads" not in repr(one)


def test_primary_head_drives_the_forward():
    layer = _layer(heads=3)
    xs, masks = _inputs(seed=1)
    before = layer(xs, masks, rho=0.5)
    new = layer.update_primary(torch.tensor([[3.0, 2.0, 1.0], [0.5, 2.0, 1.0]], dtype=F64))
    assert new.tolist() == [2, 0] and layer.primary.tolist() == [2, 0]
    after = layer(xs, masks, rho=0.5)
    with torch.no_grad():
        h = l2_normalize(layer.head_projections[0][1](xs[0]))
        lg = (h @ l2_normalize(layer.prototypes).T / 0.5).masked_fill(~masks[0][..., None], 0)
    torch.testing.assert_close(after.logits[0], lg, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(after.logits[1], before.logits[1], rtol=0, atol=0)
    assert (after.logits[0] - before.logits[0]).abs().max() > 1e-3
    # the selection survives a state-dict round trip
    other = _layer(seed=5, heads=3)
    other.load_state_dict(layer.state_dict())
    assert other.primary.tolist() == [2, 0]


def test_semantic_similarity_uses_head_zero():
    layer = _layer(heads=2, semantic=0.5)
    xs, masks = _inputs(seed=2)
    layer.update_primary(torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64))
    out = layer(xs, masks, rho=0.5)
    # recompute the joint SP²OT plan with head-1 costs and head-0 similarity
    from minmaxfuse.ot import semantic_uot

    with torch.no_grad():
        p = l2_normalize(layer.prototypes)
        lg = [
            (l2_normalize(layer.head_projections[m][0](x)) @ p.T / 0.5).masked_fill(
                ~mk[..., None], 0
            )
            for m, (x, mk) in enumerate(zip(xs, masks))
        ]
        f0 = [l2_normalize(layer.projections[m](x)) for m, x in enumerate(xs)]
        mk = torch.cat(masks, 1)
        cost = torch.cat([-torch.log_softmax(v, -1) for v in lg], 1)
        ref = semantic_uot(
            cost, torch.cat(f0, 1), 0.5, semantic=0.5, mask=mk, tol=1e-9, max_iter=3000
        )
        nq = ref.plan * mk.sum(-1).double()[:, None, None]
    torch.testing.assert_close(torch.cat(out.plans, 1), nq, rtol=1e-8, atol=1e-11)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 30),
    keep=st.sampled_from([0.5, 0.8, 1.0]),
    swap=st.sampled_from([0.0, 0.2, 0.5]),
    min_keep=st.integers(1, 5),
)
def test_token_views(seed, n, keep, swap, min_keep):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(3, n + 2, dtype=torch.bool)
    lengths = torch.randint(1, n + 1, (3,), generator=g)
    for i, ln in enumerate(lengths.tolist()):
        mask[i, torch.randperm(n + 2, generator=g)[:ln]] = True
    v1, v2 = _token_views(mask, keep, swap, min_keep, torch.Generator().manual_seed(seed))
    for i, ln in enumerate(lengths.tolist()):
        k = min(ln, max(min_keep, round(keep * ln)))
        s = min(round(swap * k), ln - k)
        assert int(v1[i].sum()) == k and int(v2[i].sum()) == k
        assert not (v1[i] & ~mask[i]).any() and not (v2[i] & ~mask[i]).any()
        assert int((v1[i] & v2[i]).sum()) == k - s


def test_consistency_loss_matches_its_parts_and_trains_every_head():
    layer = _layer(heads=3)
    xs, masks = _inputs(seed=3)
    g = torch.Generator().manual_seed(0)
    sk = layer.consistency_loss(xs, masks, rho=0.6, generator=g)
    assert sk.shape == (2, 3) and torch.isfinite(sk).all() and (sk > 0).all()
    # the same draws, rebuilt by hand for modality 1 (all bags valid)
    g = torch.Generator().manual_seed(0)
    torch.randperm(5, generator=g)  # modality 0's patient draw
    v = _token_views(masks[0][:4], 0.8, 0.2, 4, g)  # modality 0's views (only to advance g)
    del v
    pick = torch.randperm(5, generator=g)[:4]
    x, mk = xs[1][pick], masks[1][pick]
    views = _token_views(mk, 0.8, 0.2, 4, g)
    p = l2_normalize(layer.prototypes)
    lgs = []
    for vm in views:
        per_head = []
        for h in range(3):
            proj = layer.projections[1] if h == 0 else layer.head_projections[1][h - 1]
            lg = l2_normalize(proj(x)) @ p.T / 0.5
            per_head.append((lg * vm[..., None]).sum(1) / vm.sum(1, keepdim=True))
        lgs.append(torch.stack(per_head))
    ref = sinkhorn_consistency_loss(torch.stack(lgs), rho=0.6, reduction="none")
    torch.testing.assert_close(sk[1], ref, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(
        sk.sum(),
        [layer.prototypes, layer.projections[0].weight]
        + [hp.weight for hps in layer.head_projections for hp in hps],
    )
    assert all(torch.isfinite(gr).all() and gr.abs().sum() > 0 for gr in grads)


def test_consistency_loss_missing_modality_and_semantic():
    layer = _layer(heads=2, allow_missing=True)
    xs, masks = _inputs(seed=4)
    masks[1][:] = False  # nobody has modality 1
    sk = layer.consistency_loss(xs, masks, semantic=0.1, generator=torch.Generator().manual_seed(1))
    assert sk.shape == (2, 2) and torch.all(sk[1] == 0) and (sk[0] > 0).all()
    assert sk.requires_grad


@pytest.mark.parametrize(
    ("kw", "arg"),
    [
        (dict(max_bags=0), "max_bags"),
        (dict(keep=0.0), "keep"),
        (dict(swap=1.5), "swap"),
        (dict(min_keep=0), "min_keep"),
        (dict(rho=0.0), "rho"),
        (dict(semantic=-1.0), "semantic"),
    ],
)
def test_consistency_loss_bad_arguments(kw, arg):
    layer = _layer(heads=2)
    xs, masks = _inputs()
    with pytest.raises(ValueError, match=f"`{arg}`"):
        layer.consistency_loss(xs, masks, **kw)


def test_update_primary_bad_input():
    layer = _layer(heads=3)
    with pytest.raises(ValueError, match="`losses`"):
        layer.update_primary(torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="`losses`"):
        layer.update_primary(torch.full((2, 3), float("nan"), dtype=F64))
    with pytest.raises(TypeError, match="`losses`"):
        layer.update_primary(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="`heads`"):
        PrototypeUOTAlign(4, 3, heads=0)
