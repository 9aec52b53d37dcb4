"""Sphinx configuration for the minmaxfuse documentation.

Build (warnings are errors; offline: no intersphinx inventories are fetched)::

    DOCS_OFFLINE=1 sphinx-build -W -b html docs docs/_build/html

Environment switches:

``DOCS_OFFLINE=1``
    Switch intersphinx off. Its inventories need the network, and a failed download is a warning
    that ``-W`` turns into an error. Links to torch/numpy/POT then render as plain text.
    MathJax is always served from the built site itself (``sphinx-mathjax-offline`` copies it to
    ``_static/mathjax``), so formulas render without the network in every build.
``DOCS_NO_GALLERY=1``
    Do not execute the gallery scripts (quick local iterations on the narrative pages only).
``DOCS_TORCH_THREADS``
    Intra-op threads for the gallery scripts (default 1, see below).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the package itself (also installed editable in the venv)
sys.path.insert(0, str(DOCS / "_ext"))  # mmf_apigen: the API reference generator

import torch  # noqa: E402

import minmaxfuse  # noqa: E402

# The gallery runs in this process. Its problems are small, and with several intra-op threads
# on a busy machine tiny torch ops spend most of their time synchronising threads (measured on
# the 2-core development VM: one 4 x 100 x 8 Sinkhorn solve 6 ms with one thread, 2.4 s with
# two). One thread is the fast and reproducible choice; DOCS_TORCH_THREADS overrides it.
torch.set_num_threads(int(os.environ.get("DOCS_TORCH_THREADS", "1")))

OFFLINE = os.environ.get("DOCS_OFFLINE", "") not in {"", "0", "false", "False"}
RUN_GALLERY = os.environ.get("DOCS_NO_GALLERY", "") in {"", "0", "false", "False"}

# -- Project ------------------------------------------------------------------------------
project = "minmaxfuse"
author = "the minmaxfuse developers"
copyright = "2026, the minmaxfuse developers"  # noqa: A001 - Sphinx's name
release = minmaxfuse.__version__
version = ".".join(release.split(".")[:2])

# -- General ------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/: no CDN (the module name has dashes)
    "myst_parser",  # Markdown pages: the READMEs are included with {include}
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "mmf_apigen",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "_ext", "_templates", "**/.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
default_role = "literal"
# Unresolved references to torch/numpy objects are expected offline, so nitpicky stays off;
# mmf_apigen warns instead on any unresolved reference to a ``minmaxfuse`` object.
nitpicky = False
python_maximum_signature_line_length = 88
add_module_names = False
toc_object_entries_show_parents = "hide"

# -- MyST (Markdown) ------------------------------------------------------------------------
# The results, benchmarks and command-line pages include the repository's Markdown files
# (``examples/RESULTS.md``, ``benchmarks/README.md``, ``examples/README.md``), so GitHub and the
# docs show the same text. Headings down to ### get GitHub-style anchors (``#how-these-...``).
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# -- autodoc / autosummary / numpydoc -----------------------------------------------------
# Stubs are written by mmf_apigen from each module's __all__; autosummary only renders tables.
autosummary_generate = False
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"  # constructor signature on the class line
autodoc_default_options = {"exclude-members": "__init__, __new__, extra_repr"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
numpydoc_attributes_as_param_list = True

# -- intersphinx (publish builds only) ----------------------------------------------------
intersphinx_timeout = 5
if OFFLINE:
    intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
else:
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "ot": ("https://pythonot.github.io/", None),
        "sksurv": ("https://scikit-survival.readthedocs.io/en/stable/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
    }

# -- sphinx-gallery -----------------------------------------------------------------------
# sphinx-gallery reruns an example only when its source changes. The benchmark-table example
# reads the READMEs, which change without it: forget its checksum so that it always reruns.
for _md5 in (DOCS / "auto_examples" / "benchmarks").glob("*.md5"):
    _md5.unlink()
sphinx_gallery_conf = {
    "examples_dirs": ["../examples/gallery"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py|/_",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "plot_gallery": "True" if RUN_GALLERY else "False",
    "subsection_order": [
        f"../examples/gallery/{d}" for d in ("ot", "alignment", "survival", "benchmarks")
    ],
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("minmaxfuse",),
    "backreferences_dir": "generated/backreferences",
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_signature": False,
    "min_reported_time": 1,
    "write_computation_times": False,  # no sg_execution_times.rst in the source tree
    "matplotlib_animations": False,
    "capture_repr": ("_repr_html_", "__repr__"),
    "first_notebook_cell": None,
}

# -- HTML ---------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"minmaxfuse {release}"
html_static_path = ["_static"]
html_css_files = ["mmf.css"]
html_show_sourcelink = False


# -- Links between the included Markdown files -----------------------------------------------
# ``examples/RESULTS.md`` links to ``README.md`` (the command-line manual) and back, so that the
# links work on GitHub. In the docs these files are pages of their own: point such links at
# the page that includes the file instead.
INCLUDED_MARKDOWN = {  # repository file -> docs page that includes it
    "examples/README.md": "cli",
    "examples/RESULTS.md": "results",
    "benchmarks/README.md": "benchmarks",
}
_MD_LINK = re.compile(r"\]\((?!https?:|#)([^)\s#]+\.md)(#[^)\s]*)?\)")


def _rewrite_markdown_links(app, relative_path, parent_docname, content):
    source = (Path(app.srcdir) / relative_path).resolve()

    def page(match):
        target = (source.parent / match.group(1)).resolve()
        try:
            key = target.relative_to(ROOT).as_posix()
        except ValueError:
            return match.group(0)
        if key not in INCLUDED_MARKDOWN:
            return match.group(0)
        return f"](/{INCLUDED_MARKDOWN[key]}.md{match.group(2) or ''})"

    content[0] = _MD_LINK.sub(page, content[0])


def setup(app):
    app.connect("include-read", _rewrite_markdown_links)
