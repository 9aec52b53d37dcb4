"""Measures that reveal representation collapse (or its absence) and transport behaviour."""

from __future__ import annotations

import torch
from torch import Tensor

from minmaxfuse._checks import (
    check_bool,
    check_finite,
    check_float,
    check_has_data,
    check_mask,
    check_ndim,
    check_nonnegative_values,
    check_positive,
    check_same_device,
    reads_values,
)
from minmaxfuse._numerics import l2_normalize


def _check_points(x: object, name: str, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    x = check_float(x, name)
    check_ndim(x, 2, name, "N, D")
    m = check_mask(mask, (x.shape[0],), "mask", x)
    check_finite(x, name, m)
    return x, m


def _valid_rows(x: Tensor, m: Tensor, given: bool) -> Tensor:
    """Rows of ``x`` selected by the mask (a data-dependent shape, so not on the meta device)."""
    if not given:
        return x
    check_has_data(m, "mask", "the valid rows are selected by value")
    return x[m]


def _normalize(x: Tensor) -> Tensor:
    return l2_normalize(x, dim=-1)  # scale-safe: exact for any finite scale of the rows


def _work(x: Tensor) -> Tensor:
    """``x`` in at least float32 (half precision has no SVD/cdist kernels on every device)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _entropy(p: Tensor, dim: int = -1) -> Tensor:
    """``-sum p log p`` with ``0 log 0 = 0`` and a zero (not NaN) gradient at ``p = 0``."""
    pos = p > 0
    ps = torch.where(pos, p, torch.ones((), dtype=p.dtype, device=p.device))
    return -torch.where(pos, ps * torch.log(ps), 0.0).sum(dim=dim)


def effective_rank(x: Tensor, *, mask: Tensor | None = None, center: bool = True) -> Tensor:
    r"""Effective rank of a set of embeddings (Roy & Vetterli 2007).

    With singular values :math:`\sigma_j` of the (centred) embedding matrix and
    :math:`p_j = \sigma_j / \sum_l \sigma_l`,

    .. math:: \mathrm{erank}(X) = \exp\Big(-\sum_j p_j \log p_j\Big) \in [1, \min(N, D)].

    A value near 1 means the embeddings collapsed onto a line; ``min(N, D)`` means they use
    every direction equally.

    Parameters
    ----------
    x : Tensor, shape (N, D)
        Embeddings, one per row.
    mask : Tensor of bool, shape (N,), optional
        Rows to use (default all).
    center : bool, default True
        Subtract the mean row first (measures the spread, not the offset).

    Returns
    -------
    Tensor, shape ()
        The effective rank (1 for a single point or an all-zero matrix, by convention),
        computed and returned in at least float32 (float32 for half-precision ``x``). Zero
        singular values contribute nothing (:math:`0 \log 0 = 0`, with a zero gradient), so
        low-rank inputs have finite gradients.

    Raises
    ------
    ValueError, TypeError
        On a non-float or non-2-D ``x``, a malformed mask, or no valid row.

    References
    ----------
    .. [1] Roy, Vetterli (2007). The effective rank: a measure of effective dimensionality.
       EUSIPCO.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.diagnostics import effective_rank
    >>> round(float(effective_rank(torch.eye(4), center=False)), 4)
    4.0
    >>> float(effective_rank(torch.ones(5, 3)))
    1.0
    """
    x, m = _check_points(x, "x", mask)
    center = check_bool(center, "center")
    x = _work(_valid_rows(x, m, mask is not None))
    if x.shape[0] == 0:
        raise ValueError("`x` must have at least 1 valid row; got 0.")
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x) if x.numel() else x.new_zeros(1)  # D = 0: rank 1 by convention
    total = s.sum()
    # all singular values 0 gives p = 0, entropy 0 and rank 1, with no data-dependent branch
    p = s / torch.where(total > 0, total, torch.ones_like(total))
    return _entropy(p).exp()


def alignment(x: Tensor, y: Tensor, *, alpha: float = 2.0, normalize: bool = True) -> Tensor:
    r"""Alignment of positive pairs (Wang & Isola 2020): mean distance between paired points.

    .. math:: \mathcal{L}_\mathrm{align} = \frac{1}{N}\sum_i \lVert f(x_i) - f(y_i)\rVert_2^\alpha,

    with :math:`f` the L2 normalisation when ``normalize`` (as in the paper). Lower is more
    aligned; 0 means every pair coincides.

    Parameters
    ----------
    x, y : Tensor, shape (N, D)
        Paired embeddings (e.g. two modalities of the same patients).
    alpha : float, default 2.0
        Exponent > 0.
    normalize : bool, default True
        L2-normalise rows first.

    Returns
    -------
    Tensor, shape ()
        Pairs that coincide contribute 0 with a zero gradient (the gradient of
        :math:`d^\alpha` is infinite at :math:`d = 0` for :math:`\alpha < 1`).

    Raises
    ------
    ValueError, TypeError
        On shape mismatch, no rows, a non-positive ``alpha`` or a non-bool ``normalize``.

    References
    ----------
    .. [1] Wang, Isola (2020). Understanding contrastive representation learning through
       alignment and uniformity on the hypersphere. ICML.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.diagnostics import alignment
    >>> x = torch.randn(6, 3)
    >>> float(alignment(x, 2 * x))
    0.0
    """
    x, _ = _check_points(x, "x", None)
    y, _ = _check_points(y, "y", None)
    if x.shape != y.shape:
        raise ValueError(f"`y` must have the shape of `x` {tuple(x.shape)}; got {tuple(y.shape)}.")
    check_same_device([("x", x), ("y", y)])
    if x.shape[0] == 0:
        raise ValueError("`x` must have at least 1 valid row; got 0.")
    alpha = check_positive(alpha, "alpha")
    normalize = check_bool(normalize, "normalize")
    if normalize:
        x, y = _normalize(x), _normalize(y)
    d = torch.linalg.vector_norm(x - y, dim=-1)  # (N,)
    # d ** alpha with a zero gradient where d = 0 (it is infinite there for alpha < 1)
    pos = d > 0
    ds = torch.where(pos, d, torch.ones((), dtype=d.dtype, device=d.device))
    out = torch.where(pos, ds.pow(alpha), 0.0).mean()
    if reads_values(out) and not bool(torch.isfinite(out)):
        raise ValueError(
            f"`alpha` and the distances must give a finite alignment (d ** alpha overflows "
            f"{out.dtype}); got alpha={alpha} with distances up to {float(d.max()):.4g}."
        )
    return out


def uniformity(x: Tensor, *, t: float = 2.0, mask: Tensor | None = None) -> Tensor:
    r"""Uniformity on the hypersphere (Wang & Isola 2020).

    .. math:: \mathcal{L}_\mathrm{uniform} = \log \frac{2}{N(N-1)} \sum_{i<j}
              e^{-t \lVert f(x_i) - f(x_j)\rVert_2^2},

    with :math:`f` the L2 normalisation. Lower (more negative) is more uniform; 0 means every
    point is the same (collapse). Its minimum is about :math:`-t \cdot 2` for large ``D``.

    Parameters
    ----------
    x : Tensor, shape (N, D)
        Embeddings; rows are L2-normalised inside.
    t : float, default 2.0
        Gaussian potential scale > 0.
    mask : Tensor of bool, shape (N,), optional
        Rows to use; at least 2 are needed.

    Returns
    -------
    Tensor, shape ()
        Computed and returned in at least float32 (float32 for half-precision ``x``, whose
        range could not hold e.g. ``-t * 4`` for large ``t``).

    Raises
    ------
    ValueError
        If fewer than 2 valid rows are given, or on malformed input.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.diagnostics import uniformity
    >>> float(uniformity(torch.ones(4, 3)))
    0.0
    >>> float(uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])))
    -8.0
    """
    x, m = _check_points(x, "x", mask)
    t = check_positive(t, "t")
    x = _normalize(_work(_valid_rows(x, m, mask is not None)))
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"`x` must have at least 2 valid rows for uniformity; got {n}.")
    iu = torch.triu_indices(n, n, offset=1, device=x.device)
    diff = x[iu[0]] - x[iu[1]]  # (N (N - 1) / 2, D): smooth in x, also for coinciding points
    vals = -t * (diff * diff).sum(dim=-1)
    return torch.logsumexp(vals, dim=0) - torch.log(x.new_tensor(float(vals.numel())))


def modality_gap(x: Tensor, y: Tensor, *, normalize: bool = True) -> Tensor:
    r"""Modality gap (Liang et al. 2022): distance between the centroids of two embedding sets.

    .. math:: \Delta = \Big\lVert \frac1{N_x}\sum_i f(x_i) - \frac1{N_y}\sum_j f(y_j)\Big\rVert_2,

    with :math:`f` the L2 normalisation when ``normalize``. 0 means the two modalities occupy
    the same region (on average); a large gap means they stay apart.

    Parameters
    ----------
    x : Tensor, shape (N_x, D)
    y : Tensor, shape (N_y, D)
        Embeddings of two modalities (need not be paired).
    normalize : bool, default True
        L2-normalise rows first.

    Returns
    -------
    Tensor, shape ()

    Raises
    ------
    ValueError
        If the feature sizes differ or a set has no rows.

    References
    ----------
    .. [1] Liang, Zhang, Kwon, Yeung, Zou (2022). Mind the gap: understanding the modality gap
       in multi-modal contrastive representation learning. NeurIPS.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.diagnostics import modality_gap
    >>> float(modality_gap(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])))
    1.4142...
    """
    x, _ = _check_points(x, "x", None)
    y, _ = _check_points(y, "y", None)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"`y` must have D = {x.shape[-1]} features like `x`; got {y.shape[-1]}.")
    check_same_device([("x", x), ("y", y)])
    for name, t in (("x", x), ("y", y)):
        if t.shape[0] == 0:
            raise ValueError(f"`{name}` must have at least 1 valid row; got 0.")
    normalize = check_bool(normalize, "normalize")
    if normalize:
        x, y = _normalize(x), _normalize(y)
    return (x.mean(dim=0) - y.mean(dim=0)).norm()


def _check_plan(plan: object, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    plan = check_float(plan, "plan")
    check_ndim(plan, 3, "plan", "B, N, K")
    m = check_mask(mask, tuple(plan.shape[:2]), "mask", plan)
    check_finite(plan, "plan", m)
    check_nonnegative_values(plan, "plan", m)
    return plan, m


def prototype_usage_entropy(
    plan: Tensor, *, mask: Tensor | None = None, normalize: bool = True
) -> Tensor:
    r"""Entropy of how much mass the prototypes receive, per bag.

    With usage :math:`u_k = \sum_i Q_{ik} / \sum_{i,l} Q_{il}` over the valid tokens of a bag,

    .. math:: H = -\sum_k u_k \log u_k \quad (\text{divided by } \log K \text{ if normalize}).

    1 (normalised) means every prototype is used equally; 0 means all mass goes to one
    prototype (prototype collapse).

    Parameters
    ----------
    plan : Tensor, shape (B, N, K)
        Non-negative token-to-prototype weights (a transport plan or soft assignments).
    mask : Tensor of bool, shape (B, N), optional
        Valid tokens (default all).
    normalize : bool, default True
        Divide by :math:`\log K` (``K = 1`` gives 0).

    Returns
    -------
    Tensor, shape (B,)
        0 for a bag without mass.

    Raises
    ------
    ValueError, TypeError
        On a malformed plan or mask, ``K = 0``, or NaN/Inf/negative entries in valid rows.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.diagnostics import prototype_usage_entropy
    >>> prototype_usage_entropy(torch.ones(2, 5, 4)).tolist()
    [1.0, 1.0]
    """
    plan, m = _check_plan(plan, mask)
    normalize = check_bool(normalize, "normalize")
    k = plan.shape[-1]
    if k == 0:
        raise ValueError(f"`plan` must have K >= 1 prototypes; got {tuple(plan.shape)}.")
    plan = torch.where(m.unsqueeze(-1), plan, 0.0)  # padded rows may hold anything
    # divide by the bag's largest entry first (a constant for autograd; the usage fractions do
    # not depend on it), so that sums of huge entries cannot overflow
    scale = plan.detach().amax(dim=(1, 2), keepdim=True) if plan.shape[1] else None
    if scale is not None:
        plan = plan / torch.where(scale > 0, scale, torch.ones_like(scale))
    usage = plan.sum(dim=1)  # (B, K)
    tot = usage.sum(dim=-1, keepdim=True)
    p = usage / tot.clamp_min(torch.finfo(plan.dtype).tiny)
    h = _entropy(p)  # (B,)
    if normalize:
        h = h / torch.log(plan.new_tensor(float(k))) if k > 1 else h * 0
    return h


def token_transport_mass(
    plan: Tensor, *, mask: Tensor | None = None, relative: bool = True
) -> Tensor:
    r"""Mass each token sends to the prototypes (its row sum of the plan).

    With a partial plan (mass :math:`\rho < 1`, the rest sent to a sink) the row sums act as
    per-token confidence: tokens the solver finds costly keep little
    mass (as in TTA's partial transport).

    Parameters
    ----------
    plan : Tensor, shape (B, N, K)
        Transport plan without the sink column.
    mask : Tensor of bool, shape (B, N), optional
        Valid tokens; padded tokens get 0.
    relative : bool, default True
        Multiply by the number of valid tokens of the bag, so that a token sending its full
        uniform share :math:`1/N` gets 1.

    Returns
    -------
    Tensor, shape (B, N)

    Raises
    ------
    ValueError, TypeError
        On a malformed plan or mask, or NaN/Inf/negative entries in valid rows.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.diagnostics import token_transport_mass
    >>> token_transport_mass(torch.full((1, 2, 4), 0.125)).tolist()
    [[1.0, 1.0]]
    """
    plan, m = _check_plan(plan, mask)
    relative = check_bool(relative, "relative")
    mass = torch.where(m, plan.sum(dim=-1), 0.0)  # (B, N); padded rows may hold anything
    if relative:
        mass = mass * m.sum(dim=-1, keepdim=True).to(plan.dtype)
    return mass
