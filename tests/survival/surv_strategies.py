"""Hypothesis strategies for survival data with heavy ties (shared by the survival tests)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def survival_data(draw, *, min_n: int = 2, max_n: int = 40, min_events: int = 1, grid=None):
    """Draw ``(event, time, risk)`` numpy arrays with many ties in times and in risks.

    Times are drawn on a coarse grid (so events tie with events and with censorings) and risks
    are rounded to one decimal, or drawn from very few distinct values.
    """
    n = draw(st.integers(min_n, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_levels = draw(st.sampled_from([2, 3, 5, 10, 1000])) if grid is None else grid
    time = rng.integers(0, n_levels, size=n).astype(np.float64) * 0.5 + 0.5
    event = rng.random(n) < draw(st.sampled_from([0.2, 0.5, 0.8, 1.0]))
    if event.sum() < min_events:
        event[rng.choice(n, size=min_events, replace=False)] = True
    kind = draw(st.sampled_from(["round", "few", "continuous"]))
    if kind == "round":
        risk = np.round(rng.normal(size=n), 1)
    elif kind == "few":
        risk = rng.integers(0, 3, size=n).astype(np.float64)
    else:
        risk = rng.normal(size=n)
    return event, time, risk
