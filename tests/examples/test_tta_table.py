"""examples/tta/table.py: method x cohort tables from finished run folders."""

from __future__ import annotations

import pytest

from examples.tta import table
from examples.tta.cli import main as run

TINY = ["--synthetic-patients", "40", "--folds", "2", "--quiet", "--dim", "8", "--epochs", "1"]
TINY += ["--bag-size", "8", "--prototypes", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, extra in {
        "a_late": ["--method", "late_concat"],
        "a_abmil": ["--method", "abmil"],
        "b_late": ["--method", "late_concat", "--seed", "3"],
        "other": ["--method", "abmil", "--synthetic-patients", "44"],
    }.items():
        argv = [*TINY, *extra, "--out", str(root / name)]
        assert run(argv) == 0
    return root


@pytest.mark.slow
def test_runs_sharing_a_label_merge_into_one_column(runs, capsys):
    code = table.main(
        [f"A={runs / 'a_late'}", f"A={runs / 'a_abmil'}", f"B={runs / 'b_late'}", "--markdown"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("| method | A | B | mean | wall |") == 3  # C, Uno, IBS
    c_table = out.split("Uno's C")[0]
    late = [ln for ln in c_table.splitlines() if ln.startswith("| late_concat |")][0]
    abmil = [ln for ln in c_table.splitlines() if ln.startswith("| abmil |")][0]
    assert late.split(" | ")[3] != "-"  # ran on both labels: a mean over labels
    assert abmil.split(" | ")[2] == "-" and abmil.split(" | ")[3] == "-"  # not run on B


@pytest.mark.slow
def test_runs_on_other_folds_under_one_label_are_refused(runs, capsys):
    assert table.main([f"A={runs / 'a_late'}", f"A={runs / 'other'}"]) == 2
    assert "other patients" in capsys.readouterr().err


def test_a_folder_without_results_is_named(tmp_path, capsys):
    assert table.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ERROR:") and str(tmp_path) in err


def test_unknown_metric_is_refused(tmp_path, capsys):
    assert table.main([str(tmp_path), "--metrics", "auc"]) == 2
    assert "--metrics" in capsys.readouterr().err


@pytest.mark.slow
def test_methods_choose_and_order_the_rows(runs, capsys):
    argv = [f"A={runs / 'a_late'}", f"A={runs / 'a_abmil'}", "--methods", "abmil,late_concat"]
    assert table.main([*argv, "--metrics", "c_index"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln.split()[0] for ln in lines if ln.startswith(("abmil", "late_concat", "mcat"))]
    assert rows == ["abmil", "late_concat"]
    assert table.main([f"A={runs / 'a_late'}", "--methods", "mcat"]) == 2
    assert "--methods names mcat" in capsys.readouterr().err
