"""Bad invocations of examples/tta_tcga.py: one line ``ERROR: ...``, a documented exit code.

The table :data:`CASES` lists every bad invocation with its exit code and the words the message
must contain. Flag errors fire before any work: the output folder is not even created.
Exit codes (examples/README.md, "Exit codes"): 2 flag/usage, 3 non-finite loss, 4 feature files,
5 testing hook, 6 table, 7 protocol (folds, events, splits), 8 unreadable --resume state,
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from examples.tta.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]

# tiny synthetic run: every accepted invocation would finish in seconds
SYN = [
    "--synthetic-patients", "60", "--folds", "2", "--epochs", "1", "--quiet", "--dim", "16",
    "--prototypes", "4", "--bag-size", "32", "--threads", "1",
]  # fmt: skip
# tiny real-table run (rna tokens from the test's own table and group file)
REAL = [
    "--cohort-csv", "{cohort}", "--groups", "{groups}", "--modalities", "rna", "--folds", "2",
    "--epochs", "1", "--quiet", "--dim", "16", "--prototypes", "4", "--threads", "1",
]  # fmt: skip

N_PATIENTS = 40
GENES = [f"G{i}" for i in range(12)]


def _cohort_frame(n: int = N_PATIENTS, seed: int = 0) -> pd.DataFrame:
    """One row per slide; every 4th patient has two slides (identical per-patient fields)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        case = f"TCGA-ZZ-{i:04d}"
        expr = rng.normal(size=len(GENES)).round(4)
        cnv = rng.integers(-2, 3, size=6)
        base = {
            "case_id": case,
            "age": 50 + i % 20,
            "is_female": i % 2,
            "site": f"S{i % 4}",
            "survival_months": round(float(rng.exponential(30.0)) + 0.5, 3),
            "censorship": int(i % 3 == 0),  # 2 of 3 patients have an event
        }
        base.update({f"{g}_rnaseq": v for g, v in zip(GENES, expr)})
        base.update({f"{g}_cnv": int(v) for g, v in zip(GENES[:6], cnv)})
        for s in ["DX1"] + (["DX2"] if i % 4 == 0 else []):
            rows.append({"slide_id": f"{case}-01Z-00-{s}.AAA.svs", **base})
    cols = ["case_id", "slide_id"] + [c for c in rows[0] if c not in ("case_id", "slide_id")]
    return pd.DataFrame(rows)[cols]


def _splits(root: Path, name: str, pairs) -> Path:
    d = root / name
    d.mkdir()
    for k, (tr, te) in enumerate(pairs):
        n = max(len(tr), len(te))
        pd.DataFrame(
            {"train": list(tr) + [None] * (n - len(tr)), "val": list(te) + [None] * (n - len(te))}
        ).to_csv(d / f"splits_{k}.csv")
    return d


def build_inputs(root: Path) -> dict[str, str]:
    """Write the good tiny inputs and one broken variant per table error; returns the paths."""
    root.mkdir(parents=True, exist_ok=True)
    p: dict[str, Path] = {}
    df = _cohort_frame()
    ids = list(pd.unique(df["case_id"]))

    def table(name: str, frame: pd.DataFrame) -> None:
        p[name] = root / f"{name}.csv"
        frame.to_csv(p[name], index=False)

    table("cohort", df)
    table("missing_cols", df.drop(columns=["case_id", "slide_id", "survival_months"]))
    table("missing_cens", df.drop(columns=["censorship"]))
    bad = df.copy().astype({"survival_months": object})
    bad.loc[5, "survival_months"] = "abc"
    table("time_text", bad)
    bad = df.copy()
    bad.loc[7, "survival_months"] = np.nan
    table("time_nan", bad)
    bad = df.copy()
    bad.loc[3, "survival_months"] = -4.0
    table("time_negative", bad)
    bad = df.copy()
    bad.loc[9, "censorship"] = 2
    table("cens_two", bad)
    bad = df.copy().astype({"G3_rnaseq": object})
    bad.loc[11, "G3_rnaseq"] = "high"
    table("omics_text", bad)
    bad = df.copy()
    bad.loc[12, "G4_rnaseq"] = np.inf
    table("omics_inf", bad)
    bad = df.copy()
    bad.loc[1, "G2_rnaseq"] = 99.0  # row 1 = the second slide of patient 0
    table("omics_conflict", bad)
    bad = df.copy()
    bad.loc[1, "survival_months"] = 1234.0
    table("label_conflict", bad)
    table("no_events", df.assign(censorship=1))
    table("header_only", df.iloc[:0])
    p["empty"] = root / "empty.csv"
    p["empty"].write_bytes(b"")
    table("no_clinical", df.drop(columns=["age", "is_female"]))
    table("labels_bad", pd.DataFrame({"case_id": ids, "months": 1.0}))

    p["groups"] = root / "groups.csv"
    pd.DataFrame({"PATH_A": GENES[:6], "PATH_B": GENES[5:11]}).to_csv(p["groups"], index=False)
    p["groups_none"] = root / "groups_none.csv"
    pd.DataFrame({"PATH_X": ["NOPE1", "NOPE2"]}).to_csv(p["groups_none"], index=False)

    half = len(ids) // 2
    p["splits"] = _splits(root, "splits", [(ids[half:], ids[:half]), (ids[:half], ids[half:])])
    p["splits_overlap"] = _splits(
        root, "splits_overlap", [(ids[15:], ids[:half]), (ids[:half], ids[half:])]
    )
    p["splits_foreign"] = _splits(
        root,
        "splits_foreign",
        [([f"OTHER-{i}" for i in range(20)], [f"X-{i}" for i in range(9)])] * 2,
    )
    p["splits_small"] = _splits(root, "splits_small", [(ids[3:], ids[:3]), (ids[:3], ids[3:])])
    censored = [c for j, c in enumerate(ids) if j % 3 == 0]
    others = [c for c in ids if c not in censored]
    p["splits_no_event"] = _splits(
        root, "splits_no_event", [(others, censored), (censored, others)]
    )
    p["splits_dup"] = _splits(
        root, "splits_dup", [(ids[half:], ids[:half] + ids[:2]), (ids[:half], ids[half:])]
    )
    p["splits_bad_cols"] = root / "splits_bad_cols"
    p["splits_bad_cols"].mkdir()
    pd.DataFrame({"a": ids, "b": ids}).to_csv(p["splits_bad_cols"] / "splits_0.csv")

    p["garbage"] = root / "garbage.csv"
    p["garbage"].write_bytes(bytes(range(256)) * 20)
    p["two_zip"] = root / "two.csv.zip"
    with zipfile.ZipFile(p["two_zip"], "w") as zf:
        zf.write(p["cohort"], "a.csv")
        zf.write(p["cohort"], "b.csv")
    p["one_split"] = root / "one_split"
    p["one_split"].mkdir()
    shutil.copy(p["splits"] / "splits_0.csv", p["one_split"] / "splits_0.csv")
    p["emptydir"] = root / "emptydir"
    p["emptydir"].mkdir()
    p["a_file"] = root / "a_file.txt"
    p["a_file"].write_text("not a directory\n")
    p["missing"] = root / "does_not_exist"
    p["root"] = root
    return {k: str(v) for k, v in p.items()}


def S(*extra: str) -> list[str]:
    """Synthetic tiny run + the bad flags (later flags override earlier ones)."""
    return [*SYN, *extra]


def R(*extra: str) -> list[str]:
    """Real-table tiny run + the bad flags."""
    return [*REAL, *extra]


CUDA = torch.cuda.is_available()

# (id, argv, exit code, fragments the one-line message must contain)
CASES: list[tuple[str, list[str], int, list[str]]] = [
    # ---- numbers out of range (2) ---------------------------------------------------------
    ("epochs-0", S("--epochs", "0"), 2, ["--epochs", ">= 1"]),
    ("epochs-neg", S("--epochs", "-3"), 2, ["--epochs"]),
    ("epochs-text", S("--epochs", "abc"), 2, ["--epochs", "abc"]),
    ("epochs-float", S("--epochs", "1.5"), 2, ["--epochs"]),
    ("folds-1", S("--folds", "1"), 2, ["--folds", ">= 2"]),
    ("folds-0", S("--folds", "0"), 2, ["--folds"]),
    ("batch-1", S("--batch-size", "1"), 2, ["--batch-size", ">= 2"]),
    ("batch-0", S("--batch-size", "0"), 2, ["--batch-size"]),
    ("val-frac-0", S("--val-frac", "0"), 2, ["--val-frac"]),
    ("val-frac-1", S("--val-frac", "1"), 2, ["--val-frac"]),
    ("val-frac-big", S("--val-frac", "1.5"), 2, ["--val-frac"]),
    ("val-frac-neg", S("--val-frac", "-0.1"), 2, ["--val-frac"]),
    ("val-frac-nan", S("--val-frac", "nan"), 2, ["--val-frac"]),
    ("drop-frac-big", S("--drop-modality", "rna", "--drop-frac", "1.5"), 2, ["--drop-frac"]),
    ("drop-frac-neg", S("--drop-modality", "rna", "--drop-frac", "-0.5"), 2, ["--drop-frac"]),
    ("dropout-1", S("--dropout", "1"), 2, ["--dropout"]),
    ("dropout-neg", S("--dropout", "-0.1"), 2, ["--dropout"]),
    ("rho-eval-0", S("--rho-eval", "0"), 2, ["--rho-eval"]),
    ("rho-eval-big", S("--rho-eval", "1.5"), 2, ["--rho-eval"]),
    ("together-weight-neg", S("--together-weight", "-1"), 2, ["--together-weight", ">= 0"]),
    ("apart-weight-neg", S("--apart-weight", "-0.5"), 2, ["--apart-weight"]),
    ("weight-decay-neg", S("--weight-decay", "-1e-5"), 2, ["--weight-decay"]),
    ("grad-clip-neg", S("--grad-clip", "-1"), 2, ["--grad-clip"]),
    ("ramp-neg", S("--ramp-epochs", "-1"), 2, ["--ramp-epochs"]),
    ("ramp-nan", S("--ramp-epochs", "nan"), 2, ["--ramp-epochs"]),
    ("warmup-neg", S("--warmup-epochs", "-2"), 2, ["--warmup-epochs"]),
    ("lr-0", S("--lr", "0"), 2, ["--lr", "> 0"]),
    ("lr-neg", S("--lr", "-1e-3"), 2, ["--lr"]),
    ("lr-inf", S("--lr", "inf"), 2, ["--lr"]),
    ("lr-nan", S("--lr", "nan"), 2, ["--lr"]),
    ("lr-text", S("--lr", "fast"), 2, ["--lr", "fast"]),
    ("dim-0", S("--dim", "0"), 2, ["--dim", ">= 1"]),
    ("dim-neg", S("--dim", "-4"), 2, ["--dim"]),
    ("prototypes-0", S("--prototypes", "0"), 2, ["--prototypes"]),
    ("seed-neg", S("--seed", "-1"), 2, ["--seed", "[0, 4294967295]"]),
    ("seed-huge", S("--seed", str(2**40)), 2, ["--seed"]),
    ("ot-tol-0", S("--ot-tol", "0"), 2, ["--ot-tol"]),
    ("ot-max-iter-0", S("--ot-max-iter", "0"), 2, ["--ot-max-iter"]),
    ("n-bins-1", S("--loss", "nll", "--n-bins", "1"), 2, ["--n-bins"]),
    ("nll-alpha-big", S("--loss", "nll", "--nll-alpha", "2"), 2, ["--nll-alpha"]),
    ("bag-size-neg", S("--bag-size", "-1"), 2, ["--bag-size"]),
    ("min-epoch-neg", S("--min-epoch", "-1"), 2, ["--min-epoch"]),
    ("min-epoch-too-late", S("--epochs", "2", "--min-epoch", "2"), 2, ["--min-epoch", "--epochs"]),
    ("threads-neg", S("--threads", "-1"), 2, ["--threads"]),
    ("synthetic-patients-0", S("--synthetic-patients", "0"), 2, ["--synthetic-patients"]),
    ("inject-nan-neg", S("--inject-nan-step", "-2"), 2, ["--inject-nan-step"]),
    ("interrupt-neg", S("--interrupt-after", "-5"), 2, ["--interrupt-after"]),
    # ---- choices, names, unknown flags (2) -------------------------------------------------
    ("method-bogus", S("--method", "bogus"), 2, ["--method", "bogus", "late_concat"]),
    ("method-empty", S("--method", ""), 2, ["--method"]),
    ("method-single-absent", S("--method", "single_cnv"), 2, ["single_cnv"]),
    ("endpoint-bogus", S("--endpoint", "xyz"), 2, ["--endpoint", "xyz"]),
    ("loss-bogus", S("--loss", "mse"), 2, ["--loss", "mse"]),
    ("select-bogus", S("--select", "test_cindex"), 2, ["--select"]),
    ("device-bogus", S("--device", "tpu"), 2, ["--device", "tpu"]),
    ("unknown-flag", S("--epoch", "3", "--no-such-flag"), 2, ["--no-such-flag"]),
    ("positional", S("extra_word"), 2, ["extra_word"]),
    ("missing-value", S("--epochs"), 2, ["--epochs"]),
    ("modalities-bogus", S("--modalities", "wsi,dna"), 2, ["--modalities", "dna"]),
    ("modalities-dup", S("--modalities", "rna,rna"), 2, ["--modalities"]),
    ("modalities-empty", S("--modalities", ","), 2, ["--modalities"]),
    ("synthetic-cnv", S("--modalities", "rna,cnv"), 2, ["synthetic", "cnv"]),
    ("drop-modality-absent", S("--drop-modality", "cnv"), 2, ["--drop-modality", "cnv"]),
    (
        "drop-modality-single",
        S("--modalities", "rna", "--drop-modality", "rna"),
        2,
        ["--drop-modality", "two"],
    ),  # fmt: skip
    ("compare-and-method", S("--compare", "--method", "late_concat"), 2, ["--compare"]),
    ("ablation-non-tta", S("--method", "late_concat", "--no-apart"), 2, ["--no-apart"]),
    # ---- flags that need real data (2) -----------------------------------------------------
    ("syn-splits", S("--splits", "{splits}"), 2, ["--splits", "--cohort-csv"]),
    ("syn-labels", S("--labels-csv", "{cohort}"), 2, ["--labels-csv", "--cohort-csv"]),
    ("syn-features", S("--features-dir", "{root}"), 2, ["--features-dir"]),
    ("syn-groups", S("--groups", "{groups}"), 2, ["--groups", "--cohort-csv"]),
    ("syn-endpoint", S("--endpoint", "dss"), 2, ["--endpoint", "--cohort-csv"]),
    ("syn-skip-missing", S("--skip-missing"), 2, ["--skip-missing"]),
    ("syn-stratify", S("--stratify-site"), 2, ["--stratify-site"]),
    ("real-synthetic-patients", R("--synthetic-patients", "100"), 2, ["--synthetic-patients"]),
    ("real-wsi-no-features", R("--modalities", "wsi,rna"), 2, ["--features-dir"]),
    ("real-features-no-wsi", R("--features-dir", "{root}"), 2, ["--features-dir", "wsi"]),
    (
        "real-stratify-with-splits",
        R("--splits", "{splits}", "--stratify-site"),
        2,
        ["--stratify-site", "--splits"],
    ),  # fmt: skip
    ("real-groups-key", R("--groups", "cnv={groups}"), 2, ["--groups", "cnv"]),
    ("real-folds-vs-splits", R("--splits", "{splits}", "--folds", "3"), 2, ["--folds", "2"]),
    # ---- environment and outputs (2) -------------------------------------------------------
    ("out-is-file", S("--out", "{a_file}"), 2, ["--out", "a_file.txt"]),
    ("out-under-file", S("--out", "{a_file}/sub"), 2, ["--out"]),
    ("tcga-missing", S("--tcga", "{missing}"), 2, ["--tcga"]),
    ("out-empty", S("--out", ""), 2, ["--out", "empty"]),
    ("cohort-empty-name", S("--cohort-csv", ""), 2, ["--cohort-csv", "empty"]),
    ("groups-empty-name", R("--groups", "rna="), 2, ["--groups", "empty"]),
    ("groups-comma", R("--groups", ","), 2, ["--groups", "empty"]),
    ("labels-empty-name", R("--labels-csv", ","), 2, ["--labels-csv", "empty"]),
    ("splits-empty-name", R("--splits", ""), 2, ["--splits", "empty"]),
    (
        "groups-incomplete",
        R("--modalities", "rna,cnv", "--groups", "rna={groups}", "--tcga", "{emptydir}"),
        2,
        ["--groups", "cnv"],
    ),  # fmt: skip
    (
        "splits-fewer-than-folds",
        R("--splits", "{one_split}", "--folds", "2"),
        2,
        ["--folds 2", "1 folds"],
    ),  # fmt: skip
    # ---- tables (6) ------------------------------------------------------------------------
    ("cohort-missing", R("--cohort-csv", "{missing}"), 6, ["does_not_exist"]),
    ("cohort-empty-file", R("--cohort-csv", "{empty}"), 6, ["empty.csv"]),
    (
        "cohort-missing-columns",
        R("--cohort-csv", "{missing_cols}"),
        6,
        ["missing_cols.csv", "case_id", "slide_id", "survival_months"],
    ),  # fmt: skip
    (
        "cohort-missing-censorship",
        R("--cohort-csv", "{missing_cens}"),
        6,
        ["missing_cens.csv", "censorship"],
    ),  # fmt: skip
    (
        "cohort-no-cnv",
        R("--cohort-csv", "{no_clinical}", "--modalities", "rna,clinical"),
        6,
        ["no_clinical.csv", "age", "is_female"],
    ),  # fmt: skip
    ("cohort-no-dss", R("--endpoint", "dss"), 6, ["cohort.csv", "survival_months_dss"]),
    (
        "time-text",
        R("--cohort-csv", "{time_text}"),
        6,
        ["time_text.csv", "line 7", "survival_months", "abc"],
    ),  # fmt: skip
    ("time-nan", R("--cohort-csv", "{time_nan}"), 6, ["time_nan.csv", "line 9", "survival_months"]),
    (
        "time-negative",
        R("--cohort-csv", "{time_negative}"),
        6,
        ["time_negative.csv", "line 5", "survival_months"],
    ),  # fmt: skip
    ("censorship-2", R("--cohort-csv", "{cens_two}"), 6, ["cens_two.csv", "line 11", "censorship"]),
    (
        "omics-text",
        R("--cohort-csv", "{omics_text}"),
        6,
        ["omics_text.csv", "line 13", "G3_rnaseq"],
    ),
    ("omics-inf", R("--cohort-csv", "{omics_inf}"), 6, ["omics_inf.csv", "line 14", "G4_rnaseq"]),
    (
        "omics-conflict",
        R("--cohort-csv", "{omics_conflict}"),
        6,
        ["omics_conflict.csv", "TCGA-ZZ-0000", "G2_rnaseq"],
    ),  # fmt: skip
    (
        "label-conflict",
        R("--cohort-csv", "{label_conflict}"),
        6,
        ["label_conflict.csv", "TCGA-ZZ-0000", "survival_months"],
    ),  # fmt: skip
    ("header-only", R("--cohort-csv", "{header_only}"), 7, ["no patients"]),
    ("cohort-is-dir", R("--cohort-csv", "{root}"), 6, ["is not a file"]),
    ("cohort-garbage", R("--cohort-csv", "{garbage}"), 6, ["garbage.csv"]),
    ("cohort-zip-two-files", R("--cohort-csv", "{two_zip}"), 6, ["two.csv.zip"]),
    ("cohort-no-pfi", R("--endpoint", "pfi"), 6, ["cohort.csv", "survival_months_pfi"]),
    ("groups-missing", R("--groups", "{missing}"), 6, ["does_not_exist"]),
    ("groups-garbage", R("--groups", "{garbage}"), 6, ["garbage.csv"]),
    ("groups-no-gene", R("--groups", "{groups_none}"), 6, ["groups_none.csv", "gene"]),
    ("splits-missing", R("--splits", "{missing}"), 6, ["does_not_exist"]),
    ("splits-bad-columns", R("--splits", "{splits_bad_cols}"), 6, ["splits_0.csv", "train", "val"]),
    ("splits-is-file", R("--splits", "{a_file}"), 6, ["a_file.txt"]),
    ("labels-missing", R("--labels-csv", "{missing}"), 6, ["does_not_exist"]),
    ("labels-no-columns", R("--labels-csv", "{labels_bad}"), 6, ["labels_bad.csv", "censorship"]),
    (
        "features-missing",
        R("--modalities", "wsi,rna", "--features-dir", "{missing}"),
        4,
        ["--features-dir", "does_not_exist"],
    ),  # fmt: skip
    # ---- protocol: events, folds, splits (7) -----------------------------------------------
    ("no-events", R("--cohort-csv", "{no_events}"), 7, ["no events"]),
    (
        "splits-overlap",
        R("--splits", "{splits_overlap}"),
        7,
        ["fold 0", "train and test", "TCGA-ZZ-0015"],
    ),  # fmt: skip
    ("splits-duplicate", R("--splits", "{splits_dup}"), 7, ["fold 0", "twice", "TCGA-ZZ-0000"]),
    ("splits-foreign", R("--splits", "{splits_foreign}"), 7, ["29", "OTHER-0", "not in"]),
    ("splits-small-test", R("--splits", "{splits_small}"), 7, ["fold 0", "3 patients"]),
    ("splits-no-event", R("--splits", "{splits_no_event}"), 7, ["fold 0", "no event"]),
    ("too-many-folds", R("--folds", "10"), 7, ["test", "--folds"]),
    ("synthetic-tiny", S("--synthetic-patients", "12"), 7, ["test", "patients"]),
    ("val-frac-no-val-events", S("--val-frac", "0.01"), 7, ["select on"]),
    ("val-frac-no-fit-events", S("--val-frac", "0.99"), 7, ["fit on"]),
    ("nll-bins-over-events", S("--loss", "nll", "--n-bins", "1000"), 7, ["--n-bins 1000"]),
    ("stratify-too-few-sites", R("--stratify-site", "--folds", "10"), 7, ["sites", "--folds"]),
    # ---- a run that diverges (3) -----------------------------------------------------------
    ("lr-diverges", S("--lr", "1e10"), 3, ["non-finite", "--lr"]),
]
if not CUDA:
    CASES.append(("cuda-absent", S("--device", "cuda"), 2, ["--device cuda", "CUDA"]))

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _fill(argv: list[str], paths: dict[str, str]) -> list[str]:
    return [_PLACEHOLDER.sub(lambda m: paths[m.group(1)], a) for a in argv]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    return build_inputs(tmp_path_factory.mktemp("cli_inputs"))


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("ERROR: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("case_id,argv,code,fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_invocation(case_id, argv, code, fragments, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    argv = _fill(argv, inputs)
    if "--out" not in argv:
        argv += ["--out", str(out)]
    assert main(argv) == code
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    for frag in fragments:
        assert frag in line, f"{frag!r} not in {line!r}"
    assert not (out / "results.json").exists()
    if code == 2:  # flag errors are found before any work: nothing is created
        assert not out.exists()
        assert captured.out == ""


def test_every_flag_has_a_rule_or_a_commented_exemption():
    from examples.tta import validate

    parser = build_parser()
    dests = {a.dest for a in parser._actions}
    missing = sorted(dests - set(validate.RULES))
    assert not missing, f"flags without a validation rule in validate.RULES: {missing}"
    stale = sorted(set(validate.RULES) - dests)
    assert not stale, f"rules for flags that do not exist: {stale}"
    for action in parser._actions:
        rule = validate.RULES[action.dest]
        if isinstance(rule, validate.Exempt):
            assert len(rule.reason) > 10, f"{action.dest}: the exemption needs a reason"
        elif isinstance(rule, validate.Number):
            assert action.type is rule.kind, f"{action.dest}: rule {rule.kind}, flag {action.type}"
        elif isinstance(rule, validate.Choice):
            assert action.choices, f"{action.dest}: a Choice rule needs argparse choices"
        elif isinstance(rule, validate.Switch):
            assert isinstance(action, argparse._StoreTrueAction), action.dest


def test_rules_reject_what_they_say():
    from examples.tta import validate

    r = validate.Number(int, lo=1)
    assert r.problem(0) and r.problem(-1) and not r.problem(1)
    f = validate.Number(float, lo=0.0, hi=1.0, hi_open=True)
    assert f.problem(1.0) and f.problem(float("nan")) and f.problem(-0.01) and not f.problem(0.0)
    assert validate.Number(float, lo=0.0, none_ok=True).problem(None) is None
    assert validate.Number(float, lo=0.0).problem(None)


def test_help_every_flag_has_help_and_one_default(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    fmt = parser._get_formatter()
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:  # testing hooks: not shown at all
            assert action.option_strings[0] not in text
            continue
        assert action.help, f"{action.option_strings} has no help text"
        shown = fmt._expand_help(action)  # the text --help prints for this flag
        n = len(re.findall(r"\bdefault", shown))
        if isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction)):
            assert n == 0, f"{action.dest}: {shown!r}"
        else:
            assert n == 1, f"{action.dest} must state its default exactly once: {shown!r}"


def test_first_line_says_synthetic_and_outputs_respect_umask(tmp_path, capsys):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        assert main([*SYN, "--out", str(out)]) == 0
    finally:
        os.umask(old)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("SYNTHETIC DATA"), first
    for name in ("results.json", "table.txt", "test_risks.csv", "run_config.json"):
        mode = stat.S_IMODE((out / name).stat().st_mode)
        assert mode == 0o644, f"{name}: {oct(mode)}"
    ckpt = out / "tta" / "fold_0" / "checkpoint.pt"
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o644


def test_ramp_epochs_zero_means_full_mass_from_the_start(tmp_path):
    assert main([*SYN, "--ramp-epochs", "0", "--out", str(tmp_path / "r")]) == 0


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main([*SYN, "--out", str(out)]) == 0
    return out, [*SYN, "--out", str(out)]


def test_resume_refuses_changed_flags_naming_them(finished_run, capsys):
    out, argv = finished_run
    capsys.readouterr()
    assert main([*argv, "--resume", "--lr", "0.01", "--dim", "8"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--lr" in line and "--dim" in line and "--epochs" not in line
    # flags that do not change what is computed may differ
    assert main([*argv, "--resume", "--threads", "2"]) == 0


def test_resume_with_a_truncated_result_says_how_to_restart(finished_run, tmp_path, capsys):
    import shutil

    src, argv = finished_run
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    victim = out / "tta" / "fold_1" / "result.json"
    victim.write_bytes(victim.read_bytes()[:100])
    capsys.readouterr()
    argv = [*argv[:-1], str(out), "--resume"]
    assert main(argv) == 8
    line = _one_error_line(capsys.readouterr().err)
    assert str(victim) in line and "delete" in line


def test_resume_with_a_truncated_state_says_how_to_restart(tmp_path, capsys):
    out = tmp_path / "int"
    argv = [*SYN, "--epochs", "2", "--out", str(out)]
    assert main([*argv, "--interrupt-after", "1"]) == 5
    state = out / "tta" / "fold_0" / "state.pt"
    state.write_bytes(state.read_bytes()[:200])
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 8
    line = _one_error_line(capsys.readouterr().err)
    assert str(state) in line and "delete" in line
    state.unlink()  # as the message says: the fold restarts from scratch
    assert main([*argv, "--resume"]) == 0


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_exits_130_with_one_line_and_resume_continues(tmp_path):
    out = tmp_path / "sig"
    args = [*SYN, "--epochs", "8", "--out", str(out)]
    cmd = [sys.executable, "examples/tta_tcga.py", *args]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    state = out / "tta" / "fold_0" / "state.pt"
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    line = _one_error_line(stderr)
    assert "--resume" in line
    assert stdout.splitlines()[0].startswith("SYNTHETIC DATA")
    assert not (out / "results.json").exists()
    assert not list(out.rglob("*.tmp"))
    done = subprocess.run(
        [*cmd, "--resume"], cwd=REPO, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())["config"]["epochs"] == 8


@pytest.mark.slow
def test_script_error_is_one_line_without_traceback(tmp_path):
    """The real entry point (not only main()): a flag error and a table error, no traceback."""
    for argv, code in (
        (["--epochs", "0", "--out", str(tmp_path / "a")], 2),
        (["--cohort-csv", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "b")], 6),
    ):
        r = subprocess.run(
            [sys.executable, "examples/tta_tcga.py", *argv],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == code, r.stderr
        _one_error_line(r.stderr)


@pytest.mark.slow
def test_torchrun_flag_error_is_printed_by_rank_0_only(tmp_path):
    """Under torchrun every rank refuses the flag (exit 2), and only rank 0 prints the line."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "examples/tta_tcga.py", "--epochs", "0", "--out", str(tmp_path / "o"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode != 0
    text = r.stdout + r.stderr
    assert text.count("ERROR: --epochs must be an integer >= 1") == 1, text[-3000:]
    assert "exitcode  : 2" in text or "exit code 2" in text or "exitcode: 2" in text, text[-3000:]
    assert not (tmp_path / "o").exists()


def test_resume_after_a_failed_start_may_change_flags(inputs, tmp_path, capsys):
    """A run refused before any fold saved anything leaves nothing to resume: no flag check."""
    out = tmp_path / "o"
    argv = _fill([*R("--cohort-csv", "{omics_text}"), "--out", str(out)], inputs)
    assert main(argv) == 6
    assert (out / "run_config.json").exists()
    capsys.readouterr()
    argv = _fill([*R("--cohort-csv", "{no_events}"), "--out", str(out), "--resume"], inputs)
    assert main(argv) == 7  # got past the --resume check to the data
    assert "no events" in _one_error_line(capsys.readouterr().err)


def test_a_single_fold_is_reported_without_a_nan_sd():
    """--splits DIR --folds 1 runs one fold: the table says so instead of '± nan'."""
    from examples.tta.protocol import results_table

    one = {"c_index_mean": 0.61, "c_index_std": float("nan"), "n_folds": 1, "folds": []}
    two = {"c_index_mean": 0.6, "c_index_std": 0.02, "n_folds": 2, "folds": []}
    text = results_table({"a": one, "b": two}, ["a", "b"])
    assert "nan" not in text.split("\n")[2].split("  ")[1] and "1 fold" in text
    assert "0.600 ± 0.020" in text
