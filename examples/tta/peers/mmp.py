"""MMP: multimodal prototyping with optimal-transport cross-modal fusion.

Song, Chen, Jaume, Vaidya, Baras, Mahmood, "Multimodal Prototyping for cancer survival
prediction", ICML 2024; follows https://github.com/mahmoodlab/MMP (histology summarised by
PANTHER prototypes, omics as Hallmark pathway tokens, fusion ``coattn_mot``).

1. Histology summary. ``C = 16`` prototypes per bag modality are fitted in :meth:`MMP.prepare`
   on the raw patch features of the training rows only: k-means (k-means++ seeding with a seeded
   ``torch.Generator``, 20 Lloyd iterations) on at most 50 000 patches drawn from those rows.
   The centroids and the variance are buffers, so checkpoints carry them. In the forward pass
   each bag is summarised with the responsibilities of an isotropic Gaussian mixture centred on
   the prototypes, ``r_nc = softmax_c(-||x_n - m_c||^2 / (2 sigma^2))`` over the valid patches,
   giving per component a mixture weight ``pi_c`` (mean responsibility) and a mean ``mu_c``
   (responsibility-weighted mean); each component becomes one token ``Linear([pi_c, mu_c])``.
   These ``C`` prototype tokens replace the patch tokens.
2. Fusion (``coattn_mot``). Entropic unbalanced OT (``reg = 0.1``, ``reg_m = 0.5``, KL
   regularised like POT's ``reg_type="kl"``) between the ``C`` prototype tokens and the pathway
   tokens, cost = squared Euclidean distance divided by its maximum, uniform marginals. The
   cost is not detached in MMP, so the plan is differentiated (``grad="implicit"``, exact at the
   fixed point). Histology transported onto the pathways (``plan^T H``) and pathways transported
   onto the prototypes (``plan P``), concatenated as one sequence, pass one transformer layer;
   each side is averaged and the two means are concatenated before the risk head. Everything
   is batched over patients (no loop over patients).

Roles (see :mod:`examples.tta.peers`): the context modality (``wsi`` when present) is the
histology; the tokens of every other modality, concatenated, are the pathway tokens. When the
context is not a bag (omics only, e.g. ``--modalities rna,cnv``) there is nothing to
summarise: its tokens are used as they are (MMP treats the 50 pathway tokens as the omics
prototypes themselves) and :meth:`MMP.prepare` does nothing.

Simplifications and deviations from the repository:

* PANTHER fits a GMM with a diagonal covariance per component by EM initialised from k-means
  and outputs ``allcat = [pi, mu, Sigma]``; here the mixture is isotropic with one shared
  variance ``sigma^2`` (the mean within-cluster squared distance per feature, i.e. its
  maximum-likelihood value for the fitted k-means partition), there is no EM step per bag
  (the responsibilities are the posterior under the fitted prototypes) and the covariance
  part of the summary is dropped;
* the responsibilities come from the raw patch features (the prototypes' space), but ``mu_c``
  averages the shared patch encoder's tokens rather than the raw features, so the encoder is
  trained like in every other peer (for an affine encoder this is the same as projecting the
  raw ``mu_c``); MMP's 32-d learnable embedding appended per prototype is dropped;
* the prototypes are fitted by this module's k-means in torch, not faiss, on a per-patient
  even sample of the training patches;
* the two OT problems of ``coattn_mot`` (histology to pathways and back) have the same cost
  transposed and uniform marginals with the same relaxation, so their optima are transposes of
  each other: one batched solve gives both plans;
* tokens come from the shared encoders of the comparison instead of MMP's per-pathway SNNs;
  a missing modality's tokens get zero mass in the OT and are left out of the means;
* trained with the comparison's shared survival loss, optimiser and schedule, not MMP's AdamW
  with a cosine schedule on batches of 64 (MMP's training script).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from minmaxfuse.ot import sinkhorn_uot

from ..encoders import masked_mean
from ._base import PeerModel, TransformerLayer, keep_one, risk_head

MIN_MODALITIES = 2


def _sq_dist(x: Tensor, c: Tensor) -> Tensor:
    """Squared distances ``(..., N, C)`` of ``x`` (..., N, D) to ``c`` (C, D) or (..., C, D)."""
    cross = x @ c.transpose(-1, -2)
    d = x.pow(2).sum(-1, keepdim=True) - 2 * cross + c.pow(2).sum(-1).unsqueeze(-2)
    return d.clamp_min(0.0)


def kmeans(
    x: Tensor, k: int, *, iters: int = 20, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """k-means++ seeding then ``iters`` Lloyd iterations on ``x`` (N, D).

    Returns the centroids (k, D) and the initial (seeded) centroids (k, D). An empty cluster
    keeps its previous centroid. ``N < k`` repeats points.
    """
    x = x.to(torch.float32)
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [x[first]]
    d2 = _sq_dist(x, x[first : first + 1])[:, 0]
    for _ in range(1, k):
        total = float(d2.sum())
        if total > 0:
            i = int(torch.multinomial(d2 / total, 1, generator=generator))
        else:  # every point already is a centre
            i = int(torch.randint(n, (1,), generator=generator))
        centers.append(x[i])
        d2 = torch.minimum(d2, _sq_dist(x, x[i : i + 1])[:, 0])
    init = torch.stack(centers)
    c = init.clone()
    for _ in range(iters):
        assign = _sq_dist(x, c).argmin(-1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        c = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], c)
    return c, init


def within_cluster(x: Tensor, c: Tensor) -> Tensor:
    """Mean squared distance of each point of ``x`` (N, D) to its nearest centroid of ``c``."""
    return _sq_dist(x.to(torch.float32), c.to(torch.float32)).amin(-1).mean()


class MMP(PeerModel):
    """Histology prototypes (fitted on training patches) and pathway tokens fused by UOT."""

    def __init__(
        self,
        infos,
        *,
        out_dim: int = 1,
        dim: int = 256,
        dropout: float = 0.25,
        num_prototypes: int = 16,
        max_patches: int = 50_000,
        kmeans_iters: int = 20,
        seed: int = 1,
        reg: float = 0.1,
        reg_m: float = 0.5,
    ) -> None:
        super().__init__(infos, dim=dim, dropout=dropout)
        self.summarise = self.infos[self.context].kind == "bag"
        self.num_prototypes = num_prototypes
        self.max_patches, self.kmeans_iters, self.seed = max_patches, kmeans_iters, seed
        self.reg, self.reg_m = reg, reg_m
        if self.summarise:
            in_dim = self.infos[self.context].in_dim
            # placeholders until prepare() fits them (random draws under the global seed)
            self.register_buffer("centroids", torch.randn(num_prototypes, in_dim))
            self.register_buffer("sigma2", torch.tensor(1.0))
            self.proto_proj = nn.Linear(dim + 1, dim)
        self.fusion = TransformerLayer(dim, dropout=dropout)
        self.head = risk_head(2 * dim, dim, out_dim, dropout)

    # ------------------------------------------------------------------ prototypes
    @torch.no_grad()
    def prepare(self, data, rows: np.ndarray) -> None:
        """Fit the histology prototypes on the patches of the training ``rows`` only."""
        if not self.summarise or len(rows) == 0:
            return
        g = torch.Generator().manual_seed(self.seed)
        quota = -(-self.max_patches // len(rows))  # an even share per patient
        parts = []
        for i in rows:
            x = data.wsi(int(i)).detach().to("cpu", torch.float32)
            if x.shape[0] > quota:
                x = x[torch.randperm(x.shape[0], generator=g)[:quota]]
            parts.append(x)
        x = torch.cat(parts)
        if x.shape[0] > self.max_patches:
            x = x[torch.randperm(x.shape[0], generator=g)[: self.max_patches]]
        c, _ = kmeans(x, self.num_prototypes, iters=self.kmeans_iters, generator=g)
        sigma2 = within_cluster(x, c) / x.shape[1]  # isotropic variance per feature
        self.centroids.copy_(c.to(self.centroids))
        self.sigma2.fill_(float(sigma2.clamp_min(1e-8)))

    def responsibilities(self, x: Tensor, mask: Tensor) -> Tensor:
        """Posterior ``(B, N, C)`` of the prototypes for the raw patches ``x`` (B, N, D_in).

        Rows sum to one on valid patches and are zero on padded ones.
        """
        x = torch.where(mask.unsqueeze(-1), x.to(torch.float32), 0.0)
        d = _sq_dist(x, self.centroids.to(torch.float32))
        r = (-d / (2 * self.sigma2.to(torch.float32))).softmax(-1)
        return torch.where(mask.unsqueeze(-1), r, 0.0)

    def prototype_tokens(self, x: Tensor, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``C`` tokens ``Linear([pi_c, mu_c])`` (B, C, D) and the responsibilities (B, N, C).

        ``x`` raw patches (B, N, D_in) give the responsibilities; ``h`` (B, N, D) are the
        encoder tokens averaged per component.
        """
        r = self.responsibilities(x, mask).to(h.dtype)
        h = torch.where(mask.unsqueeze(-1), h, 0.0)
        mass = r.sum(1)  # (B, C)
        pi = mass / mask.sum(1, keepdim=True).clamp_min(1).to(h.dtype)
        mu = torch.einsum("bnc,bnd->bcd", r, h) / mass.clamp_min(1e-6).unsqueeze(-1)
        return self.proto_proj(torch.cat([pi.unsqueeze(-1), mu], -1)), r

    # ------------------------------------------------------------------ fusion
    def transport(self, hist: Tensor, h_mask: Tensor, path: Tensor, p_mask: Tensor) -> Tensor:
        """UOT plan ``(B, C, G)`` from the histology tokens to the pathway tokens.

        Cost = squared distance over its maximum (not detached); uniform masses on the valid
        tokens of each side (a side with none keeps its first token).
        """
        h_mask, p_mask = keep_one(h_mask), keep_one(p_mask)
        cost = _sq_dist(hist.float(), path.float())  # (B, C, G)
        valid = h_mask.unsqueeze(-1) & p_mask.unsqueeze(-2)
        top = torch.where(valid, cost, 0.0).amax((-2, -1), keepdim=True)
        cost = cost / top.clamp_min(1e-12)
        b = p_mask.float() / p_mask.sum(-1, keepdim=True).float()
        res = sinkhorn_uot(cost, b=b, reg=self.reg, reg_m=self.reg_m, mask=h_mask, grad="implicit")
        return res.plan.to(hist.dtype)

    def forward(self, inputs, *, progress=None, present=None, chunk: int = 0) -> dict:
        """Risk logits ``(B, out_dim)``, the plan ``(B, C, G)`` and the responsibilities."""
        tokens, masks = self.encode(inputs, present, chunk)
        h, h_mask, path, p_mask = self.split(tokens, masks)
        resp = None
        if self.summarise:
            x = inputs[self.infos[self.context].name][0]
            hist, resp = self.prototype_tokens(x, h, h_mask)
            # a patient without patches (missing slide) has no prototype tokens
            h_mask = h_mask.any(-1, keepdim=True).expand(-1, self.num_prototypes)
        else:
            hist = h
        plan = self.transport(hist, h_mask, path, p_mask)  # (B, C, G)
        to_path = plan.transpose(1, 2) @ hist  # histology at the pathway positions (B, G, D)
        to_hist = plan @ path  # pathways at the histology positions (B, C, D)
        seq = torch.cat([to_path, to_hist], 1)
        seq_mask = torch.cat([p_mask, h_mask], 1)
        out = self.fusion(seq, seq_mask)
        g = path.shape[1]
        fused = torch.cat([masked_mean(out[:, :g], p_mask), masked_mean(out[:, g:], h_mask)], -1)
        return {"logits": self.head(fused), "plan": plan, "resp": resp}


def build(infos, args, *, out_dim: int) -> MMP:
    """MMP with ``--dim`` and ``--dropout`` (16 histology prototypes, not ``--prototypes``)."""
    return MMP(infos, out_dim=out_dim, dim=args.dim, dropout=args.dropout)
