r"""CMTA: cross-modal translation and alignment.

Zhou and Chen, "Cross-Modal Translation and Alignment for Survival Analysis", ICCV 2023; the
model follows ``CMTA`` of https://github.com/FT-ZHOU-ZZZ/CMTA (``models/cmta/network.py``,
its training loop in ``models/cmta/engine.py``).

Architecture. Two parallel encoders, one per modality, each prepend a learned class token to
their modality's tokens and run a stack of pre-LayerNorm residual self-attention layers and a
final LayerNorm; the encoded class tokens are ``p`` (pathology) and ``g`` (genomics).
Cross-modal translation: the encoded pathology tokens query the encoded genomic tokens (one-head
attention), and a pathology *decoder* (same structure, its own weights and class token) reads
the result, giving ``p_hat``, the pathology representation translated from genomics; likewise
the genomic tokens query the pathology tokens and a genomic decoder gives ``g_hat``. The risk
is predicted from the concatenation of ``(p + p_hat) / 2`` and ``(g + g_hat) / 2``. Training
adds the alignment loss of CMTA to the survival loss,

.. math:: L = L_\text{surv} + \alpha \left(\lVert \bar p - \hat p \rVert_1
          + \lVert \bar g - \hat g \rVert_1\right),

where :math:`\bar p, \bar g` are the encoder class tokens with their gradient stopped (the
encoders are the targets; only the translation side is pulled towards them) and
:math:`\lVert\cdot\rVert_1` is the mean absolute error over the batch and the features (as
``nn.L1Loss``). The term is reported separately as ``"alignment"`` by the objective. CMTA's
``alpha`` per cohort: BLCA 1.0, BRCA 100, GBMLGG 1.0, LUAD 1e-4, UCEC 1.0; the default here is
1.0.

Attention over the patches. Full self-attention over thousands of patches costs
O(B * heads * N^2) memory. CMTA's pathology layers use Nystrom attention (Xiong et al., AAAI
2021), and so does :class:`NystromAttention` here: ``m`` landmark queries and keys are the means
of ``m`` contiguous segments of the *valid* tokens (a token's segment is decided by its rank
among the valid tokens, so padded rows, wherever they are, change no landmark), and the softmax
attention is approximated by ``softmax(Q Kl^T) pinv(softmax(Ql Kl^T)) softmax(Ql K^T) V`` with the
pseudo-inverse from 6 Newton-Schulz-type iterations. Memory is O(B * heads * (N * m + m^2)) per
layer; the landmarks default to ``dim // 2`` as in CMTA (128 at ``dim`` 256). The genomic
encoder and decoder see a few dozen tokens and use exact masked softmax attention.

Roles. The context modality (``wsi``, else the first of ``--modalities``) gives the pathology
tokens; the tokens of every other modality, concatenated along the token axis, are the genomic
tokens (in the omics-only variant the RNA pathway tokens play the patches).

Simplifications and deviations from the repository:

* The token encoders are the comparison's shared encoders (patch projection, pathway / family
  tokens) instead of CMTA's patch MLP and six SNNs over the six gene families.
* No PPEG (the depthwise convolutions that CMTA applies between its two layers on the patch
  sequence folded into a square grid): the bags here are random samples of a slide's patches
  in no spatial order, and a per-patient grid would break batching; Nystrom's extra depthwise
  convolution on the values (``residual=True`` of the library CMTA uses) is left out too.
* The pseudo-inverse's scaling is computed per patient and head (the library takes one maximum
  over the whole batch, which couples the patients of a batch); empty landmark segments (a
  patient with fewer valid tokens than landmarks) are masked out exactly.
* The genomic side uses exact attention (CMTA runs Nystrom attention there too, over 7 tokens).
* Each attention layer has ``heads`` heads (the largest divisor of ``dim`` up to 8, CMTA: 8)
  and, like CMTA's, no feed-forward block; the cross-modal attentions have one head as in CMTA.
* The risk comes from the shared :func:`~examples.tta.peers._base.risk_head` (LayerNorm, Linear,
  LeakyReLU, Dropout, Linear) instead of CMTA's ``Linear, ReLU, Linear, ReLU`` and classifier,
  so that the table compares the fusion only.
* Trained with the comparison's survival loss, optimiser and schedule (CMTA: discrete-time NLL,
  SGD with momentum 0.9, learning rate 1e-3, batch size 1) plus the alignment term above.
* Masks (CMTA has batch size 1 and no padding): padded patches are never attended, never form a
  landmark and are left out of the decoders; a patient without any valid token of a modality
  attends to its first (zero) token in the cross-modal attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minmaxfuse.losses import MinMaxObjective

from ._base import PeerModel, keep_one, risk_head

MIN_MODALITIES = 2


def _heads(dim: int, heads: int) -> int:
    return max(d for d in range(1, heads + 1) if dim % d == 0)


def segment_landmarks(mask: Tensor, m: int) -> Tensor:
    """Assignment (B, L, m) of the valid tokens to ``m`` contiguous segments, row-normalised.

    A valid token of rank ``r`` among the ``n`` valid tokens of its row goes to segment
    ``floor(r * m / n)``; padded tokens belong to none. Columns are divided by the segment size,
    so ``S^T x`` gives the segment means; an empty segment (``n < m``) has a zero column.
    """
    n = mask.sum(-1, keepdim=True).clamp_min(1)  # (B, 1)
    rank = mask.cumsum(-1) - 1  # (B, L)
    seg = torch.div(rank * m, n, rounding_mode="floor").clamp(0, m - 1)
    seg = torch.where(mask, seg, torch.full_like(seg, m))  # padded: the dump bin m
    s = F.one_hot(seg, m + 1)[..., :m].to(torch.float32)  # (B, L, m)
    return s / s.sum(1, keepdim=True).clamp_min(1)


def _pinv(a: Tensor, iterations: int) -> Tensor:
    """Iterative Moore-Penrose pseudo-inverse of ``a`` (..., m, m), scaled per matrix."""
    absa = a.abs()
    scale = absa.sum(-1).amax(-1) * absa.sum(-2).amax(-1)  # (...,)
    z = a.transpose(-1, -2) / scale[..., None, None]
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


class NystromAttention(nn.Module):
    """Masked multi-head Nystrom self-attention with segment-mean landmarks (see module doc).

    ``forward(x, mask)``: ``x`` (B, L, D), ``mask`` (B, L) True on valid tokens, with at least
    one valid token per row -> (B, L, D), zero on the padded rows. ``landmarks=0`` gives exact
    masked softmax attention. The attention itself runs in float32, also under autocast.
    """

    def __init__(
        self,
        dim: int,
        *,
        heads: int = 8,
        landmarks: int = 0,
        pinv_iterations: int = 6,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.heads = _heads(dim, heads)
        self.landmarks = int(landmarks)
        self.pinv_iterations = int(pinv_iterations)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).float().view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        valid = mask[:, None, :, None]  # (B, 1, L, 1)
        q = torch.where(valid, q * q.shape[-1] ** -0.5, 0.0)
        k, v = torch.where(valid, k, 0.0), torch.where(valid, v, 0.0)
        low = torch.finfo(torch.float32).min
        keys = mask[:, None, None, :]  # (B, 1, 1, L)
        with torch.autocast(x.device.type, enabled=False):  # float32 products and pinv
            if self.landmarks <= 0:
                o = (q @ k.transpose(-1, -2)).masked_fill(~keys, low).softmax(-1) @ v
            else:
                o = self._nystrom(q, k, v, mask, keys, low)
        o = torch.where(valid, o, 0.0).transpose(1, 2).reshape(b, n, d).to(x.dtype)
        return torch.where(mask[..., None], self.out(o), 0.0)

    def _nystrom(self, q, k, v, mask, keys, low) -> Tensor:
        m = self.landmarks
        s = segment_landmarks(mask, m)  # (B, L, m)
        ql = torch.einsum("blm,bhld->bhmd", s, q)
        kl = torch.einsum("blm,bhld->bhmd", s, k)
        lmask = (s.sum(1) > 0)[:, None]  # (B, 1, m) non-empty segments
        f = (q @ kl.transpose(-1, -2)).masked_fill(~lmask[:, :, None], low).softmax(-1)
        f = f * lmask[:, :, None]  # no weight on empty landmarks, even for padded queries
        a = (ql @ kl.transpose(-1, -2)).masked_fill(~lmask[:, :, None], low).softmax(-1)
        eye = torch.eye(m, dtype=a.dtype, device=a.device)
        a = torch.where(lmask[..., None], a, eye)  # empty landmark: an identity row, cut off
        bv = (ql @ k.transpose(-1, -2)).masked_fill(~keys, low).softmax(-1) @ v  # (B, h, m, dh)
        return f @ (_pinv(a, self.pinv_iterations) @ bv)


class _AttnLayer(nn.Module):
    """``x + attention(LayerNorm(x))``, masked (CMTA's layer, no feed-forward)."""

    def __init__(self, dim: int, *, heads: int, landmarks: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = NystromAttention(dim, heads=heads, landmarks=landmarks, dropout=dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return x + self.attn(self.norm(x), mask)


class Branch(nn.Module):
    """A class token, ``layers`` attention layers and a LayerNorm: CMTA's encoder / decoder.

    ``forward(x, mask)`` with ``x`` (B, N, D), ``mask`` (B, N) -> class token (B, D) and the
    tokens (B, N, D), padded ones zero.
    """

    def __init__(
        self, dim: int, *, layers: int, heads: int, landmarks: int, dropout: float
    ) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 1e-6)
        self.layers = nn.ModuleList(
            _AttnLayer(dim, heads=heads, landmarks=landmarks, dropout=dropout)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        h = torch.cat([self.cls.expand(b, -1, -1).to(x.dtype), x], 1)
        full = torch.cat([mask.new_ones(b, 1), mask], 1)  # the class token is always valid
        h = torch.where(full[..., None], h, 0.0)
        for layer in self.layers:
            h = layer(h, full)
        h = torch.where(full[..., None], self.norm(h), 0.0)
        return h[:, 0], h[:, 1:]


class CMTA(PeerModel):
    """Parallel encoders, cross-modal translation into two decoders, alignment loss."""

    def __init__(
        self,
        infos,
        *,
        out_dim: int = 1,
        dim: int = 256,
        dropout: float = 0.25,
        layers: int = 2,
        heads: int = 8,
        landmarks: int | None = None,
        alpha: float = 1.0,
    ) -> None:
        super().__init__(infos, dim=dim, dropout=dropout)
        if not alpha >= 0:
            raise ValueError(f"`alpha` must be >= 0; got {alpha}.")
        m = max(dim // 2, 1) if landmarks is None else int(landmarks)
        self.alpha = float(alpha)

        def branch(lm: int) -> Branch:
            return Branch(dim, layers=layers, heads=heads, landmarks=lm, dropout=dropout)

        self.path_encoder, self.path_decoder = branch(m), branch(m)
        self.gene_encoder, self.gene_decoder = branch(0), branch(0)
        self.path_from_gene = nn.MultiheadAttention(dim, 1, batch_first=True)  # CMTA: one head
        self.gene_from_path = nn.MultiheadAttention(dim, 1, batch_first=True)
        self.head = risk_head(2 * dim, dim, out_dim, dropout)
        self.objective_fn = MinMaxObjective({"survival": 1.0, "alignment": self.alpha})

    def forward(self, inputs, *, progress=None, present=None, chunk: int = 0) -> dict:
        """Risk logits ``(B, out_dim)``, the class tokens ``p, p_hat, g, g_hat`` (B, D) and the
        cross-modal weights ``path_attn`` (B, N, G) and ``gene_attn`` (B, G, N)."""
        tokens, masks = self.encode(inputs, present, chunk)
        patches, pmask, genes, gmask = self.split(tokens, masks)
        p, hp = self.path_encoder(patches, pmask)
        g, hg = self.gene_encoder(genes, gmask)
        # translation: pathology queries read genomics, genomic queries read pathology
        p_in_g, path_attn = self.path_from_gene(hp, hg, hg, key_padding_mask=~keep_one(gmask))
        g_in_p, gene_attn = self.gene_from_path(hg, hp, hp, key_padding_mask=~keep_one(pmask))
        p_hat, _ = self.path_decoder(p_in_g, pmask)
        g_hat, _ = self.gene_decoder(g_in_p, gmask)
        fused = torch.cat([(p + p_hat) / 2, (g + g_hat) / 2], -1)
        return {
            "logits": self.head(fused),
            "p": p,
            "p_hat": p_hat,
            "g": g,
            "g_hat": g_hat,
            "path_attn": path_attn,
            "gene_attn": gene_attn,
        }

    def alignment(self, out: dict) -> Tensor:
        """``L1(p.detach(), p_hat) + L1(g.detach(), g_hat)``, means over batch and features."""
        p, g = out["p"].detach().float(), out["g"].detach().float()
        return F.l1_loss(out["p_hat"].float(), p) + F.l1_loss(out["g_hat"].float(), g)

    def objective(self, survival: Tensor, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Survival loss plus ``alpha`` times the alignment term (``survival``, ``alignment``)."""
        comp = self.objective_fn.forward_components(
            survival=survival, alignment=self.alignment(out)
        )
        self.objective_fn.step()
        return comp.total, dict(comp.raw)


def build(infos, args, *, out_dim: int) -> CMTA:
    """CMTA with ``--dim`` and ``--dropout`` (alignment weight 1.0)."""
    return CMTA(infos, out_dim=out_dim, dim=args.dim, dropout=args.dropout)
