"""Fixed-point engines of the unbalanced Sinkhorn iteration (internal).

All functions work on prepared inputs:

* ``C (B, N, J)``: cost, zero on padded rows, with the zero-cost sink column appended when partial
  transport is requested (``J = K`` or ``K + 1``);
* ``a (B, N)``, ``b (B, J)``: nonnegative masses (zero on padded rows / empty columns);
* ``eps``: the entropic regularisation; ``t1`` (float) and ``t2 (J,)``: the damping exponents
  ``rho / (rho + eps)`` (1 for a hard marginal).

The iteration is the one of POT's ``sinkhorn_knopp_unbalanced`` (row update first, both scalings
starting at one), written for the potentials ``f = eps log u``, ``g = eps log v``::

    f_i = -t1   eps log sum_j b_j exp((g_j - C_ij) / eps)
    g_j = -t2_j eps log sum_i a_i exp((f_i - C_ij) / eps)

and the plan is ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``.

The fast engine (:func:`solve`) runs it in the scaling domain on a kernel in which the potentials
have been absorbed, ``G_ij = exp((f0_i + g0_j - C_ij) / eps)``, so that only ``exp((f - f0)/eps)``
and ``exp((g - g0)/eps)`` are kept as scalings; it re-absorbs when they drift and falls back to the
log domain (with a rollback) if a block of iterations produced a non-finite value.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Working-set budget (bytes) of one CPU chunk of problems; chosen so that a chunk's kernel stays
# in the per-core L2 cache of the development machine (1 MiB).
_CPU_CHUNK_BYTES = 768 * 1024


def masked_log(x: Tensor) -> Tensor:
    """``log(x)`` with ``-inf`` where ``x == 0`` and a zero (not NaN) gradient there."""
    pos = x > 0
    return torch.where(pos, torch.log(torch.where(pos, x, torch.ones_like(x))), -math.inf)


def log_iteration(
    g: Tensor, C: Tensor, la: Tensor, lb: Tensor, eps: float, t1: float, t2: Tensor
) -> tuple[Tensor, Tensor]:
    """One log-domain Sinkhorn iteration (row then column update); differentiable."""
    f = -t1 * eps * torch.logsumexp(lb.unsqueeze(-2) + (g.unsqueeze(-2) - C) / eps, dim=-1)
    g = -t2 * eps * torch.logsumexp(la.unsqueeze(-1) + (f.unsqueeze(-1) - C) / eps, dim=-2)
    return f, g


def _err(f: Tensor, g: Tensor, fp: Tensor, gp: Tensor, rv: Tensor, cv: Tensor, eps: float):
    """Per-problem fixed-point change ``max(|df|, |dg|) / eps`` over rows/columns with mass."""
    df = torch.where(rv, (f - fp).abs(), 0.0).amax(-1)
    dg = torch.where(cv, (g - gp).abs(), 0.0).amax(-1)
    return torch.maximum(df, dg) / eps


def _finite(f: Tensor, g: Tensor) -> Tensor:
    return torch.isfinite(f).all(-1) & torch.isfinite(g).all(-1)


def unrolled(
    C: Tensor,
    a: Tensor,
    b: Tensor,
    eps: float,
    t1: float,
    t2: Tensor,
    max_iter: int,
    tol: float,
    check_every: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Differentiable log-domain iterations over the whole batch (``grad="unroll"``).

    Problems that have converged are frozen (``torch.where``), so each problem runs exactly the
    iterations it would run alone. Returns ``f, g, n_iter, converged``.
    """
    B, N, J = C.shape
    la, lb = masked_log(a), masked_log(b)
    rv, cv = a > 0, b > 0
    f = C.new_zeros(B, N)
    g = C.new_zeros(B, J)
    active = torch.ones(B, dtype=torch.bool, device=C.device)
    converged = torch.zeros(B, dtype=torch.bool, device=C.device)
    n_iter = torch.zeros(B, dtype=torch.long, device=C.device)
    all_active = True
    for it in range(1, max_iter + 1):
        fn, gn = log_iteration(g, C, la, lb, eps, t1, t2)
        check = it % check_every == 0 or it == max_iter
        if check:
            err = _err(fn.detach(), gn.detach(), f.detach(), g.detach(), rv, cv, eps)
        if all_active:
            f, g = fn, gn
        else:
            f = torch.where(active.unsqueeze(-1), fn, f)
            g = torch.where(active.unsqueeze(-1), gn, g)
        n_iter = n_iter + active.long()
        if check:
            converged = converged | (active & (err < tol))
            active = active & ~converged & _finite(f.detach(), g.detach())
            any_active, all_active = torch.stack([active.any(), active.all()]).tolist()
            if not any_active:
                break
    return f, g, n_iter, converged


class _Chunk:
    """State of the scaling-domain iteration for a chunk of problems (no autograd)."""

    def __init__(self, C, a, b, eps, t1, t2, tau):
        self.C, self.a, self.b = C, a, b
        self.eps, self.t1, self.t2, self.tau = eps, t1, t2, tau
        self.la, self.lb = masked_log(a), masked_log(b)
        self.rv, self.cv = a > 0, b > 0
        self.hard_cols = bool((t2 == 1).all())
        n, N, J = C.shape
        self.G = torch.empty_like(C)
        self.u = torch.empty_like(a)
        self.v = torch.empty_like(b)
        self.Gv = torch.empty(n, N, 1, dtype=C.dtype, device=C.device)
        self.Gu = torch.empty(n, 1, J, dtype=C.dtype, device=C.device)
        self.fresh = True  # no scaling iteration since the last absorption

    def absorb(self, f: Tensor, g: Tensor) -> None:
        """Move the potentials into the kernel and reset the scalings to the masses."""
        eps = self.eps
        self.f0, self.g0 = f, g
        G = self.G
        torch.sub(f.unsqueeze(-1), self.C, out=G)
        G.add_(g.unsqueeze(-2)).div_(eps).exp_()
        self.alpha = self.a * torch.exp(-(1.0 - self.t1) / eps * f)
        self.beta = self.b * torch.exp(-(1.0 - self.t2) / eps * g)
        self.u.copy_(self.a)
        self.v.copy_(self.b)
        self.fresh = True

    def potentials(self) -> tuple[Tensor, Tensor]:
        """Current ``(f, g)`` recovered from the last products ``G v`` and ``G^T u``."""
        if self.fresh:
            return self.f0, self.g0
        eps = self.eps
        f = self.t1 * (self.f0 - eps * torch.log(self.Gv.squeeze(-1)))
        g = self.t2 * (self.g0 - eps * torch.log(self.Gu.squeeze(-2)))
        return f, g

    def iterate(self, n: int) -> None:
        """Run ``n`` scaling-domain iterations in place."""
        G, u, v, Gv, Gu = self.G, self.u, self.v, self.Gv, self.Gu
        alpha, beta, t1 = self.alpha, self.beta, self.t1
        Gv1, Gu1 = Gv.squeeze(-1), Gu.squeeze(-2)
        v3, u3 = v.unsqueeze(-1), u.unsqueeze(-2)
        neg_t2 = -self.t2
        for _ in range(n):
            torch.bmm(G, v3, out=Gv)
            if t1 == 1.0:
                torch.div(alpha, Gv1, out=u)
            else:
                torch.pow(Gv1, -t1, out=u)
                u.mul_(alpha)
            torch.bmm(u3, G, out=Gu)
            if self.hard_cols:
                torch.div(beta, Gu1, out=v)
            else:
                torch.pow(Gu1, neg_t2, out=v)
                v.mul_(beta)
        if n:
            self.fresh = False

    def plan(self) -> Tensor:
        return self.u.unsqueeze(-1) * self.G * self.v.unsqueeze(-2)

    def select(self, keep: Tensor) -> None:
        """Keep only the problems at positions ``keep`` (a 1-D index tensor)."""
        for name in ("C", "a", "b", "la", "lb", "rv", "cv", "G", "u", "v", "Gv", "Gu"):
            setattr(self, name, getattr(self, name).index_select(0, keep))
        for name in ("f0", "g0", "alpha", "beta"):
            setattr(self, name, getattr(self, name).index_select(0, keep))


def _solve_chunk(C, a, b, eps, t1, t2, max_iter, tol, check_every, tau, out):
    """Solve a chunk of problems; write ``P, f, g, n_iter, converged`` into ``out`` rows."""
    P_out, f_out, g_out, n_out, c_out, offset = out
    n = C.shape[0]
    st = _Chunk(C, a, b, eps, t1, t2, tau)
    f, g = log_iteration(torch.zeros_like(b), C, st.la, st.lb, eps, t1, t2)
    it = 1
    pos = torch.arange(n, device=C.device) + offset  # output rows of the active problems
    st.absorb(f, g)
    err = torch.full((n,), math.inf, dtype=C.dtype, device=C.device)
    ck_f, ck_g, ck_it = f, g, it  # last checkpoint (for a rollback)
    while True:
        if it >= max_iter:
            done = err < tol
            finished = torch.ones(n, dtype=torch.bool, device=C.device)
        else:
            nxt = min(max_iter, (it // check_every + 1) * check_every)
            st.iterate(nxt - it - 1)
            u_prev, v_prev = st.u.clone(), st.v.clone()
            st.iterate(1)
            it = nxt
            f, g = st.potentials()
            # |df| / eps and |dg| / eps over the last iteration, from the scalings themselves
            # (exact to working precision even when |f| / eps is large)
            err = torch.maximum(
                torch.where(st.rv, torch.log(st.u / u_prev).abs(), 0.0).amax(-1),
                torch.where(st.cv, torch.log(st.v / v_prev).abs(), 0.0).amax(-1),
            )
            ok = _finite(f, g) & torch.isfinite(err)
            done = err < tol
            finished = done | (it >= max_iter)
            drift = torch.maximum(
                torch.where(st.rv, (f - st.f0).abs(), 0.0).amax(-1),
                torch.where(st.cv, (g - st.g0).abs(), 0.0).amax(-1),
            )
            need_absorb = (drift / eps > tau).any().expand(n)
            # one host synchronisation per check
            flags = torch.stack([finished, need_absorb, ok.all().expand(n)]).tolist()
            if not flags[2][0]:
                # a scaling under/overflowed in this block: roll back to the checkpoint and
                # redo the block in the log domain
                f, g = ck_f, ck_g
                for _ in range(ck_it, it):
                    fp, gp = f, g
                    f, g = log_iteration(g, st.C, st.la, st.lb, eps, t1, t2)
                st.absorb(f, g)
                err = _err(f, g, fp, gp, st.rv, st.cv, eps)
                done = err < tol
                finished = done | (it >= max_iter)
                flags = [finished.tolist(), [False] * n]
            if flags[1][0] and not all(flags[0]):
                # absorb before finishing so the plan is built from a well-scaled kernel
                st.absorb(f, g)
            ck_f, ck_g, ck_it = f, g, it
            if not any(flags[0]):
                continue
            finished = torch.tensor(flags[0], device=C.device)
        idx = finished.nonzero().squeeze(-1)
        rows = pos.index_select(0, idx)
        P_out[rows] = st.plan().index_select(0, idx)
        f_out[rows] = f.index_select(0, idx)
        g_out[rows] = g.index_select(0, idx)
        n_out[rows] = it
        c_out[rows] = done.index_select(0, idx)
        keep = (~finished).nonzero().squeeze(-1)
        if keep.numel() == 0:
            return
        st.select(keep)
        pos, err = pos.index_select(0, keep), err.index_select(0, keep)
        f, g = f.index_select(0, keep), g.index_select(0, keep)
        ck_f, ck_g = ck_f.index_select(0, keep), ck_g.index_select(0, keep)
        n = keep.numel()


def solve(
    C: Tensor,
    a: Tensor,
    b: Tensor,
    eps: float,
    t1: float,
    t2: Tensor,
    max_iter: int,
    tol: float,
    check_every: int,
    chunk: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Fixed point without autograd. Returns ``P (B, N, J), f, g, n_iter, converged``."""
    B, N, J = C.shape
    P = torch.empty_like(C)
    f = C.new_empty(B, N)
    g = C.new_empty(B, J)
    n_iter = torch.zeros(B, dtype=torch.long, device=C.device)
    conv = torch.zeros(B, dtype=torch.bool, device=C.device)
    # absorb when the scalings leave [e^-tau, e^tau]; a quarter of the exponent range
    tau = 0.25 * -math.log(torch.finfo(C.dtype).tiny)
    if chunk is None:
        if C.device.type == "cpu":
            chunk = max(1, _CPU_CHUNK_BYTES // max(1, N * J * C.element_size()))
        else:
            chunk = B
    out = (P, f, g, n_iter, conv)
    # The CPU engine runs many small ops on cache-sized chunks. With several intra-op threads
    # each of them may wait at an OpenMP barrier for a descheduled partner thread (measured on a
    # loaded 2-core machine: 0.3 s with one thread vs 8-30 s with two), so it runs on one thread;
    # the setting is restored afterwards. Not while torch.compile traces (dynamo cannot trace
    # torch.set_num_threads and would break the graph there).
    on_cpu = C.device.type == "cpu" and not torch.compiler.is_compiling()
    threads = torch.get_num_threads() if on_cpu else 1
    if threads > 1:
        torch.set_num_threads(1)
    try:
        _solve_all(C, a, b, eps, t1, t2, max_iter, tol, check_every, tau, chunk, out)
    finally:
        if threads > 1:
            torch.set_num_threads(threads)
    return P, f, g, n_iter, conv


def _solve_all(C, a, b, eps, t1, t2, max_iter, tol, check_every, tau, chunk, out):
    P, f, g, n_iter, conv = out
    B = C.shape[0]
    with torch.no_grad():
        for s in range(0, B, chunk):
            e = min(B, s + chunk)
            _solve_chunk(
                C[s:e],
                a[s:e],
                b[s:e],
                eps,
                t1,
                t2,
                max_iter,
                tol,
                check_every,
                tau,
                (P, f, g, n_iter, conv, s),
            )
