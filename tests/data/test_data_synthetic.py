import time

import numpy as np
import pytest
import torch

from minmaxfuse.data import make_synthetic_cohort


def _r2(x, y):
    x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1).double()
    y = y.double()
    beta = torch.linalg.lstsq(x, y).solution
    res = y - x @ beta
    return 1 - res.pow(2).sum(0) / (y - y.mean(0)).pow(2).sum(0)


def test_shapes_dtypes_and_seed():
    c = make_synthetic_cohort(40, seed=3, dtype=torch.float64)
    assert [t.shape for t in c.tokens] == [(40, 256, 32), (40, 24, 16)]
    assert all(t.dtype == torch.float64 for t in c.tokens)
    assert [m.dtype for m in c.masks] == [torch.bool, torch.bool]
    assert c.time.shape == (40,) and (c.time > 0).all() and c.event.dtype == torch.bool
    assert c.names == ("wsi", "pathways")
    for t, m in zip(c.tokens, c.masks):
        assert (t[~m] == 0).all() and m.any(1).all()
    assert c.masks[1].all()  # pathway-like bags are complete
    assert (c.masks[0].sum(1) >= 64).all()
    c2 = make_synthetic_cohort(40, seed=3, dtype=torch.float64)
    torch.testing.assert_close(c.tokens[0], c2.tokens[0])
    torch.testing.assert_close(c.time, c2.time)
    c3 = make_synthetic_cohort(40, seed=4, dtype=torch.float64)
    assert not torch.equal(c.time, c3.time)


def test_fast():
    make_synthetic_cohort(20)
    t = time.perf_counter()
    make_synthetic_cohort(300)
    assert time.perf_counter() - t < 1.0


def test_censoring_fraction_and_hazard():
    c = make_synthetic_cohort(2000, censoring=0.3, seed=0, bag_sizes=(8, 4))
    frac = 1 - c.event.double().mean()
    assert abs(float(frac) - 0.3) < 0.05
    assert make_synthetic_cohort(50, censoring=0.0).event.all()
    # oracle risk is concordant with observed times (higher risk -> earlier event)
    sksurv = pytest.importorskip("sksurv.metrics")
    ci = sksurv.concordance_index_censored(c.event.numpy(), c.time.numpy(), c.risk.numpy())[0]
    assert ci > 0.65
    assert abs(float(c.risk.var()) - 1.0) < 0.15


def test_planted_structure_is_recoverable():
    c = make_synthetic_cohort(600, seed=1, noise=0.3)
    # bag means carry the factors of their own modality, not the other modality's specific ones
    means = [
        (t * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True) for t, m in zip(c.tokens, c.masks)
    ]
    for m in range(2):
        assert _r2(means[m], c.shared_factors).min() > 0.5
        assert _r2(means[m], c.specific_factors[m]).min() > 0.5
        assert _r2(means[m], c.specific_factors[1 - m]).max() < 0.1
    assert np.isfinite(c.time.numpy()).all()


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"num_patients": 1}, ValueError, "`num_patients` must be >= 2"),
        ({"dims": (4,)}, ValueError, r"`dims` must have one entry per modality \(A = 2"),
        ({"kinds": ("mixture", "bad")}, ValueError, r"`kinds\[1\]` must be one of"),
        ({"min_bag_fraction": (0.0, 1.0)}, ValueError, r"`min_bag_fraction\[0\]` must be in"),
        ({"censoring": 1.0}, ValueError, r"`censoring` must be in \[0.0, 1.0\)"),
        ({"noise": -1.0}, ValueError, "`noise` must be finite and >= 0"),
        ({"num_shared": 0, "num_specific": 0}, ValueError, "num_shared \\+ num_specific"),
        ({"dtype": torch.int64}, TypeError, "`dtype` must be a floating"),
        ({"bag_sizes": (4.5, 3)}, TypeError, r"`bag_sizes\[0\]` must be an int"),
    ],
)
def test_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_synthetic_cohort(**{"num_patients": 10, **kwargs})


def test_three_modalities():
    c = make_synthetic_cohort(
        10,
        bag_sizes=(20, 5, 7),
        dims=(3, 4, 5),
        kinds=("mixture", "indexed", "mixture"),
        min_bag_fraction=(0.5, 1.0, 0.2),
    )
    assert len(c.tokens) == 3 and len(c.specific_factors) == 3
    assert len(set(c.names)) == 3
