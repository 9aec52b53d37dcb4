"""Exact gradients of the unbalanced Sinkhorn fixed point by implicit differentiation.

The fixed point ``z = (f, g)`` solves ``F(z; C, a, b) = 0`` with (``r = P 1``, ``c = P^T 1``)::

    F1_i = (eps / rho1)   f_i + eps log(r_i / a_i)
    F2_j = (eps / rho2_j) g_j + eps log(c_j / b_j)

For a loss ``L(P, f, g)`` with upstream gradients ``(G, gf, gg)`` the adjoint ``lambda`` solves
``J^T lambda = (u1, u2)``, ``u1 = (G * P) 1 / eps + gf``, ``u2 = (G * P)^T 1 / eps + gg``, where
``J = [[D1, diag(1/r) P], [diag(1/c) P^T, D2]]`` and ``D = 1 + eps / rho``. Eliminating the N row
unknowns leaves a ``J x J`` Schur complement per problem (``J`` = number of columns, small). Then::

    dL/dC_ij = P_ij (-G_ij / eps + lambda1_i / r_i + lambda2_j / c_j)
    dL/da_i  = [ (G * P)_i. - eps sum_j P_ij lambda2_j / c_j ] / a_i
    dL/db_j  = [ (G * P)_.j - eps sum_i P_ij lambda1_i / r_i ] / b_j

Rows (columns) without mass are excluded (their gradients are zero). When every marginal is hard
the potentials are defined up to ``(f + s, g - s)``; the Schur complement is then singular along
``c`` and is made invertible by adding ``1 c^T / sum(c)``, which picks the adjoint orthogonal to
``c`` without changing the gradient.
"""

from __future__ import annotations

import torch

from minmaxfuse.ot import _solver


class ImplicitUOT(torch.autograd.Function):
    """Sinkhorn fixed point with an implicit backward; memory independent of the iterations."""

    @staticmethod
    def forward(ctx, C, a, b, eps, t1, t2, max_iter, tol, check_every, balanced=None):  # noqa: D102
        P, f, g, n_iter, conv = _solver.solve(
            C.detach(), a.detach(), b.detach(), eps, t1, t2, max_iter, tol, check_every
        )
        ctx.save_for_backward(P, a.detach(), b.detach(), t2)
        ctx.eps, ctx.t1, ctx.balanced = eps, t1, balanced
        ctx.mark_non_differentiable(n_iter, conv)
        return P, f, g, n_iter, conv

    @staticmethod
    def backward(ctx, gP, gf, gg, _gn, _gc):  # noqa: D102
        P, a, b, t2 = ctx.saved_tensors
        grads = implicit_backward(
            P, a, b, ctx.eps, ctx.t1, t2, gP, gf, gg, ctx.needs_input_grad, balanced=ctx.balanced
        )
        return (*grads, None, None, None, None, None, None, None)


def implicit_backward(P, a, b, eps, t1, t2, gP, gf, gg, needs=(True, True, True), balanced=None):
    """Vector-Jacobian product of ``(P, f, g)`` with respect to ``(C, a, b)`` at the fixed point.

    ``balanced`` (every marginal hard) may be passed by the caller, who knows it from the
    ``reg_m`` floats; otherwise it is read from ``t2`` (a host synchronisation).
    """
    dtype = P.dtype
    r = P.sum(-1)  # (B, N)
    c = P.sum(-2)  # (B, J)
    rv, cv = r > 0, c > 0
    one = torch.ones((), dtype=dtype, device=P.device)
    r_s = torch.where(rv, r, one)
    c_s = torch.where(cv, c, one)
    if gP is None:
        gP = torch.zeros_like(P)
    # temporaries of size (B, N, J) are created one at a time and released early
    GP = gP * P
    row_gp = GP.sum(-1)  # (B, N)
    col_gp = GP.sum(-2)  # (B, J)
    del GP
    u1 = row_gp / eps
    u2 = col_gp / eps
    if gf is not None:
        u1 = u1 + torch.where(rv, gf, 0.0)
    if gg is not None:
        u2 = u2 + torch.where(cv, gg, 0.0)
    # t = rho / (rho + eps)  =>  D = 1 + eps / rho = 1 / t
    d1 = 1.0 / t1
    d2 = (1.0 / t2).to(dtype)  # (J,)
    Pt = P.transpose(1, 2)  # (B, J, N) view
    A = P / r_s.unsqueeze(-1)  # P_ij / r_i
    M = torch.bmm(Pt, A)  # (B, J, J): sum_i P_ij P_ik / r_i (symmetric)
    del A
    S = torch.diag_embed(d2.expand_as(c)) - M / (c_s.unsqueeze(-2) * d1)
    rhs = u2 - torch.bmm(Pt, (u1 / (d1 * r_s)).unsqueeze(-1)).squeeze(-1)
    if balanced is None:
        balanced = t1 == 1.0 and bool((t2 == 1).all())
    if balanced:
        # balanced: fix the gauge (adjoint orthogonal to c)
        m = cv.to(dtype)
        S = S + m.unsqueeze(-1) * (c / c.sum(-1, keepdim=True)).unsqueeze(-2)
    S64, rhs64 = S.double(), rhs.double().unsqueeze(-1)
    lam2, info = torch.linalg.solve_ex(S64, rhs64)
    # a numerically singular Schur complement (plan entries underflowed far outside the
    # documented cost / reg range): least-norm solution instead of an opaque LinAlgError
    bad = (info != 0).view(-1, 1, 1) | ~torch.isfinite(lam2).all(-2, keepdim=True)
    lam2 = torch.where(bad, torch.linalg.pinv(S64) @ rhs64, lam2)
    lam2 = lam2.squeeze(-1).to(dtype)
    lam2 = torch.where(cv, lam2, 0.0)
    Bl = torch.bmm(P, (lam2 / c_s).unsqueeze(-1)).squeeze(-1)  # (B, N): sum_j P_ij lam2_j / c_j
    lam1 = torch.where(rv, (u1 - Bl) / d1, 0.0)
    gC = ga = gb = None
    if needs[0]:
        gC = gP * (-1.0 / eps)
        gC.add_((lam1 / r_s).unsqueeze(-1)).add_((lam2 / c_s).unsqueeze(-2)).mul_(P)
    if needs[1]:
        a_s = torch.where(a > 0, a, one)
        ga = torch.where(a > 0, (row_gp - eps * Bl) / a_s, 0.0)
    if needs[2]:
        b_s = torch.where(b > 0, b, one)
        Al = torch.bmm(Pt, (lam1 / r_s).unsqueeze(-1)).squeeze(-1)
        gb = torch.where(b > 0, (col_gp - eps * Al) / b_s, 0.0)
    return gC, ga, gb
