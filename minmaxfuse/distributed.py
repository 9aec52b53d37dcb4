r"""Helpers for losses that need the whole batch under :mod:`torch.distributed`.

Some objectives couple every sample of a batch: the Cox partial likelihood (each risk set spans
the batch) and contrastive losses with in-batch negatives. Under
:class:`~torch.nn.parallel.DistributedDataParallel` each rank only sees its shard, so these
losses change meaning unless the shards are gathered first. :func:`gather_with_grad` does that
while letting gradients flow back to the rank that produced each row.

Gradient convention
-------------------
Every rank computes the *same* global loss :math:`L` on the gathered batch. The backward of the
gather sums, over ranks, the gradients that reach each rank's rows and keeps the local slice:

.. math:: \frac{\partial}{\partial x_r} \sum_{q} L_q = W \, \frac{\partial L}{\partial x_r},

where :math:`W` is the world size. DDP then *averages* parameter gradients over ranks, which
divides by :math:`W` again, so the parameters receive exactly :math:`\partial L / \partial
\theta`, the gradient of the single-process loss on the concatenated batch.

More generally, if rank :math:`q` builds a scalar :math:`\ell_q` from the gathered rows (for
instance the sum of its own rows of an unreduced loss), the parameters receive
:math:`\partial / \partial\theta \; \frac{1}{W}\sum_q \ell_q`: DDP always optimises the mean
over ranks of what each rank back-propagates, and the gather makes that exact across ranks.

Every rank must call the same gathers in the same order (they are collectives), and must
back-propagate through them too (the backward of :func:`gather_with_grad` is an ``all_reduce``):
a rank that raises (e.g. on invalid input) or skips ``backward()`` leaves the others waiting until
the process group's timeout.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from minmaxfuse._checks import check_int, check_tensor

__all__ = ["batch_sizes", "gather_nograd", "gather_with_grad", "is_distributed", "world_size"]


def is_distributed() -> bool:
    """Whether a :mod:`torch.distributed` process group is initialised with more than one rank.

    Returns
    -------
    bool
        ``True`` inside a multi-process group, ``False`` otherwise (including single-process runs).

    Examples
    --------
    >>> from minmaxfuse.distributed import is_distributed
    >>> is_distributed()
    False
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks in the default process group (1 when not distributed).

    Returns
    -------
    int
        The world size.

    Examples
    --------
    >>> from minmaxfuse.distributed import world_size
    >>> world_size()
    1
    """
    return dist.get_world_size() if is_distributed() else 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int]) -> Tensor:  # type: ignore[override]
        rank = dist.get_rank()
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        # Backends such as gloo need equal sizes: pad every shard to the largest, then trim.
        longest = max(sizes)
        padded = x.new_zeros((longest, *x.shape[1:]))
        padded[: x.shape[0]] = x
        chunks = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(chunks, padded)
        return torch.cat([c[:n] for c, n in zip(chunks, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop], None


def batch_sizes(n: int, device: torch.device | str | None = None) -> list[int]:
    """Number of rows held by every rank, exchanged with one small ``all_gather``.

    Pass the result as ``sizes=`` to several :func:`gather_with_grad` / :func:`gather_nograd`
    calls on rows of the same batch, so the sizes are exchanged (a host synchronisation) once.

    Parameters
    ----------
    n : int
        Number of rows on this rank (>= 0).
    device : torch.device or str, optional
        Device of the exchanged size tensor; it must suit the backend (CUDA for NCCL).
        Default: CPU.

    Returns
    -------
    list of int
        ``[B_0, ..., B_{W-1}]``; ``[n]`` outside a multi-process group.

    Raises
    ------
    TypeError
        If ``n`` is not an int.
    ValueError
        If ``n`` is negative.

    Examples
    --------
    >>> from minmaxfuse.distributed import batch_sizes
    >>> batch_sizes(5)  # single process
    [5]
    """
    n = check_int(n, "n", minimum=0)
    if not is_distributed():
        return [n]
    t = torch.tensor([n], device=device)
    all_n = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(all_n, t)
    return [int(v.item()) for v in all_n]


def _check_sizes(x: Tensor, sizes: list[int] | None) -> list[int]:
    if sizes is None:
        return batch_sizes(x.shape[0], x.device)
    sizes = [int(v) for v in sizes]
    W, r = dist.get_world_size(), dist.get_rank()
    if len(sizes) != W or sizes[r] != x.shape[0]:
        raise ValueError(
            f"`sizes` must list the rows of all {W} ranks with sizes[{r}] = x.shape[0] = "
            f"{x.shape[0]}; got {sizes}."
        )
    return sizes


def gather_with_grad(x: Tensor, *, sizes: list[int] | None = None) -> Tensor:
    r"""Concatenate ``x`` from every rank along dim 0, with gradients flowing back.

    Ranks may hold different numbers of rows (the last shard of an epoch is often smaller).
    Outside a multi-process group this returns ``x`` unchanged.

    Parameters
    ----------
    x : Tensor, shape (B_r, ...)
        This rank's rows. Trailing dimensions, dtype and device must agree across ranks.
    sizes : list of int, optional
        Rows per rank, from :func:`batch_sizes`; exchanged here when omitted.

    Returns
    -------
    Tensor, shape (sum_r B_r, ...)
        Rows of rank 0 first, then rank 1, and so on.

    Raises
    ------
    TypeError
        If ``x`` is not a tensor.
    ValueError
        If ``x`` is a 0-d tensor or ``sizes`` does not match the group.

    Notes
    -----
    The backward pass all-reduces (sums) the incoming gradient and returns this rank's slice; see
    the module docstring for why this yields the single-process gradient under DDP's averaging.
    Unless ``sizes`` is given, sizes are exchanged with one small ``all_gather`` per call (a host
    synchronisation).

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.distributed import gather_with_grad
    >>> gather_with_grad(torch.ones(3, 2)).shape  # single process: identity
    torch.Size([3, 2])
    """
    check_tensor(x, "x")
    if x.ndim == 0:
        raise ValueError("`x` must have a batch dimension (ndim >= 1); got a 0-d tensor.")
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x, _check_sizes(x, sizes))


def gather_nograd(x: Tensor, *, sizes: list[int] | None = None) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0 without gradient (labels, times, events).

    Parameters
    ----------
    x : Tensor, shape (B_r, ...)
        This rank's rows; bool tensors are supported (sent as uint8).
    sizes : list of int, optional
        Rows per rank, from :func:`batch_sizes`; exchanged here when omitted.

    Returns
    -------
    Tensor, shape (sum_r B_r, ...)
        Detached; rows of rank 0 first.

    Raises
    ------
    TypeError
        If ``x`` is not a tensor.
    ValueError
        If ``x`` is a 0-d tensor or ``sizes`` does not match the group.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.distributed import gather_nograd
    >>> gather_nograd(torch.arange(3)).tolist()
    [0, 1, 2]
    """
    check_tensor(x, "x")
    if x.ndim == 0:
        raise ValueError("`x` must have a batch dimension (ndim >= 1); got a 0-d tensor.")
    x = x.detach()  # detached in every case, as documented (single process included)
    if not is_distributed():
        return x
    if x.dtype == torch.bool:  # gloo has no bool collectives
        return gather_with_grad(x.to(torch.uint8), sizes=sizes).bool()
    return gather_with_grad(x, sizes=sizes)
