"""Edge cases of the data helpers and distributed gathers (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minmaxfuse import data, distributed


def test_cohort_effects_of_any_scale_are_finite_and_relative():
    tiny = data.make_synthetic_cohort(20, shared_effect=1e-200, specific_effect=1e-200)
    ref = data.make_synthetic_cohort(20)
    assert torch.isfinite(tiny.time).all() and torch.isfinite(tiny.risk).all()
    torch.testing.assert_close(tiny.time, ref.time)  # only the ratio of the effects matters


@pytest.mark.parametrize("name", ["bag_sizes", "dims", "kinds", "min_bag_fraction"])
def test_cohort_per_modality_arguments_must_be_sequences(name):
    value = "mixture" if name == "kinds" else 5
    with pytest.raises(TypeError, match=f"`{name}` must be a sequence"):
        data.make_synthetic_cohort(8, **{name: value})


def test_cohort_seed_range():
    with pytest.raises(ValueError, match=r"`seed` must be <= 18446744073709551615"):
        data.make_synthetic_cohort(8, seed=2**64)
    c = data.make_synthetic_cohort(8, seed=np.int64(3), num_shared=np.int32(1))
    assert c.shared_factors.shape == (8, 1)


def test_sample_bags_empty_batch():
    out = data.sample_bags(torch.zeros(0, 5, 3), 4)
    assert out.tokens.shape == (0, 4, 3) and out.mask.shape == (0, 4)
    out = data.sample_bags(torch.zeros(0, 5, 3), 4, mask=torch.zeros(0, 5, dtype=torch.bool))
    assert out.tokens.shape == (0, 4, 3)


@pytest.mark.parametrize("generator", [5, np.random.default_rng(0), "seed"])
def test_generator_must_be_a_torch_generator(generator):
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator"):
        data.sample_bag(torch.randn(10, 2), 4, generator=generator)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator"):
        data.sample_bags([torch.randn(10, 2)], 4, generator=generator)


def test_gather_nograd_is_detached_in_a_single_process():
    x = torch.randn(3, 2, requires_grad=True)
    out = distributed.gather_nograd(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, x.detach())
