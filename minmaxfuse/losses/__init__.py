"""Objectives: the Together soft-assignment loss, the Apart contrastive loss, the min-max objective.

Also the multi-head Sinkhorn consistency loss (swapped prediction across views).

Tensors passed as arguments live here (the learnable prototype bank and anchors are in
:mod:`minmaxfuse.layers`); schedules for loss weights and the TTA mass curriculum too.
"""

from __future__ import annotations

from minmaxfuse.losses._consistency import SinkhornConsistency, sinkhorn_consistency_loss
from minmaxfuse.losses._contrastive import DistinctContrastive, distinct_contrastive_loss
from minmaxfuse.losses._minmax import MinMaxComponents, MinMaxObjective, Term
from minmaxfuse.losses._schedules import (
    Constant,
    Cosine,
    Linear,
    Schedule,
    SigmoidRamp,
    mass_ramp,
)
from minmaxfuse.losses._together import soft_assignment_loss

__all__ = [
    "Constant",
    "Cosine",
    "DistinctContrastive",
    "Linear",
    "MinMaxComponents",
    "MinMaxObjective",
    "Schedule",
    "SigmoidRamp",
    "SinkhornConsistency",
    "Term",
    "distinct_contrastive_loss",
    "mass_ramp",
    "sinkhorn_consistency_loss",
    "soft_assignment_loss",
]
