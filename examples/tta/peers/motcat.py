"""MOTCat: MCAT with an unbalanced optimal-transport co-attention.

Xu and Chen, "Multimodal Optimal Transport-based Co-Attention Transformer with Global Structure
Consistency for Survival Prediction", ICCV 2023; the model follows ``MOTCAT_Surv`` and
``OT_Attn_assem`` (``impl="pot-uot-l2"``) of https://github.com/Innse/MOTCat.

Architecture. :class:`~examples.tta.peers.mcat.MCAT` (same roles, transformers, pooling and
head) with the co-attention replaced by an entropic unbalanced transport plan ``P`` (N, G)
between the N patch tokens and the G genomic tokens; the G WSI tokens are ``P^T @ h_path``,
MOTCat's ``flow.T @ h_path``, **not** rescaled by the column masses of the plan (as in
MOTCat; with uniform marginals each column carries about ``1 / G`` of the mass).

The transport problem, as in MOTCat:

* every token is shifted by its own minimum over the features (``x - x.min(-1)``), the cost is
  the squared Euclidean distance of the shifted tokens, **detached**, divided by its maximum
  over the problem (valid patches and genomic tokens only);
* uniform marginals over the valid patches and over the valid genomic tokens (a missing
  guide's tokens get zero mass), entropic regularisation ``reg = 0.1`` (MOTCat: 0.05 for BLCA
  and LUAD, 0.1 for BRCA, UCEC and GBMLGG) and KL marginal relaxation ``reg_m = 0.5``;
* solved by the batched :func:`minmaxfuse.ot.sinkhorn_uot` with ``grad="detach"``: the plan
  carries no gradient (MOTCat solves it with POT on NumPy arrays); the gradient reaches the
  patch tokens through ``P^T @ h_path`` only.

POT ``reg_type``. ``sinkhorn_uot`` regularises by ``reg * KL(P | a b^T)``, i.e. POT's
``ot.unbalanced.sinkhorn_unbalanced(a, b, M, reg, reg_m, reg_type="kl")`` (POT >= 0.9.5's
default). MOTCat calls ``sinkhorn_knopp_unbalanced`` without ``reg_type`` and pins
``pot==0.9.3``, whose default was ``reg_type="entropy"`` (``reg * sum P log P - P``). With
uniform marginals the two differ by a constant cost shift ``reg * log(n g)`` (n valid patches,
g valid genomic tokens), which in KL-relaxed UOT scales the optimal plan by exactly
``(n g) ** (-reg / (reg + 2 reg_m))``. ``reg_type="kl"`` (default) keeps the library's plan;
``reg_type="entropy"`` multiplies it by ``(n g) ** (reg / (reg + 2 reg_m))`` per problem, which
reproduces MOTCat's pinned POT exactly. The KL plan's total mass hardly depends on ``n`` (about
0.73-0.79 for 64-4096 random patches), the entropy plan's grows like ``n ** 0.09``: with
``"entropy"``, micro-chunk training tokens are ``k ** 0.09`` smaller than the all-patch
evaluation tokens (``k`` chunks; MOTCat avoids this by micro-batching its validation too).

Micro-batches (MOTCat's ``--use_micro_batch --bs_micro 256``). When training (``progress`` is
not None) and some patient has more than ``micro`` valid patches, every patient's valid patches
are shuffled and split into ``ceil(n / micro)`` chunks of near-equal size (MOTCat:
``np.array_split`` into ``n // micro + 1`` chunks, one more when ``micro`` divides ``n``), and
the chunks of all patients are solved as one batched, masked ``sinkhorn_uot`` call (each chunk
its own problem: own cost maximum, own uniform marginals). The per-chunk co-attended tokens
are averaged, i.e. the WSI tokens are ``P^T @ h_path`` with the block-diagonal plan ``P`` whose
block of chunk ``c`` is that chunk's plan divided by the number of chunks (returned as
``plan``). Deviation: MOTCat runs the whole model once per chunk and averages the per-chunk
risks and losses; averaging the tokens instead runs the transformers and the head once per
patient. The transport part is the same; the rest is equal only to first order (the
transformers, pooling and head are nonlinear), and it is what lets the chunks of all patients
share one solve and one forward. At evaluation all valid patches form one deterministic
problem, as in MOTCat without ``--use_micro_batch``; with it, MOTCat's validation
(``validate_survival_coattn_mb``) also splits the patches into random chunks and averages the
chunk risks.

Other deviations are MCAT's (see :mod:`examples.tta.peers.mcat`); MOTCat's OT distance
``sum(C * P)`` is not used by its loss and is not computed here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minmaxfuse.ot import sinkhorn_uot

from ._base import keep_one
from .mcat import MCAT

MIN_MODALITIES = 2
_REG_TYPES = ("kl", "entropy")


class MOTCat(MCAT):
    """MCAT whose co-attention is a detached unbalanced OT plan, micro-batched in training."""

    def __init__(
        self,
        infos,
        *,
        out_dim: int = 1,
        dim: int = 256,
        dropout: float = 0.25,
        reg: float = 0.1,
        reg_m: float = 0.5,
        micro: int = 256,
        reg_type: str = "kl",
        max_iter: int = 1000,
        tol: float = 1e-6,
    ) -> None:
        super().__init__(infos, out_dim=out_dim, dim=dim, dropout=dropout)
        del self.coattn  # the plan replaces MCAT's attention (no parameters of its own)
        if reg_type not in _REG_TYPES:
            raise ValueError(f"`reg_type` must be one of {_REG_TYPES}; got {reg_type!r}.")
        if int(micro) < 1:
            raise ValueError(f"`micro` must be a positive number of patches; got {micro}.")
        self.reg, self.reg_m, self.micro = float(reg), float(reg_m), int(micro)
        self.reg_type, self.max_iter, self.tol = reg_type, int(max_iter), float(tol)

    def solve(self, cost: Tensor, pmask: Tensor, gmask: Tensor) -> Tensor:
        """Plans (P, n, G) of the problems ``cost`` (P, n, G), zero on invalid rows/columns.

        The cost is divided by its maximum over the valid entries of each problem; marginals
        are uniform over the valid rows and the valid columns.
        """
        rows, cols = keep_one(pmask), keep_one(gmask)
        valid = rows.unsqueeze(-1) & cols.unsqueeze(-2)
        cost = torch.where(valid, cost, 0.0)
        top = cost.amax((-2, -1), keepdim=True)
        cost = cost / torch.where(top > 0, top, torch.ones_like(top))
        b = cols.to(cost.dtype)
        b = b / b.sum(-1, keepdim=True)
        res = sinkhorn_uot(
            cost,
            b=b,
            reg=self.reg,
            reg_m=self.reg_m,
            mask=rows,
            grad="detach",
            max_iter=self.max_iter,
            tol=self.tol,
        )
        plan = res.plan
        if self.reg_type == "entropy":  # POT's reg_type="entropy" (MOTCat's pot==0.9.3)
            size = rows.sum(-1) * cols.sum(-1)
            plan = (
                plan
                * size.to(plan.dtype).pow(self.reg / (self.reg + 2 * self.reg_m))[:, None, None]
            )
        return plan * pmask.unsqueeze(-1).to(plan.dtype)

    def plan(self, patches: Tensor, pmask: Tensor, genes: Tensor, gmask: Tensor, *, train: bool):
        """Transport plan (B, N, G) of every patient, block-diagonal over micro-chunks."""
        with torch.no_grad():
            x = torch.where(pmask.unsqueeze(-1), patches, 0.0).float()
            y = genes.float()
            x = x - x.amin(-1, keepdim=True)
            y = y - y.amin(-1, keepdim=True)
            cost = torch.cdist(x, y).pow(2).clamp_min(0.0)  # (B, N, G)
            if not train or int(pmask.sum(-1).max()) <= self.micro:
                return self.solve(cost, pmask, gmask).to(patches.dtype)
            return self._micro_plan(cost, pmask, gmask).to(patches.dtype)

    def chunks(self, pmask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A random split of every patient's valid patches into micro-chunks.

        Returns ``pos`` (B, N): the slot ``chunk * S + slot`` of every valid patch (``K * S``
        for invalid ones), ``src`` (B, K * S): the patch index of every slot, ``cmask``
        (B, K * S): the valid slots, and ``k`` (B,): the number of chunks of every patient
        (``ceil(n / micro)``, at least 1); ``K = max(k)``, ``S`` the largest chunk. Draws one
        ``torch.rand(B, N)`` from the global generator.
        """
        B, N = pmask.shape
        dev = pmask.device
        n = pmask.sum(-1).clamp_min(1)
        k = (n + self.micro - 1) // self.micro  # chunks per patient
        K, S = int(k.max()), int(((n + k - 1) // k).max())
        keys = torch.rand(B, N, device=dev).masked_fill(~pmask, 2.0)
        rank = keys.argsort(-1).argsort(-1)  # random order of the valid patches, first
        kc, nc = k.unsqueeze(-1), n.unsqueeze(-1)
        chunk = rank * kc // nc  # near-equal consecutive runs of the shuffled order
        slot = rank - (chunk * nc + kc - 1) // kc
        pos = torch.where(pmask, chunk * S + slot, K * S)  # invalid patches: a dump slot
        src = torch.zeros(B, K * S + 1, dtype=torch.long, device=dev)
        src.scatter_(1, pos, torch.arange(N, device=dev).expand(B, N))
        cmask = torch.zeros(B, K * S + 1, dtype=torch.bool, device=dev)
        cmask.scatter_(1, pos, pmask)
        return pos, src[:, : K * S], cmask[:, : K * S], k

    def _micro_plan(self, cost: Tensor, pmask: Tensor, gmask: Tensor) -> Tensor:
        B, N, G = cost.shape
        pos, src, cmask, k = self.chunks(pmask)
        K = int(k.max())
        S = src.shape[1] // K
        ccost = cost.gather(1, src.unsqueeze(-1).expand(B, K * S, G))
        gm = gmask.unsqueeze(1).expand(B, K, G).reshape(B * K, G)
        plans = self.solve(ccost.reshape(B * K, S, G), cmask.reshape(B * K, S), gm)
        plans = plans.view(B, K * S, G)
        back = plans.gather(1, pos.clamp_max(K * S - 1).unsqueeze(-1).expand(B, N, G))
        scale = pmask.to(back.dtype) / k.unsqueeze(-1).to(back.dtype)  # average over chunks
        return back * scale.unsqueeze(-1)

    def coattend(
        self, patches: Tensor, pmask: Tensor, genes: Tensor, gmask: Tensor, *, progress=None
    ) -> tuple[Tensor, dict]:
        """``P^T @ h_path`` (B, G, D), ``{"plan": (B, N, G), "attn": (B, G, N)}``."""
        plan = self.plan(patches, pmask, genes, gmask, train=progress is not None)
        h = torch.where(pmask.unsqueeze(-1), patches, 0.0)
        wsi = torch.einsum("bng,bnd->bgd", plan, h)
        return wsi, {"plan": plan, "attn": plan.transpose(1, 2)}


def build(infos, args, *, out_dim: int) -> MOTCat:
    """MOTCat with ``--dim`` and ``--dropout`` (reg 0.1, reg_m 0.5, micro 256)."""
    return MOTCat(infos, out_dim=out_dim, dim=args.dim, dropout=args.dropout)
