"""Shared parts of the peer models: encoders, roles, attention pooling, a transformer layer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from minmaxfuse.losses import MinMaxObjective

from ..batches import ModalityInfo
from ..model import _Encoders


def roles(infos: Sequence[ModalityInfo]) -> tuple[int, list[int]]:
    """``(context, guides)``: the ``wsi``/bag modality (else the first one) and the others."""
    kinds = [i.kind for i in infos]
    ctx = kinds.index("bag") if "bag" in kinds else 0
    return ctx, [a for a in range(len(infos)) if a != ctx]


def keep_one(mask: Tensor) -> Tensor:
    """``mask`` (B, N) with the first token of an all-False row set True.

    Attention over a row with no valid key is undefined (softmax of all ``-inf``); a missing
    modality's tokens are zeros, so attending to one of them yields a zero summary.
    """
    empty = ~mask.any(-1, keepdim=True)
    first = torch.zeros_like(mask)
    first[..., 0] = True
    return mask | (empty & first)


class GatedAttentionPool(nn.Module):
    r"""Gated attention pooling of Ilse et al. (ICML 2018), masked.

    :math:`w_i = \mathrm{softmax}_i\, u^\top(\tanh(V h_i) \odot \sigma(U h_i))`, pooled
    :math:`\sum_i w_i h_i`; ``x`` (B, N, D), ``mask`` (B, N) -> ``(B, D)``, weights ``(B, N)``.
    """

    def __init__(self, dim: int, *, dropout: float = 0.25, hidden: int | None = None) -> None:
        super().__init__()
        h = hidden or dim
        self.v = nn.Sequential(nn.Linear(dim, h), nn.Tanh(), nn.Dropout(dropout))
        self.u = nn.Sequential(nn.Linear(dim, h), nn.Sigmoid(), nn.Dropout(dropout))
        self.w = nn.Linear(h, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Pooled vector (B, D) and attention weights (B, N)."""
        score = self.w(self.v(x) * self.u(x))[..., 0]  # (B, N)
        if mask is not None:
            score = score.masked_fill(~keep_one(mask), torch.finfo(score.dtype).min)
        w = score.softmax(-1)
        return torch.einsum("bn,bnd->bd", w, x), w


class TransformerLayer(nn.Module):
    """Pre-LN multi-head self-attention + feed-forward (``nn.TransformerEncoderLayer``), masked.

    MCAT, MOTCat and CMTA use two such layers of 8 heads on each modality's tokens; here the
    number of heads falls back to the largest divisor of ``dim`` that is at most ``heads``.
    """

    def __init__(self, dim: int, *, heads: int = 8, dropout: float = 0.25) -> None:
        super().__init__()
        h = max(d for d in range(1, heads + 1) if dim % d == 0)
        self.layer = nn.TransformerEncoderLayer(
            dim,
            h,
            dim_feedforward=2 * dim,
            dropout=dropout,
            activation="relu",
            batch_first=True,
            norm_first=True,
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x`` (B, N, D), ``mask`` (B, N) True on valid tokens -> (B, N, D)."""
        pad = None if mask is None else ~keep_one(mask)
        return self.layer(x, src_key_padding_mask=pad)


def risk_head(in_dim: int, dim: int, out_dim: int, dropout: float) -> nn.Module:
    """The head of the reference baselines: LayerNorm, Linear, LeakyReLU, Dropout, Linear."""
    return nn.Sequential(
        nn.LayerNorm(in_dim),
        nn.Linear(in_dim, dim),
        nn.LeakyReLU(0.1),
        nn.Dropout(dropout),
        nn.Linear(dim, out_dim, bias=False),
    )


class PeerModel(nn.Module):
    """Base of the peers: the reference encoders, roles and a survival-only objective.

    Subclasses implement ``forward(inputs, *, progress=None, present=None, chunk=0)`` returning
    at least ``{"logits": (B, out_dim)}``; :meth:`encode` gives the encoder tokens and masks.
    :meth:`prepare` is called once per model with the training rows before training (MMP fits
    its prototypes there); it must never see validation or test patients. A subclass that sets
    ``uses_labels = True`` gets ``objective(survival, out, time=t, event=e)`` with the batch's
    labels (``t`` (B,) float, ``e`` (B,) bool) during training.
    """

    uses_labels = False

    def __init__(self, infos: Sequence[ModalityInfo], *, dim: int, dropout: float) -> None:
        super().__init__()
        self.infos = list(infos)
        self.names = [i.name for i in infos]
        self.dim = dim
        self.encoders = _Encoders(infos, dim, dropout)
        self.context, self.guides = roles(self.infos)
        self.objective_fn = MinMaxObjective({"survival": 1.0})

    def encode(
        self, inputs: dict, present: Tensor | None, chunk: int
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Encoder tokens ``(B, N_m, D)`` and masks ``(B, N_m)`` of every modality."""
        return self.encoders(inputs, present, chunk)

    def split(
        self, tokens: list[Tensor], masks: list[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(context, context_mask, guides, guides_mask)``: the guides concatenated on axis 1."""
        guides = torch.cat([tokens[g] for g in self.guides], 1)
        gmask = torch.cat([masks[g] for g in self.guides], 1)
        return tokens[self.context], masks[self.context], guides, gmask

    def prepare(self, data, rows: np.ndarray) -> None:
        """Fit anything data-dependent on the training ``rows`` only (default: nothing)."""

    def objective(self, survival: Tensor, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Survival loss only (every peer is trained on the same survival loss)."""
        comp = self.objective_fn.forward_components(survival=survival)
        self.objective_fn.step()
        return comp.total, dict(comp.raw)
