"""The Together stage: shared prototypes, joint partial UOT, prototype tokens, pseudo-label loss."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from minmaxfuse._checks import (
    as_real,
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
    check_nonnegative_values,
    check_params_dtype,
    check_positive,
    check_same_device,
    reads_values,
)
from minmaxfuse._numerics import l2_normalize
from minmaxfuse.losses import sinkhorn_consistency_loss, soft_assignment_loss
from minmaxfuse.ot import partial_uot, sinkhorn_uot
from minmaxfuse.ot._semantic import _semantic_uot

PlanGrad = Literal["detach", "implicit", "unroll"]
_PLAN_GRADS = ("detach", "implicit", "unroll")


class AlignOutput(NamedTuple):
    r"""Output of :class:`PrototypeUOTAlign`.

    Attributes
    ----------
    prototype_tokens : list of Tensor, each shape (B, K, D)
        Per modality, one token per shared prototype (slot ``k`` means the same prototype in
        every modality).
    plans : list of Tensor, each shape (B, N_m, K)
        The transport plan restricted to modality ``m``, scaled by the number of valid tokens
        of the problem (TTA's ``N·Q``): a row sums to the fraction of its token's mass sent to
        real prototypes, in [0, 1] (1 for every token when ``rho = 1``). Zero on padding.
        Detached unless ``plan_grad != "detach"``.
    logits : list of Tensor, each shape (B, N_m, K)
        Cosine logits / temperature (0 at padded rows).
    loss : Tensor, shape ()
        Together loss: the mean over patients of :math:`\sum_m w_m L_m`.
    losses : Tensor, shape (B, A)
        Unweighted per-patient, per-modality soft cross-entropy (0 for a missing modality).
    present : Tensor of bool, shape (B, A)
        Which modalities each patient has (a bag with at least one valid token).
    rho : float
        The transported mass used for this call.
    """

    prototype_tokens: list[Tensor]
    plans: list[Tensor]
    logits: list[Tensor]
    loss: Tensor
    losses: Tensor
    present: Tensor
    rho: float


def prototype_aggregate(
    x: Tensor,
    logits: Tensor,
    plan: Tensor,
    *,
    mask: Tensor | None = None,
    mix: float = 0.5,
    normalize: bool = False,
) -> Tensor:
    r"""Aggregate a bag into one token per prototype with mixed softmax / transport weights.

    .. math:: \tilde w_{ik} = (1 - \beta)\,\mathrm{softmax}_k(\ell_{ik}) + \beta\, Q_{ik},
              \qquad w_{ik} = \tilde w_{ik} / \textstyle\sum_l \tilde w_{il},
              \qquad T[k] = \sum_{i\ \mathrm{valid}} w_{ik}\, x_i,

    with :math:`\beta` = ``mix`` and :math:`Q` the plan scaled so that rows sum to at most 1
    (TTA's ``N·Q``). A valid row whose weights are all zero (possible only with ``mix = 1``)
    falls back to uniform :math:`1/K`. With ``normalize=True`` the sum becomes a weighted mean,
    :math:`T[k] = \sum_i w_{ik} x_i / \sum_i w_{ik}` (0 for a prototype with no weight).

    Parameters
    ----------
    x : Tensor, shape (B, N, D)
        Token values (TTA: the encoder outputs, not the projected features).
    logits : Tensor, shape (B, N, K)
        Assignment logits.
    plan : Tensor, shape (B, N, K)
        Non-negative transport weights, TTA's ``N Q`` (rows summing to <= 1). Larger row sums
        are accepted: the mixed weights are renormalised per row, so a larger plan row only
        shifts the mix towards the plan (the effective :math:`\beta` grows).
    mask : Tensor of bool, shape (B, N), optional
        Valid tokens; padded ones get no weight.
    mix : float in [0, 1], default 0.5
        :math:`\beta` (TTA: 0.5).
    normalize : bool, default False
        Weighted mean instead of TTA's weighted sum.

    Returns
    -------
    Tensor, shape (B, K, D)

    Raises
    ------
    ValueError, TypeError
        On mismatched shapes or dtypes, a non-bool mask, NaN/Inf or a negative ``plan`` in
        valid rows, ``mix`` outside [0, 1] or a non-bool ``normalize``.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.layers import prototype_aggregate
    >>> x = torch.randn(2, 5, 3)
    >>> logits, plan = torch.randn(2, 5, 4), torch.full((2, 5, 4), 0.25)
    >>> prototype_aggregate(x, logits, plan).shape
    torch.Size([2, 4, 3])
    """
    x = check_float(x, "x")
    check_ndim(x, 3, "x", "B, N, D")
    check_float(logits, "logits")
    check_ndim(logits, 3, "logits", "B, N, K")
    if logits.shape[:2] != x.shape[:2]:
        raise ValueError(
            f"`logits` must have shape (B, N, K) with (B, N) = {tuple(x.shape[:2])}; "
            f"got {tuple(logits.shape)}."
        )
    check_float(plan, "plan")
    for name, t in (("logits", logits), ("plan", plan)):
        if t.dtype != x.dtype:
            raise TypeError(f"`{name}` must have the dtype of `x` ({x.dtype}); got {t.dtype}.")
    if plan.shape != logits.shape:
        raise ValueError(
            f"`plan` must have the shape of `logits` {tuple(logits.shape)}; "
            f"got {tuple(plan.shape)}."
        )
    check_same_device([("x", x), ("logits", logits), ("plan", plan)])
    m = check_mask(mask, tuple(x.shape[:2]), "mask", x)
    check_finite(x, "x", m)
    check_finite(logits, "logits", m)
    check_finite(plan, "plan", m)
    check_nonnegative_values(plan, "plan", m)
    beta = check_in_range(mix, "mix", 0.0, 1.0)
    normalize = check_bool(normalize, "normalize")
    return _aggregate(x, logits, plan, m, beta, normalize)


def _aggregate(x: Tensor, logits: Tensor, plan: Tensor, m: Tensor, beta: float, normalize: bool):
    valid = m.unsqueeze(-1)  # (B, N, 1)
    soft = torch.softmax(logits.masked_fill(~valid, 0.0), dim=-1)  # (B, N, K)
    w = (1.0 - beta) * soft + beta * plan.masked_fill(~valid, 0.0)  # (B, N, K)
    s = w.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(w, 1.0 / w.shape[-1])
    w = torch.where(s > 0, w / s.clamp_min(torch.finfo(w.dtype).tiny), uniform)
    w = w * valid
    xs = x.masked_fill(~valid, 0.0)
    tokens = torch.einsum("bnk,bnd->bkd", w, xs)  # (B, K, D)
    if normalize:
        tokens = tokens / w.sum(dim=1).unsqueeze(-1).clamp_min(torch.finfo(w.dtype).eps)
    return tokens


def _token_views(
    mask: Tensor, keep: float, swap: float, min_keep: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Two token-dropout views ``(b, N)`` of bags with valid tokens ``mask (b, N)``.

    View 1 keeps ``k = min(n, max(min_keep, round(keep n)))`` random valid tokens; view 2 swaps
    ``s = min(round(swap k), n - k)`` of them for held-out ones (both views have ``k`` tokens).
    """
    b, n_max = mask.shape
    scores = torch.rand(b, n_max, generator=generator).to(mask.device)
    scores = scores.masked_fill(~mask, 2.0)  # padding ranks last
    rank = scores.argsort(dim=-1).argsort(dim=-1)  # (b, N)
    n = mask.sum(-1)
    k = torch.minimum(n, torch.round(keep * n.double()).long().clamp_min(min_keep))
    s = torch.minimum(torch.round(swap * k.double()).long(), n - k)
    k, s = k.unsqueeze(-1), s.unsqueeze(-1)
    v1 = rank < k
    v2 = (rank < k - s) | ((rank >= k) & (rank < k + s))
    return v1, v2


class PrototypeUOTAlign(nn.Module):
    r"""Together stage of TTA: align every modality to one shared prototype bank with partial UOT.

    For each modality :math:`m` (tokens :math:`x_i \in \mathbb{R}^D`, padded with a mask):

    1. **Logits.** :math:`\ell_{ik} = \cos(W_m x_i, p_k) / \tau_s` with a per-modality
       projection :math:`W_m` (Linear D→D) and one shared bank :math:`P \in \mathbb{R}^{K\times D}`.
    2. **Transport.** Cost :math:`C_{ik} = -\log \mathrm{softmax}_k(\ell_{ik})`. With
       ``joint=True`` (TTA) the tokens of all modalities of a patient are concatenated into one
       problem; ``joint=False`` solves one problem per modality. The problem is TTA's partial
       semi-relaxed UOT:

       .. math:: \min_{Q \ge 0} \langle Q, C\rangle + \varepsilon \mathrm{KL}(Q \,|\, a b^\top)
                 + \lambda \mathrm{KL}(Q^\top 1 \,|\, \rho/K\, 1_K)
                 \quad \text{s.t. } Q 1 + s = a,\ 1^\top s = 1 - \rho,

       with :math:`a` uniform over the valid tokens (padding gets no mass), a zero-cost sink
       :math:`s` absorbing mass :math:`1-\rho`, :math:`\varepsilon` = ``reg``,
       :math:`\lambda` = ``reg_m`` (``math.inf``: balanced columns) and :math:`\rho` the
       transported mass (``mass``, or ``rho=`` per call). For :math:`\rho = 1` there is no sink.
       It is solved by :func:`minmaxfuse.ot.partial_uot` / :func:`minmaxfuse.ot.sinkhorn_uot`.
    3. **Prototype tokens.** :func:`prototype_aggregate` with the plan scaled to
       :math:`N Q` (``mix`` = :math:`\beta`).
    4. **Together loss.** :func:`~minmaxfuse.losses.soft_assignment_loss` of :math:`\ell`
       against :math:`NQ` (tokens with mass below 1e-6 dropped), averaged over valid tokens
       per patient and modality; then :math:`\sum_m w_m L_m` (``modality_weights``, default
       :math:`1/A`, i.e. TTA's 0.5 / 0.5), averaged over patients.

    Parameters
    ----------
    dim : int
        Token size ``D`` of every modality (apply per-modality encoders before).
    num_prototypes : int, default 32
        Number ``K`` of shared prototypes, the rows of the bank
        :math:`P \in \mathbb{R}^{K \times D}` (TTA: 32). Every modality gets ``K`` prototype
        tokens, so the fusion after this layer sees ``A * K`` tokens per patient.
    num_modalities : int, default 2
        Number ``A`` of modalities: ``forward`` expects exactly ``A`` token tensors, in a fixed
        order, and keeps one projection :math:`W_m` per modality.
    temperature : float, default 0.5
        :math:`\tau_s`.
    reg : float, default 0.1
        Entropic :math:`\varepsilon`.
    reg_m : float, default 1.0
        Marginal relaxation :math:`\lambda`, the KL weight on the prototype marginal
        (``math.inf``: hard).
    mass : float in (0, 1], default 1.0
        Default transported mass :math:`\rho` when ``forward`` gets no ``rho``.
    mix : float in [0, 1], default 0.5
        :math:`\beta`, weight of the transport plan in the aggregation weights.
    joint : bool, default True
        One problem over all modalities (TTA) or one per modality.
    plan_grad : {"detach", "implicit", "unroll"}, default "detach"
        ``"detach"`` (TTA): the cost is detached and the plan is a constant pseudo-label.
        ``"implicit"`` / ``"unroll"``: the plan is differentiable (solver implicit gradients or
        autograd through the iterations), so gradients also flow through the plan into the
        aggregation weights and the loss targets.
    aggregation : {"sum", "mean"}, default "sum"
        ``"sum"`` is TTA's weighted sum (token norms grow with bag size); ``"mean"`` divides by
        the total weight of each prototype.
    modality_weights : sequence of float, optional
        :math:`w_m \geq 0` per modality; default :math:`1/A` each.
    allow_missing : bool, default False
        Accept patients whose bag for a modality is entirely masked (see Notes); otherwise
        such a bag raises.
    missing : {"borrow", "learned"}, default "borrow"
        How a missing modality's prototype tokens are filled; ``"learned"`` requires
        ``allow_missing=True`` (a ValueError otherwise, since it would have no effect).
    max_iter : int, default 1000
        Solver iteration cap (TTA: 1000).
    tol : float, default 1e-6
        Solver tolerance.
    semantic : float, default 0.0
        Weight :math:`\lambda_1 \geq 0` of the SP²OT semantic term (TTA: 0.1); 0 turns it off
        (today's plain partial UOT). When positive the transport is solved by
        :func:`minmaxfuse.ot.semantic_uot` with :math:`S` the cosine similarity of the
        projected tokens :math:`W_m x_i` (concatenated over modalities when ``joint``). The
        gradient follows ``plan_grad``: with ``"detach"`` (TTA) the plan is a constant; with
        ``"implicit"`` / ``"unroll"`` gradients reach the costs and the projected tokens through
        the last inner solve only (its linearisation point held constant).
    semantic_max_iter : int, default 100
        Maximum number of majorisation-minimisation steps (TTA: 100).
    semantic_tol : float, default 1e-6
        Stop a patient's MM loop when its objective changes by less than this (TTA: 1e-6).
    heads : int, default 1
        Number ``H`` of assignment heads (TTA: 5). Head 0 uses ``projections``; heads
        ``1..H-1`` have their own per-modality projections (``head_projections``) onto the same
        bank. The ``primary`` head of each modality (a buffer, initially 0) drives the logits,
        the transport, the aggregation and the loss; the semantic term's similarity always uses
        head 0, as in TTA. Train the heads with :meth:`consistency_loss` and re-select the
        primary heads once per epoch with :meth:`update_primary`. With ``heads=1`` nothing is
        added to the module (state dicts are unchanged).

    Raises
    ------
    ValueError, TypeError
        On illegal hyper-parameters.

    Notes
    -----
    **Missing modalities** (``allow_missing=True``): the transport of a patient uses only the
    modalities it has. With ``missing="borrow"`` the absent modality's prototype tokens are the
    slot-wise mean of the patient's present modalities' tokens: since slot ``k`` refers to the
    same shared prototype in every modality, this is the other modalities' view of that
    prototype (use ``aggregation="mean"`` if the bag sizes differ a lot, as sums scale with
    them). With ``missing="learned"`` they are a learned per-modality default
    (a parameter ``(A, K, D)``). The Together term of a missing modality is 0 for that patient
    (``losses[n, m] = 0``); its plan and logits rows are all zero / masked. Pass ``present`` as
    ``mask=`` to :class:`~minmaxfuse.losses.DistinctContrastive` so that the Apart term skips
    it too.

    **Deviations from the authors' code** (github.com/Y-Research-SBU/TTA, commit f847140):

    * padding is masked properly: padded tokens get no marginal mass, logits 0 (never
      ``-inf``), no aggregation weight and no loss; TTA's ``-inf`` logits made a padded
      patient's OT NaN;
    * the SP²OT semantic term (an MM loop over a token-token similarity) is off by default
      (``semantic=0.0``): a plain log-domain UOT with the same marginals (the authors never
      measured that term's effect); ``semantic=0.1`` is TTA's setting. Each patient's MM loop
      stops on its own, where TTA stops the batch when all patients have converged;
    * one head by default (``heads=1``); ``heads=5`` with :meth:`consistency_loss` (weight
      0.01 per modality in TTA) and :meth:`update_primary` once per epoch gives TTA's multi-head
      variant, whose consistency loss sits at :math:`\log K` in the authors' logs. The views
      are drawn by :meth:`consistency_loss` itself, and the WSI term is not gated to every
      third batch (call it as often as wanted);
    * ``mass`` defaults to 1.0: TTA evaluates with :math:`\rho \approx 0.106` because no step is
      passed at inference; pass ``rho=mass_ramp(0.0)`` to reproduce that.
    * precision: the projections follow autocast; the cosine logits, the cost, the plan, the
      aggregation and the loss are computed in at least float32 with autocast off (TTA solves in
      float64; the solver works in at least float32). ``prototype_tokens`` come back in the
      dtype of ``tokens``, ``logits``/``plans``/``loss`` in that working precision.
    * Use :func:`~minmaxfuse.losses.mass_ramp` (or :class:`~minmaxfuse.losses.SigmoidRamp`
      in a :class:`~minmaxfuse.losses.MinMaxObjective` curriculum) for TTA's ρ schedule.

    References
    ----------
    .. [1] Liu, Ren, Zhang, Lin, You (2025). Together, Then Apart. arXiv:2511.18089.
    .. [2] Zhang, C., Ren, H., He, X. (2024). P²OT: progressive partial optimal transport for deep
       imbalanced clustering. ICLR.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.layers import PrototypeUOTAlign
    >>> layer = PrototypeUOTAlign(8, num_prototypes=4)
    >>> x_h, x_g = torch.randn(2, 10, 8), torch.randn(2, 5, 8)
    >>> mask_h = torch.ones(2, 10, dtype=torch.bool)
    >>> mask_h[1, 7:] = False
    >>> out = layer([x_h, x_g], [mask_h, None], rho=0.5)
    >>> [t.shape for t in out.prototype_tokens], out.loss.shape
    ([torch.Size([2, 4, 8]), torch.Size([2, 4, 8])], torch.Size([]))
    """

    def __init__(
        self,
        dim: int,
        num_prototypes: int = 32,
        *,
        num_modalities: int = 2,
        temperature: float = 0.5,
        reg: float = 0.1,
        reg_m: float = 1.0,
        mass: float = 1.0,
        mix: float = 0.5,
        joint: bool = True,
        plan_grad: PlanGrad = "detach",
        aggregation: Literal["sum", "mean"] = "sum",
        modality_weights: Sequence[float] | None = None,
        allow_missing: bool = False,
        missing: Literal["borrow", "learned"] = "borrow",
        max_iter: int = 1000,
        tol: float = 1e-6,
        semantic: float = 0.0,
        semantic_max_iter: int = 100,
        semantic_tol: float = 1e-6,
        heads: int = 1,
    ) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim", minimum=1)
        self.num_prototypes = check_int(num_prototypes, "num_prototypes", minimum=1)
        self.num_modalities = check_int(num_modalities, "num_modalities", minimum=1)
        self.temperature = check_positive(temperature, "temperature")
        self.reg = check_positive(reg, "reg")
        self.reg_m = check_positive(reg_m, "reg_m", allow_inf=True)
        self.mass = check_in_range(mass, "mass", 0.0, 1.0, low_open=True)
        self.mix = check_in_range(mix, "mix", 0.0, 1.0)
        self.joint = check_bool(joint, "joint")
        self.allow_missing = check_bool(allow_missing, "allow_missing")
        self.plan_grad = check_choice(plan_grad, _PLAN_GRADS, "plan_grad")
        self.aggregation = check_choice(aggregation, ("sum", "mean"), "aggregation")
        self.missing = check_choice(missing, ("borrow", "learned"), "missing")
        if self.missing != "borrow" and not self.allow_missing:
            raise ValueError(
                f"`missing` applies only with allow_missing=True; got missing={missing!r} with "
                "allow_missing=False. Pass allow_missing=True to fill missing modalities."
            )
        self.max_iter = check_int(max_iter, "max_iter", minimum=1)
        self.tol = check_positive(tol, "tol")
        self.semantic = check_nonnegative(semantic, "semantic")
        if not math.isfinite(self.semantic):
            raise ValueError(f"`semantic` must be finite; got {semantic}.")
        self.semantic_max_iter = check_int(semantic_max_iter, "semantic_max_iter", minimum=1)
        self.semantic_tol = check_nonnegative(semantic_tol, "semantic_tol")
        a = self.num_modalities
        if modality_weights is None:
            weights = [1.0 / a] * a
        else:
            if isinstance(modality_weights, (str, bytes)) or not isinstance(
                modality_weights, (Sequence, Tensor)
            ):
                raise TypeError(
                    f"`modality_weights` must be a sequence of {a} numbers; got "
                    f"{type(modality_weights).__name__}."
                )
            if len(modality_weights) != a:
                raise ValueError(
                    f"`modality_weights` must have one entry per modality (A = {a}); "
                    f"got {len(modality_weights)}."
                )
            weights = [as_real(w, f"modality_weights[{m}]") for m, w in enumerate(modality_weights)]
            if any(not math.isfinite(w) or w < 0 for w in weights):
                raise ValueError(f"`modality_weights` must be finite and >= 0; got {weights}.")
        self.modality_weights = tuple(weights)
        self.prototypes = nn.Parameter(torch.randn(self.num_prototypes, self.dim))
        self.projections = nn.ModuleList(nn.Linear(self.dim, self.dim) for _ in range(a))
        if self.missing == "learned":
            self.missing_tokens = nn.Parameter(0.02 * torch.randn(a, self.num_prototypes, self.dim))
        else:
            self.register_parameter("missing_tokens", None)
        # created last, so that heads=1 draws the same initial parameters as before
        self.heads = check_int(heads, "heads", minimum=1)
        if self.heads > 1:
            self.head_projections = nn.ModuleList(
                nn.ModuleList(nn.Linear(self.dim, self.dim) for _ in range(self.heads - 1))
                for _ in range(a)
            )
        else:
            self.head_projections = None
        # (A,) primary head per modality; saved in the state dict only when heads > 1
        self.register_buffer("primary", torch.zeros(a, dtype=torch.long), persistent=self.heads > 1)

    # ------------------------------------------------------------------------------ helpers
    def _validate(
        self, tokens: Sequence[Tensor], masks: Sequence[Tensor | None] | None
    ) -> list[Tensor]:
        a = self.num_modalities
        if isinstance(tokens, Tensor) or not isinstance(tokens, Sequence):
            raise TypeError(
                f"`tokens` must be a sequence of {a} (B, N_m, D) tensors; "
                f"got {type(tokens).__name__}."
            )
        if len(tokens) != a:
            raise ValueError(
                f"`tokens` must hold one tensor per modality (num_modalities = {a}); "
                f"got {len(tokens)}."
            )
        if masks is None:
            masks = [None] * a
        elif isinstance(masks, Tensor) or not isinstance(masks, Sequence) or len(masks) != a:
            got = len(masks) if isinstance(masks, Sequence) else type(masks).__name__
            raise ValueError(f"`masks` must be a sequence of {a} (B, N_m) bool tensors; got {got}.")
        out = []
        b = None
        for m, (x, mk) in enumerate(zip(tokens, masks)):
            name = f"tokens[{m}]"
            check_float(x, name)
            check_ndim(x, 3, name, "B, N, D")
            if x.shape[-1] != self.dim:
                raise ValueError(
                    f"`{name}` must have D = {self.dim} features; got {tuple(x.shape)}."
                )
            if b is not None and x.shape[0] != b:
                raise ValueError(
                    f"`{name}` must have B = {b} like `tokens[0]`; got {tuple(x.shape)}."
                )
            b = x.shape[0]
            if x.shape[1] == 0:
                raise ValueError(f"`{name}` must have N >= 1 token slots; got {tuple(x.shape)}.")
            check_params_dtype(x, name, self.prototypes, "PrototypeUOTAlign")
            check_has_data(x, name, "the transport solver reads values")
            check_same_device([("tokens[0]", tokens[0]), (name, x)])
            mk = check_mask(mk, tuple(x.shape[:2]), f"masks[{m}]", x)
            if not self.allow_missing:
                try:
                    check_nonempty_bags(mk, name)
                except ValueError as err:
                    raise ValueError(
                        f"{err} Or pass allow_missing=True to PrototypeUOTAlign for patients "
                        "without this modality."
                    ) from None
            check_finite(x, name, mk)
            out.append(mk)
        if self.allow_missing and reads_values(*out):
            anyp = torch.stack([mk.any(dim=-1) for mk in out], dim=1).any(dim=1)
            if not bool(anyp.all()):
                idx = (~anyp).nonzero().flatten()[:5].tolist()
                raise ValueError(
                    "`masks` must leave at least one modality with a valid token per patient; "
                    f"got patients without any at batch indices {idx}."
                )
        return out

    def _solve(self, cost: Tensor, mask: Tensor, rho: float, feats: Tensor | None = None) -> Tensor:
        """Return N·Q (B, N, K) for one batch of problems (mask has >= 1 valid row per bag)."""
        grad = "detach" if self.plan_grad == "detach" else self.plan_grad
        kw = dict(reg=self.reg, mask=mask, max_iter=self.max_iter, tol=self.tol, grad=grad)
        n_valid = mask.sum(dim=-1, keepdim=True).to(cost.dtype)  # (B, 1)
        if self.semantic > 0.0:
            assert feats is not None
            r = torch.full(cost.shape[:1], rho, dtype=torch.float64, device=cost.device)
            inner = dict(reg=self.reg, reg_m_cols=self.reg_m, max_iter=self.max_iter, tol=self.tol)
            res = _semantic_uot(
                cost,
                feats,
                r,
                self.semantic,
                mask,
                self.semantic_max_iter,
                self.semantic_tol,
                grad,
                inner,
            )
            return res.plan * n_valid.unsqueeze(-1)
        if rho >= 1.0:
            a = mask.to(cost.dtype) / n_valid  # (B, N)
            k = cost.shape[-1]
            b = torch.full(cost.shape[::2], 1.0 / k, dtype=cost.dtype, device=cost.device)
            res = sinkhorn_uot(cost, a, b, reg_m=(math.inf, self.reg_m), **kw)
        else:
            res = partial_uot(cost, rho, reg_m_cols=self.reg_m, **kw)
        return res.plan * n_valid.unsqueeze(-1)  # (B, N, K)

    def _primary_list(self) -> list[int]:
        return self.primary.tolist() if self.heads > 1 else [0] * self.num_modalities

    def _projection(self, m: int, h: int) -> nn.Module:
        if h == 0:
            return self.projections[m]
        assert self.head_projections is not None
        return self.head_projections[m][h - 1]

    # ------------------------------------------------------------------------- multi-head
    def consistency_loss(
        self,
        tokens: Sequence[Tensor],
        masks: Sequence[Tensor | None] | None = None,
        *,
        rho: float | None = None,
        semantic: float = 0.0,
        max_bags: int = 4,
        keep: float = 0.8,
        swap: float = 0.2,
        min_keep: int = 4,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""Multi-head Sinkhorn consistency of every modality and head (TTA's SK loss).

        For each modality, up to ``max_bags`` random patients that have it are drawn. View 1
        keeps a random ``keep`` fraction of each bag's valid tokens (at least ``min_keep``, at
        most all); view 2 is view 1 with a ``swap`` fraction of its tokens replaced by held-out
        tokens (as many as there are). For every head the bag logits are the token means of the
        cosine logits of each view, and :func:`~minmaxfuse.losses.sinkhorn_consistency_loss`
        compares the views by swapped prediction (bag features for the semantic term: the token
        means of the normalised projected tokens).

        Parameters
        ----------
        tokens, masks
            As :meth:`forward`.
        rho : float in (0, 1], optional
            Transported mass of the pseudo-label problems (default ``mass``).
        semantic : float, default 0.0
            Semantic weight of the pseudo-label problems (TTA: ``(1 - rho) * 0.1``).
        max_bags : int, default 4
            Patients per modality (TTA: 4).
        keep, swap : float in (0, 1] and [0, 1], default 0.8 and 0.2
            Token dropout of the views (TTA: 0.8, 0.2).
        min_keep : int, default 4
            Smallest view of a bag that has that many tokens (TTA: 4 for pathways).
        generator : torch.Generator, optional
            CPU generator for the patient and token draws.

        Returns
        -------
        Tensor, shape (A, H)
            Per modality and head; 0 for a modality no patient of the batch has. TTA adds
            ``0.01`` times each modality's head mean to the training loss and keeps an epoch
            average for :meth:`update_primary`.

        Raises
        ------
        ValueError, TypeError
            As :meth:`forward`, or on an illegal ``rho``, ``semantic``, ``max_bags``, ``keep``,
            ``swap`` or ``min_keep``.
        """
        mks = self._validate(tokens, masks)
        r = self.mass if rho is None else check_in_range(rho, "rho", 0.0, 1.0, low_open=True)
        lam = check_nonnegative(semantic, "semantic")
        max_bags = check_int(max_bags, "max_bags", minimum=1)
        keep = check_in_range(keep, "keep", 0.0, 1.0, low_open=True)
        swap = check_in_range(swap, "swap", 0.0, 1.0)
        min_keep = check_int(min_keep, "min_keep", minimum=1)
        work = torch.promote_types(tokens[0].dtype, torch.float32)
        out = []
        for m, (x, mk) in enumerate(zip(tokens, mks)):
            idx = mk.any(dim=-1).nonzero().flatten()
            if idx.numel() == 0:
                out.append((self.prototypes.sum() * 0.0).to(work).expand(self.heads))
                continue
            pick = torch.randperm(idx.numel(), generator=generator)[:max_bags].to(idx.device)
            sel = idx.index_select(0, pick)
            xb = x.index_select(0, sel)
            mb = mk.index_select(0, sel)
            xb = xb.masked_fill(~mb.unsqueeze(-1), 0.0)
            views = _token_views(mb, keep, swap, min_keep, generator)  # 2 x (b, N)
            hs = [self._projection(m, h)(xb) for h in range(self.heads)]
            with autocast_off(xb):
                p_hat = l2_normalize(self.prototypes.to(work))
                lgs, fes = [], []
                for vm in views:
                    w = vm.unsqueeze(-1).to(work) / vm.sum(-1, keepdim=True).unsqueeze(-1).to(work)
                    lg_h, fe_h = [], []
                    for h in hs:
                        hn = l2_normalize(h.to(work))  # (b, N, D)
                        lg = torch.einsum("bnd,kd->bnk", hn, p_hat) / self.temperature
                        lg_h.append((lg * w).sum(1))  # (b, K)
                        fe_h.append((hn * w).sum(1))  # (b, D)
                    lgs.append(torch.stack(lg_h))
                    fes.append(torch.stack(fe_h))
                out.append(
                    sinkhorn_consistency_loss(
                        torch.stack(lgs),
                        features=torch.stack(fes) if lam > 0 else None,
                        rho=r,
                        semantic=lam,
                        reg=self.reg,
                        reg_m_cols=self.reg_m,
                        reduction="none",
                    )
                )  # (H,)
        return torch.stack(out)

    def update_primary(self, losses: Tensor) -> Tensor:
        """Make the head with the lowest loss the primary head of each modality.

        Parameters
        ----------
        losses : Tensor, shape (A, H)
            E.g. the epoch mean of :meth:`consistency_loss` (TTA re-selects once per epoch).

        Returns
        -------
        Tensor, shape (A,), int64
            The new primary heads (also stored in the ``primary`` buffer).

        Raises
        ------
        ValueError, TypeError
            If ``losses`` is not a floating-point ``(A, H)`` tensor or holds NaN.
        """
        check_float(losses, "losses")
        check_ndim(losses, 2, "losses", "A, H")
        if tuple(losses.shape) != (self.num_modalities, self.heads):
            raise ValueError(
                f"`losses` must have shape (A, H) = {(self.num_modalities, self.heads)}; "
                f"got {tuple(losses.shape)}."
            )
        if bool(torch.isnan(losses).any()):
            raise ValueError("`losses` must not hold NaN; got NaN.")
        with torch.no_grad():
            self.primary.copy_(losses.detach().argmin(dim=-1).to(self.primary.device))
        return self.primary.clone()

    def _fill_missing(self, protos: list[Tensor], present: Tensor) -> list[Tensor]:
        if bool(present.all()):
            return protos
        stack = torch.stack(protos, dim=1)  # (B, A, K, D)
        p = present.to(stack.dtype)[..., None, None]  # (B, A, 1, 1)
        if self.missing == "borrow":
            fill = (stack * p).sum(dim=1) / p.sum(dim=1).clamp_min(1.0)  # (B, K, D)
            fills = [fill] * len(protos)
        else:
            assert self.missing_tokens is not None
            fills = [
                self.missing_tokens[m].to(stack.dtype).expand_as(t) for m, t in enumerate(protos)
            ]
        return [
            torch.where(present[:, m, None, None], t, f)
            for m, (t, f) in enumerate(zip(protos, fills))
        ]

    # ------------------------------------------------------------------------------ forward
    def forward(
        self,
        tokens: Sequence[Tensor],
        masks: Sequence[Tensor | None] | None = None,
        *,
        rho: float | None = None,
    ) -> AlignOutput:
        """Align the modalities' tokens to the shared prototypes; see the class docstring.

        Parameters
        ----------
        tokens : sequence of Tensor, each shape (B, N_m, D)
            One padded bag tensor per modality.
        masks : sequence of (Tensor of bool, shape (B, N_m), or None), optional
            ``True`` = valid token; ``None`` (whole or per entry) = all valid.
        rho : float in (0, 1], optional
            Transported mass for this call (overrides ``mass``).

        Returns
        -------
        AlignOutput
            A named tuple with

            * ``prototype_tokens``: list of ``A`` tensors, each ``(B, K, D)``;
            * ``plans``: list of ``A`` tensors, each ``(B, N_m, K)``, the plan scaled by the
              number of valid tokens (rows sum to the mass sent to real prototypes, in [0, 1]);
            * ``logits``: list of ``A`` tensors, each ``(B, N_m, K)``;
            * ``loss``: shape ``()``, the weighted Together loss;
            * ``losses``: shape ``(B, A)``, per patient and modality;
            * ``present``: bool, shape ``(B, A)``;
            * ``rho``: float, the transported mass used.

            See :class:`AlignOutput`.

        Raises
        ------
        ValueError, TypeError
            On a wrong modality count, ranks, ``B`` or ``D`` mismatch, non-bool masks, empty bags
            (unless ``allow_missing``), NaN/Inf in valid tokens, or ``rho`` outside (0, 1].
        """
        mks = self._validate(tokens, masks)
        r = self.mass if rho is None else check_in_range(rho, "rho", 0.0, 1.0, low_open=True)
        present = torch.stack([mk.any(dim=-1) for mk in mks], dim=1)  # (B, A)
        xs = [x.masked_fill(~mk.unsqueeze(-1), 0.0) for x, mk in zip(tokens, mks)]
        in_dtype = xs[0].dtype
        # projections may run under autocast; everything after them (cosine logits, the OT
        # cost, aggregation and the loss) runs in at least float32 with autocast off
        prim = self._primary_list()
        hs = [self._projection(m, h)(x) for m, (x, h) in enumerate(zip(xs, prim))]  # A x (B, N, D)
        # the semantic similarity uses head 0 (TTA); other heads' features otherwise
        hs0 = None
        if self.semantic > 0 and any(prim):
            hs0 = [
                h if p == 0 else self.projections[m](x)
                for m, (x, h, p) in enumerate(zip(xs, hs, prim))
            ]
        work = torch.promote_types(in_dtype, torch.float32)
        with autocast_off(xs[0]):
            return self._forward_body(xs, hs, mks, present, r, work, in_dtype, hs0)

    def _forward_body(self, xs, hs, mks, present, r, work, in_dtype, hs0=None) -> AlignOutput:
        xs = [x.to(work) for x in xs]
        protos = self.prototypes.to(work)
        # scale-safe normalisation: exact cosines for any finite norm (no overflow of the
        # squared norm, no eps clamp on small vectors)
        p_hat = l2_normalize(protos)
        logits, feats = [], []
        for m, h in enumerate(hs):
            h = l2_normalize(h.to(work))
            feats.append(h if hs0 is None else l2_normalize(hs0[m].to(work)))
            lg = torch.einsum("bnd,kd->bnk", h, p_hat) / self.temperature  # (B, N, K)
            logits.append(lg.masked_fill(~mks[m].unsqueeze(-1), 0.0))
        costs = [-torch.log_softmax(lg, dim=-1) for lg in logits]
        if self.plan_grad == "detach":
            costs = [c.detach() for c in costs]
            feats = [f.detach() for f in feats]

        if self.joint:
            sizes = [c.shape[1] for c in costs]
            nq = self._solve(
                torch.cat(costs, dim=1), torch.cat(mks, dim=1), r, torch.cat(feats, dim=1)
            )
            plans = list(torch.split(nq, sizes, dim=1))
        else:
            plans = []
            for c, mk, fe in zip(costs, mks, feats):
                pres = mk.any(dim=-1, keepdim=True)  # (B, 1)
                # patients missing this modality get a dummy one-token problem, discarded
                first = torch.zeros_like(mk)
                first[:, 0] = True
                safe = torch.where(pres, mk, first)
                plans.append(self._solve(c, safe, r, fe) * pres.unsqueeze(-1))
        proto_tokens = [
            _aggregate(x, lg, q, mk, self.mix, self.aggregation == "mean")
            for x, lg, q, mk in zip(xs, logits, plans, mks)
        ]
        if self.allow_missing:
            proto_tokens = self._fill_missing(proto_tokens, present)
        proto_tokens = [t.to(in_dtype) for t in proto_tokens]
        losses = torch.stack(
            [
                soft_assignment_loss(lg, q, mask=mk, reduction="none")
                for lg, q, mk in zip(logits, plans, mks)
            ],
            dim=1,
        )  # (B, A)
        w = torch.tensor(self.modality_weights, dtype=losses.dtype, device=losses.device)
        per_patient = (losses * w).sum(dim=1)  # (B,)
        # an empty batch (B = 0) gives a graph-connected zero, like the losses
        loss = per_patient.mean() if per_patient.numel() else per_patient.sum()
        return AlignOutput(proto_tokens, plans, logits, loss, losses, present, r)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_prototypes={self.num_prototypes}, "
            f"num_modalities={self.num_modalities}, temperature={self.temperature}, "
            f"reg={self.reg}, reg_m={self.reg_m}, mass={self.mass}, mix={self.mix}, "
            f"joint={self.joint}, plan_grad={self.plan_grad!r}, aggregation={self.aggregation!r}"
            + (f", semantic={self.semantic}" if self.semantic > 0 else "")
            + (f", heads={self.heads}" if self.heads > 1 else "")
        )
