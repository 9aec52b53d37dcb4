"""Cross-validation protocol: datasets, folds, methods (TTA, ablations, baselines), metrics.

Honesty rules enforced here:

* the test fold is only ever scored: checkpoint selection, early stopping and the Coxnet penalty
  use the validation part carved out of the training fold;
* omics scalers and NLL time bins are fitted on the training fold only;
* train / val / test are asserted patient-disjoint for every fold.
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import sys
import time as _time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

import minmaxfuse
from minmaxfuse.survival import (
    concordance_index_ipcw,
    discretize_time,
    integrated_brier_score,
    logrank_test,
)

from . import dist as _dist
from . import report
from .batches import ModalityInfo, PatientData
from .data import (
    GROUPS_PER_COLUMN,
    Cohort,
    FeatureStore,
    Fold,
    build_folds,
    build_groups,
    carve_validation,
    check_folds,
    fold_omics,
    make_folds,
    read_cohort,
    read_group_file,
    read_labels,
)
from .ensemble import Member, combine, member_splits
from .model import build_model
from .train import (
    SurvivalCriterion,
    TrainConfig,
    c_index,
    predict,
    seed_everything,
    train_fold,
)

DEEP_METHODS = ("tta", "tta_no_together", "tta_no_apart", "late_concat")


# --------------------------------------------------------------------------------------------
# dataset assembly
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """Everything the protocol needs, independent of the fold."""

    case_ids: np.ndarray
    time: np.ndarray
    event: np.ndarray
    site: np.ndarray | None
    modalities: list[str]
    cohort: Cohort | None = None  # real data
    groups: dict = field(default_factory=dict)  # modality -> GroupSpec
    store: FeatureStore | None = None
    synthetic_grouped: dict[str, np.ndarray] | None = None  # already-scaled synthetic tokens
    synthetic_bags: list[torch.Tensor] | None = None
    synthetic_wsi_dim: int = 0
    time_unit: str = "months"
    notes: list[str] = field(default_factory=list)
    source: str = ""


def synthetic_dataset(n_patients: int, seed: int) -> Dataset:
    """TCGA-like synthetic cohort: WSI-like patch bags + 24 pathway-like tokens ('rna')."""
    from minmaxfuse.data import make_synthetic_cohort

    c = make_synthetic_cohort(
        n_patients,
        bag_sizes=(128, 24),
        dims=(32, 16),
        kinds=("mixture", "indexed"),
        censoring=0.3,
        seed=seed,
    )
    wsi, wmask = c.tokens[0], c.masks[0]
    bags = [wsi[i, wmask[i]].clone() for i in range(n_patients)]
    ids = np.array([f"SYN-{i:04d}" for i in range(n_patients)], dtype=object)
    return Dataset(
        case_ids=ids,
        time=c.time.double().numpy(),
        event=c.event.numpy().astype(bool),
        site=None,
        modalities=["wsi", "rna"],
        synthetic_grouped={"rna": c.tokens[1].numpy().astype(np.float32)},
        synthetic_bags=bags,
        synthetic_wsi_dim=int(wsi.shape[-1]),
        time_unit="a.u.",
        source="minmaxfuse.data.make_synthetic_cohort",
        notes=[f"synthetic oracle C-index of the planted risk: {_oracle_c(c):.3f}"],
    )


def _oracle_c(c) -> float:
    return c_index(c.time.numpy(), c.event.numpy(), c.risk.numpy())


def parse_groups(spec: str | None, modalities: list[str], tcga: Path | None) -> dict[str, str]:
    """``--groups``: one FILE for every omics modality, or ``rna=FILE,cnv=FILE``.

    Defaults when unset (and the shared TCGA folder exists): 50 Hallmarks for RNA, the 6 MCAT
    gene families for CNV and mutations.
    """
    omics = [m for m in modalities if m in ("rna", "cnv", "mut")]
    out: dict[str, str] = {}
    if spec:
        for part in spec.split(","):
            if "=" in part:
                k, v = part.split("=", 1)
                out[k.strip()] = v.strip()
            else:
                for m in omics:
                    out.setdefault(m, part.strip())
    if tcga is not None:
        defaults = {
            "rna": tcga / "SurvPath/datasets_csv/metadata/hallmarks_signatures.csv",
            "cnv": tcga / "MCAT/datasets_csv_sig/signatures.csv",
            "mut": tcga / "MCAT/datasets_csv_sig/signatures.csv",
        }
        for m in omics:
            if m not in out and defaults[m].exists():
                out[m] = str(defaults[m])
    missing = [m for m in omics if m not in out]
    if missing:
        raise ValueError(f"`--groups` needs a group file for {missing} (e.g. rna=hallmarks.csv)")
    return out


def real_dataset(args, tcga: Path | None) -> Dataset:
    """Cohort table (+ optional labels / features) -> :class:`Dataset`."""
    modalities = args.modalities
    labels = None
    if args.labels_csv:
        labels = read_labels(args.labels_csv.split(","), args.endpoint)
    elif args.endpoint != "os" and args.splits:
        # MMP split files carry OS/DSS/PFI columns: use fold 0's train + test (all patients)
        sp = str(args.splits)
        d = Path(sp.replace("{k}", "0")) if "{k}" in sp else Path(sp)
        files = [d / "train.csv", d / "test.csv"]
        if all(f.exists() for f in files):
            labels = read_labels(files, args.endpoint)
    cohort = read_cohort(
        args.cohort_csv, modalities=modalities, endpoint=args.endpoint, labels=labels
    )
    notes = list(cohort.notes)
    group_files = parse_groups(args.groups, modalities, tcga)
    groups = {}
    for m in modalities:
        if m in ("rna", "cnv", "mut"):
            cols = list(cohort.omics[m].columns)
            if group_files[m] == GROUPS_PER_COLUMN:  # one token per column (FeatureTokenizer)
                spec = build_groups(cols, None)
            else:
                spec = build_groups(cols, read_group_file(group_files[m]))
            if spec.dropped:
                notes.append(
                    f"{m}: {len(spec.dropped)} groups without measured genes dropped: "
                    f"{spec.dropped}"
                )
            notes.append(
                f"{m}: {len(spec.names)} tokens from {Path(group_files[m]).name}, "
                f"genes per token {min(spec.sizes)}-{max(spec.sizes)}"
            )
            groups[m] = spec
        elif m == "clinical":
            groups[m] = build_groups(list(cohort.omics[m].columns), None)
    store = None
    if "wsi" in modalities:
        if not args.features_dir:
            raise ValueError("`--modalities` includes wsi but `--features-dir` is not given")
        store = FeatureStore(args.features_dir, skip_missing=args.skip_missing)
        keep = store.check(cohort)
        if store.missing:
            notes.append(f"{len(store.missing)} patients skipped for missing/unreadable features")
            cohort = cohort.subset(keep)
    return Dataset(
        case_ids=cohort.case_ids,
        time=cohort.time,
        event=cohort.event,
        site=cohort.site,
        modalities=list(modalities),
        cohort=cohort,
        groups=groups,
        store=store,
        time_unit=cohort.time_unit,
        notes=notes,
        source=str(args.cohort_csv),
    )


def dataset_folds(ds: Dataset, args) -> list[Fold]:
    """Outer folds with validation carved from training; disjointness asserted inside."""
    if ds.cohort is not None:
        return build_folds(
            ds.cohort,
            splits=args.splits,
            n_folds=args.folds,
            seed=args.seed,
            val_frac=args.val_frac,
            stratify_site=args.stratify_site,
        )
    tests = make_folds(ds.case_ids, ds.event, n_folds=args.folds, seed=args.seed)
    ev = dict(zip(ds.case_ids, ds.event))
    out = []
    for k, te in enumerate(tests):
        tset = set(te)
        tr = [c for c in ds.case_ids if c not in tset]
        fit, val = carve_validation(
            tr, np.array([ev[c] for c in tr]), frac=args.val_frac, seed=args.seed + k
        )
        f = Fold(k=k, train=fit, val=val, test=list(te))
        f.check_disjoint()
        out.append(f)
    return out


def fold_data(ds: Dataset, fold: Fold) -> PatientData:
    """Inputs of every patient for one fold; omics scaled on the fold's training patients."""
    infos: list[ModalityInfo] = []
    if ds.cohort is not None:
        train_ids = fold.train + fold.val  # the outer training fold, never the test fold
        view = fold_omics(ds.cohort, ds.groups, train_ids)
        grouped = view.x
        for m in ds.modalities:
            if m == "wsi":
                infos.append(ModalityInfo("wsi", "bag", in_dim=int(ds.store.dim)))
            else:
                infos.append(
                    ModalityInfo(
                        m, "grouped", valid=view.valid[m], token_names=view.groups[m].names
                    )
                )
        data = PatientData(
            ds.case_ids,
            ds.time,
            ds.event,
            infos,
            grouped,
            store=ds.store,
            slides=ds.cohort.slides,
        )
        data.flat = view.flat  # for the linear baseline
        return data
    # synthetic tokens are generated standardised; a per-fold scaler on the training rows is
    # still applied (fit on training rows only) to keep the protocol identical
    pos = {c: i for i, c in enumerate(ds.case_ids)}
    tr = np.array([pos[c] for c in fold.train + fold.val])
    grouped = {}
    flat = {}
    for m, x in ds.synthetic_grouped.items():
        mu = x[tr].mean(0, keepdims=True)
        sd = x[tr].std(0, keepdims=True) + 1e-6
        grouped[m] = ((x - mu) / sd).astype(np.float32)
        flat[m] = grouped[m].reshape(len(x), -1)
        g, l = x.shape[1:]
        infos_valid = np.ones((g, l), dtype=bool)
        infos.append(
            ModalityInfo(
                m, "grouped", valid=infos_valid, token_names=[f"token{j}" for j in range(g)]
            )
        )
    infos.insert(0, ModalityInfo("wsi", "bag", in_dim=ds.synthetic_wsi_dim))
    infos = [i for i in infos if i.name in ds.modalities]
    data = PatientData(ds.case_ids, ds.time, ds.event, infos, grouped, bags=ds.synthetic_bags)
    if "wsi" in ds.modalities:  # mean patch feature, for the linear baseline
        flat["wsi"] = torch.stack([b.mean(0) for b in ds.synthetic_bags]).numpy()
    data.flat = flat
    return data


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------
def breslow_survival(
    train_risk: np.ndarray,
    train_time: np.ndarray,
    train_event: np.ndarray,
    risk: np.ndarray,
    grid: np.ndarray,
) -> np.ndarray:
    """S(t | x) = S0(t)^exp(eta) with the Breslow baseline from the training fold: (P, T)."""
    order = np.argsort(train_time)
    t, e, r = train_time[order], train_event[order], np.exp(train_risk[order] - train_risk.max())
    at_risk = np.cumsum(r[::-1])[::-1]
    uniq = np.unique(t[e])
    h0 = np.array([e[t == u].sum() / at_risk[np.searchsorted(t, u)] for u in uniq])
    cum = np.cumsum(h0)
    H = np.concatenate([[0.0], cum])[np.searchsorted(uniq, grid, side="right")]
    return np.exp(-np.outer(np.exp(risk - train_risk.max()), H))


def nll_survival(logits: np.ndarray, edges: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Discrete-time survival at ``grid``: S(t) = prod_{bins ending <= t} (1 - h)."""
    h = 1.0 / (1.0 + np.exp(-logits))
    s = np.cumprod(1.0 - h, axis=1)  # survival after bin j
    s = np.concatenate([np.ones((len(s), 1)), s], 1)
    j = np.clip(np.searchsorted(edges[1:], grid, side="right"), 0, s.shape[1] - 1)
    return s[:, j]


def fold_metrics(
    *,
    train_time,
    train_event,
    train_risk,
    test_time,
    test_event,
    test_risk,
    surv_fn,
) -> dict:
    """Harrell C, Uno C (tau = 80th pct of training times) and IBS on the test fold."""
    out = {"c_index": c_index(test_time, test_event, test_risk)}
    test_time = np.asarray(test_time, np.float64)
    test_event = np.asarray(test_event, bool)
    train_time = np.asarray(train_time, np.float64)
    train_event = np.asarray(train_event, bool)
    tau = float(np.quantile(train_time, 0.8))
    try:
        out["c_index_uno"] = float(
            concordance_index_ipcw(
                event=test_event,
                time=test_time,
                risk=np.asarray(test_risk, np.float64),
                train_time=train_time,
                train_event=train_event,
                tau=tau,
            )
        )
    except ValueError:
        out["c_index_uno"] = float("nan")
    # IBS on a grid inside both the training and the test follow-up
    lo = max(float(np.quantile(test_time, 0.1)), float(np.min(train_time)))
    hi = min(float(np.quantile(test_time, 0.8)), tau)
    out["ibs"] = float("nan")
    if surv_fn is not None and hi > lo:
        grid = np.linspace(lo, hi, 40)
        try:
            out["ibs"] = float(
                integrated_brier_score(
                    event=test_event,
                    time=test_time,
                    surv=np.clip(surv_fn(grid), 0.0, 1.0),
                    times=grid,
                    train_event=train_event,
                    train_time=train_time,
                )
            )
        except ValueError:
            pass
    return out


# --------------------------------------------------------------------------------------------
# Coxnet baseline (scikit-survival)
# --------------------------------------------------------------------------------------------
def _coxnet_path(x: np.ndarray, time: np.ndarray, event: np.ndarray, alphas=None):
    """Elastic-net Cox path (l1_ratio 0.5); retries shorter paths if the solver diverges."""
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.util import Surv

    y = Surv.from_arrays(event=event, time=time)
    err = None
    for amr in (0.01, 0.05, 0.1):
        kw = {"alphas": alphas} if alphas is not None else {"alpha_min_ratio": amr, "n_alphas": 40}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return CoxnetSurvivalAnalysis(l1_ratio=0.5, max_iter=20000, **kw).fit(x, y)
        except (ArithmeticError, ValueError) as exc:  # sksurv raises on exploding weights
            err = exc
            if alphas is not None:  # drop the smallest penalties and try again
                alphas = alphas[: max(1, int(len(alphas) * 0.75))]
    raise RuntimeError(f"Coxnet failed: {err}")


def run_coxnet(
    data: PatientData, fold: Fold, modalities: list[str], seed: int, *, val_frac: float = 0.2
) -> dict:
    """Elastic-net Cox on the flat scaled features, penalty chosen by inner cross-validation.

    The outer training fold (fit + val) is cut into ``round(1 / val_frac)`` inner folds,
    stratified by event. Each penalty of the path is scored by its mean Harrell C over the
    inner validation folds; the best one (ties: the larger penalty) is then used by the path
    fitted on the whole outer training fold. The test fold is only scored.
    """
    x = np.concatenate([data.flat[m] for m in modalities if m in data.flat], 1).astype(np.float64)
    outer_ids = list(fold.train) + list(fold.val)
    trn, test = data.rows(outer_ids), data.rows(fold.test)
    try:
        model = _coxnet_path(x[trn], data.time[trn], data.event[trn])
    except RuntimeError as exc:
        raise RuntimeError(f"Coxnet failed on fold {fold.k}: {exc}") from None
    alphas = np.asarray(model.alphas_)
    k_in = max(2, int(round(1.0 / val_frac)))
    inner = make_folds(outer_ids, data.event[trn], n_folds=k_in, seed=seed * 7 + 2000 + fold.k)
    scores = np.full((k_in, len(alphas)), np.nan)
    for j, val_ids in enumerate(inner):
        vset = set(val_ids)
        fit = data.rows([c for c in outer_ids if c not in vset])
        val = data.rows(val_ids)
        try:
            sub = _coxnet_path(x[fit], data.time[fit], data.event[fit], alphas=alphas)
        except RuntimeError:
            continue  # this inner fold gives no score (counted below)
        for i, a in enumerate(alphas):
            if a >= sub.alphas_.min():
                r = sub.predict(x[val], alpha=a)
                scores[j, i] = c_index(data.time[val], data.event[val], r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: penalty never fitted
        mean = np.nanmean(scores, axis=0)
    mean = np.nan_to_num(mean, nan=-1.0)
    best = int(np.flatnonzero(mean == mean.max())[0])  # alphas decrease: ties -> larger penalty
    alpha = float(alphas[best])
    return {
        "alpha": alpha,
        "val_c_index": float(mean[best]),
        "inner_folds": k_in,
        "risk_test": model.predict(x[test], alpha=alpha),
        "risk_train": model.predict(x[trn], alpha=alpha),
        "n_features": int(x.shape[1]),
        "n_nonzero": int((np.abs(model.coef_[:, best]) > 0).sum()),
    }


# --------------------------------------------------------------------------------------------
# main protocol
# --------------------------------------------------------------------------------------------
def method_list(args, modalities: list[str]) -> list[str]:
    """Methods to run: one (``--method`` / ablation switches) or the ``--compare`` set."""
    if args.compare:
        from .peers import min_modalities, peer_names

        ms = ["tta", "tta_no_together", "tta_no_apart", "late_concat"]
        if len(modalities) > 1:
            ms += [f"single_{m}" for m in modalities]
        ms += [p for p in peer_names() if len(modalities) >= min_modalities(p)]
        return ms + ["coxnet"]
    if args.method != "tta":
        return [args.method]
    if args.no_together and args.no_apart:
        return ["tta_no_together_no_apart"]
    if args.no_together:
        return ["tta_no_together"]
    if args.no_apart:
        return ["tta_no_apart"]
    return ["tta"]


def train_config(args) -> TrainConfig:
    """TrainConfig from CLI arguments."""
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        grad_clip=args.grad_clip,
        bag_size=args.bag_size,
        loss=args.loss,
        nll_alpha=args.nll_alpha,
        select=args.select,
        min_epoch=args.min_epoch,
        patience=getattr(args, "patience", 0),
        seed=args.seed,
        amp=not args.no_amp,
        inject_nan_step=args.inject_nan_step,
        interrupt_after=args.interrupt_after,
    )


def _device(name: str) -> torch.device:
    if _dist.device() is not None:  # torchrun: cuda:LOCAL_RANK or cpu, chosen by dist.setup
        return _dist.device()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("`--device cuda` requested but CUDA is not available")
    return torch.device(name)


def run_method_fold(
    method: str,
    ds: Dataset,
    data: PatientData,
    fold: Fold,
    args,
    cfg: TrainConfig,
    device: torch.device,
    out_dir: Path,
    show_progress: bool,
) -> dict:
    """Train/select/score one method on one fold; writes result.json and checkpoint.pt."""
    fdir = out_dir / method / f"fold_{fold.k}"
    res_path = fdir / "result.json"
    if args.resume and res_path.exists():
        return report.read_json(res_path)  # an unreadable file: clear error (exit 8)
    fit, val, test = data.rows(fold.train), data.rows(fold.val), data.rows(fold.test)
    trn = np.concatenate([fit, val])
    t_start = _time.time()
    rec: dict = {
        "fold": fold.k,
        "method": method,
        "n_train": len(fit),
        "n_val": len(val),
        "n_test": len(test),
        "n_test_events": int(data.event[test].sum()),
        "split_ids_dropped": fold.dropped,
    }
    edges = None
    if method == "coxnet":
        mods = [m for m in ds.modalities]
        cx = run_coxnet(data, fold, mods, args.seed, val_frac=args.val_frac)
        risk_test, risk_train = cx["risk_test"], cx["risk_train"]
        rec.update({k: cx[k] for k in ("alpha", "val_c_index", "n_features", "n_nonzero")})

        def surv_fn(grid):
            return breslow_survival(risk_train, data.time[trn], data.event[trn], risk_test, grid)

    else:
        if args.loss == "nll":
            edges = torch.as_tensor(
                discretize_time(data.time[trn], data.event[trn], n_bins=args.n_bins),
                dtype=torch.float32,
            )
        crit = SurvivalCriterion(
            args.loss, edges=edges, alpha=args.nll_alpha, gather=_dist.active()
        )
        mods = data.modalities
        if method.startswith("single_"):
            mods = [m for m in data.modalities if m.name == method[len("single_") :]]
        sub = _restrict(data, mods)
        n_members = int(getattr(args, "ensemble", 1) or 1)
        splits = member_splits(fold, data, n_members, val_frac=args.val_frac, seed=args.seed)
        members: list[Member] = []
        models: list[nn.Module] = []
        last_states: list[dict] = []
        shared = n_members > 1 and getattr(args, "ensemble_select", "member") == "shared"
        for j, (mfit, mval) in enumerate(splits):
            # member 0 of every fold keeps the single-model seeds; the others get their own
            seed_everything(args.seed * 7919 + fold.k + 104_729 * j)
            model = build_model(method, mods, args, out_dim=crit.out_dim)
            if hasattr(model, "prepare"):  # e.g. MMP's prototypes: this member's fit rows only
                model.prepare(sub, mfit)
            mcfg = cfg if j == 0 else replace(cfg, seed=cfg.seed + 7_777 * j)
            if shared:
                mcfg = replace(mcfg, patience=0)  # every member runs every epoch
            member_path = fdir / f"member_{j}.pt"
            if args.resume and member_path.exists():
                saved = report.load_torch(member_path)  # truncated: says how to restart
                member, last_state = saved["member"], saved["last_state"]
            else:
                state, history, info = train_fold(
                    model,
                    sub,
                    mfit,
                    mval,
                    crit,
                    mcfg,
                    device,
                    fold=fold.k,
                    state_path=fdir / ("state.pt" if j == 0 else f"state_{j}.pt"),
                    resume=args.resume,
                    show_progress=show_progress,
                    label=f"{method} " + (f"member {j} " if n_members > 1 else ""),
                    keep_epoch_states=shared,
                )
                member = Member(
                    index=j,
                    fit_rows=mfit,
                    val_rows=mval,
                    state=state,
                    selected_epoch=info["selected_epoch"],
                    epochs_run=info["epochs_run"],
                    history=history,
                    epoch_states=info["epoch_states"],
                )
                last_state = info["last_state"]
                if n_members > 1 and _dist.is_main():
                    report.save_torch(member_path, {"member": member, "last_state": last_state})
            members.append(member)
            models.append(model.to(device))
            last_states.append(last_state)
        if shared:
            # one epoch for all members: the best mean validation C over the members (each
            # member scored on its own held-out inner fold; ties go to the later epoch)
            curves = np.array(
                [[h.get("val_c_index", np.nan) for h in m.history] for m in members], np.float64
            )
            mean_curve = np.nan_to_num(np.nanmean(curves, axis=0), nan=-np.inf)
            mean_curve[: cfg.min_epoch] = -np.inf
            e_star = int(np.flatnonzero(mean_curve == mean_curve.max())[-1])
            for m in members:
                m.state, m.selected_epoch = m.epoch_states[e_star], e_star
        for m, model in zip(members, models):
            m.epoch_states = []  # not kept past selection
            sel = [h.get("val_c_index") for h in m.history if h["epoch"] == m.selected_epoch]
            m.val_c_index = float(sel[0]) if sel and sel[0] is not None else float("nan")
            model.load_state_dict(m.state)
            m.train_risk, _, _ = predict(model, sub, trn, crit, cfg, device)
            m.train_mean = float(np.mean(m.train_risk))
            m.train_sd = float(np.std(m.train_risk)) or 1.0

        def ens_predict(rows, present=None, states=None):
            """Combined risk of ``rows`` and every member's logits."""
            logits = []

            def one(m: Member) -> np.ndarray:
                mdl = models[m.index]
                if states is not None:
                    mdl.load_state_dict(states[m.index])
                r, lg, _ = predict(mdl, sub, rows, crit, cfg, device, present=present)
                if states is not None:
                    mdl.load_state_dict(m.state)
                logits.append(lg)
                return r

            return combine(members, one), logits

        risk_test, logits_test = ens_predict(test)
        risk_train = combine(members, lambda m: m.train_risk)  # computed just above
        # last-epoch test score, reported alongside (not used for anything)
        if all(m.selected_epoch == m.epochs_run - 1 for m in members):
            risk_last = risk_test  # every member's checkpoint is its last epoch
        else:
            risk_last, _ = ens_predict(test, states=last_states)
        extras: list = []
        if args.explain_out:  # transport explanations come from the first member
            _, _, extras = predict(models[0], sub, test, crit, cfg, device, keep_extras=True)
        rec.update(
            {
                "selected_epoch": members[0].selected_epoch,
                "select": cfg.select,
                "c_index_last_epoch": c_index(data.time[test], data.event[test], risk_last),
                "history": members[0].history,
                "n_params": sum(p.numel() for p in models[0].parameters()),
                "n_members": n_members,
                "val_c_index": float(np.nanmean([m.val_c_index for m in members])),
                "members": [
                    {
                        "member": m.index,
                        "n_fit": len(m.fit_rows),
                        "n_val": len(m.val_rows),
                        "selected_epoch": m.selected_epoch,
                        "epochs_run": m.epochs_run,
                        "val_c_index": m.val_c_index,
                    }
                    for m in members
                ],
            }
        )
        if args.loss == "cox":

            def surv_fn(grid):
                return breslow_survival(
                    risk_train, data.time[trn], data.event[trn], risk_test, grid
                )
        else:
            e_np = edges.double().numpy()

            def surv_fn(grid):
                return np.mean([nll_survival(lg, e_np, grid) for lg in logits_test], axis=0)

        if _dist.is_main():
            report.save_torch(
                fdir / "checkpoint.pt",
                {
                    "model": members[0].state,
                    "members": [m.state for m in members],
                    "standardise": [(m.train_mean, m.train_sd) for m in members],
                    "method": method,
                    "fold": fold.k,
                    "modalities": [m.name for m in mods],
                    "config": vars(args),
                    "bin_edges": None if edges is None else edges.tolist(),
                },
            )
        if extras and _dist.is_main():
            write_explanations(fdir, ds, sub, test, extras)
        if args.drop_modality and args.drop_modality in [m.name for m in mods] and len(mods) > 1:
            rec.update(_drop_modality_scores(ens_predict, sub, test, args))
        if _dist.is_main():
            for j in range(n_members):
                (fdir / ("state.pt" if j == 0 else f"state_{j}.pt")).unlink(missing_ok=True)
                (fdir / f"member_{j}.pt").unlink(missing_ok=True)
    rec.update(
        fold_metrics(
            train_time=data.time[trn],
            train_event=data.event[trn],
            train_risk=risk_train,
            test_time=data.time[test],
            test_event=data.event[test],
            test_risk=risk_test,
            surv_fn=surv_fn,
        )
    )
    thr = float(np.median(risk_train))  # threshold from the TRAINING fold
    rec["risk_threshold"] = thr
    rec["patients"] = [
        {
            "case_id": str(ds.case_ids[i]),
            "time": float(data.time[i]),
            "event": bool(data.event[i]),
            "risk": float(r),
            "group": "high" if r > thr else "low",
        }
        for i, r in zip(test, risk_test)
    ]
    rec["seconds"] = _time.time() - t_start
    if _dist.is_main():
        report.write_json(res_path, rec)
    _dist.barrier()  # no rank starts the next fold (or checks --resume files) before rank 0 wrote
    return rec


def write_explanations(fdir: Path, ds: Dataset, data: PatientData, test, extras) -> None:
    """Per-patient transport masses, pathway x prototype tables and per-patch weight CSVs."""
    case_ids = [str(c) for c in np.asarray(ds.case_ids)[test]]
    report.write_json(fdir / "explain.json", {"case_ids": case_ids, "patients": extras})
    for info in data.modalities:
        if info.kind == "grouped":
            # cohort-level association: mean share of each token's mass sent to each prototype
            plans = [np.asarray(p[info.name]["plan"]) for p in extras if p[info.name]["present"]]
            if not plans:
                continue
            share = np.mean([p / np.clip(p.sum(1, keepdims=True), 1e-12, None) for p in plans], 0)
            k = share.shape[1]
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["token"] + [f"prototype_{j}" for j in range(k)])
            for name, row in zip(info.token_names, share):
                w.writerow([name] + [f"{v:.5f}" for v in row])
            report.write_text(fdir / f"token_prototype_{info.name}.csv", buf.getvalue())
            report.plot_heatmap(
                fdir / f"token_prototype_{info.name}.png",
                share,
                list(info.token_names),
                [str(j) for j in range(k)],
                f"{info.name}: share of each token's transport to each prototype "
                f"(test patients, {fdir.name})",
            )
        elif data.store is not None:
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["case_id", "patch", "x", "y", "mass", "top_prototype", "top_share"])
            n_rows = 0
            for row, cid, rec in zip(test, case_ids, extras):
                coords = data.coords(int(row))
                r = rec[info.name]
                if coords is None or len(coords) != len(r["token_mass"]):
                    continue
                for i, (xy, m, kk, sh) in enumerate(
                    zip(coords, r["token_mass"], r["token_top_prototype"], r["token_top_share"])
                ):
                    w.writerow([cid, i, int(xy[0]), int(xy[1]), m, kk, sh])
                    n_rows += 1
            if n_rows:
                report.write_text(fdir / "patch_weights.csv", buf.getvalue())


def _restrict(data: PatientData, mods: list[ModalityInfo]) -> PatientData:
    if len(mods) == len(data.modalities):
        return data
    sub = PatientData.__new__(PatientData)
    sub.__dict__.update(data.__dict__)
    sub.modalities = list(mods)
    return sub


def _drop_modality_scores(ens_predict, data, test, args) -> dict:
    """Score the test fold with ``--drop-modality`` removed for a fraction of patients."""
    names = [m.name for m in data.modalities]
    a = names.index(args.drop_modality)
    rng = np.random.default_rng(args.seed + 17)
    present = torch.ones(len(test), len(names), dtype=torch.bool)
    n_drop = int(round(args.drop_frac * len(test)))
    present[rng.choice(len(test), size=n_drop, replace=False), a] = False
    r, _ = ens_predict(test, present=present)
    return {
        "drop_modality": args.drop_modality,
        "drop_frac": args.drop_frac,
        "c_index_dropped": c_index(data.time[test], data.event[test], r),
    }


def summarise(method: str, recs: list[dict]) -> dict:
    """Mean/std over folds of every metric."""
    cs = [r["c_index"] for r in recs]
    mean, sd1, sd0 = report.mean_std(cs)
    out = {
        "method": method,
        "c_index_mean": mean,
        "c_index_std": sd1,
        "c_index_std_ddof0": sd0,
        "n_folds": len(recs),
    }
    for key in ("c_index_uno", "ibs", "c_index_last_epoch", "c_index_dropped"):
        vals = [r.get(key) for r in recs if r.get(key) is not None]
        if vals:
            m, s, _ = report.mean_std(vals)
            out[f"{key}_mean"], out[f"{key}_std"] = m, s
    out["folds"] = [
        {
            k: r.get(k)
            for k in (
                "fold",
                "c_index",
                "c_index_uno",
                "ibs",
                "c_index_last_epoch",
                "selected_epoch",
                "n_train",
                "n_val",
                "n_test",
                "n_test_events",
                "c_index_dropped",
                "alpha",
                "seconds",
            )
            if r.get(k) is not None
        }
        for r in recs
    ]
    return out


def run_protocol(args) -> dict:
    """Run every method on every fold and write all outputs; returns the results dict."""
    out_dir = Path(args.out)
    if _dist.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, args.threads)) if args.threads else None
    device = _device(args.device)
    tcga = Path(args.tcga) if args.tcga else None
    t0 = _time.time()
    if args.cohort_csv:
        ds = real_dataset(args, tcga)
    else:
        ds = synthetic_dataset(args.synthetic_patients, args.seed)
        unknown = [m for m in args.modalities if m not in ("wsi", "rna")]
        if unknown:
            raise ValueError(f"the synthetic cohort has modalities wsi, rna; got {unknown}")
        ds.modalities = list(args.modalities)
    folds = dataset_folds(ds, args)
    n_bins = args.n_bins if args.loss == "nll" else 0
    ds.notes.extend(check_folds(folds, ds.case_ids, ds.event, n_bins=n_bins))  # before training
    methods = method_list(args, ds.modalities)
    cfg = train_config(args)
    show = not args.quiet and _dist.is_main()
    per_method: dict[str, list[dict]] = {m: [] for m in methods}
    for fold in folds:
        data = fold_data(ds, fold)
        for method in methods:
            rec = run_method_fold(method, ds, data, fold, args, cfg, device, out_dir, show)
            per_method[method].append(rec)
            if show:
                print(
                    f"  fold {fold.k} {method:<22} C={rec['c_index']:.3f}"
                    f"  (val-selected epoch {rec.get('selected_epoch', '-')},"
                    f" {rec['seconds']:.1f}s)",
                    flush=True,
                )
    summaries = {m: summarise(m, recs) for m, recs in per_method.items()}
    main = summaries[methods[0]]
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config.update(
        {
            "methods": methods,
            "device_used": str(device),
            "train_config": asdict(cfg),
            "n_patients": int(len(ds.case_ids)),
            "n_events": int(ds.event.sum()),
            "time_unit": ds.time_unit,
            "source": ds.source,
            "notes": ds.notes,
            "groups": {
                m: {"names": g.names, "sizes": g.sizes, "dropped": g.dropped}
                for m, g in ds.groups.items()
            },
            "missing_feature_patients": [] if ds.store is None else list(ds.store.missing),
            "n_missing_feature_patients": 0 if ds.store is None else len(ds.store.missing),
            "folds": [
                {
                    "fold": f.k,
                    "n_train": len(f.train),
                    "n_val": len(f.val),
                    "n_test": len(f.test),
                    "split_ids_dropped": f.dropped,
                }
                for f in folds
            ],
            "versions": {
                "minmaxfuse": minmaxfuse.__version__,
                "torch": torch.__version__,
                "python": sys.version.split()[0],
                "platform": platform.platform(),
            },
            "wall_seconds": _time.time() - t0,
        }
    )
    if _dist.active():
        config["distributed"] = {"world_size": _dist.world(), "backend": _dist.backend()}
    results = {
        "method": methods[0],
        "c_index_mean": main["c_index_mean"],
        "c_index_std": main["c_index_std"],
        "c_index_std_ddof0": main["c_index_std_ddof0"],
        "folds": main["folds"],
        "methods": summaries,
        "config": config,
    }
    if _dist.is_main():
        report.write_json(out_dir / "results.json", results)
        results["logrank_p"] = _write_outputs(out_dir, per_method, methods, ds)
        table = results_table(summaries, methods)
        report.write_text(out_dir / "table.txt", table + "\n")
    _dist.barrier()  # the other ranks wait until rank 0 has written every output
    return results


def _write_outputs(out_dir: Path, per_method: dict, methods: list[str], ds: Dataset) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "fold", "case_id", "time", "event", "risk", "risk_group"])
    for m in methods:
        for rec in per_method[m]:
            for p in rec["patients"]:
                w.writerow(
                    [
                        m,
                        rec["fold"],
                        p["case_id"],
                        p["time"],
                        int(p["event"]),
                        f"{p['risk']:.6g}",
                        p["group"],
                    ]
                )
    report.write_text(out_dir / "test_risks.csv", buf.getvalue())
    main = methods[0]
    pats = [p for rec in per_method[main] for p in rec["patients"]]
    t = np.array([p["time"] for p in pats])
    e = np.array([p["event"] for p in pats], dtype=bool)
    g = np.array([p["group"] == "high" for p in pats])
    p_val = float("nan")
    if g.any() and (~g).any():
        p_val = float(logrank_test(event=e, time=t, group=g.astype(int)).p_value)
    report.plot_km(
        out_dir / "km.png",
        {"high risk": (t[g], e[g]), "low risk": (t[~g], e[~g])},
        f"{main}: test patients of all folds, split at each training-fold median risk\n"
        f"log-rank p = {p_val:.3g}",
        xlabel=f"time ({ds.time_unit})",
    )
    res = json.loads((out_dir / "results.json").read_text())
    res["logrank_p"] = p_val if math.isfinite(p_val) else None
    report.write_json(out_dir / "results.json", res)
    hist = {rec["fold"]: rec["history"] for rec in per_method[main] if rec.get("history")}
    report.plot_curves(out_dir / "training_curves.png", hist)
    return res["logrank_p"]


def results_table(summaries: dict, methods: list[str]) -> str:
    """One row per method: mean ± std of the test C-index and per-fold values."""
    rows = []
    for m in methods:
        s = summaries[m]
        rows.append(
            {
                "method": m,
                "c": f"{s['c_index_mean']:.3f} ± {s['c_index_std']:.3f}"
                if s["n_folds"] > 1
                else f"{s['c_index_mean']:.3f} (1 fold, no sd)",
                "uno": f"{s.get('c_index_uno_mean', float('nan')):.3f}",
                "ibs": f"{s.get('ibs_mean', float('nan')):.3f}",
                "folds": " ".join(
                    f"{f['c_index']:.3f}" if f.get("c_index") is not None else "nan"
                    for f in s["folds"]
                ),
            }
        )
    return report.format_table(
        rows,
        [
            ("method", "method"),
            ("c", "C-index (mean ± sd)"),
            ("uno", "Uno C"),
            ("ibs", "IBS"),
            ("folds", "per-fold C"),
        ],
    )
