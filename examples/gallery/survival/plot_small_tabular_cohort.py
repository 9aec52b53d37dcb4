"""
A small tabular + omics cohort with a missing modality
======================================================

A common situation in clinical research: a few hundred patients, an omics assay summarised as
pathway-like tokens, a handful of tabular variables (age, stage, a lab value, an IHC panel),
and the tabular part is missing for some patients. This recipe builds a Together/Apart Cox model
for it from minmaxfuse's layers and compares it with the usual baseline, an elastic-net Cox
model (Coxnet) on the same features, on the same held-out patients.

1. :class:`~minmaxfuse.layers.FeatureTokenizer` turns every tabular column into one token
   (:math:`t_j = x_j W_j + b_j`), so the table becomes a modality like any other;
2. :class:`~minmaxfuse.layers.PrototypeUOTAlign` with ``allow_missing=True`` transports each
   patient's tokens from the modalities it has (a patient without the table still gets a
   prediction, from its omics alone);
3. :class:`~minmaxfuse.ModalityAnchors` + :class:`~minmaxfuse.DistinctContrastive` keep the
   modalities apart, :class:`~minmaxfuse.CoxPHLoss` is the survival loss;
4. what makes a deep model competitive on so few patients: a small token size, early stopping
   on a validation part of the *training* patients, and an average over a few models trained on
   different validation splits (the same recipe as the reference model, ``examples/tta_tcga.py``).
"""

# %%
# A synthetic cohort with the structure of a real one
# ---------------------------------------------------
# :func:`~minmaxfuse.data.make_synthetic_cohort` plants factors shared by both modalities and
# factors specific to each; the hazard depends on both. The first modality has 24 pathway-like
# tokens of 16 values; the second has 6 tokens of a single value each, i.e. a table of 6 columns.
# The table is then removed for 30 % of the patients.
import numpy as np
import torch
from torch import nn

from minmaxfuse import CoxPHLoss, DistinctContrastive, ModalityAnchors
from minmaxfuse.data import make_synthetic_cohort
from minmaxfuse.layers import FeatureTokenizer, PrototypeUOTAlign
from minmaxfuse.survival import concordance_index

n = 360
c = make_synthetic_cohort(
    n, bag_sizes=(24, 6), dims=(16, 1), kinds=("indexed", "indexed"), noise=1.0, seed=3
)
omics = c.tokens[0]  # (n, 24, 16)
table = c.tokens[1][..., 0].clone()  # (n, 6)
observed = torch.rand(n, generator=torch.Generator().manual_seed(0)) > 0.3  # has the table
table[~observed] = float("nan")
time, event = c.time.double().numpy(), c.event.numpy()

perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
train, test = perm[:270], perm[270:]
print(f"{n} patients, {int(event.sum())} events, table missing for {int((~observed).sum())}")


def scale(x, rows):
    """z-score every column with the training rows' mean and sd (NaN stays NaN)."""
    mu, sd = np.nanmean(x[rows], 0), np.nanstd(x[rows], 0) + 1e-6
    return (x - mu) / sd


omics_z = torch.as_tensor(scale(omics.numpy(), train.numpy()), dtype=torch.float32)
table_z = torch.as_tensor(scale(table.numpy(), train.numpy()), dtype=torch.float32)


# %%
# The model
# ---------
# Each omics token gets its own small linear encoder (one weight per pathway, applied with one
# ``einsum``); each tabular column gets its token from the tokenizer. A patient without the
# table has an all-False mask for that modality.
# [model]
class SmallCohortTTA(nn.Module):
    def __init__(self, n_tokens, token_dim, n_columns, *, dim=16, num_prototypes=8):
        super().__init__()
        self.omics_w = nn.Parameter(torch.randn(n_tokens, token_dim, dim) / token_dim**0.5)
        self.omics_b = nn.Parameter(torch.zeros(n_tokens, dim))
        self.table = FeatureTokenizer(n_columns, dim)
        self.align = PrototypeUOTAlign(
            dim, num_prototypes, allow_missing=True, max_iter=300, tol=1e-4
        )
        self.anchors = ModalityAnchors(2, dim, dropout=0.1)
        self.apart = DistinctContrastive(0.1, dim=dim)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(2 * dim, 1, bias=False)

    def forward(self, omics, table, has_table, rho=None):
        h_omics = self.drop(torch.einsum("bgl,gld->bgd", omics, self.omics_w) + self.omics_b)
        cell_mask = ~torch.isnan(table) & has_table[:, None]  # (B, F)
        h_table = self.drop(self.table(table, cell_mask))
        masks = [torch.ones(omics.shape[:2], dtype=torch.bool), has_table[:, None].expand_as(table)]
        together = self.align([h_omics, h_table], masks, rho=rho)
        apart = self.anchors(together.prototype_tokens)
        present = together.present  # (B, 2): modalities each patient has
        risk = self.head(apart.pooled.flatten(1))[:, 0]
        return risk, together.loss, self.apart(apart.pooled, apart.anchors, mask=present)


# [/model]


# %%
# Training with early stopping and a small ensemble
# -------------------------------------------------
# Every member trains on 4/5 of the training patients and stops when the Harrell C on the
# remaining 1/5 has not improved for a few epochs. The test patients are never looked at.
# [train]
def fit_member(fit, val, seed, epochs=40, patience=6):
    torch.manual_seed(seed)
    model = SmallCohortTTA(24, 16, 6)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    cox = CoxPHLoss(ties="efron")
    best, best_state, since = -1.0, None, 0
    for _ in range(epochs):
        model.train()
        for idx in fit[torch.randperm(len(fit))].split(64):
            risk, together, apart = model(omics_z[idx], table_z[idx], observed[idx])
            t = torch.as_tensor(time[idx.numpy()], dtype=torch.float32)
            loss = cox(risk, t, torch.as_tensor(event[idx.numpy()])) + 0.5 * together + 0.5 * apart
            opt.zero_grad()
            loss.backward()
            opt.step()
        score = c_index_of(model, val)
        if score > best:
            best, since = score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    return model


@torch.no_grad()
def predict(model, rows):
    model.eval()
    return model(omics_z[rows], table_z[rows], observed[rows])[0].numpy()


def c_index_of(model, rows):
    r = rows.numpy()
    return concordance_index(event=event[r], time=time[r], risk=predict(model, rows))


# [/train]

folds = train.chunk(5)
members = []
for j in range(3):
    fit = torch.cat([f for i, f in enumerate(folds) if i != j])
    members.append(fit_member(fit, folds[j], seed=j))


def standardised(model, rows):
    ref = predict(model, train)
    return (predict(model, rows) - ref.mean()) / ref.std()


ens = np.mean([standardised(m, test) for m in members], 0)
tt = test.numpy()
c_tta = concordance_index(event=event[tt], time=time[tt], risk=ens)
c_single = [c_index_of(m, test) for m in members]
print("TTA-style model, single members:", " ".join(f"{v:.3f}" for v in c_single))
print(f"TTA-style model, 3-member average: {c_tta:.3f}")

# %%
# The baseline: elastic-net Cox on the same features
# --------------------------------------------------
# Coxnet gets the flattened omics and the table, with a missing table imputed by the training
# mean (0 after scaling) plus a "table observed" indicator; its penalty is chosen by 5-fold
# cross-validation on the training patients.
from sksurv.linear_model import CoxnetSurvivalAnalysis  # noqa: E402
from sksurv.util import Surv  # noqa: E402

flat = np.concatenate(
    [omics_z.flatten(1).numpy(), np.nan_to_num(table_z.numpy()), observed[:, None].numpy()], 1
)
tr = train.numpy()
path = CoxnetSurvivalAnalysis(l1_ratio=0.5, alpha_min_ratio=0.05, n_alphas=30)
path.fit(flat[tr], Surv.from_arrays(event=event[tr], time=time[tr]))
scores = np.zeros(len(path.alphas_))
for j in range(5):
    va = folds[j].numpy()
    fi = np.setdiff1d(tr, va)
    sub = CoxnetSurvivalAnalysis(l1_ratio=0.5, alphas=path.alphas_)
    sub.fit(flat[fi], Surv.from_arrays(event=event[fi], time=time[fi]))
    scores += [
        concordance_index(event=event[va], time=time[va], risk=sub.predict(flat[va], alpha=a))
        for a in path.alphas_
    ]
alpha = path.alphas_[int(np.argmax(scores))]
c_coxnet = concordance_index(
    event=event[tt], time=time[tt], risk=path.predict(flat[tt], alpha=alpha)
)
oracle = concordance_index(event=event[tt], time=time[tt], risk=c.risk.numpy()[tt])
print(f"Coxnet: {c_coxnet:.3f}   oracle (the planted risk): {oracle:.3f}")

# %%
# Patients with and without the table
# -----------------------------------
# The deep model predicts for every patient; its C-index among the test patients without the
# table shows what the omics tokens alone carry.
import matplotlib.pyplot as plt  # noqa: E402

has = observed.numpy()[tt]
groups = {"with table": has, "without table": ~has}
fig, ax = plt.subplots(figsize=(6, 3))
for i, sel in enumerate(groups.values()):
    vals = [
        concordance_index(event=event[tt][sel], time=time[tt][sel], risk=ens[sel]),
        concordance_index(
            event=event[tt][sel], time=time[tt][sel], risk=path.predict(flat[tt][sel], alpha=alpha)
        ),
    ]
    ax.bar([i - 0.18, i + 0.18], vals, width=0.34, color=["tab:purple", "tab:gray"])
    for x, v in zip([i - 0.18, i + 0.18], vals):
        ax.text(x, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
ax.set_xticks([0, 1], [f"{k} (n={int(s.sum())})" for k, s in groups.items()])
ax.set_ylim(0.5, 1.0)
ax.set_ylabel("test Harrell C")
ax.legend(
    handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:purple", "tab:gray")],
    labels=["TTA-style (3 members)", "Coxnet"],
    fontsize=8,
    loc="upper right",
)
fig.tight_layout()

# %%
# What to take from it
# --------------------
# On a few hundred patients the linear baseline is strong, and a deep multimodal model only
# matches it with the small-cohort recipe: a small token size, early stopping on training-fold
# validation, and averaging a few members. The reference model applies the same recipe to TCGA
# cohorts (``--recipe small-cohort``); its measured results against Coxnet are on the results
# page.
