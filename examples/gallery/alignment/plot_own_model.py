"""
Together and Apart in your own model: a two-modality classifier
===============================================================

The layers of minmaxfuse are not tied to survival analysis. This example builds a small
classifier over two modalities of bags of tokens (a slide-like modality with ragged bags and an
assay-like modality with a fixed list of tokens) with the full Together/Apart stack:

1. one encoder per modality maps its tokens to a common size ``D``;
2. :class:`~minmaxfuse.layers.PrototypeUOTAlign` assigns the tokens of both modalities to shared
   prototypes and returns ``K`` prototype tokens per modality plus the Together loss;
3. :class:`~minmaxfuse.ModalityAnchors` refines each modality's prototype tokens with a learnable
   anchor and pools them; :class:`~minmaxfuse.DistinctContrastive` is the Apart loss;
4. a linear head classifies the concatenated pooled vectors;
5. :class:`~minmaxfuse.MinMaxObjective` adds task, Together and Apart terms.

The walk-through of the design is on :doc:`/own_model`.
"""

# %%
# Data: a synthetic cohort with a classification label
# -----------------------------------------------------
# :func:`~minmaxfuse.data.make_synthetic_cohort` plants factors shared by both modalities and
# factors specific to each. The label combines the sign of a shared factor with the sign of a
# factor that only the second modality carries, so a model that keeps only what the modalities
# share cannot exceed about 50% accuracy (chance is 25%).
import matplotlib.pyplot as plt
import torch
from torch import nn

from minmaxfuse.data import make_synthetic_cohort
from minmaxfuse.layers import ModalityAnchors, PrototypeUOTAlign
from minmaxfuse.losses import DistinctContrastive, MinMaxObjective

torch.manual_seed(0)
cohort = make_synthetic_cohort(400, bag_sizes=(32, 8), dims=(16, 8), seed=0)
label = (cohort.shared_factors[:, 0] > 0).long() + 2 * (cohort.specific_factors[1][:, 0] > 0).long()
tokens, masks = cohort.tokens, cohort.masks  # lists: (400, 32, 16), (400, 8, 8) and (400, N_m)
train, test = torch.arange(300), torch.arange(300, 400)
print("tokens:", [tuple(t.shape) for t in tokens], "classes:", label.bincount().tolist())


# %%
# The model
# ---------
# Everything minmaxfuse-specific is in ``__init__`` and the first lines of ``forward``. The
# prototype tokens could also feed a co-attention fusion (as TTA does); a mean over the
# refined tokens is enough here.
# [model]
class TwoModalityClassifier(nn.Module):
    def __init__(self, in_dims, num_classes, *, dim=32, num_prototypes=8):
        super().__init__()
        self.encoders = nn.ModuleList(nn.Sequential(nn.Linear(d, dim), nn.GELU()) for d in in_dims)
        self.align = PrototypeUOTAlign(
            dim, num_prototypes, num_modalities=len(in_dims), max_iter=300, tol=1e-4
        )
        self.anchors = ModalityAnchors(len(in_dims), dim)
        self.apart = DistinctContrastive(temperature=0.1, dim=dim)  # owns a projection head
        self.head = nn.Linear(len(in_dims) * dim, num_classes)

    def forward(self, tokens, masks, *, rho=None):
        h = [enc(x) for enc, x in zip(self.encoders, tokens)]  # each (B, N_m, D)
        together = self.align(h, masks, rho=rho)  # prototype_tokens: each (B, K, D)
        apart = self.anchors(together.prototype_tokens)  # pooled (B, A, D), anchors (A, D)
        logits = self.head(apart.pooled.flatten(1))  # (B, num_classes)
        return logits, together.loss, self.apart(apart.pooled, apart.anchors)


# [/model]


# %%
# Training
# --------
# One optimiser over all parameters (the Apart loss's projection head included). The objective
# only sums the weighted terms; ``backward`` and the optimiser step stay in your loop, and
# ``objective.step()`` advances any weight schedule.
# [train]
def train_model(apart_weight=0.5, epochs=5, batch_size=50, seed=0):
    torch.manual_seed(seed)
    model = TwoModalityClassifier([t.shape[-1] for t in tokens], num_classes=4)
    objective = MinMaxObjective({"task": 1.0, "together": 1.0, "apart": apart_weight})
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    log = []
    for _ in range(epochs):
        for idx in train[torch.randperm(len(train))].split(batch_size):
            logits, together, apart = model([t[idx] for t in tokens], [m[idx] for m in masks])
            task = nn.functional.cross_entropy(logits, label[idx])
            loss = objective(task=task, together=together, apart=apart)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            objective.step()
            log.append([float(v.detach()) for v in (task, together, apart)])
    return model, log


@torch.no_grad()
def accuracy(model, idx):
    model.eval()
    logits, _, _ = model([t[idx] for t in tokens], [m[idx] for m in masks])
    model.train()
    return float((logits.argmax(-1) == label[idx]).float().mean())


# [/train]

model, log = train_model()
print(f"test accuracy {accuracy(model, test):.2f} (chance 0.25)")

# %%
# The three terms during training
# -------------------------------
log = torch.tensor(log)
fig, ax = plt.subplots(figsize=(6.5, 3))
for j, name in enumerate(["task (cross-entropy)", "Together", "Apart"]):
    ax.plot(log[:, j], label=name)
ax.set_xlabel("step")
ax.set_yscale("log")
ax.legend()
fig.tight_layout()

# %%
# What the learned prototype tokens look like
# -------------------------------------------
# Transported mass per prototype slot, per modality, for a few test subjects: slot ``k`` is the
# same shared prototype in both modalities.
with torch.no_grad():
    h = [enc(t[test[:6]]) for enc, t in zip(model.encoders, tokens)]
    out = model.align(h, [m[test[:6]] for m in masks])
fig, axes = plt.subplots(1, 2, figsize=(9, 2.8), sharey=True, layout="constrained")
for ax, plan, name in zip(axes, out.plans, cohort.names):
    usage = plan.sum(1) / plan.sum((1, 2))[:, None]  # (6, K)
    im = ax.imshow(usage, cmap="Purples", vmin=0)
    fig.colorbar(im, ax=ax, label="share of mass")
    ax.set_title(f"{name}: share of mass per slot", fontsize=9)
    ax.set_xlabel("prototype slot")
axes[0].set_ylabel("test subject")
