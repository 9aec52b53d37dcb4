"""Data layer of examples/tta: real TCGA table readers, splits, scalers, WSI feature files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from examples.tta.data import (
    FeatureStore,
    Fold,
    FoldScaler,
    MissingFeatureError,
    build_folds,
    build_groups,
    carve_validation,
    fold_omics,
    make_folds,
    pack_groups,
    read_cohort,
    read_group_file,
    read_labels,
    read_split_files,
)

PORPOISE = "PORPOISE/datasets_csv_mutsig/tcga_{}_all_clean.csv.zip"


# ------------------------------------------------------------------ real tables (tcga fixture)
@pytest.mark.data
def test_blca_table_patient_level_and_event_conversion(tcga):
    path = tcga / PORPOISE.format("blca")
    c = read_cohort(path, modalities=["rna", "cnv", "mut", "clinical"])
    raw = pd.read_csv(path)
    assert len(c) == raw["case_id"].nunique() == 373  # one row per slide -> one per patient
    # event = 1 - censorship, per patient, converted explicitly
    cens = raw.groupby("case_id")["censorship"].first().loc[list(c.case_ids)].to_numpy()
    np.testing.assert_array_equal(c.event, cens == 0)
    assert int(c.event.sum()) == 169  # peers.md §8.3: BLCA 169 events
    months = raw.groupby("case_id")["survival_months"].first().loc[list(c.case_ids)].to_numpy()
    np.testing.assert_allclose(c.time, months)
    n_rna = sum(col.endswith("_rnaseq") for col in raw.columns)
    assert c.omics["rna"].shape == (373, n_rna)
    assert not any(g.endswith("_rnaseq") for g in c.omics["rna"].columns)  # suffix stripped
    assert list(c.omics["clinical"].columns) == ["age", "is_female"]
    # a patient with two slides keeps both slide ids
    multi = raw.groupby("case_id")["slide_id"].nunique()
    cid = multi[multi > 1].index[0]
    assert len(c.slides[cid]) == multi[cid]


@pytest.mark.data
def test_group_files_drop_unmeasured_groups(tcga):
    c = read_cohort(tcga / PORPOISE.format("blca"), modalities=["rna", "cnv"])
    hall = read_group_file(tcga / "SurvPath/datasets_csv/metadata/hallmarks_signatures.csv")
    assert len(hall) == 50
    spec = build_groups(list(c.omics["rna"].columns), hall)
    assert len(spec.names) + len(spec.dropped) == 50
    genes = list(c.omics["rna"].columns)
    for name, idx in zip(spec.names, spec.index):  # every token gathers exactly its genes
        assert {genes[i] for i in idx} == set(hall[name]) & set(genes)
    # a group file where one group has no measured gene: dropped and reported
    fake = dict(hall)
    fake["NOT_MEASURED"] = ["NOPE1", "NOPE2"]
    spec2 = build_groups(genes, fake)
    assert "NOT_MEASURED" in spec2.dropped and "NOT_MEASURED" not in spec2.names
    x, valid = pack_groups(c.omics["rna"].to_numpy(), spec)
    assert x.shape == (373, len(spec.names), max(spec.sizes))
    assert valid.sum() == sum(spec.sizes)
    assert np.all(x[:, ~valid] == 0)


@pytest.mark.data
def test_mcat_splits_disjoint_and_val_carved_from_train(tcga):
    c = read_cohort(tcga / PORPOISE.format("luad"), modalities=["rna"])
    folds = build_folds(c, splits=tcga / "MCAT/splits/5foldcv/tcga_luad", val_frac=0.2, seed=3)
    assert len(folds) == 5
    all_test = []
    for f in folds:
        f.check_disjoint()
        tr, te = read_split_files(tcga / "MCAT/splits/5foldcv/tcga_luad", f.k)
        assert set(f.test) == set(te) & set(c.case_ids)  # the 'val' column is the test fold
        assert set(f.train) | set(f.val) == set(tr) & set(c.case_ids)
        frac = len(f.val) / (len(f.val) + len(f.train))
        assert 0.15 < frac < 0.25
        all_test += f.test
    assert len(all_test) == len(set(all_test)) == len(c)  # test folds partition the cohort


@pytest.mark.data
def test_mmp_splits_and_dss_labels_in_days(tcga):
    d = tcga / "MMP/src/splits/survival/TCGA_BLCA_overall_survival_k={k}"
    files = [str(d).format(k=0) + "/train.csv", str(d).format(k=0) + "/test.csv"]
    lab = read_labels(files, "dss")
    assert lab["unit"].iloc[0] == "days" and lab["event"].dtype == bool
    c = read_cohort(tcga / PORPOISE.format("blca"), modalities=["rna"], endpoint="dss", labels=lab)
    assert len(c) == 359 and c.time_unit == "days"  # peers.md §8.3: 359 DSS patients
    assert int(c.event.sum()) == 113
    folds = build_folds(c, splits=str(d))  # the '{k}' template form
    folds0 = build_folds(c, splits=str(d).format(k=0))  # the '..._k=0' form
    assert [f.test for f in folds] == [f.test for f in folds0]
    site = dict(zip(c.case_ids, c.site))
    for f in folds:
        f.check_disjoint()
        # MMP folds are site-stratified: no tissue-source site in both train and test
        assert not ({site[x] for x in f.test} & {site[x] for x in f.train + f.val})


@pytest.mark.data
def test_scaler_fitted_on_training_patients_only(tcga):
    c = read_cohort(tcga / PORPOISE.format("blca"), modalities=["rna", "cnv"])
    fold = build_folds(c, splits=tcga / "MCAT/splits/5foldcv/tcga_blca")[0]
    groups = {
        "rna": build_groups(
            list(c.omics["rna"].columns),
            read_group_file(tcga / "SurvPath/datasets_csv/metadata/hallmarks_signatures.csv"),
        ),
        "cnv": build_groups(
            list(c.omics["cnv"].columns),
            read_group_file(tcga / "MCAT/datasets_csv_sig/signatures.csv"),
        ),
    }
    train = fold.train + fold.val
    view = fold_omics(c, groups, train)
    tr, te = c.index_of(train), c.index_of(fold.test)
    z = view.flat["rna"]
    np.testing.assert_allclose(z[tr].mean(0), 0.0, atol=1e-4)
    # changing the TEST patients' raw values must not change anything for training patients
    c2 = c.subset(list(c.case_ids))
    c2.omics = {m: t.copy() for m, t in c.omics.items()}
    c2.omics["rna"].iloc[te] = c2.omics["rna"].iloc[te] * 10 + 5
    view2 = fold_omics(c2, groups, train)
    np.testing.assert_array_equal(view2.flat["rna"][tr], z[tr])
    assert not np.allclose(view2.flat["rna"][te], z[te])


# ------------------------------------------------------------------ synthetic / unit checks
def test_fold_scaler_constant_and_nan_columns():
    x = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, 2.0], [5.0, 5.0, 4.0]])
    s = FoldScaler().fit(x)
    z = s.transform(np.array([[3.0, 7.0, np.nan]]))
    np.testing.assert_allclose(z, [[0.0, 2.0, 0.0]])  # constant col: scale 1; NaN -> mean -> 0


def test_generated_folds_stratified_and_site_grouped():
    rng = np.random.default_rng(0)
    ids = [f"P{i}" for i in range(103)]
    event = rng.random(103) < 0.3
    folds = make_folds(ids, event, n_folds=5, seed=1)
    assert sorted(sum(folds, [])) == sorted(ids)
    ev = dict(zip(ids, event))
    n_ev = [sum(ev[c] for c in f) for f in folds]
    assert max(n_ev) - min(n_ev) <= 1
    site = np.array([f"S{i % 17}" for i in range(103)], dtype=object)
    sfolds = make_folds(ids, event, n_folds=5, seed=1, site=site)
    st = dict(zip(ids, site))
    seen = [{st[c] for c in f} for f in sfolds]
    for i in range(5):
        for j in range(i + 1, 5):
            assert not (seen[i] & seen[j])
    fit, val = carve_validation(ids, event, frac=0.2, seed=0)
    assert not set(fit) & set(val) and len(fit) + len(val) == 103


def test_disjointness_assertion_fires():
    f = Fold(k=0, train=["a", "b"], val=["c"], test=["b", "d"])
    with pytest.raises(AssertionError, match="train and test"):
        f.check_disjoint()


def test_feature_store_pt_h5_concat_and_missing(tmp_path):
    h5py = pytest.importorskip("h5py")
    (tmp_path / "pt_files").mkdir()
    a = torch.randn(5, 4)
    torch.save(a, tmp_path / "pt_files" / "S1.pt")
    b = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    coords = np.arange(6).reshape(3, 2)
    with h5py.File(tmp_path / "S2.h5", "w") as f:
        f["features"] = b[None]  # (1, N, D) layout is accepted
        f["coords"] = coords
    store = FeatureStore(tmp_path)
    feats, co = store.patient("P1", ["S1.svs", "S2.svs"])
    assert feats.shape == (8, 4)
    torch.testing.assert_close(feats[:5], a)
    assert co is None  # coords only when every slide has them
    feats2, co2 = store.patient("P2", ["S2"])
    assert co2.shape == (3, 2)
    with pytest.raises(MissingFeatureError, match="S9"):
        store.patient("P3", ["S9.svs"])
    (tmp_path / "S4.pt").write_bytes(b"not a tensor")
    with pytest.raises(MissingFeatureError, match="S4"):
        store.patient("P4", ["S4.svs"])
