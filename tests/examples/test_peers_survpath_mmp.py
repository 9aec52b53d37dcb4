"""SurvPath's attention pattern and MMP's prototypes and transport (examples/tta/peers).

The generic tests of every peer are in test_peers.py; these check what is specific to the two.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from examples.tta.batches import ModalityInfo, PatientData
from examples.tta.peers.mmp import MMP, kmeans, within_cluster
from examples.tta.peers.survpath import SurvPath, full_attention
from tests.examples.peer_fixtures import wsi_rna_infos as _infos
from tests.examples.peer_fixtures import wsi_rna_inputs as _inputs

# ---------------------------------------------------------------------------- SurvPath


def test_survpath_attention_pattern():
    torch.manual_seed(0)
    model = SurvPath(_infos(), dim=16, dropout=0.0, heads=2).eval()
    lens = [7, 3, 1]
    inputs = _inputs(3, 7, lens)
    with torch.no_grad():
        w_p, w_h = model(inputs)["attn"]
    g, n = 5, 7
    assert w_p.shape == (3, g, g + n) and w_h.shape == (3, n, g)
    full = full_attention((w_p, w_h))
    assert full.shape == (3, g + n, g + n)
    # patch queries never attend to patches
    assert torch.equal(full[:, g:, g:], torch.zeros(3, n, n))
    # patch rows sum to one over the pathways
    torch.testing.assert_close(w_h.sum(-1), torch.ones(3, n))
    for i, k in enumerate(lens):
        # pathway rows sum to one over the pathways and the valid patches only
        torch.testing.assert_close(w_p[i, :, : g + k].sum(-1), torch.ones(g))
        assert torch.equal(full[i, :, g + k :], torch.zeros(g + n, n - k))  # padded: no weight
        assert (w_p[i, :, :g] > 0).all() and (w_p[i, :, g : g + k] > 0).all()


def test_survpath_patch_outputs_ignore_other_patches_as_keys():
    """A patch's attention row depends on its own query and the pathway keys only."""
    torch.manual_seed(0)
    model = SurvPath(_infos(), dim=16, dropout=0.0).eval()
    a = _inputs(1, 6, [6])
    x, mask = a["wsi"]
    x2 = x.clone()
    x2[0, 4] += 3.0
    b = {"wsi": (x2, mask), "rna": a["rna"]}
    with torch.no_grad():
        wa = model(a)["attn"][1]
        wb = model(b)["attn"][1]
    keep = [0, 1, 2, 3, 5]
    torch.testing.assert_close(wa[:, keep], wb[:, keep])
    assert not torch.allclose(wa[:, 4], wb[:, 4])


# ---------------------------------------------------------------------------- MMP


def _cohort(n_patients: int = 6, in_dim: int = 8, seed: int = 0) -> PatientData:
    g = torch.Generator().manual_seed(seed)
    infos = _infos(in_dim)
    bags = [
        torch.randn(int(torch.randint(20, 60, (1,), generator=g)), in_dim, generator=g) + 3 * k
        for k in range(n_patients)
    ]
    rna = np.random.default_rng(seed).normal(size=(n_patients, 5, 3)) * infos[1].valid
    ids = [f"c{k}" for k in range(n_patients)]
    t, e = np.arange(1.0, n_patients + 1), np.ones(n_patients, dtype=bool)
    return PatientData(ids, t, e, infos, {"rna": rna}, bags=bags)


def _mmp(seed: int = 0, **kw) -> MMP:
    torch.manual_seed(seed)
    return MMP(_infos(), dim=16, dropout=0.0, num_prototypes=4, **kw)


def test_mmp_prototypes_are_fitted_on_the_given_rows_only_and_are_deterministic():
    data = _cohort()
    train = np.array([0, 2, 3])
    a, b = _mmp(seed=0), _mmp(seed=1)  # different placeholders, same fit
    a.prepare(data, train)
    b.prepare(data, train)
    torch.testing.assert_close(a.centroids, b.centroids, rtol=0, atol=0)
    assert float(a.sigma2) == float(b.sigma2) and float(a.sigma2) > 0
    # a non-training patient's patches do not move the prototypes
    data.bags[1] = data.bags[1] * 50 + 7
    data.bags[5] = torch.randn(300, 8) - 40
    c = _mmp()
    c.prepare(data, train)
    torch.testing.assert_close(a.centroids, c.centroids, rtol=0, atol=0)
    # ... a training patient's do
    data.bags[2] = data.bags[2] + 20
    d = _mmp()
    d.prepare(data, train)
    assert not torch.allclose(a.centroids, d.centroids)
    # the buffers travel with the state dict
    assert {"centroids", "sigma2"} <= set(a.state_dict())
    e = _mmp(seed=3)
    e.load_state_dict(a.state_dict())
    torch.testing.assert_close(e.centroids, a.centroids)


def test_mmp_prepare_is_a_no_op_without_a_bag():
    rna = _infos()[1]
    cnv = ModalityInfo("cnv", "grouped", valid=np.ones((3, 2), dtype=bool), token_names=list("abc"))
    model = MMP([rna, cnv], dim=16, dropout=0.0)
    model.prepare(None, np.array([0, 1]))  # touches no data
    assert not model.summarise and not hasattr(model, "centroids")


def test_kmeans_is_deterministic_and_improves_on_its_seeding():
    g = torch.Generator().manual_seed(0)
    x = torch.cat(
        [torch.randn(200, 5, generator=g) + 4 * torch.randn(5, generator=g) for _ in range(6)]
    )
    c1, init = kmeans(x, 6, iters=20, generator=torch.Generator().manual_seed(3))
    c2, _ = kmeans(x, 6, iters=20, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(c1, c2, rtol=0, atol=0)
    assert float(within_cluster(x, c1)) < 0.9 * float(within_cluster(x, init))
    c3, _ = kmeans(x, 6, iters=0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(c3, init)


def test_mmp_responsibilities_sum_to_one_and_ignore_padding():
    model = _mmp()
    model.prepare(_cohort(), np.arange(6))
    inputs = _inputs(3, 9, [9, 4, 1])
    x, mask = inputs["wsi"]
    r = model.responsibilities(x, mask)
    assert r.shape == (3, 9, 4)
    torch.testing.assert_close(r.sum(-1), mask.float())
    x2 = torch.where(mask[..., None], x, -7e2)  # other garbage in the padded rows
    torch.testing.assert_close(model.responsibilities(x2, mask), r)
    with torch.no_grad():
        out = model(inputs)
    torch.testing.assert_close(out["resp"], r)


def test_mmp_plan_matches_pot_on_one_patient():
    ot = pytest.importorskip("ot")
    model = _mmp()
    g = torch.Generator().manual_seed(4)
    hist, path = torch.randn(3, 6, 16, generator=g), torch.randn(3, 5, 16, generator=g)
    h_mask = torch.arange(6)[None] < torch.tensor([[6], [4], [2]])
    p_mask = torch.arange(5)[None] < torch.tensor([[5], [3], [5]])
    plan = model.transport(hist, h_mask, path, p_mask)
    assert plan.shape == (3, 6, 5)
    for i in range(3):
        n, k = int(h_mask[i].sum()), int(p_mask[i].sum())
        h, p = hist[i, :n].double().numpy(), path[i, :k].double().numpy()
        cost = ((h[:, None] - p[None]) ** 2).sum(-1)
        cost = cost / cost.max()
        ref = ot.unbalanced.sinkhorn_unbalanced(
            np.full(n, 1 / n),
            np.full(k, 1 / k),
            cost,
            0.1,
            0.5,
            reg_type="kl",
            numItermax=100_000,
            stopThr=1e-12,
        )
        np.testing.assert_allclose(plan[i, :n, :k].detach().double().numpy(), ref, atol=1e-5)
        assert float(plan[i, n:].abs().sum()) == 0 and float(plan[i, :, k:].abs().sum()) == 0


def test_mmp_gradients_reach_the_prototype_projection_through_the_plan():
    model = _mmp()
    model.prepare(_cohort(), np.arange(6))
    out = model(_inputs(2, 7, [7, 5]))
    w = torch.randn(out["plan"].shape, generator=torch.Generator().manual_seed(0))
    (out["plan"] * w).sum().backward()
    grad = model.proto_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert torch.isfinite(grad).all()
