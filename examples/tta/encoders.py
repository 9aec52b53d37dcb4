"""Token encoders and fusion blocks of the reference model (plain torch, no minmaxfuse layers).

* :class:`PatchEncoder` - WSI patch features ``(B, N, D_in)`` -> tokens ``(B, N, D)``
  (Linear -> LeakyReLU(0.1) -> Dropout), padded rows zeroed.
* :class:`GroupedEncoder` - one small encoder per omics group (pathway / gene family) producing
  one token per group. The G per-group ``Linear(|G_p| -> D)`` maps are stored as one padded weight
  ``(G, L, D)`` and applied with a single einsum, so 50 pathways cost one batched matmul, not a
  Python loop (padded gene slots hold zeros in the input and never contribute).
* :class:`CoAttentionFusion` - residual pre-LN self-attention + feed-forward over the
  concatenated prototype tokens of all modalities (a documented deviation from SurvPath's
  'full' co-attention without residuals, used by the authors' code).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PatchEncoder(nn.Module):
    """Linear -> LeakyReLU(0.1) -> Dropout applied per patch; padded rows set to 0."""

    def __init__(self, in_dim: int, dim: int, *, dropout: float = 0.3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, dim), nn.LeakyReLU(0.1), nn.Dropout(dropout))

    def forward(self, x: Tensor, mask: Tensor, *, chunk: int = 0) -> Tensor:
        """``x`` (B, N, D_in), ``mask`` (B, N) -> (B, N, D); ``chunk`` > 0 encodes N in chunks."""
        if chunk and x.shape[1] > chunk:
            out = torch.cat([self.net(x[:, i : i + chunk]) for i in range(0, x.shape[1], chunk)], 1)
        else:
            out = self.net(x)
        return out * mask.unsqueeze(-1).to(out.dtype)


class GroupedEncoder(nn.Module):
    """Per-group ``Linear(|G_p| -> D) -> LeakyReLU(0.1) -> Dropout``, all groups in one einsum.

    Parameters
    ----------
    valid : Tensor of bool, shape (G, L)
        ``valid[g, l]`` is True for the genes of group ``g`` (left-aligned, zero padded).
    dim : int
        Output token size ``D``.
    """

    def __init__(self, valid: Tensor, dim: int, *, dropout: float = 0.3) -> None:
        super().__init__()
        valid = torch.as_tensor(valid, dtype=torch.bool)
        g, l = valid.shape
        self.register_buffer("valid", valid, persistent=False)
        sizes = valid.sum(1).clamp_min(1).to(torch.float32)  # (G,)
        bound = 1.0 / sizes.sqrt()  # nn.Linear's default init, per group fan-in
        w = (torch.rand(g, l, dim) * 2 - 1) * bound[:, None, None]
        self.weight = nn.Parameter(w * valid[..., None])  # (G, L, D)
        self.bias = nn.Parameter((torch.rand(g, dim) * 2 - 1) * bound[:, None])  # (G, D)
        self.act = nn.LeakyReLU(0.1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (B, G, L) zero-padded gene values -> tokens (B, G, D)."""
        w = self.weight * self.valid[..., None].to(self.weight.dtype)
        h = torch.einsum("bgl,gld->bgd", x, w) + self.bias
        return self.drop(self.act(h))


class FeedForward(nn.Module):
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear."""

    def __init__(self, dim: int, *, dropout: float = 0.3, mult: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., D)."""
        return self.net(x)


class CoAttentionFusion(nn.Module):
    """Residual pre-LN single-head self-attention + feed-forward over all prototype tokens.

    Tokens of every modality attend to each other (the co-attention of TTA/MMP over
    ``[T_g ; T_h]``); a key mask ``(B, S)`` hides the tokens of a missing modality.
    """

    def __init__(self, dim: int, *, dropout: float = 0.3) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.ff = FeedForward(dim, dropout=dropout)
        self.out_norm = nn.LayerNorm(dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, tokens: Tensor, key_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``tokens`` (B, S, D) -> (fused tokens (B, S, D), attention (B, S, S))."""
        q, k, v = self.qkv(self.norm(tokens)).chunk(3, dim=-1)
        logits = torch.einsum("bsd,btd->bst", q, k) * self.scale
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask[:, None, :], torch.finfo(logits.dtype).min)
        attn = logits.softmax(-1)
        x = tokens + self.proj(torch.einsum("bst,btd->bsd", attn, v))
        x = x + self.ff(x)
        return self.out_norm(x), attn


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over axis 1 of ``x`` (B, N, D) using ``mask`` (B, N); empty rows give 0.

    Masked entries are excluded, not multiplied by 0, so they may hold anything (Inf, NaN).
    """
    m = mask.unsqueeze(-1)
    return torch.where(m, x, 0.0).sum(1) / m.sum(1).clamp_min(1).to(x.dtype)
