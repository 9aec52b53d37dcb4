"""Include the measured tables of ``benchmarks/README.md`` and ``examples/README.md`` in the docs.

The READMEs are the single source of the measured numbers (each script's author records them
there); the docs pages include them converted to reStructuredText at build time, so the two can
never disagree. Only the Markdown these READMEs use is handled: headings, paragraphs, bullet and
numbered lists, pipe tables (converted to ``list-table``), fenced code blocks, inline code, bold,
italics and links. Everything else is escaped and shown as text. A missing README becomes a short
note instead of a build failure.
"""

from __future__ import annotations

import re
from pathlib import Path

SOURCES = {  # generated include file -> (README relative to the repository root, heading level)
    "readme_benchmarks.inc": "benchmarks/README.md",
    "readme_examples.inc": "examples/README.md",
}
_UNDERLINE = {2: "-", 3: "~", 4: "^", 5: '"'}

_CODE = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITAL = re.compile(r"(?<![\w*])[*_](?![\s*_])(.+?)(?<![\s*_])[*_](?![\w*])")


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace("*", "\\*")
        .replace("_", "\\_")
        .replace("|", "\\|")
        .replace("`", "\\`")
    )


def _guard(out: str, start: int, end: int, text: str) -> str:
    """Add escaped spaces so that inline markup is delimited as reST requires."""
    before = (
        "\\ "
        if start > 0 and not text[start - 1].isspace() and text[start - 1] not in "([{'\"-/"
        else ""
    )
    after = "\\ " if end < len(text) and (text[end].isalnum() or text[end] in "_(") else ""
    return before + out + after


def inline(text: str) -> str:
    """Convert one line of Markdown inline markup to reST."""
    pieces: list[str] = []
    pos = 0
    pattern = re.compile("|".join(f"(?:{p.pattern})" for p in (_CODE, _LINK, _BOLD, _ITAL)))
    for m in pattern.finditer(text):
        pieces.append(_escape(text[pos : m.start()]))
        token = m.group(0)
        if (c := _CODE.fullmatch(token)) is not None:
            body = c.group(2).strip()
            out = f"``{body}``" if "``" not in body else _escape(body)
        elif (c := _LINK.fullmatch(token)) is not None:
            out = f"`{_escape(c.group(1))} <{c.group(2)}>`__"
        elif (c := _BOLD.fullmatch(token)) is not None:
            out = f"**{_escape(c.group(1))}**"
        else:
            c = _ITAL.fullmatch(token)
            out = f"*{_escape(c.group(1))}*" if c is not None else _escape(token)
        pieces.append(_guard(out, m.start(), m.end(), text))
        pos = m.end()
    pieces.append(_escape(text[pos:]))
    return "".join(pieces)


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)]


def _table(rows: list[str]) -> list[str]:
    header, body = _cells(rows[0]), [_cells(r) for r in rows[2:]]
    width = max(len(header), *(len(r) for r in body)) if body else len(header)
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *body]:
        row = row + [""] * (width - len(row))
        for j, cell in enumerate(row):
            text = inline(cell) or "\\ "
            out.append(("   * - " if j == 0 else "     - ") + text)
    return [*out, ""]


def convert(markdown: str, *, top: int = 2) -> str:
    """Convert a README to reST; ``#`` (the title) is dropped, ``##`` becomes level ``top``."""
    lines = re.sub(r"<!--.*?-->", "", markdown, flags=re.S).splitlines()
    out: list[str] = []
    list_indent: int | None = None  # indent of the last list item while inside a list
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            lang = stripped[3:].strip() or "text"
            block = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                block.append(lines[i])
                i += 1
            i += 1
            out += ["", f".. code-block:: {lang}", ""] + [f"   {b}" for b in block] + [""]
            continue
        heading = re.match(r"^(#{1,6})\s+(.*?)\s*#*$", line)
        if heading:
            level = len(heading.group(1))
            if level > 1:
                title = inline(heading.group(2))
                char = _UNDERLINE.get(level - 2 + top, '"')
                out += ["", title, char * max(len(title), 3), ""]
            i += 1
            continue
        if (
            stripped.startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\s*\|?[\s:|-]+\|?\s*$", lines[i + 1])
            and "-" in lines[i + 1]
        ):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i])
                i += 1
            out += [""] + _table(rows)
            continue
        item = re.match(r"^(\s*)([-*+]|\d+\.)\s+(.*)$", line)
        if item:
            indent, bullet, rest = item.groups()
            bullet = "-" if bullet in "-*+" else "#."
            # reST needs a blank line before a list and around every change of nesting level.
            if out and out[-1].strip() and list_indent != len(indent):
                out.append("")
            out.append(f"{indent}{bullet} {inline(rest)}")
            list_indent = len(indent)
            i += 1
            pad = " " * (len(indent) + len(bullet) + 1)
            while (
                i < len(lines)
                and lines[i].strip()
                and lines[i].startswith(" ")
                and not re.match(r"^\s*([-*+]|\d+\.)\s+", lines[i])
            ):
                out.append(pad + inline(lines[i].strip()))
                i += 1
            continue
        if list_indent is not None and stripped and not line.startswith(" "):
            out.append("")  # a paragraph right after a list
        list_indent = None if not stripped or not line.startswith(" ") else list_indent
        out.append(inline(line) if stripped else "")
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def write_includes(root: Path, gen: Path) -> None:
    """Write one ``.inc`` file per README (or a note when the README does not exist yet)."""
    gen.mkdir(parents=True, exist_ok=True)
    for name, rel in SOURCES.items():
        src = root / rel
        if src.exists():
            text = convert(src.read_text(encoding="utf-8"))
        else:
            text = f"*``{rel}`` does not exist yet in this checkout; nothing has been measured.*\n"
        path = gen / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def setup(app):  # noqa: ANN001, ANN201 - Sphinx extension entry point
    """Convert the READMEs before the sources are read (``include`` tracks the dependency)."""
    srcdir = Path(app.srcdir)
    write_includes(srcdir.parent, srcdir / "generated")
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
