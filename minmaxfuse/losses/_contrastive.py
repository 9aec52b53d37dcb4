"""The Apart term: InfoNCE that keeps each modality near its own anchor, away from the others."""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from minmaxfuse._checks import (
    Reduction,
    autocast_off,
    check_bool,
    check_choice,
    check_finite,
    check_float,
    check_int,
    check_mask,
    check_ndim,
    check_params_dtype,
    check_positive,
    check_reduction,
    check_same_device,
)
from minmaxfuse._numerics import l2_normalize
from minmaxfuse.distributed import batch_sizes, gather_nograd, gather_with_grad, is_distributed

Negatives = Literal["anchors", "batch"]
_NEGATIVES = ("anchors", "batch")


def _normalize(x: Tensor) -> Tensor:
    return l2_normalize(x, dim=-1)  # exact for any finite scale (no eps clamp, no overflow)


def distinct_contrastive_loss(
    pooled: Tensor,
    anchors: Tensor,
    *,
    mask: Tensor | None = None,
    temperature: float = 0.1,
    negatives: Negatives = "anchors",
    symmetric: bool = False,
    reduction: Reduction = "mean",
    gather: bool = False,
) -> Tensor:
    r"""InfoNCE pulling each modality's pooled vector to its own anchor (TTA's Apart term).

    With L2-normalised vectors :math:`z_{n,m}` (patient :math:`n`, modality :math:`m`) and
    anchors :math:`\hat a_m`, :math:`\tau` = ``temperature``:

    .. math:: \ell_{n,m} = -\log \frac{e^{z_{n,m}\cdot \hat a_m/\tau}}
              {\sum_{a} e^{z_{n,m}\cdot \hat a_a/\tau}
               + [\text{batch}] \sum_{n'} \sum_{m' \ne m} e^{z_{n,m}\cdot z_{n',m'}/\tau}},
              \qquad L_n = \sum_{m\ \mathrm{valid}} \ell_{n,m}.

    * ``negatives="anchors"`` (TTA): the only negatives are the other modalities' anchors.
    * ``negatives="batch"``: also every valid vector of *another* modality in the batch (the
      same patient's included). Vectors of the same modality are never negatives: they share a
      positive.
    * ``symmetric=True`` adds the reverse direction, each anchor picking its own modality among
      the patient's vectors, :math:`-\log \mathrm{softmax}_m(\hat a_a \cdot z_{n,m}/\tau)_{m=a}`,
      and averages the two directions (CLIP-style).

    Missing modalities (``mask[n, m] = False``) are skipped and are not used as negatives.
    With one modality (or one valid modality per patient and ``"anchors"``) the loss is a
    graph-connected zero.

    Deviation from the authors' code: TTA adds ``1e-6`` to the denominator; here the
    log-softmax is exact (``logsumexp``). The loss is computed in at least float32 with
    autocast off (half-precision inputs are upcast; the result is float32).

    With ``gather=True`` every rank computes the same global loss :math:`L` (the similarity
    matrix of the whole global batch, as a single process would). The backward of the gather
    sums the gradients of all ranks' copies, so each rank's ``pooled`` receives
    :math:`W \, \partial L / \partial z` (:math:`W` = world size); the anchors, replicated,
    receive :math:`\partial L / \partial \hat a` on every rank. DistributedDataParallel averages
    parameter gradients over ranks, so the parameters receive exactly the gradient of the
    single-process loss on the concatenated batch (see :mod:`minmaxfuse.distributed`).

    Parameters
    ----------
    pooled : Tensor, shape (B, A, D)
        One vector per patient and modality (already projected, e.g. by the projection head
        :math:`\phi` of :class:`DistinctContrastive`); normalised inside.
    anchors : Tensor, shape (A, D)
        One anchor per modality; normalised inside.
    mask : Tensor of bool, shape (B, A), optional
        ``True`` where patient ``n`` has modality ``m``.
    temperature : float, default 0.1
        :math:`\tau > 0`.
    negatives : {"anchors", "batch"}, default "anchors"
    symmetric : bool, default False
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"none"`` returns :math:`L_n` per patient ``(B,)``; ``"mean"`` averages over patients
        with at least one valid modality.
    gather : bool, default False
        Only with ``negatives="batch"``. Under :mod:`torch.distributed` with more than one rank,
        gather ``pooled`` (with gradients) and ``mask`` from every rank first, so that the
        negatives and the ``"mean"`` denominator span the global batch (shards may differ in
        size). Every rank then returns the loss of the concatenated batch (``"none"``: this
        rank's rows of it). Without a process group this flag changes nothing. All ranks must
        pass the same value.

    Returns
    -------
    Tensor, shape () or (B,)
        Non-negative.

    Raises
    ------
    ValueError, TypeError
        On wrong ranks, mismatched ``A`` or ``D``, a non-bool mask, NaN/Inf, unknown options,
        or ``gather=True`` without ``negatives="batch"``.

    See Also
    --------
    DistinctContrastive : module form with the shared projection head.

    References
    ----------
    .. [1] Liu, Ren, Zhang, Lin, You (2025). Together, Then Apart: revisiting multimodal
       survival analysis via a min-max perspective. arXiv:2511.18089.
    .. [2] van den Oord, Li, Vinyals (2018). Representation learning with contrastive
       predictive coding. arXiv:1807.03748.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.losses import distinct_contrastive_loss
    >>> anchors = torch.eye(2, 4)
    >>> pooled = anchors.expand(3, 2, 4)  # every vector on its own anchor
    >>> float(distinct_contrastive_loss(pooled, anchors)) < 1e-3
    True
    """
    pooled = check_float(pooled, "pooled")
    check_ndim(pooled, 3, "pooled", "B, A, D")
    anchors = check_float(anchors, "anchors")
    check_ndim(anchors, 2, "anchors", "A, D")
    b, a, d = pooled.shape
    if tuple(anchors.shape) != (a, d):
        raise ValueError(
            f"`anchors` must have shape (A, D) = ({a}, {d}) to match `pooled` "
            f"{tuple(pooled.shape)}; got {tuple(anchors.shape)}."
        )
    check_same_device([("pooled", pooled), ("anchors", anchors)])
    m = check_mask(mask, (b, a), "mask", pooled)
    check_finite(pooled, "pooled", m)
    check_finite(anchors, "anchors")
    tau = check_positive(temperature, "temperature")
    check_choice(negatives, _NEGATIVES, "negatives")
    symmetric = check_bool(symmetric, "symmetric")
    reduction = check_reduction(reduction)
    _check_gather(gather, negatives)

    work = torch.promote_types(pooled.dtype, torch.float32)
    with autocast_off(pooled):
        # missing modalities are zeroed first, so NaN/Inf there gets an exact zero gradient
        pooled = torch.where(m.unsqueeze(-1), pooled.to(work), 0.0)
        local = None
        if gather and is_distributed():
            # every rank computes the loss of the global batch (see Notes for the gradients)
            sizes = batch_sizes(b, pooled.device)
            start = sum(sizes[: dist.get_rank()])
            local = slice(start, start + b)
            pooled = gather_with_grad(pooled, sizes=sizes)
            m = gather_nograd(m, sizes=sizes)
        loss = _contrastive(pooled, anchors.to(work), m, tau, negatives, symmetric, reduction)
        return loss if local is None or reduction != "none" else loss[local]


def _check_gather(gather: object, negatives: str) -> bool:
    gather = check_bool(gather, "gather")
    if gather and negatives != "batch":
        raise ValueError(
            "`gather` must be False unless negatives='batch' (anchor negatives do not couple the "
            f"batch); got gather=True with negatives={negatives!r}."
        )
    return gather


def _contrastive(pooled, anchors, m, tau, negatives, symmetric, reduction):
    b, a, _ = pooled.shape
    z = _normalize(pooled)  # (B, A, D)
    an = _normalize(anchors)  # (A, D)
    eye = torch.eye(a, dtype=torch.bool, device=pooled.device)
    logits = torch.einsum("bmd,ad->bma", z, an) / tau  # (B, A, A): vector m vs anchor a
    if negatives == "anchors":
        lse = torch.logsumexp(logits, dim=-1)  # (B, A)
    else:
        zz = torch.einsum("bmd,ned->bmne", z, z) / tau  # (B, A, B, A)
        keep = m.view(1, 1, b, a) & ~eye.view(1, a, 1, a)  # other modality, valid
        zz = zz.masked_fill(~keep, float("-inf")).reshape(b, a, b * a)
        lse = torch.logsumexp(torch.cat([logits, zz], dim=-1), dim=-1)  # (B, A)
    pos = torch.diagonal(logits, dim1=1, dim2=2)  # (B, A)
    per = lse - pos  # (B, A)
    if symmetric:
        # reverse: anchor a chooses among the patient's valid vectors
        rev = logits.transpose(1, 2).masked_fill(~m.unsqueeze(1), float("-inf"))  # (B, a, m)
        per_rev = torch.logsumexp(rev, dim=-1) - pos  # (B, A)
        per = 0.5 * (per + per_rev)
    per = torch.where(m, per, torch.zeros_like(per))
    loss = per.sum(dim=-1)  # (B,)
    if a == 1:
        loss = pooled.sum(dim=(1, 2)) * 0 + anchors.sum() * 0
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    count = m.any(dim=-1).sum().clamp_min(1).to(loss.dtype)
    return loss.sum() / count


class DistinctContrastive(nn.Module):
    r"""Apart regulariser of TTA: shared projection head + :func:`distinct_contrastive_loss`.

    The shared projection head :math:`\phi` (Linear → LeakyReLU(0.1) → Linear, as TTA) lives
    in this module, so it is a *learnable* loss (like lightly's projection-head losses): put
    its parameters in the optimizer (they are registered as a submodule, so
    ``model.parameters()`` includes them when the loss is an attribute of the model). With
    ``dim=None`` there is no head and no parameter (:math:`\phi` = identity).

    Parameters
    ----------
    temperature : float, default 0.1
        :math:`\tau` (TTA: 0.1).
    negatives : {"anchors", "batch"}, default "anchors"
        See :func:`distinct_contrastive_loss`.
    dim : int, optional
        Feature size ``D``; builds :math:`\phi: D \to D` (TTA: 256). ``None``: no head.
    symmetric : bool, default False
        Add the anchor-to-vector direction.
    reduction : {"mean", "sum", "none"}, default "mean"
    gather : bool, default False
        With ``negatives="batch"``: take negatives from the global batch of all ranks, with
        gradients (see :func:`distinct_contrastive_loss`). The head runs on local rows first.

    Raises
    ------
    ValueError, TypeError
        On an illegal hyper-parameter (at construction).

    Notes
    -----
    ``forward(pooled, anchors, mask=None)`` computes
    ``distinct_contrastive_loss(phi(pooled), anchors, ...)``. TTA pools by averaging the
    refined prototype tokens of each modality (``ModalityAnchors`` returns them as ``pooled``)
    and contrasts them with the raw anchors (not passed through :math:`\phi`).

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.losses import DistinctContrastive
    >>> loss_fn = DistinctContrastive(0.1, dim=8)
    >>> loss = loss_fn(torch.randn(4, 2, 8), torch.randn(2, 8))
    >>> loss.shape, bool(loss >= 0)
    (torch.Size([]), True)
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        negatives: Negatives = "anchors",
        dim: int | None = None,
        symmetric: bool = False,
        reduction: Reduction = "mean",
        gather: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.negatives = check_choice(negatives, _NEGATIVES, "negatives")
        self.symmetric = check_bool(symmetric, "symmetric")
        self.reduction = check_reduction(reduction)
        self.gather = _check_gather(gather, self.negatives)
        self.dim = None if dim is None else check_int(dim, "dim", minimum=1)
        self.head: nn.Module
        if self.dim is None:
            self.head = nn.Identity()
        else:
            self.head = nn.Sequential(
                nn.Linear(self.dim, self.dim), nn.LeakyReLU(0.1), nn.Linear(self.dim, self.dim)
            )

    def forward(self, pooled: Tensor, anchors: Tensor, mask: Tensor | None = None) -> Tensor:
        """Project ``pooled`` (B, A, D) with the head and apply the loss against ``anchors``.

        Parameters
        ----------
        pooled : Tensor, shape (B, A, D)
            Pooled modality vectors.
        anchors : Tensor, shape (A, D)
            Modality anchors.
        mask : Tensor of bool, shape (B, A), optional
            Present modalities.

        Returns
        -------
        Tensor, shape () or (B,)
            The loss, reduced as ``reduction``.
        """
        pooled = check_float(pooled, "pooled")
        check_ndim(pooled, 3, "pooled", "B, A, D")
        if self.dim is not None:
            if pooled.shape[-1] != self.dim:
                raise ValueError(
                    f"`pooled` must have D = {self.dim} features (the head's `dim`); "
                    f"got {tuple(pooled.shape)}."
                )
            check_params_dtype(pooled, "pooled", self.head[0].weight, "DistinctContrastive head")
            w = self.head[0].weight
            if pooled.device != w.device:
                raise ValueError(
                    f"`pooled` must be on the device of the DistinctContrastive head ({w.device}); "
                    f"got {pooled.device}."
                )
            if mask is not None:
                # missing modalities are zeroed before the head, so that whatever they hold
                # (NaN included) reaches neither the loss nor the head's gradients
                m = check_mask(mask, tuple(pooled.shape[:2]), "mask", pooled)
                pooled = torch.where(m.unsqueeze(-1), pooled, 0.0)
        return distinct_contrastive_loss(
            self.head(pooled),
            anchors,
            mask=mask,
            temperature=self.temperature,
            negatives=self.negatives,  # type: ignore[arg-type]
            symmetric=self.symmetric,
            reduction=self.reduction,
            gather=self.gather,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, negatives={self.negatives!r}, dim={self.dim}, "
            f"symmetric={self.symmetric}, reduction={self.reduction!r}, gather={self.gather}"
        )
