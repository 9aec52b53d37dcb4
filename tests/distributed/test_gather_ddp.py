"""Two CPU processes (gloo): gathered losses equal the single-process loss on the whole batch."""

from __future__ import annotations

import datetime
import os
import sys

import pytest
import torch
import torch.distributed as dist

from minmaxfuse.distributed import gather_nograd, gather_with_grad, is_distributed, world_size
from tests.distributed.ddp_launch import launch

# a broken collective fails the test instead of hanging it
TIMEOUT = datetime.timedelta(seconds=60)


def coupled_loss(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # A loss that couples every pair of rows (like a Cox risk set or in-batch negatives).
    diff = x[:, None] - x[None, :]
    return (torch.nn.functional.softplus(diff) * (t[:, None] < t[None, :])).sum() / len(x) ** 2


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=TIMEOUT
    )
    try:
        torch.manual_seed(0)
        x_all = torch.randn(7, dtype=torch.float64)
        t_all = torch.rand(7, dtype=torch.float64)
        ev_all = torch.rand(7) < 0.5
        sizes = [4, 3]  # uneven shards
        lo = sum(sizes[:rank])
        x = x_all[lo : lo + sizes[rank]].clone().requires_grad_(True)
        t = t_all[lo : lo + sizes[rank]]
        ev = ev_all[lo : lo + sizes[rank]]
        assert is_distributed() and world_size() == world
        xg = gather_with_grad(x)
        tg = gather_nograd(t)
        evg = gather_nograd(ev)
        loss = coupled_loss(xg, tg)
        loss.backward()
        torch.save(
            {"loss": loss.detach(), "grad": x.grad, "lo": lo, "ev": evg, "t": tg},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
@pytest.mark.skipif(sys.platform == "win32", reason="file:// init on POSIX only")
def test_gathered_loss_and_grad_match_single_process(tmp_path):
    world = 2
    launch(_worker, (world, str(tmp_path / "init"), str(tmp_path)), world)
    torch.manual_seed(0)
    x_all = torch.randn(7, dtype=torch.float64).requires_grad_(True)
    t_all = torch.rand(7, dtype=torch.float64)
    ev_all = torch.rand(7) < 0.5
    ref = coupled_loss(x_all, t_all)
    ref.backward()
    grads = []
    for r in range(world):
        out = torch.load(tmp_path / f"rank{r}.pt")
        torch.testing.assert_close(out["loss"], ref.detach(), rtol=1e-12, atol=1e-12)
        assert torch.equal(out["ev"], ev_all) and torch.equal(out["t"], t_all)
        grads.append(out["grad"])
    # every rank computes the same global loss; the gather's backward sums their contributions,
    # so each local gradient is world * dL/dx (DDP's averaging divides by world again).
    torch.testing.assert_close(torch.cat(grads) / world, x_all.grad, rtol=1e-12, atol=1e-12)


def test_single_process_is_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    assert torch.equal(gather_nograd(torch.tensor([True, False])), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="`x` must have a batch dimension"):
        gather_with_grad(torch.tensor(1.0))
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor"):
        gather_with_grad([1, 2])
