"""Start the processes of a 2-rank gloo test as cheaply as is safe.

``spawn`` re-imports torch in every child (4-7 s each on the loaded 2-core VM); ``fork`` reuses
the parent's imports (well under a second). Fork is used only where it is safe: on Linux, when
the parent has not initialised CUDA (a forked child cannot use it) and for workers that stay on
the CPU. Workers call ``torch.set_num_threads(1)`` first, so that no OpenMP pool inherited from
the parent is entered after the fork.
"""

from __future__ import annotations

import sys

import torch
import torch.multiprocessing as mp


def start_method(allow_fork: bool = True) -> str:
    if allow_fork and sys.platform.startswith("linux") and not torch.cuda.is_initialized():
        return "fork"
    return "spawn"


def launch(worker, args: tuple, nprocs: int, *, allow_fork: bool = True) -> None:
    """Run ``worker(rank, *args)`` in ``nprocs`` processes and raise if any of them failed."""
    mp.start_processes(
        worker, args=args, nprocs=nprocs, join=True, start_method=start_method(allow_fork)
    )
