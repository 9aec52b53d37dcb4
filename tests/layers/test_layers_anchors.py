import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minmaxfuse.layers import ModalityAnchors


@st.composite
def setups(draw):
    a = draw(st.integers(1, 3))
    ks = draw(st.lists(st.integers(1, 5), min_size=a, max_size=a))
    b = draw(st.integers(1, 3))
    heads = draw(st.sampled_from([1, 2]))
    dim = 2 * draw(st.integers(1, 3))
    residual = draw(st.booleans())
    layers = draw(st.integers(0, 2))
    seed = draw(st.integers(0, 1000))
    return a, ks, b, heads, dim, residual, layers, seed


def _make(a, dim, heads, residual, layers, seed, dtype=torch.float64):
    torch.manual_seed(seed)
    return ModalityAnchors(a, dim, refine_layers=layers, heads=heads, residual=residual).to(dtype)


@given(setups())
def test_shapes_equivariance_batch_loop(setup):
    a, ks, b, heads, dim, residual, layers, seed = setup
    layer = _make(a, dim, heads, residual, layers, seed).eval()
    g = torch.Generator().manual_seed(seed)
    toks = [torch.randn(b, k, dim, generator=g, dtype=torch.float64) for k in ks]
    out = layer(toks)
    assert [t.shape for t in out.tokens] == [(b, k, dim) for k in ks]
    assert out.pooled.shape == (b, a, dim) and out.anchors.shape == (a, dim)
    assert out.pooled.dtype == torch.float64
    for m in range(a):
        torch.testing.assert_close(out.pooled[:, m], out.tokens[m].mean(1))
    # permuting a modality's prototype tokens permutes its refined tokens (no positions)
    perms = [torch.randperm(k, generator=g) for k in ks]
    out_p = layer([t[:, p] for t, p in zip(toks, perms)])
    for m in range(a):
        torch.testing.assert_close(out_p.tokens[m], out.tokens[m][:, perms[m]])
    torch.testing.assert_close(out_p.pooled, out.pooled)
    # batch == loop over patients
    loop = [layer([t[i : i + 1] for t in toks]).pooled for i in range(b)]
    torch.testing.assert_close(torch.cat(loop), out.pooled)


def test_anchor_changes_output_and_gradients_reach_everything():
    layer = ModalityAnchors(2, 4, refine_layers=1, heads=2)
    toks = [torch.randn(3, 5, 4, requires_grad=True), torch.randn(3, 2, 4, requires_grad=True)]
    out = layer(toks)
    (out.pooled.pow(2).sum() + sum(t.sum() for t in out.tokens) + out.anchors.sum()).backward()
    assert layer.anchors.grad is not None and (layer.anchors.grad != 0).all()
    for t in toks:
        assert t.grad is not None and t.grad.abs().sum() > 0
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
    # the anchor matters: a different anchor gives different refined tokens
    with torch.no_grad():
        before = layer(toks).pooled.clone()
        layer.anchors[0] += torch.randn(4)  # (a constant shift would be undone by LayerNorm)
        after = layer(toks).pooled
    assert not torch.allclose(before[:, 0], after[:, 0])
    torch.testing.assert_close(before[:, 1], after[:, 1])


@pytest.mark.parametrize("residual", [True, False])
def test_gradcheck(residual):
    torch.manual_seed(0)
    layer = ModalityAnchors(2, 4, refine_layers=1, heads=2, residual=residual).double()
    toks = (
        torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda x, y: layer([x, y]).pooled, toks)


def test_module_conventions():
    layer = ModalityAnchors(3, 8, dropout=0.1)
    assert "num_modalities=3" in repr(layer)
    other = ModalityAnchors(3, 8, dropout=0.1)
    other.load_state_dict(layer.state_dict())
    toks = [torch.randn(2, 4, 8) for _ in range(3)]
    layer.eval(), other.eval()
    torch.testing.assert_close(layer(toks).pooled, other(toks).pooled)
    # TTA-style block without residual has no output projection
    n_res = sum(p.numel() for p in ModalityAnchors(2, 8).parameters())
    n_tta = sum(p.numel() for p in ModalityAnchors(2, 8, residual=False).parameters())
    assert n_res - n_tta == 2 * (8 * 8 + 8)


T = [torch.randn(2, 4, 8), torch.randn(2, 3, 8)]


@pytest.mark.parametrize(
    "tokens, exc, match",
    [
        (torch.randn(2, 4, 8), TypeError, "`prototype_tokens` must be a sequence"),
        (T[:1], ValueError, r"one tensor per modality \(num_modalities = 2\); got 1"),
        (
            [T[0], torch.randn(2, 3)],
            ValueError,
            r"`prototype_tokens\[1\]` must have shape \(B, K, D\)",
        ),
        ([T[0], torch.randn(2, 3, 7)], ValueError, r"D = 8 and B = 2; got \(2, 3, 7\)"),
        ([T[0], torch.randn(2, 0, 8)], ValueError, r"K >= 1, D = 8 and B = 2; got \(2, 0, 8\)"),
        ([T[0], torch.randn(3, 3, 8)], ValueError, r"B = 2; got \(3, 3, 8\)"),
        ([T[0], torch.full((2, 3, 8), math.nan)], ValueError, "must be finite"),
        ([T[0], T[1].long()], TypeError, "floating-point"),
    ],
)
def test_forward_errors(tokens, exc, match):
    with pytest.raises(exc, match=match):
        ModalityAnchors(2, 8)(tokens)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"num_modalities": 0, "dim": 4}, ValueError, "`num_modalities` must be >= 1"),
        ({"num_modalities": 2, "dim": 6, "heads": 4}, ValueError, "`heads` must divide `dim` = 6"),
        ({"num_modalities": 2, "dim": 4, "dropout": 1.0}, ValueError, "`dropout` must be in"),
        ({"num_modalities": 2, "dim": 4, "residual": 1}, TypeError, "`residual` must be a bool"),
    ],
)
def test_init_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ModalityAnchors(**kwargs)
