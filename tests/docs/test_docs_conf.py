"""The Sphinx configuration: offline builds never ask for intersphinx inventories."""

from __future__ import annotations

import runpy
from pathlib import Path

import torch

CONF = Path(__file__).resolve().parents[2] / "docs" / "conf.py"


def _conf(monkeypatch, **env):
    for key in ("DOCS_OFFLINE", "DOCS_NO_GALLERY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    threads = torch.get_num_threads()
    try:
        return runpy.run_path(str(CONF))
    finally:  # conf.py sets the thread count for the gallery; keep the test session's
        torch.set_num_threads(threads)


def test_offline_switches_intersphinx_off(monkeypatch):
    assert _conf(monkeypatch, DOCS_OFFLINE="1")["intersphinx_mapping"] == {}
    online = _conf(monkeypatch)["intersphinx_mapping"]
    assert {"python", "numpy", "torch"} <= set(online)


def test_gallery_settings(monkeypatch):
    conf = _conf(monkeypatch, DOCS_OFFLINE="1")
    gallery = conf["sphinx_gallery_conf"]
    assert gallery["filename_pattern"] == r"/plot_"
    assert gallery["abort_on_example_error"] is True
    assert gallery["plot_gallery"] == "True"
    assert gallery["gallery_dirs"] == ["auto_examples"]
    assert "numpydoc" in conf["extensions"] and "sphinx.ext.napoleon" not in conf["extensions"]
    assert conf["html_theme"] == "furo"
    skipped = _conf(monkeypatch, DOCS_OFFLINE="1", DOCS_NO_GALLERY="1")["sphinx_gallery_conf"]
    assert skipped["plot_gallery"] == "False"
    # Every gallery folder is listed in the subsection order (sphinx-gallery fails otherwise).
    root = CONF.parent.parent / "examples" / "gallery"
    folders = {p.name for p in root.iterdir() if p.is_dir() and (p / "README.txt").exists()}
    listed = {Path(p).name for p in gallery["subsection_order"]}
    assert folders == listed
