import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minmaxfuse.data import pad_bags, sample_bag, sample_bags


@given(st.lists(st.integers(0, 6), min_size=1, max_size=4), st.integers(1, 3))
def test_pad_bags_roundtrip(lengths, d):
    g = torch.Generator().manual_seed(sum(lengths))
    bags = [torch.randn(n, d, generator=g, dtype=torch.float64) for n in lengths]
    x, mask = pad_bags(bags)
    assert x.shape == (len(lengths), max(lengths), d) and x.dtype == torch.float64
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == lengths
    for i, b in enumerate(bags):
        torch.testing.assert_close(x[i][mask[i]], b)
        assert (x[i][~mask[i]] == 0).all()


def test_pad_bags_length():
    x, mask = pad_bags([torch.ones(2, 3)], length=5)
    assert x.shape == (1, 5, 3) and mask.sum() == 2
    with pytest.raises(ValueError, match="`length` must be >= the longest bag"):
        pad_bags([torch.ones(2, 3)], length=1)


@pytest.mark.parametrize(
    "bags, exc, match",
    [
        (torch.ones(2, 3, 4), TypeError, "`bags` must be a non-empty sequence"),
        ([], TypeError, "`bags` must be a non-empty sequence"),
        ([torch.ones(3)], ValueError, r"`bags\[0\]` must have shape \(N_i, D\); got \(3,\)"),
        ([torch.ones(2, 3), torch.ones(2, 4)], ValueError, r"`bags\[1\]` must have D = 3"),
        ([torch.ones(2, 3), torch.ones(2, 3).double()], ValueError, "dtype/device"),
        ([torch.ones(2, 3), "x"], TypeError, r"`bags\[1\]` must be a torch.Tensor"),
    ],
)
def test_pad_bags_errors(bags, exc, match):
    with pytest.raises(exc, match=match):
        pad_bags(bags)


@given(st.integers(1, 12), st.integers(1, 8), st.integers(0, 100))
def test_sample_bag_properties(n, size, seed):
    bag = torch.arange(n * 2, dtype=torch.float32).view(n, 2)
    x, mask = sample_bag(bag, size, generator=torch.Generator().manual_seed(seed))
    assert x.shape == (size, 2) and mask.shape == (size,)
    assert int(mask.sum()) == min(n, size)
    rows = x[mask]
    # drawn rows are distinct rows of the bag (without replacement)
    ids = (rows[:, 0] / 2).long()
    assert len(set(ids.tolist())) == rows.shape[0]
    torch.testing.assert_close(bag[ids], rows)
    if n <= size:
        torch.testing.assert_close(rows, bag)  # small bags kept whole, in order
        assert (x[~mask] == 0).all()
    # reproducible with the same seed
    x2, _ = sample_bag(bag, size, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(x, x2)


def test_sample_bag_is_uniform():
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(10)
    for _ in range(2000):
        x, _ = sample_bag(torch.arange(10.0).unsqueeze(1), 3, generator=g)
        counts[x[:, 0].long()] += 1
    freq = counts / counts.sum()
    assert (freq - 0.1).abs().max() < 0.02


def test_sample_bags_list_and_padded():
    bags = [torch.randn(9, 2), torch.randn(2, 2)]
    x, mask = sample_bags(bags, 4, generator=torch.Generator().manual_seed(1))
    assert x.shape == (2, 4, 2) and mask.sum(1).tolist() == [4, 2]
    padded, pmask = pad_bags(bags)
    y, ymask = sample_bags(padded, 4, mask=pmask, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x, y)
    assert torch.equal(mask, ymask)
    with pytest.raises(TypeError, match="`mask` must be a bool tensor"):
        sample_bags(padded, 4, mask=pmask.float())
    with pytest.raises(ValueError, match=r"`size` must be >= 1"):
        sample_bag(torch.randn(3, 2), 0)
