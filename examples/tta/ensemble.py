"""Cross-validation ensembles inside one outer training fold.

``--ensemble N`` trains N copies of a deep model per outer fold. With N > 1 the outer training
fold is cut into ``max(N, round(1 / val_frac))`` inner folds, stratified by event; member ``j``
trains on all but inner fold ``j`` and early-stops / selects its checkpoint on inner fold ``j``.
Every training patient is thus used for fitting by most members and for validation by one, and
the test fold is never seen. Members differ in their data, their seed and their dropout draws.

Their risks are combined on a common scale: each member's risk is standardised with the mean and
standard deviation of its risks on the outer training fold (a Cox log-risk is identified only up
to a constant, and two members need not share a scale), then the standardised risks are averaged.
For the discrete-time model the survival curves are averaged as well.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .data import Fold, make_folds
from .errors import ProtocolError


@dataclass
class Member:
    """One trained member: its rows, selection info and risks on the rows that get scored."""

    index: int
    fit_rows: np.ndarray
    val_rows: np.ndarray
    state: dict | None = None
    selected_epoch: int = -1
    epochs_run: int = 0
    val_c_index: float = float("nan")
    history: list = field(default_factory=list)
    epoch_states: list = field(default_factory=list)
    train_risk: np.ndarray | None = None  # raw risks on the outer training fold
    train_mean: float = 0.0
    train_sd: float = 1.0

    def standardise(self, risk: np.ndarray) -> np.ndarray:
        """Risk on the member's training-fold scale (mean 0, sd 1 over the outer training fold)."""
        return (np.asarray(risk, np.float64) - self.train_mean) / self.train_sd


def member_splits(
    fold: Fold, data, n_members: int, *, val_frac: float, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, val rows) of every member of one outer fold.

    One member keeps the fold's own fit/val carve (the single-model protocol). More members
    use the inner folds described in the module docstring; every pair is disjoint from the
    test fold and from each other's validation rows within one cycle of inner folds.
    """
    if n_members <= 1:
        return [(data.rows(fold.train), data.rows(fold.val))]
    outer = list(fold.train) + list(fold.val)
    ev = data.event[data.rows(outer)]
    k_in = max(n_members, int(round(1.0 / val_frac)))
    if int(ev.sum()) < k_in:
        raise ProtocolError(
            f"fold {fold.k}: --ensemble {n_members} cuts the training fold into {k_in} inner "
            f"folds, but it has only {int(ev.sum())} events, so some members would validate "
            "on no event; use a smaller --ensemble (or a larger --val-frac)"
        )
    inner = make_folds(outer, ev, n_folds=k_in, seed=seed * 7 + 1000 + fold.k)
    test = set(fold.test)
    out = []
    for j in range(n_members):
        val_ids = inner[j]
        vset = set(val_ids)
        fit_ids = [c for c in outer if c not in vset]
        if vset & test or set(fit_ids) & test:
            raise AssertionError(f"fold {fold.k}: an inner split overlaps the test fold")
        out.append((data.rows(fit_ids), data.rows(val_ids)))
    return out


def combine(members: list[Member], predict_fn: Callable[[Member], np.ndarray]) -> np.ndarray:
    """Mean of the members' standardised risks, put back on the members' average scale.

    ``predict_fn(member)`` gives that member's raw risks. With one member this returns its raw
    risks unchanged (so a one-member "ensemble" is exactly the single model, IBS included).
    """
    z = np.mean([m.standardise(predict_fn(m)) for m in members], axis=0)
    scale = float(np.mean([m.train_sd for m in members]))
    shift = float(np.mean([m.train_mean for m in members]))
    return z * scale + shift
