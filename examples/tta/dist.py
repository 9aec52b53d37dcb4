"""``torchrun`` support: process group set-up, rank helpers, per-rank batch shards.

Under ``torchrun --nproc_per_node=W examples/tta_tcga.py ...`` every rank builds the same
dataset and folds (same seed), trains the same model wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` on its shard of every global batch, scores
all patients itself (evaluation is deterministic and cheap) and takes the validation metrics of
rank 0, so checkpoint selection is identical everywhere. Only rank 0 writes files or prints.
Without the torchrun environment nothing here changes the single-process run.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .errors import UsageError

_STATE: dict[str, Any] = {"backend": None, "local_rank": 0, "owned": False}


def launched() -> bool:
    """Whether the process was started by torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def active() -> bool:
    """Whether a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if active() else 0


def world() -> int:
    """Number of ranks (1 when not distributed)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0, or a single-process run: the only process that writes and prints."""
    return rank() == 0


def setup(device_name: str) -> torch.device | None:
    """Initialise the process group when launched by torchrun; return this rank's device.

    gloo on the CPU, NCCL on CUDA with device ``cuda:LOCAL_RANK``. Returns ``None`` (and does
    nothing) outside torchrun.
    """
    if not launched():
        return None
    local = int(os.environ["LOCAL_RANK"])
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise UsageError("--device cuda requested but CUDA is not available")
        if local >= torch.cuda.device_count():
            raise UsageError(
                f"LOCAL_RANK {local} has no GPU: {torch.cuda.device_count()} visible; use "
                "--nproc_per_node <= the number of GPUs (or --device cpu for gloo)"
            )
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend=backend)
    _STATE.update(backend=backend, local_rank=local, device=device, owned=owned)
    return device


def teardown() -> None:
    """Destroy the process group created by :func:`setup` (a caller's own group is kept)."""
    if _STATE["owned"] and dist.is_initialized():
        dist.destroy_process_group()
    _STATE.update(backend=None, local_rank=0, owned=False)
    _STATE.pop("device", None)


def device() -> torch.device | None:
    """The device chosen by :func:`setup`, if any."""
    return _STATE.get("device")


def backend() -> str | None:
    """``"gloo"``, ``"nccl"`` or ``None``."""
    return _STATE["backend"]


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if not active():
        return
    if _STATE["backend"] == "nccl":
        dist.barrier(device_ids=[_STATE["local_rank"]])
    else:
        dist.barrier()


def from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects; identity when not distributed)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean over ranks of a small tensor (identity when not distributed)."""
    if not active():
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / world()


def shard(rows: np.ndarray) -> np.ndarray:
    """This rank's contiguous slice of a global batch (the whole batch when not distributed).

    Slices are as equal as possible and, concatenated in rank order, give back ``rows``: the
    order in which :func:`minmaxfuse.distributed.gather_with_grad` reassembles the batch.
    """
    if not active():
        return rows
    return np.array_split(rows, world())[rank()]
