"""MCAT's co-attention and MOTCat's transport plan (examples/tta/peers/mcat.py, motcat.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from examples.tta.peers.mcat import MCAT
from examples.tta.peers.motcat import MOTCat
from tests.examples.peer_fixtures import wsi_rna_cnv_infos as _infos
from tests.examples.peer_fixtures import wsi_rna_cnv_inputs as _inputs

ot = pytest.importorskip("ot")

REG, REG_M = 0.1, 0.5


def _model(cls, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return cls(_infos(), dim=16, dropout=0.0, **kw)


def _reference_plan(x: np.ndarray, y: np.ndarray, reg_type: str) -> np.ndarray:
    """MOTCat's pot-uot-l2 plan in float64 NumPy + POT for one problem."""
    x = x - x.min(-1, keepdims=True)
    y = y - y.min(-1, keepdims=True)
    m = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    a, b = ot.unif(len(x)), ot.unif(len(y))
    return ot.unbalanced.sinkhorn_unbalanced(
        a, b, m / m.max(), REG, REG_M, reg_type=reg_type, numItermax=20000, stopThr=1e-12
    )


def _tokens(model, inputs):
    with torch.no_grad():
        return model.split(*model.encode(inputs, None, 0))


def test_mcat_coattention_ignores_padded_patches_and_sums_to_one():
    model = _model(MCAT).eval()
    inputs = _inputs([3, 9, 6], 9)
    with torch.no_grad():
        attn = model(inputs)["attn"]
    mask = inputs["wsi"][1]
    assert attn.shape == (3, 7, 9)
    assert (attn.masked_select(~mask[:, None, :].expand_as(attn)) == 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 7))


@pytest.mark.filterwarnings("ignore:If reg_type = entropy")
@pytest.mark.parametrize("reg_type", ["kl", "entropy"])
def test_motcat_plan_equals_pot_on_one_patient(reg_type):
    model = _model(MOTCat, reg_type=reg_type).eval()
    inputs = _inputs([11, 6], 11, seed=1)
    with torch.no_grad():
        plan = model(inputs)["plan"]
    patches, pmask, genes, _ = _tokens(model, inputs)
    for i, n in enumerate([11, 6]):
        x, y = patches[i, :n].double().numpy(), genes[i].double().numpy()
        ref = _reference_plan(x, y, reg_type)
        np.testing.assert_allclose(plan[i, :n].numpy(), ref, atol=1e-5, rtol=1e-4)
        assert (plan[i, n:] == 0).all()


def test_motcat_training_forward_with_micro_at_least_n_equals_eval():
    inputs = _inputs([4, 12, 9], 12, seed=2)
    model = _model(MOTCat, micro=12)
    model.train()
    with torch.no_grad():
        tr = model(inputs, progress=0.5)
        model.eval()
        ev = model(inputs)
    torch.testing.assert_close(tr["plan"], ev["plan"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(tr["logits"], ev["logits"], rtol=1e-5, atol=1e-6)


def test_motcat_micro_chunks_solved_together_equal_each_chunk_alone():
    micro = 4
    lens = [13, 3, 8, 0]  # 4, 1, 2 chunks; a patient without patches
    inputs = _inputs(lens, 13, seed=3)
    model = _model(MOTCat, micro=micro).train()
    patches, pmask, genes, gmask = _tokens(model, inputs)
    torch.manual_seed(7)
    plan = model.plan(patches, pmask, genes, gmask, train=True)
    torch.manual_seed(7)
    pos, src, cmask, k = model.chunks(pmask)
    assert k.tolist() == [4, 1, 2, 1]
    S = src.shape[1] // int(k.max())
    assert (plan[3] == 0).all()
    for i, n in enumerate(lens[:3]):
        members = [src[i, c * S : (c + 1) * S][cmask[i, c * S : (c + 1) * S]] for c in range(4)]
        members = [m for m in members if len(m)]
        assert len(members) == k[i]
        sizes = [len(m) for m in members]
        assert max(sizes) <= micro and max(sizes) - min(sizes) <= 1
        assert sorted(torch.cat(members).tolist()) == list(range(n))  # a partition
        for m in members:
            ref = _reference_plan(patches[i, m].double().numpy(), genes[i].double().numpy(), "kl")
            got = plan[i, m].numpy() * int(k[i])
            np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cls", [MCAT, MOTCat])
def test_patch_order_changes_nothing_at_evaluation(cls):
    model = _model(cls).eval()
    inputs = _inputs([7, 10], 10, seed=4)
    x, mask = inputs["wsi"]
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    shuffled = {**inputs, "wsi": (x[:, perm], mask[:, perm])}
    with torch.no_grad():
        a, b = model(inputs), model(shuffled)
    torch.testing.assert_close(a["logits"], b["logits"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a["attn"][..., perm], b["attn"], rtol=1e-5, atol=1e-6)


def test_motcat_genomic_token_order_permutes_the_plan_columns():
    model = _model(MOTCat).eval()
    patches, pmask, genes, gmask = _tokens(model, _inputs([9, 5], 9, seed=5))
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    a = model.plan(patches, pmask, genes, gmask, train=False)
    b = model.plan(patches, pmask, genes[:, perm], gmask[:, perm], train=False)
    torch.testing.assert_close(a[..., perm], b, rtol=1e-5, atol=1e-7)


def test_motcat_missing_guide_gets_no_mass():
    model = _model(MOTCat).eval()
    present = torch.tensor([[True, True, False], [True, True, True]])
    with torch.no_grad():
        out = model(_inputs([6, 8], 8, seed=6), present=present)
    assert torch.isfinite(out["logits"]).all()
    assert (out["plan"][0, :, 5:] == 0).all() and (out["plan"][0, :6, :5] > 0).all()
    assert (out["plan"][1, :8] > 0).all()
