"""Batch-coupled losses with ``gather=True`` in 2 gloo CPU processes (uneven shards).

``CoxPHLoss`` (risk sets) and ``DistinctContrastive(negatives="batch")`` gathered across ranks
equal the single-process loss on the concatenated batch, and rank gradients averaged as DDP does
equal the single-process gradients. One launch runs every configuration of both losses (see
``ddp_launch.py`` for fork vs spawn); the workers save what they computed and the parent
compares it with the single-process results.
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
from minmaxfuse.losses import DistinctContrastive, distinct_contrastive_loss
from minmaxfuse.survival import CoxPHLoss, cox_ph_loss
from tests.distributed.ddp_launch import launch

SIZES = [5, 3]  # uneven shards
TIMEOUT = datetime.timedelta(seconds=60)  # a broken collective fails instead of hanging
COX_CONFIGS = list(itertools.product(["efron", "breslow"], ["mean", "sum", "none"], [False, True]))
CON_CONFIGS = list(itertools.product(["mean", "sum", "none"], [False, True]))  # (red., symmetric)
A, D = 3, 4
TOL = {"rtol": 1e-12, "atol": 1e-12}


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
    pooled = torch.randn(n, A, D, generator=g, dtype=torch.float64)
    anchors = torch.randn(A, D, generator=g, dtype=torch.float64)
    mask = torch.rand(n, A, generator=g) < 0.8
    mask[:, 0] = True  # every patient has modality 0
    mask[-1, 1:] = False  # rank 1 holds a patient with a single modality
    return {
        "eta": eta, "time": time, "event": event, "weight": weight, "x": x, "pooled": pooled,
        "anchors": anchors, "mask": mask,
    }  # fmt: skip


def _average_like_ddp(module, world):
    for p in module.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world


def _worker(rank: int, world: int, init_file: str, out_dir: str, real_ddp: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=TIMEOUT
    )
    try:
        b = make_batch()
        lo = sum(SIZES[:rank])
        rows = slice(lo, lo + SIZES[rank])
        out: dict = {"sizes": batch_sizes(SIZES[rank])}
        # --- Cox --------------------------------------------------------------------------------
        for ties, reduction, weighted in COX_CONFIGS:
            eta = b["eta"][rows].clone().requires_grad_(True)
            w = b["weight"][rows] if weighted else None
            loss = cox_ph_loss(
                eta, b["time"][rows], b["event"][rows], ties=ties, reduction=reduction, weight=w,
                gather=True,
            )  # fmt: skip
            loss.sum().backward()
            out["cox", ties, reduction, weighted] = (loss.detach(), eta.grad)
        # integer times, and a shard without events on rank 1
        eta = b["eta"][rows].clone().requires_grad_(True)
        ev = b["event"][rows].clone()
        if rank == 1:
            ev[:] = False
        loss = cox_ph_loss(eta, b["time"][rows].long(), ev, gather=True)
        loss.backward()
        out["cox_no_event_shard"] = (loss.detach(), eta.grad, gather_nograd(ev))
        # --- DistinctContrastive ----------------------------------------------------------------
        for reduction, symmetric in CON_CONFIGS:
            pooled = b["pooled"][rows].clone().requires_grad_(True)
            anchors = b["anchors"].clone().requires_grad_(True)
            loss = distinct_contrastive_loss(
                pooled, anchors, mask=b["mask"][rows], negatives="batch", symmetric=symmetric,
                reduction=reduction, gather=True,
            )  # fmt: skip
            loss.sum().backward()
            out["con", reduction, symmetric] = (loss.detach(), pooled.grad, anchors.grad)
        # --- models whose parameter gradients are averaged over ranks, as DDP does ----------
        torch.manual_seed(0)
        cox_model = torch.nn.Linear(3, 1, dtype=torch.float64)
        con_model = DistinctContrastive(0.2, dim=D, negatives="batch", gather=True).double()
        ddp = torch.nn.parallel.DistributedDataParallel
        cox_net = ddp(cox_model) if real_ddp else cox_model
        con_net = ddp(con_model) if real_ddp else con_model
        loss = CoxPHLoss(gather=True)(
            cox_net(b["x"][rows]).squeeze(-1), b["time"][rows], b["event"][rows]
        )
        loss.backward()
        out["cox_model"] = (loss.detach(), [p.grad.clone() for p in cox_model.parameters()])
        loss = con_net(b["pooled"][rows], b["anchors"], b["mask"][rows])
        loss.backward()
        out["con_model"] = (loss.detach(), [p.grad.clone() for p in con_model.parameters()])
        if not real_ddp:  # DDP's reducer by hand (its constructor alone takes seconds)
            _average_like_ddp(cox_model, world)
            _average_like_ddp(con_model, world)
            out["cox_model"] = (out["cox_model"][0], [p.grad for p in cox_model.parameters()])
            out["con_model"] = (out["con_model"][0], [p.grad for p in con_model.parameters()])
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
        # free the DDP wrappers (their reducers hold gloo work) while the group still exists:
        # destroyed after it, a reducer can abort the process ("terminate called without an
        # active exception")
        del cox_net, con_net, loss
        dist.barrier()
    finally:
        dist.destroy_process_group()


needs_dist = [
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available"),
    pytest.mark.skipif(sys.platform == "win32", reason="file:// init on POSIX only"),
]


def _check_rows(outs, key, ref, grad_ref, world, reduction):
    """Losses per rank vs the single-process loss; concatenated rank gradients vs its gradient."""
    bounds = [0, *itertools.accumulate(SIZES)]
    for r, o in enumerate(outs):
        want = ref[bounds[r] : bounds[r + 1]] if reduction == "none" else ref
        torch.testing.assert_close(o[key][0], want, **TOL)
    grad = torch.cat([o[key][1] for o in outs])
    # every rank back-propagates the same global loss: the gather's backward sums the W copies
    # (DDP's averaging divides by W again). With "none" each rank back-propagates the sum of its
    # own rows, whose total over ranks is the global sum: no factor.
    if reduction != "none":
        grad = grad / world
    torch.testing.assert_close(grad, grad_ref, **TOL)


@pytest.mark.parametrize(
    "real_ddp",
    [
        pytest.param(False, marks=needs_dist, id="averaged-by-hand"),
        # DistributedDataParallel's constructor takes ~4 s per process on a loaded 2-core VM
        pytest.param(True, marks=[*needs_dist, pytest.mark.slow], id="DistributedDataParallel"),
    ],
)
def test_gathered_losses_match_single_process(tmp_path, real_ddp):
    world = len(SIZES)
    # DistributedDataParallel may query CUDA: spawn it; the plain CPU path can fork
    args = (world, str(tmp_path / "init"), str(tmp_path), real_ddp)
    launch(_worker, args, world, allow_fork=not real_ddp)
    outs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]
    b = make_batch()
    assert all(o["sizes"] == SIZES for o in outs)

    for ties, reduction, weighted in COX_CONFIGS:
        eta = b["eta"].clone().requires_grad_(True)
        w = b["weight"] if weighted else None
        ref = cox_ph_loss(eta, b["time"], b["event"], ties=ties, reduction=reduction, weight=w)
        ref.sum().backward()
        key = ("cox", ties, reduction, weighted)
        _check_rows(outs, key, ref.detach(), eta.grad, world, reduction)

    ev = b["event"].clone()
    ev[SIZES[0] :] = False
    eta = b["eta"].clone().requires_grad_(True)
    ref = cox_ph_loss(eta, b["time"].long(), ev)
    ref.backward()
    _check_rows(outs, "cox_no_event_shard", ref.detach(), eta.grad, world, "mean")
    assert all(torch.equal(o["cox_no_event_shard"][2], ev) for o in outs)

    for reduction, symmetric in CON_CONFIGS:
        pooled = b["pooled"].clone().requires_grad_(True)
        anchors = b["anchors"].clone().requires_grad_(True)
        ref = distinct_contrastive_loss(
            pooled, anchors, mask=b["mask"], negatives="batch", symmetric=symmetric,
            reduction=reduction,
        )  # fmt: skip
        ref.sum().backward()
        key = ("con", reduction, symmetric)
        _check_rows(outs, key, ref.detach(), pooled.grad, world, reduction)
        # the anchors are replicated: every rank holds the whole gradient of what it
        # back-propagated; DDP's average over ranks is the single-process gradient
        g_anchors = sum(o[key][2] for o in outs)
        g_anchors = g_anchors if reduction == "none" else g_anchors / world
        torch.testing.assert_close(g_anchors, anchors.grad, **TOL)

    # models (DDP or its averaging by hand) get the single-process parameter gradients
    torch.manual_seed(0)
    cox_model = torch.nn.Linear(3, 1, dtype=torch.float64)
    con_model = DistinctContrastive(0.2, dim=D, negatives="batch").double()
    cox_ref = CoxPHLoss()(cox_model(b["x"]).squeeze(-1), b["time"], b["event"])
    cox_ref.backward()
    con_ref = con_model(b["pooled"], b["anchors"], b["mask"])
    con_ref.backward()
    for o in outs:
        for key, ref, model in (
            ("cox_model", cox_ref, cox_model),
            ("con_model", con_ref, con_model),
        ):
            loss, grads = o[key]
            torch.testing.assert_close(loss, ref.detach(), **TOL)
            for g, p in zip(grads, model.parameters(), strict=True):
                torch.testing.assert_close(g, p.grad, **TOL)


def test_gather_flags_are_no_ops_without_process_group():
    b = make_batch()
    for ties, reduction, weighted in COX_CONFIGS:
        kw = {"ties": ties, "reduction": reduction, "weight": b["weight"] if weighted else None}
        a = cox_ph_loss(b["eta"], b["time"], b["event"], gather=True, **kw)
        assert torch.equal(a, cox_ph_loss(b["eta"], b["time"], b["event"], **kw))
    for reduction, symmetric in CON_CONFIGS:
        kw = {"mask": b["mask"], "negatives": "batch", "symmetric": symmetric}
        kw["reduction"] = reduction
        a = distinct_contrastive_loss(b["pooled"], b["anchors"], gather=True, **kw)
        assert torch.equal(a, distinct_contrastive_loss(b["pooled"], b["anchors"], **kw))
    assert "gather=True" in repr(CoxPHLoss(gather=True))
    assert "gather=True" in repr(DistinctContrastive(negatives="batch", gather=True))
    with pytest.raises(TypeError, match="`gather` must be a bool; got int"):
        cox_ph_loss(b["eta"], b["time"], b["event"], gather=1)
    with pytest.raises(TypeError, match="`gather` must be a bool; got str"):
        CoxPHLoss(gather="yes")
    with pytest.raises(TypeError, match="`gather` must be a bool; got int"):
        distinct_contrastive_loss(b["pooled"], b["anchors"], negatives="batch", gather=1)
    with pytest.raises(ValueError, match="`gather` must be False unless negatives='batch'"):
        DistinctContrastive(negatives="anchors", gather=True)
    with pytest.raises(ValueError, match="got gather=True with negatives='anchors'"):
        distinct_contrastive_loss(b["pooled"], b["anchors"], gather=True)
