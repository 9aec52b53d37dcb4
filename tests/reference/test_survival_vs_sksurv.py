"""minmaxfuse.survival against scikit-survival (and lifelines) to 1e-10, tie-heavy data.

scikit-survival is the reference for every metric and for the Cox partial likelihood
(``CoxPHOptimizer.nlog_likelihood`` returns -pll / n). lifelines is a second, independent
oracle for Harrell's C (it takes "higher = longer survival" scores, hence ``-risk``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minmaxfuse.survival as S
from tests.survival.surv_strategies import survival_data

sksurv = pytest.importorskip("sksurv")
from sksurv import metrics as skm  # noqa: E402
from sksurv.compare import compare_survival  # noqa: E402
from sksurv.linear_model.coxph import CoxPHOptimizer  # noqa: E402
from sksurv.nonparametric import kaplan_meier_estimator  # noqa: E402
from sksurv.util import Surv  # noqa: E402

TOL = 1e-10


def _sk(fn, *args, **kwargs):
    """Call a sksurv metric; map its undefined cases (exception or NaN) to None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = fn(*args, **kwargs)
        except (ValueError, ZeroDivisionError, np.linalg.LinAlgError) as err:
            return err
    first = out[0] if isinstance(out, tuple) else out
    if np.any(np.isnan(first)):
        return ValueError("nan")
    return out


def _ours(fn, **kwargs):
    try:
        return fn(**kwargs)
    except ValueError as err:
        return err


def _assert_same_outcome(ref, got):
    """Both undefined (error / NaN), or both defined."""
    assert isinstance(ref, Exception) == isinstance(got, Exception), (ref, got)
    return not isinstance(ref, Exception)


# ------------------------------------------------------------------------------------------
# Harrell


@given(data=survival_data(min_n=2, max_n=60), tol=st.sampled_from([1e-8, 0.0, 0.15]))
def test_harrell_equals_sksurv_with_counts(data, tol):
    event, time, risk = data
    ref = _sk(skm.concordance_index_censored, event, time, risk, tied_tol=tol)
    got = _ours(
        S.concordance_index, event=event, time=time, risk=risk, tied_tol=tol, return_counts=True
    )
    if _assert_same_outcome(ref, got):
        assert abs(got.cindex - ref[0]) <= TOL
        assert tuple(got[1:]) == tuple(int(v) for v in ref[1:])
        assert 0.0 <= got.cindex <= 1.0


@given(data=survival_data(min_n=2, max_n=60))
def test_harrell_equals_lifelines(data):
    lifelines_utils = pytest.importorskip("lifelines.utils")
    event, time, risk = data
    got = _ours(S.concordance_index, event=event, time=time, risk=risk)
    if isinstance(got, Exception):
        return
    ref = lifelines_utils.concordance_index(time, -risk, event)
    assert abs(got - ref) <= TOL


def test_harrell_large_n_with_ties_equals_sksurv():
    rng = np.random.default_rng(7)
    n = 3000
    time = np.round(rng.exponential(size=n), 1)
    event = rng.random(n) < 0.57
    risk = np.round(rng.normal(size=n) - time, 1)
    ref = skm.concordance_index_censored(event, time, risk)
    got = S.concordance_index(event=event, time=time, risk=risk, return_counts=True)
    assert got.cindex == ref[0]
    assert tuple(got[1:]) == tuple(int(v) for v in ref[1:])


# ------------------------------------------------------------------------------------------
# Uno, AUC, Brier


@given(
    data=survival_data(min_n=3, max_n=50),
    tau_q=st.sampled_from([None, 0.5, 0.8]),
    split=st.booleans(),
)
def test_uno_equals_sksurv(data, tau_q, split):
    event, time, risk = data
    if split:  # censoring law from a separate "training" sample with a longer follow-up
        rng = np.random.default_rng(len(time))
        tr_time = np.concatenate([time, [time.max() + 1.0]])
        tr_event = np.concatenate([rng.random(len(time)) < 0.5, [False]])
    else:
        tr_time, tr_event = time, event
    tau = None if tau_q is None else float(np.quantile(time, tau_q))
    ref = _sk(
        skm.concordance_index_ipcw,
        Surv.from_arrays(tr_event, tr_time),
        Surv.from_arrays(event, time),
        risk,
        tau=tau,
    )
    got = _ours(
        S.concordance_index_ipcw,
        event=event,
        time=time,
        risk=risk,
        train_event=tr_event if split else None,
        train_time=tr_time if split else None,
        tau=tau,
        return_counts=True,
    )
    if _assert_same_outcome(ref, got):
        assert abs(got.cindex - ref[0]) <= TOL
        assert tuple(got[1:]) == tuple(int(v) for v in ref[1:])


def _eval_times(time, rng, k):
    cand = np.unique(time)
    cand = cand[(cand >= time.min()) & (cand < time.max())]
    if cand.size == 0:
        return None
    mids = cand + 0.25  # between grid points too
    pool = np.unique(np.concatenate([cand, mids[mids < time.max()]]))
    return np.unique(rng.choice(pool, size=min(k, pool.size), replace=False))


@given(data=survival_data(min_n=4, max_n=50), k=st.integers(1, 4), two_d=st.booleans())
def test_cumulative_dynamic_auc_equals_sksurv(data, k, two_d):
    event, time, risk = data
    rng = np.random.default_rng(len(time) + k)
    times = _eval_times(time, rng, k)
    if times is None:
        return
    est = np.round(risk[:, None] + rng.normal(size=(len(time), times.size)), 1) if two_d else risk
    y = Surv.from_arrays(event, time)
    ref = _sk(skm.cumulative_dynamic_auc, y, y, est, times)
    got = _ours(S.cumulative_dynamic_auc, event=event, time=time, risk=est, times=times)
    if _assert_same_outcome(ref, got):
        np.testing.assert_allclose(got.auc, ref[0], rtol=0, atol=TOL)
        assert abs(got.mean_auc - ref[1]) <= TOL


@given(data=survival_data(min_n=4, max_n=50), k=st.integers(1, 4))
def test_brier_and_ibs_equal_sksurv(data, k):
    event, time, _ = data
    rng = np.random.default_rng(len(time) * 7 + k)
    times = _eval_times(time, rng, k)
    if times is None:
        return
    surv = np.round(rng.random((len(time), times.size)), 2)
    y = Surv.from_arrays(event, time)
    ref = _sk(skm.brier_score, y, y, surv, times)
    got = _ours(S.brier_score, event=event, time=time, surv=surv, times=times)
    if _assert_same_outcome(ref, got):
        np.testing.assert_allclose(got, ref[1], rtol=0, atol=TOL)
        if times.size >= 2:
            ibs = S.integrated_brier_score(event=event, time=time, surv=surv, times=times)
            assert abs(ibs - skm.integrated_brier_score(y, y, surv, times)) <= TOL


@given(data=survival_data(min_n=1, max_n=50, min_events=0), reverse=st.booleans())
def test_kaplan_meier_equals_sksurv(data, reverse):
    event, time, _ = data
    t_ref, s_ref = kaplan_meier_estimator(event, time, reverse=reverse)
    got = S.kaplan_meier(event=event, time=time, reverse=reverse)
    np.testing.assert_array_equal(got.time, t_ref)
    np.testing.assert_allclose(got.survival, s_ref, rtol=0, atol=TOL)


@given(data=survival_data(min_n=4, max_n=60), n_groups=st.integers(2, 4))
def test_logrank_equals_sksurv_compare_survival(data, n_groups):
    event, time, _ = data
    group = np.random.default_rng(len(time)).integers(0, n_groups, size=len(time))
    if np.unique(group).size < 2:
        return
    ref = _sk(compare_survival, Surv.from_arrays(event, time), group)
    got = _ours(S.logrank_test, event=event, time=time, group=group)
    if _assert_same_outcome(ref, got):
        assert abs(got.statistic - ref[0]) <= TOL * max(1.0, abs(ref[0]))
        assert abs(got.p_value - ref[1]) <= TOL
        assert got.dof == np.unique(group).size - 1


# ------------------------------------------------------------------------------------------
# real datasets shipped with scikit-survival


def _real(name):
    from sksurv import datasets

    X, y = getattr(datasets, name)()
    ev_field, t_field = y.dtype.names
    event = y[ev_field].astype(bool)
    time = y[t_field].astype(np.float64)
    num = X.select_dtypes("number").to_numpy(np.float64)
    num = (num - num.mean(0)) / num.std(0)
    w = np.linspace(-0.5, 0.5, num.shape[1])
    return event, time, num, num @ w


REAL = ["load_whas500", "load_veterans_lung_cancer", "load_gbsg2"]


@pytest.mark.parametrize("name", REAL)
def test_real_datasets_metrics_equal_sksurv(name):
    event, time, _, risk = _real(name)
    y = Surv.from_arrays(event, time)
    ref = skm.concordance_index_censored(event, time, risk)
    got = S.concordance_index(event=event, time=time, risk=risk, return_counts=True)
    assert got.cindex == ref[0] and tuple(got[1:]) == tuple(int(v) for v in ref[1:])
    # rounded risks: many ties
    r1 = np.round(risk, 1)
    assert (
        S.concordance_index(event=event, time=time, risk=r1)
        == (skm.concordance_index_censored(event, time, r1)[0])
    )
    tau = float(np.quantile(time, 0.8))
    ref_u = skm.concordance_index_ipcw(y, y, risk, tau=tau)[0]
    assert abs(S.concordance_index_ipcw(event=event, time=time, risk=risk, tau=tau) - ref_u) <= TOL
    times = np.quantile(time[event], [0.2, 0.4, 0.6, 0.8])
    ref_a = skm.cumulative_dynamic_auc(y, y, risk, times)
    got_a = S.cumulative_dynamic_auc(event=event, time=time, risk=risk, times=times)
    np.testing.assert_allclose(got_a.auc, ref_a[0], atol=TOL)
    assert abs(got_a.mean_auc - ref_a[1]) <= TOL
    # survival predictions of a Breslow-type model exp(-H0(t) exp(risk))
    surv = np.exp(-np.outer(np.exp(risk), times / time.max()))
    ref_b = skm.brier_score(y, y, surv, times)[1]
    np.testing.assert_allclose(
        S.brier_score(event=event, time=time, surv=surv, times=times), ref_b, atol=TOL
    )
    assert (
        abs(
            S.integrated_brier_score(event=event, time=time, surv=surv, times=times)
            - skm.integrated_brier_score(y, y, surv, times)
        )
        <= TOL
    )
    group = (risk > np.median(risk)).astype(int) + (risk > np.quantile(risk, 0.8))
    lr = S.logrank_test(event=event, time=time, group=group)
    ref_lr = compare_survival(y, group)
    assert abs(lr.statistic - ref_lr[0]) <= TOL * max(1, ref_lr[0])
    assert abs(lr.p_value - ref_lr[1]) <= TOL


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_real_datasets_cox_equals_sksurv_optimizer(name, ties):
    event, time, X, _ = _real(name)
    w = np.linspace(-0.3, 0.4, X.shape[1])
    opt = CoxPHOptimizer(X, event, time, np.zeros(X.shape[1]), ties)
    ref = opt.nlog_likelihood(w) * len(time) / event.sum()
    log_risk = torch.as_tensor(X @ w, dtype=torch.float64)
    got = S.cox_ph_loss(log_risk, torch.as_tensor(time), torch.as_tensor(event), ties=ties)
    assert abs(got.item() - ref) <= TOL * max(1.0, abs(ref))
