"""Batched, masked unbalanced optimal transport with exact implicit gradients.

* :func:`sinkhorn_uot`: entropic unbalanced Sinkhorn (POT ``reg_type="kl"`` semantics) for a
  batch of cost matrices ``(B, N, K)`` with row masks, partial transport through a sink column,
  and gradients by implicit differentiation, unrolling, the envelope theorem or none.
* :func:`partial_uot`: the same with TTA's marginals (hard uniform rows, relaxed columns towards
  ``rho / K``, sink of mass ``1 - rho``).
* :func:`semantic_uot`: :func:`partial_uot` with the SP²OT semantic term (a token-token
  similarity reward), solved by majorisation-minimisation in low-rank form.
* :class:`UOTResult`: the named tuple both return; :class:`SemanticUOTResult` for
  :func:`semantic_uot`.
"""

from __future__ import annotations

from minmaxfuse.ot._result import UOTResult
from minmaxfuse.ot._semantic import SemanticUOTResult, semantic_uot
from minmaxfuse.ot._sinkhorn import partial_uot, sinkhorn_uot

__all__ = ["SemanticUOTResult", "UOTResult", "partial_uot", "semantic_uot", "sinkhorn_uot"]
