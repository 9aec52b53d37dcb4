"""CMTA's Nystrom attention, translation and alignment loss (examples/tta/peers/cmta.py).

The generic tests of every peer are in test_peers.py; these check what is specific to CMTA.
"""

from __future__ import annotations

import pytest
import torch

from examples.tta.peers.cmta import CMTA, NystromAttention, segment_landmarks
from tests.examples.peer_fixtures import wsi_rna_cnv_infos as _infos
from tests.examples.peer_fixtures import wsi_rna_cnv_inputs as _inputs


def _model(seed: int = 0, **kw) -> CMTA:
    torch.manual_seed(seed)
    kw.setdefault("landmarks", 4)
    return CMTA(_infos(), dim=16, dropout=0.0, **kw)


def test_landmark_segments_use_the_valid_tokens_only():
    mask = torch.tensor([[True, False, True, True, False, True, True, True]])
    s = segment_landmarks(mask, 3)
    assert s.shape == (1, 8, 3)
    assert torch.equal(s[0, ~mask[0]], torch.zeros(2, 3))  # padded rows: no segment
    torch.testing.assert_close(s.sum(1), torch.ones(1, 3))  # each column is a mean
    # 6 valid tokens in 3 contiguous segments of 2, in order of their rank
    seg = s[0, mask[0]].argmax(-1)
    assert seg.tolist() == [0, 0, 1, 1, 2, 2]
    # fewer valid tokens than landmarks: the extra segments are empty
    few = segment_landmarks(torch.tensor([[True, True, False]]), 4)
    assert (few.sum(1) > 0).sum() == 2


def test_nystrom_attention_ignores_masked_tokens_wherever_they_are():
    torch.manual_seed(0)
    att = NystromAttention(16, heads=4, landmarks=3, dropout=0.0).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, 16, generator=g)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    # the same valid tokens with garbage rows interleaved
    pos = torch.tensor([0, 2, 3, 5, 6, 8, 9])
    y = 1e3 * torch.randn(2, 11, 16, generator=g)
    y[:, pos] = x
    ymask = torch.zeros(2, 11, dtype=torch.bool)
    ymask[:, pos] = mask
    with torch.no_grad():
        ox, oy = att(x, mask), att(y, ymask)
    torch.testing.assert_close(oy[:, pos][mask], ox[mask], rtol=1e-5, atol=1e-5)
    assert torch.equal(oy[~ymask], torch.zeros(int((~ymask).sum()), 16))
    assert torch.isfinite(oy).all()


def test_nystrom_is_exact_attention_when_every_landmark_is_one_token():
    torch.manual_seed(0)
    att = NystromAttention(16, heads=2, landmarks=6, pinv_iterations=30, dropout=0.0).eval()
    exact = NystromAttention(16, heads=2, landmarks=0, dropout=0.0).eval()
    exact.load_state_dict(att.state_dict())
    x = 3 * torch.randn(2, 6, 16)
    mask = torch.ones(2, 6, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(att(x, mask), exact(x, mask), rtol=1e-3, atol=1e-4)


def test_alignment_is_a_named_term_and_its_targets_are_detached():
    model = _model(alpha=0.5)
    out = model(_inputs([6, 3, 5], 6), progress=0.0)
    surv = out["logits"].square().mean()
    total, raw = model.objective(surv, out)
    assert set(raw) == {"survival", "alignment"}
    expected = (out["p_hat"] - out["p"]).abs().mean() + (out["g_hat"] - out["g"]).abs().mean()
    torch.testing.assert_close(raw["alignment"], expected.detach())
    torch.testing.assert_close(total, surv + 0.5 * raw["alignment"])
    # no gradient of the alignment term reaches the encoder class tokens it compares against
    align = model.alignment(out)
    gp, gg, gph, ggh = torch.autograd.grad(
        align, [out["p"], out["g"], out["p_hat"], out["g_hat"]], allow_unused=True
    )
    assert gp is None or torch.equal(gp, torch.zeros_like(gp))
    assert gg is None or torch.equal(gg, torch.zeros_like(gg))
    assert gph.abs().sum() > 0 and ggh.abs().sum() > 0
    # ... which it would without the stop-gradient
    (gp_free,) = torch.autograd.grad(expected, [out["p"]], retain_graph=True)
    assert gp_free.abs().sum() > 0
    # the translation side still trains the encoders (through the decoders' inputs)
    model.zero_grad()
    model.alignment(model(_inputs([6, 3, 5], 6))).backward()
    grads = [p.grad for p in model.encoders.enc["wsi"].parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_translation_reads_the_other_modality_and_encoders_do_not():
    model = _model().eval()
    a = _inputs([6, 4], 6)
    b = dict(a, rna=(a["rna"][0] + 2.0, None))  # other genomics, same patches
    c = dict(a, wsi=(a["wsi"][0] + 1.0, a["wsi"][1]))  # other patches, same genomics
    with torch.no_grad():
        oa, ob, oc = model(a), model(b), model(c)
    torch.testing.assert_close(oa["p"], ob["p"])  # the pathology encoder sees patches only
    assert not torch.allclose(oa["p_hat"], ob["p_hat"])  # ... its translation reads genomics
    torch.testing.assert_close(oa["g"], oc["g"])
    assert not torch.allclose(oa["g_hat"], oc["g_hat"])
    n, g = 6, 7
    assert oa["path_attn"].shape == (2, n, g) and oa["gene_attn"].shape == (2, g, n)
    assert torch.equal(oa["gene_attn"][1, :, 4:], torch.zeros(g, 2))  # padded: no weight


def test_zero_alpha_is_the_survival_loss_and_negative_alpha_is_refused():
    model = _model(alpha=0.0)
    out = model(_inputs([4, 2], 4))
    surv = out["logits"].sum()
    total, raw = model.objective(surv, out)
    torch.testing.assert_close(total, surv)
    assert "alignment" in raw
    with pytest.raises(ValueError, match="alpha"):
        _model(alpha=-1.0)
