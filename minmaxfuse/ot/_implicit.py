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

Rows (columns) without mass are not part of the coupled system, but their potentials are still
defined by one half-step of the iteration from the other side's potentials::

    f_i = -t1 eps log sum_j b_j exp((g_j - C_ij) / eps)      (a_i = 0)
    g_j = -t2_j eps log sum_i a_i exp((f_i - C_ij) / eps)    (b_j = 0)

so an upstream gradient on such an ``f_i`` (``g_j``) reaches ``C``, ``b`` (``a``) directly and the
coupled system through ``g`` (``f``), with the softmax weights of that half-step. The gradient
with respect to a zero mass itself is zero (as for ``grad="unroll"``). When every marginal is hard
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
    def forward(  # noqa: D102
        ctx, C, a, b, eps, t1, t2, max_iter, tol, check_every, balanced=None, zero_mass=(True, True)
    ):
        P, f, g, n_iter, conv = _solver.solve(
            C.detach(), a.detach(), b.detach(), eps, t1, t2, max_iter, tol, check_every
        )
        zero_rows, zero_cols = zero_mass
        # the cost and potentials are needed only for rows / columns that may have no mass
        extra = (C.detach(), f, g) if (zero_rows or zero_cols) else ()
        ctx.save_for_backward(P, a.detach(), b.detach(), t2, *extra)
        ctx.eps, ctx.t1, ctx.balanced, ctx.zero_mass = eps, t1, balanced, (zero_rows, zero_cols)
        ctx.mark_non_differentiable(n_iter, conv)
        return P, f, g, n_iter, conv

    @staticmethod
    def backward(ctx, gP, gf, gg, _gn, _gc):  # noqa: D102
        P, a, b, t2, *extra = ctx.saved_tensors
        grads = implicit_backward(
            P,
            a,
            b,
            ctx.eps,
            ctx.t1,
            t2,
            gP,
            gf,
            gg,
            ctx.needs_input_grad,
            balanced=ctx.balanced,
            state=tuple(extra) if extra else None,
            zero_mass=ctx.zero_mass,
        )
        return (*grads, None, None, None, None, None, None, None, None)


def _zero_mass_terms(C, f, g, a, b, rv, cv, eps, t1, t2, gf, gg, zero_mass):
    """Gradients through the potentials of rows / columns without mass (see the module notes).

    Returns ``(du1, du2, dC, da, db)``: extra upstream gradients of the valid potentials ``f``
    and ``g`` and direct gradients of ``C``, ``a`` and ``b`` (``None`` where there are none).
    """
    du1 = du2 = dC = da = db = None
    if zero_mass[0] and gf is not None:
        zf = torch.where(rv, 0.0, gf)  # (B, N): upstream of the rows without mass
        w = torch.softmax(_solver.masked_log(b).unsqueeze(-2) + (g.unsqueeze(-2) - C) / eps, dim=-1)
        zw = (t1 * zf).unsqueeze(-1) * w  # (B, N, J); zero on rows with mass
        col = zw.sum(-2)  # (B, J)
        du2 = -col  # df_i / dg_j = -t1 w_ij
        dC = zw  # df_i / dC_ij = t1 w_ij
        one = torch.ones((), dtype=b.dtype, device=b.device)
        db = torch.where(cv, -eps * col / torch.where(cv, b, one), 0.0)
    if zero_mass[1] and gg is not None:
        zg = torch.where(cv, 0.0, gg) * t2  # (B, J)
        v = torch.softmax(_solver.masked_log(a).unsqueeze(-1) + (f.unsqueeze(-1) - C) / eps, dim=-2)
        zv = zg.unsqueeze(-2) * v  # (B, N, J); zero on columns with mass
        row = zv.sum(-1)  # (B, N)
        du1 = -row
        dC = zv if dC is None else dC + zv
        one = torch.ones((), dtype=a.dtype, device=a.device)
        da = torch.where(rv, -eps * row / torch.where(rv, a, one), 0.0)
    return du1, du2, dC, da, db


def implicit_backward(
    P,
    a,
    b,
    eps,
    t1,
    t2,
    gP,
    gf,
    gg,
    needs=(True, True, True),
    balanced=None,
    state=None,
    zero_mass=(True, True),
):
    """Vector-Jacobian product of ``(P, f, g)`` with respect to ``(C, a, b)`` at the fixed point.

    ``balanced`` (every marginal hard) may be passed by the caller, who knows it from the
    ``reg_m`` floats; otherwise it is read from ``t2`` (a host synchronisation). ``state`` is
    ``(C, f, g)``, needed for the gradients of potentials on rows / columns without mass
    (``zero_mass`` says which of the two may occur); without it those gradients are zero.
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
    dC0 = da0 = db0 = None
    if state is not None:
        C, f, g = state
        du1, du2, dC0, da0, db0 = _zero_mass_terms(
            C, f, g, a, b, rv, cv, eps, t1, t2.to(dtype), gf, gg, zero_mass
        )
        if du1 is not None:
            u1 = u1 + du1
        if du2 is not None:
            u2 = u2 + du2
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
        if dC0 is not None:
            gC = gC + dC0
    if needs[1]:
        a_s = torch.where(a > 0, a, one)
        ga = torch.where(a > 0, (row_gp - eps * Bl) / a_s, 0.0)
        if da0 is not None:
            ga = ga + da0
    if needs[2]:
        b_s = torch.where(b > 0, b, one)
        Al = torch.bmm(Pt, (lam1 / r_s).unsqueeze(-1)).squeeze(-1)
        gb = torch.where(b > 0, (col_gp - eps * Al) / b_s, 0.0)
        if db0 is not None:
            gb = gb + db0
    return gC, ga, gb
