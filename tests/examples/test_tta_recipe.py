"""The small-cohort recipe: inner-fold ensembles, early stopping, shared epoch, Coxnet inner CV.

Each property is checked on tiny synthetic runs, and the honesty rules are checked by changing
what the test fold holds: nothing a model selects may move.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from examples.tta.cli import main
from examples.tta.data import Fold
from examples.tta.ensemble import Member, combine, member_splits
from examples.tta.recipes import RECIPES, apply_recipe

pytestmark = pytest.mark.slow

from tests.examples.test_tta_example import TINY  # noqa: E402  (the same tiny synthetic run)


def _fold_results(out, method="tta"):
    return [json.loads((out / method / f"fold_{k}" / "result.json").read_text()) for k in (0, 1)]


class _Data:
    def __init__(self, ids, event):
        self.pos = {c: i for i, c in enumerate(ids)}
        self.event = np.asarray(event, bool)

    def rows(self, ids):
        return np.array([self.pos[c] for c in ids], dtype=np.int64)


@pytest.mark.parametrize("n_members", [2, 3, 5, 7])
def test_member_splits_partition_the_training_fold(n_members):
    ids = [f"P{i:03d}" for i in range(100)]
    event = np.arange(100) % 3 == 0
    fold = Fold(k=1, train=ids[:60], val=ids[60:80], test=ids[80:])
    data = _Data(ids, event)
    splits = member_splits(fold, data, n_members, val_frac=0.2, seed=4)
    assert len(splits) == n_members
    outer = set(data.rows(ids[:80]).tolist())
    test = set(data.rows(ids[80:]).tolist())
    vals = []
    for fit, val in splits:
        assert not (set(fit) | set(val)) & test  # the test fold is never touched
        assert set(fit) | set(val) == outer and not set(fit) & set(val)
        vals.append(set(val.tolist()))
    for i in range(n_members):  # validation parts are disjoint (one cycle of inner folds)
        for j in range(i):
            assert not vals[i] & vals[j]
    # inner folds are stratified by event: every validation part has events
    assert all(data.event[list(v)].any() for v in vals)


def test_one_member_keeps_the_fold_carve():
    ids = [f"P{i}" for i in range(10)]
    fold = Fold(k=0, train=ids[:6], val=ids[6:8], test=ids[8:])
    ((fit, val),) = member_splits(fold, _Data(ids, [True] * 10), 1, val_frac=0.2, seed=0)
    assert fit.tolist() == list(range(6)) and val.tolist() == [6, 7]


def test_combine_one_member_is_identity_and_standardises_many():
    r = np.array([0.3, -1.0, 2.0])
    m = Member(0, np.array([]), np.array([]), train_mean=0.5, train_sd=2.0)
    np.testing.assert_allclose(combine([m], lambda _: r), r)
    # two members whose risks differ only by an affine map combine to the same ranking
    a = Member(0, np.array([]), np.array([]), train_mean=0.0, train_sd=1.0)
    b = Member(1, np.array([]), np.array([]), train_mean=10.0, train_sd=5.0)
    out = combine([a, b], lambda m: r if m.index == 0 else 10.0 + 5.0 * r)
    np.testing.assert_allclose(out, r * 3.0 + 5.0)  # mean z (= r) on the mean scale and shift


def test_recipe_fills_only_unset_flags():
    args = SimpleNamespace(recipe="auto", dim=8, **{k: None for k in RECIPES["tta"] if k != "dim"})
    filled = apply_recipe(args, synthetic=False)
    assert args.recipe == "small-cohort" and args.dim == 8 and "dim" not in filled
    for k, v in RECIPES["small-cohort"].items():
        if k != "dim":
            assert getattr(args, k) == v
    args = SimpleNamespace(recipe="auto", **{k: None for k in RECIPES["tta"]})
    apply_recipe(args, synthetic=True)
    assert args.recipe == "synthetic" and args.epochs == RECIPES["synthetic"]["epochs"]


def test_ensemble_run_records_members(tmp_path):
    out = tmp_path / "ens"
    argv = [*TINY, "--epochs", "3", "--ensemble", "3", "--out", str(out)]
    assert main(argv) == 0
    for rec in _fold_results(out):
        assert rec["n_members"] == 3 and len(rec["members"]) == 3
        n_outer = rec["n_train"] + rec["n_val"]
        for m in rec["members"]:
            assert m["n_fit"] + m["n_val"] == n_outer
            assert 0 <= m["selected_epoch"] < 3
        assert np.isfinite(rec["c_index"])
    for k in (0, 1):  # per-member files are temporary
        fdir = out / "tta" / f"fold_{k}"
        assert not list(fdir.glob("member_*.pt")) and not list(fdir.glob("state*.pt"))


def test_shared_epoch_is_the_best_mean_validation_epoch(tmp_path):
    out = tmp_path / "shared"
    argv = [*TINY, "--epochs", "4", "--ensemble", "3", "--ensemble-select", "shared"]
    assert main([*argv, "--out", str(out)]) == 0
    for rec in _fold_results(out):
        sel = {m["selected_epoch"] for m in rec["members"]}
        assert len(sel) == 1 and all(m["epochs_run"] == 4 for m in rec["members"])


def test_patience_stops_early_and_never_past_the_rule(tmp_path):
    out = tmp_path / "pat"
    assert (
        main([*TINY, "--epochs", "12", "--patience", "1", "--lr", "0.05", "--out", str(out)]) == 0
    )
    for rec in _fold_results(out):
        hist = rec["history"]
        vc = [h["val_c_index"] for h in hist]
        best = rec["selected_epoch"]
        assert vc[best] == max(vc)  # the selected epoch is the best validation epoch seen
        if len(hist) < 12:  # stopped early: exactly `patience` epochs without improvement
            assert len(hist) - 1 - best == 1


def test_ensemble_and_coxnet_ignore_the_test_fold(tmp_path, monkeypatch):
    """Shuffling the test fold's labels changes no selection and no training-fold risk."""
    import examples.tta.protocol as protocol

    orig = protocol.synthetic_dataset

    def scrambled(n, seed):
        ds = orig(n, seed)
        folds = protocol.make_folds(ds.case_ids, ds.event, n_folds=2, seed=1)
        test = np.isin(ds.case_ids, folds[0])
        rng = np.random.default_rng(0)
        ds.time = ds.time.copy()
        ds.time[test] = rng.permutation(ds.time[test]) * 3.0
        return ds

    argv = [*TINY, "--epochs", "3", "--ensemble", "2", "--method", "tta"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*argv, "--out", str(a)]) == 0
    monkeypatch.setattr(protocol, "synthetic_dataset", scrambled)
    assert main([*argv, "--out", str(b)]) == 0
    ra, rb = _fold_results(a)[0], _fold_results(b)[0]
    assert ra["members"] == rb["members"]  # same selected epochs and validation scores
    pa = {p["case_id"]: p["risk"] for p in ra["patients"]}
    pb = {p["case_id"]: p["risk"] for p in rb["patients"]}
    assert pa == pb  # same models, so the same test risks
    # Coxnet: same penalty and training risks when only test labels change
    argv_cx = [*TINY, "--method", "coxnet", "--epochs", "1"]
    monkeypatch.setattr(protocol, "synthetic_dataset", orig)
    assert main([*argv_cx, "--out", str(tmp_path / "ca")]) == 0
    monkeypatch.setattr(protocol, "synthetic_dataset", scrambled)
    assert main([*argv_cx, "--out", str(tmp_path / "cb")]) == 0
    ca, cb = (
        _fold_results(tmp_path / "ca", "coxnet")[0],
        _fold_results(tmp_path / "cb", "coxnet")[0],
    )
    assert ca["alpha"] == cb["alpha"] and ca["val_c_index"] == cb["val_c_index"]


def test_ensemble_resume_after_interrupt_matches_uninterrupted(tmp_path):
    argv = [*TINY, "--epochs", "3", "--ensemble", "2"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*argv, "--out", str(full)]) == 0
    assert main([*argv, "--out", str(cut), "--interrupt-after", "2"]) != 0
    assert main([*argv, "--out", str(cut), "--resume"]) == 0
    for ra, rb in zip(_fold_results(full), _fold_results(cut)):
        assert ra["c_index"] == rb["c_index"] and ra["members"] == rb["members"]


def test_groups_columns_gives_one_token_per_column(tmp_path):
    """``--groups cnv=columns``: every CNV column becomes its own scalar token."""
    from tests.examples.test_tta_cli_errors import _cohort_frame

    cohort = tmp_path / "cohort.csv"
    _cohort_frame().to_csv(cohort, index=False)
    groups = tmp_path / "groups.csv"
    pd.DataFrame({"A": ["G0", "G1", "G2"], "B": ["G3", "G4", None]}).to_csv(groups, index=False)
    out = tmp_path / "cols"
    argv = ["--cohort-csv", str(cohort), "--modalities", "rna,cnv", "--folds", "2", "--quiet"]
    argv += ["--groups", f"rna={groups},cnv=columns", "--epochs", "1", "--dim", "8"]
    assert main([*argv, "--ensemble", "1", "--threads", "1", "--out", str(out)]) == 0
    cfg = json.loads((out / "results.json").read_text())["config"]
    assert cfg["groups"]["cnv"]["names"] == [f"G{i}" for i in range(6)]
    assert cfg["groups"]["cnv"]["sizes"] == [1] * 6
    assert cfg["groups"]["rna"]["names"] == ["A", "B"]


def test_ensemble_refuses_inner_folds_without_events():
    from examples.tta.errors import ProtocolError

    ids = [f"P{i}" for i in range(30)]
    event = np.zeros(30, bool)
    event[[0, 1, 2]] = True  # 3 events in the training fold, 5 inner folds
    fold = Fold(k=0, train=ids[:20], val=ids[20:25], test=ids[25:])
    with pytest.raises(ProtocolError, match="only 3 events"):
        member_splits(fold, _Data(ids, event), 5, val_frac=0.2, seed=0)


def test_truncated_member_file_gives_the_resume_state_error(tmp_path, capsys):
    argv = [*TINY, "--epochs", "2", "--ensemble", "2"]
    out = tmp_path / "cut"
    assert main([*argv, "--out", str(out), "--interrupt-after", "2"]) != 0
    # member 0 finished epoch 2 of fold 0 and was interrupted: write a broken member file
    (out / "tta" / "fold_0" / "member_0.pt").write_bytes(b"\x80\x02truncated")
    assert main([*argv, "--out", str(out), "--resume"]) == 8
    assert "member_0.pt" in capsys.readouterr().err
