"""Data layer of the reference TTA example: cohort tables, omics groups, splits, WSI features.

Everything here is plain numpy / pandas / torch and independent of the model, so it can be
tested on the real TCGA tables without training anything.

Conventions (those of the MCAT/PORPOISE tables):

* ``censorship = 1`` means *censored*; we convert explicitly to ``event = 1 - censorship`` and
  store a boolean ``event`` (True = death / event observed).
* One row per slide in MCAT/PORPOISE tables; patients (``case_id``) are the unit of every split.
  Per-patient fields (time, censorship, omics) must agree across a patient's slide rows.
* Omics columns are ``<GENE>_rnaseq``, ``<GENE>_cnv``, ``<GENE>_mut``.
"""

from __future__ import annotations

import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import ProtocolError

OMICS_SUFFIX = {"rna": "_rnaseq", "cnv": "_cnv", "mut": "_mut"}
CLINICAL_COLUMNS = ("age", "is_female")
GROUPS_PER_COLUMN = "columns"  # --groups cnv=columns: one token per measured column
MODALITIES = ("wsi", "rna", "cnv", "mut", "clinical")

# endpoint -> (time column, censorship column, unit) in each table family
_ENDPOINT_COLUMNS = {
    "os": [
        ("survival_months", "censorship", "months"),
        ("os_survival_days", "os_censorship", "days"),
    ],
    "dss": [
        ("survival_months_dss", "censorship_dss", "months"),
        ("dss_survival_days", "dss_censorship", "days"),
    ],
    "pfi": [
        ("survival_months_pfi", "censorship_pfi", "months"),
        ("pfi_survival_days", "pfi_censorship", "days"),
    ],
}


# --------------------------------------------------------------------------------------------
# cohort table
# --------------------------------------------------------------------------------------------
@dataclass
class Cohort:
    """Patient-level cohort: survival labels, per-modality feature tables, slides and sites.

    ``omics[m]`` is a ``(P, G_m)`` float DataFrame indexed by ``case_id`` whose columns are gene
    names (suffix stripped); ``clinical`` likewise for ``age``/``is_female``.
    """

    case_ids: np.ndarray  # (P,) str
    time: np.ndarray  # (P,) float
    event: np.ndarray  # (P,) bool
    site: np.ndarray | None  # (P,) str tissue-source site, if known
    slides: dict[str, list[str]]
    omics: dict[str, pd.DataFrame] = field(default_factory=dict)
    time_unit: str = "months"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.case_ids)

    def index_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row positions of ``ids`` (error naming the first unknown id)."""
        pos = {c: i for i, c in enumerate(self.case_ids)}
        missing = [c for c in ids if c not in pos]
        if missing:
            raise KeyError(f"case_id {missing[0]!r} (and {len(missing) - 1} more) not in cohort")
        return np.array([pos[c] for c in ids], dtype=np.int64)

    def subset(self, ids: Sequence[str]) -> Cohort:
        """Cohort restricted to ``ids`` (in that order)."""
        idx = self.index_of(ids)
        return Cohort(
            case_ids=self.case_ids[idx],
            time=self.time[idx],
            event=self.event[idx],
            site=None if self.site is None else self.site[idx],
            slides={c: self.slides.get(c, []) for c in self.case_ids[idx]},
            omics={m: t.iloc[idx] for m, t in self.omics.items()},
            time_unit=self.time_unit,
            notes=list(self.notes),
        )


class DataFileError(ValueError):
    """A table (cohort, labels, groups, splits) is missing, truncated or unparsable."""


def read_csv_checked(path: str | Path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` whose failures (truncated zip, bad encoding, parse error) name the file."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"table {str(path)!r} does not exist")
    try:
        return pd.read_csv(path, **kwargs)
    except (OSError, EOFError, UnicodeDecodeError, zipfile.BadZipFile, pd.errors.ParserError,
            pd.errors.EmptyDataError, ValueError) as exc:  # fmt: skip
        raise DataFileError(
            f"cannot read table {str(path)!r} ({type(exc).__name__}: {exc}); the file may be "
            "truncated or corrupt: download or copy it again"
        ) from exc


def _read_table(path: str | Path) -> pd.DataFrame:
    df = read_csv_checked(path, low_memory=False)
    return df.drop(columns=[c for c in df.columns if c.startswith("Unnamed:")])


def _censor_to_event(cens: pd.Series, name: str) -> np.ndarray:
    values = pd.to_numeric(cens, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise DataFileError(
            f"`{name}` must hold 0/1 (1 = censored); got {values[bad][:5].tolist()} "
            f"for {int(bad.sum())} rows."
        )
    return values == 0.0  # event observed <=> not censored


def _where(source: str, df: pd.DataFrame, pos: int) -> str:
    """``table 'X', line 7 (case 'C')`` for row position ``pos`` (line 1 is the header)."""
    line = f"line {pos + 2}" if isinstance(df.index, pd.RangeIndex) else f"row {df.index[pos]!r}"
    case = f" (case {str(df['case_id'].iloc[pos])!r})" if "case_id" in df.columns else ""
    return f"{source}, {line}{case}"


def _check_values(
    df: pd.DataFrame,
    columns: Sequence[str],
    source: str,
    *,
    nan_ok: bool = False,
    lo: float | None = None,
    allowed: tuple[float, ...] | None = None,
) -> None:
    """Raise naming the first bad cell (line and column): text, NaN (unless ``nan_ok``), inf,
    a value below ``lo`` or outside ``allowed``."""
    for col in columns:
        raw = df[col]
        num = raw if pd.api.types.is_numeric_dtype(raw) else pd.to_numeric(raw, errors="coerce")
        v = num.to_numpy(dtype=np.float64, na_value=np.nan)
        problems = [
            (raw.notna().to_numpy() & np.isnan(v), "is not a number"),
            (np.isinf(v), "is not finite"),
        ]
        if not nan_ok:
            problems.append((raw.isna().to_numpy(), "is empty (NaN)"))
        if lo is not None:
            problems.append((v < lo, f"is below {lo:g}"))
        if allowed is not None:
            problems.append((~np.isnan(v) & ~np.isin(v, allowed), f"is not one of {allowed}"))
        for bad, why in problems:
            if bad.any():
                pos = int(np.flatnonzero(bad)[0])
                raise DataFileError(
                    f"{_where(source, df, pos)}, column {col!r}: {raw.iloc[pos]!r} {why} "
                    f"({int(bad.sum())} such cells in this column)"
                )


def _per_patient(
    df: pd.DataFrame, columns: Sequence[str], what: str, source: str = "table"
) -> pd.DataFrame:
    """First row per case_id, after checking that the columns agree across a patient's rows."""
    _check_agree(df, columns, what, source)
    return df.groupby("case_id", sort=False)[list(columns)].first()


def _check_agree(df: pd.DataFrame, columns: Sequence[str], what: str, source: str) -> None:
    """Refuse a patient whose slide rows disagree in ``columns``, naming lines and column."""
    if not len(df) or not len(columns):
        return
    codes, uniq = pd.factorize(df["case_id"].astype(str))
    _, first = np.unique(codes, return_index=True)
    ref_pos = first[codes]
    multi = np.flatnonzero(ref_pos != np.arange(len(df)))
    if not len(multi):
        return  # one row per patient
    bad_rows: set[int] = set()
    example = None
    for col in columns:
        vals = df[col].to_numpy()[multi]
        ref = df[col].to_numpy()[ref_pos[multi]]
        same = (vals == ref) | (pd.isna(vals) & pd.isna(ref))
        rows = multi[~np.asarray(same, bool)]
        if len(rows) and example is None:
            example = (int(rows[0]), col)
        bad_rows.update(rows.tolist())
    if example is not None:
        pos, col = example
        n_pat = len({codes[r] for r in bad_rows})
        raise DataFileError(
            f"{_where(source, df, pos)}: {what} of patient {str(uniq[codes[pos]])!r} differ "
            f"between its slide rows (column {col!r}: {df[col].iloc[int(ref_pos[pos])]!r} on "
            f"line {int(ref_pos[pos]) + 2}, {df[col].iloc[pos]!r} here); {n_pat} patients "
            "have such conflicting rows"
        )


def find_label_columns(columns: Sequence[str], endpoint: str) -> tuple[str, str, str]:
    """Time column, censorship column and time unit for ``endpoint`` present in ``columns``."""
    if endpoint not in _ENDPOINT_COLUMNS:
        raise ValueError(
            f"`endpoint` must be one of {sorted(_ENDPOINT_COLUMNS)}; got {endpoint!r}."
        )
    for tcol, ccol, unit in _ENDPOINT_COLUMNS[endpoint]:
        if tcol in columns and ccol in columns:
            return tcol, ccol, unit
    raise DataFileError(f"the table lacks {_missing_label_columns(columns, endpoint)}")


def _missing_label_columns(columns: Sequence[str], endpoint: str) -> str:
    """The missing label columns of the closest ``endpoint`` column pair, and the alternative."""
    pairs = [(t, c) for t, c, _ in _ENDPOINT_COLUMNS[endpoint]]
    best = min(pairs, key=lambda p: sum(c not in columns for c in p))
    text = ", ".join(repr(c) for c in best if c not in columns)
    others = [p for p in pairs if p != best]
    if others:
        text += " (or " + " and ".join(repr(c) for c in others[0]) + ")"
    return text


def read_labels(path: str | Path | Sequence[str | Path], endpoint: str = "os") -> pd.DataFrame:
    """Read survival labels (one row per patient) from SurvPath metadata or MMP split files.

    Returns a DataFrame indexed by ``case_id`` with columns ``time``, ``event`` (bool), ``unit``
    and, when known, ``site``.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    source = "labels " + ", ".join(repr(str(p)) for p in paths)
    df = pd.concat([_read_table(p) for p in paths], ignore_index=True)
    if "case_id" not in df.columns:
        raise DataFileError(f"{source} lack the column 'case_id'")
    try:
        tcol, ccol, unit = find_label_columns(df.columns, endpoint)
    except DataFileError:
        raise DataFileError(
            f"{source} lack {_missing_label_columns(df.columns, endpoint)}"
        ) from None
    df = df.dropna(subset=[tcol, ccol]).reset_index(drop=True)  # patients without labels
    _check_values(df, [tcol], source, lo=0.0)
    _check_values(df, [ccol], source, allowed=(0.0, 1.0))
    site_col = next((c for c in ("site", "tissue_source_site") if c in df.columns), None)
    cols = [tcol, ccol] + ([site_col] if site_col else [])
    pat = _per_patient(df, cols, f"{endpoint.upper()} labels", source)
    out = pd.DataFrame(index=pat.index)
    out["time"] = pat[tcol].astype(float)
    out["event"] = _censor_to_event(pat[ccol], ccol)
    out["unit"] = unit
    if site_col:
        out["site"] = pat[site_col].astype(str)
    return out


def read_cohort(
    path: str | Path,
    *,
    modalities: Sequence[str] = ("rna",),
    endpoint: str = "os",
    labels: pd.DataFrame | None = None,
) -> Cohort:
    """Read an MCAT/PORPOISE ``*_all_clean.csv[.zip]`` table into a patient-level :class:`Cohort`.

    Parameters
    ----------
    path : path
        The cohort table (one row per slide).
    modalities : sequence of str
        Which of ``rna``, ``cnv``, ``mut``, ``clinical`` (and ``wsi``) to keep.
    endpoint : {"os", "dss", "pfi"}
        Survival endpoint; looked up in the table unless ``labels`` is given.
    labels : DataFrame, optional
        Output of :func:`read_labels`; replaces the table's own labels (e.g. DSS from
        SurvPath/MMP files). Patients without labels are dropped and counted in ``notes``.
    """
    df = _read_table(path)
    source = f"cohort table {str(path)!r}"
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"`modalities` must be a subset of {MODALITIES}; got {unknown}.")
    # every missing column at once, not only the first
    missing = [repr(c) for c in ("case_id", "slide_id") if c not in df.columns]
    if labels is None:
        try:
            find_label_columns(df.columns, endpoint)
        except DataFileError:
            missing.append(_missing_label_columns(df.columns, endpoint))
    for m in modalities:
        if m == "clinical" and not any(c in df.columns for c in CLINICAL_COLUMNS):
            missing.append(" or ".join(repr(c) for c in CLINICAL_COLUMNS))
        elif m in OMICS_SUFFIX and not any(c.endswith(OMICS_SUFFIX[m]) for c in df.columns):
            missing.append(f"any '*{OMICS_SUFFIX[m]}' column (modality {m})")
    if missing:
        raise DataFileError(f"{source} lacks the columns {', '.join(missing)}")
    if not len(df):
        raise ProtocolError(f"{source} has no patients (no rows under the header)")
    df["case_id"] = df["case_id"].astype(str)
    notes: list[str] = []
    slides: dict[str, list[str]] = {}
    for c, s in zip(df["case_id"].astype(str), df["slide_id"].astype(str)):
        slides.setdefault(c, [])
        if s not in slides[c]:
            slides[c].append(s)

    if labels is None:
        tcol, ccol, unit = find_label_columns(df.columns, endpoint)
        _check_values(df, [tcol], source, lo=0.0)
        _check_values(df, [ccol], source, allowed=(0.0, 1.0))
        pat = _per_patient(df, [tcol, ccol], "survival labels", source)
        lab = pd.DataFrame(index=pat.index)
        lab["time"] = pat[tcol].astype(float)
        lab["event"] = _censor_to_event(pat[ccol], ccol)
        lab["unit"] = unit
    else:
        lab = labels
        unit = str(labels["unit"].iloc[0]) if len(labels) else "months"
    case_ids = pd.unique(df["case_id"].astype(str))
    keep = [c for c in case_ids if c in lab.index]
    if len(keep) < len(case_ids):
        notes.append(f"{len(case_ids) - len(keep)} patients without {endpoint} labels dropped")
    if not keep:
        raise ProtocolError(f"no patient of {source} has {endpoint} labels")
    case_ids = np.asarray(keep, dtype=object)
    lab = lab.loc[case_ids]
    bad_time = ~np.isfinite(lab["time"].to_numpy(float)) | (lab["time"].to_numpy(float) < 0)
    if bad_time.any():
        raise ValueError(
            f"survival times must be finite and >= 0; got {int(bad_time.sum())} bad values, "
            f"e.g. case {case_ids[bad_time][0]!r}"
        )

    site = None
    if "site" in lab.columns:
        site = lab["site"].astype(str).to_numpy(dtype=object)
    elif "site" in df.columns:
        site = df.groupby("case_id", sort=False)["site"].first().loc[case_ids].astype(str)
        site = site.to_numpy(dtype=object)

    omics: dict[str, pd.DataFrame] = {}
    for m in modalities:
        if m == "wsi":
            continue
        if m == "clinical":
            cols = [c for c in CLINICAL_COLUMNS if c in df.columns]
            names = cols
        else:
            suffix = OMICS_SUFFIX[m]
            cols = [c for c in df.columns if c.endswith(suffix)]
            names = [c[: -len(suffix)] for c in cols]
        # text and inf are refused; NaN (a value not measured) becomes the training mean later
        _check_values(df, cols, source, nan_ok=True)
        _check_agree(df, cols, f"{m} values", source)
        n_nan = int(df[cols].isna().to_numpy().sum())
        if n_nan:
            notes.append(f"{m}: {n_nan} missing values (NaN) set to the training-fold mean")
        first = df.groupby("case_id", sort=False)[cols].first().loc[case_ids]
        table = first.apply(pd.to_numeric, errors="coerce").astype(np.float32)
        table.columns = names
        table.index = pd.Index(case_ids, name="case_id")
        omics[m] = table

    return Cohort(
        case_ids=case_ids,
        time=lab["time"].to_numpy(dtype=np.float64),
        event=lab["event"].to_numpy(dtype=bool),
        site=site,
        slides={c: slides.get(c, []) for c in case_ids},
        omics=omics,
        time_unit=unit,
        notes=notes,
    )


# --------------------------------------------------------------------------------------------
# omics groups (pathways / gene families)
# --------------------------------------------------------------------------------------------
@dataclass
class GroupSpec:
    """Genes of one modality grouped into tokens: ``index[g]`` are column positions."""

    names: list[str]
    index: list[np.ndarray]
    dropped: list[str]

    @property
    def sizes(self) -> list[int]:
        return [len(i) for i in self.index]


class GroupTable(dict):
    """Group name -> gene names, read from :attr:`path`."""

    path: str = ""


def read_group_file(path: str | Path) -> dict[str, list[str]]:
    """Group file: columns are group names, cells gene names (NaN padded)."""
    df = read_csv_checked(path)
    df = df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed:")])
    out = GroupTable({str(c): [str(g).strip() for g in df[c].dropna()] for c in df.columns})
    out.path = str(path)
    return out


def build_groups(genes: Sequence[str], groups: dict[str, list[str]] | None) -> GroupSpec:
    """Map each group to the measured genes; groups with no measured gene are dropped.

    ``groups=None`` makes one token per column (used for clinical variables).
    """
    if groups is None:
        return GroupSpec(list(genes), [np.array([i]) for i in range(len(genes))], [])
    pos = {g: i for i, g in enumerate(genes)}
    names, index, dropped = [], [], []
    for name, members in groups.items():
        idx = sorted({pos[g] for g in members if g in pos})
        if idx:
            names.append(name)
            index.append(np.asarray(idx, dtype=np.int64))
        else:
            dropped.append(name)
    if not names:
        where = f" {getattr(groups, 'path', '')!r}" if getattr(groups, "path", "") else ""
        raise DataFileError(
            f"no group of the group file{where} has a gene measured in the cohort table "
            f"(e.g. {', '.join(repr(g) for g in list(genes)[:3])} are measured): check the "
            "group file against the table, or pass --groups MODALITY=columns for one token per "
            "column"
        )
    return GroupSpec(names, index, dropped)


def pack_groups(x: np.ndarray, spec: GroupSpec) -> tuple[np.ndarray, np.ndarray]:
    """Gather ``x`` (P, genes) into a zero-padded ``(P, G, L)`` array and a ``(G, L)`` mask."""
    lmax = max(spec.sizes)
    gather = np.zeros((len(spec.names), lmax), dtype=np.int64)
    valid = np.zeros((len(spec.names), lmax), dtype=bool)
    for g, idx in enumerate(spec.index):
        gather[g, : len(idx)] = idx
        valid[g, : len(idx)] = True
    out = x[:, gather] * valid[None]
    return out.astype(np.float32), valid


# --------------------------------------------------------------------------------------------
# per-fold scaling (fit on training patients only)
# --------------------------------------------------------------------------------------------
class FoldScaler:
    """Column-wise z-scoring fitted on training rows only; NaN -> training mean (0 after scaling).

    Constant training columns keep scale 1 (they become 0 after centring).
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> FoldScaler:
        x = np.asarray(x, dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(x, axis=0)
            std = np.nanstd(x, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)
        self.mean_, self.scale_ = mean, std
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.mean_ is None:
            raise RuntimeError("FoldScaler.transform called before fit")
        z = (np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_
        return np.nan_to_num(z, nan=0.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------
@dataclass
class Fold:
    """Patient ids of one outer fold: ``train`` (model fitting), ``val`` (selection), ``test``."""

    k: int
    train: list[str]
    val: list[str]
    test: list[str]
    dropped: int = 0  # split ids absent from the cohort
    dropped_ids: list[str] = field(default_factory=list)

    def check_disjoint(self) -> None:
        """Raise if a patient appears in two of train / val / test (or twice in one)."""
        sets = {"train": self.train, "val": self.val, "test": self.test}
        for name, ids in sets.items():
            if len(set(ids)) != len(ids):
                raise AssertionError(f"fold {self.k}: duplicate case_ids inside {name}")
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = set(sets[a]) & set(sets[b])
            if both:
                raise AssertionError(
                    f"fold {self.k}: {len(both)} patients in both {a} and {b}, e.g. {min(both)!r}"
                )


def _clean_ids(series: pd.Series) -> list[str]:
    return [str(s) for s in series.dropna().astype(str) if str(s).strip()]


def read_split_files(spec: str | Path, k: int) -> tuple[list[str], list[str]]:
    """(train ids, test ids) of fold ``k`` from either split layout.

    * MCAT/SurvPath: ``spec`` is a directory with ``splits_{k}.csv`` (columns ``train, val``;
      that ``val`` is the held-out **test** fold of the protocol).
    * MMP: ``spec`` is a directory template containing ``{k}``
      (``.../TCGA_BLCA_overall_survival_k={k}``) or one such directory (``..._k=0``), holding
      ``train.csv`` and ``test.csv`` (one row per slide).
    """
    spec = str(spec)
    p = Path(spec)
    if (p / f"splits_{k}.csv").exists():
        df = read_csv_checked(p / f"splits_{k}.csv")
        if not {"train", "val"} <= set(df.columns):
            raise DataFileError(
                f"split file {str(p / f'splits_{k}.csv')!r} must have the columns 'train' and "
                f"'val' (the test fold); it has {[str(c) for c in df.columns]}"
            )
        return _clean_ids(df["train"]), _clean_ids(df["val"])
    if "{k}" not in spec and spec.rstrip("/").endswith(tuple(f"_k={i}" for i in range(10))):
        spec = spec.rstrip("/")[:-1] + "{k}"
    d = Path(spec.replace("{k}", str(k)))
    if (d / "train.csv").exists() and (d / "test.csv").exists():
        tr = read_csv_checked(d / "train.csv", usecols=["case_id"])
        te = read_csv_checked(d / "test.csv", usecols=["case_id"])
        return list(dict.fromkeys(_clean_ids(tr["case_id"]))), list(
            dict.fromkeys(_clean_ids(te["case_id"]))
        )
    raise FileNotFoundError(
        f"no split for fold {k} under {spec!r}: expected splits_{k}.csv or a "
        "'..._k={k}' directory with train.csv and test.csv"
    )


def count_split_files(spec: str | Path) -> int:
    """Number of consecutive folds 0..k-1 available under ``spec``."""
    k = 0
    while True:
        try:
            read_split_files(spec, k)
        except FileNotFoundError:
            return k
        k += 1


def make_folds(
    case_ids: Sequence[str],
    event: np.ndarray,
    *,
    n_folds: int = 5,
    seed: int = 0,
    site: np.ndarray | None = None,
) -> list[list[str]]:
    """Patient-level test folds, stratified by event; site-grouped when ``site`` is given.

    Without ``site``: events and non-events are shuffled separately and dealt round-robin.
    With ``site``: whole tissue-source sites are assigned greedily (largest first) to the fold
    with the fewest patients, so no site is shared between a test fold and its training set.
    """
    if n_folds < 2:
        raise ValueError(f"`n_folds` must be >= 2; got {n_folds}.")
    rng = np.random.default_rng(seed)
    ids = np.asarray(case_ids, dtype=object)
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    if site is None:
        start = 0
        for ev in (True, False):
            members = ids[np.asarray(event, bool) == ev]
            members = members[rng.permutation(len(members))]
            for j, c in enumerate(members):
                folds[(start + j) % n_folds].append(str(c))
            start = (start + len(members)) % n_folds
        return folds
    site = np.asarray(site, dtype=object)
    uniq = list(pd.unique(site))
    rng.shuffle(uniq)
    uniq.sort(key=lambda s: -int((site == s).sum()))
    for s in uniq:
        f = min(range(n_folds), key=lambda i: len(folds[i]))
        folds[f].extend(str(c) for c in ids[site == s])
    if min(len(f) for f in folds) == 0:
        raise ProtocolError(
            f"too few tissue-source sites ({len(uniq)}) for {n_folds} site-grouped folds; "
            "use fewer --folds or drop --stratify-site"
        )
    return folds


def carve_validation(
    train_ids: Sequence[str], event: np.ndarray, *, frac: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split a training fold into (fit, val), stratified by event; ``frac`` of each stratum."""
    if not 0.0 < frac < 1.0:
        raise ValueError(f"`val_frac` must be in (0, 1); got {frac}.")
    rng = np.random.default_rng(seed)
    ids = np.asarray(train_ids, dtype=object)
    ev = np.asarray(event, bool)
    val_mask = np.zeros(len(ids), dtype=bool)
    for e in (True, False):
        pos = np.flatnonzero(ev == e)
        n_val = int(round(frac * len(pos)))
        val_mask[rng.choice(pos, size=n_val, replace=False)] = True
    return [str(c) for c in ids[~val_mask]], [str(c) for c in ids[val_mask]]


def build_folds(
    cohort: Cohort,
    *,
    splits: str | Path | None,
    n_folds: int = 5,
    seed: int = 0,
    val_frac: float = 0.2,
    stratify_site: bool = False,
) -> list[Fold]:
    """Outer folds from split files (or generated) with validation carved out of each train fold."""
    present = set(cohort.case_ids)
    ev = dict(zip(cohort.case_ids, cohort.event))
    out = []
    if splits is not None:
        avail = count_split_files(splits)
        if avail == 0:
            read_split_files(splits, 0)  # raises with a clear message
        n_folds = min(n_folds, avail)
        pairs = [read_split_files(splits, k) for k in range(n_folds)]
    else:
        tests = make_folds(
            cohort.case_ids,
            cohort.event,
            n_folds=n_folds,
            seed=seed,
            site=cohort.site if stratify_site else None,
        )
        pairs = []
        for k in range(n_folds):
            test_set = set(tests[k])
            pairs.append(([c for c in cohort.case_ids if c not in test_set], tests[k]))
    for k, (tr, te) in enumerate(pairs):
        if splits is not None:
            _check_split(k, tr, te, present, splits)
        gone = [c for c in tr + te if c not in present]
        tr = [c for c in tr if c in present]
        te = [c for c in te if c in present]
        fit, val = carve_validation(tr, np.array([ev[c] for c in tr]), frac=val_frac, seed=seed + k)
        fold = Fold(k=k, train=fit, val=val, test=te, dropped=len(gone), dropped_ids=gone)
        fold.check_disjoint()
        out.append(fold)
    return out


def _few(ids, n: int = 3) -> str:
    ids = sorted(ids)
    return ", ".join(repr(c) for c in ids[:n]) + (", ..." if len(ids) > n else "")


def _check_split(k: int, tr: list[str], te: list[str], present: set, splits) -> None:
    """Split files: no patient twice, none in both train and test, ids of this cohort."""
    where = f"fold {k} of --splits {str(splits)!r}"
    for name, ids in (("train", tr), ("test", te)):
        seen, twice = set(), set()
        for c in ids:
            (twice if c in seen else seen).add(c)
        if twice:
            raise ProtocolError(
                f"{where}: {len(twice)} patients listed twice in {name}: {_few(twice)}"
            )
    both = set(tr) & set(te)
    if both:
        raise ProtocolError(f"{where}: {len(both)} patients in both train and test: {_few(both)}")
    gone = [c for c in tr + te if c not in present]
    if gone and len(gone) == len(tr) + len(te):
        raise ProtocolError(
            f"{where}: all {len(gone)} split ids are not in the cohort table (e.g. {_few(gone)}); "
            "do the splits belong to another cohort?"
        )


# at least this many test patients and events per fold, and events to fit and to select on
MIN_TEST_PATIENTS = 10
MIN_TEST_EVENTS = 2
MIN_FIT_EVENTS = 2
MIN_VAL_EVENTS = 1


def check_folds(
    folds: Sequence[Fold], case_ids: Sequence[str], event: np.ndarray, *, n_bins: int = 0
) -> list[str]:
    """Refuse a cohort without events and degenerate folds; notes on dropped split ids.

    ``n_bins``: NLL time bins, placed at quantiles of each training fold's event times.

    Called before any training, so that a run never reports a C-index of NaN.
    """
    event = np.asarray(event, bool)
    if not len(case_ids):
        raise ProtocolError("the cohort has no patients")
    if not event.any():
        raise ProtocolError(
            f"the cohort has no events (all {len(case_ids)} patients censored): a survival "
            "model cannot be fitted or scored"
        )
    ev = dict(zip(map(str, case_ids), event))
    notes = []
    for f in folds:
        n_te, e_te = len(f.test), sum(ev[c] for c in f.test)
        if n_te < MIN_TEST_PATIENTS:
            raise ProtocolError(
                f"fold {f.k}: the test fold has {n_te} patients (at least {MIN_TEST_PATIENTS} "
                "are needed for a C-index); use fewer --folds or more patients"
            )
        if e_te < MIN_TEST_EVENTS:
            what = "no event" if e_te == 0 else f"{e_te} event"
            raise ProtocolError(
                f"fold {f.k}: the test fold has {what} among {n_te} patients (at least "
                f"{MIN_TEST_EVENTS} are needed for a C-index); use other splits or fewer --folds"
            )
        e_fit, e_val = sum(ev[c] for c in f.train), sum(ev[c] for c in f.val)
        if e_fit < MIN_FIT_EVENTS or e_val < MIN_VAL_EVENTS:
            raise ProtocolError(
                f"fold {f.k}: the training fold has {e_fit} events to fit on and {e_val} to "
                f"select on (at least {MIN_FIT_EVENTS} and {MIN_VAL_EVENTS} are needed); use "
                "other splits, fewer --folds or another --val-frac"
            )
        if e_fit + e_val < n_bins:
            raise ProtocolError(
                f"fold {f.k}: --n-bins {n_bins} needs at least {n_bins} events in the training "
                f"fold; it has {e_fit + e_val}"
            )
        if f.dropped_ids:
            notes.append(
                f"fold {f.k}: {len(f.dropped_ids)} split ids are not in the cohort table and "
                f"were left out: {_few(f.dropped_ids)}"
            )
    return notes


# --------------------------------------------------------------------------------------------
# omics matrices per fold
# --------------------------------------------------------------------------------------------
@dataclass
class OmicsView:
    """Scaled, grouped omics of every patient for one fold: ``x[m]`` is ``(P, G, L)``."""

    x: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]  # (G, L) bool
    flat: dict[str, np.ndarray]  # (P, genes) scaled, for linear baselines
    groups: dict[str, GroupSpec]


def fold_omics(cohort: Cohort, groups: dict[str, GroupSpec], train_ids: Sequence[str]) -> OmicsView:
    """Scale every omics modality with statistics of ``train_ids`` only, then group into tokens."""
    tr = cohort.index_of(train_ids)
    x, valid, flat = {}, {}, {}
    for m, table in cohort.omics.items():
        raw = table.to_numpy(dtype=np.float64)
        scaler = FoldScaler().fit(raw[tr])
        z = scaler.transform(raw)
        flat[m] = z
        x[m], valid[m] = pack_groups(z, groups[m])
    return OmicsView(x=x, valid=valid, flat=flat, groups=groups)


# --------------------------------------------------------------------------------------------
# WSI features
# --------------------------------------------------------------------------------------------
class MissingFeatureError(FileNotFoundError):
    """A slide's feature file is missing or unreadable."""


def slide_stem(slide_id: str) -> str:
    """File stem of a slide id: ``TCGA-...DX1.<uuid>.svs`` -> ``TCGA-...DX1.<uuid>``."""
    s = str(slide_id)
    for ext in (".svs", ".tif", ".tiff", ".ndpi", ".mrxs"):
        if s.lower().endswith(ext):
            return s[: -len(ext)]
    return s


class FeatureStore:
    """Per-slide patch features from a directory of CLAM ``.pt`` or ``.h5`` files.

    Looks for ``<stem>.pt`` / ``<stem>.h5`` directly in ``root`` or in ``root/pt_files`` /
    ``root/h5_files``. ``.pt`` files hold an ``(N, D)`` tensor; ``.h5`` files a ``features``
    dataset ``(N, D)`` (or ``(1, N, D)``) and optionally ``coords`` ``(N, 2)``. A patient's slides
    are concatenated along N. Loaded patients are cached up to ``cache_bytes``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        skip_missing: bool = False,
        cache_bytes: float = 2e9,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"`features_dir` {str(self.root)!r} is not a directory")
        self.skip_missing = skip_missing
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, tuple[torch.Tensor, np.ndarray | None]] = OrderedDict()
        self._bytes = 0
        self.missing: list[str] = []
        self.dim: int | None = None

    def _locate(self, slide_id: str) -> Path | None:
        stem = slide_stem(slide_id)
        for sub in ("", "pt_files", "h5_files", "feats_pt", "feats_h5"):
            for ext in (".pt", ".h5"):
                p = self.root / sub / f"{stem}{ext}"
                if p.exists():
                    return p
        return None

    def _load_slide(self, slide_id: str) -> tuple[torch.Tensor, np.ndarray | None]:
        path = self._locate(slide_id)
        if path is None:
            raise MissingFeatureError(
                f"no feature file for slide {slide_id!r}: looked for "
                f"{slide_stem(slide_id)}.pt/.h5 under {str(self.root)!r} "
                "(use --skip-missing to drop such patients)"
            )
        coords = None
        try:
            if path.suffix == ".pt":
                feats = torch.load(path, map_location="cpu", weights_only=True)
                if isinstance(feats, dict):
                    feats = feats["features"]
                feats = torch.as_tensor(feats)
            else:
                import h5py

                with h5py.File(path, "r") as f:
                    feats = torch.from_numpy(np.asarray(f["features"][()]))
                    if "coords" in f:
                        coords = np.asarray(f["coords"][()]).reshape(-1, 2)
        except Exception as exc:  # re-raised with the slide named
            raise MissingFeatureError(
                f"cannot read features of slide {slide_id!r} ({path}): {exc}"
            ) from exc
        if feats.ndim == 3 and feats.shape[0] == 1:
            feats = feats[0]
        if feats.ndim != 2 or feats.shape[0] == 0:
            raise MissingFeatureError(
                f"features of slide {slide_id!r} ({path}) must be (N, D) with N >= 1; "
                f"got shape {tuple(feats.shape)}"
            )
        if not torch.isfinite(feats).all():
            raise MissingFeatureError(f"features of slide {slide_id!r} ({path}) contain NaN/inf")
        if self.dim is None:
            self.dim = int(feats.shape[1])
        elif feats.shape[1] != self.dim:
            raise MissingFeatureError(
                f"slide {slide_id!r} has feature dim {feats.shape[1]}, others have {self.dim}"
            )
        return feats.float(), coords

    def patient(
        self, case_id: str, slides: Sequence[str]
    ) -> tuple[torch.Tensor, np.ndarray | None]:
        """All patches of a patient ``(N, D)`` and their coords (or None)."""
        if case_id in self._cache:
            self._cache.move_to_end(case_id)
            return self._cache[case_id]
        parts, coords = [], []
        for s in slides:
            f, c = self._load_slide(s)
            parts.append(f)
            coords.append(c)
        if not parts:
            raise MissingFeatureError(f"patient {case_id!r} has no slide in the cohort table")
        feats = torch.cat(parts, 0)
        co = None if any(c is None for c in coords) else np.concatenate(coords, 0)
        item = (feats, co)
        nbytes = feats.numel() * 4
        if nbytes <= self.cache_bytes:
            self._cache[case_id] = item
            self._bytes += nbytes
            while self._bytes > self.cache_bytes and self._cache:
                _, (old, _) = self._cache.popitem(last=False)
                self._bytes -= old.numel() * 4
        return item

    def check(self, cohort: Cohort) -> list[str]:
        """Verify every patient's slides are readable; returns the case_ids to keep.

        Without ``skip_missing`` the first problem raises; with it, patients with a missing or
        unreadable slide are recorded in ``self.missing`` and left out.
        """
        keep = []
        for c in cohort.case_ids:
            try:
                for s in cohort.slides.get(c, []):
                    if self._locate(s) is None:
                        self._load_slide(s)  # raises MissingFeatureError
                if not cohort.slides.get(c):
                    raise MissingFeatureError(f"patient {c!r} has no slide in the cohort table")
                if self.dim is None:
                    self.patient(c, cohort.slides[c])
                keep.append(c)
            except MissingFeatureError:
                if not self.skip_missing:
                    raise
                self.missing.append(c)
        return keep


def sample_bag(feats: torch.Tensor, bag_size: int, generator: torch.Generator) -> torch.Tensor:
    """Random ``bag_size`` patches without replacement (all of them when fewer)."""
    n = feats.shape[0]
    if bag_size <= 0 or n <= bag_size:
        return feats
    idx = torch.randperm(n, generator=generator)[:bag_size]
    return feats[idx]


def pad_bag_list(bags: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``(N_b, D)`` bags to ``(B, N_max, D)`` with a bool mask (True = patch)."""
    n_max = max(int(b.shape[0]) for b in bags)
    d = int(bags[0].shape[1])
    x = bags[0].new_zeros((len(bags), n_max, d))
    mask = torch.zeros(len(bags), n_max, dtype=torch.bool)
    for i, b in enumerate(bags):
        x[i, : b.shape[0]] = b
        mask[i, : b.shape[0]] = True
    return x, mask
