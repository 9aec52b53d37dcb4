"""Survival analysis: losses (discrete-time NLL, Cox with ties), time labels and metrics.

Conventions used throughout: ``event`` is bool with ``True`` = event observed (never a
"censorship" flag), ``time`` is a non-negative float, ``time_bin`` a long index and ``risk``
is higher for worse prognosis. Losses are torch functions and modules; metrics compute in
numpy float64 and accept numpy arrays or tensors through keyword-only arguments.
"""

from minmaxfuse.survival._labels import assign_time_bins, discretize_time
from minmaxfuse.survival._losses import (
    CoxPHLoss,
    NLLSurvLoss,
    cox_ph_loss,
    hazards,
    nll_surv_loss,
    risk_from_logits,
    survival_curve,
)
from minmaxfuse.survival._metrics import (
    BootstrapResult,
    ConcordanceResult,
    KaplanMeierResult,
    LogRankResult,
    TimeDependentAUC,
    bootstrap_ci,
    brier_score,
    concordance_index,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
    kaplan_meier,
    logrank_test,
)

__all__ = [
    "BootstrapResult",
    "ConcordanceResult",
    "CoxPHLoss",
    "KaplanMeierResult",
    "LogRankResult",
    "NLLSurvLoss",
    "TimeDependentAUC",
    "assign_time_bins",
    "bootstrap_ci",
    "brier_score",
    "concordance_index",
    "concordance_index_ipcw",
    "cox_ph_loss",
    "cumulative_dynamic_auc",
    "discretize_time",
    "hazards",
    "integrated_brier_score",
    "kaplan_meier",
    "logrank_test",
    "nll_surv_loss",
    "risk_from_logits",
    "survival_curve",
]
