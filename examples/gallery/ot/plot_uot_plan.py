"""
Unbalanced transport plans: the effect of ``reg``, ``reg_m`` and the mass
=========================================================================

:func:`minmaxfuse.ot.sinkhorn_uot` assigns ``N`` tokens to ``K`` prototypes with an entropic,
unbalanced transport plan, and :func:`minmaxfuse.ot.partial_uot` transports only a fraction of
the mass and sends the rest to a sink. This example draws the plans of a small 1-D problem to
show what each knob does:

* ``reg`` (:math:`\\varepsilon`) blurs the plan;
* ``reg_m`` (:math:`\\lambda`) decides how strictly the prescribed masses must be matched;
* the transported mass ``rho`` (:math:`\\rho`) of the partial problem decides how many tokens
  are matched at all; the others give their mass to the sink.

The maths is on :doc:`/concepts/uot`.
"""

# %%
# A toy problem
# -------------
# Thirty tokens on a line, drawn around three clusters, plus a few outliers far from every
# prototype; four prototypes, one of which sits where there are no tokens. The cost is the
# squared distance, scaled to ``[0, 2]`` like a cosine cost.
import math

import matplotlib.pyplot as plt
import torch

from minmaxfuse.ot import partial_uot, sinkhorn_uot

torch.manual_seed(0)
tokens = (
    torch.cat(
        [
            torch.randn(10) * 0.15 - 1.0,
            torch.randn(10) * 0.15 + 0.0,
            torch.randn(7) * 0.15 + 1.0,
            torch.tensor([2.6, 2.8, 3.0]),  # outliers
        ]
    )
    .sort()
    .values
)
prototypes = torch.tensor([-1.0, 0.0, 1.0, -2.5])  # the last one has no tokens nearby
cost = (tokens[:, None] - prototypes[None, :]) ** 2
cost = (2 * cost / cost.max())[None].double()  # (B=1, N=30, K=4)
print("cost", tuple(cost.shape), "in", [round(float(cost.min()), 2), round(float(cost.max()), 2)])


def show(ax, plan, title, colorbar_for=None):
    """Draw ``plan`` (tokens x prototypes) with a colourbar next to ``colorbar_for`` (or ``ax``)."""
    im = ax.imshow(plan.T, aspect="auto", cmap="Blues", interpolation="nearest", vmin=0)
    ax.figure.colorbar(im, ax=ax if colorbar_for is None else colorbar_for, label="mass")
    ax.set_title(title, fontsize=9)
    ax.set_yticks(range(len(prototypes)), [f"p{k}" for k in range(len(prototypes))])
    ax.set_xticks([])


# %%
# Entropy: ``reg``
# ----------------
# With hard marginals on both sides (``reg_m=math.inf``, balanced OT) every token must send its
# mass and every prototype, the empty one included, must receive a quarter of it. Small ``reg``
# gives a sharp, nearly one-to-one plan; large ``reg`` spreads every token over all prototypes.
fig, axes = plt.subplots(1, 3, figsize=(11, 2.8), sharey=True, layout="constrained")
for ax, reg in zip(axes, [0.01, 0.1, 1.0]):
    res = sinkhorn_uot(cost, reg=reg, reg_m=math.inf, max_iter=5000)
    show(ax, res.plan[0], f"reg={reg}, reg_m=inf\nconverged={bool(res.converged[0])}")
axes[0].set_xlabel("tokens (sorted) ->")

# %%
# Marginal relaxation: ``reg_m``
# ------------------------------
# Relaxing the marginals lets the plan deviate from the prescribed masses at a KL price
# :math:`\lambda`. With a small ``reg_m`` the empty prototype ``p3`` stops receiving mass and the
# outliers on the right, expensive for every prototype, send less. The row sums (mass sent per
# token) make this visible.
fig, axes = plt.subplots(
    2, 3, figsize=(11, 4.6), sharex=True, height_ratios=[3, 1.3], layout="constrained"
)
for col, reg_m in enumerate([0.05, 1.0, math.inf]):
    res = sinkhorn_uot(cost, reg=0.05, reg_m=reg_m, max_iter=5000)
    plan = res.plan[0]
    show(axes[0, col], plan, f"reg=0.05, reg_m={reg_m}", colorbar_for=axes[:, col])
    axes[1, col].bar(range(len(tokens)), plan.sum(1) * len(tokens), color="tab:blue")
    axes[1, col].axhline(1.0, color="k", lw=0.8, ls=":")
    axes[1, col].set_ylim(0, 1.6)
    axes[1, col].set_xticks([])
    print(
        f"reg_m={reg_m:<5} total mass {float(plan.sum()):.3f}, "
        f"mass received by the empty prototype {float(plan[:, 3].sum()):.3f}"
    )
axes[1, 0].set_ylabel("N x row sum")

# %%
# Partial transport and the sink
# -------------------------------
# :func:`~minmaxfuse.ot.partial_uot` holds every token's mass fixed, but only a fraction
# ``rho`` may reach the prototypes; the rest goes to a zero-cost sink. Tokens with a high cost
# to every prototype are the first to give up their mass. The row sums of ``N x plan`` are
# therefore a per-token *confidence*, the quantity TTA uses to down-weight uninformative tokens.
fig, axes = plt.subplots(
    2, 3, figsize=(11, 4.6), sharex=True, height_ratios=[3, 1.3], layout="constrained"
)
for col, rho in enumerate([0.2, 0.6, 1.0]):
    res = partial_uot(cost, rho, reg=0.05, reg_m_cols=1.0, max_iter=5000)
    plan = res.plan[0]
    show(axes[0, col], plan, f"partial_uot, rho={rho}", colorbar_for=axes[:, col])
    confidence = plan.sum(1) * len(tokens)
    axes[1, col].bar(range(len(tokens)), confidence, color="tab:green")
    axes[1, col].set_ylim(0, 1.05)
    axes[1, col].set_xticks([])
    print(
        f"rho={rho}: mass to prototypes {float(plan.sum()):.3f}, "
        f"to the sink {float(res.sink.sum()):.3f}, outliers' confidence "
        f"{[round(float(c), 2) for c in confidence[-3:]]}"
    )
axes[1, 0].set_ylabel("confidence")
axes[1, 0].set_xlabel("tokens (sorted) ->")

# %%
# Padding changes nothing
# -----------------------
# Ragged bags are padded and masked. A padded copy of the problem, with garbage (even NaN) in
# the padded rows, gives the same plan on the valid rows and exactly zero on the padding.
padded = torch.cat([cost, torch.full((1, 5, 4), float("nan"), dtype=cost.dtype)], dim=1)
mask = torch.zeros(1, 35, dtype=torch.bool)
mask[:, :30] = True
a = sinkhorn_uot(cost, reg=0.05, reg_m=1.0)
b = sinkhorn_uot(padded, reg=0.05, reg_m=1.0, mask=mask)
print("max |difference| on valid rows:", float((a.plan[0] - b.plan[0, :30]).abs().max()))
print("padded rows of the plan are zero:", bool((b.plan[0, 30:] == 0).all()))
