"""FeatureTokenizer: the per-feature affine map, missing entries, dtypes, gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minmaxfuse.layers import FeatureTokenizer, PrototypeUOTAlign


def _naive(tok: FeatureTokenizer, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Loop over patients and features: the definition, written out."""
    b, f = x.shape
    out = torch.zeros(b, f, tok.dim, dtype=x.dtype)
    for i in range(b):
        for j in range(f):
            if mask is None or bool(mask[i, j]):
                t = x[i, j] * tok.weight[j].to(x.dtype)
                if tok.bias is not None:
                    t = t + tok.bias[j].to(x.dtype)
            elif tok.missing_token is not None:
                t = tok.missing_token[j].to(x.dtype)
            else:
                t = torch.zeros(tok.dim, dtype=x.dtype)
            out[i, j] = t
    return out


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(0, 5),
    f=st.integers(1, 6),
    d=st.integers(1, 7),
    bias=st.booleans(),
    missing=st.sampled_from(["learned", "zero"]),
    use_mask=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_naive_loop(b, f, d, bias, missing, use_mask, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tok = FeatureTokenizer(f, d, bias=bias, missing=missing).double()
    x = torch.randn(b, f, generator=g, dtype=torch.float64)
    mask = torch.rand(b, f, generator=g) > 0.3 if use_mask else None
    if mask is not None:
        x = x.masked_fill(~mask, float("nan"))  # unobserved values may be anything
    got = tok(x, mask)
    assert got.shape == (b, f, d)
    torch.testing.assert_close(got, _naive(tok, x, mask), rtol=1e-12, atol=1e-12)


def test_token_is_affine_in_the_value():
    tok = FeatureTokenizer(2, 5).double()
    x = torch.tensor([[0.0, 1.0], [2.0, -3.0]], dtype=torch.float64)
    t = tok(x)
    torch.testing.assert_close(t[0, 0], tok.bias[0])
    torch.testing.assert_close(t[1, 0] - t[0, 0], 2.0 * tok.weight[0])
    torch.testing.assert_close(t[1, 1] - t[0, 1], -4.0 * tok.weight[1])


def test_nan_in_missing_entry_reaches_no_gradient():
    tok = FeatureTokenizer(3, 4)
    x = torch.tensor([[0.5, float("nan"), 1.0], [float("nan"), 0.2, -1.0]], requires_grad=True)
    mask = ~torch.isnan(x.detach())
    out = tok(x, mask)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    for name, p in tok.named_parameters():
        assert torch.isfinite(p.grad).all(), name
    assert torch.isfinite(x.grad).all()
    assert (x.grad[~mask] == 0).all()
    # the learned missing tokens get gradient only from the missing entries
    assert tok.missing_token.grad[1].abs().sum() > 0 and tok.missing_token.grad[2].abs().sum() == 0


def test_zero_missing_and_no_bias():
    tok = FeatureTokenizer(2, 3, bias=False, missing="zero")
    assert tok.bias is None and tok.missing_token is None
    x = torch.tensor([[1.0, 2.0]])
    out = tok(x, torch.tensor([[True, False]]))
    assert (out[0, 1] == 0).all() and torch.allclose(out[0, 0], tok.weight[0])


def test_gradcheck_float64():
    torch.manual_seed(0)
    tok = FeatureTokenizer(3, 4).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    assert torch.autograd.gradcheck(lambda v: tok(v, mask), (x,))
    names = ("weight", "bias", "missing_token")
    params = tuple(getattr(tok, n).detach().clone().requires_grad_() for n in names)

    def f(*ps):
        return torch.func.functional_call(tok, dict(zip(names, ps)), (x.detach(), mask))

    assert torch.autograd.gradcheck(f, params)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes(dtype):
    tok = FeatureTokenizer(4, 8).to(dtype)
    out = tok(torch.randn(3, 4).to(dtype))
    assert out.dtype == dtype and out.shape == (3, 4, 8)


def test_autocast_bf16_cpu():
    tok = FeatureTokenizer(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tok(torch.randn(3, 4))
    assert out.shape == (3, 4, 8) and torch.isfinite(out.float()).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_respected():
    tok = FeatureTokenizer(4, 8).cuda()
    x = torch.randn(3, 4, device="cuda")
    mask = torch.ones(3, 4, dtype=torch.bool, device="cuda")
    assert tok(x, mask).device.type == "cuda"


def test_feeds_prototype_alignment_as_a_modality():
    torch.manual_seed(0)
    tok = FeatureTokenizer(3, 8)
    align = PrototypeUOTAlign(8, 4, num_modalities=2, max_iter=200)
    clinical = torch.tensor([[0.1, 1.0, float("nan")], [0.5, 0.0, 1.2]])
    mask = ~torch.isnan(clinical)
    out = align([torch.randn(2, 6, 8), tok(clinical, mask)], [None, mask])
    assert out.prototype_tokens[1].shape == (2, 4, 8)
    out.loss.backward()
    assert torch.isfinite(tok.weight.grad).all() and tok.weight.grad.abs().sum() > 0


def test_compile_friendly():
    tok = FeatureTokenizer(3, 4)
    x, m = torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool)
    compiled = torch.compile(tok, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, m), tok(x, m))
