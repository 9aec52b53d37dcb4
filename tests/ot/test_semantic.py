"""``semantic_uot`` (SP²OT MM loop): naive float64 reference, properties, memory, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from minmaxfuse.ot import partial_uot, semantic_uot

F64 = torch.float64
TIGHT = dict(max_iter=20000, tol=1e-13)


def _problem(seed=0, B=3, N=7, K=3, D=4, dtype=F64, pad=True):
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(B, N, K, generator=g, dtype=dtype)
    cost = -torch.log_softmax(logits, -1)
    feats = torch.randn(B, N, D, generator=g, dtype=dtype)
    mask = torch.ones(B, N, dtype=torch.bool)
    if pad and B > 1:
        mask[-1, N - 2 :] = False
    return cost, feats, mask


# ------------------------------------------------------------------ independent naive reference
def _naive_partial(C, rho, eps, gamma, n_iter=20000):
    """One problem, scaling-domain Sinkhorn with an explicit sink column (python loop)."""
    N, K = C.shape
    a = torch.full((N,), 1.0 / N, dtype=F64)
    b = torch.cat([torch.full((K,), rho / K, dtype=F64), torch.tensor([1.0 - rho], dtype=F64)])
    Cx = torch.cat([C, torch.zeros(N, 1, dtype=F64)], 1)
    Cx = Cx - Cx.min(1, keepdim=True).values  # a row shift is exact for hard rows
    G = torch.exp(-Cx / eps)
    expo = torch.cat([torch.full((K,), gamma / (gamma + eps), dtype=F64), torch.ones(1, dtype=F64)])
    u, v = torch.ones(N, dtype=F64), torch.ones(K + 1, dtype=F64)
    for _ in range(n_iter):
        u_old = u
        u = a / (G @ v)
        v = (b / (G.T @ u)) ** expo
        if torch.max(torch.abs(u / u_old - 1)) < 1e-14:
            break
    P = u[:, None] * G * v[None, :]
    return P[:, :K], P


def _naive_objective(Q, P_ext, C, S, lam, rho, eps, gamma):
    N, K = Q.shape
    a = torch.full((N,), 1.0 / N, dtype=F64)
    b = torch.cat([torch.full((K,), rho / K, dtype=F64), torch.tensor([1.0 - rho], dtype=F64)])
    ab = a[:, None] * b[None, :]
    pos = P_ext > 0
    kl = (P_ext[pos] * torch.log(P_ext[pos] / ab[pos])).sum() - P_ext.sum() + ab.sum()
    c = Q.sum(0)
    bk = b[:K]
    kl_c = (c * torch.log(c / bk)).sum() - c.sum() + bk.sum()
    return (Q * C).sum() - lam * (S * (Q @ Q.T)).sum() + eps * kl + gamma * kl_c


def _naive_mm(C, X, rho, lam, eps=0.1, gamma=1.0, max_outer=100, outer_tol=1e-6):
    """Unbatched MM with the explicit N x N similarity; returns plan, objectives."""
    N, K = C.shape
    Xh = X / X.norm(dim=1, keepdim=True)
    S = Xh @ Xh.T
    Q = torch.full((N, K), rho / (N * K), dtype=F64)
    objs = []
    for _ in range(max_outer):
        Ct = C - lam * (S + S.T) @ Q
        Q, P_ext = _naive_partial(Ct, rho, eps, gamma)
        objs.append(float(_naive_objective(Q, P_ext, C, S, lam, rho, eps, gamma)))
        if len(objs) > 1 and abs(objs[-1] - objs[-2]) < outer_tol:
            break
    return Q, objs


@pytest.mark.parametrize("lam", [0.1, 1.0, 3.0])
@pytest.mark.parametrize("rho", [0.5, 1.0])
def test_matches_naive_float64_loop(lam, rho):
    cost, feats, mask = _problem(seed=int(lam * 10))
    res = semantic_uot(cost, feats, rho, semantic=lam, mask=mask, outer_tol=1e-11, **TIGHT)
    assert bool(res.converged.all())
    for n in range(cost.shape[0]):
        v = mask[n]
        Q, objs = _naive_mm(cost[n, v], feats[n, v], rho, lam, outer_tol=1e-11)
        torch.testing.assert_close(res.plan[n, v], Q, rtol=1e-7, atol=1e-10)
        assert torch.all(res.plan[n, ~v] == 0)
        assert res.value[n].item() == pytest.approx(objs[-1], abs=1e-9)
        # the objective never increases along the MM iterations (naive and library)
        assert all(b <= a + 1e-10 for a, b in zip(objs, objs[1:]))
        h = res.history[: int(res.n_outer[n]), n]
        assert torch.all(h.diff() <= 1e-10)
        assert abs(int(res.n_outer[n]) - len(objs)) <= 1


def test_semantic_term_concentrates_similar_tokens():
    # two groups of identical features: <S, QQ^T> = sum over groups of ||group's column mass||^2,
    # which a larger semantic weight drives up (each group picks fewer prototypes)
    cost, _, _ = _problem(seed=3, B=1, N=8, K=3, pad=False)
    feats = torch.zeros(1, 8, 2, dtype=F64)
    feats[0, :4, 0] = 1.0
    feats[0, 4:, 1] = 1.0
    reward = []
    for lam in (0.0, 0.5, 2.0, 8.0):
        q = semantic_uot(cost, feats, 1.0, semantic=lam, **TIGHT).plan[0]
        reward.append(float(q[:4].sum(0).square().sum() + q[4:].sum(0).square().sum()))
    assert reward == sorted(reward) and reward[-1] > reward[0] + 0.05, reward


# ------------------------------------------------------------------ properties
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), k=st.integers(1, 4))
def test_zero_semantic_is_partial_uot(seed, n, k):
    cost, feats, mask = _problem(seed, B=2, N=n + 2, K=k)
    r0 = semantic_uot(cost, feats, 0.4, semantic=0.0, mask=mask)
    ref = partial_uot(cost, 0.4, mask=mask, grad="detach")
    torch.testing.assert_close(r0.plan, ref.plan, rtol=0, atol=0)
    torch.testing.assert_close(r0.value, ref.value, rtol=0, atol=0)
    assert r0.n_outer.tolist() == [1, 1]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), lam=st.sampled_from([0.1, 1.0]), pad=st.integers(1, 3))
def test_padding_and_batching_change_nothing(seed, lam, pad):
    cost, feats, _ = _problem(seed, B=2, N=5, K=3, pad=False)
    ref = [semantic_uot(cost[i : i + 1], feats[i : i + 1], 0.5, semantic=lam) for i in range(2)]
    nan = float("nan")
    cp = torch.cat([cost, torch.full((2, pad, 3), nan, dtype=F64)], 1)
    fp = torch.cat([feats, torch.full((2, pad, 4), nan, dtype=F64)], 1)
    mp = torch.ones(2, 5 + pad, dtype=torch.bool)
    mp[:, 5:] = False
    r = semantic_uot(cp, fp, 0.5, semantic=lam, mask=mp)
    for i in range(2):
        torch.testing.assert_close(r.plan[i, :5], ref[i].plan[0], rtol=1e-9, atol=1e-14)
        assert torch.all(r.plan[i, 5:] == 0)
        assert int(r.n_outer[i]) == int(ref[i].n_outer[0])
    assert torch.isfinite(r.plan).all() and torch.isfinite(r.value).all()


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), lam=st.sampled_from([0.1, 1.0]))
def test_row_permutation_and_feature_scale(seed, lam):
    cost, feats, mask = _problem(seed, B=2, N=6, K=3, pad=False)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(6, generator=g)
    scale = torch.rand(2, 6, 1, generator=g, dtype=F64) * 10 + 0.1
    kw = dict(semantic=lam, tol=1e-11, max_iter=5000)
    r = semantic_uot(cost, feats, 0.6, **kw)
    rp = semantic_uot(cost[:, perm], feats[:, perm] * scale, 0.6, **kw)
    torch.testing.assert_close(rp.plan, r.plan[:, perm], rtol=1e-7, atol=1e-11)
    h = r.history.nan_to_num(-math.inf)
    assert torch.all(h.diff(dim=0)[torch.isfinite(h.diff(dim=0))] <= 1e-10)


def test_marginals_and_sink():
    cost, feats, mask = _problem(seed=5)
    r = semantic_uot(cost, feats, 0.3, semantic=1.0, mask=mask, **TIGHT)
    nv = mask.sum(-1, keepdim=True).double()
    rows = r.plan.sum(-1) + r.sink
    torch.testing.assert_close(rows, mask.double() / nv, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(r.sink.sum(-1), torch.full((3,), 0.7, dtype=F64), rtol=1e-9, atol=0)


def test_stops_at_max_outer_unconverged():
    cost, feats, mask = _problem(seed=1)
    r = semantic_uot(cost, feats, 0.5, semantic=3.0, mask=mask, max_outer=2, outer_tol=0.0)
    assert r.n_outer.tolist() == [2, 2, 2] and not bool(r.converged.any())
    assert r.history.shape == (2, 3)


# ------------------------------------------------------------------ memory
class _LargestAlloc(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_no_n_by_n_tensor_at_n_20000():
    N, K, D = 20000, 3, 4
    cost, feats, _ = _problem(seed=0, B=1, N=N, K=K, D=D, dtype=torch.float32, pad=False)
    probe = _LargestAlloc()
    with probe:
        torch.ones(50, 50) @ torch.ones(50, 50)  # the probe sees every op's output
    assert probe.largest == 2500
    probe = _LargestAlloc()
    with probe:
        r = semantic_uot(cost, feats, 0.5, semantic=0.1, max_outer=3, max_iter=50)
    assert r.plan.shape == (1, N, K)
    # everything stays O(N (D + K)); an N x N similarity would have 4e8 entries
    assert probe.largest <= 4 * N * (K + 1), probe.largest


# ------------------------------------------------------------------ gradients
def test_gradcheck_single_step_is_exact():
    # with max_outer=1 the linearisation point is the constant Q_0, so the last-step gradient is
    # the exact gradient of the map
    cost, feats, mask = _problem(seed=2, B=2, N=4, K=2, D=3)
    W = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(9), dtype=F64)

    def fn(c, f):
        r = semantic_uot(
            c,
            f,
            0.5,
            semantic=0.7,
            mask=mask,
            max_outer=1,
            grad="implicit",
            tol=1e-13,
            max_iter=20000,
        )
        return (r.plan * W).sum(), r.value.sum()

    c = cost.clone().requires_grad_()
    f = feats.clone().requires_grad_()
    assert torch.autograd.gradcheck(fn, (c, f), atol=1e-6, rtol=1e-5, fast_mode=True)


def test_gradient_is_that_of_the_last_inner_solve():
    cost, feats, mask = _problem(seed=4, B=2, N=6, K=3, D=3)
    W = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    lam, kw = 0.8, dict(mask=mask, **TIGHT)
    full = semantic_uot(cost, feats, 0.5, semantic=lam, **kw)
    # each problem stops on its own: its last linearisation point is its plan after T_n - 1 steps
    T = full.n_outer.tolist()
    assert min(T) >= 3
    q_lin = torch.stack(
        [
            semantic_uot(cost, feats, 0.5, semantic=lam, max_outer=t - 1, **kw).plan[n]
            for n, t in enumerate(T)
        ]
    )
    grads = {}
    for mode in ("implicit", "unroll", "reference"):
        c = cost.clone().requires_grad_()
        f = feats.clone().requires_grad_()
        if mode == "reference":
            fh = f / f.norm(dim=-1, keepdim=True)
            sq = fh @ (fh.transpose(1, 2) @ q_lin)
            plan = partial_uot(c - 2 * lam * sq, 0.5, grad="implicit", **kw).plan
        else:
            g = dict(grad=mode) if mode == "implicit" else dict(grad=mode, max_iter=3000)
            plan = semantic_uot(c, f, 0.5, semantic=lam, **(kw | g)).plan
            torch.testing.assert_close(plan.detach(), full.plan, rtol=1e-7, atol=1e-12)
        grads[mode] = torch.autograd.grad((plan * W).sum(), (c, f))
    for mode in ("implicit", "unroll"):
        for gm, gr in zip(grads[mode], grads["reference"]):
            torch.testing.assert_close(gm, gr, rtol=1e-5, atol=1e-9)
    assert grads["implicit"][1].abs().sum() > 0


def test_detach_gives_no_graph():
    cost, feats, mask = _problem()
    c = cost.clone().requires_grad_()
    r = semantic_uot(c, feats, 0.5, mask=mask)
    assert not r.plan.requires_grad and not r.value.requires_grad
