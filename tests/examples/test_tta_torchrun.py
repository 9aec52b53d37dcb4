"""examples/tta_tcga.py under ``torchrun --nproc_per_node=2`` (gloo, CPU).

Oracle: with dropout off and bags larger than every synthetic bag (all patches used, so the
per-patient inputs do not depend on the sampling RNG), two ranks that each train on half of every
global batch, with the Cox loss gathered across ranks and DDP averaging the gradients, must
follow the single-process run step for step: same per-epoch training losses, same validation
metrics, same selected epochs and the same test risks up to a per-fold constant (the Cox loss
does not identify it; see the comment in the test), all up to float32 reduction order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from examples.tta.cli import main

pytestmark = pytest.mark.slow  # two torch processes + one in-process run, ~10 s on 2 cores

_REPO = Path(__file__).resolve().parents[2]
ARGS = [
    "--epochs",
    "2",
    "--folds",
    "2",
    "--synthetic-patients",
    "60",
    "--dim",
    "16",
    "--prototypes",
    "4",
    "--bag-size",
    "256",  # > every synthetic bag (128 patches): the whole bag, no sampling noise
    "--dropout",
    "0",
    "--batch-size",
    "12",  # 24 fitting patients per fold: 2 steps per epoch, 6 patients per rank and step
]


@pytest.fixture(scope="module")
def torchrun_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("torchrun") / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        str(_REPO / "examples" / "tta_tcga.py"),
        *ARGS,
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, cwd=_REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_torchrun_rank0_outputs(torchrun_out):
    out, proc = torchrun_out
    res = json.loads((out / "results.json").read_text())
    assert {"c_index_mean", "c_index_std", "folds", "methods", "config"} <= set(res)
    assert [f["fold"] for f in res["folds"]] == [0, 1]
    assert res["config"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert res["config"]["device_used"] == "cpu"
    # only rank 0 prints (other ranks would repeat the summary and per-fold lines)
    assert proc.stdout.count("outputs in ") == 1
    assert proc.stdout.count("fold 0 tta") == 1 and proc.stdout.count("fold 1 tta") == 1
    assert "2 ranks (gloo)" in proc.stdout
    # every file goes through report.atomic_write, which raises on a rank other than 0: exit 0
    # above means no other rank wrote. No temporary or extra files are left behind either.
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    expected = {
        "results.json",
        "table.txt",
        "test_risks.csv",
        "km.png",
        "training_curves.png",
    }
    assert expected <= set(files)
    assert not [f for f in files if f.endswith(".tmp") or "state.pt" in f]
    for k in (0, 1):
        assert f"tta/fold_{k}/checkpoint.pt" in files and f"tta/fold_{k}/result.json" in files


def test_torchrun_matches_single_process(torchrun_out, tmp_path):
    out, _ = torchrun_out
    single = tmp_path / "single"
    assert main([*ARGS, "--quiet", "--out", str(single)]) == 0
    for k in (0, 1):
        h2 = json.loads((out / "tta" / f"fold_{k}" / "result.json").read_text())
        h1 = json.loads((single / "tta" / f"fold_{k}" / "result.json").read_text())
        assert h2["selected_epoch"] == h1["selected_epoch"]
        assert len(h2["history"]) == len(h1["history"]) == 2
        for e2, e1 in zip(h2["history"], h1["history"]):
            assert set(e2) == set(e1)
            for key in ("train_loss", "train_survival", "train_together", "train_apart"):
                assert e2[key] == pytest.approx(e1[key], rel=1e-5), (k, key)
            assert e2["val_loss"] == pytest.approx(e1["val_loss"], rel=1e-5)
            assert e2["val_c_index"] == pytest.approx(e1["val_c_index"], abs=1e-9)
    r2 = pd.read_csv(out / "test_risks.csv").sort_values("case_id")
    r1 = pd.read_csv(single / "test_risks.csv").sort_values("case_id")
    assert list(r2["case_id"]) == list(r1["case_id"])
    assert list(r2["fold"]) == list(r1["fold"])
    # the Cox loss is shift invariant: its gradient along a constant shift of the log-risk is
    # float noise, which Adam's normalisation turns into lr-sized steps that differ between
    # reduction orders. Compare the log-risks centred per fold (what the Cox model identifies).
    for k in (0, 1):
        a2 = r2.loc[r2["fold"] == k, "risk"].to_numpy()
        a1 = r1.loc[r1["fold"] == k, "risk"].to_numpy()
        np.testing.assert_allclose(a2 - a2.mean(), a1 - a1.mean(), atol=1e-4)
    res2 = json.loads((out / "results.json").read_text())
    res1 = json.loads((single / "results.json").read_text())
    assert "distributed" not in res1["config"]  # the single-process output is unchanged
    for f2, f1 in zip(res2["folds"], res1["folds"]):
        assert f2["c_index"] == pytest.approx(f1["c_index"], abs=1e-6)
