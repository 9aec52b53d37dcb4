"""Rank views of the gathered losses, emulated in one process for many shard layouts.

The 2-process tests (test_losses_ddp.py) check the real collectives for one layout. Here the
collectives are replaced by their single-process meaning (rank ``r`` sees the other shards as
constants and its own rows as live tensors), so hypothesis can try many layouts cheaply,
including empty shards: every rank's loss must equal the single-process loss, and the rank
gradients summed as the gather's backward does must equal W times its gradient.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minmaxfuse.losses._contrastive as contrastive_mod
import minmaxfuse.survival._losses as cox_mod
from minmaxfuse.losses import distinct_contrastive_loss
from minmaxfuse.survival import cox_ph_loss


class EmulatedRank:
    """Patch a loss module so that it behaves as rank ``rank`` of ``sizes``.

    ``full`` lists the global tensors in the order the loss gathers them.
    """

    def __init__(self, monkeypatch, module, rank, sizes, full):
        self.bounds = [0, *itertools.accumulate(sizes)]
        self.rank = rank
        self.queue = list(full)
        monkeypatch.setattr(module, "is_distributed", lambda: True)
        monkeypatch.setattr(module, "batch_sizes", lambda n, device=None: list(sizes))
        monkeypatch.setattr(module.dist, "get_rank", lambda: rank)
        monkeypatch.setattr(module, "gather_with_grad", self.gather)
        monkeypatch.setattr(module, "gather_nograd", lambda x, sizes=None: self.gather(x).detach())

    def gather(self, x, sizes=None):
        full = self.queue.pop(0)
        lo, hi = self.bounds[self.rank], self.bounds[self.rank + 1]
        assert torch.equal(full[lo:hi].to(x.dtype), x.detach())  # the rows this rank holds
        # the other ranks' rows are constants here; this rank's rows stay live
        return torch.cat([full[:lo].to(x), x, full[hi:].to(x)])


shard_layouts = st.lists(st.integers(0, 4), min_size=2, max_size=3).filter(lambda s: sum(s) >= 2)


@given(
    sizes=shard_layouts,
    seed=st.integers(0, 2**16),
    reduction=st.sampled_from(["mean", "sum", "none"]),
)
def test_emulated_cox_ranks_match_single_process(sizes, seed, reduction):
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    eta = torch.randn(n, generator=g, dtype=torch.float64)
    time = torch.randint(1, 4, (n,), generator=g).to(torch.float64)
    event = torch.rand(n, generator=g) < 0.6
    ref_eta = eta.clone().requires_grad_(True)
    ref = cox_ph_loss(ref_eta, time, event, reduction=reduction)
    ref.sum().backward()
    bounds = [0, *itertools.accumulate(sizes)]
    grads = []
    for r in range(len(sizes)):
        with pytest.MonkeyPatch.context() as mp:
            EmulatedRank(mp, cox_mod, r, sizes, [eta, time, event])
            lo, hi = bounds[r], bounds[r + 1]
            mine = eta[lo:hi].clone().requires_grad_(True)
            loss = cox_ph_loss(mine, time[lo:hi], event[lo:hi], reduction=reduction, gather=True)
            want = ref.detach()[lo:hi] if reduction == "none" else ref.detach()
            torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-12)
            loss.sum().backward()
            grads.append(mine.grad)
    if reduction != "none":
        # without the all-reduce of the real backward, rank r's rows receive exactly dL/d(rows)
        torch.testing.assert_close(torch.cat(grads), ref_eta.grad, rtol=1e-12, atol=1e-12)


@given(sizes=shard_layouts, seed=st.integers(0, 2**16), symmetric=st.booleans())
def test_emulated_contrastive_ranks_match_single_process(sizes, seed, symmetric):
    g = torch.Generator().manual_seed(seed)
    n, a, d = sum(sizes), 3, 4
    pooled = torch.randn(n, a, d, generator=g, dtype=torch.float64)
    anchors = torch.randn(a, d, generator=g, dtype=torch.float64)
    mask = torch.rand(n, a, generator=g) < 0.7
    kw = {"negatives": "batch", "symmetric": symmetric}
    ref = distinct_contrastive_loss(pooled, anchors, mask=mask, **kw)
    bounds = [0, *itertools.accumulate(sizes)]
    for r in range(len(sizes)):
        with pytest.MonkeyPatch.context() as mp:
            # the loss zeroes missing modalities before gathering
            zeroed = pooled.masked_fill(~mask.unsqueeze(-1), 0.0)
            EmulatedRank(mp, contrastive_mod, r, sizes, [zeroed, mask])
            lo, hi = bounds[r], bounds[r + 1]
            loss = distinct_contrastive_loss(
                pooled[lo:hi], anchors, mask=mask[lo:hi], gather=True, **kw
            )
            torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
