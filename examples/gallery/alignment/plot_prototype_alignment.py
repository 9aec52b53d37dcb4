"""
Prototype alignment on toy data: what the Together loss does on its own
=======================================================================

:class:`minmaxfuse.layers.PrototypeUOTAlign` gives all modalities one coordinate system: a
shared bank of ``K`` prototypes, to which the tokens of every modality are assigned by
unbalanced transport.
This example trains the layer *alone*, with its Together loss and nothing else, on a toy cohort,
and looks at the assignments it learns, with one joint transport problem per subject
(``joint=True``, TTA's choice) and with one problem per modality (``joint=False``).

The toy cohort: each subject has a composition over four latent tissue *types*; modality A
(slide-like) has 32 to 64 tokens per subject and modality B (assay-like) 12, both drawn from the
subject's composition, in the same feature space but with different noise and slightly shifted
type centres. Maths: :doc:`/concepts/together`.
"""

# %%
# A toy cohort
# ------------
import matplotlib.pyplot as plt
import torch

from minmaxfuse.data import pad_bags
from minmaxfuse.layers import PrototypeUOTAlign

torch.manual_seed(0)
B, D, C, K = 24, 8, 4, 6  # subjects, feature size, latent types, prototypes
gen = torch.Generator().manual_seed(1)
centres = 1.5 * torch.randn(C, D, generator=gen)
composition = torch.distributions.Dirichlet(torch.full((C,), 0.7)).sample((B,))  # (B, C)


def make_bags(sizes, centres, noise):
    bags, types = [], []
    for n, size in enumerate(sizes.tolist()):
        t = torch.multinomial(composition[n], size, replacement=True, generator=gen)
        bags.append(centres[t] + noise * torch.randn(size, D, generator=gen))
        types.append(t)
    return bags, types


bags_a, types_a = make_bags(torch.randint(32, 65, (B,), generator=gen), centres, 0.3)
shifted = centres + 0.2 * torch.randn(C, D, generator=gen)
bags_b, types_b = make_bags(torch.full((B,), 12), shifted, 0.5)
xa, mask_a = pad_bags(bags_a)  # (B, 64, D), (B, 64)
xb, mask_b = pad_bags(bags_b)  # (B, 12, D), (B, 12)
type_a = pad_bags([t[:, None].float() for t in types_a]).tokens[..., 0].long()  # (B, 64)
type_b = torch.stack(types_b)  # (B, 12)
print(f"modality A {tuple(xa.shape)}, modality B {tuple(xb.shape)}")


# %%
# Training the layer alone
# ------------------------
# Only the layer's parameters are trained (the per-modality projections and the shared bank),
# by the Together loss, with the full mass transported (``rho = 1``).
def type_by_prototype(plan, types, mask):
    """Average plan row of the tokens of each latent type, normalised: (C, K)."""
    rows = [plan[(types == c) & mask].sum(0) for c in range(C)]
    rows = torch.stack(rows)
    return rows / rows.sum(1, keepdim=True).clamp_min(1e-12)


def train(joint, steps=30):
    torch.manual_seed(0)
    layer = PrototypeUOTAlign(D, num_prototypes=K, joint=joint, max_iter=300, tol=1e-4)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.02)
    snapshots = {}
    for step in range(steps + 1):
        out = layer([xa, xb], [mask_a, mask_b])
        if step in (0, steps):
            snapshots[step] = [
                type_by_prototype(out.plans[0].detach(), type_a, mask_a),
                type_by_prototype(out.plans[1].detach(), type_b, mask_b),
            ]
        if step < steps:
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
    return snapshots


runs = {"joint=True": train(True), "joint=False": train(False)}

# %%
# Type-to-prototype assignments
# -----------------------------
# Each panel shows, for every latent type, where its tokens' mass goes (rows sum to one). Sharp
# rows mean the types are recognised; the overlap between the two modalities' rows of the same
# type says whether a type uses the *same* prototypes in both modalities.
fig, axes = plt.subplots(2, 4, figsize=(11, 4.2), sharex=True, sharey=True, layout="constrained")
for row, (name, snaps) in enumerate(runs.items()):
    for j, (when, step) in enumerate([("before", 0), ("after", max(snaps))]):
        for m, mod in enumerate("AB"):
            ax = axes[row, 2 * j + m]
            im = ax.imshow(snaps[step][m], cmap="Greens", vmin=0, vmax=1)
            ax.set_title(f"{name}, {mod}, {when}", fontsize=8)
for ax in axes[1]:
    ax.set_xlabel("prototype")
for ax in axes[:, 0]:
    ax.set_ylabel("latent type")
fig.colorbar(im, ax=axes, label="share of the type's mass", shrink=0.9)


def summary(snap):
    a, b = snap
    sharp = (float(a.max(1).values.mean()), float(b.max(1).values.mean()))
    overlap = float((a * b).sum(1).mean() / ((a * a).sum(1) * (b * b).sum(1)).sqrt().mean())
    return sharp, overlap


for name, snaps in runs.items():
    for step in sorted(snaps):
        (sa, sb), overlap = summary(snaps[step])
        print(
            f"{name:<12} step {step:>3}: sharpness A {sa:.2f}, B {sb:.2f}; "
            f"cross-modal overlap of type rows {overlap:.2f}"
        )

# %%
# What to take from this
# ----------------------
# Trained on its own, the Together loss makes each modality's assignments sharper: it is a
# clustering objective whose targets are the transport plans. It does **not**, by itself, make
# a latent type use the same prototypes in both modalities. Look at the overlap printed above:
# with one joint problem per subject, both modalities' tokens compete for the same prototype
# capacities, and in this toy the two modalities end up on largely different prototypes;
# modality B, the smaller one, is even squeezed onto fewer prototypes than it has types (a
# sharp row is not necessarily a faithful one).
#
# In TTA the Together loss never acts alone. The prototype tokens of both modalities are fused
# and trained by the task loss, and the Apart stage shapes them; what "slot ``k``" means is
# learned from all of that. :ref:`sphx_glr_auto_examples_alignment_plot_own_model.py` shows the
# full stack on a task, and :ref:`sphx_glr_auto_examples_alignment_plot_collapse_diagnostics.py`
# how to check the learned representations. When you tune the Together weight, watch the
# per-modality assignments too (``AlignOutput.plans``), not only the task metric.
