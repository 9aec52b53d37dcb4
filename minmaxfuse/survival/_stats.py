"""Numerical kernels of the survival metrics (numpy float64; no torch, no scipy, no sksurv).

* input conversion (tensors or arrays -> validated numpy float64 / bool);
* Kaplan-Meier counts and step-function evaluation with scikit-survival's semantics;
* the O(n log^2 n) counting kernel of Harrell's C (vectorised merge-sort tree);
* the chi-square survival function through the regularised incomplete gamma function.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

# --------------------------------------------------------------------------------------------
# input conversion


def _to_numpy(x: object, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        if x.device.type == "meta":
            raise ValueError(
                f"`{name}` must hold data (the metrics and binning read values on the host); "
                "got a tensor on the meta device, which has none."
            )
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:  # numpy has no bfloat16
            x = x.float()
        return x.numpy()
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "to_numpy"):  # pandas Series
        return np.asarray(x.to_numpy())
    raise TypeError(f"`{name}` must be a numpy array or a torch.Tensor; got {type(x).__name__}.")


def _check_1d(a: np.ndarray, name: str, n: int | None, ref: str = "event") -> np.ndarray:
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional (N,); got shape {a.shape}.")
    if n is not None and a.shape[0] != n:
        raise ValueError(
            f"`{name}` must have the same length as `{ref}` (N = {n}); got {a.shape[0]}."
        )
    return a


def as_event(x: object, name: str = "event", n: int | None = None, ref: str = "time") -> np.ndarray:
    """Bool array of event indicators (True = event observed); rejects 0/1 integers."""
    a = _to_numpy(x, name)
    if a.dtype != np.bool_:
        raise TypeError(
            f"`{name}` must be a bool array (True = event observed, False = censored); got dtype "
            f"{a.dtype}. Convert a censorship column c with `event = c == 0`."
        )
    return _check_1d(a, name, n, ref)


def _as_real(x: object, name: str, n: int | None, ndim: int = 1, ref: str = "event") -> np.ndarray:
    a = _to_numpy(x, name)
    if a.dtype == np.bool_ or not (
        np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
    ):
        raise TypeError(f"`{name}` must hold real numbers; got dtype {a.dtype}.")
    a = a.astype(np.float64, copy=False)
    if ndim == 1:
        _check_1d(a, name, n, ref)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` must be finite; got NaN or Inf.")
    return a


def as_time(x: object, name: str = "time", n: int | None = None, ref: str = "event") -> np.ndarray:
    """Float64 array of non-negative, finite times."""
    a = _as_real(x, name, n, ref=ref)
    if a.size and a.min() < 0:
        raise ValueError(f"`{name}` must be >= 0; got a minimum of {a.min()}.")
    return a


def as_risk(x: object, name: str = "risk", n: int | None = None) -> np.ndarray:
    """Float64 array of finite risk scores."""
    return _as_real(x, name, n)


def as_surv_matrix(x: object, name: str, n: int, n_times: int) -> np.ndarray:
    """Float64 ``(N, n_times)`` matrix (a 1-d ``(N,)`` array is accepted when n_times == 1)."""
    a = _as_real(x, name, None, ndim=0)
    if a.ndim == 1 and n_times == 1:
        a = a[:, None]
    if a.shape != (n, n_times):
        raise ValueError(
            f"`{name}` must have shape (N, len(times)) = {(n, n_times)}; got {a.shape}."
        )
    return a


# --------------------------------------------------------------------------------------------
# Kaplan-Meier


def km_counts(event: np.ndarray, time: np.ndarray):
    """Distinct times (ascending) with the number at risk, of events and of censorings."""
    uniq, inv = np.unique(time, return_inverse=True)
    total = np.bincount(inv, minlength=uniq.size)
    n_event = np.bincount(inv, weights=event, minlength=uniq.size).astype(np.int64)
    at_risk = time.size - np.concatenate([[0], np.cumsum(total)[:-1]])
    return uniq, at_risk, n_event, total - n_event


def km_curve(event: np.ndarray, time: np.ndarray, reverse: bool = False):
    """Kaplan-Meier survival at each distinct time; ``reverse`` estimates the censoring law.

    For the censoring distribution, events at a time are taken to happen before censorings at
    that time (they leave the risk set first), as in scikit-survival.
    """
    uniq, at_risk, n_event, n_cens = km_counts(event, time)
    if reverse:
        at_risk = at_risk - n_event
        n_event = n_cens
    ratio = np.divide(
        n_event, at_risk, out=np.zeros(uniq.size, dtype=np.float64), where=n_event != 0
    )
    return uniq, np.cumprod(1.0 - ratio)


def step_eval(uniq: np.ndarray, prob: np.ndarray, t: np.ndarray, name: str) -> np.ndarray:
    """Right-continuous step function ``prob`` (1 before ``uniq[0]``) evaluated at ``t``.

    Raises if ``t`` exceeds the last jump while the curve is still positive (undefined there).
    Matches scikit-survival, including its absolute ``eps`` rule for times equal to a jump.
    """
    u = np.concatenate([[-np.inf], uniq])
    p = np.concatenate([[1.0], prob])
    beyond = t > u[-1]
    if p[-1] > 0 and beyond.any():
        raise ValueError(
            f"`{name}` must not exceed the largest time used to estimate the censoring "
            f"distribution ({u[-1]}) while it is still positive; got {t[beyond].max()}. Pass "
            "training data with a longer follow-up or a smaller `tau` / `times`."
        )
    out = np.zeros(t.shape, dtype=np.float64)
    valid = ~beyond
    tv = t[valid]
    idx = np.searchsorted(u, tv)
    exact = np.abs(u[np.minimum(idx, u.size - 1)] - tv) < np.finfo(np.float64).eps
    idx = np.where(exact, idx, idx - 1)
    out[valid] = p[idx]
    return out


# --------------------------------------------------------------------------------------------
# Harrell's C: counting kernel


def _tie_bounds(u: np.ndarray, e: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """For each value ``e``, the rank interval ``[lo, hi)`` of ``u`` with ``|u - e| <= tol``.

    The floating-point predicate is evaluated exactly as scikit-survival does; it is monotone
    in ``u`` on each side of ``e``, so the set is contiguous and searchsorted plus a few
    corrective steps find it.
    """
    m = u.size
    lo = np.searchsorted(u, e - tol, side="left")
    hi = np.searchsorted(u, e + tol, side="right")
    while True:
        dn = (lo > 0) & (np.abs(u[np.maximum(lo - 1, 0)] - e) <= tol)
        up = (
            (lo < m) & (np.abs(u[np.minimum(lo, m - 1)] - e) > tol) & (u[np.minimum(lo, m - 1)] < e)
        )
        if not (dn.any() or up.any()):
            break
        lo = lo - dn + up
    while True:
        upm = (hi < m) & (np.abs(u[np.minimum(hi, m - 1)] - e) <= tol)
        dnm = (
            (hi > 0) & (np.abs(u[np.maximum(hi - 1, 0)] - e) > tol) & (u[np.maximum(hi - 1, 0)] > e)
        )
        if not (upm.any() or dnm.any()):
            break
        hi = hi + upm - dnm
    return lo, hi


def _prefix_count_below(rank: np.ndarray, starts: np.ndarray, queries: list[np.ndarray]):
    """For each query q and prefix end s: ``#{p < s : rank[p] < q}`` (merge-sort tree).

    The prefix ``[0, s)`` is split into aligned blocks of size ``2^L`` following the binary
    digits of ``s``; each level keeps the ranks sorted inside its blocks (a stable sort of the
    previous level, i.e. a merge of adjacent runs), and a block count is one searchsorted on the
    keys ``block * m + rank``.
    """
    n = rank.size
    m = n + 1  # ranks lie in [0, n]
    out = [np.zeros(starts.size, dtype=np.int64) for _ in queries]
    perm = np.arange(n, dtype=np.int64)
    level = 0
    while (1 << level) <= n:
        keys = (perm >> level) * m + rank[perm]
        order = np.argsort(keys, kind="stable")
        perm = perm[order]
        keys = keys[order]
        sel = np.flatnonzero((starts >> level) & 1)
        if sel.size:
            block = (starts[sel] >> level) - 1
            base = block << level
            for res, q in zip(out, queries):
                res[sel] += np.searchsorted(keys, block * m + q[sel], side="left") - base
        level += 1
    return out


def harrell_counts(
    event: np.ndarray, time: np.ndarray, risk: np.ndarray, tied_tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-event counts of Harrell's C with scikit-survival's comparability rules.

    Returns, for every event ``i`` (indices into the inputs): ``idx``, the number of concordant,
    tied-risk and comparable partners, and the number of censored patients tied with it in time.
    Partners of an event are all patients with a strictly larger time plus the censored ones at
    the same time.
    """
    n = time.size
    order = np.lexsort((~event, time))  # by time, events before censorings at equal time
    ts, es, rs = time[order], event[order], risk[order]
    u = np.unique(rs)
    rank = np.searchsorted(u, rs)
    ev_pos = np.flatnonzero(es)
    group_end = np.searchsorted(ts, ts[ev_pos], side="right")
    ev_ts = ts[ev_pos]
    n_ev_at = np.searchsorted(ev_ts, ev_ts, side="right") - np.searchsorted(
        ev_ts, ev_ts, side="left"
    )
    group_start = np.searchsorted(ts, ev_ts, side="left")
    start = group_start + n_ev_at  # first comparable position (sorted order)
    lo, hi = _tie_bounds(u, rs[ev_pos], tied_tol)
    below = np.concatenate([[0], np.cumsum(np.bincount(rank, minlength=u.size))])  # #{rank < q}
    below_all_lo, below_all_hi = below[lo], below[hi]
    pre_lo, pre_hi = _prefix_count_below(rank, start, [lo, hi])
    n_con = below_all_lo - pre_lo
    n_tie = (below_all_hi - pre_hi) - n_con
    n_comp = n - start
    n_tied_time = group_end - start
    return order[ev_pos], n_con, n_tie, n_comp, n_tied_time


# --------------------------------------------------------------------------------------------
# chi-square survival function


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma function Q(a, x) for a > 0, x >= 0."""
    if x <= 0:
        return 1.0
    log_pref = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        # series for P(a, x) = x^a e^-x / Gamma(a+1) * sum_k x^k / ((a+1)...(a+k))
        term = 1.0 / a
        total = term
        k = 0
        while abs(term) > abs(total) * 1e-17 and k < 100000:
            k += 1
            term *= x / (a + k)
            total += term
        return max(0.0, 1.0 - total * math.exp(log_pref))
    # continued fraction for Q(a, x) (modified Lentz)
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for k in range(1, 100000):
        an = -k * (k - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(log_pref) * h


def chi2_sf(x: float, dof: int) -> float:
    """Survival function of the chi-square distribution, ``P(X > x)`` with ``dof`` degrees."""
    return _gamma_q(0.5 * dof, 0.5 * x)
