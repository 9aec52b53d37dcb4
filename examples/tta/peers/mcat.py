"""MCAT: genomic-guided co-attention transformer.

Chen, Lu, Weng, Chen, Williamson, Manz, Shady and Mahmood, "Multimodal Co-Attention
Transformer for Survival Prediction in Gigapixel Whole Slide Images", ICCV 2021; the model
follows ``MCAT_Surv`` of https://github.com/mahmoodlab/MCAT.

Architecture. The genomic tokens are the queries of a one-head attention whose keys and values
are the patch tokens, so every genomic token gathers one WSI token (genomic-guided
co-attention, weights ``attn`` (B, G, N)). A 2-layer transformer then runs on the G co-attended
WSI tokens and another on the G genomic tokens; each side is summarised by gated attention
pooling and the two summaries are concatenated before the risk head.

Roles. The context modality (``wsi``, else the first of ``--modalities``) gives the patch
tokens; the tokens of every other modality, concatenated along the token axis, are the genomic
queries (``wsi,rna,cnv``: 50 pathway + 6 family tokens = 56 queries). In the omics-only variant
(e.g. ``rna,cnv``) the RNA pathway tokens play the patches and the CNV tokens the queries.

Simplifications and deviations from the repository:

* The token encoders are the reference model's shared encoders (patch projection, pathway /
  family tokens) instead of MCAT's ``wsi_net`` and six SNNs over the six gene families.
* The two transformers use the shared :class:`~examples.tta.peers._base.TransformerLayer`
  (pre-LayerNorm, feed-forward ``2 * dim``, heads the largest divisor of ``dim`` up to 8);
  MCAT's ``nn.TransformerEncoderLayer`` is post-LayerNorm (8 heads, feed-forward 512 at 256).
* After pooling MCAT applies a ``Linear + ReLU + Dropout`` per side and a two-layer MLP on
  the concatenation before its classifier; here the pooled vectors go straight to the shared
  :func:`~examples.tta.peers._base.risk_head` (LayerNorm, Linear, LeakyReLU, Dropout, Linear),
  the head of every peer, so that the table compares the fusion only.
* Masks (MCAT has batch size 1 and no padding): padded patches are never attended (a patient
  without any valid patch attends to its first, zero, token); a co-attended WSI token is
  masked in the WSI transformer and pooling when its genomic query is missing or the patient
  has no valid patch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._base import GatedAttentionPool, PeerModel, TransformerLayer, keep_one, risk_head

MIN_MODALITIES = 2


class MCAT(PeerModel):
    """Genomic-guided co-attention, a transformer and gated pooling per side, risk head.

    Subclasses change the co-attention only (:meth:`coattend`), e.g. MOTCat's transport plan.
    """

    def __init__(
        self,
        infos,
        *,
        out_dim: int = 1,
        dim: int = 256,
        dropout: float = 0.25,
        layers: int = 2,
        heads: int = 8,
    ) -> None:
        super().__init__(infos, dim=dim, dropout=dropout)
        self.coattn = nn.MultiheadAttention(dim, 1, batch_first=True)  # MCAT: one head
        self.path_tf = nn.ModuleList(
            TransformerLayer(dim, heads=heads, dropout=dropout) for _ in range(layers)
        )
        self.omic_tf = nn.ModuleList(
            TransformerLayer(dim, heads=heads, dropout=dropout) for _ in range(layers)
        )
        self.path_pool = GatedAttentionPool(dim, dropout=dropout)
        self.omic_pool = GatedAttentionPool(dim, dropout=dropout)
        self.head = risk_head(2 * dim, dim, out_dim, dropout)

    def coattend(
        self, patches: Tensor, pmask: Tensor, genes: Tensor, gmask: Tensor, *, progress=None
    ) -> tuple[Tensor, dict]:
        """One WSI token per genomic query (B, G, D) and ``{"attn": (B, G, N)}``."""
        wsi, attn = self.coattn(
            genes, patches, patches, key_padding_mask=~keep_one(pmask), need_weights=True
        )
        return wsi, {"attn": attn}

    def forward(self, inputs, *, progress=None, present=None, chunk: int = 0) -> dict:
        """Risk logits ``(B, out_dim)``, co-attention ``attn`` and both pooling weights."""
        tokens, masks = self.encode(inputs, present, chunk)
        patches, pmask, genes, gmask = self.split(tokens, masks)
        wsi, extra = self.coattend(patches, pmask, genes, gmask, progress=progress)
        wmask = gmask & pmask.any(-1, keepdim=True)
        for layer in self.path_tf:
            wsi = layer(wsi, wmask)
        for layer in self.omic_tf:
            genes = layer(genes, gmask)
        hp, ap = self.path_pool(wsi, wmask)
        hg, ag = self.omic_pool(genes, gmask)
        logits = self.head(torch.cat([hp, hg], -1))
        return {"logits": logits, **extra, "path_attn": ap, "omic_attn": ag}


def build(infos, args, *, out_dim: int) -> MCAT:
    """MCAT with ``--dim`` and ``--dropout``."""
    return MCAT(infos, out_dim=out_dim, dim=args.dim, dropout=args.dropout)
