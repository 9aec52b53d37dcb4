"""Result type of the unbalanced Sinkhorn solver."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class UOTResult(NamedTuple):
    """Output of :func:`~minmaxfuse.ot.sinkhorn_uot`.

    Attributes
    ----------
    plan : Tensor, shape (B, N, K)
        Transport plan between the ``N`` rows and the ``K`` real columns (without the sink column
        of partial transport). Exactly zero on padded rows. Input dtype.
    value : Tensor, shape (B,)
        Full objective at ``plan`` (see :func:`~minmaxfuse.ot.sinkhorn_uot`, Notes). Input dtype.
    f : Tensor, shape (B, N)
        Row potential, ``plan = a b^T exp((f + g - cost) / reg)``; zero on padded rows.
    g : Tensor, shape (B, K)
        Column potential of the real columns.
    n_iter : Tensor, shape (B,), int64
        Number of Sinkhorn iterations (one row and one column update each) run per problem.
    converged : Tensor, shape (B,), bool
        Whether the stopping criterion was met within ``max_iter`` iterations.
    sink : Tensor, shape (B, N)
        Mass each row sends to the sink column (partial transport); zeros when no sink is used.
    """

    plan: Tensor
    value: Tensor
    f: Tensor
    g: Tensor
    n_iter: Tensor
    converged: Tensor
    sink: Tensor
