"""Every flag of ``examples/tta_tcga.py`` is checked here, before any work.

:data:`RULES` has one entry per argparse ``dest``: a :class:`Number` range, a :class:`Choice`
(argparse's own ``choices=``), a :class:`Switch` (``store_true``), a :class:`Checked` value
(checked by a named function below) or an :class:`Exempt` with its reason. A test fails when a
flag of the parser has no entry, so a new flag cannot skip validation. :func:`check` applies
the table, then the checks that involve several flags, the files and the device.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .data import GROUPS_PER_COLUMN, DataFileError, MissingFeatureError, count_split_files
from .errors import UsageError

SYNTHETIC_MODALITIES = ("wsi", "rna")
# flags that change nothing that is computed: a --resume may change them
RESUME_FREE = (
    "resume", "quiet", "out", "threads", "explain", "device", "inject_nan_step", "interrupt_after",
)  # fmt: skip
RUN_CONFIG = "run_config.json"


@dataclass(frozen=True)
class Number:
    """An ``int`` or finite ``float`` in a range; ``None`` allowed only with ``none_ok``."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    none_ok: bool = False

    def describe(self) -> str:
        """E.g. ``an integer >= 1`` or ``a number in [0, 1)``."""
        what = "an integer" if self.kind is int else "a number"
        if self.kind is int:
            return self._bounds(what, "{:d}")
        return self._bounds(what, "{:g}")

    def _bounds(self, what: str, f: str) -> str:
        lo = None if self.lo is None else f.format(self.kind(self.lo))
        hi = None if self.hi is None else f.format(self.kind(self.hi))
        if lo is not None and hi is not None:
            return (
                f"{what} in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
            )
        if lo is not None:
            return f"{what} {'>' if self.lo_open else '>='} {lo}"
        if hi is not None:
            return f"{what} {'<' if self.hi_open else '<='} {hi}"
        return what

    def problem(self, value: Any) -> str | None:
        """``None`` when ``value`` is allowed, else what it must be."""
        if value is None:
            return None if self.none_ok else f"must be {self.describe()}"
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return f"must be {self.describe()}"
        if not math.isfinite(float(value)):
            return f"must be {self.describe()}"
        v = float(value)
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return f"must be {self.describe()}"
        if self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)):
            return f"must be {self.describe()}"
        return None


@dataclass(frozen=True)
class Choice:
    """One of the flag's argparse ``choices`` (argparse refuses anything else)."""


@dataclass(frozen=True)
class Switch:
    """A ``store_true`` flag; combinations with other flags are checked in :func:`check`."""


@dataclass(frozen=True)
class Checked:
    """Checked by the named function of this module (files, names, combinations)."""

    by: str


@dataclass(frozen=True)
class Exempt:
    """Not validated, for the stated reason."""

    reason: str


def Int(lo: int | None = None, hi: int | None = None) -> Number:  # noqa: N802
    """An integer in [lo, hi]."""
    return Number(int, lo, hi)


def Float(lo=None, hi=None, *, lo_open=False, hi_open=False, none_ok=False) -> Number:  # noqa: N802
    """A finite number in the given range."""
    return Number(float, lo, hi, lo_open, hi_open, none_ok)


RULES: dict[str, Number | Choice | Switch | Checked | Exempt] = {
    "help": Exempt("argparse's own -h/--help: prints the help and exits"),
    # ---- data
    "cohort_csv": Checked("_check_paths"),
    "modalities": Checked("_check_names (distinct names, resolved by cli.resolve)"),
    "groups": Checked("_check_groups"),
    "splits": Checked("_check_paths"),
    "endpoint": Choice(),
    "labels_csv": Checked("_check_paths"),
    "features_dir": Checked("_check_paths"),
    "skip_missing": Switch(),
    "folds": Int(1),  # and >= 2 unless --splits (1: only its first fold), see _check_combinations
    "stratify_site": Switch(),
    "val_frac": Float(0.0, 1.0, lo_open=True, hi_open=True),
    "synthetic_patients": Int(2),
    "tcga": Checked("_check_paths"),
    # ---- model
    "recipe": Choice(),
    "method": Checked("_check_names"),
    "no_together": Switch(),
    "no_apart": Switch(),
    "compare": Switch(),
    "dim": Int(1),
    "prototypes": Int(1),
    "dropout": Float(0.0, 1.0, hi_open=True),
    "rho_eval": Float(0.0, 1.0, lo_open=True, none_ok=True),
    "semantic": Float(0.0),
    "heads": Int(1),
    "consistency_weight": Float(0.0),
    "together_weight": Float(0.0),
    "apart_weight": Float(0.0),
    "apart_negatives": Choice(),
    "ot_tol": Float(0.0, lo_open=True),
    "ot_max_iter": Int(1),
    "ramp_epochs": Float(0.0),  # 0: no ramp, the full mass from the first step
    "loss": Choice(),
    "n_bins": Int(2),
    "nll_alpha": Float(0.0, 1.0),
    # ---- training
    "epochs": Int(1),
    "batch_size": Int(2),
    "lr": Float(0.0, lo_open=True),
    "weight_decay": Float(0.0),
    "warmup_epochs": Float(0.0),
    "grad_clip": Float(0.0),  # 0: no clipping
    "bag_size": Int(0),  # 0: every patch
    "select": Choice(),
    "min_epoch": Int(0),  # and < --epochs, see _check_combinations
    "patience": Int(0),  # 0: no early stopping
    "ensemble": Int(1),
    "ensemble_select": Choice(),
    "seed": Int(0, 2**32 - 1),
    "device": Choice(),  # and CUDA present for "cuda", see _check_device
    "no_amp": Switch(),
    "threads": Int(0),
    # ---- outputs
    "out": Checked("_check_out"),
    "resume": Switch(),
    "quiet": Switch(),
    "explain": Exempt("any case id: one that is not a test patient is reported after the run"),
    "drop_modality": Checked("_check_names"),
    "drop_frac": Float(0.0, 1.0),
    "inject_nan_step": Int(-1),  # testing hook, -1: off
    "interrupt_after": Int(-1),  # testing hook, -1: off
}


def flag(parser: argparse.ArgumentParser | None, dest: str) -> str:
    """The option string of ``dest`` (``--batch-size`` for ``batch_size``)."""
    for a in parser._actions if parser is not None else ():
        if a.dest == dest and a.option_strings:
            return max(a.option_strings, key=len)
    return "--" + dest.replace("_", "-")


def check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Raise the first problem of the resolved ``args``; nothing is read or written but tables'
    existence, split file names and the output folder's permissions."""
    _check_rules(args, parser)
    _check_names(args, parser)
    _check_combinations(args, parser)
    _check_paths(args, parser)
    _check_groups(args)
    _check_out(args)
    _check_device(args)


def _check_rules(args, parser) -> None:
    for dest, rule in RULES.items():
        if isinstance(rule, Number) and hasattr(args, dest):
            value = getattr(args, dest)
            why = rule.problem(value)
            if why:
                raise UsageError(f"{flag(parser, dest)} {why}; got {value!r}")


def known_methods(modalities) -> list[str]:
    """Names ``--method`` accepts with these modalities."""
    from .peers import peer_names

    return [
        "tta", "tta_no_together", "tta_no_apart", "tta_no_together_no_apart", "late_concat",
        *[f"single_{m}" for m in modalities], *peer_names(), "coxnet",
    ]  # fmt: skip


def _check_names(args, parser) -> None:
    mods = list(args.modalities)
    known = known_methods(mods)
    if args.method not in known:
        raise UsageError(f"--method {args.method!r} is not one of {', '.join(known)}")
    from .peers import PEERS, min_modalities

    if args.method in PEERS and len(mods) < min_modalities(args.method):
        raise UsageError(
            f"--method {args.method} fuses at least {min_modalities(args.method)} modalities; "
            f"got --modalities {','.join(mods)}"
        )
    if args.drop_modality is not None:
        if args.drop_modality not in mods:
            raise UsageError(
                f"--drop-modality {args.drop_modality!r} is not among --modalities {','.join(mods)}"
            )
        if len(mods) < 2:
            raise UsageError("--drop-modality needs at least two modalities (one must remain)")


def _given(args, parser, dest: str) -> bool:
    """Whether ``dest`` differs from the parser's default (i.e. was set on the command line)."""
    return hasattr(args, dest) and getattr(args, dest) != parser.get_default(dest)


# flags that only configure the TTA model (a peer, a baseline or Coxnet would ignore them)
TTA_ONLY = (
    "semantic",
    "heads",
    "consistency_weight",
    "rho_eval",
    "together_weight",
    "apart_weight",
)


def _check_tta_options(args, parser) -> None:
    method = "tta" if args.compare else args.method
    if not method.startswith("tta"):
        given = [flag(parser, d) for d in TTA_ONLY if _given(args, parser, d)]
        if given:
            raise UsageError(
                f"{', '.join(given)} configure the TTA model; --method {args.method} does not "
                "use them (drop them, or use --compare to run TTA next to it)"
            )
    if args.explain and not method.startswith("tta"):
        raise UsageError(
            f"--explain prints the TTA model's transport explanations; --method {args.method} "
            "has none (use a tta method, or --compare)"
        )
    if _given(args, parser, "consistency_weight") and args.heads < 2:
        raise UsageError(
            "--consistency-weight weights the multi-head consistency loss; it needs --heads "
            f">= 2, got --heads {args.heads}"
        )
    no_together = args.no_together or "no_together" in method
    if not args.compare and no_together and _given(args, parser, "semantic"):
        raise UsageError(
            "--semantic shapes the Together transport, which the no-Together ablation does not "
            "use; drop --semantic or --no-together"
        )


def _check_combinations(args, parser) -> None:
    _check_tta_options(args, parser)
    if args.compare and (args.method != "tta" or args.no_together or args.no_apart):
        raise UsageError(
            "--compare runs every method and both ablations; drop --method/--no-together/--no-apart"
        )
    if args.method != "tta" and (args.no_together or args.no_apart):
        which = "--no-together" if args.no_together else "--no-apart"
        raise UsageError(f"{which} is an ablation of --method tta; got --method {args.method}")
    if args.folds < 2 and not args.splits:
        raise UsageError(
            f"--folds must be an integer >= 2 for generated folds; got {args.folds} (with "
            "--splits, --folds 1 runs only the first split)"
        )
    if args.min_epoch >= args.epochs:
        raise UsageError(
            f"--min-epoch {args.min_epoch} leaves no epoch to select with --epochs {args.epochs} "
            "(epochs are counted from 0)"
        )
    synthetic = not args.cohort_csv
    if synthetic:
        bad = [m for m in args.modalities if m not in SYNTHETIC_MODALITIES]
        if bad:
            raise UsageError(
                f"the synthetic cohort has modalities {','.join(SYNTHETIC_MODALITIES)}; got "
                f"{','.join(bad)} (pass --cohort-csv for real tables)"
            )
        for dest in (
            "splits", "labels_csv", "features_dir", "groups", "endpoint", "skip_missing",
            "stratify_site",
        ):  # fmt: skip
            if _given(args, parser, dest):
                raise UsageError(
                    f"{flag(parser, dest)} applies to real data and needs --cohort-csv "
                    "(without it the run uses the synthetic cohort)"
                )
        return
    if _given(args, parser, "synthetic_patients"):
        raise UsageError("--synthetic-patients applies only without --cohort-csv")
    if "wsi" in args.modalities and not args.features_dir:
        raise UsageError("--modalities includes wsi, so --features-dir is needed")
    if args.features_dir and "wsi" not in args.modalities:
        raise UsageError("--features-dir is only read with wsi in --modalities")
    if args.skip_missing and not args.features_dir:
        raise UsageError("--skip-missing applies to --features-dir, which is not given")
    if args.stratify_site and args.splits:
        raise UsageError(
            "--stratify-site applies to generated folds; --splits already gives the folds"
        )


def _is_table(path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise DataFileError(f"table {str(p)!r} does not exist")
    if not p.is_file():
        raise DataFileError(f"table {str(p)!r} is not a file")


def _check_paths(args, parser) -> None:
    for dest in ("cohort_csv", "splits", "labels_csv", "features_dir", "groups", "out"):
        value = getattr(args, dest)
        if value is not None and not all(p.strip() for p in str(value).split(",")):
            raise UsageError(f"{flag(parser, dest)} has an empty name: {value!r}")
    if args.tcga and not Path(args.tcga).is_dir():
        raise UsageError(f"--tcga {args.tcga!r} is not a directory")
    if args.cohort_csv:
        _is_table(args.cohort_csv)
    if args.labels_csv:
        for part in str(args.labels_csv).split(","):
            _is_table(part.strip())
    if args.features_dir and not Path(args.features_dir).is_dir():
        raise MissingFeatureError(f"--features-dir {args.features_dir!r} is not a directory")
    if args.splits:
        avail = count_split_files(args.splits)  # raises for an unreadable splits_0.csv
        if avail == 0:
            raise DataFileError(
                f"no split files under {str(args.splits)!r}: expected splits_0.csv, ... or "
                "'..._k={k}' directories with train.csv and test.csv"
            )
        if args.folds > avail:
            if not _given(args, parser, "folds"):
                args.folds = avail  # the default 5 means "every fold of the split files"
            else:
                raise UsageError(
                    f"--folds {args.folds} but {args.splits!r} has {avail} folds; "
                    f"use --folds {avail} or fewer"
                )


def _check_groups(args) -> None:
    """``--groups``: keys are omics modalities of the run, every file exists."""
    omics = [m for m in args.modalities if m in ("rna", "cnv", "mut")]
    if not args.groups:
        _groups_complete(args, omics)
        return
    if not omics:
        raise UsageError("--groups needs an omics modality (rna, cnv or mut) in --modalities")
    for part in str(args.groups).split(","):
        key, _, path = part.rpartition("=")
        key = key.strip()
        if not path.strip():
            raise UsageError(f"--groups {args.groups!r} has an empty file name")
        if key and key not in omics:
            raise UsageError(
                f"--groups names {key!r}, which is not an omics modality of this run "
                f"({','.join(omics)})"
            )
        if path.strip() != GROUPS_PER_COLUMN:  # one token per column: no file to read
            _is_table(path.strip())
    _groups_complete(args, omics)


def _groups_complete(args, omics) -> None:
    """Every omics modality has a group file: from --groups or the default ones."""
    if not (args.cohort_csv and omics):
        return
    from .protocol import parse_groups

    try:
        parse_groups(args.groups, omics, Path(args.tcga) if args.tcga else None)
    except ValueError as exc:
        raise UsageError(str(exc).replace("`", "")) from None


def _check_out(args) -> None:
    """``--out`` is a writable directory, or can be created as one."""
    out = Path(args.out)
    p = out
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir():
        raise UsageError(f"--out {str(out)!r} is not usable: {str(p)!r} is a file")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UsageError(f"--out {str(out)!r} is not usable: {str(p)!r} is not writable")


def _check_device(args) -> None:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda requested but CUDA is not available to this PyTorch "
            f"({torch.__version__}); use --device cpu or auto"
        )


# --------------------------------------------------------------------------------------------
# --resume: the saved flags must match the new ones
# --------------------------------------------------------------------------------------------
def run_config(args) -> dict:
    """The resolved flags that decide what a run computes (JSON values)."""
    cfg = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in RESUME_FREE}
    return json.loads(json.dumps(cfg, default=str))


def check_resume(args, parser) -> None:
    """With ``--resume``, refuse when ``--out``'s saved flags differ from these, naming them."""
    path = Path(args.out) / RUN_CONFIG
    if not args.resume or not path.exists():
        return
    if not any(Path(args.out).glob("*/fold_*/*")):
        return  # that run stopped before any fold saved anything: nothing is reused
    from .errors import ResumeStateError

    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResumeStateError(
            f"cannot read {str(path)!r} ({exc}); delete it to resume without the check of "
            "the saved flags, or start again without --resume"
        ) from None
    now = run_config(args)
    diff = []
    for key in sorted(set(saved) | set(now)):
        if key not in saved and now[key] == _json(parser.get_default(key)):
            continue  # a flag added since that run, left at its default
        if saved.get(key, "(unset)") != now.get(key, "(unset)"):
            diff.append(f"{flag(parser, key)} (saved {saved.get(key)!r}, now {now.get(key)!r})")
    if diff:
        raise UsageError(
            f"--resume: {str(args.out)!r} was run with other settings: {', '.join(diff)}; "
            "rerun with the saved values or use a new --out"
        )


def _json(value):
    return json.loads(json.dumps(value, default=str))
