"""Build-time API reference for minmaxfuse, derived from every public module's ``__all__``.

Why not plain ``autosummary_generate``: the list of documented names must follow ``__all__``
automatically as modules grow, names re-exported by several namespaces (``minmaxfuse`` and a
subpackage) must be documented once and linked from everywhere else, and a build must fail when a
public name ends up undocumented. This module does that in three steps:

1. :func:`collect` imports ``minmaxfuse`` and each public (non-underscore) submodule, reads its
   ``__all__`` and decides, for every exported object, the one *canonical* full name under which it
   is documented (the namespace whose ``__all__`` lists it and which defines it, else the first
   that lists it; top-level-only names live under ``minmaxfuse``).
2. :func:`write_sources` writes, into ``docs/generated/`` (git-ignored, rebuilt every time), one
   stub page per canonical object (``autoclass`` / ``autofunction`` / ``autodata``) and one
   ``api_<module>.inc`` fragment per module with autosummary tables. The committed pages
   ``docs/api/<module>.rst`` hold the hand-written introduction and ``.. include::`` the fragment;
   a public module without a committed page gets a generated fallback page, so nothing is missed.
3. At ``env-check-consistency`` the extension checks that every exported name has its Python
   object in the built docs and warns otherwise (a hard error under ``sphinx-build -W``). It also
   warns on references to ``minmaxfuse.*`` objects that do not resolve.

The same functions are used by ``tests/docs/test_api_coverage.py`` without running Sphinx.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "minmaxfuse"
_INDEX: ApiIndex | None = None  # set by setup(), read by the consistency check


class ApiError(RuntimeError):
    """A public module cannot be documented (import error, missing ``__all__``, bad name)."""


@dataclass
class Entry:
    """One object exported by one or more public namespaces."""

    canonical: str  # full documented name, e.g. "minmaxfuse.ot.sinkhorn_uot"
    namespace: str  # namespace of the canonical name, e.g. "minmaxfuse.ot"
    name: str  # name inside that namespace
    kind: str  # "class" | "function" | "data" | "module"
    summary: str  # first docstring line ("" when undocumented)
    aliases: list[str] = field(default_factory=list)  # other full names of the same object


@dataclass
class ApiIndex:
    """Everything the docs need to know about the public API."""

    modules: list[str]  # public submodules, e.g. ["minmaxfuse.data", ...]
    exports: dict[str, list[str]]  # namespace -> its __all__ (including "minmaxfuse")
    entries: dict[str, Entry]  # canonical name -> entry
    lookup: dict[str, str]  # every exported full name -> canonical name
    errors: list[str]


def _kind(obj: object) -> str:
    if isinstance(obj, (str, bytes, int, float, bool)) or obj is None:
        return "constant"  # documented inline (``py:data`` with its value), no page of its own
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if inspect.isroutine(obj) or callable(obj):
        return "function"
    return "data"


def _summary(obj: object, kind: str) -> str:
    if kind == "constant":
        return repr(obj)
    if kind == "data":
        return ""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ").strip()


def public_modules(package: str = PACKAGE) -> list[str]:
    """Full names of the public (non-underscore) direct submodules and subpackages."""
    pkg = importlib.import_module(package)
    return sorted(
        f"{package}.{m.name}"
        for m in pkgutil.iter_modules(pkg.__path__)
        if not m.name.startswith("_")
    )


def collect(package: str = PACKAGE) -> ApiIndex:
    """Import the package and its public modules and index their ``__all__``."""
    errors: list[str] = []
    modules = public_modules(package)
    exports: dict[str, list[str]] = {}
    objects: dict[str, object] = {}  # full exported name -> object
    loaded = {}
    for modname in [package, *modules]:
        try:
            mod = importlib.import_module(modname)
        except Exception as exc:  # noqa: BLE001 - reported, then the build fails
            errors.append(f"cannot import {modname}: {type(exc).__name__}: {exc}")
            continue
        names = getattr(mod, "__all__", None)
        if names is None:
            errors.append(f"{modname} has no __all__; every public module must define one")
            continue
        loaded[modname] = mod
        exports[modname] = list(names)
        for name in names:
            if not hasattr(mod, name):
                errors.append(f"{modname}.__all__ lists {name!r}, which the module does not define")
                continue
            objects[f"{modname}.{name}"] = getattr(mod, name)

    # Group full names that refer to the same object (identity; data only by identical name too).
    groups: list[list[str]] = []
    for full, obj in objects.items():
        kind = _kind(obj)
        for group in groups:
            other = objects[group[0]]
            same = other is obj and (
                kind != "data" or group[0].rsplit(".", 1)[1] == full.rsplit(".", 1)[1]
            )
            if same:
                group.append(full)
                break
        else:
            groups.append([full])

    entries: dict[str, Entry] = {}
    lookup: dict[str, str] = {}
    for group in groups:
        obj = objects[group[0]]
        kind = _kind(obj)
        if kind == "module":
            # A module exported as a name (e.g. ``minmaxfuse.ot``): documented by its own page.
            target = obj.__name__
            for full in group:
                lookup[full] = target
            continue
        sub = [f for f in group if f.rsplit(".", 1)[0] != package]
        home = getattr(obj, "__module__", "") or ""
        defining = [
            f
            for f in sub
            if home == f.rsplit(".", 1)[0] or home.startswith(f.rsplit(".", 1)[0] + ".")
        ]
        canonical = (defining or sub or group)[0]
        namespace, name = canonical.rsplit(".", 1)
        entries[canonical] = Entry(
            canonical=canonical,
            namespace=namespace,
            name=name,
            kind=kind,
            summary=_summary(obj, kind),
            aliases=[f for f in group if f != canonical],
        )
        for full in group:
            lookup[full] = canonical
    return ApiIndex(modules=modules, exports=exports, entries=entries, lookup=lookup, errors=errors)


# --------------------------------------------------------------------------- writing sources

_DIRECTIVE = {"class": "autoclass", "function": "autofunction", "data": "autodata"}


def _title(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n"


def _stub(entry: Entry) -> str:
    lines = [
        _title(entry.name, "="),
        f".. currentmodule:: {entry.namespace}\n",
        f".. {_DIRECTIVE[entry.kind]}:: {entry.name}",
    ]
    if entry.kind == "class":
        lines += ["   :members:", "   :show-inheritance:"]
    lines.append("")
    if entry.aliases:
        names = ", ".join(f"``{a}``" for a in entry.aliases)
        lines.append(f"Also exported as {names}.\n")
    lines += [
        # sphinx-gallery records an object under the shortest import path it finds (often the
        # top-level one), so list every name the object goes by.
        ".. minigallery:: "
        + " ".join(dict.fromkeys([entry.canonical, *entry.aliases, f"{PACKAGE}.{entry.name}"])),
        f"   :add-heading: Gallery examples using ``{entry.name}``",
        "   :heading-level: -",
        "",
    ]
    return "\n".join(lines)


def _fragment(index: ApiIndex, modname: str, level: str = "-") -> str:
    """Autosummary tables for one namespace (documented here, and re-exported from elsewhere)."""
    names = index.exports.get(modname, [])
    own: dict[str, list[str]] = {"class": [], "function": [], "data": [], "constant": []}
    reexported: list[str] = []
    submodules: list[str] = []
    for name in names:
        full = f"{modname}.{name}"
        canonical = index.lookup.get(full)
        if canonical is None:
            continue
        entry = index.entries.get(canonical)
        if entry is None:  # a module
            submodules.append(canonical)
        elif canonical == full:
            own[entry.kind].append(name)
        else:
            reexported.append(canonical)
    out = [f".. currentmodule:: {modname}\n"]
    headings = {"class": "Classes", "function": "Functions", "data": "Data and types"}
    for kind in ("class", "function", "data"):
        if not own[kind]:
            continue
        out.append(_title(headings[kind], level))
        out.append(".. autosummary::\n   :toctree: ../generated\n   :nosignatures:\n")
        out += [f"   {n}" for n in own[kind]]
        out.append("")
    if own["constant"]:
        out.append(_title("Constants", level))
        for n in own["constant"]:
            value = index.entries[f"{modname}.{n}"].summary
            what = "The version of minmaxfuse." if n == "__version__" else "A constant."
            out += [f".. py:data:: {n}", f"   :value: {value}", "", f"   {what}", ""]
    if modname == PACKAGE:
        submodules = []  # listed under "Modules" on the same page
    if reexported or submodules:
        out.append(_title("Also available here", level))
        out.append(
            "These names are exported by this namespace too; each is documented once, under the "
            "name linked below.\n"
        )
        # One table per home namespace, rendered in that namespace so that the relative
        # references in the summary lines resolve as they do on the home page.
        homes: dict[str, list[str]] = {}
        for c in sorted(set(reexported)):
            ns, short = c.rsplit(".", 1)
            homes.setdefault(ns, []).append(short)
        for ns, shorts in homes.items():
            out.append(f".. rubric:: From :mod:`{ns}`\n")
            out.append(f".. currentmodule:: {ns}\n")
            out.append(".. autosummary::\n   :nosignatures:\n")
            out += [f"   {n}" for n in shorts]
            out.append("")
        for m in sorted(set(submodules)):
            out.append(f"* :mod:`{m}`")
        out.append("")
    if not names:
        out.append("This namespace exports no names yet.\n")
    return "\n".join(out)


def _short(modname: str) -> str:
    return modname.split(".", 1)[1]


def write_sources(index: ApiIndex, docs_dir: Path) -> list[str]:
    """Write stubs, fragments, fallback pages and the API toctree; return the pages listed."""
    gen = docs_dir / "generated"
    gen.mkdir(parents=True, exist_ok=True)
    wanted: set[Path] = set()

    def put(path: Path, text: str) -> None:
        wanted.add(path)
        if not path.exists() or path.read_text() != text:  # keep mtimes for incremental builds
            path.write_text(text)

    for entry in index.entries.values():
        if entry.kind != "constant":
            put(gen / f"{entry.canonical}.rst", _stub(entry))
    pages: list[str] = []
    for modname in [PACKAGE, *index.modules]:
        short = "toplevel" if modname == PACKAGE else _short(modname)
        put(gen / f"api_{short}.inc", _fragment(index, modname, "~" if modname == PACKAGE else "-"))
        if modname == PACKAGE:
            continue
        committed = docs_dir / "api" / f"{short}.rst"
        if committed.exists():
            pages.append(short)
        else:  # no hand-written page yet: a generated one keeps every public name documented
            text = _title(f"``{modname}``", "=") + f"\n.. automodule:: {modname}\n\n"
            text += f".. include:: api_{short}.inc\n"
            put(gen / f"api_page_{short}.rst", text)
            pages.append(f"../generated/api_page_{short}")
    toc = ".. toctree::\n   :maxdepth: 1\n\n" + "".join(f"   {p}\n" for p in pages)
    put(gen / "api_toc.inc", toc)
    # Remove stale stubs of names that are no longer exported (keeps the build honest).
    for path in gen.glob("minmaxfuse*.rst"):
        if path not in wanted:
            path.unlink()
    for path in gen.glob("api_page_*.rst"):
        if path not in wanted:
            path.unlink()
    return pages


def stale_pages(index: ApiIndex, docs_dir: Path) -> list[str]:
    """Committed ``docs/api/<name>.rst`` pages whose module no longer exists."""
    existing = {_short(m) for m in index.modules} | {"index"}
    return sorted(p.stem for p in (docs_dir / "api").glob("*.rst") if p.stem not in existing)


# --------------------------------------------------------------------------- Sphinx hooks

_EXTERNAL = (
    "torch", "numpy", "np", "scipy", "sksurv", "ot", "pandas", "matplotlib", "lifelines",
    "einops", "typing", "collections", "python", "math",
)  # fmt: skip


_BUILTINS = set(dir(builtins))


def _check_consistency(app, env) -> None:  # noqa: ANN001 - Sphinx hook signature
    from sphinx.util import logging

    logger = logging.getLogger("mmf_apigen")
    index = _INDEX
    if index is None:
        return
    py = env.get_domain("py")
    objects = set(py.objects)
    for err in index.errors:
        logger.warning("[api] %s", err, type="mmf", subtype="api")
    for page in stale_pages(index, Path(app.srcdir)):
        logger.warning(
            "[api] docs/api/%s.rst documents a module that does not exist (minmaxfuse.%s)",
            page,
            page,
            type="mmf",
            subtype="api",
        )
    for full, canonical in sorted(index.lookup.items()):
        if canonical not in objects:
            logger.warning(
                "[api] public name %s (documented as %s) has no entry in the API reference",
                full,
                canonical,
                type="mmf",
                subtype="api",
            )


def _public_bases(app, name, obj, options, bases):  # noqa: ANN001 - Sphinx hook signature
    """Show public ancestors instead of private helper bases (``_Ramp`` -> ``Schedule``)."""
    out: list = []
    todo = list(bases)
    while todo:
        base = todo.pop(0)
        if getattr(base, "__name__", "").startswith("_") and base is not object:
            todo[:0] = [b for b in base.__bases__ if b not in out and b is not object]
        elif base not in out:
            out.append(base)
    bases[:] = out or [object]


def _alias_target(target: str, module: str) -> str | None:
    """Canonical full name for an alias such as ``minmaxfuse.MinMaxObjective[.step]``."""
    index = _INDEX
    if index is None:
        return None
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        head, rest = ".".join(parts[:i]), parts[i:]
        canonical = index.lookup.get(head)
        if canonical is None and i == 1 and module.startswith(PACKAGE):
            # A bare name in a minmaxfuse docstring, e.g. :class:`MinMaxObjective` written in
            # minmaxfuse.layers: resolve it when exactly one public object has that name.
            hits = {c for c in index.entries if c.rsplit(".", 1)[1] == head}
            canonical = hits.pop() if len(hits) == 1 else None
        if canonical is not None:
            full = ".".join([canonical, *rest])
            return full if full != target else None
    return None


def _missing_reference(app, env, node, contnode):  # noqa: ANN001 - Sphinx hook signature
    from sphinx.util import logging

    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    first = target.split(".", 1)[0]
    if first in _BUILTINS:
        return None
    alias = _alias_target(target, node.get("py:module") or "")
    if alias is not None:
        resolved = env.get_domain("py").resolve_xref(
            env, node.get("refdoc", ""), app.builder, node.get("reftype"), alias, node, contnode
        )
        if resolved is not None:
            return resolved
    if target.startswith(PACKAGE) or (
        not node.get("refdoc", "").startswith(("generated/", "auto_examples/"))
        and first not in _EXTERNAL
        and node.get("reftype") in {"func", "class", "meth", "attr", "obj", "mod", "data"}
    ):
        logging.getLogger("mmf_apigen").warning(
            "[api] unresolved reference to %r", target, location=node, type="mmf", subtype="ref"
        )
    return None


# A citation that starts with an author's initial (".. [1] D. R. Cox, ...") is read by reST as an
# alphabetic enumerated list ("D." is item 4), which renders as a list overprinting the label.
# Escaping the first period keeps the text and stops the list.
_INITIAL_CITATION = re.compile(r"^(\s*\.\. \[[^\]]+\]\s+[A-Z])\.(\s)")


def _escape_citation_initials(app, what, name, obj, options, lines):  # noqa: ANN001, ARG001
    """``autodoc-process-docstring``: escape a leading initial in every citation."""
    lines[:] = [_INITIAL_CITATION.sub(r"\1\\.\2", line) for line in lines]


def setup(app):  # noqa: ANN001, ANN201 - Sphinx extension entry point
    """Register the API generator with Sphinx (runs before autosummary reads the sources)."""
    index = collect()
    write_sources(index, Path(app.srcdir))
    global _INDEX
    _INDEX = index
    app.connect("env-check-consistency", _check_consistency)
    app.connect("missing-reference", _missing_reference)
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-process-docstring", _escape_citation_initials, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
