"""
The benchmark tables as figures
===============================

The benchmark scripts record their measurements as Markdown tables in ``benchmarks/README.md``
(see :doc:`/benchmarks`), and the reference example records its cross-validation results in
``examples/README.md`` (see :doc:`/results`). This script reads those tables *from the files* at
build time and draws every numeric column, so the figures always show the numbers that are in
the repository. Sections whose benchmark has not been run yet have no table and are listed as
such.
"""

# %%
# Reading the tables
# ------------------
import re
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minmaxfuse


def repository_root():
    """The checkout holding ``benchmarks/`` (the docs are built from a source checkout)."""
    here = Path.cwd()
    for path in [Path(minmaxfuse.__file__).resolve().parents[1], here, *here.parents]:
        if (path / "benchmarks").is_dir() and (path / "minmaxfuse").is_dir():
            return path
    return here


ROOT = repository_root()
LEADING = re.compile(r"^([-+]?\d*\.?\d+(?:e[-+]?\d+)?)", re.I)  # "19.0x (9.6x CPU)" -> 19.0
PLUSMINUS = re.compile(r"^\s*([-+]?\d*\.?\d+)\s*(?:±|\+/-|\+-)\s*(\d*\.?\d+)\s*$")
MISSING = {"", "-", "—", "n/a", "na", "nan"}


def cells(line):
    line = line.strip().strip("|")
    return [re.sub(r"[*`]", "", c).strip() for c in re.split(r"(?<!\\)\|", line)]


def tables(path):
    """Yield (section heading, header, rows) for every pipe table of a Markdown file."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    section, caption, i, fenced = path.name, "", 0, False
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fenced = not fenced
        if fenced:  # "#" starts a comment, not a heading, inside a code block
            i += 1
            continue
        if lines[i].startswith("#"):
            section, caption = lines[i].lstrip("#").strip(), ""
        elif lines[i].startswith("**") and "**" in lines[i][2:]:  # e.g. "**A. TTA-like weights**"
            caption = lines[i][2 : lines[i].index("**", 2)].strip()
        is_table = (
            lines[i].strip().startswith("|")
            and i + 1 < len(lines)
            and set(lines[i + 1].strip()) <= set("|:- ")
            and "-" in lines[i + 1]
        )
        if is_table:
            # The line just above a table usually says what its numbers are.
            above = next((x.strip() for x in reversed(lines[max(0, i - 3) : i]) if x.strip()), "")
            if above.startswith("**") and "**" in above[2:]:
                above = above[above.index("**", 2) + 2 :].lstrip(" :")
            above = re.sub(r"[*`]", "", above)
            above = above if len(above) <= 90 else above[:87] + "..."
            header = cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            title = f"{section}: {caption}" if caption else section
            yield (f"{title}\n{above}" if above else title), header, rows
            continue
        i += 1


def numeric(column):
    """Values, error bars and whether some cell had text after its number; None if not numeric.

    A column is numeric when every cell is a number, ``mean ± sd`` or missing (``-``), and at
    least one cell is a number. Only the leading number of a cell such as ``19.0x (9.6x CPU)``
    is drawn.
    """
    values, errors, extra = [], [], False
    for cell in column:
        if (m := PLUSMINUS.match(cell)) is not None:
            values.append(float(m.group(1)))
            errors.append(float(m.group(2)))
        elif cell.lower() in MISSING:
            values.append(np.nan)
            errors.append(0.0)
        elif (m := LEADING.match(cell)) is not None:
            values.append(float(m.group(1)))
            errors.append(0.0)
            rest = cell[m.end() :].strip()
            extra |= bool(rest) and rest.lower() not in {"x", "%", "s", "ms", "mib", "gib", "mb"}
        else:
            return None
    values = np.array(values)
    if np.isnan(values).all():
        return None
    return values, np.array(errors), extra


found = []
for readme in (ROOT / "benchmarks" / "README.md", ROOT / "examples" / "README.md"):
    for section, header, rows in tables(readme):
        found.append((readme.relative_to(ROOT), section, header, rows))
        name = section.replace("\n", " | ")
        print(f"{readme.relative_to(ROOT)}: '{name}' ({len(rows)} rows)")
for readme in ("benchmarks/README.md", "examples/README.md"):
    path = ROOT / readme
    if not path.exists():
        print(f"{readme}: not in this checkout")
    else:
        empty = [
            line.lstrip("#").strip()
            for line, nxt in zip(path.read_text().splitlines(), path.read_text().splitlines()[2:])
            if line.startswith("## ") and "not yet measured" in nxt.lower()
        ]
        for name in empty:
            print(f"{readme}: '{name}' has not been measured yet")


# %%
# One figure per table
# --------------------
# Rows are labelled by their first column and their other non-numeric cells; every other
# numeric column gets a panel (a log scale
# when its values span more than two decades, error bars where a cell reads ``mean ± sd``).
def draw(source, section, header, rows):
    width = len(header)
    rows = [r + [""] * (width - len(r)) for r in rows if any(r)]
    columns = [[r[j] for r in rows] for j in range(width)]
    parsed = [numeric(c) for c in columns]
    # The first column names the row (a size, a cohort, a method) even when it is numeric.
    label_cols = [0] + [j for j, p in enumerate(parsed) if p is None and j > 0]
    value_cols = [j for j, p in enumerate(parsed) if p is not None and j > 0]
    if not value_cols or not rows:
        return None
    labels = [" / ".join(r[j] for j in label_cols) for r in rows]
    n = len(value_cols)
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows + 0.8), squeeze=False, layout="constrained"
    )
    for ax, j in zip(axes.flat, value_cols):
        values, errors, extra = parsed[j]
        ax.bar(range(len(values)), values, yerr=errors if errors.any() else None, color="tab:blue")
        positive = values[np.nan_to_num(values) > 0]
        if positive.size and positive.max() / positive.min() > 100:
            ax.set_yscale("log")
        ax.set_xticks(range(len(values)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(header[j] + (" (first number)" if extra else ""), fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    title = f"{section}  ({source})".split("\n")
    fig.suptitle("\n".join(textwrap.fill(line, 30 * ncols + 20) for line in title), fontsize=9)
    return fig


counts = {}
for _, section, _, _ in found:
    counts[section] = counts.get(section, 0) + 1
seen = {}
figures = []
for source, section, header, rows in found:
    if counts[section] > 1:
        seen[section] = seen.get(section, 0) + 1
        section = f"{section}, table {seen[section]} of {counts[section]}"
    figures.append(draw(source, section, header, rows))
print(f"{sum(f is not None for f in figures)} figure(s) drawn from {len(found)} table(s)")
