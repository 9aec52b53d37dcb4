"""Survival losses: discrete-time hazard NLL and the Cox partial likelihood with ties."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from minmaxfuse._checks import (
    Reduction,
    autocast_off,
    check_bool,
    check_choice,
    check_finite,
    check_float,
    check_in_range,
    check_ndim,
    check_positive,
    check_reduction,
    check_same_device,
    check_shape,
    check_tensor,
    reads_values,
)
from minmaxfuse.distributed import batch_sizes, gather_nograd, gather_with_grad, is_distributed

__all__ = [
    "CoxPHLoss",
    "NLLSurvLoss",
    "cox_ph_loss",
    "hazards",
    "nll_surv_loss",
    "risk_from_logits",
    "survival_curve",
]

_TIES = ("efron", "breslow")


# --------------------------------------------------------------------------------------------
# validation helpers


def _check_event(event: object, n: int) -> Tensor:
    event = check_tensor(event, "event")
    if event.dtype != torch.bool:
        raise TypeError(
            f"`event` must be a bool tensor (True = event observed, False = censored); got dtype "
            f"{event.dtype}. Convert a censorship column c with `event = c == 0`."
        )
    return check_shape(event, (n,), "event", "B")


def _check_weight(weight: object, like: Tensor, like_name: str) -> Tensor | None:
    if weight is None:
        return None
    weight = check_float(weight, "weight")
    check_shape(weight, tuple(like.shape), "weight", "B")
    check_same_device([(like_name, like), ("weight", weight)])
    if reads_values(weight) and bool((weight < 0).any() | ~torch.isfinite(weight).all()):
        raise ValueError("`weight` must be finite and >= 0; got a negative or non-finite entry.")
    return weight


# --------------------------------------------------------------------------------------------
# discrete-time hazard model


def _check_logits(logits: object) -> Tensor:
    logits = check_float(logits, "logits")
    check_ndim(logits, 2, "logits", "B, T")
    if logits.shape[1] < 1:
        raise ValueError(f"`logits` must have at least one time bin (T >= 1); got {logits.shape}.")
    return logits


def hazards(logits: Tensor) -> Tensor:
    r"""Discrete-time hazards :math:`h_t = \sigma(\text{logit}_t)`, conditional event probabilities.

    Parameters
    ----------
    logits : Tensor, shape (B, T)
        One logit per patient and time bin.

    Returns
    -------
    Tensor, shape (B, T)
        :math:`h_{bt} = P(T_b = t \mid T_b \geq t)`, same dtype and device as ``logits``.

    Raises
    ------
    TypeError
        If ``logits`` is not a floating-point tensor.
    ValueError
        If ``logits`` is not two-dimensional or holds NaN/Inf.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.survival import hazards
    >>> hazards(torch.zeros(1, 3))
    tensor([[0.5000, 0.5000, 0.5000]])
    """
    return torch.sigmoid(check_finite(_check_logits(logits), "logits"))


def survival_curve(logits: Tensor) -> Tensor:
    r"""Survival probabilities :math:`S_t = \prod_{j \le t} (1 - h_j)` from hazard logits.

    Computed in log space, :math:`\log S_t = \sum_{j \le t} \log\sigma(-\text{logit}_j)`, so that
    saturated logits give exact zeros/ones rather than rounding noise; half-precision logits are
    accumulated in float32 with autocast off and the result is cast back to their dtype.

    Parameters
    ----------
    logits : Tensor, shape (B, T)
        Hazard logits.

    Returns
    -------
    Tensor, shape (B, T)
        :math:`S_{bt} = P(T_b > t)`, non-increasing along ``T``.

    Raises
    ------
    TypeError
        If ``logits`` is not a floating-point tensor.
    ValueError
        If ``logits`` is not two-dimensional or holds NaN/Inf.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.survival import survival_curve
    >>> survival_curve(torch.zeros(1, 3))
    tensor([[0.5000, 0.2500, 0.1250]])
    """
    logits = check_finite(_check_logits(logits), "logits")
    wd = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
    with autocast_off(logits):
        log_s = torch.cumsum(F.logsigmoid(-logits.to(wd)), dim=1)
        return torch.exp(log_s).to(logits.dtype)


def risk_from_logits(logits: Tensor) -> Tensor:
    r"""Risk score of the discrete-time model: :math:`r_b = -\sum_t S_{bt}` (higher = worse).

    This is the convention of MCAT, MOTCat, CMTA, SurvPath and MMP (the negative expected number
    of survived bins), the score that their published C-indices are computed from.

    Parameters
    ----------
    logits : Tensor, shape (B, T)
        Hazard logits.

    Returns
    -------
    Tensor, shape (B,)
        Risk scores in :math:`[-T, 0]`.

    Raises
    ------
    TypeError
        If ``logits`` is not a floating-point tensor.
    ValueError
        If ``logits`` is not two-dimensional or holds NaN/Inf.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.survival import risk_from_logits
    >>> risk_from_logits(torch.tensor([[-5.0, -5.0], [5.0, 5.0]]))
    tensor([-1.9800, -0.0067])
    """
    logits = check_finite(_check_logits(logits), "logits")
    wd = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
    with autocast_off(logits):
        return (-survival_curve(logits.to(wd)).sum(dim=1)).to(logits.dtype)


def nll_surv_loss(
    logits: Tensor,
    time_bin: Tensor,
    event: Tensor,
    *,
    alpha: float = 0.0,
    reduction: Reduction = "mean",
    weight: Tensor | None = None,
    eps: float | None = None,
) -> Tensor:
    r"""Negative log-likelihood of the discrete-time hazard model (Zadeh & Schmid 2020).

    Parameters
    ----------
    logits : Tensor, shape (B, T)
        Hazard logits, :math:`h_{bt} = \sigma(\text{logits}_{bt})`.
    time_bin : Tensor, shape (B,)
        Integer (``long``) index in ``[0, T)`` of the bin holding each patient's time of event or
        censoring (see :func:`assign_time_bins`).
    event : Tensor, shape (B,)
        Bool, ``True`` when the event was observed, ``False`` when censored.
    alpha : float, default 0.0
        In ``[0, 1]``. The censored term is scaled by ``1 - alpha``, which up-weights uncensored
        patients relative to censored ones (MCAT's ``alpha_surv``; 0 in its published runs).
    reduction : {"none", "mean", "sum"}, default "mean"
        ``"mean"`` averages over patients (MCAT, SurvPath's sum / batch).
    weight : Tensor, shape (B,), optional
        Non-negative per-patient weights; ``"mean"`` then divides by their sum.
    eps : float, optional
        ``None`` (default) computes everything in log space from the logits, exactly.
        A float reproduces the MCAT implementation, which works on probabilities and clamps
        them below at ``eps`` (MCAT uses ``1e-7``); only useful to match published losses.

    Returns
    -------
    Tensor
        Shape ``()`` for ``"mean"``/``"sum"``, ``(B,)`` for ``"none"``, in the dtype of
        ``logits`` (float16/bfloat16 input is computed with autocast off and returned in
        float32, like torch's own losses under autocast).

    Raises
    ------
    TypeError
        If ``logits`` is not floating point, ``time_bin`` is not an integer tensor or ``event`` is
        not bool.
    ValueError
        On shape mismatches, a ``time_bin`` outside ``[0, T)``, non-finite logits, an ``alpha``
        outside ``[0, 1]`` or an unknown ``reduction``.

    Notes
    -----
    With :math:`y_b` the bin and :math:`\delta_b` the event indicator,

    .. math::

        \log S_{b,t} = \sum_{j \le t} \log\sigma(-\ell_{bj}), \qquad
        \log h_{b,t} = \log\sigma(\ell_{bt}),

    .. math::

        L_b = -\delta_b \left(\log S_{b, y_b - 1} + \log h_{b, y_b}\right)
              - (1 - \alpha)(1 - \delta_b) \log S_{b, y_b},

    with :math:`\log S_{b,-1} = 0`. The uncensored term is :math:`-\log P(T = y_b)`, the censored
    term :math:`-\log P(T > y_b)`; this equals MCAT's
    ``(1 - alpha) * (censored + uncensored) + alpha * uncensored``.
    The loss is non-negative.

    References
    ----------
    .. [1] S. G. Zadeh and M. Schmid, "Bias in cross-entropy-based training of deep survival
       networks", IEEE TPAMI 43(9), 2020.
    .. [2] R. J. Chen et al., "Multimodal co-attention transformer for survival prediction in
       gigapixel whole slide images" (MCAT), ICCV 2021.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.survival import nll_surv_loss
    >>> logits = torch.zeros(2, 4, requires_grad=True)
    >>> loss = nll_surv_loss(logits, torch.tensor([1, 3]), torch.tensor([True, False]))
    >>> round(loss.item(), 4)  # (2 log 2 + 4 log 2) / 2
    2.0794
    >>> loss.backward()
    """
    logits = _check_logits(logits)
    B, T = logits.shape
    time_bin = check_tensor(time_bin, "time_bin")
    if time_bin.dtype.is_floating_point or time_bin.dtype in (torch.bool, torch.complex64):
        raise TypeError(f"`time_bin` must be an integer (long) tensor; got dtype {time_bin.dtype}.")
    check_shape(time_bin, (B,), "time_bin", "B")
    event = _check_event(event, B)
    check_same_device([("logits", logits), ("time_bin", time_bin), ("event", event)])
    alpha = check_in_range(alpha, "alpha", 0.0, 1.0)
    reduction = check_reduction(reduction)
    weight = _check_weight(weight, logits[:, 0], "logits")
    if reads_values(time_bin) and B:
        lo, hi = int(time_bin.min()), int(time_bin.max())
        if lo < 0 or hi >= T:
            raise ValueError(
                f"`time_bin` must lie in [0, {T}) (T = logits.shape[1]); got [{lo}, {hi}]."
            )
    check_finite(logits, "logits")
    if eps is not None:
        eps = check_positive(eps, "eps")
    # autocast off; half precision is computed (and returned) in float32
    wd = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
    with autocast_off(logits):
        logits = logits.to(wd)
        weight = None if weight is None else weight.to(wd)
        return _nll_core(logits, time_bin, event, alpha, reduction, weight, eps)


def _nll_core(logits, time_bin, event, alpha, reduction, weight, eps):
    """Validated discrete-time NLL."""
    y = time_bin.long().unsqueeze(1)  # (B, 1)
    ev = event.to(logits.dtype)
    if eps is None:
        log_surv = torch.cumsum(F.logsigmoid(-logits), dim=1)  # (B, T): log S_t
        log_surv_pad = F.pad(log_surv, (1, 0))  # (B, T+1): log S_{t-1}, S_{-1} = 1
        log_h = F.logsigmoid(logits).gather(1, y).squeeze(1)
        log_s_before = log_surv_pad.gather(1, y).squeeze(1)
        log_s_at = log_surv_pad.gather(1, y + 1).squeeze(1)
    else:
        h = torch.sigmoid(logits)
        s = torch.cumprod(1 - h, dim=1)
        s_pad = torch.cat([torch.ones_like(s[:, :1]), s], dim=1)
        log_h = h.gather(1, y).squeeze(1).clamp_min(eps).log()
        log_s_before = s_pad.gather(1, y).squeeze(1).clamp_min(eps).log()
        log_s_at = s_pad.gather(1, y + 1).squeeze(1).clamp_min(eps).log()
    uncensored = -ev * (log_s_before + log_h)
    censored = -(1 - ev) * log_s_at
    loss = uncensored + (1.0 - alpha) * censored  # (B,)
    return _reduce(loss, reduction, weight, denom_mask=None)


def _reduce(loss: Tensor, reduction: str, weight: Tensor | None, denom_mask: Tensor | None):
    """Reduce per-sample terms; ``"mean"`` divides by the (weighted) count of ``denom_mask``."""
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if denom_mask is None:
        count = weight.sum() if weight is not None else loss.new_tensor(float(loss.numel()))
    else:
        m = denom_mask.to(loss.dtype)
        count = (weight * m).sum() if weight is not None else m.sum()
    return total / count.clamp_min(torch.finfo(loss.dtype).tiny)


class NLLSurvLoss(nn.Module):
    """Discrete-time hazard negative log-likelihood. See :func:`nll_surv_loss`.

    Parameters
    ----------
    alpha : float, default 0.0
        Up-weighting of uncensored patients (censored term scaled by ``1 - alpha``).
    reduction : {"none", "mean", "sum"}, default "mean"
        Reduction over patients.
    eps : float, optional
        ``None`` for the exact log-space loss; a float for MCAT's clamped probability version.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse import NLLSurvLoss
    >>> loss_fn = NLLSurvLoss()
    >>> logits = torch.randn(8, 4, requires_grad=True)
    >>> time_bin = torch.randint(0, 4, (8,))
    >>> event = torch.rand(8) < 0.5
    >>> loss_fn(logits, time_bin, event).shape
    torch.Size([])
    """

    def __init__(
        self, alpha: float = 0.0, reduction: Reduction = "mean", eps: float | None = None
    ) -> None:
        super().__init__()
        self.alpha = check_in_range(alpha, "alpha", 0.0, 1.0)
        self.reduction = check_reduction(reduction)
        self.eps = None if eps is None else check_positive(eps, "eps")

    def forward(
        self, logits: Tensor, time_bin: Tensor, event: Tensor, weight: Tensor | None = None
    ) -> Tensor:
        """Compute the loss; see :func:`nll_surv_loss` for shapes."""
        return nll_surv_loss(
            logits,
            time_bin,
            event,
            alpha=self.alpha,
            reduction=self.reduction,
            weight=weight,
            eps=self.eps,
        )

    def extra_repr(self) -> str:  # noqa: D102
        return f"alpha={self.alpha}, reduction={self.reduction!r}, eps={self.eps}"


# --------------------------------------------------------------------------------------------
# Cox proportional hazards


def _segment_logsumexp(values: Tensor, seg: Tensor, n_seg: int, keep: Tensor) -> Tensor:
    """``log sum exp(values)`` over entries with ``keep`` inside each segment (0 if none)."""
    neg_inf = torch.full((n_seg,), float("-inf"), dtype=values.dtype, device=values.device)
    masked = torch.where(keep, values, torch.full_like(values, float("-inf")))
    seg_max = neg_inf.scatter_reduce(0, seg, masked.detach(), reduce="amax", include_self=True)
    shift = torch.where(torch.isfinite(seg_max), seg_max, torch.zeros_like(seg_max))
    # exponentiate only kept entries (a dropped entry far above the kept ones would overflow and
    # poison the gradient of torch.where with inf * 0)
    safe = torch.where(keep, values - shift[seg], torch.zeros_like(values))
    sums = torch.zeros_like(neg_inf).scatter_add(
        0, seg, torch.where(keep, torch.exp(safe), torch.zeros_like(values))
    )
    return torch.log(torch.where(sums > 0, sums, torch.ones_like(sums))) + shift


def cox_ph_loss(
    log_risk: Tensor,
    time: Tensor,
    event: Tensor,
    *,
    ties: str = "efron",
    reduction: Reduction = "mean",
    weight: Tensor | None = None,
    gather: bool = False,
) -> Tensor:
    r"""Negative Cox partial log-likelihood with exact Breslow or Efron handling of ties.

    Parameters
    ----------
    log_risk : Tensor, shape (B,)
        Log relative hazard :math:`\eta_b` (higher = worse); any real value.
    time : Tensor, shape (B,)
        Non-negative times of event or censoring (float or integer).
    event : Tensor, shape (B,)
        Bool, ``True`` when the event was observed.
    ties : {"efron", "breslow"}, default "efron"
        How events that share a time are handled.
    reduction : {"none", "mean", "sum"}, default "mean"
        ``"mean"`` divides the summed negative log-likelihood by the number of events (the
        weighted number when ``weight`` is given); ``"none"`` returns each patient's term (zero
        for censored patients; tied events share their group's terms equally).
    weight : Tensor, shape (B,), optional
        Non-negative per-patient weights multiplying each event's term. Risk sets are not
        weighted.
    gather : bool, default False
        Under :mod:`torch.distributed` with more than one rank, gather ``log_risk`` (with
        gradients), ``time``, ``event`` and ``weight`` from every rank first, so that risk sets
        and the ``"mean"`` denominator span the global batch (shards may differ in size). Every
        rank then returns the loss of the concatenated batch (``"none"``: this rank's rows of
        it). Without a process group this flag changes nothing. All ranks must pass the same
        value. See Notes for the gradient convention.

    Returns
    -------
    Tensor
        Shape ``()`` for ``"mean"``/``"sum"``, ``(B,)`` for ``"none"``; dtype of ``log_risk``
        (float64 stays float64; float16/bfloat16 input is computed and returned in float32,
        like torch's own losses under autocast). A batch without any event returns a zero that
        is still connected to the graph of ``log_risk``.

    Raises
    ------
    TypeError
        If ``log_risk`` is not floating point, ``time`` is not a real tensor, ``event`` is not
        bool or ``gather`` is not a bool.
    ValueError
        On shape or device mismatches, non-finite values, negative times or unknown options.
        Times of 0 are valid.

    Notes
    -----
    Let :math:`t_1 < \dots < t_J` be the distinct event times, :math:`D_j` the events at
    :math:`t_j` (:math:`d_j = |D_j|`) and :math:`R_j = \{b : \text{time}_b \ge t_j\}` the risk
    set, which includes patients censored at :math:`t_j` and all tied events. With
    :math:`r_b = e^{\eta_b}`, the Breslow log-likelihood is

    .. math::

        \ell = \sum_j \Big[\sum_{b \in D_j} \eta_b - d_j \log \sum_{b \in R_j} r_b\Big]

    and Efron's is

    .. math::

        \ell = \sum_j \Big[\sum_{b \in D_j} \eta_b - \sum_{l=0}^{d_j - 1}
        \log\Big(\sum_{b \in R_j} r_b - \frac{l}{d_j} \sum_{b \in D_j} r_b\Big)\Big].

    Both coincide without ties. Risk-set sums are log-cumulative-sum-exps over patients sorted
    by decreasing time, and the Efron correction is applied as
    :math:`\log R + \operatorname{log1p}(-\tfrac{l}{d} e^{\log D - \log R})`, so the loss is
    finite for log-risks of any magnitude and invariant to adding a constant to ``log_risk``.
    The loss is :math:`-\ell / \sum_b \delta_b` for ``"mean"``.

    With ``gather=True`` every rank computes the same global loss :math:`L`; the backward of the
    gather sums the gradients of all ranks' copies, so each rank's ``log_risk`` receives
    :math:`W \, \partial L / \partial \eta` (:math:`W` = world size). DistributedDataParallel
    averages parameter gradients over ranks, which divides by :math:`W` again: the parameters
    receive exactly the gradient of the single-process loss on the concatenated batch. (With
    ``"none"``, DDP likewise yields the gradient of the mean over ranks of what each rank
    back-propagates; see :mod:`minmaxfuse.distributed`.) The gather costs one size exchange
    (a host synchronisation) and four ``all_gather`` calls.

    The computation runs with autocast disabled, in float32 at least.

    References
    ----------
    .. [1] D. R. Cox, "Regression models and life-tables", JRSS-B 34(2), 1972.
    .. [2] N. E. Breslow, "Covariance analysis of censored survival data", Biometrics 30, 1974.
    .. [3] B. Efron, "The efficiency of Cox's likelihood function for censored data", JASA 72,
       1977.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.survival import cox_ph_loss
    >>> log_risk = torch.tensor([0.5, -0.2, 0.1, 0.0], dtype=torch.float64, requires_grad=True)
    >>> time = torch.tensor([1.0, 2.0, 2.0, 3.0], dtype=torch.float64)
    >>> event = torch.tensor([True, True, True, False])
    >>> loss = cox_ph_loss(log_risk, time, event, ties="efron")
    >>> loss.dtype
    torch.float64
    >>> loss.backward()
    """
    log_risk = check_float(log_risk, "log_risk")
    if log_risk.ndim != 1:
        hint = " (use `.squeeze(-1)` on a (B, 1) model output)" if log_risk.ndim == 2 else ""
        raise ValueError(f"`log_risk` must have shape (B,){hint}; got {tuple(log_risk.shape)}.")
    B = log_risk.shape[0]
    time = check_tensor(time, "time")
    if time.dtype in (torch.bool,) or time.is_complex():
        raise TypeError(f"`time` must be a real (float or integer) tensor; got dtype {time.dtype}.")
    check_shape(time, (B,), "time", "B")
    event = _check_event(event, B)
    check_same_device([("log_risk", log_risk), ("time", time), ("event", event)])
    ties = check_choice(ties, _TIES, "ties")
    reduction = check_reduction(reduction)
    weight = _check_weight(weight, log_risk, "log_risk")
    gather = check_bool(gather, "gather")
    check_finite(log_risk, "log_risk")
    if time.is_floating_point():
        check_finite(time, "time")
    if reads_values(time) and B and bool((time < 0).any()):
        raise ValueError(f"`time` must be >= 0; got a minimum of {float(time.min())}.")

    # autocast off; half precision is computed (and returned) in float32
    wd = log_risk.dtype if log_risk.dtype in (torch.float32, torch.float64) else torch.float32
    with autocast_off(log_risk):
        log_risk = log_risk.to(wd)
        local = None
        if gather and is_distributed():
            sizes = batch_sizes(B, log_risk.device)
            start = sum(sizes[: dist.get_rank()])
            local = slice(start, start + B)
            log_risk = gather_with_grad(log_risk, sizes=sizes)
            time = gather_nograd(time, sizes=sizes)
            event = gather_nograd(event, sizes=sizes)
            weight = None if weight is None else gather_nograd(weight, sizes=sizes)
        out = _cox_core(log_risk, time, event, ties, reduction, weight)
        return out if local is None or reduction != "none" else out[local]


def _cox_core(
    log_risk: Tensor, time: Tensor, event: Tensor, ties: str, reduction: str, weight: Tensor | None
) -> Tensor:
    """Validated Cox loss on one (possibly gathered) batch."""
    B = log_risk.shape[0]
    if weight is not None:
        weight = weight.to(log_risk.dtype)
    if B == 0:
        zero = log_risk * 0
        return zero if reduction == "none" else zero.sum()
    # no host sync on "any event?": without events every term below is masked to zero and the
    # mean divides 0 by a clamped count, which gives the graph-connected zero

    # sort by decreasing time; group equal times
    order = torch.argsort(time, descending=True, stable=True)
    eta = log_risk[order]
    ev = event[order]
    t_sorted = time[order]
    # group equal times without torch.unique_consecutive (its output size needs a host sync on
    # CUDA): B segment slots, of which the trailing ones stay empty and are never read
    new_group = torch.ones_like(ev)
    new_group[1:] = t_sorted[1:] != t_sorted[:-1]
    seg = torch.cumsum(new_group.long(), 0) - 1  # (B,) group index of each sorted patient
    n_seg = B
    counts = torch.zeros(B, dtype=torch.long, device=eta.device).scatter_add(
        0, seg, torch.ones_like(seg)
    )
    last = (torch.cumsum(counts, 0) - 1).clamp_min(0)  # last position of each time group
    log_risk_set = torch.logcumsumexp(eta, dim=0)[last]  # (n_seg,) log sum_{time >= t} r
    d = torch.zeros(n_seg, dtype=eta.dtype, device=eta.device).scatter_add(0, seg, ev.to(eta.dtype))
    log_r = log_risk_set[seg]  # (B,) per sorted patient
    if ties == "breslow":
        term = log_r
    else:
        log_d = _segment_logsumexp(eta, seg, n_seg, ev)  # log sum of r over the tied events
        # rank l of each event inside its group (0 .. d-1), its Efron term, then the group mean
        ev_l = ev.long()
        before = torch.cumsum(ev_l, 0) - ev_l
        first = (last - counts + 1).clamp_max(B - 1)  # (empty slots: clamped, unused)
        rank = torch.where(ev, before - before[first][seg], 0).to(eta.dtype)
        ratio = torch.exp(torch.where(ev, log_d[seg] - log_r, torch.zeros_like(log_r)))
        d_b = d[seg].clamp_min(1.0)
        efron = log_r + torch.log1p(-(rank / d_b) * ratio)
        efron = torch.where(ev, efron, torch.zeros_like(efron))
        group_sum = torch.zeros_like(d).scatter_add(0, seg, efron)
        term = (group_sum / d.clamp_min(1.0))[seg]
    per_sorted = torch.where(ev, term - eta, torch.zeros_like(eta))  # (B,) in sorted order
    per_patient = torch.empty_like(per_sorted).scatter(0, order, per_sorted)
    return _reduce(per_patient, reduction, weight, denom_mask=event)


class CoxPHLoss(nn.Module):
    """Negative Cox partial log-likelihood with ties. See :func:`cox_ph_loss`.

    Parameters
    ----------
    ties : {"efron", "breslow"}, default "efron"
        Tie handling.
    reduction : {"none", "mean", "sum"}, default "mean"
        ``"mean"`` divides by the number of events.
    gather : bool, default False
        Risk sets over the global batch under :mod:`torch.distributed` (see
        :func:`cox_ph_loss`).

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse import CoxPHLoss
    >>> loss_fn = CoxPHLoss(ties="breslow")
    >>> log_risk = torch.randn(16, requires_grad=True)
    >>> time = torch.rand(16)
    >>> event = torch.rand(16) < 0.6
    >>> loss_fn(log_risk, time, event).shape
    torch.Size([])
    """

    def __init__(
        self, ties: str = "efron", reduction: Reduction = "mean", *, gather: bool = False
    ) -> None:
        super().__init__()
        self.ties = check_choice(ties, _TIES, "ties")
        self.reduction = check_reduction(reduction)
        self.gather = check_bool(gather, "gather")

    def forward(
        self, log_risk: Tensor, time: Tensor, event: Tensor, weight: Tensor | None = None
    ) -> Tensor:
        """Compute the loss; see :func:`cox_ph_loss` for shapes."""
        return cox_ph_loss(
            log_risk,
            time,
            event,
            ties=self.ties,
            reduction=self.reduction,
            weight=weight,
            gather=self.gather,
        )

    def extra_repr(self) -> str:  # noqa: D102
        return f"ties={self.ties!r}, reduction={self.reduction!r}, gather={self.gather}"
