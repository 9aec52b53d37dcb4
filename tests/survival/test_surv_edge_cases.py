"""Edge cases of the survival API found by fuzzing (issue 11): each fails on the old code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minmaxfuse import survival

EV = np.array([True, False, True, True, False, True])
TM = np.array([1.0, 2.0, 2.5, 3.0, 5.0, 8.0])
RK = np.array([0.4, 0.1, 0.3, 0.2, 0.0, -0.1])


@pytest.mark.parametrize("fn", ["hazards", "survival_curve", "risk_from_logits"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_logit_transforms_reject_non_finite_logits(fn, bad):
    logits = torch.zeros(2, 3)
    logits[1, 1] = bad
    with pytest.raises(ValueError, match="`logits` must be finite"):
        getattr(survival, fn)(logits)


def test_bootstrap_skips_nan_resamples():
    calls = {"n": 0}

    def flaky(**kw):  # defined on the full data, NaN on every other resample
        calls["n"] += 1
        return math.nan if calls["n"] % 2 == 0 else survival.concordance_index(**kw)

    res = survival.bootstrap_ci(flaky, event=EV, time=TM, risk=RK, n_resamples=20, seed=1)
    assert math.isfinite(res.low) and math.isfinite(res.high)
    assert res.n_valid < 20  # NaN resamples are not counted


def test_bootstrap_nan_estimate_raises():
    with pytest.raises(ValueError, match="`metric`"):
        survival.bootstrap_ci(lambda **kw: math.nan, event=EV, time=TM, risk=RK, n_resamples=3)


@pytest.mark.parametrize(
    "seed, exc", [("a", TypeError), (1.5, TypeError), (-1, ValueError), (True, TypeError)]
)
def test_bootstrap_seed_is_validated(seed, exc):
    with pytest.raises(exc, match="`seed`"):
        survival.bootstrap_ci(
            survival.concordance_index, event=EV, time=TM, risk=RK, n_resamples=3, seed=seed
        )


def test_bootstrap_accepts_numpy_scalars():
    res = survival.bootstrap_ci(
        survival.concordance_index,
        event=EV,
        time=TM,
        risk=RK,
        n_resamples=np.int64(5),
        level=np.float32(0.9),
        seed=np.int64(3),
    )
    assert 0 <= res.low <= res.high <= 1


@pytest.mark.parametrize("value", [-0.1, 1.2])
def test_brier_score_rejects_surv_outside_unit_interval(value):
    surv = np.full((6, 1), 0.5)
    surv[2] = value
    with pytest.raises(ValueError, match=r"`surv` must hold survival probabilities in \[0, 1\]"):
        survival.brier_score(event=EV, time=TM, surv=surv, times=[2.7])


def test_brier_score_rejects_empty_training_set():
    with pytest.raises(ValueError, match="`train_time` must not be empty"):
        survival.brier_score(
            event=EV,
            time=TM,
            surv=np.full(6, 0.5),
            times=[2.7],
            train_event=np.zeros(0, bool),
            train_time=np.zeros(0),
        )


@pytest.mark.parametrize(
    "group", [[0, 0, np.nan, 1, 1, 1], np.array([0, 0, None, 1, 1, 1], object)]
)
def test_logrank_rejects_missing_group_labels(group):
    with pytest.raises(ValueError, match="`group` must label every patient"):
        survival.logrank_test(event=EV, time=TM, group=np.asarray(group))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_assign_time_bins_rejects_repeated_infinite_edges(as_tensor):
    edges = np.array([-np.inf, -np.inf, 2.0, np.inf])
    t = torch.tensor(TM) if as_tensor else TM
    with pytest.raises(ValueError, match="`edges` must be a strictly increasing"):
        survival.assign_time_bins(t, torch.tensor(edges) if as_tensor else edges)


@pytest.mark.parametrize("edges", [["a", "b"], [1 + 1j, 2.0], np.array([0.0, 9.0], dtype=complex)])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_assign_time_bins_rejects_non_real_edges(edges, as_tensor):
    t = torch.tensor(TM) if as_tensor else TM
    with pytest.raises(TypeError, match="`edges` must hold real numbers"):
        survival.assign_time_bins(t, edges)


def test_discretize_time_data_edges_must_be_widened():
    with pytest.raises(ValueError, match="`eps` must widen the outer edges"):
        survival.discretize_time(TM, EV, n_bins=2, outer="data", eps=0)
    with pytest.raises(ValueError, match="`eps`"):  # too small to change 1e20 in float64
        survival.discretize_time(TM * 1e20, EV, n_bins=2, outer="data", eps=1e-6)
    edges = survival.discretize_time(TM, EV, n_bins=2, outer="data", eps=1e-6)
    assert survival.assign_time_bins(TM, edges).max() == 1  # every training time is binned


def test_flags_must_be_real_bools():
    with pytest.raises(TypeError, match="`return_counts`"):
        survival.concordance_index(event=EV, time=TM, risk=RK, return_counts="yes")
    with pytest.raises(TypeError, match="`return_counts`"):
        survival.concordance_index_ipcw(event=EV, time=TM, risk=RK, return_counts=1)
    with pytest.raises(TypeError, match="`gather`"):
        survival.cox_ph_loss(torch.zeros(6), torch.tensor(TM), torch.tensor(EV), gather=0)
    # numpy bools and scalars are real bools and numbers
    km = survival.kaplan_meier(event=EV, time=TM, reverse=np.bool_(True))
    assert km.survival.shape == (6,)
    c = survival.concordance_index(event=EV, time=TM, risk=RK, tied_tol=np.float32(1e-8))
    assert 0 <= c <= 1
