"""The reference TTA survival model and the deep baselines, built from minmaxfuse's public API.

Forward pass (arXiv 2511.18089), for A modalities with tokens ``X_m`` (B, N_m, D):

1. encoders: WSI patches -> :class:`PatchEncoder`; omics groups -> :class:`GroupedEncoder`
   (one token per pathway / gene family);
2. **Together**: :class:`minmaxfuse.layers.PrototypeUOTAlign` - shared prototype bank, one joint
   unbalanced OT over the tokens of all modalities with the transported-mass curriculum, OT/softmax
   ``mix`` weights -> prototype tokens ``T_m`` (B, K, D) and the Together loss;
3. **Apart**: :class:`minmaxfuse.layers.ModalityAnchors` refines ``[T_m ; anchor_m]`` per modality,
   :class:`minmaxfuse.losses.DistinctContrastive` pulls each modality's pooled vector to its own
   anchor and away from the others;
4. fusion: :class:`CoAttentionFusion` over all ``A*K`` prototype tokens, mean per modality,
   concat, ``Linear(A*D -> out, bias=False)`` = log-risk (Cox) or hazard logits (NLL);
5. :class:`minmaxfuse.losses.MinMaxObjective` combines survival, Together and Apart terms.

Variants: ``tta`` (all), ``tta_no_together`` (prototype tokens from softmax assignments only: no
UOT weights, no Together loss), ``tta_no_apart`` (no anchors, no contrastive term),
``late_concat`` and ``single_<m>`` (mean-pooled encoder tokens, concatenated, MLP head; no
prototypes, no Together/Apart). The peers' fusion models (ABMIL, MCAT, ...) are in
:mod:`examples.tta.peers`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from minmaxfuse.layers import FeatureTokenizer, ModalityAnchors, PrototypeUOTAlign
from minmaxfuse.losses import DistinctContrastive, MinMaxObjective, mass_ramp

from .batches import ModalityInfo
from .encoders import CoAttentionFusion, GroupedEncoder, PatchEncoder, masked_mean


class ScalarEncoder(nn.Module):
    """One token per scalar column (clinical variables): :class:`FeatureTokenizer` + dropout."""

    def __init__(self, num_features: int, dim: int, *, dropout: float) -> None:
        super().__init__()
        self.tok = FeatureTokenizer(num_features, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (B, F, 1) scaled values -> tokens (B, F, D)."""
        return self.drop(self.tok(x[..., 0]))


def _make_encoder(info: ModalityInfo, dim: int, dropout: float) -> nn.Module:
    if info.kind == "bag":
        return PatchEncoder(info.in_dim, dim, dropout=dropout)
    valid = torch.as_tensor(info.valid)
    if valid.shape[1] == 1:  # every token is one scalar column: x_j * W_j + b_j
        return ScalarEncoder(valid.shape[0], dim, dropout=dropout)
    return GroupedEncoder(valid, dim, dropout=dropout)


class _Encoders(nn.Module):
    def __init__(self, infos: Sequence[ModalityInfo], dim: int, dropout: float) -> None:
        super().__init__()
        self.infos = list(infos)
        self.enc = nn.ModuleDict({i.name: _make_encoder(i, dim, dropout) for i in infos})

    def forward(
        self, inputs: dict[str, tuple[Tensor, Tensor | None]], present: Tensor | None, chunk: int
    ) -> tuple[list[Tensor], list[Tensor]]:
        tokens, masks = [], []
        for a, info in enumerate(self.infos):
            x, mask = inputs[info.name]
            if info.kind == "bag":
                t = self.enc[info.name](x, mask, chunk=chunk)
            else:
                t = self.enc[info.name](x)
                mask = torch.ones(t.shape[:2], dtype=torch.bool, device=t.device)
            if present is not None:
                mask = mask & present[:, a : a + 1]
                t = t * mask.unsqueeze(-1).to(t.dtype)
            tokens.append(t)
            masks.append(mask)
        return tokens, masks


class TTASurvival(nn.Module):
    """TTA survival model for any subset of modalities (see module docstring)."""

    def __init__(
        self,
        infos: Sequence[ModalityInfo],
        *,
        out_dim: int = 1,
        dim: int = 256,
        num_prototypes: int = 32,
        dropout: float = 0.3,
        together: bool = True,
        apart: bool = True,
        tau: float = 0.5,
        mix: float = 0.5,
        reg: float = 0.1,
        reg_m: float = 1.0,
        rho_eval: float | None = None,
        together_weight: float = 0.5,
        apart_weight: float = 0.5,
        apart_tau: float = 0.1,
        apart_negatives: str = "anchors",
        allow_missing: bool = False,
        ot_tol: float = 1e-3,
        ot_max_iter: int = 1000,
        ramp_epochs: float = 10.0,
        semantic: float = 0.0,
        heads: int = 1,
        consistency_weight: float = 0.01,
    ) -> None:
        super().__init__()
        self.infos = list(infos)
        self.names = [i.name for i in infos]
        a = len(self.infos)
        self.semantic, self.heads = float(semantic), int(heads)
        self.together, self.apart = together, apart
        self.rho_eval = rho_eval
        self.encoders = _Encoders(infos, dim, dropout)
        self.align = PrototypeUOTAlign(
            dim,
            num_prototypes,
            num_modalities=a,
            temperature=tau,
            mix=mix if together else 0.0,
            reg=reg,
            reg_m=reg_m,
            allow_missing=allow_missing,
            missing="borrow",
            tol=ot_tol,
            max_iter=ot_max_iter,
            semantic=semantic if together else 0.0,
            heads=heads,
        )
        self.ramp_epochs = ramp_epochs
        # epoch sums of the (A, H) consistency losses, for re-selecting the primary heads
        self._cons_sum: Tensor | None = None
        self._cons_n = 0
        if apart:
            self.anchors = ModalityAnchors(a, dim, dropout=dropout)
            self.contrast = DistinctContrastive(apart_tau, dim=dim, negatives=apart_negatives)
        else:
            self.norm = nn.LayerNorm(dim)
        self.fusion = CoAttentionFusion(dim, dropout=dropout)
        self.head = nn.Linear(a * dim, out_dim, bias=False)
        terms = {"survival": 1.0}
        if together:
            terms["together"] = together_weight * a  # the layer averages modalities (1/A each)
        if apart and a > 1:
            terms["apart"] = apart_weight
        if heads > 1:  # TTA: 0.01 x each modality's mean over heads, summed over modalities
            terms["consistency"] = consistency_weight
        self.objective_fn = MinMaxObjective(terms)
        self.k = num_prototypes

    def forward(
        self,
        inputs: dict[str, tuple[Tensor, Tensor | None]],
        *,
        progress: float | None = None,
        present: Tensor | None = None,
        chunk: int = 0,
    ) -> dict:
        """Risk logits ``(B, out_dim)`` and every loss term / transport diagnostic."""
        tokens, masks = self.encoders(inputs, present, chunk)
        # progress = epochs done (fractional); TTA ramps rho over 10 epochs (the paper)
        if progress is None:
            rho = self.rho_eval
        else:  # a ramp of 0 epochs transports the full mass from the first step
            rho = mass_ramp(progress / self.ramp_epochs) if self.ramp_epochs > 0 else 1.0
        if not self.together:
            rho = 1.0  # the plan is not used (mix = 0, no Together loss): cheapest full-mass solve
        # the OT (and the whole alignment layer) runs in float32 even under bf16 autocast
        with torch.autocast(tokens[0].device.type, enabled=False):
            tokens32 = [t.float() for t in tokens]
            al = self.align(tokens32, masks, rho=rho)
            cons = None
            if self.heads > 1 and progress is not None:
                # TTA's SK loss: swapped prediction across two token-dropout views per head,
                # pseudo-labels with the current mass and semantic weight (1 - rho) * lambda_1
                cons = self.align.consistency_loss(
                    tokens32,
                    masks,
                    rho=rho,
                    semantic=(1.0 - rho) * self.semantic,
                )  # (A, H)
        proto = list(al.prototype_tokens)
        present = al.present  # (B, A): modalities with at least one valid token
        out: dict = {"align": al, "masks": masks, "present": present}
        if cons is not None:
            out["consistency"] = cons
        if self.apart:
            an = self.anchors(proto)
            proto = an.tokens
            if len(proto) > 1:
                out["apart"] = self.contrast(an.pooled, an.anchors, mask=present)
            out["pooled"] = an.pooled
        else:
            proto = [self.norm(t) for t in proto]
        if self.together:
            out["together"] = al.loss
        # a missing modality's prototype tokens were filled by the layer ("borrow": the slot-wise
        # mean of the present modalities' tokens), so fusion always sees A*K tokens
        seq = torch.cat(proto, dim=1)  # (B, A*K, D)
        fused, attn = self.fusion(seq)
        pooled = torch.cat([p.mean(1) for p in fused.split(self.k, dim=1)], -1)  # (B, A*D)
        out["logits"] = self.head(pooled)
        out["attn"] = attn
        return out

    def objective(self, survival: Tensor, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss (MinMaxObjective) and the raw terms for logging."""
        terms = {"survival": survival}
        if self.together:
            terms["together"] = out["together"].float()
        if "apart" in self.objective_fn.term_names:
            terms["apart"] = out.get("apart")
        if "consistency" in self.objective_fn.term_names:
            cons = out["consistency"].float()  # (A, H)
            terms["consistency"] = cons.mean(-1).sum()
            d = cons.detach()
            self._cons_sum = d if self._cons_sum is None else self._cons_sum + d
            self._cons_n += 1
        comp = self.objective_fn.forward_components(terms)
        self.objective_fn.step()
        return comp.total, {k: v for k, v in comp.raw.items()}

    def end_epoch(self) -> dict:
        """Once per epoch (called by the training loop): re-select the primary heads.

        With ``heads > 1`` each modality's primary head becomes the one with the lowest mean
        consistency loss over the epoch's steps (TTA); under ``torchrun`` the means are first
        averaged over the ranks, so every rank selects the same heads. Returns what to log.
        """
        if self.heads <= 1 or self._cons_sum is None:
            return {}
        from . import dist

        mean = self._cons_sum / max(1, self._cons_n)
        if dist.active():
            mean = dist.mean_over_ranks(mean.double()).to(mean.dtype)
        primary = self.align.update_primary(mean)
        self._cons_sum, self._cons_n = None, 0
        return {"primary_heads": primary.tolist()}

    @torch.no_grad()
    def explain(self, out: dict, inputs: dict, present: Tensor | None) -> list[dict]:
        """Per patient and modality: transported mass of every token and where it goes.

        ``token_mass[i]`` is the mass token ``i`` sends to real prototypes (1 = all of it;
        below 1 only when evaluating with ``--rho-eval`` < 1, the rest going to the sink),
        ``token_top_prototype`` / ``token_top_share`` its main prototype and the share of its
        mass sent there, ``prototype_mass[k]`` the total mass prototype ``k`` receives from
        this modality; grouped (omics) modalities also keep the full ``plan`` (G, K).
        """
        al = out["align"]
        res = []
        plans = al.plans  # list of (B, N_m, K)
        for i in range(plans[0].shape[0]):
            rec = {}
            for a, info in enumerate(self.infos):
                mask = out["masks"][a][i]
                plan = plans[a][i][mask].float()  # (n, K)
                mass = plan.sum(-1)  # (n,)
                top = plan.max(-1)
                rec[info.name] = {
                    "present": bool(al.present[i, a]),
                    "token_mass": [round(v, 5) for v in mass.cpu().tolist()],
                    "token_top_prototype": top.indices.cpu().tolist(),
                    "token_top_share": [
                        round(v, 5) for v in (top.values / mass.clamp_min(1e-12)).cpu().tolist()
                    ],
                    "prototype_mass": [round(v, 5) for v in plan.sum(0).cpu().tolist()],
                    "token_names": info.token_names,
                }
                if info.kind == "grouped":
                    rec[info.name]["plan"] = [
                        [round(v, 5) for v in row] for row in plan.cpu().tolist()
                    ]
            res.append(rec)
        return res


class LateFusion(nn.Module):
    """Baseline: encoder tokens mean-pooled per modality, concatenated, MLP risk head."""

    def __init__(
        self,
        infos: Sequence[ModalityInfo],
        *,
        out_dim: int = 1,
        dim: int = 256,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.infos = list(infos)
        self.encoders = _Encoders(infos, dim, dropout)
        a = len(self.infos)
        self.head = nn.Sequential(
            nn.LayerNorm(a * dim),
            nn.Linear(a * dim, dim),
            nn.LeakyReLU(0.1),
            nn.Dropout(dropout),
            nn.Linear(dim, out_dim, bias=False),
        )
        self.objective_fn = MinMaxObjective({"survival": 1.0})

    def forward(self, inputs, *, progress=None, present=None, chunk: int = 0) -> dict:
        """Risk logits ``(B, out_dim)``."""
        tokens, masks = self.encoders(inputs, present, chunk)
        pooled = torch.cat([masked_mean(t, m) for t, m in zip(tokens, masks)], -1)
        return {"logits": self.head(pooled)}

    def objective(self, survival: Tensor, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Survival loss only."""
        comp = self.objective_fn.forward_components(survival=survival)
        self.objective_fn.step()
        return comp.total, dict(comp.raw)


def build_model(method: str, infos: Sequence[ModalityInfo], args, *, out_dim: int) -> nn.Module:
    """Model of a method name (see module docstring) with the CLI hyper-parameters."""
    from .peers import PEERS, build_peer  # the peers import this module's encoders

    if method in PEERS:
        return build_peer(method, infos, args, out_dim=out_dim)
    common = {"out_dim": out_dim, "dim": args.dim, "dropout": args.dropout}
    if method in ("late_concat",) or method.startswith("single_"):
        return LateFusion(infos, **common)
    together = "no_together" not in method
    apart = "no_apart" not in method
    return TTASurvival(
        infos,
        num_prototypes=args.prototypes,
        together=together,
        apart=apart,
        rho_eval=args.rho_eval,
        together_weight=args.together_weight,
        apart_weight=args.apart_weight,
        allow_missing=bool(getattr(args, "drop_modality", None)),
        ot_tol=args.ot_tol,
        ot_max_iter=args.ot_max_iter,
        ramp_epochs=args.ramp_epochs,
        apart_negatives=getattr(args, "apart_negatives", "anchors"),
        semantic=getattr(args, "semantic", 0.0),
        heads=getattr(args, "heads", 1),
        consistency_weight=getattr(args, "consistency_weight", 0.01),
        **common,
    )
