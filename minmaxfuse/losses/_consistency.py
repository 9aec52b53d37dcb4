"""Multi-head Sinkhorn consistency: SwAV-style swapped prediction between views (TTA's SK loss)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from minmaxfuse._checks import (
    Reduction,
    autocast_off,
    check_choice,
    check_finite,
    check_float,
    check_in_range,
    check_mask,
    check_ndim,
    check_nonnegative,
    check_positive,
    check_reduction,
    check_same_device,
    reads_values,
)
from minmaxfuse.losses._together import soft_assignment_loss
from minmaxfuse.ot._semantic import _semantic_uot

TargetGrad = Literal["detach", "implicit"]
_TARGET_GRADS = ("detach", "implicit")


def _check_hparams(rho, semantic, reg, reg_m_cols, min_mass, target_grad):
    r = check_in_range(rho, "rho", 0.0, 1.0, low_open=True)
    lam = check_nonnegative(semantic, "semantic")
    if not math.isfinite(lam):
        raise ValueError(f"`semantic` must be finite; got {semantic}.")
    return (
        r,
        lam,
        check_positive(reg, "reg"),
        check_positive(reg_m_cols, "reg_m_cols", allow_inf=True),
        check_nonnegative(min_mass, "min_mass"),
        check_choice(target_grad, _TARGET_GRADS, "target_grad"),
    )


def sinkhorn_consistency_loss(
    logits: Tensor,
    *,
    features: Tensor | None = None,
    mask: Tensor | None = None,
    rho: float = 1.0,
    semantic: float = 0.0,
    reg: float = 0.1,
    reg_m_cols: float = 1.0,
    min_mass: float = 1e-6,
    target_grad: TargetGrad = "detach",
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Swapped-prediction consistency of bag-level prototype logits across views, per head.

    For every view :math:`v` and head :math:`h`, the bags of the batch are transported to the
    ``K`` prototypes by partial UOT (:func:`~minmaxfuse.ot.semantic_uot`, rows = bags), giving
    pseudo-labels :math:`q^{v,h}` (rows renormalised). Each view then predicts the others':

    .. math::

        L_h = \frac{1}{V (V - 1)} \sum_{a \ne b} \frac{1}{|\mathcal B|}
        \sum_{n \in \mathcal B} -\sum_k q^{b,h}_{nk} \log \mathrm{softmax}_k(\ell^{a,h}_{nk}),

    with :math:`\mathcal B` the valid bags. This is the ``SKMultiLoss`` of the authors' code of
    TTA (arXiv 2511.18089; github.com/Y-Research-SBU/TTA), weight 0.01 per modality, where
    the head with the lowest :math:`L_h` over an epoch becomes the primary head (see
    :meth:`~minmaxfuse.layers.PrototypeUOTAlign.consistency_loss`).

    Parameters
    ----------
    logits : Tensor, shape (V, H, B, K)
        Bag-level logits (TTA: the token mean of the cosine logits) for ``V >= 2`` views of
        the same ``B`` bags and ``H`` heads.
    features : Tensor, shape (V, H, B, D), optional
        Bag features for the semantic term (cosine similarity between bags); required when
        ``semantic > 0``.
    mask : Tensor of bool, shape (B,), optional
        Valid bags (at least one); the others take no part in the transport or the loss.
    rho : float in (0, 1], default 1.0
        Transported mass of the pseudo-label problems.
    semantic : float, default 0.0
        Semantic weight :math:`\lambda_1` of the pseudo-label problems (TTA: ``(1 - rho) * 0.1``).
    reg, reg_m_cols : float
        Entropic :math:`\varepsilon` and prototype-marginal relaxation (TTA: 0.1 and 1.0).
    min_mass : float, default 1e-6
        Bags whose pseudo-label mass is below this are dropped from the loss (as
        :func:`soft_assignment_loss`).
    target_grad : {"detach", "implicit"}, default "detach"
        ``"detach"`` (SwAV, TTA): the pseudo-labels are constants. ``"implicit"``: gradients
        also flow through them (through the last inner solve, see
        :func:`~minmaxfuse.ot.semantic_uot`).
    reduction : {"mean", "sum", "none"}, default "mean"
        Over heads; ``"none"`` returns the per-head losses ``(H,)``.

    Returns
    -------
    Tensor
        Shape ``()`` or ``(H,)`` with ``reduction="none"``; at least float32.

    Raises
    ------
    ValueError, TypeError
        On a wrong rank, ``V < 2``, mismatched ``features`` or ``mask``, NaN/Inf in valid
        bags, no valid bag, or an illegal hyper-parameter (``semantic > 0`` without
        ``features`` included).

    Notes
    -----
    The pseudo-label problem of view :math:`v` and head :math:`h` has cost
    :math:`-\log\mathrm{softmax}(\ell^{v,h})` and uniform bag masses; all ``V * H`` problems
    are solved as one batch. The loss is symmetric under any permutation of the views and each
    :math:`L_h` depends on head :math:`h` only. TTA builds the views from at most 4 patients
    per batch, by token dropout (view 1 keeps 80% of the tokens, view 2 swaps 20% of those for
    held-out ones).

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.losses import sinkhorn_consistency_loss
    >>> logits = torch.randn(2, 5, 4, 8)  # 2 views, 5 heads, 4 bags, 8 prototypes
    >>> per_head = sinkhorn_consistency_loss(logits, reduction="none")
    >>> per_head.shape, bool((per_head > 0).all())
    (torch.Size([5]), True)
    """
    check_float(logits, "logits")
    check_ndim(logits, 4, "logits", "V, H, B, K")
    V, H, B, K = logits.shape
    if V < 2:
        raise ValueError(f"`logits` must hold V >= 2 views; got {tuple(logits.shape)}.")
    if H == 0 or B == 0 or K == 0:
        raise ValueError(
            f"`logits` must have H, B, K >= 1 (heads, bags, prototypes); got {tuple(logits.shape)}."
        )
    r, lam, eps, rho2, delta, target_grad = _check_hparams(
        rho, semantic, reg, reg_m_cols, min_mass, target_grad
    )
    reduction = check_reduction(reduction)
    m = check_mask(mask, (B,), "mask", logits)
    if reads_values(m) and not bool(m.any()):
        raise ValueError("`mask` must leave at least one valid bag; got none.")
    check_finite(logits, "logits", m.expand(V, H, K, B).transpose(-1, -2))
    if features is not None:
        check_float(features, "features")
        check_ndim(features, 4, "features", "V, H, B, D")
        if tuple(features.shape[:3]) != (V, H, B):
            raise ValueError(
                f"`features` must have shape (V, H, B, D) with (V, H, B) = {(V, H, B)}; "
                f"got {tuple(features.shape)}."
            )
        check_same_device([("logits", logits), ("features", features)])
        check_finite(features, "features", m.expand(V, H, features.shape[-1], B).transpose(-1, -2))
    elif lam > 0:
        raise ValueError(
            f"`features` must be given when semantic > 0 (the bag similarity); got None with "
            f"semantic={semantic}."
        )
    work = torch.promote_types(logits.dtype, torch.float32)
    with autocast_off(logits):
        lg = logits.to(work)
        fe = features.to(work) if features is not None else None
        return _consistency(lg, fe, m, r, lam, eps, rho2, delta, target_grad, reduction)


def _consistency(lg, fe, m, rho, lam, eps, rho2, delta, target_grad, reduction) -> Tensor:
    """Validated core: ``lg (V, H, B, K)`` in the working dtype, ``m (B,)``."""
    V, H, B, K = lg.shape
    P = V * H
    mk = m.expand(P, B)
    lg_safe = torch.where(m[:, None], lg, 0.0)  # padded bags may hold NaN
    cost = -torch.log_softmax(lg_safe, dim=-1).reshape(P, B, K)
    grad = "implicit" if target_grad == "implicit" else "detach"
    if grad == "detach":
        cost = cost.detach()
    if fe is None:
        feats = cost.new_zeros(P, B, 1)
    else:
        feats = torch.where(m[:, None], fe, 0.0).reshape(P, B, -1)
        if grad == "detach":
            feats = feats.detach()
    r = torch.full((P,), rho, dtype=torch.float64, device=lg.device)
    inner = dict(reg=eps, reg_m_cols=rho2, max_iter=1000, tol=1e-6)
    res = _semantic_uot(cost, feats, r, lam, mk, 100, 1e-6, grad, inner)
    q = res.plan.reshape(V, H, B, K)  # row sums <= 1 / |valid|; renormalised by the CE
    per_pair = []
    for a in range(V):
        for b in range(V):
            if a != b:
                per_pair.append(
                    soft_assignment_loss(
                        lg_safe[a],  # (H, B, K): the heads play the role of bags of tokens
                        q[b] * m.sum().to(q.dtype),
                        mask=m.expand(H, B),
                        min_mass=delta,
                        reduction="none",
                    )
                )  # (H,)
    per_head = torch.stack(per_pair).mean(dim=0)  # (H,)
    if reduction == "mean":
        return per_head.mean()
    if reduction == "sum":
        return per_head.sum()
    return per_head


class SinkhornConsistency(nn.Module):
    r"""Multi-head Sinkhorn consistency loss (TTA's ``SKMultiLoss``).

    See :func:`sinkhorn_consistency_loss`; the hyper-parameters are fixed at construction and
    ``forward(logits, features=None, mask=None, rho=None)`` may override ``rho`` per call
    (TTA ramps it over training).

    Parameters
    ----------
    rho : float in (0, 1], default 1.0
    semantic : float, default 0.0
    reg : float, default 0.1
    reg_m_cols : float, default 1.0
    min_mass : float, default 1e-6
    target_grad : {"detach", "implicit"}, default "detach"
    reduction : {"mean", "sum", "none"}, default "mean"

    Raises
    ------
    ValueError, TypeError
        On an illegal hyper-parameter (at construction).

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.losses import SinkhornConsistency
    >>> loss_fn = SinkhornConsistency(rho=0.5)
    >>> loss_fn(torch.randn(2, 3, 4, 8)).shape
    torch.Size([])
    """

    def __init__(
        self,
        rho: float = 1.0,
        *,
        semantic: float = 0.0,
        reg: float = 0.1,
        reg_m_cols: float = 1.0,
        min_mass: float = 1e-6,
        target_grad: TargetGrad = "detach",
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        (
            self.rho,
            self.semantic,
            self.reg,
            self.reg_m_cols,
            self.min_mass,
            self.target_grad,
        ) = _check_hparams(rho, semantic, reg, reg_m_cols, min_mass, target_grad)
        self.reduction = check_reduction(reduction)

    def forward(
        self,
        logits: Tensor,
        features: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        rho: float | None = None,
    ) -> Tensor:
        """Loss of ``logits (V, H, B, K)``; see :func:`sinkhorn_consistency_loss`."""
        return sinkhorn_consistency_loss(
            logits,
            features=features,
            mask=mask,
            rho=self.rho if rho is None else rho,
            semantic=self.semantic,
            reg=self.reg,
            reg_m_cols=self.reg_m_cols,
            min_mass=self.min_mass,
            target_grad=self.target_grad,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"rho={self.rho}, semantic={self.semantic}, reg={self.reg}, "
            f"reg_m_cols={self.reg_m_cols}, reduction={self.reduction!r}"
        )
