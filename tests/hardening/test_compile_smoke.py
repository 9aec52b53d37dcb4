"""``torch.compile`` smoke tests: compiled == eager for the solver and the Together/Apart forward.

Backend: ``aot_eager`` (dynamo tracing + AOTAutograd, no code generation). Inductor needs a C++
compiler and, on the 2-core CI VM, took 135 s to compile the solver alone (measured under a load
of ~5), so the inductor variant is opt-in: set ``MINMAXFUSE_TEST_INDUCTOR=1``. The solver's
convergence checks are graph breaks by design (they read a flag every ``check_every``
iterations); value checks are skipped while compiling.

Measured on the shared 2-core VM (load ~5, torch 2.13 CPU): solver forward + implicit backward
with aot_eager 17-27 s, Together/Apart forward with aot_eager 30 s (both marked ``slow``), solver
forward with inductor 135 s.
"""

from __future__ import annotations

import os
import shutil
import warnings

import pytest
import torch

from minmaxfuse import layers, losses, ot


def _compile_or_skip(fn, backend):
    try:
        import torch._dynamo  # noqa: F401
    except Exception as exc:  # pragma: no cover - platform without dynamo
        pytest.skip(f"torch._dynamo unavailable: {exc}")
    if backend == "inductor":
        if not os.environ.get("MINMAXFUSE_TEST_INDUCTOR"):
            pytest.skip("inductor compile is slow on CPU (minutes); set MINMAXFUSE_TEST_INDUCTOR=1")
        if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
            pytest.skip("inductor on CPU needs a C++ compiler; none on PATH")
    torch._dynamo.reset()
    return torch.compile(fn, backend=backend)


def solve(cost):
    res = ot.sinkhorn_uot(cost, reg=0.1, reg_m=(float("inf"), 1.0), max_iter=200, tol=1e-8)
    return res.plan, res.value, res.f, res.g


@pytest.mark.slow  # aot_eager: 17-27 s (trace + backward) on the loaded 2-core VM
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_solver_matches_eager(backend):
    compiled = _compile_or_skip(solve, backend)
    cost = torch.rand(2, 6, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the CPU engine's thread switch must stay out of the trace
    try:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            got = compiled(cost)
    finally:
        torch.set_num_threads(threads)
    assert not [w for w in rec if "set_num_threads" in str(w.message)]  # finding 15
    want = solve(cost)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    # implicit gradients through the compiled call
    (g_got,) = torch.autograd.grad(got[1].sum(), cost)
    (g_want,) = torch.autograd.grad(want[1].sum(), cost)
    torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # ~30 s of dynamo tracing on the loaded 2-core VM
def test_compiled_together_apart_forward_matches_eager():
    torch.manual_seed(0)
    align = layers.PrototypeUOTAlign(8, num_prototypes=4, max_iter=100)
    anchors = layers.ModalityAnchors(2, 8)
    apart = losses.DistinctContrastive(dim=8)
    xs = [torch.randn(3, 6, 8), torch.randn(3, 4, 8)]
    m0 = torch.ones(3, 6, dtype=torch.bool)
    m0[1, 4:] = False

    def forward(xs, m0):
        out = align(xs, [m0, None], rho=0.5)
        a = anchors(out.prototype_tokens)
        return out.loss, apart(a.pooled, a.anchors), a.pooled

    compiled = _compile_or_skip(forward, "aot_eager")
    got = compiled(xs, m0)
    want = forward(xs, m0)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
