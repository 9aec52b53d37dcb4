"""End-to-end runs of examples/tta_tcga.py (in-process via ``main(argv)``), kept small."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from examples.tta.cli import main
from examples.tta.peers import peer_names
from examples.tta.report import explain_patient

pytestmark = pytest.mark.slow  # each test trains small models end to end (seconds each)

TINY = [
    "--synthetic-patients",
    "60",
    "--folds",
    "2",
    "--quiet",
    "--dim",
    "16",
    "--prototypes",
    "4",
    "--bag-size",
    "32",
]


def _results(out):
    return json.loads((out / "results.json").read_text())


def test_default_synthetic_run_outputs(tmp_path):
    out = tmp_path / "run"
    assert main([*TINY, "--epochs", "1", "--out", str(out)]) == 0
    res = _results(out)
    assert {"c_index_mean", "c_index_std", "folds", "config"} <= set(res)
    assert [f["fold"] for f in res["folds"]] == [0, 1]
    for f in res["folds"]:
        assert 0.0 <= f["c_index"] <= 1.0
        assert "c_index_uno" in f and "ibs" in f
    assert np.isclose(res["c_index_mean"], np.mean([f["c_index"] for f in res["folds"]]))
    cfg = res["config"]
    assert cfg["epochs"] == 1 and cfg["modalities"] == ["wsi", "rna"]
    assert cfg["n_patients"] == 60
    for f in cfg["folds"]:  # val carved from train, test untouched
        assert f["n_train"] + f["n_val"] + f["n_test"] == 60
    risks = pd.read_csv(out / "test_risks.csv")
    assert len(risks) == 60 and risks["case_id"].is_unique  # every patient tested exactly once
    assert set(risks["risk_group"]) <= {"high", "low"}
    for k in (0, 1):
        ckpt = torch.load(out / "tta" / f"fold_{k}" / "checkpoint.pt", weights_only=False)
        assert ckpt["fold"] == k and ckpt["modalities"] == ["wsi", "rna"]
        assert not (out / "tta" / f"fold_{k}" / "state.pt").exists()
    assert (out / "km.png").stat().st_size > 0
    assert (out / "training_curves.png").stat().st_size > 0


def test_compare_runs_every_method_on_the_same_folds(tmp_path):
    out = tmp_path / "cmp"
    assert main([*TINY, "--epochs", "1", "--compare", "--out", str(out)]) == 0
    res = _results(out)
    methods = res["config"]["methods"]
    assert methods == [
        "tta",
        "tta_no_together",
        "tta_no_apart",
        "late_concat",
        "single_wsi",
        "single_rna",
        *peer_names(),
        "coxnet",
    ]
    risks = pd.read_csv(out / "test_risks.csv")
    test_sets = {m: set(g["case_id"]) for m, g in risks.groupby("method")}
    assert len({frozenset(s) for s in test_sets.values()}) == 1
    for m in methods:
        s = res["methods"][m]
        assert s["n_folds"] == 2 and np.isfinite(s["c_index_mean"])
    assert all("alpha" in f for f in res["methods"]["coxnet"]["folds"])  # penalty chosen on val


def test_nan_loss_stops_with_a_clear_message(tmp_path, capsys):
    out = tmp_path / "nan"
    code = main([*TINY, "--epochs", "2", "--inject-nan-step", "0", "--out", str(out)])
    assert code == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "fold 0" in err and "step 0" in err
    assert "survival=" in err and "together=" in err  # names the terms
    assert not (out / "results.json").exists()


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tmp_path):
    args = [*TINY, "--epochs", "2"]
    ref = tmp_path / "ref"
    assert main([*args, "--out", str(ref)]) == 0
    out = tmp_path / "int"
    assert main([*args, "--out", str(out), "--interrupt-after", "1"]) == 5
    assert (out / "tta" / "fold_0" / "state.pt").exists()  # mid-fold training state saved
    assert not (out / "results.json").exists()
    assert main([*args, "--out", str(out), "--resume"]) == 0
    a, b = _results(ref), _results(out)
    assert [f["c_index"] for f in a["folds"]] == pytest.approx([f["c_index"] for f in b["folds"]])
    # a second --resume reuses every finished fold (no retraining)
    mtime = (out / "tta" / "fold_1" / "result.json").stat().st_mtime_ns
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert (out / "tta" / "fold_1" / "result.json").stat().st_mtime_ns == mtime


def test_drop_modality_scores_the_same_folds(tmp_path):
    out = tmp_path / "drop"
    code = main(
        [*TINY, "--epochs", "1", "--drop-modality", "rna", "--drop-frac", "0.5", "--out", str(out)]
    )
    assert code == 0
    res = _results(out)
    assert all("c_index_dropped" in f for f in res["folds"])


# ------------------------------------------------------------------ WSI path from feature files
def _write_cohort(tmp_path, n=24, d=8, seed=0):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(12)]
    rows = []
    (tmp_path / "feats" / "pt_files").mkdir(parents=True)
    for i in range(n):
        case = f"TCGA-XX-{i:04d}"
        slides = [f"{case}-01Z-00-DX1.AAA.svs"] + (
            [f"{case}-01Z-00-DX2.BBB.svs"] if i % 5 == 0 else []
        )
        expr = rng.normal(size=len(genes))
        t = float(rng.exponential(20.0)) + 0.5
        cens = int(rng.random() < 0.4)
        for j, s in enumerate(slides):
            feats = rng.normal(size=(int(rng.integers(5, 40)), d)).astype(np.float32)
            stem = s[: -len(".svs")]
            if (i + j) % 2 == 0:  # CLAM .pt layout
                torch.save(torch.from_numpy(feats), tmp_path / "feats" / "pt_files" / f"{stem}.pt")
            else:  # .h5 layout with coords
                with h5py.File(tmp_path / "feats" / f"{stem}.h5", "w") as f:
                    f["features"] = feats
                    f["coords"] = rng.integers(0, 5000, size=(len(feats), 2))
            row = {
                "case_id": case,
                "slide_id": s,
                "age": 60 + i % 7,
                "is_female": i % 2,
                "survival_months": t,
                "censorship": cens,
            }
            row.update({f"{g}_rnaseq": v for g, v in zip(genes, expr)})
            rows.append(row)
    pd.DataFrame(rows).to_csv(tmp_path / "cohort.csv", index=False)
    groups = pd.DataFrame(
        {
            "PATH_A": genes[:5] + [None] * 2,
            "PATH_B": genes[4:11],
            "PATH_EMPTY": ["NOPE"] + [None] * 6,
        }
    )
    groups.to_csv(tmp_path / "groups.csv", index=False)
    return tmp_path / "cohort.csv", tmp_path / "groups.csv", tmp_path / "feats"


def test_wsi_rna_from_pt_and_h5_files_two_epochs(tmp_path):
    cohort, groups, feats = _write_cohort(tmp_path)
    out = tmp_path / "wsi"
    argv = [
        "--cohort-csv",
        str(cohort),
        "--groups",
        str(groups),
        "--features-dir",
        str(feats),
        "--modalities",
        "wsi,rna",
        "--epochs",
        "2",
        "--folds",
        "2",
        "--bag-size",
        "16",
        "--dim",
        "16",
        "--prototypes",
        "4",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    res = _results(out)
    assert len(res["folds"]) == 2 and res["config"]["n_patients"] == 24
    assert res["config"]["groups"]["rna"]["dropped"] == ["PATH_EMPTY"]
    assert res["config"]["groups"]["rna"]["names"] == ["PATH_A", "PATH_B"]
    # interpretability outputs: token x prototype table, per-patch weights with .h5 coords
    fold0 = out / "tta" / "fold_0"
    table = pd.read_csv(fold0 / "token_prototype_rna.csv")
    assert list(table["token"]) == ["PATH_A", "PATH_B"] and table.shape[1] == 1 + 4
    np.testing.assert_allclose(table.iloc[:, 1:].sum(1), 1.0, atol=1e-3)
    patches = pd.read_csv(fold0 / "patch_weights.csv")
    assert {"case_id", "x", "y", "mass", "top_prototype"} <= set(patches.columns)
    case = patches["case_id"].iloc[0]
    text = explain_patient(out, "tta", case)
    assert case in text and "[wsi]" in text and "PATH_" in text
    # a missing slide file: clear error naming the slide, or skipped and counted
    victim = next((feats / "pt_files").glob("*.pt"))
    victim.unlink()
    code = main([*argv, "--out", str(tmp_path / "miss")])
    assert code == 4
    code = main([*argv, "--skip-missing", "--epochs", "1", "--out", str(tmp_path / "skip")])
    assert code == 0
    cfg = _results(tmp_path / "skip")["config"]
    assert cfg["n_missing_feature_patients"] == 1 and cfg["n_patients"] == 23


def test_missing_slide_error_names_it(tmp_path, capsys):
    cohort, groups, feats = _write_cohort(tmp_path, n=6)
    victim = next((feats / "pt_files").glob("*.pt"))
    victim.unlink()
    code = main(
        [
            "--cohort-csv",
            str(cohort),
            "--groups",
            str(groups),
            "--features-dir",
            str(feats),
            "--modalities",
            "wsi,rna",
            "--quiet",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 4
    assert victim.stem in capsys.readouterr().err


# ------------------------------------------------------------------ real data smoke test
@pytest.mark.data
def test_real_blca_rna_cnv_two_steps(tcga, tmp_path):
    out = tmp_path / "blca"
    argv = [
        "--cohort-csv",
        str(tcga / "PORPOISE/datasets_csv_mutsig/tcga_blca_all_clean.csv.zip"),
        "--splits",
        str(tcga / "MCAT/splits/5foldcv/tcga_blca"),
        "--modalities",
        "rna,cnv",
        "--tcga",
        str(tcga),
        "--folds",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "100",  # 238 fit patients -> 2 steps
        "--dim",
        "32",
        "--prototypes",
        "8",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    res = _results(out)
    f = res["folds"][0]
    assert f["n_test"] == 75 and f["n_train"] + f["n_val"] == 298
    assert (
        res["config"]["groups"]["rna"]["sizes"]
        and len(res["config"]["groups"]["cnv"]["names"]) == 6
    )
    hist = json.loads((out / "tta" / "fold_0" / "result.json").read_text())["history"]
    assert len(hist) == 1 and np.isfinite(hist[0]["train_loss"])


@pytest.mark.gpu
def test_cuda_bf16_run(tmp_path):
    out = tmp_path / "cuda"
    assert main([*TINY, "--epochs", "1", "--device", "cuda", "--out", str(out)]) == 0
    res = _results(out)
    assert res["config"]["device_used"].startswith("cuda")
    assert all(np.isfinite(f["c_index"]) for f in res["folds"])


def test_nll_loss_bins_from_training_fold(tmp_path):
    out = tmp_path / "nll"
    assert main([*TINY, "--epochs", "1", "--loss", "nll", "--n-bins", "4", "--out", str(out)]) == 0
    res = _results(out)
    assert all(np.isfinite(f["c_index"]) for f in res["folds"])
    ckpt = torch.load(out / "tta" / "fold_0" / "checkpoint.pt", weights_only=False)
    edges = np.asarray(ckpt["bin_edges"])
    assert edges.shape == (5,) and np.all(np.diff(edges) > 0)
    # inner edges are quantiles of the event times of the TRAINING fold (fit + val) only
    fold = res["config"]["folds"][0]
    assert fold["n_train"] + fold["n_val"] + fold["n_test"] == 60
    risks = pd.read_csv(out / "test_risks.csv")
    test_ids = set(risks.loc[risks["fold"] == 0, "case_id"])
    from examples.tta.protocol import synthetic_dataset
    from minmaxfuse.survival import discretize_time

    ds = synthetic_dataset(60, 1)
    train = np.array([c not in test_ids for c in ds.case_ids])
    expected = discretize_time(ds.time[train], ds.event[train], n_bins=4)
    np.testing.assert_allclose(edges[1:-1], np.asarray(expected)[1:-1], rtol=1e-6)
