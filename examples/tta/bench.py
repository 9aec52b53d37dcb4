"""Speed and memory of one TTA training step (for a GPU check; runs on CPU with small sizes).

Usage (from the repository root)::

    python examples/tta/bench.py --device cuda                # B=32, 4096 x 1024-d, 50 tokens
    python examples/tta/bench.py --device cpu --bag 256 --steps 2 --in-dim 64   # smoke run

For each precision (fp32, and bf16 autocast on CUDA, with the OT in float32) it times
``--steps`` optimiser steps after one warm-up step and prints seconds per step, seconds per
epoch for ``--patients`` training patients, and the peak allocated GPU memory.
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
from tta.batches import ModalityInfo  # noqa: E402
from tta.model import build_model  # noqa: E402
from tta.train import param_groups  # noqa: E402


def run(args: argparse.Namespace, amp: bool) -> dict:
    """Time ``args.steps`` training steps; returns the measurements."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    valid = np.zeros((args.tokens, args.genes), dtype=bool)
    rng = np.random.default_rng(0)
    for g in range(args.tokens):
        valid[g, : rng.integers(args.genes // 4, args.genes + 1)] = True
    infos = [
        ModalityInfo("wsi", "bag", in_dim=args.in_dim),
        ModalityInfo(
            "rna", "grouped", valid=valid, token_names=[f"p{g}" for g in range(args.tokens)]
        ),
    ]
    hp = SimpleNamespace(
        dim=256,
        dropout=0.3,
        prototypes=32,
        rho_eval=None,
        together_weight=0.5,
        apart_weight=0.5,
        ot_tol=args.ot_tol,
        ot_max_iter=1000,
        ramp_epochs=10.0,
    )
    model = build_model("tta", infos, hp, out_dim=1).to(device)
    opt = torch.optim.AdamW(param_groups(model, 1e-5), lr=1e-4)
    b = args.batch
    x = torch.randn(b, args.bag, args.in_dim, device=device)
    mask = torch.ones(b, args.bag, dtype=torch.bool, device=device)
    g = torch.randn(b, args.tokens, args.genes, device=device) * torch.as_tensor(
        valid, device=device
    )
    t = torch.rand(b, device=device) * 100
    e = torch.rand(b, device=device) < 0.4
    inputs = {"wsi": (x, mask), "rna": (g, None)}
    if device.type == "cuda":
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
    sec = float(np.mean(times))
    res = {
        "device": str(device),
        "bf16": amp,
        "batch": b,
        "bag": args.bag,
        "in_dim": args.in_dim,
        "tokens": args.tokens,
        "rho": out["align"].rho,
        "sec_per_step": sec,
        "sec_per_epoch": sec * max(1, args.patients // b),
    }
    if device.type == "cuda":
        res["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return res


def main(argv: list[str] | None = None) -> int:
    """Run fp32 (and bf16 on CUDA) and print one JSON line each."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--bag", type=int, default=4096)
    p.add_argument("--in-dim", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=50)
    p.add_argument("--genes", type=int, default=100, help="max genes per pathway token")
    p.add_argument("--patients", type=int, default=288, help="training patients per epoch")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument(
        "--progress",
        type=float,
        default=0.0,
        help="epochs done (0: rho ~ 0.106, the slowest partial transport)",
    )
    p.add_argument("--ot-tol", type=float, default=1e-3)
    args = p.parse_args(argv)
    precisions = [False, True] if args.device.startswith("cuda") else [False]
    for amp in precisions:
        print(json.dumps(run(args, amp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
