"""float32 / float64 everywhere, bf16/fp16 autocast, and the device of the input respected.

Every public callable that takes or returns tensors is run by a *runner* below on inputs of a
given dtype and device. The checks: floating outputs keep the input dtype (documented
exceptions aside), live on the input device and are finite; float32 agrees with float64.
Under CPU autocast (bfloat16 and float16) the OT solver and the survival losses must do their
maths in float32: a dispatch-mode recorder lists every aten op that produced a half-precision
tensor inside the call, and only casts and views are allowed there.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import minmaxfuse
from minmaxfuse import data, diagnostics, distributed, layers, losses, ot, survival
from tests.hardening.hardening_helpers import (
    DEVICES,
    all_tensors,
    float_tensors,
    public_callables,
)

# ---------------------------------------------------------------------------------------------
# runners: (dtype, device) -> output


def gen(*shape, dtype, device, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * scale).to(dtype).to(device)


def randn(*shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).to(device)


def bmask(b, n, device, pad=1):
    m = torch.ones(b, n, dtype=torch.bool, device=device)
    m[-1, n - pad :] = False
    return m


def module(cls, *args, dtype, device, **kw):
    torch.manual_seed(0)
    return cls(*args, **kw).to(dtype=dtype, device=device)


def surv_batch(dtype, device):
    time = torch.tensor([1.0, 2.0, 2.0, 3.0, 5.0, 8.0], dtype=dtype, device=device)
    event = torch.tensor([True, False, True, True, False, True], device=device)
    return time, event


def run_align(dtype, device):
    layer = module(layers.PrototypeUOTAlign, 4, num_prototypes=3, dtype=dtype, device=device)
    xs = [
        randn(2, 5, 4, dtype=dtype, device=device),
        randn(2, 3, 4, dtype=dtype, device=device, seed=1),
    ]
    out = layer(xs, [bmask(2, 5, device), None], rho=0.7)
    return [out.prototype_tokens, out.plans, out.logits, out.loss, out.losses]


def run_anchors(dtype, device):
    layer = module(layers.ModalityAnchors, 2, 4, dtype=dtype, device=device)
    out = layer(
        [
            randn(2, 3, 4, dtype=dtype, device=device),
            randn(2, 3, 4, dtype=dtype, device=device, seed=1),
        ]
    )
    return [out.tokens, out.pooled, out.anchors]


def run_cohort(dtype, device):
    c = data.make_synthetic_cohort(8, bag_sizes=(6, 3), dims=(4, 3), dtype=dtype)
    return [c.tokens, c.time, c.risk]


RUNNERS: dict[str, Callable] = {
    "sinkhorn_uot": lambda dt, dev: ot.sinkhorn_uot(
        gen(2, 5, 3, dtype=dt, device=dev, scale=2), mask=bmask(2, 5, dev), reg=0.1, tol=1e-9
    )[:4],
    "partial_uot": lambda dt, dev: ot.partial_uot(
        gen(2, 5, 3, dtype=dt, device=dev, scale=2), 0.6, mask=bmask(2, 5, dev), tol=1e-9
    )[:4],
    "cox_ph_loss": lambda dt, dev: survival.cox_ph_loss(
        randn(6, dtype=dt, device=dev), *surv_batch(dt, dev)
    ),
    "CoxPHLoss": lambda dt, dev: survival.CoxPHLoss(ties="breslow", reduction="none")(
        randn(6, dtype=dt, device=dev), *surv_batch(dt, dev)
    ),
    "nll_surv_loss": lambda dt, dev: survival.nll_surv_loss(
        randn(6, 4, dtype=dt, device=dev),
        torch.tensor([0, 1, 1, 2, 3, 3], device=dev),
        surv_batch(dt, dev)[1],
    ),
    "NLLSurvLoss": lambda dt, dev: survival.NLLSurvLoss(alpha=0.2)(
        randn(6, 4, dtype=dt, device=dev),
        torch.tensor([0, 1, 1, 2, 3, 3], device=dev),
        surv_batch(dt, dev)[1],
    ),
    "hazards": lambda dt, dev: survival.hazards(randn(3, 4, dtype=dt, device=dev)),
    "survival_curve": lambda dt, dev: survival.survival_curve(randn(3, 4, dtype=dt, device=dev)),
    "risk_from_logits": lambda dt, dev: survival.risk_from_logits(
        randn(3, 4, dtype=dt, device=dev)
    ),
    "assign_time_bins": lambda dt, dev: survival.assign_time_bins(
        surv_batch(dt, dev)[0], torch.tensor([0.0, 2.0, 4.0, 9.0], dtype=dt, device=dev)
    ),
    "discretize_time": lambda dt, dev: survival.discretize_time(
        *surv_batch(dt, dev), n_bins=2, outer="data"
    ),
    "distinct_contrastive_loss": lambda dt, dev: losses.distinct_contrastive_loss(
        randn(3, 2, 4, dtype=dt, device=dev),
        randn(2, 4, dtype=dt, device=dev, seed=1),
        negatives="batch",
        symmetric=True,
    ),
    "DistinctContrastive": lambda dt, dev: module(
        losses.DistinctContrastive, dim=4, dtype=dt, device=dev
    )(randn(3, 2, 4, dtype=dt, device=dev), randn(2, 4, dtype=dt, device=dev, seed=1)),
    "soft_assignment_loss": lambda dt, dev: losses.soft_assignment_loss(
        randn(2, 5, 3, dtype=dt, device=dev),
        gen(2, 5, 3, dtype=dt, device=dev, seed=1),
        mask=bmask(2, 5, dev),
    ),
    "prototype_aggregate": lambda dt, dev: layers.prototype_aggregate(
        randn(2, 5, 4, dtype=dt, device=dev),
        randn(2, 5, 3, dtype=dt, device=dev, seed=1),
        gen(2, 5, 3, dtype=dt, device=dev, seed=2) / 3,
        mask=bmask(2, 5, dev),
    ),
    "PrototypeUOTAlign": run_align,
    "ModalityAnchors": run_anchors,
    "grad_reverse": lambda dt, dev: layers.grad_reverse(randn(3, dtype=dt, device=dev), scale=0.5),
    "GradReverse": lambda dt, dev: layers.GradReverse(0.5)(randn(3, dtype=dt, device=dev)),
    "alignment": lambda dt, dev: diagnostics.alignment(
        randn(5, 3, dtype=dt, device=dev), randn(5, 3, dtype=dt, device=dev, seed=1)
    ),
    "uniformity": lambda dt, dev: diagnostics.uniformity(randn(5, 3, dtype=dt, device=dev)),
    "effective_rank": lambda dt, dev: diagnostics.effective_rank(randn(6, 3, dtype=dt, device=dev)),
    "modality_gap": lambda dt, dev: diagnostics.modality_gap(
        randn(5, 3, dtype=dt, device=dev), randn(4, 3, dtype=dt, device=dev, seed=1)
    ),
    "prototype_usage_entropy": lambda dt, dev: diagnostics.prototype_usage_entropy(
        gen(2, 5, 3, dtype=dt, device=dev), mask=bmask(2, 5, dev)
    ),
    "token_transport_mass": lambda dt, dev: diagnostics.token_transport_mass(
        gen(2, 5, 3, dtype=dt, device=dev), mask=bmask(2, 5, dev)
    ),
    "pad_bags": lambda dt, dev: data.pad_bags(
        [randn(3, 2, dtype=dt, device=dev), randn(1, 2, dtype=dt, device=dev)]
    ),
    "sample_bag": lambda dt, dev: data.sample_bag(
        randn(5, 2, dtype=dt, device=dev), 3, generator=torch.Generator().manual_seed(0)
    ),
    "sample_bags": lambda dt, dev: data.sample_bags(
        randn(2, 5, 2, dtype=dt, device=dev),
        3,
        mask=bmask(2, 5, dev),
        generator=torch.Generator().manual_seed(0),
    ),
    "gather_with_grad": lambda dt, dev: distributed.gather_with_grad(
        randn(3, 2, dtype=dt, device=dev)
    ),
    "gather_nograd": lambda dt, dev: distributed.gather_nograd(randn(3, dtype=dt, device=dev)),
    "semantic_uot": lambda dt, dev: ot.semantic_uot(
        gen(2, 5, 3, dtype=dt, device=dev, scale=2),
        randn(2, 5, 4, dtype=dt, device=dev, seed=1),
        0.6,
        semantic=0.1,
        mask=bmask(2, 5, dev),
    )[:4],
    "sinkhorn_consistency_loss": lambda dt, dev: losses.sinkhorn_consistency_loss(
        randn(2, 3, 4, 5, dtype=dt, device=dev), rho=0.5
    ),
    "SinkhornConsistency": lambda dt, dev: losses.SinkhornConsistency(rho=0.5)(
        randn(2, 3, 4, 5, dtype=dt, device=dev)
    ),
    "FeatureTokenizer": lambda dt, dev: module(layers.FeatureTokenizer, 3, 4, dtype=dt, device=dev)(
        randn(2, 3, dtype=dt, device=dev)
    ),
}
# make_synthetic_cohort has a dtype but no device argument (it draws on the CPU; move its
# tensors with .to()): it is run for both dtypes on the CPU only
CPU_ONLY = {"make_synthetic_cohort": run_cohort}

# documented dtype exceptions: float64 edges whatever the time dtype
FLOAT64_OUTPUT = {"discretize_time"}

NOT_TENSOR_API = {
    # numpy-float64 metrics (they accept tensors of any float dtype, incl. bfloat16: tested below)
    "concordance_index": "numpy metric",
    "concordance_index_ipcw": "numpy metric",
    "cumulative_dynamic_auc": "numpy metric",
    "brier_score": "numpy metric",
    "integrated_brier_score": "numpy metric",
    "kaplan_meier": "numpy metric",
    "logrank_test": "numpy metric",
    "bootstrap_ci": "numpy metric",
    # plain Python scalars / configuration
    "set_value_checks": "bool switch",
    "value_checks_enabled": "no input",
    "is_distributed": "no input",
    "world_size": "no input",
    "batch_sizes": "int in, list of int out",
    "MinMaxObjective": "combines scalar losses it is given; tested below",
    "Term": "configuration NamedTuple",
    "Schedule": "float schedules",
    "Constant": "float schedule",
    "Linear": "float schedule",
    "Cosine": "float schedule",
    "SigmoidRamp": "float schedule",
    "mass_ramp": "float schedule",
}
RESULT_TYPES = {
    "UOTResult", "AlignOutput", "AnchorOutput", "MinMaxComponents", "PaddedBags",
    "SyntheticCohort", "BootstrapResult", "ConcordanceResult", "KaplanMeierResult",
    "LogRankResult", "TimeDependentAUC", "SemanticUOTResult",
}  # fmt: skip


def test_every_tensor_callable_has_a_runner():
    names = set(public_callables())
    known = set(RUNNERS) | set(CPU_ONLY) | set(NOT_TENSOR_API) | RESULT_TYPES
    assert not names - known, f"public callables without a precision/device runner: {names - known}"
    assert not known - names, f"stale names: {known - names}"


def _run(name, dtype, device):
    fn = RUNNERS.get(name) or CPU_ONLY[name]
    return fn(dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(RUNNERS) + sorted(CPU_ONLY))
def test_dtype_and_device_are_kept(name, dtype, device):
    if name in CPU_ONLY and device != "cpu":
        pytest.skip("no device argument")
    out = _run(name, dtype, device)
    tensors = all_tensors(out)
    assert tensors, "runner returned no tensor"
    for t in tensors:
        assert t.device.type == device, f"output on {t.device}, input on {device}"
    expected = torch.float64 if name in FLOAT64_OUTPUT else dtype
    for t in float_tensors(out):
        assert t.dtype == expected, f"output dtype {t.dtype}, expected {expected}"
        assert torch.isfinite(t).all()


@pytest.mark.parametrize("name", sorted(RUNNERS))  # the cohort draws its noise in `dtype`
def test_float32_agrees_with_float64(name):
    a = float_tensors(_run(name, torch.float32, "cpu"))
    b = float_tensors(_run(name, torch.float64, "cpu"))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.double(), y, rtol=2e-4, atol=2e-5)


def test_minmax_objective_keeps_dtype():
    obj = losses.MinMaxObjective({"task": 1.0, "apart": losses.Term(0.5, "max")})
    for dtype in (torch.float32, torch.float64):
        total = obj(task=torch.tensor(2.0, dtype=dtype), apart=torch.tensor(1.0, dtype=dtype))
        assert total.dtype == dtype
        torch.testing.assert_close(total, torch.tensor(1.5, dtype=dtype))


# ---------------------------------------------------------------------------------------------
# mixed precision


class HalfOps(TorchDispatchMode):
    """Record every aten op that outputs a float16/bfloat16 tensor."""

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in all_tensors(out if isinstance(out, (tuple, list)) else [out]):
            if t.dtype in (torch.float16, torch.bfloat16):
                self.ops[func.overloadpacket.__name__] += 1
        return out


# casting back to the input dtype and views of the result are the only allowed half ops
CAST_AND_VIEW = {"_to_copy", "to", "view", "detach", "alias", "expand", "slice", "select",
                 "unsqueeze", "squeeze", "t", "transpose", "permute", "clone", "copy_",
                 "lift_fresh", "empty_like", "empty", "split", "split_with_sizes",
                 "unbind"}  # fmt: skip

HALF = [torch.bfloat16, torch.float16]


@pytest.fixture
def no_value_checks():
    # value checks (NaN scans) may legitimately read half tensors; switch them off
    prev = minmaxfuse.set_value_checks(False)
    yield
    minmaxfuse.set_value_checks(prev)


@pytest.mark.usefixtures("no_value_checks")
@pytest.mark.parametrize("half", HALF, ids=["bf16", "fp16"])
@pytest.mark.parametrize("grad", ["implicit", "unroll", "envelope"])
def test_solver_under_autocast_computes_in_float32(half, grad):
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 4)
    x = torch.randn(2, 5, 6)
    with torch.autocast("cpu", dtype=half):
        cost = lin(x).abs()  # produced in half precision by autocast
        assert cost.dtype == half
        with HalfOps() as rec:
            res = ot.sinkhorn_uot(cost, reg=0.05, reg_m=1.0, grad=grad, tol=1e-7)
    assert set(rec.ops) <= CAST_AND_VIEW, f"half-precision maths in the solver: {dict(rec.ops)}"
    assert res.plan.dtype == half and res.value.dtype == half  # cast back (house style B5)
    # same numbers as solving the (exactly representable) half cost in float32
    ref = ot.sinkhorn_uot(cost.detach().float(), reg=0.05, reg_m=1.0, tol=1e-7)
    for got, want in ((res.plan, ref.plan), (res.value, ref.value)):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.float(), want, rtol=1e-2, atol=1e-3)
    res.value.float().sum().backward()  # gradients reach the half-precision producer
    assert torch.isfinite(lin.weight.grad).all()


@pytest.mark.usefixtures("no_value_checks")
@pytest.mark.parametrize("half", HALF, ids=["bf16", "fp16"])
@pytest.mark.parametrize("which", ["cox", "nll", "curve"])
def test_survival_under_autocast_computes_in_float32(half, which):
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 4)
    x = torch.randn(8, 5) * 3
    time = torch.rand(8) * 5
    event = torch.rand(8, generator=torch.Generator().manual_seed(1)) < 0.6
    bins = torch.randint(0, 4, (8,), generator=torch.Generator().manual_seed(2))
    fns = {
        "cox": lambda z: survival.cox_ph_loss(z[:, 0], time, event),
        "nll": lambda z: survival.nll_surv_loss(z, bins, event),
        "curve": lambda z: survival.risk_from_logits(z),
    }
    with torch.autocast("cpu", dtype=half):
        z = lin(x)
        assert z.dtype == half
        with HalfOps() as rec:
            out = fns[which](z)
    assert set(rec.ops) <= CAST_AND_VIEW, f"half-precision survival maths: {dict(rec.ops)}"
    ref = fns[which](z.detach().float())
    assert torch.isfinite(out).all()
    if which == "curve":  # an output, cast back to the input dtype
        assert out.dtype == half
        torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)
    else:  # a loss, returned in float32 like torch's own losses under autocast
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
        out.backward()
        assert torch.isfinite(lin.weight.grad).all()


def test_metrics_accept_bfloat16_tensors():
    risk = torch.tensor([0.4, 0.1, 0.3, 0.2], dtype=torch.bfloat16)
    event = torch.tensor([True, False, True, True])
    time = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.bfloat16)
    got = survival.concordance_index(event=event, time=time, risk=risk)
    want = survival.concordance_index(event=event, time=time.float(), risk=risk.float())
    assert got == want


@pytest.mark.parametrize("half", HALF, ids=["bf16", "fp16"])
def test_together_apart_under_autocast_are_finite(half):
    torch.manual_seed(0)
    align = layers.PrototypeUOTAlign(8, num_prototypes=4, max_iter=200)
    anchors = layers.ModalityAnchors(2, 8)
    apart = losses.DistinctContrastive(dim=8, negatives="batch")
    xs = [torch.randn(3, 6, 8), torch.randn(3, 4, 8)]
    with torch.autocast("cpu", dtype=half):
        out = align(xs, [bmask(3, 6, "cpu", pad=2), None], rho=0.5)
        a = anchors(out.prototype_tokens)
        loss = out.loss + apart(a.pooled, a.anchors)
    for t in float_tensors([out.plans, out.prototype_tokens, loss]):
        assert torch.isfinite(t).all()
    loss.float().backward()
    for p in [*align.parameters(), *anchors.parameters(), *apart.parameters()]:
        assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.usefixtures("no_value_checks")
@pytest.mark.parametrize("which", ["contrastive", "soft_assignment"])
def test_alignment_losses_under_autocast_compute_in_float32(which):
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if which == "contrastive":
            args = (lin(torch.randn(3, 2, 4)), lin(torch.randn(2, 4)))
            fn = lambda p, a: losses.distinct_contrastive_loss(p, a, negatives="batch")  # noqa: E731
        else:
            args = (lin(torch.randn(2, 5, 4)), torch.rand(2, 5, 4))
            fn = losses.soft_assignment_loss
        with HalfOps() as rec:
            out = fn(*args)
    ref = fn(*(a.detach().float() for a in args))
    assert set(rec.ops) <= CAST_AND_VIEW, f"half-precision maths: {dict(rec.ops)}"
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_prototype_align_loss_is_float32_under_autocast():
    torch.manual_seed(0)
    layer = layers.PrototypeUOTAlign(4, num_prototypes=3)
    xs = [torch.randn(2, 5, 4), torch.randn(2, 3, 4)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(xs, rho=0.5)
    assert out.loss.dtype == torch.float32
    assert torch.isfinite(out.loss)


def test_layers_accept_half_tokens_under_autocast_only():
    torch.manual_seed(0)
    align = layers.PrototypeUOTAlign(4, num_prototypes=3)
    anchors = layers.ModalityAnchors(2, 4)
    xs = [torch.randn(2, 5, 4, dtype=torch.bfloat16), torch.randn(2, 3, 4, dtype=torch.bfloat16)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = align(xs, rho=0.5)
        pooled = anchors(out.prototype_tokens).pooled
    assert torch.isfinite(out.loss) and torch.isfinite(pooled.float()).all()
    with pytest.raises(TypeError, match=r"`tokens\[0\]` must have the dtype of the"):
        align(xs, rho=0.5)


# The meta device stands in for an accelerator on a CPU-only machine: a tensor created without
# ``device=`` lands on the CPU and mixing it with meta tensors raises. Value checks are skipped on
# meta tensors (they hold no values). Runners that read values by design (solver convergence
# checks, numpy edges, boolean-mask selection) raise a ValueError naming the argument there.
META_UNSUPPORTED = {
    "sinkhorn_uot": "convergence checks read values",
    "partial_uot": "convergence checks read values",
    "PrototypeUOTAlign": "runs the solver",
    "discretize_time": "numpy quantiles",
    "sample_bags": "selects valid rows by a boolean mask",
    "semantic_uot": "runs the solver",
    "sinkhorn_consistency_loss": "runs the solver",
    "SinkhornConsistency": "runs the solver",
}


@pytest.mark.usefixtures("no_value_checks")
@pytest.mark.parametrize("name", sorted(set(RUNNERS) - set(META_UNSUPPORTED)))
def test_meta_device_is_kept(name):
    out = RUNNERS[name](torch.float32, "meta")
    tensors = all_tensors(out)
    assert tensors and all(t.device.type == "meta" for t in tensors)


@pytest.mark.parametrize("name", sorted(set(RUNNERS) - set(META_UNSUPPORTED)))
def test_meta_device_runs_with_value_checks_on(name):
    # value checks cannot read a meta tensor: they are skipped there, not a crash in .item()
    assert minmaxfuse.value_checks_enabled()
    out = RUNNERS[name](torch.float32, "meta")
    tensors = all_tensors(out)
    assert tensors and all(t.device.type == "meta" for t in tensors)


@pytest.mark.parametrize("name", sorted(META_UNSUPPORTED))
@pytest.mark.parametrize("checks", [True, False], ids=["checks_on", "checks_off"])
def test_meta_device_where_values_are_needed_is_a_named_error(name, checks):
    prev = minmaxfuse.set_value_checks(checks)
    try:
        with pytest.raises(ValueError, match=r"^`[a-z_\[\]0-9]+` must hold data .*meta device"):
            RUNNERS[name](torch.float32, "meta")
    finally:
        minmaxfuse.set_value_checks(prev)
