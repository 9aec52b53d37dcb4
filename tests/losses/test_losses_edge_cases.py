"""Edge cases of the losses found by fuzzing (issue 11): scale, masked NaN, dtypes, empty input."""

from __future__ import annotations

import math

import numpy as np
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


# --------------------------------------------------------------------------------------------
# schedules and the min-max objective


def test_negative_ramp_ends_are_rejected():
    with pytest.raises(ValueError, match="`end` must be >= 0"):
        losses.Linear(1.0, -1.0, steps=10)
    with pytest.raises(ValueError, match="`end` must be >= 0"):
        losses.Cosine(0.0, -2.0)
    with pytest.raises(ValueError, match="`value` must be >= 0"):
        losses.Constant(-0.5)


def test_custom_schedule_going_negative_is_caught_at_use():
    class Down(losses.Schedule):
        def __call__(self, step):
            return 1.0 - step

    obj = losses.MinMaxObjective({"a": Down()})
    assert obj.weight("a") == 1.0
    obj.step()
    obj.step()
    with pytest.raises(ValueError, match=r"`terms\['a'\].weight` must be finite and >= 0"):
        obj(a=torch.tensor(1.0))


@pytest.mark.parametrize("step", [-5, 1.5, "3", True])
def test_extra_state_step_must_be_a_nonnegative_int(step):
    obj = losses.MinMaxObjective({"a": 1.0})
    with pytest.raises(ValueError, match="`state`"):
        obj.set_extra_state({"step": step})
    obj.set_extra_state({"step": np.int64(7)})
    assert obj.global_step == 7


@pytest.mark.parametrize("start", [-0.1, 1.5])
def test_mass_ramp_start_must_be_a_fraction(start):
    with pytest.raises(ValueError, match="`start` must be a mass fraction"):
        losses.mass_ramp(0.5, start=start)


@pytest.mark.parametrize(
    "term",
    [torch.tensor(True), torch.tensor(1 + 1j), torch.tensor(3)],
    ids=["bool", "complex", "int"],
)
def test_non_float_terms_are_rejected(term):
    obj = losses.MinMaxObjective({"a": 1.0})
    with pytest.raises(TypeError, match="`a` must be a real floating-point scalar"):
        obj(a=term)


def test_meta_terms_give_a_meta_total_and_devices_must_agree():
    obj = losses.MinMaxObjective({"a": 1.0, "b": 0.5})
    total = obj(a=torch.tensor(1.0, device="meta"), b=torch.tensor(2.0, device="meta"))
    assert total.device.type == "meta"
    with pytest.raises(ValueError, match="`b` must be on the same device as `a`"):
        obj(a=torch.tensor(1.0, device="meta"), b=torch.tensor(2.0))


@pytest.mark.parametrize("curricula", [[1, 2], "rho", 3.0])
def test_curricula_must_be_a_mapping(curricula):
    with pytest.raises(TypeError, match="`curricula` must be a mapping"):
        losses.MinMaxObjective({"a": 1.0}, curricula=curricula)


def test_numpy_scalars_are_accepted_by_schedules():
    obj = losses.MinMaxObjective(
        {"a": np.float32(0.5), "b": losses.Linear(np.float64(0.0), 1, steps=np.int64(4))},
        curricula={"rho": losses.SigmoidRamp(steps=np.int64(10))},
    )
    assert obj.weight("a") == 0.5 and losses.Linear(0.0, 1.0, steps=4)(np.int64(2)) == 0.5
    assert math.isclose(losses.mass_ramp(np.float32(1.0)), 1.0)
