"""Survival analysis: losses (discrete-time NLL, Cox with ties), time labels and metrics.

Conventions used throughout: ``event`` is bool with ``True`` = event observed (never a
"censorship" flag), ``time`` is a non-negative float, ``time_bin`` a long index and ``risk``
is higher for worse prognosis.
"""

from minmaxfuse.survival._losses import (
    CoxPHLoss,
    NLLSurvLoss,
    cox_ph_loss,
    hazards,
    nll_surv_loss,
    risk_from_logits,
    survival_curve,
)

__all__ = [
    "CoxPHLoss",
    "NLLSurvLoss",
    "cox_ph_loss",
    "hazards",
    "nll_surv_loss",
    "risk_from_logits",
    "survival_curve",
]
