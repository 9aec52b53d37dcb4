"""Seconds per training step and peak memory of TTA and every peer method, side by side.

Usage (from the repository root)::

    python examples/tta/bench.py --device cuda                # B=32, 4096 x 1024-d, 50 tokens
    python examples/tta/bench.py --device cpu --bag 512 --in-dim 256 --batch 8 --steps 3
    python examples/tta/bench.py --methods tta,mcat --bag 256 --steps 2 --in-dim 64   # smoke run

Every method is built by the same code as ``examples/tta_tcga.py --method NAME`` with the same
token size, on the same synthetic WSI-like batch (``--batch`` bags of ``--bag`` patches of
``--in-dim`` features, and ``--tokens`` pathway tokens of up to ``--genes`` genes), and timed for
``--steps`` optimiser steps (Cox loss, AdamW, gradient clipping) after one warm-up step. For each
precision (float32, and bf16 autocast on CUDA) it prints one JSON line per method and then a
table with the time relative to TTA. MMP's prototypes are fitted on the batch first (its
``prepare`` step, not timed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minmaxfuse.survival import cox_ph_loss  # noqa: E402
from tta.batches import ModalityInfo, PatientData  # noqa: E402
from tta.model import build_model  # noqa: E402
from tta.peers import peer_names  # noqa: E402
from tta.train import param_groups  # noqa: E402

DEFAULT_METHODS = ("tta", "late_concat", *peer_names())


def _setup(args: argparse.Namespace, device: torch.device):
    rng = np.random.default_rng(0)
    valid = np.zeros((args.tokens, args.genes), dtype=bool)
    for g in range(args.tokens):
        valid[g, : rng.integers(args.genes // 4, args.genes + 1)] = True
    infos = [
        ModalityInfo("wsi", "bag", in_dim=args.in_dim),
        ModalityInfo(
            "rna", "grouped", valid=valid, token_names=[f"p{g}" for g in range(args.tokens)]
        ),
    ]
    gen = torch.Generator().manual_seed(0)
    b = args.batch
    x = torch.randn(b, args.bag, args.in_dim, generator=gen)
    g = torch.randn(b, args.tokens, args.genes, generator=gen) * torch.as_tensor(valid)
    data = PatientData(
        [f"p{i}" for i in range(b)],
        np.ones(b),
        np.ones(b, dtype=bool),
        infos,
        {"rna": g.numpy()},
        bags=list(x),
    )
    inputs = {
        "wsi": (x.to(device), torch.ones(b, args.bag, dtype=torch.bool, device=device)),
        "rna": (g.to(device), None),
    }
    t = torch.rand(b, generator=gen).to(device) * 100
    e = (torch.rand(b, generator=gen) < 0.4).to(device)
    return infos, data, inputs, t, e


def run(method: str, args: argparse.Namespace, amp: bool) -> dict:
    """Time ``args.steps`` training steps of ``method``; returns the measurements."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    infos, data, inputs, t, e = _setup(args, device)
    hp = SimpleNamespace(
        dim=args.dim,
        dropout=0.25,
        prototypes=32,
        rho_eval=None,
        together_weight=0.5,
        apart_weight=0.5,
        ot_tol=args.ot_tol,
        ot_max_iter=1000,
        ramp_epochs=10.0,
        apart_negatives="anchors",
    )
    model = build_model(method, infos, hp, out_dim=1)
    if hasattr(model, "prepare"):
        model.prepare(data, np.arange(args.batch))
    model = model.to(device)
    opt = torch.optim.AdamW(param_groups(model, 1e-5), lr=1e-4)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(args.steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        ctx = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if amp
            else torch.autocast(device.type, enabled=False)
        )
        with ctx:
            out = model(inputs, progress=args.progress)
        loss, _ = model.objective(cox_ph_loss(out["logits"][:, 0].float(), t, e), out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step > 0:  # the first step is warm-up
            times.append(time.perf_counter() - t0)
    sec = float(np.median(times))
    res = {
        "method": method,
        "device": str(device),
        "bf16": amp,
        "batch": args.batch,
        "bag": args.bag,
        "in_dim": args.in_dim,
        "tokens": args.tokens,
        "dim": args.dim,
        "sec_per_step": sec,
        "sec_per_epoch": sec * max(1, args.patients // args.batch),
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    if method.startswith("tta"):
        res["rho"] = out["align"].rho
    if device.type == "cuda":
        res["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return res


def table(rows: list[dict]) -> str:
    """Markdown table of one precision's rows, with the time relative to TTA."""
    ref = next((r["sec_per_step"] for r in rows if r["method"] == "tta"), None)
    mem = "peak_mem_gib" in rows[0]
    head = "| method | s / step | x TTA | s / epoch | parameters |" + (" peak GiB |" if mem else "")
    lines = [head, "|---" * (5 + mem) + "|"]
    for r in rows:
        rel = f"{r['sec_per_step'] / ref:.2f}" if ref else "-"
        line = (
            f"| {r['method']} | {r['sec_per_step']:.4f} | {rel} | {r['sec_per_epoch']:.2f} | "
            f"{r['n_params']:,} |"
        )
        lines.append(line + (f" {r['peak_mem_gib']:.2f} |" if mem else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every method in float32 (and bf16 on CUDA); print JSON lines, then tables."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help="comma list of --method names (default: tta, late_concat and every peer)",
    )
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--bag", type=int, default=4096)
    p.add_argument("--in-dim", type=int, default=1024)
    p.add_argument("--dim", type=int, default=256, help="token size D of every method")
    p.add_argument("--tokens", type=int, default=50)
    p.add_argument("--genes", type=int, default=100, help="max genes per pathway token")
    p.add_argument("--patients", type=int, default=288, help="training patients per epoch")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: torch's own")
    p.add_argument(
        "--progress",
        type=float,
        default=0.0,
        help="epochs done (0: TTA's rho ~ 0.106, the slowest partial transport)",
    )
    p.add_argument("--ot-tol", type=float, default=1e-3)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    precisions = [False, True] if args.device.startswith("cuda") else [False]
    for amp in precisions:
        rows = []
        for m in methods:
            rows.append(run(m, args, amp))
            print(json.dumps(rows[-1]), flush=True)
        print(
            f"\n{'bf16 autocast' if amp else 'float32'}, {args.device}, B={args.batch}, "
            f"{args.bag} x {args.in_dim} patches, {args.tokens} pathway tokens, D={args.dim}"
        )
        print(table(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
