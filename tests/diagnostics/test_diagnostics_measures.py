import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minmaxfuse.diagnostics import (
    alignment,
    effective_rank,
    modality_gap,
    prototype_usage_entropy,
    token_transport_mass,
    uniformity,
)

seeds = st.integers(0, 10_000)


@given(seeds, st.integers(2, 8), st.integers(1, 5))
def test_effective_rank_bounds_and_invariances(seed, n, d):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    r = effective_rank(x)
    assert 1 - 1e-9 <= float(r) <= min(n, d) + 1e-9
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    torch.testing.assert_close(effective_rank(x @ q), r)  # rotation invariant
    torch.testing.assert_close(effective_rank(3.0 * x), r)  # scale invariant
    perm = torch.randperm(n, generator=g)
    torch.testing.assert_close(effective_rank(x[perm]), r)


def test_effective_rank_known_values_and_mask():
    assert math.isclose(float(effective_rank(torch.eye(3), center=False)), 3.0, rel_tol=1e-6)
    x = torch.zeros(4, 3)
    x[:, 0] = torch.arange(4.0)
    assert math.isclose(float(effective_rank(x)), 1.0, rel_tol=1e-6)  # collapsed onto a line
    x = torch.cat([torch.eye(3), torch.full((2, 3), 100.0)])
    mask = torch.tensor([True, True, True, False, False])
    torch.testing.assert_close(
        effective_rank(x, mask=mask, center=False), effective_rank(torch.eye(3), center=False)
    )


def test_alignment_uniformity_known():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(alignment(x, x)) == 0.0
    torch.testing.assert_close(alignment(x, -x), torch.tensor(4.0))
    torch.testing.assert_close(alignment(x, -x, alpha=1.0), torch.tensor(2.0))
    assert float(uniformity(torch.ones(3, 2))) == 0.0
    # 4 points on the circle at 90 degrees: pairs at squared distance 2 (4x) and 4 (2x)
    pts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    expect = math.log((4 * math.exp(-4) + 2 * math.exp(-8)) / 6)
    assert math.isclose(float(uniformity(pts)), expect, rel_tol=1e-5)
    with pytest.raises(ValueError, match="at least 2 valid rows"):
        uniformity(torch.ones(1, 2))


@given(seeds, st.integers(2, 6), st.integers(2, 4))
def test_uniformity_matches_loop(seed, n, d):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    z = x / x.norm(dim=1, keepdim=True)
    vals = [
        math.exp(-2 * float((z[i] - z[j]).pow(2).sum())) for i in range(n) for j in range(i + 1, n)
    ]
    assert math.isclose(
        float(uniformity(x)), math.log(sum(vals) / len(vals)), rel_tol=1e-9, abs_tol=1e-12
    )
    assert float(uniformity(x)) <= 1e-12


def test_modality_gap():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[0.0, 2.0]])
    assert math.isclose(float(modality_gap(x, y)), math.sqrt(2), rel_tol=1e-6)
    assert float(modality_gap(x, 5 * x)) == 0.0
    with pytest.raises(ValueError, match="`y` must have D = 2 features"):
        modality_gap(x, torch.ones(2, 3))


def test_prototype_usage_entropy_and_mass():
    plan = torch.zeros(2, 3, 4)
    plan[0, :, 0] = 1.0  # collapsed onto one prototype
    plan[1] = 0.25
    h = prototype_usage_entropy(plan)
    torch.testing.assert_close(h, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(
        prototype_usage_entropy(plan, normalize=False), torch.tensor([0.0, math.log(4)])
    )
    # masked rows do not count
    mask = torch.tensor([[True, True, False], [True, True, True]])
    plan2 = plan.clone()
    plan2[0, 2] = 1.0
    torch.testing.assert_close(prototype_usage_entropy(plan2, mask=mask), h)
    m = token_transport_mass(torch.full((1, 4, 2), 0.125), mask=torch.tensor([[1, 1, 1, 0]]).bool())
    torch.testing.assert_close(m, torch.tensor([[0.75, 0.75, 0.75, 0.0]]))
    m = token_transport_mass(torch.full((1, 4, 2), 0.125), relative=False)
    torch.testing.assert_close(m, torch.full((1, 4), 0.25))


@pytest.mark.parametrize(
    "fn, args, exc, match",
    [
        (effective_rank, (torch.ones(3),), ValueError, r"`x` must have shape \(N, D\)"),
        (effective_rank, (torch.ones(3, 2, dtype=torch.long),), TypeError, "floating-point"),
        (alignment, (torch.ones(3, 2), torch.ones(2, 2)), ValueError, "`y` must have the shape"),
        (alignment, (torch.full((2, 2), math.nan), torch.ones(2, 2)), ValueError, "finite"),
        (prototype_usage_entropy, (torch.ones(2, 3),), ValueError, r"\(B, N, K\)"),
        (token_transport_mass, (torch.ones(1, 2, 3),), None, None),
    ],
)
def test_errors(fn, args, exc, match):
    if exc is None:
        fn(*args)
        return
    with pytest.raises(exc, match=match):
        fn(*args)


def test_mask_errors():
    with pytest.raises(TypeError, match="`mask` must be a bool tensor"):
        token_transport_mass(torch.ones(1, 2, 3), mask=torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"`mask` must have shape \(1, 2\)"):
        prototype_usage_entropy(torch.ones(1, 2, 3), mask=torch.ones(2, 2, dtype=torch.bool))


def test_value_errors_negative_plan_and_mask_name():
    bad = torch.ones(1, 2, 3)
    bad[0, 0, 0] = -1.0
    for fn in (prototype_usage_entropy, token_transport_mass):
        with pytest.raises(ValueError, match="`plan` must be nonnegative; got a minimum of -1"):
            fn(bad)
    # a negative entry on a padded row is ignored
    fn_mask = torch.tensor([[False, True]])
    assert torch.isfinite(prototype_usage_entropy(bad, mask=fn_mask)).all()
    with pytest.raises(TypeError, match="^`mask` must be a bool tensor"):
        effective_rank(torch.ones(4, 3), mask=torch.ones(4))


def test_no_rows_and_padded_nan():
    with pytest.raises(ValueError, match="`x` must have at least 1 valid row; got 0"):
        effective_rank(torch.ones(3, 2), mask=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="`x` must have at least 1 valid row; got 0"):
        alignment(torch.ones(0, 2), torch.ones(0, 2))
    with pytest.raises(ValueError, match="`y` must have at least 1 valid row; got 0"):
        modality_gap(torch.ones(2, 2), torch.ones(0, 2))
    plan = torch.rand(1, 3, 4)
    mask = torch.tensor([[True, True, False]])
    ref_h, ref_m = prototype_usage_entropy(plan, mask=mask), token_transport_mass(plan, mask=mask)
    plan[0, 2] = math.nan
    torch.testing.assert_close(prototype_usage_entropy(plan, mask=mask), ref_h)
    torch.testing.assert_close(token_transport_mass(plan, mask=mask), ref_m)
    assert token_transport_mass(plan, mask=mask)[0, 2] == 0
