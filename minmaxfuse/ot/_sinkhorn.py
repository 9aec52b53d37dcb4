"""Batched, masked unbalanced Sinkhorn (public entry points)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from minmaxfuse._checks import (
    autocast_off,
    check_bool,
    check_choice,
    check_finite,
    check_float,
    check_has_data,
    check_in_range,
    check_int,
    check_mask,
    check_ndim,
    check_nonempty_bags,
    check_nonnegative,
    check_positive,
    check_same_device,
    check_shape,
    check_tensor,
    reads_values,
)
from minmaxfuse.ot import _solver
from minmaxfuse.ot._implicit import ImplicitUOT
from minmaxfuse.ot._result import UOTResult

_GRADS = ("implicit", "unroll", "envelope", "detach")


def _parse_reg_m(reg_m: object) -> tuple[float, float]:
    if isinstance(reg_m, (tuple, list)) or (isinstance(reg_m, Tensor) and reg_m.numel() == 2):
        if len(reg_m) != 2:
            raise ValueError(
                f"`reg_m` must be a number or a pair (rows, cols); got a sequence of length "
                f"{len(reg_m)}."
            )
        return (
            check_positive(reg_m[0], "reg_m", allow_inf=True),
            check_positive(reg_m[1], "reg_m", allow_inf=True),
        )
    v = check_positive(reg_m, "reg_m", allow_inf=True)
    return v, v


def _damping(rho: float, eps: float) -> float:
    return 1.0 if math.isinf(rho) else rho / (rho + eps)


def _kl(x: Tensor, y: Tensor) -> Tensor:
    """Generalised KL ``sum x log(x / y) - x + y`` over the last axis, zero where ``y == 0``."""
    # an exactly-zero x (a marginal that underflowed) contributes y with a zero gradient of the
    # x log x part, instead of -inf * 0 = NaN
    pos = (y > 0) & (x > 0)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    xs = torch.where(pos, x, one)
    ys = torch.where(pos, y, one)
    term = torch.where(pos, xs * torch.log(xs / ys), 0.0) - x + y
    return torch.where(y > 0, term, 0.0).sum(-1)


def _objective(P, f, g, a, b, eps, rho1, rho2, K):
    """Full UOT objective per problem from the plan and its potentials.

    With ``P = a b^T exp((f + g - C) / eps)``, ``<P, C> + eps sum P log(P / ab^T)`` equals
    ``<f, r> + <g, c>``, so the value needs no pass over ``C``.
    """
    r = P.sum(-1)
    c = P.sum(-2)
    value = (f * r).sum(-1) + (g * c).sum(-1) + eps * (a.sum(-1) * b.sum(-1) - r.sum(-1))
    if not math.isinf(rho1):
        value = value + rho1 * _kl(r, a)
    if not math.isinf(rho2):
        value = value + rho2 * _kl(c[..., :K], b[..., :K])
    return value


def _envelope_value(P, f, g, C, a, b, eps, rho1, rho2, K, t2):
    """Value with the plan held constant: exact partials in ``C``, ``a`` and ``b``.

    ``d/dC = P``; ``d/da_i = eps (sum b - r_i / a_i) + rho1 (1 - r_i / a_i)`` (``+ f_i``, the
    multiplier, for hard rows) and symmetrically for ``b`` (``+ g_j`` on hard columns).
    """
    value = _objective(P, f, g, a.detach(), b.detach(), eps, rho1, rho2, K)
    value = value + (P * (C - C.detach())).sum((-2, -1))
    r, c = P.sum(-1), P.sum(-2)
    ad, bd = a.detach(), b.detach()
    one = torch.ones((), dtype=P.dtype, device=P.device)
    ra = r / torch.where(ad > 0, ad, one)
    cb = c / torch.where(bd > 0, bd, one)
    da = eps * (bd.sum(-1, keepdim=True) - ra)
    da = da + (f if math.isinf(rho1) else rho1 * (1.0 - ra))
    db = eps * (ad.sum(-1, keepdim=True) - cb)
    hard = t2 == 1
    soft = rho2 * (1.0 - cb) if not math.isinf(rho2) else torch.zeros_like(cb)
    db = db + torch.where(hard, g, soft)
    value = value + (torch.where(ad > 0, da, 0.0) * (a - ad)).sum(-1)
    value = value + (torch.where(bd > 0, db, 0.0) * (b - bd)).sum(-1)
    return value


def sinkhorn_uot(
    cost: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    *,
    reg: float = 0.1,
    reg_m: float | Sequence[float] = 1.0,
    mask: Tensor | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    grad: str = "implicit",
    sink_mass: float | Tensor | None = None,
    check_every: int = 10,
    warn: bool = False,
) -> UOTResult:
    r"""Solve a batch of entropic unbalanced optimal transport problems.

    For each problem of the batch, with plan :math:`P \in \mathbb{R}_+^{N \times K}`, row
    marginal :math:`r = P 1` and column marginal :math:`c = P^\top 1`:

    .. math::

        \min_{P \ge 0} \langle P, C \rangle + \varepsilon\, \mathrm{KL}(P \,|\, a b^\top)
        + \lambda_1 \mathrm{KL}(r \,|\, a) + \lambda_2 \mathrm{KL}(c \,|\, b),

    the problem solved by POT's ``ot.unbalanced.sinkhorn_unbalanced(a, b, M, reg, reg_m,
    reg_type="kl")``, here batched, masked, computed in the log domain with absorption, and
    differentiable in four ways.

    Parameters
    ----------
    cost : Tensor, shape (B, N, K)
        Cost matrices (floating point). Entries on padded rows are ignored (they may be NaN).
    a : Tensor, shape (B, N), optional
        Nonnegative row masses. Default: uniform over the valid rows, summing to one. Padded
        rows are given zero mass whatever ``a`` holds there.
    b : Tensor, shape (B, K), optional
        Nonnegative masses of the ``K`` real columns. Default: uniform summing to one, or to
        ``(1 - sink_mass) * sum(a)`` when a sink is used.
    reg : float, default 0.1
        Entropic regularisation :math:`\varepsilon > 0`.
    reg_m : float or pair of floats, default 1.0
        Marginal relaxation :math:`\lambda_1 = \lambda_2` or a pair :math:`(\lambda_1, \lambda_2)`
        for rows and columns.
        ``math.inf`` makes a marginal a hard constraint (both ``inf``: balanced OT, which
        needs equal total masses, sink included, or the iteration cannot converge; one:
        semi-relaxed).
    mask : Tensor, shape (B, N), bool, optional
        ``True`` on valid rows. The result on the valid rows equals solving each unpadded
        problem alone; padded rows have an exactly zero plan and zero gradients.
    max_iter : int, default 1000
        Maximum number of Sinkhorn iterations (a row and a column update each).
    tol : float, default 1e-6
        Stop a problem when one iteration changes no potential by more than ``tol * reg``,
        i.e. :math:`\max(\|\Delta f\|_\infty, \|\Delta g\|_\infty) / \varepsilon <` ``tol``
        (the relative change of the POT scalings ``u, v``). Checked every ``check_every``
        iterations and at the last one.
    grad : {"implicit", "unroll", "envelope", "detach"}, default "implicit"
        How gradients flow to ``cost``, ``a`` and ``b``:

        * ``"implicit"``: exact gradients of plan, value and potentials at the fixed point by
          the implicit function theorem (a ``K x K`` Schur complement per problem); the forward
          pass keeps no graph, so memory does not depend on the number of iterations.
        * ``"unroll"``: autograd through every log-domain iteration (memory grows with the
          iterations; exact for the plan actually computed, also before convergence).
        * ``"envelope"``: the plan and potentials are returned **detached**; only ``value`` is
          differentiable, with the plan held constant (envelope theorem: ``d value / d cost =
          plan``, exact at convergence). Gradients of anything computed from ``plan`` are
          silently zero in this mode.
        * ``"detach"``: no gradients at all.
    sink_mass : float in [0, 1) or Tensor of shape (B,), optional
        Partial transport: append a zero-cost sink column whose column marginal is a **hard**
        constraint equal to ``sink_mass * sum(a)`` while the ``K`` real columns keep the relaxation
        :math:`\lambda_2` towards ``b``. Treated as a constant (no gradient).
    check_every : int, default 10
        Iterations between convergence checks; each check costs one host synchronisation.
    warn : bool, default False
        Emit a :class:`RuntimeWarning` when some problem did not converge.

    Returns
    -------
    UOTResult
        ``plan (B, N, K)``, ``value (B,)``, ``f (B, N)``, ``g (B, K)``, ``n_iter (B,)``,
        ``converged (B,)``, ``sink (B, N)``, in the dtype of ``cost`` (integers/bools aside).

    Raises
    ------
    TypeError
        If ``cost``, ``a``, ``b`` are not floating-point tensors or ``mask`` is not bool.
    ValueError
        On a wrong rank or shape, a non-positive ``reg`` or ``reg_m``, an unknown ``grad``, a
        ``sink_mass`` outside ``[0, 1)``, NaN/Inf costs on valid rows, negative masses, a bag
        without valid rows or mass, or costs so large in magnitude that the plan or value is
        not representable (value checks).

    Notes
    -----
    The optimum has the form :math:`P_{ij} = a_i b_j \exp((f_i + g_j - C_{ij}) / \varepsilon)`
    where, with :math:`t = \lambda / (\lambda + \varepsilon)` (:math:`t = 1` for a hard
    marginal), the potentials are the fixed point of POT's iteration (rows first, from zero):

    .. math::

        f_i = -t_1 \varepsilon \log \sum_j b_j e^{(g_j - C_{ij})/\varepsilon}, \qquad
        g_j = -t_2 \varepsilon \log \sum_i a_i e^{(f_i - C_{ij})/\varepsilon}.

    When both marginals are hard (balanced OT) the potentials are defined up to
    :math:`(f + s, g - s)`; they are returned in the gauge :math:`\langle a, f \rangle =
    \langle b, g \rangle` (sink column included).

    ``value`` is the full objective with the **generalised** KL,
    :math:`\mathrm{KL}(x|y) = \sum x \log(x/y) - x + y` (mass terms included, so for the
    entropic term :math:`\sum P \log \frac{P}{ab^\top} - \sum P + \sum a \sum b`); a term whose
    :math:`\lambda` is infinite is omitted (its constraint holds). With a sink the plan has a
    ``K + 1``-th column, ``b`` is extended by ``sink_mass * sum(a)``, the entropic term covers
    the sink column and the column relaxation covers the real columns only.

    Each row of the cost is first shifted by a constant :math:`c_i`, which is exact: the shift
    moves into :math:`f` and, for a soft row, into its mass,
    :math:`a_i e^{-c_i/(\lambda_1+\varepsilon)}`. Hard rows are shifted by their minimum, so
    they are solved for costs of any finite size; soft rows by their minimum clipped to
    :math:`\pm 43 (\lambda_1 + \varepsilon)` (float32). When the plan or value is not
    representable anyway (e.g. soft rows with costs near -1e30, whose optimal mass overflows,
    or near 3e38 in float32, where ``cost / reg`` overflows), a ValueError is raised (a value
    check) instead of returning NaN or Inf.

    On CPU the problems are solved in cache-sized chunks in the scaling domain on a kernel into
    which the potentials are absorbed (re-absorbed when the scalings leave
    :math:`[e^{-\tau}, e^{\tau}]`, with a log-domain rollback if a block of iterations underflows),
    which is stable in float32 for ``reg`` down to 1e-3 with costs in [0, 2]. Half-precision
    inputs are solved in float32 with autocast disabled.

    References
    ----------
    .. [1] L. Chizat, G. Peyré, B. Schmitzer, F.-X. Vialard, "Scaling algorithms for unbalanced
       optimal transport problems", Math. Comp. 87 (2018).
    .. [2] R. Flamary et al., "POT: Python Optimal Transport", JMLR 22 (2021).

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.ot import sinkhorn_uot
    >>> cost = torch.rand(2, 5, 3)
    >>> res = sinkhorn_uot(cost, reg=0.1, reg_m=(float("inf"), 1.0))
    >>> res.plan.shape, bool(res.converged.all())
    (torch.Size([2, 5, 3]), True)
    >>> torch.allclose(res.plan.sum(-1), torch.full((2, 5), 0.2), atol=1e-5)  # hard rows
    True
    """
    check_float(cost, "cost")
    check_ndim(cost, 3, "cost", "B, N, K")
    B, N, K = cost.shape
    if N == 0 or K == 0:
        raise ValueError(
            f"`cost` must have N >= 1 rows and K >= 1 columns; got {tuple(cost.shape)}."
        )
    check_has_data(cost, "cost", "the solver reads values to test convergence")
    eps = check_positive(reg, "reg")
    rho1, rho2 = _parse_reg_m(reg_m)
    check_choice(grad, _GRADS, "grad")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    check_every = check_int(check_every, "check_every", minimum=1)
    tol = check_nonnegative(tol, "tol")
    warn = check_bool(warn, "warn")
    user_mask = mask is not None
    mask = check_mask(mask, (B, N), "mask", cost)
    for name, t, letters, shape in (("a", a, "B, N", (B, N)), ("b", b, "B, K", (B, K))):
        if t is not None:
            check_float(t, name)
            check_shape(t, shape, name, letters)
    check_same_device([("cost", cost), ("a", a), ("b", b)])
    check_nonempty_bags(mask, "mask")
    if reads_values(cost) and not bool(torch.isfinite(cost).all()):
        check_finite(cost, "cost", mask.unsqueeze(-1).expand(B, N, K))
    for name, t, m in (("a", a, mask), ("b", b, None)):
        if t is not None and reads_values(cost):
            check_finite(t, name, m)  # padded rows of `a` are ignored
            tv = t if m is None else torch.where(m, t, 0.0)
            if bool((tv < 0).any()):
                raise ValueError(
                    f"`{name}` must be nonnegative; got a minimum of {float(tv.min())}."
                )
    s_mass = _parse_sink_mass(sink_mass, B, cost)

    out_dtype = cost.dtype
    wd = cost.dtype if cost.dtype in (torch.float32, torch.float64) else torch.float32
    with autocast_off(cost):
        if user_mask:
            C = torch.where(mask.unsqueeze(-1), cost.to(wd), 0.0)
        else:
            C = cost.to(wd)  # no copy when already in the working dtype
        if a is None:
            aw = mask.to(wd) / mask.sum(-1, keepdim=True).to(wd)
        else:
            aw = torch.where(mask, a.to(wd), 0.0)
        ma = aw.sum(-1)
        if s_mass is not None:
            s_mass = s_mass.to(wd)
        if b is None:
            scale = torch.ones_like(ma) if s_mass is None else (1.0 - s_mass) * ma
            bw = (scale / K).unsqueeze(-1).expand(B, K)
        else:
            bw = b.to(wd)
        if reads_values(cost):
            if bool((ma <= 0).any()):
                raise ValueError(
                    "`a` must have positive mass on the valid rows of every bag; got zero."
                )
            if s_mass is None and bool((bw.sum(-1) <= 0).any()):
                raise ValueError("`b` must have positive total mass in every bag; got zero.")
        t2 = torch.full((K,), _damping(rho2, eps), dtype=wd, device=cost.device)
        if s_mass is not None:
            C = torch.cat([C, C.new_zeros(B, N, 1)], dim=-1)
            bw = torch.cat([bw, (s_mass * ma).unsqueeze(-1)], dim=-1)
            t2 = torch.cat([t2, t2.new_ones(1)])
        t1 = _damping(rho1, eps)
        Cs, a_s, shift = _shift_rows(C, aw, eps, rho1)

        if grad == "unroll":
            f, g, n_iter, conv = _solver.unrolled(
                Cs, a_s, bw, eps, t1, t2, max_iter, tol, check_every
            )
            P = torch.exp(_log_ratio(f, g, Cs, a_s, bw, eps)) * (
                a_s.unsqueeze(-1) * bw.unsqueeze(-2)
            )
        elif grad == "implicit":
            # every marginal hard (known from the floats: no host sync in the backward)
            balanced = math.isinf(rho1) and math.isinf(rho2)
            # rows / columns without mass occur only with user masses (padded rows have f = 0)
            zero_mass = (a is not None, b is not None)
            P, f, g, n_iter, conv = ImplicitUOT.apply(
                Cs, a_s, bw, eps, t1, t2, max_iter, tol, check_every, balanced, zero_mass
            )
        else:
            P, f, g, n_iter, conv = _solver.solve(
                Cs.detach(), a_s.detach(), bw.detach(), eps, t1, t2, max_iter, tol, check_every
            )
        f = f + t1 * shift  # potentials of the unshifted problem

        if grad == "envelope":
            value = _envelope_value(P, f, g, C, aw, bw, eps, rho1, rho2, K, t2)
        elif grad == "detach":
            value = _objective(P, f, g, aw.detach(), bw.detach(), eps, rho1, rho2, K)
        else:
            value = _objective(P, f, g, aw, bw, eps, rho1, rho2, K)

        if math.isinf(rho1) and math.isinf(rho2):
            # balanced: potentials are defined up to (f + s, g - s); return the gauge
            # <a, f> = <b, g> (differentiably, so gradients of f and g are well defined)
            s = ((bw * g).sum(-1) - (aw * f).sum(-1)) / (aw.sum(-1) + bw.sum(-1))
            f = f + s.unsqueeze(-1)
            g = g - s.unsqueeze(-1)
        f = torch.where(mask, f, 0.0)
        plan = P[..., :K] if s_mass is not None else P  # no slice node without a sink
        sink = P[..., K] if s_mass is not None else P.new_zeros(B, N)
        res = UOTResult(
            plan=plan.to(out_dtype),
            value=value.to(out_dtype),
            f=f.to(out_dtype),
            g=g[..., :K].to(out_dtype),
            n_iter=n_iter,
            converged=conv,
            sink=sink.to(out_dtype),
        )
        if reads_values(cost):
            finite = [torch.isfinite(t).all() for t in (res.plan, res.value, res.f, res.g)]
            if not bool(torch.stack(finite).all()):
                raise ValueError(
                    "`cost` must give a transport plan representable in "
                    f"{out_dtype}; got a non-finite plan, value or potential for costs in "
                    f"[{float(C[..., :K].min()):.4g}, {float(C[..., :K].max()):.4g}] with "
                    f"reg={eps}, reg_m={reg_m}. With soft rows the transported mass grows like "
                    "exp(-cost / (reg_m + reg)): rescale the cost (with reg and reg_m), use "
                    "float64, or make the rows hard (reg_m=(math.inf, ...))."
                )
    if warn and not bool(conv.all()):
        bad = (~conv).nonzero().flatten()[:5].tolist()
        warnings.warn(
            f"sinkhorn_uot did not converge within max_iter={max_iter} for batch indices {bad} "
            f"(tol={tol}); raise max_iter or reg.",
            RuntimeWarning,
            stacklevel=2,
        )
    return res


def _shift_rows(C: Tensor, a: Tensor, eps: float, rho1: float) -> tuple[Tensor, Tensor, Tensor]:
    """Subtract a per-row constant ``c_i`` from the cost and move it into the row mass (exact).

    With ``C = C' + c 1^T`` the fixed point of ``(C, a, b)`` is that of ``(C', a', b)`` with
    ``a'_i = a_i exp(-c_i / (rho1 + eps))`` (``a' = a`` for hard rows) and ``f = f' + t1 c``;
    the plan is the same, and so are the iterates from zero. ``c`` is a constant for autograd
    (the identity holds for any ``c``). Hard rows are shifted by their minimum; soft rows by
    their minimum clipped so that the factor on ``a`` stays within the square root of the
    dtype's range. Returns ``C', a', c (B, N)``.
    """
    shift = C.detach().amin(dim=-1)  # (B, N); 0 on padded rows (their cost is 0)
    if math.isinf(rho1):
        return C - shift.unsqueeze(-1), a, shift
    cap = 0.5 * -math.log(torch.finfo(C.dtype).tiny) * (rho1 + eps)
    shift = shift.clamp(-cap, cap)
    a_s = torch.where(a > 0, a * torch.exp(-shift / (rho1 + eps)), 0.0)
    return C - shift.unsqueeze(-1), a_s, shift


def _log_ratio(f: Tensor, g: Tensor, C: Tensor, a: Tensor, b: Tensor, eps: float) -> Tensor:
    """``(f_i + g_j - C_ij) / eps`` where ``a_i b_j > 0``, else 0."""
    pos = (a.unsqueeze(-1) > 0) & (b.unsqueeze(-2) > 0)
    return torch.where(pos, (f.unsqueeze(-1) + g.unsqueeze(-2) - C) / eps, 0.0)


def _parse_sink_mass(sink_mass: object, B: int, like: Tensor) -> Tensor | None:
    if sink_mass is None:
        return None
    if isinstance(sink_mass, Tensor) and sink_mass.ndim > 0:
        check_tensor(sink_mass, "sink_mass")
        check_shape(sink_mass, (B,), "sink_mass", "B")
        if sink_mass.device != like.device:
            raise ValueError(
                f"`sink_mass` must be on device {like.device}; got {sink_mass.device}."
            )
        s = sink_mass.detach()
        if not s.is_floating_point():
            s = s.double()
        if reads_values(s) and not bool(((s >= 0) & (s < 1)).all()):
            raise ValueError(
                f"`sink_mass` must be in [0, 1); got values in "
                f"[{float(s.min())}, {float(s.max())}]."
            )
        return s
    v = check_in_range(sink_mass, "sink_mass", 0.0, 1.0, high_open=True)
    return torch.full((B,), v, dtype=torch.float64, device=like.device)


def rho_per_problem(rho: object, B: int, like: Tensor) -> Tensor:
    """Validate a transported mass ``rho`` (a number or a ``(B,)`` tensor) in (0, 1].

    Returns a float64 ``(B,)`` tensor: a number is broadcast on ``like``'s device, a tensor
    stays on its own device (detached).
    """
    if isinstance(rho, Tensor) and rho.ndim > 0:
        check_shape(rho, (B,), "rho", "B")
        r = rho.detach().to(torch.float64)
        if reads_values(r) and not bool(((r > 0) & (r <= 1)).all()):
            raise ValueError(
                f"`rho` must be in (0, 1]; got values in [{float(r.min())}, {float(r.max())}]."
            )
        return r
    v = check_in_range(rho, "rho", 0.0, 1.0, low_open=True)
    return torch.full((B,), v, dtype=torch.float64, device=like.device)


def partial_uot(
    cost: Tensor,
    rho: float | Tensor,
    *,
    reg: float = 0.1,
    reg_m_cols: float = 1.0,
    mask: Tensor | None = None,
    **kwargs,
) -> UOTResult:
    r"""Partial unbalanced transport with TTA's marginals (a mass curriculum ``rho``).

    Rows are hard marginals with uniform mass ``1 / N_valid``; each of the ``K`` real columns is
    KL-relaxed (strength ``reg_m_cols``) towards ``rho / K``; a zero-cost sink column takes the
    remaining mass ``1 - rho`` exactly. This is
    ``sinkhorn_uot(cost, None, b=rho / K, reg=reg, reg_m=(inf, reg_m_cols), mask=mask,
    sink_mass=1 - rho, **kwargs)``.

    Parameters
    ----------
    cost : Tensor, shape (B, N, K)
        Cost matrices, e.g. ``1 - cos(token, prototype)`` in [0, 2].
    rho : float in (0, 1] or Tensor of shape (B,)
        Transported mass fraction :math:`\rho`. TTA ramps it from 0.1 to 1 over training.
    reg : float, default 0.1
        Entropic regularisation :math:`\varepsilon` (TTA: 0.1).
    reg_m_cols : float, default 1.0
        KL relaxation :math:`\lambda_2` of the real columns (TTA: 1.0); ``math.inf`` makes them
        hard.
    mask : Tensor, shape (B, N), bool, optional
        ``True`` on valid rows.
    **kwargs
        Forwarded to :func:`sinkhorn_uot` (``max_iter``, ``tol``, ``grad``, ``check_every``,
        ``warn``).

    Returns
    -------
    UOTResult
        ``plan (B, N, K)`` without the sink column; ``sink (B, N)`` holds the mass each row sends
        to the sink (it sums to ``1 - rho`` per problem).

    Raises
    ------
    ValueError
        If ``rho`` is outside ``(0, 1]``, or as :func:`sinkhorn_uot`.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.ot import partial_uot
    >>> cost = torch.rand(2, 6, 4) * 2
    >>> res = partial_uot(cost, 0.3, reg=0.1, reg_m_cols=1.0)
    >>> res.plan.shape, res.sink.shape
    (torch.Size([2, 6, 4]), torch.Size([2, 6]))
    >>> torch.allclose(res.sink.sum(-1), torch.full((2,), 0.7), atol=1e-5)
    True
    """
    check_float(cost, "cost")
    check_ndim(cost, 3, "cost", "B, N, K")
    B, N, K = cost.shape
    r = rho_per_problem(rho, B, cost)
    if reads_values(r) and bool((1.0 - r >= 1.0).any()):
        raise ValueError(
            f"`rho` must leave a representable transported mass (1 - rho < 1 in float64); got "
            f"values down to {float(r.min()):.4g}."
        )
    rw = r.to(cost.dtype if cost.dtype in (torch.float32, torch.float64) else torch.float32)
    b = (rw / K).unsqueeze(-1).expand(B, K)
    return sinkhorn_uot(
        cost,
        None,
        b,
        reg=reg,
        reg_m=(math.inf, check_positive(reg_m_cols, "reg_m_cols", allow_inf=True)),
        mask=mask,
        sink_mass=(1.0 - r).clamp_min(0.0),
        **kwargs,
    )
