"""SP²OT (partial UOT with a token-token similarity term) by majorisation-minimisation.

The term is applied in low rank, ``S Q = F (F^T Q)``, so no ``N x N`` matrix is formed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from minmaxfuse._checks import (
    check_choice,
    check_finite,
    check_float,
    check_int,
    check_mask,
    check_ndim,
    check_nonnegative,
    check_positive,
    check_same_device,
)
from minmaxfuse._numerics import l2_normalize
from minmaxfuse.ot._result import UOTResult
from minmaxfuse.ot._sinkhorn import partial_uot, rho_per_problem

_SEM_GRADS = ("detach", "implicit", "unroll")


class SemanticUOTResult(NamedTuple):
    """Output of :func:`~minmaxfuse.ot.semantic_uot`.

    Attributes
    ----------
    plan : Tensor, shape (B, N, K)
        Transport plan of the last majorisation-minimisation (MM) step, without the sink column
        (rows sum to at most ``1 / N_valid``, as for :func:`~minmaxfuse.ot.partial_uot`).
        Exactly zero on padded rows.
    value : Tensor, shape (B,)
        Full objective (semantic term included) at ``plan``.
    sink : Tensor, shape (B, N)
        Mass each row sends to the sink column.
    n_outer : Tensor, shape (B,), int64
        Number of MM steps (inner partial-UOT solves) run per problem.
    converged : Tensor, shape (B,), bool
        Whether the objective changed by less than ``outer_tol`` between the last two MM steps.
    history : Tensor, shape (T, B)
        Objective after each MM step (``T = max(n_outer)``); NaN once a problem has stopped.
    inner : UOTResult
        The last inner solve (its ``value``, ``f`` and ``g`` are those of the linearised cost).
    """

    plan: Tensor
    value: Tensor
    sink: Tensor
    n_outer: Tensor
    converged: Tensor
    history: Tensor
    inner: UOTResult


def _gram_apply(F: Tensor, Q: Tensor) -> tuple[Tensor, Tensor]:
    """``(F^T Q, F (F^T Q))`` for ``F (B, N, D)``, ``Q (B, N, K)``: ``S Q`` without ``S``."""
    FtQ = torch.einsum("bnd,bnk->bdk", F, Q)  # (B, D, K)
    return FtQ, torch.einsum("bnd,bdk->bnk", F, FtQ)  # (B, N, K)


def semantic_uot(
    cost: Tensor,
    features: Tensor,
    rho: float | Tensor,
    *,
    semantic: float = 0.1,
    reg: float = 0.1,
    reg_m_cols: float = 1.0,
    mask: Tensor | None = None,
    max_outer: int = 100,
    outer_tol: float = 1e-6,
    max_iter: int = 1000,
    tol: float = 1e-6,
    grad: str = "detach",
) -> SemanticUOTResult:
    r"""Partial UOT with the SP²OT semantic term, solved by majorisation-minimisation.

    With TTA's partial marginals (those of :func:`partial_uot`) and a token-token similarity
    :math:`S_{ij} = \cos(x_i, x_j)` of the rows' ``features``, solve for each problem

    .. math::

        \min_{Q \ge 0}\ \langle Q, C \rangle - \lambda_1 \langle S, Q Q^\top \rangle
        + \varepsilon\, \mathrm{KL}(\bar Q \,|\, a \bar b^\top)
        + \lambda\, \mathrm{KL}(Q^\top 1 \,|\, \rho/K\, 1_K)
        \quad \text{s.t. } Q 1 + s = a,\ 1^\top s = 1 - \rho,

    where :math:`\bar Q = [Q, s]` is the plan extended by the sink column :math:`s`,
    :math:`a` is uniform over the valid rows and :math:`\lambda_1` = ``semantic``. The semantic
    term rewards sending similar tokens to the same prototypes. This is the objective of the
    authors' code of TTA (arXiv 2511.18089; github.com/Y-Research-SBU/TTA, class ``MMOT``,
    after SP²OT, Zhang et al. 2024), with λ₁ = 0.1 there.

    Parameters
    ----------
    cost : Tensor, shape (B, N, K)
        Token-to-prototype costs (floating point; TTA: ``-log softmax`` of the logits).
    features : Tensor, shape (B, N, D)
        Row features defining :math:`S` (L2-normalised inside; a zero row has zero similarity
        to everything). TTA: the projected tokens of the primary head.
    rho : float in (0, 1] or Tensor of shape (B,)
        Transported mass :math:`\rho`.
    semantic : float, default 0.1
        :math:`\lambda_1 \geq 0`. With 0 a single inner solve is run and the result equals
        :func:`partial_uot`.
    reg : float, default 0.1
        Entropic :math:`\varepsilon`.
    reg_m_cols : float, default 1.0
        KL relaxation :math:`\lambda` of the prototype marginal (``math.inf``: hard).
    mask : Tensor of bool, shape (B, N), optional
        ``True`` on valid rows; padded rows get no mass and no similarity.
    max_outer : int, default 100
        Maximum number of MM steps (inner solves).
    outer_tol : float, default 1e-6
        A problem stops when its objective changes by less than ``outer_tol`` (absolute)
        between two MM steps; the others keep iterating.
    max_iter, tol : int, float
        Iteration cap and tolerance of each inner :func:`partial_uot` solve.
    grad : {"detach", "implicit", "unroll"}, default "detach"
        ``"detach"``: no gradient (TTA uses the plan as a constant pseudo-label).
        ``"implicit"`` / ``"unroll"``: gradients to ``cost`` and ``features`` flow through the
        **last inner solve only**, with its linearisation point :math:`Q_{T-1}` held constant
        (one extra inner solve). This is not the exact gradient of the MM fixed point.

    Returns
    -------
    SemanticUOTResult
        ``plan (B, N, K)``, ``value (B,)``, ``sink (B, N)``, ``n_outer (B,)``,
        ``converged (B,)``, ``history (T, B)`` and the last inner :class:`UOTResult`.

    Raises
    ------
    ValueError, TypeError
        On wrong shapes, ranks or dtypes of ``cost``, ``features`` or ``mask``, NaN/Inf in
        valid rows of ``features``, ``rho`` outside (0, 1], a negative ``semantic``, a
        non-positive ``max_outer``, a negative ``outer_tol``, an unknown ``grad``, or as
        :func:`partial_uot`.

    Notes
    -----
    With :math:`\hat x_i = x_i / \|x_i\|` stacked into :math:`F \in \mathbb{R}^{N \times D}`,
    :math:`S = F F^\top` is positive semi-definite, so
    :math:`-\lambda_1 \langle S, QQ^\top\rangle = -\lambda_1 \|F^\top Q\|_F^2` is concave and lies
    below its tangent at any :math:`Q_t`. Replacing it by the tangent gives a majoriser whose
    minimiser is a plain partial UOT with the linearised cost

    .. math:: C_t = C - \lambda_1 (S + S^\top) Q_t = C - 2 \lambda_1 F (F^\top Q_t),

    so each step :math:`Q_{t+1} = \mathrm{partialUOT}(C_t)` does not increase the objective
    (up to the inner solver's tolerance). The loop starts from :math:`Q_0 = \rho / (N K)` on
    the valid rows, as the authors' code does. :math:`S Q` is computed as
    :math:`F (F^\top Q)`: memory is :math:`O(N (D + K))` per problem, and no :math:`N \times N`
    matrix is ever formed (TTA: N = 4146 tokens). The reported objective is exact in the low-rank
    form: :math:`J(Q_{t+1}) = V_t + 2\lambda_1 \langle F^\top Q_{t+1}, F^\top Q_t\rangle -
    \lambda_1 \|F^\top Q_{t+1}\|^2` with :math:`V_t` the inner solve's value.

    Unlike the authors' code (whose loop stops when *every* patient of the batch has converged),
    each problem stops on its own; both give the same plans up to ``outer_tol``. The sink
    column is excluded from the semantic term.

    References
    ----------
    .. [1] Liu, Ren, Zhang, Lin, You (2025). Together, Then Apart. arXiv:2511.18089.
    .. [2] Zhang, C., Ren, H., He, X. (2024). P²OT: progressive partial optimal transport for deep
       imbalanced clustering. ICLR.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.ot import semantic_uot
    >>> g = torch.Generator().manual_seed(0)
    >>> cost = torch.rand(2, 6, 3, generator=g, dtype=torch.float64)
    >>> feats = torch.randn(2, 6, 4, generator=g, dtype=torch.float64)
    >>> res = semantic_uot(cost, feats, 0.5, semantic=0.1)
    >>> res.plan.shape, bool(res.converged.all())
    (torch.Size([2, 6, 3]), True)
    >>> bool((res.history.diff(dim=0).nan_to_num() <= 1e-9).all())  # monotone decrease
    True
    """
    check_float(cost, "cost")
    check_ndim(cost, 3, "cost", "B, N, K")
    B, N, K = cost.shape
    check_float(features, "features")
    check_ndim(features, 3, "features", "B, N, D")
    if tuple(features.shape[:2]) != (B, N):
        raise ValueError(
            f"`features` must have shape (B, N, D) with (B, N) = {(B, N)}; "
            f"got {tuple(features.shape)}."
        )
    if features.dtype != cost.dtype:
        raise TypeError(
            f"`features` must have the dtype of `cost` ({cost.dtype}); got {features.dtype}."
        )
    check_same_device([("cost", cost), ("features", features)])
    m = check_mask(mask, (B, N), "mask", cost)
    check_finite(features, "features", m)
    r = rho_per_problem(rho, B, cost).to(cost.device)
    lam = check_nonnegative(semantic, "semantic")
    if not math.isfinite(lam):
        raise ValueError(f"`semantic` must be finite; got {semantic}.")
    max_outer = check_int(max_outer, "max_outer", minimum=1)
    outer_tol = check_nonnegative(outer_tol, "outer_tol")
    grad = check_choice(grad, _SEM_GRADS, "grad")
    kw = dict(
        reg=check_positive(reg, "reg"),
        reg_m_cols=check_positive(reg_m_cols, "reg_m_cols", allow_inf=True),
        max_iter=check_int(max_iter, "max_iter", minimum=1),
        tol=check_nonnegative(tol, "tol"),
    )
    return _semantic_uot(cost, features, r, lam, m, max_outer, outer_tol, grad, kw)


def _solve(cost, r, m, grad, kw) -> UOTResult:
    # partial_uot takes rho in the dtype it likes; sink mass 1 - rho >= 0 always
    return partial_uot(cost, r, mask=m, grad=grad, **kw)


def _semantic_uot(cost, features, r, lam, m, max_outer, outer_tol, grad, kw) -> SemanticUOTResult:
    """Validated core (also used by :class:`~minmaxfuse.layers.PrototypeUOTAlign`)."""
    B, N, K = cost.shape
    wants_grad = grad != "detach" and torch.is_grad_enabled()
    if lam == 0.0:
        res = _solve(cost, r, m, grad if wants_grad else "detach", kw)
        ones = torch.ones(B, dtype=torch.long, device=cost.device)
        return SemanticUOTResult(
            res.plan,
            res.value,
            res.sink,
            ones,
            torch.ones(B, dtype=torch.bool, device=cost.device),
            res.value.detach().unsqueeze(0),
            res,
        )
    F = l2_normalize(features.masked_fill(~m.unsqueeze(-1), 0.0))  # (B, N, D)
    with torch.no_grad():
        Cd, Fd = cost.detach(), F.detach()
        n_valid = m.sum(-1).to(cost.dtype)  # (B,)
        Q = (r.to(cost.dtype) / (n_valid * K))[:, None, None] * m.unsqueeze(-1).to(cost.dtype)
        Q = Q.expand(B, N, K).clone()  # (B, N, K), Q_0
        Q_lin = Q.clone()  # linearisation point of the last solve of each problem
        sink = cost.new_zeros(B, N)
        value = cost.new_full((B,), math.nan)
        J_prev = cost.new_full((B,), math.nan)
        n_outer = torch.zeros(B, dtype=torch.long, device=cost.device)
        conv = torch.zeros(B, dtype=torch.bool, device=cost.device)
        hist = []
        active = torch.arange(B, device=cost.device)
        last: UOTResult | None = None
        for _ in range(max_outer):
            Qa, Fa = Q.index_select(0, active), Fd.index_select(0, active)
            FtQ, SQ = _gram_apply(Fa, Qa)
            Ct = Cd.index_select(0, active) - 2.0 * lam * SQ  # (b, N, K), linearised cost
            res = _solve(Ct, r.index_select(0, active), m.index_select(0, active), "detach", kw)
            FtQn = torch.einsum("bnd,bnk->bdk", Fa, res.plan)
            J = (
                res.value
                + 2.0 * lam * (FtQn * FtQ).sum((-2, -1))
                - lam * FtQn.square().sum((-2, -1))
            )  # (b,)
            h = cost.new_full((B,), math.nan)
            h[active] = J
            hist.append(h)
            done = (J - J_prev.index_select(0, active)).abs() < outer_tol  # NaN at t = 0: False
            Q_lin[active] = Qa
            Q[active] = res.plan
            sink[active] = res.sink
            value[active] = J
            J_prev[active] = J
            n_outer[active] += 1
            conv[active] = done
            last = _merge(last, res, active, B) if last is not None else _full(res, active, B)
            keep = ~done
            if not bool(keep.any()):
                break
            active = active[keep]
        history = torch.stack(hist)  # (T, B)
    assert last is not None
    if not wants_grad:
        return SemanticUOTResult(Q, value, sink, n_outer, conv, history, last)
    # differentiable last step: re-solve from the same linearisation point with gradients
    FtQ, SQ = _gram_apply(F, Q_lin)
    res = _solve(cost - 2.0 * lam * SQ, r, m, grad, kw)
    FtQn = torch.einsum("bnd,bnk->bdk", F, res.plan)
    J = res.value + 2.0 * lam * (FtQn * FtQ).sum((-2, -1)) - lam * FtQn.square().sum((-2, -1))
    return SemanticUOTResult(res.plan, J, res.sink, n_outer, conv, history, res)


def _full(res: UOTResult, idx: Tensor, B: int) -> UOTResult:
    """Scatter a result computed for the problems ``idx`` into a batch of size ``B``."""
    out = []
    for t in res:
        z = t.new_zeros((B,) + tuple(t.shape[1:]))
        z[idx] = t
        out.append(z)
    return UOTResult(*out)


def _merge(prev: UOTResult, res: UOTResult, idx: Tensor, B: int) -> UOTResult:
    out = []
    for p, t in zip(prev, res):
        p = p.clone()
        p[idx] = t
        out.append(p)
    return UOTResult(*out)
