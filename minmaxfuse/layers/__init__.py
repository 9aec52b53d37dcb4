"""Learnable modules: shared-prototype UOT alignment (Together), modality anchors (Apart).

Also the gradient-reversal helper that turns a critic into a true adversarial max player.
"""

from __future__ import annotations

from minmaxfuse.layers._anchors import AnchorOutput, ModalityAnchors
from minmaxfuse.layers._grad_reverse import GradReverse, grad_reverse
from minmaxfuse.layers._prototype_align import AlignOutput, PrototypeUOTAlign, prototype_aggregate
from minmaxfuse.layers._tokenizer import FeatureTokenizer

__all__ = [
    "AlignOutput",
    "AnchorOutput",
    "FeatureTokenizer",
    "GradReverse",
    "ModalityAnchors",
    "PrototypeUOTAlign",
    "grad_reverse",
    "prototype_aggregate",
]
