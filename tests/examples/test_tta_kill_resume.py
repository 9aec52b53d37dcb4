"""A run killed with SIGKILL mid-fold resumes from its last checkpoint and matches a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL semantics are POSIX"),
]

REPO = Path(__file__).resolve().parents[2]
ARGS = [
    "--synthetic-patients", "60", "--folds", "2", "--quiet", "--dim", "16",
    "--prototypes", "4", "--bag-size", "32", "--epochs", "6", "--threads", "1",
]  # fmt: skip


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "examples/tta_tcga.py", *ARGS, "--out", str(out), *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_sigkill_mid_fold_then_resume_matches_uninterrupted(tmp_path):
    ref = tmp_path / "ref"
    done = _run(ref)
    assert done.returncode == 0, done.stderr[-2000:]

    out = tmp_path / "killed"
    cmd = [sys.executable, "examples/tta_tcga.py", *ARGS, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "tta" / "fold_0" / "state.pt"
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; raise --epochs"
    assert state.exists(), "no training state appeared within the time limit"
    os.kill(proc.pid, signal.SIGKILL)  # no handler, no cleanup: as a pre-empted job dies
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists()

    resumed = _run(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((ref / "results.json").read_text())
    b = json.loads((out / "results.json").read_text())
    assert [f["fold"] for f in a["folds"]] == [f["fold"] for f in b["folds"]]
    assert [f["c_index"] for f in b["folds"]] == pytest.approx(
        [f["c_index"] for f in a["folds"]], abs=1e-9
    )
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
