"""Survival metrics and time bins: properties, brute-force oracles, helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minmaxfuse.survival as S
from minmaxfuse.survival._stats import _tie_bounds, chi2_sf
from tests.survival.surv_strategies import survival_data


def brute_harrell(event, time, risk, tol=1e-8):
    num = den = 0.0
    n = len(time)
    for i in range(n):
        if not event[i]:
            continue
        for j in range(n):
            if time[j] > time[i] or (time[j] == time[i] and not event[j]):
                den += 1
                if abs(risk[i] - risk[j]) <= tol:
                    num += 0.5
                elif risk[i] > risk[j]:
                    num += 1
    return num / den if den else None


def _c(event, time, risk, **kw):
    try:
        return S.concordance_index(event=event, time=time, risk=risk, **kw)
    except ValueError:
        return None


@given(data=survival_data(min_n=2, max_n=30))
def test_harrell_matches_brute_force_and_is_in_unit_interval(data):
    event, time, risk = data
    ref = brute_harrell(event, time, risk)
    got = _c(event, time, risk)
    assert (ref is None) == (got is None)
    if got is not None:
        assert got == pytest.approx(ref, abs=1e-12)
        assert 0.0 <= got <= 1.0


@given(data=survival_data(min_n=2, max_n=30), kind=st.sampled_from(["exp", "affine", "cube"]))
def test_harrell_invariant_to_increasing_transform(data, kind):
    event, time, risk = data
    f = {"exp": np.exp, "affine": lambda r: 3.0 * r + 7.0, "cube": lambda r: r**3 + r}[kind]
    a, b = _c(event, time, risk, tied_tol=0.0), _c(event, time, f(risk), tied_tol=0.0)
    assert (a is None) == (b is None)
    if a is not None:
        assert a == pytest.approx(b, abs=1e-12)


@given(data=survival_data(min_n=2, max_n=30))
def test_harrell_reversed_risk_gives_complement_and_permutation_invariance(data):
    event, time, risk = data
    a = _c(event, time, risk)
    if a is None:
        return
    # ties count 1/2 on both sides, so C(r) + C(-r) = 1 exactly
    assert a + _c(event, time, -risk) == pytest.approx(1.0, abs=1e-12)
    perm = np.random.default_rng(0).permutation(len(time))
    assert _c(event[perm], time[perm], risk[perm]) == a


def test_harrell_perfect_and_constant_predictions():
    time = np.arange(1.0, 11.0)
    event = np.ones(10, dtype=bool)
    assert S.concordance_index(event=event, time=time, risk=-time) == 1.0
    assert S.concordance_index(event=event, time=time, risk=time) == 0.0
    assert S.concordance_index(event=event, time=time, risk=np.zeros(10)) == 0.5


def test_metrics_accept_tensors_and_return_python_floats():
    g = torch.Generator().manual_seed(0)
    time = torch.rand(50, generator=g, dtype=torch.float64) * 10
    event = torch.rand(50, generator=g) < 0.7
    risk = -time + torch.randn(50, generator=g, dtype=torch.float64)
    c_t = S.concordance_index(event=event, time=time, risk=risk.float().requires_grad_())
    c_n = S.concordance_index(event=event.numpy(), time=time.numpy(), risk=risk.float().numpy())
    assert isinstance(c_t, float) and c_t == c_n
    u = S.concordance_index_ipcw(event=event, time=time, risk=risk)
    assert isinstance(u, float) and 0 <= u <= 1


def test_tie_bounds_use_the_exact_floating_point_predicate():
    u = np.array([0.0, 0.1, 0.2, 0.30000000000000004, 0.4])
    lo, hi = _tie_bounds(u, np.array([0.2, 0.2, 0.0]), 0.1)
    # |0.1 - 0.2| = 0.1 <= 0.1 but |0.30000000000000004 - 0.2| = 0.10000000000000003 > 0.1
    expect = [np.flatnonzero(np.abs(u - e) <= 0.1) for e in (0.2, 0.2, 0.0)]
    for k, idx in enumerate(expect):
        assert (lo[k], hi[k]) == (idx[0], idx[-1] + 1)


@given(data=survival_data(min_n=3, max_n=40))
def test_uno_without_censoring_before_tau_equals_harrell(data):
    # no censoring at all: G = 1, all weights 1, Uno = Harrell
    _, time, risk = data
    event = np.ones(len(time), dtype=bool)
    a = _c(event, time, risk)
    if a is None:
        return
    assert S.concordance_index_ipcw(event=event, time=time, risk=risk) == pytest.approx(
        a, abs=1e-12
    )


def test_kaplan_meier_textbook_example():
    time = np.array([6.0, 6.0, 6.0, 7.0, 10.0, 13.0, 16.0])
    event = np.array([True, True, False, True, False, True, True])
    km = S.kaplan_meier(event=event, time=time)
    expect = np.cumprod([1 - 2 / 7, 1 - 1 / 4, 1.0, 1 - 1 / 2, 1 - 1 / 1])
    np.testing.assert_allclose(km.survival, expect, rtol=1e-15)
    np.testing.assert_array_equal(km.time, [6.0, 7.0, 10.0, 13.0, 16.0])


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 10, 30])
def test_chi2_sf_equals_scipy(dof):
    stats = pytest.importorskip("scipy.stats")
    for x in [0.0, 1e-8, 0.3, 1.0, 2.5, dof, dof + 1.0, 7.9, 20.0, 60.0, 150.0, 400.0]:
        ref = stats.chi2.sf(x, dof)
        got = chi2_sf(x, dof)
        assert got == pytest.approx(ref, rel=1e-12, abs=1e-300), (x, dof)


def test_chi2_sf_closed_forms():
    for x in [0.5, 3.0, 12.0]:
        assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-14)
        assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-13)


def test_logrank_identical_groups_gives_zero_statistic():
    time = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    event = np.array([True, True, False, False, True, True])
    res = S.logrank_test(event=event, time=time, group=np.array(["a", "b"] * 3))
    assert res.statistic == pytest.approx(0.0, abs=1e-15)
    assert res.p_value == pytest.approx(1.0)
    np.testing.assert_allclose(res.observed, res.expected)
    assert list(res.groups) == ["a", "b"]


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    time = rng.exponential(size=150)
    event = rng.random(150) < 0.7
    risk = -time + rng.normal(size=150)
    a = S.bootstrap_ci(
        S.concordance_index, event=event, time=time, risk=risk, n_resamples=100, seed=3
    )
    b = S.bootstrap_ci(
        S.concordance_index, event=event, time=time, risk=risk, n_resamples=100, seed=3
    )
    c = S.bootstrap_ci(
        S.concordance_index, event=event, time=time, risk=risk, n_resamples=100, seed=4
    )
    assert a == b and a != c
    assert a.low < a.estimate < a.high and a.n_valid == 100
    assert a.estimate == S.concordance_index(event=event, time=time, risk=risk)
    # extra keyword arguments reach the metric; surv-type metrics work too
    u = S.bootstrap_ci(
        S.concordance_index_ipcw, event=event, time=time, risk=risk, n_resamples=20, tau=1.0
    )
    assert 0 <= u.low <= u.high <= 1
    times = np.quantile(time, [0.2, 0.5])
    surv = np.exp(-np.outer(np.exp(risk), times))
    ibs = S.bootstrap_ci(
        S.integrated_brier_score,
        event=event,
        time=time,
        surv=surv,
        times=times,
        train_event=event,
        train_time=time,
        n_resamples=20,
    )
    assert ibs.low <= ibs.high


def test_bootstrap_skips_undefined_resamples():
    event = np.array([True, False, False, False, False])
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    risk = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    res = S.bootstrap_ci(S.concordance_index, event=event, time=time, risk=risk, n_resamples=50)
    assert 0 < res.n_valid < 50  # resamples without the single event are dropped


# ------------------------------------------------------------------------------------------
# time bins


def test_discretize_time_matches_pandas_qcut_mcat_recipe():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    time = np.round(rng.exponential(30, size=200), 2)
    event = rng.random(200) < 0.6
    _, q = pd.qcut(time[event], q=4, retbins=True, labels=False)
    q[0], q[-1] = time.min() - 1e-6, time.max() + 1e-6
    ref = pd.cut(time, bins=q, labels=False, right=False, include_lowest=True)
    edges = S.discretize_time(time, event, n_bins=4, outer="data")
    np.testing.assert_allclose(edges, q, rtol=0, atol=0)
    np.testing.assert_array_equal(S.assign_time_bins(time, edges), ref)
    inf_edges = S.discretize_time(time, event, n_bins=4)
    assert np.isinf(inf_edges[[0, -1]]).all()
    np.testing.assert_array_equal(inf_edges[1:-1], q[1:-1])
    np.testing.assert_array_equal(S.assign_time_bins(time, inf_edges), ref)


def test_assign_time_bins_right_open_and_tensor_roundtrip():
    edges = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    t = torch.tensor([0.0, 0.999, 1.0, 2.5, 2.999999])
    out = S.assign_time_bins(t, edges)
    assert out.dtype == torch.long and out.tolist() == [0, 0, 1, 2, 2]
    e = S.discretize_time(t, torch.ones(5, dtype=torch.bool), n_bins=2)
    assert isinstance(e, torch.Tensor) and e.dtype == torch.float64


@given(
    data=survival_data(min_n=8, max_n=40, min_events=4),
    n_bins=st.integers(1, 4),
    outer=st.sampled_from(["data", "inf"]),
)
def test_bins_equal_pandas_qcut_cut_recipe(data, n_bins, outer):
    # MCAT: qcut edges of the event times, outer edges replaced, pd.cut(right=False). The edges
    # are taken from Series.quantile (what qcut uses): qcut itself also rejects a lowest/highest
    # quantile equal to an inner one, although MCAT replaces those outer edges anyway.
    pd = pytest.importorskip("pandas")
    event, time, _ = data
    # copy: under pandas 3 (copy-on-write) to_numpy() returns a read-only view
    q = pd.Series(time[event]).quantile(np.linspace(0, 1, n_bins + 1)).to_numpy(copy=True)
    q[0], q[-1] = time.min() - 1e-6, time.max() + 1e-6
    try:
        edges = S.discretize_time(time, event, n_bins=n_bins, outer=outer)
    except ValueError:
        with pytest.raises(ValueError, match="must be unique|monotonically"):
            pd.cut(time, bins=q, labels=False, right=False, include_lowest=True)
        return
    ref = pd.cut(time, bins=q, labels=False, right=False, include_lowest=True)
    np.testing.assert_array_equal(S.assign_time_bins(time, edges), ref)
    # pandas 2.x quantiles are bit-identical to ours; pandas 3.x interpolates in a different
    # order, which moves an interpolated edge by up to one ulp (seen: 0.833...33 vs 0.833...333).
    np.testing.assert_allclose(edges[1:-1], q[1:-1], rtol=4 * np.finfo(np.float64).eps, atol=0)
    if outer == "data":  # outer edges are min - eps and max + eps, computed alike
        np.testing.assert_array_equal(edges[[0, -1]], q[[0, -1]])


def test_runtime_does_not_import_scikit_survival_or_scipy():
    import subprocess
    import sys

    code = (
        "import sys, minmaxfuse, numpy as np\n"
        "from minmaxfuse.survival import concordance_index, logrank_test\n"
        "e = np.array([True, False, True, True]); t = np.array([1.0, 2.0, 3.0, 4.0])\n"
        "concordance_index(event=e, time=t, risk=-t)\n"
        "logrank_test(event=e, time=t, group=np.array([0, 1, 0, 1]))\n"
        "print(sorted(m for m in ('sksurv', 'scipy', 'pandas', 'sklearn') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
