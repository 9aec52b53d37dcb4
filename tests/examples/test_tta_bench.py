"""examples/tta/bench.py times every method on one synthetic batch (a smoke run, no timings)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from tta import bench  # noqa: E402


@pytest.mark.slow
def test_bench_prints_one_row_per_method(capsys):
    argv = ["--device", "cpu", "--bag", "48", "--in-dim", "8", "--batch", "3", "--steps", "1"]
    argv += ["--dim", "16", "--tokens", "4", "--genes", "6"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["method"] for r in rows] == list(bench.DEFAULT_METHODS)
    for r in rows:
        assert r["sec_per_step"] > 0 and r["n_params"] > 0
    assert "| tta | " in out and "x TTA" in out
