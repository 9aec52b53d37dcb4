"""Survival losses: naive-loop and scikit-survival oracles, gradcheck, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minmaxfuse
from minmaxfuse.survival import (
    CoxPHLoss,
    NLLSurvLoss,
    cox_ph_loss,
    hazards,
    nll_surv_loss,
    risk_from_logits,
    survival_curve,
)
from tests.survival.surv_strategies import survival_data

# ------------------------------------------------------------------------------------------
# naive references (plain Python, float64)


def naive_nll(logits, time_bin, event, alpha):
    out = []
    for row, y, e in zip(logits.tolist(), time_bin.tolist(), event.tolist()):
        h = [1.0 / (1.0 + math.exp(-v)) for v in row]
        s_before = 1.0
        for j in range(y):
            s_before *= 1.0 - h[j]
        s_at = s_before * (1.0 - h[y])
        if e:
            out.append(-(math.log(s_before) + math.log(h[y])))
        else:
            out.append(-(1.0 - alpha) * math.log(s_at))
    return np.array(out)


def naive_cox_sum(eta, time, event, ties):
    """-log partial likelihood summed over events, by direct enumeration of risk sets."""
    eta, time, event = (np.asarray(a) for a in (eta, time, event))
    total = 0.0
    for t in sorted(set(time[event].tolist())):
        tied = [i for i in range(len(time)) if event[i] and time[i] == t]
        at_risk = [i for i in range(len(time)) if time[i] >= t]
        r_sum = sum(math.exp(eta[i]) for i in at_risk)
        d_sum = sum(math.exp(eta[i]) for i in tied)
        d = len(tied)
        total += sum(eta[i] for i in tied)
        if ties == "breslow":
            total -= d * math.log(r_sum)
        else:
            total -= sum(math.log(r_sum - l / d * d_sum) for l in range(d))
    return -total


def t64(a, dtype=torch.float64):
    return torch.as_tensor(np.asarray(a), dtype=dtype)


# ------------------------------------------------------------------------------------------
# NLL


@given(
    st.integers(1, 12),
    st.integers(1, 6),
    st.integers(0, 2**31 - 1),
    st.sampled_from([0.0, 0.15, 0.5, 1.0]),
)
def test_nll_matches_naive_loop(b, t, seed, alpha):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, generator=g, dtype=torch.float64) * 3
    time_bin = torch.randint(0, t, (b,), generator=g)
    event = torch.rand(b, generator=g) < 0.5
    ref = naive_nll(logits, time_bin, event, alpha)
    got = nll_surv_loss(logits, time_bin, event, alpha=alpha, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12)
    assert (got >= 0).all()
    mean = nll_surv_loss(logits, time_bin, event, alpha=alpha)
    np.testing.assert_allclose(mean.item(), ref.mean(), rtol=1e-12)
    total = NLLSurvLoss(alpha=alpha, reduction="sum")(logits, time_bin, event)
    np.testing.assert_allclose(total.item(), ref.sum(), rtol=1e-12)


def test_nll_mcat_clamped_mode_matches_log_space_for_moderate_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 4, generator=g, dtype=torch.float64)
    time_bin = torch.randint(0, 4, (32,), generator=g)
    event = torch.rand(32, generator=g) < 0.5
    exact = nll_surv_loss(logits, time_bin, event, alpha=0.15)
    mcat = nll_surv_loss(logits, time_bin, event, alpha=0.15, eps=1e-7)
    torch.testing.assert_close(exact, mcat, rtol=1e-12, atol=1e-12)


def test_nll_saturated_logits_stay_exact_in_log_space():
    # sigma(-40) underflows the MCAT clamp; the log-space loss equals 40 + log1p(e^-40)
    logits = torch.full((1, 2), 40.0, dtype=torch.float64)
    loss = nll_surv_loss(logits, torch.tensor([1]), torch.tensor([False]), reduction="sum")
    assert loss.item() == pytest.approx(2 * (40 + math.log1p(math.exp(-40))), rel=1e-14)
    clamped = nll_surv_loss(
        logits, torch.tensor([1]), torch.tensor([False]), reduction="sum", eps=1e-7
    )
    assert clamped.item() == pytest.approx(-math.log(1e-7), rel=1e-12)


def test_nll_weights_and_gradcheck():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    time_bin = torch.tensor([0, 1, 2, 3, 3, 0])
    event = torch.tensor([True, False, True, False, True, False])
    w = torch.rand(6, generator=g, dtype=torch.float64)
    per = nll_surv_loss(logits, time_bin, event, reduction="none")
    got = nll_surv_loss(logits, time_bin, event, weight=w)
    torch.testing.assert_close(got, (per * w).sum() / w.sum())
    for alpha in (0.0, 0.4):
        assert torch.autograd.gradcheck(
            lambda x, a=alpha: nll_surv_loss(x, time_bin, event, alpha=a), (logits,)
        )


def test_helpers_consistent_with_hazards():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64)
    h = hazards(logits)
    s = survival_curve(logits)
    torch.testing.assert_close(s, torch.cumprod(1 - h, dim=1))
    torch.testing.assert_close(risk_from_logits(logits), -s.sum(dim=1))
    assert (s[:, 1:] <= s[:, :-1]).all()


def test_nll_float32_dtype_preserved():
    logits = torch.randn(3, 4)
    out = nll_surv_loss(logits, torch.tensor([0, 1, 2]), torch.tensor([True, False, True]))
    assert out.dtype == torch.float32


# ------------------------------------------------------------------------------------------
# Cox


@pytest.mark.parametrize("ties", ["breslow", "efron"])
@given(data=survival_data(min_n=1, max_n=30))
def test_cox_matches_naive_loop_and_sksurv(ties, data):
    from sksurv.linear_model.coxph import CoxPHOptimizer

    event, time, eta = data
    n, n_ev = len(time), int(event.sum())
    ref = naive_cox_sum(eta, time, event, ties)
    got_sum = cox_ph_loss(t64(eta), t64(time), torch.as_tensor(event), ties=ties, reduction="sum")
    assert got_sum.dtype == torch.float64
    np.testing.assert_allclose(got_sum.item(), ref, rtol=1e-12, atol=1e-10)
    opt = CoxPHOptimizer(eta[:, None], event, time, np.zeros(1), ties)
    sk_mean_over_events = opt.nlog_likelihood(np.ones(1)) * n / n_ev  # it returns -pll / n
    got_mean = cox_ph_loss(t64(eta), t64(time), torch.as_tensor(event), ties=ties)
    np.testing.assert_allclose(got_mean.item(), sk_mean_over_events, rtol=1e-12, atol=1e-10)
    per = cox_ph_loss(t64(eta), t64(time), torch.as_tensor(event), ties=ties, reduction="none")
    assert per.shape == (n,)
    assert (per[~torch.as_tensor(event)] == 0).all()
    np.testing.assert_allclose(per.sum().item(), ref, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_cox_event_censor_ties_keep_censored_in_risk_set(ties):
    # torchsurv/pycox drop censored patients tied with an event from its risk set
    eta = np.array([0.3, -1.2, 2.0, 0.7, -0.4, 1.1])
    time = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    event = np.array([True, False, False, True, True, False])
    for perm in ([0, 1, 2, 3, 4, 5], [1, 0, 3, 2, 5, 4], [5, 3, 1, 4, 2, 0]):
        got = cox_ph_loss(
            t64(eta[perm]),
            t64(time[perm]),
            torch.as_tensor(event[perm]),
            ties=ties,
            reduction="sum",
        )
        np.testing.assert_allclose(got.item(), naive_cox_sum(eta, time, event, ties), rtol=1e-13)


@pytest.mark.parametrize("ties", ["breslow", "efron"])
@pytest.mark.parametrize("shift", [100.0, -100.0])
def test_cox_stable_and_shift_invariant_at_large_log_risk(ties, shift):
    g = torch.Generator().manual_seed(3)
    eta = torch.randn(50, generator=g, dtype=torch.float64)
    time = torch.randint(0, 6, (50,), generator=g).to(torch.float64)
    event = torch.rand(50, generator=g) < 0.6
    base = cox_ph_loss(eta, time, event, ties=ties)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
        x = (eta + shift).to(dtype).requires_grad_(True)
        out = cox_ph_loss(x, time.to(dtype), event, ties=ties)
        assert out.dtype == dtype
        assert torch.isfinite(out)
        np.testing.assert_allclose(out.item(), base.item(), rtol=tol, atol=tol)
        out.backward()
        assert torch.isfinite(x.grad).all()
    # spread log-risks: +-100 in the same batch
    wide = torch.where(torch.arange(50) % 2 == 0, eta + 100, eta - 100)
    x = wide.clone().requires_grad_(True)
    out = cox_ph_loss(x, time, event, ties=ties, reduction="sum")
    np.testing.assert_allclose(
        out.item(),
        naive_cox_sum_logspace(wide.numpy(), time.numpy(), event.numpy(), ties),
        rtol=1e-12,
    )
    out.backward()
    assert torch.isfinite(x.grad).all()


def naive_cox_sum_logspace(eta, time, event, ties):
    # the partial likelihood is shift invariant: run the naive loop on eta - max (no overflow)
    return naive_cox_sum(eta - eta.max(), time, event, ties)


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_cox_gradcheck_with_ties(ties):
    g = torch.Generator().manual_seed(4)
    eta = torch.randn(12, generator=g, dtype=torch.float64, requires_grad=True)
    time = torch.tensor([1, 1, 1, 2, 2, 3, 3, 3, 4, 5, 5, 6], dtype=torch.float64)
    event = torch.tensor([1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1], dtype=torch.bool)
    w = torch.rand(12, generator=g, dtype=torch.float64)
    for red in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(
            lambda x, r=red: cox_ph_loss(x, time, event, ties=ties, reduction=r), (eta,)
        )
    assert torch.autograd.gradcheck(
        lambda x: cox_ph_loss(x, time, event, ties=ties, weight=w), (eta,)
    )


def test_cox_no_event_is_graph_connected_zero():
    eta = torch.randn(5, dtype=torch.float64, requires_grad=True)
    time = torch.rand(5, dtype=torch.float64)
    event = torch.zeros(5, dtype=torch.bool)
    out = CoxPHLoss()(eta, time, event)
    assert out.item() == 0.0 and out.requires_grad and out.dtype == torch.float64
    out.backward()
    assert (eta.grad == 0).all()
    none = cox_ph_loss(eta, time, event, reduction="none")
    assert none.shape == (5,) and none.requires_grad


def test_cox_weight_and_module_defaults():
    eta = torch.tensor([0.1, 0.4, -0.3, 0.9], dtype=torch.float64)
    time = torch.tensor([1.0, 2.0, 2.0, 4.0], dtype=torch.float64)
    event = torch.tensor([True, True, False, True])
    w = torch.tensor([2.0, 1.0, 5.0, 0.5], dtype=torch.float64)
    per = cox_ph_loss(eta, time, event, reduction="none")
    got = cox_ph_loss(eta, time, event, weight=w)
    torch.testing.assert_close(got, (per * w).sum() / (w * event).sum())
    assert minmaxfuse.CoxPHLoss is CoxPHLoss and minmaxfuse.NLLSurvLoss is NLLSurvLoss
    assert "ties='efron'" in repr(CoxPHLoss())


@given(data=survival_data(min_n=2, max_n=25), c=st.floats(-50, 50))
def test_cox_invariant_to_constant_and_permutation(data, c):
    event, time, eta = data
    a = cox_ph_loss(t64(eta), t64(time), torch.as_tensor(event))
    b = cox_ph_loss(t64(eta + c), t64(time), torch.as_tensor(event))
    perm = np.random.default_rng(0).permutation(len(eta))
    p = cox_ph_loss(t64(eta[perm]), t64(time[perm]), torch.as_tensor(event[perm]))
    np.testing.assert_allclose(b.item(), a.item(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(p.item(), a.item(), rtol=1e-12, atol=1e-12)
    assert a.item() >= -1e-12  # each risk set contains the event itself


def test_cox_efron_equals_breslow_without_ties():
    g = torch.Generator().manual_seed(5)
    eta = torch.randn(30, generator=g, dtype=torch.float64)
    time = torch.randperm(30, generator=g).to(torch.float64)
    event = torch.rand(30, generator=g) < 0.7
    torch.testing.assert_close(
        cox_ph_loss(eta, time, event, ties="efron"), cox_ph_loss(eta, time, event, ties="breslow")
    )


def test_cox_integer_times_and_mixed_dtypes():
    eta = torch.tensor([0.2, -0.1, 0.4, 0.0], dtype=torch.float32)
    event = torch.tensor([True, True, False, True])
    t_int = torch.tensor([3, 1, 1, 2])
    a = cox_ph_loss(eta, t_int, event)
    b = cox_ph_loss(eta, t_int.to(torch.float64), event)
    assert a.dtype == torch.float32 and b.dtype == torch.float32
    torch.testing.assert_close(a, b)
    ref = naive_cox_sum(eta.double().numpy(), t_int.numpy(), event.numpy(), "efron") / 3
    assert a.item() == pytest.approx(ref, rel=1e-6)
