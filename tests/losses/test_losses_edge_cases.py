"""Edge cases of the losses found by fuzzing (issue 11): scale, masked NaN, dtypes, empty input."""

from __future__ import annotations

import math

import pytest
import torch

from minmaxfuse import losses


@pytest.mark.parametrize("scale", [1e-8, 1e-30, 1e20, 1e37])
@pytest.mark.parametrize("negatives", ["anchors", "batch"])
def test_contrastive_loss_is_scale_invariant(scale, negatives):
    a = torch.eye(2, 8)
    p = a.expand(3, 2, 8)
    want = losses.distinct_contrastive_loss(p, a, negatives=negatives)
    got = losses.distinct_contrastive_loss(p * scale, a * scale, negatives=negatives)
    torch.testing.assert_close(got, want)
    assert float(want) < 1e-3


def test_masked_nan_does_not_reach_head_gradients():
    torch.manual_seed(0)
    fn = losses.DistinctContrastive(0.1, dim=8, negatives="batch")
    pooled = torch.randn(4, 2, 8)
    anchors = torch.randn(2, 8)
    mask = torch.ones(4, 2, dtype=torch.bool)
    mask[1, 0] = False
    bad = pooled.clone()
    bad[1, 0] = math.nan
    grads = []
    for x in (pooled, bad):
        fn.zero_grad()
        loss = fn(x, anchors, mask=mask)
        loss.backward()
        assert torch.isfinite(loss)
        grads.append([p.grad.clone() for p in fn.parameters()])
    for g_ok, g_nan in zip(*grads):
        assert torch.isfinite(g_nan).all()
        torch.testing.assert_close(g_nan, g_ok)  # whatever the masked row holds


def test_head_dtype_mismatch_is_a_named_error():
    fn = losses.DistinctContrastive(0.1, dim=8)
    with pytest.raises(TypeError, match=r"`pooled` must have the dtype of the DistinctContrastive"):
        fn(torch.randn(3, 2, 8, dtype=torch.float64), torch.randn(2, 8))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_soft_assignment_empty_batch_is_connected_zero(reduction):
    logits = torch.randn(0, 3, 2, requires_grad=True)
    loss = losses.soft_assignment_loss(logits, torch.rand(0, 3, 2), reduction=reduction)
    assert loss.requires_grad and float(loss) == 0.0
    loss.backward()
    assert logits.grad.shape == logits.shape


def test_soft_assignment_rejects_no_prototypes():
    with pytest.raises(ValueError, match="`logits` must have K >= 1"):
        losses.soft_assignment_loss(torch.randn(2, 3, 0), torch.rand(2, 3, 0))
