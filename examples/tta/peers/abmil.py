"""ABMIL: gated attention multiple-instance learning (the WSI-only baseline).

Ilse, Tomczak and Welling, "Attention-based deep multiple instance learning", ICML 2018; the
survival variant follows the ``AMIL`` model of MCAT (Chen et al., ICCV 2021,
https://github.com/mahmoodlab/MCAT): patch tokens, gated attention pooling, a risk head.

With ``--modalities wsi`` this is the usual WSI-only baseline. With more modalities (or omics
only), each modality's tokens are pooled by their own gated attention and the pooled vectors
are concatenated before the head (attention-pooled late fusion).
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import GatedAttentionPool, PeerModel, risk_head

MIN_MODALITIES = 1


class ABMIL(PeerModel):
    """Gated attention pooling per modality, concatenation, risk head."""

    def __init__(self, infos, *, out_dim: int = 1, dim: int = 256, dropout: float = 0.25) -> None:
        super().__init__(infos, dim=dim, dropout=dropout)
        self.pool = nn.ModuleList(GatedAttentionPool(dim, dropout=dropout) for _ in self.infos)
        self.head = risk_head(len(self.infos) * dim, dim, out_dim, dropout)

    def forward(self, inputs, *, progress=None, present=None, chunk: int = 0) -> dict:
        """Risk logits ``(B, out_dim)`` and the attention weights of every modality."""
        tokens, masks = self.encode(inputs, present, chunk)
        pooled, attn = [], []
        for pool, t, m in zip(self.pool, tokens, masks):
            p, w = pool(t, m)
            pooled.append(p)
            attn.append(w)
        return {"logits": self.head(torch.cat(pooled, -1)), "attn": attn}


def build(infos, args, *, out_dim: int) -> ABMIL:
    """ABMIL with ``--dim`` and ``--dropout``."""
    return ABMIL(infos, out_dim=out_dim, dim=args.dim, dropout=args.dropout)
