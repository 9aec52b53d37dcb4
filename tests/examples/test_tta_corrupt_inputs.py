"""Truncated or corrupt input files give a clear error that names the file, not a traceback."""

from __future__ import annotations

import zipfile

import pytest

from examples.tta.cli import main
from tests.examples.test_tta_example import _write_cohort

pytestmark = pytest.mark.slow


def _argv(cohort, groups, feats, out):
    return [
        "--cohort-csv", str(cohort), "--groups", str(groups), "--features-dir", str(feats),
        "--modalities", "wsi,rna", "--epochs", "1", "--folds", "2", "--bag-size", "16",
        "--dim", "16", "--prototypes", "4", "--quiet", "--out", str(out),
    ]  # fmt: skip


def test_truncated_cohort_zip_names_the_file(tmp_path, capsys):
    cohort, groups, feats = _write_cohort(tmp_path, n=8)
    zipped = tmp_path / "cohort.csv.zip"
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(cohort, arcname="cohort.csv")
    data = zipped.read_bytes()
    zipped.write_bytes(data[: len(data) // 2])  # an interrupted download
    assert main(_argv(zipped, groups, feats, tmp_path / "o")) == 6
    err = capsys.readouterr().err
    assert str(zipped) in err and "truncated or corrupt" in err
    assert not (tmp_path / "o" / "results.json").exists()


def test_garbage_group_file_names_the_file(tmp_path, capsys):
    cohort, groups, feats = _write_cohort(tmp_path, n=8)
    groups.write_bytes(b"\xff\xfe\x00garbage\x00" * 50)  # not text at all
    assert main(_argv(cohort, groups, feats, tmp_path / "o")) == 6
    assert str(groups) in capsys.readouterr().err


def test_truncated_feature_file_names_the_slide(tmp_path, capsys):
    # 24 patients: 2 test folds of 12, above the minimum fold size, so training starts
    cohort, groups, feats = _write_cohort(tmp_path, n=24)
    victim = next((feats / "pt_files").glob("*.pt"))
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    assert main(_argv(cohort, groups, feats, tmp_path / "o")) == 4
    assert victim.stem in capsys.readouterr().err
