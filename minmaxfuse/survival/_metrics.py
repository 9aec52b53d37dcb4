"""Survival metrics in numpy float64: C-indices, time-dependent AUC, Brier score, KM, log-rank.

Every function takes keyword-only arrays (numpy arrays or tensors, which are detached and
copied to the host): ``event`` (bool, True = event observed), ``time`` (>= 0) and ``risk``
(higher = worse) or ``surv`` (predicted survival probabilities). Keyword-only arguments rule out
the argument-order and sign mix-ups between scikit-survival ``(event, time, risk)`` and lifelines
``(time, -risk, event)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from minmaxfuse._checks import as_int, as_real, check_bool
from minmaxfuse.survival._stats import (
    as_event,
    as_risk,
    as_surv_matrix,
    as_time,
    chi2_sf,
    harrell_counts,
    km_curve,
    step_eval,
)

__all__ = [
    "BootstrapResult",
    "ConcordanceResult",
    "KaplanMeierResult",
    "LogRankResult",
    "TimeDependentAUC",
    "bootstrap_ci",
    "brier_score",
    "concordance_index",
    "concordance_index_ipcw",
    "cumulative_dynamic_auc",
    "integrated_brier_score",
    "kaplan_meier",
    "logrank_test",
]

ArrayLike = np.ndarray | Tensor


class ConcordanceResult(NamedTuple):
    """C-index with its pair counts (the tuple scikit-survival returns)."""

    cindex: float
    """The concordance index."""
    concordant: int
    """Number of comparable pairs ordered correctly (risk difference > ``tied_tol``)."""
    discordant: int
    """Number of comparable pairs ordered wrongly."""
    tied_risk: int
    """Number of comparable pairs whose risks differ by at most ``tied_tol`` (count 1/2)."""
    tied_time: int
    """Number of comparable (event, censored) pairs that share their time."""


class KaplanMeierResult(NamedTuple):
    """Kaplan-Meier estimate at the distinct observed times."""

    time: np.ndarray
    """Distinct times, ascending, shape (J,)."""
    survival: np.ndarray
    """Estimated :math:`P(T > t)` at each time, shape (J,)."""


class LogRankResult(NamedTuple):
    """Log-rank test of equal survival across groups."""

    statistic: float
    """Chi-square statistic."""
    p_value: float
    """Upper-tail chi-square probability with ``dof`` degrees of freedom."""
    dof: int
    """Degrees of freedom (number of groups - 1)."""
    groups: np.ndarray
    """Group labels, sorted."""
    observed: np.ndarray
    """Observed number of events per group."""
    expected: np.ndarray
    """Expected number of events per group under the null."""


class TimeDependentAUC(NamedTuple):
    """Cumulative/dynamic AUC at each time and its survival-weighted mean."""

    auc: np.ndarray
    """AUC at each of ``times``, shape (K,)."""
    mean_auc: float
    """Mean AUC over ``times`` weighted by the Kaplan-Meier drop of the test data."""


class BootstrapResult(NamedTuple):
    """Point estimate and percentile bootstrap confidence interval."""

    estimate: float
    """The metric on the full data."""
    low: float
    """Lower end of the interval."""
    high: float
    """Upper end of the interval."""
    n_valid: int
    """Resamples on which the metric was defined (others, e.g. without events, are dropped)."""


def _check_tol(tied_tol: float) -> float:
    v = as_real(tied_tol, "tied_tol")
    if not v >= 0:
        raise ValueError(f"`tied_tol` must be a number >= 0; got {tied_tol!r}.")
    return v


_NO_RISK = object()


def _inputs(event, time, risk=_NO_RISK):
    ev = as_event(event, "event")
    n = ev.shape[0]
    t = as_time(time, "time", n)
    if risk is None:
        raise TypeError("`risk` must be a numpy array or a torch.Tensor; got NoneType.")
    r = None if risk is _NO_RISK else as_risk(risk, "risk", n)
    return ev, t, r


def _cindex_from_counts(counts, weights, n_events: int, return_counts: bool):
    idx, n_con, n_tie, n_comp, n_tied_time = counts
    w = weights[idx]
    numerator = float(np.sum(w * n_con) + 0.5 * np.sum(w * n_tie))
    denominator = float(np.sum(w * n_comp))
    if int(n_comp.sum()) == 0:
        raise ValueError(
            "`time` and `event` give no comparable pair (every event is at the largest time, or "
            "tied only with other events), so the C-index is undefined."
        )
    if denominator == 0:
        raise ValueError(
            "`event` gives no comparable pair with a positive weight (all events at or after "
            "`tau`), so the C-index is undefined."
        )
    c = numerator / denominator
    if not return_counts:
        return c
    total = int(n_comp.sum())
    con, tie = int(n_con.sum()), int(n_tie.sum())
    return ConcordanceResult(c, con, total - con - tie, tie, int(n_tied_time.sum()))


def concordance_index(
    *,
    event: ArrayLike,
    time: ArrayLike,
    risk: ArrayLike,
    tied_tol: float = 1e-8,
    return_counts: bool = False,
) -> float | ConcordanceResult:
    r"""Harrell's concordance index, identical to scikit-survival's ``concordance_index_censored``.

    Parameters
    ----------
    event : ndarray or Tensor, shape (N,)
        Bool, ``True`` when the event was observed.
    time : ndarray or Tensor, shape (N,)
        Non-negative times of event or censoring (continuous times, not bins, for the
        published MCAT-style numbers).
    risk : ndarray or Tensor, shape (N,)
        Risk scores, higher = earlier event (e.g. :func:`risk_from_logits`).
    tied_tol : float, default 1e-8
        Risks with :math:`|r_i - r_j| \le` ``tied_tol`` count as tied.
    return_counts : bool, default False
        Return a :class:`ConcordanceResult` with the pair counts instead of the float.

    Returns
    -------
    float or ConcordanceResult
        The C-index in :math:`[0, 1]` (0.5 = random ordering).

    Raises
    ------
    TypeError
        If ``event`` is not bool or an array is not real.
    ValueError
        On length mismatches, NaN/Inf, negative times, fewer than two samples, no event, or no
        comparable pair (the C-index is then undefined; it is never returned as NaN).

    Notes
    -----
    A pair :math:`(i, j)` is comparable when :math:`\delta_i = 1` and either :math:`t_i < t_j`,
    or :math:`t_i = t_j` and :math:`\delta_j = 0` (an event is taken to precede a censoring at the
    same time); two events at the same time are not comparable. Then

    .. math::

        C = \frac{\sum_{(i,j)} \mathbb{1}[r_i > r_j + \tau] + \tfrac12
        \mathbb{1}[|r_i - r_j| \le \tau]}{\#\{\text{comparable pairs}\}}, \qquad
        \tau = \text{tied\_tol}.

    These are scikit-survival's rules (lifelines agrees when fed ``-risk``). The counts use a
    merge-sort tree over patients sorted by time: :math:`O(N \log^2 N)` time, :math:`O(N)`
    memory, fully vectorised, versus scikit-survival's :math:`O(N^2)` loop.

    References
    ----------
    .. [1] F. E. Harrell et al., "Multivariable prognostic models: issues in developing models,
       evaluating assumptions and adequacy, and measuring and reducing errors", Statistics in
       Medicine 15(4), 1996.

    Examples
    --------
    >>> import numpy as np
    >>> from minmaxfuse.survival import concordance_index
    >>> event = np.array([True, True, False, True])
    >>> time = np.array([1.0, 2.0, 2.0, 5.0])
    >>> risk = np.array([3.0, 2.0, 2.0, 0.5])
    >>> concordance_index(event=event, time=time, risk=risk)
    0.9
    >>> concordance_index(event=event, time=time, risk=risk, return_counts=True)
    ConcordanceResult(cindex=0.9, concordant=4, discordant=0, tied_risk=1, tied_time=1)
    """
    ev, t, r = _inputs(event, time, risk)
    tol = _check_tol(tied_tol)
    if ev.size < 2:
        raise ValueError(f"`event` must hold at least 2 samples; got {ev.size}.")
    if not ev.any():
        raise ValueError("`event` must contain at least one event; got all censored.")
    return_counts = check_bool(return_counts, "return_counts")
    counts = harrell_counts(ev, t, r, tol)
    return _cindex_from_counts(counts, np.ones(ev.size), int(ev.sum()), return_counts)


def _censoring_weights(
    train_event, train_time, event: np.ndarray, time: np.ndarray, use: np.ndarray
) -> np.ndarray:
    """``1 / G(t_i)`` for the events selected by ``use`` (0 elsewhere), G = censoring KM."""
    if (train_event is None) != (train_time is None):
        raise ValueError("`train_event` and `train_time` must be given together; got only one.")
    if train_event is None:
        tr_e, tr_t = event, time
    else:
        tr_e = as_event(train_event, "train_event")
        tr_t = as_time(train_time, "train_time", tr_e.size, ref="train_event")
        if tr_e.size == 0:
            raise ValueError("`train_time` must not be empty; got 0 samples.")
    uniq, g = km_curve(tr_e, tr_t, reverse=True)
    sel = use & event
    g_at = step_eval(uniq, g, time[sel], "time")
    if np.any(g_at == 0):
        raise ValueError(
            "`time` of some event is where the censoring survival function is 0; lower `tau`."
        )
    w = np.zeros(time.size)
    w[sel] = 1.0 / g_at
    return w


def concordance_index_ipcw(
    *,
    event: ArrayLike,
    time: ArrayLike,
    risk: ArrayLike,
    train_event: ArrayLike | None = None,
    train_time: ArrayLike | None = None,
    tau: float | None = None,
    tied_tol: float = 1e-8,
    return_counts: bool = False,
) -> float | ConcordanceResult:
    r"""Uno's IPCW concordance index, identical to scikit-survival's ``concordance_index_ipcw``.

    Parameters
    ----------
    event, time, risk : ndarray or Tensor, shape (N,)
        Test data: event indicator (bool), times, risk scores (higher = worse).
    train_event, train_time : ndarray or Tensor, shape (M,), optional
        Data used to estimate the censoring distribution :math:`G` by Kaplan-Meier (usually the
        training split). Defaults to the test data itself.
    tau : float, optional
        Truncation time: only events with :math:`t_i < \tau` contribute. Choose it so that
        :math:`G(\tau) > 0`.
    tied_tol : float, default 1e-8
        Tolerance for tied risks.
    return_counts : bool, default False
        Return a :class:`ConcordanceResult` (counts are unweighted, as in scikit-survival).

    Returns
    -------
    float or ConcordanceResult
        Uno's C.

    Raises
    ------
    ValueError
        On invalid inputs, an event time beyond the follow-up of the censoring data
        (:math:`G` undefined) or where :math:`G = 0`, or no comparable pair with positive weight.
    TypeError
        If an event array is not bool.

    Notes
    -----
    With :math:`w_i = \delta_i \mathbb{1}[t_i < \tau] / \hat G(t_i)^2` and the comparable pairs
    of :func:`concordance_index`,

    .. math::

        C_\text{Uno} = \frac{\sum_{(i,j)} w_i \left(\mathbb{1}[r_i > r_j + \epsilon] +
        \tfrac12 \mathbb{1}[|r_i - r_j| \le \epsilon]\right)}{\sum_{(i,j)} w_i}.

    :math:`\hat G` is the Kaplan-Meier estimate of the censoring survival function, with events
    leaving the risk set before censorings at equal times, evaluated right-continuously at
    :math:`t_i` (as scikit-survival; R's ``survAUC`` uses :math:`\hat G(t_i^-)`, which differs
    when an event and a censoring share a time).

    References
    ----------
    .. [1] H. Uno, T. Cai, M. J. Pencina, R. B. D'Agostino and L. J. Wei, "On the C-statistics
       for evaluating overall adequacy of risk prediction procedures with censored survival
       data", Statistics in Medicine 30(10), 2011.

    Examples
    --------
    >>> import numpy as np
    >>> from minmaxfuse.survival import concordance_index_ipcw
    >>> event = np.array([True, False, True, True, False, True])
    >>> time = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    >>> risk = np.array([6.0, 5.0, 3.0, 4.0, 1.0, 0.0])
    >>> round(concordance_index_ipcw(event=event, time=time, risk=risk, tau=5.5), 4)
    0.878
    """
    ev, t, r = _inputs(event, time, risk)
    tol = _check_tol(tied_tol)
    if ev.size < 2:
        raise ValueError(f"`event` must hold at least 2 samples; got {ev.size}.")
    if not ev.any():
        raise ValueError("`event` must contain at least one event; got all censored.")
    if tau is None:
        use = np.ones(ev.size, dtype=bool)
    else:
        if not np.isfinite(as_real(tau, "tau")):
            raise ValueError(f"`tau` must be a finite number or None; got {tau!r}.")
        use = t < as_real(tau, "tau")
    return_counts = check_bool(return_counts, "return_counts")
    ipcw = _censoring_weights(train_event, train_time, ev, t, use)
    counts = harrell_counts(ev, t, r, tol)
    return _cindex_from_counts(counts, np.square(ipcw), int(ev.sum()), return_counts)


def _check_eval_times(times, time: np.ndarray) -> np.ndarray:
    if time.size == 0:
        raise ValueError("`time` must hold at least one sample; got 0.")
    ts = as_risk(np.atleast_1d(_np(times, "times")), "times")
    if ts.size == 0 or np.any(np.diff(ts) <= 0):
        raise ValueError(f"`times` must be non-empty and strictly increasing; got {ts.tolist()}.")
    if ts[0] < time.min() or ts[-1] >= time.max():
        raise ValueError(
            f"`times` must lie within the follow-up of the test data [{time.min()}, {time.max()}); "
            f"got [{ts[0]}, {ts[-1]}]."
        )
    return ts


def _np(x, name: str = "x"):
    if isinstance(x, Tensor):
        if x.device.type == "meta":
            raise ValueError(
                f"`{name}` must hold data (the metrics read values on the host); got a tensor on "
                "the meta device, which has none."
            )
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x)


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) * 0.5))


def cumulative_dynamic_auc(
    *,
    event: ArrayLike,
    time: ArrayLike,
    risk: ArrayLike,
    times: ArrayLike,
    train_event: ArrayLike | None = None,
    train_time: ArrayLike | None = None,
    tied_tol: float = 1e-8,
) -> TimeDependentAUC:
    r"""Cumulative/dynamic time-dependent AUC (Uno et al. 2007; as scikit-survival).

    Parameters
    ----------
    event, time : ndarray or Tensor, shape (N,)
        Test event indicator (bool) and times.
    risk : ndarray or Tensor, shape (N,) or (N, K)
        Risk scores (higher = worse), constant or one column per evaluation time.
    times : ndarray or Tensor, shape (K,)
        Strictly increasing evaluation times within ``[min(time), max(time))``.
    train_event, train_time : ndarray or Tensor, shape (M,), optional
        Data for the censoring distribution; defaults to the test data.
    tied_tol : float, default 1e-8
        Consecutive risks (sorted) within ``tied_tol`` form one threshold.

    Returns
    -------
    TimeDependentAUC
        ``auc`` of shape (K,) and ``mean_auc``.

    Raises
    ------
    ValueError
        On invalid inputs, ``times`` outside the test follow-up, or a time without any case
        (no event at or before it).
    TypeError
        If an event array is not bool.

    Notes
    -----
    Cases at :math:`t` are events with :math:`t_i \le t`, weighted by :math:`1/\hat G(t_i)`;
    controls are patients with :math:`t_j > t`. The ROC curve over all risk thresholds is
    integrated by the trapezoid rule:

    .. math::

        \widehat{\mathrm{AUC}}(t) = \frac{\sum_{i,j} \mathbb{1}[t_j > t]\,
        \mathbb{1}[t_i \le t]\,\delta_i\,\omega_i\,\mathbb{1}[r_j \le r_i]}
        {\big(\sum_j \mathbb{1}[t_j > t]\big)\big(\sum_i \mathbb{1}[t_i \le t]\,\delta_i\,
        \omega_i\big)}

    (with tied thresholds merged). The mean is :math:`\sum_k \mathrm{AUC}(t_k)\,
    (\hat S(t_{k-1}) - \hat S(t_k)) / (1 - \hat S(t_K))`, :math:`\hat S` the Kaplan-Meier
    estimate of the test data and :math:`\hat S(t_0) = 1`.

    References
    ----------
    .. [1] H. Uno, T. Cai, L. Tian and L. J. Wei, "Evaluating prediction rules for t-year
       survivors with censored regression models", JASA 102, 2007.
    .. [2] H. Hung and C. T. Chiang, "Estimation methods for time-dependent AUC models with
       survival data", Canadian Journal of Statistics 38(1), 2010.

    Examples
    --------
    >>> import numpy as np
    >>> from minmaxfuse.survival import cumulative_dynamic_auc
    >>> event = np.array([True, True, False, True, True, False])
    >>> time = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    >>> risk = np.array([5.0, 2.0, 4.0, 3.0, 1.0, 0.0])
    >>> res = cumulative_dynamic_auc(event=event, time=time, risk=risk, times=[1.5, 3.5])
    >>> res.auc.round(4).tolist(), round(res.mean_auc, 4)
    ([1.0, 0.8333], 0.9167)
    """
    ev, t, _ = _inputs(event, time)
    n = ev.size
    ts = _check_eval_times(times, t)
    k = ts.size
    r_raw = _np(risk, "risk")
    if r_raw.ndim == 1:
        r = np.broadcast_to(as_risk(r_raw, "risk", n)[:, None], (n, k))
    else:
        r = as_surv_matrix(r_raw, "risk", n, k)
    tol = _check_tol(tied_tol)
    ipcw = _censoring_weights(train_event, train_time, ev, t, np.ones(n, dtype=bool))
    scores = np.empty(k)
    for j in range(k):
        order = np.argsort(-r[:, j], kind="stable")
        rs, ts_o, es_o, w_o = r[order, j], t[order], ev[order], ipcw[order]
        case = (ts_o <= ts[j]) & es_o
        control = ts_o > ts[j]
        tp = np.cumsum(case * w_o)
        fp = np.cumsum(control)
        if tp[-1] == 0:
            raise ValueError(
                f"`times` value {ts[j]} has no case (no event at or before it); drop it."
            )
        tp = tp / tp[-1]
        fp = fp / control.sum()
        # keep the last position of each run of tied risks (runs chained as in sksurv)
        tied_next = np.abs(np.diff(rs)) <= tol
        keep = np.concatenate([~tied_next, [True]])
        scores[j] = _trapezoid(np.r_[0.0, tp[keep]], np.r_[0.0, fp[keep]])
    if k == 1:
        return TimeDependentAUC(scores, float(scores[0]))
    uniq, s = km_curve(ev, t)
    s_at = step_eval(uniq, s, ts, "times")
    drop = -np.diff(np.r_[1.0, s_at])
    return TimeDependentAUC(scores, float((scores * drop).sum() / (1.0 - s_at[-1])))


def brier_score(
    *,
    event: ArrayLike,
    time: ArrayLike,
    surv: ArrayLike,
    times: ArrayLike,
    train_event: ArrayLike | None = None,
    train_time: ArrayLike | None = None,
) -> np.ndarray:
    r"""IPCW Brier score of predicted survival probabilities (Graf et al. 1999; as scikit-survival).

    Parameters
    ----------
    event, time : ndarray or Tensor, shape (N,)
        Test event indicator (bool) and times.
    surv : ndarray or Tensor, shape (N, K)
        Predicted :math:`P(T_i > t_k)` (``(N,)`` accepted for a single time). Note: survival
        probabilities, not risks.
    times : ndarray or Tensor, shape (K,)
        Strictly increasing evaluation times within ``[min(time), max(time))``.
    train_event, train_time : ndarray or Tensor, shape (M,), optional
        Data for the censoring distribution; defaults to the test data.

    Returns
    -------
    ndarray, shape (K,)
        Brier score at each time.

    Raises
    ------
    ValueError
        On invalid inputs, ``surv`` outside [0, 1], an empty training set, or test times
        beyond the censoring follow-up.
    TypeError
        If an event array is not bool.

    Notes
    -----
    .. math::

        \mathrm{BS}(t) = \frac1N \sum_i \left[\frac{\hat S_i(t)^2\, \mathbb{1}[t_i \le t]\,
        \delta_i}{\hat G(t_i)} + \frac{(1 - \hat S_i(t))^2\, \mathbb{1}[t_i > t]}{\hat G(t)}
        \right],

    with :math:`\hat G` the censoring Kaplan-Meier estimate (terms where :math:`\hat G = 0`
    count as 0, as in scikit-survival).

    References
    ----------
    .. [1] E. Graf, C. Schmoor, W. Sauerbrei and M. Schumacher, "Assessment and comparison of
       prognostic classification schemes for survival data", Statistics in Medicine 18, 1999.

    Examples
    --------
    >>> import numpy as np
    >>> from minmaxfuse.survival import brier_score
    >>> event = np.array([True, True, False, True])
    >>> time = np.array([1.0, 2.0, 3.0, 4.0])
    >>> surv = np.array([0.1, 0.4, 0.8, 0.9])
    >>> brier_score(event=event, time=time, surv=surv, times=[2.5])
    array([0.055])
    """
    ev, t, _ = _inputs(event, time)
    ts = _check_eval_times(times, t)
    s = as_surv_matrix(_np(surv, "surv"), "surv", ev.size, ts.size)
    if s.size and (s.min() < 0 or s.max() > 1):
        raise ValueError(
            "`surv` must hold survival probabilities in [0, 1]; got values in "
            f"[{s.min():.4g}, {s.max():.4g}]. Pass P(T > t), e.g. from survival_curve, not risks."
        )
    if (train_event is None) != (train_time is None):
        raise ValueError("`train_event` and `train_time` must be given together; got only one.")
    if train_event is None:
        tr_e, tr_t = ev, t
    else:
        tr_e = as_event(train_event, "train_event")
        tr_t = as_time(train_time, "train_time", tr_e.size, ref="train_event")
        if tr_e.size == 0:
            raise ValueError("`train_time` must not be empty; got 0 samples.")
    uniq, g = km_curve(tr_e, tr_t, reverse=True)
    g_t = step_eval(uniq, g, ts, "times")
    g_y = step_eval(uniq, g, t, "time")
    g_t[g_t == 0] = np.inf
    g_y[g_y == 0] = np.inf
    case = (t[:, None] <= ts[None, :]) & ev[:, None]
    control = t[:, None] > ts[None, :]
    terms = np.square(s) * case / g_y[:, None] + np.square(1.0 - s) * control / g_t[None, :]
    return terms.mean(axis=0)


def integrated_brier_score(
    *,
    event: ArrayLike,
    time: ArrayLike,
    surv: ArrayLike,
    times: ArrayLike,
    train_event: ArrayLike | None = None,
    train_time: ArrayLike | None = None,
) -> float:
    r"""Integrated Brier score: the trapezoid average of :func:`brier_score` over ``times``.

    Parameters
    ----------
    event, time : ndarray or Tensor, shape (N,)
        Test event indicator (bool) and times.
    surv : ndarray or Tensor, shape (N, K)
        Predicted survival probabilities at ``times``.
    times : ndarray or Tensor, shape (K,)
        At least two strictly increasing times within the test follow-up.
    train_event, train_time : ndarray or Tensor, shape (M,), optional
        Data for the censoring distribution; defaults to the test data.

    Returns
    -------
    float
        :math:`\frac{1}{t_K - t_1} \int_{t_1}^{t_K} \mathrm{BS}(t)\,dt` (trapezoid rule).

    Raises
    ------
    ValueError
        On fewer than two times, or as :func:`brier_score`.

    Notes
    -----
    .. math::

        \mathrm{IBS} = \frac{1}{t_K - t_1} \sum_{k=1}^{K-1} (t_{k+1} - t_k)
        \frac{\mathrm{BS}(t_k) + \mathrm{BS}(t_{k+1})}{2}.

    Examples
    --------
    >>> import numpy as np
    >>> from minmaxfuse.survival import integrated_brier_score
    >>> event = np.array([True, True, False, True])
    >>> time = np.array([1.0, 2.0, 3.0, 4.0])
    >>> surv = np.array([[0.2, 0.1], [0.6, 0.4], [0.9, 0.8], [0.9, 0.9]])
    >>> round(integrated_brier_score(event=event, time=time, surv=surv, times=[1.5, 2.5]), 4)
    0.055
    """
    ts = np.atleast_1d(_np(times, "times"))
    if ts.size < 2:
        raise ValueError(f"`times` must hold at least 2 time points; got {ts.size}.")
    bs = brier_score(
        event=event, time=time, surv=surv, times=ts, train_event=train_event, train_time=train_time
    )
    ts = ts.astype(np.float64)
    return float(_trapezoid(bs, ts) / (ts[-1] - ts[0]))


def kaplan_meier(*, event: ArrayLike, time: ArrayLike, reverse: bool = False) -> KaplanMeierResult:
    r"""Kaplan-Meier estimate of the survival function (or of the censoring distribution).

    Parameters
    ----------
    event, time : ndarray or Tensor, shape (N,)
        Event indicator (bool) and times.
    reverse : bool, default False
        Estimate the censoring survival function :math:`G` instead (censorings are the events;
        events at a time leave the risk set before censorings at that time).

    Returns
    -------
    KaplanMeierResult
        ``time`` (distinct times, ascending) and ``survival`` (:math:`\hat S` just after each).

    Raises
    ------
    ValueError
        On invalid inputs.
    TypeError
        If ``event`` is not bool.

    Notes
    -----
    .. math::

        \hat S(t) = \prod_{t_j \le t} \left(1 - \frac{d_j}{n_j}\right),

    :math:`d_j` events and :math:`n_j` patients at risk at :math:`t_j` (same values as
    ``sksurv.nonparametric.kaplan_meier_estimator``).

    References
    ----------
    .. [1] E. L. Kaplan and P. Meier, "Nonparametric estimation from incomplete observations",
       JASA 53, 1958.

    Examples
    --------
    >>> import numpy as np
    >>> from minmaxfuse.survival import kaplan_meier
    >>> km = kaplan_meier(event=np.array([True, False, True, True]), time=np.array([1, 2, 3, 3]))
    >>> km.time, km.survival
    (array([1., 2., 3.]), array([0.75, 0.75, 0.  ]))
    """
    ev, t, _ = _inputs(event, time)
    if ev.size == 0:
        raise ValueError("`time` must hold at least one sample; got 0.")
    reverse = check_bool(reverse, "reverse")
    uniq, s = km_curve(ev, t, reverse=reverse)
    return KaplanMeierResult(uniq, s)


def logrank_test(*, event: ArrayLike, time: ArrayLike, group: ArrayLike) -> LogRankResult:
    r"""Log-rank (Mantel-Haenszel) test that two or more groups share one survival function.

    Parameters
    ----------
    event, time : ndarray or Tensor, shape (N,)
        Event indicator (bool) and times.
    group : ndarray or Tensor, shape (N,)
        Group label of each patient (any sortable labels; at least two distinct groups).

    Returns
    -------
    LogRankResult
        Chi-square statistic, p-value, degrees of freedom, groups, observed and expected events.

    Raises
    ------
    ValueError
        On invalid inputs, fewer than two groups, a missing (NaN/None) group label, or no event.
    TypeError
        If ``event`` is not bool.

    Notes
    -----
    At each distinct event time :math:`t_j` with :math:`d_j` events among :math:`n_j` at risk
    (:math:`d_{gj}`, :math:`n_{gj}` in group :math:`g`):

    .. math::

        O_g - E_g = \sum_j \Big(d_{gj} - d_j \frac{n_{gj}}{n_j}\Big), \quad
        V_{gh} = \sum_j d_j \frac{n_j - d_j}{n_j - 1} \frac{n_{gj}}{n_j}
        \Big(\mathbb{1}[g = h] - \frac{n_{hj}}{n_j}\Big),

    and :math:`\chi^2 = (O - E)_{-}^\top V_{-}^{-1} (O - E)_{-}` over all groups but the last,
    with :math:`G - 1` degrees of freedom. The p-value uses the regularised incomplete gamma
    function (no SciPy needed). Same values as ``sksurv.compare.compare_survival``.

    References
    ----------
    .. [1] N. Mantel, "Evaluation of survival data and two new rank order statistics arising in
       its consideration", Cancer Chemotherapy Reports 50(3), 1966.

    Examples
    --------
    >>> import numpy as np
    >>> from minmaxfuse.survival import logrank_test
    >>> event = np.array([True, True, True, True, False, True, True, False])
    >>> time = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    >>> group = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> res = logrank_test(event=event, time=time, group=group)
    >>> round(res.statistic, 4), round(res.p_value, 4), res.dof
    (7.3444, 0.0067, 1)
    """
    ev, t, _ = _inputs(event, time)
    g_raw = _np(group, "group")
    if g_raw.ndim != 1 or g_raw.shape[0] != ev.size:
        raise ValueError(
            f"`group` must have shape (N,) = ({ev.size},) like `event`; got {g_raw.shape}."
        )
    if g_raw.dtype.kind in "fc":
        missing = np.isnan(g_raw)
    elif g_raw.dtype.kind == "O":
        missing = np.array([v is None or (isinstance(v, float) and v != v) for v in g_raw])
    else:
        missing = np.zeros(g_raw.shape, dtype=bool)
    if missing.any():
        raise ValueError(
            f"`group` must label every patient; got {int(missing.sum())} missing (NaN/None) "
            f"labels at indices {np.flatnonzero(missing)[:5].tolist()}."
        )
    groups, g_idx = np.unique(g_raw, return_inverse=True)
    n_groups = groups.size
    if n_groups < 2:
        raise ValueError(f"`group` must contain at least 2 distinct groups; got {n_groups}.")
    if not ev.any():
        raise ValueError("`event` must contain at least one event; got all censored.")
    uniq, t_idx = np.unique(t, return_inverse=True)
    n_t = uniq.size
    flat = t_idx * n_groups + g_idx
    total = np.bincount(flat, minlength=n_t * n_groups).reshape(n_t, n_groups)
    deaths = np.bincount(flat, weights=ev, minlength=n_t * n_groups).reshape(n_t, n_groups)
    at_risk = np.cumsum(total[::-1], axis=0)[::-1].astype(np.float64)  # (J, G)
    d = deaths.sum(axis=1)
    keep = d > 0
    at_risk, deaths, d = at_risk[keep], deaths[keep], d[keep]
    n = at_risk.sum(axis=1)
    frac = at_risk / n[:, None]
    expected = (d[:, None] * frac).sum(axis=0)
    observed = deaths.sum(axis=0)
    factor = np.divide(d * (n - d), n - 1, out=np.zeros_like(d), where=n > 1)
    cov = np.einsum("j,jg,gh->gh", factor, frac, np.eye(n_groups)) - np.einsum(
        "j,jg,jh->gh", factor, frac, frac
    )
    diff = (observed - expected)[:-1]
    v = cov[:-1, :-1]
    try:
        stat = float(diff @ np.linalg.solve(v, diff))
    except np.linalg.LinAlgError:
        raise ValueError(
            "`group` gives a singular log-rank covariance (some group has nobody at risk at any "
            "event time); the test is undefined."
        ) from None
    dof = n_groups - 1
    return LogRankResult(stat, chi2_sf(stat, dof), dof, groups, observed, expected)


def bootstrap_ci(
    metric: Callable[..., float],
    *,
    event: ArrayLike,
    time: ArrayLike,
    risk: ArrayLike | None = None,
    surv: ArrayLike | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    **metric_kwargs: object,
) -> BootstrapResult:
    r"""Percentile bootstrap confidence interval of any survival metric.

    Parameters
    ----------
    metric : callable
        Called as ``metric(event=..., time=..., risk=... or surv=..., **metric_kwargs)`` and
        returning a float, e.g. :func:`concordance_index`.
    event, time : ndarray or Tensor, shape (N,)
        Event indicator (bool) and times; resampled jointly (patients drawn with replacement).
    risk, surv : ndarray or Tensor, shape (N,) or (N, K), optional
        Predictions resampled along with the patients (give the one ``metric`` takes).
    n_resamples : int, default 1000
        Number of bootstrap resamples.
    level : float, default 0.95
        Confidence level in ``(0, 1)``.
    seed : int, numpy Generator or None, default 0
        Seed of :func:`numpy.random.default_rng` (reproducible by default).
    **metric_kwargs
        Passed unchanged to ``metric`` (e.g. ``tau``, ``train_time``, ``times``).

    Returns
    -------
    BootstrapResult
        ``estimate`` on the full data, the ``(1 - level) / 2`` and ``(1 + level) / 2``
        percentiles of the resampled values, and the number of resamples where ``metric`` was
        defined.

    Raises
    ------
    ValueError
        If ``n_resamples``, ``level`` or ``seed`` is invalid, the metric is NaN on the full data,
        or no resample gives a defined metric.
    TypeError
        If ``metric`` is not callable or ``seed`` is not an int, a Generator or None.

    Notes
    -----
    Resamples on which ``metric`` raises :class:`ValueError` (e.g. no event, no comparable pair)
    or returns NaN are skipped and reported through ``n_valid``.

    Examples
    --------
    >>> import numpy as np
    >>> from minmaxfuse.survival import bootstrap_ci, concordance_index
    >>> rng = np.random.default_rng(0)
    >>> time = rng.exponential(size=200)
    >>> event = rng.random(200) < 0.7
    >>> risk = -time + rng.normal(size=200)
    >>> res = bootstrap_ci(concordance_index, event=event, time=time, risk=risk, n_resamples=200)
    >>> res.low < res.estimate < res.high
    True
    """
    if not callable(metric):
        raise TypeError(f"`metric` must be callable; got {type(metric).__name__}.")
    if as_int(n_resamples, "n_resamples") < 1:
        raise ValueError(f"`n_resamples` must be an int >= 1; got {n_resamples!r}.")
    n_resamples = as_int(n_resamples, "n_resamples")
    if not 0 < as_real(level, "level") < 1:
        raise ValueError(f"`level` must be in (0, 1); got {level!r}.")
    level = as_real(level, "level")
    if not (seed is None or isinstance(seed, np.random.Generator)):
        try:
            seed_int = as_int(seed, "seed")
        except TypeError:
            raise TypeError(
                f"`seed` must be an int >= 0, a numpy Generator or None; got {seed!r}."
            ) from None
        if seed_int < 0:
            raise ValueError(f"`seed` must be an int >= 0, a numpy Generator or None; got {seed}.")
        seed = seed_int
    arrays = {"event": _np(event, "event"), "time": _np(time, "time")}
    if risk is not None:
        arrays["risk"] = _np(risk, "risk")
    if surv is not None:
        arrays["surv"] = _np(surv, "surv")
    if risk is None and surv is None:
        raise ValueError(
            "`risk` or `surv` must be given (the predictions to resample); got neither."
        )
    if arrays["event"].ndim == 0:
        raise ValueError(f"`event` must have shape (N,); got a scalar {arrays['event']!r}.")
    n = arrays["event"].shape[0]
    for name, a in arrays.items():
        if a.ndim == 0 or a.shape[0] != n:
            raise ValueError(f"`{name}` must have length N = {n} like `event`; got {a.shape}.")
    estimate = float(metric(**arrays, **metric_kwargs))
    if np.isnan(estimate):
        raise ValueError("`metric` must be defined on the full data; got NaN.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        try:
            value = float(metric(**{k: a[idx] for k, a in arrays.items()}, **metric_kwargs))
        except ValueError:
            continue
        if not np.isnan(value):  # an undefined value is skipped like a raised ValueError
            values.append(value)
    if not values:
        raise ValueError("`metric` raised ValueError on every resample; no interval can be formed.")
    low, high = np.quantile(np.asarray(values), [(1 - level) / 2, (1 + level) / 2])
    return BootstrapResult(estimate, float(low), float(high), len(values))
