"""minmaxfuse: multimodal representations that are aligned (Together) yet distinct (Apart).

Subpackages
-----------
ot
    Batched, masked unbalanced Sinkhorn with exact implicit gradients.
layers
    Learnable modules: shared-prototype UOT alignment, modality anchors.
losses
    Stateless objectives: distinctiveness contrastive loss, the min-max objective.
survival
    Survival losses (discrete-time NLL, Cox with ties), labels and metrics.
diagnostics
    Collapse and alignment measures of representations.
data
    Bag padding and sampling, synthetic multimodal survival cohorts.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Public names are appended below, one import line per subpackage (kept sorted in __all__).
from minmaxfuse import data, diagnostics, layers, losses, ot, survival
from minmaxfuse._checks import set_value_checks, value_checks_enabled
from minmaxfuse.layers import GradReverse, ModalityAnchors, PrototypeUOTAlign, grad_reverse
from minmaxfuse.losses import DistinctContrastive, MinMaxObjective
from minmaxfuse.ot import UOTResult, sinkhorn_uot
from minmaxfuse.survival import CoxPHLoss, NLLSurvLoss

__all__ = [
    "CoxPHLoss",
    "DistinctContrastive",
    "GradReverse",
    "MinMaxObjective",
    "ModalityAnchors",
    "NLLSurvLoss",
    "PrototypeUOTAlign",
    "UOTResult",
    "__version__",
    "data",
    "diagnostics",
    "grad_reverse",
    "layers",
    "losses",
    "ot",
    "set_value_checks",
    "sinkhorn_uot",
    "survival",
    "value_checks_enabled",
]
