import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minmaxfuse.losses import DistinctContrastive, distinct_contrastive_loss


@st.composite
def problems(draw, max_b=4, max_a=3, max_d=4):
    b = draw(st.integers(1, max_b))
    a = draw(st.integers(2, max_a))
    d = draw(st.integers(2, max_d))
    seed = draw(st.integers(0, 10_000))
    g = torch.Generator().manual_seed(seed)
    pooled = torch.randn(b, a, d, generator=g, dtype=torch.float64)
    anchors = torch.randn(a, d, generator=g, dtype=torch.float64)
    mask = torch.rand(b, a, generator=g) < 0.8
    return pooled, anchors, mask


def _unit(v):
    return v / v.norm()


def _reference(pooled, anchors, mask, tau, negatives, symmetric):
    b, a, _ = pooled.shape
    out = []
    for n in range(b):
        total = 0.0
        for m in range(a):
            if not mask[n, m]:
                continue
            z = _unit(pooled[n, m])
            sims = [float(z @ _unit(anchors[k])) / tau for k in range(a)]
            if negatives == "batch":
                sims += [
                    float(z @ _unit(pooled[q, r])) / tau
                    for q in range(b)
                    for r in range(a)
                    if r != m and mask[q, r]
                ]
            fwd = -sims[m] + math.log(sum(math.exp(s) for s in sims))
            if symmetric:
                an = _unit(anchors[m])
                rs = {r: float(an @ _unit(pooled[n, r])) / tau for r in range(a) if mask[n, r]}
                rev = -rs[m] + math.log(sum(math.exp(s) for s in rs.values()))
                fwd = 0.5 * (fwd + rev)
            total += fwd
        out.append(total)
    return torch.tensor(out, dtype=pooled.dtype)


@pytest.mark.parametrize("negatives", ["anchors", "batch"])
@pytest.mark.parametrize("symmetric", [False, True])
@given(problems(), st.sampled_from([0.1, 0.5, 2.0]))
def test_matches_reference_loop(negatives, symmetric, prob, tau):
    pooled, anchors, mask = prob
    got = distinct_contrastive_loss(
        pooled,
        anchors,
        mask=mask,
        temperature=tau,
        negatives=negatives,
        symmetric=symmetric,
        reduction="none",
    )
    want = _reference(pooled, anchors, mask, tau, negatives, symmetric)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    assert (got >= 0).all() and torch.isfinite(got).all()
    mean = distinct_contrastive_loss(
        pooled, anchors, mask=mask, temperature=tau, negatives=negatives, symmetric=symmetric
    )
    torch.testing.assert_close(mean, got.sum() / mask.any(1).sum().clamp_min(1))


@pytest.mark.parametrize("negatives", ["anchors", "batch"])
@given(problems())
def test_modality_permutation_symmetry_and_masked_values(negatives, prob):
    pooled, anchors, mask = prob
    a = pooled.shape[1]
    base = distinct_contrastive_loss(
        pooled, anchors, mask=mask, negatives=negatives, reduction="none"
    )
    perm = torch.randperm(a, generator=torch.Generator().manual_seed(a))
    permuted = distinct_contrastive_loss(
        pooled[:, perm], anchors[perm], mask=mask[:, perm], negatives=negatives, reduction="none"
    )
    torch.testing.assert_close(permuted, base)
    # values at missing modalities change nothing
    junk = pooled.masked_fill(~mask.unsqueeze(-1), 1e3)
    torch.testing.assert_close(
        distinct_contrastive_loss(junk, anchors, mask=mask, negatives=negatives, reduction="none"),
        base,
    )
    # scale invariance (vectors and anchors are normalised)
    torch.testing.assert_close(
        distinct_contrastive_loss(
            3 * pooled, 0.5 * anchors, mask=mask, negatives=negatives, reduction="none"
        ),
        base,
    )


@given(problems())
def test_anchor_negatives_batch_equals_loop(prob):
    pooled, anchors, mask = prob
    full = distinct_contrastive_loss(pooled, anchors, mask=mask, reduction="none")
    loop = torch.cat(
        [
            distinct_contrastive_loss(
                pooled[i : i + 1], anchors, mask=mask[i : i + 1], reduction="none"
            )
            for i in range(pooled.shape[0])
        ]
    )
    torch.testing.assert_close(full, loop)


def test_loss_is_small_on_own_anchor_and_large_on_other():
    anchors = torch.eye(2, 3)
    good = distinct_contrastive_loss(anchors.expand(4, 2, 3), anchors)
    bad = distinct_contrastive_loss(anchors.flip(0).expand(4, 2, 3), anchors)
    assert float(good) < 1e-3 < 10 < float(bad)


@pytest.mark.parametrize("negatives", ["anchors", "batch"])
def test_degenerate_single_modality_is_connected_zero(negatives):
    pooled = torch.randn(3, 1, 4, requires_grad=True)
    anchors = torch.randn(1, 4, requires_grad=True)
    loss = distinct_contrastive_loss(pooled, anchors, negatives=negatives)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert pooled.grad is not None and anchors.grad is not None
    assert (pooled.grad == 0).all()


def test_all_missing_is_zero():
    pooled = torch.randn(2, 2, 4, requires_grad=True)
    loss = distinct_contrastive_loss(
        pooled, torch.randn(2, 4), mask=torch.zeros(2, 2, dtype=torch.bool)
    )
    assert loss.item() == 0.0
    loss.backward()


@pytest.mark.parametrize("negatives", ["anchors", "batch"])
def test_module_gradients_reach_everything(negatives):
    loss_fn = DistinctContrastive(0.1, dim=6, negatives=negatives, symmetric=True)
    pooled = torch.randn(5, 3, 6, requires_grad=True)
    anchors = torch.randn(3, 6, requires_grad=True)
    loss = loss_fn(pooled, anchors)
    assert loss.shape == () and loss.item() >= 0
    loss.backward()
    for t in [pooled, anchors, *loss_fn.parameters()]:
        assert t.grad is not None and t.grad.abs().sum() > 0
    assert "negatives=" in repr(loss_fn)
    sd = loss_fn.state_dict()
    other = DistinctContrastive(0.1, dim=6, negatives=negatives, symmetric=True)
    other.load_state_dict(sd)
    torch.testing.assert_close(other(pooled, anchors), loss)


def test_module_without_head_is_the_function():
    pooled, anchors = torch.randn(4, 2, 3), torch.randn(2, 3)
    assert len(list(DistinctContrastive().parameters())) == 0
    torch.testing.assert_close(
        DistinctContrastive(0.2, reduction="sum")(pooled, anchors),
        distinct_contrastive_loss(pooled, anchors, temperature=0.2, reduction="sum"),
    )


@pytest.mark.parametrize("negatives", ["anchors", "batch"])
def test_gradcheck(negatives):
    g = torch.Generator().manual_seed(0)
    pooled = torch.randn(3, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    anchors = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    assert torch.autograd.gradcheck(
        lambda p, a: distinct_contrastive_loss(
            p, a, mask=mask, temperature=0.5, negatives=negatives, symmetric=True, reduction="none"
        ),
        (pooled, anchors),
    )


def test_float32_dtype_preserved():
    loss = distinct_contrastive_loss(torch.randn(2, 2, 3), torch.randn(2, 3), reduction="none")
    assert loss.dtype == torch.float32 and loss.shape == (2,)


P, A = torch.randn(2, 3, 4), torch.randn(3, 4)


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (
            (torch.randn(2, 4), A),
            {},
            ValueError,
            r"`pooled` must have shape \(B, A, D\); got \(2, 4\)",
        ),
        ((P, torch.randn(2, 4)), {}, ValueError, r"`anchors` must have shape \(A, D\) = \(3, 4\)"),
        ((P, torch.randn(3, 5)), {}, ValueError, r"got \(3, 5\)"),
        ((P, A), {"mask": torch.ones(2, 3)}, TypeError, "`mask` must be a bool tensor"),
        (
            (P, A),
            {"mask": torch.ones(2, 2, dtype=torch.bool)},
            ValueError,
            r"`mask` must have shape",
        ),
        (
            (P.masked_fill(torch.ones(2, 3, 4, dtype=torch.bool), math.nan), A),
            {},
            ValueError,
            "finite",
        ),
        ((P, A), {"temperature": 0.0}, ValueError, "`temperature` must be finite and > 0"),
        ((P, A), {"negatives": "others"}, ValueError, "`negatives` must be one of"),
        ((P, A), {"reduction": "max"}, ValueError, "`reduction` must be one of"),
        ((P.long(), A), {}, TypeError, "`pooled` must be a floating-point tensor"),
    ],
)
def test_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        distinct_contrastive_loss(*args, **kwargs)


def test_module_errors():
    with pytest.raises(ValueError, match="`temperature`"):
        DistinctContrastive(-1.0)
    with pytest.raises(TypeError, match="`dim` must be an int"):
        DistinctContrastive(dim=2.5)
    with pytest.raises(ValueError, match="`pooled` must have D = 4 features"):
        DistinctContrastive(dim=4)(torch.randn(2, 2, 3), torch.randn(2, 3))


@pytest.mark.parametrize("negatives", ["anchors", "batch"])
def test_nan_in_missing_modality_gets_zero_gradient(negatives):
    pooled = torch.randn(3, 2, 4)
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    pooled[1, 1] = math.nan
    pooled.requires_grad_(True)
    loss = distinct_contrastive_loss(
        pooled, torch.randn(2, 4), mask=mask, negatives=negatives, symmetric=True
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pooled.grad).all()
    assert (pooled.grad[1, 1] == 0).all()


def test_autocast_computes_in_float32():
    pooled, anchors = torch.randn(4, 2, 8), torch.randn(2, 8)
    ref = distinct_contrastive_loss(pooled, anchors)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = DistinctContrastive(0.1, dim=8)(pooled, anchors)
        plain = distinct_contrastive_loss(pooled.bfloat16(), anchors.bfloat16())
    assert loss.dtype == torch.float32 and plain.dtype == torch.float32
    torch.testing.assert_close(plain, ref, rtol=2e-2, atol=2e-2)
