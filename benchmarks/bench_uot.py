"""Benchmark: ``minmaxfuse.ot.sinkhorn_uot`` vs POT's unbalanced Sinkhorn (looped over the batch).

Both solve the same B problems ``cost (B, N, K)`` in [0, 2] (float32), ``reg=0.1``,
``reg_m=1.0``, ``reg_type="kl"``, exactly ``--iters`` iterations (no early stop), then
backpropagate ``loss = (plan * W).sum()`` to the cost. POT runs
``ot.unbalanced.sinkhorn_knopp_unbalanced`` once per problem with the torch backend and plain
autograd through its loop; ours runs ``grad="implicit"`` (and optionally ``"unroll"``).

Time: median over ``--repeats`` runs after a warm-up, wall clock and process CPU time, in this
process. Peak memory: one fresh subprocess per configuration; after a warm-up run the RSS
high-water mark is reset (``/proc/self/clear_refs``) and the increase of ``VmHWM`` over the RSS
before the measured run is reported (``MALLOC_MMAP_THRESHOLD_=65536`` so freed blocks go back to
the OS). Usage::

    python benchmarks/bench_uot.py                 # N in 512, 4096, 16384; B=32, K=32
    python benchmarks/bench_uot.py --n 4096 --repeats 3 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

from minmaxfuse.ot import sinkhorn_uot

REG, REG_M = 0.1, 1.0


def make_problem(B, N, K, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    cost = (torch.rand(B, N, K, generator=g) * 2).to(device)
    W = torch.randn(B, N, K, generator=g).to(device)
    return cost, W


def run_pot(cost, W, iters):
    import ot

    B, N, K = cost.shape
    c = cost.clone().requires_grad_()
    a = torch.full((N,), 1.0 / N, dtype=cost.dtype, device=cost.device)
    b = torch.full((K,), 1.0 / K, dtype=cost.dtype, device=cost.device)
    plans = [
        ot.unbalanced.sinkhorn_knopp_unbalanced(
            a, b, c[i], REG, REG_M, reg_type="kl", numItermax=iters, stopThr=0.0
        )
        for i in range(B)
    ]
    plan = torch.stack(plans)
    (plan * W).sum().backward()
    return plan.detach(), c.grad


def run_ours(cost, W, iters, grad="implicit"):
    c = cost.clone().requires_grad_()
    res = sinkhorn_uot(c, reg=REG, reg_m=REG_M, max_iter=iters, tol=0.0, grad=grad)
    (res.plan * W).sum().backward()
    return res.plan.detach(), c.grad


IMPLS = {
    "pot": run_pot,
    "ours-implicit": run_ours,
    "ours-unroll": lambda c, w, i: run_ours(c, w, i, "unroll"),
}


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_impl(name, cost, W, iters, repeats, device):
    fn = IMPLS[name]
    fn(cost, W, iters)  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn(cost, W, iters)
        _sync(device)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def _status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def _peak_child(name, B, N, K, iters, threads):
    """Runs inside a fresh subprocess: peak extra RSS (bytes) of one fwd+bwd."""
    torch.set_num_threads(threads)
    cost, W = make_problem(B, N, K, "cpu")
    IMPLS[name](cost, W, iters)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status("VmRSS")
    IMPLS[name](cost, W, iters)
    return _status("VmHWM") - base


def peak_memory(name, B, N, K, iters, threads):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    args = [sys.executable, __file__, "--child", name, str(B), str(N), str(K), str(iters)]
    args.append(str(threads))
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def peak_memory_cuda(name, cost, W, iters):
    IMPLS[name](cost, W, iters)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    IMPLS[name](cost, W, iters)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--b", type=int, default=32)
    p.add_argument("--n", type=int, nargs="+", default=[512, 4096, 16384])
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--impls", nargs="+", default=["pot", "ours-implicit"])
    p.add_argument("--mem-iters", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (both impls)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, {threads} torch threads, device {args.device}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"# B={args.b} K={args.k} float32 reg={REG} reg_m={REG_M} iters={args.iters}")
    header = "| N | impl | wall s (fwd+bwd) | cpu s | speed-up (wall) | "
    if not args.no_memory:
        header += "peak MiB " + " | ".join(f"@{i} it" for i in args.mem_iters) + " | "
    header += "max plan diff vs POT |"
    print(header)
    for N in args.n:
        cost, W = make_problem(args.b, N, args.k, args.device)
        ref_plan = None
        times = {}
        for name in args.impls:
            wall, cpu = time_impl(name, cost, W, args.iters, args.repeats, args.device)
            times[name] = wall
            plan, _ = IMPLS[name](cost, W, args.iters)
            if name == "pot":
                ref_plan = plan
            diff = "" if ref_plan is None else f"{float((plan - ref_plan).abs().max()):.1e}"
            mems = []
            if not args.no_memory:
                for it in args.mem_iters:
                    if args.device.startswith("cuda"):
                        m = peak_memory_cuda(name, cost, W, it)
                    else:
                        m = peak_memory(name, args.b, N, args.k, it, threads)
                    mems.append(f"{m / 2**20:.0f}")
            speed = times.get("pot", float("nan")) / wall
            print(
                f"| {N} | {name} | {wall:.3f} | {cpu:.3f} | {speed:.1f}x | "
                + "".join(f"{m} | " for m in mems)
                + f"{diff} |",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        name, B, N, K, iters, threads = sys.argv[2:8]
        peak = _peak_child(name, int(B), int(N), int(K), int(iters), int(threads))
        print(json.dumps({"peak": peak}))
    else:
        main()
