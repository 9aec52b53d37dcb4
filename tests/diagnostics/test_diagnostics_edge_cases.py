"""Edge cases of the diagnostics found by fuzzing (issue 11): scale, gradients, dtypes, flags."""

from __future__ import annotations

import pytest
import torch

from minmaxfuse import diagnostics


def _x(n=6, d=4, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", [1e-30, 1e-8, 1e25, 1e37])
def test_uniformity_is_scale_invariant(scale):
    x = _x()
    torch.testing.assert_close(diagnostics.uniformity(x * scale), diagnostics.uniformity(x))


@pytest.mark.parametrize("scale", [1e-30, 1e25])
def test_alignment_and_gap_are_scale_invariant(scale):
    x = _x()
    assert float(diagnostics.alignment(x * scale, x)) < 1e-6
    assert float(diagnostics.modality_gap(x * scale, x)) < 1e-6


def test_effective_rank_gradient_of_rank_one_input_is_finite():
    # exactly rank 1: the zero singular values used to give 0 * log 0 = NaN gradients
    x = torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]], requires_grad=True)
    for center in (True, False):
        x.grad = None
        r = diagnostics.effective_rank(x, center=center)
        r.backward()
        torch.testing.assert_close(r.detach(), torch.tensor(1.0))
        assert torch.isfinite(x.grad).all()


def test_effective_rank_of_zero_matrix_is_connected_one():
    x = torch.zeros(3, 2, requires_grad=True)
    r = diagnostics.effective_rank(x)
    r.backward()
    assert float(r.detach()) == 1.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alignment_gradient_of_coinciding_pairs_is_finite(alpha):
    x = _x().requires_grad_()
    diagnostics.alignment(x, x, alpha=alpha).backward()
    assert torch.isfinite(x.grad).all()
    # pairs that do not coincide still get their gradient
    y = _x(seed=1)
    x.grad = None
    diagnostics.alignment(x, y, alpha=alpha).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("fn", ["effective_rank", "uniformity"])
def test_half_precision_is_computed_in_float32(fn):
    x = _x()
    got = getattr(diagnostics, fn)(x.half())
    assert got.dtype == torch.float32  # a measurement: returned in the working precision
    want = getattr(diagnostics, fn)(x.half().float())
    torch.testing.assert_close(got, want)


def test_usage_entropy_of_huge_entries_is_finite():
    out = diagnostics.prototype_usage_entropy(torch.full((2, 3, 4), 3e38))
    torch.testing.assert_close(out, torch.ones(2))


def test_usage_entropy_rejects_no_prototypes():
    with pytest.raises(ValueError, match="`plan` must have K >= 1"):
        diagnostics.prototype_usage_entropy(torch.ones(2, 3, 0))


@pytest.mark.parametrize(
    "call",
    [
        lambda x: diagnostics.effective_rank(x, center="yes"),
        lambda x: diagnostics.alignment(x, x, normalize=1),
        lambda x: diagnostics.modality_gap(x, x, normalize="no"),
        lambda x: diagnostics.prototype_usage_entropy(x[None].abs(), normalize=0),
        lambda x: diagnostics.token_transport_mass(x[None].abs(), relative="yes"),
    ],
)
def test_flags_must_be_bools(call):
    with pytest.raises(TypeError, match="must be a bool"):
        call(_x())
