"""One bad-input table over every public callable of minmaxfuse (house style B4).

Each case calls one public name with one malformed input and checks that it raises
ValueError/TypeError whose message names the argument in backticks and shows what was expected
against what it got (``... ; got ...``). The list of public names is derived from the ``__all__``
of the package and of every subpackage; :func:`test_every_public_callable_is_covered` fails when a
name is neither in the table nor in :data:`EXCLUDED` with a reason, so new names cannot be
skipped silently.

Legitimate degenerate inputs (no event, a single modality, an all-padding bag where documented)
are in :func:`test_degenerate_inputs_are_graph_connected_zeros`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest
import torch

import minmaxfuse
from minmaxfuse import data, diagnostics, distributed, layers, losses, ot, survival
from tests.hardening.hardening_helpers import public_callables

NAN = float("nan")
INF = float("inf")


# names that take no input, or are plain result containers built by the library
EXCLUDED = {
    "value_checks_enabled": "takes no argument",
    "is_distributed": "takes no argument",
    "world_size": "takes no argument",
    "Schedule": "abstract base class; its subclasses are in the table",
    "UOTResult": "NamedTuple returned by the solvers, never validated input",
    "SemanticUOTResult": "NamedTuple returned by semantic_uot",
    "AlignOutput": "NamedTuple returned by PrototypeUOTAlign",
    "AnchorOutput": "NamedTuple returned by ModalityAnchors",
    "MinMaxComponents": "NamedTuple returned by MinMaxObjective.forward_components",
    "PaddedBags": "NamedTuple returned by pad_bags / sample_bag(s)",
    "SyntheticCohort": "NamedTuple returned by make_synthetic_cohort",
    "BootstrapResult": "NamedTuple returned by bootstrap_ci",
    "ConcordanceResult": "NamedTuple returned by concordance_index(return_counts=True)",
    "KaplanMeierResult": "NamedTuple returned by kaplan_meier",
    "LogRankResult": "NamedTuple returned by logrank_test",
    "TimeDependentAUC": "NamedTuple returned by cumulative_dynamic_auc",
}


class Case(NamedTuple):
    target: str  # the public name this case exercises
    id: str
    call: Callable[[], object]
    exc: type[Exception]
    arg: str  # the argument the message must name, in backticks
    match: str | None = None  # optional extra regex on the message
    xfail: str | None = None  # defect recorded in /work/notes/hardening_findings.md


# ---------------------------------------------------------------------------------------------
# small valid inputs (fresh tensors for every call)


def rnd(*shape, dtype=torch.float32):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


def with_value(x: torch.Tensor, index, value) -> torch.Tensor:
    x = x.clone()
    x[index] = value
    return x


def mask(b, n, *, empty_rows=(), pad_last=0):
    m = torch.ones(b, n, dtype=torch.bool)
    if pad_last:
        m[:, -pad_last:] = False
    for r in empty_rows:
        m[r] = False
    return m


EV = torch.tensor([True, False, True, True])
TM = torch.tensor([1.0, 2.0, 3.0, 4.0])
RK = torch.tensor([0.4, 0.1, 0.3, 0.2])
EV_NP, TM_NP, RK_NP = EV.numpy(), TM.numpy(), RK.numpy()


def align(**kw):
    return layers.PrototypeUOTAlign(4, num_prototypes=3, max_iter=50, **kw)


def align_call(tokens=None, masks=None, **kw):
    tokens = tokens if tokens is not None else [rnd(2, 5, 4), rnd(2, 3, 4)]
    return align()(tokens, masks, **kw)


def anchors_call(tokens):
    return layers.ModalityAnchors(2, 4)(tokens)


def cox(**over):
    args = {"log_risk": torch.zeros(4), "time": TM, "event": EV} | over
    return survival.cox_ph_loss(args.pop("log_risk"), args.pop("time"), args.pop("event"), **args)


def nll(**over):
    args = {"logits": torch.zeros(4, 3), "time_bin": torch.tensor([0, 1, 2, 0]), "event": EV}
    args |= over
    return survival.nll_surv_loss(
        args.pop("logits"), args.pop("time_bin"), args.pop("event"), **args
    )


def cidx(fn, **over):
    return fn(**({"event": EV_NP, "time": TM_NP, "risk": RK_NP} | over))


def uot(**over):
    args = {"cost": rnd(2, 4, 3)} | over
    return ot.sinkhorn_uot(args.pop("cost"), **args)


def sem(**over):
    args = {"cost": rnd(2, 4, 3), "features": rnd(2, 4, 5), "rho": 0.5} | over
    return ot.semantic_uot(args.pop("cost"), args.pop("features"), args.pop("rho"), **args)


def skc(**over):
    args = {"logits": rnd(2, 3, 4, 5)} | over
    return losses.sinkhorn_consistency_loss(args.pop("logits"), **args)


def contrast(**over):
    args = {"pooled": rnd(3, 2, 4), "anchors": rnd(2, 4)} | over
    return losses.distinct_contrastive_loss(args.pop("pooled"), args.pop("anchors"), **args)


def soft(**over):
    args = {"logits": rnd(2, 4, 3), "target": rnd(2, 4, 3)} | over
    return losses.soft_assignment_loss(args.pop("logits"), args.pop("target"), **args)


def agg(**over):
    args = {"x": rnd(2, 4, 5), "logits": rnd(2, 4, 3), "plan": rnd(2, 4, 3) / 3} | over
    return layers.prototype_aggregate(args.pop("x"), args.pop("logits"), args.pop("plan"), **args)


def objective():
    return losses.MinMaxObjective({"task": 1.0, "apart": losses.Term(0.1, "max")})


def bootstrap(**over):
    kw = {"event": EV_NP, "time": TM_NP, "risk": RK_NP, "n_resamples": 5} | over
    return survival.bootstrap_ci(kw.pop("metric", survival.concordance_index), **kw)


# ---------------------------------------------------------------------------------------------
# the table

CASES: list[Case] = [
    # --- top level ---------------------------------------------------------------------------
    Case(
        "set_value_checks", "non-bool", lambda: minmaxfuse.set_value_checks(1), TypeError, "enabled"
    ),
    # --- distributed --------------------------------------------------------------------------
    Case("batch_sizes", "negative", lambda: distributed.batch_sizes(-1), ValueError, "n"),
    Case("batch_sizes", "float", lambda: distributed.batch_sizes(2.0), TypeError, "n"),
    Case(
        "gather_with_grad",
        "0-d",
        lambda: distributed.gather_with_grad(torch.tensor(1.0)),
        ValueError,
        "x",
    ),
    Case("gather_with_grad", "list", lambda: distributed.gather_with_grad([1.0]), TypeError, "x"),
    Case(
        "gather_nograd", "0-d", lambda: distributed.gather_nograd(torch.tensor(1)), ValueError, "x"
    ),
    Case("gather_nograd", "ndarray", lambda: distributed.gather_nograd(np.ones(2)), TypeError, "x"),
    # --- survival: losses ----------------------------------------------------------------------
    Case(
        "cox_ph_loss",
        "(B,1) log_risk",
        lambda: cox(log_risk=torch.zeros(4, 1)),
        ValueError,
        "log_risk",
        r"\(B,\)",
    ),
    Case(
        "cox_ph_loss",
        "int log_risk",
        lambda: cox(log_risk=torch.zeros(4, dtype=torch.long)),
        TypeError,
        "log_risk",
    ),
    Case("cox_ph_loss", "batch mismatch time", lambda: cox(time=TM[:3]), ValueError, "time"),
    Case("cox_ph_loss", "batch mismatch event", lambda: cox(event=EV[:3]), ValueError, "event"),
    Case(
        "cox_ph_loss",
        "nan log_risk",
        lambda: cox(log_risk=with_value(torch.zeros(4), 1, NAN)),
        ValueError,
        "log_risk",
    ),
    Case(
        "cox_ph_loss",
        "inf log_risk",
        lambda: cox(log_risk=with_value(torch.zeros(4), 1, INF)),
        ValueError,
        "log_risk",
    ),
    Case("cox_ph_loss", "inf time", lambda: cox(time=with_value(TM, 0, INF)), ValueError, "time"),
    Case(
        "cox_ph_loss",
        "negative time",
        lambda: cox(time=with_value(TM, 2, -1.0)),
        ValueError,
        "time",
    ),
    Case("cox_ph_loss", "int event", lambda: cox(event=EV.long()), TypeError, "event"),
    Case("cox_ph_loss", "float event", lambda: cox(event=EV.float()), TypeError, "event"),
    Case("cox_ph_loss", "ties", lambda: cox(ties="exact"), ValueError, "ties", "'efron'"),
    Case("cox_ph_loss", "reduction", lambda: cox(reduction="avg"), ValueError, "reduction"),
    Case(
        "cox_ph_loss", "negative weight", lambda: cox(weight=-torch.ones(4)), ValueError, "weight"
    ),
    Case("cox_ph_loss", "weight shape", lambda: cox(weight=torch.ones(3)), ValueError, "weight"),
    Case("cox_ph_loss", "gather", lambda: cox(gather="yes"), TypeError, "gather"),
    Case("CoxPHLoss", "ties", lambda: survival.CoxPHLoss(ties="exact"), ValueError, "ties"),
    Case(
        "CoxPHLoss",
        "reduction",
        lambda: survival.CoxPHLoss(reduction="max"),
        ValueError,
        "reduction",
    ),
    Case(
        "CoxPHLoss",
        "forward event",
        lambda: survival.CoxPHLoss()(torch.zeros(4), TM, EV.int()),
        TypeError,
        "event",
    ),
    Case("nll_surv_loss", "1-d logits", lambda: nll(logits=torch.zeros(4)), ValueError, "logits"),
    Case(
        "nll_surv_loss",
        "float time_bin",
        lambda: nll(time_bin=torch.zeros(4)),
        TypeError,
        "time_bin",
    ),
    Case(
        "nll_surv_loss",
        "time_bin range",
        lambda: nll(time_bin=torch.tensor([0, 1, 3, 0])),
        ValueError,
        "time_bin",
        r"\[0, 3\)",
    ),
    Case(
        "nll_surv_loss",
        "negative time_bin",
        lambda: nll(time_bin=torch.tensor([0, -1, 2, 0])),
        ValueError,
        "time_bin",
    ),
    Case(
        "nll_surv_loss",
        "batch mismatch",
        lambda: nll(time_bin=torch.tensor([0, 1])),
        ValueError,
        "time_bin",
    ),
    Case("nll_surv_loss", "int event", lambda: nll(event=EV.long()), TypeError, "event"),
    Case(
        "nll_surv_loss",
        "nan logits",
        lambda: nll(logits=with_value(torch.zeros(4, 3), 0, NAN)),
        ValueError,
        "logits",
    ),
    Case("nll_surv_loss", "alpha", lambda: nll(alpha=1.5), ValueError, "alpha"),
    Case("nll_surv_loss", "eps", lambda: nll(eps=-1e-7), ValueError, "eps"),
    Case("NLLSurvLoss", "alpha", lambda: survival.NLLSurvLoss(alpha=-0.1), ValueError, "alpha"),
    Case("NLLSurvLoss", "eps", lambda: survival.NLLSurvLoss(eps=0.0), ValueError, "eps"),
    Case(
        "NLLSurvLoss",
        "reduction",
        lambda: survival.NLLSurvLoss(reduction="batchmean"),
        ValueError,
        "reduction",
    ),
    Case("hazards", "3-d", lambda: survival.hazards(torch.zeros(2, 3, 4)), ValueError, "logits"),
    Case(
        "hazards",
        "int",
        lambda: survival.hazards(torch.zeros(2, 3, dtype=torch.long)),
        TypeError,
        "logits",
    ),
    Case(
        "survival_curve",
        "1-d",
        lambda: survival.survival_curve(torch.zeros(3)),
        ValueError,
        "logits",
    ),
    Case(
        "risk_from_logits",
        "not tensor",
        lambda: survival.risk_from_logits([[0.0]]),
        TypeError,
        "logits",
    ),
    # --- survival: labels -----------------------------------------------------------------------
    Case(
        "discretize_time",
        "negative time",
        lambda: survival.discretize_time(with_value(TM, 0, -1.0), EV, n_bins=2),
        ValueError,
        "time",
    ),
    Case(
        "discretize_time",
        "int event",
        lambda: survival.discretize_time(TM, EV.long()),
        TypeError,
        "event",
    ),
    Case(
        "discretize_time",
        "length",
        lambda: survival.discretize_time(TM, EV[:3]),
        ValueError,
        "event",
        "`time`",
    ),
    Case(
        "discretize_time",
        "n_bins 0",
        lambda: survival.discretize_time(TM, EV, n_bins=0),
        ValueError,
        "n_bins",
    ),
    Case(
        "discretize_time",
        "outer",
        lambda: survival.discretize_time(TM, EV, outer="mcat"),
        ValueError,
        "outer",
    ),
    Case(
        "discretize_time",
        "nan time",
        lambda: survival.discretize_time(with_value(TM, 1, NAN), EV, n_bins=2),
        ValueError,
        "time",
    ),
    Case(
        "assign_time_bins",
        "edges order",
        lambda: survival.assign_time_bins(TM, torch.tensor([0.0, 3.0, 2.0])),
        ValueError,
        "edges",
    ),
    Case(
        "assign_time_bins",
        "negative time",
        lambda: survival.assign_time_bins(with_value(TM, 0, -1.0), torch.tensor([-2.0, 9.0])),
        ValueError,
        "time",
    ),
    Case(
        "assign_time_bins",
        "2-d time",
        lambda: survival.assign_time_bins(torch.ones(2, 2), torch.tensor([0.0, 3.0])),
        ValueError,
        "time",
    ),
    # --- survival: metrics ----------------------------------------------------------------------
    Case(
        "concordance_index",
        "length",
        lambda: cidx(survival.concordance_index, time=TM_NP[:3]),
        ValueError,
        "time",
    ),
    Case(
        "concordance_index",
        "nan risk",
        lambda: cidx(survival.concordance_index, risk=with_value(RK, 0, NAN).numpy()),
        ValueError,
        "risk",
    ),
    Case(
        "concordance_index",
        "int event",
        lambda: cidx(survival.concordance_index, event=EV_NP.astype(int)),
        TypeError,
        "event",
    ),
    Case(
        "concordance_index",
        "negative time",
        lambda: cidx(survival.concordance_index, time=-TM_NP),
        ValueError,
        "time",
    ),
    Case(
        "concordance_index",
        "all censored",
        lambda: cidx(survival.concordance_index, event=np.zeros(4, bool)),
        ValueError,
        "event",
    ),
    Case(
        "concordance_index",
        "tied_tol",
        lambda: cidx(survival.concordance_index, tied_tol=-1),
        ValueError,
        "tied_tol",
    ),
    Case(
        "concordance_index_ipcw",
        "tau",
        lambda: cidx(survival.concordance_index_ipcw, tau=NAN),
        ValueError,
        "tau",
    ),
    Case(
        "concordance_index_ipcw",
        "train length",
        lambda: cidx(survival.concordance_index_ipcw, train_event=EV_NP, train_time=TM_NP[:2]),
        ValueError,
        "train_time",
        "`train_event`",
    ),
    Case(
        "cumulative_dynamic_auc",
        "times order",
        lambda: survival.cumulative_dynamic_auc(
            event=EV_NP, time=TM_NP, risk=RK_NP, times=[2.5, 1.5]
        ),
        ValueError,
        "times",
    ),
    Case(
        "brier_score",
        "surv shape",
        lambda: survival.brier_score(
            event=EV_NP, time=TM_NP, surv=np.ones((4, 3)), times=[1.5, 2.5]
        ),
        ValueError,
        "surv",
    ),
    Case(
        "integrated_brier_score",
        "one time",
        lambda: survival.integrated_brier_score(
            event=EV_NP, time=TM_NP, surv=np.ones(4), times=[1.5]
        ),
        ValueError,
        "times",
    ),
    Case(
        "kaplan_meier",
        "reverse",
        lambda: survival.kaplan_meier(event=EV_NP, time=TM_NP, reverse=1),
        TypeError,
        "reverse",
    ),
    Case(
        "kaplan_meier",
        "float event",
        lambda: survival.kaplan_meier(event=EV.float(), time=TM),
        TypeError,
        "event",
    ),
    Case(
        "logrank_test",
        "group shape",
        lambda: survival.logrank_test(event=EV_NP, time=TM_NP, group=np.zeros(3)),
        ValueError,
        "group",
    ),
    Case(
        "logrank_test",
        "one group",
        lambda: survival.logrank_test(event=EV_NP, time=TM_NP, group=np.zeros(4)),
        ValueError,
        "group",
    ),
    Case("bootstrap_ci", "level", lambda: bootstrap(level=95), ValueError, "level"),
    Case(
        "bootstrap_ci", "n_resamples", lambda: bootstrap(n_resamples=0), ValueError, "n_resamples"
    ),
    Case("bootstrap_ci", "metric", lambda: bootstrap(metric="cindex"), TypeError, "metric"),
    Case("bootstrap_ci", "risk length", lambda: bootstrap(risk=RK_NP[:2]), ValueError, "risk"),
    # --- ot -------------------------------------------------------------------------------------
    Case(
        "sinkhorn_uot", "2-d cost", lambda: uot(cost=rnd(4, 3)), ValueError, "cost", r"\(B, N, K\)"
    ),
    Case(
        "sinkhorn_uot",
        "int cost",
        lambda: uot(cost=torch.ones(2, 4, 3, dtype=torch.long)),
        TypeError,
        "cost",
    ),
    Case("sinkhorn_uot", "a batch mismatch", lambda: uot(a=rnd(3, 4)), ValueError, "a"),
    Case("sinkhorn_uot", "b shape", lambda: uot(b=rnd(2, 4)), ValueError, "b"),
    Case("sinkhorn_uot", "float mask", lambda: uot(mask=torch.ones(2, 4)), TypeError, "mask"),
    Case("sinkhorn_uot", "mask shape", lambda: uot(mask=mask(2, 3)), ValueError, "mask"),
    Case(
        "sinkhorn_uot",
        "empty bag",
        lambda: uot(mask=mask(2, 4, empty_rows=[1])),
        ValueError,
        "mask",
        r"\[1\]",
    ),
    Case(
        "sinkhorn_uot",
        "all padding",
        lambda: uot(mask=mask(2, 4, empty_rows=[0, 1])),
        ValueError,
        "mask",
    ),
    Case(
        "sinkhorn_uot",
        "nan cost",
        lambda: uot(cost=with_value(rnd(2, 4, 3), (0, 1, 2), NAN)),
        ValueError,
        "cost",
    ),
    Case(
        "sinkhorn_uot",
        "inf cost",
        lambda: uot(cost=with_value(rnd(2, 4, 3), (1, 0, 0), INF)),
        ValueError,
        "cost",
    ),
    Case(
        "sinkhorn_uot",
        "negative a",
        lambda: uot(a=with_value(rnd(2, 4), (0, 0), -0.1)),
        ValueError,
        "a",
    ),
    Case(
        "sinkhorn_uot", "nan b", lambda: uot(b=with_value(rnd(2, 3), (0, 0), NAN)), ValueError, "b"
    ),
    Case("sinkhorn_uot", "negative reg", lambda: uot(reg=-0.1), ValueError, "reg"),
    Case("sinkhorn_uot", "zero reg", lambda: uot(reg=0.0), ValueError, "reg"),
    Case("sinkhorn_uot", "negative reg_m", lambda: uot(reg_m=-1.0), ValueError, "reg_m"),
    Case("sinkhorn_uot", "reg_m triple", lambda: uot(reg_m=(1.0, 1.0, 1.0)), ValueError, "reg_m"),
    Case("sinkhorn_uot", "grad", lambda: uot(grad="autodiff"), ValueError, "grad", "'implicit'"),
    Case("sinkhorn_uot", "sink_mass 1", lambda: uot(sink_mass=1.0), ValueError, "sink_mass"),
    Case("sinkhorn_uot", "max_iter 0", lambda: uot(max_iter=0), ValueError, "max_iter"),
    Case("sinkhorn_uot", "tol", lambda: uot(tol=-1.0), ValueError, "tol"),
    Case(
        "partial_uot",
        "rho 0",
        lambda: ot.partial_uot(rnd(2, 4, 3), 0.0),
        ValueError,
        "rho",
        r"\(0\.0, 1\.0\]",
    ),
    Case("partial_uot", "rho > 1", lambda: ot.partial_uot(rnd(2, 4, 3), 1.5), ValueError, "rho"),
    Case(
        "partial_uot",
        "rho tensor shape",
        lambda: ot.partial_uot(rnd(2, 4, 3), torch.full((3,), 0.5)),
        ValueError,
        "rho",
    ),
    Case(
        "partial_uot",
        "rho tensor value",
        lambda: ot.partial_uot(rnd(2, 4, 3), torch.tensor([0.5, 0.0])),
        ValueError,
        "rho",
    ),
    Case(
        "partial_uot",
        "reg_m_cols",
        lambda: ot.partial_uot(rnd(2, 4, 3), 0.5, reg_m_cols=0),
        ValueError,
        "reg_m_cols",
    ),
    Case(
        "partial_uot",
        "nan cost valid",
        lambda: ot.partial_uot(with_value(rnd(2, 4, 3), (1, 1, 1), NAN), 0.5),
        ValueError,
        "cost",
    ),
    Case("semantic_uot", "2-d cost", lambda: sem(cost=rnd(4, 3)), ValueError, "cost"),
    Case("semantic_uot", "2-d features", lambda: sem(features=rnd(2, 4)), ValueError, "features"),
    Case("semantic_uot", "features N", lambda: sem(features=rnd(2, 5, 5)), ValueError, "features"),
    Case(
        "semantic_uot",
        "features dtype",
        lambda: sem(features=rnd(2, 4, 5, dtype=torch.float64)),
        TypeError,
        "features",
    ),
    Case(
        "semantic_uot",
        "nan features valid",
        lambda: sem(features=with_value(rnd(2, 4, 5), (0, 1, 2), NAN)),
        ValueError,
        "features",
    ),
    Case("semantic_uot", "float mask", lambda: sem(mask=torch.ones(2, 4)), TypeError, "mask"),
    Case("semantic_uot", "rho 0", lambda: sem(rho=0.0), ValueError, "rho"),
    Case("semantic_uot", "semantic < 0", lambda: sem(semantic=-0.1), ValueError, "semantic"),
    Case("semantic_uot", "max_outer 0", lambda: sem(max_outer=0), ValueError, "max_outer"),
    Case("semantic_uot", "outer_tol", lambda: sem(outer_tol=-1.0), ValueError, "outer_tol"),
    Case("semantic_uot", "grad", lambda: sem(grad="envelope"), ValueError, "grad", "'detach'"),
    Case("semantic_uot", "reg", lambda: sem(reg=0.0), ValueError, "reg"),
    # --- layers ---------------------------------------------------------------------------------
    Case("PrototypeUOTAlign", "dim 0", lambda: layers.PrototypeUOTAlign(0), ValueError, "dim"),
    Case(
        "PrototypeUOTAlign",
        "temperature",
        lambda: align(temperature=-0.5),
        ValueError,
        "temperature",
    ),
    Case("PrototypeUOTAlign", "reg", lambda: align(reg=-0.1), ValueError, "reg"),
    Case("PrototypeUOTAlign", "semantic", lambda: align(semantic=-0.1), ValueError, "semantic"),
    Case("PrototypeUOTAlign", "heads 0", lambda: align(heads=0), ValueError, "heads"),
    Case(
        "PrototypeUOTAlign",
        "semantic_max_iter",
        lambda: align(semantic_max_iter=0),
        ValueError,
        "semantic_max_iter",
    ),
    Case("PrototypeUOTAlign", "reg_m", lambda: align(reg_m=0.0), ValueError, "reg_m"),
    Case("PrototypeUOTAlign", "mass 0", lambda: align(mass=0.0), ValueError, "mass"),
    Case("PrototypeUOTAlign", "mass > 1", lambda: align(mass=1.01), ValueError, "mass"),
    Case("PrototypeUOTAlign", "mix", lambda: align(mix=1.5), ValueError, "mix"),
    Case(
        "PrototypeUOTAlign",
        "plan_grad",
        lambda: align(plan_grad="envelope"),
        ValueError,
        "plan_grad",
    ),
    Case(
        "PrototypeUOTAlign",
        "aggregation",
        lambda: align(aggregation="max"),
        ValueError,
        "aggregation",
    ),
    Case("PrototypeUOTAlign", "missing", lambda: align(missing="zero"), ValueError, "missing"),
    Case("PrototypeUOTAlign", "joint", lambda: align(joint=1), TypeError, "joint"),
    Case(
        "PrototypeUOTAlign",
        "modality_weights count",
        lambda: align(modality_weights=[1.0]),
        ValueError,
        "modality_weights",
    ),
    Case(
        "PrototypeUOTAlign",
        "modality_weights sign",
        lambda: align(modality_weights=[1.0, -1.0]),
        ValueError,
        "modality_weights",
    ),
    Case(
        "PrototypeUOTAlign",
        "modality count",
        lambda: align_call([rnd(2, 5, 4)]),
        ValueError,
        "tokens",
    ),
    Case(
        "PrototypeUOTAlign",
        "tensor not list",
        lambda: align_call(rnd(2, 5, 4)),
        TypeError,
        "tokens",
    ),
    Case(
        "PrototypeUOTAlign",
        "rank",
        lambda: align_call([rnd(2, 5, 4), rnd(3, 4)]),
        ValueError,
        "tokens[1]",
    ),
    Case(
        "PrototypeUOTAlign",
        "batch mismatch",
        lambda: align_call([rnd(2, 5, 4), rnd(3, 3, 4)]),
        ValueError,
        "tokens[1]",
        "B = 2",
    ),
    Case(
        "PrototypeUOTAlign",
        "D mismatch",
        lambda: align_call([rnd(2, 5, 4), rnd(2, 3, 5)]),
        ValueError,
        "tokens[1]",
    ),
    Case(
        "PrototypeUOTAlign",
        "dtype mismatch",
        lambda: align_call([rnd(2, 5, 4), rnd(2, 3, 4, dtype=torch.float64)]),
        TypeError,
        "tokens[1]",
        r"torch\.float32.*got torch\.float64",
    ),
    Case(
        "PrototypeUOTAlign",
        "float64 tokens, float32 layer",
        lambda: align_call([rnd(2, 5, 4, dtype=torch.float64), rnd(2, 3, 4, dtype=torch.float64)]),
        TypeError,
        "tokens[0]",
        r"\.to\(torch\.float64\)",
    ),
    Case(
        "PrototypeUOTAlign",
        "float mask",
        lambda: align_call(masks=[torch.ones(2, 5), None]),
        TypeError,
        "masks[0]",
    ),
    Case("PrototypeUOTAlign", "masks count", lambda: align_call(masks=[None]), ValueError, "masks"),
    Case(
        "PrototypeUOTAlign",
        "empty bag",
        lambda: align_call(masks=[mask(2, 5, empty_rows=[1]), None]),
        ValueError,
        "tokens[0]",
    ),
    Case(
        "PrototypeUOTAlign",
        "all padding",
        lambda: align_call(masks=[mask(2, 5, empty_rows=[0, 1]), None]),
        ValueError,
        "tokens[0]",
    ),
    Case(
        "PrototypeUOTAlign",
        "nan valid",
        lambda: align_call([with_value(rnd(2, 5, 4), (0, 0, 0), NAN), rnd(2, 3, 4)]),
        ValueError,
        "tokens[0]",
    ),
    Case("PrototypeUOTAlign", "rho 0", lambda: align_call(rho=0.0), ValueError, "rho"),
    Case("PrototypeUOTAlign", "rho > 1", lambda: align_call(rho=2.0), ValueError, "rho"),
    Case(
        "prototype_aggregate",
        "logits batch",
        lambda: agg(logits=rnd(3, 4, 3)),
        ValueError,
        "logits",
    ),
    Case("prototype_aggregate", "plan shape", lambda: agg(plan=rnd(2, 4, 2)), ValueError, "plan"),
    Case(
        "prototype_aggregate", "float mask", lambda: agg(mask=torch.ones(2, 4)), TypeError, "mask"
    ),
    Case("prototype_aggregate", "mix", lambda: agg(mix=-0.1), ValueError, "mix"),
    Case(
        "prototype_aggregate",
        "nan x valid",
        lambda: agg(x=with_value(rnd(2, 4, 5), 0, NAN)),
        ValueError,
        "x",
    ),
    Case(
        "prototype_aggregate",
        "negative plan",
        lambda: agg(plan=with_value(rnd(2, 4, 3), (0, 0, 0), -1.0)),
        ValueError,
        "plan",
    ),
    Case(
        "ModalityAnchors",
        "heads",
        lambda: layers.ModalityAnchors(2, 6, heads=4),
        ValueError,
        "heads",
    ),
    Case(
        "ModalityAnchors",
        "dropout",
        lambda: layers.ModalityAnchors(2, 4, dropout=1.0),
        ValueError,
        "dropout",
    ),
    Case(
        "ModalityAnchors",
        "num_modalities",
        lambda: layers.ModalityAnchors(0, 4),
        ValueError,
        "num_modalities",
    ),
    Case(
        "ModalityAnchors",
        "count",
        lambda: anchors_call([rnd(2, 3, 4)]),
        ValueError,
        "prototype_tokens",
    ),
    Case(
        "ModalityAnchors",
        "D mismatch",
        lambda: anchors_call([rnd(2, 3, 4), rnd(2, 3, 5)]),
        ValueError,
        "prototype_tokens[1]",
    ),
    Case(
        "ModalityAnchors",
        "batch mismatch",
        lambda: anchors_call([rnd(2, 3, 4), rnd(3, 3, 4)]),
        ValueError,
        "prototype_tokens[1]",
    ),
    Case(
        "ModalityAnchors",
        "dtype mismatch",
        lambda: anchors_call([rnd(2, 3, 4), rnd(2, 3, 4, dtype=torch.float64)]),
        TypeError,
        "prototype_tokens[1]",
    ),
    Case(
        "ModalityAnchors",
        "nan",
        lambda: anchors_call([rnd(2, 3, 4), with_value(rnd(2, 3, 4), 0, NAN)]),
        ValueError,
        "prototype_tokens[1]",
    ),
    Case("GradReverse", "scale", lambda: layers.GradReverse(-1.0), ValueError, "scale"),
    Case("grad_reverse", "not tensor", lambda: layers.grad_reverse(1.0), TypeError, "x"),
    Case(
        "grad_reverse",
        "scale nan",
        lambda: layers.grad_reverse(rnd(2), scale=NAN),
        ValueError,
        "scale",
    ),
    # --- losses ---------------------------------------------------------------------------------
    Case(
        "sinkhorn_consistency_loss",
        "3-d logits",
        lambda: skc(logits=rnd(2, 4, 5)),
        ValueError,
        "logits",
    ),
    Case(
        "sinkhorn_consistency_loss",
        "one view",
        lambda: skc(logits=rnd(1, 3, 4, 5)),
        ValueError,
        "logits",
    ),
    Case(
        "sinkhorn_consistency_loss",
        "nan logits valid",
        lambda: skc(logits=with_value(rnd(2, 3, 4, 5), (0, 1, 2, 3), NAN)),
        ValueError,
        "logits",
    ),
    Case(
        "sinkhorn_consistency_loss",
        "mask shape",
        lambda: skc(mask=mask(1, 3)[0]),
        ValueError,
        "mask",
    ),
    Case(
        "sinkhorn_consistency_loss",
        "empty mask",
        lambda: skc(mask=torch.zeros(4, dtype=torch.bool)),
        ValueError,
        "mask",
    ),
    Case(
        "sinkhorn_consistency_loss",
        "features shape",
        lambda: skc(features=rnd(2, 3, 5, 2)),
        ValueError,
        "features",
    ),
    Case(
        "sinkhorn_consistency_loss",
        "semantic no features",
        lambda: skc(semantic=0.1),
        ValueError,
        "features",
    ),
    Case("sinkhorn_consistency_loss", "rho 0", lambda: skc(rho=0.0), ValueError, "rho"),
    Case(
        "sinkhorn_consistency_loss",
        "target_grad",
        lambda: skc(target_grad="unroll"),
        ValueError,
        "target_grad",
    ),
    Case(
        "sinkhorn_consistency_loss",
        "reduction",
        lambda: skc(reduction="max"),
        ValueError,
        "reduction",
    ),
    Case(
        "SinkhornConsistency", "rho > 1", lambda: losses.SinkhornConsistency(1.5), ValueError, "rho"
    ),
    Case(
        "SinkhornConsistency",
        "semantic",
        lambda: losses.SinkhornConsistency(semantic=-1.0),
        ValueError,
        "semantic",
    ),
    Case(
        "SinkhornConsistency", "reg", lambda: losses.SinkhornConsistency(reg=0.0), ValueError, "reg"
    ),
    Case(
        "distinct_contrastive_loss",
        "2-d pooled",
        lambda: contrast(pooled=rnd(3, 4)),
        ValueError,
        "pooled",
    ),
    Case(
        "distinct_contrastive_loss",
        "modality count",
        lambda: contrast(anchors=rnd(3, 4)),
        ValueError,
        "anchors",
    ),
    Case(
        "distinct_contrastive_loss",
        "float mask",
        lambda: contrast(mask=torch.ones(3, 2)),
        TypeError,
        "mask",
    ),
    Case(
        "distinct_contrastive_loss",
        "mask batch",
        lambda: contrast(mask=mask(2, 2)),
        ValueError,
        "mask",
    ),
    Case(
        "distinct_contrastive_loss",
        "nan valid",
        lambda: contrast(pooled=with_value(rnd(3, 2, 4), (1, 1, 0), NAN)),
        ValueError,
        "pooled",
    ),
    Case(
        "distinct_contrastive_loss",
        "inf anchors",
        lambda: contrast(anchors=with_value(rnd(2, 4), (0, 0), INF)),
        ValueError,
        "anchors",
    ),
    Case(
        "distinct_contrastive_loss",
        "temperature",
        lambda: contrast(temperature=-0.1),
        ValueError,
        "temperature",
    ),
    Case(
        "distinct_contrastive_loss",
        "negatives",
        lambda: contrast(negatives="all"),
        ValueError,
        "negatives",
        "'anchors'",
    ),
    Case(
        "distinct_contrastive_loss",
        "reduction",
        lambda: contrast(reduction="mean_batch"),
        ValueError,
        "reduction",
    ),
    Case(
        "distinct_contrastive_loss",
        "gather type",
        lambda: contrast(negatives="batch", gather=1),
        TypeError,
        "gather",
    ),
    Case(
        "distinct_contrastive_loss",
        "gather without batch negatives",
        lambda: contrast(gather=True),
        ValueError,
        "gather",
        "negatives='anchors'",
    ),
    Case(
        "DistinctContrastive",
        "gather without batch negatives",
        lambda: losses.DistinctContrastive(gather=True),
        ValueError,
        "gather",
    ),
    Case(
        "DistinctContrastive",
        "temperature",
        lambda: losses.DistinctContrastive(0.0),
        ValueError,
        "temperature",
    ),
    Case(
        "DistinctContrastive",
        "negatives",
        lambda: losses.DistinctContrastive(negatives="x"),
        ValueError,
        "negatives",
    ),
    Case(
        "DistinctContrastive", "dim", lambda: losses.DistinctContrastive(dim=0), ValueError, "dim"
    ),
    Case(
        "DistinctContrastive",
        "symmetric",
        lambda: losses.DistinctContrastive(symmetric="no"),
        TypeError,
        "symmetric",
    ),
    Case(
        "DistinctContrastive",
        "forward D",
        lambda: losses.DistinctContrastive(dim=8)(rnd(3, 2, 4), rnd(2, 4)),
        ValueError,
        "pooled",
    ),
    Case(
        "soft_assignment_loss",
        "target shape",
        lambda: soft(target=rnd(2, 4, 2)),
        ValueError,
        "target",
    ),
    Case(
        "soft_assignment_loss", "float mask", lambda: soft(mask=torch.ones(2, 4)), TypeError, "mask"
    ),
    Case(
        "soft_assignment_loss",
        "nan logits",
        lambda: soft(logits=with_value(rnd(2, 4, 3), (0, 0, 0), NAN)),
        ValueError,
        "logits",
    ),
    Case("soft_assignment_loss", "min_mass", lambda: soft(min_mass=-1.0), ValueError, "min_mass"),
    Case(
        "soft_assignment_loss",
        "negative target",
        lambda: soft(target=with_value(rnd(2, 4, 3), (0, 0, 0), -1.0)),
        ValueError,
        "target",
    ),
    Case("MinMaxObjective", "empty", lambda: losses.MinMaxObjective({}), ValueError, "terms"),
    Case(
        "MinMaxObjective",
        "negative weight",
        lambda: losses.MinMaxObjective({"a": -1.0}),
        ValueError,
        "terms['a'].weight",
    ),
    Case(
        "MinMaxObjective",
        "unknown term",
        lambda: objective()(task=torch.tensor(1.0), other=torch.tensor(1.0)),
        ValueError,
        "terms",
        "other",
    ),
    Case(
        "MinMaxObjective",
        "non-scalar",
        lambda: objective()(task=torch.ones(3), apart=None),
        ValueError,
        "task",
    ),
    Case(
        "Term",
        "mode",
        lambda: losses.MinMaxObjective({"a": losses.Term(1.0, "maximise")}),
        ValueError,
        "terms['a'].mode",
        "'max'",
    ),
    Case(
        "Term",
        "weight type",
        lambda: losses.MinMaxObjective({"a": losses.Term("1")}),
        TypeError,
        "terms['a'].weight",
    ),
    Case("Constant", "nan", lambda: losses.Constant(NAN), ValueError, "value"),
    Case("Constant", "step", lambda: losses.Constant(1.0)(-1), ValueError, "step"),
    Case("Linear", "steps", lambda: losses.Linear(steps=0), ValueError, "steps"),
    Case("Linear", "delay", lambda: losses.Linear(delay=-1), ValueError, "delay"),
    Case("Cosine", "start", lambda: losses.Cosine(start=INF), ValueError, "start"),
    Case("Cosine", "step type", lambda: losses.Cosine()(1.5), TypeError, "step"),
    Case("SigmoidRamp", "steps", lambda: losses.SigmoidRamp(steps=1.5), TypeError, "steps"),
    Case(
        "mass_ramp",
        "sharpness",
        lambda: losses.mass_ramp(0.5, sharpness=-1.0),
        ValueError,
        "sharpness",
    ),
    Case("mass_ramp", "progress", lambda: losses.mass_ramp(NAN), ValueError, "progress"),
    # --- diagnostics ----------------------------------------------------------------------------
    Case(
        "alignment", "shape", lambda: diagnostics.alignment(rnd(4, 3), rnd(5, 3)), ValueError, "y"
    ),
    Case(
        "alignment",
        "alpha",
        lambda: diagnostics.alignment(rnd(4, 3), rnd(4, 3), alpha=0),
        ValueError,
        "alpha",
    ),
    Case(
        "alignment",
        "nan",
        lambda: diagnostics.alignment(with_value(rnd(4, 3), 0, NAN), rnd(4, 3)),
        ValueError,
        "x",
    ),
    Case("effective_rank", "rank", lambda: diagnostics.effective_rank(rnd(4)), ValueError, "x"),
    Case(
        "effective_rank",
        "float mask",
        lambda: diagnostics.effective_rank(rnd(4, 3), mask=torch.ones(4)),
        TypeError,
        "mask",
    ),
    Case(
        "alignment",
        "no rows",
        lambda: diagnostics.alignment(rnd(0, 3), rnd(0, 3)),
        ValueError,
        "x",
    ),
    Case(
        "effective_rank",
        "all rows masked",
        lambda: diagnostics.effective_rank(rnd(4, 3), mask=torch.zeros(4, dtype=torch.bool)),
        ValueError,
        "x",
    ),
    Case(
        "modality_gap",
        "no rows",
        lambda: diagnostics.modality_gap(rnd(0, 3), rnd(2, 3)),
        ValueError,
        "x",
    ),
    Case(
        "modality_gap", "D", lambda: diagnostics.modality_gap(rnd(4, 3), rnd(4, 2)), ValueError, "y"
    ),
    Case("uniformity", "t", lambda: diagnostics.uniformity(rnd(4, 3), t=-1.0), ValueError, "t"),
    Case(
        "uniformity",
        "one valid row",
        lambda: diagnostics.uniformity(rnd(4, 3), mask=torch.tensor([True, False, False, False])),
        ValueError,
        "x",
    ),
    Case(
        "prototype_usage_entropy",
        "rank",
        lambda: diagnostics.prototype_usage_entropy(rnd(4, 3)),
        ValueError,
        "plan",
    ),
    Case(
        "prototype_usage_entropy",
        "negative plan",
        lambda: diagnostics.prototype_usage_entropy(with_value(rnd(2, 4, 3), (0, 0, 0), -1.0)),
        ValueError,
        "plan",
    ),
    Case(
        "token_transport_mass",
        "float mask",
        lambda: diagnostics.token_transport_mass(rnd(2, 4, 3), mask=torch.ones(2, 4)),
        TypeError,
        "mask",
    ),
    Case(
        "token_transport_mass",
        "negative plan",
        lambda: diagnostics.token_transport_mass(with_value(rnd(2, 4, 3), (0, 0, 0), -1.0)),
        ValueError,
        "plan",
    ),
    Case(
        "token_transport_mass",
        "nan",
        lambda: diagnostics.token_transport_mass(with_value(rnd(2, 4, 3), (0, 0, 0), NAN)),
        ValueError,
        "plan",
    ),
    # --- data -----------------------------------------------------------------------------------
    Case("pad_bags", "empty list", lambda: data.pad_bags([]), TypeError, "bags"),
    Case("pad_bags", "1-d bag", lambda: data.pad_bags([rnd(3, 2), rnd(3)]), ValueError, "bags[1]"),
    Case(
        "pad_bags",
        "D mismatch",
        lambda: data.pad_bags([rnd(3, 2), rnd(3, 4)]),
        ValueError,
        "bags[1]",
    ),
    Case("pad_bags", "length", lambda: data.pad_bags([rnd(3, 2)], length=2), ValueError, "length"),
    Case("sample_bag", "size", lambda: data.sample_bag(rnd(5, 2), 0), ValueError, "size"),
    Case("sample_bag", "rank", lambda: data.sample_bag(rnd(2, 5, 2), 3), ValueError, "bag"),
    Case(
        "sample_bags",
        "float mask",
        lambda: data.sample_bags(rnd(2, 5, 3), 2, mask=torch.ones(2, 5)),
        TypeError,
        "mask",
    ),
    Case("sample_bags", "2-d tensor", lambda: data.sample_bags(rnd(5, 3), 2), ValueError, "bags"),
    Case(
        "make_synthetic_cohort",
        "num_patients",
        lambda: data.make_synthetic_cohort(1),
        ValueError,
        "num_patients",
    ),
    Case(
        "make_synthetic_cohort",
        "censoring",
        lambda: data.make_synthetic_cohort(8, censoring=1.0),
        ValueError,
        "censoring",
    ),
    Case(
        "make_synthetic_cohort",
        "kinds",
        lambda: data.make_synthetic_cohort(8, kinds=("mixture", "grid")),
        ValueError,
        "kinds[1]",
    ),
    Case(
        "make_synthetic_cohort",
        "dtype",
        lambda: data.make_synthetic_cohort(8, dtype=torch.int64),
        TypeError,
        "dtype",
    ),
    # FeatureTokenizer
    Case(
        "FeatureTokenizer", "F 0", lambda: layers.FeatureTokenizer(0, 4), ValueError, "num_features"
    ),
    Case("FeatureTokenizer", "dim 0", lambda: layers.FeatureTokenizer(3, 0), ValueError, "dim"),
    Case(
        "FeatureTokenizer", "bias", lambda: layers.FeatureTokenizer(3, 4, bias=1), TypeError, "bias"
    ),
    Case(
        "FeatureTokenizer",
        "missing",
        lambda: layers.FeatureTokenizer(3, 4, missing="mean"),
        ValueError,
        "missing",
    ),
    Case(
        "FeatureTokenizer",
        "rank",
        lambda: layers.FeatureTokenizer(3, 4)(rnd(2, 3, 1)),
        ValueError,
        "x",
    ),
    Case(
        "FeatureTokenizer",
        "F mismatch",
        lambda: layers.FeatureTokenizer(3, 4)(rnd(2, 4)),
        ValueError,
        "x",
        "F = num_features = 3",
    ),
    Case(
        "FeatureTokenizer",
        "int input",
        lambda: layers.FeatureTokenizer(3, 4)(torch.ones(2, 3, dtype=torch.long)),
        TypeError,
        "x",
    ),
    Case(
        "FeatureTokenizer",
        "float64 input, float32 layer",
        lambda: layers.FeatureTokenizer(3, 4)(rnd(2, 3, dtype=torch.float64)),
        TypeError,
        "x",
    ),
    Case(
        "FeatureTokenizer",
        "NaN without mask",
        lambda: layers.FeatureTokenizer(3, 4)(with_value(rnd(2, 3), (0, 1), NAN)),
        ValueError,
        "x",
    ),
    Case(
        "FeatureTokenizer",
        "NaN in an observed entry",
        lambda: layers.FeatureTokenizer(3, 4)(
            with_value(rnd(2, 3), (0, 1), NAN), with_value(mask(2, 3), (0, 2), False)
        ),
        ValueError,
        "x",
    ),
    Case(
        "FeatureTokenizer",
        "mask shape",
        lambda: layers.FeatureTokenizer(3, 4)(rnd(2, 3), mask(2, 4)),
        ValueError,
        "mask",
    ),
    Case(
        "FeatureTokenizer",
        "float mask",
        lambda: layers.FeatureTokenizer(3, 4)(rnd(2, 3), torch.ones(2, 3)),
        TypeError,
        "mask",
    ),
]

# --- cases from the public-API fuzz run: strict flags and scalars, ranges, named errors --------
CASES.extend(
    [
        # non-bool flags
        Case("sinkhorn_uot", "warn str", lambda: uot(warn="yes"), TypeError, "warn"),
        Case(
            "alignment",
            "normalize int",
            lambda: diagnostics.alignment(rnd(4, 3), rnd(4, 3), normalize=1),
            TypeError,
            "normalize",
        ),
        Case(
            "modality_gap",
            "normalize str",
            lambda: diagnostics.modality_gap(rnd(4, 3), rnd(4, 3), normalize="no"),
            TypeError,
            "normalize",
        ),
        Case(
            "effective_rank",
            "center str",
            lambda: diagnostics.effective_rank(rnd(4, 3), center="yes"),
            TypeError,
            "center",
        ),
        Case(
            "prototype_usage_entropy",
            "normalize int",
            lambda: diagnostics.prototype_usage_entropy(rnd(2, 4, 3), normalize=0),
            TypeError,
            "normalize",
        ),
        Case(
            "token_transport_mass",
            "relative str",
            lambda: diagnostics.token_transport_mass(rnd(2, 4, 3), relative="yes"),
            TypeError,
            "relative",
        ),
        Case(
            "concordance_index",
            "return_counts str",
            lambda: cidx(survival.concordance_index, return_counts="yes"),
            TypeError,
            "return_counts",
        ),
        Case(
            "concordance_index_ipcw",
            "return_counts int",
            lambda: cidx(survival.concordance_index_ipcw, return_counts=1),
            TypeError,
            "return_counts",
        ),
        Case(
            "prototype_aggregate", "normalize", lambda: agg(normalize="x"), TypeError, "normalize"
        ),
        Case(
            "PrototypeUOTAlign",
            "allow_missing",
            lambda: align(allow_missing=1),
            TypeError,
            "allow_missing",
        ),
        Case("sinkhorn_uot", "max_iter bool", lambda: uot(max_iter=True), TypeError, "max_iter"),
        # schedules and the objective
        Case(
            "MinMaxObjective",
            "ramp to negative",
            lambda: losses.MinMaxObjective({"a": losses.Linear(1.0, -1.0, steps=10)}),
            ValueError,
            "end",
        ),
        Case("Cosine", "negative end", lambda: losses.Cosine(0.0, -2.0), ValueError, "end"),
        Case("Constant", "negative", lambda: losses.Constant(-1.0), ValueError, "value"),
        Case(
            "MinMaxObjective",
            "negative extra-state step",
            lambda: objective().set_extra_state({"step": -5}),
            ValueError,
            "state",
        ),
        Case(
            "MinMaxObjective",
            "curricula list",
            lambda: losses.MinMaxObjective({"a": 1.0}, curricula=[1, 2]),
            TypeError,
            "curricula",
        ),
        Case(
            "MinMaxObjective",
            "bool term",
            lambda: objective()(task=torch.tensor(True), apart=None),
            TypeError,
            "task",
        ),
        Case(
            "MinMaxObjective",
            "complex term",
            lambda: objective()(task=torch.tensor(1 + 1j), apart=None),
            TypeError,
            "task",
        ),
        Case(
            "MinMaxObjective",
            "terms on two devices",
            lambda: objective()(task=torch.tensor(1.0), apart=torch.tensor(1.0, device="meta")),
            ValueError,
            "apart",
        ),
        Case(
            "mass_ramp", "start > 1", lambda: losses.mass_ramp(0.5, start=1.5), ValueError, "start"
        ),
        Case(
            "mass_ramp", "start < 0", lambda: losses.mass_ramp(0.5, start=-0.1), ValueError, "start"
        ),
        # K = 0, empty and malformed containers
        Case(
            "soft_assignment_loss",
            "K = 0",
            lambda: soft(logits=rnd(2, 4, 0), target=rnd(2, 4, 0)),
            ValueError,
            "logits",
        ),
        Case(
            "prototype_usage_entropy",
            "K = 0",
            lambda: diagnostics.prototype_usage_entropy(rnd(2, 4, 0)),
            ValueError,
            "plan",
        ),
        Case(
            "PrototypeUOTAlign",
            "modality_weights str",
            lambda: align(modality_weights="ab"),
            TypeError,
            "modality_weights",
        ),
        Case(
            "PrototypeUOTAlign",
            "modality_weights generator",
            lambda: align(modality_weights=(w for w in (1.0, 1.0))),
            TypeError,
            "modality_weights",
        ),
        Case(
            "PrototypeUOTAlign",
            "modality_weights None entry",
            lambda: align(modality_weights=[1.0, None]),
            TypeError,
            "modality_weights[1]",
        ),
        Case(
            "PrototypeUOTAlign",
            "learned without allow_missing",
            lambda: align(missing="learned"),
            ValueError,
            "missing",
            "allow_missing=True",
        ),
        Case(
            "PrototypeUOTAlign",
            "empty bag hint",
            lambda: align_call(masks=[mask(2, 5, empty_rows=[1]), None]),
            ValueError,
            "tokens[0]",
            "allow_missing=True",
        ),
        # survival ranges and labels
        Case(
            "assign_time_bins",
            "repeated -inf edges",
            lambda: survival.assign_time_bins(TM_NP, np.array([-INF, -INF, 2.0, INF])),
            ValueError,
            "edges",
        ),
        Case(
            "assign_time_bins",
            "string edges",
            lambda: survival.assign_time_bins(TM_NP, ["a", "b"]),
            TypeError,
            "edges",
        ),
        Case(
            "assign_time_bins",
            "complex edges",
            lambda: survival.assign_time_bins(TM, [1 + 1j, 2.0]),
            TypeError,
            "edges",
        ),
        Case(
            "discretize_time",
            "data edges with eps 0",
            lambda: survival.discretize_time(TM, EV, n_bins=2, outer="data", eps=0),
            ValueError,
            "eps",
        ),
        Case(
            "brier_score",
            "surv above 1",
            lambda: survival.brier_score(
                event=EV_NP, time=TM_NP, surv=np.full(4, 1.5), times=[2.5]
            ),
            ValueError,
            "surv",
        ),
        Case(
            "brier_score",
            "empty training set",
            lambda: survival.brier_score(
                event=EV_NP,
                time=TM_NP,
                surv=np.full(4, 0.5),
                times=[2.5],
                train_event=np.zeros(0, bool),
                train_time=np.zeros(0),
            ),
            ValueError,
            "train_time",
        ),
        Case(
            "logrank_test",
            "nan group",
            lambda: survival.logrank_test(
                event=EV_NP, time=TM_NP, group=np.array([0.0, NAN, 1.0, 1.0])
            ),
            ValueError,
            "group",
        ),
        Case("bootstrap_ci", "seed str", lambda: bootstrap(seed="a"), TypeError, "seed"),
        Case("bootstrap_ci", "seed negative", lambda: bootstrap(seed=-1), ValueError, "seed"),
        Case(
            "hazards",
            "nan logits",
            lambda: survival.hazards(with_value(torch.zeros(2, 3), (0, 1), NAN)),
            ValueError,
            "logits",
        ),
        Case(
            "survival_curve",
            "nan logits",
            lambda: survival.survival_curve(with_value(torch.zeros(2, 3), (0, 1), NAN)),
            ValueError,
            "logits",
        ),
        Case(
            "risk_from_logits",
            "nan logits",
            lambda: survival.risk_from_logits(with_value(torch.zeros(2, 3), (0, 1), NAN)),
            ValueError,
            "logits",
        ),
        # ot: costs whose plan is not representable
        Case(
            "sinkhorn_uot",
            "cost 3e38 soft rows",
            lambda: uot(cost=torch.full((1, 3, 2), 3e38)),
            ValueError,
            "cost",
        ),
        Case(
            "sinkhorn_uot",
            "cost -1e30 soft rows",
            lambda: uot(cost=torch.full((1, 3, 2), -1e30)),
            ValueError,
            "cost",
        ),
        # mixed dtypes
        Case(
            "prototype_aggregate",
            "float64 x, float32 logits",
            lambda: agg(x=rnd(2, 4, 5, dtype=torch.float64)),
            TypeError,
            "logits",
        ),
        Case(
            "DistinctContrastive",
            "float64 pooled, float32 head",
            lambda: losses.DistinctContrastive(dim=4)(rnd(3, 2, 4, dtype=torch.float64), rnd(2, 4)),
            TypeError,
            "pooled",
        ),
        # data
        Case(
            "sample_bag",
            "generator int",
            lambda: data.sample_bag(rnd(5, 2), 3, generator=5),
            TypeError,
            "generator",
        ),
        Case(
            "sample_bags",
            "generator int",
            lambda: data.sample_bags([rnd(5, 2)], 3, generator=5),
            TypeError,
            "generator",
        ),
        Case(
            "make_synthetic_cohort",
            "bag_sizes int",
            lambda: data.make_synthetic_cohort(8, bag_sizes=5),
            TypeError,
            "bag_sizes",
        ),
        Case(
            "make_synthetic_cohort",
            "seed 2**64",
            lambda: data.make_synthetic_cohort(8, seed=2**64),
            ValueError,
            "seed",
        ),
        # meta tensors where values must be read
        Case(
            "sinkhorn_uot",
            "meta cost",
            lambda: uot(cost=torch.rand(2, 4, 3, device="meta")),
            ValueError,
            "cost",
            "meta device",
        ),
        Case(
            "discretize_time",
            "meta time",
            lambda: survival.discretize_time(TM.to("meta"), EV.to("meta"), n_bins=2),
            ValueError,
            "time",
            "meta device",
        ),
    ]
)


def _params():
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        out.append(pytest.param(c, id=f"{c.target}-{c.id}", marks=marks))
    return out


@pytest.mark.parametrize("case", _params())
def test_bad_input_raises_named_error(case: Case):
    with pytest.raises(case.exc) as info:
        case.call()
    msg = str(info.value)
    assert f"`{case.arg}`" in msg, f"message does not name `{case.arg}`: {msg!r}"
    assert re.search(r"\bgot\b", msg), f"message does not show the actual value: {msg!r}"
    if case.match:
        assert re.search(case.match, msg), f"{case.match!r} not in {msg!r}"


def test_every_public_callable_is_covered():
    names = set(public_callables())
    covered = {c.target for c in CASES}
    missing = names - covered - set(EXCLUDED)
    assert not missing, f"public callables without a bad-input case or exclusion: {missing}"
    assert not covered - names, f"table names that are not public: {covered - names}"
    assert not set(EXCLUDED) - names, f"stale exclusions: {set(EXCLUDED) - names}"
    assert not covered & set(EXCLUDED), "a name is both covered and excluded"


def test_masked_nan_is_ignored_but_valid_nan_raises():
    # NaN on padded rows must never raise or leak; the same NaN on a valid row must raise
    cost = with_value(rnd(2, 4, 3), (1, 3), NAN)
    m = mask(2, 4)
    m[1, 3] = False
    res = ot.sinkhorn_uot(cost, mask=m, max_iter=200)
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.value).all()
    with pytest.raises(ValueError, match="`cost`"):
        ot.sinkhorn_uot(cost, max_iter=200)
    x = with_value(rnd(3, 2, 4), (2, 1), NAN)
    pm = torch.ones(3, 2, dtype=torch.bool)
    pm[2, 1] = False
    assert torch.isfinite(losses.distinct_contrastive_loss(x, rnd(2, 4), mask=pm))


# ---------------------------------------------------------------------------------------------
# legitimate degenerate input: documented, graph-connected zeros


def _zero_with_grad(make_loss, *leaves):
    loss = make_loss(*leaves)
    assert loss.requires_grad, "degenerate result is detached from the graph"
    loss.sum().backward()
    torch.testing.assert_close(loss.detach(), torch.zeros_like(loss))
    for leaf in leaves:
        assert leaf.grad is not None, "no gradient reached an input"
        torch.testing.assert_close(leaf.grad, torch.zeros_like(leaf.grad))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_cox_without_events_is_connected_zero(ties, reduction):
    eta = torch.randn(5, dtype=torch.float64, requires_grad=True)
    _zero_with_grad(
        lambda e: survival.cox_ph_loss(
            e,
            torch.rand(5, dtype=torch.float64),
            torch.zeros(5, dtype=torch.bool),
            ties=ties,
            reduction=reduction,
        ),
        eta,
    )


def test_cox_empty_batch_is_connected_zero():
    eta = torch.zeros(0, requires_grad=True)
    _zero_with_grad(
        lambda e: survival.cox_ph_loss(e, torch.zeros(0), torch.zeros(0, dtype=torch.bool)), eta
    )


def test_zero_times_are_legal():
    # durations of 0 (follow-up ended at diagnosis) occur in TCGA: accepted, finite results
    t = torch.tensor([0.0, 0.0, 1.0, 2.0])
    loss = survival.cox_ph_loss(torch.randn(4), t, EV)
    assert torch.isfinite(loss)
    assert 0.0 <= survival.concordance_index(event=EV, time=t, risk=RK) <= 1.0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("negatives", ["anchors", "batch"])
def test_contrastive_single_modality_is_connected_zero(negatives, reduction):
    pooled = torch.randn(3, 1, 4, requires_grad=True)
    anchors = torch.randn(1, 4, requires_grad=True)
    _zero_with_grad(
        lambda p, a: losses.distinct_contrastive_loss(
            p, a, negatives=negatives, reduction=reduction
        ),
        pooled,
        anchors,
    )


def test_contrastive_module_single_modality_is_connected_zero():
    loss_fn = losses.DistinctContrastive(dim=4)
    pooled = torch.randn(3, 1, 4, requires_grad=True)
    _zero_with_grad(lambda p: loss_fn(p, torch.randn(1, 4)), pooled)


def test_soft_assignment_all_padding_is_connected_zero():
    logits = torch.randn(2, 4, 3, requires_grad=True)
    _zero_with_grad(
        lambda lg: losses.soft_assignment_loss(
            lg, torch.rand(2, 4, 3), mask=mask(2, 4, empty_rows=[0, 1])
        ),
        logits,
    )


def test_value_checks_off_skips_only_value_checks():
    prev = minmaxfuse.set_value_checks(False)
    try:
        # a metadata error still raises
        with pytest.raises(ValueError, match="`cost`"):
            ot.sinkhorn_uot(rnd(4, 3))
        # a value error does not (the caller vouched for the data)
        out = survival.cox_ph_loss(torch.zeros(4), TM, EV)
        assert torch.isfinite(out)
    finally:
        minmaxfuse.set_value_checks(prev)
    assert math.isfinite(float(out))
