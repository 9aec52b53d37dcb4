"""Property-based fuzzing of the public API (house style B4 and B7: finite in, finite out).

Every public callable gets a small valid call. Hypothesis then replaces at most two of its
arguments with a hostile value: special floats (NaN, +-Inf, 0, negative, 1e-30, 1e30), tensors
with such an entry, rescaled by 1e-30 or 1e30, of another dtype (half, int, bool, complex), of
another rank or with an empty axis, on the meta device, or not a tensor at all; scalars of the
wrong kind (bool, string, None, complex, list, numpy scalars, 2**64). The contract checked for
every draw:

* the call returns, and every floating value in the result (tensors, NaN-free floats, arrays) is
  finite (documented exceptions: infinite outer bin edges); or
* it raises ValueError / TypeError whose message names one of the callable's arguments in
  backticks (the bad-input table checks the full message format on hand-picked cases).

Any other exception (RuntimeError, IndexError, ZeroDivisionError, a raw numpy/torch error) or a
NaN/Inf in a result fails. The number of draws per callable is fixed so the module runs in well
under a minute on one core.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minmaxfuse import data, diagnostics, distributed, layers, losses, ot, survival

DRAWS = 80  # per callable


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def bmask(b, n, pad=1):
    m = torch.ones(b, n, dtype=torch.bool)
    m[-1, n - pad :] = False
    return m


EV = torch.tensor([True, False, True, True, False, True])
TM = torch.tensor([1.0, 2.0, 2.5, 3.0, 5.0, 8.0])
RK = torch.tensor([0.4, 0.1, 0.3, 0.2, 0.0, -0.1])


class Spec(NamedTuple):
    call: Callable[..., Any]  # called with the keyword arguments below
    args: dict[str, Callable[[], Any]]  # argument name -> factory of a valid value
    names: tuple[str, ...] = ()  # further argument names an error may legitimately name


def _align(tokens, masks, temperature, reg_m, mass, rho, missing):
    torch.manual_seed(0)
    layer = layers.PrototypeUOTAlign(
        4,
        num_prototypes=3,
        temperature=temperature,
        reg_m=reg_m,
        mass=mass,
        max_iter=50,
        allow_missing=missing,
    )
    return layer(tokens, masks, rho=rho)


def _align_heads(tokens, masks, semantic, rho, keep, swap):
    torch.manual_seed(0)
    layer = layers.PrototypeUOTAlign(4, 3, num_modalities=2, heads=2, semantic=0.1, max_iter=50)
    gen = torch.Generator().manual_seed(0)
    loss = layer.consistency_loss(
        tokens, masks, rho=rho, semantic=semantic, keep=keep, swap=swap, generator=gen
    )
    out = layer(tokens, masks, rho=rho)
    return loss, out, layer.update_primary(loss.detach())


def _semantic(cost, features, rho, **kw):
    res = ot.semantic_uot(cost, features, rho, **kw)
    return res._replace(history=None)  # NaN once a problem has stopped (documented)


def _tokenizer(x, mask, missing):
    torch.manual_seed(0)
    return layers.FeatureTokenizer(3, 4, missing=missing)(x, mask)


def _consistency_module(logits, rho, semantic):
    return losses.SinkhornConsistency(rho, semantic=semantic)(logits, features=randn(2, 1, 4, 5))


def _anchors(prototype_tokens, dropout):
    torch.manual_seed(0)
    return layers.ModalityAnchors(2, 4, dropout=dropout)(prototype_tokens)


def _contrast_module(pooled, anchors, mask, temperature):
    torch.manual_seed(0)
    return losses.DistinctContrastive(temperature, dim=4)(pooled, anchors, mask)


def _objective(task, apart, weight, step):
    obj = losses.MinMaxObjective({"task": 1.0, "apart": losses.Term(weight, "max")})
    obj.set_extra_state({"step": step})
    return obj(task=task, apart=apart)


SPECS: dict[str, Spec] = {
    "sinkhorn_uot": Spec(
        lambda **k: ot.sinkhorn_uot(k.pop("cost"), k.pop("a"), k.pop("b"), max_iter=100, **k),
        {
            "cost": lambda: rnd(2, 4, 3) * 2,
            "a": lambda: rnd(2, 4, seed=1) + 0.1,
            "b": lambda: rnd(2, 3, seed=2) + 0.1,
            "reg": lambda: 0.1,
            "reg_m": lambda: 1.0,
            "mask": lambda: bmask(2, 4),
            "grad": lambda: "implicit",
            "sink_mass": lambda: None,
            "warn": lambda: False,
        },
    ),
    "partial_uot": Spec(
        lambda **k: ot.partial_uot(k.pop("cost"), k.pop("rho"), max_iter=100, **k),
        {
            "cost": lambda: rnd(2, 4, 3) * 2,
            "rho": lambda: 0.5,
            "reg": lambda: 0.1,
            "reg_m_cols": lambda: 1.0,
            "mask": lambda: bmask(2, 4),
        },
    ),
    "PrototypeUOTAlign": Spec(
        _align,
        {
            "tokens": lambda: [randn(2, 5, 4), randn(2, 3, 4, seed=1)],
            "masks": lambda: [bmask(2, 5), None],
            "temperature": lambda: 0.5,
            "reg_m": lambda: 1.0,
            "mass": lambda: 1.0,
            "rho": lambda: 0.7,
            "missing": lambda: False,
        },
        ("tokens[0]", "tokens[1]", "masks[0]", "masks[1]", "allow_missing"),
    ),
    "semantic_uot": Spec(
        _semantic,
        {
            "cost": lambda: rnd(2, 4, 3) * 2,
            "features": lambda: randn(2, 4, 5, seed=1),
            "rho": lambda: 0.5,
            "semantic": lambda: 0.1,
            "reg": lambda: 0.1,
            "mask": lambda: bmask(2, 4),
            "max_outer": lambda: 5,
            "max_iter": lambda: 100,
        },
    ),
    "PrototypeUOTAlign.consistency_loss": Spec(
        _align_heads,
        {
            "tokens": lambda: [randn(3, 6, 4), randn(3, 5, 4, seed=1)],
            "masks": lambda: [bmask(3, 6, pad=2), None],
            "semantic": lambda: 0.05,
            "rho": lambda: 0.6,
            "keep": lambda: 0.8,
            "swap": lambda: 0.2,
        },
        ("tokens[0]", "tokens[1]", "masks[0]", "masks[1]", "losses"),
    ),
    "sinkhorn_consistency_loss": Spec(
        lambda **k: losses.sinkhorn_consistency_loss(k.pop("logits"), **k),
        {
            "logits": lambda: randn(2, 3, 4, 5),
            "features": lambda: randn(2, 3, 4, 6, seed=1),
            "mask": lambda: torch.tensor([True, True, False, True]),
            "rho": lambda: 0.7,
            "semantic": lambda: 0.05,
            "reg": lambda: 0.1,
            "min_mass": lambda: 1e-6,
            "reduction": lambda: "none",
        },
    ),
    "SinkhornConsistency": Spec(
        _consistency_module,
        {"logits": lambda: randn(2, 1, 4, 3), "rho": lambda: 0.5, "semantic": lambda: 0.1},
        ("features",),
    ),
    "FeatureTokenizer": Spec(
        _tokenizer,
        {
            "x": lambda: randn(4, 3),
            "mask": lambda: torch.tensor(
                [[True] * 3, [True, False, True], [False] * 3, [True] * 3]
            ),
            "missing": lambda: "learned",
        },
    ),
    "prototype_aggregate": Spec(
        lambda **k: layers.prototype_aggregate(k.pop("x"), k.pop("logits"), k.pop("plan"), **k),
        {
            "x": lambda: randn(2, 5, 4),
            "logits": lambda: randn(2, 5, 3, seed=1),
            "plan": lambda: rnd(2, 5, 3, seed=2) / 3,
            "mask": lambda: bmask(2, 5),
            "mix": lambda: 0.5,
            "normalize": lambda: False,
        },
    ),
    "ModalityAnchors": Spec(
        _anchors,
        {
            "prototype_tokens": lambda: [randn(2, 3, 4), randn(2, 3, 4, seed=1)],
            "dropout": lambda: 0.0,
        },
        ("prototype_tokens[0]", "prototype_tokens[1]"),
    ),
    "grad_reverse": Spec(
        lambda **k: layers.grad_reverse(k.pop("x"), **k),
        {"x": lambda: randn(3), "scale": lambda: 0.5},
    ),
    "distinct_contrastive_loss": Spec(
        lambda **k: losses.distinct_contrastive_loss(k.pop("pooled"), k.pop("anchors"), **k),
        {
            "pooled": lambda: randn(3, 2, 4),
            "anchors": lambda: randn(2, 4, seed=1),
            "mask": lambda: bmask(3, 2),
            "temperature": lambda: 0.1,
            "negatives": lambda: "batch",
            "symmetric": lambda: True,
            "reduction": lambda: "mean",
        },
    ),
    "DistinctContrastive": Spec(
        _contrast_module,
        {
            "pooled": lambda: randn(3, 2, 4),
            "anchors": lambda: randn(2, 4, seed=1),
            "mask": lambda: bmask(3, 2),
            "temperature": lambda: 0.1,
        },
    ),
    "soft_assignment_loss": Spec(
        lambda **k: losses.soft_assignment_loss(k.pop("logits"), k.pop("target"), **k),
        {
            "logits": lambda: randn(2, 5, 3),
            "target": lambda: rnd(2, 5, 3, seed=1),
            "mask": lambda: bmask(2, 5),
            "min_mass": lambda: 1e-6,
            "reduction": lambda: "mean",
        },
    ),
    "MinMaxObjective": Spec(
        _objective,
        {
            "task": lambda: torch.tensor(1.5),
            "apart": lambda: torch.tensor(0.5),
            "weight": lambda: 0.1,
            "step": lambda: 3,
        },
        ("terms['apart'].weight", "state", "terms"),
    ),
    "Linear": Spec(
        lambda start, end, steps, step: losses.Linear(start, end, steps=steps)(step),
        {"start": lambda: 0.0, "end": lambda: 1.0, "steps": lambda: 10, "step": lambda: 4},
    ),
    "mass_ramp": Spec(
        losses.mass_ramp,
        {"progress": lambda: 0.3, "start": lambda: 0.1, "end": lambda: 1.0, "sharpness": lambda: 5},
    ),
    "cox_ph_loss": Spec(
        lambda **k: survival.cox_ph_loss(k.pop("log_risk"), k.pop("time"), k.pop("event"), **k),
        {
            "log_risk": lambda: RK.clone(),
            "time": lambda: TM.clone(),
            "event": lambda: EV.clone(),
            "ties": lambda: "efron",
            "weight": lambda: None,
        },
    ),
    "nll_surv_loss": Spec(
        lambda **k: survival.nll_surv_loss(k.pop("logits"), k.pop("time_bin"), k.pop("event"), **k),
        {
            "logits": lambda: randn(6, 3),
            "time_bin": lambda: torch.tensor([0, 1, 2, 0, 1, 2]),
            "event": lambda: EV.clone(),
            "alpha": lambda: 0.2,
        },
    ),
    "hazards": Spec(survival.hazards, {"logits": lambda: randn(3, 4)}),
    "survival_curve": Spec(survival.survival_curve, {"logits": lambda: randn(3, 4)}),
    "risk_from_logits": Spec(survival.risk_from_logits, {"logits": lambda: randn(3, 4)}),
    "discretize_time": Spec(
        lambda **k: survival.discretize_time(k.pop("time"), k.pop("event"), **k),
        {
            "time": lambda: TM.clone(),
            "event": lambda: EV.clone(),
            "n_bins": lambda: 2,
            "outer": lambda: "data",
            "eps": lambda: 1e-6,
        },
    ),
    "assign_time_bins": Spec(
        survival.assign_time_bins,
        {"time": lambda: TM.clone(), "edges": lambda: torch.tensor([0.0, 2.0, 4.0, 9.0])},
    ),
    "concordance_index": Spec(
        survival.concordance_index,
        {
            "event": lambda: EV.clone(),
            "time": lambda: TM.clone(),
            "risk": lambda: RK.clone(),
            "tied_tol": lambda: 1e-8,
            "return_counts": lambda: False,
        },
    ),
    "brier_score": Spec(
        survival.brier_score,
        {
            "event": lambda: EV.clone(),
            "time": lambda: TM.clone(),
            "surv": lambda: rnd(6, 2),
            "times": lambda: [2.2, 4.0],
        },
    ),
    "kaplan_meier": Spec(
        survival.kaplan_meier,
        {"event": lambda: EV.clone(), "time": lambda: TM.clone(), "reverse": lambda: False},
    ),
    "logrank_test": Spec(
        survival.logrank_test,
        {
            "event": lambda: EV.clone(),
            "time": lambda: TM.clone(),
            "group": lambda: np.array([0, 0, 0, 1, 1, 1]),
        },
    ),
    "bootstrap_ci": Spec(
        # n_resamples stays 5: a legal huge count (2**64) would simply run for ever
        lambda **k: survival.bootstrap_ci(survival.concordance_index, n_resamples=5, **k),
        {
            "event": lambda: EV.clone(),
            "time": lambda: TM.clone(),
            "risk": lambda: RK.clone(),
            "level": lambda: 0.9,
            "seed": lambda: 0,
        },
        ("metric",),
    ),
    "effective_rank": Spec(
        diagnostics.effective_rank,
        {"x": lambda: randn(6, 3), "mask": lambda: None, "center": lambda: True},
    ),
    "alignment": Spec(
        diagnostics.alignment,
        {"x": lambda: randn(5, 3), "y": lambda: randn(5, 3, seed=1), "alpha": lambda: 2.0},
    ),
    "uniformity": Spec(diagnostics.uniformity, {"x": lambda: randn(5, 3), "t": lambda: 2.0}),
    "modality_gap": Spec(
        diagnostics.modality_gap,
        {"x": lambda: randn(5, 3), "y": lambda: randn(4, 3, seed=1), "normalize": lambda: True},
    ),
    "prototype_usage_entropy": Spec(
        diagnostics.prototype_usage_entropy,
        {"plan": lambda: rnd(2, 5, 3), "mask": lambda: bmask(2, 5), "normalize": lambda: True},
    ),
    "token_transport_mass": Spec(
        diagnostics.token_transport_mass,
        {"plan": lambda: rnd(2, 5, 3), "mask": lambda: bmask(2, 5), "relative": lambda: True},
    ),
    "pad_bags": Spec(
        data.pad_bags, {"bags": lambda: [randn(3, 2), randn(1, 2)], "length": lambda: None}
    ),
    "sample_bags": Spec(
        lambda **k: data.sample_bags(k.pop("bags"), k.pop("size"), **k),
        {
            "bags": lambda: randn(2, 5, 2),
            "size": lambda: 3,
            "mask": lambda: bmask(2, 5),
            "generator": lambda: torch.Generator().manual_seed(0),
        },
    ),
    "make_synthetic_cohort": Spec(
        lambda **k: data.make_synthetic_cohort(8, bag_sizes=(6, 3), dims=(4, 3), **k),
        {
            "noise": lambda: 0.5,
            "shared_effect": lambda: 1.0,
            "specific_effect": lambda: 1.0,
            "censoring": lambda: 0.3,
            "seed": lambda: 0,
        },
        ("num_patients", "bag_sizes", "dims"),
    ),
    "gather_nograd": Spec(distributed.gather_nograd, {"x": lambda: randn(3)}),
}

# outputs that are legitimately infinite: the outer edges of discretize_time(outer="inf")
INFINITE_OK = {"discretize_time"}
# data movement (padding, gathering, identity forward): NaN/Inf in the data passes through
PASS_THROUGH = {"pad_bags", "sample_bags", "gather_nograd", "grad_reverse"}

NAN = float("nan")
SCALARS = [
    0,
    -1,
    0.0,
    -0.5,
    1e-30,
    1e30,
    NAN,
    float("inf"),
    -float("inf"),
    True,
    np.float32(0.25),
    np.int64(2),
    np.bool_(True),
    "a",
    None,
    1 + 1j,
    [1, 2],
    2**64,
    torch.tensor(0.5),
]


@st.composite
def hostile_tensor(draw, t: torch.Tensor):
    kind = draw(
        st.sampled_from(
            ["special", "scale", "dtype", "rank", "empty", "meta", "python", "transpose"]
        )
    )
    if kind == "special" and t.numel() and t.is_floating_point():
        t = t.clone()
        idx = draw(st.integers(0, t.numel() - 1))
        t.view(-1)[idx] = draw(st.sampled_from([NAN, float("inf"), -float("inf"), -1.0, 0.0]))
        return t
    if kind == "scale" and t.is_floating_point():
        return t * draw(st.sampled_from([1e-30, 1e-8, 1e8, 1e30, -1.0, 0.0]))
    if kind == "dtype":
        dt = draw(st.sampled_from([torch.float16, torch.float64, torch.int64, torch.bool]))
        if dt is torch.bool:
            return t != 0
        return t.to(dt)
    if kind == "rank":
        return t.unsqueeze(0) if draw(st.booleans()) or t.ndim == 0 else t.flatten()[:-1]
    if kind == "empty" and t.ndim:
        axis = draw(st.integers(0, t.ndim - 1))
        return t.narrow(axis, 0, 0)
    if kind == "meta":
        return t.to("meta")
    if kind == "python":
        return draw(st.sampled_from([t.tolist(), 1.0, None, "x"]))
    if kind == "transpose" and t.ndim >= 2:
        return t.transpose(-1, -2)
    return t.to(torch.complex64) if t.is_floating_point() else t


@st.composite
def hostile(draw, value):
    if isinstance(value, torch.Tensor):
        return draw(hostile_tensor(value))
    if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
        i = draw(st.integers(0, len(value) - 1))
        out = list(value)
        choice = draw(st.integers(0, 2))
        if choice == 0:
            item = value[i]
            out[i] = draw(hostile(item)) if item is not None else draw(st.sampled_from(SCALARS))
        elif choice == 1:
            out = out[:-1]
        else:
            return tuple(out) if draw(st.booleans()) else value[0]
        return out
    return draw(st.sampled_from(SCALARS))


def _finite(out: object, name: str) -> None:
    if isinstance(out, torch.Tensor):
        if out.is_floating_point() and out.device.type != "meta":
            ok = torch.isfinite(out) | (name in INFINITE_OK and out.isinf())
            assert bool(ok.all()), f"{name} returned a non-finite tensor: {out}"
        return
    if isinstance(out, np.ndarray):
        if out.dtype.kind == "f":
            ok = np.isfinite(out) | (name in INFINITE_OK and np.isinf(out))
            assert ok.all(), f"{name} returned a non-finite array: {out}"
        return
    if isinstance(out, float):
        assert math.isfinite(out), f"{name} returned {out}"
        return
    if isinstance(out, (tuple, list)):
        for o in out:
            _finite(o, name)


def _is_finite_input(v: object) -> bool:
    if isinstance(v, torch.Tensor):
        return not v.is_floating_point() or v.device.type == "meta" or bool(v.isfinite().all())
    if isinstance(v, (list, tuple)):
        return all(_is_finite_input(x) for x in v)
    return True


def _arg_names(spec: Spec) -> set[str]:
    names = set(spec.args) | set(spec.names)
    try:
        names |= set(inspect.signature(spec.call).parameters)
    except (TypeError, ValueError):
        pass
    return names


def _check_message(msg: str, spec: Spec, name: str) -> None:
    named = re.findall(r"`([^`]+)`", msg)
    known = _arg_names(spec)
    base = {re.split(r"[\[.]", n)[0] for n in named}
    assert named and (set(named) | base) & known, (
        f"{name}: error does not name an argument in backticks: {msg!r}"
    )


@pytest.mark.parametrize("name", sorted(SPECS))
def test_public_call_is_finite_or_a_named_error(name):
    spec = SPECS[name]

    @settings(
        max_examples=DRAWS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(st.data())
    def run(draw):
        kwargs = {k: make() for k, make in spec.args.items()}
        args = st.lists(st.sampled_from(sorted(spec.args)), max_size=2, unique=True)
        for arg in draw.draw(args, label="arguments replaced"):
            kwargs[arg] = draw.draw(hostile(kwargs[arg]), label=arg)
        try:
            out = spec.call(**kwargs)
        except (ValueError, TypeError) as err:
            _check_message(str(err), spec, name)
            return
        if name in PASS_THROUGH and not all(_is_finite_input(v) for v in kwargs.values()):
            return
        _finite(out, name)

    run()


def test_fuzzed_names_are_public():
    # the table covers the public API as written; add new public callables to SPECS
    from tests.hardening.hardening_helpers import public_callables

    owners = {name.split(".")[0] for name in SPECS}  # "Class.method" entries fuzz a method
    assert not owners - set(public_callables()), "SPECS names a callable that is not public"
