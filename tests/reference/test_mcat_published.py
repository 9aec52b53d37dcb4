"""Reproduce MCAT's published numbers (ICCV 2021) from its own per-patient validation risks.

Data: ``MCAT/derived_from_pkl/<run>/tcga_<cohort>_fold<k>_val_risk.csv`` (MCAT's result pickles
converted to CSV: case_id, risk, disc_label, survival_months, censorship with 1 = censored) and
``MCAT/results/ICCV/<run>/{cindex.csv, tcga_<cohort>_*/summary_latest.csv}``. Skipped when the
shared TCGA tables are absent.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

import minmaxfuse.survival as S

RUN = "MCATsm_nll_surv_a0.0_5foldcv_gc32_concat"
COHORTS = ["blca", "brca", "gbmlgg", "luad", "ucec"]


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _fold(tcga, cohort, k):
    rows = _read_csv(
        tcga / "MCAT" / "derived_from_pkl" / RUN / f"tcga_{cohort}_fold{k}_val_risk.csv"
    )
    risk = np.array([float(r["risk"]) for r in rows])
    time = np.array([float(r["survival_months"]) for r in rows])
    event = np.array([float(r["censorship"]) for r in rows]) == 0.0  # censorship 1 = censored
    label = np.array([int(r["disc_label"]) for r in rows])
    return event, time, risk, label


def _published(tcga, cohort):
    results = tcga / "MCAT" / "results" / "ICCV" / RUN
    with open(results / "cindex.csv", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        row = next(r for r in reader if r[0] == cohort)
    summary = dict(zip(header, row))
    (run_dir,) = list(results.glob(f"tcga_{cohort}_*"))
    folds = [float(r["val_cindex"]) for r in _read_csv(run_dir / "summary_latest.csv")]
    return summary, np.array(folds)


@pytest.mark.data
@pytest.mark.parametrize("cohort", COHORTS)
def test_per_fold_cindex_and_summary_reproduced(tcga, cohort):
    summary, folds = _published(tcga, cohort)
    ours = np.array(
        [
            S.concordance_index(event=e, time=t, risk=r)
            for e, t, r, _ in (_fold(tcga, cohort, k) for k in range(5))
        ]
    )
    # every published digit (the CSVs hold 16-17 significant digits)
    np.testing.assert_allclose(ours, folds, rtol=0, atol=1e-15)
    assert abs(ours.mean() - float(summary["Val C-Index (Mean)"])) <= 1e-15
    assert abs(ours.std(ddof=0) - float(summary["Val C-Index (STD)"])) <= 1e-15
    assert abs(ours.max() - float(summary["Val C-Index (Max)"])) <= 1e-15
    assert int(np.argmax(ours)) == int(summary["val_idx"])


@pytest.mark.data
@pytest.mark.parametrize("cohort", COHORTS)
def test_pooled_cindex_and_logrank_p_value_reproduced(tcga, cohort):
    summary, _ = _published(tcga, cohort)
    folds = [_fold(tcga, cohort, k) for k in range(5)]
    event = np.concatenate([f[0] for f in folds])
    time = np.concatenate([f[1] for f in folds])
    risk = np.concatenate([f[2] for f in folds])
    pooled = S.concordance_index(event=event, time=time, risk=risk)
    assert abs(pooled - float(summary["C-Index (All)"])) <= 1e-15
    # MCAT's P-Value: log-rank test of high (risk >= median) vs low risk over the pooled folds
    group = risk >= np.median(risk)
    p = S.logrank_test(event=event, time=time, group=group).p_value
    np.testing.assert_allclose(p, float(summary["P-Value"]), rtol=1e-9)


@pytest.mark.data
@pytest.mark.parametrize("cohort", ["blca", "brca", "luad", "ucec"])
def test_mcat_time_bins_reproduced(tcga, cohort):
    # MCAT fits the bins on the whole cohort; the 5 validation folds together are that cohort
    # here (not for gbmlgg, whose bins were fit on patients that are absent from the results).
    folds = [_fold(tcga, cohort, k) for k in range(5)]
    event = np.concatenate([f[0] for f in folds])
    time = np.concatenate([f[1] for f in folds])
    label = np.concatenate([f[3] for f in folds])
    edges = S.discretize_time(time, event, n_bins=4, outer="data")
    np.testing.assert_array_equal(S.assign_time_bins(time, edges), label)
