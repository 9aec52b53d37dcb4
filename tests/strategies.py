"""Shared hypothesis strategies (small sizes so that the derandomised CI profile stays fast)."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st

REG_M_CHOICES = (0.1, 1.0, 10.0, math.inf, (math.inf, 1.0), (0.5, 2.0), (1.0, math.inf))


@st.composite
def uot_problems(draw, *, max_b=3, max_n=6, max_k=4, masks=True, dtype=torch.float64):
    """A batch of UOT problems: ``cost (B, N, K)`` in [0, 2], positive masses, a row mask."""
    B = draw(st.integers(1, max_b))
    N = draw(st.integers(1, max_n))
    K = draw(st.integers(1, max_k))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    cost = torch.as_tensor(rng.uniform(0.0, 2.0, (B, N, K)), dtype=dtype)
    b = torch.as_tensor(rng.uniform(0.2, 1.0, (B, K)), dtype=dtype)
    b = b / b.sum(-1, keepdim=True)
    mask = torch.ones(B, N, dtype=torch.bool)
    if masks and N > 1:
        lengths = rng.integers(1, N + 1, size=B)
        mask = torch.arange(N).unsqueeze(0) < torch.as_tensor(lengths).unsqueeze(1)
    # row masses sum to one over the valid rows (balanced problems need equal masses)
    a = torch.as_tensor(rng.uniform(0.2, 1.0, (B, N)), dtype=dtype) * mask
    a = a / a.sum(-1, keepdim=True)
    return cost, a, b, mask
