"""Edge cases of the layers found by fuzzing (issues 10 and 11)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minmaxfuse import layers


def _align(**kw):
    torch.manual_seed(0)
    return layers.PrototypeUOTAlign(4, num_prototypes=3, max_iter=100, **kw)


def _tokens(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 5, 4, generator=g), torch.randn(b, 3, 4, generator=g)]


@pytest.mark.parametrize("scale", [1e20, 1e-8])
def test_cosine_logits_do_not_depend_on_the_projection_scale(scale):
    ref = _align()
    big = _align()
    with torch.no_grad():
        for p in big.projections.parameters():
            p.mul_(scale)  # projected tokens with norms far above 1.8e19 or below 1.2e-7
    xs = _tokens()
    want, got = ref(xs), big(xs)
    for lg_w, lg_g in zip(want.logits, got.logits):
        assert lg_w.abs().max() > 0.1
        torch.testing.assert_close(lg_g, lg_w, atol=1e-5, rtol=1e-5)


def test_empty_batch_gives_connected_zero_loss():
    layer = _align()
    out = layer([torch.randn(0, 5, 4), torch.randn(0, 3, 4)])
    assert out.loss.requires_grad and float(out.loss.detach()) == 0.0
    out.loss.backward()
    assert layer.prototypes.grad is not None and torch.isfinite(layer.prototypes.grad).all()


def test_empty_bag_error_points_to_allow_missing():
    m = torch.ones(2, 5, dtype=torch.bool)
    m[1] = False
    with pytest.raises(ValueError, match=r"`tokens\[0\]`.*allow_missing=True"):
        _align()(_tokens(), [m, None])
    out = _align(allow_missing=True)(_tokens(), [m, None])  # the hint works
    assert torch.isfinite(out.loss)


def test_learned_missing_needs_allow_missing():
    with pytest.raises(ValueError, match="`missing`.*allow_missing=True"):
        _align(missing="learned")
    assert _align(missing="learned", allow_missing=True).missing_tokens is not None


@pytest.mark.parametrize("weights", ["ab", (w for w in (1.0, 1.0)), [1.0, None], [1.0, "x"]])
def test_modality_weights_must_be_numbers(weights):
    with pytest.raises(TypeError, match="`modality_weights"):
        _align(modality_weights=weights)


def test_numpy_scalars_and_bools_are_accepted():
    layer = _align(
        modality_weights=[np.float32(0.5), np.int64(1)],
        temperature=np.float32(0.5),
        joint=np.bool_(False),
    )
    assert layer.modality_weights == (0.5, 1.0) and layer.joint is False
    assert layers.PrototypeUOTAlign(np.int64(4), num_prototypes=np.int32(3)).num_prototypes == 3
    with pytest.raises(TypeError, match="`joint` must be a bool"):
        _align(joint="yes")
    with pytest.raises(TypeError, match="`dim` must be an int, not a bool"):
        layers.PrototypeUOTAlign(True)


@pytest.mark.parametrize("residual", [True, False])
def test_anchors_are_finite_for_huge_tokens(residual):
    torch.manual_seed(0)
    layer = layers.ModalityAnchors(2, 4, residual=residual)
    tokens = [torch.randn(2, 3, 4) * 1e30, torch.randn(2, 3, 4) * 1e-30]
    out = layer(tokens)
    assert torch.isfinite(out.pooled).all()
    out.pooled.sum().backward()
    for p in layer.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


def test_anchor_layernorm_unchanged_for_ordinary_tokens():
    torch.manual_seed(0)
    layer = layers.ModalityAnchors(1, 4)
    ln = layer.refiners[0][-1]
    assert isinstance(ln, torch.nn.LayerNorm)
    x = torch.randn(3, 5, 4) * 1e3
    torch.testing.assert_close(ln(x), torch.nn.functional.layer_norm(x, (4,)), rtol=0, atol=0)


def test_anchors_residual_flag_is_strict():
    with pytest.raises(TypeError, match="`residual` must be a bool"):
        layers.ModalityAnchors(2, 4, residual=1)


def test_aggregate_mixed_dtypes_are_named_errors():
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    with pytest.raises(TypeError, match="`logits` must have the dtype of `x`"):
        layers.prototype_aggregate(x, torch.randn(2, 4, 3), torch.rand(2, 4, 3).double())
    with pytest.raises(TypeError, match="`plan` must have the dtype of `x`"):
        layers.prototype_aggregate(x, torch.randn(2, 4, 3).double(), torch.rand(2, 4, 3))
    with pytest.raises(TypeError, match="`normalize` must be a bool"):
        layers.prototype_aggregate(x, x[..., :3], x[..., :3].abs(), normalize="yes")


def test_aggregate_accepts_plan_rows_above_one_as_documented():
    # rows are renormalised: a plan row summing to 4 only shifts the mix towards the plan
    g = torch.Generator().manual_seed(0)
    x, logits = torch.randn(1, 4, 5, generator=g), torch.randn(1, 4, 3, generator=g)
    plan = torch.rand(1, 4, 3, generator=g)
    plan = 4 * plan / plan.sum(-1, keepdim=True)
    got = layers.prototype_aggregate(x, logits, plan, mix=0.5)
    w = 0.5 * torch.softmax(logits, -1) + 0.5 * plan
    w = w / w.sum(-1, keepdim=True)
    torch.testing.assert_close(got, torch.einsum("bnk,bnd->bkd", w, x))


@pytest.mark.parametrize(
    "make, call",
    [
        (lambda: layers.FeatureTokenizer(3, 4), lambda m, dev: m(torch.zeros(2, 3, device=dev))),
        (
            lambda: layers.ModalityAnchors(2, 4),
            lambda m, dev: m([torch.zeros(2, 3, 4, device=dev)] * 2),
        ),
        (
            lambda: layers.PrototypeUOTAlign(4, 3),
            lambda m, dev: m([torch.zeros(2, 3, 4, device=dev)] * 2),
        ),
    ],
)
def test_input_on_another_device_than_the_parameters_is_a_named_error(make, call):
    module = make()
    with pytest.raises(
        ValueError, match=r"must be on the device of the .* parameters \(cpu\); got meta"
    ):
        call(module, "meta")
