"""Cox loss with ``gather=True`` in 2 gloo CPU processes equals the single-process loss.

One launch runs every configuration (see ``ddp_launch.py`` for fork vs spawn); the workers
save what they computed and the parent compares it with the single-process loss on the
concatenated batch.
"""

from __future__ import annotations

import datetime
import itertools
import os
import sys

import pytest
import torch
import torch.distributed as dist

from minmaxfuse.distributed import batch_sizes, gather_nograd
from minmaxfuse.survival import CoxPHLoss, cox_ph_loss
from tests.distributed.ddp_launch import launch

SIZES = [5, 3]  # uneven shards
TIMEOUT = datetime.timedelta(seconds=60)  # a broken collective fails instead of hanging
CONFIGS = list(itertools.product(["efron", "breslow"], ["mean", "sum", "none"], [False, True]))


def make_batch():
    g = torch.Generator().manual_seed(7)
    n = sum(SIZES)
    eta = torch.randn(n, generator=g, dtype=torch.float64)
    # integer-valued times: ties inside and across shards
    time = torch.randint(1, 4, (n,), generator=g).to(torch.float64)
    event = torch.rand(n, generator=g) < 0.6
    event[0] = event[-1] = True  # events on both ranks
    weight = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return eta, time, event, weight, x


def _worker(rank: int, world: int, init_file: str, out_dir: str, real_ddp: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=TIMEOUT
    )
    try:
        eta_all, time_all, event_all, weight_all, x_all = make_batch()
        lo = sum(SIZES[:rank])
        rows = slice(lo, lo + SIZES[rank])
        out: dict = {"sizes": batch_sizes(SIZES[rank])}
        for ties, reduction, weighted in CONFIGS:
            eta = eta_all[rows].clone().requires_grad_(True)
            w = weight_all[rows] if weighted else None
            loss = cox_ph_loss(
                eta,
                time_all[rows],
                event_all[rows],
                ties=ties,
                reduction=reduction,
                weight=w,
                gather=True,
            )
            loss.sum().backward()
            out[(ties, reduction, weighted)] = (loss.detach(), eta.grad)
        # integer times, and a shard without events on rank 1
        eta = eta_all[rows].clone().requires_grad_(True)
        ev = event_all[rows].clone()
        if rank == 1:
            ev[:] = False
        loss = cox_ph_loss(eta, time_all[rows].long(), ev, gather=True)
        loss.backward()
        out["int_time_no_event_shard"] = (loss.detach(), eta.grad, gather_nograd(ev))
        # a model whose parameter gradients are averaged over ranks, as DDP does
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1, dtype=torch.float64)
        net = torch.nn.parallel.DistributedDataParallel(model) if real_ddp else model
        loss = CoxPHLoss(gather=True)(net(x_all[rows]).squeeze(-1), time_all[rows], event_all[rows])
        loss.backward()
        if not real_ddp:  # DDP's reducer, by hand (its constructor alone takes seconds)
            for p in model.parameters():
                dist.all_reduce(p.grad)
                p.grad /= world
        out["ddp"] = (loss.detach(), model.weight.grad.clone(), model.bias.grad.clone())
        torch.save(out, os.path.join(out_dir, f"cox_rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


needs_dist = [
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available"),
    pytest.mark.skipif(sys.platform == "win32", reason="file:// init on POSIX only"),
]


@pytest.mark.parametrize(
    "real_ddp",
    [
        pytest.param(False, marks=needs_dist, id="averaged-by-hand"),
        # DistributedDataParallel's constructor takes ~4 s per process on a loaded 2-core VM
        pytest.param(True, marks=[*needs_dist, pytest.mark.slow], id="DistributedDataParallel"),
    ],
)
def test_gathered_cox_matches_single_process(tmp_path, real_ddp):
    world = len(SIZES)
    args = (world, str(tmp_path / "init"), str(tmp_path), real_ddp)
    # DistributedDataParallel may query CUDA: spawn it; the plain CPU path can fork
    launch(_worker, args, world, allow_fork=not real_ddp)
    outs = [torch.load(tmp_path / f"cox_rank{r}.pt", weights_only=False) for r in range(world)]
    eta_all, time_all, event_all, weight_all, x_all = make_batch()
    bounds = [0, *itertools.accumulate(SIZES)]
    tol = {"rtol": 1e-12, "atol": 1e-12}
    assert all(o["sizes"] == SIZES for o in outs)

    for ties, reduction, weighted in CONFIGS:
        eta = eta_all.clone().requires_grad_(True)
        w = weight_all if weighted else None
        ref = cox_ph_loss(eta, time_all, event_all, ties=ties, reduction=reduction, weight=w)
        ref.sum().backward()
        grads = []
        for r, o in enumerate(outs):
            loss, grad = o[(ties, reduction, weighted)]
            if reduction == "none":  # each rank returns its own rows of the global terms
                torch.testing.assert_close(loss, ref.detach()[bounds[r] : bounds[r + 1]], **tol)
            else:  # every rank returns the global loss
                torch.testing.assert_close(loss, ref.detach(), **tol)
            grads.append(grad)
        grad = torch.cat(grads)
        if reduction != "none":
            # every rank back-propagates the same global loss: the gather's backward sums the
            # W copies, and DDP's averaging divides by W again
            grad = grad / world
        # with "none" each rank back-propagates the sum of its own rows: the sum over ranks is
        # the global sum, whose gradient each rank's slice then holds exactly
        torch.testing.assert_close(grad, eta.grad, **tol)

    # integer times and a rank whose shard has no event
    ev = event_all.clone()
    ev[bounds[1] :] = False
    eta = eta_all.clone().requires_grad_(True)
    ref = cox_ph_loss(eta, time_all.long(), ev)
    ref.backward()
    for o in outs:
        torch.testing.assert_close(o["int_time_no_event_shard"][0], ref.detach(), **tol)
        assert torch.equal(o["int_time_no_event_shard"][2], ev)
    grad = torch.cat([o["int_time_no_event_shard"][1] for o in outs]) / world
    torch.testing.assert_close(grad, eta.grad, **tol)

    # a model trained with DDP (or its averaging by hand) gets the single-process gradient
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, dtype=torch.float64)
    ref = CoxPHLoss()(model(x_all).squeeze(-1), time_all, event_all)
    ref.backward()
    for o in outs:
        loss, gw, gb = o["ddp"]
        torch.testing.assert_close(loss, ref.detach(), **tol)
        torch.testing.assert_close(gw, model.weight.grad, **tol)
        torch.testing.assert_close(gb, model.bias.grad, **tol)


def test_gather_flag_is_a_no_op_without_process_group():
    eta_all, time_all, event_all, weight_all, _ = make_batch()
    for ties, reduction, weighted in CONFIGS:
        w = weight_all if weighted else None
        kw = {"ties": ties, "reduction": reduction, "weight": w}
        a = cox_ph_loss(eta_all, time_all, event_all, gather=True, **kw)
        b = cox_ph_loss(eta_all, time_all, event_all, **kw)
        assert torch.equal(a, b)
    assert "gather=True" in repr(CoxPHLoss(gather=True))
    with pytest.raises(TypeError, match="`gather` must be a bool; got int"):
        cox_ph_loss(eta_all, time_all, event_all, gather=1)
    with pytest.raises(TypeError, match="`gather` must be a bool; got str"):
        CoxPHLoss(gather="yes")
