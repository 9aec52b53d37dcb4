"""What users read carries no internal notes, and the built docs are self-contained.

Checked:

* the repository's Markdown and reST (READMEs, ``examples/RESULTS.md``, the docs sources, the
  gallery) and the Python sources under ``minmaxfuse/``, ``examples/``, ``benchmarks/`` and
  ``docs/`` (docstrings, comments, plot titles; the whole file is read, which is stricter) name
  no development-process notes: words such as "planner", "session" or "lent", the internal
  method notes ``tta_method.md`` / ``peers.md`` or paths into the development machine's
  ``../shared`` folder. ``tests/`` is not checked: the data tests legitimately look for the TCGA
  tables in that folder, and its messages are read by developers only;
* the built HTML contains none of them either, loads MathJax (and every other script and
  stylesheet) from the site itself, shows the included Markdown as rendered text (no literal
  ``**`` or table rulers) and has no citation read as an enumerated list.

The HTML checks read the site in ``$MMF_DOCS_HTML`` when it is set (``.ci/run`` passes the full
build, gallery included). Otherwise they build the docs once, offline and without the gallery,
into a temporary folder (about 30 s); without Sphinx and myst-parser installed they are skipped.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = re.compile(
    r"\bplanners?\b|\bsessions?\b|\blent\b|tta_method|peers\.md|\.\./shared|shared/docs",
    re.IGNORECASE,
)
SKIP_DIRS = {".venv", ".git", "_build", "auto_examples", "generated", "__pycache__", "tests"}


def _user_sources() -> list[Path]:
    files = [ROOT / "README.md"]
    for top, patterns in {
        "docs": ("*.rst", "*.md", "*.txt", "*.py"),
        "examples": ("*.md", "*.txt", "*.py"),
        "benchmarks": ("*.md", "*.py"),
        "minmaxfuse": ("*.py",),
    }.items():
        for pattern in patterns:
            files += [
                p
                for p in (ROOT / top).rglob(pattern)
                if not SKIP_DIRS & set(p.relative_to(ROOT).parts)
            ]
    return sorted(set(files))


def _hits(text: str) -> list[str]:
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        for m in FORBIDDEN.finditer(line):
            hits.append(f"line {number}: {m.group(0)!r} in {line.strip()[:120]!r}")
    return hits


def test_the_word_pattern_catches_internal_notes():
    assert _hits("the planner's Coxnet") and _hits("No device was lent to this session.")
    assert _hits("see tta_method.md §9.8") and _hits("T=../shared/data/tcga")
    # ... and leaves ordinary words alone.
    assert not _hits("equivalent, silently, planned, sessionStorage, shared prototypes")


def test_sources_have_no_internal_notes():
    sources = _user_sources()
    assert ROOT / "examples" / "RESULTS.md" in sources
    assert ROOT / "minmaxfuse" / "__init__.py" in sources
    found = {
        str(p.relative_to(ROOT)): h for p in sources if (h := _hits(p.read_text(encoding="utf-8")))
    }
    assert found == {}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    given = os.environ.get("MMF_DOCS_HTML")
    if given:
        path = Path(given)
        assert (path / "index.html").exists(), f"MMF_DOCS_HTML={given} holds no built site"
        return path
    pytest.importorskip("sphinx", reason="the docs extra is not installed")
    pytest.importorskip("myst_parser", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("html")
    env = {**os.environ, "DOCS_OFFLINE": "1", "DOCS_NO_GALLERY": "1"}
    cmd = [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(ROOT / "docs"), str(out)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def _pages(site: Path) -> dict[str, str]:
    return {
        str(p.relative_to(site)): p.read_text(encoding="utf-8")
        for p in site.rglob("*.html")
        if "_sources" not in p.parts and "_static" not in p.parts
    }


def _text(page: str) -> str:
    """The visible prose of a page: no scripts, no code, no tags."""
    page = re.sub(r"(?s)<(script|style|pre)\b.*?</\1>", " ", page)
    page = re.sub(r"(?s)<code\b.*?</code>", " ", page)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


@pytest.mark.slow
def test_built_pages_have_no_internal_notes(site):
    pages = _pages(site)
    assert "results.html" in pages and "benchmarks.html" in pages and "cli.html" in pages
    found = {name: h for name, page in pages.items() if (h := _hits(html.unescape(page)))}
    assert found == {}


@pytest.mark.slow
def test_mathjax_and_assets_are_served_locally(site):
    pages = _pages(site)
    uot = pages["concepts/uot.html"]
    assert re.search(r'<script[^>]+src="(\.\./)*_static/mathjax/tex-chtml\.js[?"]', uot), (
        "the UOT page does not load the bundled MathJax"
    )
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert (site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    external = re.compile(
        r"<script[^>]+src=\"(?:https?:)?//[^\"]*\"|<link[^>]+href=\"(?:https?:)?//[^\"]*\.css"
    )
    offenders = {name: external.findall(page) for name, page in pages.items()}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert not any("mathjax" in page.lower() and "cdn.jsdelivr" in page for page in pages.values())


@pytest.mark.slow
@pytest.mark.parametrize("page", ["results.html", "benchmarks.html", "cli.html"])
def test_included_markdown_is_rendered(site, page):
    source = (site / page).read_text(encoding="utf-8")
    text = _text(source)
    assert "**" not in text, "literal bold markers"
    assert "|---" not in text and "| --- |" not in text, "a table was not converted"
    assert "<table" in source
    if page == "cli.html":  # flags keep their two dashes (not an en dash)
        assert "--compare" in source and "\u2013compare" not in source
    if page == "results.html":  # the summary's best-per-column values are bold
        assert re.search(r"<strong>[0-9.]+\s*±\s*[0-9.]+</strong>", source)


@pytest.mark.slow
def test_no_citation_renders_as_an_enumerated_list(site):
    lists = {
        name: len(re.findall(r'<ol class="(?:upper|lower)(?:alpha|roman)', page))
        for name, page in _pages(site).items()
    }
    assert {k: v for k, v in lists.items() if v} == {}
