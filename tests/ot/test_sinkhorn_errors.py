"""Input validation of ``sinkhorn_uot`` / ``partial_uot``: the error table."""

from __future__ import annotations

import math

import pytest
import torch

from minmaxfuse.ot import partial_uot, sinkhorn_uot

C = torch.rand(2, 4, 3)
OK_MASK = torch.ones(2, 4, dtype=torch.bool)
EMPTY = OK_MASK.clone()
EMPTY[1] = False
NAN_C = C.clone()
NAN_C[0, 1, 2] = float("nan")

CASES = [
    # (args, kwargs, exception, message fragment)
    ((torch.rand(4, 3),), {}, ValueError, r"`cost` must have shape \(B, N, K\)"),
    ((torch.ones(2, 4, 3, dtype=torch.long),), {}, TypeError, "`cost` must be a floating"),
    (([[1.0]],), {}, TypeError, "`cost` must be a torch.Tensor"),
    ((torch.rand(2, 0, 3),), {}, ValueError, "`cost` must have N >= 1"),
    ((C, torch.rand(2, 5)), {}, ValueError, r"`a` must have shape \(B, N\)"),
    ((C, None, torch.rand(3, 3)), {}, ValueError, r"`b` must have shape \(B, K\)"),
    ((C, -torch.rand(2, 4)), {}, ValueError, "`a` must be nonnegative"),
    ((C, None, torch.zeros(2, 3)), {}, ValueError, "`b` must have positive total mass"),
    ((C,), {"mask": OK_MASK.float()}, TypeError, "`mask` must be a bool tensor"),
    ((C,), {"mask": OK_MASK[:, :3]}, ValueError, "`mask` must have shape"),
    ((C,), {"mask": EMPTY}, ValueError, "at least one valid entry"),
    ((C,), {"reg": -0.1}, ValueError, "`reg` must be finite and > 0"),
    ((C,), {"reg": 0.0}, ValueError, "`reg` must be finite and > 0"),
    ((C,), {"reg_m": -1.0}, ValueError, "`reg_m` must be > 0"),
    ((C,), {"reg_m": (1.0, 2.0, 3.0)}, ValueError, "`reg_m` must be a number or a pair"),
    ((C,), {"grad": "autodiff"}, ValueError, "`grad` must be one of"),
    ((C,), {"max_iter": 0}, ValueError, "`max_iter` must be >= 1"),
    ((C,), {"tol": -1.0}, ValueError, "`tol` must be finite and >= 0"),
    ((C,), {"check_every": 1.5}, TypeError, "`check_every` must be an int"),
    ((C,), {"sink_mass": 1.0}, ValueError, r"`sink_mass` must be in \[0.0, 1.0\)"),
    ((C,), {"sink_mass": -0.1}, ValueError, "`sink_mass` must be in"),
    ((C,), {"sink_mass": torch.tensor([0.2, 1.5])}, ValueError, r"`sink_mass` must be in \[0, 1\)"),
    ((C,), {"sink_mass": torch.tensor([0.2])}, ValueError, r"`sink_mass` must have shape \(B\)"),
    ((NAN_C,), {}, ValueError, "`cost` must be finite"),
]


@pytest.mark.parametrize("args, kwargs, exc, match", CASES)
def test_error_table(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sinkhorn_uot(*args, **kwargs)


def test_nan_on_padded_rows_is_fine():
    mask = OK_MASK.clone()
    mask[0, 1] = False
    r = sinkhorn_uot(NAN_C, mask=mask)
    assert torch.isfinite(r.plan).all()


@pytest.mark.parametrize(
    "rho, kwargs, match",
    [
        (0.0, {}, r"`rho` must be in \(0.0, 1.0\]"),
        (1.2, {}, r"`rho` must be in"),
        (torch.tensor([0.5, 0.0]), {}, r"`rho` must be in \(0, 1\]"),
        (0.5, {"reg_m_cols": 0.0}, "`reg_m_cols` must be > 0"),
    ],
)
def test_partial_uot_errors(rho, kwargs, match):
    with pytest.raises(ValueError, match=match):
        partial_uot(C, rho, **kwargs)


def test_inf_reg_m_accepted():
    r = sinkhorn_uot(C, reg_m=(math.inf, math.inf))
    assert torch.isfinite(r.plan).all()


def test_flags_and_numpy_scalars():
    import numpy as np

    cost = torch.rand(2, 4, 3)
    with pytest.raises(TypeError, match="`warn` must be a bool"):
        sinkhorn_uot(cost, warn="yes")
    res = sinkhorn_uot(
        cost,
        reg=np.float32(0.1),
        reg_m=(np.float64(1.0), torch.tensor(2.0)),
        max_iter=np.int64(300),
        warn=np.bool_(False),
    )
    assert bool(res.converged.all())
    with pytest.raises(TypeError, match="`max_iter` must be an int, not a bool"):
        sinkhorn_uot(cost, max_iter=True)
