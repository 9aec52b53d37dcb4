"""Every peer method of examples/tta/peers: shapes, masking, training signal, runs by name.

The tests are parametrised over the registry, so a newly registered peer is covered by all of
them without edits here.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from examples.tta.batches import ModalityInfo
from examples.tta.cli import main
from examples.tta.model import build_model
from examples.tta.peers import PEERS, min_modalities, peer_names
from examples.tta.peers._base import PeerModel, roles
from minmaxfuse.survival import cox_ph_loss

NAMES = peer_names()
HP = SimpleNamespace(dim=16, dropout=0.0, prototypes=4)


def _valid(g: int, lmax: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.zeros((g, lmax), dtype=bool)
    for i in range(g):
        v[i, : rng.integers(1, lmax + 1)] = True
    return v


def _infos(kind: str) -> list[ModalityInfo]:
    names = [f"p{i}" for i in range(5)]
    rna = ModalityInfo("rna", "grouped", valid=_valid(5, 6), token_names=names)
    cnv = ModalityInfo("cnv", "grouped", valid=_valid(3, 4, 1), token_names=["a", "b", "c"])
    wsi = ModalityInfo("wsi", "bag", in_dim=8)
    return {"wsi,rna": [wsi, rna], "rna,cnv": [rna, cnv], "rna": [rna], "wsi": [wsi]}[kind]


def _inputs(infos, b: int, n: int, seed: int = 0, pad: int = 0):
    """Random inputs; bags of ``n`` valid patches then ``pad`` padded rows of garbage."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for info in infos:
        if info.kind == "bag":
            x = torch.randn(b, n, info.in_dim, generator=g)
            mask = torch.zeros(b, n, dtype=torch.bool)
            lens = torch.randint(2, n + 1, (b,), generator=g)
            for i, k in enumerate(lens.tolist()):
                mask[i, :k] = True
            out[info.name] = [x, mask]
        else:
            v = torch.as_tensor(info.valid)
            out[info.name] = (torch.randn(b, *v.shape, generator=g) * v, None)
    junk = torch.Generator().manual_seed(seed + 1)
    for info in infos:  # padding drawn last: the valid values do not depend on ``pad``
        if info.kind == "bag":
            x, mask = out[info.name]
            x = torch.where(mask[..., None], x, 1e3 * torch.randn(x.shape, generator=junk))
            x = torch.cat([x, 1e3 * torch.randn(b, pad, info.in_dim, generator=junk)], 1)
            mask = torch.cat([mask, torch.zeros(b, pad, dtype=torch.bool)], 1)
            out[info.name] = (x, mask)
    return out


def _build(name, infos, out_dim=1, seed=0):
    torch.manual_seed(seed)
    model = build_model(name, infos, HP, out_dim=out_dim)
    assert isinstance(model, PeerModel)
    return model


def _kinds(name):
    ks = ["wsi,rna", "rna,cnv"]
    return ks + (["rna", "wsi"] if min_modalities(name) <= 1 else [])


@pytest.mark.parametrize("name", NAMES)
def test_logit_shapes_on_every_modality_layout(name):
    for kind in _kinds(name):
        infos = _infos(kind)
        for out_dim in (1, 4):
            model = _build(name, infos, out_dim).eval()
            out = model(_inputs(infos, 3, 7), progress=None)
            assert out["logits"].shape == (3, out_dim), (name, kind)
            assert torch.isfinite(out["logits"]).all(), (name, kind)


@pytest.mark.parametrize("name", NAMES)
def test_padded_patches_change_nothing(name):
    infos = _infos("wsi,rna")
    model = _build(name, infos).eval()
    a = _inputs(infos, 4, 9, seed=3)
    b = _inputs(infos, 4, 9, seed=3, pad=6)  # same valid patches, garbage in 6 padded rows
    with torch.no_grad():
        la = model(a)["logits"]
        lb = model(b)["logits"]
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_every_modality_reaches_the_risk(name):
    for kind in ("wsi,rna", "rna,cnv"):
        infos = _infos(kind)
        model = _build(name, infos)
        out = model(_inputs(infos, 4, 6), progress=0.0)
        out["logits"].sum().backward()
        for info in infos:
            grads = [p.grad for p in model.encoders.enc[info.name].parameters()]
            assert any(g is not None and g.abs().sum() > 0 for g in grads), (name, kind, info.name)


@pytest.mark.parametrize("name", NAMES)
def test_cox_loss_decreases_on_a_tiny_cohort(name):
    infos = _infos("wsi,rna")
    model = _build(name, infos, seed=1)
    inputs = _inputs(infos, 24, 6, seed=5)
    g = torch.Generator().manual_seed(2)
    t = torch.rand(24, generator=g) * 10 + 0.1
    e = torch.rand(24, generator=g) < 0.7
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        out = model(inputs, progress=step / 10)
        loss, _ = model.objective(cox_ph_loss(out["logits"][:, 0], t, e), out)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), (name, losses[:3], losses[-3:])


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_forward_and_backward(name):
    # the example trains under bf16 autocast on CUDA; CPU autocast runs the same dtype rules
    infos = _infos("wsi,rna")
    model = _build(name, infos)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_inputs(infos, 4, 7), progress=0.5)
    t, e = torch.rand(4) + 0.1, torch.ones(4, dtype=torch.bool)
    loss, _ = model.objective(cox_ph_loss(out["logits"][:, 0].float(), t, e), out)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_roles_give_the_context_to_the_bag_else_the_first_modality():
    assert roles(_infos("wsi,rna")) == (0, [1])
    assert roles(_infos("wsi,rna")[::-1]) == (1, [0])
    assert roles(_infos("rna,cnv")) == (0, [1])


TINY = ["--synthetic-patients", "40", "--folds", "2", "--quiet", "--dim", "16"]
TINY += ["--prototypes", "4", "--bag-size", "16", "--epochs", "2"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_runs_by_name_and_prepares_on_training_patients_only(name, tmp_path, monkeypatch):
    import examples.tta.protocol as protocol

    seen: list[list[str]] = []
    real_build = protocol.build_model

    def build_and_spy(*a, **kw):
        model = real_build(*a, **kw)
        own = model.prepare  # the bound method of the peer's class

        def spy(data, rows):
            seen.append([data.case_ids[i] for i in rows])
            return own(data, rows)

        model.prepare = spy
        return model

    monkeypatch.setattr(protocol, "build_model", build_and_spy)
    out = tmp_path / name
    assert main([*TINY, "--method", name, "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["method"] == name and len(res["folds"]) == 2
    assert all(np.isfinite(f["c_index"]) for f in res["folds"])
    assert len(seen) == 2  # once per fold (one member each)
    for k, ids in enumerate(seen):
        fold = json.loads((out / name / f"fold_{k}" / "result.json").read_text())
        test_ids = {p["case_id"] for p in fold["patients"]}
        assert not set(ids) & test_ids
        assert len(ids) == fold["n_train"]  # the fit rows: no validation patient either


@pytest.mark.slow
def test_peers_read_clam_pt_and_h5_feature_files(tmp_path):
    from tests.examples.test_tta_example import _write_cohort

    cohort, groups, feats = _write_cohort(tmp_path)
    for name in NAMES:
        out = tmp_path / name
        argv = ["--cohort-csv", str(cohort), "--groups", str(groups), "--features-dir", str(feats)]
        argv += ["--modalities", "wsi,rna", "--epochs", "1", "--folds", "2", "--bag-size", "16"]
        argv += ["--dim", "16", "--ensemble", "1", "--quiet", "--method", name, "--out", str(out)]
        assert main(argv) == 0, name
        res = json.loads((out / "results.json").read_text())
        assert res["config"]["n_patients"] == 24


def test_a_peer_needing_two_modalities_refuses_one(capsys):
    two = [n for n in NAMES if min_modalities(n) >= 2]
    if not two:
        pytest.skip("every registered peer fuses a single modality too")
    code = main(["--modalities", "rna", "--method", two[0], "--quiet", "--out", "/tmp/never"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--method" in err and "--modalities rna" in err


def test_registry_modules_cite_a_paper_and_a_repository():
    import importlib

    for name, mod in PEERS.items():
        doc = importlib.import_module(f"examples.tta.peers.{mod}").__doc__ or ""
        assert "https://github.com/" in doc, name
        assert any(str(y) in doc for y in range(2016, 2027)), name
