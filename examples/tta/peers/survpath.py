"""SurvPath: dense pathway-histology attention in one token sequence.

Jaume, Vaidya, Chen, Song, Williamson, Chen, Mahmood, "Modeling Dense Multimodal Interactions
Between Biological Pathways and Histology for Survival Prediction", CVPR 2024; follows
https://github.com/mahmoodlab/SurvPath (the ``SurvPath`` model and its memory-efficient
multimodal attention layer).

Pathway tokens ``P`` (B, G, D) and patch tokens ``H`` (B, N, D) form one sequence ``[P; H]``
whose attention is restricted as in SurvPath: a pathway query attends to every token
(pathway-to-pathway and pathway-to-patch), a patch query attends to the pathway tokens only
(no patch-to-patch attention, which is what makes whole-slide bags affordable). The layer is
computed as two attention products, pathway queries against ``[P; H]`` (G x (G + N)) and patch
queries against ``P`` (N x G), so no (N + G) x (N + G) matrix is ever built. Padded patches are
never keys and their outputs are ignored. A feed-forward block and a LayerNorm follow; the
pathway outputs are averaged, the valid patch outputs are averaged, and the two means are
concatenated before the risk head.

Roles (see :mod:`examples.tta.peers`): the context modality (``wsi`` when present) gives the
patch tokens; the tokens of all other modalities, concatenated along the token axis, are the
pathway tokens. In the omics-only variant (e.g. ``--modalities rna,cnv``) the RNA pathway
tokens play the patches and the CNV tokens the pathways.

Simplifications and deviations from the repository:

* tokens come from the shared encoders of the comparison (one small network per gene group,
  one linear layer per patch) instead of SurvPath's per-pathway SNNs over 331 Reactome/Hallmark
  pathways and its patch projection; the pathway set is whatever ``--groups`` defines;
* one attention layer with a single head by default (``heads``) and no residual connection
  around the attention, then ``LayerNorm(x + FF(x))`` with a GELU feed-forward of width
  ``2 * dim``; the repository's exact feed-forward, normalisation and head settings are not
  reproduced;
* missing or padded pathway tokens (a missing modality) are masked as keys and left out of the
  pathway mean; SurvPath always has every pathway;
* trained with the comparison's shared survival loss, optimiser and schedule, not SurvPath's
  NLL loss with RAdam (its training script).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..encoders import masked_mean
from ._base import PeerModel, keep_one, risk_head

MIN_MODALITIES = 2


class PathwayPatchAttention(nn.Module):
    """SurvPath's restricted attention over ``[P; H]``, computed as two attention products.

    ``forward(p, h, p_mask, h_mask)`` returns the pathway outputs (B, G, D), the patch outputs
    (B, N, D) and the head-averaged weights ``(w_p, w_h)``: ``w_p`` (B, G, G + N) of the pathway
    queries over ``[P; H]`` and ``w_h`` (B, N, G) of the patch queries over ``P``.
    """

    def __init__(self, dim: int, *, heads: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"`dim` ({dim}) must be divisible by `heads` ({heads}).")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return q, k, v  # each (B, heads, n, D / heads)

    def forward(
        self, p: Tensor, h: Tensor, p_mask: Tensor, h_mask: Tensor
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        qp, kp, vp = self._split(p)
        qh, kh, vh = self._split(h)
        scale = qp.shape[-1] ** -0.5
        low = torch.finfo(qp.dtype).min
        g = p.shape[1]
        # pathway queries against every pathway and every valid patch
        keys = keep_one(torch.cat([p_mask, h_mask], 1))  # (B, G + N)
        s_p = torch.cat([qp @ kp.transpose(-1, -2), qp @ kh.transpose(-1, -2)], -1) * scale
        w_p = s_p.masked_fill(~keys[:, None, None, :], low).softmax(-1)  # (B, h, G, G + N)
        a_p = self.drop(w_p)
        o_p = a_p[..., :g] @ vp + a_p[..., g:] @ vh
        # patch queries against the pathway tokens only
        s_h = (qh @ kp.transpose(-1, -2)) * scale  # (B, h, N, G)
        w_h = s_h.masked_fill(~keep_one(p_mask)[:, None, None, :], low).softmax(-1)
        o_h = self.drop(w_h) @ vp

        def merge(o: Tensor) -> Tensor:
            b, _, n, _ = o.shape
            return self.out(o.transpose(1, 2).reshape(b, n, -1))

        return merge(o_p), merge(o_h), (w_p.mean(1), w_h.mean(1))


def full_attention(attn: tuple[Tensor, Tensor]) -> Tensor:
    """The implied (B, G + N, G + N) attention matrix over ``[P; H]`` (for inspection only).

    Rows are queries, columns keys; the patch-to-patch block is zero by construction.
    """
    w_p, w_h = attn
    b, n, g = w_h.shape
    lower = torch.cat([w_h, w_h.new_zeros(b, n, n)], -1)
    return torch.cat([w_p, lower], 1)


class SurvPath(PeerModel):
    """Pathway and patch tokens in SurvPath's restricted attention, means, risk head."""

    def __init__(
        self,
        infos,
        *,
        out_dim: int = 1,
        dim: int = 256,
        dropout: float = 0.25,
        heads: int = 1,
    ) -> None:
        super().__init__(infos, dim=dim, dropout=dropout)
        self.attention = PathwayPatchAttention(dim, heads=heads, dropout=dropout)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = risk_head(2 * dim, dim, out_dim, dropout)

    def forward(self, inputs, *, progress=None, present=None, chunk: int = 0) -> dict:
        """Risk logits ``(B, out_dim)`` and ``attn = (w_p, w_h)`` (see PathwayPatchAttention)."""
        tokens, masks = self.encode(inputs, present, chunk)
        h, h_mask, p, p_mask = self.split(tokens, masks)
        # padded patches may carry anything: zero them so no NaN/Inf reaches the products
        h = torch.where(h_mask.unsqueeze(-1), h, 0.0)
        o_p, o_h, attn = self.attention(p, h, p_mask, h_mask)
        o_p = self.norm(o_p + self.ff(o_p))
        o_h = self.norm(o_h + self.ff(o_h))
        fused = torch.cat([masked_mean(o_p, p_mask), masked_mean(o_h, h_mask)], -1)
        return {"logits": self.head(fused), "attn": attn}


def build(infos, args, *, out_dim: int) -> SurvPath:
    """SurvPath with ``--dim`` and ``--dropout``."""
    return SurvPath(infos, out_dim=out_dim, dim=args.dim, dropout=args.dropout)
