"""The Together term: soft cross-entropy of assignment logits against transport pseudo-labels."""

from __future__ import annotations

import torch
from torch import Tensor

from minmaxfuse._checks import (
    Reduction,
    autocast_off,
    check_finite,
    check_float,
    check_mask,
    check_ndim,
    check_nonnegative,
    check_nonnegative_values,
    check_reduction,
    check_same_device,
    reduce_loss,
)


def soft_assignment_loss(
    logits: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    min_mass: float = 1e-6,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Soft cross-entropy of token-to-prototype logits against a renormalised transport plan.

    For every valid token :math:`i` of bag :math:`n` whose plan row carries mass
    :math:`m_i = \sum_k Q_{ik} \ge` ``min_mass``, the target is the renormalised row
    :math:`\tilde q_{ik} = Q_{ik} / m_i`; tokens with less mass (sent to the sink by a partial
    plan) are dropped, as in TTA. The loss of a bag is averaged over *all* its valid tokens
    (dropped tokens count as 0, like TTA's mean over tokens):

    .. math:: L_n = \frac{1}{|V_n|} \sum_{i \in V_n,\ m_i \ge \delta}
              -\sum_k \tilde q_{ik} \log \mathrm{softmax}_k(\ell_{ik}).

    Gradients reach ``logits``; they reach ``target`` too unless it is detached (use a
    detached plan for TTA's pseudo-label training). Computed in at least float32 with autocast
    off (half-precision inputs are upcast).

    Parameters
    ----------
    logits : Tensor, shape (B, N, K)
        Assignment logits (e.g. cosine similarity / temperature).
    target : Tensor, shape (B, N, K)
        Non-negative plan; its scale per row does not matter.
    mask : Tensor of bool, shape (B, N), optional
        Valid tokens. A bag with no valid token gets 0.
    min_mass : float, default 1e-6
        Rows with less mass are dropped (:math:`\delta`). Compared with the raw row sums, so
        pass the plan scaled as you want it compared (TTA: the plan times ``N``).
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"none"`` returns ``(B,)``.

    Returns
    -------
    Tensor, shape () or (B,)
        Non-negative.

    Raises
    ------
    ValueError, TypeError
        On shape mismatch, ``K = 0``, non-bool mask, NaN/Inf or negative ``target`` in valid
        entries, or a negative ``min_mass``. An empty batch (``B = 0``) is legal and gives a
        graph-connected zero (``"none"``: an empty tensor).

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.losses import soft_assignment_loss
    >>> logits = torch.zeros(1, 3, 4)
    >>> round(float(soft_assignment_loss(logits, torch.rand(1, 3, 4))), 4)  # log 4
    1.3863
    """
    logits = check_float(logits, "logits")
    check_ndim(logits, 3, "logits", "B, N, K")
    if logits.shape[-1] == 0:
        raise ValueError(f"`logits` must have K >= 1 prototypes; got {tuple(logits.shape)}.")
    target = check_float(target, "target")
    if target.shape != logits.shape:
        raise ValueError(
            f"`target` must have the shape of `logits` {tuple(logits.shape)}; "
            f"got {tuple(target.shape)}."
        )
    check_same_device([("logits", logits), ("target", target)])
    m = check_mask(mask, tuple(logits.shape[:2]), "mask", logits)
    check_finite(logits, "logits", m)
    check_finite(target, "target", m)
    check_nonnegative_values(target, "target", m)
    delta = check_nonnegative(min_mass, "min_mass")
    reduction = check_reduction(reduction)

    work = torch.promote_types(torch.promote_types(logits.dtype, target.dtype), torch.float32)
    with autocast_off(logits):
        return _soft_ce(logits.to(work), target.to(work), m, delta, reduction)


def _soft_ce(logits: Tensor, target: Tensor, m: Tensor, delta: float, reduction: Reduction):
    valid = m.unsqueeze(-1)  # (B, N, 1)
    # padding may hold anything (NaN included): select, never multiply, so gradients stay 0
    logp = torch.log_softmax(torch.where(valid, logits, 0.0), dim=-1)  # (B, N, K)
    target = torch.where(valid, target, 0.0)
    mass = target.sum(dim=-1, keepdim=True)  # (B, N, 1)
    keep = m.unsqueeze(-1) & (mass >= delta) & (mass > 0)  # (B, N, 1)
    q = torch.where(keep, target / mass.clamp_min(torch.finfo(target.dtype).tiny), 0.0)
    per_token = -(q * logp).sum(dim=-1)  # (B, N)
    count = m.sum(dim=-1).clamp_min(1).to(logits.dtype)  # (B,)
    loss = per_token.sum(dim=-1) / count  # (B,)
    return reduce_loss(loss, reduction)
