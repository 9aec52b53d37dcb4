"""Together only vs Apart only vs both, on a synthetic cohort with planted shared/specific factors.

Trains the same small model (per-modality encoder -> PrototypeUOTAlign -> ModalityAnchors ->
linear Cox head on the concatenated pooled modality vectors) with different loss terms switched
on, and reports, on a held-out test split:

* the test C-index of the Cox risk (and the oracle C-index of the true log-hazard);
* linear-probe R^2 (ridge, fit on train, scored on test) of the shared factors and of each
  modality's specific factors from that modality's pooled vector;
* diagnostics: effective rank, modality gap, alignment between the two modalities' pooled
  vectors, uniformity, prototype usage entropy, spread of per-token transport mass.

Run: ``python benchmarks/bench_together_apart.py`` (about 2-4 min on 2 CPU cores);
``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

from minmaxfuse.data import make_synthetic_cohort
from minmaxfuse.diagnostics import (
    alignment,
    effective_rank,
    modality_gap,
    prototype_usage_entropy,
    token_transport_mass,
    uniformity,
)
from minmaxfuse.layers import ModalityAnchors, PrototypeUOTAlign
from minmaxfuse.losses import DistinctContrastive, MinMaxObjective, SigmoidRamp

try:  # the library's survival module when present, else a local Breslow Cox loss / C-index
    from minmaxfuse.survival import CoxPHLoss, concordance_index

    def cox_loss(risk, time_, event):
        return CoxPHLoss(ties="breslow")(risk, time_, event)

    def cindex(risk, time_, event):
        return float(concordance_index(event=event.numpy(), time=time_.numpy(), risk=risk.numpy()))

except ImportError:  # pragma: no cover

    def cox_loss(risk, time_, event):
        order = torch.argsort(time_, descending=True)
        r, e = risk[order], event[order]
        ll = r - torch.logcumsumexp(r, 0)
        return -(ll * e).sum() / e.sum().clamp_min(1)

    def cindex(risk, time_, event):
        num = den = 0.0
        for i in range(len(time_)):
            if not event[i]:
                continue
            later = time_ > time_[i]
            num += float((risk[i] > risk[later]).sum() + 0.5 * (risk[i] == risk[later]).sum())
            den += float(later.sum())
        return num / den


CONFIGS = {  # (Together weight, Apart weight), multiplied by --together / --apart
    "neither": (0.0, 0.0),
    "together": (1.0, 0.0),
    "apart": (0.0, 1.0),
    "both": (1.0, 1.0),
}


class Model(nn.Module):
    def __init__(self, in_dims, dim=32, k=8):
        super().__init__()
        self.enc = nn.ModuleList(
            nn.Sequential(nn.Linear(d, dim), nn.LeakyReLU(0.1)) for d in in_dims
        )
        self.align = PrototypeUOTAlign(dim, k, num_modalities=len(in_dims), tol=1e-4, max_iter=300)
        self.anchors = ModalityAnchors(len(in_dims), dim)
        self.contrast = DistinctContrastive(0.1, dim=dim)
        self.head = nn.Linear(len(in_dims) * dim, 1, bias=False)

    def forward(self, tokens, masks, rho):
        xs = [enc(x) for enc, x in zip(self.enc, tokens)]
        al = self.align(xs, masks, rho=rho)
        an = self.anchors(al.prototype_tokens)
        risk = self.head(an.pooled.flatten(1)).squeeze(-1)
        return risk, al, an


def ridge_r2(xtr, ytr, xte, yte, lam=1e-2):
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-8)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    ym = ytr.mean(0)
    a = xtr.T @ xtr + lam * xtr.shape[0] * torch.eye(xtr.shape[1], dtype=xtr.dtype)
    beta = torch.linalg.solve(a, xtr.T @ (ytr - ym))
    pred = xte @ beta + ym
    r2 = 1 - (yte - pred).pow(2).sum(0) / (yte - yte.mean(0)).pow(2).sum(0)
    return float(r2.mean())


def run(config, cohort, split, epochs, seed, batch=32, lr=3e-3, w_t=1.0, w_a=0.5):
    lam_t, lam_a = CONFIGS[config]
    lam_t, lam_a = lam_t * w_t, lam_a * w_a
    torch.manual_seed(seed)
    tr, te = split
    model = Model([t.shape[-1] for t in cohort.tokens])
    steps_per_epoch = math.ceil(len(tr) / batch)
    obj = MinMaxObjective(
        {"task": 1.0, "together": lam_t, "apart": lam_a},
        curricula={"rho": SigmoidRamp(0.1, 1.0, steps=max(1, int(0.6 * epochs * steps_per_epoch)))},
    )
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-5)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(perm), batch):
            idx = perm[i : i + batch]
            if len(idx) < 2:
                continue
            toks = [t[idx] for t in cohort.tokens]
            msk = [m[idx] for m in cohort.masks]
            risk, al, an = model(toks, msk, obj.current("rho"))
            loss = obj(
                task=cox_loss(risk, cohort.time[idx], cohort.event[idx]),
                together=al.loss if lam_t > 0 else None,
                apart=model.contrast(an.pooled, an.anchors) if lam_a > 0 else None,
            )
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            obj.step()
    model.eval()
    with torch.no_grad():

        def embed(idx, rho=1.0):
            return model([t[idx] for t in cohort.tokens], [m[idx] for m in cohort.masks], rho)

        r_tr, _, an_tr = embed(tr)
        r_te, al_te, an_te = embed(te)
        _, al_half, _ = embed(te, 0.5)
    res = {"cindex": cindex(r_te, cohort.time[te], cohort.event[te])}
    p_tr, p_te = an_tr.pooled.double(), an_te.pooled.double()
    a = p_te.shape[1]
    res["r2_shared"] = (
        sum(
            ridge_r2(
                p_tr[:, m],
                cohort.shared_factors[tr].double(),
                p_te[:, m],
                cohort.shared_factors[te].double(),
            )
            for m in range(a)
        )
        / a
    )
    res["r2_specific"] = (
        sum(
            ridge_r2(
                p_tr[:, m],
                cohort.specific_factors[m][tr].double(),
                p_te[:, m],
                cohort.specific_factors[m][te].double(),
            )
            for m in range(a)
        )
        / a
    )
    res["r2_other_specific"] = (
        sum(
            ridge_r2(
                p_tr[:, m],
                cohort.specific_factors[1 - m][tr].double(),
                p_te[:, m],
                cohort.specific_factors[1 - m][te].double(),
            )
            for m in range(a)
        )
        / a
    )
    res["r2_concat_specific"] = (
        sum(
            ridge_r2(
                p_tr.flatten(1),
                cohort.specific_factors[m][tr].double(),
                p_te.flatten(1),
                cohort.specific_factors[m][te].double(),
            )
            for m in range(a)
        )
        / a
    )
    res["erank"] = sum(float(effective_rank(p_te[:, m])) for m in range(a)) / a
    res["gap"] = float(modality_gap(p_te[:, 0], p_te[:, 1]))
    res["align"] = float(alignment(p_te[:, 0], p_te[:, 1]))
    res["unif"] = float(uniformity(p_te.flatten(0, 1)))
    res["usage_H"] = float(
        torch.cat(
            [prototype_usage_entropy(al_te.plans[m], mask=cohort.masks[m][te]) for m in range(a)]
        ).mean()
    )
    mass = token_transport_mass(al_half.plans[0], mask=cohort.masks[0][te], relative=False)
    res["mass_cv"] = float(mass[cohort.masks[0][te]].std() / mass[cohort.masks[0][te]].mean())
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--bag", type=int, default=128, help="max WSI-like instances per bag")
    ap.add_argument("--together", type=float, default=1.0, help="Together loss weight")
    ap.add_argument("--apart", type=float, default=0.5, help="Apart loss weight (TTA: 0.5)")
    ap.add_argument("--noise", type=float, default=0.5, help="instance noise of the cohort")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.patients, args.epochs, args.seeds, args.bag = 80, 1, 1, 32
    torch.set_num_threads(args.threads)
    rows = {c: [] for c in CONFIGS}
    oracle = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        cohort = make_synthetic_cohort(
            args.patients, bag_sizes=(args.bag, 24), noise=args.noise, seed=seed
        )
        perm = torch.randperm(args.patients, generator=torch.Generator().manual_seed(100 + seed))
        n_te = args.patients // 4
        split = (perm[n_te:], perm[:n_te])
        te = split[1]
        oracle.append(cindex(cohort.risk[te], cohort.time[te], cohort.event[te]))
        for config in CONFIGS:
            t = time.perf_counter()
            res = run(config, cohort, split, args.epochs, seed, w_t=args.together, w_a=args.apart)
            rows[config].append(res)
            print(f"seed {seed} {config:9s} {time.perf_counter() - t:6.1f}s  {rows[config][-1]}")
    keys = list(rows["both"][0])
    print(f"\noracle test C-index (true log-hazard): {sum(oracle) / len(oracle):.3f}")
    print(
        f"{args.seeds} seed(s), {args.patients} patients, {args.epochs} epochs, "
        f"total {time.perf_counter() - t0:.0f}s\n"
    )
    print("| terms | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for c, rs in rows.items():
        cells = []
        for k in keys:
            v = torch.tensor([r[k] for r in rs], dtype=torch.float64)
            sd = f" ± {float(v.std()):.3f}" if len(rs) > 1 else ""
            cells.append(f"{float(v.mean()):.3f}{sd}")
        print(f"| {c} | " + " | ".join(cells) + " |")
    print("\n(mean ± sample std over seeds)")


if __name__ == "__main__":
    main()
