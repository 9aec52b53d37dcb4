"""Collapse and alignment measures of representations (plain functions on tensors).

Use them to check that Together aligns the modalities without collapsing them and that Apart
keeps them distinct: effective rank, alignment / uniformity (Wang & Isola 2020), the modality
gap, prototype usage entropy and per-token transport mass.
"""

from __future__ import annotations

from minmaxfuse.diagnostics._measures import (
    alignment,
    effective_rank,
    modality_gap,
    prototype_usage_entropy,
    token_transport_mass,
    uniformity,
)

__all__ = [
    "alignment",
    "effective_rank",
    "modality_gap",
    "prototype_usage_entropy",
    "token_transport_mass",
    "uniformity",
]
