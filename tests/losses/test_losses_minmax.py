import math
import pickle

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minmaxfuse.losses import (
    Constant,
    Cosine,
    Linear,
    MinMaxObjective,
    SigmoidRamp,
    Term,
    mass_ramp,
)

reals = st.floats(0, 5, allow_nan=False)  # schedules are nonnegative (weights, masses)


@given(reals, reals, st.integers(1, 50), st.integers(0, 20))
def test_schedules_hit_endpoints(start, end, steps, delay):
    for cls in (Linear, Cosine, SigmoidRamp):
        s = cls(start, end, steps=steps, delay=delay)
        assert math.isclose(s(delay + steps), end, abs_tol=1e-12)
        assert math.isclose(s(delay + steps + 100), end, abs_tol=1e-12)
        lo, hi = min(start, end), max(start, end)
        for step in range(0, delay + steps + 2):
            assert lo - 1e-12 <= s(step) <= hi + 1e-12
    for cls in (Linear, Cosine):
        s = cls(start, end, steps=steps, delay=delay)
        for step in range(0, delay + 1):
            assert s(step) == start
        mid = s(delay + steps // 2) if steps % 2 == 0 else None
        if mid is not None:
            assert math.isclose(mid, (start + end) / 2, abs_tol=1e-9)
    # the TTA ramp starts at start + (end - start) e^-5, as in the authors' code
    r = SigmoidRamp(start, end, steps=steps, delay=delay)
    assert math.isclose(r(0), start + (end - start) * math.exp(-5), abs_tol=1e-12)


def test_schedules_monotone_and_tta_values():
    for cls in (Linear, Cosine, SigmoidRamp):
        s = cls(0.0, 1.0, steps=20)
        vals = [s(i) for i in range(25)]
        assert all(b >= a for a, b in zip(vals, vals[1:]))
    assert math.isclose(mass_ramp(0.0), 0.1 + 0.9 * math.exp(-5))
    assert math.isclose(mass_ramp(0.2), 0.1 + 0.9 * math.exp(-5 * 0.64))  # epoch 2 of 10: 0.137
    assert round(mass_ramp(0.2), 3) == 0.137 and round(mass_ramp(0.8), 2) == 0.84
    assert mass_ramp(1.0) == 1.0 and mass_ramp(3.0) == 1.0 and mass_ramp(-1.0) == mass_ramp(0.0)
    ramp = SigmoidRamp(steps=10)
    assert all(math.isclose(ramp(i), mass_ramp(i / 10)) for i in range(12))
    assert Constant(0.3)(10**6) == 0.3
    assert pickle.loads(pickle.dumps(ramp)) == ramp


def test_objective_total_signs_weights():
    obj = MinMaxObjective(
        {"task": 1.0, "together": Linear(0.0, 0.5, steps=4), "diversity": Term(0.2, "max")}
    )
    vals = {
        "task": torch.tensor(2.0),
        "together": torch.tensor(3.0),
        "diversity": torch.tensor(5.0),
    }
    torch.testing.assert_close(obj(**vals), torch.tensor(2.0 - 1.0))
    for _ in range(4):
        obj.step()
    comps = obj.forward_components(vals)
    torch.testing.assert_close(comps.total, torch.tensor(2.0 + 1.5 - 1.0))
    assert list(comps.raw) == ["task", "together", "diversity"]
    torch.testing.assert_close(comps.weighted["diversity"], torch.tensor(-1.0))
    assert comps.weights == {"task": 1.0, "together": 0.5, "diversity": 0.2}
    torch.testing.assert_close(sum(comps.weighted.values()), comps.total)
    assert comps.step == 4 and obj.global_step == 4
    assert obj.sign("diversity") == -1.0 and obj.sign("task") == 1.0
    # None skips a term for this call
    torch.testing.assert_close(
        obj(task=torch.tensor(2.0), together=None, diversity=torch.tensor(0.0)), torch.tensor(2.0)
    )


def test_gradients_flow_with_signs():
    x = torch.tensor(1.0, requires_grad=True)
    obj = MinMaxObjective({"a": 2.0, "b": Term(3.0, "max")})
    obj(a=x**2, b=x).backward()
    assert x.grad.item() == pytest.approx(2 * 2 - 3)


@given(st.integers(0, 60))
def test_state_dict_round_trip(n_steps):
    def make():
        return MinMaxObjective(
            {"task": 1.0, "apart": Cosine(0.0, 0.5, steps=30, delay=5)},
            curricula={"rho": SigmoidRamp(steps=40)},
        )

    obj = make()
    for _ in range(n_steps):
        obj.step()
    sd = obj.state_dict()
    other = make()
    other.load_state_dict(sd)
    assert other.global_step == n_steps
    assert other.weight("apart") == obj.weight("apart")
    assert other.current("rho") == obj.current("rho") == mass_ramp(min(n_steps / 40, 1))
    # survives serialisation through torch.save / torch.load
    import io

    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    third = make()
    third.load_state_dict(torch.load(buf, weights_only=False))
    assert third.global_step == n_steps


@pytest.mark.parametrize(
    "terms, kwargs, exc, match",
    [
        ({}, {}, ValueError, "`terms` must be a non-empty mapping"),
        ({"a": Term(1.0, "up")}, {}, ValueError, "mode` must be one of"),
        ({"a": "x"}, {}, TypeError, "must be a number or a Schedule"),
        ({"a": -1.0}, {}, ValueError, "must be >= 0"),
        ({"a": 1.0}, {"curricula": {"a": 1.0}}, ValueError, "already a term"),
        ({"not a name": 1.0}, {}, ValueError, "identifiers"),
    ],
)
def test_construction_errors(terms, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MinMaxObjective(terms, **kwargs)


def test_call_errors():
    obj = MinMaxObjective({"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        obj(a=torch.tensor(1.0))
    with pytest.raises(ValueError, match="unknown"):
        obj(a=torch.tensor(1.0), b=torch.tensor(1.0), c=torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"`a` must be a scalar tensor \(shape \(\)\); got \(2,\)"):
        obj(a=torch.ones(2), b=torch.tensor(1.0))
    with pytest.raises(TypeError, match="`b` must be a torch.Tensor"):
        obj(a=torch.tensor(1.0), b=1.0)
    with pytest.raises(ValueError, match="given twice"):
        obj({"a": torch.tensor(1.0)}, a=torch.tensor(1.0), b=torch.tensor(1.0))
    with pytest.raises(KeyError):
        obj.current("zzz")
    with pytest.raises(ValueError, match="`steps` must be >= 1"):
        Linear(0, 1, steps=0)
    with pytest.raises(TypeError, match="`step` must be an int"):
        Linear(0, 1)(0.5)
    with pytest.raises(ValueError, match="`sharpness` must be finite and > 0"):
        mass_ramp(0.5, sharpness=0.0)
    assert "step=0" in repr(obj)
