"""Command line of ``examples/tta_tcga.py`` (``main(argv)`` is importable for tests)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import dist, protocol
from .data import MODALITIES, DataFileError, MissingFeatureError
from .train import Interrupted, NonFiniteLossError

_REPO = Path(__file__).resolve().parents[2]


def default_tcga() -> str | None:
    """$MINMAXFUSE_TCGA, else a ``shared/data/tcga`` folder beside the repository, if present."""
    for cand in (os.environ.get("MINMAXFUSE_TCGA"), _REPO.parent / "shared" / "data" / "tcga"):
        if cand and Path(cand).is_dir():
            return str(cand)
    return None


def build_parser() -> argparse.ArgumentParser:
    """All flags; running with none trains on the synthetic cohort."""
    p = argparse.ArgumentParser(
        prog="tta_tcga.py",
        description="Train and cross-validate the TTA (Together, Then Apart) survival model. "
        "Without --cohort-csv: a quick 5-fold run on a synthetic TCGA-like cohort.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument("--cohort-csv", help="MCAT/PORPOISE *_all_clean.csv[.zip] (one row per slide)")
    d.add_argument(
        "--modalities",
        default=None,
        help=f"comma list from {MODALITIES} (default: wsi,rna synthetic; rna,cnv real)",
    )
    d.add_argument(
        "--groups",
        help="group file for all omics, or rna=FILE,cnv=FILE "
        "(default: 50 Hallmarks for rna, 6 MCAT families for cnv/mut)",
    )
    d.add_argument(
        "--splits",
        help="dir with splits_{k}.csv (MCAT/SurvPath; its 'val' column "
        "is the test fold) or an MMP dir '..._k={k}' / '..._k=0' (train.csv/test.csv)",
    )
    d.add_argument("--endpoint", default="os", choices=["os", "dss", "pfi"])
    d.add_argument(
        "--labels-csv",
        help="labels from SurvPath metadata or MMP split files "
        "(comma list); default: the cohort table (or the MMP split files for dss/pfi)",
    )
    d.add_argument("--features-dir", help="directory of per-slide .pt / .h5 patch features")
    d.add_argument(
        "--skip-missing",
        action="store_true",
        help="drop patients whose feature file is missing/unreadable (counted)",
    )
    d.add_argument("--folds", type=int, default=5)
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
    d.add_argument("--synthetic-patients", type=int, default=300)
    d.add_argument("--tcga", default=default_tcga(), help="shared TCGA folder (default groups)")

    m = p.add_argument_group("model")
    m.add_argument("--method", default="tta", help="tta | late_concat | single_<modality> | coxnet")
    m.add_argument("--no-together", action="store_true", help="ablation: no UOT/Together loss")
    m.add_argument("--no-apart", action="store_true", help="ablation: no anchors/contrastive")
    m.add_argument(
        "--compare",
        action="store_true",
        help="run tta, both ablations, late fusion, single modalities and Coxnet",
    )
    m.add_argument("--dim", type=int, default=None, help="token size (256; 64 synthetic)")
    m.add_argument("--prototypes", type=int, default=None, help="K (32; 16 synthetic)")
    m.add_argument("--dropout", type=float, default=0.3)
    m.add_argument(
        "--rho-eval",
        type=float,
        default=None,
        help="transported mass at evaluation (default: the layer's default)",
    )
    m.add_argument("--together-weight", type=float, default=0.5)
    m.add_argument("--apart-weight", type=float, default=0.5)
    m.add_argument(
        "--ot-tol",
        type=float,
        default=1e-3,
        help="UOT solver tolerance (library default 1e-6; 1e-3 changes the plan by "
        "<1%% L1 and is several times faster for partial transport)",
    )
    m.add_argument("--ot-max-iter", type=int, default=1000)
    m.add_argument(
        "--ramp-epochs",
        type=float,
        default=None,
        help="epochs of the transported-mass ramp 0.1->1 (TTA: 10; synthetic: 3)",
    )
    m.add_argument("--loss", default="cox", choices=["cox", "nll"])
    m.add_argument("--n-bins", type=int, default=4, help="NLL time bins (training fold quantiles)")
    m.add_argument("--nll-alpha", type=float, default=0.5)

    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=None, help="default 5 synthetic, 30 real (TTA)")
    t.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="patients per global batch (split across ranks under torchrun)",
    )
    t.add_argument("--lr", type=float, default=None, help="default 1e-4 (2e-3 synthetic)")
    t.add_argument("--weight-decay", type=float, default=1e-5)
    t.add_argument(
        "--warmup-epochs",
        type=float,
        default=None,
        help="default half the epochs (TTA), 10%% synthetic",
    )
    t.add_argument("--grad-clip", type=float, default=5.0)
    t.add_argument(
        "--bag-size", type=int, default=None, help="patches per training bag (4096; 64 synthetic)"
    )
    t.add_argument(
        "--select",
        default="val_cindex",
        choices=["val_cindex", "val_loss", "last"],
        help="checkpoint selection on the validation part of the training fold",
    )
    t.add_argument("--min-epoch", type=int, default=0)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")

    o = p.add_argument_group("outputs")
    o.add_argument("--out", default="runs/tta_synthetic", help="output directory")
    o.add_argument("--resume", action="store_true", help="reuse finished folds, continue the rest")
    o.add_argument("--quiet", action="store_true")
    o.add_argument("--explain", metavar="CASE_ID", help="print a test patient's top tokens")
    o.add_argument(
        "--drop-modality",
        metavar="NAME",
        help="score with NAME removed for a fraction of test patients",
    )
    o.add_argument("--drop-frac", type=float, default=0.5)
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
        raise SystemExit(f"--modalities must be distinct names from {MODALITIES}; got {mods}")
    args.modalities = mods
    if args.dim is None:
        args.dim = 64 if synthetic else 256
    if args.prototypes is None:
        args.prototypes = 16 if synthetic else 32
    if args.ramp_epochs is None:
        args.ramp_epochs = 2.0 if synthetic else 10.0
    if args.bag_size is None:
        args.bag_size = 64 if synthetic else 4096
    if args.epochs is None:
        args.epochs = 5 if synthetic else 30
    if args.lr is None:
        args.lr = 2e-3 if synthetic else 1e-4
    if args.warmup_epochs is None:
        # TTA: 15 warm-up epochs of 30; the short synthetic run warms up for 10 %
        args.warmup_epochs = (0.1 if synthetic else 0.5) * args.epochs
    args.explain_out = True  # per-patient transport masses are always saved for the TTA model
    if args.drop_modality and args.drop_modality not in mods:
        raise SystemExit(f"--drop-modality {args.drop_modality!r} is not among {mods}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns a process exit code."""
    args = resolve(build_parser().parse_args(argv))
    t0 = time.time()
    dist.setup(args.device)  # torchrun: process group + this rank's device; else nothing
    try:
        return _run(args, t0)
    finally:
        dist.teardown()


def _run(args: argparse.Namespace, t0: float) -> int:
    """Run the protocol; only rank 0 (or the single process) prints."""
    main_rank = dist.is_main()
    try:
        results = protocol.run_protocol(args)
    except NonFiniteLossError as exc:
        if main_rank:
            print(
                f"\nSTOPPED: {exc}\nLower --lr, check the inputs for NaN, or use --loss nll.",
                file=sys.stderr,
            )
        return 3
    except MissingFeatureError as exc:
        if main_rank:
            print(f"\nERROR: {exc}", file=sys.stderr)
        return 4
    except DataFileError as exc:
        if main_rank:
            print(f"\nERROR: {exc}", file=sys.stderr)
        return 6
    except Interrupted as exc:
        if main_rank:
            print(f"\n{exc}; rerun with --resume to continue", file=sys.stderr)
        return 5
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
