"""Discretisation of continuous survival times into bins (the MCAT convention)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from minmaxfuse._checks import (
    check_choice,
    check_int,
    check_nonnegative,
    reads_values,
)
from minmaxfuse.survival._stats import as_event, as_time

__all__ = ["assign_time_bins", "discretize_time"]


def discretize_time(
    time: Tensor | np.ndarray,
    event: Tensor | np.ndarray,
    *,
    n_bins: int = 4,
    outer: Literal["inf", "data"] = "inf",
    eps: float = 1e-6,
) -> Tensor | np.ndarray:
    r"""Bin edges from the quantiles of the observed event times (fit on training data only).

    Parameters
    ----------
    time : Tensor or ndarray, shape (N,)
        Non-negative times of event or censoring of the *training* patients (one row per
        patient: deduplicate slides first).
    event : Tensor or ndarray, shape (N,)
        Bool, ``True`` when the event was observed. Only these times set the inner edges.
    n_bins : int, default 4
        Number of bins :math:`T` (MCAT and its successors use 4).
    outer : {"inf", "data"}, default "inf"
        ``"inf"`` sets the outer edges to :math:`-\infty` and :math:`+\infty`, so that any future
        time falls in a bin. ``"data"`` reproduces MCAT exactly: the outer edges become
        :math:`\min_i t_i - \varepsilon` and :math:`\max_i t_i + \varepsilon` over *all* given
        times (censored included); later times outside that range cannot be binned.
    eps : float, default 1e-6
        Widening of the outer edges for ``outer="data"``; it must change them (``eps = 0``
        would leave the largest time outside the right-open last bin).

    Returns
    -------
    Tensor or ndarray, shape (n_bins + 1,)
        Increasing float64 edges; a tensor if ``time`` is a tensor.

    Raises
    ------
    ValueError
        If there are fewer than ``n_bins`` events, if quantiles coincide (too many tied event
        times for ``n_bins`` distinct bins), or on invalid inputs.

    Notes
    -----
    The inner edges are the :math:`k / T` quantiles (:math:`k = 1, \dots, T - 1`, linear
    interpolation) of the event times, computed with the same floating-point operations as
    :func:`pandas.qcut` in pandas 2.x, the version MCAT's labels come from (``np.percentile``
    at ``100 * linspace(0, 1, T + 1)``; pandas 3 may differ by one ulp on interpolated edges). Bins
    are right-open, :math:`[e_k, e_{k+1})`: see :func:`assign_time_bins`. This is the
    discretisation of MCAT, MOTCat, CMTA, PORPOISE and SurvPath (``pd.qcut`` on uncensored
    patients, outer edges moved to min - 1e-6 / max + 1e-6, ``pd.cut(right=False)``). MCAT fits
    it on the whole cohort; fitting on the training split only avoids leaking test times.

    Examples
    --------
    >>> import numpy as np
    >>> from minmaxfuse.survival import discretize_time, assign_time_bins
    >>> time = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    >>> event = np.array([True, True, True, True, True, False, True, True, True])
    >>> edges = discretize_time(time, event, n_bins=4)
    >>> edges
    array([-inf, 2.75, 4.5 , 7.25,  inf])
    >>> assign_time_bins(np.array([0.5, 2.75, 8.0]), edges)
    array([0, 1, 3])
    """
    is_tensor = isinstance(time, Tensor)
    t = as_time(time, "time")
    e = as_event(event, "event", len(t))
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    outer = check_choice(outer, ("inf", "data"), "outer")
    eps = check_nonnegative(eps, "eps")
    ev_t = t[e]
    if ev_t.size < n_bins:
        raise ValueError(
            f"`event` must mark at least `n_bins` = {n_bins} events to place the quantile edges; "
            f"got {ev_t.size}."
        )
    # the exact arithmetic of pandas.qcut (percentiles of 100 * linspace), so that edges, and
    # hence bins of times lying on an edge, agree bit for bit with MCAT's labels
    inner = np.percentile(ev_t, np.linspace(0.0, 1.0, n_bins + 1)[1:-1] * 100.0)
    if outer == "inf":
        lo, hi = -np.inf, np.inf
    else:
        lo, hi = t.min() - eps, t.max() + eps
        if not (lo < t.min() and hi > t.max()):
            raise ValueError(
                f"`eps` must widen the outer edges (min(time) - eps < min(time) and "
                f"max(time) + eps > max(time) in float64); got eps={eps} for times in "
                f"[{t.min()}, {t.max()}]. The largest time would fall outside the right-open last "
                "bin."
            )
    edges = np.concatenate([[lo], inner, [hi]]).astype(np.float64)
    if np.any(np.diff(edges) <= 0):
        raise ValueError(
            f"`n_bins` = {n_bins} gives coinciding quantile edges {edges.tolist()} (many tied "
            "event times); use fewer bins."
        )
    if is_tensor:
        return torch.as_tensor(edges, dtype=torch.float64, device=time.device)
    return edges


def assign_time_bins(time: Tensor | np.ndarray, edges: Tensor | np.ndarray) -> Tensor | np.ndarray:
    r"""Index of the right-open bin :math:`[e_k, e_{k+1})` holding each time.

    Parameters
    ----------
    time : Tensor or ndarray, shape (N,)
        Non-negative times of event or censoring.
    edges : Tensor or ndarray, shape (T + 1,)
        Strictly increasing edges, e.g. from :func:`discretize_time`.

    Returns
    -------
    Tensor or ndarray, shape (N,)
        ``int64`` bin indices in ``[0, T)``; a ``long`` tensor (on the device of ``time``) if
        ``time`` is a tensor, computed there with :func:`torch.searchsorted` (the validity
        checks read values and are skipped after ``minmaxfuse.set_value_checks(False)``).

    Raises
    ------
    ValueError
        If ``edges`` is not strictly increasing with at least two entries, or a time lies outside
        ``[edges[0], edges[-1])`` (possible only with finite outer edges).

    Notes
    -----
    :math:`k = \#\{j \ge 1 : e_j \le t\}`, i.e. a time equal to an inner edge belongs to the bin
    on its right (``pd.cut(right=False)``, the MCAT convention). Comparisons are made in
    float64: times stored in float32 may round across an edge that equals a float64 time, so
    keep times in the precision the edges were computed from.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.survival import assign_time_bins
    >>> edges = torch.tensor([float("-inf"), 10.0, 20.0, float("inf")])
    >>> assign_time_bins(torch.tensor([3.0, 10.0, 25.0]), edges)
    tensor([0, 1, 2])
    """
    if isinstance(time, Tensor):
        return _assign_torch(time, edges)
    t = as_time(time, "time")
    ed = _as_edges(edges)
    _check_edges(ed)
    bins = np.searchsorted(ed, t, side="right") - 1
    _check_in_edges(t, bins, ed)
    return bins.astype(np.int64)


def _as_edges(edges: object) -> np.ndarray:
    """Edges as a float64 numpy array; a TypeError naming ``edges`` for non-real input."""
    if isinstance(edges, Tensor):
        if edges.dtype == torch.bool or edges.is_complex():
            raise TypeError(f"`edges` must hold real numbers; got dtype {edges.dtype}.")
        if edges.device.type == "meta":
            raise ValueError("`edges` must hold data (the edges are read); got a meta tensor.")
        e = edges.detach().cpu()
        return (e.float() if e.dtype == torch.bfloat16 else e).numpy().astype(np.float64)
    arr = np.asarray(edges)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"`edges` must hold real numbers; got dtype {arr.dtype}.")
    return arr.astype(np.float64)


def _check_edges(ed: np.ndarray) -> None:
    # `not (diff > 0)` also rejects the NaN that np.diff gives for repeated infinite edges
    with np.errstate(invalid="ignore"):
        increasing = ed.ndim == 1 and bool(np.all(np.diff(ed) > 0))
    if ed.ndim != 1 or ed.size < 2 or np.any(np.isnan(ed)) or not increasing:
        raise ValueError(
            f"`edges` must be a strictly increasing 1-d array with at least 2 entries; got "
            f"{ed.tolist()}."
        )


def _check_in_edges(t: np.ndarray, bins: np.ndarray, ed: np.ndarray) -> None:
    bad = (bins < 0) | (bins >= ed.size - 1)
    if bad.any():
        raise ValueError(
            f"`time` must lie in [edges[0], edges[-1]) = [{ed[0]}, {ed[-1]}); got "
            f"{t[bad][:5].tolist()} outside. Use `outer='inf'` in discretize_time."
        )


def _assign_torch(time: Tensor, edges: Tensor | np.ndarray) -> Tensor:
    """Device-side binning (no host synchronisation unless value checks are on)."""
    if time.dtype == torch.bool or time.is_complex() or time.ndim != 1:
        raise ValueError(
            f"`time` must be a real 1-d tensor (N,); got dtype {time.dtype}, shape "
            f"{tuple(time.shape)}."
        )
    if isinstance(edges, Tensor):
        if edges.dtype == torch.bool or edges.is_complex():
            raise TypeError(f"`edges` must hold real numbers; got dtype {edges.dtype}.")
        if edges.device.type == "meta" and time.device.type != "meta":
            raise ValueError(
                f"`edges` must hold data to bin `time` on {time.device}; got a tensor on the meta "
                "device, which has none."
            )
        ed = edges.to(dtype=torch.float64, device=time.device)
    else:
        ed = torch.as_tensor(_as_edges(edges), dtype=torch.float64, device=time.device)
    if ed.ndim != 1 or ed.numel() < 2:
        raise ValueError(
            "`edges` must be a strictly increasing 1-d array with at least 2 entries; got shape "
            f"{tuple(ed.shape)}."
        )
    t = time.to(torch.float64)
    bins = torch.searchsorted(ed, t, right=True) - 1
    if reads_values(time):
        ed_np = ed.cpu().numpy()
        _check_edges(ed_np)
        t_np = t.cpu().numpy()
        if t_np.size and not np.all(np.isfinite(t_np)):
            raise ValueError("`time` must be finite; got NaN or Inf.")
        if t_np.size and t_np.min() < 0:
            raise ValueError(f"`time` must be >= 0; got a minimum of {t_np.min()}.")
        _check_in_edges(t_np, bins.cpu().numpy(), ed_np)
    return bins
