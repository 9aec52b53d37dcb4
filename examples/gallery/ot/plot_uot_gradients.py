"""
Gradients through the transport plan: implicit, unrolled, envelope
==================================================================

:func:`minmaxfuse.ot.sinkhorn_uot` can differentiate its plan in several ways (``grad=``). This
example compares them on a small batch, for a loss that depends on the *plan*
(:math:`L = \\langle P, W \\rangle` for a fixed random :math:`W`) and for the transport *value*:

* ``"unroll"`` differentiates through every iteration; its gradient is that of the truncated
  iterate, so it approaches the fixed-point gradient as the number of iterations grows;
* ``"implicit"`` gives the gradient at the fixed point directly, by the implicit function
  theorem, without storing the iterations;
* ``"envelope"`` only differentiates the value (the plan is returned detached).

Background: :doc:`/concepts/uot`.
"""

# %%
# Setup
# -----
import matplotlib.pyplot as plt
import torch

from minmaxfuse.ot import sinkhorn_uot

torch.manual_seed(0)
B, N, K = 4, 100, 8
cost0 = torch.rand(B, N, K, dtype=torch.float64) * 2
W = torch.randn(B, N, K, dtype=torch.float64)


def plan_gradient(grad, max_iter, tol):
    cost = cost0.clone().requires_grad_(True)
    res = sinkhorn_uot(cost, reg=0.1, reg_m=1.0, grad=grad, max_iter=max_iter, tol=tol)
    (res.plan * W).sum().backward()
    return cost.grad, res


# %%
# Implicit versus unrolled gradients
# ----------------------------------
# The implicit gradient is computed once at a tightly converged plan. Unrolled gradients are
# computed with a fixed number of iterations (``tol=0`` disables the early stop) and compared
# with it: the relative difference falls as the truncated iterate approaches the fixed point.
g_implicit, res = plan_gradient("implicit", 5000, 1e-12)
print(f"converged: {bool(res.converged.all())} after {int(res.n_iter.max())} iterations")

iterations = [5, 10, 20, 40, 80]
rel = []
for n in iterations:
    g_unroll, _ = plan_gradient("unroll", n, 0.0)
    rel.append(float((g_unroll - g_implicit).norm() / g_implicit.norm()))
    print(f"unroll, {n:>3} iterations: relative difference to implicit {rel[-1]:.1e}")

fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.semilogy(iterations, rel, "o-")
ax.set_xlabel("unrolled iterations")
ax.set_ylabel("||g_unroll - g_implicit|| / ||g_implicit||")
fig.tight_layout()

# %%
# The value: every mode agrees with the envelope theorem
# ------------------------------------------------------
# At the optimum the gradient of the transport value with respect to the cost is the plan
# itself. ``"envelope"`` uses exactly that; ``"implicit"`` must agree with it.
grads = {}
for mode in ("implicit", "envelope"):
    cost = cost0.clone().requires_grad_(True)
    out = sinkhorn_uot(cost, reg=0.1, reg_m=1.0, grad=mode, max_iter=5000, tol=1e-12)
    out.value.sum().backward()
    grads[mode] = cost.grad
diff = float((grads["implicit"] - grads["envelope"]).abs().max())
print(f"max |d value / d cost (implicit) - (envelope)| = {diff:.1e}")
print(f"max |d value / d cost - plan| = {float((grads['envelope'] - out.plan).abs().max()):.1e}")

# %%
# Which one to use
# ----------------
# * ``"implicit"`` (the default) for anything computed from the plan: exact at convergence, and
#   its memory does not depend on the number of iterations, since the forward iterations keep
#   no graph.
# * ``"unroll"`` when you deliberately run a fixed, small number of iterations and want the
#   gradient of exactly that computation; memory grows with the iterations.
# * ``"envelope"`` when the loss is the transport value itself; ``"detach"`` for pseudo-labels.
