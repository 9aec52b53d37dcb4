"""Per-fold tensors and mini-batches: grouped omics tokens and WSI bags for a set of patients."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from minmaxfuse.data import pad_bags, sample_bag

from .data import FeatureStore


@dataclass
class ModalityInfo:
    """Static description of one modality's tokens for the model."""

    name: str
    kind: str  # "bag" (WSI patches) or "grouped" (one token per gene group)
    in_dim: int = 0  # bag: patch feature size
    valid: np.ndarray | None = None  # grouped: (G, L) bool
    token_names: list[str] | None = None  # grouped: group names


class PatientData:
    """All inputs of a cohort for one fold (scaled on that fold's training patients).

    ``grouped[m]`` is a ``(P, G, L)`` float tensor; WSI bags come from a :class:`FeatureStore`
    (``slides`` per case) or from an in-memory list of ``(N_i, D)`` tensors (synthetic data).
    """

    def __init__(
        self,
        case_ids: Sequence[str],
        time: np.ndarray,
        event: np.ndarray,
        modalities: list[ModalityInfo],
        grouped: dict[str, np.ndarray],
        *,
        store: FeatureStore | None = None,
        slides: dict[str, list[str]] | None = None,
        bags: list[Tensor] | None = None,
    ) -> None:
        self.case_ids = [str(c) for c in case_ids]
        self.pos = {c: i for i, c in enumerate(self.case_ids)}
        self.time = np.asarray(time, dtype=np.float64)
        self.event = np.asarray(event, dtype=bool)
        self.modalities = modalities
        self.grouped = {m: torch.as_tensor(x, dtype=torch.float32) for m, x in grouped.items()}
        self.store, self.slides, self.bags = store, slides, bags

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row positions of case ids."""
        return np.array([self.pos[c] for c in ids], dtype=np.int64)

    def wsi(self, i: int) -> Tensor:
        """All patches ``(N, D)`` of patient row ``i``."""
        if self.bags is not None:
            return self.bags[i]
        c = self.case_ids[i]
        return self.store.patient(c, self.slides[c])[0]

    def coords(self, i: int) -> np.ndarray | None:
        """Patch coordinates of patient row ``i`` when the ``.h5`` files carry them."""
        if self.bags is not None or self.store is None:
            return None
        c = self.case_ids[i]
        return self.store.patient(c, self.slides[c])[1]

    def batch(
        self,
        rows: np.ndarray,
        device: torch.device,
        *,
        bag_size: int = 0,
        generator: torch.Generator | None = None,
    ) -> dict[str, tuple[Tensor, Tensor | None]]:
        """Model inputs for ``rows``: name -> (tokens, mask). ``bag_size`` > 0 samples patches."""
        out: dict[str, tuple[Tensor, Tensor | None]] = {}
        idx = torch.as_tensor(rows, dtype=torch.long)
        for info in self.modalities:
            if info.kind == "grouped":
                out[info.name] = (self.grouped[info.name][idx].to(device, non_blocking=True), None)
            else:
                feats = [self.wsi(int(i)) for i in rows]
                if bag_size > 0:
                    # fixed-size random bags (smaller bags padded), PANTHER/MMP-style
                    sampled = [sample_bag(f, bag_size, generator=generator) for f in feats]
                    n_max = max(int(m.sum()) for _, m in sampled)
                    x = torch.stack([t[:n_max] for t, _ in sampled])
                    mask = torch.stack([m[:n_max] for _, m in sampled])
                else:
                    x, mask = pad_bags(feats)
                out[info.name] = (x.to(device, non_blocking=True), mask.to(device))
        return out

    def labels(self, rows: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
        """``time`` (B,) float32 and ``event`` (B,) bool on ``device``."""
        t = torch.as_tensor(self.time[rows], dtype=torch.float32, device=device)
        e = torch.as_tensor(self.event[rows], dtype=torch.bool, device=device)
        return t, e
