"""Training and evaluation of one fold: AdamW + warm-up/cosine, clipping, bf16 on CUDA, resume."""

from __future__ import annotations

import math
import random
import time as _time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from minmaxfuse.survival import (
    CoxPHLoss,
    NLLSurvLoss,
    assign_time_bins,
    concordance_index,
    risk_from_logits,
)

from . import dist as _dist
from .batches import PatientData
from .report import load_torch, save_torch

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is in the examples extra

    def tqdm(it=None, **kw):  # noqa: D103
        return it


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN/inf; the message names fold, epoch, step and the terms."""


class Interrupted(RuntimeError):
    """Raised by the ``--interrupt-after`` testing hook to simulate a killed run."""


@dataclass
class TrainConfig:
    """Optimisation settings of one fold (defaults: TTA's, shortened for CPU)."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-5
    warmup_epochs: float = 2.0
    grad_clip: float = 5.0
    bag_size: int = 4096
    eval_chunk: int = 16384
    eval_batch: int = 64  # patients per evaluation batch (all patches of each) ...
    eval_patches: int = 131072  # ... and at most this many padded patches per batch
    loss: str = "cox"
    nll_alpha: float = 0.5
    select: str = "val_cindex"  # or "val_loss" / "last"
    min_epoch: int = 0
    patience: int = 0  # stop after this many epochs without a better validation score (0: never)
    seed: int = 1
    amp: bool = True  # bf16 autocast on CUDA only
    inject_nan_step: int = -1  # testing hook: make the loss NaN at this global step
    interrupt_after: int = -1  # testing hook: stop (as if killed) after this many epochs


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms and other < 2-D tensors (as TTA)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(total: int, warmup: int):
    """LR multiplier: linear warm-up over ``warmup`` steps, cosine to 0 at ``total``."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return f


class SurvivalCriterion:
    """Cox partial likelihood (default) or discrete-time NLL with bins from the training fold."""

    def __init__(
        self,
        kind: str,
        *,
        edges: Tensor | None = None,
        alpha: float = 0.0,
        gather: bool = False,
    ) -> None:
        self.kind = kind
        self.edges = edges
        # gather=True: under torchrun the Cox risk sets span the global batch of all ranks
        self.cox_train = CoxPHLoss(ties="efron", gather=gather)
        self.cox = CoxPHLoss(ties="efron")  # whole-split evaluation: every rank has all rows
        self.nll = NLLSurvLoss(alpha=alpha)

    @property
    def out_dim(self) -> int:
        return 1 if self.kind == "cox" else int(self.edges.numel()) - 1

    def __call__(
        self, logits: Tensor, time: Tensor, event: Tensor, *, train: bool = False
    ) -> Tensor:
        if self.kind == "cox":
            cox = self.cox_train if train else self.cox
            return cox(logits[:, 0].float(), time, event)
        bins = assign_time_bins(time, self.edges.to(time.device))
        return self.nll(logits.float(), bins, event)

    def risk(self, logits: Tensor) -> Tensor:
        """Higher = worse: the Cox log-risk, or -sum(S) for the discrete model."""
        if self.kind == "cox":
            return logits[:, 0].float()
        return risk_from_logits(logits.float())


def c_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C (NaN when there is no comparable pair)."""
    e = np.asarray(event, bool)
    if not e.any():
        return float("nan")
    try:
        return float(
            concordance_index(
                event=e,
                time=np.asarray(time, np.float64),
                risk=np.asarray(risk, np.float64),
            )
        )
    except ValueError:
        return float("nan")


@torch.no_grad()
def predict(
    model: nn.Module,
    data: PatientData,
    rows: np.ndarray,
    crit: SurvivalCriterion,
    cfg: TrainConfig,
    device: torch.device,
    *,
    present: Tensor | None = None,
    keep_extras: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Risk (P,) and logits (P, T) of ``rows`` using all patches; optional per-patient extras."""
    model.eval()
    risks, logits_all, extras = [], [], []
    for s, e in _eval_chunks(data, rows, cfg):
        r = rows[s:e]
        inputs = data.batch(r, device)
        pres = None if present is None else present[s:e].to(device)
        try:
            with _autocast(device, cfg.amp):
                out = model(inputs, progress=None, present=pres, chunk=cfg.eval_chunk)
        except ValueError as exc:  # a finiteness check of a minmaxfuse layer fired
            if "finite" not in str(exc):
                raise
            raise NonFiniteLossError(f"non-finite values while scoring patients: {exc}") from exc
        lg = out["logits"].float()
        risks.append(crit.risk(lg).cpu().numpy())
        logits_all.append(lg.cpu().numpy())
        if keep_extras:
            extras.extend(model.explain(out, inputs, pres) if hasattr(model, "explain") else [])
    return np.concatenate(risks), np.concatenate(logits_all), extras


def _eval_chunks(data: PatientData, rows: np.ndarray, cfg: TrainConfig) -> list[tuple[int, int]]:
    """Consecutive row ranges of at most ``eval_batch`` patients and ``eval_patches`` patches."""
    if not any(m.kind == "bag" for m in data.modalities):
        return [(s, min(s + 256, len(rows))) for s in range(0, len(rows), 256)]
    out, start, n_max = [], 0, 0
    for j in range(len(rows)):
        n = int(data.wsi(int(rows[j])).shape[0])
        size = j - start + 1
        if j > start and (size > cfg.eval_batch or max(n_max, n) * size > cfg.eval_patches):
            out.append((start, j))
            start, n_max = j, 0
        n_max = max(n_max, n)
    out.append((start, len(rows)))
    return out


def _autocast(device: torch.device, amp: bool):
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def fold_loss_full(
    crit: SurvivalCriterion, logits: np.ndarray, time: np.ndarray, event: np.ndarray
) -> float:
    """Survival loss over a whole split (used for ``--select val_loss``)."""
    return float(
        crit(
            torch.as_tensor(logits, dtype=torch.float32),
            torch.as_tensor(time, dtype=torch.float32),
            torch.as_tensor(event, dtype=torch.bool),
        )
    )


def _cpu_state(model: nn.Module) -> dict:
    """A CPU copy of the state dict (non-tensor extra state kept as is)."""
    return {
        k: v.detach().cpu().clone() if isinstance(v, Tensor) else v
        for k, v in model.state_dict().items()
    }


def train_fold(
    model: nn.Module,
    data: PatientData,
    fit_rows: np.ndarray,
    val_rows: np.ndarray,
    crit: SurvivalCriterion,
    cfg: TrainConfig,
    device: torch.device,
    *,
    fold: int,
    state_path: Path | None = None,
    resume: bool = False,
    show_progress: bool = True,
    label: str = "",
    keep_epoch_states: bool = False,
) -> tuple[dict, list[dict], dict]:
    """Train on ``fit_rows``, select on ``val_rows`` (never the test fold).

    Returns (selected state_dict, per-epoch history, info). With ``state_path``, the full
    training state is saved after every epoch and, with ``resume``, reloaded to continue.
    ``keep_epoch_states`` also returns a CPU copy of the weights after every epoch in
    ``info["epoch_states"]`` (for choosing one epoch across the members of an ensemble).
    """
    model.to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    bs = max(2, min(cfg.batch_size, len(fit_rows)))
    net: nn.Module = model
    if _dist.active():
        if bs < _dist.world():
            raise ValueError(
                f"`--batch-size` must be at least the number of ranks ({_dist.world()}) so that "
                f"every rank gets patients; got an effective batch of {bs}."
            )
        # every rank sees a shard of each global batch; DDP averages the gradients
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    steps_per_epoch = max(1, len(fit_rows) // bs)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, warmup_cosine(total, int(round(cfg.warmup_epochs * steps_per_epoch)))
    )
    history: list[dict] = []
    best = {"score": -math.inf, "epoch": -1, "state": None}
    start_epoch = 0
    epoch_states: list[dict] = []
    if resume and state_path is not None and state_path.exists():
        st = load_torch(state_path)  # a truncated file: clear error saying how to restart
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        history, best, start_epoch = st["history"], st["best"], st["epoch"]
        epoch_states = st.get("epoch_states", [])
    t0 = _time.time()
    bar = tqdm(
        range(start_epoch, cfg.epochs),
        desc=f"{label}fold {fold}",
        leave=False,
        disable=not show_progress,
        initial=start_epoch,
        total=cfg.epochs,
    )
    for epoch in bar:
        # per-(seed, fold, epoch) RNG: a resumed run repeats exactly what an uninterrupted one does
        ep_seed = (cfg.seed * 1_000_003 + fold * 10_007 + epoch) % (2**31)
        seed_everything(ep_seed)
        gen = torch.Generator().manual_seed(ep_seed)
        order = np.random.default_rng(ep_seed).permutation(fit_rows)
        model.train()
        sums: dict[str, float] = {}
        n_steps = 0
        for s in range(steps_per_epoch):
            rows = order[s * bs : (s + 1) * bs]
            if len(rows) < 2:
                continue
            rows = _dist.shard(rows)  # the whole global batch when not distributed
            step = epoch * steps_per_epoch + s
            inputs = data.batch(rows, device, bag_size=cfg.bag_size, generator=gen)
            t, e = data.labels(rows, device)
            progress = step / steps_per_epoch  # epochs done, for the mass curriculum
            try:
                with _autocast(device, cfg.amp):
                    out = net(inputs, progress=progress, present=None)
            except ValueError as exc:  # a finiteness check of a minmaxfuse layer fired
                if "finite" not in str(exc):
                    raise
                raise NonFiniteLossError(
                    f"non-finite values in {label or 'model'} fold {fold}, epoch {epoch}, "
                    f"step {step} (batch {s}): {exc}"
                ) from exc
            surv = crit(out["logits"], t, e, train=True)
            if getattr(model, "uses_labels", False):  # e.g. PIBD's class proxies
                total_loss, terms = model.objective(surv, out, time=t, event=e)
            else:
                total_loss, terms = model.objective(surv, out)
            if step == cfg.inject_nan_step:
                total_loss = total_loss * float("nan")
            if _dist.active():
                # mean over ranks (the Cox term is already global): logs and the finiteness
                # check below agree on every rank, so all ranks stop together
                names = [*terms, "total"]
                vec = torch.stack(
                    [v.detach().double().reshape(()) for v in (*terms.values(), total_loss)]
                )
                values = dict(zip(names, _dist.mean_over_ranks(vec).tolist()))
            else:
                values = {k: float(v.detach()) for k, v in terms.items()}
                values["total"] = float(total_loss.detach())
            if not all(math.isfinite(v) for v in values.values()):
                bad = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                raise NonFiniteLossError(
                    f"non-finite loss in {label or 'model'} fold {fold}, epoch {epoch}, "
                    f"step {step} (batch {s}): {bad}"
                )
            opt.zero_grad(set_to_none=True)
            total_loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            n_steps += 1
        rec = {"epoch": epoch, **{f"train_{k}": v / max(1, n_steps) for k, v in sums.items()}}
        rec["train_loss"] = rec.pop("train_total", float("nan"))
        if hasattr(model, "end_epoch"):  # e.g. TTA's multi-head prototypes: pick primary heads
            rec.update(model.end_epoch())
        if len(val_rows):
            vr, vl, _ = predict(model, data, val_rows, crit, cfg, device)
            rec["val_c_index"] = c_index(data.time[val_rows], data.event[val_rows], vr)
            rec["val_loss"] = fold_loss_full(crit, vl, data.time[val_rows], data.event[val_rows])
            # checkpoint selection must not depend on float noise between ranks: use rank 0's
            vals = _dist.from_main((rec["val_c_index"], rec["val_loss"]))
            rec["val_c_index"], rec["val_loss"] = vals
        if cfg.select == "val_cindex":
            score = rec.get("val_c_index", float("nan"))
        elif cfg.select == "val_loss":
            score = -rec.get("val_loss", float("nan"))
        else:
            score = float(epoch)
        score = score if math.isfinite(score) else -math.inf
        history.append(rec)
        if keep_epoch_states:
            epoch_states.append(_cpu_state(model))
        # ties go to the later epoch; epochs before min_epoch are never selected
        if epoch >= cfg.min_epoch and (score >= best["score"] or best["state"] is None):
            best = {
                "score": score,
                "epoch": epoch,
                "state": _cpu_state(model),
            }
        if show_progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(
                loss=f"{rec['train_loss']:.3f}", val_c=f"{rec.get('val_c_index', float('nan')):.3f}"
            )
        # early stopping on the validation score (never the test fold); the state below is
        # still saved so that --resume sees a finished member
        stop = (
            cfg.patience > 0
            and epoch >= cfg.min_epoch
            and epoch - best["epoch"] >= cfg.patience
            and epoch + 1 < cfg.epochs
        )
        if state_path is not None and _dist.is_main():
            save_torch(
                state_path,
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "history": history,
                    "best": best,
                    "epoch": cfg.epochs if stop else epoch + 1,
                    "config": asdict(cfg),
                    "epoch_states": epoch_states,
                },
            )
        if cfg.interrupt_after >= 0 and epoch + 1 >= cfg.interrupt_after:
            raise Interrupted(f"interrupted after epoch {epoch} of fold {fold} (testing hook)")
        if stop:
            break
    last_state = _cpu_state(model)
    info = {
        "selected_epoch": best["epoch"],
        "epochs_run": len(history),
        "select": cfg.select,
        "seconds": _time.time() - t0,
        "steps_per_epoch": steps_per_epoch,
        "last_state": last_state,
        "epoch_states": epoch_states,
    }
    return best["state"] if best["state"] is not None else last_state, history, info
