"""One method x cohort table from finished runs of ``examples/tta_tcga.py``.

Usage (from the repository root)::

    python examples/tta/table.py runs/blca runs/luad                 # labels: folder names
    python examples/tta/table.py BLCA=runs/blca_tta BLCA=runs/blca_mcat LUAD=runs/luad --markdown

Each argument is a run's output folder (``--out``), optionally prefixed by ``LABEL=``; runs that
share a label are merged (e.g. one ``--method`` per folder). For every metric (Harrell C, Uno's
C, IBS) it prints one table: a row per method, a column per label with mean ± sd over the
folds, the mean over the labels where the method ran everywhere, and the method's total wall
time (training and scoring, summed over its runs). The runs must use the same folds per label
(checked on the test patients).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

METRICS = {
    "c_index": "Harrell C (higher is better)",
    "c_index_uno": "Uno's C (higher is better)",
    "ibs": "integrated Brier score (lower is better)",
}


class TableError(ValueError):
    """A run folder that cannot be tabulated (missing, unfinished, or other folds)."""


def _load(arg: str) -> tuple[str, Path, dict]:
    label, sep, path = arg.partition("=")
    if not sep:
        label, path = Path(arg).name, arg
    res_path = Path(path) / "results.json"
    if not res_path.is_file():
        raise TableError(f"{path}: no results.json (not a finished run of examples/tta_tcga.py)")
    try:
        return label, Path(path), json.loads(res_path.read_text())
    except json.JSONDecodeError as exc:
        raise TableError(f"{res_path}: unreadable ({exc})") from None


def collect(args: list[str]) -> tuple[list[str], list[str], dict]:
    """``(labels, methods, cells)`` with ``cells[(method, label)]`` = per-fold records."""
    labels: list[str] = []
    methods: list[str] = []
    cells: dict = {}
    tests: dict[str, list] = {}
    for arg in args:
        label, path, res = _load(arg)
        if label not in labels:
            labels.append(label)
        if not isinstance(res.get("methods"), dict):
            raise TableError(f"{path}/results.json has no per-method summaries")
        for m, summary in res["methods"].items():
            if m not in methods:
                methods.append(m)
            if (m, label) in cells:
                raise TableError(f"{label}: method {m} appears in two runs (second: {path})")
            recs = []
            for f in summary["folds"]:
                rp = path / m / f"fold_{f['fold']}" / "result.json"
                if not rp.is_file():
                    raise TableError(f"{rp} is missing (the run folder is incomplete)")
                recs.append(json.loads(rp.read_text()))
            ids = [sorted(p["case_id"] for p in r["patients"]) for r in recs]
            if label in tests and tests[label] != ids:
                raise TableError(
                    f"{label}: {path} tested other patients than the label's first run; "
                    "merge only runs on the same folds"
                )
            tests.setdefault(label, ids)
            cells[(m, label)] = recs
    return labels, methods, cells


def _mean_sd(vals: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in vals if x is not None and np.isfinite(x)], np.float64)
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def render(labels, methods, cells, metric: str, *, markdown: bool) -> str:
    """One metric's table as Markdown or aligned text."""
    head = ["method", *labels, "mean", "wall"]
    rows = []
    for m in methods:
        row, means, secs = [m], [], 0.0
        for lab in labels:
            recs = cells.get((m, lab))
            if recs is None:
                row.append("-")
                continue
            mu, sd = _mean_sd([r.get(metric) for r in recs])
            means.append(mu)
            secs += sum(float(r.get("seconds", 0.0)) for r in recs)
            row.append(f"{mu:.3f} ± {sd:.3f}" if np.isfinite(sd) else f"{mu:.3f}")
        full = len(means) == len(labels) and all(np.isfinite(means))
        row.append(f"{np.mean(means):.3f}" if full else "-")
        row.append(f"{secs:.0f} s" if secs < 120 else f"{secs / 60:.1f} min")
        rows.append(row)
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the tables; exit 2 with one ``ERROR:`` line on a bad run folder."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="[LABEL=]RUN_DIR")
    p.add_argument("--markdown", action="store_true", help="Markdown tables")
    p.add_argument(
        "--metrics",
        default="c_index,c_index_uno,ibs",
        help="comma list from c_index, c_index_uno, ibs (default: all three)",
    )
    p.add_argument(
        "--methods",
        help="comma list: the rows, in this order (default: every method, in order of appearance)",
    )
    args = p.parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        print(
            f"ERROR: --metrics must be names from {', '.join(METRICS)}; got {args.metrics!r}",
            file=sys.stderr,
        )
        return 2
    try:
        labels, methods, cells = collect(args.runs)
    except (TableError, OSError, json.JSONDecodeError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in methods]
        if unknown:
            print(
                f"ERROR: --methods names {', '.join(unknown)}, which no run has; the runs have "
                f"{', '.join(methods)}",
                file=sys.stderr,
            )
            return 2
        methods = wanted
    for metric in metrics:
        print(f"\n{METRICS[metric]}, mean ± sd over folds")
        print(render(labels, methods, cells, metric, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
