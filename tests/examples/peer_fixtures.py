"""Small modality layouts and random inputs shared by the per-peer tests."""

from __future__ import annotations

import numpy as np
import torch

from examples.tta.batches import ModalityInfo


def wsi_rna_cnv_infos() -> list[ModalityInfo]:
    """WSI bags of 8-d patches, 5 RNA tokens and 2 CNV tokens of 3 genes each."""
    valid = np.ones((5, 3), dtype=bool)
    rna = ModalityInfo("rna", "grouped", valid=valid, token_names=[f"p{i}" for i in range(5)])
    cnv = ModalityInfo("cnv", "grouped", valid=np.ones((2, 3), bool), token_names=["a", "b"])
    return [ModalityInfo("wsi", "bag", in_dim=8), rna, cnv]  # 5 + 2 = 7 genomic queries


def wsi_rna_cnv_inputs(lens: list[int], n: int, seed: int = 0) -> dict:
    """Bags of ``lens`` valid patches padded to ``n`` with large garbage, random omics."""
    g = torch.Generator().manual_seed(seed)
    b = len(lens)
    mask = torch.arange(n)[None] < torch.tensor(lens)[:, None]
    x = torch.randn(b, n, 8, generator=g)
    x = torch.where(mask[..., None], x, 1e3 * torch.randn(b, n, 8, generator=g))
    rna = torch.randn(b, 5, 3, generator=g)
    cnv = torch.randn(b, 2, 3, generator=g)
    return {"wsi": (x, mask), "rna": (rna, None), "cnv": (cnv, None)}


def wsi_rna_infos(in_dim: int = 8) -> list[ModalityInfo]:
    """WSI bags of ``in_dim``-d patches and 5 RNA tokens with some padded gene slots."""
    valid = np.ones((5, 3), dtype=bool)
    valid[1, 2] = valid[3, 1:] = False
    rna = ModalityInfo("rna", "grouped", valid=valid, token_names=[f"p{i}" for i in range(5)])
    return [ModalityInfo("wsi", "bag", in_dim=in_dim), rna]


def wsi_rna_inputs(b: int, n: int, lens: list[int], in_dim: int = 8, seed: int = 0) -> dict:
    """``b`` bags of ``lens`` valid patches padded to ``n`` (padding holds 1e3), random RNA."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, in_dim, generator=g)
    mask = torch.arange(n)[None] < torch.tensor(lens)[:, None]
    x = torch.where(mask[..., None], x, 1e3)  # padded patches hold garbage
    rna = torch.randn(b, 5, 3, generator=g) * torch.as_tensor(wsi_rna_infos()[1].valid)
    return {"wsi": (x, mask), "rna": (rna, None)}
