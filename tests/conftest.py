"""Shared test configuration: hypothesis profiles, the ``gpu`` marker, TCGA data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", max_examples=15, deadline=None)
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# Test tensors are tiny: one intra-op thread avoids OpenMP barrier stalls (measured 10-100x slower
# small ops with two threads on a busy 2-core machine). Override with MINMAXFUSE_TEST_THREADS.
torch.set_num_threads(int(os.environ.get("MINMAXFUSE_TEST_THREADS", "1")))

_REPO = Path(__file__).resolve().parents[1]


def tcga_root() -> Path | None:
    """Location of the shared TCGA tables, or None when absent (tests then skip)."""
    env = os.environ.get("MINMAXFUSE_TCGA")
    candidates = [Path(env)] if env else []
    candidates.append(_REPO.parent / "shared" / "data" / "tcga")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture
def tcga() -> Path:
    root = tcga_root()
    if root is None:
        pytest.skip("TCGA tables not found (set MINMAXFUSE_TCGA or use ../shared/data/tcga)")
    return root


# Tests that read repository files outside the package (docs build, README snippets, the example
# CLI) are not collected where those files are absent, e.g. a trimmed copy of the sources; the
# reason is printed in the report header instead of failing at collection.
_NEEDS = {"docs": ("docs",), "examples": ("examples",)}


def _missing_repo_dirs() -> dict[str, str]:
    out = {}
    for test_dir, needed in _NEEDS.items():
        absent = [d for d in needed if not (_REPO / d).is_dir()]
        if absent:
            out[test_dir] = ", ".join(f"{d}/" for d in absent)
    return out


def pytest_ignore_collect(collection_path, config):
    missing = _missing_repo_dirs()
    try:
        rel = Path(collection_path).resolve().relative_to(_REPO / "tests")
    except ValueError:
        return None
    if rel.parts and rel.parts[0] in missing:
        return True
    return None


def pytest_report_header(config):
    missing = _missing_repo_dirs()
    return [
        f"not collecting tests/{t}: {dirs} not found next to tests/ (not a full source tree)"
        for t, dirs in missing.items()
    ]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


def devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
