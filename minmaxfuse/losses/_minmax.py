"""Combine task, Together and Apart terms into one scalar with signs, weights and schedules."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from minmaxfuse._checks import (
    as_int,
    check_choice,
    check_finite,
    check_same_device,
    check_tensor,
    reads_values,
)
from minmaxfuse.losses._schedules import Schedule, check_schedule

Mode = Literal["min", "max"]


class Term(NamedTuple):
    """Declaration of one term of a :class:`MinMaxObjective`.

    Attributes
    ----------
    weight : float or Schedule, default 1.0
        Non-negative multiplier, or a schedule of the global step.
    mode : {"min", "max"}, default "min"
        ``"min"``: the term is minimised (added with ``+weight``); ``"max"``: it is maximised
        (added with ``-weight``).
    """

    weight: float | Schedule = 1.0
    mode: Mode = "min"


class MinMaxComponents(NamedTuple):
    r"""Every term of one evaluation of a :class:`MinMaxObjective` (for logging).

    Attributes
    ----------
    total : Tensor, shape ()
        :math:`\sum_t s_t w_t L_t` over the given terms.
    raw : dict of str to Tensor
        The values passed in, by term name (declaration order).
    weighted : dict of str to Tensor
        Their signed, weighted contributions :math:`s_t w_t L_t` (they sum to ``total``).
    weights : dict of str to float
        The current (scheduled, unsigned) weights :math:`w_t`.
    step : int
        The global step these weights belong to.
    """

    total: Tensor
    raw: dict[str, Tensor]
    weighted: dict[str, Tensor]
    weights: dict[str, float]
    step: int


class MinMaxObjective(nn.Module):
    r"""Named loss terms with min/max signs, weights and warm-up schedules; one scalar out.

    .. math:: \mathcal{L}(s) = \sum_{t \in \text{min}} w_t(s)\, L_t
              - \sum_{t \in \text{max}} w_t(s)\, D_t,

    where :math:`s` is the global step advanced by :meth:`step`. The objective never calls
    ``backward`` and never steps an optimiser.

    Parameters
    ----------
    terms : mapping of str to float, Schedule or Term
        The terms, in the order they are reported. A number or schedule means a ``"min"`` term
        with that weight; use :class:`Term` (``Term(0.1, "max")``) for a maximised one.
    curricula : mapping of str to Schedule or float, optional
        Scheduled scalars that are not loss weights (e.g. ``{"rho": SigmoidRamp(steps=...)}``,
        the transported mass passed to :class:`~minmaxfuse.PrototypeUOTAlign` as ``rho=``);
        read them with :meth:`current`.

    Raises
    ------
    ValueError, TypeError
        On an empty ``terms``, a bad mode, a weight that is negative at some step (ramps are
        checked at both ends), ``curricula`` that is not a mapping, or a name used twice.

    Notes
    -----
    **How the paper's min-max maps onto this** (read from the authors' released code,
    github.com/Y-Research-SBU/TTA). TTA speaks of
    *minimising* the cross-modal discrepancy (Together) and *maximising* representational
    diversity (Apart), but the released code minimises one scalar with AdamW,

    .. math:: L = L_\text{cox} + 0.5 L_A + 0.5 L_T^h + 0.5 L_T^g,

    where the Apart term :math:`L_A` is a contrastive loss (minimising it maximises the
    separation of the modalities); there is no alternation and no adversary. That is
    ``MinMaxObjective({"task": 1, "together": 1, "apart": 0.5})`` with
    :class:`~minmaxfuse.PrototypeUOTAlign`'s loss (whose per-modality weights default to
    :math:`1/A = 0.5`) and :class:`~minmaxfuse.DistinctContrastive`. A diversity *measure*
    :math:`D` (bigger is better, e.g. a uniformity gain) is declared with ``mode="max"`` and
    enters as :math:`-w D`, the paper's form :math:`\min_\theta L_\text{surv} + \lambda_T
    L_T - \lambda_A D_A`. A true two-player game (a discriminator that maximises what the
    encoder minimises) needs gradient reversal or a second optimiser; see
    :class:`~minmaxfuse.layers.GradReverse`.

    State: only the global step is state (:meth:`state_dict` stores it as extra state);
    weights and schedules are configuration and are rebuilt by the constructor.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.losses import Linear, MinMaxObjective, Term
    >>> obj = MinMaxObjective({"task": 1.0, "together": Linear(0.0, 0.5, steps=10),
    ...                        "diversity": Term(0.1, "max")})
    >>> obj(task=torch.tensor(2.0), together=torch.tensor(1.0), diversity=torch.tensor(3.0))
    tensor(1.7000)
    >>> for _ in range(10):
    ...     _ = obj.step()
    >>> obj.forward_components(task=torch.tensor(2.0), together=torch.tensor(1.0),
    ...                        diversity=torch.tensor(3.0)).weighted["together"]
    tensor(0.5000)
    """

    def __init__(
        self,
        terms: Mapping[str, float | Schedule | Term],
        *,
        curricula: Mapping[str, Schedule | float] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(terms, Mapping) or len(terms) == 0:
            raise ValueError(
                f"`terms` must be a non-empty mapping of name to weight; got {terms!r}."
            )
        self._schedules: dict[str, Schedule] = {}
        self._modes: dict[str, Mode] = {}
        for name, spec in terms.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"`terms` names must be identifiers; got {name!r}.")
            term = spec if isinstance(spec, Term) else Term(spec)  # type: ignore[arg-type]
            self._modes[name] = check_choice(term.mode, ("min", "max"), f"terms[{name!r}].mode")
            sched = check_schedule(term.weight, f"terms[{name!r}].weight")
            self._schedules[name] = sched
            low = sched.bounds()[0] if sched.bounds() is not None else sched(0)
            if low < 0:
                raise ValueError(
                    f"`terms[{name!r}].weight` must be >= 0 at every step; got a minimum of {low}."
                )
        self._curricula: dict[str, Schedule] = {}
        if curricula is not None and not isinstance(curricula, Mapping):
            raise TypeError(
                "`curricula` must be a mapping of name to Schedule or number; got "
                f"{type(curricula).__name__}."
            )
        for name, spec in (curricula or {}).items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"`curricula` names must be identifiers; got {name!r}.")
            if name in self._schedules:
                raise ValueError(f"`curricula` name {name!r} is already a term.")
            self._curricula[name] = check_schedule(spec, f"curricula[{name!r}]")
        self._step = 0

    # ----------------------------------------------------------------------------- schedule
    @property
    def global_step(self) -> int:
        """The number of :meth:`step` calls so far (restored by :meth:`load_state_dict`)."""
        return self._step

    @property
    def term_names(self) -> tuple[str, ...]:
        """Names of the terms, in declaration order."""
        return tuple(self._schedules)

    def step(self) -> int:
        """Advance every schedule by one step; return the new global step."""
        self._step += 1
        return self._step

    def weight(self, name: str) -> float:
        """Current (unsigned) weight of term ``name``."""
        if name not in self._schedules:
            raise KeyError(f"`name` must be one of {list(self._schedules)}; got {name!r}.")
        w = self._schedules[name](self._step)
        if not (math.isfinite(w) and w >= 0):  # a custom schedule that left [0, inf)
            raise ValueError(
                f"`terms[{name!r}].weight` must be finite and >= 0; got {w} at step {self._step}."
            )
        return w

    def sign(self, name: str) -> float:
        """+1 for a minimised term, -1 for a maximised one."""
        self.weight(name)
        return 1.0 if self._modes[name] == "min" else -1.0

    def current(self, name: str) -> float:
        """Current value of a curriculum (or of a term's weight)."""
        if name in self._curricula:
            return self._curricula[name](self._step)
        if name in self._schedules:
            return self.weight(name)
        known = list(self._curricula) + list(self._schedules)
        raise KeyError(f"`name` must be one of {known}; got {name!r}.")

    def get_extra_state(self) -> dict[str, Any]:
        """State for :meth:`state_dict`: the global step."""
        return {"step": self._step}

    def set_extra_state(self, state: Any) -> None:
        """Restore the global step saved by :meth:`get_extra_state`."""
        try:
            step = as_int(state["step"], "state['step']") if isinstance(state, Mapping) else None
        except (KeyError, TypeError):
            step = None
        if step is None or step < 0:
            raise ValueError(f"`state` must be a mapping with an int 'step' >= 0; got {state!r}.")
        self._step = step

    # ------------------------------------------------------------------------------ compute
    def _collect(self, values: Mapping[str, Tensor | None] | None, kw: dict[str, Any]) -> dict:
        given: dict[str, Any] = dict(values or {})
        dup = set(given) & set(kw)
        if dup:
            raise ValueError(
                f"`terms` must not be given twice (mapping and keyword); got {sorted(dup)}."
            )
        given.update(kw)
        unknown = [k for k in given if k not in self._schedules]
        if unknown:
            raise ValueError(
                f"`terms` must be among {list(self._schedules)}; got unknown {unknown}."
            )
        missing = [k for k in self._schedules if k not in given]
        if missing:
            raise ValueError(
                f"`terms` must all be given (None to skip one); got missing {missing}."
            )
        out = {}
        for k in self._schedules:
            v = given[k]
            if v is None:
                continue
            check_tensor(v, k)
            if v.ndim != 0:
                raise ValueError(f"`{k}` must be a scalar tensor (shape ()); got {tuple(v.shape)}.")
            if not v.is_floating_point():
                raise TypeError(
                    f"`{k}` must be a real floating-point scalar tensor; got dtype {v.dtype}."
                )
            out[k] = v
        if not out:
            raise ValueError("`terms` must hold at least one tensor; got all None.")
        check_same_device(list(out.items()))
        for k, v in out.items():
            check_finite(v, k)  # a value check: a NaN/Inf loss term is named, not summed
        return out

    def forward_components(
        self, values: Mapping[str, Tensor | None] | None = None, /, **terms: Tensor | None
    ) -> MinMaxComponents:
        """Evaluate every term; see :meth:`forward` for the arguments.

        Returns
        -------
        MinMaxComponents
            ``total``, ``raw``, ``weighted``, ``weights``, ``step``.
        """
        raw = self._collect(values, terms)
        weights = {k: self.weight(k) for k in raw}
        weighted = {k: self.sign(k) * weights[k] * v for k, v in raw.items()}
        total = sum(weighted.values())
        if reads_values(total) and not bool(torch.isfinite(total)):  # weight * term overflowed
            raise ValueError(
                f"`terms` must have a finite weighted sum; got {float(total)} with weights "
                f"{weights} at step {self._step}."
            )
        return MinMaxComponents(total, raw, weighted, weights, self._step)  # type: ignore[arg-type]

    def forward(
        self, values: Mapping[str, Tensor | None] | None = None, /, **terms: Tensor | None
    ) -> Tensor:
        """Weighted, signed sum of the terms at the current step.

        Parameters
        ----------
        values : mapping of str to Tensor, optional
            Term values by name (positional-only), and/or
        **terms : Tensor or None
            Term values as keywords. Every declared term must be given; ``None`` skips it
            for this call (e.g. a term that needs a modality absent from the batch).

        Returns
        -------
        Tensor, shape ()
            The total to minimise.

        Raises
        ------
        ValueError
            On unknown, missing or non-scalar terms, terms on different devices, or a NaN/Inf
            term (a value check).
        TypeError
            On a term that is not a floating-point tensor (bool, integer or complex). Terms on
            the ``meta`` device are accepted (the total is then a meta tensor).
        """
        return self.forward_components(values, **terms).total

    def extra_repr(self) -> str:
        parts = [f"{k}: {self._modes[k]} x {s!r}" for k, s in self._schedules.items()]
        parts += [f"{k}: curriculum {s!r}" for k, s in self._curricula.items()]
        return ", ".join(parts) + f", step={self._step}"
