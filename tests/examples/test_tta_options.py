"""TTA's optional parts in the example: SP²OT semantic term, multi-head prototypes, rho_eval."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from examples.tta.batches import ModalityInfo
from examples.tta.cli import main
from examples.tta.model import build_model

TINY = ["--synthetic-patients", "48", "--folds", "2", "--quiet", "--dim", "16"]
TINY += ["--prototypes", "4", "--bag-size", "16"]


def _hp(**kw):
    base = dict(
        dim=16,
        dropout=0.0,
        prototypes=4,
        rho_eval=None,
        together_weight=0.5,
        apart_weight=0.5,
        ot_tol=1e-3,
        ot_max_iter=1000,
        ramp_epochs=2.0,
        apart_negatives="anchors",
    )
    base.update(kw)
    return SimpleNamespace(**base)


def _infos():
    valid = np.ones((3, 4), dtype=bool)
    return [
        ModalityInfo("wsi", "bag", in_dim=6),
        ModalityInfo("rna", "grouped", valid=valid, token_names=["a", "b", "c"]),
    ]


def _inputs(b=5, n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, 5:] = False
    return {
        "wsi": (torch.randn(b, n, 6, generator=g), mask),
        "rna": (torch.randn(b, 3, 4, generator=g), None),
    }


def test_flags_reach_the_alignment_layer():
    m = build_model("tta", _infos(), _hp(semantic=0.1, heads=5), out_dim=1)
    assert m.align.semantic == pytest.approx(0.1) and m.align.heads == 5
    assert m.objective_fn.weight("consistency") == pytest.approx(0.01)
    plain = build_model("tta", _infos(), _hp(), out_dim=1)
    assert plain.align.semantic == 0.0 and plain.align.heads == 1
    assert "consistency" not in plain.objective_fn.term_names
    # without Together the plan is not used: no semantic term is solved
    nt = build_model("tta_no_together", _infos(), _hp(semantic=0.1), out_dim=1)
    assert nt.align.semantic == 0.0


def test_semantic_term_changes_the_transport_plan():
    torch.manual_seed(0)
    a = build_model("tta", _infos(), _hp(semantic=0.5), out_dim=1).eval()
    b = build_model("tta", _infos(), _hp(), out_dim=1).eval()
    b.load_state_dict(a.state_dict())
    x = _inputs()
    with torch.no_grad():
        pa = a(x)["align"].plans[0]
        pb = b(x)["align"].plans[0]
    assert (pa - pb).abs().max() > 1e-4
    torch.testing.assert_close(pa.sum((1, 2)), pb.sum((1, 2)), rtol=0.2, atol=0.2)


def test_consistency_loss_enters_training_and_end_epoch_picks_the_lowest_head():
    torch.manual_seed(0)
    m = build_model("tta", _infos(), _hp(heads=4), out_dim=1)
    out = m(_inputs(), progress=0.5)
    assert out["consistency"].shape == (2, 4)
    total, raw = m.objective(torch.tensor(1.0), out)
    assert "consistency" in raw and torch.isfinite(total)
    total.backward()
    assert m.align.head_projections[0][0].weight.grad.abs().sum() > 0  # extra heads train
    # epoch means decide the primary heads (here fed directly)
    m._cons_sum, m._cons_n = None, 0
    fake = [torch.tensor([[3.0, 1.0, 2.0, 4.0], [0.5, 0.7, 0.2, 0.9]])] * 2
    for f in fake:
        m.objective(torch.tensor(0.0), {**out, "consistency": f})
    assert m.end_epoch() == {"primary_heads": [1, 2]}
    assert m.align.primary.tolist() == [1, 2]
    assert m._cons_sum is None  # reset for the next epoch
    # evaluation never computes the consistency loss
    with torch.no_grad():
        assert "consistency" not in m.eval()(_inputs(), progress=None)


@pytest.mark.slow
def test_multi_head_run_logs_primary_heads_and_checkpoints_them(tmp_path):
    out = tmp_path / "heads"
    argv = [*TINY, "--epochs", "3", "--heads", "3", "--semantic", "0.1", "--out", str(out)]
    assert main(argv) == 0
    for k in (0, 1):
        rec = json.loads((out / "tta" / f"fold_{k}" / "result.json").read_text())
        hist = rec["history"]
        assert all(len(h["primary_heads"]) == 2 for h in hist)
        assert all(0 <= p < 3 for h in hist for p in h["primary_heads"])
        assert all(np.isfinite(h["train_consistency"]) for h in hist)
        ckpt = torch.load(out / "tta" / f"fold_{k}" / "checkpoint.pt", weights_only=False)
        sel = [h for h in hist if h["epoch"] == rec["selected_epoch"]][0]
        assert ckpt["model"]["align.primary"].tolist() == sel["primary_heads"]


@pytest.mark.slow
def test_multi_head_resume_reproduces_the_uninterrupted_run(tmp_path):
    args = [*TINY, "--epochs", "3", "--heads", "3"]
    ref = tmp_path / "ref"
    assert main([*args, "--out", str(ref)]) == 0
    out = tmp_path / "int"
    assert main([*args, "--out", str(out), "--interrupt-after", "2"]) == 5
    assert main([*args, "--out", str(out), "--resume"]) == 0
    a = json.loads((ref / "results.json").read_text())
    b = json.loads((out / "results.json").read_text())
    assert [f["c_index"] for f in a["folds"]] == pytest.approx([f["c_index"] for f in b["folds"]])


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--heads", "0"], "--heads must be an integer >= 1"),
        (["--semantic", "-0.1"], "--semantic must be a number >= 0"),
        (["--semantic", "nan"], "--semantic must be a number >= 0"),
        (["--consistency-weight", "inf"], "--consistency-weight must be a number >= 0"),
        (["--rho-eval", "0"], "--rho-eval must be a number in (0, 1]"),
    ],
)
def test_bad_option_values_are_refused(argv, fragment, capsys, tmp_path):
    assert main([*TINY, *argv, "--out", str(tmp_path / "x")]) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--method", "mcat", "--heads", "5"], "--heads configure the TTA model"),
        (["--method", "coxnet", "--rho-eval", "0.106"], "--method coxnet does not use them"),
        (["--method", "late_concat", "--semantic", "0.1", "--together-weight", "1"], "--semantic"),
        (["--consistency-weight", "0.1"], "needs --heads >= 2, got --heads 1"),
        (["--no-together", "--semantic", "0.1"], "drop --semantic or --no-together"),
        (["--method", "tta_no_together", "--semantic", "0.1"], "no-Together ablation"),
        (["--method", "mmp", "--explain", "TCGA-XX-0001"], "--method mmp has none"),
    ],
)
def test_tta_options_with_a_method_that_ignores_them_are_refused(argv, fragment, capsys, tmp_path):
    assert main([*TINY, *argv, "--out", str(tmp_path / "x")]) == 2
    assert fragment in capsys.readouterr().err


def test_tta_options_are_allowed_with_compare_and_ablations(tmp_path):
    from examples.tta.cli import build_parser, resolve
    from examples.tta.validate import check

    p = build_parser()
    for argv in (
        ["--compare", "--heads", "3", "--semantic", "0.1"],
        ["--no-apart", "--semantic", "0.1", "--rho-eval", "0.5"],
        ["--heads", "2", "--consistency-weight", "0.1"],
    ):
        args = resolve(p.parse_args([*TINY, *argv, "--out", str(tmp_path / "ok")]))
        check(args, p)  # raises on a refusal
