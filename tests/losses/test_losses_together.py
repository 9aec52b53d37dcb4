import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minmaxfuse.losses import soft_assignment_loss


@st.composite
def problems(draw):
    b, n, k = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    g = torch.Generator().manual_seed(draw(st.integers(0, 10_000)))
    logits = 3 * torch.randn(b, n, k, generator=g, dtype=torch.float64)
    target = torch.rand(b, n, k, generator=g, dtype=torch.float64)
    target = target * (torch.rand(b, n, 1, generator=g, dtype=torch.float64) > 0.3)  # sink rows
    mask = torch.rand(b, n, generator=g) < 0.8
    mask[:, 0] = True
    return logits, target, mask


def _reference(logits, target, mask, min_mass):
    out = []
    for n in range(logits.shape[0]):
        tot, cnt = 0.0, 0
        for i in range(logits.shape[1]):
            if not mask[n, i]:
                continue
            cnt += 1
            mass = float(target[n, i].sum())
            if mass < min_mass or mass == 0:
                continue
            logp = torch.log_softmax(logits[n, i], 0)
            tot += -float((target[n, i] / mass * logp).sum())
        out.append(tot / max(cnt, 1))
    return torch.tensor(out, dtype=logits.dtype)


@given(problems(), st.sampled_from([0.0, 1e-6, 0.5]))
def test_matches_reference(prob, min_mass):
    logits, target, mask = prob
    got = soft_assignment_loss(logits, target, mask=mask, min_mass=min_mass, reduction="none")
    torch.testing.assert_close(got, _reference(logits, target, mask, min_mass))
    assert (got >= 0).all()
    torch.testing.assert_close(
        soft_assignment_loss(logits, target, mask=mask, min_mass=min_mass), got.mean()
    )


@given(problems())
def test_padding_and_permutation_change_nothing(prob):
    logits, target, mask = prob
    base = soft_assignment_loss(logits, target, mask=mask, reduction="none")
    junk_l = logits.masked_fill(~mask.unsqueeze(-1), math.nan)
    junk_t = target.masked_fill(~mask.unsqueeze(-1), 1e9)
    torch.testing.assert_close(
        soft_assignment_loss(junk_l, junk_t, mask=mask, reduction="none"), base
    )
    perm = torch.randperm(logits.shape[1], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        soft_assignment_loss(
            logits[:, perm], target[:, perm], mask=mask[:, perm], reduction="none"
        ),
        base,
    )
    # row scale of the target does not matter
    torch.testing.assert_close(
        soft_assignment_loss(logits, 7 * target, mask=mask, reduction="none"), base
    )


def test_minimised_when_logits_match_target():
    target = torch.softmax(torch.randn(2, 4, 3), -1)
    at_target = soft_assignment_loss(target.log(), target)
    other = soft_assignment_loss(torch.randn(2, 4, 3), target)
    assert at_target < other


def test_gradcheck_logits_and_target():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert torch.autograd.gradcheck(
        lambda lg, t: soft_assignment_loss(lg, t, mask=mask, reduction="none"), (logits, target)
    )


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (
            (torch.randn(2, 3), torch.rand(2, 3)),
            {},
            ValueError,
            r"`logits` must have shape \(B, N, K\)",
        ),
        (
            (torch.randn(2, 3, 4), torch.rand(2, 3, 5)),
            {},
            ValueError,
            "`target` must have the shape",
        ),
        (
            (torch.randn(1, 2, 2), torch.rand(1, 2, 2)),
            {"mask": torch.ones(1, 2)},
            TypeError,
            "bool",
        ),
        ((torch.randn(1, 2, 2), torch.rand(1, 2, 2)), {"min_mass": -1.0}, ValueError, "`min_mass`"),
        (
            (torch.full((1, 2, 2), math.nan), torch.rand(1, 2, 2)),
            {},
            ValueError,
            "`logits` must be finite",
        ),
        (
            (torch.randn(1, 2, 2), torch.rand(1, 2, 2)),
            {"reduction": "avg"},
            ValueError,
            "`reduction`",
        ),
    ],
)
def test_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        soft_assignment_loss(*args, **kwargs)


def test_negative_target_raises_only_on_valid_rows():
    target = torch.rand(1, 2, 3)
    target[0, 1, 0] = -0.5
    with pytest.raises(ValueError, match="`target` must be nonnegative; got a minimum of -0.5"):
        soft_assignment_loss(torch.randn(1, 2, 3), target)
    mask = torch.tensor([[True, False]])
    assert soft_assignment_loss(torch.randn(1, 2, 3), target, mask=mask) >= 0


def test_autocast_and_half_inputs_compute_in_float32():
    logits, target = torch.randn(2, 3, 4), torch.rand(2, 3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = soft_assignment_loss(logits.bfloat16(), target.bfloat16())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(
        loss, soft_assignment_loss(logits.bfloat16().float(), target.bfloat16().float())
    )
