"""NaN/Inf on masked (padded or missing) entries never reaches an output or a gradient.

A padded token or a missing modality is often produced by arithmetic on nothing (the mean of an
empty bag is 0/0 = NaN). House style B2: masked entries must not change any output; here also no
gradient, because a NaN gradient on the masked entry flows into the model that produced it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from minmaxfuse import diagnostics, layers, losses, ot

BAD = [float("nan"), float("inf")]


def bag_mask():
    m = torch.ones(2, 4, dtype=torch.bool)
    m[1, 3] = False
    return m


def poisoned(*shape, value, index=(1, 3), seed=0):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))
    x[index] = value
    return x.requires_grad_(True)


def _align(value):
    torch.manual_seed(0)
    layer = layers.PrototypeUOTAlign(5, num_prototypes=3, max_iter=200)
    x = poisoned(2, 4, 5, value=value)
    out = layer([x, torch.rand(2, 3, 5)], [bag_mask(), None], rho=0.5)
    return [out.loss, *out.prototype_tokens, *out.plans], [x]


def _contrastive(value, negatives, symmetric):
    pooled = poisoned(3, 2, 4, value=value, index=(2, 1))
    m = torch.ones(3, 2, dtype=torch.bool)
    m[2, 1] = False
    loss = losses.distinct_contrastive_loss(
        pooled, torch.rand(2, 4), mask=m, negatives=negatives, symmetric=symmetric
    )
    return [loss], [pooled]


CASES: dict[str, tuple[Callable, str | None]] = {
    "sinkhorn_uot-implicit": (
        lambda v: (lambda c: ([ot.sinkhorn_uot(c, mask=bag_mask()).value], [c]))(
            poisoned(2, 4, 3, value=v)
        ),
        None,
    ),
    "sinkhorn_uot-unroll": (
        lambda v: (lambda c: ([ot.sinkhorn_uot(c, mask=bag_mask(), grad="unroll").value], [c]))(
            poisoned(2, 4, 3, value=v)
        ),
        None,
    ),
    "partial_uot": (
        lambda v: (lambda c: ([ot.partial_uot(c, 0.5, mask=bag_mask()).value], [c]))(
            poisoned(2, 4, 3, value=v)
        ),
        None,
    ),
    "soft_assignment_loss": (
        lambda v: (
            lambda lg: (
                [losses.soft_assignment_loss(lg, torch.rand(2, 4, 3), mask=bag_mask())],
                [lg],
            )
        )(poisoned(2, 4, 3, value=v)),
        None,
    ),  # fmt: skip
    "prototype_aggregate": (
        lambda v: (
            lambda x, lg: (
                [layers.prototype_aggregate(x, lg, torch.rand(2, 4, 3) / 3, mask=bag_mask())],
                [x, lg],
            )
        )(poisoned(2, 4, 5, value=v), poisoned(2, 4, 3, value=v, seed=1)),
        None,
    ),
    "PrototypeUOTAlign": (_align, None),
    "distinct_contrastive_loss-anchors": (
        lambda v: _contrastive(v, "anchors", False),
        None,
    ),
    "distinct_contrastive_loss-batch-symmetric": (
        lambda v: _contrastive(v, "batch", True),
        None,
    ),
    "prototype_usage_entropy": (
        lambda v: (
            [diagnostics.prototype_usage_entropy(poisoned(2, 4, 3, value=v), mask=bag_mask())],
            [],
        ),
        None,
    ),  # fmt: skip
    "token_transport_mass": (
        lambda v: (
            [diagnostics.token_transport_mass(poisoned(2, 4, 3, value=v), mask=bag_mask())],
            [],
        ),
        None,
    ),  # fmt: skip
    "effective_rank": (
        lambda v: (
            lambda x: ([diagnostics.effective_rank(x, mask=torch.tensor([1, 1, 1, 0]).bool())], [x])
        )(poisoned(4, 3, value=v, index=3)),
        None,
    ),  # fmt: skip
    "uniformity": (
        lambda v: (
            lambda x: ([diagnostics.uniformity(x, mask=torch.tensor([1, 1, 1, 0]).bool())], [x])
        )(poisoned(4, 3, value=v, index=3)),
        None,
    ),
}


def _params():
    out = []
    for name, (_, reason) in CASES.items():
        for v in BAD:
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(name, v, id=f"{name}-{v}", marks=marks))
    return out


@pytest.mark.parametrize("name, value", _params())
def test_masked_nan_never_leaks(name, value):
    outputs, leaves = CASES[name][0](value)
    for out in outputs:
        assert torch.isfinite(out).all(), f"non-finite output: {out}"
    scalar = sum(o.float().sum() for o in outputs if o.requires_grad)
    if leaves and isinstance(scalar, torch.Tensor):
        scalar.backward()
        for leaf in leaves:
            assert leaf.grad is not None
            assert torch.isfinite(leaf.grad).all(), "non-finite gradient on a masked entry"
