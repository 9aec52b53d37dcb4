"""Bag padding and sampling, and synthetic multimodal survival cohorts.

Everything here returns padded tensors with a bool mask (True = valid), the input format of
:mod:`minmaxfuse.layers` and :mod:`minmaxfuse.losses`.
"""

from __future__ import annotations

from minmaxfuse.data._bags import PaddedBags, pad_bags, sample_bag, sample_bags
from minmaxfuse.data._synthetic import SyntheticCohort, make_synthetic_cohort

__all__ = [
    "PaddedBags",
    "SyntheticCohort",
    "make_synthetic_cohort",
    "pad_bags",
    "sample_bag",
    "sample_bags",
]
