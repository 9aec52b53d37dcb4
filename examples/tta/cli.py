"""Command line of ``examples/tta_tcga.py`` (``main(argv)`` is importable for tests)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import dist, protocol, report, validate
from .data import MODALITIES, DataFileError, MissingFeatureError
from .errors import (
    EXIT_FEATURES,
    EXIT_HOOK,
    EXIT_NONFINITE,
    EXIT_PROTOCOL,
    EXIT_SIGINT,
    EXIT_STATE,
    EXIT_TABLE,
    EXIT_USAGE,
    ProtocolError,
    ResumeStateError,
    UsageError,
)
from .recipes import RECIPES, apply_recipe
from .train import Interrupted, NonFiniteLossError

_REPO = Path(__file__).resolve().parents[2]


def default_tcga() -> str | None:
    """$MINMAXFUSE_TCGA, else a ``shared/data/tcga`` folder beside the repository, if present."""
    for cand in (os.environ.get("MINMAXFUSE_TCGA"), _REPO.parent / "shared" / "data" / "tcga"):
        if cand and Path(cand).is_dir():
            return str(cand)
    return None


class _Parser(argparse.ArgumentParser):
    """argparse whose errors raise :class:`UsageError` (one ``ERROR:`` line, exit 2)."""

    def error(self, message: str):  # noqa: D102
        raise UsageError(f"{message} (see --help)")


class _Help(argparse.HelpFormatter):
    """Appends ``(default: X)`` unless the help already states the default or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


R = "(default: from --recipe)"


def build_parser() -> argparse.ArgumentParser:
    """All flags; running with none trains on the synthetic cohort.

    Every flag needs a rule (or a commented exemption) in ``validate.RULES`` and help text
    that states its default once; ``tests/examples/test_tta_cli_errors.py`` checks both.
    """
    p = _Parser(
        prog="tta_tcga.py",
        description="Train and cross-validate the TTA (Together, Then Apart) survival model. "
        "Without --cohort-csv: a quick 5-fold run on SYNTHETIC data (a generated TCGA-like "
        "cohort), not on TCGA.",
        formatter_class=_Help,
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--cohort-csv",
        help="MCAT/PORPOISE *_all_clean.csv[.zip] (one row per slide) "
        "(default: none, i.e. the synthetic cohort)",
    )
    d.add_argument(
        "--modalities",
        default=None,
        help=f"comma list from {MODALITIES} (default: wsi,rna synthetic; rna,cnv real)",
    )
    d.add_argument(
        "--groups",
        help="group file for all omics, or rna=FILE,cnv=FILE; FILE 'columns' makes one "
        "token per column "
        "(default: 50 Hallmarks for rna, 6 MCAT families for cnv/mut)",
    )
    d.add_argument(
        "--splits",
        help="dir with splits_{k}.csv (MCAT/SurvPath; its 'val' column "
        "is the test fold) or an MMP dir '..._k={k}' / '..._k=0' (train.csv/test.csv) "
        "(default: folds generated from the cohort, stratified by event)",
    )
    d.add_argument(
        "--endpoint",
        default="os",
        choices=["os", "dss", "pfi"],
        help="survival endpoint: overall, disease-specific or progression-free",
    )
    d.add_argument(
        "--labels-csv",
        help="labels from SurvPath metadata or MMP split files "
        "(comma list) (default: the cohort table, or the MMP split files for dss/pfi)",
    )
    d.add_argument(
        "--features-dir",
        help="directory of per-slide .pt / .h5 patch features, needed for wsi (default: none)",
    )
    d.add_argument(
        "--skip-missing",
        action="store_true",
        help="drop patients whose feature file is missing/unreadable (counted)",
    )
    d.add_argument(
        "--folds",
        type=int,
        default=5,
        help="outer cross-validation folds (>= 2); with --splits at most its number of folds",
    )
    d.add_argument(
        "--stratify-site",
        action="store_true",
        help="generated folds: whole tissue-source sites per fold",
    )
    d.add_argument(
        "--val-frac",
        type=float,
        default=0.2,
        help="validation share carved from each training fold (stratified by event)",
    )
    d.add_argument(
        "--synthetic-patients",
        type=int,
        default=300,
        help="patients of the synthetic cohort (only without --cohort-csv)",
    )
    d.add_argument(
        "--tcga",
        default=default_tcga(),
        help="folder of the TCGA tables, for the standard group files (default: "
        "$MINMAXFUSE_TCGA, else the data/tcga folder next to the repository, if present)",
    )

    m = p.add_argument_group("model")
    m.add_argument(
        "--recipe",
        default="auto",
        choices=["auto", *RECIPES],
        help="named defaults for the flags marked 'from --recipe': small-cohort (the "
        "ensemble recipe for a few hundred patients), tta (the authors' schedule, one model), "
        "synthetic (the quick demo); auto: synthetic without --cohort-csv, else small-cohort. "
        "A flag given explicitly always wins",
    )
    m.add_argument(
        "--method",
        default="tta",
        help="tta | tta_no_together | tta_no_apart | late_concat | single_<modality> | coxnet, "
        "or a peer's fusion model: abmil | mcat | motcat | survpath | mmp | cmta | pibd "
        "(examples/README.md, 'Peer methods')",
    )
    m.add_argument("--no-together", action="store_true", help="ablation: no UOT/Together loss")
    m.add_argument("--no-apart", action="store_true", help="ablation: no anchors/contrastive")
    m.add_argument(
        "--compare",
        action="store_true",
        help="run tta, both ablations, late fusion, single modalities, every peer method and "
        "Coxnet on the same folds",
    )
    m.add_argument("--dim", type=int, default=None, help=f"token size D {R}")
    m.add_argument(
        "--prototypes",
        type=int,
        default=None,
        help=f"number K of prototypes {R}",
    )
    m.add_argument(
        "--dropout", type=float, default=None, help=f"dropout probability, in [0, 1) {R}"
    )
    m.add_argument(
        "--rho-eval",
        type=float,
        default=None,
        help="transported mass at evaluation, in (0, 1]; the authors' code evaluates with "
        "about 0.106, the start of the training ramp (default: the alignment layer's own, 1)",
    )
    m.add_argument(
        "--semantic",
        type=float,
        default=0.0,
        help="weight lambda_1 >= 0 of TTA's SP2OT semantic term in the transport (TTA: 0.1); "
        "0: plain unbalanced OT",
    )
    m.add_argument(
        "--heads",
        type=int,
        default=1,
        help="prototype assignment heads (TTA: 5); with more than one, the Sinkhorn "
        "consistency loss trains them and the primary head is re-selected every epoch",
    )
    m.add_argument(
        "--consistency-weight",
        type=float,
        default=0.01,
        help="weight of the multi-head Sinkhorn consistency loss per modality (with --heads > 1)",
    )
    m.add_argument(
        "--together-weight",
        type=float,
        default=0.5,
        help="weight of the Together (transport) loss per modality",
    )
    m.add_argument(
        "--apart-weight", type=float, default=0.5, help="weight of the Apart contrastive loss"
    )
    m.add_argument(
        "--apart-negatives",
        default=None,
        choices=["anchors", "batch"],
        help="negatives of the Apart contrastive term: the other modalities' anchors only "
        f"(TTA) or also every other-modality vector of the batch {R}",
    )
    m.add_argument(
        "--ot-tol",
        type=float,
        default=1e-3,
        help="UOT solver tolerance (the library's is 1e-6; 1e-3 changes the plan by "
        "<1%% L1 and is several times faster for partial transport)",
    )
    m.add_argument("--ot-max-iter", type=int, default=1000, help="UOT solver iteration limit")
    m.add_argument(
        "--ramp-epochs",
        type=float,
        default=None,
        help=f"epochs of the transported-mass ramp 0.1->1; 0: the full mass from the start {R}",
    )
    m.add_argument(
        "--loss",
        default="cox",
        choices=["cox", "nll"],
        help="survival loss: Cox partial likelihood or discrete-time NLL",
    )
    m.add_argument("--n-bins", type=int, default=4, help="NLL time bins (training fold quantiles)")
    m.add_argument(
        "--nll-alpha",
        type=float,
        default=0.5,
        help="NLL weight of the uncensored term, in [0, 1]",
    )

    t = p.add_argument_group("training")
    t.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"training epochs (the most, with --patience) {R}",
    )
    t.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"patients per global batch, >= 2 (split across ranks under torchrun) {R}",
    )
    t.add_argument("--lr", type=float, default=None, help=f"peak learning rate {R}")
    t.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help=f"AdamW weight decay (not on biases and norms) {R}",
    )
    t.add_argument(
        "--warmup-epochs",
        type=float,
        default=None,
        help=f"epochs of linear learning-rate warm-up before the cosine decay {R}",
    )
    t.add_argument(
        "--grad-clip", type=float, default=5.0, help="gradient-norm clip; 0: no clipping"
    )
    t.add_argument(
        "--bag-size",
        type=int,
        default=None,
        help=f"patches per training bag; 0: every patch {R}",
    )
    t.add_argument(
        "--select",
        default="val_cindex",
        choices=["val_cindex", "val_loss", "last"],
        help="checkpoint selection on the validation part of the training fold",
    )
    t.add_argument(
        "--min-epoch",
        type=int,
        default=0,
        help="epochs before this one (counted from 0) are never selected",
    )
    t.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early stopping: stop a model after this many epochs without a better validation "
        f"score; 0: train all epochs {R}",
    )
    t.add_argument(
        "--ensemble",
        type=int,
        default=None,
        help="deep models per outer fold; with N > 1 each is trained on inner folds of the "
        "training fold and validated on the held-out inner fold, and their standardised risks "
        f"are averaged {R}",
    )
    t.add_argument(
        "--ensemble-select",
        default=None,
        choices=["member", "shared"],
        help="with --ensemble > 1: each member keeps its own best validation epoch ('member'), "
        "or all members use the one epoch with the best mean validation C over the members "
        f"('shared': every member runs every epoch, --patience is not used) {R}",
    )
    t.add_argument("--seed", type=int, default=1, help="random seed (folds, models, batches)")
    t.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: CUDA when available, else the CPU",
    )
    t.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    t.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads; 0: torch's own choice"
    )

    o = p.add_argument_group("outputs")
    o.add_argument("--out", default="runs/tta_synthetic", help="output directory")
    o.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished folds and continue the rest from the last saved epoch; refused "
        "when the other flags differ from the saved run's",
    )
    o.add_argument("--quiet", action="store_true", help="no progress bars or per-fold lines")
    o.add_argument(
        "--explain",
        metavar="CASE_ID",
        help="print a test patient's top tokens (default: none)",
    )
    o.add_argument(
        "--drop-modality",
        metavar="NAME",
        help="score with NAME removed for a fraction of test patients (default: none)",
    )
    o.add_argument(
        "--drop-frac",
        type=float,
        default=0.5,
        help="fraction of test patients scored without --drop-modality, in [0, 1]",
    )
    # testing hooks (undocumented on purpose)
    o.add_argument("--inject-nan-step", type=int, default=-1, help=argparse.SUPPRESS)
    o.add_argument("--interrupt-after", type=int, default=-1, help=argparse.SUPPRESS)
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill defaults that depend on synthetic vs real data; validate modality names."""
    synthetic = not args.cohort_csv
    if args.modalities is None:
        args.modalities = "wsi,rna" if synthetic else "rna,cnv"
    mods = [m.strip() for m in str(args.modalities).split(",") if m.strip()]
    bad = [m for m in mods if m not in MODALITIES]
    if bad or not mods or len(set(mods)) != len(mods):
        raise UsageError(
            f"--modalities must be distinct names from {', '.join(MODALITIES)}; "
            f"got {args.modalities!r}"
        )
    args.modalities = mods
    apply_recipe(args, synthetic)  # fills the flags left unset (examples/tta/recipes.py)
    args.explain_out = True  # per-patient transport masses are always saved for the TTA model
    return args


# user errors -> (exit code, advice appended to the message); examples/README.md "Exit codes"
_ERRORS: tuple[tuple[type[BaseException], int, str], ...] = (
    (UsageError, EXIT_USAGE, ""),
    (
        NonFiniteLossError,
        EXIT_NONFINITE,
        "; lower --lr, check the inputs for NaN, or use --loss nll",
    ),
    (MissingFeatureError, EXIT_FEATURES, ""),
    (Interrupted, EXIT_HOOK, "; rerun with --resume to continue"),
    (DataFileError, EXIT_TABLE, ""),
    (ProtocolError, EXIT_PROTOCOL, ""),
    (ResumeStateError, EXIT_STATE, ""),
)


def _prints() -> bool:
    """Rank 0 or a single process; also before the process group exists (torchrun's RANK)."""
    return os.environ.get("RANK", "0") == "0"


def _error(text: str) -> None:
    if _prints():
        one_line = " ".join(str(text).split())
        print(f"ERROR: {one_line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns a process exit code (0, or one of ``errors.EXIT_*``)."""
    parser = build_parser()
    try:
        args = resolve(parser.parse_args(argv))
        validate.check(args, parser)  # every flag, before any work
        validate.check_resume(args, parser)
        if not args.cohort_csv and _prints():
            print(
                f"SYNTHETIC DATA: a generated TCGA-like cohort of {args.synthetic_patients} "
                "patients (minmaxfuse.data.make_synthetic_cohort), not TCGA; pass --cohort-csv "
                "for real tables",
                flush=True,
            )
        t0 = time.time()
        dist.setup(args.device)  # torchrun: process group + this rank's device; else nothing
        try:
            if dist.is_main():
                report.write_json(Path(args.out) / validate.RUN_CONFIG, validate.run_config(args))
            return _run(args, t0)
        finally:
            dist.teardown()
    except KeyboardInterrupt:
        _error(
            "interrupted; rerun the same command with --resume to continue from the last saved "
            "epoch"
        )
        return EXIT_SIGINT
    except tuple(e for e, _, _ in _ERRORS) as exc:
        code, advice = next((c, a) for e, c, a in _ERRORS if isinstance(exc, e))
        _error(f"{exc}{advice}")
        return code


def _run(args: argparse.Namespace, t0: float) -> int:
    """Run the protocol; only rank 0 (or the single process) prints."""
    main_rank = dist.is_main()
    results = protocol.run_protocol(args)
    if not main_rank:
        return 0
    table = (Path(args.out) / "table.txt").read_text()
    cfg = results["config"]
    print()
    print(
        f"{cfg['source']}: {cfg['n_patients']} patients, {cfg['n_events']} events, "
        f"modalities {','.join(args.modalities)}, {len(cfg['folds'])} folds, "
        f"device {cfg['device_used']}"
        + (f", {dist.world()} ranks ({dist.backend()})" if dist.active() else "")
    )
    for note in cfg["notes"]:
        print(f"  note: {note}")
    print(table)
    if results.get("logrank_p") is not None:
        print(
            f"log-rank p (high vs low predicted risk, {results['method']}): "
            f"{results['logrank_p']:.3g}"
        )
    if args.explain:
        from .report import explain_patient

        print(explain_patient(Path(args.out), results["method"], args.explain))
    print(f"outputs in {args.out}  ({time.time() - t0:.0f}s)")
    return 0
