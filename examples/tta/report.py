"""Outputs of the example: atomic file writes, results tables, Kaplan-Meier and training plots."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .errors import ResumeStateError


def _umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through a temporary file in the same directory, then rename (atomic on POSIX).

    Under torchrun only rank 0 writes: any other rank calling this is a bug and raises.
    """
    path = Path(path)
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        raise RuntimeError(f"rank {dist.get_rank()} tried to write {path}; only rank 0 writes")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600 files; give the umask's usual 0666 & ~umask
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj) -> None:
    """Atomic JSON write; NaN/inf become null."""
    data = json.dumps(_clean(obj), indent=2, sort_keys=False).encode()
    atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> None:
    """Atomic text write."""
    atomic_write(path, lambda f: f.write(text.encode()))


def save_torch(path: str | Path, obj) -> None:
    """Atomic ``torch.save``."""
    atomic_write(path, lambda f: torch.save(obj, f))


def _unreadable(path: Path, exc: BaseException) -> ResumeStateError:
    return ResumeStateError(
        f"cannot read {str(path)!r}, saved for --resume ({type(exc).__name__}: "
        f"{str(exc)[:120]}); delete it and rerun with --resume to redo that part from scratch, "
        "or start again without --resume"
    )


def load_torch(path: str | Path):
    """``torch.load`` of a file this example saved (e.g. ``state.pt``) for ``--resume``;
    an unreadable (truncated, corrupt) file raises :class:`ResumeStateError`."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise _unreadable(path, exc) from exc


def read_json(path: str | Path):
    """A JSON file this example wrote (e.g. ``result.json``) for ``--resume``."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _unreadable(path, exc) from exc


def mean_std(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean, sample std (ddof=1) and population std (ddof=0), ignoring NaN."""
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    sd1 = float(a.std(ddof=1)) if a.size > 1 else float("nan")
    return float(a.mean()), sd1, float(a.std(ddof=0))


def format_table(rows: list[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Plain-text table from dicts; ``columns`` are (key, header) pairs."""
    cells = [[h for _, h in columns]]
    for r in rows:
        line = []
        for key, _ in columns:
            v = r.get(key, "")
            if isinstance(v, float):
                v = "nan" if not np.isfinite(v) else f"{v:.3f}"
            line.append(str(v))
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    out = []
    for j, c in enumerate(cells):
        out.append("  ".join(s.ljust(w) for s, w in zip(c, widths)))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the examples extra
        return None
    return plt


def _save_png(plt, fig, path: str | Path, *, dpi: int) -> None:
    """Render ``fig`` to PNG in memory, close it, and write the bytes atomically to ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_km(
    path: str | Path,
    groups: dict[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    *,
    xlabel: str = "time",
) -> bool:
    """Kaplan-Meier curves (step plot) of several groups: name -> (time, event)."""
    from minmaxfuse.survival import kaplan_meier

    plt = _plt()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (t, e) in groups.items():
        if len(t) == 0:
            continue
        km = kaplan_meier(event=np.asarray(e, bool), time=np.asarray(t, np.float64))
        times = np.concatenate([[0.0], np.asarray(km.time)])
        surv = np.concatenate([[1.0], np.asarray(km.survival)])
        ax.step(times, surv, where="post", label=f"{name} (n={len(t)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(plt, fig, path, dpi=110)
    return True


def plot_curves(path: str | Path, histories: dict[int, list[dict]]) -> bool:
    """Training loss and validation C-index per epoch, one line per fold."""
    plt = _plt()
    if plt is None or not histories:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for k, hist in sorted(histories.items()):
        ep = [h["epoch"] for h in hist]
        axes[0].plot(ep, [h["train_loss"] for h in hist], label=f"fold {k}")
        axes[1].plot(ep, [h.get("val_c_index", float("nan")) for h in hist], label=f"fold {k}")
    axes[0].set_title("training loss (all terms)")
    axes[1].set_title("validation C-index")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # epochs are whole numbers
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    _save_png(plt, fig, path, dpi=100)
    return True


def plot_heatmap(
    path: str | Path, matrix: np.ndarray, rows: list[str], cols: list[str], title: str
) -> bool:
    """Heat map (e.g. prototype x pathway association)."""
    plt = _plt()
    if plt is None:
        return False
    h = max(3.0, 0.16 * len(rows) + 1.5)
    w = max(4.0, 0.18 * len(cols) + 2.5)
    fig, ax = plt.subplots(figsize=(min(w, 20), min(h, 20)))
    im = ax.imshow(matrix, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=5)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, fontsize=5, rotation=90)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    _save_png(plt, fig, path, dpi=110)
    return True


def explain_patient(out_dir: Path, method: str, case_id: str, top: int = 5) -> str:
    """Text summary of one test patient's transport: top prototypes and their top tokens."""
    for path in sorted((Path(out_dir) / method).glob("fold_*/explain.json")):
        data = json.loads(path.read_text())
        if case_id not in data["case_ids"]:
            continue
        rec = data["patients"][data["case_ids"].index(case_id)]
        lines = [f"{case_id} ({path.parent.name}, test patient): transport per prototype"]
        for mod, info in rec.items():
            mass = np.asarray(info["token_mass"], float)
            topk = np.asarray(info["token_top_prototype"], int)
            share = np.asarray(info.get("token_top_share", np.ones_like(mass)), float)
            pmass = np.asarray(info["prototype_mass"], float)
            names = info.get("token_names") or [f"patch {i}" for i in range(len(mass))]
            lines.append(
                f"  [{mod}] {len(mass)} tokens, mass sent to prototypes {mass.sum():.2f} "
                "(token: mass x share of it on this prototype)"
            )
            for k in np.argsort(-pmass)[:top]:
                idx = np.flatnonzero(topk == k)
                w = mass[idx] * share[idx]
                idx = idx[np.argsort(-w)][:top]
                toks = ", ".join(f"{names[i]} ({mass[i]:.2f} x {share[i]:.2f})" for i in idx)
                lines.append(f"    prototype {k:>2} (mass {pmass[k]:.2f}): {toks or '-'}")
        return "\n".join(lines)
    return f"{case_id}: not a test patient of {method} (no explain.json lists it)"
