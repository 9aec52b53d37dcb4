"""
Benchmarks and results at a glance
==================================

The measured tables of :doc:`/benchmarks` (``benchmarks/README.md``) and :doc:`/results`
(``examples/RESULTS.md``) as figures. The tables are read from those files when the
documentation is built, so the figures always show the numbers recorded in the repository; a
table that is missing is skipped with a note.
"""

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minmaxfuse

ROOT = Path(minmaxfuse.__file__).resolve().parents[1]  # the docs are built from a checkout
NUMBER = re.compile(r"([-+]?\d*\.?\d+(?:e[-+]?\d+)?)(?:\s*±\s*(\d*\.?\d+))?", re.I)


def table(path, after, nth=0):
    """The ``nth`` pipe table after the line starting with ``after``, as (header, rows)."""
    text = (ROOT / path).read_text(encoding="utf-8") if (ROOT / path).exists() else ""
    _, found, rest = text.partition(after)
    blocks = re.findall(r"(?:^\|.*\n?)+", rest, re.M) if found else []
    if len(blocks) <= nth:
        print(f"{path}: no table {nth + 1} after {after!r}; skipped")
        return None, []
    lines = blocks[nth].strip().splitlines()
    rows = [[c.strip(" *`") for c in line.strip().strip("|").split("|")] for line in lines]
    return rows[0], [r for r in rows[2:] if len(r) == len(rows[0])]


def number(cell):
    """``"0.650 ± 0.016"`` -> (0.65, 0.016); ``"19.0x (9.6x CPU)"`` -> (19.0, 0); else NaN."""
    m = NUMBER.match(cell)
    return (float(m.group(1)), float(m.group(2) or 0)) if m else (np.nan, 0.0)


# %%
# Unbalanced OT: minmaxfuse against POT
# -------------------------------------
# Forward and backward pass of 32 problems of N x 32 with plan gradients, 100 iterations, one
# thread. Left: time against problem size (log-log). Right: peak memory against the number of
# Sinkhorn iterations: POT's autograd keeps every iteration, the implicit backward keeps none.
header, rows = table("benchmarks/README.md", "**Time**")
if rows:
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for impl, marker in (("POT loop", "o"), ("minmaxfuse, implicit", "s")):
        color = "tab:blue" if impl.startswith("POT") else "tab:red"
        sel = sorted((int(r[0]), number(r[2])[0], number(r[3])[0]) for r in rows if r[1] == impl)
        n, wall, cpu = np.array(sel).T
        ax_t.loglog(n, wall, marker=marker, color=color, label=f"{impl}: wall")
        ax_t.loglog(n, cpu, marker=marker, color=color, linestyle="--", label=f"{impl}: CPU")
    ax_t.set(xlabel="N (tokens per problem)", ylabel="seconds (forward + backward)")
    ax_t.set_title("Time, B = 32, K = 32")
    ax_t.legend(fontsize=8)
    _, mem = table("benchmarks/README.md", "**Peak memory**")
    iters = [10, 100, 300]
    for r in mem:
        peaks = [float(v) for v in r[5].split("/")]
        color = "tab:blue" if r[1].startswith("POT") else "tab:red"
        style = "-" if r[0] == "4096" else ":"
        ax_m.plot(iters, peaks, style, color=color, marker="o", label=f"{r[1]}, N = {r[0]}")
    ax_m.set(xlabel="Sinkhorn iterations", ylabel="peak memory increase (MiB)", xticks=iters)
    ax_m.set_ylim(bottom=0)
    ax_m.set_title("Peak memory of one forward + backward pass")
    ax_m.legend(fontsize=8, loc="center right")

# %%
# Survival metrics: Harrell's C-index
# -----------------------------------
# Median wall time of one C-index against the number of patients, without and with ties.
header, rows = table("benchmarks/README.md", "## Survival metrics")
if rows:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, layout="constrained")
    for ax, ties in zip(axes, ("no", "yes")):
        sel = [r for r in rows if r[1] == ties]
        n = [float(r[0]) for r in sel]
        for j, name in ((2, "minmaxfuse"), (3, "scikit-survival"), (4, "lifelines")):
            ax.loglog(n, [number(r[j])[0] for r in sel], marker="o", label=name)
        ax.set(xlabel="n (patients)", title="tied times and risks" if ties == "yes" else "no ties")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("seconds per C-index")

# %%
# Together and Apart on a synthetic cohort
# ----------------------------------------
# Mean ± sd over three seeds for the four combinations of the Together and Apart terms
# (table A of the benchmark: TTA-like weights). Together concentrates the plans (lower usage
# entropy), Apart widens the modality gap; neither changes the C-index beyond the seed spread.
_, accuracy = table("benchmarks/README.md", "**A. TTA-like weights**", 0)
geo_header, geometry = table("benchmarks/README.md", "**A. TTA-like weights**", 1)
if accuracy and geometry:
    panels = [
        (accuracy, 1, "test C-index"),
        (accuracy, 3, "R² of own specific factors"),
        (geometry, geo_header.index("gap"), "modality gap"),
        (geometry, geo_header.index("usage_H"), "prototype usage entropy"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), layout="constrained")
    for ax, (rows, j, label) in zip(axes, panels):
        values, errors = zip(*(number(r[j]) for r in rows))
        ax.bar([r[0] for r in rows], values, yerr=errors, capsize=3, color="tab:blue")
        ax.tick_params(axis="x", labelsize=8)
        low = min(v - e for v, e in zip(values, errors))
        ax.set_ylim(bottom=max(0.0, low - 0.1 * abs(low)))
        ax.set(xlabel="terms switched on", ylabel=label)

# %%
# Reference model on TCGA
# -----------------------
# Five-fold test C-index (mean ± sd over folds) of each method in each setting of the summary
# table of :doc:`/results`. A C-index of 0.5 is chance.
header, rows = table("examples/RESULTS.md", "## Summary")
if rows:
    settings = header[1:]
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(12, 4.5), layout="constrained")
    for i, r in enumerate(rows):
        values, errors = zip(*(number(c) for c in r[1:]))
        x = np.arange(len(settings)) + (i - (len(rows) - 1) / 2) * width
        ax.bar(x, values, width, yerr=errors, capsize=2, label=r[0])
    ax.axhline(0.5, color="grey", linewidth=1, linestyle=":")
    ax.set_xticks(np.arange(len(settings)), settings)
    ax.set(ylim=(0.4, 0.8), xlabel="cohort and modalities", ylabel="test C-index (5-fold)")
    ax.legend(fontsize=8, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
