"""Every public name is covered by the API reference.

These checks run the docs' own generators (``docs/_ext``) without Sphinx, in well under a second:

* every module under ``minmaxfuse`` has an ``__all__`` and imports, and every name of every
  ``__all__`` (the package's included) gets exactly one documented page, which every other
  namespace exporting the same object links to;
* no committed ``docs/api/<module>.rst`` page documents a module that no longer exists.

The full build (``DOCS_OFFLINE=1 sphinx-build -W -b html docs docs/_build/html``) additionally
checks at ``env-check-consistency`` that each of these names has its object in the built docs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXT = ROOT / "docs" / "_ext"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module to be registered
    spec.loader.exec_module(module)
    return module


apigen = _load("mmf_apigen")


@pytest.fixture(scope="module")
def index():
    return apigen.collect()


def test_every_public_module_imports_and_has_all(index):
    assert index.errors == []
    assert index.modules, "no public module found"
    for mod in index.modules:
        assert mod in index.exports


def test_every_exported_name_has_one_page(index, tmp_path):
    apigen.write_sources(index, tmp_path)
    gen = tmp_path / "generated"
    modules = set(index.modules) | {apigen.PACKAGE}
    for namespace, names in index.exports.items():
        for name in names:
            full = f"{namespace}.{name}"
            canonical = index.lookup[full]
            if canonical in modules:  # a subpackage exported as a name: it has its own page
                continue
            entry = index.entries[canonical]
            if entry.kind == "constant":  # documented inline on its namespace's page
                short = "toplevel" if entry.namespace == apigen.PACKAGE else entry.namespace[11:]
                fragment = (gen / f"api_{short}.inc").read_text()
                assert f".. py:data:: {entry.name}" in fragment, full
                continue
            assert (gen / f"{canonical}.rst").exists(), f"{full}: no page for {canonical}"
            assert full == canonical or full in entry.aliases
    # Each fragment lists each of its names once, as its own or as a link to the canonical page.
    for namespace, names in index.exports.items():
        short = "toplevel" if namespace == apigen.PACKAGE else namespace.split(".", 1)[1]
        text = (gen / f"api_{short}.inc").read_text()
        for name in names:
            canonical = index.lookup[f"{namespace}.{name}"]
            shown = canonical.rsplit(".", 1)[1]
            listed = (f"   {shown}", f":mod:`{canonical}`", f".. py:data:: {shown}")
            is_module = canonical in modules
            assert is_module or any(x in text for x in listed), (namespace, name)


def test_top_level_reexports_link_to_their_subpackage(index):
    import minmaxfuse

    for name in minmaxfuse.__all__:
        canonical = index.lookup[f"minmaxfuse.{name}"]
        obj = getattr(minmaxfuse, name)
        if (
            canonical.startswith("minmaxfuse.")
            and canonical.count(".") >= 2
            and not isinstance(obj, type(minmaxfuse))
        ):
            namespace = canonical.rsplit(".", 1)[0]
            assert name in index.exports[namespace], (name, canonical)


def test_no_stale_api_pages(index):
    assert apigen.stale_pages(index, ROOT / "docs") == []
