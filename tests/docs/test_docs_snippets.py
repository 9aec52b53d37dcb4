"""The Python code blocks of the tutorial pages run, and print what the pages say they print.

Each page's ``.. code-block:: python`` blocks are executed in order in one namespace. A line
``# <text>`` directly after a ``print(...)`` line is the expected output of that print and is
compared (whitespace-normalised). Pages whose blocks are fragments of a larger program (the
min-max page) are not listed here; the gallery scripts are executed by the docs build.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ["quickstart.rst", "index.rst", "concepts/data.rst"]


def python_blocks(text: str) -> list[str]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].strip() == ".. code-block:: python":
            i += 1
            body: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
                body.append(lines[i][3:])
                i += 1
            blocks.append("\n".join(body).strip("\n"))
        else:
            i += 1
    return blocks


def expected_outputs(block: str) -> list[str]:
    """Expected output lines: comment lines that directly follow a ``print(`` statement."""
    out, lines = [], block.splitlines()
    for j, line in enumerate(lines[:-1]):
        nxt = lines[j + 1].strip()
        if line.lstrip().startswith("print(") and nxt.startswith("# "):
            out.append(nxt[2:])
    return out


def norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs(page):
    blocks = python_blocks((DOCS / page).read_text())
    assert blocks, f"{page} has no python code block"
    namespace: dict = {}
    for block in blocks:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(block, f"{page}:block", "exec"), namespace)  # noqa: S102
        printed = [norm(line) for line in buf.getvalue().splitlines()]
        for want in expected_outputs(block):
            assert norm(want) in printed, f"{page}: expected output {want!r}, got {printed}"


def test_block_parser_finds_prints():
    block = "x = 1\nprint(x)\n# 1\ny = 2"
    assert expected_outputs(block) == ["1"]
    assert python_blocks(".. code-block:: python\n\n   a = 1\n   b = 2\n\nText") == ["a = 1\nb = 2"]
