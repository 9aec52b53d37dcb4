"""The sdist ships what the tests read, and the tests collect cleanly without repository extras."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _sdist_include() -> list[str]:
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as fh:
        cfg = tomllib.load(fh)
    return cfg["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]


def test_sdist_ships_every_top_level_directory_the_tests_read():
    include = _sdist_include()
    # the docs and examples tests read these trees; the user-text test scans benchmarks too
    for top in ("minmaxfuse", "tests", "docs", "examples", "benchmarks", "README.md", "LICENSE"):
        if (ROOT / top).exists():
            assert top in include, f"{top} is read by the tests but not shipped in the sdist"


def test_tests_collect_without_docs_and_examples(tmp_path):
    # a copy of the package and its tests alone: the tests that need docs/ or examples/ are not
    # collected (reported in the header) instead of failing collection with rc 2
    for name in ("minmaxfuse", "tests"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--co",
            "-p",
            "no:cacheprovider",
            "tests/data",
            "tests/docs",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "not collecting tests/docs: docs/ not found" in proc.stdout
    assert "test_data_bags.py" in proc.stdout  # the rest is still collected
