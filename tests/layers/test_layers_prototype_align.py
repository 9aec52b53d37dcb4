import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minmaxfuse.layers import PrototypeUOTAlign, prototype_aggregate
from minmaxfuse.losses import mass_ramp

TOL = dict(rtol=1e-6, atol=1e-7)


@st.composite
def setups(draw, max_a=3):
    a = draw(st.integers(1, max_a))
    b = draw(st.integers(1, 3))
    ns = draw(st.lists(st.integers(1, 6), min_size=a, max_size=a))
    k = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 10_000))
    joint = draw(st.booleans())
    rho = draw(st.sampled_from([1.0, 0.5]))
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(b, n, 4, generator=g, dtype=torch.float64) for n in ns]
    masks = []
    for n in ns:
        mk = torch.rand(b, n, generator=g) < 0.7
        mk[:, 0] = True
        masks.append(mk)
    return a, k, joint, rho, xs, masks, seed


def _layer(a, k, joint, seed, **kw):
    torch.manual_seed(seed)
    kw.setdefault("tol", 1e-9)
    kw.setdefault("max_iter", 3000)
    return PrototypeUOTAlign(4, k, num_modalities=a, joint=joint, **kw).double()


def _close(out1, out2, masks=None):
    for t1, t2 in zip(out1.prototype_tokens, out2.prototype_tokens):
        torch.testing.assert_close(t1, t2, **TOL)
    torch.testing.assert_close(out1.loss, out2.loss, **TOL)
    torch.testing.assert_close(out1.losses, out2.losses, **TOL)


@given(setups())
def test_shapes_mass_and_padding(setup):
    a, k, joint, rho, xs, masks, seed = setup
    layer = _layer(a, k, joint, seed)
    out = layer(xs, masks, rho=rho)
    b = xs[0].shape[0]
    assert [t.shape for t in out.prototype_tokens] == [(b, k, 4)] * a
    assert [p.shape for p in out.plans] == [x.shape[:2] + (k,) for x in xs]
    assert [lg.shape for lg in out.logits] == [x.shape[:2] + (k,) for x in xs]
    assert out.loss.shape == () and out.losses.shape == (b, a) and out.present.all()
    assert all(t.dtype == torch.float64 for t in out.prototype_tokens)
    assert torch.isfinite(out.loss) and (out.losses >= 0).all() and out.rho == rho
    # plans: zero on padding, rows in [0, 1], transported mass rho per problem
    rows = [p.sum(-1) for p in out.plans]
    for r, mk in zip(rows, masks):
        assert (r[~mk] == 0).all() and (r <= 1 + 1e-6).all() and (r >= 0).all()
    if joint:
        n_tot = sum(mk.sum(1) for mk in masks).double()
        moved = sum(r.sum(1) for r in rows) / n_tot
        torch.testing.assert_close(moved, torch.full_like(moved, rho), rtol=1e-4, atol=1e-4)
    else:
        for r, mk in zip(rows, masks):
            moved = r.sum(1) / mk.sum(1)
            torch.testing.assert_close(moved, torch.full_like(moved, rho), rtol=1e-4, atol=1e-4)
    # padded tokens with junk values change nothing; extra padding neither
    junk = [x.masked_fill(~mk.unsqueeze(-1), 1e3) for x, mk in zip(xs, masks)]
    _close(layer(junk, masks, rho=rho), out)
    wider = [torch.cat([x, torch.randn_like(x[:, :2])], 1) for x in xs]
    wmask = [torch.cat([mk, torch.zeros_like(mk[:, :2])], 1) for mk in masks]
    _close(layer(wider, wmask, rho=rho), out)


@given(setups())
def test_permutation_and_batch_loop(setup):
    a, k, joint, rho, xs, masks, seed = setup
    layer = _layer(a, k, joint, seed)
    out = layer(xs, masks, rho=rho)
    g = torch.Generator().manual_seed(seed + 1)
    perms = [torch.randperm(x.shape[1], generator=g) for x in xs]
    out_p = layer(
        [x[:, p] for x, p in zip(xs, perms)], [mk[:, p] for mk, p in zip(masks, perms)], rho=rho
    )
    _close(out_p, out)
    for q, qp, p in zip(out.plans, out_p.plans, perms):
        torch.testing.assert_close(qp, q[:, p], rtol=1e-5, atol=1e-6)
    b = xs[0].shape[0]
    loop = [
        layer([x[i : i + 1] for x in xs], [mk[i : i + 1] for mk in masks], rho=rho)
        for i in range(b)
    ]
    torch.testing.assert_close(torch.cat([o.losses for o in loop]), out.losses, **TOL)
    for m in range(a):
        torch.testing.assert_close(
            torch.cat([o.prototype_tokens[m] for o in loop]), out.prototype_tokens[m], **TOL
        )


@pytest.mark.parametrize("plan_grad", ["detach", "implicit", "unroll"])
@pytest.mark.parametrize("joint", [True, False])
def test_gradients_reach_prototypes_projections_inputs(plan_grad, joint):
    torch.manual_seed(0)
    layer = PrototypeUOTAlign(6, 5, joint=joint, plan_grad=plan_grad)
    xs = [torch.randn(3, 8, 6, requires_grad=True), torch.randn(3, 4, 6, requires_grad=True)]
    out = layer(xs, rho=0.6)
    (out.loss + sum(t.pow(2).mean() for t in out.prototype_tokens)).backward()
    assert layer.prototypes.grad is not None and layer.prototypes.grad.abs().sum() > 0
    for proj in layer.projections:
        assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    for x in xs:
        assert x.grad is not None and x.grad.abs().sum() > 0
    if plan_grad == "detach":
        assert not any(p.requires_grad for p in out.plans)
    else:
        assert all(p.requires_grad for p in out.plans)


def test_gradcheck_differentiable_plan():
    torch.manual_seed(0)
    layer = PrototypeUOTAlign(
        3, 2, plan_grad="implicit", tol=1e-13, max_iter=20_000, temperature=1.0
    ).double()
    xs = (
        torch.randn(1, 3, 3, dtype=torch.float64, requires_grad=True),
        torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True),
    )

    def fn(x, y):
        out = layer([x, y], rho=0.7)
        return out.loss, out.prototype_tokens[0], out.plans[1]

    assert torch.autograd.gradcheck(fn, xs, atol=1e-5, rtol=1e-4)


def test_gradcheck_aggregate_with_fixed_plan():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    plan = torch.rand(2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]).bool()
    for normalize in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, b, c, nz=normalize: prototype_aggregate(
                a, b, c, mask=mask, mix=0.3, normalize=nz
            ),
            (x, logits, plan),
        )


def test_aggregate_reference_and_fallback():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 2, generator=g, dtype=torch.float64)
    logits = torch.randn(1, 3, 4, generator=g, dtype=torch.float64)
    plan = torch.rand(1, 3, 4, generator=g, dtype=torch.float64)
    plan[0, 1] = 0.0  # a token sent entirely to the sink
    beta = 0.5
    w = (1 - beta) * torch.softmax(logits, -1) + beta * plan
    w = w / w.sum(-1, keepdim=True)
    want = torch.einsum("bnk,bnd->bkd", w, x)
    torch.testing.assert_close(prototype_aggregate(x, logits, plan, mix=beta), want)
    # mix = 1 and a zero plan row: the row falls back to uniform weights
    got = prototype_aggregate(x, logits, plan, mix=1.0)
    w1 = plan / plan.sum(-1, keepdim=True).clamp_min(1e-300)
    w1[0, 1] = 0.25
    torch.testing.assert_close(got, torch.einsum("bnk,bnd->bkd", w1, x))
    # mean aggregation is a convex combination of the tokens
    mean = prototype_aggregate(x, logits, plan, normalize=True)
    assert (mean <= x.max(1).values.unsqueeze(1) + 1e-12).all()
    assert (mean >= x.min(1).values.unsqueeze(1) - 1e-12).all()


def test_together_loss_is_soft_ce_against_renormalised_plan():
    torch.manual_seed(0)
    layer = PrototypeUOTAlign(4, 3, modality_weights=(0.25, 0.75))
    xs = [torch.randn(2, 5, 4), torch.randn(2, 3, 4)]
    out = layer(xs, rho=0.4)
    for m in range(2):
        q = out.plans[m]
        keep = q.sum(-1, keepdim=True) >= 1e-6
        tgt = torch.where(keep, q / q.sum(-1, keepdim=True).clamp_min(1e-30), 0.0)
        ce = -(tgt * torch.log_softmax(out.logits[m], -1)).sum(-1).mean(1)
        torch.testing.assert_close(out.losses[:, m], ce)
    torch.testing.assert_close(out.loss, (out.losses * torch.tensor([0.25, 0.75])).sum(1).mean())


def test_joint_couples_modalities_and_single_modality_joint_equals_separate():
    torch.manual_seed(0)
    x = [torch.randn(2, 6, 4, dtype=torch.float64)]
    j = _layer(1, 3, True, 0)
    s = _layer(1, 3, False, 0)
    _close(j(x, rho=0.5), s(x, rho=0.5))
    xs = [torch.randn(2, 6, 4, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)]
    j2, s2 = _layer(2, 3, True, 0), _layer(2, 3, False, 0)
    # joint: the other modality's tokens change this modality's plan
    base = j2(xs, rho=0.5).plans[0]
    moved = j2([xs[0], xs[1] * 3 + 1], rho=0.5).plans[0]
    assert not torch.allclose(base, moved)
    sep = s2(xs, rho=0.5).plans[0]
    torch.testing.assert_close(s2([xs[0], xs[1] * 3 + 1], rho=0.5).plans[0], sep)


def test_rho_defaults_and_schedule():
    layer = PrototypeUOTAlign(4, 3, mass=0.3)
    xs = [torch.randn(2, 5, 4), torch.randn(2, 3, 4)]
    assert layer(xs).rho == 0.3
    out = layer(xs, rho=mass_ramp(0.0))
    assert math.isclose(out.rho, 0.1 + 0.9 * math.exp(-5))
    total = sum(p.sum((1, 2)) for p in out.plans) / 8
    torch.testing.assert_close(total, torch.full((2,), out.rho), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("missing", ["borrow", "learned"])
@pytest.mark.parametrize("joint", [True, False])
def test_missing_modalities(missing, joint):
    torch.manual_seed(0)
    layer = PrototypeUOTAlign(4, 3, joint=joint, allow_missing=True, missing=missing)
    xs = [torch.randn(3, 5, 4), torch.randn(3, 2, 4)]
    masks = [torch.ones(3, 5, dtype=torch.bool), torch.ones(3, 2, dtype=torch.bool)]
    masks[1][1] = False  # patient 1 lacks modality 1
    out = layer(xs, masks)
    assert out.present.tolist() == [[True, True], [True, False], [True, True]]
    assert out.losses[1, 1] == 0 and (out.plans[1][1] == 0).all()
    if missing == "borrow":
        torch.testing.assert_close(out.prototype_tokens[1][1], out.prototype_tokens[0][1])
    else:
        torch.testing.assert_close(out.prototype_tokens[1][1], layer.missing_tokens[1])
    # the patient with both modalities is unaffected by the other patient's missing bag
    full = layer([x[[0, 2]] for x in xs])
    torch.testing.assert_close(full.losses, out.losses[[0, 2]], rtol=1e-5, atol=1e-6)
    out.loss.backward()
    assert torch.isfinite(layer.prototypes.grad).all()
    # without the opt-in an empty bag is an error
    strict = PrototypeUOTAlign(4, 3)
    with pytest.raises(ValueError, match=r"`tokens\[1\]` must have at least one valid entry"):
        strict(xs, masks)
    masks[0][1] = False
    with pytest.raises(ValueError, match="at least one modality with a valid token per patient"):
        layer(xs, masks)


def test_three_modalities_float32_and_module_conventions():
    layer = PrototypeUOTAlign(4, 6, num_modalities=3, aggregation="mean")
    xs = [torch.randn(2, n, 4) for n in (7, 3, 1)]
    out = layer(xs, [None, None, None])
    assert out.loss.dtype == torch.float32 and len(out.prototype_tokens) == 3
    assert "num_prototypes=6" in repr(layer)
    other = PrototypeUOTAlign(4, 6, num_modalities=3, aggregation="mean")
    other.load_state_dict(layer.state_dict())
    torch.testing.assert_close(other(xs).loss, out.loss)


X = [torch.randn(2, 5, 4), torch.randn(2, 3, 4)]
M = [torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)]


@pytest.mark.parametrize(
    "tokens, masks, kwargs, exc, match",
    [
        (X[0], None, {}, TypeError, "`tokens` must be a sequence of 2"),
        (X[:1], None, {}, ValueError, r"one tensor per modality \(num_modalities = 2\); got 1"),
        (
            [X[0], torch.randn(2, 3)],
            None,
            {},
            ValueError,
            r"`tokens\[1\]` must have shape \(B, N, D\)",
        ),
        ([X[0], torch.randn(2, 3, 5)], None, {}, ValueError, r"`tokens\[1\]` must have D = 4"),
        ([X[0], torch.randn(3, 3, 4)], None, {}, ValueError, r"`tokens\[1\]` must have B = 2"),
        ([X[0], torch.randn(2, 0, 4)], None, {}, ValueError, r"N >= 1"),
        (X, [M[0], M[1].float()], {}, TypeError, r"`masks\[1\]` must be a bool tensor"),
        (X, [M[0], M[0]], {}, ValueError, r"`masks\[1\]` must have shape \(2, 3\); got \(2, 5\)"),
        (X, M[:1], {}, ValueError, "`masks` must be a sequence of 2"),
        (
            [X[0], torch.full((2, 3, 4), math.nan)],
            M,
            {},
            ValueError,
            r"`tokens\[1\]` must be finite",
        ),
        (X, [M[0], torch.zeros(2, 3, dtype=torch.bool)], {}, ValueError, "empty bags"),
        (X, M, {"rho": 0.0}, ValueError, r"`rho` must be in \(0.0, 1.0\]"),
        (X, M, {"rho": 1.5}, ValueError, r"`rho` must be in"),
        ([X[0].long(), X[1]], M, {}, TypeError, "floating-point"),
    ],
)
def test_forward_errors(tokens, masks, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        PrototypeUOTAlign(4, 3)(tokens, masks, **kwargs)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"temperature": 0.0}, ValueError, "`temperature` must be finite and > 0"),
        ({"reg": -1.0}, ValueError, "`reg`"),
        ({"mass": 0.0}, ValueError, r"`mass` must be in \(0.0, 1.0\]"),
        ({"mix": 1.5}, ValueError, r"`mix` must be in \[0.0, 1.0\]"),
        ({"plan_grad": "envelope"}, ValueError, "`plan_grad` must be one of"),
        ({"aggregation": "max"}, ValueError, "`aggregation` must be one of"),
        ({"modality_weights": (1.0,)}, ValueError, r"one entry per modality \(A = 2\); got 1"),
        ({"modality_weights": (1.0, -1.0)}, ValueError, "finite and >= 0"),
        ({"joint": "yes"}, TypeError, "`joint` must be a bool"),
        ({"num_prototypes": 0}, ValueError, "`num_prototypes` must be >= 1"),
        ({"missing": "zero"}, ValueError, "`missing` must be one of"),
    ],
)
def test_init_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        PrototypeUOTAlign(4, **{"num_prototypes": 3, **kwargs})


def test_balanced_columns_with_infinite_reg_m():
    layer = PrototypeUOTAlign(4, 3, reg_m=math.inf, tol=1e-9, max_iter=5000).double()
    out = layer(
        [torch.randn(2, 6, 4, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)]
    )
    cols = out.plans[0].sum(1) + out.plans[1].sum(1)  # (B, K), in units of tokens
    torch.testing.assert_close(cols, torch.full_like(cols, 9 / 3), rtol=1e-5, atol=1e-5)


def test_aggregate_value_errors():
    x, logits, plan = torch.randn(1, 3, 2), torch.randn(1, 3, 4), torch.rand(1, 3, 4)
    mask = torch.tensor([[True, True, False]])
    bad_x = x.clone()
    bad_x[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="`x` must be finite; got NaN or Inf in valid"):
        prototype_aggregate(bad_x, logits, plan, mask=mask)
    bad_plan = plan.clone()
    bad_plan[0, 1, 2] = -1.0
    with pytest.raises(ValueError, match="`plan` must be nonnegative"):
        prototype_aggregate(x, logits, bad_plan, mask=mask)
    bad_x[0, 0, 0] = 0.0
    bad_x[0, 2, 0] = math.nan  # padded row: ignored
    assert torch.isfinite(prototype_aggregate(bad_x, logits, plan, mask=mask)).all()


def test_autocast_loss_in_float32_and_close_to_full_precision():
    torch.manual_seed(0)
    layer = PrototypeUOTAlign(8, 4)
    xs = [torch.randn(2, 6, 8), torch.randn(2, 3, 8)]
    ref = layer(xs, rho=0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(xs, rho=0.5)
    assert out.loss.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in out.prototype_tokens)
    assert all(lg.dtype == torch.float32 for lg in out.logits)
    torch.testing.assert_close(out.loss, ref.loss, rtol=5e-2, atol=5e-2)
