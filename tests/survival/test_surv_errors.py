"""Error table of minmaxfuse.survival: every invalid input raises a clear ValueError/TypeError."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minmaxfuse.survival as S

E = np.array([True, False, True, True])
T = np.array([1.0, 2.0, 3.0, 4.0])
R = np.array([0.4, 0.1, 0.3, 0.2])

METRIC_CASES = [
    # (description, kwargs override, exception, message fragment)
    ("length mismatch", {"time": T[:3]}, ValueError, "`time` must have the same length"),
    ("risk length", {"risk": R[:2]}, ValueError, "`risk` must have the same length"),
    ("nan time", {"time": np.array([1.0, np.nan, 3.0, 4.0])}, ValueError, "`time` must be finite"),
    ("nan risk", {"risk": np.array([0.1, np.nan, 0.3, 0.2])}, ValueError, "`risk` must be finite"),
    ("negative time", {"time": np.array([1.0, -2.0, 3.0, 4.0])}, ValueError, "`time` must be >= 0"),
    ("int events", {"event": np.array([1, 0, 1, 1])}, TypeError, "`event` must be a bool"),
    ("float events", {"event": torch.tensor([1.0, 0, 1, 1])}, TypeError, "`event` must be a bool"),
    ("2-d risk", {"risk": R[:, None]}, ValueError, "`risk` must be one-dimensional"),
    ("string time", {"time": np.array(["a", "b", "c", "d"])}, TypeError, "`time` must hold real"),
    ("list-free object", {"risk": {1, 2}}, TypeError, "`risk` must be a numpy array"),
    ("all censored", {"event": np.zeros(4, dtype=bool)}, ValueError, "at least one event"),
    ("one sample", {"event": E[:1], "time": T[:1], "risk": R[:1]}, ValueError, "at least 2"),
    ("tied_tol", {"tied_tol": -1.0}, ValueError, "`tied_tol` must be"),
]


@pytest.mark.parametrize("fn", [S.concordance_index, S.concordance_index_ipcw])
@pytest.mark.parametrize(
    "override, exc, msg", [c[1:] for c in METRIC_CASES], ids=[c[0] for c in METRIC_CASES]
)
def test_cindex_error_table(fn, override, exc, msg):
    kwargs = {"event": E, "time": T, "risk": R} | override
    with pytest.raises(exc, match=msg):
        fn(**kwargs)


def test_cindex_no_comparable_pairs_raises():
    # the only event is at the largest time: no pair can be ordered
    with pytest.raises(ValueError, match="no comparable pair"):
        S.concordance_index(event=np.array([False, True]), time=np.array([1.0, 2.0]), risk=R[:2])
    # two events at the same time are not comparable
    with pytest.raises(ValueError, match="no comparable pair"):
        S.concordance_index(event=np.array([True, True]), time=np.array([1.0, 1.0]), risk=R[:2])


def test_cindex_is_keyword_only():
    with pytest.raises(TypeError):
        S.concordance_index(E, T, R)  # type: ignore[misc]


def test_ipcw_specific_errors():
    with pytest.raises(ValueError, match="must be given together"):
        S.concordance_index_ipcw(event=E, time=T, risk=R, train_time=T)
    with pytest.raises(ValueError, match="must not exceed the largest time"):
        S.concordance_index_ipcw(
            event=E, time=T * 10, risk=R, train_event=np.array([False, True]), train_time=T[:2]
        )
    with pytest.raises(ValueError, match="`tau` must be"):
        S.concordance_index_ipcw(event=E, time=T, risk=R, tau=float("nan"))
    with pytest.raises(ValueError, match="positive weight"):
        S.concordance_index_ipcw(event=E, time=T, risk=R, tau=0.5)


def test_auc_brier_errors():
    kw = {"event": E, "time": T}
    with pytest.raises(ValueError, match="`times` must lie within"):
        S.cumulative_dynamic_auc(**kw, risk=R, times=[4.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        S.cumulative_dynamic_auc(**kw, risk=R, times=[2.5, 1.5])
    with pytest.raises(ValueError, match="no case"):
        S.cumulative_dynamic_auc(
            event=np.array([False, True, True, True]), time=T, risk=R, times=[1.5]
        )
    with pytest.raises(ValueError, match=r"`surv` must have shape \(N, len\(times\)\)"):
        S.brier_score(**kw, surv=np.ones((4, 3)), times=[1.5, 2.5])
    with pytest.raises(ValueError, match="at least 2 time points"):
        S.integrated_brier_score(**kw, surv=np.ones(4), times=[1.5])


def test_logrank_kaplan_meier_bootstrap_errors():
    with pytest.raises(ValueError, match="at least 2 distinct groups"):
        S.logrank_test(event=E, time=T, group=np.zeros(4))
    with pytest.raises(ValueError, match="`group` must have shape"):
        S.logrank_test(event=E, time=T, group=np.zeros(3))
    with pytest.raises(TypeError, match="`reverse` must be a bool"):
        S.kaplan_meier(event=E, time=T, reverse=1)
    with pytest.raises(ValueError, match="`level` must be in"):
        S.bootstrap_ci(S.concordance_index, event=E, time=T, risk=R, level=95)
    with pytest.raises(ValueError, match="`n_resamples` must be"):
        S.bootstrap_ci(S.concordance_index, event=E, time=T, risk=R, n_resamples=0)
    with pytest.raises(ValueError, match="`risk` must have length"):
        S.bootstrap_ci(S.concordance_index, event=E, time=T, risk=R[:2])


def test_label_errors():
    with pytest.raises(ValueError, match="at least `n_bins` = 4 events"):
        S.discretize_time(T, E, n_bins=4)
    with pytest.raises(ValueError, match="coinciding quantile edges"):
        S.discretize_time(np.r_[np.ones(7), 2.0], np.ones(8, dtype=bool), n_bins=3)
    with pytest.raises(ValueError, match="`outer` must be one of"):
        S.discretize_time(T, E, n_bins=2, outer="mcat")
    with pytest.raises(TypeError, match="`n_bins` must be an int"):
        S.discretize_time(T, E, n_bins=2.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        S.assign_time_bins(T, np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"must lie in \[edges\[0\], edges\[-1\]\)"):
        S.assign_time_bins(T, np.array([0.0, 2.0, 4.0]))
    # the tensor path (device-side searchsorted) runs the same checks
    with pytest.raises(ValueError, match=r"must lie in \[edges\[0\], edges\[-1\]\)"):
        S.assign_time_bins(torch.tensor(T), torch.tensor([0.0, 2.0, 4.0]))
    with pytest.raises(ValueError, match="`time` must be >= 0"):
        S.assign_time_bins(torch.tensor([-1.0, 2.0]), torch.tensor([-5.0, 2.0, 4.0]))
    with pytest.raises(ValueError, match="strictly increasing"):
        S.assign_time_bins(torch.tensor(T), torch.tensor([0.0, 3.0, 2.0, 9.0]))
    with pytest.raises(ValueError, match="`time` must be a real 1-d tensor"):
        S.assign_time_bins(torch.ones(2, 2), torch.tensor([0.0, 3.0]))


# ------------------------------------------------------------------------------------------
# losses


def _nll_args():
    return torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), torch.tensor([True, False, True, False])


def _cox_args():
    return (
        torch.zeros(4),
        torch.tensor([1.0, 2.0, 3.0, 4.0]),
        torch.tensor([True, False, True, False]),
    )


LOSS_CASES = [
    (
        "nll int event",
        "nll",
        {2: torch.tensor([1, 0, 1, 0])},
        {},
        TypeError,
        "`event` must be a bool",
    ),
    (
        "nll float bins",
        "nll",
        {1: torch.tensor([0.0, 1, 2, 0])},
        {},
        TypeError,
        "`time_bin` must be an integer",
    ),
    (
        "nll bin range",
        "nll",
        {1: torch.tensor([0, 1, 3, 0])},
        {},
        ValueError,
        r"`time_bin` must lie in \[0, 3\)",
    ),
    (
        "nll negative bin",
        "nll",
        {1: torch.tensor([0, -1, 2, 0])},
        {},
        ValueError,
        "`time_bin` must lie",
    ),
    (
        "nll length",
        "nll",
        {2: torch.tensor([True, False])},
        {},
        ValueError,
        r"`event` must have shape \(B\)",
    ),
    (
        "nll 1-d logits",
        "nll",
        {0: torch.zeros(4)},
        {},
        ValueError,
        r"`logits` must have shape \(B, T\)",
    ),
    (
        "nll int logits",
        "nll",
        {0: torch.zeros(4, 3, dtype=torch.long)},
        {},
        TypeError,
        "floating-point",
    ),
    (
        "nll nan",
        "nll",
        {0: torch.full((4, 3), float("nan"))},
        {},
        ValueError,
        "`logits` must be finite",
    ),
    ("nll alpha", "nll", {}, {"alpha": 1.5}, ValueError, r"`alpha` must be in \[0.0, 1.0\]"),
    ("nll reduction", "nll", {}, {"reduction": "avg"}, ValueError, "`reduction` must be one of"),
    (
        "nll weight shape",
        "nll",
        {},
        {"weight": torch.ones(3)},
        ValueError,
        "`weight` must have shape",
    ),
    (
        "nll weight sign",
        "nll",
        {},
        {"weight": -torch.ones(4)},
        ValueError,
        "`weight` must be finite and >= 0",
    ),
    (
        "cox int event",
        "cox",
        {2: torch.tensor([1, 0, 1, 0])},
        {},
        TypeError,
        "`event` must be a bool",
    ),
    ("cox length", "cox", {1: torch.ones(3)}, {}, ValueError, r"`time` must have shape \(B\)"),
    ("cox (B,1)", "cox", {0: torch.zeros(4, 1)}, {}, ValueError, r"squeeze\(-1\)"),
    (
        "cox nan risk",
        "cox",
        {0: torch.tensor([0.0, float("nan"), 0, 0])},
        {},
        ValueError,
        "`log_risk` must be finite",
    ),
    (
        "cox nan time",
        "cox",
        {1: torch.tensor([1.0, float("nan"), 3, 4])},
        {},
        ValueError,
        "`time` must be finite",
    ),
    (
        "cox negative time",
        "cox",
        {1: torch.tensor([1.0, -2.0, 3, 4])},
        {},
        ValueError,
        "`time` must be >= 0",
    ),
    (
        "cox bool time",
        "cox",
        {1: torch.ones(4, dtype=torch.bool)},
        {},
        TypeError,
        "`time` must be a real",
    ),
    (
        "cox ties",
        "cox",
        {},
        {"ties": "exact"},
        ValueError,
        "`ties` must be one of 'efron', 'breslow'",
    ),
    ("cox reduction", "cox", {}, {"reduction": None}, ValueError, "`reduction` must be one of"),
    (
        "cox not tensor",
        "cox",
        {0: [0.0, 0.0, 0.0, 0.0]},
        {},
        TypeError,
        "`log_risk` must be a torch.Tensor",
    ),
]


@pytest.mark.parametrize(
    "which, pos, kw, exc, msg", [c[1:] for c in LOSS_CASES], ids=[c[0] for c in LOSS_CASES]
)
def test_loss_error_table(which, pos, kw, exc, msg):
    args = list(_nll_args() if which == "nll" else _cox_args())
    for i, v in pos.items():
        args[i] = v
    fn = S.nll_surv_loss if which == "nll" else S.cox_ph_loss
    with pytest.raises(exc, match=msg):
        fn(*args, **kw)


def test_module_constructors_validate_options():
    with pytest.raises(ValueError, match="`ties` must be one of"):
        S.CoxPHLoss(ties="exact")
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        S.NLLSurvLoss(reduction="batchmean")
    with pytest.raises(ValueError, match="`alpha` must be in"):
        S.NLLSurvLoss(alpha=-0.1)
    with pytest.raises(ValueError, match="`eps` must be finite and > 0"):
        S.NLLSurvLoss(eps=0.0)
